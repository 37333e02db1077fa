//! Opaque access tokens, checked by asking the one issuer configured for them (RFC 7662).

use std::sync::Mutex;
use std::time::Duration;

use reqwest::Url;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use super::{Bearer, Identity, Provider, Rejection, claims, invalid};
use crate::config::bearer::Introspection;

/// Most introspection requests in flight at once.
const CONCURRENT: usize = 8;

/// The introspection of one issuer: its client credentials, its endpoint once known, and the
/// answers of recent tokens.
pub(super) struct Introspector {
    /// The provider's index among the issuers.
    pub(super) provider: usize,
    cfg: Introspection,
    secret: Zeroizing<String>,
    ttl: Duration,
    endpoint: Mutex<Option<Url>>,
    cache: super::Remembered,
    in_flight: tokio::sync::Semaphore,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Introspector {
    pub(super) fn new(provider: usize, cfg: Introspection, secret: Zeroizing<String>, ttl: Duration) -> Self {
        Introspector {
            provider,
            endpoint: Mutex::new(cfg.endpoint.clone()),
            cfg,
            secret,
            ttl,
            cache: super::Remembered::default(),
            in_flight: tokio::sync::Semaphore::new(CONCURRENT),
        }
    }

    /// The identity an opaque token proves, from the cache or the provider.
    pub(super) async fn validate(&self, b: &Bearer, p: &Provider, token: &str) -> Result<Identity, Rejection> {
        let key = super::Remembered::key(token);
        if let Some(id) = self.cache.get(&key) {
            return Ok(id);
        }
        let answer = {
            let _permit = self
                .in_flight
                .acquire()
                .await
                .map_err(|_| Rejection::Unavailable("introspection is shutting down".into()))?;
            self.ask(b, p, token).await?
        };
        judge(
            &answer,
            &p.cfg.issuer,
            &b.cfg.audiences,
            super::now_unix(),
            b.cfg.clock_skew.as_secs(),
        )
        .map_err(invalid)?;
        let id = identity(&answer, b.rules(p)).map_err(|e| invalid(e.to_string()))?;
        self.cache.put(key, &id, self.ttl);
        Ok(id)
    }

    async fn ask(&self, b: &Bearer, p: &Provider, token: &str) -> Result<Map<String, Value>, Rejection> {
        let unavailable = |why: String| Rejection::Unavailable(format!("introspection at {}: {why}", p.cfg.issuer));
        let known = lock(&self.endpoint).clone();
        let endpoint = match known {
            Some(u) => u,
            None => {
                let m = crate::fetch::discover(&b.http, &p.cfg.url)
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
                let u = crate::fetch::AuthServerMetadata::endpoint(
                    m.introspection_endpoint.as_deref(),
                    "introspection_endpoint",
                )
                .map_err(&unavailable)?
                .ok_or_else(|| unavailable("the metadata has no introspection_endpoint".into()))?;
                *lock(&self.endpoint) = Some(u.clone());
                u
            }
        };
        crate::fetch::check_url(&endpoint).map_err(|e| unavailable(e.to_string()))?;
        // RFC 6749 §2.3.1: the credentials are form-encoded before they are joined.
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let body = Zeroizing::new(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("token", token)
                .append_pair("token_type_hint", "access_token")
                .finish(),
        );
        let resp = b
            .http
            .post(endpoint.clone())
            .basic_auth(enc(&self.cfg.client_id), Some(enc(&self.secret)))
            .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(http::header::ACCEPT, "application/json")
            .body(body.as_bytes().to_vec())
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(unavailable(format!("HTTP {}", resp.status())));
        }
        let body = crate::fetch::read_bounded(resp).await.map_err(&unavailable)?;
        match serde_json::from_slice(&body) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(unavailable("the answer is not a JSON object".into())),
        }
    }
}

