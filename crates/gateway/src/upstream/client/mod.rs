//! The MCP client Portcullis uses toward its upstreams, and that `portcullis call` uses toward
//! any server: era detection, per-era request shaping, calls that carry related notifications
//! and server-to-client requests back to the caller, and cancellation when a call is dropped.
//!
//! Messages stay raw JSON end to end; the client only touches `_meta` (per-request protocol
//! fields, progress tokens) and the envelope.

pub mod http;
mod registry;
pub mod stdio;

use std::time::Duration;

use portcullis_core::jsonrpc::code;
use portcullis_core::mcp::{self, Era, meta};
use portcullis_core::{ErrorObject, Notification, Outcome, Params, Request, Response};
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::config::{EraChoice, Transport, UpstreamConfig};

/// Who the client says it is.
pub fn gateway_identity() -> Value {
    json!({"name": "portcullis", "version": env!("CARGO_PKG_VERSION")})
}

/// The per-request protocol fields a modern request carries on behalf of a client.
#[derive(Clone, Debug, Default)]
pub struct ClientMeta {
    /// Capabilities to declare.
    pub capabilities: Map<String, Value>,
    /// Client identity; the gateway's own when `None`.
    pub client_info: Option<Value>,
    /// Requested minimum log level.
    pub log_level: Option<String>,
}

/// Most notifications queued for one call; past it, more are dropped (progress and log lines
/// are worth less than a gateway that keeps its memory).
pub const SINK_NOTES: usize = 256;
/// Most server-to-client requests open for one call; past it, more are refused.
pub const SINK_REQUESTS: usize = 16;

/// Where a call's related traffic goes.
#[derive(Clone, Debug)]
pub struct CallSink {
    /// Progress, log messages and subscription notifications of this call.
    pub notes: mpsc::Sender<Notification>,
    /// Server-to-client requests raised while this call runs (legacy servers).
    pub requests: mpsc::Sender<ServerRequest>,
    /// Whose call it is (a principal and session), for traffic the server does not attribute:
    /// it reaches a call only when every call in flight has this owner. `None`: the gateway's
    /// own call.
    pub owner: Option<String>,
}

impl CallSink {
    /// A sink of `owner`'s, with bounded queues; its receiving ends.
    pub fn bounded(owner: Option<String>) -> (CallSink, mpsc::Receiver<Notification>, mpsc::Receiver<ServerRequest>) {
        let (notes, notes_rx) = mpsc::channel(SINK_NOTES);
        let (requests, requests_rx) = mpsc::channel(SINK_REQUESTS);
        (CallSink { notes, requests, owner }, notes_rx, requests_rx)
    }
}

/// A request from the server to the client, and where its answer goes.
#[derive(Debug)]
pub struct ServerRequest {
    /// The request as the server sent it.
    pub request: Request,
    /// The answer.
    pub reply: oneshot::Sender<Outcome>,
}

/// One request to send.
#[derive(Debug)]
pub struct Call {
    /// The method.
    pub method: String,
    /// The params as the caller wants them seen (the client adds or strips protocol fields).
    pub params: Option<Params>,
    /// How long to wait for the response.
    pub timeout: Duration,
    /// Where related traffic goes; without a sink it is dropped.
    pub sink: Option<CallSink>,
    /// Protocol fields for modern servers; the gateway's own when `None`.
    pub meta: Option<ClientMeta>,
}

impl Call {
    /// A plain call with no sink.
    pub fn new(method: impl Into<String>, params: Option<Params>, timeout: Duration) -> Self {
        Self {
            method: method.into(),
            params,
            timeout,
            sink: None,
            meta: None,
        }
    }
}

/// Why a call or connection failed. Errors the server sent are not `ClientError`s: they come
/// back as error responses.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be started or reached.
    #[error("cannot reach the server: {0}")]
    Connect(String),
    /// The server did not answer in time.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The connection ended before the response.
    #[error("the connection closed: {0}")]
    Closed(String),
    /// The server broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The server wants credentials it did not get, or refused the ones it got (HTTP 401),
    /// with its `Bearer` challenge when it sent one.
    #[error("the server needs authorization (HTTP 401{}): give this upstream its credential (`[upstreams.NAME.oauth]`, or `headers`)", describe_challenge(.0.as_ref()))]
    Unauthorized(Option<portcullis_core::challenge::Challenge>),
    /// The server says the credential it got lacks a scope (HTTP 403 `insufficient_scope`).
    #[error("the server needs a broader grant (HTTP 403 insufficient_scope{}): connect the upstream again with the scopes it names", describe_challenge(Some(.0)))]
    InsufficientScope(portcullis_core::challenge::Challenge),
}

