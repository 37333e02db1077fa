//! The gateway crate's folders are its architecture: a request goes front → dispatch → guard
//! → upstream, and no module imports one above it. This test reads the sources and fails on
//! any import against that order, on an import cycle between folders, and on a guard that
//! reaches for the gateway, a task or I/O. It also checks that only the forward stage sends a
//! client's request upstream.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "a test")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module may import (beside itself).
const ALLOWED: &[(&str, &[&str])] = &[
    (
        "front",
        &[
            "dispatch", "state", "guard", "upstream", "config", "error", "redact", "framing", "bearer",
        ],
    ),
    (
        "admin",
        &[
            "front", "dispatch", "state", "guard", "upstream", "config", "error", "redact",
        ],
    ),
    ("dispatch", &["state", "guard", "upstream", "config", "error", "redact"]),
    (
        "state",
        &["guard", "upstream", "config", "error", "redact", "bearer", "fetch"],
    ),
    ("bearer", &["config", "fetch"]),
    ("guard", &["config", "error"]),
    ("error", &["upstream"]),
    ("upstream", &["config", "redact", "framing", "fetch"]),
    ("config", &["fetch"]),
    ("fetch", &[]),
    ("redact", &[]),
    ("framing", &[]),
    ("lib", &[]),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to.
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy()
        .into_owned();
    first.trim_end_matches(".rs").to_owned()
}

/// The source without `#[cfg(test)]` modules (tests may reach anywhere) and comments.
fn code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            // Skip the test module (to the end of the file: it is always last).
            break;
        }
        let line = line.split("//").next().unwrap_or_default();
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every `crate::X` a source names.
fn imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        // `portcullis_crate::` and the like are not ours.
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if !name.is_empty() && name != "install_crypto" {
            out.insert(name);
        }
    }
    out
}

#[test]
fn no_module_imports_one_above_it() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut all = Vec::new();
    files(&src(), &mut all);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut wrong = Vec::new();
    for f in &all {
        let m = module_of(f);
        let may = allowed
            .get(m.as_str())
            .unwrap_or_else(|| panic!("{}: module `{m}` is not in ALLOWED", f.display()));
        for used in imports(&code(&std::fs::read_to_string(f).unwrap())) {
            if used == m {
                continue;
            }
            edges.entry(m.clone()).or_default().insert(used.clone());
            if !may.contains(&used.as_str()) {
                wrong.push(format!(
                    "{} imports `crate::{used}`",
                    f.strip_prefix(src()).unwrap().display()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "imports against the layering:\n{}", wrong.join("\n"));
    // No cycle between modules.
    fn reaches(edges: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str, seen: &mut BTreeSet<String>) -> bool {
        edges.get(from).is_some_and(|next| {
            next.iter()
                .any(|n| n == to || (seen.insert(n.clone()) && reaches(edges, n, to, seen)))
        })
    }
    for m in edges.keys() {
        assert!(
            !reaches(&edges, m, m, &mut BTreeSet::new()),
            "import cycle through `{m}`"
        );
    }
}

#[test]
fn guards_are_pure_decisions() {
    let mut guard = Vec::new();
    files(&src().join("guard"), &mut guard);
    assert!(guard.len() >= 10, "{guard:?}");
    for f in guard {
        let code = code(&std::fs::read_to_string(&f).unwrap());
        for banned in [
            "tokio",
            "async fn",
            ".await",
            "std::fs",
            "reqwest",
            "std::net",
            "crate::state",
            "gw: &Gateway",
            "Arc<Gateway>",
            "crate::dispatch",
        ] {
            assert!(!code.contains(banned), "{}: a guard uses `{banned}`", f.display());
        }
    }
}

/// Only the forward stage spawns a client's request upstream, and it takes the commit's proof.
#[test]
fn only_the_forward_stage_sends_client_requests_upstream() {
    let mut all = Vec::new();
    files(&src(), &mut all);
    for f in &all {
        let code = code(&std::fs::read_to_string(f).unwrap());
        let rel = f.strip_prefix(src()).unwrap().to_string_lossy().into_owned();
        if code.contains("CallSink::bounded(Some(") {
            assert_eq!(
                rel, "dispatch/forward.rs",
                "a client-owned call is made outside forward"
            );
        }
        if rel.starts_with("dispatch/") || rel.starts_with("front/") {
            // The dispatch and front folders call upstreams only through forward, or for the
            // gateway's own business (subscriptions it holds, the log level it passes on).
            let direct = code.matches(".call(").count();
            let allowed = match rel.as_str() {
                "dispatch/forward.rs" => usize::MAX,
                "dispatch/answered.rs" => 1,
                _ => 0,
            };
            assert!(direct <= allowed, "{rel}: {direct} direct upstream calls");
        }
    }
    let forward = std::fs::read_to_string(src().join("dispatch/forward.rs")).unwrap();
    assert!(forward.contains("proof: Committed"), "forward takes the proof");
    let audit = std::fs::read_to_string(src().join("state/audit.rs")).unwrap();
    assert_eq!(
        audit.matches("Committed { _sealed: () }").count(),
        1,
        "only the commit makes the proof"
    );
}
