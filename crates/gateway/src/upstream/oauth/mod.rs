//! OAuth 2.1 for upstream services: `portcullis connect` runs the authorization code flow with
//! PKCE and a loopback redirect and keeps the refresh token in the vault; at run time a
//! [`TokenSource`] mints access tokens from it on demand, refreshes them before they expire
//! (storing a rotated refresh token), and registers every token with the redactor, so only the
//! upstream it is for ever sees it. `portcullis disconnect` revokes the grant.
//!
//! The protocol is the `oauth2` crate's; this module adds discovery, the loopback redirect,
//! the vault and the timing.

pub mod discovery;
pub mod plan;
mod redirect;

use std::sync::Arc;
use std::time::{Duration, Instant};

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, RevocationUrl, Scope,
    TokenResponse as _, TokenUrl,
};
use portcullis_vault::{Vault, VaultError};
use reqwest::Url;
use zeroize::Zeroizing;

use crate::config::oauth::{Delivery, Endpoints, Provider};
use crate::config::{Transport, UpstreamConfig};

pub use redirect::Redirect;

/// An OAuth step failed.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The provider could not be reached.
    #[error("cannot reach the provider at {url}: {why}")]
    Unreachable {
        /// Where.
        url: String,
        /// Why.
        why: String,
    },
    /// The provider's metadata is missing or unusable.
    #[error("provider `{provider}`: no usable metadata at {issuer} ({why})")]
    Discovery {
        /// The provider.
        provider: String,
        /// Its issuer.
        issuer: String,
        /// What is wrong.
        why: String,
    },
    /// The provider answered with an OAuth error.
    #[error("the provider refused: {0}")]
    Refused(String),
    /// The refresh token no longer works (revoked, expired, or reused).
    #[error(
        "the grant of upstream `{upstream}` is no longer valid ({why}); run `portcullis connect {provider} --upstream {upstream}` again"
    )]
    GrantInvalid {
        /// The upstream.
        upstream: String,
        /// The provider.
        provider: String,
        /// The provider's words.
        why: String,
    },
    /// The upstream has never been connected (or was disconnected).
    #[error(
        "upstream `{upstream}` is not connected to `{provider}`: run `portcullis connect {provider} --upstream {upstream}`"
    )]
    NotConnected {
        /// The upstream.
        upstream: String,
        /// The provider.
        provider: String,
    },
    /// The token response carried no refresh token.
    #[error(
        "the provider issued no refresh token, so access would end within the hour; ask for offline access (`scopes = [\"offline_access\"]`, or Google's preset `access_type = \"offline\"`)"
    )]
    NoRefreshToken,
    /// The person at the browser refused, or the provider sent an error to the redirect.
    #[error("the authorization was not granted: {0}")]
    Denied(String),
    /// Nobody came back to the redirect in time.
    #[error("no answer at the redirect within {0:?}; nothing was stored")]
    Timeout(Duration),
    /// The loopback redirect could not be set up.
    #[error("cannot listen for the redirect on {addr}: {why}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        why: String,
    },
    /// The provider has no revocation endpoint.
    #[error("provider `{0}` has no revocation endpoint; revoke the grant in the provider's console")]
    NoRevocation(String),
    /// The client secret named in config is not in the vault.
    #[error("`oauth.{provider}.client_secret` refers to `vault:{name}`, which is not in the vault")]
    MissingClientSecret {
        /// The provider.
        provider: String,
        /// The secret.
        name: String,
    },
    /// A URL in the exchange is unusable.
    #[error("unusable URL {0}")]
    Url(String),
    /// The vault failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
}

/// Where a provider's endpoints are, once known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The authorization endpoint.
    pub authorization: Url,
    /// The token endpoint.
    pub token: Url,
    /// The revocation endpoint.
    pub revocation: Option<Url>,
    /// The issuer its metadata names, exactly (RFC 9207 compares the authorization response's
    /// `iss` with it as strings), when the endpoints were discovered.
    pub issuer: Option<String>,
    /// Whether the provider says it always names itself in authorization responses
    /// (`authorization_response_iss_parameter_supported`): then a response without `iss` is
    /// refused.
    pub iss_required: bool,
}

