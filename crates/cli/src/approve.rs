//! `portcullis approvals`, `portcullis approve ID`, `portcullis deny ID`: decide calls waiting
//! for a person, from a terminal. A decision lands once: approving or denying an id that is
//! decided already (or expired) changes nothing and says so.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use portcullis_store::{Approval, ApprovalState, Store};

use crate::{ConfigArg, EX_CANTCREAT, EX_USAGE};

/// Arguments of `portcullis approvals`.
#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Every approval (most recent 100), not only the pending ones.
    #[arg(long)]
    all: bool,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    /// Every argument in full, pretty-printed (long values are otherwise shortened to a
    /// digest).
    #[arg(long)]
    full: bool,
}

/// Arguments of `portcullis approve`.
#[derive(Args, Debug)]
pub struct ApproveArgs {
    /// The approval's id (from `portcullis approvals` or the gateway's log).
    id: String,
    #[command(flatten)]
    config: ConfigArg,
    /// Also let the same call (same tool, same arguments, same principal) through for this
    /// long, e.g. `10m`; without it, this one call only.
    #[arg(long, value_parser = crate::parse_duration)]
    r#for: Option<Duration>,
}

/// Arguments of `portcullis deny`.
#[derive(Args, Debug)]
pub struct DenyArgs {
    /// The approval's id.
    id: String,
    #[command(flatten)]
    config: ConfigArg,
    /// Why: the client receives it as the tool error.
    #[arg(long)]
    reason: Option<String>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("portcullis: {message}");
    ExitCode::from(code)
}

async fn store(config: &ConfigArg) -> Result<Store, ExitCode> {
    crate::open_store(&config.config).await
}

/// Who is deciding: the local user, as the audit log and the client will see it.
fn decider() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "local".into());
    format!("cli:{user}")
}

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// Runs `portcullis approvals`.
pub async fn list(args: ListArgs) -> ExitCode {
    let store = match store(&args.config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let state = (!args.all).then_some(ApprovalState::Pending);
    let rows = match store.approvals(state, 100).await {
        Ok(r) => r,
        Err(e) => return fail(EX_CANTCREAT, e),
    };
    let now = now_ms();
    for a in rows.iter().rev() {
        let state = if a.state == ApprovalState::Pending && a.expires_ms <= now {
            "expired"
        } else {
            a.state.as_str()
        };
        let arguments = if args.full {
            full_arguments(a)
        } else {
            a.arguments.as_str()
        };
        if args.json {
            outln!(
                "{}",
                serde_json::json!({
                    "id": a.id, "state": state, "principal": a.principal, "client": a.client,
                    "upstream": a.upstream, "tool": a.tool,
                    "arguments": serde_json::from_str::<serde_json::Value>(arguments).unwrap_or_default(),
                    "reason": a.reason, "created": when(a.created_ms), "expires": when(a.expires_ms),
                    "decidedBy": a.decided_by, "note": a.note, "operatorOnly": a.operator_only,
                })
            );
        } else {
            show(a, state, args.full);
        }
    }
    if rows.is_empty() && !args.json {
        outln!("no {}approvals", if args.all { "" } else { "pending " });
    }
    ExitCode::SUCCESS
}

/// The arguments in full where recorded (approvals from before they were kept: the digest).
fn full_arguments(a: &Approval) -> &str {
    if a.arguments_full.is_empty() {
        &a.arguments
    } else {
        &a.arguments_full
    }
}

fn show(a: &Approval, state: &str, full: bool) {
    outln!(
        "{}  {state}  {} via {}  asked {}{}",
        a.id,
        a.principal,
        a.client,
        when(a.created_ms),
        if a.operator_only { "  (operator only)" } else { "" }
    );
    if full {
        let pretty = serde_json::from_str::<serde_json::Value>(full_arguments(a))
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| full_arguments(a).to_owned());
        outln!("    call   {}.{}", a.upstream, a.tool);
        for line in pretty.lines() {
            outln!("           {line}");
        }
    } else {
        outln!("    call   {}.{} {}", a.upstream, a.tool, a.arguments);
    }
    outln!("    why    {}", a.reason);
    if let Some(by) = &a.decided_by {
        outln!(
            "    by     {by}{}",
            a.note.as_ref().map(|n| format!(": {n}")).unwrap_or_default()
        );
    }
}

async fn decide(config: &ConfigArg, id: &str, approve: bool, note: Option<&str>, grant: Option<Duration>) -> ExitCode {
    let store = match store(config).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    let now = now_ms();
    let until = grant.map(|d| now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)));
    match store.decide_approval(id, approve, &decider(), note, until, now).await {
        Ok(true) => {
            match (approve, grant) {
                (true, None) => outln!("approved `{id}` for this one call"),
                (true, Some(d)) => outln!(
                    "approved `{id}`: the same call goes through until {}",
                    when(now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(0)))
                ),
                (false, _) => outln!("denied `{id}`"),
            }
            ExitCode::SUCCESS
        }
        Ok(false) => match store.approval(id).await {
            Ok(Some(a)) => {
                let state = if a.state == ApprovalState::Pending {
                    "expired"
                } else {
                    a.state.as_str()
                };
                fail(
                    EX_USAGE,
                    format!(
                        "`{id}` is {state}{}; nothing changed",
                        a.decided_by.map(|b| format!(" (by {b})")).unwrap_or_default()
                    ),
                )
            }
            Ok(None) => fail(EX_USAGE, format!("no approval `{id}`")),
            Err(e) => fail(EX_CANTCREAT, e),
        },
        Err(e) => fail(EX_CANTCREAT, e),
    }
}

/// Runs `portcullis approve`.
pub async fn approve(args: ApproveArgs) -> ExitCode {
    decide(&args.config, &args.id, true, None, args.r#for).await
}

/// Runs `portcullis deny`.
pub async fn deny(args: DenyArgs) -> ExitCode {
    decide(&args.config, &args.id, false, args.reason.as_deref(), None).await
}
