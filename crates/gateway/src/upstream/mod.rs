//! The pool of upstream servers. One supervisor per upstream connects, reconnects with
//! exponential backoff when the process dies or the session ends, reports its state, and (for
//! modern servers) keeps a `subscriptions/listen` stream open so list changes and resource
//! updates reach the gateway. [`client`] is the MCP client it connects with; [`exchange`] one
//! forwarded call as a task; [`secrets`] and [`oauth`] the credentials injected here and only
//! here.
//!
//! **Architecture invariant:** nothing here judges: this folder knows no policy, no session
//! and no client of the gateway; what reaches it was decided above.

pub mod client;
pub mod exchange;
pub mod oauth;
pub mod secrets;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use portcullis_core::catalog::Kind;
use portcullis_core::mcp::{Era, meta};
use portcullis_core::{Limits, Notification, Params};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::UpstreamConfig;
use crate::upstream::client::{Call, CallSink, ClientError, ClientEvent, ConnectOptions, McpClient};
use crate::upstream::oauth::TokenSource;
use portcullis_vault::Vault;

/// Lists an upstream said changed and the gateway has not re-read yet: a set, not a queue, so
/// a flood of `list_changed` notifications costs one re-read.
#[derive(Debug, Default)]
pub struct Changed {
    kinds: Mutex<BTreeSet<u8>>,
    wake: Notify,
}

fn kind_code(k: Kind) -> u8 {
    match k {
        Kind::Tool => 0,
        Kind::Prompt => 1,
        Kind::Resource => 2,
        Kind::Template => 3,
    }
}

impl Changed {
    /// Marks the list a `notifications/*/list_changed` names; `false` for other methods.
    pub fn mark(&self, method: &str) -> bool {
        let kinds: &[Kind] = match method {
            "notifications/tools/list_changed" => &[Kind::Tool],
            "notifications/prompts/list_changed" => &[Kind::Prompt],
            "notifications/resources/list_changed" => &[Kind::Resource, Kind::Template],
            _ => return false,
        };
        self.kinds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(kinds.iter().map(|k| kind_code(*k)));
        self.wake.notify_one();
        true
    }

    /// Waits until some list changed, and takes what did.
    pub async fn next(&self) -> Vec<Kind> {
        loop {
            let taken: BTreeSet<u8> = std::mem::take(&mut *self.kinds.lock().unwrap_or_else(PoisonError::into_inner));
            if !taken.is_empty() {
                return [Kind::Tool, Kind::Prompt, Kind::Resource, Kind::Template]
                    .into_iter()
                    .filter(|k| taken.contains(&kind_code(*k)))
                    .collect();
            }
            self.wake.notified().await;
        }
    }
}

/// Where an upstream stands.
#[derive(Clone, Debug)]
pub enum State {
    /// Connecting (first time or after a failure).
    Starting {
        /// Why the previous attempt failed, when there was one: a call or a listing that
        /// meets the upstream restarting says why, not only that it is starting.
        after: Option<String>,
    },
    /// Connected and handshaken.
    Ready(Arc<McpClient>),
    /// Not reachable; retrying.
    Down {
        /// Why.
        reason: String,
        /// Since when.
        since: Instant,
    },
    /// Shut down for good.
    Stopped,
}

/// What an upstream reports to the gateway.
#[derive(Debug)]
pub enum Event {
    /// It became ready (again).
    Ready(usize),
    /// It went down.
    Down(usize, String),
    /// A connection-level notification (list change, resource update, log).
    Notification(usize, Notification),
}

/// A supervised upstream.
#[derive(Debug)]
pub struct Upstream {
    /// Position in config order.
    pub index: usize,
    /// Its configuration.
    pub cfg: UpstreamConfig,
    /// Lists it said changed, not re-read yet.
    pub changed: Arc<Changed>,
    state: watch::Receiver<State>,
    resource_subs: watch::Sender<BTreeSet<String>>,
    stop: CancellationToken,
    personal: Option<Personal>,
}

/// Most per-principal instances of one upstream.
const MAX_PERSONAL: usize = 1000;

/// The instances of one upstream for principals who have their own secrets for it: each such
/// principal's calls go to a process (or session) of their own that holds only their secrets,
/// started at their first call. Everyone else shares the main instance.
pub struct Personal {
    /// The upstream's config as written (with its `vault:NAME` references).
    raw: UpstreamConfig,
    vault: Arc<Vault>,
    /// The principals with a secret of their own among the upstream's references.
    owners: BTreeSet<String>,
    limits: Limits,
    credential: Option<Arc<TokenSource>>,
    instances: tokio::sync::Mutex<HashMap<String, Arc<Upstream>>>,
}

