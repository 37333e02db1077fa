//! Client authentication over HTTP: API keys. A key is `pcl_<id>_<secret>`; the store keeps
//! the id, the principal and the SHA-256 of the secret, never the key. The HTTP front asks
//! [`Keys::authenticate`] for every request when `[gateway] auth = "api-key"`: the principal
//! it returns is who the policy, the limits, the vault (per-user secrets) and the audit log
//! see. Lookups are in memory; the table is re-read every two seconds, so a key made or
//! revoked by `portcullis keys` in another process takes effect within that.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_store::{ApiKey, Store, StoreError};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// What every key starts with (so a leaked key is recognisable, and scanners can find it).
pub const KEY_PREFIX: &str = "pcl_";

/// Why a request is not authenticated. The client learns only that its credential is missing
/// or not valid, never which part was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("this gateway needs an API key: send `Authorization: Bearer pcl_…`")]
    Missing,
    /// A key that is malformed, unknown or revoked.
    #[error("the API key is not valid")]
    Invalid,
}

/// A freshly made key: shown once.
pub struct NewKey {
    /// The row to store.
    pub row: ApiKey,
    /// The whole key, for the person who asked.
    pub token: Zeroizing<String>,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey").field("row", &self.row).finish_non_exhaustive()
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A new key for `principal`: a 12-character id and 256 random bits.
pub fn mint(principal: &str, now: i64) -> NewKey {
    let mut id = [0u8; 9];
    rand::fill(&mut id);
    let mut secret = Zeroizing::new([0u8; 32]);
    rand::fill(secret.as_mut());
    let id = URL_SAFE_NO_PAD.encode(id).replace(['-', '_'], "x");
    let secret = Zeroizing::new(URL_SAFE_NO_PAD.encode(secret.as_ref()));
    NewKey {
        row: ApiKey {
            id: id.clone(),
            principal: principal.to_owned(),
            hash: digest(&secret).to_vec(),
            created_at: now,
        },
        token: Zeroizing::new(format!("{KEY_PREFIX}{id}_{}", secret.as_str())),
    }
}

/// The id and secret of a key, if it has a key's shape.
pub fn parse(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let ok = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (ok(id, 12) && ok(secret, 43)).then_some((id, secret))
}

/// Whether two secrets (digests, tokens) are equal, in time independent of where they differ.
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub use crate::bearer::claims::valid_principal;

/// The keys the gateway accepts.
#[derive(Debug, Default)]
pub struct Keys {
    by_id: RwLock<HashMap<String, (String, Vec<u8>)>>,
    /// Key ids whose token the redactor knows already.
    redacted: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Keys {
    /// Replaces the known keys with the store's.
    pub async fn reload(&self, store: &Store) -> Result<usize, StoreError> {
        let rows = store.api_keys().await?;
        let map: HashMap<String, (String, Vec<u8>)> = rows.into_iter().map(|k| (k.id, (k.principal, k.hash))).collect();
        let n = map.len();
        *self.by_id.write().unwrap_or_else(PoisonError::into_inner) = map;
        Ok(n)
    }

    /// The principal an `Authorization` header value speaks for.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<String, AuthError> {
        let value = authorization.ok_or(AuthError::Missing)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(AuthError::Missing)?
            .trim();
        let (id, secret) = parse(token).ok_or(AuthError::Invalid)?;
        let keys = self.by_id.read().unwrap_or_else(PoisonError::into_inner);
        let (principal, hash) = keys.get(id).ok_or(AuthError::Invalid)?;
        if same(hash, &digest(secret)) {
            // The gateway never shows a key to anyone; should an upstream or a log line ever
            // carry one, it is redacted like a vault secret.
            let fresh = self
                .redacted
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id.to_owned());
            if fresh {
                crate::redact::remember(&format!("api-key:{id}"), token);
            }
            Ok(principal.clone())
        } else {
            Err(AuthError::Invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn keys_with(k: &NewKey) -> Keys {
        let keys = Keys::default();
        keys.by_id
            .write()
            .unwrap()
            .insert(k.row.id.clone(), (k.row.principal.clone(), k.row.hash.clone()));
        keys
    }

    #[test]
    fn a_minted_key_authenticates_its_principal_and_nothing_else_does() {
        let k = mint("alice", 1);
        assert!(k.token.starts_with(KEY_PREFIX) && k.token.len() == 4 + 12 + 1 + 43);
        let keys = keys_with(&k);
        assert_eq!(
            keys.authenticate(Some(&format!("Bearer {}", k.token.as_str()))),
            Ok("alice".into())
        );
        assert_eq!(keys.authenticate(None), Err(AuthError::Missing));
        assert_eq!(keys.authenticate(Some("Basic abc")), Err(AuthError::Missing));
        // One character of the secret changed, another key's id, garbage: all invalid.
        let mut wrong = k.token.to_string();
        let last = if wrong.ends_with('A') { 'B' } else { 'A' };
        wrong.pop();
        wrong.push(last);
        let other = mint("bob", 1);
        for bad in [wrong.as_str(), other.token.as_str(), "pcl_", "pcl_x_y", "token"] {
            assert_eq!(
                keys.authenticate(Some(&format!("Bearer {bad}"))),
                Err(AuthError::Invalid),
                "{bad}"
            );
        }
        // The store never sees the key.
        assert!(!format!("{:?}", k.row).contains(k.token.as_str()));
        assert_ne!(mint("alice", 1).token, k.token);
    }

    #[test]
    fn principal_names() {
        for ok in ["alice", "alice@example.com", "svc-ci.bot_1"] {
            assert!(valid_principal(ok), "{ok}");
        }
        for bad in ["", "a b", "al\"ice", "x\n"] {
            assert!(!valid_principal(bad), "{bad:?}");
        }
    }
}
