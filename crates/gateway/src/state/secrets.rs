//! The vault's master key at start: where it comes from, and what to say when it is missing.

use portcullis_vault::{ENV_KEY, KeySource, MasterKey, VaultError};

/// Where the master key comes from, and whether it is there.
pub fn master_key(
    source: &KeySource,
    data_dir: &std::path::Path,
    salt: Option<&[u8]>,
) -> Result<Option<MasterKey>, VaultError> {
    match source {
        KeySource::Env => match portcullis_vault::env_key_text() {
            Some(text) => {
                // The key is redacted like any secret wherever it might surface.
                crate::redact::remember("master-key", &text);
                MasterKey::from_text(&text, &format!("`{ENV_KEY}`")).map(Some)
            }
            None => Ok(None),
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
