//! Everything `portcullis audit verify` checks, in one place and in one order: the hash chain,
//! then the signed checkpoints against it, then the witness file against the checkpoints. Rows
//! are pushed one at a time (a log of millions is never held whole); the verdict comes at
//! [`Audit::finish`]. Pure: rows, checkpoints, a key and the witness in, a verdict out.

use std::collections::HashMap;

use super::checkpoint::{self, Checkpoint, Report, VerifyingKey};
use super::{Broken, Row, Verifier};

/// What the signatures said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signatures {
    /// Checked with the key given.
    Verified(Report),
    /// There are checkpoints and no key to check them with.
    Unchecked {
        /// How many.
        checkpoints: usize,
    },
    /// There are no checkpoints.
    None,
}

/// A log that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Records, all of them chained.
    pub records: i64,
    /// What the checkpoints say.
    pub signatures: Signatures,
    /// How many checkpoints the witness recorded (all found), or `None` without a witness.
    pub witnessed: Option<usize>,
}

/// A log that did not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tampered {
    /// The first thing found wrong.
    pub broken: Broken,
    /// The records that still verify, from the first on.
    pub good: i64,
    /// `Some(records)` when the hash chain itself is intact (what broke is a checkpoint or the
    /// witness).
    pub chain_intact: Option<i64>,
}

/// A verification in progress.
#[derive(Debug)]
pub struct Audit<'a> {
    checkpoints: &'a [Checkpoint],
    /// The hashes of the records a checkpoint names, as stored.
    covered: HashMap<i64, Option<String>>,
    chain: Verifier,
    broken: Option<Broken>,
}

impl<'a> Audit<'a> {
    /// Starts verifying against the database's `checkpoints` (in `seq` order).
    pub fn new(checkpoints: &'a [Checkpoint]) -> Audit<'a> {
        Audit {
            checkpoints,
            covered: checkpoints.iter().map(|c| (c.seq, None)).collect(),
            chain: Verifier::new(),
            broken: None,
        }
    }

    /// Whether the chain has already broken (later rows change nothing).
    pub fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// The next row in storage order.
    pub fn push(&mut self, row: &Row) {
        if self.broken.is_some() {
            return;
        }
        if let Err(b) = self.chain.push(row) {
            self.broken = Some(b);
            return;
        }
        if let Some(slot) = self.covered.get_mut(&row.seq) {
            *slot = Some(row.hash.clone());
        }
    }

    /// The verdict. `key` checks the checkpoints' signatures (without one they are counted,
    /// not trusted); `witness` is the witness file's checkpoints, if there is one.
    pub fn finish(self, key: Option<&VerifyingKey>, witness: Option<&[Checkpoint]>) -> Result<Verdict, Tampered> {
        let records = self.chain.verified();
        if let Some(broken) = self.broken {
            return Err(Tampered {
                broken,
                good: records,
                chain_intact: None,
            });
        }
        let tampered = |broken: Broken| Tampered {
            good: broken.seq.saturating_sub(1).clamp(0, records),
            broken,
            chain_intact: Some(records),
        };
        // Without a key the checkpoints are still checked against the records they name.
        let covered = &self.covered;
        let report = checkpoint::verify(self.checkpoints, key, records, |s| covered.get(&s).cloned().flatten())
            .map_err(tampered)?;
        let signatures = match key {
            Some(_) => Signatures::Verified(report),
            None if self.checkpoints.is_empty() => Signatures::None,
            None => Signatures::Unchecked {
                checkpoints: self.checkpoints.len(),
            },
        };
        // After the signatures, so that a forged checkpoint is named as such first.
        let witnessed = match witness {
            Some(w) => Some(checkpoint::check_witness(self.checkpoints, w).map_err(tampered)?),
            None => None,
        };
        Ok(Verdict {
            records,
            signatures,
            witnessed,
        })
    }
}

#[cfg(test)]
mod tests;
