//! The credential vault end to end: secrets go in through stdin and are listed without values;
//! `vault:NAME` in config reaches only the upstream that names it (a stdio server's
//! environment, an HTTP server's headers); nothing a client receives and no log line carries
//! the value — server-everything's `get-env` echoes its environment and the answer arrives
//! redacted, in every encoding; a wrong master key, a missing key and a missing secret each
//! stop the gateway with a clear error; rotation keeps every secret.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers"
)]

mod common;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};

const SECRET: &str = "sk-live-7Hq2c9ZpW4nV1xR8tYb3";
const HEADER_SECRET: &str = "Bearer hdr-93KfQ0aLz7Pm2Wd5";

/// Runs the `portcullis` binary with `args`, `stdin` as its input and `env` added.
async fn cli(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    run_portcullis(args, stdin, env).await
}

/// A folder with a config (`data_dir = "state"`, the key file beside it, not inside), a key
/// file, and two secrets set through the CLI.
async fn prepared(upstreams: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!("[gateway]\ndata_dir = \"state\"\n\n[vault]\nkey_file = \"master.key\"\n\n{upstreams}"),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let key = dir.path().join("master.key");
    let (code, out, err) = cli(
        &["vault", "init", "--key-file", key.to_str().unwrap(), "--config", c],
        "",
        &[],
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    for (name, value) in [("api_token", SECRET), ("api_header", HEADER_SECRET)] {
        let (code, out, err) = cli(&["vault", "set", name, "--config", c], &format!("{value}\n"), &[]).await;
        assert_eq!(code, 0, "{out}{err}");
        assert!(!out.contains(value) && !err.contains(value));
    }
    (dir, config)
}

fn everything(name: &str, env: &str) -> String {
    format!(
        "[upstreams.{name}]\ncommand = {}\nenv = {{ {env} }}\n\n",
        toml_str(&peer_bin("mcp-server-everything").to_string_lossy())
    )
}

/// Serves the upstreams of a prepared folder (its data_dir and key file) and waits for it.
async fn serve(config: &Path, upstreams: &str) -> Served {
    let dir = config.parent().unwrap();
    let gateway = format!("data_dir = {}", toml_str(&dir.join("state").to_string_lossy()));
    let rest = format!(
        "[vault]\nkey_file = {}\n\n{upstreams}",
        toml_str(&dir.join("master.key").to_string_lossy())
    );
    Served::start_config(&gateway, &rest, &[]).await
}

fn all_text(r: &Value) -> String {
    r.to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_reach_only_their_upstream_and_never_leave() {
    let echo = header_echo().await;
    let upstreams = format!(
        "{}{}[upstreams.leaky]\ncommand = \"python3\"\nargs = [{}, \"--leak-env\", \"LEAKY\"]\nenv = {{ LEAKY = \"vault:api_token\" }}\n\n[upstreams.web]\nurl = {}\nheaders = {{ Authorization = \"vault:api_header\" }}\n",
        everything("mine", "API_TOKEN = \"vault:api_token\""),
        everything("other", "UNRELATED = \"plain\""),
        toml_str(&raw_server().to_string_lossy()),
        toml_str(&echo.url),
    );
    let (_dir, config) = prepared(&upstreams).await;
    let gw = serve(&config, &upstreams).await;
    gw.wait_for_tools(&["mine__", "other__", "leaky__", "web__"]).await;
    let client = Modern::new(&gw.url);

    // The upstream that names the secret got it (get-env shows API_TOKEN), but the client sees
    // only the redaction marker.
    let r = client.call("mine__get-env", json!({})).await;
    let text = all_text(&r);
    assert!(text.contains("API_TOKEN"), "{text}");
    assert!(text.contains("[redacted:api_token]"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
    // The other server never had it.
    let r = client.call("other__get-env", json!({})).await;
    let text = all_text(&r);
    assert!(text.contains("UNRELATED") && !text.contains("API_TOKEN"), "{text}");
    assert!(!text.contains("redacted:api_token"), "{text}");
    // Encoded forms are caught too: everything's echo returns what it is given.
    let b64 = base64::engine::general_purpose::STANDARD.encode(SECRET);
    for form in [SECRET.to_owned(), b64.clone(), hex(SECRET)] {
        let r = client.call("mine__echo", json!({ "message": form })).await;
        let text = all_text(&r);
        assert!(!text.contains(&form), "{form} came back: {text}");
        assert!(text.contains("[redacted:api_token]"), "{text}");
    }
    // The HTTP upstream got its header (the echo server reports it), the client sees it redacted.
    let r = client.call("web__headers", json!({})).await;
    let text = all_text(&r);
    assert!(text.contains("[redacted:api_header]"), "{text}");
    assert!(!text.contains("hdr-93KfQ0aLz7Pm2Wd5"), "{text}");

    // The careless server logged its environment: the gateway's log carries the marker only.
    // (Its stderr is relayed as it comes: wait for the line.)
    let mut log = String::new();
    for _ in 0..100 {
        log = gw.log.lock().unwrap().join("\n");
        if log.contains("LEAKY=") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(log.contains("LEAKY=[redacted:api_token]"), "{log}");
    assert!(!log.contains(SECRET) && !log.contains(&b64), "{log}");
    assert!(!log.contains("hdr-93KfQ0aLz7Pm2Wd5"), "{log}");

    // The audit log recorded those calls, the secret in their arguments included: scrubbed.
    let served_config = gw.dir.path().join("portcullis.toml");
    let (code, audit, err) = cli(
        &[
            "audit",
            "export",
            "--jsonl",
            "--config",
            served_config.to_str().unwrap(),
        ],
        "",
        &[],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(audit.contains("mine__echo") || audit.contains("\"echo\""), "{audit}");
    assert!(audit.contains("[redacted:api_token]"), "{audit}");
    for form in [SECRET.to_owned(), b64.clone(), hex(SECRET)] {
        assert!(!audit.contains(&form), "{form} is in the audit log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn url_credentials_come_from_the_vault_and_never_leave() {
    let echo = header_echo().await;
    let port = echo
        .url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/mcp");
    let upstreams = format!(
        "[upstreams.web]\nurl = \"http://bot:vault%3Aapi_token@127.0.0.1:{port}/mcp?key=vault:api_header&plain=1\"\n"
    );
    let (_dir, config) = prepared(&upstreams).await;
    let gw = serve(&config, &upstreams).await;
    gw.wait_for_tools(&["web__"]).await;
    let r = Modern::new(&gw.url).call("web__headers", json!({})).await;
    let seen: Value = serde_json::from_str(r["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    // The password went as HTTP Basic (`bot:SECRET`, base64): the client sees the marker.
    let auth = seen["authorization"].as_str().unwrap_or_default();
    assert!(
        auth.starts_with("Basic ") && auth.contains("[redacted:api_token]"),
        "{seen}"
    );
    // The query value went in the URL (space as `+`): the client sees the marker.
    let path = seen[":path"].as_str().unwrap_or_default();
    assert!(path.contains("key=[redacted:api_header]&plain=1"), "{seen}");
    let text = r.to_string();
    assert!(
        !text.contains(SECRET) && !text.contains("hdr-93KfQ0aLz7Pm2Wd5"),
        "{text}"
    );
    let log = gw.log.lock().unwrap().join("\n");
    assert!(!log.contains(SECRET) && !log.contains("hdr-93KfQ0aLz7Pm2Wd5"), "{log}");
}

/// Runs `script` (bash) in a fresh D-Bus session with GNOME Keyring unlocked, `HOME` at
/// `home` (where the keyring persists between sessions); returns (exit code, output).
async fn in_keyring_session(home: &Path, script: &str) -> (i32, String) {
    let full =
        format!("set -e\necho -n test-login | gnome-keyring-daemon --unlock --components=secrets >/dev/null\n{script}");
    let out = tokio::process::Command::new("dbus-run-session")
        .args(["--", "bash", "-c", &full])
        .env("HOME", home)
        .env_remove("PORTCULLIS_MASTER_KEY")
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("dbus-run-session (Debian packages dbus, gnome-keyring) is needed for the keyring test: {e}")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_os_keyring_holds_the_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\ndata_dir = \"state\"\n\n[vault]\nkeyring = true\n\n{}",
            everything("mine", "API_TOKEN = \"vault:api_token\"")
        ),
    )
    .unwrap();
    let p = portcullis();
    let (p, c) = (p.to_str().unwrap(), config.to_str().unwrap());
    // One session: a key is created in the keyring, a secret sealed under it, and the gateway
    // opens the vault with it and hands the secret to its upstream (the client sees the marker).
    let (code, out) = in_keyring_session(
        &home,
        &format!(
            "{p} vault init --keyring -c {c}\necho {SECRET} | {p} vault set api_token -c {c}\n{p} call -c {c} mine__get-env\n{p} vault init --keyring -c {c} || echo \"again: $?\""
        ),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("created a master key in the OS keyring"), "{out}");
    assert!(out.contains("[redacted:api_token]") && !out.contains(SECRET), "{out}");
    // A second init never replaces the key that seals the vault.
    assert!(
        out.contains("already holds a master key") && out.contains("again: 73"),
        "{out}"
    );
    // The key outlives the session (the keyring is on disk, locked by the login password).
    let (code, out) = in_keyring_session(&home, &format!("{p} vault list -c {c}")).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("api_token"), "{out}");
    // Without a keyring the error says what is missing and what to use instead.
    let (code, _, err) = cli(
        &["vault", "list", "--config", c],
        "",
        &[("DBUS_SESSION_BUS_ADDRESS", "")],
    )
    .await;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("the OS keyring") && err.contains("key_file"), "{err}");
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn list_shows_no_value_and_rotation_keeps_every_secret() {
    let (dir, config) = prepared("").await;
    let c = config.to_str().unwrap();
    let (code, out, err) = cli(&["vault", "list", "--config", c], "", &[]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("api_token") && out.contains("api_header") && out.contains("(shared)"),
        "{out}"
    );
    assert!(!out.contains(SECRET) && !out.contains("hdr-93KfQ0aLz7Pm2Wd5"), "{out}");
    // Rotate to a new key file; the old one no longer opens the vault.
    let new_key = dir.path().join("new.key");
    let (code, _, err) = cli(
        &[
            "vault",
            "rotate-key",
            "--new-key-file",
            new_key.to_str().unwrap(),
            "--config",
            c,
        ],
        "",
        &[],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli(&["vault", "list", "--config", c], "", &[]).await;
    assert_eq!(code, 77, "{err}");
    assert!(err.contains("not the one this vault was sealed with"), "{err}");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("master.key", "new.key");
    std::fs::write(&config, text).unwrap();
    let (code, out, err) = cli(&["vault", "list", "--config", c], "", &[]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("api_token"), "{out}");
    // The key can also come from the environment, for containers.
    let env_key = std::fs::read_to_string(&new_key).unwrap();
    let env_config = dir.path().join("env.toml");
    std::fs::write(&env_config, "[gateway]\ndata_dir = \"state\"\n").unwrap();
    let (code, out, err) = cli(
        &["vault", "list", "--config", env_config.to_str().unwrap()],
        "",
        &[("PORTCULLIS_MASTER_KEY", env_key.trim())],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("api_token"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_refuses_to_start_without_its_secrets() {
    let upstream = everything("mine", "API_TOKEN = \"vault:api_token\"");
    let (dir, config) = prepared(&upstream).await;
    let c = config.to_str().unwrap();
    // A wrong key: a clear error, nothing served.
    let wrong = dir.path().join("wrong.key");
    cli(
        &["vault", "init", "--key-file", wrong.to_str().unwrap(), "--config", c],
        "",
        &[],
    )
    .await;
    let wrong_config = dir.path().join("wrong.toml");
    std::fs::write(
        &wrong_config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("master.key", "wrong.key"),
    )
    .unwrap();
    let (code, _, err) = cli(&["tools", "--config", wrong_config.to_str().unwrap()], "", &[]).await;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("not the one this vault was sealed with"), "{err}");
    // A secret the vault does not hold.
    let missing = dir.path().join("missing.toml");
    std::fs::write(
        &missing,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("vault:api_token", "vault:nope"),
    )
    .unwrap();
    let (code, _, err) = cli(&["tools", "--config", missing.to_str().unwrap()], "", &[]).await;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("`vault:nope`, which is not in the vault"), "{err}");
    // No key at all.
    let keyless = dir.path().join("keyless.toml");
    std::fs::write(&keyless, format!("[gateway]\ndata_dir = \"state\"\n\n{upstream}")).unwrap();
    let (code, _, err) = cli(&["tools", "--config", keyless.to_str().unwrap()], "", &[]).await;
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("no master key is available") && err.contains("PORTCULLIS_MASTER_KEY"),
        "{err}"
    );
    // A key file others can read.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir.path().join("master.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = cli(&["vault", "list", "--config", c], "", &[]).await;
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("chmod 600"), "{err}");
}

/// A one-shot HTTP listener: the body of the first POST it receives.
async fn webhook() -> (String, tokio::sync::oneshot::Receiver<String>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = sock.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if body.len() >= len || n == 0 {
                    sock.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                        .await
                        .unwrap();
                    let _ = tx.send(body.to_owned());
                    return;
                }
            }
        }
    });
    (url, rx)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_suspends_the_credential_until_resumed() {
    let (hook, received) = webhook().await;
    let upstreams = format!(
        "[anomaly]\non_anomaly = \"suspend\"\nfactor = 1.0\ncalls_per_hour = 3\nwebhook = {}\n\n{}",
        toml_str(&hook),
        everything("mine", "API_TOKEN = \"vault:api_token\"")
    );
    let (_dir, config) = prepared(&upstreams).await;
    let gw = serve(&config, &upstreams).await;
    gw.wait_for_tools(&["mine__"]).await;
    let client = Modern::new(&gw.url);
    // A new credential's floor is three calls an hour: the fourth is the burst.
    for i in 0..4 {
        let r = client
            .call("mine__echo", json!({ "message": format!("call {i}") }))
            .await;
        assert!(r["result"].is_object(), "call {i}: {r}");
    }
    let r = client.call("mine__echo", json!({ "message": "after" })).await;
    assert_eq!(r["error"]["data"]["outcome"], "suspended", "{r}");
    assert_eq!(r["error"]["data"]["credential"], "api_token");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("4 calls this hour") && message.contains("portcullis vault resume api_token"),
        "{message}"
    );
    let alert: Value = serde_json::from_str(
        &tokio::time::timeout(std::time::Duration::from_secs(10), received)
            .await
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(alert["credential"], "api_token");
    assert_eq!(alert["upstream"], "mine");
    assert_eq!(alert["suspended"], true);
    assert!(!alert.to_string().contains(SECRET));

    // The suspension is in the vault, for the CLI to see and lift.
    let c = config.to_str().unwrap();
    let (_, out, _) = cli(&["vault", "list", "--config", c], "", &[]).await;
    assert!(out.contains("suspended: 4 calls this hour"), "{out}");
    let (code, out, err) = cli(&["vault", "resume", "api_token", "--config", c], "", &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    let mut ok = false;
    for _ in 0..50 {
        let r = client.call("mine__echo", json!({ "message": "resumed" })).await;
        if r["result"].is_object() {
            ok = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(ok, "the running gateway picks up the resume");
}
