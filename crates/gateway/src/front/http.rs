//! The gateway as a Streamable HTTP server at `/mcp`, both eras on one endpoint.
//!
//! Every request first passes the DNS-rebinding guard (`Host` and `Origin` must be loopback or
//! explicitly allowed). A request whose `MCP-Protocol-Version` is a modern version is served
//! statelessly after its headers are checked against its body; otherwise it belongs to a
//! legacy session opened by `initialize` (`Mcp-Session-Id`, GET stream, DELETE, resumable
//! streams).

#![expect(
    clippy::result_large_err,
    reason = "an HTTP rejection is returned as the response itself, on the cold path; boxing it buys nothing"
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method as HttpMethod, StatusCode, header};
use portcullis_core::headers as mcp_headers;
use portcullis_core::jsonrpc::code;
use portcullis_core::mcp::{self, Era, Method, RequestMeta};
use portcullis_core::{ErrorObject, Id, Message, Notification, Request as RpcRequest, Response as RpcResponse, sse};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::streams::{KEEP_ALIVE, StreamLog, Streams};
use crate::bearer::{Bearer, Rejection};
use crate::config::ClientAuth;
use crate::config::bearer::BearerConfig;
use crate::dispatch::ctx::{ClientCtx, Session};
use crate::error::GatewayError;
use crate::state::Gateway;
use crate::state::keys::AuthError;

/// The principal of an unauthenticated loopback client.
const LOCAL_PRINCIPAL: &str = "local";
/// Legacy sessions idle this long are ended.
const SESSION_IDLE: Duration = Duration::from_secs(3600);
/// Most concurrent legacy sessions.
const MAX_SESSIONS: usize = 10_000;
/// Most concurrent legacy sessions of one principal; a principal past it loses its own least
/// recently used one, never anyone else's.
pub const MAX_SESSIONS_PER_PRINCIPAL: usize = 64;

struct HttpSession {
    session: Arc<Session>,
    /// Who opened it: only they may use it.
    principal: String,
    in_flight: Mutex<HashMap<Id, tokio::task::AbortHandle>>,
    streams: Streams,
    standalone: Mutex<Option<Arc<StreamLog>>>,
    last_seen: Mutex<Instant>,
    pump: JoinHandle<()>,
    /// Requests this session may have in flight at once.
    permits: Arc<Semaphore>,
}

impl Drop for HttpSession {
    fn drop(&mut self) {
        self.pump.abort();
        self.streams.close_all();
    }
}

/// Shared state of the HTTP front.
pub struct HttpFront {
    gw: Arc<Gateway>,
    sessions: Mutex<HashMap<String, Arc<HttpSession>>>,
    /// In-flight request permits of stateless (2026-07-28) clients, per principal.
    principal_permits: Mutex<HashMap<String, Arc<Semaphore>>>,
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    /// The validator of identity providers' tokens (`auth = "oauth"`); `None` there when it
    /// could not be built, and then every token is refused.
    bearer: Option<Arc<Bearer>>,
}

/// Who a request comes from, once authenticated.
#[derive(Clone, Debug)]
struct Authenticated {
    principal: String,
    /// Groups and roles from the identity provider (empty otherwise).
    attributes: Arc<portcullis_policy::Attributes>,
    /// The scopes an identity provider's token grants; `None` when the client did not
    /// authenticate with one (an API key, or no authentication), and scopes do not apply.
    scopes: Option<Vec<String>>,
    /// When the credential stops being valid (an access token's `exp`): long-lived streams
    /// opened with it end then, and the client comes back with a fresh token.
    until: Option<tokio::time::Instant>,
}

impl Authenticated {
    fn plain(principal: String) -> Self {
        Authenticated {
            principal,
            attributes: Arc::default(),
            scopes: None,
            until: None,
        }
    }
}

impl std::fmt::Debug for HttpFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFront").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Builds the router serving `/mcp`.
pub fn router(gw: Arc<Gateway>) -> Router {
    let bearer_cfg = match &gw.cfg.gateway.auth {
        ClientAuth::OAuth(b) => Some(b.clone()),
        _ => None,
    };
    let bearer = bearer_cfg
        .as_ref()
        .and_then(|b| match Bearer::new(b.clone(), gw.introspection_secret.clone()) {
        Ok(v) => Some(Arc::new(v)),
        Err(e) => {
            tracing::error!(error = %e, "cannot build the HTTP client for identity providers: every token will be refused");
            None
        }
    });
    if let Some(b) = &bearer {
        let b = b.clone();
        tokio::spawn(async move { b.prefetch().await });
    }
    let front = Arc::new(HttpFront {
        allowed_hosts: gw.cfg.gateway.allowed_hosts.clone(),
        allowed_origins: gw.cfg.gateway.allowed_origins.clone(),
        gw,
        sessions: Mutex::new(HashMap::new()),
        principal_permits: Mutex::new(HashMap::new()),
        bearer,
    });
    spawn_session_reaper(Arc::downgrade(&front));
    let mut router = Router::new();
    if let Some(b) = &bearer_cfg {
        // Protected Resource Metadata (RFC 9728), where clients look for it: under the path of
        // the resource, and at the root.
        router = router.route(PRM_PATH, any(resource_metadata));
        if !b.resource_path.is_empty() {
            router = router.route(&format!("{PRM_PATH}{}", b.resource_path), any(resource_metadata));
        }
    }
    router
        .route("/mcp", any(mcp_endpoint))
        .route("/healthz", any(healthz))
        .route("/readyz", any(readyz))
        .route("/metrics", any(metrics))
        .with_state(front)
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::from(body))
        .unwrap_or_default()
}

