//! `portcullis audit`: check the audit log's hash chain and its signed checkpoints, export it,
//! and print the public key auditors verify the checkpoints with.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use portcullis_core::audit::Broken;
use portcullis_core::audit::checkpoint::{self, VerifyingKey};
use portcullis_core::audit::verdict::{Audit, Signatures};
use portcullis_gateway::config::Config;
use portcullis_gateway::state::secrets;
use portcullis_store::Store;
use portcullis_vault::{KeySource, Vault};

use crate::{EX_CANTCREAT, EX_USAGE};

/// Exit code when the chain is broken.
const EX_DATAERR: u8 = 65;

/// `portcullis audit …`.
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute the hash chain and the signed checkpoints; name the first record that does
    /// not verify.
    Verify {
        /// The configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG", default_value = "portcullis.toml")]
        config: PathBuf,
        /// Verify the checkpoints with this public key (from `portcullis audit public-key`)
        /// instead of the vault's: for an auditor without the master key.
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Print every record as one JSON object per line.
    Export {
        /// The configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG", default_value = "portcullis.toml")]
        config: PathBuf,
        /// JSON Lines (the only format).
        #[arg(long)]
        jsonl: bool,
    },
    /// Print the public key the checkpoints are signed with (its private half is in the vault).
    PublicKey {
        /// The configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG", default_value = "portcullis.toml")]
        config: PathBuf,
    },
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("portcullis audit: {message}");
    ExitCode::from(code)
}

