//! An identity provider's signing keys (its JWK Set), parsed one key at a time: a key of a kind
//! the gateway does not verify with (an HMAC secret, a post-quantum `AKP` key, P-521) is
//! skipped, not allowed to spoil the set. Pure; fetching and caching are in the parent module.

use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// Most keys kept of one set.
pub const MAX_KEYS: usize = 64;

/// What a key verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// RSA: RS* and PS*.
    Rsa,
    /// P-256: ES256.
    P256,
    /// P-384: ES384.
    P384,
    /// Ed25519: EdDSA.
    Ed25519,
}

/// One verification key of a set.
#[derive(Clone)]
pub struct Key {
    /// Its `kid`, if it has one.
    pub kid: Option<String>,
    /// The one algorithm it is for, when the set says (`alg`).
    pub alg: Option<Algorithm>,
    /// What it verifies.
    pub kind: Kind,
    /// The key itself.
    pub key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// Whether this key may verify a token signed with `alg`.
    pub fn verifies(&self, alg: Algorithm) -> bool {
        let kind_fits = match self.kind {
            Kind::Rsa => matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
            Kind::P256 => alg == Algorithm::ES256,
            Kind::P384 => alg == Algorithm::ES384,
            Kind::Ed25519 => alg == Algorithm::EdDSA,
        };
        kind_fits && self.alg.is_none_or(|a| a == alg)
    }
}

/// The verification keys of a JWK Set document. An error only when the document is not a set
/// at all; keys that cannot be used are left out.
pub fn parse(body: &[u8]) -> Result<Vec<Key>, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| "not a JWK Set (no `keys` list)".to_owned())?;
    let mut out = Vec::new();
    for k in keys.iter() {
        if out.len() == MAX_KEYS {
            break;
        }
        // One key at a time: an unknown `kty` fails only itself.
        let Ok(jwk) = serde_json::from_value::<Jwk>(k.clone()) else {
            continue;
        };
        if let Some(key) = key_of(&jwk) {
            out.push(key);
        }
    }
    Ok(out)
}

fn key_of(jwk: &Jwk) -> Option<Key> {
    if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(Algorithm::try_from(a).ok()?),
    };
    let kind = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Kind::Rsa,
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Kind::P256,
            EllipticCurve::P384 => Kind::P384,
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Kind::Ed25519,
        // Shared secrets (`oct`) never verify anything here; other curves are not supported.
        _ => return None,
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    let k = Key {
        kid: jwk.common.key_id.clone(),
        alg,
        kind,
        key,
    };
    // A key whose declared algorithm does not fit its kind is useless, not a wildcard.
    match alg {
        Some(a) if !k.verifies(a) => None,
        _ => Some(k),
    }
}

/// How long a fetched set is used before it is fetched again: the response's
/// `Cache-Control: max-age`, kept between five minutes and a day; an hour when it says nothing.
pub fn lifetime(cache_control: Option<&str>) -> Duration {
    const MIN: u64 = 300;
    const MAX: u64 = 86_400;
    let max_age = cache_control.and_then(|cc| {
        cc.split(',').find_map(|d| {
            let (k, v) = d.trim().split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("max-age")
                .then(|| v.trim().trim_matches('"').parse::<u64>().ok())?
        })
    });
    Duration::from_secs(max_age.map_or(3600, |s| s.clamp(MIN, MAX)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn unusable_keys_are_skipped_and_the_rest_kept() {
        let n = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
        let set = json!({"keys": [
            {"kty": "AKP", "alg": "ML-DSA-44", "kid": "pq", "pub": "AAAA"},
            {"kty": "oct", "kid": "secret", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "rs", "alg": "RS256", "use": "sig", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "liar", "alg": "ES256", "n": n, "e": "AQAB"},
            {"kty": "EC", "kid": "ec", "crv": "P-256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty": "OKP", "kid": "x", "crv": "X25519", "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"},
        ]});
        let keys = parse(set.to_string().as_bytes()).unwrap();
        let kids: Vec<_> = keys.iter().map(|k| k.kid.as_deref().unwrap()).collect();
        assert_eq!(kids, ["rs", "ec", "ed"]);
        assert!(keys[0].verifies(Algorithm::RS256));
        assert!(!keys[0].verifies(Algorithm::PS256), "the set pins RS256");
        assert!(keys[1].verifies(Algorithm::ES256));
        assert!(!keys[1].verifies(Algorithm::ES384));
        assert!(!keys[1].verifies(Algorithm::RS256));
        assert!(keys[2].verifies(Algorithm::EdDSA));
        assert!(parse(b"{\"keys\": 1}").is_err());
        assert!(parse(b"[]").is_err());
    }

    #[test]
    fn a_huge_set_is_cut_short() {
        let one = json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let set = json!({ "keys": vec![one; 500] });
        assert_eq!(parse(set.to_string().as_bytes()).unwrap().len(), MAX_KEYS);
    }

    #[test]
    fn the_lifetime_follows_cache_control_within_bounds() {
        assert_eq!(lifetime(None), Duration::from_secs(3600));
        assert_eq!(lifetime(Some("public, max-age=7200")), Duration::from_secs(7200));
        assert_eq!(lifetime(Some("max-age=0, must-revalidate")), Duration::from_secs(300));
        assert_eq!(lifetime(Some("max-age=99999999")), Duration::from_secs(86_400));
        assert_eq!(lifetime(Some("no-store")), Duration::from_secs(3600));
    }
}
