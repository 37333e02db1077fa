//! The gateway as an OAuth 2.1 resource server (`auth = "oauth"`): access tokens of the
//! configured identity providers, validated here as JWTs against each provider's published keys,
//! per the MCP authorization spec (both revisions) and RFC 9068.
//!
//! A token is judged in this order, and any failure refuses it:
//! 1. its `iss` (read before the signature is checked, only to pick the provider) must be a
//!    configured issuer, exactly; an unknown issuer is refused without fetching anything;
//! 2. its header: `alg` among the configured algorithms (never HS*, never `none`), `typ` absent
//!    or a JWT type, no `crit`; `jku`, `x5u` and an embedded `jwk` are never followed;
//! 3. its signature, with the provider's key of that `kid` (and a kind and declared `alg` that
//!    fit), from the provider's key set: discovered (RFC 8414, OpenID Connect), cached for its
//!    `max-age`, fetched again at most every 30 seconds when a token names an unknown `kid`
//!    (key rotation), kept when a fetch fails;
//! 4. `exp` (required) and `nbf` within the clock skew, `aud` naming this gateway's canonical
//!    URI (RFC 8707) or a configured extra audience;
//! 5. its claims: the principal, scopes, groups and roles ([`claims`]).
//!
//! A token that is not a JWT is, when one issuer is configured for it, introspected there
//! (RFC 7662): it must be `active`, name this gateway in `aud` and that issuer in `iss` (when
//! it says), and not be expired; the answer is reused for `introspection_cache` at most (and
//! never past the token's `exp`), keyed by the token's SHA-256; at most 8 introspections run at
//! once.
//!
//! The client's token is never forwarded: nothing here hands it on, and upstreams receive only
//! their own credentials.

pub mod claims;
pub mod crypto;
mod introspect;
pub mod jwks;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::Validation;
use reqwest::Url;
use serde_json::{Map, Value};
use sha2::Digest as _;

use crate::config::bearer::{BearerConfig, IssuerConfig};

pub use claims::Identity;
pub use jsonwebtoken::Algorithm;

/// Largest access token looked at.
const MAX_TOKEN: usize = 16 * 1024;
/// The soonest a provider's keys are fetched again because a token named a key not in them.
const REFETCH_UNKNOWN_KID: Duration = Duration::from_secs(30);
/// The soonest a failed fetch is tried again.
const RETRY_FAILED: Duration = Duration::from_secs(5);

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Rejection {
    /// The token is not valid for this gateway: `401 invalid_token`. The reason is for the log,
    /// never for the client.
    #[error("{0}")]
    Invalid(String),
    /// The token might be valid, but its provider's keys cannot be had: `503`.
    #[error("cannot check the token: {0}")]
    Unavailable(String),
}

fn invalid(why: impl Into<String>) -> Rejection {
    Rejection::Invalid(why.into())
}

/// A provider's keys as last fetched.
struct KeySet {
    keys: Vec<jwks::Key>,
    fetched: Instant,
    lifetime: Duration,
}

/// One provider: its config, where its keys are, the keys, and when they were last asked for.
struct Provider {
    cfg: IssuerConfig,
    jwks_uri: RwLock<Option<Url>>,
    keys: RwLock<Option<Arc<KeySet>>>,
    /// Held while fetching (one fetch at a time per provider).
    fetching: tokio::sync::Mutex<Fetches>,
}

/// When a provider's keys were last asked for.
#[derive(Default)]
struct Fetches {
    /// The last attempt, and whether it failed.
    last: Option<(Instant, bool)>,
    /// The last attempt made because a token named a key id the set lacked.
    unknown_kid: Option<Instant>,
}

/// Why the keys are fetched.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Why {
    /// At start: always.
    Start,
    /// The set is missing or stale.
    Stale,
    /// A token names a key id the fresh set lacks: at most once per [`REFETCH_UNKNOWN_KID`].
    UnknownKid,
}

/// Validates client access tokens (see the module documentation).
pub struct Bearer {
    cfg: Arc<BearerConfig>,
    http: reqwest::Client,
    providers: Vec<Provider>,
    introspection: Option<introspect::Introspector>,
    /// JWTs verified lately: a signature check costs 24-52 µs (`benches/bearer.rs`), and a
    /// client sends the same token with every request.
    verified: Remembered,
}

