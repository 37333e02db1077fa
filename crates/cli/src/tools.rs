//! `portcullis tools`: every upstream's tools as the gateway exposes them, with each one's pin
//! status; `portcullis tools approve NAME`: review a tool's definition against the approved
//! one (a diff, invisible characters shown) and approve it.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use portcullis_core::catalog::{Entry, Kind};
use portcullis_core::pin;
use portcullis_core::scan::{Scanner, Severity};
use portcullis_gateway::state::Gateway;
use portcullis_gateway::state::pins::{PinMode, Pins};
use portcullis_gateway::upstream::State;
use portcullis_store::Pin;
use serde_json::json;

use crate::{EX_UNAVAILABLE, EX_USAGE};

/// Arguments of `portcullis tools`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ToolsArgs {
    #[command(subcommand)]
    action: Option<ToolsCommand>,
    #[command(flatten)]
    list: ListArgs,
}

#[derive(Subcommand, Debug)]
enum ToolsCommand {
    /// Show a tool's definition against the approved one and approve it.
    Approve(ApproveArgs),
}

#[derive(Args, Debug)]
struct Common {
    /// The configuration file.
    #[arg(long, short, env = "PORTCULLIS_CONFIG", default_value = "portcullis.toml")]
    config: PathBuf,
    /// How long to wait for upstreams to start.
    #[arg(long, default_value = "60s", value_parser = crate::parse_duration)]
    wait: Duration,
}

#[derive(Args, Debug)]
struct ListArgs {
    #[command(flatten)]
    common: Common,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ApproveArgs {
    /// The tool as exposed, e.g. `mail__send_message`.
    tool: String,
    #[command(flatten)]
    common: Common,
    /// Approve without asking (for scripts; the diff is still printed).
    #[arg(long)]
    yes: bool,
}

/// Runs the command.
pub async fn run(args: ToolsArgs) -> ExitCode {
    match args.action {
        Some(ToolsCommand::Approve(a)) => approve(a).await,
        None => list(args.list).await,
    }
}

/// Loads the config and starts a gateway that only looks (writes no pins).
async fn look(common: &Common) -> Result<(Arc<Gateway>, bool), ExitCode> {
    let cfg = crate::load(&common.config)?;
    let gw = crate::open(cfg, PinMode::ReadOnly).await?;
    let settled = gw.wait_listed(common.wait).await;
    Ok((gw, settled))
}

fn upstream_name(gw: &Gateway, i: usize) -> String {
    gw.upstreams().get(i).map(|u| u.cfg.name.clone()).unwrap_or_default()
}

/// A tool's pin status in a listing.
fn status(gw: &Gateway, e: &Entry) -> &'static str {
    if gw.pins().is_pinned(&upstream_name(gw, e.upstream), &e.original) {
        "approved"
    } else {
        "new"
    }
}

async fn list(args: ListArgs) -> ExitCode {
    let (gw, settled) = match look(&args.common).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    let code = print(&gw, args.json, settled);
    gw.stop().await;
    code
}