/// Tokens from the token endpoint.
pub struct Tokens {
    /// The access token.
    pub access: Zeroizing<String>,
    /// The refresh token, if one was issued (or rotated).
    pub refresh: Option<Zeroizing<String>>,
    /// How long the access token lives, if the provider said.
    pub expires_in: Option<Duration>,
    /// The scopes granted, if the provider said (else those requested).
    pub scopes: Option<Vec<String>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("expires_in", &self.expires_in)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// The HTTP client for provider requests: rustls, no proxy, no redirects (a redirect must not
/// carry a code or a token elsewhere), bounded time, and the gateway's fetch policy: names
/// dialled only at public addresses ([`crate::fetch`]).
pub fn http_client() -> Result<reqwest::Client, OAuthError> {
    crate::install_crypto();
    crate::fetch::client_builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| OAuthError::Unreachable {
            url: String::new(),
            why: format!("cannot build HTTP client: {e}"),
        })
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HttpFailure(String);

/// One provider request through our reqwest client, for the `oauth2` crate.
async fn send(http: reqwest::Client, req: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, HttpFailure> {
    let (parts, body) = req.into_parts();
    let url = Url::parse(&parts.uri.to_string()).map_err(|e| HttpFailure(format!("`{}`: {e}", parts.uri)))?;
    crate::fetch::check_url(&url).map_err(|e| HttpFailure(e.to_string()))?;
    let resp = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| HttpFailure(e.to_string()))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = crate::fetch::read_bounded(resp).await.map_err(HttpFailure)?;
    let mut out = http::Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

/// The provider's endpoints: as configured, or discovered from its issuer (RFC 8414 metadata,
/// then OpenID Connect discovery). The metadata must name the same issuer, and endpoints must
/// be https (or loopback http).
pub async fn resolve(http: &reqwest::Client, p: &Provider) -> Result<Resolved, OAuthError> {
    let issuer = match &p.endpoints {
        Endpoints::Fixed {
            authorization,
            token,
            revocation,
        } => {
            for u in [Some(authorization), Some(token), revocation.as_ref()]
                .into_iter()
                .flatten()
            {
                crate::fetch::check_url(u).map_err(|e| OAuthError::Unreachable {
                    url: u.to_string(),
                    why: e.to_string(),
                })?;
            }
            return Ok(Resolved {
                authorization: authorization.clone(),
                token: token.clone(),
                revocation: revocation.clone(),
                issuer: None,
                iss_required: false,
            });
        }
        Endpoints::Issuer(i) => i,
    };
    let fail = |why: String| OAuthError::Discovery {
        provider: p.name.clone(),
        issuer: issuer.to_string(),
        why,
    };
    let m = crate::fetch::discover(http, issuer).await.map_err(|e| match e {
        crate::fetch::DiscoveryError::Unreachable { url, why } => OAuthError::Unreachable { url, why },
        crate::fetch::DiscoveryError::Invalid(why) => fail(why),
    })?;
    let endpoint = |v: Option<&str>, what: &str| -> Result<Option<Url>, OAuthError> {
        crate::fetch::AuthServerMetadata::endpoint(v, what).map_err(&fail)
    };
    let required = |v: Option<&str>, what: &str| -> Result<Url, OAuthError> {
        endpoint(v, what)?.ok_or_else(|| fail(format!("the metadata has no {what}")))
    };
    Ok(Resolved {
        authorization: required(m.authorization_endpoint.as_deref(), "authorization_endpoint")?,
        token: required(m.token_endpoint.as_deref(), "token_endpoint")?,
        revocation: endpoint(m.revocation_endpoint.as_deref(), "revocation_endpoint")?,
        iss_required: m.authorization_response_iss_parameter_supported == Some(serde_json::Value::Bool(true)),
        issuer: m.issuer,
    })
}

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointSet>;

fn client(p: &Provider, e: &Resolved, secret: Option<&str>, redirect: Option<&Url>) -> Result<Client, OAuthError> {
    let url_err = |e: oauth2::url::ParseError| OAuthError::Url(e.to_string());
    let mut c = BasicClient::new(ClientId::new(p.client_id.clone()))
        .set_auth_uri(AuthUrl::from_url(e.authorization.clone()))
        .set_token_uri(TokenUrl::from_url(e.token.clone()))
        .set_revocation_url_option(e.revocation.clone().map(RevocationUrl::from_url));
    if let Some(s) = secret {
        c = c.set_client_secret(ClientSecret::new(s.to_owned()));
    }
    if let Some(r) = redirect {
        c = c.set_redirect_uri(RedirectUrl::new(r.to_string()).map_err(url_err)?);
    }
    Ok(c)
}

/// The client secret from the vault, when the provider has one.
async fn client_secret(p: &Provider, vault: Option<&Vault>) -> Result<Option<Zeroizing<String>>, OAuthError> {
    let Some(name) = &p.client_secret else {
        return Ok(None);
    };
    let missing = || OAuthError::MissingClientSecret {
        provider: p.name.clone(),
        name: name.clone(),
    };
    let vault = vault.ok_or_else(missing)?;
    let s = vault.get(name, "").await?.ok_or_else(missing)?;
    Ok(Some(Zeroizing::new(s.expose().to_owned())))
}

type TokenError = RequestTokenError<HttpFailure, oauth2::StandardErrorResponse<BasicErrorResponseType>>;

fn token_error(e: TokenError, url: &Url, grant: Option<(&str, &str)>) -> OAuthError {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let why = match r.error_description() {
                Some(d) => format!("{}: {d}", r.error()),
                None => r.error().to_string(),
            };
            match (r.error(), grant) {
                (BasicErrorResponseType::InvalidGrant, Some((upstream, provider))) => OAuthError::GrantInvalid {
                    upstream: upstream.to_owned(),
                    provider: provider.to_owned(),
                    why,
                },
                _ => OAuthError::Refused(why),
            }
        }
        RequestTokenError::Request(e) => OAuthError::Unreachable {
            url: url.to_string(),
            why: e.to_string(),
        },
        RequestTokenError::Parse(e, _) => OAuthError::Refused(format!("unreadable token response: {e}")),
        RequestTokenError::Other(s) => OAuthError::Refused(s),
    }
}

