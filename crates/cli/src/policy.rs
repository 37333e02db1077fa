//! `portcullis policy`: `validate` checks the configured policy files against the schema;
//! `check` shows the decision (and the deciding policies) for one call, reading the tool's
//! effect from config or from its upstream's annotations as the gateway would; with
//! `--after-untrusted` it judges the call in a session that has read untrusted output, so the
//! flow rule's hold is explained as well.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use portcullis_core::label::Label;
use portcullis_core::output::OutputScanner;
use portcullis_core::provenance::{ProvenanceIndex, Source};
use portcullis_gateway::dispatch::Explained;
use portcullis_gateway::error::GatewayError;
use portcullis_gateway::guard::judge::Snapshot;
use portcullis_gateway::guard::observe;
use portcullis_gateway::state::pins::PinMode;
use portcullis_policy::{Outcome, Principal};
use serde_json::Value;

use crate::{EX_UNAVAILABLE, EX_USAGE};

/// `portcullis policy …`.
#[derive(Subcommand, Debug)]
pub enum PolicyCommand {
    /// Check the configured profile and policy files against the schema.
    Validate {
        /// The configuration file.
        #[arg(long, short, env = "PORTCULLIS_CONFIG", default_value = "portcullis.toml")]
        config: PathBuf,
    },
    /// Show the decision for one tool call, and which policies made it.
    Check(Box<CheckArgs>),
}

/// Arguments of `portcullis policy check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The configuration file.
    #[arg(long, short, env = "PORTCULLIS_CONFIG", default_value = "portcullis.toml")]
    config: PathBuf,
    /// The user (`User::"…"` in policies); stdio and loopback HTTP clients are `local`.
    #[arg(long, default_value = "local")]
    principal: String,
    /// The client's name (`principal.client`).
    #[arg(long, default_value = "unknown")]
    client: String,
    /// A group the principal's identity provider lists (`principal.groups`; repeatable).
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    /// A role the principal's identity provider lists (`principal.roles`; repeatable).
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
    /// The tool, as the gateway exposes it (`UPSTREAM__TOOL`).
    #[arg(long)]
    tool: String,
    /// The call's arguments, a JSON object.
    #[arg(long, default_value = "{}")]
    args: String,
    /// How long to wait for upstreams to list their tools.
    #[arg(long, default_value = "60s", value_parser = crate::parse_duration)]
    wait: Duration,
    /// Judge the call in a session that has already read untrusted output of this origin
    /// (e.g. `mail__fetch_message`): the flow rule's decision is explained too.
    #[arg(long, value_name = "ORIGIN")]
    after_untrusted: Option<String>,
    /// A text that untrusted output carried (repeatable; with `--after-untrusted`): argument
    /// values found in it are traced back to it, as the gateway would.
    #[arg(long = "untrusted-text", value_name = "TEXT", requires = "after_untrusted")]
    untrusted_texts: Vec<String>,
}

/// Runs the command.
pub async fn run(cmd: PolicyCommand) -> ExitCode {
    match cmd {
        PolicyCommand::Validate { config } => match crate::load(&config) {
            Ok(cfg) => {
                let profile = cfg.policy.profile.map_or("none", |p| p.as_str());
                outln!("policy ok: profile `{profile}`, {} file(s)", cfg.policy.files.len());
                // What validates and may still not do what it says.
                for f in &cfg.policy.files {
                    let text = std::fs::read_to_string(f).unwrap_or_default();
                    for w in portcullis_policy::lint::warnings(&f.display().to_string(), &text) {
                        eprintln!("warning: {w}");
                    }
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        PolicyCommand::Check(args) => check(*args).await,
    }
}

async fn check(args: CheckArgs) -> ExitCode {
    let arguments: Value = match serde_json::from_str(&args.args) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return usage("`--args` must be a JSON object"),
        Err(e) => return usage(&format!("`--args` is not JSON: {e}")),
    };
    let cfg = match crate::load(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let gw = match crate::open(cfg, PinMode::ReadOnly).await {
        Ok(gw) => gw,
        Err(code) => return code,
    };
    gw.wait_listed(args.wait).await;
    let principal = Principal {
        user: args.principal,
        client: args.client,
        attributes: std::sync::Arc::new(portcullis_policy::Attributes::new(args.groups, args.roles)),
    };
    let session = session_of(args.after_untrusted.as_deref(), &args.untrusted_texts, &arguments);
    let explained = gw.explain_call(&principal, &args.tool, &arguments, &session);
    gw.stop().await;
    let Some(Explained {
        tool,
        decision,
        verdict,
    }) = explained
    else {
        eprintln!("portcullis policy check: no upstream lists a tool `{}`", args.tool);
        return ExitCode::from(EX_UNAVAILABLE);
    };
    let outcome = match decision.outcome {
        Outcome::Permit => "permit",
        Outcome::Forbid => "forbid",
        Outcome::NeedsApproval => "needs approval",
    };
    outln!("decision: {outcome}");
    outln!(
        "tool:     upstream `{}`, name `{}`, effect `{}`",
        tool.upstream,
        tool.name,
        tool.effect
    );
    outln!(
        "policies: {}",
        if decision.policies.is_empty() {
            "(none)".into()
        } else {
            decision.policies.join(", ")
        }
    );
    outln!("reason:   {}", decision.reason);
    for e in &decision.errors {
        outln!("error:    {e}");
    }
    if args.after_untrusted.is_some() {
        match &verdict {
            Ok(()) => outln!("flow:     goes ahead (the session's untrusted content does not hold this call)"),
            Err(e @ GatewayError::Flow { .. }) => outln!("flow:     held for a person's approval: {e}"),
            Err(_) => outln!("flow:     not reached (policy decided first)"),
        }
    }
    match verdict {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}

/// A session that has read untrusted output of `origin` carrying `texts` (none: a fresh,
/// trusted session), as the gateway's taint tracking would hold it: an injection the output
/// scanner finds in `texts` counts as seen.
fn session_of(origin: Option<&str>, texts: &[String], arguments: &Value) -> Snapshot {
    let Some(origin) = origin else {
        return Snapshot::default();
    };
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let mut index = ProvenanceIndex::new(1 << 16);
    for t in texts {
        index.observe(t, true, origin, at);
    }
    let strings: Vec<&str> = texts.iter().map(String::as_str).collect();
    let seen = observe::scan(&OutputScanner::new(), &strings, Label::UNTRUSTED);
    let source = Source {
        origin: origin.to_owned(),
        at_unix: at,
    };
    Snapshot {
        label: Label::UNTRUSTED,
        injected: seen.injected().then(|| source.clone()),
        first_untrusted: Some(source),
        hits: index.lookup_arguments(arguments),
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("portcullis policy check: {msg}");
    ExitCode::from(EX_USAGE)
}
