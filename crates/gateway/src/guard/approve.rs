//! Approve, the pure half: what identifies a call for approval, the question put to a person,
//! and how their answer reads. Waiting for the answer is `dispatch::approval`.

use portcullis_policy::Tool;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

/// The prefix of the `requestState` of an approval round.
pub const ROUND_PREFIX: &str = "pcl-approval.";
/// The key of the approval question in `inputRequests` / `inputResponses`.
pub const ROUND_KEY: &str = "portcullis_approval";

/// What identifies a call for approval: principal, upstream, tool and the exact arguments (as
/// read strictly, so two encodings of one call are one call, and two calls never one).
pub fn call_digest(principal: &str, upstream: &str, tool: &str, arguments: &Value) -> String {
    let canonical = portcullis_core::audit::canonical(&json!({
        "principal": principal,
        "upstream": upstream,
        "tool": tool,
        "arguments": arguments,
    }));
    Sha256::digest(canonical.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a client's capabilities declare elicitation in form mode.
pub fn declares_elicitation(capabilities: &Map<String, Value>) -> bool {
    capabilities
        .get("elicitation")
        .and_then(Value::as_object)
        .is_some_and(|e| e.is_empty() || e.contains_key("form"))
}

/// The question put to the person (`arguments` and `why` already scrubbed of secrets).
pub fn message(client: &str, tool: &Tool, arguments: &Value, why: &str) -> String {
    format!(
        "Portcullis: `{client}` wants to call `{}` on `{}` with {arguments}.\nIt needs your approval because {why}.\nApprove this one call?",
        tool.name, tool.upstream,
    )
}

/// The form of the question.
pub fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "reason": {
                "type": "string",
                "title": "Reason",
                "description": "Why (optional; shown to the assistant when you decline)"
            }
        }
    })
}

/// What an elicitation answer decides: `Some((approve, note))`, or `None` (cancelled).
pub fn answer_of(answer: &Value) -> Option<(bool, Option<String>)> {
    let note = answer
        .pointer("/content/reason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    match answer.get("action").and_then(Value::as_str) {
        Some("accept") => Some((true, note)),
        Some("decline") => Some((false, note.or_else(|| Some("declined in the client".to_owned())))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_call_one_digest() {
        let a = call_digest("alice", "mail", "send", &json!({"to": "a@x", "n": 1}));
        let b = call_digest("alice", "mail", "send", &json!({"n": 1, "to": "a@x"}));
        let c = call_digest("alice", "mail", "send", &json!({"to": "eve@x", "n": 1}));
        let d = call_digest("bob", "mail", "send", &json!({"to": "a@x", "n": 1}));
        assert_eq!(a, b, "member order does not matter");
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn answers() {
        assert_eq!(answer_of(&json!({"action": "accept"})), Some((true, None)));
        assert_eq!(
            answer_of(&json!({"action": "decline", "content": {"reason": "no"}})),
            Some((false, Some("no".into())))
        );
        assert_eq!(answer_of(&json!({"action": "cancel"})), None);
        assert_eq!(answer_of(&json!({})), None);
    }
}
