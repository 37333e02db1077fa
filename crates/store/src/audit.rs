//! The audit log's rows: append in batches (one transaction each), read back in order.

use sqlx::Row as _;

use crate::{Store, StoreError};

/// One stored audit record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRow {
    /// 1, 2, 3, …
    pub seq: i64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The body, canonical JSON.
    pub body: String,
    /// The previous record's hash.
    pub prev: String,
    /// This record's hash.
    pub hash: String,
}

impl Store {
    /// The last record's sequence number and hash.
    pub async fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        let row = sqlx::query("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| Ok::<_, sqlx::Error>((r.try_get("seq")?, r.try_get("hash")?)))
            .transpose()?)
    }

    /// Appends records in one transaction: all or none.
    pub async fn append_audit(&self, rows: &[AuditRow]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for r in rows {
            sqlx::query("INSERT INTO audit_records (seq, at_ms, body, prev, hash) VALUES (?, ?, ?, ?, ?)")
                .bind(r.seq)
                .bind(r.at_ms)
                .bind(&r.body)
                .bind(&r.prev)
                .bind(&r.hash)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Up to `limit` records after `after_seq`, in order (the physical order of `seq`).
    pub async fn audit_rows(&self, after_seq: i64, limit: i64) -> Result<Vec<AuditRow>, StoreError> {
        let rows =
            sqlx::query("SELECT seq, at_ms, body, prev, hash FROM audit_records WHERE seq > ? ORDER BY seq LIMIT ?")
                .bind(after_seq)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    seq: r.try_get("seq")?,
                    at_ms: r.try_get("at_ms")?,
                    body: r.try_get("body")?,
                    prev: r.try_get("prev")?,
                    hash: r.try_get("hash")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }
}
