//! The audit chain: each record carries the SHA-256 of its predecessor, so editing, deleting or
//! reordering records breaks the chain at the first record touched. [`verify`] recomputes it
//! and names that record. Pure: the store keeps the rows, the gateway writes them.

use serde_json::Value;
use sha2::{Digest, Sha256};

pub mod checkpoint;
pub mod verdict;

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A record as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// 1, 2, 3, … without gaps.
    pub seq: i64,
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The record's body, canonical JSON.
    pub body: String,
    /// The previous record's hash ([`GENESIS`] for the first).
    pub prev: String,
    /// This record's hash.
    pub hash: String,
}

/// The canonical JSON of a record body.
pub fn canonical(body: &Value) -> String {
    crate::pin::canonical(body)
}

/// The hash of a record: SHA-256 over a version tag, its sequence number, time, predecessor's
/// hash and canonical body.
pub fn hash(seq: i64, at_ms: i64, prev: &str, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(format!("portcullis-audit-v1\n{seq}\n{at_ms}\n{prev}\n").as_bytes());
    h.update(body.as_bytes());
    hex::encode(h.finalize())
}

/// The row that follows `prev_row` (or starts the chain) for `body` at `at_ms`.
pub fn next(prev_row: Option<(&i64, &str)>, at_ms: i64, body: &Value) -> Row {
    next_canonical(prev_row, at_ms, canonical(body))
}

/// `next` for a body already in canonical form ([`canonical`]).
pub fn next_canonical(prev_row: Option<(&i64, &str)>, at_ms: i64, body: String) -> Row {
    let (seq, prev) = match prev_row {
        Some((s, h)) => (s + 1, h.to_owned()),
        None => (1, GENESIS.to_owned()),
    };
    let hash = hash(seq, at_ms, &prev, &body);
    Row {
        seq,
        at_ms,
        body,
        prev,
        hash,
    }
}

/// Where the chain breaks.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("audit record {seq}: {why}")]
pub struct Broken {
    /// The first record that does not verify (the one expected, for a gap).
    pub seq: i64,
    /// What is wrong with it.
    pub why: String,
}

/// Verifies a chain one row at a time, in storage order.
#[derive(Clone, Debug)]
pub struct Verifier {
    expected_seq: i64,
    prev: String,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            expected_seq: 1,
            prev: GENESIS.to_owned(),
        }
    }
}

impl Verifier {
    /// A verifier at the start of the chain.
    pub fn new() -> Verifier {
        Verifier::default()
    }

    /// Rows verified so far.
    pub fn verified(&self) -> i64 {
        self.expected_seq - 1
    }

    /// Checks the next row.
    pub fn push(&mut self, r: &Row) -> Result<(), Broken> {
        if r.seq != self.expected_seq {
            return Err(Broken {
                seq: self.expected_seq,
                why: format!("missing: the next record stored is {}", r.seq),
            });
        }
        if r.prev != self.prev {
            return Err(Broken {
                seq: r.seq,
                why: "does not follow its predecessor (a record before it was changed, removed or moved)".into(),
            });
        }
        match serde_json::from_str::<Value>(&r.body) {
            Ok(v) if canonical(&v) == r.body => {}
            _ => {
                return Err(Broken {
                    seq: r.seq,
                    why: "its body is not the canonical form it was written in".into(),
                });
            }
        }
        if hash(r.seq, r.at_ms, &r.prev, &r.body) != r.hash {
            return Err(Broken {
                seq: r.seq,
                why: "its content does not match its hash (edited)".into(),
            });
        }
        self.prev.clone_from(&r.hash);
        self.expected_seq += 1;
        Ok(())
    }
}

/// Verifies rows in storage order; returns how many verified.
pub fn verify<'a>(rows: impl IntoIterator<Item = &'a Row>) -> Result<i64, Broken> {
    let mut v = Verifier::new();
    for r in rows {
        v.push(r)?;
    }
    Ok(v.verified())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn chain(n: i64) -> Vec<Row> {
        let mut rows: Vec<Row> = Vec::new();
        for i in 0..n {
            let prev = rows.last().map(|r| (&r.seq, r.hash.as_str()));
            let row = next(prev, 1_000 + i, &json!({"decision": "permit", "tool": format!("t{i}")}));
            rows.push(row);
        }
        rows
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(5));
        assert_eq!(verify(&[]), Ok(0));
    }

    #[test]
    fn edits_deletions_and_reorders_are_caught_at_the_first_record_touched() {
        let base = chain(5);
        let mut edited = base.clone();
        edited[2].body = edited[2].body.replace("permit", "forbid");
        assert_eq!(verify(&edited).unwrap_err().seq, 3);

        let mut deleted = base.clone();
        deleted.remove(1);
        let e = verify(&deleted).unwrap_err();
        assert_eq!(e.seq, 2, "{e}");

        let mut swapped = base.clone();
        swapped.swap(1, 3);
        assert_eq!(verify(&swapped).unwrap_err().seq, 2);

        // Renumbering after a deletion does not help: the successor's `prev` still points at the
        // removed record.
        let mut renumbered = base.clone();
        renumbered.remove(1);
        for (i, r) in renumbered.iter_mut().enumerate() {
            r.seq = i as i64 + 1;
        }
        assert_eq!(verify(&renumbered).unwrap_err().seq, 2);

        // Rehashing an edit is caught at the next record.
        let mut rehashed = base.clone();
        rehashed[2].body = rehashed[2].body.replace("permit", "forbid");
        rehashed[2].hash = hash(3, rehashed[2].at_ms, &rehashed[2].prev, &rehashed[2].body);
        assert_eq!(verify(&rehashed).unwrap_err().seq, 4);
    }

    #[test]
    fn bodies_must_stay_canonical() {
        let mut rows = chain(2);
        rows[0].body = "{ \"tool\": \"t0\", \"decision\": \"permit\" }".into();
        assert_eq!(verify(&rows).unwrap_err().seq, 1);
    }
}

#[cfg(test)]
mod numbers {
    use serde_json::json;

    use super::*;

    /// Arguments carry client floats: parsing must be exact (`serde_json`'s `float_roundtrip`)
    /// or an honest record would fail verification.
    #[test]
    fn floats_round_trip_in_canonical_bodies() {
        for x in [
            0.1,
            0.734_512,
            0.912_936,
            1e-7,
            12_345.678_9,
            1e21,
            f64::MIN_POSITIVE,
            0.3,
        ] {
            let row = next(None, 1, &json!({"latency_ms": x, "bytes": 5}));
            assert_eq!(verify(std::slice::from_ref(&row)), Ok(1), "{x}: {}", row.body);
        }
    }
}

#[cfg(test)]
mod float_property {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    proptest! {
        #[test]
        fn any_finite_float_verifies(x in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO) {
            let row = next(None, 1, &json!({"x": x}));
            prop_assert_eq!(verify(&[row]), Ok(1));
        }
    }
}
