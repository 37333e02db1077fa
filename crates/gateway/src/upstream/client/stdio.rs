//! An upstream server run as a child process speaking newline-delimited JSON-RPC on stdio.
//!
//! The child gets a clean environment: a short allowlist of the gateway's variables (so that
//! `npx` and friends find their way) plus what its config sets. Nothing else of the gateway's
//! environment, where other upstreams' secrets may live, reaches it. It runs in its own
//! process group so that shutting it down also stops what it spawned (`npx` → `node`).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{Stream, StreamExt};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use portcullis_core::jsonrpc::code;
use portcullis_core::{ErrorObject, Id, Message, Notification, Outcome, Params, Request, Response};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, broadcast, mpsc};

use super::registry::{Registry, Unclaimed};
use super::{Call, ClientError, ClientEvent, ConnectOptions, ServerInfo, from_initialize, initialize_params};
use crate::config::Transport;
use crate::framing::{self, Inbound};

/// The sandbox helper: the gateway's own binary (`portcullis __sandbox`), or
/// `PORTCULLIS_SANDBOX_HELPER` (for a host program that is not `portcullis`).
fn helper() -> std::path::PathBuf {
    std::env::var_os("PORTCULLIS_SANDBOX_HELPER")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("/proc/self/exe"))
}

/// The spec of a stdio upstream's sandbox (`Ok(None)`: `sandbox = false`), as the helper will
/// apply it: for the connection, and for `portcullis doctor`.
pub fn sandbox_spec(label: &str, transport: &Transport) -> Result<Option<portcullis_sandbox::Spec>, String> {
    let Transport::Stdio {
        command,
        args,
        env,
        inherit_env,
        cwd,
        sandbox: Some(sb),
    } = transport
    else {
        return Ok(None);
    };
    let gateway_cwd = std::env::current_dir().unwrap_or_else(|_| "/".into());
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    let user_home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let mut vars: Vec<(String, String)> = inherit_env
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
        .collect();
    vars.extend(env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let cgroup = nix::unistd::geteuid()
        .is_root()
        .then(portcullis_sandbox::layers::limits::pids_root)
        .flatten();
    portcullis_sandbox::plan::build(&portcullis_sandbox::plan::Request {
        name: label,
        command,
        args,
        env: vars,
        cwd: cwd.as_deref(),
        gateway_cwd: &gateway_cwd,
        path: &path,
        user_home: user_home.as_deref(),
        private: &sb.private,
        fs_read: &sb.fs_read,
        fs_write: &sb.fs_write,
        network: sb.network,
        limits: sb.limits,
        optional: &sb.accept_weaker,
        protected: &sb.protected,
        cgroup,
    })
    .map(Some)
    .map_err(|e| format!("sandbox: {e}"))
}

/// The helper (`portcullis __sandbox`) that applies `spec` and starts the upstream, handed the
/// spec in a variable of an otherwise empty environment.
pub fn helper_command(spec: &portcullis_sandbox::Spec) -> Result<Command, String> {
    if !cfg!(target_os = "linux") {
        return Err(
            "stdio upstreams run sandboxed, and the sandbox needs Linux: set `sandbox = false` on this upstream to run it unconfined".into(),
        );
    }
    let text = serde_json::to_string(spec).map_err(|e| format!("sandbox: {e}"))?;
    let mut cmd = Command::new(helper());
    cmd.arg(portcullis_sandbox::stage::STAGE1)
        .env_clear()
        .env(portcullis_sandbox::spec::SPEC_ENV, text);
    Ok(cmd)
}

/// The last lines an upstream wrote to stderr, and its sandbox's report: why it died, when it
/// dies before its handshake.
#[derive(Debug, Default)]
pub(crate) struct StderrTail {
    lines: std::collections::VecDeque<String>,
    /// The sandbox's report line, as the helper wrote it.
    pub report: Option<String>,
}

impl StderrTail {
    const KEPT: usize = 3;

    fn push(&mut self, line: String) {
        if let Some(r) = line.strip_prefix(portcullis_sandbox::report::LINE_PREFIX)
            && self.report.is_none()
            && r.contains("=active")
        {
            self.report = Some(r.to_owned());
            return;
        }
        self.lines.push_back(line);
        while self.lines.len() > Self::KEPT {
            self.lines.pop_front();
        }
    }

    /// The last lines, one string (scrubbed of secrets).
    pub fn last(&self) -> String {
        let joined = self.lines.iter().cloned().collect::<Vec<_>>().join(" | ");
        String::from_utf8_lossy(&crate::redact::scrub(joined.as_bytes())).into_owned()
    }
}

/// Gateway environment variables every stdio upstream inherits when set.
pub const BASE_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TERM", "TMPDIR", "TZ", "SHELL",
];

