//! The configuration of clients signed in through an identity provider (`auth = "oauth"` and
//! `[gateway.oauth]`): the gateway as an OAuth 2.1 resource server, per the MCP authorization
//! spec. Not to be confused with `[oauth.NAME]`, the providers of upstream services.

use std::collections::BTreeMap;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use portcullis_policy::Effect;
use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Lowering};

/// Signed-in clients (`[gateway.oauth]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BearerConfig {
    /// This gateway's canonical URI (RFC 8707, the MCP spec's "canonical server URI"), as a
    /// string with no trailing slash: the audience its tokens must name, the `resource` of its
    /// Protected Resource Metadata.
    pub resource: String,
    /// The path of `resource` (`/mcp`, or `/team/mcp` behind a proxy), where the metadata is
    /// also served under `/.well-known/oauth-protected-resource`.
    pub resource_path: String,
    /// Every accepted `aud` value: `resource` first, then configured extras.
    pub audiences: Vec<String>,
    /// `scopes_supported` of the metadata.
    pub scopes_supported: Vec<String>,
    /// Scopes every request needs.
    pub required_scopes: Vec<String>,
    /// The claim naming the principal (`sub`, `email`, `preferred_username`).
    pub principal_claim: String,
    /// Dotted path of the claim listing the principal's groups, if any.
    pub groups_claim: Option<String>,
    /// Dotted path of the claim listing the principal's roles, if any.
    pub roles_claim: Option<String>,
    /// Whether `Bearer pcl_…` API keys are still accepted (for machines).
    pub api_keys: bool,
    /// Tolerance on `exp` and `nbf`.
    pub clock_skew: Duration,
    /// Signature algorithms accepted (never HS*, never `none`).
    pub algorithms: Vec<Algorithm>,
    /// Scopes a call of a tool with each effect needs beyond `required_scopes`: any one of the
    /// listed scopes suffices (a broader scope listed beside a narrower one).
    pub step_up: BTreeMap<Effect, Vec<String>>,
    /// The trusted issuers, in file order (the metadata's `authorization_servers` order).
    pub issuers: Vec<IssuerConfig>,
    /// How long an introspected token's answer is reused (at most until the token expires).
    pub introspection_cache: Duration,
}

/// How opaque tokens of an issuer are checked: by asking it (RFC 7662).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Introspection {
    /// The gateway's client id at the provider.
    pub client_id: String,
    /// The vault secret holding its client secret.
    pub client_secret: String,
    /// The introspection endpoint, when not discovered.
    pub endpoint: Option<reqwest::Url>,
}

