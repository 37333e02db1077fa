//! OAuth grants: which provider an upstream is connected to and with which scopes. The refresh
//! token is a vault secret named here; this table never holds a token.

use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use crate::{Store, StoreError};

/// One upstream's grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    /// The upstream it authorises.
    pub upstream: String,
    /// The principal it belongs to (`""`: shared).
    pub owner: String,
    /// The provider's name in config.
    pub provider: String,
    /// The scopes granted, space-separated as OAuth writes them.
    pub scopes: String,
    /// The vault secret holding the refresh token.
    pub secret: String,
    /// When connected, Unix seconds.
    pub created_at: i64,
}

fn grant(row: &SqliteRow) -> Result<Grant, sqlx::Error> {
    Ok(Grant {
        upstream: row.try_get("upstream")?,
        owner: row.try_get("owner")?,
        provider: row.try_get("provider")?,
        scopes: row.try_get("scopes")?,
        secret: row.try_get("secret")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Records (or replaces) an upstream's grant.
    pub async fn put_grant(&self, g: &Grant) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO oauth_grants (upstream, owner, provider, scopes, secret, created_at)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (upstream, owner) DO UPDATE SET provider = excluded.provider,
                 scopes = excluded.scopes, secret = excluded.secret, created_at = excluded.created_at",
        )
        .bind(&g.upstream)
        .bind(&g.owner)
        .bind(&g.provider)
        .bind(&g.scopes)
        .bind(&g.secret)
        .bind(g.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// An upstream's grant, if it is connected.
    pub async fn grant(&self, upstream: &str, owner: &str) -> Result<Option<Grant>, StoreError> {
        let row = sqlx::query(
            "SELECT upstream, owner, provider, scopes, secret, created_at FROM oauth_grants
             WHERE upstream = ? AND owner = ?",
        )
        .bind(upstream)
        .bind(owner)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(grant).transpose()?)
    }

    /// Every grant, by upstream.
    pub async fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        let rows = sqlx::query(
            "SELECT upstream, owner, provider, scopes, secret, created_at FROM oauth_grants ORDER BY upstream, owner",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(grant).collect::<Result<_, _>>()?)
    }

    /// Forgets an upstream's grant; whether there was one.
    pub async fn remove_grant(&self, upstream: &str, owner: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM oauth_grants WHERE upstream = ? AND owner = ?")
            .bind(upstream)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}