/// Builds the environment of a child: the allowlist, then `inherit`, then `set`.
pub fn child_env(inherit: &[String], set: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    for name in BASE_ENV.iter().copied().chain(inherit.iter().map(String::as_str)) {
        if let Ok(v) = std::env::var(name) {
            env.insert(name.to_owned(), v);
        }
    }
    env.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
    env
}

/// The child process; killed with its whole group when dropped.
#[derive(Debug)]
struct ChildGuard {
    child: Child,
    pgid: Option<Pid>,
}

impl ChildGuard {
    fn signal_group(&self, sig: Signal) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(pgid, sig);
        }
    }

    /// Waits for the child to exit after stdin closed; escalates to SIGTERM, then SIGKILL.
    async fn stop(&mut self) {
        for (grace, sig) in [
            (Duration::from_secs(2), Signal::SIGTERM),
            (Duration::from_secs(2), Signal::SIGKILL),
        ] {
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                // The leader is gone; make sure its group is too.
                self.signal_group(Signal::SIGKILL);
                return;
            }
            self.signal_group(sig);
        }
        let _ = self.child.wait().await;
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.signal_group(Signal::SIGKILL);
    }
}

/// A running stdio server.
pub(crate) struct StdioLink {
    /// Its stderr's last lines and its sandbox's report.
    pub tail: Arc<std::sync::Mutex<StderrTail>>,
    tx: mpsc::Sender<Vec<u8>>,
    registry: Arc<Registry>,
    closed: Arc<AtomicBool>,
    child: Mutex<Option<ChildGuard>>,
    label: String,
}