/// Whether an introspection answer accepts the token for this gateway: `active`, an `aud` that
/// names one of `audiences` (required: the MCP spec asks the audience of every token checked),
/// the issuer when it names one, and `exp`/`nbf` within `skew`. The token's `exp`, if any.
pub(super) fn judge(
    answer: &Map<String, Value>,
    issuer: &str,
    audiences: &[String],
    now: u64,
    skew: u64,
) -> Result<Option<u64>, String> {
    if answer.get("active") != Some(&Value::Bool(true)) {
        return Err("the provider says the token is not active".into());
    }
    if let Some(iss) = answer.get("iss")
        && iss.as_str() != Some(issuer)
    {
        return Err("the token's issuer does not match".into());
    }
    let aud_ok = match answer.get("aud") {
        Some(Value::String(a)) => audiences.contains(a),
        Some(Value::Array(list)) => list
            .iter()
            .any(|a| a.as_str().is_some_and(|a| audiences.iter().any(|x| x == a))),
        _ => false,
    };
    if !aud_ok {
        return Err("the token is for another audience".into());
    }
    let time = |k: &str| -> Result<Option<u64>, String> {
        match answer.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(Some).ok_or_else(|| format!("`{k}` is not a time")),
        }
    };
    let exp = time("exp")?;
    if exp.is_some_and(|e| e.saturating_add(skew) <= now) {
        return Err("the token has expired".into());
    }
    if time("nbf")?.is_some_and(|n| n > now.saturating_add(skew)) {
        return Err("the token is not valid yet (nbf)".into());
    }
    Ok(exp)
}

/// The identity of an introspected token: as a JWT's, except that a token issued to a client
/// for itself (client credentials) may name no `sub`, and then its `client_id` is the
/// principal.
fn identity(answer: &Map<String, Value>, rules: claims::Rules<'_>) -> Result<Identity, claims::ClaimError> {
    if rules.principal_claim == "sub"
        && !answer.contains_key("sub")
        && let Some(client) = answer.get("client_id")
    {
        let mut with_sub = answer.clone();
        with_sub.insert("sub".into(), client.clone());
        return claims::identity(&with_sub, rules);
    }
    claims::identity(answer, rules)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn m(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn an_answer_is_accepted_only_for_this_gateway_and_while_valid() {
        let aud = vec!["https://gw/mcp".to_owned()];
        let ok = |v: Value| judge(&m(v), "https://idp", &aud, 1000, 5);
        assert_eq!(
            ok(json!({"active": true, "aud": "https://gw/mcp", "exp": 2000, "iss": "https://idp"})),
            Ok(Some(2000))
        );
        assert_eq!(ok(json!({"active": true, "aud": ["x", "https://gw/mcp"]})), Ok(None));
        for (bad, why) in [
            (json!({"active": false, "aud": "https://gw/mcp"}), "not active"),
            (json!({"active": "true", "aud": "https://gw/mcp"}), "not active"),
            (json!({"aud": "https://gw/mcp"}), "not active"),
            (json!({"active": true}), "another audience"),
            (json!({"active": true, "aud": "https://other/mcp"}), "another audience"),
            (
                json!({"active": true, "aud": "https://gw/mcp", "iss": "https://evil"}),
                "issuer",
            ),
            (json!({"active": true, "aud": "https://gw/mcp", "exp": 995}), "expired"),
            (
                json!({"active": true, "aud": "https://gw/mcp", "nbf": 1006}),
                "not valid yet",
            ),
            (
                json!({"active": true, "aud": "https://gw/mcp", "exp": "soon"}),
                "not a time",
            ),
        ] {
            let e = ok(bad.clone()).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn a_client_token_without_a_subject_is_its_client() {
        let rules = claims::Rules {
            principal_claim: "sub",
            principal_prefix: "",
            groups_claim: None,
            roles_claim: None,
        };
        let id = identity(&m(json!({"client_id": "robot", "scope": "mcp:read"})), rules).unwrap();
        assert_eq!(id.principal, "robot");
        assert_eq!(id.scopes, ["mcp:read"]);
        let id = identity(&m(json!({"client_id": "robot", "sub": "alice"})), rules).unwrap();
        assert_eq!(id.principal, "alice");
        assert!(identity(&m(json!({"active": true})), rules).is_err());
    }
}
