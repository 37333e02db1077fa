//! Credentials injected here and only here: `vault:NAME` references in an upstream's config
//! resolved into the copy of its config only that upstream's supervisor holds (the shared
//! secret, or a principal's own for their instance).

use portcullis_vault::{Secret, Vault, VaultError};

use crate::config::refs::{Slot, reference, references};
use crate::config::{Transport, UpstreamConfig};

/// A reference that could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Some upstream refers to the vault and no master key is configured or given.
    #[error("`{key}` refers to `vault:{name}`, but no master key is available: {why}")]
    NoKey {
        /// The config key.
        key: String,
        /// The secret.
        name: String,
        /// What is missing.
        why: String,
    },
    /// The secret is not in the vault.
    #[error("`{key}` refers to `vault:{name}`, which is not in the vault; add it with `portcullis vault set {name}`")]
    Missing {
        /// The config key.
        key: String,
        /// The secret.
        name: String,
    },
    /// The value cannot stand where the reference is.
    #[error("`{key}`: the secret cannot be used there")]
    Unusable {
        /// The config key.
        key: String,
    },
    /// The vault failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
}

/// The upstream's config with each `vault:NAME` value replaced by the shared secret. The
/// returned copy goes to that upstream's supervisor only.
pub async fn resolve(u: &UpstreamConfig, vault: &Vault) -> Result<UpstreamConfig, ResolveError> {
    resolve_for(u, vault, "").await
}

/// Like [`resolve`], with `principal`'s own secret wherever they have one (the shared one
/// elsewhere): the config of that principal's own instance of the upstream.
pub async fn resolve_for(u: &UpstreamConfig, vault: &Vault, principal: &str) -> Result<UpstreamConfig, ResolveError> {
    let mut out = u.clone();
    for r in references(u) {
        let secret: Secret = vault
            .get(&r.name, principal)
            .await?
            .ok_or_else(|| ResolveError::Missing {
                key: r.key.clone(),
                name: r.name.clone(),
            })?;
        let value = secret.expose();
        match (&mut out.transport, &r.slot) {
            (Transport::Stdio { env: values, .. }, Slot::Env(k))
            | (Transport::Http { headers: values, .. }, Slot::Header(k)) => {
                if let Some(v) = values.get_mut(k) {
                    v.clear();
                    v.push_str(value);
                }
            }
            (Transport::Http { url, .. }, Slot::UrlPassword) => url
                .set_password(Some(value))
                .map_err(|()| ResolveError::Unusable { key: r.key.clone() })?,
            (Transport::Http { url, .. }, Slot::UrlQuery(k)) => {
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(pk, pv)| {
                        let v = if pk == k.as_str() && reference(&pv) == Some(r.name.as_str()) {
                            value.to_owned()
                        } else {
                            pv.into_owned()
                        };
                        (pk.into_owned(), v)
                    })
                    .collect();
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
            _ => {}
        }
    }
    Ok(out)
}
