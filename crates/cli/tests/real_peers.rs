//! End to end with real MCP peers from npm: `server-everything` over stdio and over Streamable
//! HTTP, `server-filesystem`, and the MCP Inspector CLI as the client, both through
//! `portcullis serve` and through `portcullis stdio`.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers"
)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use tokio::process::Command;

/// `server-everything` serving Streamable HTTP on a loopback port, killed on drop.
struct EverythingHttp {
    _child: tokio::process::Child,
    url: String,
}

async fn everything_http() -> EverythingHttp {
    let port = free_port();
    let child = Command::new(peer_bin("mcp-server-everything"))
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "server-everything (HTTP) did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    EverythingHttp {
        _child: child,
        url: format!("http://127.0.0.1:{port}/mcp"),
    }
}

fn three_upstreams(remote: &str, files: &std::path::Path) -> String {
    format!(
        "[upstreams.everything]\ncommand = {}\n\n[upstreams.remote]\nurl = {}\n\n[upstreams.files]\ncommand = {}\nargs = [{}]\n",
        toml_str(&peer_bin("mcp-server-everything").to_string_lossy()),
        toml_str(remote),
        toml_str(&peer_bin("mcp-server-filesystem").to_string_lossy()),
        toml_str(&files.to_string_lossy()),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn inspector_lists_and_calls_tools_of_three_upstreams_over_http() {
    let remote = everything_http().await;
    let files = tempfile::tempdir().unwrap();
    let files_dir = files.path().canonicalize().unwrap();
    std::fs::write(files_dir.join("hello.txt"), "hello from the filesystem server\n").unwrap();
    let gw = Served::start(&three_upstreams(&remote.url, &files_dir)).await;
    gw.wait_for_tools(&["everything__", "remote__", "files__"]).await;

    let (ok, out, err) = inspector(&[&gw.url, "--method", "tools/list"]).await;
    assert!(ok, "inspector tools/list failed: {err}");
    for name in ["everything__echo", "remote__get-sum", "files__read_text_file"] {
        assert!(
            out.contains(&format!("\"{name}\"")),
            "{name} missing from the inspector's list: {out}"
        );
    }

    let (ok, out, err) = inspector(&[
        &gw.url,
        "--method",
        "tools/call",
        "--tool-name",
        "everything__echo",
        "--tool-arg",
        "message=through the gate",
    ])
    .await;
    assert!(ok, "inspector call failed: {err}");
    assert!(out.contains("Echo: through the gate"), "{out}");

    let (ok, out, err) = inspector(&[
        &gw.url,
        "--method",
        "tools/call",
        "--tool-name",
        "remote__get-sum",
        "--tool-arg",
        "a=2",
        "b=40",
    ])
    .await;
    assert!(ok, "inspector call failed: {err}");
    assert!(out.contains("42"), "{out}");

    let file = files_dir.join("hello.txt");
    let path_arg = format!("path={}", file.display());
    let (ok, out, err) = inspector(&[
        &gw.url,
        "--method",
        "tools/call",
        "--tool-name",
        "files__read_text_file",
        "--tool-arg",
        &path_arg,
    ])
    .await;
    assert!(ok, "inspector call failed: {err}");
    assert!(out.contains("hello from the filesystem server"), "{out}");

    // The same calls from both eras of client, straight over HTTP.
    let modern = Modern::new(&gw.url)
        .call("remote__echo", json!({"message": "modern"}))
        .await;
    assert_eq!(modern["result"]["content"][0]["text"], "Echo: modern", "{modern}");
    let legacy = Legacy::connect(&gw.url).await;
    let r = legacy.call("everything__get-sum", json!({"a": 1, "b": 2})).await;
    assert!(r["result"]["content"][0]["text"].as_str().unwrap().contains('3'), "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn inspector_reaches_upstreams_through_portcullis_stdio() {
    let files = tempfile::tempdir().unwrap();
    let files_dir = files.path().canonicalize().unwrap();
    std::fs::write(files_dir.join("note.md"), "stdio path works\n").unwrap();
    let config = files.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[upstreams.everything]\ncommand = {}\n\n[upstreams.files]\ncommand = {}\nargs = [{}]\n",
            toml_str(&peer_bin("mcp-server-everything").to_string_lossy()),
            toml_str(&peer_bin("mcp-server-filesystem").to_string_lossy()),
            toml_str(&files_dir.to_string_lossy()),
        ),
    )
    .unwrap();
    let bin = portcullis();
    let bin = bin.to_string_lossy();
    // The Inspector owns `--config`, so the gateway takes its config from the environment.
    let env = format!("PORTCULLIS_CONFIG={}", config.display());

    let (ok, out, err) = inspector(&["-e", &env, "--method", "tools/list", "--", &bin, "stdio"]).await;
    assert!(ok, "inspector tools/list over stdio failed: {err}");
    assert!(
        out.contains("\"everything__echo\"") && out.contains("\"files__list_directory\""),
        "{out}"
    );

    let path_arg = format!("path={}", files_dir.display());
    let (ok, out, err) = inspector(&[
        "-e",
        &env,
        "--method",
        "tools/call",
        "--tool-name",
        "files__list_directory",
        "--tool-arg",
        &path_arg,
        "--",
        &bin,
        "stdio",
    ])
    .await;
    assert!(ok, "inspector call over stdio failed: {err}");
    assert!(out.contains("note.md"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_tools_and_call_work_against_real_servers() {
    let files = tempfile::tempdir().unwrap();
    let config = files.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[upstreams.everything]\ncommand = {}\n",
            toml_str(&peer_bin("mcp-server-everything").to_string_lossy())
        ),
    )
    .unwrap();
    let out = Command::new(portcullis())
        .args(["tools", "--json", "--config"])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        listed["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "everything__get-sum")
    );

    let out = Command::new(portcullis())
        .args([
            "call",
            "everything__get-sum",
            "--args",
            r#"{"a":20,"b":22}"#,
            "--config",
        ])
        .arg(&config)
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("42"));
}

#[tokio::test(flavor = "multi_thread")]
async fn each_stdio_upstream_sees_only_its_own_environment() {
    let bin = toml_str(&peer_bin("mcp-server-everything").to_string_lossy());
    let upstreams = format!(
        "[upstreams.alpha]\ncommand = {bin}\nenv = {{ ALPHA_TOKEN = \"alpha-only-3f9c\" }}\n\n[upstreams.beta]\ncommand = {bin}\nenv = {{ BETA_TOKEN = \"beta-only-7d21\" }}\n"
    );
    let gw = Served::start_env(&upstreams, "", &[("GATEWAY_OWN_SECRET", "gateway-only-5a0e")]).await;
    gw.wait_for_tools(&["alpha__", "beta__"]).await;
    let client = Modern::new(&gw.url);
    let alpha = client.call("alpha__get-env", json!({})).await.to_string();
    let beta = client.call("beta__get-env", json!({})).await.to_string();
    assert!(
        alpha.contains("alpha-only-3f9c"),
        "alpha gets its own variable: {alpha}"
    );
    assert!(beta.contains("beta-only-7d21"), "beta gets its own variable: {beta}");
    assert!(
        !alpha.contains("beta-only-7d21") && !beta.contains("alpha-only-3f9c"),
        "no upstream sees another's"
    );
    assert!(
        !alpha.contains("gateway-only-5a0e") && !beta.contains("gateway-only-5a0e"),
        "the gateway's own environment is not passed on"
    );
}