/// Alive: the process answers.
async fn healthz(State(front): State<Arc<HttpFront>>, req: Request) -> Response {
    if let Err(r) = front.guard(req.headers()) {
        return r;
    }
    text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into())
}

/// Ready: every upstream has listed once or failed once, and the gateway is not stopping. The
/// body says which upstreams are up.
async fn readyz(State(front): State<Arc<HttpFront>>, req: Request) -> Response {
    if let Err(r) = front.guard(req.headers()) {
        return r;
    }
    let (ready, ups) = front.gw.readiness();
    let body = serde_json::json!({
        "ready": ready,
        "upstreams": ups.iter().map(|(n, up)| (n.clone(), serde_json::Value::Bool(*up))).collect::<serde_json::Map<_, _>>(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(status, "application/json", body.to_string())
}

/// Prometheus metrics (OpenMetrics text); behind the same client authentication as `/mcp`.
async fn metrics(State(front): State<Arc<HttpFront>>, req: Request) -> Response {
    if let Err(r) = front.guard(req.headers()) {
        return r;
    }
    if let Err(r) = front.authenticate(req.headers(), req.uri()).await {
        return r;
    }
    let (_, ups) = front.gw.readiness();
    text(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        front.gw.metrics.render(&ups, front.gw.approvals_waiting.get()),
    )
}

/// Serves until the gateway shuts down (headers and bodies under deadlines, connections
/// bounded: see [`super::listen`]).
pub async fn serve(gw: Arc<Gateway>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let stop = gw.shutdown.clone();
    let header_timeout = gw.cfg.gateway.header_timeout;
    super::listen::serve(listener, router(gw), header_timeout, stop).await
}

fn spawn_session_reaper(front: std::sync::Weak<HttpFront>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let Some(front) = front.upgrade() else { return };
            let ended: Vec<Arc<HttpSession>> = {
                let mut sessions = lock(&front.sessions);
                let idle: Vec<String> = sessions
                    .iter()
                    .filter(|(_, s)| lock(&s.last_seen).elapsed() > SESSION_IDLE)
                    .map(|(k, _)| k.clone())
                    .collect();
                idle.iter().filter_map(|k| sessions.remove(k)).collect()
            };
            for s in ended {
                super::stdio::release_session(&front.gw, &s.session);
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Responses.

fn json_response(status: StatusCode, m: &Message) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(crate::redact::wire(m)))
        .unwrap_or_default()
}

fn error_response(status: StatusCode, id: Option<Id>, e: ErrorObject) -> Response {
    json_response(status, &Message::from(RpcResponse::error(id, e)))
}

fn plain(status: StatusCode, e: ErrorObject) -> Response {
    error_response(status, None, e)
}

/// An SSE response that ends at `until` (the credential's expiry), if given.
fn sse_until(
    stream: impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static,
    until: Option<tokio::time::Instant>,
) -> Response {
    use futures::StreamExt as _;
    match until {
        Some(t) => sse_response(stream.take_until(tokio::time::sleep_until(t))),
        None => sse_response(stream),
    }
}

fn sse_response(
    stream: impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static,
) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(Body::from_stream(stream))
        .unwrap_or_default()
}

/// The HTTP status a modern error travels with.
fn modern_status(e: &ErrorObject) -> StatusCode {
    match e.code {
        code::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        code::HEADER_MISMATCH | code::MISSING_REQUIRED_CLIENT_CAPABILITY | code::UNSUPPORTED_PROTOCOL_VERSION => {
            StatusCode::BAD_REQUEST
        }
        code::PARSE_ERROR | code::INVALID_REQUEST => StatusCode::BAD_REQUEST,
        _ => StatusCode::OK,
    }
}

fn header_mismatch(id: &Id, message: String) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        Some(id.clone()),
        ErrorObject::new(code::HEADER_MISMATCH, message),
    )
}

// ---------------------------------------------------------------------------------------------
// The DNS-rebinding guard.

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.');
    matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]") || host.ends_with(".localhost")
}

/// Splits `host[:port]` (with bracketed IPv6) into the host.
fn host_part(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    authority.rsplit_once(':').map_or(authority, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            authority
        }
    })
}

