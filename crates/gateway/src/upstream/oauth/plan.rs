//! Least privilege: the scopes to request are those the enabled tools need, and nothing else.
//! Pure: the tools and the map in, the plan (and why) out.

use std::collections::{BTreeMap, BTreeSet};

/// What `portcullis connect` will ask for, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopePlan {
    /// The scopes to request, in order: the provider's always-requested ones, then the tools'.
    pub requested: Vec<String>,
    /// For each requested tool scope, the enabled tools that need it.
    pub needed_by: BTreeMap<String, Vec<String>>,
    /// Scopes in the map that are not requested, with the tools that would need them and are
    /// not enabled (not listed, or never allowed by policy).
    pub not_requested: BTreeMap<String, Vec<String>>,
    /// Enabled tools no scope names: they get no scope of their own.
    pub unscoped: Vec<String>,
}

/// The plan for `enabled` tools (by their name at the upstream) under `tool_scopes` (scope →
/// tools), with `base` scopes always requested.
pub fn plan(base: &[String], tool_scopes: &BTreeMap<String, Vec<String>>, enabled: &BTreeSet<String>) -> ScopePlan {
    let mut p = ScopePlan::default();
    for s in base {
        if !p.requested.contains(s) {
            p.requested.push(s.clone());
        }
    }
    for (scope, tools) in tool_scopes {
        let (on, off): (Vec<&String>, Vec<&String>) = tools.iter().partition(|t| enabled.contains(*t));
        if on.is_empty() {
            if !p.requested.contains(scope) {
                p.not_requested
                    .insert(scope.clone(), off.into_iter().cloned().collect());
            }
            continue;
        }
        if !p.requested.contains(scope) {
            p.requested.push(scope.clone());
        }
        p.needed_by.insert(scope.clone(), on.into_iter().cloned().collect());
    }
    let named: BTreeSet<&String> = tool_scopes.values().flatten().collect();
    p.unscoped = enabled.iter().filter(|t| !named.contains(t)).cloned().collect();
    p
}

impl ScopePlan {
    /// The explanation `portcullis connect --explain` prints.
    pub fn explain(&self, base: &[String]) -> String {
        let mut out = String::new();
        for s in &self.requested {
            if let Some(tools) = self.needed_by.get(s) {
                out.push_str(&format!("request {s}\n    needed by: {}\n", tools.join(", ")));
            } else if base.contains(s) {
                out.push_str(&format!("request {s}\n    always requested by the provider's config\n"));
            }
        }
        for (s, tools) in &self.not_requested {
            out.push_str(&format!("not requested {s}\n    no enabled tool needs it"));
            if !tools.is_empty() {
                out.push_str(&format!(" ({} not enabled)", tools.join(", ")));
            }
            out.push('\n');
        }
        if !self.unscoped.is_empty() {
            out.push_str(&format!("tools needing no scope: {}\n", self.unscoped.join(", ")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn map() -> BTreeMap<String, Vec<String>> {
        crate::config::oauth::google::tool_scopes()
            .into_iter()
            .map(|(s, t)| (s.to_owned(), t.iter().map(|x| (*x).to_owned()).collect()))
            .collect()
    }

    fn set(tools: &[&str]) -> BTreeSet<String> {
        tools.iter().map(|t| (*t).to_owned()).collect()
    }

    use crate::config::oauth::google::{COMPOSE, MODIFY, READONLY, SEND};

    #[test]
    fn read_only_tools_get_only_the_read_scope() {
        let p = plan(&[], &map(), &set(&["list_folders", "search_messages", "read_message"]));
        assert_eq!(p.requested, [READONLY]);
        assert_eq!(
            p.needed_by[READONLY],
            ["list_folders", "search_messages", "read_message"]
        );
        for s in [COMPOSE, SEND, MODIFY] {
            assert!(p.not_requested.contains_key(s), "{s}");
        }
        let text = p.explain(&[]);
        assert!(
            text.contains(&format!(
                "not requested {SEND}\n    no enabled tool needs it (send_message, reply, forward not enabled)"
            )),
            "{text}"
        );
    }

    #[test]
    fn each_enabled_capability_adds_its_scope_and_no_other() {
        let p = plan(&[], &map(), &set(&["search_messages", "send_message"]));
        assert_eq!(p.requested, [READONLY, SEND]);
        let p = plan(&[], &map(), &set(&["reply"]));
        // Replying reads the original and sends.
        assert_eq!(p.requested, [READONLY, SEND]);
        let p = plan(&[], &map(), &set(&["create_draft", "trash_message"]));
        assert_eq!(p.requested, [COMPOSE, MODIFY]);
        // Never the full-access scope, whatever is enabled.
        let m = map();
        let all: Vec<&str> = m.values().flatten().map(String::as_str).collect();
        let p = plan(&[], &m, &set(&all));
        assert!(!p.requested.iter().any(|s| s == "https://mail.google.com/"));
    }

    #[test]
    fn base_scopes_come_first_once_and_unknown_tools_are_reported() {
        let base = vec!["offline_access".to_owned(), "offline_access".to_owned()];
        let p = plan(&base, &map(), &set(&["read_message", "mystery"]));
        assert_eq!(p.requested, ["offline_access", READONLY]);
        assert_eq!(p.unscoped, ["mystery"]);
        assert!(p.explain(&base).contains("always requested"));
        // Nothing enabled: only the base scopes.
        assert_eq!(plan(&base, &map(), &BTreeSet::new()).requested, ["offline_access"]);
    }
}
