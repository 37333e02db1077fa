//! The configuration of OAuth for upstream services: providers (`[oauth.NAME]`, Google as a
//! preset) and which upstream uses which (`[upstreams.X.oauth]`), with the scope each tool
//! needs so `portcullis connect` asks for no more than the enabled tools use.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Lowering, Transport};

/// Google's endpoints and the Gmail scopes of `portcullis-mail`'s tools: the `google` preset.
pub mod google {
    /// Google's authorization endpoint.
    pub const AUTHORIZATION: &str = "https://accounts.google.com/o/oauth2/v2/auth";
    /// Google's token endpoint.
    pub const TOKEN: &str = "https://oauth2.googleapis.com/token";
    /// Google's revocation endpoint.
    pub const REVOCATION: &str = "https://oauth2.googleapis.com/revoke";
    /// Read messages, threads, labels, attachments.
    pub const READONLY: &str = "https://www.googleapis.com/auth/gmail.readonly";
    /// Create drafts (Google lets this scope send too; `portcullis-mail` refuses to in the
    /// `compose` profile).
    pub const COMPOSE: &str = "https://www.googleapis.com/auth/gmail.compose";
    /// Send only.
    pub const SEND: &str = "https://www.googleapis.com/auth/gmail.send";
    /// Read, move, label, trash (not delete for good, not settings).
    pub const MODIFY: &str = "https://www.googleapis.com/auth/gmail.modify";

    /// Which tool of `portcullis-mail` needs which scope. Never `https://mail.google.com/`,
    /// never a settings scope.
    pub fn tool_scopes() -> Vec<(&'static str, &'static [&'static str])> {
        vec![
            (
                READONLY,
                &[
                    "list_folders",
                    "search_messages",
                    "read_message",
                    "get_attachment",
                    "reply",
                    "forward",
                ],
            ),
            (COMPOSE, &["create_draft"]),
            (SEND, &["send_message", "reply", "forward"]),
            (MODIFY, &["move_message", "set_flags", "trash_message"]),
        ]
    }
}

/// Where a provider's endpoints come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoints {
    /// Discovered from the issuer's metadata (RFC 8414, then OpenID Connect discovery).
    Issuer(reqwest::Url),
    /// Given in config (or by a preset).
    Fixed {
        /// The authorization endpoint.
        authorization: reqwest::Url,
        /// The token endpoint.
        token: reqwest::Url,
        /// The revocation endpoint (RFC 7009), if the provider has one.
        revocation: Option<reqwest::Url>,
    },
}

/// One OAuth provider (`[oauth.NAME]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provider {
    /// Its name in config.
    pub name: String,
    /// Its endpoints.
    pub endpoints: Endpoints,
    /// The OAuth client id registered with it.
    pub client_id: String,
    /// The vault secret holding the client secret, for confidential clients.
    pub client_secret: Option<String>,
    /// Scopes always requested (`offline_access` for a refresh token, say).
    pub scopes: Vec<String>,
    /// Extra authorization request parameters (Google: `access_type=offline`, `prompt=consent`).
    pub params: BTreeMap<String, String>,
}

/// How an upstream receives its access token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// An environment variable of its (stdio) process.
    Env(String),
    /// An HTTP header on its requests: `Authorization: Bearer TOKEN` by default; any other
    /// header carries the bare token.
    Header(String),
}

/// An upstream's use of OAuth (`[upstreams.X.oauth]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamOAuth {
    /// The provider's name.
    pub provider: String,
    /// How the token reaches the upstream.
    pub delivery: Delivery,
    /// Which scope each of the upstream's tools needs: scope → tool names at the upstream.
    pub tool_scopes: BTreeMap<String, Vec<String>>,
}

