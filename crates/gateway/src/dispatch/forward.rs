//! Forward: a committed request goes to its upstream, and everything related comes back
//! through mediation ([`super::mediate`]), translated between eras when client and upstream
//! disagree:
//!
//! - legacy client, modern upstream: an `input_required` result becomes server-to-client
//!   requests to the client; its answers go back to the upstream as a retry.
//! - modern client, legacy upstream: the upstream's server-to-client requests become an
//!   `input_required` result; the upstream call waits parked until the client's retry, and the
//!   upstream's results and errors are made valid for the newer revision.
//!
//! Every function here that sends a client's request upstream takes the proof of its
//! committed decision ([`Committed`]): nothing is forwarded that was not judged and recorded.

use std::sync::Arc;
use std::time::Duration;

use portcullis_core::jsonrpc::code;
use portcullis_core::mcp::{self, Era, Method, meta};
use portcullis_core::translate;
use portcullis_core::{ErrorObject, Outcome, Params, Response};
use serde_json::{Map, Value, json};

use super::ctx::ClientCtx;
use super::mediate::Link;
use super::outbox::Outbox;
use super::pipeline::Routed;
use super::{Reply, raw};
use crate::error::GatewayError;
use crate::guard::route::Target;
use crate::state::Gateway;
use crate::state::audit::Committed;
use crate::state::catalog::START_WAIT;
use crate::upstream::Upstream;
use crate::upstream::client::{Call, CallSink, ClientError, McpClient, ServerRequest};
use crate::upstream::exchange::{Exchange, Parked, TOKEN_PREFIX};

/// Most `input_required` rounds relayed to a legacy client for one call.
const MAX_INPUT_ROUNDS: usize = 16;

/// Sends a committed request to its upstream and relays everything related back to the client,
/// translating between eras where they differ.
pub(super) async fn forward(
    gw: &Gateway,
    ctx: &ClientCtx,
    routed: &Routed,
    method: &str,
    params: Params,
    out: &Outbox,
    proof: Committed,
) -> Result<Reply, GatewayError> {
    let up = gw
        .upstreams()
        .get(routed.target.upstream)
        .ok_or_else(|| GatewayError::MethodNotFound(method.to_owned()))?;
    // A call waits for its upstream to finish starting (bounded by its start timeout), never
    // refused because it came early.
    let client = up
        .client_for(&ctx.principal, up.cfg.start_timeout.max(START_WAIT))
        .await?;
    let link = Link {
        gw,
        ctx,
        up,
        routed,
        out,
    };
    let upstream_era = client.server().era;
    let mrtr = Method::of(method).allows_input_required();

    if ctx.era == Era::Legacy && upstream_era == Era::Modern && mrtr {
        let reply = relay_input_rounds(&link, &client, method, params, proof).await?;
        return Ok(modern_reply_for_legacy(Method::of(method), reply));
    }
    if ctx.era == Era::Modern && upstream_era == Era::Legacy {
        // A modern client resuming an exchange the gateway parked, or a new call.
        let reply = match params.get_str("requestState").filter(|t| t.starts_with(TOKEN_PREFIX)) {
            Some(token) => resume(&link, &token, &params, method).await?,
            None => {
                let exchange = exchange_for(client, up, method, params, ctx, proof);
                drive(&link, exchange, method).await?
            }
        };
        return Ok(legacy_reply_for_modern(Method::of(method), reply));
    }
    let exchange = exchange_for(client, up, method, params, ctx, proof);
    let reply = drive(&link, exchange, method).await?;
    if ctx.era == Era::Modern {
        // A modern upstream's questions reach a modern client inside its result: each is
        // mediated like any other request an upstream makes of the client.
        return link.mediate_input_required(reply).await;
    }
    if upstream_era == Era::Modern {
        return Ok(modern_reply_for_legacy(Method::of(method), reply));
    }
    Ok(reply)
}

impl Gateway {
    /// Follows a resource at its upstream (one subscription per URI there, counted over every
    /// client that follows it), on the proof of a committed `subscribe` decision.
    pub(crate) async fn follow(&self, target: &Target, _proof: Committed) -> Result<(), GatewayError> {
        match self.retain_resource(&target.original, target.upstream) {
            None => Err(GatewayError::TooMany(format!(
                "the gateway follows {} resources already",
                crate::state::catalog::MAX_RESOURCE_REFS
            ))),
            Some(true) => {
                let subscribed = self
                    .upstream_subscription(target.upstream, &target.original, true)
                    .await;
                if subscribed.is_err() {
                    self.release_resource(&target.original);
                }
                subscribed
            }
            Some(false) => Ok(()),
        }
    }

