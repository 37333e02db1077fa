//! `portcullis keys`: API keys for HTTP clients (`[gateway] auth = "api-key"`). A key is shown
//! once, when made; the store keeps its id, principal and the SHA-256 of its secret.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Subcommand;
use portcullis_gateway::state::keys as auth;
use portcullis_store::Store;

use crate::{ConfigArg, EX_CANTCREAT, EX_USAGE};

/// `portcullis keys …`.
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Make a key for a principal; it is printed once, on stdout.
    Add {
        /// The principal the key speaks for (what policies, the vault's owners and the audit
        /// log name).
        principal: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List keys: id, principal, when made. Never a key.
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Revoke a key by its id (a running gateway refuses it within 2 s).
    Rm {
        /// The key's id (`pcl_<id>_…`).
        id: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("portcullis keys: {message}");
    ExitCode::from(code)
}

async fn store(config: &ConfigArg) -> Result<Store, ExitCode> {
    crate::open_store(&config.config).await
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Runs the command.
pub async fn run(cmd: KeysCommand) -> ExitCode {
    match cmd {
        KeysCommand::Add { principal, config } => {
            if !auth::valid_principal(&principal) {
                return fail(
                    EX_USAGE,
                    format!("`{principal}` is not a principal name (letters, digits, `_`, `-`, `.`, `@`)"),
                );
            }
            let store = match store(&config).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            let key = auth::mint(&principal, now_unix());
            if let Err(e) = store.put_api_key(&key.row).await {
                return fail(EX_CANTCREAT, e);
            }
            outln!("{}", key.token.as_str());
            eprintln!(
                "portcullis keys: key `{}` for `{principal}`; it is shown only now. Clients send it as `Authorization: Bearer …`",
                key.row.id
            );
            ExitCode::SUCCESS
        }
        KeysCommand::List { config } => {
            let store = match store(&config).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            match store.api_keys().await {
                Ok(keys) => {
                    outln!("{:<14}  {:<32}  CREATED", "ID", "PRINCIPAL");
                    for k in keys {
                        let when = chrono::DateTime::from_timestamp(k.created_at, 0)
                            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                            .unwrap_or_default();
                        outln!("{:<14}  {:<32}  {when}", k.id, k.principal);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail(EX_CANTCREAT, e),
            }
        }
        KeysCommand::Rm { id, config } => {
            let store = match store(&config).await {
                Ok(s) => s,
                Err(code) => return code,
            };
            match store.remove_api_key(&id).await {
                Ok(true) => {
                    outln!("revoked key `{id}`; a running gateway refuses it within 2s");
                    ExitCode::SUCCESS
                }
                Ok(false) => fail(EX_USAGE, format!("no key `{id}`")),
                Err(e) => fail(EX_CANTCREAT, e),
            }
        }
    }
}