fn tokens_of(r: &oauth2::basic::BasicTokenResponse) -> Tokens {
    Tokens {
        access: Zeroizing::new(r.access_token().secret().clone()),
        refresh: r.refresh_token().map(|t| Zeroizing::new(t.secret().clone())),
        expires_in: r.expires_in(),
        scopes: r.scopes().map(|s| s.iter().map(|x| x.to_string()).collect()),
    }
}

/// An authorization in progress: the address to open, and what the redirect must bring back.
#[derive(Debug)]
pub struct Authorization {
    /// The address the person opens in a browser.
    pub url: Url,
    verifier: PkceCodeVerifier,
    state: CsrfToken,
    redirect: Redirect,
    client: Client,
    issuer: Option<String>,
    iss_required: bool,
}

/// Starts an authorization: listens for the redirect on 127.0.0.1 (`port` 0: any free port)
/// and builds the authorization URL with PKCE (S256), a fresh `state`, the scopes and the
/// provider's extra parameters.
pub async fn authorize(
    p: &Provider,
    e: &Resolved,
    vault: Option<&Vault>,
    scopes: &[String],
    port: u16,
) -> Result<Authorization, OAuthError> {
    let redirect = Redirect::bind(port).await?;
    let secret = client_secret(p, vault).await?;
    let client = client(p, e, secret.as_deref().map(String::as_str), Some(redirect.url()))?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(scopes.iter().map(|s| Scope::new(s.clone())))
        .set_pkce_challenge(challenge);
    for (k, v) in &p.params {
        req = req.add_extra_param(k.clone(), v.clone());
    }
    let (url, state) = req.url();
    Ok(Authorization {
        url,
        verifier,
        state,
        redirect,
        client,
        issuer: e.issuer.clone(),
        iss_required: e.iss_required,
    })
}

