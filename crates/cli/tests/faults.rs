//! Issue 19: upstreams and clients that misbehave. Each test starts a real gateway with a real
//! upstream process (`tests/peers/raw_server.py --faults --channels`) and asserts what a
//! person relying on the gateway needs: the client gets a precise error (not its own timeout),
//! the gateway goes on serving other calls, its memory stays bounded, and the audit log says
//! what happened.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers"
)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// A faulty upstream (`raw`) and a healthy one (`calm`), under a permit-all policy.
async fn start(gateway_extra: &str, raw_extra: &str) -> (Served, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.cedar");
    std::fs::write(&policy, "permit (principal, action, resource);").unwrap();
    let raw = toml_str(&raw_server().to_string_lossy());
    let gw = Served::start_config(
        &format!("data_dir = \"state\"\n{gateway_extra}"),
        &format!(
            "[approvals]\nask = false\n\n[policy]\nprofile = \"none\"\nfiles = [{}]\n\n\
             [upstreams.raw]\ncommand = \"python3\"\nargs = [{raw}, \"--faults\", \"--channels\"]\n{raw_extra}\n\n\
             [upstreams.calm]\ncommand = \"python3\"\nargs = [{raw}]\n",
            toml_str(&policy.to_string_lossy())
        ),
        &[],
    )
    .await;
    gw.wait_for_tools(&["raw__", "calm__"]).await;
    (gw, dir)
}

/// The gateway's peak resident memory so far, in MiB.
fn peak_rss_mib(gw: &Served) -> u64 {
    status_mib(gw, "VmHWM:")
}

/// The gateway's resident memory now, before a fault: what a peak is measured against (the
/// idle figure moves with the build and the allocator; what a fault adds must not).
fn rss_mib(gw: &Served) -> u64 {
    status_mib(gw, "VmRSS:")
}

fn status_mib(gw: &Served, field: &str) -> u64 {
    let pid = gw.child.id().expect("the gateway is running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/PID/status"));
    kib / 1024
}

/// How much memory a fault may add to the gateway's resident set at its peak: four times the
/// default frame limit of 16 MiB, far below the 200 MiB answers and endless lines the tests send.
const FAULT_GROWTH_MIB: u64 = 64;

