//! portcullis-mail as a child process speaking MCP, for the tests — on stdio, or on Streamable
//! HTTP (`--http`, a 2025-11-25 session) — initialize, then requests and tool calls.

#![allow(dead_code, reason = "each test binary uses part of it")]

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

/// Which transport a test speaks.
#[derive(Clone, Copy, Debug)]
pub enum Transport {
    /// Lines on stdin and stdout.
    Stdio,
    /// Streamable HTTP on a loopback port.
    Http,
}

/// How requests reach the server.
enum Channel {
    Stdio {
        stdin: tokio::process::ChildStdin,
        lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    },
    Http {
        client: reqwest::Client,
        url: String,
        session: Option<String>,
    },
}

/// A running portcullis-mail.
pub struct Mcp {
    _child: tokio::process::Child,
    channel: Channel,
    next: u64,
}

impl Mcp {
    /// Starts portcullis-mail with `args` and `env` (nothing else of ours is inherited) and
    /// initializes an MCP session.
    pub async fn spawn(args: &[&str], env: &[(&str, &str)]) -> Mcp {
        Mcp::spawn_on(Transport::Stdio, args, env).await
    }

    /// As `spawn`, on `transport`.
    pub async fn spawn_on(transport: Transport, args: &[&str], env: &[(&str, &str)]) -> Mcp {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = args.to_vec();
        if let Transport::Http = transport {
            args.extend(["--http", listen.as_str()]);
        }
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_portcullis-mail"))
            .args(&args)
            .env_remove("MAIL_PASSWORD")
            .env_remove("MAIL_ACCESS_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let channel = match transport {
            Transport::Stdio => Channel::Stdio {
                stdin: child.stdin.take().unwrap(),
                lines: BufReader::new(child.stdout.take().unwrap()).lines(),
            },
            Transport::Http => {
                let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
                while tokio::net::TcpStream::connect(&listen).await.is_err() {
                    assert!(tokio::time::Instant::now() < deadline, "--http never listened");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                // reqwest is built without a default TLS provider; plain http needs one anyway.
                let _ = rustls::crypto::ring::default_provider().install_default();
                Channel::Http {
                    client: reqwest::Client::new(),
                    url: format!("http://{listen}/mcp"),
                    session: None,
                }
            }
        };
        let mut m = Mcp {
            _child: child,
            channel,
            next: 1,
        };
        let init = m
            .request(
                "initialize",
                json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}),
            )
            .await;
        assert!(init["result"].is_object(), "{init}");
        m.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        m
    }

    /// Sends one message; the response to it, if it is a request.
    async fn send(&mut self, msg: Value) -> Option<Value> {
        let id = msg.get("id").cloned();
        match &mut self.channel {
            Channel::Stdio { stdin, lines } => {
                stdin.write_all(format!("{msg}\n").as_bytes()).await.unwrap();
                let id = id?;
                loop {
                    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
                        .await
                        .unwrap()
                        .unwrap()
                        .unwrap();
                    let v: Value = serde_json::from_str(&line).unwrap();
                    if v["id"] == id {
                        return Some(v);
                    }
                }
            }
            Channel::Http { client, url, session } => {
                let mut req = client
                    .post(url.as_str())
                    .header("Content-Type", "application/json")
                    .header("Accept", "application/json, text/event-stream")
                    .header("MCP-Protocol-Version", "2025-11-25");
                if let Some(s) = session.as_deref() {
                    req = req.header("Mcp-Session-Id", s);
                }
                let resp = tokio::time::timeout(Duration::from_secs(30), req.body(msg.to_string()).send())
                    .await
                    .unwrap()
                    .unwrap();
                if let Some(s) = resp.headers().get("mcp-session-id") {
                    *session = Some(s.to_str().unwrap().to_owned());
                }
                let status = resp.status();
                let body = resp.text().await.unwrap();
                let id = id?;
                assert!(status.is_success(), "{status}: {body}");
                // JSON, or an event stream whose data lines carry it.
                std::iter::once(body.as_str())
                    .chain(body.lines().filter_map(|l| l.strip_prefix("data:")))
                    .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                    .find(|v| v["id"] == id)
            }
        }
    }

    /// One request; its response.
    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send(msg)
            .await
            .unwrap_or_else(|| panic!("no response to {method}"))
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