    /// `resources/subscribe`, committed: the session follows the resource.
    pub(crate) async fn subscribe_upstream(
        &self,
        ctx: &ClientCtx,
        target: &Target,
        proof: Committed,
    ) -> Result<Reply, GatewayError> {
        let session = ctx
            .session
            .as_ref()
            .ok_or_else(|| GatewayError::MethodNotFound("resources/subscribe".into()))?;
        match session.subscribe(&target.original) {
            None => {
                return Err(GatewayError::TooMany(format!(
                    "this session follows {} resources already",
                    super::ctx::MAX_SUBSCRIPTIONS
                )));
            }
            Some(false) => {}
            Some(true) => {
                if let Err(e) = self.follow(target, proof).await {
                    session.unsubscribe(&target.original);
                    return Err(e);
                }
            }
        }
        Ok(Reply::Result(raw(&json!({}))))
    }
}

/// Drives an exchange to its end. Server-to-client requests go to a legacy client directly
/// (mediated); for a modern client the exchange is parked and the client asked to retry.
async fn drive(link: &Link<'_>, mut ex: Exchange, method: &str) -> Result<Reply, GatewayError> {
    loop {
        match step(link, &mut ex).await {
            Step::Done(Ok(resp)) => return Ok(Reply::Upstream(resp)),
            Step::Done(Err(error)) => {
                return Err(GatewayError::Upstream {
                    upstream: link.up.cfg.name.clone(),
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
                let mut pending = Vec::new();
                for sr in asked {
                    match link.request(&sr.request).await {
                        Ok(shaped) => pending.push(ServerRequest {
                            request: shaped,
                            reply: sr.reply,
                        }),
                        Err(refusal) => {
                            let _ = sr.reply.send(Outcome::Error(refusal));
                        }
                    }
                }
                if pending.is_empty() {
                    continue;
                }
                return park(link, ex, pending, method);
            }
        }
    }
}

/// Parks an exchange whose upstream asked questions, and returns them to the modern client as
/// an `input_required` result.
fn park(link: &Link<'_>, ex: Exchange, asked: Vec<ServerRequest>, method: &str) -> Result<Reply, GatewayError> {
    for sr in &asked {
        if let Some(cap) = mcp::capability_for(&sr.request.method)
            && !mcp::client_supports(&link.ctx.meta.capabilities, &sr.request.method)
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
    ask(link, ex, pending, method)
}

/// Parks `ex` with its open questions under a fresh `requestState`, bound to this client and
/// call, and puts the questions to the client as an `input_required` result.
fn ask(
    link: &Link<'_>,
    mut ex: Exchange,
    pending: Vec<(String, ServerRequest)>,
    method: &str,
) -> Result<Reply, GatewayError> {
    let requests = input_requests(&pending);
    // A parked exchange goes on with nobody polling it here.
    ex.detach();
    let parked = Parked::new(
        ex,
        pending,
        link.ctx.principal.clone(),
        method.to_owned(),
        link.routed.target.exposed.clone(),
        link.up.index,
        link.gw.parking.ttl(),
    );
    let token = link.gw.parking.park(parked).ok_or_else(|| {
        GatewayError::TooMany("too many calls of this principal wait for answers; answer or drop one first".into())
    })?;
    Ok(Reply::Result(raw(&json!({
        "resultType": "input_required",
        "inputRequests": requests,
        "requestState": token,
    }))))
}

/// A modern client's retry of a parked exchange: hand the answers to the upstream and continue.
async fn resume(link: &Link<'_>, token: &str, params: &Params, method: &str) -> Result<Reply, GatewayError> {
    let parked = link.gw.parking.take(token).ok_or(GatewayError::StaleRequestState)?;
    if parked.principal != link.ctx.principal
        || parked.method != method
        || parked.target != link.routed.target.exposed
        || parked.upstream != link.up.index
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
        return ask(link, ex, missing, method);
    }
    drive(link, ex, method).await
}

/// A legacy client calling a modern upstream: each `input_required` round becomes requests to
/// the client (each mediated), whose answers are sent back in a retry.
async fn relay_input_rounds(
    link: &Link<'_>,
    client: &Arc<McpClient>,
    method: &str,
    mut params: Params,
    proof: Committed,
) -> Result<Reply, GatewayError> {
    let up = link.up;
    // One decision licenses the call and its retries: they carry the answers it asked for.
    let proof = Arc::new(proof);
    for _ in 0..MAX_INPUT_ROUNDS {
        let ex = exchange_shared(client.clone(), up, method, params.clone(), link.ctx, &proof);
        let resp = match drive(link, ex, method).await? {
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
        let mut shaped = Vec::new();
        for (key, req) in &requests {
            let request = link.input_request(key, req).await?;
            if let Some(cap) = mcp::capability_for(&request.method)
                && !mcp::client_supports(&link.ctx.meta.capabilities, &request.method)
            {
                return Err(GatewayError::MissingCapability(cap));
            }
            shaped.push((key.clone(), request));
        }
        let asks = shaped
            .into_iter()
            .map(|(key, request)| async move { (key, link.out.ask(&request.method, request.params).await) });
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

/// What a modern upstream answered, without the fields a legacy client does not know (see
/// [`portcullis_core::translate`]).
fn modern_reply_for_legacy(method: Method, reply: Reply) -> Reply {
    match reply {
        Reply::Upstream(mut resp) => {
            if let Outcome::Result(r) = resp.outcome {
                resp.outcome = Outcome::Result(translate::modern_result_for_legacy(method, r));
            }
            Reply::Upstream(resp)
        }
        built @ Reply::Result(_) => built,
    }
}

/// The `input_required` result in a response, if that is what it is.
pub(super) fn input_required(resp: &Response) -> Option<Map<String, Value>> {
    let Outcome::Result(r) = &resp.outcome else { return None };
    // Cheap test before parsing the whole result.
    if !r.get().contains("input_required") {
        return None;
    }
    let v: Map<String, Value> = portcullis_core::strict::parse_object(r.get()).ok()?;
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

/// The exchange of a committed request upstream (sent when the handler first polls it), its
/// related traffic owned by this client's principal and session.
fn exchange_for(
    client: Arc<McpClient>,
    up: &Upstream,
    method: &str,
    params: Params,
    ctx: &ClientCtx,
    proof: Committed,
) -> Exchange {
    exchange_shared(client, up, method, params, ctx, &Arc::new(proof))
}

/// [`exchange_for`] for a decision that licenses several rounds of one call.
fn exchange_shared(
    client: Arc<McpClient>,
    up: &Upstream,
    method: &str,
    params: Params,
    ctx: &ClientCtx,
    _proof: &Arc<Committed>,
) -> Exchange {
    let (sink, notes, requests) = CallSink::bounded(Some(ctx.owner()));
    let call = Call {
        method: method.to_owned(),
        params: Some(params),
        timeout: up.cfg.call_timeout,
        sink: Some(sink),
        meta: Some(ctx.meta.clone()),
    };
    Exchange::new(async move { client.call(call).await }, notes, requests)
}

enum Step {
    Done(Result<Response, ClientError>),
    Asked(Vec<ServerRequest>),
}

/// Runs an exchange until it finishes or (for modern clients) the upstream asks something.
async fn step(link: &Link<'_>, ex: &mut Exchange) -> Step {
    loop {
        tokio::select! {
            biased;
            Some(n) = ex.notes.recv() => link.relay_note(n),
            Some(sr) = ex.requests.recv() => {
                // From the upstream's first question on, the call runs in its own task, as
                // the answers travel: the upstream's transport (an HTTP response stream, read
                // by the call) must go on while this handler waits for siblings, relays, or
                // parks the exchange.
                ex.detach();
                if link.ctx.era == Era::Legacy {
                    // The client may never answer (nor a person decide): the call's own end,
                    // at its timeout or the upstream's answer, must not wait for that.
                    let relay = link.relay_request(sr);
                    tokio::pin!(relay);
                    loop {
                        tokio::select! {
                            biased;
                            () = &mut relay => break,
                            Some(n) = ex.notes.recv() => link.relay_note(n),
                            r = &mut ex.result => {
                                while let Ok(n) = ex.notes.try_recv() {
                                    link.relay_note(n);
                                }
                                return Step::Done(r);
                            }
                        }
                    }
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
                    link.relay_note(n);
                }
                return Step::Done(r);
            }
        }
    }
}
