//! Signed checkpoints of the audit chain. Every so many records, and when the gateway stops,
//! the writer signs (Ed25519, key held in the vault) the sequence number and hash of the newest
//! record together with the sequence number of the previous checkpoint. The hash chain alone
//! catches a change inside the log; the checkpoints catch what the chain cannot: a rewrite of
//! the whole chain (the signed hashes no longer match), the removal of records a checkpoint
//! covers (truncation), and the removal of checkpoints themselves (each names its predecessor,
//! under signature). Pure: keys and rows in, a verdict out.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _};
pub use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

/// The public key of a 32-byte signing key.
pub fn public_of(secret: &[u8; 32]) -> VerifyingKey {
    SigningKey::from_bytes(secret).verifying_key()
}

/// A public key as printed by `portcullis audit public-key` (base64 of its 32 bytes).
pub fn encode_public(key: &VerifyingKey) -> String {
    STANDARD.encode(key.as_bytes())
}

/// A public key from its printed form.
pub fn decode_public(text: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = STANDARD.decode(text.trim()).ok()?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

use super::Broken;

/// One signed checkpoint (also a line of the witness file, as JSON).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// The record it covers (every record up to it).
    pub seq: i64,
    /// That record's hash.
    pub hash: String,
    /// When it was signed, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The previous checkpoint's `seq` (0 for the first).
    pub prev: i64,
    /// Which key signed it ([`key_id`]).
    pub key_id: String,
    /// The Ed25519 signature over [`message`], base64.
    pub signature: String,
}

/// What is signed.
pub fn message(seq: i64, hash: &str, at_ms: i64, prev: i64) -> String {
    format!("portcullis-audit-checkpoint-v1\n{seq}\n{hash}\n{at_ms}\n{prev}\n")
}

/// A short, stable name for a public key: the first 16 hex digits of its SHA-256.
pub fn key_id(key: &VerifyingKey) -> String {
    let digest = Sha256::digest(key.as_bytes());
    hex::encode(digest.get(..8).unwrap_or_default())
}

/// Signs a checkpoint over record `seq` with `hash`, following checkpoint `prev`.
pub fn sign(key: &SigningKey, seq: i64, hash: &str, at_ms: i64, prev: i64) -> Checkpoint {
    let sig = key.sign(message(seq, hash, at_ms, prev).as_bytes());
    Checkpoint {
        seq,
        hash: hash.to_owned(),
        at_ms,
        prev,
        key_id: key_id(&key.verifying_key()),
        signature: STANDARD.encode(sig.to_bytes()),
    }
}

/// What the checkpoints say about a chain that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Checkpoints verified.
    pub checkpoints: usize,
    /// The newest record a checkpoint covers (0: none).
    pub signed_through: i64,
}

/// Verifies `checkpoints` (in `seq` order) against `key` and the records: each signature
/// holds, each names the one before it, and each covers a record that exists (up to `head`)
/// with the hash it signed (`hash_of(seq)`). Without a key everything but the signatures is
/// checked: that still catches a chain rewritten under checkpoints left in place.
pub fn verify(
    checkpoints: &[Checkpoint],
    key: Option<&VerifyingKey>,
    head: i64,
    hash_of: impl Fn(i64) -> Option<String>,
) -> Result<Report, Broken> {
    let mut prev = 0;
    for c in checkpoints {
        let broken = |why: String| Broken { seq: c.seq, why };
        if let Some(key) = key {
            signed_by(c, key).map_err(broken)?;
        }
        if c.prev != prev {
            return Err(broken(format!(
                "its checkpoint follows checkpoint {}, but the one before it is {prev} (a checkpoint was removed)",
                c.prev
            )));
        }
        if c.seq > head {
            return Err(Broken {
                seq: head + 1,
                why: format!(
                    "missing: a signed checkpoint covers records through {} (the log was truncated)",
                    c.seq
                ),
            });
        }
        match hash_of(c.seq) {
            Some(h) if h == c.hash => {}
            Some(_) => {
                return Err(broken(
                    "it is not the record its signed checkpoint covers (the chain was rewritten)".into(),
                ));
            }
            None => return Err(broken("missing, though a signed checkpoint covers it".into())),
        }
        prev = c.seq;
    }
    Ok(Report {
        checkpoints: checkpoints.len(),
        signed_through: prev,
    })
}

/// Whether `key` signed `c`: the reason it did not, if not.
fn signed_by(c: &Checkpoint, key: &VerifyingKey) -> Result<(), String> {
    let id = key_id(key);
    if c.key_id != id {
        return Err(format!(
            "its checkpoint was signed by key {}, not this vault's key {id}",
            c.key_id
        ));
    }
    let sig = STANDARD
        .decode(&c.signature)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or_else(|| "its checkpoint's signature is malformed".to_owned())?;
    key.verify_strict(message(c.seq, &c.hash, c.at_ms, c.prev).as_bytes(), &sig)
        .map_err(|_| "its checkpoint's signature does not verify (forged or altered)".to_owned())
}