/// One trusted identity provider (`[gateway.oauth.issuers.NAME]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuerConfig {
    /// Its name in config.
    pub name: String,
    /// The issuer identifier, exactly as its tokens' `iss` carries it.
    pub issuer: String,
    /// The issuer as a URL, for discovery.
    pub url: reqwest::Url,
    /// Where its keys are, when not discovered.
    pub jwks_uri: Option<reqwest::Url>,
    /// Put before every principal name it vouches for, so equal `sub` values of two issuers
    /// stay two principals (required when there is more than one issuer).
    pub principal_prefix: String,
    /// Opaque tokens are introspected here (at most one issuer: an opaque token names no
    /// issuer, and must not be shown to a provider that did not issue it).
    pub introspection: Option<Introspection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBearer {
    resource: Option<Spanned<String>>,
    #[serde(default)]
    audiences: Vec<String>,
    scopes_supported: Option<Spanned<Vec<String>>>,
    required_scopes: Option<Spanned<Vec<String>>>,
    principal_claim: Option<Spanned<String>>,
    groups_claim: Option<Spanned<String>>,
    roles_claim: Option<Spanned<String>>,
    api_keys: Option<bool>,
    clock_skew: Option<Spanned<String>>,
    algorithms: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    step_up: BTreeMap<String, Spanned<Vec<String>>>,
    #[serde(default)]
    issuers: indexmap::IndexMap<String, Spanned<RawIssuer>>,
    introspection_cache: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIssuer {
    issuer: Option<Spanned<String>>,
    jwks_uri: Option<Spanned<String>>,
    principal_prefix: Option<Spanned<String>>,
    introspection: Option<Spanned<RawIntrospection>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIntrospection {
    client_id: Option<Spanned<String>>,
    client_secret: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
}

/// Algorithms accepted when config names none.
const DEFAULT_ALGORITHMS: [Algorithm; 4] = [Algorithm::RS256, Algorithm::PS256, Algorithm::ES256, Algorithm::EdDSA];
/// The largest clock skew tolerated.
const MAX_SKEW: Duration = Duration::from_secs(300);

fn valid_scope(s: &str) -> bool {
    // RFC 6749 §3.3: %x21 / %x23-5B / %x5D-7E.
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

fn valid_prefix(p: &str) -> bool {
    p.len() <= 32
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'))
}

impl Lowering<'_> {
    /// `[gateway.oauth]`, given that `auth = "oauth"` (span: the `auth` value, for errors about
    /// the table as a whole).
    pub(super) fn bearer(&self, b: Spanned<RawBearer>) -> Result<BearerConfig, ConfigError> {
        let span = b.span();
        let b = b.into_inner();
        let key = |k: &str| format!("gateway.oauth.{k}");
        let Some(r) = b.resource else {
            return self.err(
                span,
                &key("resource"),
                "is required: this gateway's public URL of `/mcp` (`https://mcp.example.com/mcp`), the audience its tokens must name",
            );
        };
        let resource = match reqwest::Url::parse(r.get_ref()) {
            Ok(u) if u.fragment().is_some() || u.query().is_some() => {
                return self.err(r.span(), &key("resource"), "must have no query and no fragment");
            }
            Ok(u) if u.scheme() == "https" || (u.scheme() == "http" && crate::fetch::names_loopback(&u)) => u,
            Ok(_) => {
                return self.err(
                    r.span(),
                    &key("resource"),
                    "must be an https:// URL (http:// only on 127.0.0.1, ::1 or localhost)",
                );
            }
            Err(e) => {
                return self.err(
                    r.span(),
                    &key("resource"),
                    format!("`{}` is not a URL: {e}", r.get_ref()),
                );
            }
        };
        let resource_path = resource.path().trim_end_matches('/').to_owned();
        let canonical = resource.as_str().trim_end_matches('/').to_owned();
        let mut audiences = vec![canonical.clone()];
        for a in b.audiences {
            if a.trim().is_empty() {
                return self.err(span, &key("audiences"), "an audience must not be empty");
            }
            if !audiences.contains(&a) {
                audiences.push(a);
            }
        }
        let scopes = |v: Option<Spanned<Vec<String>>>, k: &str| -> Result<Vec<String>, ConfigError> {
            let Some(v) = v else { return Ok(Vec::new()) };
            let s = v.span();
            let v = v.into_inner();
            if let Some(bad) = v.iter().find(|x| !valid_scope(x)) {
                return self.err(s, &key(k), format!("`{bad}` is not a scope"));
            }
            if v.iter().any(|x| x == "offline_access") {
                return self.err(
                    s,
                    &key(k),
                    "`offline_access` is the client's business with its provider, not a scope of this resource",
                );
            }
            Ok(v)
        };
        let scopes_supported = scopes(b.scopes_supported, "scopes_supported")?;
        let required_scopes = scopes(b.required_scopes, "required_scopes")?;
        let mut step_up = BTreeMap::new();
        for (effect, list) in b.step_up {
            let k = format!("step_up.{effect}");
            let Some(e) = Effect::ALL.iter().copied().find(|e| e.as_str() == effect) else {
                return self.err(
                    list.span(),
                    &key(&k),
                    "is not an effect: `read`, `write`, `send` or `destructive`",
                );
            };
            let s = list.span();
            let v = scopes(Some(list), &k)?;
            if v.is_empty() {
                return self.err(s, &key(&k), "must name at least one scope");
            }
            step_up.insert(e, v);
        }
        let claim = |v: Option<Spanned<String>>, k: &str| -> Result<Option<String>, ConfigError> {
            match v {
                None => Ok(None),
                Some(c) if c.get_ref().is_empty() || c.get_ref().split('.').any(str::is_empty) => self.err(
                    c.span(),
                    &key(k),
                    "must be a claim name, or a dotted path into the claims",
                ),
                Some(c) => Ok(Some(c.into_inner())),
            }
        };
        let principal_claim = claim(b.principal_claim, "principal_claim")?.unwrap_or_else(|| "sub".to_owned());
        let groups_claim = claim(b.groups_claim, "groups_claim")?;
        let roles_claim = claim(b.roles_claim, "roles_claim")?;
        let clock_skew = match b.clock_skew {
            None => Duration::from_secs(30),
            Some(s) => match super::parse_duration(s.get_ref()) {
                Some(d) if d <= MAX_SKEW => d,
                _ => {
                    return self.err(
                        s.span(),
                        &key("clock_skew"),
                        "must be a duration of at most `5m`, like `30s`",
                    );
                }
            },
        };
        let algorithms = match b.algorithms {
            None => DEFAULT_ALGORITHMS.to_vec(),
            Some(list) => {
                let s = list.span();
                let mut out = Vec::new();
                for name in list.into_inner() {
                    match name.parse::<Algorithm>() {
                        Ok(a) if a.family() != jsonwebtoken::AlgorithmFamily::Hmac => out.push(a),
                        _ => {
                            return self.err(
                                s,
                                &key("algorithms"),
                                format!(
                                    "`{name}` is not accepted: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA (a shared-secret algorithm is never accepted)"
                                ),
                            );
                        }
                    }
                }
                if out.is_empty() {
                    return self.err(s, &key("algorithms"), "must name at least one algorithm");
                }
                out
            }
        };
        if b.issuers.is_empty() {
            return self.err(
                span,
                &key("issuers"),
                "name at least one identity provider: `[gateway.oauth.issuers.NAME] issuer = \"https://…\"`",
            );
        }
        let several = b.issuers.len() > 1;
        let mut issuers = Vec::new();
        for (name, i) in b.issuers {
            let ispan = i.span();
            let i = i.into_inner();
            let k = |f: &str| key(&format!("issuers.{name}.{f}"));
            let Some(iss) = i.issuer else {
                return self.err(ispan, &k("issuer"), "is required (the `iss` its tokens carry)");
            };
            let url = self.url(&iss, &k("issuer"))?;
            let jwks_uri = i.jwks_uri.as_ref().map(|j| self.url(j, &k("jwks_uri"))).transpose()?;
            let principal_prefix = match i.principal_prefix {
                Some(p) if valid_prefix(p.get_ref()) => p.into_inner(),
                Some(p) => {
                    return self.err(
                        p.span(),
                        &k("principal_prefix"),
                        "must be letters, digits, `_`, `-`, `.` or `@`, at most 32",
                    );
                }
                None if several => {
                    return self.err(
                        ispan,
                        &k("principal_prefix"),
                        "is required with more than one issuer, so the same subject at two providers stays two principals (`corp.`)",
                    );
                }
                None => String::new(),
            };
            let introspection = match i.introspection {
                None => None,
                Some(t) => {
                    let tspan = t.span();
                    let t = t.into_inner();
                    let client_id = match t.client_id {
                        Some(c) if !c.get_ref().trim().is_empty() => c.into_inner(),
                        _ => {
                            return self.err(
                                tspan,
                                &k("introspection.client_id"),
                                "is required (the gateway's client at the provider)",
                            );
                        }
                    };
                    let client_secret = match t
                        .client_secret
                        .as_ref()
                        .map(|c| (c, super::refs::reference(c.get_ref())))
                    {
                        Some((_, Some(n))) if portcullis_vault::valid_name(n) => n.to_owned(),
                        Some((c, _)) => {
                            return self.err(
                                c.span(),
                                &k("introspection.client_secret"),
                                "must be a vault reference like `vault:idp_introspection` (set it with `portcullis vault set`)",
                            );
                        }
                        None => {
                            return self.err(
                                tspan,
                                &k("introspection.client_secret"),
                                "is required: a vault reference like `vault:idp_introspection`",
                            );
                        }
                    };
                    let endpoint = t
                        .endpoint
                        .as_ref()
                        .map(|e| self.url(e, &k("introspection.endpoint")))
                        .transpose()?;
                    if issuers.iter().any(|x: &IssuerConfig| x.introspection.is_some()) {
                        return self.err(
                            tspan,
                            &k("introspection"),
                            "only one issuer may introspect: an opaque token names no issuer, and must not be shown to a provider that did not issue it",
                        );
                    }
                    Some(Introspection {
                        client_id,
                        client_secret,
                        endpoint,
                    })
                }
            };
            issuers.push(IssuerConfig {
                name,
                issuer: iss.into_inner(),
                url,
                jwks_uri,
                principal_prefix,
                introspection,
            });
        }
        let introspection_cache = match b.introspection_cache {
            None => Duration::from_secs(60),
            Some(s) => match super::parse_duration(s.get_ref()) {
                Some(d) if d <= MAX_SKEW => d,
                _ => {
                    return self.err(
                        s.span(),
                        &key("introspection_cache"),
                        "must be a duration of at most `5m` (`0s`: ask every time)",
                    );
                }
            },
        };
        Ok(BearerConfig {
            resource: canonical,
            resource_path,
            audiences,
            scopes_supported,
            required_scopes,
            principal_claim,
            groups_claim,
            roles_claim,
            api_keys: b.api_keys.unwrap_or(true),
            clock_skew,
            algorithms,
            step_up,
            issuers,
            introspection_cache,
        })
    }
}