impl Authorization {
    /// Waits for the browser to come back to the redirect (a wrong `state` is refused and
    /// waiting goes on), then exchanges the code. A response without a refresh token is an
    /// error: access would end within the hour.
    pub async fn finish(self, http: &reqwest::Client, timeout: Duration) -> Result<Tokens, OAuthError> {
        let (code, iss) = self.redirect.wait(self.state.secret(), timeout).await?;
        check_iss(iss.as_deref(), self.issuer.as_deref(), self.iss_required)?;
        let token_url = self.client.token_uri().url().clone();
        let r = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(self.verifier)
            .request_async(&|req| send(http.clone(), req))
            .await
            .map_err(|e| token_error(e, &token_url, None))?;
        let t = tokens_of(&r);
        if t.refresh.is_none() {
            return Err(OAuthError::NoRefreshToken);
        }
        Ok(t)
    }
}

/// RFC 9207: an authorization response naming another issuer than the metadata's (compared
/// as strings, no normalisation: a trailing slash is another issuer) is a mix-up attack, and so
/// is one without `iss` from a provider that says it always sends it; the code is never used.
fn check_iss(iss: Option<&str>, expected: Option<&str>, required: bool) -> Result<(), OAuthError> {
    match (iss, expected) {
        (Some(iss), Some(expected)) if iss != expected => Err(OAuthError::Denied(format!(
            "the response names issuer `{iss}`, not `{expected}`; the code was not used"
        ))),
        (None, Some(expected)) if required => Err(OAuthError::Denied(format!(
            "`{expected}` says it names itself in every authorization response, and this one does not; the code was not used"
        ))),
        _ => Ok(()),
    }
}

/// Revokes a refresh token (RFC 7009): the provider ends the grant. Written out here because
/// the `oauth2` crate refuses a plain-http revocation endpoint even on loopback.
pub async fn revoke(
    http: &reqwest::Client,
    p: &Provider,
    e: &Resolved,
    vault: Option<&Vault>,
    refresh: &str,
) -> Result<(), OAuthError> {
    let Some(url) = &e.revocation else {
        return Err(OAuthError::NoRevocation(p.name.clone()));
    };
    let secret = client_secret(p, vault).await?;
    let mut form = oauth2::url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("token", refresh)
        .append_pair("token_type_hint", "refresh_token");
    let mut req = http.post(url.clone());
    match &secret {
        // RFC 6749 §2.3.1: both parts form-encoded, then Basic.
        Some(s) => {
            let enc = |v: &str| oauth2::url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
            req = req.basic_auth(enc(&p.client_id), Some(enc(s)));
        }
        None => {
            form.append_pair("client_id", &p.client_id);
        }
    }
    let body = Zeroizing::new(form.finish());
    let resp = req
        .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body.as_bytes().to_vec())
        .send()
        .await
        .map_err(|err| OAuthError::Unreachable {
            url: url.to_string(),
            why: err.to_string(),
        })?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let text = crate::fetch::read_bounded(resp).await.unwrap_or_default();
    let why = serde_json::from_slice::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| format!("HTTP {status}"));
    Err(OAuthError::Refused(format!("revocation: {why}")))
}

/// An access token and when to replace it.
#[derive(Clone)]
pub struct Minted {
    /// The token.
    pub token: Zeroizing<String>,
    /// When to mint the next one (before this one expires); `None`: it does not expire.
    pub refresh_at: Option<Instant>,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("refresh_at", &self.refresh_at)
            .finish_non_exhaustive()
    }
}

