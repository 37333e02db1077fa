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

/// The longest string value the question shows whole (a longer one shows its start and says
/// where the rest is).
pub const SHOWN_VALUE: usize = 4096;

/// Arguments as the question shows them (already scrubbed of secrets): every value in full up
/// to [`SHOWN_VALUE`] bytes, a longer one cut at a character boundary with how much more there
/// is and where to read it (never only a digest).
pub fn shown_arguments(v: &Value) -> Value {
    match v {
        Value::String(s) if s.len() > SHOWN_VALUE => {
            let mut cut = SHOWN_VALUE;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            Value::String(format!(
                "{}… [{} more bytes: `portcullis approvals --full` or the admin page shows them]",
                &s[..cut],
                s.len() - cut
            ))
        }
        Value::Array(items) => Value::Array(items.iter().map(shown_arguments).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shown_arguments(v))).collect()),
        other => other.clone(),
    }
}

/// The question put to the person (`arguments` and `why` already scrubbed of secrets).
pub fn message(client: &str, tool: &Tool, arguments: &Value, why: &str) -> String {
    format!(
        "Portcullis: `{client}` wants to call `{}` on `{}` with {arguments}.\nIt needs your approval because {why}.\nApprove this one call?",
        tool.name, tool.upstream,
    )
}

/// The form of the question: one required choice with no default, and the safe choice
/// first. A client that accepts every form with its defaults, or the first option, declines.
pub fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "decision": {
                "type": "string",
                "title": "Your decision",
                "description": "Choose: decline, or approve this one call",
                "enum": ["decline", "approve"],
                "enumNames": ["Decline", "Approve this one call"]
            },
            "reason": {
                "type": "string",
                "title": "Reason",
                "description": "Why (optional; shown to the assistant when you decline)"
            }
        },
        "required": ["decision"]
    })
}

/// What an elicitation answer decides: `Some((approve, note))`, or `None` (cancelled). Only an
/// explicit `decision: "approve"` approves; an `accept` with an empty form, defaults or
/// anything else is a decline.
pub fn answer_of(answer: &Value) -> Option<(bool, Option<String>)> {
    let note = answer
        .pointer("/content/reason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let decision = answer.pointer("/content/decision").and_then(Value::as_str);
    match (answer.get("action").and_then(Value::as_str), decision) {
        (Some("accept"), Some("approve")) => Some((true, note)),
        (Some("accept"), Some("decline")) | (Some("decline"), _) => {
            Some((false, note.or_else(|| Some("declined in the client".to_owned()))))
        }
        (Some("accept"), _) => Some((
            false,
            Some("the client accepted the form without a decision; only an explicit \"approve\" approves".to_owned()),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_question_shows_values_not_digests() {
        let body = "é".repeat(3000); // 6000 bytes, 2-byte characters
        let shown = shown_arguments(&json!({"to": "a@x", "body": body, "list": ["short"]}));
        assert_eq!(shown["to"], "a@x");
        assert_eq!(shown["list"][0], "short");
        let text = shown["body"].as_str().unwrap_or_default();
        assert!(text.starts_with(&"é".repeat(2048)), "the start is shown whole");
        assert!(text.contains("1904 more bytes"), "{text}");
        assert!(!text.contains("sha256"));
    }

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

    /// Regression: the form had one optional field, so `accept` with the schema's defaults
    /// approved; now nothing but an explicit choice does.
    #[test]
    fn answers() {
        assert_eq!(
            answer_of(&json!({"action": "accept", "content": {"decision": "approve"}})),
            Some((true, None))
        );
        for auto in [
            json!({"action": "accept"}),
            json!({"action": "accept", "content": {}}),
            json!({"action": "accept", "content": {"decision": "decline"}}),
            json!({"action": "accept", "content": {"decision": "yes"}}),
            json!({"action": "accept", "content": {"reason": "ok"}}),
        ] {
            assert_eq!(answer_of(&auto).map(|a| a.0), Some(false), "{auto}");
        }
        let s = schema();
        assert_eq!(s["required"], json!(["decision"]));
        assert!(s["properties"]["decision"].get("default").is_none());
        assert_eq!(s["properties"]["decision"]["enum"][0], "decline");
        assert_eq!(
            answer_of(&json!({"action": "decline", "content": {"reason": "no"}})),
            Some((false, Some("no".into())))
        );
        assert_eq!(answer_of(&json!({"action": "cancel"})), None);
        assert_eq!(answer_of(&json!({})), None);
    }
}
