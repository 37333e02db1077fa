//! `portcullis doctor --config F`: what protects each upstream, on this kernel, for this user.
//! For every stdio upstream it runs the sandbox helper as a probe — the same spec the upstream
//! would get, every layer tried, nothing started — and prints which layers hold, which this
//! machine cannot give, and which config turned off. Exits 1 when a layer an upstream requires
//! cannot be had (it would not start), 0 otherwise.

use std::process::{ExitCode, Stdio};

use clap::Args;
use portcullis_gateway::config::Transport;
use portcullis_sandbox::{Layer, Report, Status};

use crate::ConfigArg;

/// `portcullis doctor`.
#[derive(Args, Debug)]
pub struct DoctorArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Print the reports as JSON.
    #[arg(long)]
    json: bool,
}

/// What became of one upstream.
struct Finding {
    name: String,
    lines: Vec<String>,
    report: Option<Report>,
    blocked: bool,
}

/// Runs the helper as a probe of `spec`.
async fn probe(mut spec: portcullis_sandbox::Spec) -> Result<Report, String> {
    spec.probe = true;
    let mut cmd = portcullis_gateway::upstream::client::stdio::helper_command(&spec)?;
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|e| format!("cannot run the sandbox helper: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Report::from_json(text.trim()).ok_or_else(|| {
        format!(
            "the probe said nothing readable: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

async fn examine(name: &str, transport: &Transport) -> Finding {
    let mut f = Finding {
        name: name.to_owned(),
        lines: Vec::new(),
        report: None,
        blocked: false,
    };
    match transport {
        Transport::Http { url, .. } => {
            f.lines.push(format!(
                "remote ({}): runs elsewhere, not sandboxed here",
                url.origin().ascii_serialization()
            ));
        }
        Transport::Stdio { sandbox: None, .. } => {
            f.lines.push(
                "SANDBOX OFF (`sandbox = false`): this upstream runs with the gateway's user, view of the machine and network"
                    .into(),
            );
        }
        Transport::Stdio { sandbox: Some(sb), .. } => {
            let spec = match portcullis_gateway::upstream::client::stdio::sandbox_spec(name, transport) {
                Ok(Some(s)) => s,
                Ok(None) => return f,
                Err(e) => {
                    f.lines.push(format!("cannot plan its sandbox: {e}"));
                    f.blocked = true;
                    return f;
                }
            };
            f.lines.push(format!("command  {}", spec.command.display()));
            f.lines.push(format!(
                "read     {}",
                spec.read
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            f.lines.push(format!(
                "write    {}",
                spec.write
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            f.lines.push(format!("network  {}", sb.network.as_str()));
            match probe(spec.clone()).await {
                Ok(report) => {
                    for (layer, status) in &report.layers {
                        let line = match status {
                            Status::Active(d) => format!("{:<18} active{}", layer.as_str(), detail(d)),
                            Status::Off(d) => format!("{:<18} off{}", layer.as_str(), detail(d)),
                            Status::Unavailable(d) => {
                                let required = spec.requires(*layer) && relevant(*layer, &spec);
                                if required {
                                    f.blocked = true;
                                }
                                format!(
                                    "{:<18} UNAVAILABLE{} — {}",
                                    layer.as_str(),
                                    detail(d),
                                    if required {
                                        "required: the upstream will not start (or accept it with `accept_weaker`)"
                                    } else {
                                        "accepted by `accept_weaker`"
                                    }
                                )
                            }
                        };
                        f.lines.push(line);
                    }
                    f.report = Some(report);
                }
                Err(e) => {
                    f.lines.push(format!("probe failed: {e}"));
                    f.blocked = true;
                }
            }
        }
    }
    f
}

fn relevant(layer: Layer, spec: &portcullis_sandbox::Spec) -> bool {
    layer != Layer::NetworkNamespace || spec.network != portcullis_sandbox::Network::Any
}

fn detail(d: &str) -> String {
    if d.is_empty() { String::new() } else { format!(" ({d})") }
}

/// With `auth = "oauth"`: each identity provider's keys, fetched now.
async fn identity_providers(cfg: &portcullis_gateway::config::Config) -> Vec<(String, String, Result<usize, String>)> {
    let portcullis_gateway::config::ClientAuth::OAuth(b) = &cfg.gateway.auth else {
        return Vec::new();
    };
    portcullis_gateway::fetch::allow_private(&cfg.gateway.fetch_private);
    match portcullis_gateway::bearer::Bearer::new(b.clone(), None) {
        Ok(bearer) => bearer.probe().await,
        Err(e) => b
            .issuers
            .iter()
            .map(|i| (i.name.clone(), i.issuer.clone(), Err(format!("no HTTP client: {e}"))))
            .collect(),
    }
}

/// Runs `portcullis doctor`.
pub async fn run(args: DoctorArgs) -> ExitCode {
    let cfg = match crate::load(&args.config.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let root = nix::unistd::geteuid().is_root();
    let mut findings = Vec::new();
    for u in &cfg.upstreams {
        findings.push(examine(&u.name, &u.transport).await);
    }
    let providers = identity_providers(&cfg).await;
    if args.json {
        let v: serde_json::Map<String, serde_json::Value> = findings
            .iter()
            .map(|f| {
                (
                    f.name.clone(),
                    serde_json::json!({
                        "blocked": f.blocked,
                        "notes": f.lines,
                        "layers": f.report.as_ref().map(|r| serde_json::to_value(r).unwrap_or_default()),
                    }),
                )
            })
            .collect();
        let mut v = v;
        for (name, issuer, r) in &providers {
            v.insert(
                format!("gateway.oauth.issuers.{name}"),
                match r {
                    Ok(n) => serde_json::json!({"issuer": issuer, "keys": n}),
                    Err(e) => serde_json::json!({"issuer": issuer, "error": e}),
                },
            );
        }
        outln!("{}", serde_json::Value::Object(v));
    } else {
        outln!(
            "gateway: {} ({}), process not dumpable, master key out of its environment",
            if root { "root" } else { "unprivileged user" },
            std::env::consts::OS
        );
        outln!("state:   {} (reachable by no upstream)", cfg.gateway.data_dir.display());
        for (name, issuer, r) in &providers {
            match r {
                Ok(n) => outln!("identity provider `{name}` ({issuer}): {n} signing key(s) loaded"),
                Err(e) => outln!("identity provider `{name}` ({issuer})  ✗ {e}"),
            }
        }
        for f in &findings {
            outln!(
                "\nupstream `{}`{}",
                f.name,
                if f.blocked { "  ✗ would not start" } else { "" }
            );
            for l in &f.lines {
                outln!("  {l}");
            }
        }
    }
    if findings.iter().any(|f| f.blocked) || providers.iter().any(|(_, _, r)| r.is_err()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
