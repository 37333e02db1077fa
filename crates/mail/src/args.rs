//! Every tool call's arguments checked against the tool's own input schema before anything
//! runs: a member the tool does not know, a value of the wrong type, a missing required member
//! or a value out of range is refused with what the tool does take. A mail tool must never
//! succeed on arguments it ignored: a `cc` dropped, or `{"seen": true}` to `set_flags`
//! (whose flags are `read` and `starred`), after a person approved the call as shown.
//!
//! The schemas are this server's own (`server::tools`), written with the few JSON Schema
//! keywords in [`KNOWN`]; a test holds every schema to that list, so a keyword nobody checks
//! cannot slip into one. Pure: a schema and arguments in, a verdict out.

use serde_json::{Map, Value};

/// The JSON Schema keywords the schemas use and [`check`] enforces (or, for the annotations
/// `default` and `description`, need not).
#[cfg(test)]
pub const KNOWN: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "minLength",
    "default",
    "description",
];

/// Checks a call's `args` against the tool's input schema (an object schema).
pub fn check(schema: &Value, args: &Map<String, Value>) -> Result<(), String> {
    object(schema, args, "")
}

fn object(schema: &Value, members: &Map<String, Value>, at: &str) -> Result<(), String> {
    let empty = Map::new();
    let props = schema.get("properties").and_then(Value::as_object).unwrap_or(&empty);
    let mut unknown: Vec<String> = members
        .keys()
        .filter(|k| !props.contains_key(*k))
        .map(|k| format!("`{}`", path(at, k)))
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        let mut known: Vec<&str> = props.keys().map(String::as_str).collect();
        known.sort_unstable();
        let takes = if known.is_empty() {
            "it takes none".to_owned()
        } else {
            format!("it takes only {}", known.join(", "))
        };
        let noun = if unknown.len() == 1 { "argument" } else { "arguments" };
        return Err(format!("unknown {noun} {}: {takes}", unknown.join(", ")));
    }
    for (k, v) in members {
        if let Some(sub) = props.get(k) {
            value(sub, v, &path(at, k))?;
        }
    }
    for r in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        if let Some(r) = r.as_str()
            && members.get(r).is_none_or(Value::is_null)
        {
            return Err(format!("`{}` is required", path(at, r)));
        }
    }
    Ok(())
}

