//! Serving one client request: the methods the gateway answers itself (handshakes, merged
//! lists, subscriptions) and routing by tool, prompt or resource to the owning upstream. The
//! forwarding itself, with its translation between eras, is in [`forward`].

mod forward;
mod output;

use portcullis_policy::Action;

use crate::judge;

use std::time::Duration;

use portcullis_core::catalog::{self, Kind};
use portcullis_core::mcp::{self, Era, Method, meta};
use portcullis_core::{Id, Notification, Outcome, Params, Request, Response};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::client::Call;
use crate::error::GatewayError;
use crate::gateway::{Change, Gateway};
use crate::outbox::Outbox;
use crate::session::ClientCtx;

/// How long a call waits for an upstream that is still starting.
const START_WAIT: Duration = Duration::from_secs(10);

/// What a handler produced.
enum Reply {
    /// A result the gateway built.
    Result(Box<RawValue>),
    /// A response from an upstream, passed through (its id is replaced).
    Upstream(Response),
}

impl Gateway {
    /// Notes how a forwarded call ended: latency, size and digest of what came back.
    fn audit_result(&self, target: &portcullis_policy::Tool, started: std::time::Instant, reply: &Reply) {
        let (outcome, bytes) = match reply {
            Reply::Result(r) => ("result", r.get().as_bytes()),
            Reply::Upstream(resp) => match &resp.outcome {
                portcullis_core::Outcome::Result(r) => ("result", r.get().as_bytes()),
                portcullis_core::Outcome::Error(e) => ("error", e.message.as_bytes()),
            },
        };
        self.metrics
            .completed(&target.upstream, outcome, started.elapsed().as_secs_f64());
        self.audit.note(json!({
            "kind": "completion",
            "upstream": target.upstream,
            "target": target.name,
            "outcome": outcome,
            "latency_us": u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "bytes": bytes.len(),
            "digest": crate::audit::digest(bytes),
        }));
    }
}

impl Reply {
    /// The bytes of the result (or error) that go back to the client.
    fn result_len(&self) -> usize {
        match self {
            Reply::Result(r) => r.get().len(),
            Reply::Upstream(resp) => match &resp.outcome {
                portcullis_core::Outcome::Result(r) => r.get().len(),
                portcullis_core::Outcome::Error(e) => e.message.len(),
            },
        }
    }
}

fn raw(v: &impl serde::Serialize) -> Box<RawValue> {
    serde_json::value::to_raw_value(v).unwrap_or_default()
}

/// The gateway's own identity.
pub fn server_info() -> Value {
    json!({"name": "portcullis", "version": env!("CARGO_PKG_VERSION")})
}

/// What the gateway declares, whatever its upstreams are: it merges, so every feature may
/// appear as upstreams come and go.
pub fn capabilities() -> Value {
    json!({
        "tools": {"listChanged": true},
        "prompts": {"listChanged": true},
        "resources": {"subscribe": true, "listChanged": true},
        "completions": {},
        "logging": {},
    })
}

