//! The HTTP front's hard edges, against a real `portcullis serve`: DNS-rebinding protection,
//! malformed JSON-RPC, oversize frames, deep JSON, unknown methods and session rules. Each
//! answer carries the right status and JSON-RPC error code and leaves no partial state.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers"
)]

mod common;

use common::*;
use serde_json::{Value, json};

async fn gateway() -> Served {
    Served::start_with(
        &format!(
            "[upstreams.raw]\ncommand = \"python3\"\nargs = [{}]\n",
            toml_str(&raw_server().to_string_lossy())
        ),
        "max_frame_bytes = 4096\nmax_json_depth = 16",
    )
    .await
}

fn code(r: &Reply) -> i64 {
    let v: Value = serde_json::from_str(&r.body).unwrap_or_else(|_| panic!("not JSON: {} {}", r.status, r.body));
    v["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("no error code: {v}"))
}

fn discover() -> String {
    json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    }}})
    .to_string()
}

const MODERN: [(&str, &str); 2] = [
    ("mcp-protocol-version", "2026-07-28"),
    ("mcp-method", "server/discover"),
];

#[tokio::test(flavor = "multi_thread")]
async fn dns_rebinding_foreign_host_and_origin_are_refused() {
    let gw = gateway().await;
    let ok = post(&gw.url, &MODERN, discover()).await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    let mut h = MODERN.to_vec();
    h.push(("host", "evil.example:80"));
    let r = post(&gw.url, &h, discover()).await;
    assert_eq!(r.status, 403, "a foreign Host must be refused: {}", r.body);

    let mut h = MODERN.to_vec();
    h.push(("origin", "http://evil.example"));
    let r = post(&gw.url, &h, discover()).await;
    assert_eq!(r.status, 403, "a foreign Origin must be refused: {}", r.body);

    let mut h = MODERN.to_vec();
    h.push(("origin", "http://localhost:5173"));
    let r = post(&gw.url, &h, discover()).await;
    assert_eq!(r.status, 200, "a loopback Origin is fine: {}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_messages_get_the_right_json_rpc_codes() {
    let gw = gateway().await;
    let cases: &[(&str, String, i64)] = &[
        ("not JSON", "{\"jsonrpc\": \"2.0\", ".into(), -32700),
        ("wrong version", json!({"jsonrpc": "1.0", "id": 1, "method": "ping"}).to_string(), -32600),
        ("method not a string", json!({"jsonrpc": "2.0", "id": 1, "method": 7}).to_string(), -32600),
        ("Mcp-Method header disagrees with the body", json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}}).to_string(), -32020),
        ("params not structured", json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": 3}).to_string(), -32600),
        ("too deep", format!("{}{}", "[".repeat(40), "]".repeat(40)), -32700),
    ];
    for (what, body, want) in cases {
        let r = post(&gw.url, &MODERN, body.clone()).await;
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        assert_eq!(code(&r), *want, "{what}: {}", r.body);
    }

    let big = json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "x".repeat(10_000)}}).to_string();
    let r = post(&gw.url, &MODERN, big).await;
    assert_eq!(r.status, 413, "oversize frame: {}", r.body);
    assert_eq!(code(&r), -32600);

    // An unknown method, modern era: 404 with -32601.
    let unknown = json!({"jsonrpc": "2.0", "id": 9, "method": "no/such", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    }}});
    let r = post(
        &gw.url,
        &[("mcp-protocol-version", "2026-07-28"), ("mcp-method", "no/such")],
        unknown.to_string(),
    )
    .await;
    assert_eq!(code(&r), -32601, "{}", r.body);

    // After all that, the gateway still serves.
    let ok = post(&gw.url, &MODERN, discover()).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_sessions_are_required_and_end_with_delete() {
    let gw = gateway().await;
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string();
    let r = post(&gw.url, &[("mcp-protocol-version", "2025-11-25")], list.clone()).await;
    assert_eq!(r.status, 400, "no session: {}", r.body);
    let r = post(
        &gw.url,
        &[("mcp-session-id", "made-up"), ("mcp-protocol-version", "2025-11-25")],
        list.clone(),
    )
    .await;
    assert_eq!(r.status, 404, "unknown session: {}", r.body);

    let s = Legacy::connect(&gw.url).await;
    assert!(
        s.request("tools/list", json!({}))
            .await
            .response()
            .get("result")
            .is_some()
    );
    let client = reqwest::Client::new();
    let del = client
        .delete(&gw.url)
        .header("mcp-session-id", &s.session)
        .send()
        .await
        .unwrap();
    assert!(del.status().is_success(), "{}", del.status());
    let r = s.request("tools/list", json!({})).await;
    assert_eq!(r.status, 404, "an ended session is gone: {}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn modern_header_body_mismatch_is_refused() {
    let gw = gateway().await;
    let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
        "name": "raw__pid", "arguments": {},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    }})
    .to_string();
    let base = [("mcp-protocol-version", "2026-07-28"), ("mcp-method", "tools/call")];
    let mut h = base.to_vec();
    h.push(("mcp-name", "raw__crash"));
    let r = post(&gw.url, &h, call.clone()).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(code(&r), -32020, "{}", r.body);
    let r = post(&gw.url, &base, call.clone()).await;
    assert_eq!(code(&r), -32020, "missing Mcp-Name: {}", r.body);
}

/// Regression: slow headers and bodies were never timed out (3 500 connections held open for
/// 60 s). Headers must arrive within `header_timeout`, a body within `body_timeout`.
#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_and_bodies_are_cut_off() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let gw = Served::start_with(
        &format!(
            "[upstreams.raw]\ncommand = \"python3\"\nargs = [{}]\n",
            toml_str(&raw_server().to_string_lossy())
        ),
        "header_timeout = \"1s\"\nbody_timeout = \"1s\"",
    )
    .await;
    let addr = gw.url.trim_start_matches("http://").trim_end_matches("/mcp").to_owned();
    // Headers that never end: the connection is closed.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection was still open after 5 s");
    // A body that never comes: 408.
    let mut slow = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slow.write_all(
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\"",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), slow.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
}

/// Regression: one principal could fill the global cap of legacy sessions, and everyone else
/// got 503. A principal past its own cap loses its own oldest session, nobody else's.
#[tokio::test(flavor = "multi_thread")]
async fn one_principal_cannot_take_every_legacy_session() {
    let gw = gateway().await;
    let first = Legacy::connect(&gw.url).await;
    let r = first.request("ping", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    for _ in 0..64 {
        let _ = Legacy::connect(&gw.url).await;
    }
    // The 65th session took the place of the principal's oldest.
    let r = first.request("ping", json!({})).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let last = Legacy::connect(&gw.url).await;
    assert_eq!(last.request("ping", json!({})).await.status, 200);
}
