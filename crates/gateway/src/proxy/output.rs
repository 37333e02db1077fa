//! What comes back: every tool result, resource read and prompt is labelled (config for the
//! tool, else for the upstream, else the tool's `openWorldHint`, else untrusted), scanned for
//! injection markers, invisible text, exfiltration links and secrets (findings raise the
//! label), optionally sanitised and spotlighted when untrusted, and recorded in the session:
//! its label joins the session's, its values enter the provenance index.

use portcullis_core::Outcome;
use portcullis_core::catalog::Entry;
use portcullis_core::label::{Integrity, Label};
use portcullis_core::output::{self, OutputFinding};
use serde_json::Value;
use serde_json::value::RawValue;

use super::Reply;
use crate::gateway::Gateway;
use crate::session::ClientCtx;

/// Members whose strings are protocol vocabulary, not content.
const NOT_CONTENT: [&str; 8] = [
    "_meta",
    "type",
    "mimeType",
    "resultType",
    "cacheScope",
    "blob",
    "data",
    "annotations",
];

/// Every content string of a result: everything but protocol vocabulary and binary data.
fn texts<'v>(v: &'v Value, out: &mut Vec<&'v str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| texts(i, out)),
        Value::Object(m) => {
            for (k, child) in m {
                if !NOT_CONTENT.contains(&k.as_str()) {
                    texts(child, out);
                }
            }
        }
        _ => {}
    }
}

/// Applies `f` to every text a person or model reads as content: `content[].text` (tool
/// results), `contents[].text` (resource reads), `messages[].content.text` (prompts), and the
/// text of embedded resources.
fn rewrite_texts(v: &mut Value, f: &dyn Fn(&str) -> Option<String>) -> bool {
    let mut changed = false;
    let Value::Object(m) = v else { return false };
    let mut one = |item: &mut Value| {
        if let Value::Object(item) = item {
            for key in ["text"] {
                if let Some(Value::String(t)) = item.get_mut(key)
                    && let Some(new) = f(t)
                {
                    *t = new;
                    changed = true;
                }
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

impl Gateway {
    /// The label config and annotations give a result of `upstream` (from the tool `tool`,
    /// when a tool made it), before its content is scanned.
    pub fn base_label(&self, upstream: usize, tool: Option<&Entry>) -> Label {
        let Some(up) = self.upstreams().get(upstream).map(|u| &u.cfg) else {
            return Label::UNTRUSTED;
        };
        let by_tool = tool
            .and_then(|t| up.tool_outputs.get(&t.original))
            .copied()
            .unwrap_or_default();
        let hinted = tool.and_then(|t| {
            let annotations: Option<Value> = t.definition.get_as("annotations").ok().flatten();
            // Only an explicit "does not reach outside" counts; the spec's default is true.
            (annotations.as_ref().and_then(|a| a.get("openWorldHint")) == Some(&Value::Bool(false)))
                .then_some(Integrity::Trusted)
        });
        let integrity = by_tool
            .trust
            .or(up.output.trust)
            .or(hinted)
            .unwrap_or(Integrity::Untrusted);
        Label {
            integrity,
            private: by_tool.private.or(up.output.private).unwrap_or(false),
        }
    }

    /// Labels, scans, optionally rewrites, and records one reply from `upstream` produced by
    /// `origin` (the tool, prompt or resource as exposed).
    pub(super) fn observe_reply(
        &self,
        ctx: &ClientCtx,
        upstream: usize,
        origin: &str,
        base: Label,
        reply: Reply,
    ) -> Reply {
        let raw = match &reply {
            Reply::Result(r) => r.get(),
            Reply::Upstream(resp) => match &resp.outcome {
                Outcome::Result(r) => r.get(),
                Outcome::Error(_) => return reply,
            },
        };
        let Ok(mut value) = serde_json::from_str::<Value>(raw) else {
            // Not JSON we can read: nothing to index, but the session saw it.
            self.taint.observe(ctx, origin, base, &[]);
            return reply;
        };
        let mut strings = Vec::new();
        texts(&value, &mut strings);
        let mut findings: Vec<OutputFinding> = Vec::new();
        for t in &strings {
            findings.extend(self.output_scanner.scan(t));
        }
        let label = base.join(output::label_of(&findings));
        if !findings.is_empty() {
            let rules: Vec<&str> = findings.iter().map(|f| f.rule).collect();
            tracing::warn!(%origin, label = %label, findings = ?rules, "tool output carries what an assistant should not act on");
        }
        self.taint.observe(ctx, origin, label, &strings);

        let Some(up) = self.upstreams().get(upstream).map(|u| &u.cfg) else {
            return reply;
        };
        if !label.is_untrusted() || !(up.sanitize || up.spotlight) {
            return reply;
        }
        let sanitize = up.sanitize;
        let spotlight = up.spotlight;
        let changed = rewrite_texts(&mut value, &|t| {
            let clean = if sanitize { output::sanitize(t) } else { None };
            if spotlight {
                Some(output::spotlight(clean.as_deref().unwrap_or(t), origin))
            } else {
                clean
            }
        });
        if !changed {
            return reply;
        }
        let Ok(raw) = serde_json::value::to_raw_value(&value) else {
            return reply;
        };
        with_result(reply, raw)
    }
}

fn with_result(reply: Reply, raw: Box<RawValue>) -> Reply {
    match reply {
        Reply::Result(_) => Reply::Result(raw),
        Reply::Upstream(mut resp) => {
            resp.outcome = Outcome::Result(raw);
            Reply::Upstream(resp)
        }
    }
}
