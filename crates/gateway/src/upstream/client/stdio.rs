//! An upstream server run as a child process speaking newline-delimited JSON-RPC on stdio.
//!
//! The child gets a clean environment: a short allowlist of the gateway's variables (so that
//! `npx` and friends find their way) plus what its config sets. Nothing else of the gateway's
//! environment, where other upstreams' secrets may live, reaches it. It runs in its own
//! process group so that shutting it down also stops what it spawned (`npx` → `node`).

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
        } = transport
        else {
            return Err(ClientError::Connect("not a stdio transport".into()));
        };
        let mut cmd = Command::new(command);
        cmd.args(args)
            .env_clear()
            .envs(child_env(inherit_env, env))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        if let Some(dir) = cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| ClientError::Connect(format!("cannot start `{command}`: {e}")))?;
        let pgid = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
        let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(ClientError::Connect("child has no stdio pipes".into()));
        };
        let label = opts.label.clone();
        spawn_stderr_logger(stderr, label.clone());
        let (tx, rx) = mpsc::channel::<Vec<u8>>(1024);
        framing::spawn_writer(stdin, rx);
        let (in_tx, in_rx) = mpsc::channel(1024);
        framing::spawn_reader(stdout, opts.limits, in_tx);
        let link = StdioLink {
            tx,
            registry: Arc::new(Registry::default()),
            closed: Arc::new(AtomicBool::new(false)),
            child: Mutex::new(Some(ChildGuard { child, pgid })),
            label,
        };
        link.spawn_dispatch(in_rx, events);
        let server = tokio::time::timeout(opts.handshake_timeout, link.handshake(opts))
            .await
            .map_err(|_| ClientError::Handshake(format!("no handshake within {:?}", opts.handshake_timeout)))??;
        Ok((link, server))
    }

    fn spawn_dispatch(&self, mut rx: mpsc::Receiver<Inbound>, events: broadcast::Sender<ClientEvent>) {
        let registry = self.registry.clone();
        let tx = self.tx.clone();
        let closed = self.closed.clone();
        let label = self.label.clone();
        tokio::spawn(async move {
            while let Some(item) = rx.recv().await {
                match item {
                    Inbound::Message(m) => match registry.dispatch(m) {
                        None | Some(Unclaimed::Stale) => {}
                        Some(Unclaimed::Notification(n)) => {
                            let _ = events.send(ClientEvent::Notification(n));
                        }
                        Some(Unclaimed::Reply(r)) => {
                            let _ = tx.send(Message::from(r).to_vec()).await;
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
                    }
                    Inbound::Closed(err) => {
                        let reason = match err {
                            Some(e) => format!("upstream `{label}` output failed: {e}"),
                            None => format!("upstream `{label}` exited"),
                        };
                        closed.store(true, Ordering::SeqCst);
                        registry.fail_all(&ErrorObject::new(code::UPSTREAM_UNAVAILABLE, reason.clone()));
                        let _ = events.send(ClientEvent::Closed(reason));
                        return;
                    }
                }
            }
        });
    }

    async fn handshake(&self, opts: &ConnectOptions) -> Result<ServerInfo, ClientError> {
        let legacy_sign = |e: &ClientError| matches!(e, ClientError::Timeout(_));
        let probe = super::probe_modern(opts, legacy_sign, || {
            self.raw_call("server/discover", Some(super::discover_params()), opts.probe_timeout)
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
            return Err(ClientError::Closed(format!("upstream `{}` is not running", self.label)));
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
            Ok(Ok(resp)) => {
                guard.disarm();
                Ok(resp)
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

fn spawn_stderr_logger(stderr: tokio::process::ChildStderr, label: String) {
    const MAX_LINE: usize = 4096;
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
            let room = MAX_LINE.saturating_sub(line.len());
            line.extend_from_slice(chunk.get(..chunk.len().min(room)).unwrap_or_default());
            let consumed = ends_line.unwrap_or(buf.len());
            reader.consume(consumed);
            if ends_line.is_some() {
                tracing::info!(target: "portcullis::upstream", upstream = %label, "{}", String::from_utf8_lossy(&line));
                line.clear();
            }
        }
    });
}
