//! The tool-poisoning scanner ([`portcullis_core::scan`]) run over the merged catalog: every
//! tool (held-back ones too), prompt and resource template of every upstream, each checked
//! against the tools of the other upstreams for shadowing; tools that share a name with
//! another upstream's tool are flagged; tools held back by their pins are reported.

use portcullis_core::catalog::{Catalog, Entry, Kind};
use portcullis_core::pin::Hold;
use portcullis_core::scan::{Category, Finding, Scanner, Severity};

/// The findings on one catalog entry.
#[derive(Debug)]
pub struct Report<'a> {
    /// What kind of item.
    pub kind: Kind,
    /// The item.
    pub entry: &'a Entry,
    /// What the scanner found, most severe first.
    pub findings: Vec<Finding>,
}

/// Every tool of the catalog, listed or held back.
fn all_tools(catalog: &Catalog) -> Vec<&Entry> {
    catalog
        .entries(Kind::Tool)
        .iter()
        .chain(catalog.held.iter().map(|h| &h.entry))
        .collect()
}

/// Scans every item in the catalog; items without findings are left out.
pub fn scan_catalog<'a>(scanner: &Scanner, catalog: &'a Catalog) -> Vec<Report<'a>> {
    let tools = all_tools(catalog);
    let mut reports = Vec::new();
    for kind in [Kind::Tool, Kind::Prompt, Kind::Template] {
        let entries: Vec<&Entry> = match kind {
            Kind::Tool => tools.clone(),
            _ => catalog.entries(kind).iter().collect(),
        };
        for entry in entries {
            // Names of the other upstreams' tools, as exposed and as their servers call them.
            let others: Vec<&Entry> = tools.iter().copied().filter(|t| t.upstream != entry.upstream).collect();
            let names: Vec<&str> = others
                .iter()
                .flat_map(|t| [t.exposed.as_str(), t.original.as_str()])
                .collect();
            let mut findings = scanner.scan_definition(&entry.definition.to_value(), &names);
            if kind == Kind::Tool
                && let Some(twin) = others.iter().find(|t| t.original == entry.original)
            {
                findings.push(Finding {
                    severity: Severity::Medium,
                    category: Category::CrossTool,
                    rule: "same-name",
                    field: "name".into(),
                    message: format!(
                        "another upstream has a tool of the same name (`{}`); a model choosing by name may call the wrong one",
                        twin.exposed
                    ),
                    excerpt: entry.original.clone(),
                });
            }
            if !findings.is_empty() {
                reports.push(Report { kind, entry, findings });
            }
        }
    }
    reports
}

/// One finding per tool held back by its pin: a changed definition (high: the rug pull) or a
/// new tool awaiting approval (medium).
pub fn pin_reports(catalog: &Catalog) -> Vec<Report<'_>> {
    catalog
        .held
        .iter()
        .map(|h| {
            let (severity, rule) = match &h.hold {
                Hold::Changed { .. } => (Severity::High, "definition-changed"),
                Hold::Unapproved => (Severity::Medium, "unapproved"),
                Hold::Flagged { .. } => (Severity::High, "held-for-finding"),
            };
            let excerpt = match &h.hold {
                Hold::Changed { pinned } => format!("approved sha256 {}", pinned.get(..16).unwrap_or(pinned)),
                Hold::Unapproved => String::new(),
                Hold::Flagged { rule, .. } => rule.clone(),
            };
            Report {
                kind: Kind::Tool,
                entry: &h.entry,
                findings: vec![Finding {
                    severity,
                    category: Category::Pin,
                    rule,
                    field: "definition".into(),
                    message: h.reason(),
                    excerpt,
                }],
            }
        })
        .collect()
}
