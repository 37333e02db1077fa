//! Client API keys: the principal each key speaks for, and the SHA-256 of the key's secret
//! part (the key itself is shown once, when made, and never stored).

use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use crate::{Store, StoreError};

/// One API key's row.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The key's public id (also part of the key).
    pub id: String,
    /// The principal it authenticates.
    pub principal: String,
    /// SHA-256 of the secret part.
    pub hash: Vec<u8>,
    /// When made, Unix seconds.
    pub created_at: i64,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("principal", &self.principal)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

fn key(row: &SqliteRow) -> Result<ApiKey, sqlx::Error> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        principal: row.try_get("principal")?,
        hash: row.try_get("hash")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Stores a new key (ids are random; a clash is an error, never a replacement).
    pub async fn put_api_key(&self, k: &ApiKey) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO api_keys (id, principal, hash, created_at) VALUES (?, ?, ?, ?)")
            .bind(&k.id)
            .bind(&k.principal)
            .bind(&k.hash)
            .bind(k.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every key, by principal.
    pub async fn api_keys(&self) -> Result<Vec<ApiKey>, StoreError> {
        let rows = sqlx::query("SELECT id, principal, hash, created_at FROM api_keys ORDER BY principal, created_at")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(key).collect::<Result<_, _>>()?)
    }

    /// Revokes a key; whether it existed.
    pub async fn remove_api_key(&self, id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM api_keys WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }
}