/// Every audit record, as `audit export --jsonl` prints them.
async fn audit_lines(gw: &Served) -> Vec<Value> {
    let config = gw.dir.path().join("portcullis.toml");
    let (_, out, err) = run_portcullis(
        &["audit", "export", "--jsonl", "--config", &config.to_string_lossy()],
        "",
        &[],
    )
    .await;
    assert!(!out.is_empty(), "{err}");
    out.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The completion record of the call of `tool`, once it is indexed.
async fn completion_of(gw: &Served, tool: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let records = audit_lines(gw).await;
        if let Some(r) = records
            .iter()
            .find(|l| l["record"]["kind"] == "completion" && l["record"]["target"] == tool)
        {
            return r["record"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "no completion record for {tool}: {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn text_of(r: &Value) -> &str {
    r["result"]["content"][0]["text"].as_str().unwrap_or_default()
}

/// Both upstreams still answer, and `raw` is the process it was (when `pid` is given).
async fn both_still_serve(gw: &Served, pid: Option<&str>) {
    let client = Modern::new(&gw.url);
    let calm = client.call("calm__pid", json!({})).await;
    assert!(
        !text_of(&calm).is_empty(),
        "the healthy upstream stopped serving: {calm}"
    );
    let raw = client.call("raw__pid", json!({})).await;
    assert!(!text_of(&raw).is_empty(), "the faulty upstream stopped serving: {raw}");
    if let Some(pid) = pid {
        assert_eq!(text_of(&raw), pid, "the faulty upstream was restarted");
    }
}

/// Lines that are not JSON-RPC (a banner, half an object, bytes that are not UTF-8) are logged
/// and skipped: many real servers print such lines and still work.
#[tokio::test(flavor = "multi_thread")]
async fn garbage_between_answers_is_logged_and_the_answer_still_arrives() {
    let (gw, _dir) = start("", "").await;
    let client = Modern::new(&gw.url);
    let pid = text_of(&client.call("raw__pid", json!({})).await).to_owned();
    let r = client.call("raw__garbage_then_answer", json!({})).await;
    assert_eq!(text_of(&r), "answered after the garbage", "{r}");
    let log = gw.log.lock().unwrap().join("\n");
    assert!(log.contains("upstream sent a malformed frame"), "{log}");
    both_still_serve(&gw, Some(&pid)).await;
}

/// An answer that is not UTF-8 fails its call at once, not at its 60 s timeout, and is never
/// passed on.
#[tokio::test(flavor = "multi_thread")]
async fn an_answer_that_is_not_utf8_fails_its_call_at_once() {
    let (gw, _dir) = start("", "call_timeout = \"60s\"").await;
    let client = Modern::new(&gw.url);
    let pid = text_of(&client.call("raw__pid", json!({})).await).to_owned();
    let asked = Instant::now();
    let r = client.call("raw__invalid_utf8", json!({})).await;
    assert_eq!(r["error"]["code"], -31002, "{r}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("upstream `raw`: protocol error: the server sent a malformed answer"),
        "{r}"
    );
    assert!(asked.elapsed() < Duration::from_secs(20), "it waited for the timeout");
    both_still_serve(&gw, Some(&pid)).await;
    // Recorded as a failure with its reason: the error was the gateway's, not an answer from
    // the server.
    let done = completion_of(&gw, "invalid_utf8").await;
    assert_eq!(done["outcome"], "failed", "{done}");
    assert!(done["detail"].as_str().unwrap().contains("malformed answer"), "{done}");
}

/// An upstream that crashes mid-call fails the calls in flight at once with the reason, and
/// the audit log records each as failed with that reason — not as an error the server sent.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_mid_call_is_recorded_as_a_failure_with_its_reason() {
    let (gw, _dir) = start("", "call_timeout = \"60s\"").await;
    let url = gw.url.clone();
    let slow = tokio::spawn(async move { Modern::new(&url).call("raw__sleep", json!({"seconds": 50})).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let crash = Modern::new(&gw.url).call("raw__crash", json!({})).await;
    assert_eq!(crash["error"]["code"], -31002, "{crash}");
    let slow = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("the call in flight hung")
        .unwrap();
    assert_eq!(slow["error"]["code"], -31002, "{slow}");
    assert!(slow["error"]["message"].as_str().unwrap().contains("exited"), "{slow}");
    let done = completion_of(&gw, "sleep").await;
    assert_eq!(done["outcome"], "failed", "{done}");
    assert!(done["detail"].as_str().unwrap().contains("exited"), "{done}");
    // The healthy upstream serves all along; the crashed one is restarted.
    let client = Modern::new(&gw.url);
    assert!(!text_of(&client.call("calm__pid", json!({})).await).is_empty());
    let deadline = Instant::now() + Duration::from_secs(20);
    while text_of(&client.call("raw__pid", json!({})).await).is_empty() {
        assert!(Instant::now() < deadline, "the crashed upstream never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A result of 200 MiB fails its call at once with the limit in the error; the gateway never
/// holds it (its peak memory stays far below it), and the upstream is not restarted.
#[tokio::test(flavor = "multi_thread")]
async fn a_200_mib_result_fails_its_call_at_once_and_is_never_held() {
    let (gw, _dir) = start("", "call_timeout = \"120s\"").await;
    let client = Modern::new(&gw.url);
    let pid = text_of(&client.call("raw__pid", json!({})).await).to_owned();
    let before = rss_mib(&gw);
    let asked = Instant::now();
    let r = client.call("raw__huge_result", json!({"mib": 200})).await;
    assert_eq!(r["error"]["code"], -31002, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exceeds the limit of 16777216 bytes"),
        "{r}"
    );
    assert!(asked.elapsed() < Duration::from_secs(60), "it waited for the timeout");
    both_still_serve(&gw, Some(&pid)).await;
    let peak = peak_rss_mib(&gw);
    eprintln!("RSS {before} MiB before, peak {peak} MiB");
    assert!(
        peak.saturating_sub(before) < FAULT_GROWTH_MIB,
        "the gateway's RSS peaked at {peak} MiB from {before} MiB for a 200 MiB answer"
    );
}

/// A line that never ends fails its call as soon as it passes the frame limit; past 64 times
/// the limit the upstream is taken for broken, and restarted. Memory stays bounded throughout,
/// and the other upstream is served all along.
#[tokio::test(flavor = "multi_thread")]
async fn a_line_that_never_ends_fails_its_call_then_restarts_its_upstream() {
    let (gw, _dir) = start("max_frame_bytes = 1048576", "call_timeout = \"60s\"").await;
    let client = Modern::new(&gw.url);
    let pid = text_of(&client.call("raw__pid", json!({})).await).to_owned();
    let before = rss_mib(&gw);
    let asked = Instant::now();
    let r = client.call("raw__endless_line", json!({})).await;
    assert_eq!(r["error"]["code"], -31002, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exceeds the limit of 1048576 bytes"),
        "{r}"
    );
    assert!(asked.elapsed() < Duration::from_secs(20), "it waited for the timeout");
    let calm = client.call("calm__pid", json!({})).await;
    assert!(!text_of(&calm).is_empty(), "{calm}");
    // The upstream comes back as a new process.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = client.call("raw__pid", json!({})).await;
        if !text_of(&r).is_empty() {
            assert_ne!(text_of(&r), pid, "the broken upstream was not restarted");
            break;
        }
        assert!(Instant::now() < deadline, "the upstream never came back: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = gw.log.lock().unwrap().join("\n");
    assert!(log.contains("never ended"), "{log}");
    let peak = peak_rss_mib(&gw);
    eprintln!("RSS {before} MiB before, peak {peak} MiB");
    assert!(
        peak.saturating_sub(before) < FAULT_GROWTH_MIB,
        "the gateway's RSS peaked at {peak} MiB from {before} MiB"
    );
}

/// 200 000 notifications before an answer: the answer arrives, another client is served
/// meanwhile, and what the gateway queues for the client is bounded.
#[tokio::test(flavor = "multi_thread")]
async fn a_notification_flood_is_bounded_and_the_answer_arrives() {
    let (gw, _dir) = start("", "call_timeout = \"120s\"").await;
    let before = rss_mib(&gw);
    let url = gw.url.clone();
    let flood = tokio::spawn(async move {
        Legacy::connect(&url)
            .await
            .call("raw__flood", json!({"count": 200_000}))
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let asked = Instant::now();
    let calm = Modern::new(&gw.url).call("calm__pid", json!({})).await;
    assert!(!text_of(&calm).is_empty(), "{calm}");
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "another client waited {:?} during the flood",
        asked.elapsed()
    );
    let r = tokio::time::timeout(Duration::from_secs(110), flood)
        .await
        .expect("the flooded call never ended")
        .unwrap();
    assert_eq!(text_of(&r), "answered after the flood", "{r}");
    let peak = peak_rss_mib(&gw);
    eprintln!("RSS {before} MiB before, peak {peak} MiB");
    assert!(
        peak.saturating_sub(before) < FAULT_GROWTH_MIB,
        "the gateway's RSS peaked at {peak} MiB from {before} MiB"
    );
}

/// A request the upstream makes of the client (sampling) that the client never answers ends
/// at the call's timeout with a precise error; the upstream is told, and serves on.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_the_client_never_answers_ends_with_the_call_timeout() {
    let (gw, _dir) = start("", "call_timeout = \"2s\"").await;
    // A 2025-11-25 client that declares sampling, then never answers the request it is sent.
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {"sampling": {}},
        "clientInfo": {"name": "silent", "version": "0"}
    }});
    let r = post(&gw.url, &[], init.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let session = r.headers["mcp-session-id"].to_str().unwrap().to_owned();
    let headers = [
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(post(&gw.url, &headers, note.to_string()).await.status, 202);
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "raw__ask",
        "arguments": {"method": "sampling/createMessage", "params": {
            "messages": [{"role": "user", "content": {"type": "text", "text": "hello"}}], "maxTokens": 5}}
    }});
    let asked = Instant::now();
    let reply = post(&gw.url, &headers, call.to_string()).await;
    let messages = reply.messages();
    assert!(
        messages.iter().any(|m| m["method"] == "sampling/createMessage"),
        "the client was never asked: {messages:?}"
    );
    let answer = reply.response();
    assert_eq!(answer["id"], 1, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("did not answer within 2000 ms"),
        "{answer}"
    );
    assert!(asked.elapsed() < Duration::from_secs(15), "{:?}", asked.elapsed());
    both_still_serve(&gw, None).await;
    let done = completion_of(&gw, "ask").await;
    assert_eq!(done["outcome"], "failed", "{done}");
}

/// A 2026-07-28 client that goes away mid-call cancels it (the revision says a closed stream
/// is the cancellation): the upstream is told, the gateway serves on, and the log says the
/// call did not complete.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_disconnects_mid_call_cancels_it_upstream() {
    let (gw, _dir) = start("", "call_timeout = \"60s\"").await;
    let url = gw.url.clone();
    let call = tokio::spawn(async move { Modern::new(&url).call("raw__sleep", json!({"seconds": 30})).await });
    tokio::time::sleep(Duration::from_millis(800)).await;
    call.abort();
    let _ = call.await;
    let client = Modern::new(&gw.url);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = client.call("raw__cancelled", json!({})).await;
        let cancelled: Vec<Value> = serde_json::from_str(text_of(&r)).unwrap_or_default();
        if !cancelled.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the upstream was never told: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    both_still_serve(&gw, None).await;
    let done = completion_of(&gw, "sleep").await;
    assert_eq!(done["outcome"], "cancelled", "{done}");
}

/// An upstream that never answers its handshake: once its start budget is spent, a call to it
/// fails with the reason (not its own timeout, not "unknown tool"), and the other upstream is
/// served all along.
#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_never_answers_its_handshake_fails_its_calls_with_the_reason() {
    let raw = toml_str(&raw_server().to_string_lossy());
    let gw = Served::start(&format!(
        "[upstreams.mute]\ncommand = \"python3\"\nargs = [{raw}, \"--slow-start\", \"3600\"]\nstart_timeout = \"2s\"\n\n{}",
        raw_upstream("calm", "")
    ))
    .await;
    gw.wait_for_tools(&["calm__"]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let client = Modern::new(&gw.url);
    let asked = Instant::now();
    let r = client.call("mute__pid", json!({})).await;
    let message = r["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("mute") && message.contains("handshake"), "{r}");
    assert!(asked.elapsed() < Duration::from_secs(10), "{:?}", asked.elapsed());
    let calm = client.call("calm__pid", json!({})).await;
    assert!(!text_of(&calm).is_empty(), "{calm}");
    let (_, out, err) = run_portcullis(
        &[
            "tools",
            "--config",
            &gw.dir.path().join("portcullis.toml").to_string_lossy(),
        ],
        "",
        &[],
    )
    .await;
    assert!(format!("{out}{err}").contains("handshake"), "{out}{err}");
}

/// How one of many concurrent calls ended.
#[derive(Debug)]
enum Ended {
    Answered,
    Overloaded,
    Closed,
    Other(u16, String),
}

/// 10 000 calls at once from one client: as many run as its `max_concurrent_calls` allows;
/// every other one is answered at once (429, `-31004`, `Retry-After`), or past the listener's
/// 4 096 open connections its connection is closed at once. Nothing hangs, memory stays
/// bounded, every call that ran has its decision and its end on record, and the gateway serves
/// normally afterwards.
#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_calls_at_once_are_run_or_refused_at_once() {
    let (gw, _dir) = start("", "call_timeout = \"30s\"").await;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(90))
        .build()
        .unwrap();
    let started = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for id in 0..10_000u64 {
        let (http, url) = (http.clone(), gw.url.clone());
        calls.spawn(async move {
            let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
                "name": "raw__sleep", "arguments": {"seconds": 1},
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                    "io.modelcontextprotocol/clientInfo": {"name": "crowd", "version": "0"}
                }
            }});
            let sent = http
                .post(&url)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2026-07-28")
                .header("mcp-method", "tools/call")
                .header("mcp-name", "raw__sleep")
                .body(body.to_string())
                .send()
                .await;
            let Ok(resp) = sent else { return Ended::Closed };
            let status = resp.status().as_u16();
            let retry_after = resp.headers().contains_key("retry-after");
            let text = resp.text().await.unwrap_or_default();
            match status {
                200 if text.contains("slept") => Ended::Answered,
                429 if retry_after && text.contains("-31004") => Ended::Overloaded,
                _ => Ended::Other(status, text),
            }
        });
    }
    let (mut answered, mut overloaded, mut closed) = (0usize, 0usize, 0usize);
    while let Some(ended) = calls.join_next().await {
        match ended.unwrap() {
            Ended::Answered => answered += 1,
            Ended::Overloaded => overloaded += 1,
            Ended::Closed => closed += 1,
            Ended::Other(status, text) => panic!("a call ended with {status}: {text}"),
        }
    }
    let took = started.elapsed();
    eprintln!("answered {answered}, overloaded {overloaded}, closed {closed} in {took:?}");
    assert!(answered >= 64, "answered {answered}");
    assert!(
        overloaded > 0,
        "nothing was refused: answered {answered}, closed {closed}"
    );
    assert!(took < Duration::from_secs(80), "{took:?}");
    both_still_serve(&gw, None).await;
    let peak = peak_rss_mib(&gw);
    eprintln!("peak RSS {peak} MiB");
    assert!(peak < 400, "the gateway's peak RSS was {peak} MiB");

    // Each call that ran is on record, with its end; a refused one never reached the upstream.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let records = audit_lines(&gw).await;
        let sleeps = |kind: &str| {
            records
                .iter()
                .filter(|l| l["record"]["kind"] == kind && l["record"]["target"] == "sleep")
                .count()
        };
        if sleeps("decision") == answered && sleeps("completion") == answered {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} decisions and {} completions for {answered} answered calls",
            sleeps("decision"),
            sleeps("completion")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
