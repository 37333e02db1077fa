//! The one pipeline every planned request passes, its stages in the order of
//! [`crate::dispatch::plan::ORDER`], each guard's decision taken from `guard/` and applied
//! here. Nothing reaches an upstream but through [`run`]: forwarding takes the proof only the
//! commit stage makes.

use std::time::Instant;

use portcullis_core::catalog::Kind;
use portcullis_core::label::Label;
use portcullis_core::{Outcome, Params, Request};
use portcullis_policy::{Action, Effect, Tool};
use serde_json::{Map, Value, json};

use super::ctx::ClientCtx;
use super::outbox::Outbox;
use super::plan::{Plan, Route, Stage};
use super::{Reply, raw};
use crate::error::GatewayError;
use crate::guard::approve::ROUND_PREFIX;
use crate::guard::judge::{self, Inputs};
use crate::guard::route::{self, Miss, Target};
use crate::guard::{observe, parse, throttle};
use crate::state::Gateway;
use crate::state::taint::{Output, now_unix};

/// A request routed: where it goes, and what is judged.
#[derive(Debug)]
pub(crate) struct Routed {
    /// The upstream and the names.
    pub target: Target,
    /// The target as policy sees it.
    pub tool: Tool,
    /// The arguments as judged (read strictly from the bytes forwarded).
    pub arguments: Value,
    /// The label config gives what comes back, before its content is read.
    pub base: Label,
    /// Why the target is held back by its pin, if it is.
    pub held: Option<String>,
    /// Members of the params the gateway owns and rewrites before forwarding.
    pub rewrite: Vec<(&'static str, Value)>,
}

/// Runs one planned request through its stages.
pub(crate) async fn run(
    gw: &Gateway,
    ctx: &ClientCtx,
    plan: Plan,
    req: Request,
    out: &Outbox,
) -> Result<Reply, GatewayError> {
    let method = req.method;
    let mut params = req.params.unwrap_or_default();

    // Parse and route: a request that cannot be read or routed is refused, and recorded.
    let routed = match parse::params(&params) {
        Ok(read) => self::route(gw, plan, &method, &read).await,
        Err(e) => Err(e),
    };
    let routed = match routed {
        Ok(r) => r,
        Err(e) => {
            refuse_unrouted(gw, ctx, plan, &method, &e).await?;
            return Err(e);
        }
    };
    tracing::Span::current().record("mcp.target", routed.target.exposed.as_str());

    // Pin, judge, approve, credentials, throttle: the verdict.
    let limits = throttle::limits(
        gw.cfg.rate,
        gw.upstream_cfg(routed.target.upstream),
        (plan.action == Action::CallTool).then_some(routed.target.original.as_str()),
    );
    let verdict = match routed.held.clone() {
        Some(reason) if plan.runs(Stage::Pin) => Err(crate::guard::pin::refuse(&routed.target.exposed, reason)),
        _ => judge(gw, ctx, plan.action, &routed),
    };
    let verdict = match verdict {
        // A person may let it through: record that it needs approval, then ask and wait.
        Err(cause) if cause.needs_approval() && plan.runs(Stage::Approve) && gw.cfg.approvals.ask => {
            record(
                gw,
                ctx,
                plan.action,
                &routed,
                judge::outcome_name(&cause),
                &cause.to_string(),
            )
            .await?;
            if crate::dispatch::approval::can_ask_in_round(ctx) && !cause.operator_only() {
                match gw
                    .approval_round(ctx, plan.action, &routed.tool, &routed.arguments, cause, &params)
                    .await
                {
                    Ok(Some(input_required)) => return Ok(Reply::Result(raw(&input_required))),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                }
            } else {
                // A client that gave a progress token hears about the wait on it too.
                let progress = params
                    .get_as::<Value>("_meta")
                    .ok()
                    .flatten()
                    .and_then(|m| m.get("progressToken").cloned())
                    .filter(|t| t.is_string() || t.is_i64() || t.is_u64());
                gw.seek_approval(ctx, plan.action, &routed.tool, &routed.arguments, cause, progress, out)
                    .await
                    .map(|_| ())
            }
        }
        v => v,
    };
    let verdict = verdict.and_then(|()| {
        if plan.runs(Stage::Credentials) {
            gw.check_credentials(routed.target.upstream)?;
        }
        if plan.runs(Stage::Throttle) {
            // Limits are charged only for requests policy lets through.
            let counted = (plan.action == Action::CallTool).then_some((routed.tool.upstream.as_str(), routed.tool.name.as_str()));
            throttle::admit(&mut gw.limiter(), &ctx.principal, counted, &limits, Instant::now()).inspect_err(|e| {
                tracing::info!(principal = %ctx.principal, upstream = %routed.tool.upstream, tool = %routed.tool.name, error = %e, "refused: rate limit");
            })?;
        }
        Ok(())
    });

    // Commit: a refusal is recorded and returned; a permit is recorded and licenses forwarding.
    let committed = match verdict {
        Err(e) => {
            record(gw, ctx, plan.action, &routed, judge::outcome_name(&e), &e.to_string()).await?;
            return Err(e);
        }
        Ok(()) => {
            gw.metrics.decision(&routed.tool.upstream, "permit");
            tracing::Span::current().record("mcp.decision", "permit");
            gw.audit
                .commit(decision_body(gw, ctx, plan.action, &routed, "permit", ""))
                .await?
        }
    };

    // Forward.
    for (key, value) in &routed.rewrite {
        let _ = params.insert(*key, value);
    }
    strip_gateway_members(&mut params);
    let started = Instant::now();
    let unfinished = Unfinished {
        audit: Some(gw.audit.clone()),
        upstream: routed.tool.upstream.clone(),
        target: routed.tool.name.clone(),
        started,
    };
    let forwarded = {
        use tracing::Instrument as _;
        let span = tracing::info_span!("mcp.upstream", otel.name = %format!("{method} {}", routed.target.original), upstream = %routed.tool.upstream);
        match plan.route {
            Route::Subscription => {
                gw.subscribe_upstream(ctx, &routed.target, committed)
                    .instrument(span)
                    .await
            }
            _ => {
                super::forward::forward(gw, ctx, &routed, &method, params, out, committed)
                    .instrument(span)
                    .await
            }
        }
    };
    unfinished.finished();
    let reply = match forwarded {
        Ok(r) => r,
        Err(e) => {
            complete(gw, &routed, started, "failed", &e.to_string(), 0).await;
            return Err(e);
        }
    };

    // Charge, misuse, observe, complete.
    let size = reply.result_len();
    if plan.runs(Stage::Charge) && throttle::counts_bytes(&limits) {
        throttle::charge(&mut gw.limiter(), &ctx.principal, &limits, size, Instant::now());
    }
    if plan.runs(Stage::Misuse) {
        gw.record_use(routed.target.upstream, &routed.target.original, &routed.arguments, size);
    }
    let observed = observe_reply(gw, ctx, &routed, reply);
    match &observed {
        Ok(reply) => {
            let (outcome, digest_of) = reply.outcome_bytes();
            complete(
                gw,
                &routed,
                started,
                outcome,
                &crate::state::audit::digest(digest_of),
                size,
            )
            .await;
        }
        Err(e) => complete(gw, &routed, started, "refused:unreadable", &e.to_string(), size).await,
    }
    observed
}

/// The first stages of a subscription a `subscriptions/listen` asks for: route, judge
/// (`subscribe`), credentials, commit. The proof lets the caller follow the resource.
pub(crate) async fn admit_subscription(
    gw: &Gateway,
    ctx: &ClientCtx,
    uri: &str,
) -> Result<(Target, crate::state::audit::Committed), GatewayError> {
    let plan = Plan {
        route: Route::Subscription,
        action: Action::Subscribe,
        optional: &[Stage::Credentials],
    };
    let mut read = Map::new();
    read.insert("uri".into(), Value::String(uri.to_owned()));
    let routed = match self::route(gw, plan, "subscriptions/listen", &read).await {
        Ok(r) => r,
        Err(e) => {
            refuse_unrouted(gw, ctx, plan, "subscriptions/listen", &e).await?;
            return Err(e);
        }
    };
    let verdict = judge(gw, ctx, plan.action, &routed).and_then(|()| gw.check_credentials(routed.target.upstream));
    match verdict {
        Err(e) => {
            record(gw, ctx, plan.action, &routed, judge::outcome_name(&e), &e.to_string()).await?;
            Err(e)
        }
        Ok(()) => {
            gw.metrics.decision(&routed.tool.upstream, "permit");
            let proof = gw
                .audit
                .commit(decision_body(gw, ctx, plan.action, &routed, "permit", ""))
                .await?;
            Ok((routed.target, proof))
        }
    }
}

/// Removes what the gateway owns from params before they go upstream: its approval round's
/// state, and task augmentation (the gateway offers no tasks; the spec has a receiver that
/// does not ignore the member).
fn strip_gateway_members(params: &mut Params) {
    if params
        .get_str("requestState")
        .is_some_and(|s| s.starts_with(ROUND_PREFIX))
    {
        params.remove("requestState");
        params.remove("inputResponses");
    }
    params.remove("task");
}

/// Route: finds the upstream and names, and what policy judges.
async fn route(gw: &Gateway, plan: Plan, method: &str, read: &Map<String, Value>) -> Result<Routed, GatewayError> {
    let upstream_name = |i: usize| gw.upstream_cfg(i).map(|u| u.name.clone()).unwrap_or_default();
    let routed = |target: Target, tool: Tool, arguments: Value, base: Label| Routed {
        target,
        tool,
        arguments,
        base,
        held: None,
        rewrite: Vec::new(),
    };
    match plan.route {
        Route::Tool | Route::Prompt => {
            let name = parse::required_str(read, "name")?;
            let kind = if plan.route == Route::Tool {
                Kind::Tool
            } else {
                Kind::Prompt
            };
            let arguments = parse::arguments(read)?;
            let (entry, held) = find_entry(gw, kind, &name).await?;
            let up = gw.upstream_cfg(entry.upstream);
            let tool = match kind {
                Kind::Tool => judge::policy_tool(&entry, up),
                _ => judge::named(&upstream_name(entry.upstream), &entry.original, Effect::Read),
            };
            let base = observe::base_label(up, (kind == Kind::Tool).then_some(entry.original.as_str()));
            let target = Target {
                upstream: entry.upstream,
                original: entry.original.clone(),
                exposed: entry.exposed.clone(),
            };
            let mut r = routed(target, tool, arguments, base);
            r.rewrite.push(("name", Value::String(entry.original.clone())));
            r.held = held;
            Ok(r)
        }
        Route::Resource | Route::Subscription => {
            let uri = parse::required_str(read, "uri")?;
            let up = route::resource(&gw.catalog(), &uri, &gw.resource_servers())
                .ok_or_else(|| GatewayError::ResourceNotFound(uri.clone()))?;
            let tool = judge::named(&upstream_name(up), &uri, Effect::Read);
            let target = Target {
                upstream: up,
                original: uri.clone(),
                exposed: uri,
            };
            Ok(routed(
                target,
                tool,
                json!({}),
                observe::base_label(gw.upstream_cfg(up), None),
            ))
        }
        Route::Completion => {
            let reference = read
                .get("ref")
                .and_then(Value::as_object)
                .ok_or_else(|| GatewayError::InvalidParams("`ref` must be an object".into()))?;
            // Like a call, a completion may come right after the gateway started, before the
            // upstream that owns its prompt has listed: a miss waits (bounded) for upstreams
            // still starting.
            let (target, rewritten) = match route::completion(&gw.catalog(), reference, &gw.resource_servers()) {
                Ok(found) => found,
                Err(_) if gw.wait_settled(gw.start_wait()).await => {
                    route::completion(&gw.catalog(), reference, &gw.resource_servers())?
                }
                Err(e) => return Err(e),
            };
            let tool = judge::named(&upstream_name(target.upstream), &target.original, Effect::Read);
            let mut arguments = Map::new();
            for key in ["argument", "context"] {
                if let Some(v) = read.get(key) {
                    arguments.insert(key.to_owned(), v.clone());
                }
            }
            let base = observe::base_label(gw.upstream_cfg(target.upstream), None);
            let mut r = routed(target, tool, Value::Object(arguments), base);
            r.rewrite.push(("ref", Value::Object(rewritten)));
            Ok(r)
        }
        Route::Method { upstream, effect } => {
            let tool = judge::named(&upstream_name(upstream), method, effect);
            let mut arguments = read.clone();
            arguments.remove("_meta");
            let target = Target {
                upstream,
                original: method.to_owned(),
                exposed: method.to_owned(),
            };
            Ok(routed(
                target,
                tool,
                Value::Object(arguments),
                observe::base_label(gw.upstream_cfg(upstream), None),
            ))
        }
    }
}

/// A tool or prompt by exposed name, and why it is held back if it is. A host may call a tool
/// it remembers right after launching the gateway, before the upstream that owns it has
/// listed: an unknown name waits (bounded) for upstreams still starting.
async fn find_entry(
    gw: &Gateway,
    kind: Kind,
    name: &str,
) -> Result<(portcullis_core::catalog::Entry, Option<String>), GatewayError> {
    let look = |cat: &portcullis_core::catalog::Catalog| match route::entry(cat, kind, name) {
        Ok(_) => {
            let e = match kind {
                Kind::Tool => cat.tool(name),
                _ => cat.prompt(name),
            };
            e.cloned().map(|e| (e, None))
        }
        Err(Miss::Held(reason)) => cat.held_tool(name).map(|h| (h.entry.clone(), Some(reason))),
        Err(Miss::Unknown) => None,
    };
    if let Some(found) = look(&gw.catalog()) {
        return Ok(found);
    }
    gw.wait_settled(gw.start_wait()).await;
    look(&gw.catalog()).ok_or_else(|| gw.unknown_name(kind, name))
}

/// Judge: policy, then the flow rule, over the session's facts now.
fn judge(gw: &Gateway, ctx: &ClientCtx, action: Action, routed: &Routed) -> Result<(), GatewayError> {
    let side_effect = judge::side_effect(action, &routed.tool);
    let session = gw
        .taint
        .snapshot(&ctx.principal, &ctx.scope(), &routed.arguments, side_effect);
    let calls_in_window = match action {
        Action::CallTool => gw.calls_in_window(&ctx.principal, &routed.tool.upstream, &routed.tool.name),
        _ => 0,
    };
    let principal = ctx.policy_principal();
    let engine = &gw.cfg.policy.engine;
    let inputs = Inputs {
        principal: &principal,
        action,
        tool: &routed.tool,
        arguments: &routed.arguments,
        session: &session,
        now_unix: now_unix(),
        calls_in_window,
    };
    let decision = judge::decide(engine, &inputs);
    for e in &decision.errors {
        tracing::warn!(tool = %routed.tool.name, upstream = %routed.tool.upstream, error = %e, "policy could not be evaluated; denied");
    }
    let verdict = judge::verdict(engine, &inputs, decision);
    match &verdict {
        Err(e) => {
            tracing::info!(tool = %routed.tool.name, upstream = %routed.tool.upstream, error = %e, "refused");
        }
        // What a clean session's permitted calls name is the person's (or trusted) context.
        Ok(()) if !session.label.is_untrusted() => {
            gw.taint
                .note_clean_arguments(&ctx.principal, &ctx.scope(), &routed.target.exposed, &routed.arguments);
        }
        Ok(()) => {}
    }
    verdict
}

/// The decision record of a request.
fn decision_body(
    gw: &Gateway,
    ctx: &ClientCtx,
    action: Action,
    routed: &Routed,
    decision: &str,
    reason: &str,
) -> Value {
    let scope = ctx.scope();
    let labels = gw
        .taint
        .snapshot(&ctx.principal, &scope, &Value::Null, false)
        .label
        .names();
    crate::state::audit::decision_body(
        &ctx.principal,
        &ctx.client_name(),
        &scope.key,
        &action.to_string(),
        &routed.tool.upstream,
        &routed.tool.name,
        &routed.arguments,
        decision,
        reason,
        &labels,
    )
}

/// Records a decision that does not forward (a refusal, or "needs approval" before asking)
/// and waits until it is committed; a decision that cannot be recorded refuses the request.
async fn record(
    gw: &Gateway,
    ctx: &ClientCtx,
    action: Action,
    routed: &Routed,
    decision: &str,
    reason: &str,
) -> Result<(), GatewayError> {
    gw.metrics.decision(&routed.tool.upstream, decision);
    tracing::Span::current().record("mcp.decision", decision);
    if gw
        .audit
        .record(decision_body(gw, ctx, action, routed, decision, reason))
        .await
    {
        Ok(())
    } else {
        Err(GatewayError::AuditUnavailable)
    }
}

/// Records a request refused before it could be routed (unreadable params, an unknown name).
async fn refuse_unrouted(
    gw: &Gateway,
    ctx: &ClientCtx,
    plan: Plan,
    method: &str,
    e: &GatewayError,
) -> Result<(), GatewayError> {
    let decision = judge::outcome_name(e);
    gw.metrics.decision("", decision);
    let scope = ctx.scope();
    let body = crate::state::audit::decision_body(
        &ctx.principal,
        &ctx.client_name(),
        &scope.key,
        &plan.action.to_string(),
        "",
        method,
        &Value::Null,
        decision,
        &e.to_string(),
        &[],
    );
    if gw.audit.record(body).await {
        Ok(())
    } else {
        Err(GatewayError::AuditUnavailable)
    }
}

/// Complete: how a forwarded request ended, recorded after the fact.
async fn complete(gw: &Gateway, routed: &Routed, started: Instant, outcome: &str, detail: &str, bytes: usize) {
    gw.metrics
        .completed(&routed.tool.upstream, outcome, started.elapsed().as_secs_f64());
    gw.audit
        .note(completion_body(
            &routed.tool.upstream,
            &routed.tool.name,
            started,
            outcome,
            detail,
            bytes,
        ))
        .await;
}

/// A completion record. `detail` is the result's digest, or for an outcome that is no result
/// (failed, refused, cancelled) what happened, scrubbed of secrets.
fn completion_body(upstream: &str, target: &str, started: Instant, outcome: &str, detail: &str, bytes: usize) -> Value {
    let no_result = outcome.starts_with("failed") || outcome.starts_with("refused") || outcome == CANCELLED;
    json!({
        "kind": "completion",
        "upstream": upstream,
        "target": target,
        "outcome": outcome,
        "latency_us": u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
        "bytes": bytes,
        "digest": if no_result { Value::Null } else { Value::String(detail.to_owned()) },
        "detail": if no_result {
            Value::String(String::from_utf8_lossy(&crate::redact::scrub(detail.as_bytes())).into_owned())
        } else { Value::Null },
    })
}

/// The outcome of a forwarded request whose client stopped waiting for it.
const CANCELLED: &str = "cancelled";

/// A forwarded request that has not ended yet. Dropped unfinished — its client closed the
/// stream (a 2026-07-28 client's way to cancel) or sent `notifications/cancelled` — it records
/// the request's end as cancelled, so no permit is left in the log without an end.
struct Unfinished {
    audit: Option<crate::state::audit::AuditLog>,
    upstream: String,
    target: String,
    started: Instant,
}

impl Unfinished {
    /// The request ended; its completion is recorded by the caller.
    fn finished(mut self) {
        self.audit = None;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        let Some(audit) = self.audit.take() else { return };
        let body = completion_body(
            &self.upstream,
            &self.target,
            self.started,
            CANCELLED,
            "the client stopped waiting before the answer",
            0,
        );
        // Journaled here and now (a write of a few µs), so a shutdown right after cannot lose
        // it; only a full backlog leaves it to a task that waits for room.
        if !audit.note_now(body.clone())
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move { audit.note(body).await });
        }
    }
}

