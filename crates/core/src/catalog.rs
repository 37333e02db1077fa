//! The merged view of every upstream's tools, prompts, resources and resource templates, and
//! the routing tables derived from it.
//!
//! Tools and prompts are exposed as `<prefix>__<name>` (or unchanged with an empty prefix);
//! resources keep their URIs and are routed back to the upstream that listed them. A name that
//! two upstreams would expose identically is exposed by neither: an ambiguous route could
//! hand one server's calls to another (tool shadowing), so the collision is reported instead.

use std::collections::HashMap;

use serde_json::value::RawValue;

use crate::params::RawObject;
use crate::pin::Hold;
use crate::template;

/// The separator between an upstream's prefix and a tool or prompt name.
pub const SEPARATOR: &str = "__";

/// The exposed name of `name` under `prefix`.
pub fn expose(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}{SEPARATOR}{name}")
    }
}

/// What an upstream listed, as raw definitions.
#[derive(Clone, Debug, Default)]
pub struct UpstreamLists {
    /// `tools/list` items.
    pub tools: Vec<RawObject>,
    /// `prompts/list` items.
    pub prompts: Vec<RawObject>,
    /// `resources/list` items.
    pub resources: Vec<RawObject>,
    /// `resources/templates/list` items.
    pub templates: Vec<RawObject>,
    /// The smallest `ttlMs` the upstream gave on these lists, if any.
    pub ttl_ms: Option<u64>,
}

/// One upstream as the catalog needs to know it.
#[derive(Clone, Debug)]
pub struct Namespace {
    /// The upstream's configured name.
    pub upstream: String,
    /// The exposure prefix (`""` exposes names unchanged).
    pub prefix: String,
}

/// The kinds of listed things.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A tool.
    Tool,
    /// A prompt.
    Prompt,
    /// A resource.
    Resource,
    /// A resource template.
    Template,
}

impl Kind {
    /// The member of a list result that carries this kind.
    pub fn list_key(self) -> &'static str {
        match self {
            Kind::Tool => "tools",
            Kind::Prompt => "prompts",
            Kind::Resource => "resources",
            Kind::Template => "resourceTemplates",
        }
    }

    /// A word for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Tool => "tool",
            Kind::Prompt => "prompt",
            Kind::Resource => "resource",
            Kind::Template => "resource template",
        }
    }
}

/// One exposed item.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Index of the owning upstream.
    pub upstream: usize,
    /// The name (tools, prompts) or URI / URI template (resources, templates) at the upstream.
    pub original: String,
    /// The name or URI as exposed to clients.
    pub exposed: String,
    /// The definition as exposed, name rewritten, everything else untouched.
    pub definition: RawObject,
    /// `definition` encoded once, for listing.
    pub raw: Box<RawValue>,
}

/// Two upstreams would expose the same name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// What kind of item.
    pub kind: Kind,
    /// The exposed name both would use.
    pub exposed: String,
    /// The upstreams involved, by name.
    pub upstreams: Vec<String>,
}

/// A definition the catalog refused to expose.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejected {
    /// What kind of item.
    pub kind: Kind,
    /// The upstream that listed it.
    pub upstream: String,
    /// Why it was refused.
    pub reason: String,
}

/// A tool held back from lists and calls (its definition is not the one approved).
#[derive(Clone, Debug)]
pub struct Held {
    /// The tool as it would be exposed.
    pub entry: Entry,
    /// Why.
    pub hold: Hold,
}

impl Held {
    /// Why, in one line, for the client and the log.
    pub fn reason(&self) -> String {
        self.hold.reason(&self.entry.exposed)
    }
}

/// The merged catalog with its routing indexes.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    tools: Vec<Entry>,
    prompts: Vec<Entry>,
    resources: Vec<Entry>,
    templates: Vec<Entry>,
    by_tool: HashMap<String, usize>,
    by_prompt: HashMap<String, usize>,
    by_resource: HashMap<String, usize>,
    /// Names that collided and are exposed by no one.
    pub conflicts: Vec<Conflict>,
    /// Definitions without a usable name.
    pub rejected: Vec<Rejected>,
    /// Tools held back by their pins, in catalog order.
    pub held: Vec<Held>,
    /// The smallest `ttlMs` over the upstreams that gave one.
    pub ttl_ms: Option<u64>,
}

impl Catalog {
    /// Builds the catalog from each upstream's lists (`None` for an upstream not reachable).
    pub fn build(namespaces: &[Namespace], lists: &[Option<&UpstreamLists>]) -> Catalog {
        let mut cat = Catalog::default();
        for kind in [Kind::Tool, Kind::Prompt, Kind::Resource, Kind::Template] {
            cat.build_kind(kind, namespaces, lists);
        }
        cat.ttl_ms = lists.iter().flatten().filter_map(|l| l.ttl_ms).min();
        cat
    }

