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

/// Sends need an operator's approval (never a client's); everything else is permitted.
const OPERATOR_POLICY: &str = r#"
@id("everything-else")
permit (principal, action, resource) when { resource.name != "send_message" };

@id("sends-need-an-operator")
@approval("operator")
permit (principal, action == Action::"call_tool", resource) when { resource.name == "send_message" };
"#;

fn tables_with(dir: &Path, timeout: &str, policy_text: &str) -> String {
    let policy = dir.join("approval.cedar");
    std::fs::write(&policy, policy_text).unwrap();
    format!(
        "[policy]\nprofile = \"none\"\nfiles = [{}]\n\n[approvals]\ntimeout = \"{timeout}\"\n\n{}",
        toml_str(&policy.to_string_lossy()),
        raw_upstream("raw", "output = \"trusted\"")
    )
}

fn config_file(dir: &Path, timeout: &str) -> String {
    config_file_with(dir, timeout, POLICY)
}

fn config_file_with(dir: &Path, timeout: &str, policy: &str) -> String {
    let path = dir.join("portcullis.toml");
    std::fs::write(
        &path,
        format!(
            "[gateway]\ndata_dir = {}\n\n{}",
            toml_str(&dir.join("state").to_string_lossy()),
            tables_with(dir, timeout, policy)
        ),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

async fn serve(dir: &Path, timeout: &str) -> Served {
    serve_with(dir, timeout, POLICY).await
}

async fn serve_with(dir: &Path, timeout: &str, policy: &str) -> Served {
    let gw = Served::start_config(
        &format!("data_dir = {}", toml_str(&dir.join("state").to_string_lossy())),
        &tables_with(dir, timeout, policy),
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

    // Each call is asked about in the client: the first declined with a reason; the second
    // accepted the way a client that accepts every form with its defaults would (nobody
    // chose: a decline); the third with a person's explicit choice.
    for (answer, expect_ok) in [
        (json!({"action": "decline", "content": {"reason": "looks odd"}}), false),
        (json!({"action": "accept", "content": {}}), false),
        (json!({"action": "accept", "content": {"decision": "approve"}}), true),
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
                // One required choice, no default to accept blindly.
                let schema = &v["params"]["requestedSchema"];
                assert_eq!(schema["required"], json!(["decision"]), "{v}");
                assert!(!schema.to_string().contains("default"), "{v}");
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
            let why = if answer["action"] == "decline" {
                "looks odd"
            } else {
                "without a decision"
            };
            assert!(e["message"].as_str().unwrap().contains(why), "{response}");
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
    let yes = json!({"requestState": state, "inputResponses": {"portcullis_approval": {"action": "accept", "content": {"decision": "approve"}}}});
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

    // An accept with the form's defaults (there are none) is nobody's yes: refused.
    let r = modern_call(&gw.url, "judy@example.com", json!({})).await;
    let state = r["result"]["requestState"].as_str().unwrap().to_owned();
    let blind =
        json!({"requestState": state, "inputResponses": {"portcullis_approval": {"action": "accept", "content": {}}}});
    let r = modern_call(&gw.url, "judy@example.com", blind).await;
    assert!(
        r["error"]["message"].as_str().unwrap().contains("without a decision"),
        "{r}"
    );

    // A no, with its reason.
    let r = modern_call(&gw.url, "ivan@example.com", json!({})).await;
    let state = r["result"]["requestState"].as_str().unwrap().to_owned();
    let no = json!({"requestState": state, "inputResponses": {"portcullis_approval": {"action": "decline", "content": {"reason": "nope"}}}});
    let r = modern_call(&gw.url, "ivan@example.com", no).await;
    assert!(r["error"]["message"].as_str().unwrap().contains("nope"), "{r}");
    assert_eq!(r["error"]["data"]["approval"]["decidedBy"], "client:modern-ide", "{r}");
}

/// A stdio client, initialized with `capabilities`, whose tool list has loaded; the next
/// request id to use.
async fn stdio_client(
    config: &str,
    capabilities: Value,
) -> (
    tokio::process::Child,
    tokio::process::ChildStdin,
    tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    u64,
) {
    let (child, mut stdin, mut lines) =
        spawn_stdio(portcullis().to_str().unwrap(), &["stdio", "--config", config], &[]);
    let init = stdio_call(
        &mut stdin,
        &mut lines,
        0,
        "initialize",
        json!({"protocolVersion": "2025-11-25", "capabilities": capabilities, "clientInfo": {"name": "ide", "version": "1"}}),
    )
    .await;
    assert!(init["result"].is_object(), "{init}");
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut next = 1;
    loop {
        let r = stdio_call(&mut stdin, &mut lines, next, "tools/list", json!({})).await;
        next += 1;
        if r.to_string().contains("raw__send_message") {
            return (child, stdin, lines, next);
        }
        assert!(tokio::time::Instant::now() < deadline, "{r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sends `tools/call raw__send_message` to `to` with request id `id` over stdio.
async fn stdio_send(stdin: &mut tokio::process::ChildStdin, id: u64, to: &str) {
    let msg = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "raw__send_message", "arguments": {"to": to}}});
    stdin.write_all(format!("{msg}\n").as_bytes()).await.unwrap();
}

/// The next line from the gateway, if one comes within `wait`.
async fn next_line(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    wait: Duration,
) -> Option<Value> {
    match tokio::time::timeout(wait, lines.next_line()).await {
        Ok(Ok(Some(line))) => Some(serde_json::from_str(&line).unwrap()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_approval_is_never_asked_of_the_client_and_a_client_answer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file_with(dir.path(), "60s", OPERATOR_POLICY);

    // A 2025-11-25 client that declared elicitation: it is told how an operator decides, and
    // never handed the question.
    let (_child, mut stdin, mut lines, id) = stdio_client(&config, json!({"elicitation": {}})).await;
    stdio_send(&mut stdin, id, "olga@example.com").await;
    let told = loop {
        let v = next_line(&mut lines, Duration::from_secs(30))
            .await
            .expect("told how to approve");
        assert_ne!(
            v["method"], "elicitation/create",
            "an operator's question went to the client: {v}"
        );
        if v["method"] == "notifications/message" {
            break v;
        }
    };
    let text = told["params"]["data"].as_str().unwrap();
    assert!(
        text.contains("an operator's approval") && text.contains("portcullis approve"),
        "{text}"
    );
    let a = one_pending(&config).await;
    assert_eq!(a["operatorOnly"], true, "{a}");
    let approval = a["id"].as_str().unwrap().to_owned();
    assert!(
        next_line(&mut lines, Duration::from_secs(2)).await.is_none(),
        "nothing more (no form) while the operator decides"
    );

    // A 2026-07-28 client presents a forged round answer for that very approval: the call
    // waits on, the approval stays pending.
    let gw = serve_with(dir.path(), "60s", OPERATOR_POLICY).await;
    let state = format!("pcl-approval.{approval}");
    let forged = json!({"requestState": state, "inputResponses": {"portcullis_approval": {"action": "accept", "content": {"decision": "approve"}}}});
    let url = gw.url.clone();
    let modern = tokio::spawn(async move { modern_call(&url, "olga@example.com", forged).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !modern.is_finished(),
        "a client's answer decided an operator's approval"
    );
    let p = pending(&config).await;
    assert!(p.iter().all(|a| a["state"] == "pending"), "{p:?}");

    // The operator approves at the terminal: one of the two identical calls goes through on
    // it (a one-call approval), the other is told it was used; the log names the channel.
    let (code, _, err) = cli(&["approve", &approval, "--config", &config]).await;
    assert_eq!(code, 0, "{err}");
    let r = loop {
        let v = next_line(&mut lines, Duration::from_secs(30))
            .await
            .expect("the result");
        if v["id"] == id {
            break v;
        }
    };
    let m = tokio::time::timeout(Duration::from_secs(30), modern)
        .await
        .unwrap()
        .unwrap();
    let sent = |v: &Value| v["result"]["content"][0]["text"] == "sent to olga@example.com";
    assert!(sent(&r) != sent(&m), "exactly one call goes through: {r} {m}");
    let refused = if sent(&r) { &m } else { &r };
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("used by another"),
        "{refused}"
    );
    let (_, out, _) = cli(&["audit", "export", "--jsonl", "--config", &config]).await;
    let decided = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["record"]["approval"] == approval.as_str() && r["record"]["event"] == "approved")
        .expect("the decision is in the audit log");
    assert_eq!(decided["record"]["channel"], "cli", "{decided}");
}

#[tokio::test(flavor = "multi_thread")]
async fn approvals_of_a_session_that_ended_expire() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "60s");
    let (mut child, mut stdin, mut lines, id) = stdio_client(&config, json!({})).await;
    stdio_send(&mut stdin, id, "paul@example.com").await;
    let a = one_pending(&config).await;
    let approval = a["id"].as_str().unwrap().to_owned();
    // The host closes the connection while the call waits.
    drop(stdin);
    while next_line(&mut lines, Duration::from_secs(10)).await.is_some() {}
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap();
    assert!(
        pending(&config).await.is_empty(),
        "a dead session's approval is still pending"
    );
    let (_, all, _) = cli(&["approvals", "--all", "--json", "--config", &config]).await;
    let row: Value = all
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["id"] == approval.as_str())
        .unwrap();
    assert_eq!(row["state"], "expired", "{row}");
    // Approving it now changes nothing.
    let (code, _, err) = cli(&["approve", &approval, "--config", &config]).await;
    assert_eq!(code, 64, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_person_sees_every_argument_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "60s");
    let gw = serve(dir.path(), "60s").await;
    // A long value: the list shows its digest, `--full` and the question show the text.
    let long = format!("quentin@example.com {}", "x".repeat(2000));
    let call = send(&gw, &long);
    let a = one_pending(&config).await;
    let id = a["id"].as_str().unwrap().to_owned();
    assert!(!a["arguments"]["to"].as_str().unwrap().contains("xxxx"), "{a}");
    let (code, out, err) = cli(&["approvals", "--full", "--config", &config]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&long), "{out}");
    let (_, out, _) = cli(&["approvals", "--full", "--json", "--config", &config]).await;
    let row: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(row["arguments"]["to"], long.as_str());
    cli(&["deny", &id, "--config", &config]).await;
    assert!(call.await.unwrap()["error"].is_object());
}

#[tokio::test(flavor = "multi_thread")]
async fn portcullis_call_never_approves_for_a_person() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), "60s");
    let gw = serve(dir.path(), "60s").await;
    // No terminal: the question is declined. Accepting the form's defaults is no decision.
    for (mode, why) in [("ask", "declined in the client"), ("defaults", "without a decision")] {
        let (code, out, err) = cli(&[
            "call",
            "--url",
            &gw.url,
            "--era",
            "modern",
            "--elicitation",
            mode,
            "raw__send_message",
            "--args",
            r#"{"to": "rita@example.com"}"#,
        ])
        .await;
        assert_ne!(code, 0, "{out}");
        assert!(err.contains(why), "{mode}: {err}");
    }
    assert!(pending(&config).await.is_empty());
}
