//! The process-wide redactor: every message a front sends a client, every log line and every
//! audit record passes through [`scrub`], which replaces any vault secret, and any token minted
//! at run time, in any common encoding (see [`portcullis_core::redact`]).

use std::borrow::Cow;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use zeroize::Zeroizing;

use portcullis_core::Message;
use portcullis_core::redact::{MIN_SECRET_LEN, Redactor};
use portcullis_vault::{Vault, VaultError};

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