/// Observe: reads what came back strictly, labels and scans it, records it in the session, and
/// rewrites untrusted text where config asks. A result that cannot be read strictly is not
/// passed on: the client gets an error, and the session counts as having seen untrusted
/// content (it may have been meant to steer).
fn observe_reply(gw: &Gateway, ctx: &ClientCtx, routed: &Routed, reply: Reply) -> Result<Reply, GatewayError> {
    let origin = routed.target.exposed.as_str();
    let up = gw.upstream_cfg(routed.target.upstream);
    let upstream_name = routed.tool.upstream.clone();
    match reply {
        // The gateway's own (an approval round, a translated answer it built): nothing to read.
        Reply::Result(r) => Ok(Reply::Result(r)),
        Reply::Upstream(mut resp) => {
            let scope = ctx.scope();
            match &mut resp.outcome {
                Outcome::Result(raw_result) => {
                    let mut value = match observe::read(raw_result.get()) {
                        Ok(v) => v,
                        Err(why) => {
                            // Unread, it could have carried anything: the session counts
                            // as having seen an injection.
                            gw.taint.observe_output(
                                &ctx.principal,
                                &scope,
                                &Output {
                                    origin,
                                    label: Label::UNTRUSTED,
                                    injected: true,
                                    texts: &[],
                                    arguments: &Value::Null,
                                },
                            );
                            tracing::warn!(%origin, error = %why, "an upstream result cannot be read strictly; not passed on");
                            return Err(GatewayError::Upstream {
                                upstream: upstream_name,
                                error: crate::upstream::client::ClientError::Protocol(format!(
                                    "its result cannot be read unambiguously ({why}), so it was not passed on"
                                )),
                            });
                        }
                    };
                    let mut strings = Vec::new();
                    observe::texts(&value, &mut strings);
                    let seen = observe::scan(&gw.output_scanner, &strings, routed.base);
                    if !seen.findings.is_empty() {
                        let rules: Vec<&str> = seen.findings.iter().map(|f| f.rule).collect();
                        tracing::warn!(%origin, label = %seen.label, findings = ?rules, "tool output carries what an assistant should not act on");
                    }
                    gw.taint
                        .observe_seen(&ctx.principal, &scope, origin, &seen, &strings, &routed.arguments);
                    drop(strings);
                    if seen.label.is_untrusted()
                        && let Some(up) = up
                        && observe::rewrite(&mut value, up.sanitize, up.spotlight, origin)
                        && let Ok(rewritten) = serde_json::value::to_raw_value(&value)
                    {
                        *raw_result = rewritten;
                    }
                }
                Outcome::Error(e) => {
                    let data = match e.data.as_ref().map(|d| observe::read(d.get())) {
                        None => None,
                        Some(Ok(v)) => Some(v),
                        Some(Err(why)) => {
                            tracing::warn!(%origin, error = %why, "an upstream error's data cannot be read strictly; dropped");
                            e.data = None;
                            None
                        }
                    };
                    let mut strings = vec![e.message.as_str()];
                    if let Some(d) = &data {
                        observe::texts(d, &mut strings);
                    }
                    let seen = observe::scan(&gw.output_scanner, &strings, routed.base);
                    gw.taint
                        .observe_seen(&ctx.principal, &scope, origin, &seen, &strings, &routed.arguments);
                }
            }
            Ok(Reply::Upstream(resp))
        }
    }
}

impl Gateway {
    /// The lock on the rate limiter.
    pub(crate) fn limiter(&self) -> std::sync::MutexGuard<'_, portcullis_core::rate::Limiter> {
        self.limiter.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Calls of `principal` to one tool in the last minute, for `context.calls_in_window`.
    fn calls_in_window(&self, principal: &str, upstream: &str, tool: &str) -> u64 {
        self.limiter().calls_in_window(
            principal,
            &portcullis_core::rate::Scope::Tool(upstream.to_owned(), tool.to_owned()),
            Instant::now(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateways_own_members_never_go_upstream() {
        let mut p = Params::from_json(
            r#"{"name":"t","arguments":{},"task":{"ttl":1},"requestState":"pcl-approval.x","inputResponses":{}}"#,
        )
        .unwrap();
        strip_gateway_members(&mut p);
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"name":"t","arguments":{}}"#);
        let mut theirs = Params::from_json(r#"{"requestState":"upstream-state","inputResponses":{}}"#).unwrap();
        strip_gateway_members(&mut theirs);
        assert!(theirs.contains("requestState") && theirs.contains("inputResponses"));
    }
}