/// When to replace a token that lives `lifetime`: a minute early, or a quarter of its life
/// early for short-lived tokens.
pub fn refresh_after(lifetime: Duration) -> Duration {
    lifetime.saturating_sub((lifetime / 4).min(Duration::from_secs(60)))
}

/// One upstream's access tokens, minted from its refresh token in the vault.
#[derive(Debug)]
pub struct TokenSource {
    upstream: String,
    provider: Provider,
    delivery: Delivery,
    secret: String,
    vault: Arc<Vault>,
    http: reqwest::Client,
    endpoints: tokio::sync::Mutex<Option<Resolved>>,
    /// The current token; the lock also serialises refreshes (a refresh token that rotates
    /// must never be used twice: providers revoke the grant on reuse).
    current: tokio::sync::Mutex<Option<Minted>>,
}

impl TokenSource {
    /// A source for `upstream`'s tokens.
    pub fn new(
        upstream: &UpstreamConfig,
        provider: Provider,
        vault: Arc<Vault>,
    ) -> Result<Option<TokenSource>, OAuthError> {
        let Some(o) = &upstream.oauth else {
            return Ok(None);
        };
        Ok(Some(TokenSource {
            upstream: upstream.name.clone(),
            provider,
            delivery: o.delivery.clone(),
            secret: crate::config::oauth::UpstreamOAuth::secret_name(&upstream.name),
            vault,
            http: http_client()?,
            endpoints: tokio::sync::Mutex::new(None),
            current: tokio::sync::Mutex::new(None),
        }))
    }

    async fn endpoints(&self) -> Result<Resolved, OAuthError> {
        let mut e = self.endpoints.lock().await;
        if let Some(r) = &*e {
            return Ok(r.clone());
        }
        let r = resolve(&self.http, &self.provider).await?;
        *e = Some(r.clone());
        Ok(r)
    }

    /// A valid access token: the current one, or a fresh one when it is due.
    pub async fn token(&self) -> Result<Minted, OAuthError> {
        let mut cur = self.current.lock().await;
        if let Some(m) = &*cur
            && m.refresh_at.is_none_or(|t| Instant::now() < t)
        {
            return Ok(m.clone());
        }
        let endpoints = self.endpoints().await?;
        let refresh = self
            .vault
            .get(&self.secret, "")
            .await?
            .ok_or_else(|| OAuthError::NotConnected {
                upstream: self.upstream.clone(),
                provider: self.provider.name.clone(),
            })?;
        let secret = client_secret(&self.provider, Some(&self.vault)).await?;
        let c = client(&self.provider, &endpoints, secret.as_deref().map(String::as_str), None)?;
        let asked = Instant::now();
        let rt = RefreshToken::new(refresh.expose().to_owned());
        let r = c
            .exchange_refresh_token(&rt)
            .request_async(&|req| send(self.http.clone(), req))
            .await
            .map_err(|e| token_error(e, &endpoints.token, Some((&self.upstream, &self.provider.name))))?;
        let t = tokens_of(&r);
        crate::redact::remember(&self.secret, &t.access);
        if let Some(new) = &t.refresh
            && new.as_str() != refresh.expose()
        {
            // Rotated: the old one is spent. Keep the new one before anything else.
            crate::redact::remember(&self.secret, new);
            self.vault.set(&self.secret, "", new).await?;
            tracing::debug!(upstream = %self.upstream, "refresh token rotated");
        }
        tracing::info!(upstream = %self.upstream, provider = %self.provider.name, expires_in_s = t.expires_in.map(|d| d.as_secs()), "access token minted");
        let m = Minted {
            token: t.access,
            refresh_at: t.expires_in.map(|d| asked + refresh_after(d)),
        };
        *cur = Some(m.clone());
        Ok(m)
    }