/// The longest a verified token is trusted without checking it again.
const VERIFIED_FOR: Duration = Duration::from_secs(300);

/// Tokens found valid lately, by their SHA-256, each with the identity it proved, until a
/// time. Bounded: when full, the expired ones go, and everything if none had.
#[derive(Default)]
struct Remembered(std::sync::Mutex<std::collections::HashMap<[u8; 32], (Identity, Instant)>>);

/// Most tokens remembered.
const REMEMBERED: usize = 10_000;

impl Remembered {
    fn key(token: &str) -> [u8; 32] {
        sha2::Sha256::digest(token.as_bytes()).into()
    }

    fn get(&self, key: &[u8; 32]) -> Option<Identity> {
        let map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(key)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(id, _)| id.clone())
    }

    /// Remembers `id` for `keep`, never past its token's expiry; nothing when that is no time.
    fn put(&self, key: [u8; 32], id: &Identity, keep: Duration) {
        let keep = until_expiry(id.expires).map_or(keep, |left| keep.min(left));
        if keep.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= REMEMBERED {
            map.retain(|_, (_, until)| *until > now);
            if map.len() >= REMEMBERED {
                map.clear();
            }
        }
        map.insert(key, (id.clone(), now + keep));
    }
}

/// Seconds since the epoch, now.
fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// How long until a token that expires at `exp` (seconds since the epoch) expires, if it says.
pub fn until_expiry(exp: Option<u64>) -> Option<Duration> {
    exp.map(|e| Duration::from_secs(e.saturating_sub(now_unix())))
}

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bearer")
            .field("resource", &self.cfg.resource)
            .finish_non_exhaustive()
    }
}

fn read<T: Clone>(l: &RwLock<Option<T>>) -> Option<T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

fn write<T>(l: &RwLock<Option<T>>, v: T) {
    *l.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(v);
}