/// What a challenge asks for, for an error message.
fn describe_challenge(c: Option<&portcullis_core::challenge::Challenge>) -> String {
    let Some(c) = c else { return String::new() };
    let mut out = String::new();
    if let Some(s) = c.param("scope") {
        out.push_str(&format!(", scope `{s}`"));
    }
    if let Some(m) = c.param("resource_metadata") {
        out.push_str(&format!(", metadata at {m}"));
    }
    out
}

/// What the server told us about itself.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    /// The era in use.
    pub era: Era,
    /// The protocol version in use.
    pub version: String,
    /// Declared capabilities.
    pub capabilities: Map<String, Value>,
    /// `serverInfo`, as sent.
    pub server_info: Option<Value>,
    /// `instructions`, as sent.
    pub instructions: Option<String>,
}

/// Something the server sent that belongs to no call.
#[derive(Clone, Debug)]
pub enum ClientEvent {
    /// A connection-level notification (list changes, resource updates, unattributed logs).
    Notification(Notification),
    /// The connection is gone; every later call fails.
    Closed(String),
}

/// Options for connecting.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Which era to speak.
    pub era: EraChoice,
    /// Capabilities declared in a legacy `initialize`.
    pub legacy_capabilities: Map<String, Value>,
    /// Frame limits for what the server sends.
    pub limits: portcullis_core::Limits,
    /// How long the modern probe may take before falling back to legacy.
    pub probe_timeout: Duration,
    /// How long the handshake may take.
    pub handshake_timeout: Duration,
    /// A label for logs.
    pub label: String,
}

impl ConnectOptions {
    /// Defaults for an upstream from config.
    pub fn for_upstream(cfg: &UpstreamConfig, limits: portcullis_core::Limits) -> Self {
        let mut caps = Map::new();
        caps.insert("sampling".into(), json!({}));
        caps.insert("elicitation".into(), json!({"form": {}, "url": {}}));
        if cfg.forward_roots {
            caps.insert("roots".into(), json!({"listChanged": true}));
        }
        Self {
            era: cfg.era,
            legacy_capabilities: caps,
            limits,
            probe_timeout: Duration::from_secs(5),
            handshake_timeout: cfg.start_timeout,
            label: cfg.name.clone(),
        }
    }
}

enum Link {
    Stdio(Box<stdio::StdioLink>),
    Http(http::HttpLink),
}

/// A connection to one MCP server.
pub struct McpClient {
    link: Link,
    server: ServerInfo,
    events: broadcast::Sender<ClientEvent>,
}

impl std::fmt::Debug for McpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpClient")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl McpClient {
    /// Starts or reaches the server and completes the era's handshake.
    pub async fn connect(transport: &Transport, opts: &ConnectOptions) -> Result<McpClient, ClientError> {
        let (events, _) = broadcast::channel(256);
        match transport {
            Transport::Stdio { .. } => {
                let (link, server) = stdio::StdioLink::connect(transport, opts, events.clone()).await?;
                Ok(McpClient {
                    link: Link::Stdio(Box::new(link)),
                    server,
                    events,
                })
            }
            Transport::Http { url, headers } => {
                let (link, server) = http::HttpLink::connect(url.clone(), headers, opts, events.clone()).await?;
                Ok(McpClient {
                    link: Link::Http(link),
                    server,
                    events,
                })
            }
        }
    }

    /// What the server declared.
    pub fn server(&self) -> &ServerInfo {
        &self.server
    }

    /// Connection-level traffic and the closing event.
    pub fn subscribe(&self) -> broadcast::Receiver<ClientEvent> {
        self.events.subscribe()
    }

    /// What the sandbox of a stdio upstream holds, as its helper reported (`None`: not a
    /// sandboxed stdio upstream, or not reported yet).
    pub fn sandbox_report(&self) -> Option<String> {
        match &self.link {
            Link::Stdio(l) => l
                .tail
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .report
                .clone(),
            Link::Http(_) => None,
        }
    }

    /// Whether the connection is known to be gone.
    pub fn is_closed(&self) -> bool {
        match &self.link {
            Link::Stdio(l) => l.is_closed(),
            Link::Http(l) => l.is_closed(),
        }
    }

    /// Sends a request and waits for its response. Dropping the future cancels the request
    /// at the server.
    pub async fn call(&self, mut call: Call) -> Result<Response, ClientError> {
        call.params = Some(shape_params(call.params.take(), &self.server, call.meta.as_ref()));
        match &self.link {
            Link::Stdio(l) => l.call(call).await,
            Link::Http(l) => l.call(call, &self.server).await,
        }
    }

    /// Sends a notification.
    pub async fn notify(&self, method: &str, params: Option<Params>) -> Result<(), ClientError> {
        let n = Notification {
            method: method.to_owned(),
            params,
        };
        match &self.link {
            Link::Stdio(l) => l.notify(n).await,
            Link::Http(l) => l.notify(n, &self.server).await,
        }
    }

    /// Ends the connection politely (closes stdin / deletes the session), then forcefully.
    pub async fn shutdown(&self) {
        match &self.link {
            Link::Stdio(l) => l.shutdown().await,
            Link::Http(l) => l.shutdown(&self.server).await,
        }
    }
}

