//! Tool pinning: the fingerprint of a tool definition, and what a change to it means.
//!
//! A tool is pinned by the SHA-256 of a canonical encoding of the parts a model reads or a
//! client relies on: `name`, `title`, `description`, `inputSchema`, `outputSchema`,
//! `annotations` and `execution`. Member order and whitespace do not count; any other change
//! does, down to one character of a description. Presentation-only members (`icons`, `_meta`)
//! are left out, so a server that stamps its `_meta` does not quarantine its own tools.
//!
//! [`assess`] is the whole rule: a definition matching its pin is trusted; one never seen is
//! pinned on first use when that is allowed, else held for approval; one that differs from its
//! pin — the rug pull — is held until someone approves the new definition.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The members of a tool definition that are pinned.
pub const PINNED_MEMBERS: [&str; 7] = [
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
    "execution",
];

/// The pinned view of one tool definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// Lowercase hex SHA-256 of [`Fingerprint::canonical`].
    pub hash: String,
    /// The pinned members, keys sorted, compact.
    pub canonical: String,
}

impl Fingerprint {
    /// Fingerprints a tool definition as its upstream listed it (its own name, not the exposed
    /// one). Members outside [`PINNED_MEMBERS`] are ignored.
    pub fn of(definition: &Value) -> Fingerprint {
        let mut canonical = Vec::with_capacity(256);
        canonical.push(b'{');
        if let Value::Object(map) = definition {
            let mut keys: Vec<&str> = PINNED_MEMBERS
                .iter()
                .copied()
                .filter(|k| map.contains_key(*k))
                .collect();
            keys.sort_unstable();
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    canonical.push(b',');
                }
                write_string(key, &mut canonical);
                canonical.push(b':');
                if let Some(v) = map.get(*key) {
                    write_canonical(v, &mut canonical);
                }
            }
        }
        canonical.push(b'}');
        let hash = hex::encode(Sha256::digest(&canonical));
        let canonical = text(canonical);
        Fingerprint { hash, canonical }
    }

    /// The pinned members, pretty-printed with sorted keys and invisible characters shown as
    /// `\u{…}` escapes, for a person to review.
    pub fn review(&self) -> String {
        reveal(&pretty(&self.canonical))
    }
}

/// Pretty-prints a canonical encoding (sorted keys stay sorted); text that is not JSON is
/// returned as is.
pub fn pretty(canonical: &str) -> String {
    // The canonical text was produced with sorted keys, and `serde_json` keeps the order it
    // reads (preserve_order), so re-encoding keeps the keys sorted.
    serde_json::from_str::<Value>(canonical)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| canonical.to_owned())
}

/// Each line of `text` with invisible characters escaped.
fn reveal(text: &str) -> String {
    text.lines()
        .map(crate::scan::reveal_hidden)
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The canonical form of `v`, as text.
pub fn canonical(v: &Value) -> String {
    let mut bytes = Vec::with_capacity(256);
    write_canonical(v, &mut bytes);
    text(bytes)
}

/// Canonical JSON as text: written from valid strings it is valid UTF-8, so the lossy path is
/// never taken.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Writes `v` as JSON with object keys sorted at every depth and no whitespace (the canonical
/// form pins and audit records are hashed in). Strings and numbers are encoded by serde_json
/// straight into `out`, with no string per value (this runs for every audit record).
pub fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        // Strings are escaped as serde_json escapes them; numbers, booleans and null have one
        // encoding in serde_json. Writing into a `Vec` cannot fail.
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    // Writing into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Why a tool is held back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Never seen before, and first use needs approval.
    Unapproved,
    /// The definition differs from the one pinned.
    Changed {
        /// The pinned hash.
        pinned: String,
    },
    /// Never seen before, and the scanner found what poisoning looks like in it.
    Flagged {
        /// The finding's rule.
        rule: String,
        /// What it found.
        message: String,
    },
}

impl Hold {
    /// One line for the client and the log.
    pub fn reason(&self, tool: &str) -> String {
        match self {
            Hold::Unapproved => format!(
                "tool `{tool}` is new and awaits approval; run `portcullis tools approve {tool}` to review and approve it"
            ),
            Hold::Changed { .. } => format!(
                "the definition of tool `{tool}` changed since it was approved and is quarantined; run `portcullis tools approve {tool}` to review the change"
            ),
            Hold::Flagged { rule, message } => format!(
                "tool `{tool}` is new and its definition looks poisoned ({rule}: {message}); it is held until a person reviews it with `portcullis tools approve {tool}`"
            ),
        }
    }
}

/// What to do with a listed tool, given its pin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Assessment {
    /// Matches its pin.
    Trusted,
    /// Seen for the first time and trusted on first use: pin it now.
    PinNow,
    /// Held back from lists and calls.
    Held(Hold),
}

/// Assesses a tool whose current fingerprint hash is `current`, against the hash pinned for
/// it (if any) and the first-use rule.
pub fn assess(pinned: Option<&str>, current: &str, trust_on_first_use: bool) -> Assessment {
    match pinned {
        Some(p) if p == current => Assessment::Trusted,
        Some(p) => Assessment::Held(Hold::Changed { pinned: p.to_owned() }),
        None if trust_on_first_use => Assessment::PinNow,
        None => Assessment::Held(Hold::Unapproved),
    }
}

/// A line diff of two pinned definitions (pretty-printed, invisible characters shown as
/// `\u{…}` escapes so a reviewer sees them), `-` for the old and `+` for the new, with three
/// lines of context.
pub fn diff(old: &str, new: &str) -> String {
    let (old, new) = (reveal(&pretty(old)), reveal(&pretty(new)));
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(3)
        .header("approved", "current")
        .to_string()
}

#[cfg(test)]
mod tests;
