//! A person in the loop, end to end: a call policy marks `@approval("required")` waits while
//! `portcullis approvals` shows it; `portcullis approve` lets it through (once; a replayed
//! approval changes nothing), `portcullis deny --reason` sends the reason to the client,
//! `--for` lets the same call through for a while; nobody deciding ends it after the timeout;
//! a restart loses no pending approval; a client that declared elicitation is asked in its own
//! UI (over stdio, a real server-to-client request); each event is in the audit log.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers"
)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt as _;

/// Sends need a person's approval; everything else is permitted.
const POLICY: &str = SENDS_NEED_APPROVAL;

/// Tables for a gateway whose sends need approval, on `state`.
fn tables(dir: &Path, timeout: &str) -> String {
    let policy = dir.join("approval.cedar");
    std::fs::write(&policy, POLICY).unwrap();
    format!(
        "[policy]\nprofile = \"none\"\nfiles = [{}]\n\n[approvals]\ntimeout = \"{timeout}\"\n\n{}",
        toml_str(&policy.to_string_lossy()),
        raw_upstream("raw", "output = \"trusted\"")
    )
}

fn config_file(dir: &Path, timeout: &str) -> String {
    let path = dir.join("portcullis.toml");
    std::fs::write(
        &path,
        format!(
            "[gateway]\ndata_dir = {}\n\n{}",
            toml_str(&dir.join("state").to_string_lossy()),
            tables(dir, timeout)
        ),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

async fn serve(dir: &Path, timeout: &str) -> Served {
    let gw = Served::start_config(
        &format!("data_dir = {}", toml_str(&dir.join("state").to_string_lossy())),
        &tables(dir, timeout),
        &[],
    )
    .await;
    gw.wait_for_tools(&["raw__"]).await;
    gw
}

/// The pending approvals, as `portcullis approvals --json` lists them.
async fn pending(config: &str) -> Vec<Value> {
    let (code, out, err) = run_portcullis(&["approvals", "--json", "--config", config], "", &[]).await;
    assert_eq!(code, 0, "{err}");
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Waits until exactly one approval is pending and returns it.
async fn one_pending(config: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let p = pending(config).await;
        if p.len() == 1 {
            return p.into_iter().next().unwrap();
        }
        assert!(p.len() < 2, "more than one pending: {p:?}");
        assert!(tokio::time::Instant::now() < deadline, "no approval became pending");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn send(gw: &Served, to: &str) -> tokio::task::JoinHandle<Value> {
    let url = gw.url.clone();
    let to = to.to_owned();
    tokio::spawn(async move { Modern::new(&url).call("raw__send_message", json!({ "to": to })).await })
}

async fn cli(args: &[&str]) -> (i32, String, String) {
    run_portcullis(args, "", &[]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_approves_once_denies_with_a_reason_or_grants_for_a_while() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "60s");
    let gw = serve(dir.path(), "60s").await;

    // The call waits; the person sees what it is and why.
    let call = send(&gw, "bob@example.com");
    let a = one_pending(&config).await;
    assert_eq!(
        (a["tool"].as_str(), a["upstream"].as_str()),
        (Some("send_message"), Some("raw"))
    );
    assert_eq!(a["arguments"]["to"], "bob@example.com");
    assert!(a["reason"].as_str().unwrap().contains("sends-need-approval"), "{a}");
    assert!(!call.is_finished());
    let id = a["id"].as_str().unwrap().to_owned();
    let metrics = reqwest::get(gw.url.replace("/mcp", "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("portcullis_approvals_pending 1"), "{metrics}");

    let (code, out, err) = cli(&["approve", &id, "--config", &config]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("this one call"), "{out}");
    let r = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r["result"]["content"][0]["text"], "sent to bob@example.com", "{r}");
    // Replaying the approval does nothing.
    let (code, _, err) = cli(&["approve", &id, "--config", &config]).await;
    assert_eq!(code, 64);
    assert!(err.contains("is used") && err.contains("nothing changed"), "{err}");

    // One call only: the same call again asks again; a denial's reason reaches the client.
    let call = send(&gw, "bob@example.com");
    let id2 = one_pending(&config).await["id"].as_str().unwrap().to_owned();
    assert_ne!(id2, id);
    let (code, _, err) = cli(&["deny", &id2, "--reason", "not today", "--config", &config]).await;
    assert_eq!(code, 0, "{err}");
    let r = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .unwrap()
        .unwrap();
    let e = &r["error"];
    assert_eq!(e["code"], -31001, "{r}");
    assert!(e["message"].as_str().unwrap().contains("not today"), "{r}");
    assert_eq!(e["data"]["outcome"], "needs_approval");
    assert_eq!(e["data"]["policies"], json!(["sends-need-approval"]));
    assert_eq!(e["data"]["approval"]["state"], "denied");
    assert!(e["data"]["approval"]["decidedBy"].as_str().unwrap().starts_with("cli:"));

    // For a while: the same call passes without asking; another one asks.
    let call = send(&gw, "carol@example.com");
    let id3 = one_pending(&config).await["id"].as_str().unwrap().to_owned();
    let (code, _, err) = cli(&["approve", &id3, "--for", "10m", "--config", &config]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .unwrap()
            .unwrap()["result"]
            .is_object()
    );
    for _ in 0..2 {
        let r = tokio::time::timeout(Duration::from_secs(5), send(&gw, "carol@example.com"))
            .await
            .expect("a granted call must not wait")
            .unwrap();
        assert!(r["result"].is_object(), "{r}");
    }
    let other = send(&gw, "dave@example.com");
    let id4 = one_pending(&config).await["id"].as_str().unwrap().to_owned();
    cli(&["deny", &id4, "--config", &config]).await;
    assert!(other.await.unwrap()["error"].is_object());

    // Every event is in the audit log.
    let (_, out, _) = cli(&["audit", "export", "--jsonl", "--config", &config]).await;
    let events: Vec<String> = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["record"]["kind"] == "approval")
        .map(|r| {
            format!(
                "{} {}",
                r["record"]["approval"].as_str().unwrap(),
                r["record"]["event"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        format!("{id} requested"),
        format!("{id} approved"),
        format!("{id2} denied"),
        format!("{id3} used"),
    ] {
        assert!(events.contains(&want), "{want} not in {events:?}");
    }
    let (code, out, err) = cli(&["audit", "verify", "--config", &config]).await;
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn nobody_deciding_ends_the_call_and_a_restart_loses_no_approval() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "60s");
    let mut gw = serve(dir.path(), "60s").await;
    let call = send(&gw, "erin@example.com");
    let id = one_pending(&config).await["id"].as_str().unwrap().to_owned();
    // The gateway stops while the call waits: the client loses that call...
    let pid = gw.child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(20), gw.child.wait())
        .await
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), call).await;
    drop(gw);
    // ...but not the approval: still pending, still decidable.
    assert_eq!(pending(&config).await.len(), 1);
    let (code, _, err) = cli(&["approve", &id, "--config", &config]).await;
    assert_eq!(code, 0, "{err}");
    // After the restart the same call, retried, goes ahead on it at once; once.
    let gw = serve(dir.path(), "2s").await;
    let r = tokio::time::timeout(Duration::from_secs(5), send(&gw, "erin@example.com"))
        .await
        .unwrap()
        .unwrap();
    assert!(r["result"].is_object(), "{r}");
    // Again: it needs a new approval, and nobody gives one within the timeout.
    let r = send(&gw, "erin@example.com").await.unwrap();
    let e = &r["error"];
    assert_eq!(e["data"]["approval"]["state"], "timed_out", "{r}");
    assert!(e["message"].as_str().unwrap().contains("within 2s"), "{r}");
    let (_, all, _) = cli(&["approvals", "--all", "--json", "--config", &config]).await;
    assert!(all.contains("\"state\":\"expired\""), "{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_can_elicit_is_asked_in_its_own_ui() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "30s");
    let (_child, mut stdin, mut lines) =
        spawn_stdio(portcullis().to_str().unwrap(), &["stdio", "--config", &config], &[]);
    let init = stdio_call(
        &mut stdin,
        &mut lines,
        0,
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": {"elicitation": {}}, "clientInfo": {"name": "ide", "version": "1"}}),
    )
    .await;
    assert!(init["result"].is_object(), "{init}");
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
        .await
        .unwrap();
    // The tool list may still be loading: wait for it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut next = 1;
    loop {
        let r = stdio_call(&mut stdin, &mut lines, next, "tools/list", json!({})).await;
        next += 1;
        if r.to_string().contains("raw__send_message") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Each call is asked about in the client: the first declined with a reason, the second
    // accepted.
    for (answer, expect_ok) in [
        (json!({"action": "decline", "content": {"reason": "looks odd"}}), false),
        (json!({"action": "accept", "content": {}}), true),
    ] {
        let id = next;
        next += 1;
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "raw__send_message", "arguments": {"to": "frank@example.com"}}});
        stdin.write_all(format!("{msg}\n").as_bytes()).await.unwrap();
        let response = loop {
            let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["method"] == "elicitation/create" {
                let text = v["params"]["message"].as_str().unwrap();
                assert!(
                    text.contains("send_message") && text.contains("frank@example.com"),
                    "{text}"
                );
                let reply = json!({"jsonrpc": "2.0", "id": v["id"], "result": answer});
                stdin.write_all(format!("{reply}\n").as_bytes()).await.unwrap();
            } else if v["id"] == id {
                break v;
            }
        };
        if expect_ok {
            assert_eq!(
                response["result"]["content"][0]["text"], "sent to frank@example.com",
                "{response}"
            );
        } else {
            let e = &response["error"];
            assert!(e["message"].as_str().unwrap().contains("looks odd"), "{response}");
            assert_eq!(e["data"]["approval"]["decidedBy"], "client:ide", "{response}");
        }
    }
}

/// A 2026-07-28 `tools/call` from a client that declared elicitation, with `extra` params.
async fn modern_call(url: &str, to: &str, extra: Value) -> Value {
    let mut params = json!({
        "name": "raw__send_message",
        "arguments": {"to": to},
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
            "io.modelcontextprotocol/clientInfo": {"name": "modern-ide", "version": "1"},
        }
    });
    for (k, v) in extra.as_object().unwrap() {
        params[k] = v.clone();
    }
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}).to_string();
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "raw__send_message"),
    ];
    post(url, &headers, body).await.response()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_modern_client_is_asked_through_an_input_required_round() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "30s");
    let gw = serve(dir.path(), "30s").await;

    // The first attempt: the question, in the client's own UI.
    let r = modern_call(&gw.url, "hank@example.com", json!({})).await;
    let result = &r["result"];
    assert_eq!(result["resultType"], "input_required", "{r}");
    let ask = &result["inputRequests"]["portcullis_approval"];
    assert_eq!(ask["method"], "elicitation/create");
    assert!(
        ask["params"]["message"].as_str().unwrap().contains("hank@example.com"),
        "{r}"
    );
    let state = result["requestState"].as_str().unwrap().to_owned();
    assert_eq!(pending(&config).await.len(), 1);

    // The retry with the person's yes: the call goes through, and the approval is spent.
    let yes =
        json!({"requestState": state, "inputResponses": {"portcullis_approval": {"action": "accept", "content": {}}}});
    let r = modern_call(&gw.url, "hank@example.com", yes.clone()).await;
    assert_eq!(r["result"]["content"][0]["text"], "sent to hank@example.com", "{r}");
    let r = modern_call(&gw.url, "hank@example.com", yes).await;
    assert!(
        r["error"]["message"].as_str().unwrap().contains("used"),
        "a replayed round: {r}"
    );

    // The state belongs to that call: presented with other arguments, it is refused.
    let forged = json!({"requestState": state, "inputResponses": {"portcullis_approval": {"action": "accept"}}});
    let r = modern_call(&gw.url, "mallory@evil.test", forged).await;
    assert!(r["error"]["message"].as_str().unwrap().contains("requestState"), "{r}");

    // A no, with its reason.
    let r = modern_call(&gw.url, "ivan@example.com", json!({})).await;
    let state = r["result"]["requestState"].as_str().unwrap().to_owned();
    let no = json!({"requestState": state, "inputResponses": {"portcullis_approval": {"action": "decline", "content": {"reason": "nope"}}}});
    let r = modern_call(&gw.url, "ivan@example.com", no).await;
    assert!(r["error"]["message"].as_str().unwrap().contains("nope"), "{r}");
    assert_eq!(r["error"]["data"]["approval"]["decidedBy"], "client:modern-ide", "{r}");
}
