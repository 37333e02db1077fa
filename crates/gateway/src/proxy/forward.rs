//! Forwarding one request to its upstream and everything related back, translating between
//! eras when client and upstream disagree:
//!
//! - legacy client, modern upstream: an `input_required` result becomes server-to-client
//!   requests to the client; its answers go back to the upstream as a retry.
//! - modern client, legacy upstream: the upstream's server-to-client requests become an
//!   `input_required` result; the upstream call waits parked until the client's retry, and the
//!   upstream's results and errors are made valid for the newer revision.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::jsonrpc::code;
use portcullis_core::mcp::{self, Era, Method, meta};
use portcullis_core::translate;
use portcullis_core::{ErrorObject, Notification, Outcome, Params, Response};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, oneshot};

use super::{Reply, START_WAIT, raw};
use crate::client::{Call, CallSink, ClientError, ServerRequest};
use crate::error::GatewayError;
use crate::exchange::{Exchange, Parked, TOKEN_PREFIX};
use crate::gateway::Gateway;
use crate::outbox::Outbox;
use crate::session::ClientCtx;
use crate::upstream::Upstream;

/// Most `input_required` rounds relayed to a legacy client for one call.
const MAX_INPUT_ROUNDS: usize = 16;

impl Gateway {
    /// Sends a request to an upstream and relays everything related back to the client,
    /// translating between eras where they differ.
    pub(super) async fn forward(
        &self,
        ctx: &ClientCtx,
        upstream: usize,
        method: &str,
        params: Params,
        target: String,
        out: &Outbox,
    ) -> Result<Reply, GatewayError> {
        let up = self
            .upstreams()
            .get(upstream)
            .ok_or_else(|| GatewayError::MethodNotFound(method.to_owned()))?;
        let client = up.client_for(&ctx.principal, START_WAIT).await?;
        let upstream_era = client.server().era;
        let mrtr = Method::of(method).allows_input_required();

        if ctx.era == Era::Legacy && upstream_era == Era::Modern && mrtr {
            return self.relay_input_rounds(ctx, up, &client, method, params, out).await;
        }
        if ctx.era == Era::Modern && upstream_era == Era::Legacy {
            // A modern client resuming an exchange the gateway parked, or a new call.
            let reply = match params.get_str("requestState").filter(|t| t.starts_with(TOKEN_PREFIX)) {
                Some(token) => self.resume(ctx, up, &token, &params, method, &target, out).await?,
                None => {
                    let exchange = spawn_exchange(client, up, method, params, ctx);
                    self.drive(ctx, up, exchange, method, &target, out).await?
                }
            };
            return Ok(legacy_reply_for_modern(Method::of(method), reply));
        }
        let exchange = spawn_exchange(client, up, method, params, ctx);
        self.drive(ctx, up, exchange, method, &target, out).await
    }

    /// Drives an exchange to its end. Server-to-client requests go to a legacy client
    /// directly; for a modern client the exchange is parked and the client asked to retry.
    async fn drive(
        &self,
        ctx: &ClientCtx,
        up: &Upstream,
        mut ex: Exchange,
        method: &str,
        target: &str,
        out: &Outbox,
    ) -> Result<Reply, GatewayError> {
        loop {
            match step(ctx, &mut ex, out).await {
                Step::Done(Ok(resp)) => return Ok(Reply::Upstream(resp)),
                Step::Done(Err(error)) => {
                    return Err(GatewayError::Upstream {
                        upstream: up.cfg.name.clone(),
                        error,
                    });
                }
                Step::Asked(asked) => {
                    if !Method::of(method).allows_input_required() {
                        // The client cannot be asked on this method: refuse the questions and
                        // let the upstream finish as it can.
                        for sr in asked {
                            let _ = sr.reply.send(Outcome::Error(ErrorObject::new(
                                code::METHOD_NOT_FOUND,
                                "the client cannot answer requests during this call",
                            )));
                        }
                        continue;
                    }
                    return self.park(ctx, up, ex, asked, method, target);
                }
            }
        }
    }

    /// Parks an exchange whose upstream asked questions, and returns them to the modern
    /// client as an `input_required` result.
    fn park(
        &self,
        ctx: &ClientCtx,
        up: &Upstream,
        ex: Exchange,
        asked: Vec<ServerRequest>,
        method: &str,
        target: &str,
    ) -> Result<Reply, GatewayError> {
        for sr in &asked {
            if let Some(cap) = mcp::capability_for(&sr.request.method)
                && !mcp::client_supports(&ctx.meta.capabilities, &sr.request.method)
            {
                // Dropping `ex` cancels the upstream call.
                return Err(GatewayError::MissingCapability(cap));
            }
        }
        let pending: Vec<(String, ServerRequest)> = asked
            .into_iter()
            .enumerate()
            .map(|(i, sr)| (format!("q{i}"), sr))
            .collect();
        Ok(self.ask(ctx, up, ex, pending, method, target))
    }

