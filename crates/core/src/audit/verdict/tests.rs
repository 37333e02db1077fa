#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

//! The verifier on corrupted logs: whatever an attacker who owns the database does to its
//! records and checkpoints (the witness file is kept elsewhere), `audit verify` either says
//! which record is wrong or the records it vouches for are exactly the ones written.

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::audit::checkpoint::{SigningKey, sign};
use crate::audit::{hash, next};

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

/// `n` records, a checkpoint every `every` records; the witness holds every checkpoint. A
/// prefix of a longer log is a log: each is made (and signed) once, then cut.
fn log(n: i64, every: i64) -> (Vec<Row>, Vec<Checkpoint>) {
    static LOGS: std::sync::OnceLock<Vec<(Vec<Row>, Vec<Checkpoint>)>> = std::sync::OnceLock::new();
    let logs = LOGS.get_or_init(|| (1..8).map(|every| make_log(40, every)).collect());
    let (rows, cps) = &logs[usize::try_from(every - 1).unwrap()];
    (
        rows[..usize::try_from(n).unwrap()].to_vec(),
        cps.iter().filter(|c| c.seq <= n).cloned().collect(),
    )
}

fn make_log(n: i64, every: i64) -> (Vec<Row>, Vec<Checkpoint>) {
    let mut rows: Vec<Row> = Vec::new();
    let mut cps: Vec<Checkpoint> = Vec::new();
    for i in 0..n {
        let prev = rows.last().map(|r| (&r.seq, r.hash.as_str()));
        let row = next(prev, 1_000 + i, &json!({"decision": "permit", "tool": format!("t{i}")}));
        if row.seq % every == 0 {
            let before = cps.last().map_or(0, |c| c.seq);
            cps.push(sign(&key(), row.seq, &row.hash, 5_000 + i, before));
        }
        rows.push(row);
    }
    (rows, cps)
}

fn check(
    rows: &[Row],
    cps: &[Checkpoint],
    key: Option<&VerifyingKey>,
    witness: &[Checkpoint],
) -> Result<Verdict, Tampered> {
    let mut a = Audit::new(cps);
    for r in rows {
        a.push(r);
    }
    a.finish(key, Some(witness))
}

/// Recomputes the chain from index `from` on: the attacker rewrites everything after an edit.
fn rechain(rows: &mut [Row], from: usize) {
    for i in from..rows.len() {
        let prev = if i == 0 {
            crate::audit::GENESIS.to_owned()
        } else {
            rows[i - 1].hash.clone()
        };
        rows[i].prev = prev;
        rows[i].hash = hash(rows[i].seq, rows[i].at_ms, &rows[i].prev, &rows[i].body);
    }
}

#[derive(Clone, Debug)]
enum Attack {
    Nothing,
    RemoveRow(usize),
    Truncate(usize),
    TruncateWithCheckpoints(usize),
    EditBody(usize),
    EditBodyRechained(usize),
    EditTimeRechained(usize),
    Swap(usize, usize),
    Renumber(usize, i64),
    RemoveCheckpoint(usize),
    RemoveAllCheckpoints,
    MoveCheckpoint(usize, i64),
    ForgeCheckpoints(usize),
    AppendRow,
}

fn attack() -> impl Strategy<Value = Attack> {
    let i = 0usize..64;
    prop_oneof![
        Just(Attack::Nothing),
        i.clone().prop_map(Attack::RemoveRow),
        i.clone().prop_map(Attack::Truncate),
        i.clone().prop_map(Attack::TruncateWithCheckpoints),
        i.clone().prop_map(Attack::EditBody),
        i.clone().prop_map(Attack::EditBodyRechained),
        i.clone().prop_map(Attack::EditTimeRechained),
        (i.clone(), i.clone()).prop_map(|(a, b)| Attack::Swap(a, b)),
        (i.clone(), -3i64..3).prop_map(|(a, d)| Attack::Renumber(a, d)),
        i.clone().prop_map(Attack::RemoveCheckpoint),
        Just(Attack::RemoveAllCheckpoints),
        (i.clone(), -3i64..3).prop_map(|(a, d)| Attack::MoveCheckpoint(a, d)),
        i.clone().prop_map(Attack::ForgeCheckpoints),
        Just(Attack::AppendRow),
    ]
}

