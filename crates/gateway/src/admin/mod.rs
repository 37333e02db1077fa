//! The admin web page: server-rendered HTML (maud) on its own loopback listener, a little plain
//! JavaScript for live updates, no build chain. Pages: pending approvals (decide them), tools
//! (pin status, scanner findings, approve a changed definition after seeing the diff), the
//! audit log (filters, chain status), credentials (never a value), sessions (clear taint).
//!
//! Safety: a strict Content-Security-Policy (`default-src 'none'`, scripts and styles from this
//! origin only, `frame-ancestors 'none'`), the DNS-rebinding guard on `Host`, a session cookie
//! `__Host-…` (HttpOnly, Secure, SameSite=Strict), and a CSRF token in every form, checked with
//! the `Origin` on every POST. Login with the admin password (`portcullis admin set-password`,
//! Argon2id) or a one-time link (`portcullis admin link`, or the one `portcullis serve` prints
//! when its output is a terminal) that expires in minutes.
//!
//! Guessing is slow and cannot starve the gateway: a sign-in must come from this page (its
//! `Origin` and `Sec-Fetch-Site`), failures back off per address and overall, and Argon2 runs
//! on the blocking pool, one hash at a time, never on the threads that serve `/mcp`.

mod login;
mod pages;

pub use login::mint_link;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use portcullis_store::Store;
use zeroize::Zeroizing;

use crate::state::Gateway;

/// The setting holding the admin password's hash.
pub const PASSWORD_SETTING: &str = "admin.password";
/// The setting holding the one-time sign-in link minted by `portcullis admin link`: the
/// SHA-256 of its token and when it expires.
pub const LINK_SETTING: &str = "admin.link";
/// How long a one-time sign-in link is good for.
pub const LINK_TTL: Duration = Duration::from_secs(10 * 60);
/// The session cookie (the `__Host-` prefix: Secure, no Domain, Path=/).
const COOKIE: &str = "__Host-portcullis-admin";
/// How long an admin session lasts without use.
const SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);
/// Most admin sessions at once.
const MAX_SESSIONS: usize = 64;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Why a password cannot be set.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Too short to resist guessing.
    #[error("the admin password must have at least 12 characters")]
    TooShort,
    /// Hashing failed.
    #[error("cannot hash the password: {0}")]
    Hash(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] portcullis_store::StoreError),
}

fn argon2_into(password: &[u8], salt: &[u8], out: &mut [u8; 32]) -> Result<(), String> {
    argon2::Argon2::default()
        .hash_password_into(password, salt, out)
        .map_err(|e| e.to_string())
}

/// Stores the admin password as `argon2id-v1$<salt>$<hash>` (Argon2id, default parameters).
pub async fn set_password(store: &Store, password: &str) -> Result<(), PasswordError> {
    if password.chars().count() < 12 {
        return Err(PasswordError::TooShort);
    }
    let mut salt = [0u8; 16];
    rand::fill(&mut salt);
    let mut hash = Zeroizing::new([0u8; 32]);
    argon2_into(password.as_bytes(), &salt, &mut hash).map_err(PasswordError::Hash)?;
    let value = format!(
        "argon2id-v1${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(hash.as_ref())
    );
    store.set_setting(PASSWORD_SETTING, &value).await?;
    Ok(())
}

fn password_matches(stored: &str, password: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("argon2id-v1"), Some(salt), Some(hash), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
        return false;
    };
    let mut got = Zeroizing::new([0u8; 32]);
    if argon2_into(password.as_bytes(), &salt, &mut got).is_err() {
        return false;
    }
    crate::state::keys::same(got.as_ref(), &hash)
}

