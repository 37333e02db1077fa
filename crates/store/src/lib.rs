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
    /// The data directory cannot be written (a read-only file system, or no permission).
    #[error(
        "the data folder `{path}` cannot be written ({why}): the gateway records every decision before it forwards a call, so it does not start without a writable log; `portcullis audit verify` and `audit export` read a read-only folder"
    )]
    ReadOnly {
        /// The data directory.
        path: PathBuf,
        /// What the operating system said.
        why: std::io::Error,
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
        if let Err(why) = writable(data_dir) {
            return Err(StoreError::ReadOnly {
                path: data_dir.to_owned(),
                why,
            });
        }
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

    /// Opens the database in a data directory nobody can write (a read-only file system or
    /// snapshot), only to read it: no migrations. With a write-ahead log beside it (a gateway
    /// that stopped without folding it in) the log is read too, through the shared-memory file
    /// left beside it; without one the file is read as immutable, which is right only because
    /// nothing can change it. Use [`Store::open`] anywhere else ([`Store::open_for_reading`]
    /// chooses).
    pub async fn open_read_only(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join(DB_FILE);
        let wal = data_dir.join(format!("{DB_FILE}-wal"));
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .read_only(true)
            .immutable(!wal.exists());
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Open {
                path: path.clone(),
                source: Box::new(e),
            })?;
        Ok(Store { pool })
    }

    /// Opens the database for a command that only reads it: as [`Store::open`] does, or, when
    /// the data directory cannot be written, read-only ([`Store::open_read_only`]). The flag
    /// says which.
    pub async fn open_for_reading(data_dir: &Path) -> Result<(Store, bool), StoreError> {
        match Store::open(data_dir).await {
            Err(StoreError::ReadOnly { .. }) => Ok((Store::open_read_only(data_dir).await?, true)),
            other => other.map(|s| (s, false)),
        }
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

/// Whether files can be created in `dir`: a read-only mount, or a folder this user may not
/// write, fails here with the reason rather than deep inside SQLite.
fn writable(dir: &Path) -> std::io::Result<()> {
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).map_err(std::io::Error::from)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(test)]
mod tests;