    /// Parks `ex` with its open questions under a fresh `requestState`, bound to this client
    /// and call, and puts the questions to the client as an `input_required` result.
    fn ask(
        &self,
        ctx: &ClientCtx,
        up: &Upstream,
        ex: Exchange,
        pending: Vec<(String, ServerRequest)>,
        method: &str,
        target: &str,
    ) -> Reply {
        let requests = input_requests(&pending);
        let parked = Parked::new(
            ex,
            pending,
            ctx.principal.clone(),
            method.to_owned(),
            target.to_owned(),
            up.index,
            self.parking.ttl(),
        );
        let token = self.parking.park(parked);
        Reply::Result(raw(&json!({
            "resultType": "input_required",
            "inputRequests": requests,
            "requestState": token,
        })))
    }

    /// A modern client's retry of a parked exchange: hand the answers to the upstream and
    /// continue.
    #[allow(clippy::too_many_arguments)]
    async fn resume(
        &self,
        ctx: &ClientCtx,
        up: &Upstream,
        token: &str,
        params: &Params,
        method: &str,
        target: &str,
        out: &Outbox,
    ) -> Result<Reply, GatewayError> {
        let parked = self.parking.take(token).ok_or(GatewayError::StaleRequestState)?;
        if parked.principal != ctx.principal
            || parked.method != method
            || parked.target != target
            || parked.upstream != up.index
        {
            return Err(GatewayError::StaleRequestState);
        }
        let answers = params.get_object("inputResponses").unwrap_or_default();
        let mut missing = Vec::new();
        for (key, sr) in parked.pending {
            match answers.get(&key) {
                Some(answer) => {
                    let _ = sr.reply.send(Outcome::Result(raw(answer)));
                }
                None => missing.push((key, sr)),
            }
        }
        let ex = parked.exchange;
        if !missing.is_empty() {
            // Ask again for what is still missing.
            return Ok(self.ask(ctx, up, ex, missing, method, target));
        }
        self.drive(ctx, up, ex, method, target, out).await
    }

    /// A legacy client calling a modern upstream: each `input_required` round becomes
    /// requests to the client, whose answers are sent back in a retry.
    async fn relay_input_rounds(
        &self,
        ctx: &ClientCtx,
        up: &Upstream,
        client: &Arc<crate::client::McpClient>,
        method: &str,
        mut params: Params,
        out: &Outbox,
    ) -> Result<Reply, GatewayError> {
        for _ in 0..MAX_INPUT_ROUNDS {
            let ex = spawn_exchange(client.clone(), up, method, params.clone(), ctx);
            let resp = match self.drive(ctx, up, ex, method, "", out).await? {
                Reply::Upstream(r) => r,
                other => return Ok(other),
            };
            let Some(ir) = input_required(&resp) else {
                return Ok(Reply::Upstream(resp));
            };
            let requests = ir
                .get("inputRequests")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for req in requests.values() {
                let m = req.get("method").and_then(Value::as_str).unwrap_or_default();
                if let Some(cap) = mcp::capability_for(m)
                    && !mcp::client_supports(&ctx.meta.capabilities, m)
                {
                    return Err(GatewayError::MissingCapability(cap));
                }
            }
            let asks = requests.iter().map(|(key, req)| {
                let m = req.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
                let p = req.get("params").and_then(Value::as_object).map(Params::from_map);
                async move { (key.clone(), out.ask(&m, p).await) }
            });
            let mut responses = Map::new();
            for (key, answer) in futures::future::join_all(asks).await {
                match answer {
                    Ok(Outcome::Result(r)) => {
                        responses.insert(key, serde_json::from_str(r.get()).unwrap_or(Value::Null));
                    }
                    Ok(Outcome::Error(e)) => {
                        // The client refused: tell the upstream by leaving the answer out; it
                        // decides (usually by asking again or failing the call).
                        tracing::debug!(key, error = %e.message, "client declined an input request");
                    }
                    Err(e) => {
                        return Err(GatewayError::Upstream {
                            upstream: up.cfg.name.clone(),
                            error: ClientError::Protocol(e.to_string()),
                        });
                    }
                }
            }
            let _ = params.insert("inputResponses", &responses);
            match ir.get("requestState") {
                Some(state) => {
                    let _ = params.insert("requestState", state);
                }
                None => {
                    params.remove("requestState");
                }
            }
        }
        Err(GatewayError::Upstream {
            upstream: up.cfg.name.clone(),
            error: ClientError::Protocol(format!("more than {MAX_INPUT_ROUNDS} input rounds")),
        })
    }
}