impl UpstreamOAuth {
    /// The vault secret holding this upstream's refresh token.
    pub fn secret_name(upstream: &str) -> String {
        format!("oauth.{upstream}")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    issuer: Option<Spanned<String>>,
    authorization_url: Option<Spanned<String>>,
    token_url: Option<Spanned<String>>,
    revocation_url: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    client_secret: Option<Spanned<String>>,
    scopes: Option<Vec<String>>,
    params: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstreamOAuth {
    provider: Spanned<String>,
    env: Option<Spanned<String>>,
    header: Option<Spanned<String>>,
    scopes: Option<BTreeMap<String, Vec<String>>>,
}

impl Lowering<'_> {
    /// A provider's URL: what the gateway fetches itself, under its fetch policy — https (plain
    /// http only to this machine: a token must not cross a network in clear), never an address
    /// inside a private network or the cloud metadata service.
    pub(super) fn url(&self, s: &Spanned<String>, key: &str) -> Result<reqwest::Url, ConfigError> {
        match reqwest::Url::parse(s.get_ref()) {
            Ok(u) => match crate::fetch::check_url_allowing(&u, &self.fetch_private.borrow()) {
                Ok(()) => Ok(u),
                Err(crate::fetch::FetchError::Forbidden { host, kind }) => self.err(
                    s.span(),
                    key,
                    format!(
                        "`{host}` is {kind}: the gateway fetches only from public addresses, this machine, or networks named in `[gateway] fetch_private`"
                    ),
                ),
                Err(_) => self.err(
                    s.span(),
                    key,
                    "must be an https:// URL (http:// only for 127.0.0.1, ::1 or localhost)",
                ),
            },
            Err(e) => self.err(s.span(), key, format!("`{}` is not a URL: {e}", s.get_ref())),
        }
    }

    /// `[oauth.NAME]`.
    pub(super) fn provider(&self, name: &str, p: Spanned<RawProvider>) -> Result<Provider, ConfigError> {
        let span = p.span();
        let p = p.into_inner();
        let key = |k: &str| format!("oauth.{name}.{k}");
        let fixed = (&p.authorization_url, &p.token_url);
        let endpoints = match (&p.issuer, fixed) {
            (Some(i), (None, None)) => {
                if p.revocation_url.is_some() {
                    return self.err(
                        i.span(),
                        &key("revocation_url"),
                        "with `issuer` the endpoints are discovered; give all three URLs or `issuer`",
                    );
                }
                Endpoints::Issuer(self.url(i, &key("issuer"))?)
            }
            (Some(i), _) => {
                return self.err(
                    i.span(),
                    &key("issuer"),
                    "give `issuer` (discovery) or `authorization_url` and `token_url`, not both",
                );
            }
            (None, (Some(a), Some(t))) => Endpoints::Fixed {
                authorization: self.url(a, &key("authorization_url"))?,
                token: self.url(t, &key("token_url"))?,
                revocation: p
                    .revocation_url
                    .as_ref()
                    .map(|r| self.url(r, &key("revocation_url")))
                    .transpose()?,
            },
            (None, (None, None)) if name == "google" => Endpoints::Fixed {
                authorization: preset_url(google::AUTHORIZATION)?,
                token: preset_url(google::TOKEN)?,
                revocation: Some(preset_url(google::REVOCATION)?),
            },
            (None, _) => {
                return self.err(
                    span,
                    &format!("oauth.{name}"),
                    "needs `issuer`, or `authorization_url` and `token_url`",
                );
            }
        };
        let client_id = match p.client_id {
            Some(c) if !c.get_ref().trim().is_empty() => c.into_inner(),
            Some(c) => return self.err(c.span(), &key("client_id"), "must not be empty"),
            None => {
                return self.err(
                    span,
                    &key("client_id"),
                    "is required (the OAuth client registered with the provider)",
                );
            }
        };
        let client_secret = match p.client_secret {
            None => None,
            Some(s) => match crate::config::refs::reference(s.get_ref()) {
                Some(n) if portcullis_vault::valid_name(n) => Some(n.to_owned()),
                _ => {
                    return self.err(
                        s.span(),
                        &key("client_secret"),
                        "must be a vault reference like `vault:google_client_secret` (set it with `portcullis vault set`)",
                    );
                }
            },
        };
        let params = match p.params {
            Some(params) => params,
            None if name == "google" => BTreeMap::from([
                ("access_type".to_owned(), "offline".to_owned()),
                ("prompt".to_owned(), "consent".to_owned()),
            ]),
            None => BTreeMap::new(),
        };
        for k in params.keys() {
            if RESERVED_PARAMS.contains(&k.as_str()) {
                return self.err(
                    span,
                    &key(&format!("params.{k}")),
                    "is set by Portcullis itself (PKCE, state, scopes, redirect)",
                );
            }
        }
        Ok(Provider {
            name: name.to_owned(),
            endpoints,
            client_id,
            client_secret,
            scopes: p.scopes.unwrap_or_default(),
            params,
        })
    }

    /// `[upstreams.X.oauth]`, checked against the providers and the upstream's transport.
    pub(super) fn upstream_oauth(
        &self,
        upstream: &str,
        o: Spanned<RawUpstreamOAuth>,
        providers: &BTreeMap<String, Provider>,
        transport: &Transport,
    ) -> Result<UpstreamOAuth, ConfigError> {
        let span = o.span();
        let o = o.into_inner();
        let key = |k: &str| format!("upstreams.{upstream}.oauth.{k}");
        let provider = o.provider.get_ref();
        if !providers.contains_key(provider) {
            return self.err(
                o.provider.span(),
                &key("provider"),
                format!("no provider `{provider}`: add an `[oauth.{provider}]` table"),
            );
        }
        let delivery = match (transport, o.env, o.header) {
            (Transport::Stdio { env, .. }, Some(e), None) => {
                if !valid_env_name(e.get_ref()) {
                    return self.err(e.span(), &key("env"), "is not an environment variable name");
                }
                if env.contains_key(e.get_ref()) {
                    return self.err(
                        e.span(),
                        &key("env"),
                        format!("`{}` is also set in `upstreams.{upstream}.env`", e.get_ref()),
                    );
                }
                Delivery::Env(e.into_inner())
            }
            (Transport::Stdio { .. }, None, _) => {
                return self.err(
                    span,
                    &key("env"),
                    "a stdio upstream receives its access token in an environment variable: name it with `env`",
                );
            }
            (Transport::Http { headers, .. }, None, h) => {
                let name = h.map_or_else(|| "Authorization".to_owned(), Spanned::into_inner);
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return self.err(span, &key("header"), format!("`{name}` is not a header name"));
                }
                if headers.keys().any(|k| k.eq_ignore_ascii_case(&name)) {
                    return self.err(
                        span,
                        &key("header"),
                        format!("`{name}` is also set in `upstreams.{upstream}.headers`"),
                    );
                }
                Delivery::Header(name)
            }
            (Transport::Http { .. }, Some(e), _) => {
                return self.err(
                    e.span(),
                    &key("env"),
                    "an HTTP upstream receives its token in a header (`header`)",
                );
            }
            (Transport::Stdio { .. }, Some(_), Some(h)) => {
                return self.err(h.span(), &key("header"), "a stdio upstream receives its token in `env`");
            }
        };
        let tool_scopes = match o.scopes {
            Some(s) => s,
            None if provider == "google" => google::tool_scopes()
                .into_iter()
                .map(|(scope, tools)| (scope.to_owned(), tools.iter().map(|t| (*t).to_owned()).collect()))
                .collect(),
            None => {
                return self.err(
                    span,
                    &key("scopes"),
                    "name the scope each tool needs (`scopes = { \"read\" = [\"search\"] }`): Portcullis requests only the scopes of enabled tools",
                );
            }
        };
        if let Some(bad) = tool_scopes
            .keys()
            .find(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            return self.err(span, &key("scopes"), format!("`{bad}` is not a scope"));
        }
        Ok(UpstreamOAuth {
            provider: provider.clone(),
            delivery,
            tool_scopes,
        })
    }
}

/// Authorization request parameters Portcullis sets itself.
const RESERVED_PARAMS: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

fn preset_url(s: &str) -> Result<reqwest::Url, ConfigError> {
    reqwest::Url::parse(s).map_err(|e| ConfigError::Syntax {
        path: std::path::PathBuf::from("<preset>"),
        message: format!("preset URL `{s}`: {e}"),
    })
}

/// Whether `url` is plain `http://` to a host that is not loopback: what crosses it (an
/// upstream's credentials, every call and answer) would cross the network in clear text.
pub fn is_clear_text_beyond_loopback(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| u.scheme() == "http" && !crate::fetch::names_loopback(&u))
}

fn valid_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
