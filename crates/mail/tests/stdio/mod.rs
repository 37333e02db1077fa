//! portcullis-mail as a child process speaking MCP on stdio, for the tests: initialize, then
//! requests and tool calls.

#![allow(dead_code, reason = "each test binary uses part of it")]

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

/// A running portcullis-mail on stdio.
pub struct Mcp {
    _child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    next: u64,
}

impl Mcp {
    /// Starts portcullis-mail with `args` and `env` (nothing else of ours is inherited) and
    /// initializes an MCP session.
    pub async fn spawn(args: &[&str], env: &[(&str, &str)]) -> Mcp {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis-mail"))
            .args(args)
            .env_remove("MAIL_PASSWORD")
            .env_remove("MAIL_ACCESS_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut m = Mcp {
            _child: child,
            stdin,
            lines,
            next: 1,
        };
        let init = m
            .request(
                "initialize",
                json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}),
            )
            .await;
        assert!(init["result"].is_object(), "{init}");
        m.stdin
            .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
            .await
            .unwrap();
        m
    }

    /// One request; its response.
    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.stdin.write_all(format!("{msg}\n").as_bytes()).await.unwrap();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"] == id {
                return v;
            }
        }
    }

    /// One tool call; its response.
    pub async fn call(&mut self, tool: &str, args: Value) -> Value {
        self.request("tools/call", json!({"name": tool, "arguments": args}))
            .await
    }

    /// The names of the tools listed.
    pub async fn tool_names(&mut self) -> Vec<String> {
        let list = self.request("tools/list", json!({})).await;
        list["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// A successful call's `structuredContent`.
pub fn structured(r: &Value) -> &Value {
    assert!(r["result"]["isError"] != json!(true), "{r}");
    &r["result"]["structuredContent"]
}

/// A failed call's text.
pub fn tool_error(r: &Value) -> String {
    assert_eq!(r["result"]["isError"], json!(true), "{r}");
    r["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