fn value(schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let want = schema.get("type").and_then(Value::as_str);
    let fits = match want {
        None => true,
        Some("string") => v.is_string(),
        Some("boolean") => v.is_boolean(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("array") => v.is_array(),
        Some("object") => v.is_object(),
        Some(_) => false,
    };
    if !fits {
        return Err(format!(
            "`{at}` must be {} (got {})",
            article(want.unwrap_or("?")),
            kind(v)
        ));
    }
    let number = |k: &str| schema.get(k).and_then(Value::as_i64);
    if let Some(n) = v.as_i64().or_else(|| v.as_u64().map(|_| i64::MAX)) {
        if let Some(min) = number("minimum")
            && n < min
        {
            return Err(format!("`{at}` must be at least {min}"));
        }
        if let Some(max) = number("maximum")
            && n > max
        {
            return Err(format!("`{at}` must be at most {max}"));
        }
    }
    if let (Some(s), Some(min)) = (v.as_str(), number("minLength"))
        && i64::try_from(s.chars().count()).unwrap_or(i64::MAX) < min
    {
        return Err(format!("`{at}` must not be empty"));
    }
    if let Some(items) = v.as_array() {
        let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
        if let Some(min) = number("minItems")
            && len < min
        {
            return Err(format!("`{at}` needs at least {min} item(s)"));
        }
        if let Some(max) = number("maxItems")
            && len > max
        {
            return Err(format!("`{at}` takes at most {max} items"));
        }
        if let Some(item) = schema.get("items") {
            for (i, x) in items.iter().enumerate() {
                value(item, x, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Some(members) = v.as_object() {
        object(schema, members, at)?;
    }
    Ok(())
}

fn path(at: &str, k: &str) -> String {
    if at.is_empty() {
        k.to_owned()
    } else {
        format!("{at}.{k}")
    }
}

fn article(t: &str) -> String {
    match t {
        "array" | "integer" | "object" => format!("an {t}"),
        _ => format!("a {t}"),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a fractional number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use serde_json::json;

    use super::*;
    use crate::backend::Naming;
    use crate::config::Profile;
    use crate::server::tools;

    fn args(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    /// Every keyword of every schema, at any depth, is one `check` knows; every object schema
    /// closes its members.
    #[test]
    fn every_schema_uses_only_checked_keywords_and_closes_its_objects() {
        fn walk(s: &Value, at: &str) {
            let Some(o) = s.as_object() else { return };
            for (k, v) in o {
                assert!(KNOWN.contains(&k.as_str()), "{at}: keyword `{k}` is not checked");
                match k.as_str() {
                    "properties" => {
                        for (name, sub) in v.as_object().unwrap() {
                            walk(sub, &format!("{at}.{name}"));
                        }
                    }
                    "items" => walk(v, &format!("{at}[]")),
                    _ => {}
                }
            }
            if o.get("type") == Some(&json!("object")) {
                assert_eq!(o.get("additionalProperties"), Some(&json!(false)), "{at}");
            }
        }
        let all = [Profile::ReadOnly, Profile::Compose, Profile::Send, Profile::Organize];
        for naming in [Naming::Uid, Naming::Id] {
            for t in tools(&all, naming).as_array().unwrap() {
                walk(&t["inputSchema"], t["name"].as_str().unwrap());
            }
        }
    }

    #[test]
    fn what_a_tool_does_not_take_is_refused_with_what_it_does() {
        let all = [Profile::ReadOnly, Profile::Compose, Profile::Send, Profile::Organize];
        let list = tools(&all, Naming::Uid);
        let schema =
            |name: &str| list.as_array().unwrap().iter().find(|t| t["name"] == name).unwrap()["inputSchema"].clone();
        let flags = schema("set_flags");
        let e = check(&flags, &args(json!({"uid": 3, "seen": true, "flagged": true}))).unwrap_err();
        assert_eq!(
            e,
            "unknown arguments `flagged`, `seen`: it takes only folder, read, starred, uid"
        );
        assert!(check(&flags, &args(json!({"uid": 3, "read": true}))).is_ok());
        assert_eq!(
            check(&flags, &args(json!({"uid": "3", "read": true}))).unwrap_err(),
            "`uid` must be an integer (got a string)"
        );
        assert_eq!(
            check(&flags, &args(json!({"uid": 0}))).unwrap_err(),
            "`uid` must be at least 1"
        );
        let send = schema("send_message");
        let e = check(
            &send,
            &args(json!({"to": ["a@example.com"], "subject": "s", "body": "b", "from": "ceo@example.com"})),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "unknown argument `from`: it takes only attachments, bcc, body, cc, subject, to"
        );
        assert_eq!(
            check(
                &send,
                &args(json!({"to": "a@example.com", "subject": "s", "body": "b"}))
            )
            .unwrap_err(),
            "`to` must be an array (got a string)"
        );
        assert_eq!(
            check(&send, &args(json!({"to": [], "subject": "s", "body": "b"}))).unwrap_err(),
            "`to` needs at least 1 item(s)"
        );
        assert_eq!(
            check(&send, &args(json!({"to": ["a@example.com"], "subject": "s"}))).unwrap_err(),
            "`body` is required"
        );
        assert_eq!(
            check(
                &send,
                &args(json!({"to": ["a@example.com"], "subject": "s", "body": "b",
                    "attachments": [{"name": "x", "base64": "", "path": "/etc/passwd"}]}))
            )
            .unwrap_err(),
            "unknown argument `attachments[0].path`: it takes only base64, mimeType, name"
        );
        assert_eq!(
            check(&schema("list_folders"), &args(json!({"x": 1}))).unwrap_err(),
            "unknown argument `x`: it takes none"
        );
    }
}