fn token() -> String {
    let mut b = [0u8; 32];
    rand::fill(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

struct AdminSession {
    csrf: String,
    last_seen: Instant,
}

/// The admin page's state.
pub struct Admin {
    gw: Arc<Gateway>,
    sessions: Mutex<HashMap<String, AdminSession>>,
    /// The link `serve` printed, and when it expires.
    link: Mutex<Option<(String, Instant)>>,
    guard: login::Guard,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A page's response with the security headers every admin response carries.
fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // `same-origin`, not `no-referrer`: with no referrer at all a browser sends `Origin: null` on
    // its own form posts, and the Origin check would refuse them.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn html(status: StatusCode, body: String) -> Response {
    secure((status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response())
}

fn redirect(to: &str) -> Response {
    secure(
        Response::builder()
            .status(StatusCode::SEE_OTHER)
            .header(header::LOCATION, to)
            .body(Body::empty())
            .unwrap_or_default(),
    )
}

fn forbidden(why: &str) -> Response {
    html(StatusCode::FORBIDDEN, pages::message("Refused", why))
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The form fields of an `application/x-www-form-urlencoded` body.
fn form(body: &Bytes) -> HashMap<String, String> {
    oauth2::url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

impl Admin {
    /// The admin state of `gw`, with a fresh one-time login link token.
    pub fn new(gw: Arc<Gateway>) -> Arc<Admin> {
        let link = token();
        crate::redact::remember("admin-link", &link);
        Arc::new(Admin {
            gw,
            sessions: Mutex::new(HashMap::new()),
            link: Mutex::new(Some((link, Instant::now() + LINK_TTL))),
            guard: login::Guard::default(),
        })
    }

    /// The path of the one-time login link `portcullis serve` prints (to a terminal only),
    /// while it is good.
    pub fn login_link(&self) -> Option<String> {
        lock(&self.link)
            .as_ref()
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(t, _)| format!("/login/link/{t}"))
    }

    fn start_session(&self) -> Response {
        let sid = token();
        let mut sessions = lock(&self.sessions);
        let now = Instant::now();
        sessions.retain(|_, s| now.saturating_duration_since(s.last_seen) < SESSION_IDLE);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            sid.clone(),
            AdminSession {
                csrf: token(),
                last_seen: now,
            },
        );
        let mut r = redirect("/approvals");
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{COOKIE}={sid}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
            SESSION_IDLE.as_secs()
        )) {
            r.headers_mut().insert(header::SET_COOKIE, v);
        }
        r
    }

    /// The session's CSRF token, if the request carries a live session.
    fn session(&self, headers: &HeaderMap) -> Option<String> {
        let sid = cookie_value(headers, COOKIE)?;
        let mut sessions = lock(&self.sessions);
        let now = Instant::now();
        let s = sessions.get_mut(sid)?;
        if now.saturating_duration_since(s.last_seen) >= SESSION_IDLE {
            sessions.remove(sid);
            return None;
        }
        s.last_seen = now;
        Some(s.csrf.clone())
    }

    /// Checks a state-changing request: a live session, its CSRF token in the form, and (when
    /// the browser sends one) an `Origin` of this page. `Err`: why it is refused.
    fn check_post(&self, headers: &HeaderMap, fields: &HashMap<String, String>) -> Result<(), &'static str> {
        let Some(csrf) = self.session(headers) else {
            return Err("Not signed in.");
        };
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default();
            if origin != format!("http://{host}") {
                tracing::warn!(%origin, "admin page: cross-origin POST refused");
                return Err("Cross-origin request refused.");
            }
        }
        match fields.get("csrf") {
            Some(t) if crate::state::keys::same(t.as_bytes(), csrf.as_bytes()) => Ok(()),
            _ => {
                tracing::warn!("admin page: POST without a valid CSRF token refused");
                Err("Missing or wrong form token (CSRF).")
            }
        }
    }
}

/// The DNS-rebinding guard: only loopback hosts (and `allowed_hosts`) may address the page.
fn host_ok(admin: &Admin, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let name = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost"
        || name.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
        || admin
            .gw
            .cfg
            .gateway
            .allowed_hosts
            .iter()
            .any(|a| a.eq_ignore_ascii_case(host))
}

type Shared = State<Arc<Admin>>;

async fn guard(State(admin): Shared, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if !host_ok(&admin, req.headers()) {
        return secure((StatusCode::FORBIDDEN, "forbidden Host").into_response());
    }
    next.run(req).await
}

/// Builds the admin router.
pub fn router(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/", get(|| async { redirect("/approvals") }))
        .route("/login", get(login_page).post(login))
        .route("/login/link/{token}", get(login_link))
        .route("/logout", post(logout))
        .route("/approvals", get(approvals))
        .route("/approvals/live", get(approvals_live))
        .route("/approvals/{id}", post(decide))
        .route("/tools", get(tools))
        .route("/tools/approve", post(approve_tool))
        .route("/audit", get(audit))
        .route("/credentials", get(credentials))
        .route("/sessions", get(sessions))
        .route("/sessions/clear", post(clear_session))
        .route("/static/app.css", get(|| async { asset("text/css", pages::CSS) }))
        .route("/static/app.js", get(|| async { asset("text/javascript", pages::JS) }))
        .layer(axum::middleware::from_fn_with_state(admin.clone(), guard))
        .with_state(admin)
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    secure(([(header::CONTENT_TYPE, kind)], body).into_response())
}

/// Serves the admin page until the gateway shuts down (under the same connection bounds and
/// deadlines as `/mcp`).
pub async fn serve(admin: Arc<Admin>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let stop = admin.gw.shutdown.clone();
    let header_timeout = admin.gw.cfg.gateway.header_timeout;
    crate::front::listen::serve(listener, router(admin), header_timeout, stop).await
}

