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

/// Issue 19 (fuzzing, wider): the HTTP front under any request a hostile client can write —
/// any method and path, any mix of the headers it reads (`Content-Type`, `Accept`, `Mcp-*`,
/// `Mcp-Session-Id`, `Last-Event-ID` for SSE resumption, `Host`, `Origin`, `Authorization`,
/// `Content-Length`, `Transfer-Encoding`) with plausible, wrong and non-ASCII values, and
/// bodies that are real messages broken at any byte. Every request gets an HTTP answer (never a
/// dropped connection or a hang), never a 500, a JSON answer is JSON-RPC, and afterwards the
/// gateway still serves and has logged no panic.
#[tokio::test(flavor = "multi_thread")]
async fn any_request_gets_a_precise_answer_and_the_front_keeps_serving() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};

    let gw = Served::start_with(
        &raw_upstream("raw", ""),
        "max_frame_bytes = 4096\nmax_json_depth = 16\nheader_timeout = \"1s\"\nbody_timeout = \"1s\"",
    )
    .await;
    gw.wait_for_tools(&["raw__"]).await;
    let session = Legacy::connect(&gw.url).await.session;
    let addr = gw.url.trim_start_matches("http://").trim_end_matches("/mcp").to_owned();

    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let seeds: Vec<Vec<u8>> = [
        json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}}),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": meta}}),
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "raw__pid", "arguments": {}, "_meta": meta}}),
        json!({"jsonrpc": "2.0", "id": 4, "method": "ping"}),
        json!({"jsonrpc": "2.0", "id": 5, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "f", "version": "0"}}}),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "id": 6, "result": {}}),
        json!([{"jsonrpc": "2.0", "id": 7, "method": "ping"}]),
    ]
    .iter()
    .map(|v| v.to_string().into_bytes())
    .collect();

    let header_value = prop_oneof![
        Just("application/json".to_owned()),
        Just("text/event-stream".to_owned()),
        Just("application/json, text/event-stream".to_owned()),
        Just("2026-07-28".to_owned()),
        Just("2025-11-25".to_owned()),
        Just("tools/call".to_owned()),
        Just("server/discover".to_owned()),
        Just("raw__pid".to_owned()),
        Just(session.clone()),
        Just(format!("{session}x")),
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("99999999999999999999".to_owned()),
        Just("chunked".to_owned()),
        Just("http://127.0.0.1".to_owned()),
        Just("http://evil.example".to_owned()),
        Just("null".to_owned()),
        Just("Bearer pk_not_a_key".to_owned()),
        Just("x".repeat(9_000)),
        "[ -~]{0,40}",
        // Bytes a header value may carry on the wire but not as text (obs-text).
        prop::collection::vec(0x80u8..=0xff, 1..8).prop_map(|b| b.iter().map(|&c| char::from(c)).collect()),
    ];
    let header_name = prop_oneof![
        Just("content-type"),
        Just("accept"),
        Just("mcp-protocol-version"),
        Just("mcp-method"),
        Just("mcp-name"),
        Just("mcp-session-id"),
        Just("last-event-id"),
        Just("origin"),
        Just("host"),
        Just("authorization"),
        Just("content-length"),
        Just("transfer-encoding"),
        Just("expect"),
        Just("x-anything"),
    ];
    let method = prop_oneof![
        6 => Just("POST"),
        2 => Just("GET"),
        1 => Just("DELETE"),
        1 => Just("PUT"),
        1 => Just("OPTIONS"),
        1 => Just("HEAD"),
        1 => Just("BREW"),
    ];
    let path = prop_oneof![
        8 => Just("/mcp".to_owned()),
        1 => Just("/mcp?session=1".to_owned()),
        1 => Just("/mcp/../healthz".to_owned()),
        1 => Just("/.well-known/oauth-protected-resource".to_owned()),
        1 => Just("/metrics".to_owned()),
        1 => "/[a-z%./]{0,12}",
    ];
    // A seed, then a byte replaced, a cut, or junk instead.
    type Body = (
        usize,
        Option<(prop::sample::Index, u8)>,
        Option<prop::sample::Index>,
        Option<Vec<u8>>,
    );
    let n = seeds.len();
    let body = prop_oneof![
        (0..n).prop_map(|i| -> Body { (i, None, None, None) }),
        (0..n, any::<prop::sample::Index>(), any::<u8>())
            .prop_map(|(i, at, b)| -> Body { (i, Some((at, b)), None, None) }),
        (0..n, any::<prop::sample::Index>()).prop_map(|(i, at)| -> Body { (i, None, Some(at), None) }),
        (0..n, prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(i, junk)| -> Body { (i, None, None, Some(junk)) }),
    ];
    let strategy = (
        method,
        path,
        prop::collection::vec((header_name, header_value), 0..6),
        body,
    );

    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let result = tokio::task::block_in_place(|| {
        runner
            .run(&strategy, |(method, path, headers, (seed, flip, cut, junk))| {
                let mut body = seeds[seed].clone();
                if let Some((at, b)) = flip {
                    let i = at.index(body.len());
                    body[i] = b;
                }
                if let Some(at) = cut {
                    body.truncate(at.index(body.len()));
                }
                if let Some(junk) = junk {
                    body = junk;
                }
                let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n").into_bytes();
                let framed = headers
                    .iter()
                    .any(|(k, _)| *k == "content-length" || *k == "transfer-encoding");
                for (k, v) in &headers {
                    req.extend_from_slice(k.as_bytes());
                    req.extend_from_slice(b": ");
                    // As bytes: `char`s 0x80..=0xff stand for single obs-text bytes.
                    req.extend(v.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')));
                    req.extend_from_slice(b"\r\n");
                }
                if !framed {
                    req.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
                }
                req.extend_from_slice(b"\r\n");
                req.extend_from_slice(&body);
                let (status, head, rest) = exchange(&addr, &req)
                    .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&req))))?;
                prop_assert!(status != 500, "500 for {}\n{head}", String::from_utf8_lossy(&req));
                let lower = head.to_ascii_lowercase();
                if status == 200
                    && method != "HEAD"
                    && lower.contains("content-type: application/json")
                    && lower.contains("content-length:")
                {
                    let v: Value = serde_json::from_slice(&rest).map_err(|e| {
                        TestCaseError::fail(format!("not JSON ({e}): {}", String::from_utf8_lossy(&rest)))
                    })?;
                    prop_assert!(v.get("jsonrpc").is_some() || v.is_array(), "{v}");
                }
                Ok(())
            })
            .map_err(|e| e.to_string())
    });
    if let Err(e) = result {
        panic!("{e}\n{}", gw.log.lock().unwrap().join("\n"));
    }
    let ok = post(&gw.url, &MODERN, discover()).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let log = gw.log.lock().unwrap().join("\n");
    assert!(!log.contains("panicked"), "{log}");
}