    /// `cfg` with the token where the upstream takes it (its env, or a header).
    pub fn deliver(&self, cfg: &UpstreamConfig, token: &str) -> UpstreamConfig {
        let mut out = cfg.clone();
        match (&mut out.transport, &self.delivery) {
            (Transport::Stdio { env, .. }, Delivery::Env(k)) => {
                env.insert(k.clone(), token.to_owned());
            }
            (Transport::Http { headers, .. }, Delivery::Header(h)) => {
                let v = if h.eq_ignore_ascii_case("authorization") {
                    format!("Bearer {token}")
                } else {
                    token.to_owned()
                };
                headers.insert(h.clone(), v);
            }
            // Config lowering pairs env with stdio and headers with HTTP.
            _ => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(endpoints: Endpoints) -> Provider {
        Provider {
            name: "idp".into(),
            endpoints,
            client_id: "portcullis".into(),
            client_secret: None,
            scopes: Vec::new(),
            params: std::collections::BTreeMap::new(),
        }
    }

    /// A loopback provider whose metadata names `token_endpoint`; how many requests reached it.
    async fn metadata_server(token_endpoint: &'static str) -> (Url, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        metadata_server_at("/.well-known/oauth-authorization-server", "", token_endpoint).await
    }

    /// A loopback provider with issuer `http://ADDR{issuer_path}`, its metadata served at `route`
    /// only.
    async fn metadata_server_at(
        route: &'static str,
        issuer_path: &'static str,
        token_endpoint: &'static str,
    ) -> (Url, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}{issuer_path}", listener.local_addr().unwrap());
        let hits = std::sync::Arc::new(AtomicUsize::new(0));
        let (i, h) = (issuer.clone(), hits.clone());
        let app = axum::Router::new().route(
            route,
            axum::routing::get(move || {
                h.fetch_add(1, Ordering::SeqCst);
                let body = serde_json::json!({
                    "issuer": i,
                    "authorization_endpoint": format!("{i}/authorize"),
                    "token_endpoint": token_endpoint,
                });
                async move { ([(http::header::CONTENT_TYPE, "application/json")], body.to_string()) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (Url::parse(&issuer).unwrap(), hits)
    }

    #[tokio::test]
    async fn an_issuer_with_a_path_is_found_at_each_place_the_spec_names() {
        for route in [
            "/.well-known/oauth-authorization-server/tenant1",
            "/.well-known/openid-configuration/tenant1",
            "/tenant1/.well-known/openid-configuration",
        ] {
            let (issuer, hits) = metadata_server_at(route, "/tenant1", "http://127.0.0.1:9/token").await;
            let r = resolve(&http_client().unwrap(), &provider(Endpoints::Issuer(issuer)))
                .await
                .unwrap_or_else(|e| panic!("{route}: {e}"));
            assert_eq!(r.token.as_str(), "http://127.0.0.1:9/token", "{route}");
            assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1, "{route}");
        }
    }

    #[tokio::test]
    async fn a_provider_that_redirects_is_not_followed() {
        // The metadata a redirect would lead to, and a provider whose every well-known URL
        // answers with a redirect there.
        let (target, reached) = metadata_server("http://127.0.0.1:9/token").await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let location = format!("{target}.well-known/oauth-authorization-server");
        let app = axum::Router::new().fallback(move || {
            let location = location.clone();
            async move {
                (
                    http::StatusCode::TEMPORARY_REDIRECT,
                    [(http::header::LOCATION, location)],
                )
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        let e = resolve(&http_client().unwrap(), &provider(Endpoints::Issuer(issuer)))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("307"), "{e}");
        assert_eq!(
            reached.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "the redirect was followed"
        );
    }

    #[test]
    fn metadata_is_looked_for_where_the_spec_says_and_must_name_its_issuer() {
        let urls = |i: &str| -> Vec<String> {
            crate::fetch::discovery_urls(&Url::parse(i).unwrap())
                .iter()
                .map(Url::to_string)
                .collect()
        };
        assert_eq!(
            urls("https://auth.example.com/tenant1"),
            [
                "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
                "https://auth.example.com/.well-known/openid-configuration/tenant1",
                "https://auth.example.com/tenant1/.well-known/openid-configuration",
            ]
        );
        assert_eq!(
            urls("https://auth.example.com"),
            [
                "https://auth.example.com/.well-known/oauth-authorization-server",
                "https://auth.example.com/.well-known/openid-configuration",
            ]
        );
        assert_eq!(urls("https://auth.example.com/realms/corp/").len(), 3);
        let issuer = Url::parse("https://auth.example.com/tenant1").unwrap();
        assert!(crate::fetch::same_issuer(
            &issuer,
            "https://AUTH.example.com:443/tenant1"
        ));
        assert!(!crate::fetch::same_issuer(&issuer, "https://auth.example.com/tenant1/"));
        assert!(!crate::fetch::same_issuer(&issuer, "https://auth.example.com/tenant2"));
        assert!(!crate::fetch::same_issuer(&issuer, "https://evil.example/tenant1"));
        assert!(!crate::fetch::same_issuer(&issuer, "not a url"));
        let root = Url::parse("https://auth.example.com").unwrap();
        assert!(crate::fetch::same_issuer(&root, "https://auth.example.com"));
        assert!(crate::fetch::same_issuer(&root, "https://auth.example.com/"));
    }

    #[tokio::test]
    async fn discovery_never_leads_into_the_network() {
        let http = http_client().unwrap();
        // Metadata that sends the token request to the cloud metadata service, or into a
        // private network, or over plain http: refused at discovery, before any token request.
        for bad in [
            "https://169.254.169.254/latest/meta-data/iam/security-credentials/",
            "https://10.0.0.1/token",
            "https://[::ffff:169.254.169.254]/token",
            "http://idp.example.com/token",
        ] {
            let (issuer, hits) = metadata_server(bad).await;
            let e = resolve(&http, &provider(Endpoints::Issuer(issuer))).await.unwrap_err();
            assert!(e.to_string().contains("token_endpoint"), "{bad}: {e}");
            assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1, "{bad}");
        }
        // A loopback provider whose endpoints are its own: fine.
        let (issuer, _) = metadata_server("http://127.0.0.1:9/token").await;
        let r = resolve(&http, &provider(Endpoints::Issuer(issuer))).await.unwrap();
        assert_eq!(r.token.as_str(), "http://127.0.0.1:9/token");
        // An issuer inside the network is never asked at all.
        let e = resolve(
            &http,
            &provider(Endpoints::Issuer(
                Url::parse("https://192.168.0.10/realms/corp").unwrap(),
            )),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("a private address"), "{e}");
        // Nor are fixed endpoints there.
        let e = resolve(
            &http,
            &provider(Endpoints::Fixed {
                authorization: Url::parse("https://idp.example.com/authorize").unwrap(),
                token: Url::parse("https://169.254.169.254/token").unwrap(),
                revocation: None,
            }),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("link-local"), "{e}");
    }

    #[test]
    fn the_authorization_response_must_name_the_issuer_exactly() {
        let e = Some("https://auth.example.com");
        assert!(check_iss(Some("https://auth.example.com"), e, true).is_ok());
        assert!(check_iss(None, e, false).is_ok());
        assert!(check_iss(Some("https://auth.example.com/"), e, false).is_err());
        assert!(check_iss(Some("https://evil.example.com"), e, false).is_err());
        assert!(check_iss(None, e, true).is_err());
        // Fixed endpoints (no metadata, no issuer): nothing to compare with.
        assert!(check_iss(Some("https://anything"), None, true).is_ok());
    }

    #[test]
    fn tokens_are_replaced_before_they_expire() {
        assert_eq!(refresh_after(Duration::from_secs(3600)), Duration::from_secs(3540));
        assert_eq!(refresh_after(Duration::from_secs(8)), Duration::from_secs(6));
        assert_eq!(refresh_after(Duration::ZERO), Duration::ZERO);
    }
}
