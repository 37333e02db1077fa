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

/// One stored checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointRow {
    /// The record it covers.
    pub seq: i64,
    /// That record's hash.
    pub hash: String,
    /// When signed, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The previous checkpoint's `seq` (0: none).
    pub prev: i64,
    /// The signing key's id.
    pub key_id: String,
    /// The signature, base64.
    pub signature: String,
}

/// Makes the checkpoint over record (`seq`, `hash`) following checkpoint `prev`; called inside
/// the transaction that stores it, so `prev` is the newest checkpoint of the database.
pub type MakeCheckpoint<'a> = dyn Fn(i64, &str, i64) -> CheckpointRow + Send + Sync + 'a;

async fn last_checkpoint(tx: &mut sqlx::SqliteConnection) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT COALESCE(MAX(seq), 0) AS seq FROM audit_checkpoints")
        .fetch_one(&mut *tx)
        .await?
        .try_get("seq")
}

async fn insert_checkpoint(tx: &mut sqlx::SqliteConnection, c: &CheckpointRow) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO audit_checkpoints (seq, hash, at_ms, prev, key_id, signature) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(c.seq)
        .bind(&c.hash)
        .bind(c.at_ms)
        .bind(c.prev)
        .bind(&c.key_id)
        .bind(&c.signature)
        .execute(&mut *tx)
        .await?;
    Ok(())
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
        self.append_audit_signed(rows, None).await.map(|_| ())
    }

    /// Appends records and, with `checkpoint`, a checkpoint over the last of them, in one
    /// transaction: all or none. Returns the checkpoint stored, if any.
    pub async fn append_audit_signed(
        &self,
        rows: &[AuditRow],
        checkpoint: Option<&MakeCheckpoint<'_>>,
    ) -> Result<Option<CheckpointRow>, StoreError> {
        self.append_audit_journaled(rows, checkpoint, None).await
    }

    /// [`Store::append_audit_signed`], also noting in the same transaction that journal
    /// `segment` is indexed up to its record `upto` (`progress`).
    pub async fn append_audit_journaled(
        &self,
        rows: &[AuditRow],
        checkpoint: Option<&MakeCheckpoint<'_>>,
        progress: Option<(&str, i64)>,
    ) -> Result<Option<CheckpointRow>, StoreError> {
        if rows.is_empty() {
            return Ok(None);
        }
        // One multi-row INSERT per chunk: a single statement is atomic by itself, so a batch
        // without a checkpoint or progress (and of at most one chunk) needs no BEGIN / COMMIT.
        let chunks: Vec<&[AuditRow]> = rows.chunks(ROWS_PER_STATEMENT).collect();
        if checkpoint.is_none() && progress.is_none() && chunks.len() == 1 {
            insert_rows(&self.pool, rows).await?;
            return Ok(None);
        }
        // The gateway's usual batch (one chunk and its journal progress, no checkpoint): the
        // whole transaction as one multi-statement query, one round trip to SQLite's worker
        // thread instead of four (each a cross-thread wake-up on the path of the next calls).
        if let (None, Some((segment, upto)), [chunk]) = (checkpoint, progress, chunks.as_slice()) {
            let mut conn = self.pool.acquire().await?;
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "BEGIN IMMEDIATE; INSERT INTO audit_records (seq, at_ms, body, prev, hash) ",
            );
            push_rows(&mut q, chunk);
            q.push("; INSERT INTO audit_journal (segment, upto) VALUES (");
            q.push_bind(segment).push(", ").push_bind(upto);
            q.push(") ON CONFLICT (segment) DO UPDATE SET upto = excluded.upto; COMMIT");
            let done = q.build().execute(&mut *conn).await.map(drop);
            settle(conn, done).await?;
            return Ok(None);
        }
        let mut conn = self.pool.acquire().await?;
        let done = async {
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
            for chunk in chunks {
                insert_rows(&mut *conn, chunk).await?;
            }
            if let Some((segment, upto)) = progress {
                sqlx::query(
                    "INSERT INTO audit_journal (segment, upto) VALUES (?, ?) \
                     ON CONFLICT (segment) DO UPDATE SET upto = excluded.upto",
                )
                .bind(segment)
                .bind(upto)
                .execute(&mut *conn)
                .await?;
            }
            let mut signed = None;
            if let (Some(make), Some(last)) = (checkpoint, rows.last()) {
                let prev = last_checkpoint(&mut conn).await?;
                let c = make(last.seq, &last.hash, prev);
                insert_checkpoint(&mut conn, &c).await?;
                signed = Some(c);
            }
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            Ok::<_, sqlx::Error>(signed)
        }
        .await;
        Ok(settle(conn, done).await?)
    }

    /// The number of journal `segment`'s last record already in the log (0: none).
    pub async fn audit_journal_upto(&self, segment: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT upto FROM audit_journal WHERE segment = ?")
            .bind(segment)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("upto")).transpose()?.unwrap_or(0))
    }

    /// Forgets journal `segment` (its file is gone: every record of it is in the log).
    pub async fn forget_audit_journal(&self, segment: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM audit_journal WHERE segment = ?")
            .bind(segment)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Signs the head of the chain when no checkpoint covers it yet; the checkpoint written,
    /// if one was.
    pub async fn checkpoint_head(&self, make: &MakeCheckpoint<'_>) -> Result<Option<CheckpointRow>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let done = async {
            sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
            let head = sqlx::query("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *conn)
                .await?;
            let Some(head) = head else {
                sqlx::query("COMMIT").execute(&mut *conn).await?;
                return Ok(None);
            };
            let (seq, hash): (i64, String) = (head.try_get("seq")?, head.try_get("hash")?);
            let prev = last_checkpoint(&mut conn).await?;
            if prev >= seq {
                sqlx::query("COMMIT").execute(&mut *conn).await?;
                return Ok(None);
            }
            let c = make(seq, &hash, prev);
            insert_checkpoint(&mut conn, &c).await?;
            sqlx::query("COMMIT").execute(&mut *conn).await?;
            Ok::<_, sqlx::Error>(Some(c))
        }
        .await;
        Ok(settle(conn, done).await?)
    }

    /// Every checkpoint, in order.
    pub async fn audit_checkpoints(&self) -> Result<Vec<CheckpointRow>, StoreError> {
        let rows = sqlx::query("SELECT seq, hash, at_ms, prev, key_id, signature FROM audit_checkpoints ORDER BY seq")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(CheckpointRow {
                    seq: r.try_get("seq")?,
                    hash: r.try_get("hash")?,
                    at_ms: r.try_get("at_ms")?,
                    prev: r.try_get("prev")?,
                    key_id: r.try_get("key_id")?,
                    signature: r.try_get("signature")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
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

/// Ends a transaction begun on `conn`: on an error, rolls it back explicitly, and never hands a
/// connection that may still hold it back to the pool (a COMMIT that failed — a full disk —
/// leaves SQLite's transaction open, and a pooled connection holding it made every later write
/// on it conflict with rows no other connection saw).
async fn settle<T>(
    mut conn: sqlx::pool::PoolConnection<sqlx::Sqlite>,
    done: Result<T, sqlx::Error>,
) -> Result<T, sqlx::Error> {
    if done.is_err() {
        // Rolled back, or none was open: the connection is clean. Anything else: drop it (an
        // in-memory database goes with its connection, but only a file's can fill a disk).
        match sqlx::query("ROLLBACK").execute(&mut *conn).await {
            Ok(_) => {}
            Err(e) if e.to_string().contains("no transaction is active") => {}
            Err(_) => conn.close_on_drop(),
        }
    }
    done
}

/// Rows per INSERT: 5 bound values each, well inside SQLite's limit on variables.
const ROWS_PER_STATEMENT: usize = 512;

/// Inserts `rows` with one statement.
async fn insert_rows<'e, E>(executor: E, rows: &[AuditRow]) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new("INSERT INTO audit_records (seq, at_ms, body, prev, hash) ");
    push_rows(&mut q, rows);
    q.build().execute(executor).await.map(drop)
}

/// `VALUES (…), (…)` of `rows`, bound.
fn push_rows(q: &mut sqlx::QueryBuilder<sqlx::Sqlite>, rows: &[AuditRow]) {
    q.push_values(rows, |mut b, r| {
        b.push_bind(r.seq)
            .push_bind(r.at_ms)
            .push_bind(&r.body)
            .push_bind(&r.prev)
            .push_bind(&r.hash);
    });
}
