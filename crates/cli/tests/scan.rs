//! `portcullis scan` end to end: the published tool-poisoning shapes served by a real (raw
//! JSON) MCP server are flagged at high severity, and the real tools of the npm reference
//! servers are not.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers"
)]

mod common;

use common::*;
use serde_json::Value;
use tokio::process::Command;

async fn scan(config_body: &str, extra: &[&str]) -> (Option<i32>, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(&config, config_body).unwrap();
    let out = Command::new(portcullis())
        .args(["scan", "--json", "--config"])
        .arg(&config)
        .args(extra)
        .output()
        .await
        .unwrap();
    let json: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (
        out.status.code(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn high_findings<'a>(report: &'a Value, tool: &str) -> Vec<&'a Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"] == tool && f["severity"] == "high")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_poisoned_tool_is_flagged_high_and_the_exit_code_says_so() {
    let config = format!(
        "[upstreams.shady]\ncommand = \"python3\"\nargs = [{}, \"--poisoned\"]\n",
        toml_str(&raw_server().to_string_lossy())
    );
    let (code, report, stderr) = scan(&config, &[]).await;
    assert_eq!(code, Some(1), "findings at or above `high` exit 1: {stderr}");
    for tool in [
        "shady__add",
        "shady__daily_quote",
        "shady__weather",
        "shady__fetch_report",
    ] {
        assert!(
            !high_findings(&report, tool).is_empty(),
            "{tool} not flagged high: {report:#}"
        );
    }
    // The `<IMPORTANT>` tool is caught for what it hides and for what it asks to read.
    let add: Vec<&str> = high_findings(&report, "shady__add")
        .iter()
        .map(|f| f["category"].as_str().unwrap())
        .collect();
    assert!(
        add.contains(&"hidden-instruction") && add.contains(&"sensitive-reference"),
        "{add:?}"
    );
    // Tag characters are decoded into the finding, so a person can read what was hidden.
    let weather = high_findings(&report, "shady__weather");
    assert!(weather.iter().any(|f| f["category"] == "invisible-text"), "{weather:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_npm_reference_servers_have_no_high_finding() {
    let config = format!(
        "[upstreams.everything]\ncommand = {}\n\n[upstreams.files]\ncommand = {}\nargs = [\".\"]\n\n[upstreams.memory]\ncommand = {}\n",
        toml_str(&peer_bin("mcp-server-everything").to_string_lossy()),
        toml_str(&peer_bin("mcp-server-filesystem").to_string_lossy()),
        toml_str(&peer_bin("mcp-server-memory").to_string_lossy()),
    );
    let (code, report, stderr) = scan(&config, &[]).await;
    let highs: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "high")
        .collect();
    assert!(highs.is_empty(), "false high findings on reference servers: {highs:#?}");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(report["unavailable"].as_array().unwrap().is_empty(), "{report:#}");
    // Lower findings are allowed (they are hints for a person), but `--fail-on low` sees them.
    let lower = report["findings"].as_array().unwrap().len();
    eprintln!("reference servers: {lower} findings below high");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_cannot_be_read_is_not_a_clean_scan() {
    let dead = format!("http://127.0.0.1:{}/mcp", free_port());
    let (code, report, _) = scan(
        &format!("[upstreams.gone]\nurl = {}\n", toml_str(&dead)),
        &["--wait", "5s"],
    )
    .await;
    assert_eq!(code, Some(69), "{report:#}");
    assert_eq!(report["unavailable"][0]["upstream"], "gone");
}

#[tokio::test(flavor = "multi_thread")]
async fn tools_that_share_a_name_across_upstreams_are_flagged() {
    let raw = toml_str(&raw_server().to_string_lossy());
    let config = format!(
        "[upstreams.work]\ncommand = \"python3\"\nargs = [{raw}]\n\n[upstreams.home]\ncommand = \"python3\"\nargs = [{raw}]\n"
    );
    let (code, report, stderr) = scan(&config, &[]).await;
    // A hint for a person (medium), not an attack shape: the default `--fail-on high` passes.
    assert_eq!(code, Some(0), "{stderr}");
    let same: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "same-name")
        .collect();
    for tool in ["work__send_message", "home__send_message"] {
        let f = same
            .iter()
            .find(|f| f["name"] == tool)
            .unwrap_or_else(|| panic!("{tool}: {report:#}"));
        assert_eq!(f["severity"], "medium");
        assert_eq!(f["category"], "cross-tool");
    }
    let (code, _, _) = scan(&config, &["--fail-on", "medium"]).await;
    assert_eq!(code, Some(1));
}
