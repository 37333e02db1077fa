//! The credential vault: secrets sealed with XChaCha20-Poly1305 under a master key that is
//! never stored beside them, each bound to its name and owner. The store holds ciphertext
//! only; this crate holds the key, and hands out values as [`Secret`]s, which zeroize on drop
//! and never print.
//!
//! **Architecture invariant:** a value leaves this crate only as a [`Secret`]; its `Debug`
//! prints `<redacted>`, and nothing here logs a value or a key.

mod key;
mod seal;

use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_store::{SealedRow, SecretInfo, Store, StoreError};
use zeroize::Zeroizing;

pub use key::{ENV_KEY, KEY_LEN, KEYRING_SERVICE, KeySource, MasterKey, env_key_text, keep_env_key};

/// The metadata row holding the key check.
const KEY_CHECK: &str = "key-check";
/// The metadata row holding the passphrase KDF salt.
pub const KDF_SALT: &str = "kdf-salt";
/// What the key check seals.
const KEY_CHECK_TEXT: &[u8] = b"portcullis vault key check v1";

/// Why the vault could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The master key opens nothing: not the key the vault was sealed with.
    #[error("the master key is not the one this vault was sealed with (from {0}); nothing was read or changed")]
    WrongKey(String),
    /// A key source gave no usable key.
    #[error("{source_name}: {why}")]
    BadKey {
        /// Which source.
        source_name: String,
        /// What is wrong.
        why: String,
    },
    /// A secret exists but does not open (tampered, or moved to another name or owner).
    #[error("secret `{0}` does not open under this key: its row was altered")]
    Tampered(String),
    /// A secret's name is not acceptable.
    #[error("secret names use letters, digits, `_`, `-` and `.` (at most 128), got `{0}`")]
    BadName(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A secret value: zeroized on drop, `<redacted>` when printed.
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// The value. Hand it only to the one upstream that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Whether `name` is an acceptable secret name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// The open vault: a store and the key that opens it.
#[derive(Debug)]
pub struct Vault {
    store: Store,
    key: MasterKey,
    source: String,
}

impl Vault {
    /// The store the vault keeps its rows in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Opens the vault in `store` with `key` (described by `source` in errors). A vault that
    /// has never been used is stamped with this key's check; otherwise a key that does not open
    /// the check is [`VaultError::WrongKey`] — never a silently empty vault.
    pub async fn open(store: Store, key: MasterKey, source: &str) -> Result<Vault, VaultError> {
        let vault = Vault {
            store,
            key,
            source: source.to_owned(),
        };
        match vault.store.vault_meta(KEY_CHECK).await? {
            Some(check) => vault.verify(&check)?,
            None => {
                let (nonce, ct) = seal::seal(&vault.key, KEY_CHECK, "", KEY_CHECK_TEXT);
                let check = [nonce, ct].concat();
                if !vault.store.init_vault_meta(KEY_CHECK, &check).await? {
                    // Another process stamped it first: it must be our key too.
                    let check = vault.store.vault_meta(KEY_CHECK).await?.unwrap_or_default();
                    vault.verify(&check)?;
                }
            }
        }
        Ok(vault)
    }

    fn verify(&self, check: &[u8]) -> Result<(), VaultError> {
        let (nonce, ct) = check.split_at(check.len().min(seal::NONCE_LEN));
        match seal::open(&self.key, KEY_CHECK, "", nonce, ct) {
            Some(text) if text.as_slice() == KEY_CHECK_TEXT => Ok(()),
            _ => Err(VaultError::WrongKey(self.source.clone())),
        }
    }

    /// The passphrase salt of `store`, created on first use.
    pub async fn passphrase_salt(store: &Store) -> Result<Vec<u8>, VaultError> {
        use rand::RngCore as _;
        if let Some(salt) = store.vault_meta(KDF_SALT).await? {
            return Ok(salt);
        }
        let mut salt = vec![0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        store.init_vault_meta(KDF_SALT, &salt).await?;
        Ok(store.vault_meta(KDF_SALT).await?.unwrap_or(salt))
    }

    /// Sets a secret (replacing any value it had).
    pub async fn set(&self, name: &str, owner: &str, value: &str) -> Result<(), VaultError> {
        let row = self.sealed(name, owner, value)?;
        self.store.put_secret(&row, now_unix()).await?;
        Ok(())
    }

    /// `value` sealed under `name` and `owner`, once the name is checked.
    fn sealed(&self, name: &str, owner: &str, value: &str) -> Result<SealedRow, VaultError> {
        if !valid_name(name) {
            return Err(VaultError::BadName(name.to_owned()));
        }
        let (nonce, ciphertext) = seal::seal(&self.key, name, owner, value.as_bytes());
        Ok(SealedRow {
            name: name.to_owned(),
            owner: owner.to_owned(),
            nonce,
            ciphertext,
        })
    }

    /// Stores a secret unless one of that name and owner exists already; whether it was
    /// stored. For secrets made on first use, where two processes may start at once.
    pub async fn set_if_absent(&self, name: &str, owner: &str, value: &str) -> Result<bool, VaultError> {
        let row = self.sealed(name, owner, value)?;
        Ok(self.store.put_secret_if_absent(&row, now_unix()).await?)
    }

    fn unseal(&self, row: &SealedRow) -> Result<Secret, VaultError> {
        let plain = seal::open(&self.key, &row.name, &row.owner, &row.nonce, &row.ciphertext)
            .ok_or_else(|| VaultError::Tampered(row.name.clone()))?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| VaultError::Tampered(row.name.clone()))?;
        Ok(Secret(Zeroizing::new(text)))
    }

    /// A secret for `principal`: the principal's own where one exists, else the shared one
    /// (owner `""`). Records the use.
    pub async fn get(&self, name: &str, principal: &str) -> Result<Option<Secret>, VaultError> {
        let row = match self.store.secret(name, principal).await? {
            Some(r) => Some(r),
            None if !principal.is_empty() => self.store.secret(name, "").await?,
            None => None,
        };
        let Some(row) = row else { return Ok(None) };
        let secret = self.unseal(&row)?;
        self.store.touch_secret(&row.name, &row.owner, now_unix()).await?;
        Ok(Some(secret))
    }

    /// The shared secret `name` (owner `""`) without recording a use: for the gateway's own
    /// keys, read by commands that must change nothing (`audit verify` on a read-only folder).
    pub async fn peek(&self, name: &str) -> Result<Option<Secret>, VaultError> {
        match self.store.secret(name, "").await? {
            Some(row) => Ok(Some(self.unseal(&row)?)),
            None => Ok(None),
        }
    }

    /// Every secret with its name, for building the redactor.
    pub async fn all(&self) -> Result<Vec<(String, Secret)>, VaultError> {
        self.store
            .secrets()
            .await?
            .iter()
            .map(|row| Ok((row.name.clone(), self.unseal(row)?)))
            .collect()
    }

    /// Names, owners and times; never values.
    pub async fn list(&self) -> Result<Vec<SecretInfo>, VaultError> {
        Ok(self.store.secret_infos().await?)
    }

    /// Removes a secret; whether it was there.
    pub async fn remove(&self, name: &str, owner: &str) -> Result<bool, VaultError> {
        Ok(self.store.remove_secret(name, owner).await?)
    }

    /// Lifts a suspension for misuse; whether the secret was suspended.
    pub async fn resume(&self, name: &str) -> Result<bool, VaultError> {
        Ok(self.store.resume_secret(name).await?)
    }

    /// Re-seals every secret and the key check under `new`, in one transaction; returns the
    /// vault opened with the new key.
    pub async fn rotate(self, new: MasterKey, new_source: &str) -> Result<Vault, VaultError> {
        let mut rows = Vec::new();
        for row in self.store.secrets().await? {
            let secret = self.unseal(&row)?;
            let (nonce, ciphertext) = seal::seal(&new, &row.name, &row.owner, secret.expose().as_bytes());
            rows.push(SealedRow {
                nonce,
                ciphertext,
                ..row
            });
        }
        let (nonce, ct) = seal::seal(&new, KEY_CHECK, "", KEY_CHECK_TEXT);
        self.store
            .reseal_all(&rows, &[(KEY_CHECK, [nonce, ct].concat())], now_unix())
            .await?;
        Ok(Vault {
            store: self.store,
            key: new,
            source: new_source.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests;