impl std::fmt::Debug for Personal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Personal")
            .field("owners", &self.owners)
            .finish_non_exhaustive()
    }
}

impl Personal {
    /// Per-principal instances of `raw` for `owners`.
    pub fn new(
        raw: UpstreamConfig,
        vault: Arc<Vault>,
        owners: BTreeSet<String>,
        limits: Limits,
        credential: Option<Arc<TokenSource>>,
    ) -> Personal {
        Personal {
            raw,
            vault,
            owners,
            limits,
            credential,
            instances: tokio::sync::Mutex::new(HashMap::new()),
        }
    }
}

/// The upstream cannot take calls now.
#[derive(Debug, thiserror::Error)]
#[error("upstream `{name}` is unavailable: {reason}")]
pub struct Unavailable {
    /// The upstream.
    pub name: String,
    /// Why.
    pub reason: String,
}

impl Upstream {
    /// Starts supervising; events go to `events`. With a token source, each connection gets a
    /// fresh access token, and is replaced before that token expires.
    pub fn start(
        index: usize,
        cfg: UpstreamConfig,
        limits: Limits,
        events: mpsc::Sender<Event>,
        credential: Option<Arc<TokenSource>>,
        personal: Option<Personal>,
    ) -> Arc<Upstream> {
        let (state_tx, state_rx) = watch::channel(State::Starting { after: None });
        let (subs_tx, subs_rx) = watch::channel(BTreeSet::new());
        let stop = CancellationToken::new();
        let changed = Arc::new(Changed::default());
        let up = Arc::new(Upstream {
            index,
            cfg: cfg.clone(),
            changed: changed.clone(),
            state: state_rx,
            resource_subs: subs_tx,
            stop: stop.clone(),
            personal,
        });
        let sup = Supervisor {
            index,
            cfg,
            limits,
            credential,
            changed,
        };
        tokio::spawn(sup.run(state_tx, subs_rx, events, stop));
        up
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }

    /// The connected client, waiting up to `wait` while it is starting.
    pub async fn client(&self, wait: Duration) -> Result<Arc<McpClient>, Unavailable> {
        let mut rx = self.state.clone();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let current = rx.borrow_and_update().clone();
            match current {
                State::Ready(c) if !c.is_closed() => return Ok(c),
                State::Ready(_) => {}
                State::Down { reason, .. } => return Err(self.unavailable(reason)),
                State::Stopped => return Err(self.unavailable("the gateway is shutting down".into())),
                State::Starting { .. } => {}
            }
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return Err(self.unavailable(match self.state() {
                    State::Starting { after: Some(why) } => format!("still starting; the last attempt failed: {why}"),
                    _ => "still starting".into(),
                }));
            }
        }
    }

    /// The client serving `principal`: their own instance when they have their own secrets
    /// for this upstream (started at their first call), else the shared one.
    pub async fn client_for(&self, principal: &str, wait: Duration) -> Result<Arc<McpClient>, Unavailable> {
        let Some(p) = self.personal.as_ref().filter(|p| p.owners.contains(principal)) else {
            return self.client(wait).await;
        };
        let instance = {
            let mut instances = p.instances.lock().await;
            match instances.get(principal) {
                Some(i) => i.clone(),
                None => {
                    if instances.len() >= MAX_PERSONAL {
                        return Err(self.unavailable(format!("more than {MAX_PERSONAL} per-user instances")));
                    }
                    let mut cfg = secrets::resolve_for(&p.raw, &p.vault, principal)
                        .await
                        .map_err(|e| self.unavailable(e.to_string()))?;
                    // Its own sandbox folders too: one principal's instance never sees another's.
                    if let crate::config::Transport::Stdio { sandbox: Some(sb), .. } = &mut cfg.transport {
                        sb.private = sb.private.join("users").join(principal_folder(principal));
                    }
                    // Its list changes are the shared instance's to report; drop its events.
                    let (tx, mut rx) = mpsc::channel(16);
                    tokio::spawn(async move { while rx.recv().await.is_some() {} });
                    tracing::info!(upstream = %self.cfg.name, %principal, "starting a per-user instance (own secrets)");
                    let up = Upstream::start(self.index, cfg, p.limits, tx, p.credential.clone(), None);
                    instances.insert(principal.to_owned(), up.clone());
                    up
                }
            }
        };
        instance.client(wait).await
    }

    fn unavailable(&self, reason: String) -> Unavailable {
        Unavailable {
            name: self.cfg.name.clone(),
            reason,
        }
    }

    /// Sets the resource URIs the gateway wants updates for from this upstream.
    pub fn set_resource_subscriptions(&self, uris: BTreeSet<String>) {
        self.resource_subs.send_if_modified(|cur| {
            let changed = *cur != uris;
            *cur = uris;
            changed
        });
    }

    /// Stops the upstream (closing stdin / ending the session).
    pub async fn shutdown(&self) {
        if let Some(p) = &self.personal {
            let instances: Vec<Arc<Upstream>> = p.instances.lock().await.drain().map(|(_, u)| u).collect();
            for i in instances {
                Box::pin(i.shutdown()).await;
            }
        }
        self.stop.cancel();
        let mut rx = self.state.clone();
        let _ = tokio::time::timeout(Duration::from_secs(6), rx.wait_for(|s| matches!(s, State::Stopped))).await;
    }
}