/// Sends `req` on a new connection; returns the status, the head and what followed it. The
/// head must come within 10 s; a stream (SSE) is not read further.
fn exchange(addr: &str, req: &[u8]) -> Result<(u16, String, Vec<u8>), String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    // The server may answer (and close) before it has read everything: that is fine.
    let _ = s.write_all(req);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    // Interim answers (`100 Continue` to an `Expect`) are skipped.
    let (status, head) = loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut chunk) {
                Ok(0) => return Err(format!("closed without an answer after {} bytes", buf.len())),
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
                Err(e) => return Err(format!("no answer: {e}")),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let status: u16 = head
            .strip_prefix("HTTP/1.1 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("not an HTTP answer: {head}"))?;
        buf.drain(..end);
        if status >= 200 {
            break (status, head);
        }
    };
    let mut rest = buf;
    if !head.to_ascii_lowercase().contains("text/event-stream") {
        let _ = s.read_to_end(&mut rest);
    }
    Ok((status, head, rest))
}

/// Issue 19: thousands of idle legacy sessions — 48 principals each holding the 64 sessions
/// they may, 3 072 in all, opened at once and left idle. The gateway's memory stays bounded,
/// every principal's sessions still answer, a principal past its cap loses only its own oldest,
/// and a new principal and a new call are served at once.
#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_idle_legacy_sessions_stay_bounded_and_served() {
    let gw = Served::start_with(&raw_upstream("raw", ""), "auth = \"api-key\"").await;
    let config = gw.dir.path().join("portcullis.toml").to_string_lossy().into_owned();
    let mut keys = Vec::new();
    for i in 0..49 {
        let (code, out, err) = run_portcullis(&["keys", "add", &format!("p{i}"), "--config", &config], "", &[]).await;
        assert_eq!(code, 0, "{err}");
        keys.push(out.trim().to_owned());
    }
    // Keys are re-read every 2 s.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let last = format!("Bearer {}", keys[48]);
    while post(
        &gw.url,
        &[
            ("authorization", last.as_str()),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "server/discover"),
        ],
        discover(),
    )
    .await
    .status
        != 200
    {
        assert!(std::time::Instant::now() < deadline, "keys never accepted");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let rss = |pid: u32| -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let pid = gw.child.id().unwrap();
    let before = rss(pid);

    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "idle", "version": "0"}}})
    .to_string();
    portcullis_gateway::install_crypto();
    let http = reqwest::Client::new();
    let open = |key: String| {
        let url = gw.url.clone();
        let init = init.clone();
        let http = http.clone();
        async move {
            let auth = format!("Bearer {key}");
            let r = post_with(&http, &url, &[("authorization", auth.as_str())], init).await;
            assert_eq!(r.status, 200, "{}", r.body);
            let session = r.headers["mcp-session-id"].to_str().unwrap().to_owned();
            let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
            let h = [
                ("authorization", auth.as_str()),
                ("mcp-session-id", session.as_str()),
                ("mcp-protocol-version", "2025-11-25"),
            ];
            assert_eq!(post_with(&http, &url, &h, note).await.status, 202);
            session
        }
    };
    // 48 principals × 64 sessions, 32 opening at a time.
    let opening = std::time::Instant::now();
    let mut sessions: Vec<(usize, String)> = Vec::new();
    for batch in (0..48 * 64).collect::<Vec<usize>>().chunks(32) {
        let opened = futures_join(batch.iter().map(|&n| {
            let p = n % 48;
            let f = open(keys[p].clone());
            async move { (p, f.await) }
        }))
        .await;
        sessions.extend(opened);
    }
    assert_eq!(sessions.len(), 3_072);
    let after = rss(pid);
    let grown_mib = after.saturating_sub(before) / 1024;
    assert!(grown_mib < 64, "3 072 idle sessions took {grown_mib} MiB");

    eprintln!(
        "opened 3 072 sessions in {:?}; RSS {before} KiB before, {after} KiB after",
        opening.elapsed()
    );
    // Every principal's sessions still answer (one of each, checked).
    let ping = |key: &str, session: &str| {
        let auth = format!("Bearer {key}");
        let url = gw.url.clone();
        let session = session.to_owned();
        let http = http.clone();
        async move {
            let h = [
                ("authorization", auth.as_str()),
                ("mcp-session-id", session.as_str()),
                ("mcp-protocol-version", "2025-11-25"),
            ];
            post_with(
                &http,
                &url,
                &h,
                json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string(),
            )
            .await
            .status
        }
    };
    // One more session for p0 ends p0's oldest and nobody else's.
    let _ = open(keys[0].clone()).await;
    let (_, oldest) = sessions.iter().find(|(q, _)| *q == 0).unwrap();
    assert_eq!(ping(&keys[0], oldest).await, 404);
    let (_, second) = sessions.iter().filter(|(q, _)| *q == 0).nth(1).unwrap();
    assert_eq!(ping(&keys[0], second).await, 200);
    let (_, other) = sessions.iter().find(|(q, _)| *q == 1).unwrap();
    assert_eq!(ping(&keys[1], other).await, 200);
    for (p, key) in keys.iter().enumerate().take(48).skip(1) {
        let (_, s) = sessions.iter().find(|(q, _)| *q == p).unwrap();
        assert_eq!(ping(key, s).await, 200, "principal p{p}'s first session");
    }
    // A new principal is served, and so is a call.
    let fresh = open(keys[48].clone()).await;
    assert_eq!(ping(&keys[48], &fresh).await, 200);
    let r = Modern::with_key(&gw.url, &keys[48]).call("raw__pid", json!({})).await;
    assert!(r["result"].is_object(), "{r}");
    let log = gw.log.lock().unwrap().join("\n");
    assert!(!log.contains("panicked"), "{log}");
}

