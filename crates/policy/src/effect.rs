//! What a tool can do to the world, and how it is derived from an upstream's hints.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// How much harm a call to a tool can do, ordered from least to most strict.
///
/// The order is the one used whenever two sources disagree: the stricter wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Effect {
    /// Only reads; changes nothing.
    Read,
    /// Changes state the user owns (files, records) without reaching anyone else.
    Write,
    /// Reaches the outside world: sends a message, posts, calls an open-world service.
    Send,
    /// Deletes or overwrites in a way that cannot be undone.
    Destructive,
}

impl Effect {
    /// Every effect, least strict first.
    pub const ALL: [Effect; 4] = [Effect::Read, Effect::Write, Effect::Send, Effect::Destructive];

    /// The lowercase name used in config and in policies (`Effect::"read"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Read => "read",
            Effect::Write => "write",
            Effect::Send => "send",
            Effect::Destructive => "destructive",
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An effect name that is none of `read`, `write`, `send`, `destructive`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown effect `{0}`: expected one of `read`, `write`, `send`, `destructive`")]
pub struct UnknownEffect(pub String);

impl FromStr for Effect {
    type Err = UnknownEffect;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Effect::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| UnknownEffect(s.to_owned()))
    }
}

/// Derives a tool's effect from its MCP `annotations` object, when config does not name one.
///
/// The hints come from a server that may be hostile, so only an explicit, consistent claim
/// earns a weaker effect; anything missing, mistyped or contradictory means the stricter one:
///
/// | `readOnlyHint` | `destructiveHint` | `openWorldHint` | effect        |
/// |----------------|-------------------|-----------------|---------------|
/// | `true`         | not `true`        | any             | `read`        |
/// | `true`         | `true`            | any             | `destructive` (contradiction) |
/// | not `true`     | `false`           | `false`         | `write`       |
/// | not `true`     | `false`           | not `false`     | `send`        |
/// | not `true`     | not `false`       | any             | `destructive` |
///
/// "Not `true`" includes absent and non-boolean values, matching the MCP defaults
/// (`readOnlyHint` false, `destructiveHint` true, `openWorldHint` true). No annotations at all
/// therefore give `destructive`.
pub fn effect_from_annotations(annotations: Option<&Value>) -> Effect {
    let hint = |key: &str| annotations.and_then(|a| a.get(key)).and_then(Value::as_bool);
    let read_only = hint("readOnlyHint");
    let destructive = hint("destructiveHint");
    let open_world = hint("openWorldHint");
    match (read_only, destructive, open_world) {
        (Some(true), Some(true), _) => Effect::Destructive,
        (Some(true), _, _) => Effect::Read,
        (_, Some(false), Some(false)) => Effect::Write,
        (_, Some(false), _) => Effect::Send,
        _ => Effect::Destructive,
    }
}

#[cfg(test)]
mod tests;