impl Bearer {
    /// The validator for `cfg`. Fetches nothing yet ([`Bearer::prefetch`]).
    pub fn new(
        cfg: Arc<BearerConfig>,
        introspection_secret: Option<zeroize::Zeroizing<String>>,
    ) -> Result<Self, reqwest::Error> {
        crate::install_crypto();
        crypto::install();
        let http = crate::fetch::client_builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()?;
        let providers = cfg
            .issuers
            .iter()
            .map(|i| Provider {
                jwks_uri: RwLock::new(i.jwks_uri.clone()),
                cfg: i.clone(),
                keys: RwLock::new(None),
                fetching: tokio::sync::Mutex::new(Fetches::default()),
            })
            .collect();
        let introspection = cfg.issuers.iter().enumerate().find_map(|(i, p)| {
            let t = p.introspection.as_ref()?;
            Some(introspect::Introspector::new(
                i,
                t.clone(),
                introspection_secret.clone().unwrap_or_default(),
                cfg.introspection_cache,
            ))
        });
        Ok(Bearer {
            cfg,
            http,
            providers,
            introspection,
            verified: Remembered::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BearerConfig {
        &self.cfg
    }

    /// Fetches every provider's keys, so the first client is not kept waiting; a provider that
    /// cannot be reached now is logged and tried again when a token needs it.
    pub async fn prefetch(&self) {
        for p in &self.providers {
            match self.refresh(p, Why::Start).await {
                Ok(n) => tracing::info!(issuer = %p.cfg.issuer, keys = n, "identity provider keys loaded"),
                Err(e) => tracing::warn!(issuer = %p.cfg.issuer, error = %e, "identity provider keys not loaded yet"),
            }
        }
    }

    /// Fetches every provider's keys now and says how it went, for `portcullis doctor`: per
    /// issuer (config name, issuer), the number of usable signing keys or why there are none.
    pub async fn probe(&self) -> Vec<(String, String, Result<usize, String>)> {
        let mut out = Vec::new();
        for p in &self.providers {
            let r = match self.refresh(p, Why::Start).await {
                Ok(0) => Err("the key set holds no key this gateway can verify with".to_owned()),
                other => other,
            };
            out.push((p.cfg.name.clone(), p.cfg.issuer.clone(), r));
        }
        out
    }

    /// The identity a bearer token proves, or why it proves none. A JWT verified in the last
    /// five minutes is not verified again, unless it has expired since.
    pub async fn validate(&self, token: &str) -> Result<Identity, Rejection> {
        if token.len() > MAX_TOKEN {
            return Err(invalid("the token is too long"));
        }
        let jwt = token.split('.').count() == 3;
        if !jwt {
            return self.check(token).await;
        }
        let key = Remembered::key(token);
        if let Some(id) = self.verified.get(&key) {
            return Ok(id);
        }
        let id = self.check(token).await?;
        self.verified.put(key, &id, VERIFIED_FOR);
        Ok(id)
    }

    /// [`Bearer::validate`] without the memory of verified tokens: every check made again.
    pub async fn check(&self, token: &str) -> Result<Identity, Rejection> {
        if token.len() > MAX_TOKEN {
            return Err(invalid("the token is too long"));
        }
        if token.split('.').count() != 3 {
            return match &self.introspection {
                Some(i) => {
                    let p = self
                        .providers
                        .get(i.provider)
                        .ok_or_else(|| invalid("no provider introspects"))?;
                    i.validate(self, p, token).await
                }
                None => Err(invalid("not a JWT, and no provider introspects opaque tokens")),
            };
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(format!("not a JWT: {e}")))?;
        // The issuer, only to pick whose keys to check the signature with.
        let unverified: Map<String, Value> = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|e| invalid(format!("unreadable claims: {e}")))?;
        let iss = unverified.get("iss").and_then(Value::as_str).unwrap_or_default();
        let provider = self
            .providers
            .iter()
            .find(|p| p.cfg.issuer == iss)
            .ok_or_else(|| invalid(format!("issuer {iss:?} is not trusted")))?;
        if !self.cfg.algorithms.contains(&header.alg) {
            return Err(invalid(format!("algorithm {:?} is not accepted", header.alg)));
        }
        if let Some(typ) = &header.typ {
            let t = typ.to_ascii_lowercase();
            if !matches!(t.as_str(), "jwt" | "at+jwt" | "application/at+jwt") {
                return Err(invalid(format!("type {typ:?} is not an access token")));
            }
        }
        if header.crit.is_some() {
            return Err(invalid("the token has critical header parameters"));
        }
        let kid = header.kid.as_deref();
        let keys = self.keys_for(provider, kid, header.alg).await?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&provider.cfg.issuer]);
        validation.set_audience(&self.cfg.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = self.cfg.clock_skew.as_secs();
        validation.validate_nbf = true;
        let mut last = invalid("no key fits the token");
        for key in keys.keys.iter().filter(|k| fits(k, kid, header.alg)) {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => {
                    return claims::identity(&data.claims, self.rules(provider)).map_err(|e| invalid(e.to_string()));
                }
                Err(e) => {
                    last = invalid(describe(e.kind()));
                    // A signature that verified and failed a claim check fails on any key.
                    if !matches!(e.kind(), jsonwebtoken::errors::ErrorKind::InvalidSignature) {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    fn rules<'a>(&'a self, provider: &'a Provider) -> claims::Rules<'a> {
        claims::Rules {
            principal_claim: &self.cfg.principal_claim,
            principal_prefix: &provider.cfg.principal_prefix,
            groups_claim: self.cfg.groups_claim.as_deref(),
            roles_claim: self.cfg.roles_claim.as_deref(),
        }
    }

    /// The provider's keys that may verify a token with this `kid` and `alg`: the cached set,
    /// or a fresh one when the cache is stale, empty, or lacks the `kid` (and was not fetched in
    /// the last 30 seconds).
    async fn keys_for(&self, p: &Provider, kid: Option<&str>, alg: Algorithm) -> Result<Arc<KeySet>, Rejection> {
        let cached = read(&p.keys);
        let fresh = cached.as_ref().is_some_and(|s| s.fetched.elapsed() < s.lifetime);
        let found = cached
            .as_ref()
            .is_some_and(|s| s.keys.iter().any(|k| fits(k, kid, alg)));
        if let Some(set) = &cached
            && fresh
            && found
        {
            return Ok(set.clone());
        }
        // Stale, missing, or no key for this token: fetch, unless one was just made (a flood of
        // forged `kid`s must not become a flood of requests to the provider).
        let why = if fresh { Why::UnknownKid } else { Why::Stale };
        let _ = self.refresh(p, why).await;
        match read(&p.keys) {
            Some(set) => Ok(set),
            None => Err(Rejection::Unavailable(format!(
                "the keys of {} could not be fetched",
                p.cfg.issuer
            ))),
        }
    }

    /// Fetches the provider's keys, one fetch at a time per provider, and none when a caller
    /// waiting for the lock finds a fetch was made meanwhile, when the last attempt failed less
    /// than [`RETRY_FAILED`] ago, or (for an unknown `kid`) when the last such fetch was less
    /// than [`REFETCH_UNKNOWN_KID`] ago. Keeps the old keys when the fetch fails.
    async fn refresh(&self, p: &Provider, why: Why) -> Result<usize, String> {
        let asked = Instant::now();
        let mut f = p.fetching.lock().await;
        if why != Why::Start {
            if let Some((at, failed)) = f.last
                && (at >= asked || (failed && at.elapsed() < RETRY_FAILED))
            {
                return Ok(0);
            }
            if why == Why::UnknownKid && f.unknown_kid.is_some_and(|at| at.elapsed() < REFETCH_UNKNOWN_KID) {
                return Ok(0);
            }
        }
        if why == Why::UnknownKid {
            f.unknown_kid = Some(Instant::now());
        }
        let result = self.fetch(p).await;
        f.last = Some((Instant::now(), result.is_err()));
        let (keys, lifetime) = result?;
        let n = keys.len();
        write(
            &p.keys,
            Arc::new(KeySet {
                keys,
                fetched: Instant::now(),
                lifetime,
            }),
        );
        Ok(n)
    }

    async fn fetch(&self, p: &Provider) -> Result<(Vec<jwks::Key>, Duration), String> {
        let uri = match read(&p.jwks_uri) {
            Some(u) => u,
            None => {
                let m = crate::fetch::discover(&self.http, &p.cfg.url)
                    .await
                    .map_err(|e| e.to_string())?;
                let u = crate::fetch::AuthServerMetadata::endpoint(m.jwks_uri.as_deref(), "jwks_uri")?
                    .ok_or_else(|| format!("the metadata of {} has no jwks_uri", p.cfg.issuer))?;
                write(&p.jwks_uri, u.clone());
                u
            }
        };
        crate::fetch::check_url(&uri).map_err(|e| e.to_string())?;
        let resp = self
            .http
            .get(uri.clone())
            .header(http::header::ACCEPT, "application/jwk-set+json, application/json")
            .send()
            .await
            .map_err(|e| format!("{uri}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{uri}: HTTP {}", resp.status()));
        }
        let lifetime = jwks::lifetime(
            resp.headers()
                .get(http::header::CACHE_CONTROL)
                .and_then(|v| v.to_str().ok()),
        );
        let body = crate::fetch::read_bounded(resp).await?;
        let keys = jwks::parse(&body).map_err(|e| format!("{uri}: {e}"))?;
        Ok((keys, lifetime))
    }
}

/// Whether `key` may check a token with this `kid` and `alg`: the same `kid` when the token
/// names one, and a kind and declared algorithm that fit.
fn fits(key: &jwks::Key, kid: Option<&str>, alg: Algorithm) -> bool {
    key.verifies(alg) && kid.is_none_or(|kid| key.kid.as_deref() == Some(kid))
}

fn describe(kind: &jsonwebtoken::errors::ErrorKind) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match kind {
        K::ExpiredSignature => "the token has expired".into(),
        K::ImmatureSignature => "the token is not valid yet (nbf)".into(),
        K::InvalidAudience => "the token is for another audience".into(),
        K::InvalidIssuer => "the token's issuer does not match".into(),
        K::InvalidSignature => "the signature does not verify".into(),
        K::MissingRequiredClaim(c) => format!("the token has no `{c}`"),
        K::InvalidAlgorithm => "the algorithm does not fit the key".into(),
        other => format!("{other:?}"),
    }
}