impl Gateway {
    /// Serves one request; always produces a response with the request's id.
    pub async fn handle(&self, ctx: &ClientCtx, req: Request, out: &Outbox) -> Response {
        use tracing::Instrument as _;
        let id = req.id.clone();
        // One span per request (exported as an OpenTelemetry span when configured): the
        // method, who asked, and, for routed calls, the target, the decision and the upstream.
        let span = tracing::info_span!(
            "mcp.request",
            otel.name = %req.method,
            rpc.method = %req.method,
            enduser.id = %ctx.principal,
            mcp.target = tracing::field::Empty,
            mcp.decision = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let answered = self.dispatch(ctx, req, out).instrument(span.clone()).await;
        match answered {
            Ok(Reply::Result(r)) => Response::result(id, r),
            Ok(Reply::Upstream(mut r)) => {
                r.id = Some(id);
                r
            }
            Err(e) => {
                span.record("otel.status_code", "ERROR");
                tracing::debug!(parent: &span, error = %e, "request refused");
                Response::error(Some(id), e.to_error(ctx.era))
            }
        }
    }

    async fn dispatch(&self, ctx: &ClientCtx, req: Request, out: &Outbox) -> Result<Reply, GatewayError> {
        let method = Method::of(&req.method);
        if ctx.era == Era::Modern && method.removed_in_modern() {
            return Err(GatewayError::MethodNotFound(req.method));
        }
        match method {
            Method::Initialize => Ok(Reply::Result(raw(&self.initialize_result(ctx)))),
            Method::Ping => Ok(Reply::Result(raw(&json!({})))),
            Method::Discover if ctx.era == Era::Modern => Ok(Reply::Result(raw(&self.discover_result()))),
            Method::ToolsList => self.list(ctx, Kind::Tool, req.params.as_ref()).await,
            Method::PromptsList => self.list(ctx, Kind::Prompt, req.params.as_ref()).await,
            Method::ResourcesList => self.list(ctx, Kind::Resource, req.params.as_ref()).await,
            Method::ResourceTemplatesList => self.list(ctx, Kind::Template, req.params.as_ref()).await,
            Method::ToolsCall => self.call_named(ctx, req, Kind::Tool, out).await,
            Method::PromptsGet => self.call_named(ctx, req, Kind::Prompt, out).await,
            Method::ResourcesRead => self.read_resource(ctx, req, out).await,
            Method::Complete => self.complete(ctx, req, out).await,
            Method::ResourcesSubscribe => self.subscribe(ctx, req.params.as_ref(), true).await,
            Method::ResourcesUnsubscribe => self.subscribe(ctx, req.params.as_ref(), false).await,
            Method::SetLogLevel => self.set_log_level(ctx, req.params.as_ref()),
            Method::Listen if ctx.era == Era::Modern => self.listen(ctx, req, out).await,
            Method::Discover | Method::Listen | Method::Other => self.unknown(ctx, req, out).await,
        }
    }

    /// The legacy `initialize` result.
    pub fn initialize_result(&self, ctx: &ClientCtx) -> Value {
        let mut r = json!({
            "protocolVersion": ctx.version,
            "capabilities": capabilities(),
            "serverInfo": server_info(),
        });
        if let (Some(i), Some(m)) = (self.instructions(), r.as_object_mut()) {
            m.insert("instructions".into(), Value::String(i));
        }
        r
    }

    /// The modern `server/discover` result.
    pub fn discover_result(&self) -> Value {
        let mut r = json!({
            "resultType": "complete",
            "supportedVersions": mcp::MODERN_VERSIONS,
            "capabilities": capabilities(),
            "_meta": { meta::SERVER_INFO: server_info() },
            "ttlMs": 0,
            "cacheScope": "private",
        });
        if let (Some(i), Some(m)) = (self.instructions(), r.as_object_mut()) {
            m.insert("instructions".into(), Value::String(i));
        }
        r
    }

    /// Upstream instructions, each labelled with its upstream.
    fn instructions(&self) -> Option<String> {
        let parts: Vec<String> = self
            .upstreams()
            .iter()
            .filter_map(|u| match u.state() {
                crate::upstream::State::Ready(c) => c
                    .server()
                    .instructions
                    .as_ref()
                    .filter(|i| !i.trim().is_empty())
                    .map(|i| format!("[{}] {}", u.cfg.name, i.trim())),
                _ => None,
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n\n"))
    }

    async fn list(&self, ctx: &ClientCtx, kind: Kind, params: Option<&Params>) -> Result<Reply, GatewayError> {
        // A host lists right after it launches the gateway: give upstreams that are still
        // starting a bounded moment, so the first list is whole rather than empty. Once every
        // upstream has settled this returns at once; later arrivals announce `list_changed`.
        self.wait_settled(START_WAIT).await;
        let cat = self.catalog();
        let cursor = params.and_then(|p| p.get_str("cursor"));
        // Tools this principal may never call are not listed at all.
        let entries: Vec<&catalog::Entry> = match kind {
            Kind::Tool => cat.entries(kind).iter().filter(|e| self.may_list(ctx, e)).collect(),
            _ => cat.entries(kind).iter().collect(),
        };
        let page = catalog::paginate(&entries, cursor.as_deref(), self.cfg.gateway.page_size)
            .map_err(|e| GatewayError::InvalidParams(e.to_string()))?;
        // Assemble the JSON by hand: each definition is raw already.
        let mut body = String::with_capacity(64 + page.items.iter().map(|e| e.raw.get().len() + 1).sum::<usize>());
        body.push_str("{\"");
        body.push_str(kind.list_key());
        body.push_str("\":[");
        for (i, e) in page.items.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(e.raw.get());
        }
        body.push(']');
        if let Some(next) = page.next_cursor {
            body.push_str(",\"nextCursor\":");
            body.push_str(&Value::String(next).to_string());
        }
        if ctx.era == Era::Modern {
            let ttl = cat.ttl_ms.unwrap_or(0);
            body.push_str(&format!(
                ",\"resultType\":\"complete\",\"ttlMs\":{ttl},\"cacheScope\":\"private\",\"_meta\":{{\"{}\":{}}}",
                meta::SERVER_INFO,
                server_info()
            ));
        }
        body.push('}');
        RawValue::from_string(body)
            .map(Reply::Result)
            .map_err(|e| GatewayError::InvalidParams(format!("internal: {e}")))
    }

    /// `tools/call` and `prompts/get`: route by exposed name.
    async fn call_named(&self, ctx: &ClientCtx, req: Request, kind: Kind, out: &Outbox) -> Result<Reply, GatewayError> {
        let mut params = req.params.unwrap_or_default();
        let name = params
            .get_str("name")
            .ok_or_else(|| GatewayError::InvalidParams("`name` must be a string".into()))?;
        let lookup = |cat: &catalog::Catalog| {
            match kind {
                Kind::Tool => cat.tool(&name),
                _ => cat.prompt(&name),
            }
            .map(|e| {
                let (judged, base) = match kind {
                    Kind::Tool => (self.policy_tool(e), self.base_label(e.upstream, Some(e))),
                    _ => (
                        judge::readable(&self.upstream_name(e.upstream), &e.original),
                        self.base_label(e.upstream, None),
                    ),
                };
                (e.upstream, e.original.clone(), judged, base)
            })
        };
        let mut found = lookup(&self.catalog());
        if found.is_none() && kind == Kind::Tool && self.catalog().held_tool(&name).is_some() {
            return Err(self.unknown_name(kind, &name));
        }
        if found.is_none() {
            // A host may call a tool it remembers right after launching the gateway, before the
            // upstream that owns it has listed: wait (bounded) for upstreams still starting.
            self.wait_settled(START_WAIT).await;
            found = lookup(&self.catalog());
        }
        let Some((upstream, original, judged, base)) = found else {
            return Err(self.unknown_name(kind, &name));
        };
        tracing::Span::current().record("mcp.target", name.as_str());
        let action = match kind {
            Kind::Tool => Action::CallTool,
            _ => Action::GetPrompt,
        };
        let arguments: Value = params.get_as("arguments").ok().flatten().unwrap_or_else(|| json!({}));
        let origin = name.clone();
        let limits = self.limits_for(upstream, &original);
        let verdict = match self.judge(ctx, action, &judged, &arguments) {
            // A person may let it through: record that it needs approval, then ask and wait.
            Err(e) if e.needs_approval() && kind == Kind::Tool && self.cfg.approvals.ask => {
                let needs = Err(e);
                self.audit_decision(ctx, action, &judged, &arguments, &needs).await?;
                match needs {
                    Err(e) if crate::approvals::can_ask_in_round(ctx) => {
                        match self.approval_round(ctx, &judged, &arguments, e, &params).await? {
                            Some(input_required) => return Ok(Reply::Result(raw(&input_required))),
                            None => Ok(()),
                        }
                    }
                    Err(e) => self.seek_approval(ctx, &judged, &arguments, e, out).await.map(|_| ()),
                    Ok(()) => Ok(()),
                }
            }
            v => v,
        }
        .and_then(|()| {
            if kind != Kind::Tool {
                return Ok(());
            }
            self.check_credentials(upstream)?;
            // Limits are charged only for calls policy lets through.
            self.admit(&ctx.principal, &judged.upstream, &original, &limits)
        });
        self.audit_decision(ctx, action, &judged, &arguments, &verdict).await?;
        verdict?;
        let _ = params.insert("name", &original);
        // The approval round's fields are the gateway's, not the upstream's.
        if params
            .get_str("requestState")
            .is_some_and(|s| s.starts_with(crate::approvals::ROUND_PREFIX))
        {
            params.remove("requestState");
            params.remove("inputResponses");
        }
        let started = std::time::Instant::now();
        let reply = {
            use tracing::Instrument as _;
            let span = tracing::info_span!("mcp.upstream", otel.name = %format!("{} {}", req.method, original), upstream = %judged.upstream);
            self.forward(ctx, upstream, &req.method, params, name, out)
                .instrument(span)
                .await?
        };
        if kind == Kind::Tool {
            self.charge(&ctx.principal, &limits, reply.result_len());
            self.record_use(upstream, &original, &arguments, reply.result_len());
        }
        let reply = self.observe_reply(ctx, upstream, &origin, base, reply);
        self.audit_result(&judged, started, &reply);
        Ok(reply)
    }

    /// An upstream's name in config.
    fn upstream_name(&self, index: usize) -> String {
        self.upstreams()
            .get(index)
            .map(|u| u.cfg.name.clone())
            .unwrap_or_default()
    }

    /// An unknown name: a tool held back by its pin says so; a name that carries the prefix of
    /// an upstream that is down says that.
    fn unknown_name(&self, kind: Kind, name: &str) -> GatewayError {
        if kind == Kind::Tool
            && let Some(held) = self.catalog().held_tool(name)
        {
            return GatewayError::Held {
                tool: name.to_owned(),
                reason: held.reason(),
            };
        }
        for up in self.upstreams() {
            let prefix = format!("{}{}", up.cfg.prefix, catalog::SEPARATOR);
            if !up.cfg.prefix.is_empty()
                && name.starts_with(&prefix)
                && let crate::upstream::State::Down { reason, .. } = up.state()
            {
                return GatewayError::Unavailable(crate::upstream::Unavailable {
                    name: up.cfg.name.clone(),
                    reason,
                });
            }
        }
        match kind {
            Kind::Tool => GatewayError::UnknownTool(name.to_owned()),
            _ => GatewayError::UnknownPrompt(name.to_owned()),
        }
    }

    async fn read_resource(&self, ctx: &ClientCtx, req: Request, out: &Outbox) -> Result<Reply, GatewayError> {
        let params = req.params.unwrap_or_default();
        let uri = params
            .get_str("uri")
            .ok_or_else(|| GatewayError::InvalidParams("`uri` must be a string".into()))?;
        let upstream = self
            .route_uri(&uri)
            .ok_or_else(|| GatewayError::ResourceNotFound(uri.clone()))?;
        let judged = judge::readable(&self.upstream_name(upstream), &uri);
        let verdict = self.judge(ctx, Action::ReadResource, &judged, &json!({}));
        self.audit_decision(ctx, Action::ReadResource, &judged, &json!({}), &verdict)
            .await?;
        verdict?;
        let origin = uri.clone();
        let started = std::time::Instant::now();
        let reply = self.forward(ctx, upstream, &req.method, params, uri, out).await?;
        let reply = self.observe_reply(ctx, upstream, &origin, self.base_label(upstream, None), reply);
        self.audit_result(&judged, started, &reply);
        Ok(reply)
    }

    /// The upstream for a resource URI: the one that listed it or whose template matches, else
    /// the only upstream that serves resources.
    fn route_uri(&self, uri: &str) -> Option<usize> {
        self.catalog().resource_upstream(uri).or_else(|| {
            let mut with_resources = self.upstreams().iter().filter(|u| match u.state() {
                crate::upstream::State::Ready(c) => c.server().capabilities.contains_key("resources"),
                _ => false,
            });
            match (with_resources.next(), with_resources.next()) {
                (Some(u), None) => Some(u.index),
                _ => None,
            }
        })
    }

    async fn complete(&self, ctx: &ClientCtx, req: Request, out: &Outbox) -> Result<Reply, GatewayError> {
        let mut params = req.params.unwrap_or_default();
        let mut reference = params
            .get_object("ref")
            .ok_or_else(|| GatewayError::InvalidParams("`ref` must be an object".into()))?;
        let cat = self.catalog();
        let (upstream, target) = match reference.get("type").and_then(Value::as_str) {
            Some("ref/prompt") => {
                let name = reference
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let entry = cat
                    .prompt(&name)
                    .ok_or_else(|| self.unknown_name(Kind::Prompt, &name))?;
                reference.insert("name".into(), Value::String(entry.original.clone()));
                (entry.upstream, name)
            }
            Some("ref/resource") => {
                let uri = reference
                    .get("uri")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let up = cat
                    .template_upstream(&uri)
                    .or_else(|| self.route_uri(&uri))
                    .ok_or_else(|| GatewayError::ResourceNotFound(uri.clone()))?;
                (up, uri)
            }
            other => {
                return Err(GatewayError::InvalidParams(format!(
                    "unknown completion reference type {}",
                    other.map_or("(none)".into(), |t| format!("`{t}`"))
                )));
            }
        };
        let _ = params.insert("ref", &reference);
        self.forward(ctx, upstream, &req.method, params, target, out).await
    }

    fn set_log_level(&self, ctx: &ClientCtx, params: Option<&Params>) -> Result<Reply, GatewayError> {
        let level = params
            .and_then(|p| p.get_str("level"))
            .filter(|l| mcp::log_rank(l).is_some())
            .ok_or_else(|| {
                GatewayError::InvalidParams(format!("`level` must be one of {}", mcp::LOG_LEVELS.join(", ")))
            })?;
        if let Some(s) = &ctx.session {
            s.set_log_level(level.clone());
        }
        // Legacy upstreams keep one level for the gateway's session: pass it on so they emit
        // at least what this client wants; the gateway filters per client.
        for up in self.upstreams() {
            if let crate::upstream::State::Ready(c) = up.state()
                && c.server().era == Era::Legacy
                && c.server().capabilities.contains_key("logging")
            {
                let mut p = Params::new();
                let _ = p.insert("level", &level);
                let timeout = up.cfg.call_timeout;
                tokio::spawn(async move {
                    let _ = c.call(Call::new("logging/setLevel", Some(p), timeout)).await;
                });
            }
        }
        Ok(Reply::Result(raw(&json!({}))))
    }

    async fn subscribe(&self, ctx: &ClientCtx, params: Option<&Params>, on: bool) -> Result<Reply, GatewayError> {
        let uri = params
            .and_then(|p| p.get_str("uri"))
            .ok_or_else(|| GatewayError::InvalidParams("`uri` must be a string".into()))?;
        let session = ctx
            .session
            .as_ref()
            .ok_or_else(|| GatewayError::MethodNotFound("resources/subscribe".into()))?;
        if on {
            let upstream = self
                .route_uri(&uri)
                .ok_or_else(|| GatewayError::ResourceNotFound(uri.clone()))?;
            if session.subscribe(&uri) && self.retain_resource(&uri, upstream) {
                self.upstream_subscription(upstream, &uri, true).await?;
            }
        } else if session.unsubscribe(&uri)
            && let Some(upstream) = self.release_resource(&uri)
        {
            self.upstream_subscription(upstream, &uri, false).await?;
        }
        Ok(Reply::Result(raw(&json!({}))))
    }

    /// Subscribes a legacy upstream to a resource (modern ones get it through their listen
    /// stream, which follows the reference counts).
    async fn upstream_subscription(&self, upstream: usize, uri: &str, on: bool) -> Result<(), GatewayError> {
        let Some(up) = self.upstreams().get(upstream) else {
            return Ok(());
        };
        let client = up.client(START_WAIT).await?;
        if client.server().era != Era::Legacy {
            return Ok(());
        }
        let mut p = Params::new();
        let _ = p.insert("uri", uri);
        let method = if on {
            "resources/subscribe"
        } else {
            "resources/unsubscribe"
        };
        let resp = client
            .call(Call::new(method, Some(p), up.cfg.call_timeout))
            .await
            .map_err(|error| GatewayError::Upstream {
                upstream: up.cfg.name.clone(),
                error,
            })?;
        if let Outcome::Error(e) = resp.outcome {
            tracing::warn!(upstream = %up.cfg.name, %uri, error = %e.message, "upstream refused the subscription");
        }
        Ok(())
    }

    /// Re-subscribes a legacy upstream that came back to the resources clients still follow.
    pub(crate) async fn resubscribe(&self, upstream: usize) {
        let uris: Vec<String> = self.resource_refs_for(upstream);
        for uri in uris {
            let _ = self.upstream_subscription(upstream, &uri, true).await;
        }
    }

    /// A modern `subscriptions/listen`: acknowledged at once, then list changes and resource
    /// updates as they happen, each tagged with the subscription id, until the client goes.
    async fn listen(&self, _ctx: &ClientCtx, req: Request, out: &Outbox) -> Result<Reply, GatewayError> {
        let filter = req
            .params
            .as_ref()
            .and_then(|p| p.get_object("notifications"))
            .unwrap_or_default();
        let flag = |k: &str| filter.get(k).and_then(Value::as_bool).unwrap_or(false);
        let (tools, prompts, resources) = (
            flag("toolsListChanged"),
            flag("promptsListChanged"),
            flag("resourcesListChanged"),
        );
        let uris: Vec<String> = filter
            .get("resourceSubscriptions")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        let sub_id = match &req.id {
            Id::Int(n) => json!(n),
            Id::Str(s) => json!(s),
        };
        // Take the change feed before acknowledging, so nothing slips between.
        let mut changes = self.changes();
        let mut held = Vec::new();
        for uri in &uris {
            if let Some(up) = self.route_uri(uri) {
                if self.retain_resource(uri, up) {
                    let _ = self.upstream_subscription(up, uri, true).await;
                }
                held.push(uri.clone());
            }
        }
        let _release = ReleaseOnDrop { gw: self, uris: held };
        let mut ack = Map::new();
        for (k, on) in [
            ("toolsListChanged", tools),
            ("promptsListChanged", prompts),
            ("resourcesListChanged", resources),
        ] {
            if on {
                ack.insert(k.into(), json!(true));
            }
        }
        if !uris.is_empty() {
            ack.insert("resourceSubscriptions".into(), json!(uris));
        }
        let tag = json!({ meta::SUBSCRIPTION_ID: sub_id });
        out.notify(notification(
            "notifications/subscriptions/acknowledged",
            json!({"_meta": tag, "notifications": ack}),
        ));
        loop {
            let change = tokio::select! {
                c = changes.recv() => c,
                () = self.shutdown.cancelled() => {
                    return Ok(Reply::Result(raw(&json!({"resultType": "complete", "_meta": tag}))));
                }
            };
            let note = match change {
                Ok(Change::Tools) if tools => notification("notifications/tools/list_changed", json!({"_meta": tag})),
                Ok(Change::Prompts) if prompts => {
                    notification("notifications/prompts/list_changed", json!({"_meta": tag}))
                }
                Ok(Change::Resources) if resources => {
                    notification("notifications/resources/list_changed", json!({"_meta": tag}))
                }
                Ok(Change::ResourceUpdated { uri, params }) if uris.contains(&uri) => {
                    let mut p = params.to_value();
                    if let Some(m) = p.as_object_mut() {
                        m.insert("_meta".into(), tag.clone());
                    }
                    notification("notifications/resources/updated", p)
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    return Ok(Reply::Result(raw(&json!({"resultType": "complete", "_meta": tag}))));
                }
                _ => continue,
            };
            out.notify(note);
        }
    }

    /// A method the gateway does not know: forwarded when exactly one upstream could serve it.
    async fn unknown(&self, ctx: &ClientCtx, req: Request, out: &Outbox) -> Result<Reply, GatewayError> {
        if !self.cfg.gateway.forward_unknown_methods || self.upstreams().len() != 1 {
            return Err(GatewayError::MethodNotFound(req.method));
        }
        let target = req.method.clone();
        self.forward(ctx, 0, &req.method, req.params.unwrap_or_default(), target, out)
            .await
    }
}

struct ReleaseOnDrop<'a> {
    gw: &'a Gateway,
    uris: Vec<String>,
}

impl Drop for ReleaseOnDrop<'_> {
    fn drop(&mut self) {
        for uri in &self.uris {
            self.gw.release_resource(uri);
        }
    }
}

fn notification(method: &str, params: Value) -> Notification {
    Notification {
        method: method.to_owned(),
        params: params.as_object().map(Params::from_map),
    }
}