/// The checkpoint key from the vault, if a master key is at hand and the gateway has made one.
/// Never creates one: verifying must not change anything.
async fn vault_key(cfg: &Config, store: &Store) -> Result<Option<VerifyingKey>, String> {
    let salt = match cfg.vault {
        KeySource::Passphrase => Some(Vault::passphrase_salt(store).await.map_err(|e| e.to_string())?),
        _ => None,
    };
    let key = match secrets::master_key(&cfg.vault, &cfg.gateway.data_dir, salt.as_deref()) {
        Ok(Some(k)) => k,
        Ok(None) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let vault = Vault::open(store.clone(), key, &cfg.vault.to_string())
        .await
        .map_err(|e| e.to_string())?;
    let key = portcullis_gateway::state::audit::existing_signing_key(&vault)
        .await
        .map_err(|e| e.to_string())?;
    Ok(key.map(|k| checkpoint::public_of(&k)))
}

/// Runs the command.
pub async fn run(cmd: AuditCommand) -> ExitCode {
    let (config, export, public_key) = match &cmd {
        AuditCommand::Verify { config, public_key } => (config, false, public_key.clone()),
        AuditCommand::Export { config, .. } => (config, true, None),
        AuditCommand::PublicKey { config } => (config, false, None),
    };
    let cfg = match crate::load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // A read-only folder (a snapshot, a read-only mount) is read as it is.
    let (store, read_only) = match Store::open_for_reading(&cfg.gateway.data_dir).await {
        Ok(s) => s,
        Err(e) => return fail(EX_CANTCREAT, e),
    };
    let journal = cfg.gateway.data_dir.join(portcullis_gateway::state::journal::DIR);
    if read_only {
        eprintln!(
            "portcullis audit: the data folder is read-only: reading the database as it is; records a gateway journaled and did not index into it yet are not read (copy the folder somewhere writable to include them)"
        );
    } else {
        index_journal(&store, &journal).await;
    }
    if let AuditCommand::PublicKey { .. } = cmd {
        return match vault_key(&cfg, &store).await {
            Ok(Some(k)) => {
                outln!("{}", checkpoint::encode_public(&k));
                eprintln!("portcullis audit: key id {}", checkpoint::key_id(&k));
                ExitCode::SUCCESS
            }
            Ok(None) => fail(
                EX_USAGE,
                "no audit signing key: it is made by the gateway's first start with a vault (and a master key must be at hand to read it)",
            ),
            Err(e) => fail(EX_USAGE, e),
        };
    }
    let checkpoints = match portcullis_gateway::state::audit::checkpoints(&store).await {
        Ok(c) => c,
        Err(e) => return fail(EX_CANTCREAT, e),
    };
    let mut audit = Audit::new(&checkpoints);
    // Read once: `audit` hashes what it verifies; an export hashes nothing.
    let read = portcullis_gateway::state::audit::rows(&store, |row| {
        if export {
            let body: serde_json::Value = serde_json::from_str(&row.body).unwrap_or(serde_json::Value::Null);
            outln!(
                "{}",
                serde_json::json!({"seq": row.seq, "at_ms": row.at_ms, "record": body, "prev": row.prev, "hash": row.hash})
            );
        } else {
            audit.push(row);
        }
    })
    .await;
    if let Err(e) = read {
        return fail(EX_CANTCREAT, e);
    }
    if export {
        return ExitCode::SUCCESS;
    }
    // The witness file outside the database: every checkpoint it recorded must still be there.
    let witness_path = cfg.gateway.data_dir.join(portcullis_gateway::state::audit::WITNESS);
    let witness = match read_witness(&witness_path) {
        Ok(w) => w,
        Err(e) if !audit.is_broken() => {
            outln!(
                "broken: the witness file {} cannot be read: {e}",
                witness_path.display()
            );
            return ExitCode::from(EX_DATAERR);
        }
        Err(_) => None,
    };
    let key = if audit.is_broken() {
        None
    } else {
        match public_key {
            Some(text) => match checkpoint::decode_public(&text) {
                Some(k) => Some(k),
                None => return fail(EX_USAGE, "`--public-key` is not a base64 Ed25519 public key"),
            },
            None => match vault_key(&cfg, &store).await {
                Ok(k) => k,
                Err(e) => {
                    eprintln!("portcullis audit: cannot read the checkpoint key from the vault: {e}");
                    None
                }
            },
        }
    };
    let verdict = match audit.finish(key.as_ref(), witness.as_deref()) {
        Ok(v) => v,
        Err(t) => {
            if let Some(records) = t.chain_intact {
                outln!("ok: {records} records, the hash chain is intact");
            }
            return tampered(&t.broken, t.good);
        }
    };
    outln!("ok: {} records, the hash chain is intact", verdict.records);
    match (&verdict.signatures, &key) {
        (Signatures::Verified(report), Some(k)) => outln!(
            "ok: {} signed checkpoints (key {}) cover records 1 to {}; {} newer records are not signed yet",
            report.checkpoints,
            checkpoint::key_id(k),
            report.signed_through,
            verdict.records - report.signed_through
        ),
        (Signatures::Unchecked { checkpoints }, _) => outln!(
            "unverified: {checkpoints} signed checkpoints, and no key to check their signatures (no master key here; give `--public-key`); they match the records they name"
        ),
        _ => outln!("no signed checkpoints (the gateway signs them when it has a vault)"),
    }
    match verdict.witnessed {
        Some(n) => outln!("ok: the witness file's {n} checkpoints are all in the database"),
        None if !checkpoints.is_empty() => outln!(
            "no witness file at {} (a removed tail would go unnoticed; the gateway writes one with every checkpoint)",
            witness_path.display()
        ),
        None => {}
    }
    ExitCode::SUCCESS
}

/// Indexes what gateways journaled and did not index yet: what one that stopped without its
/// clean stop left (its next start would do the same), and what a running one journaled before
/// now (indexed within moments: waited for).
async fn index_journal(store: &Store, journal: &std::path::Path) {
    match portcullis_gateway::state::audit::recover(store, journal).await {
        Ok(0) => {}
        Ok(n) => eprintln!("portcullis audit: indexed {n} records a stopped gateway had journaled"),
        Err(e) => eprintln!("portcullis audit: could not index what a stopped gateway journaled: {e}"),
    }
    // What a running gateway journaled before now, indexed within moments: wait for it.
    let wait = std::time::Duration::from_secs(5);
    match portcullis_gateway::state::audit::settle(store, journal, wait).await {
        Ok(true) => {}
        Ok(false) => eprintln!(
            "portcullis audit: a running gateway has journaled records it has not indexed yet (its database may be locked or slow); they are not shown"
        ),
        Err(e) => eprintln!("portcullis audit: could not read the audit journal: {e}"),
    }
}

/// The witness file's checkpoints, or `None` when there is none. A last line cut short (the
/// gateway stopped mid-write) is skipped; any other line that does not read is an error.
fn read_witness(path: &std::path::Path) -> Result<Option<Vec<checkpoint::Checkpoint>>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str::<checkpoint::Checkpoint>(line) {
            Ok(c) => out.push(c),
            Err(_) if i + 1 == lines.len() && !complete => {}
            Err(e) => return Err(format!("line {} is not a checkpoint: {e}", i + 1)),
        }
    }
    Ok(Some(out))
}

fn tampered(broken: &Broken, good: i64) -> ExitCode {
    outln!("broken: {broken}");
    eprintln!(
        "portcullis audit: the log verifies up to record {good}; it has been tampered with from record {} on",
        broken.seq
    );
    ExitCode::from(EX_DATAERR)
}
