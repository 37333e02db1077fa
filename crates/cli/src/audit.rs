//! `portcullis audit`: check the audit log's hash chain, and export it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use portcullis_core::audit::{Row, Verifier};
use portcullis_store::Store;

use crate::EX_CANTCREAT;

/// Exit code when the chain is broken.
const EX_DATAERR: u8 = 65;
/// Records read per page.
const PAGE: i64 = 10_000;

/// `portcullis audit …`.
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute the hash chain and name the first record that does not verify.
    Verify {
        /// The configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG", default_value = "portcullis.toml")]
        config: PathBuf,
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
}

/// Runs the command.
pub async fn run(cmd: AuditCommand) -> ExitCode {
    let (config, export) = match &cmd {
        AuditCommand::Verify { config } => (config, false),
        AuditCommand::Export { config, .. } => (config, true),
    };
    let cfg = match crate::load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let store = match Store::open(&cfg.gateway.data_dir).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("portcullis audit: {e}");
            return ExitCode::from(EX_CANTCREAT);
        }
    };
    let mut verifier = Verifier::new();
    let mut after = 0;
    loop {
        let rows = match store.audit_rows(after, PAGE).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("portcullis audit: {e}");
                return ExitCode::from(EX_CANTCREAT);
            }
        };
        let Some(last) = rows.last() else { break };
        after = last.seq;
        for r in rows {
            let row = Row {
                seq: r.seq,
                at_ms: r.at_ms,
                body: r.body,
                prev: r.prev,
                hash: r.hash,
            };
            if export {
                let body: serde_json::Value = serde_json::from_str(&row.body).unwrap_or(serde_json::Value::Null);
                outln!(
                    "{}",
                    serde_json::json!({"seq": row.seq, "at_ms": row.at_ms, "record": body, "prev": row.prev, "hash": row.hash})
                );
            } else if let Err(broken) = verifier.push(&row) {
                outln!("broken: {broken}");
                eprintln!(
                    "portcullis audit: the chain verifies up to record {}; it has been tampered with from record {} on",
                    verifier.verified(),
                    broken.seq
                );
                return ExitCode::from(EX_DATAERR);
            }
        }
    }
    if !export {
        outln!("ok: {} records, the hash chain is intact", verifier.verified());
    }
    ExitCode::SUCCESS
}
