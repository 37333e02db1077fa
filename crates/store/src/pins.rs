//! Tool pins and sightings. A pin is the approved definition of one upstream's tool; a
//! sighting is a definition seen that is not the pinned one, kept so that an approval can show
//! what changed and approve exactly what was seen.

use sqlx::Row as _;
use sqlx::sqlite::SqliteRow;

use crate::{Store, StoreError};

/// The approved definition of one tool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// The upstream's configured name.
    pub upstream: String,
    /// The tool's name at its upstream.
    pub tool: String,
    /// The definition's fingerprint (hex SHA-256).
    pub hash: String,
    /// The pinned members of the definition, canonical JSON.
    pub definition: String,
    /// When it was approved, Unix seconds.
    pub approved_at: i64,
    /// Who approved it: `first-use`, or the approver.
    pub approved_by: String,
}

/// A definition seen that differs from the pin (or has none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sighting {
    /// The upstream's configured name.
    pub upstream: String,
    /// The tool's name at its upstream.
    pub tool: String,
    /// The definition's fingerprint.
    pub hash: String,
    /// The pinned members of the definition, canonical JSON.
    pub definition: String,
    /// First and last time this definition was seen, Unix seconds.
    pub first_seen: i64,
    /// See `first_seen`.
    pub last_seen: i64,
}

fn pin(row: &SqliteRow) -> Result<Pin, sqlx::Error> {
    Ok(Pin {
        upstream: row.try_get("upstream")?,
        tool: row.try_get("tool")?,
        hash: row.try_get("hash")?,
        definition: row.try_get("definition")?,
        approved_at: row.try_get("approved_at")?,
        approved_by: row.try_get("approved_by")?,
    })
}

fn sighting(row: &SqliteRow) -> Result<Sighting, sqlx::Error> {
    Ok(Sighting {
        upstream: row.try_get("upstream")?,
        tool: row.try_get("tool")?,
        hash: row.try_get("hash")?,
        definition: row.try_get("definition")?,
        first_seen: row.try_get("first_seen")?,
        last_seen: row.try_get("last_seen")?,
    })
}

impl Store {
    /// Every pin.
    pub async fn pins(&self) -> Result<Vec<Pin>, StoreError> {
        let rows = sqlx::query("SELECT * FROM tool_pins ORDER BY upstream, tool")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(pin).collect::<Result<_, _>>()?)
    }

    /// The pin of one tool.
    pub async fn pin(&self, upstream: &str, tool: &str) -> Result<Option<Pin>, StoreError> {
        let row = sqlx::query("SELECT * FROM tool_pins WHERE upstream = ? AND tool = ?")
            .bind(upstream)
            .bind(tool)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(pin).transpose()?)
    }

    /// Pins a tool seen for the first time, unless it is pinned already (by another process
    /// sharing the database, say). Returns whether this call pinned it.
    pub async fn pin_first_use(&self, p: &Pin) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO tool_pins (upstream, tool, hash, definition, approved_at, approved_by)
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (upstream, tool) DO NOTHING",
        )
        .bind(&p.upstream)
        .bind(&p.tool)
        .bind(&p.hash)
        .bind(&p.definition)
        .bind(p.approved_at)
        .bind(&p.approved_by)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Approves a definition: it becomes the pin, replacing any earlier one, and the tool's
    /// sightings are cleared. One transaction.
    pub async fn approve(&self, p: &Pin) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO tool_pins (upstream, tool, hash, definition, approved_at, approved_by)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (upstream, tool) DO UPDATE SET hash = excluded.hash,
                 definition = excluded.definition, approved_at = excluded.approved_at,
                 approved_by = excluded.approved_by",
        )
        .bind(&p.upstream)
        .bind(&p.tool)
        .bind(&p.hash)
        .bind(&p.definition)
        .bind(p.approved_at)
        .bind(&p.approved_by)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM tool_sightings WHERE upstream = ? AND tool = ?")
            .bind(&p.upstream)
            .bind(&p.tool)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records that a definition other than the pinned one was seen at `now`.
    pub async fn record_sighting(
        &self,
        upstream: &str,
        tool: &str,
        hash: &str,
        definition: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tool_sightings (upstream, tool, hash, definition, first_seen, last_seen)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (upstream, tool, hash) DO UPDATE SET last_seen = excluded.last_seen",
        )
        .bind(upstream)
        .bind(tool)
        .bind(hash)
        .bind(definition)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every sighting, newest last.
    pub async fn sightings(&self) -> Result<Vec<Sighting>, StoreError> {
        let rows = sqlx::query("SELECT * FROM tool_sightings ORDER BY upstream, tool, last_seen")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(sighting).collect::<Result<_, _>>()?)
    }
}
