//! The master key and where it comes from. It is never stored beside the data: from
//! the OS keyring, from `PORTCULLIS_MASTER_KEY` (containers), from a key file with mode 0600
//! outside `data_dir`, or from a passphrase through Argon2id (salt kept in the vault's
//! metadata). Key bytes are
//! zeroized when dropped.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use rand::RngCore as _;
use zeroize::Zeroizing;

use crate::VaultError;

/// Key bytes.
pub const KEY_LEN: usize = 32;

/// The environment variable a container passes the key in (base64 or hex of 32 bytes).
pub const ENV_KEY: &str = "PORTCULLIS_MASTER_KEY";

/// The master key's text, taken out of the environment at start (`portcullis` re-executes
/// itself without it, so no `/proc/<pid>/environ` ever shows it again).
static TAKEN: std::sync::OnceLock<zeroize::Zeroizing<String>> = std::sync::OnceLock::new();

/// Keeps the master key's text taken out of the environment (once).
pub fn keep_env_key(text: zeroize::Zeroizing<String>) {
    let _ = TAKEN.set(text);
}

/// The master key's text from the environment: the one taken out at start, else
/// [`ENV_KEY`] as it is.
pub fn env_key_text() -> Option<zeroize::Zeroizing<String>> {
    TAKEN
        .get()
        .cloned()
        .or_else(|| std::env::var(ENV_KEY).ok().map(zeroize::Zeroizing::new))
}

/// The vault's master key.
pub struct MasterKey(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

fn decode_key(text: &str) -> Option<Zeroizing<[u8; KEY_LEN]>> {
    let text = text.trim();
    let bytes = Zeroizing::new(
        if text.len() == KEY_LEN * 2 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            (0..KEY_LEN)
                .map(|i| text.get(i * 2..i * 2 + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                .collect::<Option<Vec<u8>>>()?
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
                .ok()?
        },
    );
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if bytes.len() != KEY_LEN {
        return None;
    }
    key.copy_from_slice(&bytes);
    Some(key)
}

impl MasterKey {
    /// The key bytes.
    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// A fresh random key.
    pub fn generate() -> MasterKey {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rand::rng().fill_bytes(key.as_mut());
        MasterKey(key)
    }

    /// The key as base64, for writing a key file.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.0.as_ref()))
    }

    /// From the text of `PORTCULLIS_MASTER_KEY`: base64 (standard or URL-safe) or hex of 32
    /// bytes.
    pub fn from_text(text: &str, source: &str) -> Result<MasterKey, VaultError> {
        decode_key(text).map(MasterKey).ok_or_else(|| VaultError::BadKey {
            source_name: source.to_owned(),
            why: "expected 32 bytes as base64 or hex".to_owned(),
        })
    }

    /// From a key file: it must be a regular file with no permissions for group or others
    /// (0600 or stricter) and must not lie inside `data_dir`, where the ciphertext is.
    pub fn from_file(path: &Path, data_dir: &Path) -> Result<MasterKey, VaultError> {
        use std::os::unix::fs::PermissionsExt as _;
        let bad = |why: String| VaultError::BadKey {
            source_name: format!("key file `{}`", path.display()),
            why,
        };
        let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let (file, dir) = (abs(path), abs(data_dir));
        if file.starts_with(&dir) {
            return Err(bad(format!(
                "it lies inside data_dir `{}`, beside the data it protects; keep it elsewhere",
                dir.display()
            )));
        }
        let meta = std::fs::metadata(path).map_err(|e| bad(e.to_string()))?;
        if !meta.is_file() {
            return Err(bad("not a regular file".to_owned()));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "its mode is {mode:04o}; it must be readable by its owner only (chmod 600)"
            )));
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?);
        decode_key(&text)
            .map(MasterKey)
            .ok_or_else(|| bad("expected 32 bytes as base64 or hex".to_owned()))
    }

    /// Writes a new random key to `path` (mode 0600, refusing to overwrite) and returns it.
    pub fn create_file(path: &Path, data_dir: &Path) -> Result<MasterKey, VaultError> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let bad = |why: String| VaultError::BadKey {
            source_name: format!("key file `{}`", path.display()),
            why,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            if abs(parent).starts_with(abs(data_dir)) {
                return Err(bad(
                    "it would lie inside data_dir, beside the data it protects".to_owned()
                ));
            }
        }
        let key = MasterKey::generate();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| bad(e.to_string()))?;
        f.write_all(key.to_base64().as_bytes())
            .and_then(|()| f.write_all(b"\n"))
            .map_err(|e| bad(e.to_string()))?;
        Ok(key)
    }

    /// From a passphrase through Argon2id (default parameters: 19 MiB, 2 passes) and a salt.
    pub fn from_passphrase(passphrase: &[u8], salt: &[u8]) -> Result<MasterKey, VaultError> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        argon2::Argon2::default()
            .hash_password_into(passphrase, salt, key.as_mut())
            .map_err(|e| VaultError::BadKey {
                source_name: "passphrase".to_owned(),
                why: e.to_string(),
            })?;
        Ok(MasterKey(key))
    }
}