async fn login_page(State(admin): Shared, headers: HeaderMap) -> Response {
    if admin.session(&headers).is_some() {
        return redirect("/approvals");
    }
    html(StatusCode::OK, pages::login(None))
}

async fn login(State(admin): Shared, req: axum::extract::Request) -> Response {
    let peer = crate::front::listen::peer(&req).map(|p| p.ip());
    let (parts, body) = req.into_parts();
    if let Err(why) = login::same_site(&parts.headers) {
        tracing::warn!(?peer, "admin page: sign-in refused: {why}");
        return forbidden(why);
    }
    if let Err(wait) = admin.guard.check(peer, Instant::now()) {
        return login::too_many(wait);
    }
    let body = match tokio::time::timeout(
        crate::front::listen::BODY_TIMEOUT,
        axum::body::to_bytes(body, 16 * 1024),
    )
    .await
    {
        Ok(Ok(b)) => b,
        _ => {
            return html(
                StatusCode::BAD_REQUEST,
                pages::message("Bad request", "Unreadable form."),
            );
        }
    };
    let fields = form(&body);
    let password = Zeroizing::new(fields.get("password").cloned().unwrap_or_default());
    let stored = admin.gw.store().setting(PASSWORD_SETTING).await.ok().flatten();
    let ok = match &stored {
        Some(s) => match admin.guard.hash_slot() {
            // One hash at a time, on the blocking pool.
            Some(slot) => {
                let (s, p) = (s.clone(), password.clone());
                let checked = tokio::task::spawn_blocking(move || {
                    let _slot = slot;
                    password_matches(&s, &p)
                });
                checked.await.unwrap_or(false)
            }
            None => return login::too_many(Duration::from_secs(1)),
        },
        None => false,
    };
    if ok {
        admin.guard.succeeded(peer);
        tracing::info!(?peer, "admin page: signed in with the password");
        return admin.start_session();
    }
    admin.guard.failed(peer, Instant::now());
    tracing::warn!(?peer, "admin page: failed sign-in");
    let why = if stored.is_none() {
        "No admin password is set: run `portcullis admin set-password`, or `portcullis admin link` for a one-time link."
    } else {
        "Wrong password."
    };
    html(StatusCode::UNAUTHORIZED, pages::login(Some(why)))
}

async fn login_link(State(admin): Shared, Path(t): Path<String>) -> Response {
    let now = Instant::now();
    let printed = {
        let mut link = lock(&admin.link);
        match link.as_ref() {
            Some((expected, until)) if now < *until && crate::state::keys::same(expected.as_bytes(), t.as_bytes()) => {
                *link = None;
                true
            }
            _ => false,
        }
    };
    let ok = printed || login::take_stored_link(admin.gw.store(), &t, now_ms()).await;
    if ok {
        tracing::info!("admin page: signed in with a one-time link");
        admin.start_session()
    } else {
        html(
            StatusCode::FORBIDDEN,
            pages::login(Some("That link was used already, has expired, or is not valid.")),
        )
    }
}

async fn logout(State(admin): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let fields = form(&body);
    if let Err(why) = admin.check_post(&headers, &fields) {
        return forbidden(why);
    }
    if let Some(sid) = cookie_value(&headers, COOKIE) {
        lock(&admin.sessions).remove(sid);
    }
    let mut r = redirect("/login");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("__Host-portcullis-admin=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0"),
    );
    r
}

async fn approvals(State(admin): Shared, headers: HeaderMap) -> Response {
    let Some(csrf) = admin.session(&headers) else {
        return redirect("/login");
    };
    let rows = admin
        .gw
        .store()
        .approvals(Some(portcullis_store::ApprovalState::Pending), 200)
        .await
        .unwrap_or_default();
    let recent = admin.gw.store().approvals(None, 30).await.unwrap_or_default();
    html(StatusCode::OK, pages::approvals(&csrf, &rows, &recent, now_ms()))
}

async fn approvals_live(State(admin): Shared, headers: HeaderMap) -> Response {
    let Some(csrf) = admin.session(&headers) else {
        return secure(StatusCode::UNAUTHORIZED.into_response());
    };
    let rows = admin
        .gw
        .store()
        .approvals(Some(portcullis_store::ApprovalState::Pending), 200)
        .await
        .unwrap_or_default();
    html(
        StatusCode::OK,
        pages::pending_table(&csrf, &rows, now_ms()).into_string(),
    )
}