/// Puts the era's protocol fields into `_meta`: modern requests get version, capabilities and
/// identity; legacy requests lose any modern fields a modern client put there.
fn shape_params(params: Option<Params>, server: &ServerInfo, cm: Option<&ClientMeta>) -> Params {
    let mut params = params.unwrap_or_default();
    // `_meta` read one level deep: the members the gateway does not set pass on as the client
    // wrote them, without being decoded and encoded again. One that is not an object (or names
    // a member twice) is not passed on.
    let mut m = params
        .get("_meta")
        .and_then(|raw| Params::from_raw(raw).ok())
        .unwrap_or_default();
    match server.era {
        Era::Modern => {
            // Encoding strings and maps cannot fail.
            let _ = m.insert(meta::PROTOCOL_VERSION, &server.version);
            let no_caps = Map::new();
            let _ = m.insert(meta::CLIENT_CAPABILITIES, cm.map_or(&no_caps, |c| &c.capabilities));
            let identity;
            let info = match cm.and_then(|c| c.client_info.as_ref()) {
                Some(info) => info,
                None => {
                    identity = gateway_identity();
                    &identity
                }
            };
            let _ = m.insert(meta::CLIENT_INFO, info);
            match cm.and_then(|c| c.log_level.as_deref()) {
                Some(level) => {
                    let _ = m.insert(meta::LOG_LEVEL, level);
                }
                None => {
                    m.remove(meta::LOG_LEVEL);
                }
            }
        }
        Era::Legacy => {
            for k in [
                meta::PROTOCOL_VERSION,
                meta::CLIENT_CAPABILITIES,
                meta::CLIENT_INFO,
                meta::LOG_LEVEL,
            ] {
                m.remove(k);
            }
        }
    }
    if m.is_empty() {
        params.remove("_meta");
    } else {
        params.insert_raw("_meta", m.to_raw());
    }
    params
}

/// Reads a `server/discover` result into server information, choosing the version to speak.
fn from_discover(result: &Value) -> Result<ServerInfo, ClientError> {
    let supported: Vec<&str> = result
        .get("supportedVersions")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let version = mcp::MODERN_VERSIONS
        .iter()
        .find(|v| supported.contains(v))
        .ok_or_else(|| {
            ClientError::Handshake(format!(
                "server supports {supported:?}, none of which Portcullis speaks"
            ))
        })?;
    Ok(ServerInfo {
        era: Era::Modern,
        version: (*version).to_owned(),
        capabilities: result
            .get("capabilities")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        server_info: result.get("_meta").and_then(|m| m.get(meta::SERVER_INFO)).cloned(),
        instructions: result.get("instructions").and_then(Value::as_str).map(str::to_owned),
    })
}

