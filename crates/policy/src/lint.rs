//! Warnings about policies that validate and still may not do what they say. The schema
//! leaves `context.arguments` untyped (every tool's arguments differ), so the validator
//! accepts `context.arguments.to like "*@example.com"` — and when the tool's `to` is a list
//! (portcullis-mail's is), the pattern is an evaluation error at every call, which denies: a
//! forbid written that way blocks every send, a permit never applies. Pure: text in, warnings out.

use std::str::FromStr as _;

use cedar_policy::PolicySet;
use serde_json::Value;

/// One warning per `like` applied to an argument, naming the file, the policy and the path.
/// Text that does not parse yields none (loading reports it).
pub fn warnings(file: &str, text: &str) -> Vec<String> {
    let Ok(set) = PolicySet::from_str(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (n, p) in set.policies().enumerate() {
        let Ok(est) = p.to_json() else { continue };
        let id = p
            .annotation("id")
            .map_or_else(|| format!("{file}#{}", n + 1), str::to_owned);
        let mut paths = Vec::new();
        walk(&est, &mut paths);
        paths.dedup();
        for path in paths {
            out.push(format!(
                "{file}: policy `{id}`: `{path} like …` needs a string, and arguments are not typed: if the tool's argument is a list (portcullis-mail's `to` is), the pattern is an evaluation error and every such call is denied; compare lists with `containsAll` / `containsAny`"
            ));
        }
    }
    out
}

/// Collects the argument paths that `like` is applied to, anywhere in `v`.
fn walk(v: &Value, paths: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            if let Some(left) = o.get("like").and_then(|l| l.get("left"))
                && let Some(path) = argument_path(left)
            {
                paths.push(path);
            }
            for x in o.values() {
                walk(x, paths);
            }
        }
        Value::Array(a) => {
            for x in a {
                walk(x, paths);
            }
        }
        _ => {}
    }
}

/// `context.arguments.a.b` for an attribute chain rooted there, else `None`.
fn argument_path(e: &Value) -> Option<String> {
    let mut attrs = Vec::new();
    let mut cur = e;
    while let Some(dot) = cur.get(".") {
        attrs.push(dot.get("attr")?.as_str()?.to_owned());
        cur = dot.get("left")?;
    }
    if cur.get("Var").and_then(Value::as_str) != Some("context") {
        return None;
    }
    attrs.reverse();
    (attrs.first().map(String::as_str) == Some("arguments") && attrs.len() > 1)
        .then(|| format!("context.{}", attrs.join(".")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_on_an_argument_is_warned_about_and_nothing_else_is() {
        let text = r#"
@id("only-example")
forbid (principal, action, resource)
when { context.arguments has to && !(context.arguments.to like "*@example.com") };

forbid (principal, action, resource)
when { context.arguments.msg.headers.from like "*@evil.test" };

@id("fine")
forbid (principal, action, resource)
when { resource.name like "delete_*" || ["a@example.com"].containsAll(context.arguments.to) };
"#;
        let w = warnings("p.cedar", text);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].starts_with("p.cedar: policy `only-example`: `context.arguments.to like …` needs a string"),
            "{}",
            w[0]
        );
        assert!(
            w[1].contains("policy `p.cedar#2`: `context.arguments.msg.headers.from like …`"),
            "{}",
            w[1]
        );
        assert!(warnings("p.cedar", "not cedar").is_empty());
    }
}
