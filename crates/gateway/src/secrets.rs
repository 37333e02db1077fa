//! Secrets at run time: the process-wide redactor every outgoing message and log line passes
//! through, and the resolution of `vault:NAME` references in upstream config into the values
//! only that upstream receives.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use zeroize::Zeroizing;

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

/// Where in an upstream's config a reference sits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    /// An environment variable of a stdio upstream.
    Env(String),
    /// A header of an HTTP upstream.
    Header(String),
    /// The password of an HTTP upstream's URL (`https://user:vault%3ANAME@host/`).
    UrlPassword,
    /// A query parameter of an HTTP upstream's URL (`?key=vault:NAME`).
    UrlQuery(String),
}

/// One `vault:NAME` reference in an upstream's config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// Where it sits.
    pub slot: Slot,
    /// Its config key, for messages (`upstreams.mail.env.IMAP_PASSWORD`).
    pub key: String,
    /// The secret's name.
    pub name: String,
}

/// Every `vault:NAME` reference of an upstream: env values, header values, and its URL's
/// password and query values.
pub fn references(u: &UpstreamConfig) -> Vec<Reference> {
    let mut out = Vec::new();
    let mut add = |slot: Slot, key: String, value: &str| {
        if let Some(name) = reference(value) {
            out.push(Reference {
                slot,
                key,
                name: name.to_owned(),
            });
        }
    };
    match &u.transport {
        Transport::Stdio { env, .. } => {
            for (k, v) in env {
                add(Slot::Env(k.clone()), format!("upstreams.{}.env.{k}", u.name), v);
            }
        }
        Transport::Http { headers, url } => {
            for (k, v) in headers {
                add(Slot::Header(k.clone()), format!("upstreams.{}.headers.{k}", u.name), v);
            }
            if let Some(p) = url_password(url) {
                add(Slot::UrlPassword, format!("upstreams.{}.url (password)", u.name), &p);
            }
            for (k, v) in url.query_pairs() {
                add(
                    Slot::UrlQuery(k.clone().into_owned()),
                    format!("upstreams.{}.url (query `{k}`)", u.name),
                    &v,
                );
            }
        }
    }
    out
}

/// A URL's password, percent-decoded.
pub fn url_password(url: &reqwest::Url) -> Option<String> {
    let p = url.password()?;
    percent_encoding::percent_decode_str(p)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
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

/// The secrets the redactor is built from: the vault's, and those minted at run time (OAuth
/// access tokens), by name.
static KNOWN: Mutex<Known> = Mutex::new(Known {
    vault: Vec::new(),
    minted: Vec::new(),
});

struct Known {
    vault: Vec<(String, Zeroizing<String>)>,
    /// The latest few values per name: a token just replaced may still be in flight.
    minted: Vec<(String, Zeroizing<String>)>,
}

/// How many minted values per name stay redacted.
const MINTED_KEPT: usize = 4;

fn rebuild(k: &Known) {
    let all = k.vault.iter().chain(k.minted.iter());
    install(Redactor::new(all.map(|(n, v)| (n.as_str(), v.as_str()))));
}

/// Builds and installs the redactor over every secret in the vault.
pub async fn install_from(vault: &Vault) -> Result<usize, VaultError> {
    let all = vault.all().await?;
    for (name, s) in &all {
        if s.expose().len() < MIN_SECRET_LEN {
            tracing::warn!(secret = %name, "secret shorter than {MIN_SECRET_LEN} bytes: it cannot be redacted from output safely");
        }
    }
    let mut k = KNOWN.lock().unwrap_or_else(PoisonError::into_inner);
    k.vault = all
        .iter()
        .map(|(n, s)| (n.clone(), Zeroizing::new(s.expose().to_owned())))
        .collect();
    rebuild(&k);
    Ok(all.len())
}

/// Adds a value minted at run time (an access token, a rotated refresh token) to what is
/// redacted everywhere, under `name`.
pub fn remember(name: &str, value: &str) {
    let mut k = KNOWN.lock().unwrap_or_else(PoisonError::into_inner);
    if k.minted.iter().any(|(n, v)| n == name && v.as_str() == value) {
        return;
    }
    k.minted.push((name.to_owned(), Zeroizing::new(value.to_owned())));
    let same: Vec<usize> = k
        .minted
        .iter()
        .enumerate()
        .filter(|(_, (n, _))| n == name)
        .map(|(i, _)| i)
        .collect();
    if same.len() > MINTED_KEPT
        && let Some(&oldest) = same.first()
    {
        k.minted.remove(oldest);
    }
    rebuild(&k);
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
        KeySource::Keyring => MasterKey::from_keyring(data_dir),
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
        KeySource::Keyring => {
            "the OS keyring holds no master key for this data_dir; create one with `portcullis vault init --keyring`"
                .to_owned()
        }
    }
}
