//! Tool pinning end to end, through `portcullis serve` with a real (raw JSON) MCP server whose
//! `weather` tool turns malicious on request (the rug pull): the changed tool leaves the list
//! and is refused on call with a reason that names the approval command; `portcullis scan`
//! reports the change; `portcullis tools approve` shows a diff, refuses without a terminal or
//! `--yes`, and once approved the running gateway lists and serves the tool again. With
//! `trust_on_first_use = false` a new tool is held until approved.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers"
)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// The raw upstream with the rug-pull tools, its state in `flag` (a folder its sandbox lets
/// it write).
fn rug_upstream(flag: &Path) -> String {
    format!(
        "[upstreams.raw]\ncommand = \"python3\"\nargs = [{}, \"--rug-pull\", {}]\n\n[upstreams.raw.sandbox]\nfs_write = [{}]\n",
        toml_str(&raw_server().to_string_lossy()),
        toml_str(&flag.to_string_lossy()),
        toml_str(&flag.parent().unwrap().to_string_lossy())
    )
}

async fn names(url: &str) -> Vec<String> {
    Modern::new(url)
        .list_tools()
        .await
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls the tool list until `want(names)` holds, for up to ten seconds.
async fn until_listed(url: &str, want: impl Fn(&[String]) -> bool) -> Vec<String> {
    for _ in 0..100 {
        let n = names(url).await;
        if want(&n) {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the tool list never reached the expected state: {:?}", names(url).await);
}

/// Runs the `portcullis` binary with `args` and no stdin; returns (exit code, stdout, stderr).
async fn cli(args: &[&str]) -> (i32, String, String) {
    run_portcullis(args, "", &[]).await
}

/// The tool named `name` in the output of `portcullis tools --json`.
fn listed<'l>(listing: &'l Value, name: &str) -> &'l Value {
    listing["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("`{name}` is not in {listing}"))
}

fn config_of(gw: &Served) -> PathBuf {
    gw.dir.path().join("portcullis.toml")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_tool_is_quarantined_until_approved() {
    let state = tempfile::tempdir().unwrap();
    let flag = state.path().join("pulled");
    let gw = Served::start(&rug_upstream(&flag)).await;
    gw.wait_for_tools(&["raw__weather"]).await;
    let client = Modern::new(&gw.url);
    let ok = client.call("raw__weather", json!({"city": "Oslo"})).await;
    assert_eq!(ok["result"]["content"][0]["text"], "sunny in Oslo", "{ok}");

    // The rug pull: the server changes the description and announces a list change.
    let pulled = client.call("raw__rug_pull", json!({})).await;
    assert_eq!(pulled["result"]["content"][0]["text"], "pulled", "{pulled}");
    let listed = until_listed(&gw.url, |n| !n.iter().any(|t| t == "raw__weather")).await;
    assert!(
        listed.iter().any(|t| t == "raw__rug_pull"),
        "other tools stay: {listed:?}"
    );

    // Refused on call, with a reason that says what to do.
    let r = client.call("raw__weather", json!({"city": "Oslo"})).await;
    let e = &r["error"];
    assert_eq!(e["code"], -31001, "{r}");
    assert_eq!(e["data"]["outcome"], "quarantined", "{r}");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("changed since it was approved"), "{message}");
    assert!(message.contains("portcullis tools approve raw__weather"), "{message}");
    // A legacy client is refused the same way.
    let legacy = Legacy::connect(&gw.url).await;
    let r = legacy.call("raw__weather", json!({})).await;
    assert_eq!(r["error"]["data"]["outcome"], "quarantined", "{r}");

    let config = config_of(&gw);
    let config = config.to_str().unwrap();
    // `scan` (another process, reading the pins the server wrote) reports the change as high.
    let (code, out, err) = cli(&["scan", "--config", config, "--json"]).await;
    assert_eq!(code, 1, "{out}\n{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let findings = report["findings"].as_array().unwrap();
    assert!(
        findings
            .iter()
            .any(|f| f["name"] == "raw__weather" && f["rule"] == "definition-changed" && f["severity"] == "high"),
        "{out}"
    );

    // Without a terminal and without --yes nothing is approved, but the diff is shown.
    let (code, out, err) = cli(&["tools", "approve", "raw__weather", "--config", config]).await;
    assert_eq!(code, 64, "{out}\n{err}");
    assert!(out.contains("--- approved") && out.contains("+++ current"), "{out}");
    assert!(
        out.contains("-  \"description\": \"Current weather for a city.\","),
        "{out}"
    );
    assert!(
        out.contains("+  \"description\": \"Current weather for a city.\\n<IMPORTANT>"),
        "{out}"
    );
    assert!(out.contains("important-tag"), "the scanner's findings are shown: {out}");
    assert!(err.contains("pass `--yes`"), "{err}");
    assert!(!names(&gw.url).await.iter().any(|t| t == "raw__weather"));

    let (code, out, err) = cli(&["tools", "approve", "raw__weather", "--config", config, "--yes"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("approved `raw__weather`"), "{out}");
    // The running gateway picks the approval up from the store and serves the tool again.
    until_listed(&gw.url, |n| n.iter().any(|t| t == "raw__weather")).await;
    let ok = client.call("raw__weather", json!({"city": "Bergen"})).await;
    assert_eq!(ok["result"]["content"][0]["text"], "sunny in Bergen", "{ok}");
    // Approving again is a no-op.
    let (code, out, _) = cli(&["tools", "approve", "raw__weather", "--config", config, "--yes"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("approved already"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pins_survive_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let flag = state.path().join("pulled");
    let mut gw = Served::start(&rug_upstream(&flag)).await;
    gw.wait_for_tools(&["raw__weather"]).await;
    let config = config_of(&gw);
    let text = std::fs::read_to_string(&config).unwrap();
    // Stop it the way a service manager does; it finishes writing its pins.
    gw.stop().await;
    // The definition changes while no gateway runs; the next gateway (same data_dir) holds it.
    std::fs::write(&flag, "pulled").unwrap();
    let dir = config.parent().unwrap();
    let port = free_port();
    let moved = text.replace(
        &text.lines().find(|l| l.starts_with("listen")).unwrap().to_owned(),
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    std::fs::write(dir.join("again.toml"), moved).unwrap();
    let (code, out, err) = cli(&["tools", "--config", dir.join("again.toml").to_str().unwrap(), "--json"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let listing: Value = serde_json::from_str(&out).unwrap();
    let weather = listed(&listing, "raw__weather");
    assert_eq!(weather["x-portcullis-pin"], "changed", "{weather}");
    let echo = listed(&listing, "raw__echo_params");
    assert_eq!(echo["x-portcullis-pin"], "approved", "{echo}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_trust_on_first_use_new_tools_wait_for_approval() {
    let upstream = raw_upstream("raw", "");
    let gw = Served::start_with(&upstream, "\n[pins]\ntrust_on_first_use = false\n").await;
    let client = Modern::new(&gw.url);
    // Nothing is listed, and a call says the tool awaits approval.
    let r = client.call("raw__pid", json!({})).await;
    assert_eq!(r["error"]["data"]["outcome"], "quarantined", "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("awaits approval"),
        "{r}"
    );
    assert!(names(&gw.url).await.is_empty());

    let config = config_of(&gw);
    let (code, out, err) = cli(&[
        "tools",
        "approve",
        "raw__pid",
        "--config",
        config.to_str().unwrap(),
        "--yes",
    ])
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("never approved"), "{out}");
    let listed = until_listed(&gw.url, |n| !n.is_empty()).await;
    assert_eq!(listed, ["raw__pid"]);
    let r = client.call("raw__pid", json!({})).await;
    assert!(r["result"]["content"][0]["text"].is_string(), "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn approving_an_unknown_tool_is_a_clear_error() {
    let upstream = raw_upstream("raw", "");
    let gw = Served::start(&upstream).await;
    let config = config_of(&gw);
    let (code, _, err) = cli(&[
        "tools",
        "approve",
        "raw__nope",
        "--config",
        config.to_str().unwrap(),
        "--yes",
    ])
    .await;
    assert_eq!(code, 69, "{err}");
    assert!(err.contains("no upstream lists a tool `raw__nope`"), "{err}");
}

fn poisoned_upstream() -> String {
    format!(
        "[upstreams.shady]\ncommand = \"python3\"\nargs = [{}, \"--poisoned\"]\n[upstreams.shady.tools.add]\neffect = \"read\"\n",
        toml_str(&raw_server().to_string_lossy())
    )
}

/// A new tool whose definition has a high finding is held like a changed pin (`[pins] hold_on
/// = "high"`, the default): not listed, refused on call with the finding and the command that
/// approves it, `flagged` in `portcullis tools`; once a person approves it, it is served.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_poisoned_tool_is_held_until_a_person_approves_it() {
    let gw = Served::start(&poisoned_upstream()).await;
    let client = Modern::new(&gw.url);
    let r = client.call("shady__add", json!({"a": 1, "b": 2})).await;
    let e = &r["error"];
    assert_eq!(e["data"]["outcome"], "quarantined", "{r}");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("looks poisoned"), "{message}");
    assert!(message.contains("portcullis tools approve shady__add"), "{message}");
    assert!(
        !names(&gw.url).await.iter().any(|t| t.starts_with("shady__")),
        "no poisoned tool is listed"
    );

    let config = config_of(&gw);
    let config = config.to_str().unwrap();
    let (code, out, err) = cli(&["tools", "--config", config, "--json"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let listing: Value = serde_json::from_str(&out).unwrap();
    let add = listed(&listing, "shady__add");
    assert_eq!(add["x-portcullis-pin"], "flagged", "{add}");

    let (code, out, err) = cli(&["tools", "approve", "shady__add", "--config", config, "--yes"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let listed = until_listed(&gw.url, |n| n.iter().any(|t| t == "shady__add")).await;
    assert!(
        !listed.iter().any(|t| t == "shady__daily_quote"),
        "approving one tool releases only that one: {listed:?}"
    );
    // The gateway now forwards the call (these poisoned tools do nothing, so the server itself
    // answers that it has no such tool).
    let r = client.call("shady__add", json!({"a": 1, "b": 2})).await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert!(
        r["error"].get("data").is_none_or(|d| d["outcome"] != "quarantined"),
        "{r}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hold_on_never_lists_a_flagged_tool_and_a_bad_value_is_a_config_error() {
    let gw = Served::start_with(&poisoned_upstream(), "\n[pins]\nhold_on = \"never\"\n").await;
    until_listed(&gw.url, |n| n.iter().any(|t| t == "shady__add")).await;

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[pins]\nhold_on = \"low\"\n").unwrap();
    let (code, _, err) = cli(&["tools", "--config", bad.to_str().unwrap()]).await;
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("pins.hold_on") && err.contains("got `low`"), "{err}");
}
