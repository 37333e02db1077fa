//! What a verified access token says: who the principal is, which scopes they were granted, and
//! their groups and roles. Pure: claims in, identity or a reason out.

use std::sync::Arc;

use portcullis_policy::Attributes;
use serde_json::{Map, Value};

/// Who a verified token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The principal's name (with its issuer's prefix).
    pub principal: String,
    /// The scopes granted (`scope`, space-separated, or `scp`, a list).
    pub scopes: Vec<String>,
    /// Groups and roles, for policies.
    pub attributes: Arc<Attributes>,
    /// When the token expires (`exp`, seconds since the epoch), if it says.
    pub expires: Option<u64>,
}

/// Why verified claims name no usable identity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// The principal claim is absent or not a string.
    #[error("the token has no string claim `{0}` to name its principal")]
    NoPrincipal(String),
    /// The principal's name has characters principals may not have.
    #[error(
        "the token's `{0}` is not a valid principal name (letters, digits, `_`, `-`, `.`, `@`, at most 128 bytes); use another `principal_claim`"
    )]
    BadPrincipal(String),
    /// A claim the gateway reads has the wrong shape.
    #[error("the token's `{0}` claim must be a string or a list of strings")]
    Malformed(String),
}

/// The value at a dotted path (`realm_access.roles`) in the claims.
pub fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut v = claims.get(parts.next()?)?;
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    Some(v)
}

/// A claim that lists strings: absent is empty; one string is one item; a list must hold only
/// strings (a malformed claim is refused, not read as empty: a policy that forbids a group
/// must not be walked past by a token that spells the group oddly).
fn strings(claims: &Map<String, Value>, path: &str, split_spaces: bool) -> Result<Vec<String>, ClaimError> {
    match lookup(claims, path) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if split_spaces => Ok(s.split_ascii_whitespace().map(str::to_owned).collect()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| ClaimError::Malformed(path.to_owned()))
            })
            .collect(),
        Some(_) => Err(ClaimError::Malformed(path.to_owned())),
    }
}

/// The scopes a token grants: `scope` (RFC 9068, space-separated), else `scp` (a list, as some
/// providers write it).
pub fn scopes(claims: &Map<String, Value>) -> Result<Vec<String>, ClaimError> {
    if claims.contains_key("scope") {
        strings(claims, "scope", true)
    } else {
        strings(claims, "scp", true)
    }
}

/// Where the claims are read from.
#[derive(Clone, Copy, Debug)]
pub struct Rules<'a> {
    /// The claim naming the principal.
    pub principal_claim: &'a str,
    /// Put before the principal's name.
    pub principal_prefix: &'a str,
    /// The claim listing groups, if any.
    pub groups_claim: Option<&'a str>,
    /// The claim listing roles, if any.
    pub roles_claim: Option<&'a str>,
}

/// A valid principal name: what policies, the vault's owners and the rate limits key on.
pub fn valid_principal(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 128
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'))
}

/// The identity verified claims name.
pub fn identity(claims: &Map<String, Value>, rules: Rules<'_>) -> Result<Identity, ClaimError> {
    let name = lookup(claims, rules.principal_claim)
        .and_then(Value::as_str)
        .ok_or_else(|| ClaimError::NoPrincipal(rules.principal_claim.to_owned()))?;
    let principal = format!("{}{name}", rules.principal_prefix);
    if !valid_principal(&principal) {
        return Err(ClaimError::BadPrincipal(rules.principal_claim.to_owned()));
    }
    let list = |c: Option<&str>| c.map_or(Ok(Vec::new()), |c| strings(claims, c, false));
    Ok(Identity {
        principal,
        scopes: scopes(claims)?,
        attributes: Arc::new(Attributes::new(list(rules.groups_claim)?, list(rules.roles_claim)?)),
        expires: claims.get("exp").and_then(Value::as_u64),
    })
}

/// The scopes of `required` that `granted` lacks.
pub fn missing<'a>(granted: &[String], required: &'a [String]) -> Vec<&'a str> {
    required
        .iter()
        .filter(|r| !granted.contains(r))
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    const RULES: Rules<'static> = Rules {
        principal_claim: "sub",
        principal_prefix: "",
        groups_claim: Some("groups"),
        roles_claim: Some("realm_access.roles"),
    };

    #[test]
    fn the_identity_is_read_from_the_configured_claims() {
        let c = claims(json!({
            "sub": "alice", "email": "alice@corp.test", "scope": "mcp:read  mcp:write",
            "groups": ["ops", "eng", "ops"], "realm_access": {"roles": "admin"},
        }));
        let id = identity(&c, RULES).unwrap();
        assert_eq!(id.principal, "alice");
        assert_eq!(id.scopes, ["mcp:read", "mcp:write"]);
        assert_eq!(id.attributes.groups(), ["eng", "ops"]);
        assert_eq!(id.attributes.roles(), ["admin"]);
        let by_mail = Rules {
            principal_claim: "email",
            principal_prefix: "corp.",
            ..RULES
        };
        assert_eq!(identity(&c, by_mail).unwrap().principal, "corp.alice@corp.test");
        // `scp` as a list, when there is no `scope`.
        let c = claims(json!({"sub": "bob", "scp": ["a", "b"]}));
        let id = identity(&c, RULES).unwrap();
        assert_eq!(id.scopes, ["a", "b"]);
        assert!(id.attributes.groups().is_empty());
    }

    #[test]
    fn a_token_without_a_usable_identity_is_refused() {
        assert_eq!(
            identity(&claims(json!({"email": "x@y"})), RULES),
            Err(ClaimError::NoPrincipal("sub".into()))
        );
        assert_eq!(
            identity(&claims(json!({"sub": 42})), RULES),
            Err(ClaimError::NoPrincipal("sub".into()))
        );
        // Auth0-style subjects, and names that would reach paths or keys.
        for bad in ["auth0|123", "../alice", "a b", "", &"x".repeat(129)] {
            assert_eq!(
                identity(&claims(json!({"sub": bad})), RULES),
                Err(ClaimError::BadPrincipal("sub".into())),
                "{bad}"
            );
        }
        // A groups claim of the wrong shape is refused, never read as "no groups".
        for bad in [
            json!({"sub": "a", "groups": [1]}),
            json!({"sub": "a", "groups": {"ops": true}}),
        ] {
            assert_eq!(
                identity(&claims(bad), RULES),
                Err(ClaimError::Malformed("groups".into()))
            );
        }
        assert_eq!(
            identity(&claims(json!({"sub": "a", "scope": 7})), RULES),
            Err(ClaimError::Malformed("scope".into()))
        );
    }

    #[test]
    fn missing_scopes_are_named() {
        let granted = vec!["mcp:read".to_owned()];
        let required = vec!["mcp:read".to_owned(), "mcp:write".to_owned()];
        assert_eq!(missing(&granted, &required), ["mcp:write"]);
        assert!(missing(&granted, &required[..1]).is_empty());
    }
}