/// A principal's private folder name: a digest, so any principal name makes a plain file name.
fn principal_folder(principal: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(principal.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << failures.min(9))).min(Duration::from_secs(30))
}

struct Supervisor {
    index: usize,
    cfg: UpstreamConfig,
    limits: Limits,
    credential: Option<Arc<TokenSource>>,
    changed: Arc<Changed>,
}

/// Passes an upstream's connection-level notification on: a list change marks the list; the
/// rest is queued for the gateway, dropped (and logged) when the queue is full.
fn report(index: usize, changed: &Changed, events: &mpsc::Sender<Event>, n: Notification) {
    if changed.mark(&n.method) {
        return;
    }
    if let Err(mpsc::error::TrySendError::Full(Event::Notification(_, n))) =
        events.try_send(Event::Notification(index, n))
    {
        tracing::warn!(upstream = index, method = %n.method, "upstream notification dropped: the gateway is behind");
    }
}

/// Why a connection ended.
enum End {
    /// The gateway is stopping.
    Stop,
    /// The process died or the session ended.
    Lost(String),
    /// Its access token is due for replacement: reconnect with a fresh one, no backoff.
    Refresh,
}

impl Supervisor {
    /// Connects: with a token source, first mints the token and hands it to this connection
    /// only.
    async fn connect(&self, opts: &ConnectOptions) -> Result<(McpClient, Option<Instant>), String> {
        let (cfg, refresh_at) = match &self.credential {
            None => (None, None),
            Some(src) => {
                let m = src.token().await.map_err(|e| e.to_string())?;
                (Some(src.deliver(&self.cfg, &m.token)), m.refresh_at)
            }
        };
        let transport = cfg.as_ref().map_or(&self.cfg.transport, |c| &c.transport);
        McpClient::connect(transport, opts)
            .await
            .map(|c| (c, refresh_at))
            .map_err(|e| e.to_string())
    }

