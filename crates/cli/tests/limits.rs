//! Rate and volume limits end to end, through `portcullis serve` with a real (raw JSON) MCP
//! server: a tool's call allowance runs out with a clear error and a retry-after; a byte
//! allowance refuses the call after the one that overdrew it; the principal's overall limit
//! covers every upstream; `context.calls_in_window` reaches Cedar; a bad limit stops the gateway
//! before it serves.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers"
)]

mod common;

use common::*;
use serde_json::{Value, json};

fn refusal(r: &Value) -> &Value {
    let e = &r["error"];
    assert_eq!(e["code"], -31005, "a rate-limit refusal: {r}");
    &e["data"]
}

fn text(r: &Value) -> &str {
    r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a result: {r}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_allowance_runs_out_with_retry_after() {
    let gw = Served::start(&raw_upstream(
        "raw",
        // The tool's output is its own echo: trusted, so the flow rule does not hold the sends.
        "output = \"trusted\"\n[upstreams.raw.tools.send_message]\nrate = { calls = 2, window = \"1h\" }\n",
    ))
    .await;
    gw.wait_for_tools(&["raw__"]).await;
    let client = Modern::new(&gw.url);
    for _ in 0..2 {
        let r = client.call("raw__send_message", json!({"to": "a@example.com"})).await;
        assert_eq!(text(&r), "sent to a@example.com");
    }
    let r = client.call("raw__send_message", json!({"to": "a@example.com"})).await;
    let data = refusal(&r);
    // Two calls an hour: the next token comes in half an hour (less the time the calls took).
    let retry = data["retryAfterSeconds"].as_u64().unwrap();
    assert!((1790..=1800).contains(&retry), "{r}");
    assert_eq!(data["limit"], 2);
    assert_eq!(data["measure"], "calls");
    assert_eq!(data["windowSeconds"], 3600);
    let message = r["error"]["message"].as_str().unwrap();
    assert_eq!(
        message,
        format!(
            "rate limit reached for calls to tool `send_message` of upstream `raw`: 2 calls per 3600s; retry after {retry}s"
        )
    );
    // Other tools of the upstream are not limited by it.
    let r = client.call("raw__pid", json!({})).await;
    assert!(r["result"].is_object(), "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_byte_allowance_refuses_once_overdrawn() {
    let gw = Served::start(&raw_upstream(
        "raw",
        "[upstreams.raw.rate]\nbytes = 200\nwindow = \"1h\"\n",
    ))
    .await;
    gw.wait_for_tools(&["raw__"]).await;
    let client = Modern::new(&gw.url);
    // echo_params returns its params twice over (text and structured): well over 200 bytes.
    let big = "x".repeat(300);
    let r = client.call("raw__echo_params", json!({"pad": big})).await;
    assert!(r["result"].is_object(), "the call that overdraws is served: {r}");
    let r = client.call("raw__pid", json!({})).await;
    let data = refusal(&r);
    assert_eq!(data["measure"], "bytes", "{r}");
    assert_eq!(data["scope"], "calls to upstream `raw`", "{r}");
    assert!(data["retryAfterSeconds"].as_u64().unwrap() >= 1800, "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_principal_limit_spans_upstreams() {
    let upstreams = format!("{}{}", raw_upstream("one", ""), raw_upstream("two", ""));
    let gw = Served::start_with(
        &upstreams,
        "\n[rate]\ncalls = 3\nwindow = \"1m\"\n\n[approvals]\nask = false\n",
    )
    .await;
    gw.wait_for_tools(&["one__", "two__"]).await;
    let client = Modern::new(&gw.url);
    for tool in ["one__pid", "two__pid", "one__pid"] {
        let r = client.call(tool, json!({})).await;
        assert!(r["result"].is_object(), "{r}");
    }
    let r = client.call("two__pid", json!({})).await;
    let data = refusal(&r);
    assert_eq!(data["scope"], "all calls");
    let retry = data["retryAfterSeconds"].as_u64().unwrap();
    assert!((10..=20).contains(&retry), "one call in 20 s: {r}");
    // A call policy denies does not spend the allowance (the default profile holds
    // destructive calls): the refusal is policy's, not the limit's.
    let r = client.call("one__delete_everything", json!({})).await;
    assert_eq!(r["error"]["code"], -31001, "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_in_window_reach_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.cedar");
    std::fs::write(
        &policy,
        r#"
@id("one-pid-a-minute")
@reason("pid may be called once a minute")
forbid (principal, action == Action::"call_tool", resource)
when { resource.name == "pid" && context.calls_in_window >= 1 };
"#,
    )
    .unwrap();
    let upstream = format!(
        "[policy]\nfiles = [{}]\n\n{}",
        toml_str(&policy.to_string_lossy()),
        raw_upstream("raw", "")
    );
    let gw = Served::start(&upstream).await;
    gw.wait_for_tools(&["raw__"]).await;
    let client = Modern::new(&gw.url);
    let r = client.call("raw__pid", json!({})).await;
    assert!(r["result"].is_object(), "{r}");
    let r = client.call("raw__pid", json!({})).await;
    assert_eq!(r["error"]["code"], -31001, "{r}");
    assert_eq!(r["error"]["data"]["policies"], json!(["one-pid-a-minute"]), "{r}");
    // Counted per tool: another tool is unaffected.
    let r = client.call("raw__cancelled", json!({})).await;
    assert!(r["result"].is_object(), "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_limit_stops_the_gateway_before_it_serves() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[rate]\ncalls = 0\nwindow = \"1m\"\n",
            "`rate.calls`: must be at least 1",
        ),
        ("[rate]\ncalls = 5\n", "`rate.window`: is required"),
        ("[rate]\nwindow = \"1m\"\n", "`rate`: needs `calls`, `bytes`, or both"),
        (
            "[rate]\ncalls = 5\nwindow = \"soon\"\n",
            "`rate.window`: `soon` is not a duration",
        ),
        (
            "[upstreams.raw]\ncommand = \"x\"\n[upstreams.raw.tools.t]\nrate = { calls = 1, window = \"1m\", burst = 2 }\n",
            "unknown field `burst`",
        ),
    ];
    for (text, want) in cases {
        let path = dir.path().join("portcullis.toml");
        std::fs::write(&path, text).unwrap();
        let out = tokio::process::Command::new(portcullis())
            .args(["serve", "--config", path.to_str().unwrap()])
            .output()
            .await
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{text}: {err}");
        assert!(err.contains(want), "{text}: {err}");
    }
}
