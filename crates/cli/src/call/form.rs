//! A person answers an elicitation form on the terminal: the server's message and each field
//! are shown (control characters removed, so a server cannot paint its own prompt), the
//! person chooses accept, decline or cancel, then types each value. End of input declines.

use std::io::{BufRead, Write};

use serde_json::{Map, Value, json};

/// Asks on stdin/stderr and returns the `ElicitResult`.
pub fn ask(params: Option<&Value>) -> Value {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut err = std::io::stderr();
    answer(params, &mut input, &mut err)
}

/// The form flow over any input and output (tested without a terminal).
pub fn answer(params: Option<&Value>, input: &mut impl BufRead, out: &mut impl Write) -> Value {
    let message = params
        .and_then(|p| p.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let schema = params.and_then(|p| p.get("requestedSchema"));
    let props = schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let required: Vec<&str> = schema
        .and_then(|s| s.get("required"))
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "\nThe server asks:\n  {}",
        printable(message).replace('\n', "\n  ")
    );
    for (key, p) in &props {
        let _ = writeln!(out, "  - {}", describe(key, p));
    }
    let choice = loop {
        let _ = write!(out, "Answer? [a]ccept, [d]ecline, [c]ancel: ");
        let _ = out.flush();
        match read_line(input).as_deref().map(str::to_ascii_lowercase).as_deref() {
            None => return json!({"action": "decline"}),
            Some("a" | "accept") => break "accept",
            Some("d" | "decline") => break "decline",
            Some("c" | "cancel") => break "cancel",
            Some(_) => continue,
        }
    };
    if choice != "accept" {
        return json!({ "action": choice });
    }
    let mut content = Map::new();
    for (key, p) in &props {
        let needed = required.contains(&key.as_str());
        match field(key, p, needed, input, out) {
            Field::Value(v) => {
                content.insert(key.clone(), v);
            }
            Field::Skip => {}
            Field::Gone => return json!({"action": "decline"}),
        }
    }
    json!({"action": "accept", "content": content})
}

enum Field {
    Value(Value),
    Skip,
    Gone,
}

fn field(key: &str, p: &Value, needed: bool, input: &mut impl BufRead, out: &mut impl Write) -> Field {
    let choices = choices_of(p);
    let default = p.get("default");
    loop {
        let _ = writeln!(out, "{}", describe(key, p));
        for (i, (_, title)) in choices.iter().enumerate() {
            let _ = writeln!(out, "    {}) {}", i + 1, printable(title));
        }
        let hint = match default {
            Some(d) => format!(" (Enter takes {})", printable(&d.to_string())),
            None if needed => String::new(),
            None => " (Enter skips)".into(),
        };
        let _ = write!(out, "  {}{hint}: ", printable(key));
        let _ = out.flush();
        let Some(line) = read_line(input) else {
            return Field::Gone;
        };
        if line.is_empty() {
            match default {
                Some(d) => return Field::Value(d.clone()),
                None if !needed => return Field::Skip,
                None => continue,
            }
        }
        if !choices.is_empty() {
            let picked = line
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| choices.get(i))
                .or_else(|| choices.iter().find(|(v, _)| v.as_str() == Some(line.as_str())));
            match picked {
                Some((v, _)) => return Field::Value(v.clone()),
                None => continue,
            }
        }
        let typed = match p.get("type").and_then(Value::as_str) {
            Some("boolean") => match line.to_ascii_lowercase().as_str() {
                "y" | "yes" | "true" => Some(Value::Bool(true)),
                "n" | "no" | "false" => Some(Value::Bool(false)),
                _ => None,
            },
            Some("integer") => line.parse::<i64>().ok().map(Value::from),
            Some("number") => line
                .parse::<f64>()
                .ok()
                .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number)),
            _ => Some(Value::String(line)),
        };
        if let Some(v) = typed {
            return Field::Value(v);
        }
    }
}

/// The values a field allows with their titles: `enum` (+ `enumNames`) or `oneOf` consts.
fn choices_of(p: &Value) -> Vec<(Value, String)> {
    if let Some(values) = p.get("enum").and_then(Value::as_array) {
        let names = p.get("enumNames").and_then(Value::as_array);
        return values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let title = names
                    .and_then(|n| n.get(i))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()));
                (v.clone(), title)
            })
            .collect();
    }
    p.get("oneOf")
        .and_then(Value::as_array)
        .map(|opts| {
            opts.iter()
                .filter_map(|o| {
                    let v = o.get("const")?.clone();
                    let title = o
                        .get("title")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string());
                    Some((v, title))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn describe(key: &str, p: &Value) -> String {
    let title = p.get("title").and_then(Value::as_str).unwrap_or(key);
    match p.get("description").and_then(Value::as_str) {
        Some(d) => format!("{}: {}", printable(title), printable(d)),
        None => printable(title),
    }
}

/// Text a server wrote, without control characters (no escape sequences reach the terminal).
fn printable(s: &str) -> String {
    s.chars().filter(|c| !c.is_control() || *c == '\n').collect()
}

fn read_line(input: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    match input.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval() -> Value {
        json!({
            "message": "Approve \u{1b}[2Jsend_mail?",
            "requestedSchema": {
                "type": "object",
                "properties": {"decision": {"type": "string", "enum": ["decline", "approve"]}},
                "required": ["decision"]
            }
        })
    }

    fn run(params: &Value, typed: &str) -> (Value, String) {
        let mut out = Vec::new();
        let v = answer(Some(params), &mut typed.as_bytes(), &mut out);
        (v, String::from_utf8(out).unwrap_or_default())
    }

    #[test]
    fn a_person_picks_a_choice_by_number_or_name() {
        let (v, shown) = run(&approval(), "a\n2\n");
        assert_eq!(v, json!({"action": "accept", "content": {"decision": "approve"}}));
        assert!(!shown.contains('\u{1b}'), "escape sequences are removed: {shown:?}");
        let (v, _) = run(&approval(), "accept\nbogus\n\ndecline\n");
        assert_eq!(v, json!({"action": "accept", "content": {"decision": "decline"}}));
    }

    #[test]
    fn no_answer_is_a_decline() {
        assert_eq!(run(&approval(), "").0, json!({"action": "decline"}));
        // Accepting and then leaving a required field without a default unanswered declines.
        assert_eq!(run(&approval(), "a\n\n").0, json!({"action": "decline"}));
        assert_eq!(run(&approval(), "d\n").0, json!({"action": "decline"}));
        assert_eq!(run(&approval(), "c\n").0, json!({"action": "cancel"}));
    }

    #[test]
    fn typed_fields_and_defaults() {
        let form = json!({
            "message": "Details",
            "requestedSchema": {"type": "object", "properties": {
                "n": {"type": "integer"},
                "ok": {"type": "boolean"},
                "name": {"type": "string", "default": "x"},
                "note": {"type": "string"}
            }}
        });
        let (v, _) = run(&form, "a\nseven\n7\nmaybe\ny\n\n\n");
        assert_eq!(
            v,
            json!({"action": "accept", "content": {"n": 7, "ok": true, "name": "x"}})
        );
    }
}