    async fn run(
        self,
        state: watch::Sender<State>,
        mut subs: watch::Receiver<BTreeSet<String>>,
        events: mpsc::Sender<Event>,
        stop: CancellationToken,
    ) {
        let (index, cfg) = (self.index, &self.cfg);
        let opts = ConnectOptions::for_upstream(cfg, self.limits);
        let mut failures = 0u32;
        let mut last_failure = None;
        while !stop.is_cancelled() {
            state.send_replace(State::Starting {
                after: last_failure.clone(),
            });
            let connected = tokio::select! {
                r = self.connect(&opts) => r,
                () = stop.cancelled() => break,
            };
            let end = match connected {
                Ok((client, refresh_at)) => {
                    let client = Arc::new(client);
                    let mut client_events = client.subscribe();
                    failures = 0;
                    last_failure = None;
                    tracing::info!(upstream = %cfg.name, era = ?client.server().era, version = %client.server().version, "upstream ready");
                    state.send_replace(State::Ready(client.clone()));
                    let _ = events.send(Event::Ready(index)).await;
                    let listen = (client.server().era == Era::Modern).then(|| {
                        tokio::spawn(listen_loop(
                            index,
                            client.clone(),
                            subs.clone(),
                            events.clone(),
                            self.changed.clone(),
                        ))
                    });
                    let refresh = async {
                        match refresh_at {
                            Some(t) => tokio::time::sleep_until(t.into()).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::pin!(refresh);
                    let end = loop {
                        tokio::select! {
                            ev = client_events.recv() => match ev {
                                Ok(ClientEvent::Notification(n)) => report(index, &self.changed, &events, n),
                                Ok(ClientEvent::Closed(reason)) => break End::Lost(reason),
                                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                                    tracing::warn!(upstream = %cfg.name, dropped = n, "upstream notifications dropped");
                                }
                                Err(_) => break End::Lost("connection lost".into()),
                            },
                            _ = subs.changed() => {}
                            () = &mut refresh => break End::Refresh,
                            () = stop.cancelled() => break End::Stop,
                        }
                    };
                    if let Some(l) = listen {
                        l.abort();
                    }
                    if !matches!(end, End::Lost(_)) {
                        client.shutdown().await;
                    }
                    end
                }
                Err(e) => End::Lost(e),
            };
            let reason = match end {
                End::Stop => break,
                End::Refresh => {
                    tracing::info!(upstream = %cfg.name, "reconnecting with a fresh access token");
                    continue;
                }
                End::Lost(reason) => reason,
            };
            failures += 1;
            last_failure = Some(reason.clone());
            tracing::warn!(upstream = %cfg.name, %reason, retry_in_ms = backoff(failures).as_millis() as u64, "upstream down");
            state.send_replace(State::Down {
                reason: reason.clone(),
                since: Instant::now(),
            });
            let _ = events.send(Event::Down(index, reason)).await;
            tokio::select! {
                () = tokio::time::sleep(backoff(failures)) => {}
                () = stop.cancelled() => break,
            }
        }
        state.send_replace(State::Stopped);
    }
}

/// Keeps one `subscriptions/listen` request open to a modern upstream, reopening it when the
/// wanted resource set changes or the stream ends.
async fn listen_loop(
    index: usize,
    client: Arc<McpClient>,
    mut subs: watch::Receiver<BTreeSet<String>>,
    events: mpsc::Sender<Event>,
    changed: Arc<Changed>,
) {
    let caps = client.server().capabilities.clone();
    let wants = |cap: &str, key: &str| {
        caps.get(cap)
            .and_then(|c| c.get(key))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let mut failures = 0u32;
    loop {
        let uris: Vec<String> = subs.borrow_and_update().iter().cloned().collect();
        let mut filter = serde_json::Map::new();
        if wants("tools", "listChanged") {
            filter.insert("toolsListChanged".into(), json!(true));
        }
        if wants("prompts", "listChanged") {
            filter.insert("promptsListChanged".into(), json!(true));
        }
        if wants("resources", "listChanged") {
            filter.insert("resourcesListChanged".into(), json!(true));
        }
        if wants("resources", "subscribe") && !uris.is_empty() {
            filter.insert("resourceSubscriptions".into(), json!(uris));
        }
        if filter.is_empty() {
            // Nothing to listen for until the wanted set changes.
            if subs.changed().await.is_err() {
                return;
            }
            continue;
        }
        let mut params = Params::new();
        let _ = params.insert("notifications", &filter);
        let (notes_tx, mut notes_rx) = mpsc::channel(crate::upstream::client::SINK_NOTES);
        let (req_tx, _req_rx) = mpsc::channel(1);
        let call = Call {
            method: "subscriptions/listen".into(),
            params: Some(params),
            timeout: Duration::from_secs(365 * 24 * 3600),
            sink: Some(CallSink {
                notes: notes_tx,
                requests: req_tx,
                owner: None,
            }),
            meta: None,
        };
        let started = Instant::now();
        let listening = client.call(call);
        tokio::pin!(listening);
        let ended: Result<(), ClientError> = loop {
            tokio::select! {
                r = &mut listening => break r.map(|_| ()),
                Some(mut n) = notes_rx.recv() => {
                    if n.method == "notifications/subscriptions/acknowledged" {
                        continue;
                    }
                    strip_subscription_id(&mut n);
                    report(index, &changed, &events, n);
                }
                r = subs.changed() => {
                    if r.is_err() { return; }
                    break Ok(());
                }
            }
        };
        if client.is_closed() {
            return;
        }
        if let Err(e) = ended {
            tracing::debug!(upstream = index, error = %e, "listen stream ended");
        }
        failures = if started.elapsed() > Duration::from_secs(30) {
            0
        } else {
            failures + 1
        };
        tokio::time::sleep(backoff(failures)).await;
    }
}

fn strip_subscription_id(n: &mut Notification) {
    if let Some(p) = n.params.as_mut()
        && let Some(mut m) = p.get_object("_meta")
    {
        m.remove(meta::SUBSCRIPTION_ID);
        if m.is_empty() {
            p.remove("_meta");
        } else {
            let _ = p.insert("_meta", &m);
        }
    }
}