/// Runs futures concurrently and collects their outputs in order.
async fn futures_join<F: std::future::Future + Send + 'static>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// Issue 19: a client request over the frame limit (a 25 MB attachment, the limit 16 MiB) is
/// answered as the request it is — its error names its id, whether the id comes first or last —
/// on both transports; the HTTP client, done sending, reads that answer (the body is read on
/// and dropped, not held), and the stdio connection goes on serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_over_the_frame_limit_is_answered_with_its_id_on_both_transports() {
    let gw = Served::start(&raw_upstream("raw", "")).await;
    gw.wait_for_tools(&["raw__"]).await;
    let attachment = "A".repeat(25 * 1024 * 1024);
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "raw__echo"),
    ];
    // The id first, as serialisers usually put it, and last.
    let first = json!({"jsonrpc": "2.0", "id": 41, "method": "tools/call", "params": {
        "name": "raw__echo", "arguments": {"attachment": attachment}, "_meta": meta}})
    .to_string();
    let last = format!(
        "{{\"jsonrpc\":\"2.0\",\"method\":\"tools/call\",\"params\":{},\"id\":\"last\"}}",
        json!({"name": "raw__echo", "arguments": {"attachment": attachment}, "_meta": meta})
    );
    for (body, id) in [(first.clone(), json!(41)), (last, json!("last"))] {
        let r = post(&gw.url, &headers, body).await;
        assert_eq!(r.status, 413, "{}", r.body);
        let v: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(v["id"], id, "{v}");
        assert_eq!(v["error"]["code"], -32600, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("exceeds the limit of 16777216 bytes"),
            "{v}"
        );
    }
    let ok = post(&gw.url, &MODERN, discover()).await;
    assert_eq!(ok.status, 200, "{}", ok.body);

    // Over stdio: the same request gets its error, and the connection goes on.
    use tokio::io::AsyncWriteExt as _;
    let config = gw.dir.path().join("portcullis.toml");
    let (_child, mut stdin, mut lines) = spawn_stdio(
        portcullis().to_str().unwrap(),
        &["stdio", "--config", config.to_str().unwrap()],
        &[],
    );
    stdin.write_all(format!("{first}\n").as_bytes()).await.unwrap();
    let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["id"], 41, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exceeds the limit of 16777216 bytes"),
        "{v}"
    );
    let r = stdio_call(
        &mut stdin,
        &mut lines,
        42,
        "tools/call",
        json!({"name": "raw__pid", "arguments": {}, "_meta": meta}),
    )
    .await;
    assert!(r["result"].is_object(), "{r}");
}