/// Reads an `initialize` result into server information.
fn from_initialize(result: &Value) -> Result<ServerInfo, ClientError> {
    let version = result
        .get("protocolVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| ClientError::Handshake("initialize result has no protocolVersion".into()))?;
    if !mcp::LEGACY_VERSIONS.contains(&version) {
        return Err(ClientError::Handshake(format!(
            "server chose protocol version `{version}`, which Portcullis does not speak"
        )));
    }
    Ok(ServerInfo {
        era: Era::Legacy,
        version: version.to_owned(),
        capabilities: result
            .get("capabilities")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default(),
        server_info: result.get("serverInfo").cloned(),
        instructions: result.get("instructions").and_then(Value::as_str).map(str::to_owned),
    })
}

/// The params of the modern probe.
fn discover_params() -> Params {
    let mut p = Params::new();
    let _ = p.insert(
        "_meta",
        &json!({
            meta::PROTOCOL_VERSION: mcp::V2026_07_28,
            meta::CLIENT_CAPABILITIES: {},
            meta::CLIENT_INFO: gateway_identity(),
        }),
    );
    p
}

/// The params of a legacy `initialize`.
fn initialize_params(opts: &ConnectOptions) -> Params {
    let mut p = Params::new();
    let _ = p.insert("protocolVersion", mcp::V2025_11_25);
    let _ = p.insert("capabilities", &opts.legacy_capabilities);
    let _ = p.insert("clientInfo", &gateway_identity());
    p
}

/// How a probe answer classifies the server.
enum Probe {
    Modern(ServerInfo),
    Legacy,
    /// The server refused the version but lists one we speak: ask again (version negotiation).
    Retry,
}

/// How many `server/discover` probes a handshake sends at most (one retry after a refusal).
const MAX_PROBES: usize = 2;

/// The modern half of a handshake: probes with `server/discover` (through `send`) unless
/// config says legacy. `Some(info)` for a modern server; `None` when the caller should go on
/// with `initialize`. `legacy_sign` says which transport failures mean "an older server" in
/// `auto` mode (for HTTP, a non-JSON-RPC answer; for stdio, only silence).
pub(crate) async fn probe_modern<F, Fut>(
    opts: &ConnectOptions,
    legacy_sign: fn(&ClientError) -> bool,
    mut send: F,
) -> Result<Option<ServerInfo>, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Response, ClientError>>,
{
    if opts.era == EraChoice::Legacy {
        return Ok(None);
    }
    for _ in 0..MAX_PROBES {
        match send().await {
            Ok(resp) => match classify_probe(&resp)? {
                Probe::Modern(info) => return Ok(Some(info)),
                Probe::Retry => continue,
                Probe::Legacy if opts.era == EraChoice::Modern => {
                    return Err(ClientError::Handshake(
                        "server did not answer server/discover as a modern server".into(),
                    ));
                }
                Probe::Legacy => return Ok(None),
            },
            Err(e) if opts.era == EraChoice::Auto && legacy_sign(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Classifies the answer to `server/discover`: a result or a recognised modern error means
/// modern; anything else means legacy.
fn classify_probe(resp: &Response) -> Result<Probe, ClientError> {
    match &resp.outcome {
        Outcome::Result(raw) => {
            let v: Value = serde_json::from_str(raw.get()).map_err(|e| ClientError::Protocol(e.to_string()))?;
            from_discover(&v).map(Probe::Modern)
        }
        Outcome::Error(e) if e.code == code::UNSUPPORTED_PROTOCOL_VERSION => {
            let supported = e
                .data
                .as_ref()
                .and_then(|d| serde_json::from_str::<Value>(d.get()).ok())
                .and_then(|d| d.get("supported").cloned())
                .unwrap_or(Value::Null);
            let mutual = supported
                .as_array()
                .is_some_and(|vs| vs.iter().any(|v| v.as_str().is_some_and(mcp::is_supported_modern)));
            if mutual {
                return Ok(Probe::Retry);
            }
            Err(ClientError::Handshake(format!(
                "server is modern but supports none of Portcullis' versions (it supports {supported})"
            )))
        }
        Outcome::Error(_) => Ok(Probe::Legacy),
    }
}

/// The error a call that never got an answer turns into for the caller.
pub fn error_for(e: &ClientError, upstream: &str) -> ErrorObject {
    match e {
        ClientError::Timeout(d) => ErrorObject::new(
            code::UPSTREAM_TIMEOUT,
            format!("upstream `{upstream}` did not answer within {} ms", d.as_millis()),
        ),
        other => ErrorObject::new(code::UPSTREAM_UNAVAILABLE, format!("upstream `{upstream}`: {other}")),
    }
}

#[cfg(test)]
mod tests;
