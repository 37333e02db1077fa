//! The admin pages, rendered with maud (every interpolation escaped), and what they show.

use std::collections::HashMap;

use maud::{DOCTYPE, Markup, html};
use portcullis_core::catalog::{Entry, Kind};
use portcullis_core::pin;
use portcullis_core::scan::{Scanner, Severity};
use portcullis_store::{ApiKey, Approval, Grant, Pin, SecretInfo, Store};

use crate::state::Gateway;
use crate::state::pins::Pins;
use crate::state::taint::SessionView;

/// The stylesheet (served from this origin; the CSP allows no inline style).
pub const CSS: &str = include_str!("app.css");
/// The script: live updates of the approvals table (no inline script either).
pub const JS: &str = include_str!("app.js");

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

fn page(title: &str, active: &str, body: Markup) -> String {
    let nav = [
        ("/approvals", "Approvals"),
        ("/tools", "Tools"),
        ("/audit", "Audit log"),
        ("/credentials", "Credentials"),
        ("/sessions", "Sessions"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — Portcullis" }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body {
                header {
                    strong { "Portcullis" }
                    nav {
                        @for (href, label) in nav {
                            a href=(href) class=[(href == active).then_some("active")] { (label) }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
    .into_string()
}

/// A page with one message.
pub fn message(title: &str, text: &str) -> String {
    page(title, "", html! { p { (text) } p { a href="/approvals" { "Back" } } })
}

/// The sign-in page.
pub fn login(error: Option<&str>) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Sign in — Portcullis" }
                link rel="stylesheet" href="/static/app.css";
            }
            body {
                main class="login" {
                    h1 { "Portcullis" }
                    @if let Some(e) = error { p class="error" { (e) } }
                    form method="post" action="/login" {
                        label for="password" { "Admin password" }
                        input type="password" id="password" name="password" autocomplete="current-password" required;
                        button type="submit" { "Sign in" }
                    }
                }
            }
        }
    }
    .into_string()
}

/// The arguments in full, pretty-printed, where they differ from the shortened ones shown.
fn full_arguments(a: &Approval) -> Option<String> {
    if a.arguments_full.is_empty() || a.arguments_full == a.arguments {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&a.arguments_full).ok()?;
    serde_json::to_string_pretty(&v).ok()
}

/// The table of pending approvals (also served alone for live updates).
pub fn pending_table(csrf: &str, rows: &[Approval], now: i64) -> Markup {
    html! {
        div id="pending" data-live="/approvals/live" {
            @if rows.is_empty() {
                p class="empty" { "No call is waiting for approval." }
            }
            @for a in rows {
                article class="approval" data-id=(a.id) {
                    h2 { code { (a.upstream) "." (a.tool) } " for " strong { (a.principal) } " via " (a.client) }
                    p class="args" { code { (a.arguments) } }
                    @if let Some(full) = full_arguments(a) {
                        details class="full" {
                            summary { "Every argument in full" }
                            pre { code { (full) } }
                        }
                    }
                    @if a.operator_only { p class="operator" { "Only an operator may decide this call (a client's answer is refused)." } }
                    p class="why" { "Why: " (a.reason) }
                    p class="meta" { "Asked " (when(a.created_ms)) "; expires in " ((a.expires_ms - now).max(0) / 1000) " s · id " code { (a.id) } }
                    div class="actions" {
                        form method="post" action={ "/approvals/" (a.id) } {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" name="action" value="approve" class="approve" { "Approve this call" }
                        }
                        form method="post" action={ "/approvals/" (a.id) } {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="action" value="approve-for";
                            label { "or the same call for " input type="number" name="minutes" value="10" min="1" max="1440"; " min" }
                            button type="submit" { "Approve for a while" }
                        }
                        form method="post" action={ "/approvals/" (a.id) } {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="text" name="reason" placeholder="Reason (sent to the client)";
                            button type="submit" name="action" value="deny" class="deny" { "Deny" }
                        }
                    }
                }
            }
        }
    }
}

/// The approvals page.
pub fn approvals(csrf: &str, pending: &[Approval], recent: &[Approval], now: i64) -> String {
    page(
        "Approvals",
        "/approvals",
        html! {
            (pending_table(csrf, pending, now))
            h2 { "Recent" }
            table {
                thead { tr { th { "Asked" } th { "Call" } th { "Principal" } th { "State" } th { "By" } th { "Note" } } }
                tbody {
                    @for a in recent.iter().filter(|a| a.state != portcullis_store::ApprovalState::Pending) {
                        tr {
                            td { (when(a.created_ms)) }
                            td { code { (a.upstream) "." (a.tool) } }
                            td { (a.principal) }
                            td { (a.state.as_str()) }
                            td { (a.decided_by.as_deref().unwrap_or("")) }
                            td { (a.note.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
            form method="post" action="/logout" class="logout" {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" { "Sign out" }
            }
        },
    )
}

/// One tool as the inventory shows it.
pub struct ToolRow {
    exposed: String,
    upstream: String,
    effect: String,
    labels: String,
    status: String,
    held: Option<String>,
    diff: Option<String>,
    hash: String,
    findings: Vec<String>,
}

/// The tool inventory.
pub struct ToolsView {
    rows: Vec<ToolRow>,
    upstreams: Vec<(String, String)>,
}

fn upstream_name(gw: &Gateway, i: usize) -> String {
    gw.upstreams().get(i).map(|u| u.cfg.name.clone()).unwrap_or_default()
}

impl ToolsView {
    /// Reads the catalog, the pins and the scanner's findings.
    pub async fn build(gw: &Gateway) -> ToolsView {
        let cat = gw.catalog();
        let scanner = Scanner::new();
        let mut rows = Vec::new();
        let listed = cat.entries(Kind::Tool).iter().map(|e| (e, None));
        let held = cat.held.iter().map(|h| (&h.entry, Some(h.reason())));
        for (e, held) in listed.chain(held) {
            let upstream = upstream_name(gw, e.upstream);
            let current = Pins::fingerprint(e);
            let pinned = gw.pins().store().pin(&upstream, &e.original).await.ok().flatten();
            let status = match (&held, &pinned) {
                (None, Some(_)) => "approved",
                (None, None) => "new",
                (Some(_), Some(_)) => "changed",
                (Some(_), None) => "unapproved",
            };
            let diff = match (&held, &pinned) {
                (Some(_), Some(p)) => Some(pin::diff(&p.definition, &current.canonical)),
                (Some(_), None) => Some(current.review()),
                _ => None,
            };
            let findings = scanner
                .scan_definition(&e.definition.to_value(), &[])
                .into_iter()
                .filter(|f| f.severity >= Severity::Medium)
                .map(|f| format!("{} {}: {}", f.severity, f.rule, f.message))
                .collect();
            rows.push(ToolRow {
                exposed: e.exposed.clone(),
                upstream,
                effect: gw.policy_tool(e).effect.as_str().to_owned(),
                labels: {
                    let names = gw.base_label(e.upstream, Some(e)).names();
                    if names.is_empty() {
                        "trusted".to_owned()
                    } else {
                        names.join(", ")
                    }
                },
                status: status.to_owned(),
                held,
                diff,
                hash: current.hash,
                findings,
            });
        }
        rows.sort_by(|a, b| a.exposed.cmp(&b.exposed));
        let upstreams = gw
            .upstreams()
            .iter()
            .map(|u| {
                let sandbox = match (&u.cfg.transport, u.state()) {
                    (crate::config::Transport::Http { .. }, _) => String::new(),
                    (crate::config::Transport::Stdio { sandbox: None, .. }, _) => {
                        " — SANDBOX OFF (sandbox = false)".to_owned()
                    }
                    (_, crate::upstream::State::Ready(c)) => c
                        .sandbox_report()
                        .map(|r| format!(" — sandbox: {r}"))
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                let state = match u.state() {
                    crate::upstream::State::Ready(_) => "ready".to_owned(),
                    crate::upstream::State::Starting { after: None } => "starting".to_owned(),
                    crate::upstream::State::Starting { after: Some(why) } => {
                        format!("restarting; the last attempt failed: {why}")
                    }
                    crate::upstream::State::Down { reason, .. } => format!("down: {reason}"),
                    crate::upstream::State::Stopped => "stopped".to_owned(),
                };
                (u.cfg.name.clone(), format!("{state}{sandbox}"))
            })
            .collect();
        ToolsView { rows, upstreams }
    }
}

/// Approves the definition of `exposed` now listed, if its fingerprint is still `hash` (the
/// one the person saw).
pub async fn approve_definition(gw: &Gateway, exposed: &str, hash: Option<&str>) -> Result<(), String> {
    let cat = gw.catalog();
    let entry: &Entry = match (cat.held_tool(exposed), cat.tool(exposed)) {
        (Some(h), _) => &h.entry,
        (None, Some(e)) => e,
        (None, None) => return Err(format!("no upstream lists a tool `{exposed}`")),
    };
    let current = Pins::fingerprint(entry);
    if hash != Some(current.hash.as_str()) {
        return Err("the definition changed again since the page was shown; review it again".into());
    }
    let pin = Pin {
        upstream: upstream_name(gw, entry.upstream),
        tool: entry.original.clone(),
        hash: current.hash.clone(),
        definition: current.canonical,
        approved_at: crate::state::taint::now_unix(),
        approved_by: "web:admin".into(),
    };
    gw.pins().store().approve(&pin).await.map_err(|e| e.to_string())?;
    tracing::info!(tool = %exposed, hash = %current.hash, "tool definition approved on the admin page");
    Ok(())
}

/// The tools page.
pub fn tools(csrf: &str, v: &ToolsView) -> String {
    page(
        "Tools",
        "/tools",
        html! {
            h2 { "Upstreams" }
            table {
                thead { tr { th { "Upstream" } th { "State" } } }
                tbody { @for (n, s) in &v.upstreams { tr { td { (n) } td { (s) } } } }
            }
            h2 { "Tools" }
            table class="tools" {
                thead { tr { th { "Tool" } th { "Upstream" } th { "Effect" } th { "Output" } th { "Pin" } th { "Scanner" } } }
                tbody {
                    @for t in &v.rows {
                        tr class=[t.held.is_some().then_some("held")] {
                            td { code { (t.exposed) } }
                            td { (t.upstream) }
                            td { (t.effect) }
                            td { (t.labels) }
                            td { (t.status) }
                            td { @for f in &t.findings { div { (f) } } }
                        }
                        @if let (Some(reason), Some(diff)) = (&t.held, &t.diff) {
                            tr class="review" {
                                td colspan="6" {
                                    p { (reason) }
                                    pre class="diff" { (diff) }
                                    form method="post" action="/tools/approve" {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input type="hidden" name="tool" value=(t.exposed);
                                        input type="hidden" name="hash" value=(t.hash);
                                        button type="submit" class="approve" { "Approve this definition" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// Audit records after the filters, and the chain's state.
pub struct AuditView {
    rows: Vec<(i64, i64, serde_json::Value)>,
    chain: String,
    checkpoints: usize,
}

/// How many of the newest records the page reads.
const AUDIT_WINDOW: i64 = 2000;

impl AuditView {
    /// Reads the newest records (filtered) and verifies the whole chain.
    pub async fn build(store: &Store, filters: &HashMap<String, String>) -> AuditView {
        let window = usize::try_from(AUDIT_WINDOW).unwrap_or(2000);
        let mut all: std::collections::VecDeque<(i64, i64, String)> = std::collections::VecDeque::with_capacity(window);
        let walked = crate::state::audit::walk(store, |row| {
            if all.len() == window {
                all.pop_front();
            }
            all.push_back((row.seq, row.at_ms, row.body.clone()));
        })
        .await;
        let chain = match walked {
            Err(e) => format!("cannot read: {e}"),
            Ok(w) => match w.broken {
                Some(b) => format!("BROKEN: {b}"),
                None => format!("intact: {} records", w.verified),
            },
        };
        let checkpoints = store.audit_checkpoints().await.map(|c| c.len()).unwrap_or(0);
        let want = |k: &str| filters.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        // `since`: the last N minutes.
        let since = want("since")
            .and_then(|m| m.parse::<i64>().ok())
            .map(|m| crate::state::taint::now_unix().saturating_mul(1000) - m.saturating_mul(60_000));
        let rows = all
            .into_iter()
            .rev()
            .filter_map(|(seq, at, body)| {
                let v: serde_json::Value = serde_json::from_str(&body).ok()?;
                let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("");
                let keep = want("principal").is_none_or(|p| field("principal") == p)
                    && want("tool").is_none_or(|t| field("target").contains(t))
                    && want("decision").is_none_or(|d| field("decision") == d || field("event") == d)
                    && want("kind").is_none_or(|k| field("kind") == k)
                    && since.is_none_or(|from| at >= from);
                keep.then_some((seq, at, v))
            })
            .take(500)
            .collect();
        AuditView {
            rows,
            chain,
            checkpoints,
        }
    }
}

/// The audit page.
pub fn audit(filters: &HashMap<String, String>, v: &AuditView) -> String {
    let f = |k: &str| filters.get(k).cloned().unwrap_or_default();
    page(
        "Audit log",
        "/audit",
        html! {
            p class="chain" { "Hash chain: " strong { (v.chain) } "; signed checkpoints: " (v.checkpoints) " (verify them with " code { "portcullis audit verify" } ")" }
            form method="get" action="/audit" class="filters" {
                input name="principal" placeholder="principal" value=(f("principal"));
                input name="tool" placeholder="tool" value=(f("tool"));
                input name="decision" placeholder="decision or event" value=(f("decision"));
                input name="kind" placeholder="kind" value=(f("kind"));
                input name="since" type="number" min="1" placeholder="last N minutes" value=(f("since"));
                button type="submit" { "Filter" }
            }
            table class="audit" {
                thead { tr { th { "#" } th { "Time" } th { "Kind" } th { "Principal" } th { "Call" } th { "Decision" } th { "Detail" } } }
                tbody {
                    @for (seq, at, r) in &v.rows {
                        @let s = |k: &str| r.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
                        tr {
                            td { (seq) }
                            td { (when(*at)) }
                            td { (s("kind")) }
                            td { (s("principal")) }
                            td { code { (s("upstream")) @if !s("target").is_empty() { "." (s("target")) } } }
                            td { (s("decision")) (s("event")) (s("outcome")) }
                            td class="detail" {
                                (s("reason"))
                                @if !s("approval").is_empty() { "approval " code { (s("approval")) } " " }
                                (s("detail"))
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The credentials page: names, owners, times, scopes, state; never a value.
pub fn credentials(secrets: &[SecretInfo], grants: &[Grant], keys: &[ApiKey]) -> String {
    let secs = |s: i64| when(s.saturating_mul(1000));
    page(
        "Credentials",
        "/credentials",
        html! {
            h2 { "Vault secrets" }
            table {
                thead { tr { th { "Name" } th { "Owner" } th { "Created" } th { "Last used" } th { "State" } } }
                tbody {
                    @for s in secrets {
                        tr {
                            td { code { (s.name) } }
                            td { @if s.owner.is_empty() { "(shared)" } @else { (s.owner) } }
                            td { (secs(s.created_at)) }
                            td { (s.last_used_at.map(secs).unwrap_or_else(|| "never".into())) }
                            td { @match &s.suspended { Some(why) => { strong class="error" { "suspended: " (why) } } None => { "ok" } } }
                        }
                    }
                }
            }
            h2 { "OAuth grants" }
            table {
                thead { tr { th { "Upstream" } th { "Provider" } th { "Scopes" } th { "Connected" } } }
                tbody { @for g in grants { tr { td { (g.upstream) } td { (g.provider) } td { code { (g.scopes) } } td { (secs(g.created_at)) } } } }
            }
            h2 { "Client API keys" }
            table {
                thead { tr { th { "Id" } th { "Principal" } th { "Created" } } }
                tbody { @for k in keys { tr { td { code { (k.id) } } td { (k.principal) } td { (secs(k.created_at)) } } } }
            }
        },
    )
}

/// The sessions page.
pub fn sessions(csrf: &str, list: &[SessionView]) -> String {
    page(
        "Sessions",
        "/sessions",
        html! {
            @if list.is_empty() { p class="empty" { "No session has made a call yet." } }
            table {
                thead { tr { th { "Session" } th { "Labels" } th { "First untrusted source" } th { "Idle" } th {} } }
                tbody {
                    @for s in list {
                        tr class=[s.untrusted.then_some("tainted")] {
                            td { code { (s.scope) } }
                            td { (s.labels.join(", ")) }
                            td { @if let Some(src) = &s.first_untrusted { code { (src.origin) } } }
                            td { (s.idle.as_secs()) " s" }
                            td {
                                form method="post" action="/sessions/clear" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="scope" value=(s.scope);
                                    button type="submit" { "Clear" }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}
