//! Portcullis's persistent state, behind one type: [`Store`]: tool pins, and the vault's
//! sealed secrets (ciphertext only; the vault crate holds the key). SQLite through `sqlx` is the
//! embedded default (one file, `portcullis.db`, in the configured `data_dir`, WAL journal so a
//! running gateway and a `portcullis tools approve` can share it). The schema is one set of
//! numbered migrations under `migrations/`, embedded in the binary and applied on open.
//!
//! **Architecture invariant:** the store knows rows, not protocols: no MCP, no JSON-RPC, no
//! policy. Callers pass the clock in, so what is stored is a function of the calls made.

mod approvals;
mod audit;
mod keys;
mod oauth;
mod pins;
mod settings;
mod vault;

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::SqlSafeStr as _;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

pub use approvals::{Approval, ApprovalState};
pub use audit::{AuditRow, CheckpointRow, MakeCheckpoint};
pub use keys::ApiKey;
pub use oauth::Grant;
pub use pins::{Pin, Sighting};
pub use vault::{SealedRow, SecretInfo};

/// The database file inside `data_dir`.
pub const DB_FILE: &str = "portcullis.db";

/// The migrations, in order. A migration once released is never edited: add a new one.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "tool pins", include_str!("../migrations/0001_tool_pins.sql")),
    (2, "vault", include_str!("../migrations/0002_vault.sql")),
    (
        3,
        "vault suspension",
        include_str!("../migrations/0003_vault_suspend.sql"),
    ),
    (4, "audit log", include_str!("../migrations/0004_audit.sql")),
    (5, "oauth grants", include_str!("../migrations/0005_oauth_grants.sql")),
    (6, "api keys", include_str!("../migrations/0006_api_keys.sql")),
    (
        7,
        "audit checkpoints",
        include_str!("../migrations/0007_audit_checkpoints.sql"),
    ),
    (8, "approvals", include_str!("../migrations/0008_approvals.sql")),
    (9, "settings", include_str!("../migrations/0009_settings.sql")),
    (
        10,
        "approval consent",
        include_str!("../migrations/0010_approval_consent.sql"),
    ),
    (
        11,
        "audit journal",
        include_str!("../migrations/0011_audit_journal.sql"),
    ),
];

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory or database file could not be created or opened.
    #[error("cannot open the state database `{path}`: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The schema could not be brought up to date.
    #[error("cannot migrate the state database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("state database: {0}")]
    Query(#[from] sqlx::Error),
}

/// The open state database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating when missing) the database in `data_dir` and applies migrations. The
    /// directory is created with mode 0700: it holds pins now and secrets later.
    pub async fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join(DB_FILE);
        let open_err = |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Open {
            path: path.clone(),
            source,
        };
        create_private_dir(data_dir).map_err(|e| open_err(Box::new(e)))?;
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| open_err(Box::new(e)))?;
        let store = Store { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// An in-memory database, for tests and for commands that must not leave state behind.
    pub async fn memory() -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?;
        // One connection: each in-memory connection is its own database.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        let store = Store { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations).run(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(test)]
mod tests;
