//! The description scanner against corpora it was not written from: poisoned tool definitions
//! of fourteen kinds (instructions about other tools, credentials, the person's arguments,
//! concealment, authority, redirects, shell commands, exfiltration, praise, look-alike names,
//! injection templates, poison hidden in schemas, covert actions, fake turns), definitions that
//! only push the model to prefer a tool, hand-written honest definitions full of the words
//! naive scanners trip on, and the real tool lists of public MCP servers.
//!
//! `cargo test -p portcullis-core --test scan_corpus -- --nocapture` prints the rates and
//! the misses. Every third item (by the number in its id) is held out: the rules were tuned
//! on the misses of the others only, and the held-out rates are printed apart, as the
//! honest estimate of how the scanner does on text it has not seen.

#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing, reason = "test")]

use std::collections::BTreeMap;
use std::path::PathBuf;

use portcullis_core::scan::{Finding, Scanner, Severity};
use serde_json::Value;

fn testdata(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/scan/testdata")
        .join(name)
}

struct Item {
    id: String,
    kind: String,
    tool: Value,
}

impl Item {
    /// Held out of tuning: every third item by the number in its id.
    fn held_out(&self) -> bool {
        let digits: String = self.id.chars().filter(char::is_ascii_digit).collect();
        digits.parse::<u32>().is_ok_and(|n| n % 3 == 0)
    }
}

fn jsonl(name: &str) -> Vec<Item> {
    let text = std::fs::read_to_string(testdata(name)).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            Item {
                id: v["id"].as_str().unwrap().to_owned(),
                kind: v["kind"].as_str().unwrap().to_owned(),
                tool: v["tool"].clone(),
            }
        })
        .collect()
}

fn worst(findings: &[Finding]) -> Option<Severity> {
    findings.iter().map(|f| f.severity).max()
}

fn show(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| format!("{} {} @{}", f.severity, f.rule, f.field))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Default)]
struct Tally {
    n: usize,
    flagged: usize,
    high: usize,
}

impl Tally {
    /// Counts one definition whose worst finding is `w`.
    fn count(&mut self, w: Option<Severity>) {
        self.n += 1;
        self.flagged += usize::from(w >= Some(Severity::Medium));
        self.high += usize::from(w == Some(Severity::High));
    }

    fn pct(part: usize, n: usize) -> f64 {
        if n == 0 { 0.0 } else { 100.0 * part as f64 / n as f64 }
    }
}

#[test]
fn poisoned_definitions_are_flagged_and_most_at_high() {
    let scanner = Scanner::new();
    let mut by_kind: BTreeMap<String, Tally> = BTreeMap::new();
    let (mut all, mut held) = (Tally::default(), Tally::default());
    let mut misses = Vec::new();
    for item in jsonl("corpus/poisoned.jsonl") {
        let findings = scanner.scan_definition(&item.tool, &[]);
        let w = worst(&findings);
        let t = by_kind.entry(item.kind.clone()).or_default();
        let mut tallies = vec![t, &mut all];
        if item.held_out() {
            tallies.push(&mut held);
        }
        for t in tallies {
            t.count(w);
        }
        if w != Some(Severity::High) {
            misses.push(format!(
                "{} [{}] {:?}: {}\n    {}",
                item.id,
                item.kind,
                w,
                show(&findings),
                serde_json::to_string(&item.tool).unwrap_or_default()
            ));
        }
    }
    for (kind, t) in &by_kind {
        eprintln!(
            "{kind:20} {:3} flagged {:5.1}%  high {:5.1}%",
            t.n,
            Tally::pct(t.flagged, t.n),
            Tally::pct(t.high, t.n)
        );
    }
    let (flagged, high) = (Tally::pct(all.flagged, all.n), Tally::pct(all.high, all.n));
    eprintln!(
        "poisoned: {} definitions, flagged {flagged:.1}%, high {high:.1}%",
        all.n
    );
    eprintln!(
        "poisoned, held out: {} definitions, flagged {:.1}%, high {:.1}%",
        held.n,
        Tally::pct(held.flagged, held.n),
        Tally::pct(held.high, held.n)
    );
    for m in &misses {
        eprintln!("  not high: {m}");
    }
    assert!(all.n >= 200);
    assert!(flagged >= 95.0, "flagged {flagged:.1}%");
    assert!(high >= 80.0, "high {high:.1}%");
}

