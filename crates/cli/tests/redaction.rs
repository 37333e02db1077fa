//! No secret outside the vault: a careless upstream (`raw_server.py --leak`) puts its vault
//! secret — one with a non-ASCII character, `&` and `/` — in a tool description, in results in
//! every encoding common serializers produce (Python's `json.dumps` defaults, Go's `\u0026`,
//! `\u` escapes in any mix and case, percent-encoding in either case, base64), in a log
//! notification and on stderr astride the gateway's line cut; a client sends it as an
//! argument. None of it reaches the client, the log, `portcullis tools`, the audit log or the
//! state database.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers"
)]

mod common;

use std::path::Path;

use common::*;
use serde_json::json;

const SECRET: &str = "s3cret-Tök&n/42";

/// Fragments that appear only where some form of the secret went through unredacted.
const LEAKS: [&str; 9] = [
    "s3cret",
    "k&n/42",
    "T\\u00f6k",
    "\\u0026n",
    "s\\u0033c",
    "\\u0073\\u0033",
    "%C3%B6k",
    "%c3%b6k",
    "czNjcmV0LVTDtmsmbi80Mg",
];

fn assert_clean(what: &str, text: &str) {
    for l in LEAKS {
        assert!(!text.contains(l), "{what} leaks `{l}`:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_in_any_encoding_reaches_no_channel() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    let key = dir.path().join("master.key");
    let upstream = format!(
        "[upstreams.raw]\ncommand = \"python3\"\nargs = [{}, \"--leak\", \"LEAK\"]\nenv = {{ LEAK = \"vault:leak\" }}\n",
        toml_str(&raw_server().to_string_lossy())
    );
    std::fs::write(
        &config,
        format!(
            "[gateway]\ndata_dir = \"state\"\n\n[vault]\nkey_file = {}\n\n{upstream}",
            toml_str(&key.to_string_lossy())
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let (code, out, err) = run_portcullis(
        &["vault", "init", "--key-file", key.to_str().unwrap(), "--config", c],
        "",
        &[],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run_portcullis(&["vault", "set", "leak", "--config", c], &format!("{SECRET}\n"), &[]).await;
    assert_eq!(code, 0, "{out}{err}");

    let gw = Served::start_config(
        &format!("data_dir = {}", toml_str(&dir.path().join("state").to_string_lossy())),
        &format!("[vault]\nkey_file = {}\n\n{upstream}", toml_str(&key.to_string_lossy())),
        &[],
    )
    .await;
    gw.wait_for_tools(&["raw__leaky"]).await;

    // The client: the listing and every encoding of the result.
    let client = Legacy::connect(&gw.url).await;
    let _ = client.request("logging/setLevel", json!({"level": "debug"})).await;
    let listing = client.request("tools/list", json!({})).await;
    assert_clean("tools/list", &listing.body);
    assert!(listing.body.contains("key [redacted:leak]"), "{}", listing.body);
    let r = client
        .request("tools/call", json!({"name": "raw__leaky", "arguments": {}}))
        .await;
    assert_clean("the result", &r.body);
    assert_eq!(
        r.body.matches("[redacted:leak]").count(),
        8,
        "seven encodings and the log: {}",
        r.body
    );
    // The client sends the secret itself as an argument: the audit record holds it redacted.
    let r = client
        .request(
            "tools/call",
            json!({"name": "raw__echo_params", "arguments": {"key": SECRET}}),
        )
        .await;
    assert_clean("an echo", &r.body);

    // `portcullis tools` (what it prints comes from the definitions as stored).
    let (_, out, err) = run_portcullis(&["tools", "--config", c], "", &[]).await;
    assert_clean("portcullis tools", &format!("{out}{err}"));

    // The gateway's log: the stderr line astride the cut, the log notification.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let log = gw.log.lock().unwrap().join("\n");
    assert_clean("the log", &log);
    assert!(log.contains("raw_server: xxxx"), "the stderr line was logged: {log}");

    // The audit log, and every byte of the state database.
    let (_, out, err) = run_portcullis(&["audit", "export", "--jsonl", "--config", c], "", &[]).await;
    assert_clean("the audit log", &format!("{out}{err}"));
    drop(gw);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for f in std::fs::read_dir(dir.path().join("state")).unwrap() {
        let p = f.unwrap().path();
        let bytes = std::fs::read(&p).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("k&n/42") && !text.contains("T\\u00f6k"),
            "{} holds the secret",
            p.display()
        );
        assert!(
            !contains(&bytes, SECRET.as_bytes()),
            "{} holds the secret",
            Path::new(&p).display()
        );
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