fn print(gw: &Gateway, json: bool, settled: bool) -> ExitCode {
    let cat = gw.catalog();
    let mut unavailable = Vec::new();
    for up in gw.upstreams() {
        match up.state() {
            State::Ready(_) => {}
            State::Down { reason, .. } => unavailable.push((up.cfg.name.clone(), reason)),
            State::Starting { after: Some(why) } => unavailable.push((up.cfg.name.clone(), why)),
            State::Starting { after: None } | State::Stopped => {
                unavailable.push((up.cfg.name.clone(), "did not start in time".into()));
            }
        }
    }
    let mut rows: Vec<(&Entry, &'static str, String)> = cat
        .entries(Kind::Tool)
        .iter()
        .map(|e| (e, status(gw, e), String::new()))
        .collect();
    for h in &cat.held {
        let s = match h.hold {
            pin::Hold::Changed { .. } => "changed",
            pin::Hold::Unapproved => "unapproved",
            pin::Hold::Flagged { .. } => "flagged",
        };
        rows.push((&h.entry, s, h.reason()));
    }
    if json {
        let tools: Vec<serde_json::Value> = rows
            .iter()
            .map(|(e, status, reason)| {
                let mut v = e.definition.to_value();
                if let Some(m) = v.as_object_mut() {
                    m.insert("x-portcullis-upstream".into(), json!(upstream_name(gw, e.upstream)));
                    m.insert("x-portcullis-pin".into(), json!(status));
                    if !reason.is_empty() {
                        m.insert("x-portcullis-held".into(), json!(reason));
                    }
                }
                v
            })
            .collect();
        let out = json!({
            "tools": tools,
            "conflicts": cat.conflicts.iter().map(|c| json!({"name": c.exposed, "kind": c.kind.noun(), "upstreams": c.upstreams})).collect::<Vec<_>>(),
            "unavailable": unavailable.iter().map(|(n, r)| json!({"upstream": n, "reason": r})).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        let width = rows.iter().map(|r| r.0.exposed.len()).max().unwrap_or(4).max(4);
        outln!("{:<width$}  {:<16}  {:<10}  DESCRIPTION", "TOOL", "UPSTREAM", "PIN");
        for (e, status, _) in &rows {
            let desc = e.definition.get_str("description").unwrap_or_default();
            let first: String = desc.lines().next().unwrap_or_default().chars().take(80).collect();
            outln!(
                "{:<width$}  {:<16}  {:<10}  {}",
                e.exposed,
                upstream_name(gw, e.upstream),
                status,
                portcullis_core::scan::reveal_hidden(&first)
            );
        }
        for (_, _, reason) in rows.iter().filter(|r| !r.2.is_empty()) {
            eprintln!("portcullis: {reason}");
        }
        for c in &cat.conflicts {
            eprintln!(
                "portcullis: {} `{}` is exposed by several upstreams ({}) and withheld; give them distinct prefixes",
                c.kind.noun(),
                c.exposed,
                c.upstreams.join(", ")
            );
        }
        for (name, reason) in &unavailable {
            eprintln!("portcullis: upstream `{name}` unavailable: {reason}");
        }
    }
    if !cat.conflicts.is_empty() {
        ExitCode::from(EX_USAGE)
    } else if !unavailable.is_empty() || !settled {
        ExitCode::from(EX_UNAVAILABLE)
    } else {
        ExitCode::SUCCESS
    }
}

async fn approve(args: ApproveArgs) -> ExitCode {
    let (gw, _) = match look(&args.common).await {
        Ok(x) => x,
        Err(code) => return code,
    };
    let code = approve_in(&gw, &args).await;
    gw.stop().await;
    code
}

async fn approve_in(gw: &Gateway, args: &ApproveArgs) -> ExitCode {
    let cat = gw.catalog();
    let entry = match (cat.held_tool(&args.tool), cat.tool(&args.tool)) {
        (Some(h), _) => &h.entry,
        (None, Some(e)) => e,
        (None, None) => {
            eprintln!(
                "portcullis tools approve: no upstream lists a tool `{}` (is its upstream running? see `portcullis tools`)",
                args.tool
            );
            return ExitCode::from(EX_UNAVAILABLE);
        }
    };
    let upstream = upstream_name(gw, entry.upstream);
    let current = Pins::fingerprint(entry);
    let store = gw.pins().store();
    let pinned = match store.pin(&upstream, &entry.original).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("portcullis tools approve: {e}");
            return ExitCode::from(crate::EX_CANTCREAT);
        }
    };
    if pinned.as_ref().is_some_and(|p| p.hash == current.hash) {
        outln!("tool `{}` is approved already (sha256 {})", args.tool, current.hash);
        return ExitCode::SUCCESS;
    }
    outln!(
        "tool `{}` of upstream `{upstream}` (its name there: `{}`)",
        args.tool,
        entry.original
    );
    match &pinned {
        Some(p) => {
            outln!(
                "approved {} by {}; the definition listed now differs:\n",
                unix_date(p.approved_at),
                p.approved_by
            );
            out!("{}", pin::diff(&p.definition, &current.canonical));
        }
        None => {
            outln!("never approved; its definition:\n");
            out!("{}", current.review());
        }
    }
    let findings: Vec<_> = Scanner::new()
        .scan_definition(&entry.definition.to_value(), &[])
        .into_iter()
        .filter(|f| f.severity >= Severity::Medium)
        .collect();
    if !findings.is_empty() {
        outln!("\nthe scanner found in it:");
        for f in &findings {
            outln!(
                "  {:<6}  {}  {}: {}: {}",
                f.severity,
                f.rule,
                f.field,
                f.message,
                f.excerpt
            );
        }
    }
    outln!();
    if !args.yes && !confirm(&format!("approve this definition of `{}`?", args.tool)) {
        eprintln!("portcullis tools approve: not approved");
        return ExitCode::from(EX_USAGE);
    }
    let approver = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let pin = Pin {
        upstream,
        tool: entry.original.clone(),
        hash: current.hash.clone(),
        definition: current.canonical,
        approved_at: now_unix(),
        approved_by: format!("cli:{approver}"),
    };
    if let Err(e) = store.approve(&pin).await {
        eprintln!("portcullis tools approve: {e}");
        return ExitCode::from(crate::EX_CANTCREAT);
    }
    outln!(
        "approved `{}` (sha256 {}); a running gateway lists it again within {}s",
        args.tool,
        current.hash,
        portcullis_gateway::state::pins::POLL.as_secs()
    );
    ExitCode::SUCCESS
}

/// Asks on the terminal; anything but `y`/`yes` is no, and so is having no terminal.
fn confirm(question: &str) -> bool {
    if !std::io::stdin().is_terminal() {
        eprintln!("portcullis tools approve: no terminal to ask on; pass `--yes` to approve");
        return false;
    }
    out!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    if std::io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `YYYY-MM-DD HH:MM UTC` for Unix seconds.
pub(crate) fn unix_date(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map_or_else(|| format!("at {secs}"), |d| d.format("%Y-%m-%d %H:%M UTC").to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn unix_dates() {
        assert_eq!(super::unix_date(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::unix_date(1_795_996_800), "2026-11-30 00:00 UTC");
        assert_eq!(super::unix_date(951_782_400 + 3_661), "2000-02-29 01:01 UTC");
    }
}