/// The OS keyring service the master keys are stored under; the account is the absolute
/// `data_dir`, so each vault has its own key.
pub const KEYRING_SERVICE: &str = "portcullis";

fn keyring_entry(data_dir: &Path) -> Result<keyring::Entry, VaultError> {
    let account = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    keyring::Entry::new(KEYRING_SERVICE, &account.to_string_lossy()).map_err(keyring_error)
}

fn keyring_error(e: keyring::Error) -> VaultError {
    VaultError::BadKey {
        source_name: "the OS keyring".to_owned(),
        why: match e {
            keyring::Error::NoDefaultStore
            | keyring::Error::NoStorageAccess(_)
            | keyring::Error::PlatformFailure(_) => {
                format!(
                    "not available here ({e}); on Linux it needs a Secret Service (GNOME Keyring, KWallet) on the session bus. Use `key_file` or `{ENV_KEY}` instead"
                )
            }
            other => other.to_string(),
        },
    }
}

impl MasterKey {
    /// From the OS keyring (Secret Service on Linux, Keychain on macOS, Credential Manager on
    /// Windows): the entry for `data_dir`, or `None` when there is none.
    pub fn from_keyring(data_dir: &Path) -> Result<Option<MasterKey>, VaultError> {
        match keyring_entry(data_dir)?.get_password() {
            Ok(text) => {
                let text = Zeroizing::new(text);
                MasterKey::from_text(&text, "the OS keyring").map(Some)
            }
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(keyring_error(e)),
        }
    }

    /// A new random key stored in the OS keyring for `data_dir` (refusing to replace one).
    pub fn create_in_keyring(data_dir: &Path) -> Result<MasterKey, VaultError> {
        if MasterKey::from_keyring(data_dir)?.is_some() {
            return Err(VaultError::BadKey {
                source_name: "the OS keyring".to_owned(),
                why: format!(
                    "it already holds a master key for `{}`; rotate with `portcullis vault rotate-key` instead",
                    data_dir.display()
                ),
            });
        }
        let key = MasterKey::generate();
        keyring_entry(data_dir)?
            .set_password(&key.to_base64())
            .map_err(keyring_error)?;
        Ok(key)
    }
}

/// Where the master key is configured to come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// `PORTCULLIS_MASTER_KEY` (its text is read when the key is needed).
    Env,
    /// A key file.
    File(PathBuf),
    /// A passphrase (from `PORTCULLIS_VAULT_PASSPHRASE`, or asked on a terminal by the CLI).
    Passphrase,
    /// The OS keyring, under [`KEYRING_SERVICE`] and the vault's `data_dir`.
    Keyring,
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Env => write!(f, "`{ENV_KEY}`"),
            KeySource::File(p) => write!(f, "key file `{}`", p.display()),
            KeySource::Passphrase => f.write_str("passphrase"),
            KeySource::Keyring => f.write_str("the OS keyring"),
        }
    }
}
