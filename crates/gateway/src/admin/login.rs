//! Signing in to the admin page without giving guessers a lever: a sign-in must come from the
//! page itself (`Origin`, `Sec-Fetch-Site`); failures back off per address and overall; the
//! password hash (Argon2id, deliberately slow) runs one at a time off the serving threads; and
//! one-time links expire in minutes and work once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_store::Store;
use sha2::{Digest as _, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{LINK_SETTING, LINK_TTL};

/// Failures from one address before it backs off.
const FREE_TRIES: u32 = 5;
/// Failures overall (in [`GLOBAL_WINDOW`]) before every address backs off.
const GLOBAL_TRIES: u32 = 50;
/// The window of the overall count.
const GLOBAL_WINDOW: Duration = Duration::from_secs(60);
/// The longest back-off.
const MAX_WAIT: Duration = Duration::from_secs(15 * 60);
/// Addresses remembered; past it, the oldest are forgotten (the overall count still holds).
const MAX_ADDRESSES: usize = 10_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A sign-in's `Origin` and `Sec-Fetch-Site` say it came from this page (a browser sends
/// both on a form post; a tool may send neither).
pub fn same_site(headers: &HeaderMap) -> Result<(), &'static str> {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err("Cross-site sign-in refused.");
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if origin != format!("http://{host}") && origin != format!("https://{host}") {
            return Err("Cross-origin sign-in refused.");
        }
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Tries {
    failures: u32,
    until: Option<Instant>,
}

/// The sign-in guard: back-off per address and overall, and the one hashing slot.
#[derive(Debug)]
pub struct Guard {
    by_addr: Mutex<HashMap<Option<IpAddr>, Tries>>,
    global: Mutex<(u32, Instant, Option<Instant>)>,
    hashing: Arc<Semaphore>,
}

impl Default for Guard {
    fn default() -> Self {
        Guard {
            by_addr: Mutex::new(HashMap::new()),
            global: Mutex::new((0, Instant::now(), None)),
            hashing: Arc::new(Semaphore::new(1)),
        }
    }
}

/// The wait after `failures` failures: none for the first few, then doubling.
fn backoff(failures: u32, free: u32) -> Option<Duration> {
    let over = failures.checked_sub(free)?;
    Some(Duration::from_secs(1u64 << over.min(10)).min(MAX_WAIT))
}

impl Guard {
    /// `Err(wait)` while `peer` (or everyone) must wait before trying again.
    pub fn check(&self, peer: Option<IpAddr>, now: Instant) -> Result<(), Duration> {
        if let (_, _, Some(until)) = *lock(&self.global)
            && now < until
        {
            return Err(until - now);
        }
        match lock(&self.by_addr).get(&peer).and_then(|t| t.until) {
            Some(until) if now < until => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failed sign-in.
    pub fn failed(&self, peer: Option<IpAddr>, now: Instant) {
        {
            let mut by_addr = lock(&self.by_addr);
            if !by_addr.contains_key(&peer) && by_addr.len() >= MAX_ADDRESSES {
                by_addr.retain(|_, t| t.until.is_some_and(|u| u > now));
            }
            let t = by_addr.entry(peer).or_default();
            t.failures = t.failures.saturating_add(1);
            t.until = backoff(t.failures, FREE_TRIES).map(|d| now + d);
        }
        let mut g = lock(&self.global);
        if now.saturating_duration_since(g.1) > GLOBAL_WINDOW {
            *g = (0, now, g.2);
        }
        g.0 = g.0.saturating_add(1);
        if let Some(d) = backoff(g.0, GLOBAL_TRIES) {
            g.2 = Some(now + d);
        }
    }

    /// Forgets an address's failures after it signed in.
    pub fn succeeded(&self, peer: Option<IpAddr>) {
        lock(&self.by_addr).remove(&peer);
    }

    /// The one slot for hashing a password, if it is free.
    pub fn hash_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.hashing.clone().try_acquire_owned().ok()
    }
}

/// `429 Too Many Requests` with when to retry.
pub fn too_many(wait: Duration) -> Response {
    let mut r = super::html(
        StatusCode::TOO_MANY_REQUESTS,
        super::pages::login(Some("Too many failed sign-ins: wait, then try again.")),
    );
    if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r.into_response()
}

fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Mints a one-time sign-in link for the gateway on `store` (`portcullis admin link`): only
/// its hash is stored, with its expiry; the path is returned once.
pub async fn mint_link(store: &Store, now_ms: i64) -> Result<String, portcullis_store::StoreError> {
    let mut b = [0u8; 32];
    rand::fill(&mut b);
    let token = URL_SAFE_NO_PAD.encode(b);
    let until = now_ms.saturating_add(i64::try_from(LINK_TTL.as_millis()).unwrap_or(i64::MAX));
    store
        .set_setting(LINK_SETTING, &format!("{}:{until}", hash(&token)))
        .await?;
    Ok(format!("/login/link/{token}"))
}

/// Whether `token` is the stored link and still good; using it ends it.
pub async fn take_stored_link(store: &Store, token: &str, now_ms: i64) -> bool {
    let Ok(Some(stored)) = store.setting(LINK_SETTING).await else {
        return false;
    };
    let Some((digest, until)) = stored.split_once(':') else {
        return false;
    };
    let good = until.parse::<i64>().is_ok_and(|u| now_ms < u)
        && crate::state::keys::same(digest.as_bytes(), hash(token).as_bytes());
    if good && store.set_setting(LINK_SETTING, "used").await.is_err() {
        return false;
    }
    good
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guessing_backs_off_per_address_then_overall() {
        let g = Guard::default();
        let now = Instant::now();
        let a: Option<IpAddr> = "127.0.0.1".parse().ok();
        for _ in 0..FREE_TRIES {
            assert!(g.check(a, now).is_ok());
            g.failed(a, now);
        }
        assert!(g.check(a, now).is_err(), "backs off after the free tries");
        assert!(
            g.check("127.0.0.2".parse().ok(), now).is_ok(),
            "another address is not held"
        );
        for i in 0..GLOBAL_TRIES {
            g.failed(format!("10.0.{}.{}", i / 250, i % 250).parse().ok(), now);
        }
        assert!(g.check("127.0.0.3".parse().ok(), now).is_err(), "overall back-off");
        assert!(g.check(a, now + MAX_WAIT + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn sign_ins_must_come_from_the_page() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8788"));
        assert!(same_site(&h).is_ok(), "a tool sends neither header");
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8788"));
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        assert!(same_site(&h).is_ok());
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(same_site(&h).is_err());
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert!(same_site(&h).is_err());
    }

    #[test]
    fn only_one_hash_at_a_time() {
        let g = Guard::default();
        let slot = g.hash_slot();
        assert!(slot.is_some());
        assert!(g.hash_slot().is_none());
        drop(slot);
        assert!(g.hash_slot().is_some());
    }
}
