//! Health, readiness and metrics over HTTP: `/healthz` answers while the process lives,
//! `/readyz` once every upstream has listed (or failed) and says which are up, `/metrics`
//! counts real decisions and latencies in the Prometheus text format, behind the same client
//! authentication and DNS-rebinding guard as `/mcp`.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers"
)]

mod common;

use common::*;
use serde_json::{Value, json};

async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    portcullis_gateway::install_crypto();
    let mut req = reqwest::Client::new().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_and_metrics_tell_the_truth() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.cedar");
    std::fs::write(
        &policy,
        "@id(\"no-delete\")\nforbid(principal, action == Action::\"call_tool\", resource) when { resource.name == \"delete_everything\" };\n",
    )
    .unwrap();
    let rest = format!(
        "[policy]\nfiles = [{}]\n\n{}[upstreams.gone]\ncommand = \"/nonexistent/server\"\n",
        toml_str(&policy.to_string_lossy()),
        raw_upstream("raw", "")
    );
    let gw = Served::start_config("data_dir = \"state\"", &rest, &[]).await;
    let base = gw.url.trim_end_matches("/mcp").to_owned();
    assert_eq!(get(&format!("{base}/healthz"), &[]).await, (200, "ok\n".into()));

    gw.wait_for_tools(&["raw__"]).await;
    // Ready once both settled; the one that cannot start is reported down.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let ready = loop {
        let (status, body) = get(&format!("{base}/readyz"), &[]).await;
        if status == 200 {
            break serde_json::from_str::<Value>(&body).unwrap();
        }
        assert_eq!(status, 503, "{body}");
        assert!(tokio::time::Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(ready["upstreams"], json!({"raw": true, "gone": false}), "{ready}");

    let client = Modern::new(&gw.url);
    for _ in 0..2 {
        assert!(client.call("raw__pid", json!({})).await["result"].is_object());
    }
    assert_eq!(
        client.call("raw__delete_everything", json!({})).await["error"]["code"],
        -31001
    );
    let (status, text) = get(&format!("{base}/metrics"), &[]).await;
    assert_eq!(status, 200);
    for want in [
        "portcullis_decisions_total{upstream=\"raw\",decision=\"permit\"} 2",
        "portcullis_decisions_total{upstream=\"raw\",decision=\"forbid\"} 1",
        "portcullis_calls_completed_total{upstream=\"raw\",outcome=\"result\"} 2",
        "portcullis_call_duration_seconds_count{upstream=\"raw\"} 2",
        "portcullis_upstream_up{upstream=\"raw\"} 1",
        "portcullis_upstream_up{upstream=\"gone\"} 0",
        "# EOF",
    ] {
        assert!(text.contains(want), "missing {want}:\n{text}");
    }
    // The DNS-rebinding guard covers these endpoints too.
    let (status, _) = get(&format!("{base}/metrics"), &[("host", "evil.example")]).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_need_a_key_when_clients_authenticate_and_health_does_not() {
    let gw = Served::start_with(&raw_upstream("raw", ""), "auth = \"api-key\"").await;
    let base = gw.url.trim_end_matches("/mcp").to_owned();
    assert_eq!(get(&format!("{base}/healthz"), &[]).await.0, 200);
    let (status, _) = get(&format!("{base}/metrics"), &[]).await;
    assert_eq!(status, 401);
    let config = gw.dir.path().join("portcullis.toml");
    let (code, key, err) = run_portcullis(
        &["keys", "add", "prometheus", "--config", config.to_str().unwrap()],
        "",
        &[],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let auth = format!("Bearer {}", key.trim());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (status, text) = get(&format!("{base}/metrics"), &[("authorization", &auth)]).await;
        if status == 200 {
            assert!(text.contains("# EOF"));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "key never accepted");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_reach_an_otlp_receiver() {
    use base64::Engine as _;
    use tokio::io::AsyncBufReadExt as _;
    let mut receiver = tokio::process::Command::new("python3")
        .arg(repo_root().join("tests/peers/otlp_receiver.py"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(receiver.stdout.take().unwrap()).lines();
    let port = lines
        .next_line()
        .await
        .unwrap()
        .unwrap()
        .trim_start_matches("listening ")
        .to_owned();
    let rest = format!(
        "[telemetry]\notlp_endpoint = \"http://127.0.0.1:{port}\"\nservice_name = \"portcullis-test\"\n\n{}",
        raw_upstream("raw", "")
    );
    let mut gw = Served::start_config("data_dir = \"state\"", &rest, &[]).await;
    gw.wait_for_tools(&["raw__"]).await;
    assert!(Modern::new(&gw.url).call("raw__pid", json!({})).await["result"].is_object());
    // A clean stop flushes the spans still queued.
    let pid = gw.child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(20), gw.child.wait()).await;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let parts: Vec<&str> = line.splitn(4, ' ').collect();
        assert_eq!(
            (parts[0], parts[1], parts[2]),
            ("POST", "/v1/traces", "application/x-protobuf"),
            "{line}"
        );
        seen.extend(base64::engine::general_purpose::STANDARD.decode(parts[3]).unwrap());
        let has = |s: &str| seen.windows(s.len()).any(|w| w == s.as_bytes());
        if [
            "portcullis-test",
            "mcp.decision",
            "tools/call",
            "raw__pid",
            "permit",
            "tools/call pid",
        ]
        .iter()
        .all(|s| has(s))
        {
            break;
        }
    }
}
