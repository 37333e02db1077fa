//! Secrets at run time: the process-wide redactor every outgoing message and log line passes
//! through, and the resolution of `vault:NAME` references in upstream config into the values
//! only that upstream receives.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use portcullis_core::Message;
use portcullis_core::redact::{MIN_SECRET_LEN, Redactor};
use portcullis_vault::{ENV_KEY, KeySource, MasterKey, Secret, Vault, VaultError};

use crate::config::{Transport, UpstreamConfig};

/// The prefix of a secret reference in config values.
pub const PREFIX: &str = "vault:";

static REDACTOR: RwLock<Option<Arc<Redactor>>> = RwLock::new(None);

/// Makes `r` the redactor of this process (replacing any earlier one).
pub fn install(r: Redactor) {
    *REDACTOR.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(r));
}

fn current() -> Option<Arc<Redactor>> {
    REDACTOR.read().unwrap_or_else(PoisonError::into_inner).clone()
}

/// `bytes` with every vault secret replaced by `[redacted:NAME]`.
pub fn scrub(bytes: &[u8]) -> Cow<'_, [u8]> {
    match current() {
        Some(r) => match r.redact_bytes(bytes) {
            Cow::Borrowed(_) => Cow::Borrowed(bytes),
            Cow::Owned(v) => Cow::Owned(v),
        },
        None => Cow::Borrowed(bytes),
    }
}

/// A message as it goes on the wire to a client: serialised, then scrubbed.
pub fn wire(m: &Message) -> Vec<u8> {
    let bytes = m.to_vec();
    match scrub(&bytes) {
        Cow::Borrowed(_) => bytes,
        Cow::Owned(v) => {
            tracing::warn!("a vault secret was about to reach a client; redacted");
            v
        }
    }
}

/// The secret name a config value refers to, if it is a reference.
pub fn reference(value: &str) -> Option<&str> {
    value.strip_prefix(PREFIX)
}

/// One `vault:NAME` reference in an upstream's config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// The env variable or header that carries it.
    pub field: String,
    /// Its config key, for messages (`upstreams.mail.env.IMAP_PASSWORD`).
    pub key: String,
    /// The secret's name.
    pub name: String,
}

/// Every `vault:NAME` reference of an upstream.
pub fn references(u: &UpstreamConfig) -> Vec<Reference> {
    let (kind, values): (&str, &BTreeMap<String, String>) = match &u.transport {
        Transport::Stdio { env, .. } => ("env", env),
        Transport::Http { headers, .. } => ("headers", headers),
    };
    values
        .iter()
        .filter_map(|(k, v)| {
            reference(v).map(|name| Reference {
                field: k.clone(),
                key: format!("upstreams.{}.{kind}.{k}", u.name),
                name: name.to_owned(),
            })
        })
        .collect()
}

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
    /// The vault failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
}

/// The upstream's config with each `vault:NAME` value replaced by the secret (as the principal
/// `local` sees it). The returned copy goes to that upstream's supervisor only.
pub async fn resolve(u: &UpstreamConfig, vault: &Vault) -> Result<UpstreamConfig, ResolveError> {
    let mut out = u.clone();
    let values = match &mut out.transport {
        Transport::Stdio { env, .. } => env,
        Transport::Http { headers, .. } => headers,
    };
    for r in references(u) {
        let secret: Secret = vault.get(&r.name, "").await?.ok_or_else(|| ResolveError::Missing {
            key: r.key.clone(),
            name: r.name.clone(),
        })?;
        if let Some(v) = values.get_mut(&r.field) {
            v.clear();
            v.push_str(secret.expose());
        }
    }
    Ok(out)
}

/// Builds and installs the redactor over every secret in the vault.
pub async fn install_from(vault: &Vault) -> Result<usize, VaultError> {
    let all = vault.all().await?;
    for (name, s) in &all {
        if s.expose().len() < MIN_SECRET_LEN {
            tracing::warn!(secret = %name, "secret shorter than {MIN_SECRET_LEN} bytes: it cannot be redacted from output safely");
        }
    }
    let r = Redactor::new(all.iter().map(|(n, s)| (n.as_str(), s.expose())));
    install(r);
    Ok(all.len())
}

/// Where the master key comes from, and whether it is there.
pub fn master_key(
    source: &KeySource,
    data_dir: &std::path::Path,
    salt: Option<&[u8]>,
) -> Result<Option<MasterKey>, VaultError> {
    match source {
        KeySource::Env => match std::env::var(ENV_KEY) {
            Ok(text) => MasterKey::from_text(&text, &format!("`{ENV_KEY}`")).map(Some),
            Err(_) => Ok(None),
        },
        KeySource::File(path) => MasterKey::from_file(path, data_dir).map(Some),
        KeySource::Passphrase => match (std::env::var(PASSPHRASE_ENV), salt) {
            (Ok(p), Some(salt)) => MasterKey::from_passphrase(p.as_bytes(), salt).map(Some),
            _ => Ok(None),
        },
    }
}

/// The environment variable a non-interactive gateway reads the vault passphrase from.
pub const PASSPHRASE_ENV: &str = "PORTCULLIS_VAULT_PASSPHRASE";

/// What is missing when no key is available from `source`.
pub fn no_key_hint(source: &KeySource) -> String {
    match source {
        KeySource::Env => format!(
            "set `{ENV_KEY}` (32 bytes, base64 or hex), or name a key file in `[vault] key_file` (create one with `portcullis vault init --key-file PATH`)"
        ),
        KeySource::File(p) => format!("key file `{}` is not readable", p.display()),
        KeySource::Passphrase => format!("set `{PASSPHRASE_ENV}`"),
    }
}