/// Checks the database's checkpoints (`db`) against the witness file kept outside the
/// database: every checkpoint the witness recorded must still be in the database, unchanged.
/// A database whose tail was cut (records and the checkpoints over them) or whose newest
/// checkpoints were removed fails here even though what is left of it verifies. Returns how
/// many witnessed checkpoints were found.
pub fn check_witness(db: &[Checkpoint], witness: &[Checkpoint]) -> Result<usize, Broken> {
    let by_seq: std::collections::HashMap<i64, &Checkpoint> = db.iter().map(|c| (c.seq, c)).collect();
    for w in witness {
        match by_seq.get(&w.seq) {
            Some(c) if *c == w => {}
            Some(_) => {
                return Err(Broken {
                    seq: w.seq,
                    why: "its signed checkpoint is not the one the witness file recorded (replaced)".into(),
                });
            }
            None => {
                return Err(Broken {
                    seq: w.seq,
                    why: format!(
                        "missing: the witness file recorded a signed checkpoint over records through {} that the database no longer has (its tail or checkpoints were removed)",
                        w.seq
                    ),
                });
            }
        }
    }
    Ok(witness.len())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use std::collections::HashMap;

    use super::*;

    fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    /// Checkpoints at records 3 and 6 of a log of 7 whose hashes are `h<seq>`.
    fn setup() -> (Vec<Checkpoint>, HashMap<i64, String>) {
        let hashes: HashMap<i64, String> = (1..=7).map(|i| (i, format!("h{i}"))).collect();
        let k = key(7);
        let a = sign(&k, 3, "h3", 100, 0);
        let b = sign(&k, 6, "h6", 200, 3);
        (vec![a, b], hashes)
    }

    fn check(cps: &[Checkpoint], hashes: &HashMap<i64, String>, head: i64) -> Result<Report, Broken> {
        verify(cps, Some(&key(7).verifying_key()), head, |s| hashes.get(&s).cloned())
    }

    #[test]
    fn intact_checkpoints_verify() {
        let (cps, hashes) = setup();
        assert_eq!(
            check(&cps, &hashes, 7),
            Ok(Report {
                checkpoints: 2,
                signed_through: 6
            })
        );
        assert_eq!(check(&[], &hashes, 7).unwrap().signed_through, 0);
    }

    #[test]
    fn a_rewritten_chain_a_truncation_and_a_removed_checkpoint_are_caught() {
        let (cps, hashes) = setup();
        // The whole chain recomputed: record 3's hash is not the signed one.
        let mut rewritten = hashes.clone();
        rewritten.insert(3, "other".into());
        assert_eq!(check(&cps, &rewritten, 7).unwrap_err().seq, 3);
        // The newest records removed, down to 5: record 6 is signed but gone.
        let e = check(&cps, &hashes, 5).unwrap_err();
        assert_eq!(e.seq, 6, "{e}");
        assert!(e.why.contains("truncated"), "{e}");
        // The first checkpoint removed: the second names it.
        let e = check(&cps[1..], &hashes, 7).unwrap_err();
        assert!(e.why.contains("a checkpoint was removed"), "{e}");
    }

    #[test]
    fn forged_or_altered_checkpoints_are_caught() {
        let (mut cps, hashes) = setup();
        // Signed by another key.
        let forged = vec![sign(&key(9), 3, "h3", 100, 0)];
        assert!(
            check(&forged, &hashes, 7)
                .unwrap_err()
                .why
                .contains("not this vault's key")
        );
        // Same key id claimed, signature from another key.
        let mut claimed = forged[0].clone();
        claimed.key_id = cps[0].key_id.clone();
        assert!(
            check(&[claimed], &hashes, 7)
                .unwrap_err()
                .why
                .contains("does not verify")
        );
        // A signed field altered.
        cps[0].at_ms += 1;
        assert!(check(&cps, &hashes, 7).unwrap_err().why.contains("does not verify"));
    }

    #[test]
    fn the_witness_catches_a_removed_tail_and_removed_checkpoints() {
        let k = key(7);
        let c1 = sign(&k, 1000, "h1000", 1, 0);
        let c2 = sign(&k, 1004, "h1004", 2, 1000);
        let witness = [c1.clone(), c2.clone()];
        assert_eq!(check_witness(&[c1.clone(), c2.clone()], &witness), Ok(2));
        // The database may hold more than the witness (a witness line that could not be written).
        let c3 = sign(&k, 1010, "h1010", 3, 1004);
        assert_eq!(check_witness(&[c1.clone(), c2.clone(), c3], &witness), Ok(2));
        // The newest checkpoint removed with the records after the one before it: what is left
        // verifies on its own, the witness does not.
        let e = check_witness(std::slice::from_ref(&c1), &witness).unwrap_err();
        assert_eq!(e.seq, 1004);
        assert!(e.why.contains("no longer has"), "{}", e.why);
        // Every checkpoint removed.
        assert_eq!(check_witness(&[], &witness).unwrap_err().seq, 1000);
        // A checkpoint re-signed over a rewritten record.
        let forged = sign(&k, 1004, "other", 2, 1000);
        let e = check_witness(&[c1, forged], &witness).unwrap_err();
        assert!(e.why.contains("replaced"), "{}", e.why);
    }
}
