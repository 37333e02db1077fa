//! The tool-poisoning scanner ([`portcullis_core::scan`]) run over the merged catalog: every
//! tool, prompt and resource template of every upstream, each checked against the tools of the
//! other upstreams for shadowing.

use portcullis_core::catalog::{Catalog, Entry, Kind};
use portcullis_core::scan::{Finding, Scanner};

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

/// Scans every item in the catalog; items without findings are left out.
pub fn scan_catalog<'a>(scanner: &Scanner, catalog: &'a Catalog) -> Vec<Report<'a>> {
    let tools = catalog.entries(Kind::Tool);
    let mut reports = Vec::new();
    for kind in [Kind::Tool, Kind::Prompt, Kind::Template] {
        for entry in catalog.entries(kind) {
            // Names of the other upstreams' tools, as exposed and as their servers call them.
            let others: Vec<&str> = tools
                .iter()
                .filter(|t| t.upstream != entry.upstream)
                .flat_map(|t| [t.exposed.as_str(), t.original.as_str()])
                .collect();
            let findings = scanner.scan_definition(&entry.definition.to_value(), &others);
            if !findings.is_empty() {
                reports.push(Report { kind, entry, findings });
            }
        }
    }
    reports
}
