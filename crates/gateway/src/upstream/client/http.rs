//! An upstream server reached over Streamable HTTP, in either era.
//!
//! Modern (2026-07-28): every request is its own POST with the request-metadata headers
//! (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`); the answer is JSON or a
//! per-request SSE stream; closing that stream cancels the request.
//!
//! Legacy (2025-11-25): `initialize` opens a session (`Mcp-Session-Id`); a GET stream carries
//! server-initiated traffic; a broken POST stream is resumed with `Last-Event-ID`; the session
//! ends with DELETE.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use portcullis_core::headers::{self, ParamHeader};
use portcullis_core::jsonrpc::code;
use portcullis_core::mcp::{self, Era};
use portcullis_core::sse::{SseDecoder, SseEvent};
use portcullis_core::{ErrorObject, Id, Limits, Message, Notification, Outcome, Params, RawObject, Request, Response};
use reqwest::Url;
use serde_json::Value;
use tokio::sync::{broadcast, oneshot};
use tokio::task::JoinHandle;

use super::registry::{Registry, forward_request, unanswerable};
use super::{
    Call, CallSink, ClientError, ClientEvent, ConnectOptions, ServerInfo, discover_params, from_initialize,
    initialize_params,
};

/// How many times a legacy POST stream is resumed before the call fails.
const MAX_RESUMPTIONS: usize = 5;
/// Wait before resuming when the server gave no `retry` hint.
const DEFAULT_RETRY: Duration = Duration::from_millis(500);

struct Shared {
    http: reqwest::Client,
    url: Url,
    headers: HeaderMap,
    session: Mutex<Option<HeaderValue>>,
    registry: Registry,
    closed: AtomicBool,
    events: broadcast::Sender<ClientEvent>,
    limits: Limits,
    label: String,
    /// `Mcp-Param-*` annotations of the tools seen in `tools/list`, by tool name.
    param_headers: Mutex<HashMap<String, Vec<ParamHeader>>>,
}

/// A Streamable HTTP server.
pub(crate) struct HttpLink {
    shared: Arc<Shared>,
    get_stream: Mutex<Option<JoinHandle<()>>>,
}

/// Builds the HTTP client used toward upstreams: rustls with the ring provider, no proxy
/// from the environment, no redirects (a redirect could carry headers to another origin).
pub fn http_client() -> Result<reqwest::Client, ClientError> {
    crate::install_crypto();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .map_err(|e| ClientError::Connect(format!("cannot build HTTP client: {e}")))
}

