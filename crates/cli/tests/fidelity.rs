//! The gateway forwards raw JSON: fields no revision of the spec names survive the trip in
//! both directions, for clients of either era, and the upstream supervisor keeps its promises
//! (a crash fails in-flight calls at once and restarts the server; a slow call times out; an
//! unreachable HTTP upstream fails only its own tools).

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers"
)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

fn tool<'a>(tools: &'a [Value], name: &str) -> &'a Value {
    tools
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no tool {name} in {tools:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_fields_in_definitions_results_and_params_arrive_unchanged() {
    let gw = Served::start(&raw_upstream("raw", "")).await;
    let tools = gw.wait_for_tools(&["raw__"]).await;

    // The tool definition: every unknown field, at every depth, as the upstream sent it.
    let def = tool(&tools, "raw__echo_params");
    assert_eq!(def["x-tool-extension"], json!({"nested": {"deeper": ["a", 1, 2.5]}}));
    assert_eq!(def["inputSchema"]["x-schema-extension"], json!({"keep": "me"}));
    assert_eq!(def["annotations"]["x-annotation-extension"], json!(7));
    assert_eq!(def["_meta"]["example.com/tool-meta"], json!("kept"));

    let args = json!({"text": "hi", "deep": {"list": [1, {"x": null}], "unicode": "ünï\u{200b}"}});
    let extra_param = json!({"nested": [true, {"k": "v"}]});

    // A modern client.
    let modern = Modern::new(&gw.url)
        .request(
            "tools/call",
            json!({"name": "raw__echo_params", "arguments": args, "x-param-extension": extra_param}),
        )
        .await
        .response();
    let result = &modern["result"];
    assert_eq!(result["x-result-extension"], json!({"r": [true, false]}), "{modern}");
    assert_eq!(result["content"][0]["x-content-extension"], json!("c"));
    let seen = &result["structuredContent"]["params"];
    assert_eq!(seen["name"], "echo_params", "the upstream sees its own tool name");
    assert_eq!(seen["arguments"], args);
    assert_eq!(seen["x-param-extension"], extra_param);

    // A legacy client.
    let legacy = Legacy::connect(&gw.url).await;
    let r = legacy
        .request(
            "tools/call",
            json!({"name": "raw__echo_params", "arguments": args, "x-param-extension": extra_param}),
        )
        .await
        .response();
    assert_eq!(r["result"]["x-result-extension"], json!({"r": [true, false]}), "{r}");
    assert_eq!(r["result"]["structuredContent"]["params"]["arguments"], args);
    assert_eq!(
        r["result"]["structuredContent"]["params"]["x-param-extension"],
        extra_param
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_fails_the_in_flight_call_at_once_and_the_server_comes_back() {
    let gw = Served::start(&raw_upstream("raw", "call_timeout = \"60s\"")).await;
    gw.wait_for_tools(&["raw__"]).await;
    let client = Modern::new(&gw.url);
    let before = client.call("raw__pid", json!({})).await;
    let pid_before = before["result"]["content"][0]["text"].as_str().unwrap().to_owned();

    // A slow call is in flight when the server dies.
    let url = gw.url.clone();
    let slow = tokio::spawn(async move { Modern::new(&url).call("raw__sleep", json!({"seconds": 50})).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let crash = client.call("raw__crash", json!({})).await;
    assert!(crash.get("error").is_some(), "the crashing call must fail: {crash}");
    let slow = tokio::time::timeout(Duration::from_secs(5), slow)
        .await
        .expect("in-flight call hung")
        .unwrap();
    assert!(slow.get("error").is_some(), "the in-flight call must fail: {slow}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // Restarted with backoff: a new process answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = client.call("raw__pid", json!({})).await;
        if let Some(pid) = r["result"]["content"][0]["text"].as_str() {
            assert_ne!(pid, pid_before, "a new process must serve after the restart");
            break;
        }
        assert!(Instant::now() < deadline, "the upstream never came back: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_past_its_timeout_gets_an_error_and_others_still_work() {
    let gw = Served::start(&raw_upstream("raw", "call_timeout = \"1s\"")).await;
    gw.wait_for_tools(&["raw__"]).await;
    let client = Modern::new(&gw.url);
    let started = Instant::now();
    let r = client.call("raw__sleep", json!({"seconds": 10})).await;
    let elapsed = started.elapsed();
    let err = r
        .get("error")
        .unwrap_or_else(|| panic!("expected a timeout error: {r}"));
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("did not answer within 1000 ms"),
        "{err}"
    );
    assert!(elapsed < Duration::from_secs(5), "the timeout took {elapsed:?}");
    let ok = client.call("raw__pid", json!({})).await;
    assert!(ok.get("result").is_some(), "{ok}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_http_upstream_fails_only_its_own_tools() {
    let dead = format!("http://127.0.0.1:{}/mcp", free_port());
    let upstreams = format!(
        "{}\n[upstreams.gone]\nurl = {}\n",
        raw_upstream("raw", ""),
        toml_str(&dead)
    );
    let gw = Served::start(&upstreams).await;
    gw.wait_for_tools(&["raw__"]).await;
    let client = Modern::new(&gw.url);
    let ok = client.call("raw__pid", json!({})).await;
    assert!(ok.get("result").is_some(), "{ok}");
    let r = client.call("gone__anything", json!({})).await;
    let msg = r["error"]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("gone"), "the error names the unreachable upstream: {r}");
}

async fn cancelled_at_upstream(client: &Modern) -> Vec<Value> {
    let r = client.call("raw__cancelled", json!({})).await;
    serde_json::from_str(r["result"]["content"][0]["text"].as_str().unwrap()).unwrap()
}

async fn wait_cancelled(client: &Modern, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seen = cancelled_at_upstream(client).await;
        if seen.len() >= n || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cancellation_reaches_the_upstream_from_both_eras() {
    let gw = Served::start(&raw_upstream("raw", "")).await;
    gw.wait_for_tools(&["raw__"]).await;
    let probe = Modern::new(&gw.url);
    assert!(cancelled_at_upstream(&probe).await.is_empty());

    // 2025-11-25: `notifications/cancelled` for the client's request id.
    let legacy = std::sync::Arc::new(Legacy::connect(&gw.url).await);
    let caller = legacy.clone();
    let slow = tokio::spawn(async move {
        caller
            .request(
                "tools/call",
                json!({"name": "raw__sleep", "arguments": {"seconds": 30}}),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let note =
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1, "reason": "user"}});
    let r = post(
        &gw.url,
        &[("mcp-session-id", legacy.session.as_str())],
        note.to_string(),
    )
    .await;
    assert_eq!(r.status, 202);
    assert_eq!(
        wait_cancelled(&probe, 1).await.len(),
        1,
        "the upstream was not told of the legacy cancellation"
    );
    slow.abort();

    // 2026-07-28: the client closing its request's stream is the cancellation.
    let url = gw.url.clone();
    let slow = tokio::spawn(async move { Modern::new(&url).call("raw__sleep", json!({"seconds": 30})).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    slow.abort();
    assert_eq!(
        wait_cancelled(&probe, 2).await.len(),
        2,
        "the upstream was not told of the modern cancellation"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_over_its_concurrency_limit_gets_429_and_a_retry_after() {
    let gw = Served::start_with(&raw_upstream("raw", ""), "max_concurrent_calls = 2").await;
    gw.wait_for_tools(&["raw__"]).await;
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let url = gw.url.clone();
            tokio::spawn(async move { Modern::new(&url).call("raw__sleep", json!({"seconds": 2})).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = Modern::new(&gw.url)
        .request("tools/call", json!({"name": "raw__pid", "arguments": {}}))
        .await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(r.response()["error"]["code"], -31004);
    for s in slow {
        let done = s.await.unwrap();
        assert!(done.get("result").is_some(), "{done}");
    }
    let ok = Modern::new(&gw.url).call("raw__pid", json!({})).await;
    assert!(ok.get("result").is_some(), "permits come back when calls finish: {ok}");
}

#[tokio::test(flavor = "multi_thread")]
async fn merged_lists_are_paginated_without_loss_or_duplicates() {
    let upstreams = format!("{}\n{}", raw_upstream("one", ""), raw_upstream("two", ""));
    let gw = Served::start_with(&upstreams, "page_size = 3").await;
    let all = gw.wait_for_tools(&["one__", "two__"]).await;
    let first = Modern::new(&gw.url).request("tools/list", json!({})).await.response();
    assert_eq!(first["result"]["tools"].as_array().unwrap().len(), 3, "{first}");
    assert!(
        first["result"]["nextCursor"].is_string(),
        "a first page of a longer list has a cursor"
    );
    let mut names: Vec<&str> = all.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 14, "seven tools from each of two upstreams: {names:?}");
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 14, "no tool appears on two pages");

    let bad = Modern::new(&gw.url)
        .request("tools/list", json!({"cursor": "not-a-cursor"}))
        .await
        .response();
    assert_eq!(bad["error"]["code"], -32602, "a forged cursor is invalid params: {bad}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_right_after_start_waits_for_its_upstream_instead_of_failing() {
    // No listing first: a host may call a tool it remembers as soon as the gateway is up.
    let gw = Served::start(&raw_upstream("raw", "")).await;
    let r = Modern::new(&gw.url).call("raw__pid", json!({})).await;
    assert!(r.get("result").is_some(), "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn each_http_upstream_gets_only_its_own_headers_and_never_the_clients() {
    let (a, b) = (header_echo().await, header_echo().await);
    let upstreams = format!(
        "[upstreams.a]\nurl = {}\nheaders = {{ X-Upstream-Secret = \"alpha-3f9c\" }}\n\n[upstreams.b]\nurl = {}\nheaders = {{ X-Upstream-Secret = \"beta-7d21\" }}\n",
        toml_str(&a.url),
        toml_str(&b.url)
    );
    let gw = Served::start(&upstreams).await;
    gw.wait_for_tools(&["a__", "b__"]).await;
    // The client sends its own credential to the gateway; it must stop there.
    let call = |tool: &'static str| {
        let url = gw.url.clone();
        async move {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": {},
                "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}});
            let r = post(
                &url,
                &[
                    ("mcp-protocol-version", "2026-07-28"),
                    ("mcp-method", "tools/call"),
                    ("mcp-name", tool),
                    ("authorization", "Bearer client-token-9e1f"),
                    ("cookie", "session=client-cookie-51aa"),
                ],
                body.to_string(),
            )
            .await
            .response();
            r["result"]["content"][0]["text"]
                .as_str()
                .unwrap_or_else(|| panic!("{r}"))
                .to_owned()
        }
    };
    let seen_a = call("a__headers").await;
    let seen_b = call("b__headers").await;
    assert!(
        seen_a.contains("alpha-3f9c") && !seen_a.contains("beta-7d21"),
        "{seen_a}"
    );
    assert!(
        seen_b.contains("beta-7d21") && !seen_b.contains("alpha-3f9c"),
        "{seen_b}"
    );
    for seen in [&seen_a, &seen_b] {
        assert!(
            !seen.contains("client-token-9e1f"),
            "a client's token reached an upstream: {seen}"
        );
        assert!(
            !seen.contains("client-cookie-51aa"),
            "a client's cookie reached an upstream: {seen}"
        );
    }
}

/// Regression (issue 19): a stdio server that took more than 5 s to start lost its era probe
/// to a timeout, was sent `initialize` on top of the unanswered probe, refused it (-32022: a
/// modern server that had read the probe by then), and the gateway went without it for 10–19
/// s, refusing calls. Now the probe waits for the start budget (`start_timeout`, 60 s by
/// default), and a call that arrives meanwhile waits for the server.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_starting_modern_server_is_waited_for_not_refused() {
    let upstream = format!(
        "[upstreams.slow]\ncommand = \"python3\"\nargs = [{}, \"--modern\", \"--modern-only\", \"--slow-start\", \"7\"]\n",
        toml_str(&raw_server().to_string_lossy())
    );
    let gw = Served::start(&upstream).await;
    let asked = std::time::Instant::now();
    let r = Modern::new(&gw.url).call("slow__pid", json!({})).await;
    assert!(r["result"]["content"][0]["text"].is_string(), "{r}");
    assert!(
        asked.elapsed() >= std::time::Duration::from_secs(3),
        "the server was meant to be slow"
    );
    let log = gw.log.lock().unwrap().join("\n");
    assert!(!log.contains("initialize failed"), "{log}");
}

/// Regression (issue 19): an upstream answer over the frame limit left the call to its
/// timeout. The frame's id is read from its edges, and the call fails at once, precisely.
#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_answer_over_the_frame_limit_fails_its_call_at_once() {
    let gw = Served::start_with(&raw_upstream("raw", "call_timeout = \"60s\""), "max_frame_bytes = 2048").await;
    gw.wait_for_tools(&["raw__"]).await;
    // A request under the limit whose echo (twice, once escaped) is over it.
    let asked = std::time::Instant::now();
    let r = Modern::new(&gw.url)
        .call("raw__echo_params", json!({"pad": "p".repeat(900)}))
        .await;
    assert_eq!(r["error"]["code"], -31002, "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exceeds the limit of 2048 bytes"),
        "{r}"
    );
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(30),
        "it waited for the timeout"
    );
}