#[test]
fn definitions_that_push_the_model_to_prefer_them_are_flagged() {
    let scanner = Scanner::new();
    let (mut t, mut held) = (Tally::default(), Tally::default());
    for item in jsonl("corpus/preference.jsonl") {
        let findings = scanner.scan_definition(&item.tool, &[]);
        let w = worst(&findings);
        let mut tallies = vec![&mut t];
        if item.held_out() {
            tallies.push(&mut held);
        }
        for t in tallies {
            t.count(w);
        }
        if w < Some(Severity::Medium) {
            eprintln!(
                "  not flagged: {} {}",
                item.id,
                serde_json::to_string(&item.tool).unwrap_or_default()
            );
        }
    }
    let flagged = Tally::pct(t.flagged, t.n);
    eprintln!(
        "preference: {} definitions, flagged {flagged:.1}%, high {:.1}%; held out: {} flagged {:.1}%",
        t.n,
        Tally::pct(t.high, t.n),
        held.n,
        Tally::pct(held.flagged, held.n)
    );
    assert!(t.n >= 50);
    assert!(flagged >= 95.0, "flagged {flagged:.1}%");
}

#[test]
fn honest_definitions_get_no_high_finding() {
    let scanner = Scanner::new();
    let mut highs = Vec::new();
    let mut medium = 0;
    let items = jsonl("corpus/benign.jsonl");
    for item in &items {
        let findings = scanner.scan_definition(&item.tool, &[]);
        match worst(&findings) {
            Some(Severity::High) => highs.push(format!(
                "{} {}: {}\n    {}",
                item.id,
                item.tool["name"],
                show(&findings),
                serde_json::to_string(&item.tool).unwrap_or_default()
            )),
            Some(Severity::Medium) => medium += 1,
            _ => {}
        }
    }
    eprintln!(
        "benign: {} definitions, {} high, {medium} medium",
        items.len(),
        highs.len()
    );
    for h in &highs {
        eprintln!("  high: {h}");
    }
    assert!(items.len() >= 150);
    assert!(highs.is_empty(), "{} honest definitions flagged high", highs.len());
}

/// The reference servers (the MCP project's own) must get no high finding at all; across the
/// whole snapshot of published servers, tools with a high finding are counted and bounded
/// (many of them really do address the model: "Note to LLM: …", "If you are an AI model, …").
const REFERENCE: &[&str] = &[
    "mcp-server-fetch",
    "mcp-server-git",
    "mcp-server-time",
    "mcp-server-sqlite",
];

#[test]
fn real_servers_tools_get_no_high_finding() {
    let path = testdata("real-tools.json");
    let snapshot: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let scanner = Scanner::new();
    let (mut n, mut n_reference) = (0, 0);
    let mut highs = Vec::new();
    let mut reference_highs = Vec::new();
    let mut medium = Vec::new();
    for server in snapshot["servers"].as_array().unwrap() {
        let name = server["server"].as_str().unwrap();
        let reference = name.starts_with("@modelcontextprotocol/") || REFERENCE.contains(&name);
        for tool in server["tools"].as_array().unwrap() {
            n += 1;
            if reference {
                n_reference += 1;
            }
            let findings = scanner.scan_definition(tool, &[]);
            let line = format!("{name} {}: {}", tool["name"], show(&findings));
            match worst(&findings) {
                Some(Severity::High) if reference => reference_highs.push(line),
                Some(Severity::High) => highs.push(line),
                Some(Severity::Medium) => medium.push(line),
                _ => {}
            }
        }
    }
    eprintln!(
        "real tools: {n} ({n_reference} of reference servers), {} high ({} of reference servers), {} medium",
        highs.len() + reference_highs.len(),
        reference_highs.len(),
        medium.len()
    );
    for m in &medium {
        eprintln!("  medium: {m}");
    }
    for h in &highs {
        eprintln!("  high: {h}");
    }
    assert!(n >= 700 && n_reference >= 100, "{n} {n_reference}");
    assert!(reference_highs.is_empty(), "{reference_highs:#?}");
    // Measured 62 of 752 (8.2 %); a rule change that flags more honest tools fails here.
    assert!(
        highs.len() * 100 <= n * 9,
        "{} of {n} real tools flagged high",
        highs.len()
    );
}