impl HttpLink {
    pub async fn connect(
        url: Url,
        headers: &BTreeMap<String, String>,
        opts: &ConnectOptions,
        events: broadcast::Sender<ClientEvent>,
    ) -> Result<(HttpLink, ServerInfo), ClientError> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| ClientError::Connect(format!("invalid header name `{k}`")))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| ClientError::Connect(format!("invalid value for header `{k}`")))?;
            map.insert(name, value);
        }
        let shared = Arc::new(Shared {
            http: http_client()?,
            url,
            headers: map,
            session: Mutex::new(None),
            registry: Registry::default(),
            closed: AtomicBool::new(false),
            events,
            limits: opts.limits,
            label: opts.label.clone(),
            param_headers: Mutex::new(HashMap::new()),
        });
        let link = HttpLink {
            shared,
            get_stream: Mutex::new(None),
        };
        let server = tokio::time::timeout(opts.handshake_timeout, link.handshake(opts))
            .await
            .map_err(|_| ClientError::Handshake(format!("no handshake within {:?}", opts.handshake_timeout)))??;
        if server.era == Era::Legacy {
            // Open the GET stream before any call: a server sends requests that belong to no
            // call (an elicitation, say) there, and drops them if no GET stream is open yet.
            let (opened, is_open) = oneshot::channel();
            let task = tokio::spawn(get_stream_loop(link.shared.clone(), server.version.clone(), opened));
            *lock(&link.get_stream) = Some(task);
            let _ = tokio::time::timeout(GET_STREAM_WAIT, is_open).await;
        }
        Ok((link, server))
    }

    async fn handshake(&self, opts: &ConnectOptions) -> Result<ServerInfo, ClientError> {
        let probe_server = ServerInfo {
            era: Era::Modern,
            version: mcp::V2026_07_28.into(),
            capabilities: Default::default(),
            server_info: None,
            instructions: None,
        };
        // Not a JSON-RPC answer (an empty 4xx, an HTML error page), or none: a legacy server.
        let legacy_sign = |e: &ClientError| matches!(e, ClientError::Protocol(_) | ClientError::Timeout(_));
        let probe = super::probe_modern(opts, legacy_sign, || {
            self.call(
                Call::new("server/discover", Some(discover_params()), opts.probe_timeout),
                &probe_server,
            )
        });
        if let Some(info) = probe.await? {
            return Ok(info);
        }
        let legacy = ServerInfo {
            era: Era::Legacy,
            version: String::new(),
            capabilities: Default::default(),
            server_info: None,
            instructions: None,
        };
        let call = Call::new("initialize", Some(initialize_params(opts)), opts.handshake_timeout);
        let resp = self.call(call, &legacy).await?;
        let result: Value = match resp.outcome {
            Outcome::Result(r) => serde_json::from_str(r.get()).map_err(|e| ClientError::Protocol(e.to_string()))?,
            Outcome::Error(e) => {
                return Err(ClientError::Handshake(format!(
                    "initialize failed: {} ({})",
                    e.message, e.code
                )));
            }
        };
        let info = from_initialize(&result)?;
        self.notify(
            Notification {
                method: "notifications/initialized".into(),
                params: None,
            },
            &info,
        )
        .await?;
        Ok(info)
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::SeqCst)
    }

    pub async fn call(&self, call: Call, server: &ServerInfo) -> Result<Response, ClientError> {
        if self.is_closed() {
            return Err(ClientError::Closed(format!(
                "upstream `{}`: session ended",
                self.shared.label
            )));
        }
        let shared = &self.shared;
        let id = shared.registry.next_id();
        let mut params = call.params;
        let done = shared
            .registry
            .register(id, &call.method, &mut params, call.sink.clone());
        let guard = CancelOnDrop {
            shared: shared.clone(),
            id,
            legacy: server.era == Era::Legacy && !server.version.is_empty(),
            version: server.version.clone(),
            armed: true,
        };
        let method = call.method;
        let extra = request_headers(shared, server, &method, params.as_ref());
        let is_tools_list = method == "tools/list";
        let msg = Message::from(Request {
            id: Id::Int(id),
            method,
            params,
        });
        let exchange = async {
            let resp = post(shared, server, &msg, extra).await?;
            read_answer(shared, server, resp, id, call.sink.as_ref()).await
        };
        let outcome = tokio::time::timeout(call.timeout, async {
            tokio::select! {
                r = exchange => r,
                r = done => r.unwrap_or_else(|_| Err(ClientError::Closed("session ended".into()))),
            }
        })
        .await;
        let resp = match outcome {
            Ok(Ok(resp)) => {
                guard.disarm();
                resp
            }
            Ok(Err(e)) => {
                guard.disarm();
                shared.registry.remove(id);
                return Err(e);
            }
            Err(_) => return Err(ClientError::Timeout(call.timeout)),
        };
        shared.registry.remove(id);
        Ok(if is_tools_list && server.era == Era::Modern {
            screen_tools_list(shared, resp)
        } else {
            resp
        })
    }

    pub async fn notify(&self, n: Notification, server: &ServerInfo) -> Result<(), ClientError> {
        let method = n.method.clone();
        let extra = request_headers(&self.shared, server, &method, n.params.as_ref());
        let resp = post(&self.shared, server, &Message::from(n), extra).await?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(ClientError::Protocol(format!(
                "notification `{method}` refused with HTTP {status}"
            )))
        }
    }

    pub async fn shutdown(&self, server: &ServerInfo) {
        if let Some(task) = lock(&self.get_stream).take() {
            task.abort();
        }
        let session = lock(&self.shared.session).clone();
        if let (Era::Legacy, Some(session)) = (server.era, session) {
            let _ = self
                .shared
                .http
                .delete(self.shared.url.clone())
                .headers(self.shared.headers.clone())
                .header("mcp-session-id", session)
                .header("mcp-protocol-version", server.version.as_str())
                .timeout(Duration::from_secs(5))
                .send()
                .await;
        }
        self.shared.closed.store(true, Ordering::SeqCst);
    }
}