impl HttpFront {
    fn guard(&self, headers: &HeaderMap) -> Result<(), Response> {
        let forbidden = |what: &str| {
            Err(plain(
                StatusCode::FORBIDDEN,
                ErrorObject::new(
                    code::INVALID_REQUEST,
                    format!("forbidden: {what} is not allowed (DNS rebinding protection)"),
                ),
            ))
        };
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if host.is_empty()
            || !(is_loopback_host(host_part(host))
                || self
                    .allowed_hosts
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(host) || a.eq_ignore_ascii_case(host_part(host))))
        {
            return forbidden(&format!("Host `{host}`"));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            let ok = self.allowed_origins.iter().any(|a| a.eq_ignore_ascii_case(origin))
                || reqwest::Url::parse(origin)
                    .ok()
                    .and_then(|u| {
                        u.host_str()
                            .map(|h| is_loopback_host(h.trim_start_matches('[').trim_end_matches(']')))
                    })
                    .unwrap_or(false);
            if !ok {
                return forbidden(&format!("Origin `{origin}`"));
            }
        }
        Ok(())
    }

    /// A permit for one more request in flight from this client (its legacy session, or its
    /// principal when stateless), or the overload error when it has too many.
    fn permit(&self, ctx: &ClientCtx, legacy: Option<&HttpSession>, id: &Id) -> Result<OwnedSemaphorePermit, Response> {
        let limit = self.gw.cfg.gateway.max_concurrent_calls;
        let sem = match legacy {
            Some(hs) => hs.permits.clone(),
            None => lock(&self.principal_permits)
                .entry(ctx.principal.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(limit)))
                .clone(),
        };
        sem.try_acquire_owned().map_err(|_| {
            let mut r = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                Some(id.clone()),
                GatewayError::Overloaded(limit).to_error(ctx.era),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        })
    }

    /// The session `id`, if `principal` opened it (another principal's session does not
    /// exist for them).
    fn session(&self, id: &str, principal: &str) -> Option<Arc<HttpSession>> {
        let s = lock(&self.sessions).get(id).cloned()?;
        if s.principal != principal {
            return None;
        }
        *lock(&s.last_seen) = Instant::now();
        Some(s)
    }

    /// Who is asking: the local user when clients do not authenticate, an API key's principal,
    /// or the principal of an identity provider's access token. A missing or invalid credential
    /// is 401 with a `WWW-Authenticate` challenge (naming the Protected Resource Metadata under
    /// `auth = "oauth"`); a token without the scopes every request needs is 403.
    async fn authenticate(&self, headers: &HeaderMap, uri: &http::Uri) -> Result<Authenticated, Response> {
        match &self.gw.cfg.gateway.auth {
            ClientAuth::None => Ok(Authenticated::plain(LOCAL_PRINCIPAL.to_owned())),
            ClientAuth::ApiKey => self
                .gw
                .keys
                .authenticate(header_str(headers, "authorization"))
                .map(Authenticated::plain)
                .map_err(|e| {
                    tracing::info!(error = %e, "client not authenticated");
                    let challenge = match e {
                        AuthError::Missing => r#"Bearer realm="portcullis""#,
                        AuthError::Invalid => r#"Bearer realm="portcullis", error="invalid_token""#,
                    };
                    let mut r = plain(
                        StatusCode::UNAUTHORIZED,
                        ErrorObject::new(code::INVALID_REQUEST, e.to_string()),
                    );
                    r.headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
                    r
                }),
            ClientAuth::OAuth(cfg) => self.authenticate_bearer(cfg, headers, uri).await,
        }
    }

    async fn authenticate_bearer(
        &self,
        cfg: &BearerConfig,
        headers: &HeaderMap,
        uri: &http::Uri,
    ) -> Result<Authenticated, Response> {
        let challenge = bearer_challenge(cfg);
        // A token in the URL would be logged by every proxy on the way (both revisions: never
        // in the query string); two Authorization headers are two answers to one question.
        if uri
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv.split('=').next() == Some("access_token")))
        {
            return Err(
                challenge.bad_request("an access token must be sent in the Authorization header, never in the URL")
            );
        }
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return Err(if headers.contains_key(header::AUTHORIZATION) {
                challenge.bad_request("more than one Authorization header")
            } else {
                challenge.unauthorized(None, "this gateway needs an access token")
            });
        };
        let token = value
            .to_str()
            .ok()
            // The scheme is case-insensitive (RFC 9110 §11.1).
            .and_then(|v| v.get(..7).filter(|s| s.eq_ignore_ascii_case("bearer ")).and(v.get(7..)))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(challenge.unauthorized(None, "this gateway needs a Bearer access token"));
        };
        if token.starts_with(crate::state::keys::KEY_PREFIX) {
            // A Portcullis API key is never shown to the identity provider (introspection),
            // accepted or not.
            if !cfg.api_keys {
                tracing::info!("an API key was sent where only identity provider tokens are accepted");
                return Err(challenge.unauthorized(Some("invalid_token"), "the access token is not valid"));
            }
            return self
                .gw
                .keys
                .authenticate(Some(&format!("Bearer {token}")))
                .map(Authenticated::plain)
                .map_err(|e| {
                    tracing::info!(error = %e, "client not authenticated");
                    challenge.unauthorized(Some("invalid_token"), "the access token is not valid")
                });
        }
        let Some(bearer) = &self.bearer else {
            return Err(unavailable("identity provider tokens cannot be checked"));
        };
        let id = match bearer.validate(token).await {
            Ok(id) => id,
            Err(Rejection::Invalid(why)) => {
                tracing::info!(reason = %why, "access token refused");
                return Err(challenge.unauthorized(Some("invalid_token"), "the access token is not valid"));
            }
            Err(Rejection::Unavailable(why)) => {
                tracing::warn!(reason = %why, "access token not checked");
                return Err(unavailable(
                    "the identity provider's keys are not available; try again shortly",
                ));
            }
        };
        let missing = crate::bearer::claims::missing(&id.scopes, &cfg.required_scopes);
        if !missing.is_empty() {
            tracing::info!(principal = %id.principal, ?missing, "access token lacks required scopes");
            return Err(challenge.insufficient(&cfg.required_scopes, None));
        }
        Ok(Authenticated {
            principal: id.principal,
            attributes: id.attributes,
            scopes: Some(id.scopes),
            until: crate::bearer::until_expiry(id.expires).map(|left| tokio::time::Instant::now() + left),
        })
    }

    /// Under `auth = "oauth"`, the 403 a call gets when its tool's effect needs a scope the
    /// token lacks (`[gateway.oauth.step_up]`): the challenge names the scopes to ask for.
    fn step_up(&self, who: &Authenticated, r: &RpcRequest) -> Result<(), Response> {
        let (ClientAuth::OAuth(cfg), Some(granted)) = (&self.gw.cfg.gateway.auth, &who.scopes) else {
            return Ok(());
        };
        if cfg.step_up.is_empty() {
            return Ok(());
        }
        let effect = match r.method.as_str() {
            "tools/call" => {
                let Some(name) = r.params.as_ref().and_then(|p| p.get_str("name")) else {
                    return Ok(());
                };
                let cat = self.gw.catalog();
                let Some(entry) = cat.tool(&name) else { return Ok(()) };
                self.gw.policy_tool(entry).effect
            }
            m => match self.gw.cfg.methods.get(m) {
                Some(c) => c.effect,
                None => return Ok(()),
            },
        };
        let Some(any_of) = cfg.step_up.get(&effect) else {
            return Ok(());
        };
        if any_of.iter().any(|s| granted.contains(s)) {
            return Ok(());
        }
        tracing::info!(principal = %who.principal, effect = effect.as_str(), "call needs a broader scope");
        let mut scopes = cfg.required_scopes.clone();
        if let Some(first) = any_of.first()
            && !scopes.contains(first)
        {
            scopes.push(first.clone());
        }
        Err(bearer_challenge(cfg).insufficient(&scopes, Some(&r.id)))
    }
}