/// What a legacy upstream answered, made valid for a modern client (see
/// [`portcullis_core::translate`]). Results the gateway built itself are modern already.
fn legacy_reply_for_modern(method: Method, reply: Reply) -> Reply {
    match reply {
        Reply::Upstream(mut resp) => {
            resp.outcome = match resp.outcome {
                Outcome::Result(r) => Outcome::Result(translate::legacy_result_for_modern(method, r)),
                Outcome::Error(e) => Outcome::Error(translate::legacy_error_for_modern(method, e)),
            };
            Reply::Upstream(resp)
        }
        built @ Reply::Result(_) => built,
    }
}

/// The `input_required` result in a response, if that is what it is.
fn input_required(resp: &Response) -> Option<Map<String, Value>> {
    let Outcome::Result(r) = &resp.outcome else { return None };
    // Cheap test before parsing the whole result.
    if !r.get().contains("input_required") {
        return None;
    }
    let v: Map<String, Value> = serde_json::from_str(r.get()).ok()?;
    (v.get("resultType").and_then(Value::as_str) == Some("input_required")).then_some(v)
}

fn input_requests(pending: &[(String, ServerRequest)]) -> Map<String, Value> {
    pending
        .iter()
        .map(|(key, sr)| {
            let mut req = Map::new();
            req.insert("method".into(), Value::String(sr.request.method.clone()));
            if let Some(p) = &sr.request.params {
                let mut params = p.to_value();
                // The upstream's progress token belongs to its connection with the gateway and
                // means nothing to the client.
                if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
                    meta.remove(meta::PROGRESS_TOKEN);
                    if meta.is_empty()
                        && let Some(obj) = params.as_object_mut()
                    {
                        obj.remove("_meta");
                    }
                }
                req.insert("params".into(), params);
            }
            (key.clone(), Value::Object(req))
        })
        .collect()
}

/// Starts the upstream call in its own task.
fn spawn_exchange(
    client: Arc<crate::client::McpClient>,
    up: &Upstream,
    method: &str,
    params: Params,
    ctx: &ClientCtx,
) -> Exchange {
    let (notes_tx, notes) = mpsc::unbounded_channel();
    let (req_tx, requests) = mpsc::unbounded_channel();
    let (result_tx, result) = oneshot::channel();
    let call = Call {
        method: method.to_owned(),
        params: Some(params),
        timeout: up.cfg.call_timeout,
        sink: Some(CallSink {
            notes: notes_tx,
            requests: req_tx,
        }),
        meta: Some(ctx.meta.clone()),
    };
    let task = tokio::spawn(async move {
        let r = client.call(call).await;
        let _ = result_tx.send(r);
    });
    Exchange {
        result,
        notes,
        requests,
        task,
    }
}

enum Step {
    Done(Result<Response, ClientError>),
    Asked(Vec<ServerRequest>),
}

/// Runs an exchange until it finishes or (for modern clients) the upstream asks something.
async fn step(ctx: &ClientCtx, ex: &mut Exchange, out: &Outbox) -> Step {
    loop {
        tokio::select! {
            biased;
            Some(n) = ex.notes.recv() => relay_note(ctx, n, out),
            Some(sr) = ex.requests.recv() => {
                if ctx.era == Era::Legacy {
                    relay_request(ctx, sr, out);
                    continue;
                }
                // Questions often come in a burst: give siblings a moment to arrive.
                let mut asked = vec![sr];
                tokio::time::sleep(Duration::from_millis(5)).await;
                while let Ok(more) = ex.requests.try_recv() {
                    asked.push(more);
                }
                return Step::Asked(asked);
            }
            r = &mut ex.result => {
                while let Ok(n) = ex.notes.try_recv() {
                    relay_note(ctx, n, out);
                }
                return Step::Done(r.unwrap_or_else(|_| Err(ClientError::Closed("the upstream call ended".into()))));
            }
        }
    }
}

fn relay_note(ctx: &ClientCtx, n: Notification, out: &Outbox) {
    if n.method == "notifications/message" {
        let level = n.params.as_ref().and_then(|p| p.get_str("level"));
        if !ctx.wants_log(level.as_deref()) {
            return;
        }
    }
    out.notify(n);
}

/// Relays a legacy upstream's request to a legacy client, if it declared the capability.
fn relay_request(ctx: &ClientCtx, sr: ServerRequest, out: &Outbox) {
    if !mcp::client_supports(&ctx.meta.capabilities, &sr.request.method) {
        let _ = sr.reply.send(Outcome::Error(ErrorObject::new(
            code::METHOD_NOT_FOUND,
            format!("the client did not declare support for `{}`", sr.request.method),
        )));
        return;
    }
    let out = out.clone();
    tokio::spawn(async move {
        let answer = out.ask(&sr.request.method, sr.request.params).await;
        let _ = sr.reply.send(answer.unwrap_or_else(Outcome::from));
    });
}
