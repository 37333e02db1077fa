//! `portcullis scan`: reads every configured upstream's tools, prompts and resource templates
//! and reports what looks like tool poisoning — hidden instructions, references to secrets,
//! invisible text, exfiltration sinks, shadowing of other upstreams' tools — with severity and
//! the offending text — and tools whose definition is not the one pinned. It writes no pins.
//! Exits non-zero on a finding at or above `--fail-on`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use portcullis_core::scan::{Scanner, Severity};
use portcullis_gateway::guard::poisoning::{self, Report};
use portcullis_gateway::state::pins::PinMode;
use portcullis_gateway::upstream::State;
use serde_json::json;

use crate::EX_UNAVAILABLE;

/// Exit code when a finding is at or above `--fail-on`.
const EX_FINDINGS: u8 = 1;

/// Arguments of `portcullis scan`.
#[derive(Args, Debug)]
pub struct ScanArgs {
    /// The configuration file.
    #[arg(long, short, env = "PORTCULLIS_CONFIG", default_value = "portcullis.toml")]
    config: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Exit non-zero when a finding is at least this severe (info, low, medium, high).
    #[arg(long, default_value = "high", value_parser = parse_severity)]
    fail_on: Severity,
    /// How long to wait for upstreams to start.
    #[arg(long, default_value = "60s", value_parser = crate::parse_duration)]
    wait: Duration,
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    s.parse()
        .map_err(|_| format!("`{s}` is not a severity (info, low, medium, high)"))
}

/// Runs the command.
pub async fn run(args: ScanArgs) -> ExitCode {
    let cfg = match crate::load(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let gw = match crate::open(cfg, PinMode::ReadOnly).await {
        Ok(gw) => gw,
        Err(code) => return code,
    };
    let settled = gw.wait_listed(args.wait).await;
    let unavailable: Vec<(String, String)> = gw
        .upstreams()
        .iter()
        .filter_map(|up| match up.state() {
            State::Ready(_) => None,
            State::Down { reason, .. } => Some((up.cfg.name.clone(), reason)),
            State::Starting { after: Some(why) } => Some((up.cfg.name.clone(), why)),
            State::Starting { after: None } | State::Stopped => {
                Some((up.cfg.name.clone(), "did not start in time".into()))
            }
        })
        .collect();
    let catalog = gw.catalog();
    let scanner = Scanner::new();
    let mut reports = poisoning::scan_catalog(&scanner, &catalog);
    reports.extend(poisoning::pin_reports(&catalog));
    let upstream_name = |i: usize| gw.upstreams().get(i).map(|u| u.cfg.name.clone()).unwrap_or_default();
    if args.json {
        print_json(&reports, &unavailable, upstream_name);
    } else {
        print_table(&reports, &unavailable, upstream_name);
    }
    gw.stop().await;
    let worst = reports.iter().flat_map(|r| r.findings.iter()).map(|f| f.severity).max();
    if worst.is_some_and(|w| w >= args.fail_on) {
        ExitCode::from(EX_FINDINGS)
    } else if !unavailable.is_empty() || !settled {
        // An upstream that could not be read was not scanned: that is not a clean result.
        ExitCode::from(EX_UNAVAILABLE)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_json(reports: &[Report<'_>], unavailable: &[(String, String)], upstream_name: impl Fn(usize) -> String) {
    let findings: Vec<serde_json::Value> = reports
        .iter()
        .flat_map(|r| {
            let upstream = upstream_name(r.entry.upstream);
            r.findings.iter().map(move |f| {
                json!({
                    "upstream": upstream,
                    "kind": r.kind.noun(),
                    "name": r.entry.exposed,
                    "severity": f.severity.to_string(),
                    "category": f.category.to_string(),
                    "rule": f.rule,
                    "field": f.field,
                    "message": f.message,
                    "excerpt": f.excerpt,
                })
            })
        })
        .collect();
    let out = json!({
        "findings": findings,
        "unavailable": unavailable.iter().map(|(n, r)| json!({"upstream": n, "reason": r})).collect::<Vec<_>>(),
    });
    outln!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
}

fn print_table(reports: &[Report<'_>], unavailable: &[(String, String)], upstream_name: impl Fn(usize) -> String) {
    let mut rows: Vec<(Severity, String, String, String, String, String)> = reports
        .iter()
        .flat_map(|r| {
            let upstream = upstream_name(r.entry.upstream);
            r.findings.iter().map(move |f| {
                (
                    f.severity,
                    upstream.clone(),
                    format!("{} {}", r.kind.noun(), r.entry.exposed),
                    f.rule.to_owned(),
                    f.field.clone(),
                    format!("{}: {}", f.message, f.excerpt),
                )
            })
        })
        .collect();
    rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.cmp(&b.2)));
    if rows.is_empty() {
        outln!("no findings");
    } else {
        let item_w = rows.iter().map(|r| r.2.len()).max().unwrap_or(4).max(4);
        let rule_w = rows.iter().map(|r| r.3.len()).max().unwrap_or(4).max(4);
        outln!(
            "{:<8}  {:<14}  {:<item_w$}  {:<rule_w$}  WHAT",
            "SEVERITY",
            "UPSTREAM",
            "ITEM",
            "RULE"
        );
        for (sev, up, item, rule, field, what) in &rows {
            outln!(
                "{:<8}  {:<14}  {:<item_w$}  {:<rule_w$}  {field}: {what}",
                sev.to_string(),
                up,
                item,
                rule
            );
        }
    }
    for (name, reason) in unavailable {
        eprintln!("portcullis scan: upstream `{name}` was not scanned: {reason}");
    }
}