/// Applies `attack` to the database (rows and checkpoints).
fn apply(attack: &Attack, rows: &mut Vec<Row>, cps: &mut Vec<Checkpoint>) {
    let n = rows.len();
    let at = |i: usize| i % n.max(1);
    match *attack {
        Attack::Nothing => {}
        Attack::RemoveRow(i) if n > 0 => {
            rows.remove(at(i));
        }
        Attack::Truncate(i) => rows.truncate(at(i)),
        Attack::TruncateWithCheckpoints(i) => {
            rows.truncate(at(i));
            let head = rows.len() as i64;
            cps.retain(|c| c.seq <= head);
        }
        Attack::EditBody(i) if n > 0 => {
            let r = &mut rows[at(i)];
            r.body = r.body.replace("permit", "forbid");
        }
        Attack::EditBodyRechained(i) if n > 0 => {
            let i = at(i);
            rows[i].body = rows[i].body.replace("permit", "forbid");
            rechain(rows, i);
        }
        Attack::EditTimeRechained(i) if n > 0 => {
            let i = at(i);
            rows[i].at_ms += 1;
            rechain(rows, i);
        }
        Attack::Swap(a, b) if n > 0 => rows.swap(at(a), at(b)),
        Attack::Renumber(i, d) if n > 0 => rows[at(i)].seq += d,
        Attack::RemoveCheckpoint(i) if !cps.is_empty() => {
            let i = i % cps.len();
            cps.remove(i);
        }
        Attack::RemoveAllCheckpoints => cps.clear(),
        Attack::MoveCheckpoint(i, d) if !cps.is_empty() => {
            let i = i % cps.len();
            cps[i].seq += d;
        }
        // Every checkpoint from `i` on re-signed with another key over a rewritten chain.
        Attack::ForgeCheckpoints(i) if n > 0 => {
            let i = at(i);
            rows[i].body = rows[i].body.replace("permit", "forbid");
            rechain(rows, i);
            let other = SigningKey::from_bytes(&[9; 32]);
            for c in cps.iter_mut() {
                if let Some(r) = rows.iter().find(|r| r.seq == c.seq)
                    && c.seq > i as i64
                {
                    *c = sign(&other, c.seq, &r.hash, c.at_ms, c.prev);
                }
            }
        }
        Attack::AppendRow => {
            let prev = rows.last().map(|r| (&r.seq, r.hash.as_str()));
            let row = next(prev, 9_999, &json!({"decision": "permit", "tool": "appended"}));
            rows.push(row);
        }
        _ => {}
    }
}

#[test]
fn an_intact_log_verifies_with_and_without_the_key() {
    let (rows, cps) = log(10, 3);
    let k = key().verifying_key();
    let v = check(&rows, &cps, Some(&k), &cps).unwrap();
    assert_eq!(v.records, 10);
    assert_eq!(
        v.signatures,
        Signatures::Verified(Report {
            checkpoints: 3,
            signed_through: 9
        })
    );
    assert_eq!(v.witnessed, Some(3));
    let v = check(&rows, &cps, None, &cps).unwrap();
    assert_eq!(v.signatures, Signatures::Unchecked { checkpoints: 3 });
}

/// Without the key, a chain rewritten under checkpoints left in place is still caught: the
/// checkpoints name hashes the rewritten records no longer have.
#[test]
fn a_rewritten_chain_is_caught_without_the_key() {
    let (mut rows, cps) = log(10, 3);
    rows[1].body = rows[1].body.replace("permit", "forbid");
    rechain(&mut rows, 1);
    let t = check(&rows, &cps, None, &cps).unwrap_err();
    assert_eq!(t.broken.seq, 3, "{}", t.broken);
    assert_eq!(t.chain_intact, Some(10));
    assert_eq!(t.good, 2);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    /// Whatever the attack, with or without the key: either the verifier names a broken
    /// record, or every record up to the newest witnessed checkpoint is exactly as written (only
    /// the unsigned tail after it can be cut or changed, which the README says).
    #[test]
    fn the_verifier_never_vouches_for_a_changed_record(
        n in 0i64..40,
        every in 1i64..8,
        attacks in prop::collection::vec(attack(), 1..3),
        with_key in any::<bool>(),
    ) {
        let (original, witness) = log(n, every);
        let (mut rows, mut cps) = (original.clone(), witness.clone());
        for a in &attacks {
            apply(a, &mut rows, &mut cps);
        }
        let k = key().verifying_key();
        let key = with_key.then_some(&k);
        match check(&rows, &cps, key, &witness) {
            Ok(v) => {
                let anchored = witness.last().map_or(0, |c| c.seq);
                prop_assert!(v.records >= anchored);
                for s in 1..=anchored {
                    let i = usize::try_from(s - 1).unwrap();
                    prop_assert_eq!(&rows[i], &original[i], "record {} changed and verified", s);
                }
                if let Signatures::Verified(r) = &v.signatures {
                    prop_assert!(r.signed_through >= anchored);
                }
            }
            Err(t) => {
                prop_assert!(t.good < t.broken.seq.max(1) || t.chain_intact.is_some(), "{:?}", t);
                prop_assert!(t.good <= i64::try_from(rows.len()).unwrap());
            }
        }
        if attacks.iter().all(|a| matches!(a, Attack::Nothing | Attack::AppendRow)) {
            prop_assert!(check(&rows, &cps, key, &witness).is_ok());
        }
    }
}