impl Drop for HttpLink {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.get_stream).take() {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The era's request headers beyond the configured ones.
fn request_headers(
    shared: &Shared,
    server: &ServerInfo,
    method: &str,
    params: Option<&Params>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    let mut push = |name: &str, value: String| {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value)) {
            out.push((n, v));
        }
    };
    match server.era {
        Era::Modern => {
            push("mcp-protocol-version", server.version.clone());
            push("mcp-method", method.to_owned());
            let name_key = match method {
                "tools/call" | "prompts/get" => Some("name"),
                "resources/read" => Some("uri"),
                _ => None,
            };
            if let Some(name) = name_key.and_then(|k| params.and_then(|p| p.get_str(k))) {
                push("mcp-name", headers::encode_value(&name));
                if method == "tools/call" {
                    let args = params.and_then(|p| p.get_object("arguments")).unwrap_or_default();
                    if let Some(hs) = lock(&shared.param_headers).get(&name) {
                        for h in hs {
                            if let Some(v) = headers::param_value(&args, h) {
                                push(&format!("mcp-param-{}", h.name), v);
                            }
                        }
                    }
                }
            }
        }
        Era::Legacy if !server.version.is_empty() => {
            push("mcp-protocol-version", server.version.clone());
        }
        Era::Legacy => {}
    }
    out
}

async fn post(
    shared: &Shared,
    server: &ServerInfo,
    msg: &Message,
    extra: Vec<(HeaderName, HeaderValue)>,
) -> Result<reqwest::Response, ClientError> {
    let mut req = shared
        .http
        .post(shared.url.clone())
        .headers(shared.headers.clone())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(msg.to_vec());
    for (k, v) in extra {
        req = req.header(k, v);
    }
    if server.era == Era::Legacy
        && let Some(s) = lock(&shared.session).clone()
    {
        req = req.header("mcp-session-id", s);
    }
    let resp = req.send().await.map_err(|e| ClientError::Connect(describe(&e)))?;
    refused_credentials(&resp)?;
    if server.era == Era::Legacy {
        if let Some(s) = resp.headers().get("mcp-session-id") {
            *lock(&shared.session) = Some(s.clone());
        } else if resp.status() == StatusCode::NOT_FOUND && lock(&shared.session).is_some() {
            end_session(shared, "the server ended the session");
        }
    }
    Ok(resp)
}