/// The challenges of a gateway that is an OAuth resource server.
struct Challenge {
    metadata: String,
    required: String,
}

fn bearer_challenge(cfg: &BearerConfig) -> Challenge {
    Challenge {
        metadata: metadata_url(cfg),
        required: cfg.required_scopes.join(" "),
    }
}

impl Challenge {
    fn with_header(&self, mut r: Response, value: String) -> Response {
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    }

    /// 401: no token (`error` absent, per RFC 6750 §3.1), or an invalid one.
    fn unauthorized(&self, error: Option<&str>, message: &str) -> Response {
        let mut value = String::from("Bearer ");
        if let Some(e) = error {
            value.push_str(&format!(r#"error="{e}", error_description="{message}", "#));
        }
        value.push_str(&format!(r#"resource_metadata="{}""#, self.metadata));
        if !self.required.is_empty() {
            value.push_str(&format!(r#", scope="{}""#, self.required));
        }
        let r = plain(
            StatusCode::UNAUTHORIZED,
            ErrorObject::new(code::INVALID_REQUEST, message.to_owned()),
        );
        self.with_header(r, value)
    }

    /// 403 `insufficient_scope`, naming every scope the request needs.
    fn insufficient(&self, scopes: &[String], id: Option<&Id>) -> Response {
        let wanted = scopes.join(" ");
        let value = format!(
            r#"Bearer error="insufficient_scope", scope="{wanted}", resource_metadata="{}", error_description="the access token lacks a scope this request needs""#,
            self.metadata
        );
        let r = error_response(
            StatusCode::FORBIDDEN,
            id.cloned(),
            ErrorObject::new(
                code::INVALID_REQUEST,
                format!("insufficient scope: this request needs `{wanted}`"),
            ),
        );
        self.with_header(r, value)
    }

    /// 400 `invalid_request`.
    fn bad_request(&self, message: &str) -> Response {
        let value = format!(
            r#"Bearer error="invalid_request", error_description="{message}", resource_metadata="{}""#,
            self.metadata
        );
        let r = plain(
            StatusCode::BAD_REQUEST,
            ErrorObject::new(code::INVALID_REQUEST, message.to_owned()),
        );
        self.with_header(r, value)
    }
}

fn unavailable(message: &str) -> Response {
    let mut r = plain(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorObject::new(code::INTERNAL_ERROR, message.to_owned()),
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// Where clients find the Protected Resource Metadata.
const PRM_PATH: &str = "/.well-known/oauth-protected-resource";

/// The metadata's URL for the challenge: the resource's origin, the well-known prefix, the
/// resource's path (RFC 9728 §3.1).
fn metadata_url(cfg: &BearerConfig) -> String {
    let origin =
        reqwest::Url::parse(&cfg.resource).map_or_else(|_| cfg.resource.clone(), |u| u.origin().ascii_serialization());
    format!("{origin}{PRM_PATH}{}", cfg.resource_path)
}

/// The Protected Resource Metadata (RFC 9728 §2), to anyone who asks (it is public).
async fn resource_metadata(State(front): State<Arc<HttpFront>>, req: Request) -> Response {
    if let Err(r) = front.guard(req.headers()) {
        return r;
    }
    if !matches!(*req.method(), HttpMethod::GET | HttpMethod::HEAD) {
        return Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(header::ALLOW, "GET, HEAD")
            .body(Body::empty())
            .unwrap_or_default();
    }
    let ClientAuth::OAuth(cfg) = &front.gw.cfg.gateway.auth else {
        return text(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found\n".into());
    };
    let mut scopes = cfg.scopes_supported.clone();
    if scopes.is_empty() {
        scopes = cfg.required_scopes.clone();
        for s in cfg.step_up.values().flatten() {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
    }
    let mut doc = serde_json::Map::new();
    doc.insert("resource".into(), cfg.resource.clone().into());
    doc.insert(
        "authorization_servers".into(),
        cfg.issuers.iter().map(|i| Value::from(i.issuer.clone())).collect(),
    );
    if !scopes.is_empty() {
        doc.insert("scopes_supported".into(), scopes.into_iter().map(Value::from).collect());
    }
    doc.insert("bearer_methods_supported".into(), serde_json::json!(["header"]));
    doc.insert("resource_name".into(), "Portcullis".into());
    let doc = Value::Object(doc);
    let mut r = text(StatusCode::OK, "application/json", doc.to_string());
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    r
}

// ---------------------------------------------------------------------------------------------
// The endpoint.

async fn mcp_endpoint(State(front): State<Arc<HttpFront>>, req: Request) -> Response {
    if let Err(r) = front.guard(req.headers()) {
        return r;
    }
    let who = match front.authenticate(req.headers(), req.uri()).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    match *req.method() {
        HttpMethod::POST => post(front, req, &who).await,
        HttpMethod::GET => get(front, req.headers(), &who),
        HttpMethod::DELETE => delete(front, req.headers(), &who.principal),
        _ => Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(header::ALLOW, "GET, POST, DELETE")
            .body(Body::empty())
            .unwrap_or_default(),
    }
}

/// Why a request body was not read.
#[derive(Debug)]
enum BodyError {
    /// It did not arrive within `body_timeout`.
    Late,
    /// It is over the frame limit; the request's id, when its first or last bytes name it.
    TooLarge(Option<Id>),
    /// Its transfer broke off (a malformed chunk).
    Broken,
}

/// How much of the start and of the end of an oversize body is kept to find its id.
const ID_WINDOW: usize = 4096;

/// Reads a request body of at most `limit` bytes within `timeout`. An oversize body is read on
/// (and dropped) up to four times the limit, keeping only its first and last bytes: its answer
/// then names its request's id (an SDK matches answers by id, and would otherwise wait for
/// its own timeout), and the client, done sending, can read that answer instead of finding
/// the connection closed under it. Past that, the answer goes out at once.
async fn read_body(body: Body, limit: usize, timeout: Duration) -> Result<Bytes, BodyError> {
    use futures::StreamExt as _;
    let drain_cap = limit.saturating_mul(4);
    let read = async {
        let mut stream = body.into_data_stream();
        let mut buf = bytes::BytesMut::new();
        let mut total = 0usize;
        let mut head: Option<Vec<u8>> = None;
        let mut tail: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.next().await {
            let Ok(chunk) = chunk else {
                // A transfer that broke (a bad chunk): what arrived is not the message sent.
                return Err(BodyError::Broken);
            };
            total = total.saturating_add(chunk.len());
            match &mut head {
                None if total <= limit => buf.extend_from_slice(&chunk),
                None => {
                    buf.extend_from_slice(&chunk);
                    head = Some(buf.get(..ID_WINDOW).unwrap_or(&buf).to_vec());
                    tail = buf
                        .get(buf.len().saturating_sub(ID_WINDOW)..)
                        .unwrap_or_default()
                        .to_vec();
                    buf = bytes::BytesMut::new();
                }
                Some(_) => {
                    tail.extend_from_slice(&chunk);
                    let excess = tail.len().saturating_sub(ID_WINDOW);
                    tail.drain(..excess);
                }
            }
            if head.is_some() && total > drain_cap {
                let id = head
                    .as_deref()
                    .and_then(|h| portcullis_core::jsonrpc::id_of_partial(h, &[]));
                return Err(BodyError::TooLarge(id));
            }
        }
        match head {
            None => Ok(buf.freeze()),
            Some(h) => Err(BodyError::TooLarge(portcullis_core::jsonrpc::id_of_partial(&h, &tail))),
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(BodyError::Late))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn post(front: Arc<HttpFront>, req: Request, who: &Authenticated) -> Response {
    let principal = who.principal.as_str();
    let (parts, body) = req.into_parts();
    let limits = front.gw.cfg.gateway.limits;
    let body_timeout = front.gw.cfg.gateway.body_timeout;
    let bytes = match read_body(body, limits.max_frame_bytes, body_timeout).await {
        Ok(b) => b,
        Err(BodyError::Late) => {
            return plain(
                StatusCode::REQUEST_TIMEOUT,
                ErrorObject::new(
                    code::INVALID_REQUEST,
                    format!("the request body did not arrive within {} s", body_timeout.as_secs()),
                ),
            );
        }
        Err(BodyError::Broken) => {
            return plain(
                StatusCode::BAD_REQUEST,
                ErrorObject::new(code::INVALID_REQUEST, "the request body's transfer broke off"),
            );
        }
        Err(BodyError::TooLarge(id)) => {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                id,
                ErrorObject::new(
                    code::INVALID_REQUEST,
                    format!("request body exceeds the limit of {} bytes", limits.max_frame_bytes),
                ),
            );
        }
    };
    let msg = match Message::parse(&bytes, &limits) {
        Ok(m) => m,
        Err(e) => return json_response(StatusCode::BAD_REQUEST, &Message::from(e.to_response())),
    };
    let headers = &parts.headers;
    let proto = header_str(headers, "mcp-protocol-version");
    let session_id = header_str(headers, "mcp-session-id");
    match msg {
        Message::Request(r) => {
            if let Err(resp) = front.step_up(who, &r) {
                return resp;
            }
            let meta = RequestMeta::read(r.params.as_ref());
            let modern = match proto {
                Some(v) => mcp::Era::of_version(v) == Era::Modern,
                None => session_id.is_none() && Method::of(&r.method) != Method::Initialize && meta.is_modern(),
            };
            if modern {
                modern_request(front, headers, r, meta, who).await
            } else {
                legacy_request(front, headers, r, who).await
            }
        }
        Message::Notification(n) => {
            if let Some(s) = session_id.and_then(|id| front.session(id, principal)) {
                legacy_notification(&s, n);
            }
            Response::builder()
                .status(StatusCode::ACCEPTED)
                .body(Body::empty())
                .unwrap_or_default()
        }
        Message::Response(r) => match session_id.and_then(|id| front.session(id, principal)) {
            Some(s) => {
                s.session.requester.complete(r);
                Response::builder()
                    .status(StatusCode::ACCEPTED)
                    .body(Body::empty())
                    .unwrap_or_default()
            }
            None => plain(
                StatusCode::BAD_REQUEST,
                ErrorObject::new(
                    code::INVALID_REQUEST,
                    "a response needs the `Mcp-Session-Id` of the session that asked",
                ),
            ),
        },
    }
}

/// Checks the 2026-07-28 request-metadata headers against the body.
fn check_modern_headers(
    front: &HttpFront,
    headers: &HeaderMap,
    r: &RpcRequest,
    meta: &RequestMeta,
) -> Result<(), Response> {
    let id = &r.id;
    match header_str(headers, "mcp-method") {
        None => return Err(header_mismatch(id, "missing `Mcp-Method` header".into())),
        Some(m) if m != r.method => {
            return Err(header_mismatch(
                id,
                format!("`Mcp-Method` header `{m}` does not match body method `{}`", r.method),
            ));
        }
        Some(_) => {}
    }
    let name_key = match r.method.as_str() {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    };
    if let Some(key) = name_key {
        let body = r.params.as_ref().and_then(|p| p.get_str(key));
        match (headers.get("mcp-name"), body) {
            (None, _) => return Err(header_mismatch(id, "missing `Mcp-Name` header".into())),
            (Some(h), body) => match mcp_headers::decode_value(h.as_bytes()) {
                Ok(v) if Some(&v) == body.as_ref() => {}
                Ok(v) => {
                    return Err(header_mismatch(
                        id,
                        format!(
                            "`Mcp-Name` header `{v}` does not match body {key} `{}`",
                            body.unwrap_or_default()
                        ),
                    ));
                }
                Err(e) => return Err(header_mismatch(id, format!("`Mcp-Name` header: {e}"))),
            },
        }
    }
    if let Some(header_version) = header_str(headers, "mcp-protocol-version") {
        if let Some(body_version) = meta.protocol_version.as_deref()
            && body_version != header_version
        {
            return Err(header_mismatch(
                id,
                format!(
                    "`MCP-Protocol-Version` header `{header_version}` does not match `_meta` version `{body_version}`"
                ),
            ));
        }
    } else {
        return Err(header_mismatch(id, "missing `MCP-Protocol-Version` header".into()));
    }
    if r.method == "tools/call" {
        check_param_headers(front, headers, r)?;
    }
    Ok(())
}

/// Validates `Mcp-Param-*` headers against the arguments, for tools whose exposed schema
/// annotates parameters with `x-mcp-header`.
fn check_param_headers(front: &HttpFront, headers: &HeaderMap, r: &RpcRequest) -> Result<(), Response> {
    let Some(name) = r.params.as_ref().and_then(|p| p.get_str("name")) else {
        return Ok(());
    };
    let cat = front.gw.catalog();
    let Some(tool) = cat.tool(&name) else { return Ok(()) };
    let Some(schema) = tool
        .definition
        .get("inputSchema")
        .filter(|s| s.get().contains("x-mcp-header"))
    else {
        return Ok(());
    };
    let schema: Value = serde_json::from_str(schema.get()).unwrap_or(Value::Null);
    let Ok(annotations) = mcp_headers::param_headers(&schema) else {
        return Ok(());
    };
    let args = r
        .params
        .as_ref()
        .and_then(|p| p.get_object("arguments"))
        .unwrap_or_default();
    for h in annotations {
        let header_name = format!("mcp-param-{}", h.name);
        let expected = mcp_headers::param_value(&args, &h).and_then(|v| mcp_headers::decode_value(v.as_bytes()).ok());
        let got = match headers.get(header_name.as_str()) {
            None => None,
            Some(v) => Some(
                mcp_headers::decode_value(v.as_bytes())
                    .map_err(|e| header_mismatch(&r.id, format!("`Mcp-Param-{}` header: {e}", h.name)))?,
            ),
        };
        if expected != got {
            return Err(header_mismatch(
                &r.id,
                format!(
                    "`Mcp-Param-{}` header does not match argument `{}`",
                    h.name,
                    h.path.join(".")
                ),
            ));
        }
    }
    Ok(())
}

async fn modern_request(
    front: Arc<HttpFront>,
    headers: &HeaderMap,
    r: RpcRequest,
    meta: RequestMeta,
    who: &Authenticated,
) -> Response {
    if let Err(resp) = check_modern_headers(&front, headers, &r, &meta) {
        return resp;
    }
    if let Err(e) = super::validate_modern(&meta) {
        return error_response(StatusCode::BAD_REQUEST, Some(r.id), e);
    }
    let ctx = ClientCtx::modern(&meta, &who.principal).with_attributes(who.attributes.clone());
    answer(front, ctx, r, None, who.until).await
}

async fn legacy_request(front: Arc<HttpFront>, headers: &HeaderMap, r: RpcRequest, who: &Authenticated) -> Response {
    let principal = who.principal.as_str();
    if Method::of(&r.method) == Method::Initialize {
        let evicted = {
            let mut sessions = lock(&front.sessions);
            let mut mine: Vec<(Instant, String)> = sessions
                .iter()
                .filter(|(_, s)| s.principal == principal)
                .map(|(k, s)| (*lock(&s.last_seen), k.clone()))
                .collect();
            if mine.len() >= MAX_SESSIONS_PER_PRINCIPAL {
                mine.sort();
                mine.first().and_then(|(_, k)| sessions.remove(k))
            } else {
                None
            }
        };
        if let Some(old) = evicted {
            tracing::info!(%principal, "legacy session ended: the principal opened more than {MAX_SESSIONS_PER_PRINCIPAL}");
            old.session.requester.close();
            super::stdio::release_session(&front.gw, &old.session);
        }
        if lock(&front.sessions).len() >= MAX_SESSIONS {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(r.id),
                ErrorObject::new(code::OVERLOADED, "too many sessions; try again later"),
            );
        }
        let mut bytes = [0u8; 24];
        rand::fill(&mut bytes);
        let sid = URL_SAFE_NO_PAD.encode(bytes);
        let session = Arc::new(Session::from_initialize(sid.clone(), r.params.as_ref()));
        let hs = Arc::new(HttpSession {
            principal: principal.to_owned(),
            in_flight: Mutex::new(HashMap::new()),
            pump: spawn_change_pump(
                front.gw.clone(),
                Arc::downgrade(&session),
                sid.clone(),
                Arc::downgrade(&front),
            ),
            session,
            streams: Streams::default(),
            standalone: Mutex::new(None),
            last_seen: Mutex::new(Instant::now()),
            permits: Arc::new(Semaphore::new(front.gw.cfg.gateway.max_concurrent_calls)),
        });
        lock(&front.sessions).insert(sid.clone(), hs.clone());
        let ctx = ClientCtx::legacy(hs.session.clone(), principal).with_attributes(who.attributes.clone());
        let mut resp = answer(front, ctx, r, Some(hs), who.until).await;
        if let Ok(v) = HeaderValue::from_str(&sid) {
            resp.headers_mut().insert("mcp-session-id", v);
        }
        return resp;
    }
    let Some(sid) = header_str(headers, "mcp-session-id") else {
        return error_response(
            StatusCode::BAD_REQUEST,
            Some(r.id),
            ErrorObject::new(
                code::INVALID_REQUEST,
                "missing `Mcp-Session-Id` header: send `initialize` first, or use protocol version 2026-07-28",
            ),
        );
    };
    let Some(hs) = front.session(sid, principal) else {
        return error_response(
            StatusCode::NOT_FOUND,
            Some(r.id),
            ErrorObject::new(code::INVALID_REQUEST, "session not found"),
        );
    };
    if let Some(v) = header_str(headers, "mcp-protocol-version")
        && v != hs.session.version
    {
        return error_response(
            StatusCode::BAD_REQUEST,
            Some(r.id),
            ErrorObject::new(
                code::INVALID_REQUEST,
                format!(
                    "`MCP-Protocol-Version` `{v}` does not match the session's `{}`",
                    hs.session.version
                ),
            ),
        );
    }
    let ctx = ClientCtx::legacy(hs.session.clone(), principal).with_attributes(who.attributes.clone());
    answer(front, ctx, r, Some(hs), who.until).await
}

/// Forgets a legacy request's abort handle when it ends.
struct Untrack {
    session: Option<std::sync::Weak<HttpSession>>,
    id: Id,
}

impl Drop for Untrack {
    fn drop(&mut self) {
        if let Some(hs) = self.session.as_ref().and_then(std::sync::Weak::upgrade) {
            lock(&hs.in_flight).remove(&self.id);
        }
    }
}

/// Aborts the request task when dropped (modern: the client closing the stream cancels).
struct AbortOnDrop(Option<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
        }
    }
}

/// Runs the request and answers with JSON when nothing precedes the response, else with SSE.
async fn answer(
    front: Arc<HttpFront>,
    ctx: ClientCtx,
    r: RpcRequest,
    legacy: Option<Arc<HttpSession>>,
    until: Option<tokio::time::Instant>,
) -> Response {
    // Only a listening stream outlives its credential's expiry by design; a call's stream ends
    // with its answer.
    let until = until.filter(|_| r.method == "subscriptions/listen");
    let era = ctx.era;
    let id = r.id.clone();
    let permit = match front.permit(&ctx, legacy.as_deref(), &id) {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    let tracked = legacy.as_ref().map(Arc::downgrade);
    let untrack = Untrack {
        session: tracked,
        id: id.clone(),
    };
    let ready = super::driver::prepare(front.gw.clone(), ctx, r, (permit, untrack));
    let (mut serve, mut rx) = (ready.serve, ready.rx);
    // Modern: the request lives as long as its HTTP exchange, so it runs right here (no task,
    // no hop to another thread) until its first message; only a streamed answer gets a task.
    // Legacy: disconnection is not cancellation, so it runs in a task that outlives the
    // exchange and its stream can be resumed.
    let (first, guard) = match era {
        Era::Modern => {
            let first = tokio::select! {
                biased;
                m = rx.recv() => m,
                () = &mut serve => rx.recv().await,
            };
            // Unfinished (a streamed answer): it goes on in its own task, cancelled with the
            // exchange. A finished future is not polled again.
            let guard = match &first {
                Some(Message::Response(r)) if r.id.as_ref() == Some(&id) => AbortOnDrop(None),
                _ => AbortOnDrop(Some(tokio::spawn(serve))),
            };
            (first, guard)
        }
        Era::Legacy => {
            let task = tokio::spawn(serve);
            if let Some(hs) = &legacy {
                lock(&hs.in_flight).insert(id.clone(), task.abort_handle());
            }
            (rx.recv().await, AbortOnDrop(None))
        }
    };
    let Some(first) = first else {
        return plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorObject::new(code::INTERNAL_ERROR, "request handler failed"),
        );
    };
    if let Message::Response(resp) = &first
        && resp.id.as_ref() == Some(&id)
    {
        let status = match (era, resp.as_error()) {
            (Era::Modern, Some(e)) => modern_status(e),
            _ => StatusCode::OK,
        };
        drop(guard);
        return json_response(status, &first);
    }
    match legacy {
        Some(hs) => {
            let log = hs.streams.open();
            log.push(&first);
            let writer = log.clone();
            tokio::spawn(async move {
                while let Some(m) = rx.recv().await {
                    let done = matches!(&m, Message::Response(r) if r.id.as_ref() == Some(&id));
                    writer.push(&m);
                    if done {
                        break;
                    }
                }
                writer.close();
            });
            sse_until(log.reader(None), until)
        }
        None => {
            let stream = futures::stream::unfold(
                (Some(first), rx, guard, false),
                move |(pending, mut rx, guard, done)| {
                    let id = id.clone();
                    async move {
                        if done {
                            return None;
                        }
                        let m = match pending {
                            Some(m) => m,
                            None => match tokio::time::timeout(KEEP_ALIVE, rx.recv()).await {
                                Ok(Some(m)) => m,
                                Ok(None) => return None,
                                Err(_) => {
                                    return Some((Ok(Bytes::from_static(sse::KEEP_ALIVE)), (None, rx, guard, false)));
                                }
                            },
                        };
                        let last = matches!(&m, Message::Response(r) if r.id.as_ref() == Some(&id));
                        let ev = Bytes::from(sse::encode(None, &String::from_utf8_lossy(&crate::redact::wire(&m))));
                        Some((Ok(ev), (None, rx, guard, last)))
                    }
                },
            );
            sse_until(stream, until)
        }
    }
}

fn legacy_notification(hs: &HttpSession, n: Notification) {
    match n.method.as_str() {
        "notifications/cancelled" => {
            let id = n
                .params
                .as_ref()
                .and_then(|p| p.get_as::<Id>("requestId").ok().flatten());
            if let Some(task) = id.and_then(|id| lock(&hs.in_flight).remove(&id)) {
                task.abort();
            }
        }
        "notifications/initialized" | "notifications/roots/list_changed" => {}
        other => tracing::debug!(method = other, "client notification ignored"),
    }
}

fn get(front: Arc<HttpFront>, headers: &HeaderMap, who: &Authenticated) -> Response {
    let principal = who.principal.as_str();
    let modern = header_str(headers, "mcp-protocol-version").is_some_and(|v| mcp::Era::of_version(v) == Era::Modern);
    let Some(sid) = header_str(headers, "mcp-session-id").filter(|_| !modern) else {
        return Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(header::ALLOW, "POST")
            .body(Body::empty())
            .unwrap_or_default();
    };
    let Some(hs) = front.session(sid, principal) else {
        return plain(
            StatusCode::NOT_FOUND,
            ErrorObject::new(code::INVALID_REQUEST, "session not found"),
        );
    };
    let accepts_sse =
        header_str(headers, "accept").is_some_and(|a| a.contains("text/event-stream") || a.contains("*/*"));
    if !accepts_sse {
        return plain(
            StatusCode::NOT_ACCEPTABLE,
            ErrorObject::new(code::INVALID_REQUEST, "GET needs `Accept: text/event-stream`"),
        );
    }
    if let Some(last) = header_str(headers, "last-event-id")
        && let Some((log, seq)) = hs.streams.resume(last)
    {
        return sse_until(log.reader(Some(seq)), who.until);
    }
    let log = hs.streams.open();
    if let Some(old) = lock(&hs.standalone).replace(log.clone()) {
        old.close();
    }
    sse_until(log.reader(None), who.until)
}

fn delete(front: Arc<HttpFront>, headers: &HeaderMap, principal: &str) -> Response {
    let Some(sid) = header_str(headers, "mcp-session-id") else {
        return Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(header::ALLOW, "POST")
            .body(Body::empty())
            .unwrap_or_default();
    };
    let removed = {
        let mut sessions = lock(&front.sessions);
        match sessions.get(sid) {
            Some(s) if s.principal == principal => sessions.remove(sid),
            _ => None,
        }
    };
    match removed {
        Some(hs) => {
            hs.session.requester.close();
            super::stdio::release_session(&front.gw, &hs.session);
            Response::builder()
                .status(StatusCode::OK)
                .body(Body::empty())
                .unwrap_or_default()
        }
        None => plain(
            StatusCode::NOT_FOUND,
            ErrorObject::new(code::INVALID_REQUEST, "session not found"),
        ),
    }
}

/// Sends a legacy session its list changes and followed resource updates on its GET stream.
fn spawn_change_pump(
    gw: Arc<Gateway>,
    session: std::sync::Weak<Session>,
    sid: String,
    front: std::sync::Weak<HttpFront>,
) -> JoinHandle<()> {
    let mut changes = gw.changes();
    tokio::spawn(async move {
        loop {
            let change = tokio::select! {
                c = changes.recv() => c,
                () = gw.shutdown.cancelled() => return,
            };
            let change = match change {
                Ok(c) => c,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            let (Some(session), Some(front)) = (session.upgrade(), front.upgrade()) else {
                return;
            };
            let Some(n) = super::stdio::change_notification(&change, &session) else {
                continue;
            };
            let hs = lock(&front.sessions).get(&sid).cloned();
            if let Some(log) = hs.and_then(|hs| lock(&hs.standalone).clone()) {
                log.push(&Message::Notification(n));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_parsing() {
        assert_eq!(host_part("127.0.0.1:8787"), "127.0.0.1");
        assert_eq!(host_part("[::1]:80"), "::1");
        assert_eq!(host_part("localhost"), "localhost");
        assert!(is_loopback_host("localhost"));
        assert!(!is_loopback_host("evil.example.com"));
        assert!(!is_loopback_host("localhost.evil.com"));
    }
}
