//! Sealing one value: XChaCha20-Poly1305 with a fresh random 192-bit nonce per write, and the
//! secret's name and owner bound as associated data, so a ciphertext moved to another name or
//! owner in the database no longer opens.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use zeroize::Zeroizing;

use crate::key::MasterKey;

/// Nonce bytes.
pub const NONCE_LEN: usize = 24;

/// The associated data of a secret: a version tag, its name and owner.
fn aad(name: &str, owner: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(24 + name.len() + owner.len());
    a.extend_from_slice(b"portcullis-vault-v1\0");
    a.extend_from_slice(name.as_bytes());
    a.push(0);
    a.extend_from_slice(owner.as_bytes());
    a
}

/// Seals `plaintext`; returns (nonce, ciphertext with tag).
pub fn seal(key: &MasterKey, name: &str, owner: &str, plaintext: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let aad = aad(name, owner);
    // Encryption with a valid key and nonce cannot fail; an empty result would not open.
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad,
            },
        )
        .unwrap_or_default();
    (nonce.to_vec(), ciphertext)
}

/// Opens a sealed value; `None` when the key, name, owner or bytes are not the ones sealed.
pub fn open(key: &MasterKey, name: &str, owner: &str, nonce: &[u8], ciphertext: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if nonce.len() != NONCE_LEN {
        return None;
    }
    let cipher = XChaCha20Poly1305::new(key.bytes().into());
    let aad = aad(name, owner);
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad: &aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}
