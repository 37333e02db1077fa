//! Principals over HTTP: with `[gateway] auth = "api-key"` every request needs a key made by
//! `portcullis keys add` (missing or wrong: 401 with a challenge; revoked: refused within the
//! reload); a legacy session belongs to the principal who opened it; the principal reaches
//! the audit log. Per-user secrets: a principal with their own secret for an upstream gets an
//! instance of that upstream of their own, holding only their secret; everyone else shares the
//! instance with the shared secret.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers"
)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

fn config_of(served: &Served) -> String {
    served.dir.path().join("portcullis.toml").to_string_lossy().into_owned()
}

async fn add_key(config: &str, principal: &str) -> String {
    let (code, out, err) = run_portcullis(&["keys", "add", principal, "--config", config], "", &[]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("shown only now"), "{err}");
    out.trim().to_owned()
}

/// Waits until `key` is accepted (the gateway re-reads keys every 2 s).
async fn accepted(url: &str, key: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let r = Modern::with_key(url, key).request("tools/list", json!({})).await;
        if r.status == 200 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "key never accepted: {} {}",
            r.status,
            r.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn id_of(key: &str) -> &str {
    key.trim_start_matches("pcl_").split('_').next().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_http_request_needs_a_valid_key() {
    let served = Served::start_with(&raw_upstream("raw", ""), "auth = \"api-key\"").await;
    let config = config_of(&served);

    // No key: 401, a Bearer challenge, a JSON-RPC error body.
    let r = Modern::new(&served.url).request("tools/list", json!({})).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.headers["www-authenticate"], r#"Bearer realm="portcullis""#);
    assert!(r.body.contains("needs an API key"), "{}", r.body);
    // A legacy client without a key cannot even open a session.
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}});
    assert_eq!(post(&served.url, &[], init.to_string()).await.status, 401);

    let alice = add_key(&config, "alice").await;
    assert!(alice.starts_with("pcl_"), "{alice}");
    let bob = add_key(&config, "bob").await;
    accepted(&served.url, &alice).await;
    accepted(&served.url, &bob).await;
    let (_, listed, _) = run_portcullis(&["keys", "list", "--config", &config], "", &[]).await;
    assert!(listed.contains("alice") && listed.contains(id_of(&alice)), "{listed}");
    assert!(!listed.contains(&alice), "a key was listed: {listed}");

    // A key with one character changed is not valid.
    let mut forged = alice.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let r = Modern::with_key(&served.url, &forged)
        .request("tools/list", json!({}))
        .await;
    assert_eq!(r.status, 401);
    assert!(
        r.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    // The principal is who the audit log records.
    let r = Modern::with_key(&served.url, &alice).call("raw__pid", json!({})).await;
    assert!(r.get("result").is_some(), "{r}");

    // A legacy session is its opener's: bob cannot use alice's session.
    let auth = format!("Bearer {alice}");
    let r = post(&served.url, &[("authorization", auth.as_str())], init.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sid = r.headers["mcp-session-id"].to_str().unwrap().to_owned();
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}).to_string();
    let bob_auth = format!("Bearer {bob}");
    let as_bob = [
        ("authorization", bob_auth.as_str()),
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    assert_eq!(post(&served.url, &as_bob, list.clone()).await.status, 404);
    let as_alice = [
        ("authorization", auth.as_str()),
        ("mcp-session-id", sid.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    assert_eq!(post(&served.url, &as_alice, list).await.status, 200);

    // Revoked: refused within the reload.
    let (code, out, err) = run_portcullis(&["keys", "rm", id_of(&alice), "--config", &config], "", &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while Modern::with_key(&served.url, &alice)
        .request("tools/list", json!({}))
        .await
        .status
        != 401
    {
        assert!(tokio::time::Instant::now() < deadline, "a revoked key still works");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        Modern::with_key(&served.url, &bob)
            .request("tools/list", json!({}))
            .await
            .status,
        200
    );

    let (code, out, err) = run_portcullis(&["audit", "export", "--jsonl", "--config", &config], "", &[]).await;
    assert_eq!(code, 0, "{err}");
    let row = out
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v.to_string().contains("raw__pid") || v.to_string().contains("\"pid\""))
        .unwrap_or_else(|| panic!("no audit row for the call: {out}"));
    assert!(row.to_string().contains("alice"), "{row}");
    let (code, _, err) = run_portcullis(&["keys", "add", "not a name", "--config", &config], "", &[]).await;
    assert_eq!(code, 64, "{err}");
}

fn digest(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_principal_with_their_own_secret_gets_their_own_instance() {
    const SHARED: &str = "shared-token-5Jx8Qw2Lm4Np";
    const ALICES: &str = "alice-token-9Vt3Rc7Kz1Hb";
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("master.key");
    let state = dir.path().join("state");
    let upstream = format!(
        "[upstreams.mail]\ncommand = \"python3\"\nargs = [{}, \"--digest-env\", \"TOKEN\"]\nenv = {{ TOKEN = \"vault:mail_token\" }}\n",
        toml_str(&raw_server().to_string_lossy())
    );
    let rest = format!("[vault]\nkey_file = {}\n\n{upstream}", toml_str(&key.to_string_lossy()));
    let gateway = format!("data_dir = {}\nauth = \"api-key\"", toml_str(&state.to_string_lossy()));
    // The vault first: the shared secret, and alice's own.
    let prep = dir.path().join("prep.toml");
    std::fs::write(&prep, format!("[gateway]\n{gateway}\n\n{rest}")).unwrap();
    let p = prep.to_str().unwrap();
    let (code, _, err) = run_portcullis(
        &["vault", "init", "--key-file", key.to_str().unwrap(), "--config", p],
        "",
        &[],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    for (owner, value) in [("", SHARED), ("alice", ALICES)] {
        let (code, _, err) = run_portcullis(
            &["vault", "set", "mail_token", "--owner", owner, "--config", p],
            &format!("{value}\n"),
            &[],
        )
        .await;
        assert_eq!(code, 0, "{err}");
    }
    let alice = add_key(p, "alice").await;
    let bob = add_key(p, "bob").await;

    let served = Served::start_config(&gateway, &rest, &[]).await;
    accepted(&served.url, &alice).await;
    let (a, b) = (
        Modern::with_key(&served.url, &alice),
        Modern::with_key(&served.url, &bob),
    );
    let text = |r: Value| {
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    // Each principal's calls reach a process holding their secret and no other.
    assert_eq!(text(a.call("mail__digest", json!({})).await), digest(ALICES));
    assert_eq!(text(b.call("mail__digest", json!({})).await), digest(SHARED));
    // Separate processes; alice's is reused.
    let (pa, pb) = (
        text(a.call("mail__pid", json!({})).await),
        text(b.call("mail__pid", json!({})).await),
    );
    assert!(!pa.is_empty() && !pb.is_empty());
    assert_ne!(pa, pb, "alice and bob share a process");
    assert_eq!(text(a.call("mail__pid", json!({})).await), pa);
    // Both see the same tools.
    assert_eq!(a.list_tools().await.len(), b.list_tools().await.len());
    let log = served.log.lock().unwrap().join("\n");
    assert!(
        log.contains("starting a per-user instance") && !log.contains(ALICES),
        "{log}"
    );
}