/// A 401, or a 403 with a `Bearer` `insufficient_scope` challenge: the server wants other
/// credentials, which no retry and no other era will change (a 401 is not the sign of a legacy
/// server that a plain 4xx to `server/discover` is).
fn refused_credentials(resp: &reqwest::Response) -> Result<(), ClientError> {
    let challenge = || {
        portcullis_core::challenge::bearer(
            resp.headers()
                .get_all(http::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        )
    };
    match resp.status() {
        StatusCode::UNAUTHORIZED => Err(ClientError::Unauthorized(challenge())),
        StatusCode::FORBIDDEN => match challenge() {
            Some(c) if c.param("error") == Some("insufficient_scope") => Err(ClientError::InsufficientScope(c)),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

fn end_session(shared: &Shared, reason: &str) {
    if !shared.closed.swap(true, Ordering::SeqCst) {
        let reason = format!("upstream `{}`: {reason}", shared.label);
        shared.registry.fail_all(&reason);
        let _ = shared.events.send(ClientEvent::Closed(reason));
    }
}

/// Reads the answer to request `id`: a JSON body, or an SSE stream carrying related traffic
/// before the response. Legacy streams that break early are resumed with `Last-Event-ID`.
async fn read_answer(
    shared: &Arc<Shared>,
    server: &ServerInfo,
    resp: reqwest::Response,
    id: i64,
    sink: Option<&CallSink>,
) -> Result<Response, ClientError> {
    let status = resp.status();
    let is_sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    if !is_sse {
        let body = read_body(resp, shared.limits.max_frame_bytes).await?;
        return match Message::parse(&body, &shared.limits) {
            Ok(Message::Response(r)) => Ok(with_id(r, id)),
            _ if !status.is_success() => Err(ClientError::Protocol(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(body.get(..body.len().min(200)).unwrap_or_default())
            ))),
            Ok(other) => Err(ClientError::Protocol(format!(
                "expected a response, got {:?}",
                other.method()
            ))),
            Err(e) => Err(ClientError::Protocol(format!("unreadable response body: {e}"))),
        };
    }
    let mut stream = EventStream::new(resp, shared.limits);
    let mut resumptions = 0;
    loop {
        while let Some(msg) = stream.next_message().await? {
            match msg {
                Message::Response(r) if r.id == Some(Id::Int(id)) => {
                    stream.drain_in_background();
                    return Ok(r);
                }
                other => handle_related(shared, server, other, sink),
            }
        }
        // The stream ended without our response.
        let resumable = server.era == Era::Legacy && stream.last_id.is_some() && resumptions < MAX_RESUMPTIONS;
        if !resumable {
            return Err(ClientError::Closed(
                "the response stream ended before the response".into(),
            ));
        }
        resumptions += 1;
        tokio::time::sleep(stream.retry.unwrap_or(DEFAULT_RETRY)).await;
        let last = stream.last_id.clone().unwrap_or_default();
        let resp = get(shared, server, Some(&last)).await?;
        if !resp.status().is_success() {
            return Err(ClientError::Closed(format!(
                "resuming the response stream failed with HTTP {}",
                resp.status()
            )));
        }
        stream.replace_body(resp);
    }
}

/// Traffic on a call's own stream that is not its response.
fn handle_related(shared: &Arc<Shared>, server: &ServerInfo, msg: Message, sink: Option<&CallSink>) {
    match msg {
        Message::Notification(n) => {
            // Progress tokens and subscription ids map through the registry; anything else on
            // this stream belongs to this call.
            if let Some(n) = shared.registry.route_tagged(n)
                && let Some(sink) = sink
            {
                let _ = sink.notes.try_send(n);
            }
        }
        Message::Request(r) if r.method == "ping" => {
            let pong = Response::result(
                r.id,
                serde_json::value::to_raw_value(&serde_json::json!({})).unwrap_or_default(),
            );
            spawn_reply(shared.clone(), server.clone(), Err(pong));
        }
        Message::Request(r) => {
            let relayed = match sink {
                Some(sink) => forward_request(sink, r).map_err(|r| unanswerable(&r)),
                None => Err(unanswerable(&r)),
            };
            spawn_reply(shared.clone(), server.clone(), relayed);
        }
        Message::Response(r) => {
            // A response to another call (a resumed stream may carry one).
            shared.registry.dispatch(Message::Response(r));
        }
    }
}

/// Sends the answer to a server-to-client request back with a POST: the client's, when it was
/// relayed, else the reply made here.
fn spawn_reply(shared: Arc<Shared>, server: ServerInfo, relayed: Result<(Id, oneshot::Receiver<Outcome>), Response>) {
    tokio::spawn(async move {
        let resp = match relayed {
            Ok((id, rx)) => {
                let outcome = rx
                    .await
                    .unwrap_or_else(|_| Outcome::Error(ErrorObject::new(code::INTERNAL_ERROR, "the client went away")));
                Response { id: Some(id), outcome }
            }
            Err(reply) => reply,
        };
        let extra = request_headers(&shared, &server, "", None);
        if let Err(e) = post(&shared, &server, &Message::from(resp), extra).await {
            tracing::warn!(upstream = %shared.label, error = %e, "could not deliver a reply to the upstream");
        }
    });
}

async fn get(
    shared: &Shared,
    server: &ServerInfo,
    last_event_id: Option<&str>,
) -> Result<reqwest::Response, ClientError> {
    let mut req = shared
        .http
        .get(shared.url.clone())
        .headers(shared.headers.clone())
        .header("accept", "text/event-stream")
        .header("mcp-protocol-version", server.version.as_str());
    if let Some(s) = lock(&shared.session).clone() {
        req = req.header("mcp-session-id", s);
    }
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    req.send().await.map_err(|e| ClientError::Connect(describe(&e)))
}

/// The legacy standalone GET stream: server-initiated requests and notifications, reopened
/// (and resumed) when it drops, until the session ends.
/// How long connecting waits for the legacy GET stream to open (or be refused).
const GET_STREAM_WAIT: Duration = Duration::from_secs(2);

/// Keeps the legacy GET stream open, resuming it after drops. `opened` fires once the first
/// attempt is answered, whatever the answer.
async fn get_stream_loop(shared: Arc<Shared>, version: String, opened: oneshot::Sender<()>) {
    let mut opened = Some(opened);
    let server = ServerInfo {
        era: Era::Legacy,
        version,
        capabilities: Default::default(),
        server_info: None,
        instructions: None,
    };
    let mut last_id: Option<String> = None;
    let mut failures = 0u32;
    while !shared.closed.load(Ordering::SeqCst) {
        let answer = get(&shared, &server, last_id.as_deref()).await;
        if let Some(tx) = opened.take() {
            let _ = tx.send(());
        }
        let resp = match answer {
            Ok(r) => r,
            Err(_) => {
                failures += 1;
                tokio::time::sleep(backoff(failures)).await;
                continue;
            }
        };
        match resp.status() {
            StatusCode::METHOD_NOT_ALLOWED => return, // the server offers no GET stream
            StatusCode::NOT_FOUND if lock(&shared.session).is_some() => {
                end_session(&shared, "the server ended the session");
                return;
            }
            s if !s.is_success() => {
                failures += 1;
                tokio::time::sleep(backoff(failures)).await;
                continue;
            }
            _ => {}
        }
        failures = 0;
        let mut stream = EventStream::new(resp, shared.limits);
        while let Ok(Some(msg)) = stream.next_message().await {
            match shared.registry.dispatch(msg) {
                None | Some(super::registry::Unclaimed::Stale) => {}
                Some(super::registry::Unclaimed::Notification(n)) => {
                    let _ = shared.events.send(ClientEvent::Notification(n));
                }
                Some(super::registry::Unclaimed::Reply(r)) => spawn_reply(shared.clone(), server.clone(), Err(r)),
                Some(super::registry::Unclaimed::Relayed(id, rx)) => {
                    spawn_reply(shared.clone(), server.clone(), Ok((id, rx)));
                }
            }
        }
        last_id = stream.last_id.clone();
        tokio::time::sleep(stream.retry.unwrap_or(DEFAULT_RETRY)).await;
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << failures.min(7)))
}

/// Gives a response the caller's id (servers answering a parse error may omit it).
fn with_id(mut r: Response, id: i64) -> Response {
    if r.id.is_none() {
        r.id = Some(Id::Int(id));
    }
    r
}

async fn read_body(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, ClientError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| ClientError::Closed(describe(&e)))? {
        if body.len() + chunk.len() > max {
            return Err(ClientError::Protocol(format!(
                "response exceeds the limit of {max} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// JSON-RPC messages read off an SSE response, with the resumption state.
struct EventStream {
    resp: reqwest::Response,
    decoder: SseDecoder,
    queue: VecDeque<SseEvent>,
    limits: Limits,
    last_id: Option<String>,
    retry: Option<Duration>,
}

impl EventStream {
    fn new(resp: reqwest::Response, limits: Limits) -> Self {
        Self {
            resp,
            decoder: SseDecoder::new(limits.max_frame_bytes),
            queue: VecDeque::new(),
            limits,
            last_id: None,
            retry: None,
        }
    }

    fn replace_body(&mut self, resp: reqwest::Response) {
        self.resp = resp;
        self.decoder = SseDecoder::new(self.limits.max_frame_bytes);
        self.queue.clear();
    }

    /// Reads what is left of the body (the server ends the stream right after the response),
    /// bounded in time and bytes, so the connection goes back to the pool instead of being
    /// torn down and opened anew for the next call.
    fn drain_in_background(self) {
        const MAX_DRAIN: usize = 64 * 1024;
        let mut resp = self.resp;
        tokio::spawn(async move {
            let mut seen = 0usize;
            let drained = tokio::time::timeout(Duration::from_secs(2), async {
                while let Ok(Some(chunk)) = resp.chunk().await {
                    seen += chunk.len();
                    if seen > MAX_DRAIN {
                        break;
                    }
                }
            });
            let _ = drained.await;
        });
    }

    /// The next message; `None` at the end of the stream. Malformed events are skipped.
    async fn next_message(&mut self) -> Result<Option<Message>, ClientError> {
        loop {
            while let Some(ev) = self.queue.pop_front() {
                if let Some(id) = ev.id {
                    self.last_id = Some(id);
                }
                if let Some(ms) = ev.retry {
                    self.retry = Some(Duration::from_millis(ms));
                }
                if ev.data.trim().is_empty() {
                    continue;
                }
                match Message::parse(ev.data.as_bytes(), &self.limits) {
                    Ok(m) => return Ok(Some(m)),
                    Err(e) => tracing::warn!(error = %e, "upstream sent a malformed SSE event"),
                }
            }
            match self.resp.chunk().await {
                Ok(Some(chunk)) => {
                    let events = self
                        .decoder
                        .feed(&chunk)
                        .map_err(|e| ClientError::Protocol(e.to_string()))?;
                    self.queue.extend(events);
                }
                Ok(None) | Err(_) => return Ok(None),
            }
        }
    }
}

/// Records the `x-mcp-header` annotations of listed tools and drops tools whose annotations are
/// invalid, as the transport requires of clients.
fn screen_tools_list(shared: &Shared, resp: Response) -> Response {
    let Outcome::Result(raw) = &resp.outcome else {
        return resp;
    };
    let Ok(mut result) = RawObject::from_raw(raw) else {
        return resp;
    };
    let Ok(Some(tools)) = result.get_as::<Vec<RawObject>>("tools") else {
        return resp;
    };
    let mut kept = Vec::with_capacity(tools.len());
    let mut dropped = false;
    let mut table = lock(&shared.param_headers);
    for tool in tools {
        let name = tool.get_str("name").unwrap_or_default();
        let schema = tool
            .get_as::<Value>("inputSchema")
            .ok()
            .flatten()
            .unwrap_or(Value::Null);
        match headers::param_headers(&schema) {
            Ok(hs) => {
                if hs.is_empty() {
                    table.remove(&name);
                } else {
                    table.insert(name, hs);
                }
                kept.push(tool);
            }
            Err(e) => {
                tracing::warn!(upstream = %shared.label, tool = %name, reason = %e, "excluding a tool with an invalid x-mcp-header annotation");
                table.remove(&name);
                dropped = true;
            }
        }
    }
    if !dropped {
        return resp;
    }
    if result.insert("tools", &kept).is_err() {
        return resp;
    }
    Response {
        id: resp.id,
        outcome: Outcome::Result(result.to_raw()),
    }
}

/// Cancels the request at the server if the call is dropped before its response.
struct CancelOnDrop {
    shared: Arc<Shared>,
    id: i64,
    legacy: bool,
    version: String,
    armed: bool,
}

impl CancelOnDrop {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.shared.registry.remove(self.id);
        // Modern: dropping the response stream already told the server. Legacy: say so.
        if self.legacy {
            let shared = self.shared.clone();
            let id = self.id;
            let server = ServerInfo {
                era: Era::Legacy,
                version: self.version.clone(),
                capabilities: Default::default(),
                server_info: None,
                instructions: None,
            };
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    let mut params = Params::new();
                    let _ = params.insert("requestId", &id);
                    let _ = params.insert("reason", "cancelled by the gateway");
                    let n = Notification {
                        method: "notifications/cancelled".into(),
                        params: Some(params),
                    };
                    let extra = request_headers(&shared, &server, "", None);
                    let _ = post(&shared, &server, &Message::from(n), extra).await;
                });
            }
        }
    }
}