impl StdioLink {
    pub async fn connect(
        transport: &Transport,
        opts: &ConnectOptions,
        events: broadcast::Sender<ClientEvent>,
    ) -> Result<(StdioLink, ServerInfo), ClientError> {
        let Transport::Stdio {
            command,
            args,
            env,
            inherit_env,
            cwd,
            sandbox,
        } = transport
        else {
            return Err(ClientError::Connect("not a stdio transport".into()));
        };
        let mut cmd = match sandbox {
            Some(_) => {
                let spec = sandbox_spec(&opts.label, transport)
                    .map_err(ClientError::Connect)?
                    .ok_or_else(|| ClientError::Connect("sandbox: no spec".into()))?;
                helper_command(&spec).map_err(ClientError::Connect)?
            }
            None => {
                let mut cmd = Command::new(command);
                cmd.args(args).env_clear().envs(child_env(inherit_env, env));
                if let Some(dir) = cwd {
                    cmd.current_dir(dir);
                }
                cmd
            }
        };
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| ClientError::Connect(format!("cannot start `{command}`: {e}")))?;
        let pgid = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(ClientError::Connect("child has no stdio pipes".into()));
        };
        let label = opts.label.clone();
        let tail = Arc::new(std::sync::Mutex::new(StderrTail::default()));
        spawn_stderr_logger(stderr, label.clone(), tail.clone());
        let (tx, rx) = mpsc::channel::<Vec<u8>>(1024);
        framing::spawn_writer(stdin, rx);
        let inbound = framing::frames(stdout, opts.limits);
        let link = StdioLink {
            tail: tail.clone(),
            tx,
            registry: Arc::new(Registry::default()),
            closed: Arc::new(AtomicBool::new(false)),
            child: Mutex::new(Some(ChildGuard { child, pgid })),
            label,
        };
        link.spawn_dispatch(inbound, events, tail.clone());
        let silent = || {
            ClientError::Handshake(format!(
                "no answer to its handshake within {:?}",
                opts.handshake_timeout
            ))
        };
        let server = tokio::time::timeout(opts.handshake_timeout, link.handshake(opts))
            .await
            .map_err(|_| silent())?
            .map_err(|e| match e {
                ClientError::Timeout(_) => silent(),
                e => e,
            })?;
        Ok((link, server))
    }

    fn spawn_dispatch(
        &self,
        mut inbound: Pin<Box<dyn Stream<Item = Inbound> + Send>>,
        events: broadcast::Sender<ClientEvent>,
        tail: Arc<std::sync::Mutex<StderrTail>>,
    ) {
        let registry = self.registry.clone();
        let tx = self.tx.clone();
        let closed = self.closed.clone();
        let label = self.label.clone();
        tokio::spawn(async move {
            while let Some(item) = inbound.next().await {
                match item {
                    Inbound::Message(m) => match registry.dispatch(m) {
                        None | Some(Unclaimed::Stale) => {}
                        Some(Unclaimed::Notification(n)) => {
                            let _ = events.send(ClientEvent::Notification(n));
                        }
                        Some(Unclaimed::Reply(r)) => {
                            // Never waits: this task reads the server's output, and a server
                            // that asks faster than it reads its input must not stall it.
                            let _ = tx.try_send(Message::from(r).to_vec());
                        }
                        Some(Unclaimed::Relayed(id, reply)) => {
                            let tx = tx.clone();
                            tokio::spawn(async move {
                                let outcome = reply.await.unwrap_or_else(|_| {
                                    Outcome::Error(ErrorObject::new(code::INTERNAL_ERROR, "the client went away"))
                                });
                                let _ = tx
                                    .send(Message::from(Response { id: Some(id), outcome }).to_vec())
                                    .await;
                            });
                        }
                    },
                    Inbound::Malformed(e) => {
                        tracing::warn!(upstream = %label, error = %e, "upstream sent a malformed frame");
                        // A malformed answer whose id could be read (over the size limit, cut
                        // short, not UTF-8) fails that call at once, rather than leaving it to
                        // its timeout. Lines with no readable id (a banner, a stray print) are
                        // only logged: many servers write such lines and still work.
                        if let Some(Id::Int(n)) = malformed_id(&e)
                            && let Some(slot) = registry.remove(*n)
                        {
                            let _ = slot.done.send(Err(ClientError::Protocol(format!(
                                "the server sent a malformed answer: {e}"
                            ))));
                        }
                    }
                    Inbound::Closed(err) => {
                        // Give its last words (a sandbox refusing to start, a bad flag) a moment to
                        // arrive: they are the reason.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let last = tail.lock().unwrap_or_else(std::sync::PoisonError::into_inner).last();
                        let mut reason = match err {
                            Some(e) => format!("upstream `{label}` output failed: {e}"),
                            None => format!("upstream `{label}` exited"),
                        };
                        if !last.is_empty() {
                            reason.push_str(": ");
                            reason.push_str(&last);
                        }
                        closed.store(true, Ordering::SeqCst);
                        registry.fail_all(&reason);
                        let _ = events.send(ClientEvent::Closed(reason));
                        return;
                    }
                }
            }
        });
    }

    /// The era probe, then `initialize` only if the server answered it as a legacy server.
    /// Silence is no sign of an era over stdio: a server still starting (a Python server
    /// importing a large library) answers late, and an `initialize` sent on top of the
    /// unanswered probe is refused by a modern server that then reads both. So the probe
    /// waits for the whole start budget.
    async fn handshake(&self, opts: &ConnectOptions) -> Result<ServerInfo, ClientError> {
        let legacy_sign = |_: &ClientError| false;
        let probe = super::probe_modern(opts, legacy_sign, || {
            self.raw_call(
                "server/discover",
                Some(super::discover_params()),
                opts.handshake_timeout,
            )
        });
        if let Some(info) = probe.await? {
            return Ok(info);
        }
        let resp = self
            .raw_call("initialize", Some(initialize_params(opts)), opts.handshake_timeout)
            .await?;
        let result = match resp.outcome {
            Outcome::Result(r) => serde_json::from_str(r.get()).map_err(|e| ClientError::Protocol(e.to_string()))?,
            Outcome::Error(e) => {
                return Err(ClientError::Handshake(format!(
                    "initialize failed: {} ({})",
                    e.message, e.code
                )));
            }
        };
        let info = from_initialize(&result)?;
        self.notify(Notification {
            method: "notifications/initialized".into(),
            params: None,
        })
        .await?;
        Ok(info)
    }

    async fn raw_call(&self, method: &str, params: Option<Params>, timeout: Duration) -> Result<Response, ClientError> {
        self.call(Call::new(method, params, timeout)).await
    }

    pub async fn call(&self, call: Call) -> Result<Response, ClientError> {
        if self.is_closed() {
            let last = self
                .tail
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .last();
            let why = if last.is_empty() {
                String::new()
            } else {
                format!(": {last}")
            };
            return Err(ClientError::Closed(format!(
                "upstream `{}` is not running{why}",
                self.label
            )));
        }
        let id = self.registry.next_id();
        let mut params = call.params;
        let done = self.registry.register(id, &call.method, &mut params, call.sink);
        let guard = CancelOnDrop {
            link: self,
            id,
            armed: true,
        };
        let frame = Message::from(Request {
            id: Id::Int(id),
            method: call.method,
            params,
        })
        .to_vec();
        self.tx
            .send(frame)
            .await
            .map_err(|_| ClientError::Closed(format!("upstream `{}` is not accepting input", self.label)))?;
        match tokio::time::timeout(call.timeout, done).await {
            Ok(Ok(answer)) => {
                guard.disarm();
                answer
            }
            Ok(Err(_)) => {
                guard.disarm();
                Err(ClientError::Closed(format!("upstream `{}` went away", self.label)))
            }
            Err(_) => Err(ClientError::Timeout(call.timeout)),
        }
    }

    pub async fn notify(&self, n: Notification) -> Result<(), ClientError> {
        self.tx
            .send(Message::from(n).to_vec())
            .await
            .map_err(|_| ClientError::Closed(format!("upstream `{}` is not accepting input", self.label)))
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    pub async fn shutdown(&self) {
        // An empty frame asks the writer to close the child's stdin: the polite signal.
        let _ = self.tx.send(Vec::new()).await;
        let guard = self.child.lock().await.take();
        if let Some(mut child) = guard {
            child.stop().await;
        }
        self.closed.store(true, Ordering::SeqCst);
    }
}

