//! `portcullis import` on sample configs in each host's real format: servers become upstreams,
//! secret-looking values move into the vault (the configs keep only `vault:NAME`), the host
//! config launches `portcullis stdio` after a backup, `--dry-run` writes nothing, and the host
//! still works: its rewritten command serves the imported server's tools, with the moved secret
//! delivered to it and redacted on the way back.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers"
)]

mod common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};

const TOKEN: &str = "ghp_importedT0kenABCDEFGHIJKLMNOPQRSTUV";
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 bytes, base64

async fn import(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["import"];
    all.extend_from_slice(args);
    run_portcullis(&all, "", &[("PORTCULLIS_MASTER_KEY", KEY)]).await
}

/// The server entry for server-everything, in the shape `style` hosts write.
fn everything_entry(vscode: bool) -> Value {
    let mut e = json!({
        "command": peer_bin("mcp-server-everything").to_string_lossy(),
        "args": [],
        "env": {"GITHUB_PERSONAL_ACCESS_TOKEN": TOKEN, "LOG_LEVEL": "info"},
    });
    if vscode {
        e["type"] = json!("stdio");
    }
    e
}

fn sample(host: &str) -> Value {
    let remote = json!({"url": "https://mcp.example.test/mcp", "headers": {"Authorization": "Bearer remote-secret-0123456789abcdef"}});
    match host {
        "claude-desktop" => {
            json!({"mcpServers": {"everything": everything_entry(false)}, "globalShortcut": "Ctrl+Space"})
        }
        "claude-code" => {
            json!({"numStartups": 3, "mcpServers": {"everything": everything_entry(false), "remote": remote}})
        }
        "cursor" => json!({"mcpServers": {"everything": everything_entry(false), "remote": remote}}),
        "vscode" => {
            json!({"inputs": [], "servers": {"everything": everything_entry(true), "remote": {"type": "http", "url": "https://mcp.example.test/mcp", "headers": {"Authorization": "Bearer remote-secret-0123456789abcdef"}}}})
        }
        _ => unreachable!(),
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_host_format_round_trips() {
    for host in ["claude-desktop", "claude-code", "cursor", "vscode"] {
        let dir = tempfile::tempdir().unwrap();
        let host_path = dir.path().join("host.json");
        let original = serde_json::to_string_pretty(&sample(host)).unwrap();
        std::fs::write(&host_path, &original).unwrap();
        let config = dir.path().join("portcullis.toml");
        let (h, c) = (host_path.to_str().unwrap(), config.to_str().unwrap());

        // A dry run shows the change and writes nothing.
        let (code, out, err) = import(&[host, "--path", h, "--config", c, "--dry-run"]).await;
        assert_eq!(code, 0, "{host}: {err}");
        assert!(
            out.contains("[upstreams.everything]") && out.contains("vault:everything_github_personal_access_token"),
            "{out}"
        );
        assert!(!out.contains(TOKEN), "{host}: a dry run printed a secret: {out}");
        assert_eq!(read(&host_path), original);
        assert!(!config.exists());

        let (code, out, err) = import(&[host, "--path", h, "--config", c]).await;
        assert_eq!(code, 0, "{host}: {out}{err}");
        // The Portcullis config refers to the vault; no secret is written in it.
        let toml_text = read(&config);
        assert!(
            toml_text.contains("GITHUB_PERSONAL_ACCESS_TOKEN = \"vault:everything_github_personal_access_token\""),
            "{toml_text}"
        );
        assert!(toml_text.contains("LOG_LEVEL = \"info\""), "{toml_text}");
        assert!(
            !toml_text.contains(TOKEN) && !toml_text.contains("remote-secret"),
            "{toml_text}"
        );
        if host != "claude-desktop" {
            assert!(
                toml_text.contains("Authorization = \"vault:remote_authorization\""),
                "{toml_text}"
            );
        }
        // The host config launches Portcullis; its other settings stay; a private backup keeps the original.
        let rewritten: Value = serde_json::from_str(&read(&host_path)).unwrap();
        let key = if host == "vscode" { "servers" } else { "mcpServers" };
        let servers = rewritten[key].as_object().unwrap();
        assert_eq!(servers.keys().collect::<Vec<_>>(), ["portcullis"], "{rewritten}");
        assert_eq!(servers["portcullis"]["args"][0], "stdio");
        assert!(!read(&host_path).contains(TOKEN));
        match host {
            "claude-desktop" => assert_eq!(rewritten["globalShortcut"], "Ctrl+Space"),
            "claude-code" => assert_eq!(rewritten["numStartups"], 3),
            "vscode" => assert_eq!(servers["portcullis"]["type"], "stdio"),
            _ => {}
        }
        let backup = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().contains("portcullis-backup"))
            .unwrap();
        assert_eq!(read(&backup), original);
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600);
        // Importing again finds only Portcullis and changes nothing.
        let (code, _, err) = import(&[host, "--path", h, "--config", c]).await;
        assert_eq!(code, 64, "{err}");
        assert!(err.contains("is Portcullis already"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_still_works_through_portcullis() {
    let dir = tempfile::tempdir().unwrap();
    let host_path = dir.path().join("claude_desktop_config.json");
    std::fs::write(&host_path, sample("claude-desktop").to_string()).unwrap();
    let config = dir.path().join("portcullis.toml");
    let (code, out, err) = import(&[
        "claude-desktop",
        "--path",
        host_path.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    // Launch what the host would launch, and speak MCP to it over stdio.
    let host: Value = serde_json::from_str(&read(&host_path)).unwrap();
    let entry = &host["mcpServers"]["portcullis"];
    let args: Vec<&str> = entry["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let (_child, mut stdin, mut lines) = spawn_stdio(
        entry["command"].as_str().unwrap(),
        &args,
        &[("PORTCULLIS_MASTER_KEY", KEY)],
    );
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "claude-desktop", "version": "1"},
    });
    let response = stdio_call(
        &mut stdin,
        &mut lines,
        1,
        "tools/call",
        json!({"name": "everything__get-env", "arguments": {}, "_meta": meta}),
    )
    .await;
    let text = response.to_string();
    assert!(text.contains("GITHUB_PERSONAL_ACCESS_TOKEN"), "{text}");
    assert!(
        text.contains("[redacted:everything_github_personal_access_token]"),
        "{text}"
    );
    assert!(!text.contains(TOKEN), "{text}");
}
