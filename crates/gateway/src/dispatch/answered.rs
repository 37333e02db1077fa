//! The methods the gateway answers itself: the handshakes, the merged lists (filtered by
//! policy and pins), the session's log level, the modern change feed (`subscriptions/listen`,
//! its resources judged as subscriptions first) and giving a subscription back.

use portcullis_core::catalog::{self, Kind};
use portcullis_core::mcp::{self, Era, meta};
use portcullis_core::{Id, Notification, Params, Request};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::ctx::ClientCtx;
use super::outbox::Outbox;
use super::{Reply, capabilities, raw, server_info};
use crate::error::GatewayError;
use crate::state::catalog::START_WAIT;
use crate::state::{Change, Gateway};
use crate::upstream::client::Call;

impl Gateway {
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

    pub(super) async fn list(
        &self,
        ctx: &ClientCtx,
        kind: Kind,
        params: Option<&Params>,
    ) -> Result<Reply, GatewayError> {
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

    pub(super) fn set_log_level(&self, ctx: &ClientCtx, params: Option<&Params>) -> Result<Reply, GatewayError> {
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

    /// `resources/unsubscribe`: gives the session's subscription back (the last one at the
    /// gateway ends the upstream's).
    pub(super) async fn unsubscribe(&self, ctx: &ClientCtx, params: Option<&Params>) -> Result<Reply, GatewayError> {
        let uri = params
            .and_then(|p| p.get_str("uri"))
            .ok_or_else(|| GatewayError::InvalidParams("`uri` must be a string".into()))?;
        let session = ctx
            .session
            .as_ref()
            .ok_or_else(|| GatewayError::MethodNotFound("resources/unsubscribe".into()))?;
        if session.unsubscribe(&uri)
            && let Some(upstream) = self.release_resource(&uri)
        {
            self.upstream_subscription(upstream, &uri, false).await?;
        }
        Ok(Reply::Result(raw(&json!({}))))
    }

    /// A modern `subscriptions/listen`: acknowledged at once, then list changes and resource
    /// updates as they happen, each tagged with the subscription id, until the client goes.
    pub(super) async fn listen(&self, ctx: &ClientCtx, req: Request, out: &Outbox) -> Result<Reply, GatewayError> {
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
        // Each resource is judged as a subscription first; one refused refuses the listen.
        let mut admitted = Vec::new();
        for uri in &uris {
            admitted.push(super::pipeline::admit_subscription(self, ctx, uri).await?);
        }
        let mut held = Vec::new();
        for (target, proof) in admitted {
            self.follow(&target, proof).await?;
            held.push(target.original);
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