    fn build_kind(&mut self, kind: Kind, namespaces: &[Namespace], lists: &[Option<&UpstreamLists>]) {
        let name_key = match kind {
            Kind::Tool | Kind::Prompt => "name",
            Kind::Resource => "uri",
            Kind::Template => "uriTemplate",
        };
        let mut entries: Vec<Entry> = Vec::new();
        let mut owners: HashMap<String, Vec<usize>> = HashMap::new();
        for (idx, (ns, lists)) in namespaces.iter().zip(lists).enumerate() {
            let Some(lists) = lists else { continue };
            let items = match kind {
                Kind::Tool => &lists.tools,
                Kind::Prompt => &lists.prompts,
                Kind::Resource => &lists.resources,
                Kind::Template => &lists.templates,
            };
            for item in items {
                let Some(original) = item.get_str(name_key).filter(|n| !n.is_empty()) else {
                    self.rejected.push(Rejected {
                        kind,
                        upstream: ns.upstream.clone(),
                        reason: format!("a {} without a string `{name_key}`", kind.noun()),
                    });
                    continue;
                };
                let exposed = match kind {
                    Kind::Tool | Kind::Prompt => expose(&ns.prefix, &original),
                    Kind::Resource | Kind::Template => original.clone(),
                };
                let mut definition = item.clone();
                if exposed != original {
                    // Writing a string member cannot fail.
                    let _ = definition.insert(name_key, &exposed);
                }
                let raw = definition.to_raw();
                let owners = owners.entry(exposed.clone()).or_default();
                if !owners.contains(&idx) {
                    owners.push(idx);
                }
                entries.push(Entry {
                    upstream: idx,
                    original,
                    exposed,
                    definition,
                    raw,
                });
            }
        }
        // An upstream that lists one name twice keeps the first; names claimed by two
        // upstreams are withheld from everyone.
        let mut index = HashMap::new();
        let mut kept = Vec::with_capacity(entries.len());
        for e in entries {
            let claimants = owners.get(&e.exposed).map_or(1, Vec::len);
            if claimants > 1 || index.contains_key(&e.exposed) {
                continue;
            }
            index.insert(e.exposed.clone(), kept.len());
            kept.push(e);
        }
        let mut conflicts: Vec<Conflict> = owners
            .into_iter()
            .filter(|(_, o)| o.len() > 1)
            .map(|(exposed, o)| Conflict {
                kind,
                exposed,
                upstreams: o
                    .iter()
                    .filter_map(|i| namespaces.get(*i).map(|n| n.upstream.clone()))
                    .collect(),
            })
            .collect();
        conflicts.sort_by(|a, b| a.exposed.cmp(&b.exposed));
        self.conflicts.extend(conflicts);
        match kind {
            Kind::Tool => (self.tools, self.by_tool) = (kept, index),
            Kind::Prompt => (self.prompts, self.by_prompt) = (kept, index),
            Kind::Resource => (self.resources, self.by_resource) = (kept, index),
            Kind::Template => self.templates = kept,
        }
    }

    /// The exposed items of one kind, in upstream order then listing order.
    pub fn entries(&self, kind: Kind) -> &[Entry] {
        match kind {
            Kind::Tool => &self.tools,
            Kind::Prompt => &self.prompts,
            Kind::Resource => &self.resources,
            Kind::Template => &self.templates,
        }
    }

    /// The tool exposed under `name`.
    pub fn tool(&self, name: &str) -> Option<&Entry> {
        self.by_tool.get(name).and_then(|i| self.tools.get(*i))
    }

    /// Holds back tools: each tool named (by exposed name) in `holds` leaves the list and the
    /// routing table and is kept in [`Catalog::held`] with its reason.
    pub fn hold_tools(&mut self, mut holds: HashMap<String, Hold>) {
        if holds.is_empty() {
            return;
        }
        let tools = std::mem::take(&mut self.tools);
        for entry in tools {
            match holds.remove(&entry.exposed) {
                Some(hold) => self.held.push(Held { entry, hold }),
                None => self.tools.push(entry),
            }
        }
        self.by_tool = self
            .tools
            .iter()
            .enumerate()
            .map(|(i, e)| (e.exposed.clone(), i))
            .collect();
    }

    /// The held-back tool that would be exposed as `name`.
    pub fn held_tool(&self, name: &str) -> Option<&Held> {
        self.held.iter().find(|h| h.entry.exposed == name)
    }

    /// The prompt exposed under `name`.
    pub fn prompt(&self, name: &str) -> Option<&Entry> {
        self.by_prompt.get(name).and_then(|i| self.prompts.get(*i))
    }

    /// The upstream that serves a resource URI: the one that listed it, else the first whose
    /// template matches it.
    pub fn resource_upstream(&self, uri: &str) -> Option<usize> {
        if let Some(e) = self.by_resource.get(uri).and_then(|i| self.resources.get(*i)) {
            return Some(e.upstream);
        }
        self.templates
            .iter()
            .find(|t| template::matches(&t.original, uri))
            .map(|t| t.upstream)
    }

    /// The upstream that owns a resource template, by its exact URI template.
    pub fn template_upstream(&self, uri_template: &str) -> Option<usize> {
        self.templates
            .iter()
            .find(|t| t.original == uri_template)
            .map(|t| t.upstream)
    }
}

/// A page of a list and the cursor for the next one.
#[derive(Debug)]
pub struct Page<'a, T = Entry> {
    /// The items on this page.
    pub items: &'a [T],
    /// The cursor for the next page, if there is one.
    pub next_cursor: Option<String>,
}

/// The cursor is not one the gateway issued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid pagination cursor")]
pub struct BadCursor;

const CURSOR_PREFIX: &str = "pc1:";

/// Cuts one page out of `entries` (the merged list, or a view of it such as the entries one
/// principal may see). Cursors are opaque offsets into that list.
pub fn paginate<'a, T>(entries: &'a [T], cursor: Option<&str>, page_size: usize) -> Result<Page<'a, T>, BadCursor> {
    let start = match cursor {
        None => 0,
        Some(c) => c
            .strip_prefix(CURSOR_PREFIX)
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= entries.len())
            .ok_or(BadCursor)?,
    };
    let end = start.saturating_add(page_size.max(1)).min(entries.len());
    let items = entries.get(start..end).unwrap_or_default();
    let next_cursor = (end < entries.len()).then(|| format!("{CURSOR_PREFIX}{end}"));
    Ok(Page { items, next_cursor })
}

#[cfg(test)]
mod tests;
