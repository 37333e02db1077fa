//! The vault's rows: sealed secrets (nonce and ciphertext; the store never sees a value or a
//! key) and the vault's metadata (the key check, KDF salts).

use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use crate::{Store, StoreError};

/// One sealed secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedRow {
    /// The secret's name.
    pub name: String,
    /// Its owner (`""`: shared by every principal).
    pub owner: String,
    /// The AEAD nonce.
    pub nonce: Vec<u8>,
    /// The ciphertext with its tag.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedRow")
            .field("name", &self.name)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// What `vault list` shows: never a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretInfo {
    /// The secret's name.
    pub name: String,
    /// Its owner (`""`: shared).
    pub owner: String,
    /// When first set, Unix seconds.
    pub created_at: i64,
    /// When last set.
    pub updated_at: i64,
    /// When last handed to an upstream, if ever.
    pub last_used_at: Option<i64>,
    /// Why it is suspended, if it is.
    pub suspended: Option<String>,
}

fn sealed(row: &SqliteRow) -> Result<SealedRow, sqlx::Error> {
    Ok(SealedRow {
        name: row.try_get("name")?,
        owner: row.try_get("owner")?,
        nonce: row.try_get("nonce")?,
        ciphertext: row.try_get("ciphertext")?,
    })
}

impl Store {
    /// Stores (or replaces) a sealed secret.
    pub async fn put_secret(&self, row: &SealedRow, now: i64) -> Result<(), StoreError> {
        self.insert_secret(
            row,
            now,
            "INSERT INTO vault_secrets (name, owner, nonce, ciphertext, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (name, owner) DO UPDATE SET nonce = excluded.nonce,
                 ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        )
        .await
        .map(drop)
    }

    /// Stores a sealed secret unless one of that name and owner exists; whether it was stored.
    /// Two processes racing to make the same secret (a signing key made on first use) end up
    /// with the first one's, never one each.
    pub async fn put_secret_if_absent(&self, row: &SealedRow, now: i64) -> Result<bool, StoreError> {
        Ok(self
            .insert_secret(
                row,
                now,
                "INSERT INTO vault_secrets (name, owner, nonce, ciphertext, created_at, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT (name, owner) DO NOTHING",
            )
            .await?
            == 1)
    }

    /// Runs `sql`, an insert of one row binding (name, owner, nonce, ciphertext, created,
    /// updated); the rows changed.
    async fn insert_secret(&self, row: &SealedRow, now: i64, sql: &'static str) -> Result<u64, StoreError> {
        let done = sqlx::query(sql)
            .bind(&row.name)
            .bind(&row.owner)
            .bind(&row.nonce)
            .bind(&row.ciphertext)
            .bind(now)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// One sealed secret.
    pub async fn secret(&self, name: &str, owner: &str) -> Result<Option<SealedRow>, StoreError> {
        let row = sqlx::query("SELECT name, owner, nonce, ciphertext FROM vault_secrets WHERE name = ? AND owner = ?")
            .bind(name)
            .bind(owner)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(sealed).transpose()?)
    }

    /// Every sealed secret.
    pub async fn secrets(&self) -> Result<Vec<SealedRow>, StoreError> {
        let rows = sqlx::query("SELECT name, owner, nonce, ciphertext FROM vault_secrets ORDER BY name, owner")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(sealed).collect::<Result<_, _>>()?)
    }

    /// What `vault list` shows.
    pub async fn secret_infos(&self) -> Result<Vec<SecretInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, owner, created_at, updated_at, last_used_at, suspended_reason FROM vault_secrets ORDER BY name, owner",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SecretInfo {
                    name: r.try_get("name")?,
                    owner: r.try_get("owner")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                    last_used_at: r.try_get("last_used_at")?,
                    suspended: r.try_get("suspended_reason")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Removes a secret; whether it was there.
    pub async fn remove_secret(&self, name: &str, owner: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM vault_secrets WHERE name = ? AND owner = ?")
            .bind(name)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records that a secret was handed out at `now`.
    pub async fn touch_secret(&self, name: &str, owner: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE vault_secrets SET last_used_at = ? WHERE name = ? AND owner = ?")
            .bind(now)
            .bind(name)
            .bind(owner)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Suspends every owner's copy of a secret; whether there was one.
    pub async fn suspend_secret(&self, name: &str, reason: &str, now: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE vault_secrets SET suspended_at = ?, suspended_reason = ? WHERE name = ?")
            .bind(now)
            .bind(reason)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Lifts a suspension; whether the secret was suspended.
    pub async fn resume_secret(&self, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE vault_secrets SET suspended_at = NULL, suspended_reason = NULL WHERE name = ? AND suspended_at IS NOT NULL",
        )
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every suspended secret with its reason.
    pub async fn suspended_secrets(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT DISTINCT name, suspended_reason FROM vault_secrets WHERE suspended_at IS NOT NULL ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("name")?,
                    r.try_get::<Option<String>, _>("suspended_reason")?.unwrap_or_default(),
                ))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// A vault metadata value.
    pub async fn vault_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT value FROM vault_meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    /// Replaces every sealed secret and metadata value in one transaction (key rotation): all
    /// or nothing.
    pub async fn reseal_all(&self, rows: &[SealedRow], meta: &[(&str, Vec<u8>)], now: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for row in rows {
            sqlx::query(
                "UPDATE vault_secrets SET nonce = ?, ciphertext = ?, updated_at = ? WHERE name = ? AND owner = ?",
            )
            .bind(&row.nonce)
            .bind(&row.ciphertext)
            .bind(now)
            .bind(&row.name)
            .bind(&row.owner)
            .execute(&mut *tx)
            .await?;
        }
        for (key, value) in meta {
            sqlx::query("INSERT INTO vault_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
                .bind(key)
                .bind(value)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Sets a vault metadata value only if it is not set yet; whether this call set it.
    pub async fn init_vault_meta(&self, key: &str, value: &[u8]) -> Result<bool, StoreError> {
        let done = sqlx::query("INSERT INTO vault_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
