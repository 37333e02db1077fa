//! Observe: everything an upstream says that reaches the client — a result, an error, a
//! progress or log notification, a sampling or elicitation request, a completion — is read
//! (strictly), labelled (config for the tool, else for the upstream, else untrusted), scanned
//! for injection markers, invisible text, exfiltration links and secrets (findings raise the
//! label) and, where config asks, sanitised or spotlighted. The caller records the label and
//! the texts in the session; this module decides.

use portcullis_core::label::{Integrity, Label};
use portcullis_core::output::{self, OutputFinding, OutputScanner};
use portcullis_core::strict;
use serde_json::Value;

use crate::config::UpstreamConfig;

/// The label config gives output of `upstream` (from its tool `tool`, when a tool made it)
/// before its content is read. A server's own hints do not count: `openWorldHint: false` from
/// a server that may be hostile is no reason to trust what it says.
pub fn base_label(upstream: Option<&UpstreamConfig>, tool: Option<&str>) -> Label {
    let Some(up) = upstream else {
        return Label::UNTRUSTED;
    };
    let by_tool = tool.and_then(|t| up.tool_outputs.get(t)).copied().unwrap_or_default();
    Label {
        integrity: by_tool.trust.or(up.output.trust).unwrap_or(Integrity::Untrusted),
        private: by_tool.private.or(up.output.private).unwrap_or(false),
    }
}

/// Every text of a message a model or person may read: all strings at any depth, but binary
/// payloads (`blob`, and `data` of image and audio content).
pub fn texts<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| texts(i, out)),
        Value::Object(m) => {
            let binary = matches!(m.get("type").and_then(Value::as_str), Some("image" | "audio"));
            for (k, child) in m {
                if k == "blob" || (binary && k == "data") {
                    continue;
                }
                texts(child, out);
            }
        }
        _ => {}
    }
}

/// What one message from an upstream turned out to be.
#[derive(Debug)]
pub struct Seen {
    /// Its label: the base label joined with what the scanner found.
    pub label: Label,
    /// What the scanner found.
    pub findings: Vec<OutputFinding>,
}

impl Seen {
    /// Whether what the scanner found is an injection: text aimed at an assistant, or Unicode
    /// tag characters (invisible text no honest content carries). Zero-width characters, hidden
    /// HTML and tracking links are common in honest mail and pages: they raise the label only.
    pub fn injected(&self) -> bool {
        self.findings
            .iter()
            .any(|f| f.kind == output::OutputKind::Injection || f.rule == "tag-characters")
    }
}

/// Scans the texts of `value` from a source labelled `base`.
pub fn scan(scanner: &OutputScanner, strings: &[&str], base: Label) -> Seen {
    let mut findings: Vec<OutputFinding> = Vec::new();
    for t in strings {
        findings.extend(scanner.scan(t));
    }
    Seen {
        label: base.join(output::label_of(&findings)),
        findings,
    }
}

/// The reading of a result, an error's data or a request's params: strict, or nothing (an
/// upstream's bytes that two parsers could read two ways are never passed on unjudged).
pub fn read(raw: &str) -> Result<Value, String> {
    strict::parse(raw).map_err(|e| e.0)
}

/// Applies `f` to every text a person or model reads as content: `content[].text` (tool
/// results), `contents[].text` (resource reads), `messages[].content.text` (prompts), and the
/// text of embedded resources. Whether anything changed.
pub fn rewrite_texts(v: &mut Value, f: &dyn Fn(&str) -> Option<String>) -> bool {
    let mut changed = false;
    let Value::Object(m) = v else { return false };
    let mut one = |item: &mut Value| {
        if let Value::Object(item) = item {
            if let Some(Value::String(t)) = item.get_mut("text")
                && let Some(new) = f(t)
            {
                *t = new;
                changed = true;
            }
            if let Some(Value::Object(res)) = item.get_mut("resource")
                && let Some(Value::String(t)) = res.get_mut("text")
                && let Some(new) = f(t)
            {
                *t = new;
                changed = true;
            }
        }
    };
    for list in ["content", "contents"] {
        if let Some(Value::Array(items)) = m.get_mut(list) {
            items.iter_mut().for_each(&mut one);
        }
    }
    if let Some(Value::Array(messages)) = m.get_mut("messages") {
        for msg in messages {
            if let Some(c) = msg.get_mut("content") {
                match c {
                    Value::Array(items) => items.iter_mut().for_each(&mut one),
                    other => one(other),
                }
            }
        }
    }
    changed
}

/// Sanitises and/or spotlights the content texts of an untrusted result, as the upstream's
/// config asks. Whether anything changed.
pub fn rewrite(value: &mut Value, sanitize: bool, spotlight: bool, origin: &str) -> bool {
    if !(sanitize || spotlight) {
        return false;
    }
    rewrite_texts(value, &|t| {
        let clean = if sanitize { output::sanitize(t) } else { None };
        if spotlight {
            Some(output::spotlight(clean.as_deref().unwrap_or(t), origin))
        } else {
            clean
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Regression: members named `data`, `type` or `annotations` were skipped at every depth,
    /// so values under `structuredContent.data` never reached the scanner or provenance.
    #[test]
    fn every_text_is_read_but_binary_payloads() {
        let v = json!({
            "content": [
                {"type": "text", "text": "hello", "annotations": {"audience": ["user"], "note": "ann-text"}},
                {"type": "image", "data": "aGVsbG8=", "mimeType": "image/png"},
                {"type": "resource", "resource": {"uri": "x:1", "blob": "AAAA"}}
            ],
            "structuredContent": {"data": {"to": "eve@evil.test"}, "type": "mail"},
            "_meta": {"note": "meta-text"}
        });
        let mut out = Vec::new();
        texts(&v, &mut out);
        for want in ["hello", "ann-text", "eve@evil.test", "mail", "meta-text", "x:1"] {
            assert!(out.contains(&want), "{want} missing from {out:?}");
        }
        assert!(!out.contains(&"aGVsbG8="), "image data is binary");
        assert!(!out.contains(&"AAAA"), "blobs are binary");
    }

    #[test]
    fn hints_never_make_output_trusted() {
        assert_eq!(base_label(None, Some("t")), Label::UNTRUSTED);
    }

    #[test]
    fn unreadable_bytes_are_not_read_leniently() {
        assert!(read(r#"{"content":[{"type":"text","text":"a"}],"content":[]}"#).is_err());
        assert!(read(r#"{"x":"\ud800"}"#).is_err());
        assert!(read(r#"{"x":1}"#).is_ok());
    }
}