async fn decide(State(admin): Shared, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let fields = form(&body);
    if let Err(why) = admin.check_post(&headers, &fields) {
        return forbidden(why);
    }
    let now = now_ms();
    let (approve, until, note) = match fields.get("action").map(String::as_str) {
        Some("approve") => (true, None, None),
        Some("approve-for") => {
            let minutes: i64 = fields
                .get("minutes")
                .and_then(|m| m.parse().ok())
                .unwrap_or(10)
                .clamp(1, 24 * 60);
            (true, Some(now + minutes * 60_000), None)
        }
        Some("deny") => (
            false,
            None,
            Some(
                fields
                    .get("reason")
                    .map(|r| r.trim())
                    .filter(|r| !r.is_empty())
                    .unwrap_or("denied on the admin page")
                    .to_owned(),
            ),
        ),
        _ => {
            return html(
                StatusCode::BAD_REQUEST,
                pages::message("Bad request", "Unknown action."),
            );
        }
    };
    match admin
        .gw
        .store()
        .decide_approval(&id, approve, "web:admin", note.as_deref(), until, now)
        .await
    {
        Ok(true) => {
            tracing::info!(approval = %id, approve, "decided on the admin page");
            redirect("/approvals")
        }
        Ok(false) => html(
            StatusCode::CONFLICT,
            pages::message(
                "Already decided",
                "That approval was decided already, or it expired; nothing changed.",
            ),
        ),
        Err(e) => html(
            StatusCode::INTERNAL_SERVER_ERROR,
            pages::message("Error", &e.to_string()),
        ),
    }
}

async fn tools(State(admin): Shared, headers: HeaderMap) -> Response {
    let Some(csrf) = admin.session(&headers) else {
        return redirect("/login");
    };
    let view = pages::ToolsView::build(&admin.gw).await;
    html(StatusCode::OK, pages::tools(&csrf, &view))
}

async fn approve_tool(State(admin): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let fields = form(&body);
    if let Err(why) = admin.check_post(&headers, &fields) {
        return forbidden(why);
    }
    let Some(name) = fields.get("tool") else {
        return html(StatusCode::BAD_REQUEST, pages::message("Bad request", "No tool named."));
    };
    match pages::approve_definition(&admin.gw, name, fields.get("hash").map(String::as_str)).await {
        Ok(()) => redirect("/tools"),
        Err(why) => html(StatusCode::CONFLICT, pages::message("Not approved", &why)),
    }
}

async fn audit(State(admin): Shared, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    if admin.session(&headers).is_none() {
        return redirect("/login");
    }
    let filters: HashMap<String, String> = q
        .map(|q| {
            oauth2::url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let view = pages::AuditView::build(admin.gw.store(), &filters).await;
    html(StatusCode::OK, pages::audit(&filters, &view))
}

async fn credentials(State(admin): Shared, headers: HeaderMap) -> Response {
    if admin.session(&headers).is_none() {
        return redirect("/login");
    }
    let store = admin.gw.store();
    let secrets = store.secret_infos().await.unwrap_or_default();
    let grants = store.grants().await.unwrap_or_default();
    let keys = store.api_keys().await.unwrap_or_default();
    html(StatusCode::OK, pages::credentials(&secrets, &grants, &keys))
}

async fn sessions(State(admin): Shared, headers: HeaderMap) -> Response {
    let Some(csrf) = admin.session(&headers) else {
        return redirect("/login");
    };
    html(StatusCode::OK, pages::sessions(&csrf, &admin.gw.taint.list()))
}

async fn clear_session(State(admin): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let fields = form(&body);
    if let Err(why) = admin.check_post(&headers, &fields) {
        return forbidden(why);
    }
    let scope = fields.get("scope").cloned().unwrap_or_default();
    if admin.gw.taint.clear(&scope) {
        tracing::info!(session = %scope, "session taint cleared on the admin page");
        let _ = admin
            .gw
            .audit
            .record(serde_json::json!({"kind": "session", "event": "cleared", "session": scope, "by": "web:admin"}))
            .await;
    }
    redirect("/sessions")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_checked_against_their_argon2id_hash() {
        let mut salt = [7u8; 16];
        salt[0] = 1;
        let mut hash = [0u8; 32];
        argon2_into(b"correct horse battery", &salt, &mut hash).unwrap_or_default();
        let stored = format!("argon2id-v1${}${}", STANDARD.encode(salt), STANDARD.encode(hash));
        assert!(password_matches(&stored, "correct horse battery"));
        assert!(!password_matches(&stored, "correct horse batterz"));
        assert!(!password_matches("plain", "plain"));
        assert!(!password_matches(&format!("{stored}$x"), "correct horse battery"));
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-portcullis-admin=abc; b=2"),
        );
        assert_eq!(cookie_value(&h, COOKIE), Some("abc"));
        assert_eq!(cookie_value(&h, "__Host-portcullis"), None);
    }
}