/// Cancels the request at the server if the call is dropped before its response.
struct CancelOnDrop<'a> {
    link: &'a StdioLink,
    id: i64,
    armed: bool,
}

impl CancelOnDrop<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.link.registry.remove(self.id);
        let mut params = Params::new();
        let _ = params.insert("requestId", &self.id);
        let _ = params.insert("reason", "cancelled by the gateway");
        let frame = Message::from(Notification {
            method: "notifications/cancelled".into(),
            params: Some(params),
        })
        .to_vec();
        let _ = self.link.tx.try_send(frame);
    }
}

fn spawn_stderr_logger(stderr: tokio::process::ChildStderr, label: String, tail: Arc<std::sync::Mutex<StderrTail>>) {
    const MAX_LINE: usize = 4096;
    // A line is read a little past what is shown, and scrubbed before it is cut: a secret
    // astride the cut is replaced whole, never shown in part.
    const READ_LINE: usize = MAX_LINE + 1024;
    tokio::spawn(async move {
        let mut reader = BufReader::new(stderr);
        let mut line = Vec::with_capacity(256);
        loop {
            let buf = match reader.fill_buf().await {
                Ok([]) | Err(_) => break,
                Ok(buf) => buf,
            };
            let (chunk, ends_line) = match buf.iter().position(|b| *b == b'\n') {
                Some(i) => (buf.get(..i).unwrap_or_default(), Some(i + 1)),
                None => (buf, None),
            };
            let room = READ_LINE.saturating_sub(line.len());
            line.extend_from_slice(chunk.get(..chunk.len().min(room)).unwrap_or_default());
            let consumed = ends_line.unwrap_or(buf.len());
            reader.consume(consumed);
            if ends_line.is_some() {
                let scrubbed = crate::redact::scrub(&line);
                let mut shown = String::from_utf8_lossy(&scrubbed).into_owned();
                if shown.len() > MAX_LINE {
                    let mut cut = MAX_LINE;
                    while !shown.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    shown.truncate(cut);
                    shown.push_str(" […]");
                }
                tracing::info!(target: "portcullis::upstream", upstream = %label, "{shown}");
                tail.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(shown);
                line.clear();
            }
        }
    });
}

/// The id a malformed frame names, when it could be read.
fn malformed_id(e: &portcullis_core::jsonrpc::ParseError) -> Option<&Id> {
    match e {
        portcullis_core::jsonrpc::ParseError::Json { id, .. }
        | portcullis_core::jsonrpc::ParseError::Invalid { id, .. } => id.as_ref(),
    }
}
