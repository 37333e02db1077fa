//! The gateway's shared state: the supervised upstreams, what each of them lists, the merged
//! catalog built from that, and the change feed that list-changed and resource-updated
//! notifications reach clients through.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use portcullis_core::catalog::{Catalog, Kind, Namespace, UpstreamLists};
use portcullis_core::output::OutputScanner;
use portcullis_core::rate::Limiter;
use portcullis_core::scan::{Scanner, Severity};
use portcullis_core::{Outcome, Params, RawObject};
use portcullis_store::{Store, StoreError};
use portcullis_vault::{KeySource, Vault, VaultError};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::audit::AuditLog;
use crate::auth::Keys;
use crate::client::{Call, McpClient};
use crate::config::ClientAuth;
use crate::config::oauth::UpstreamOAuth;
use crate::config::{Config, UpstreamConfig};
use crate::exchange::Parking;
use crate::misuse::Misuse;
use crate::oauth::TokenSource;
use crate::pins::{PinMode, Pins};
use crate::secrets;
use crate::taint::Sessions;
use crate::upstream::Personal;
use crate::upstream::{Event, State, Upstream};

/// Why the gateway could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The state database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The vault (a wrong or unusable master key).
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    /// A `vault:NAME` reference.
    #[error("{0}")]
    Resolve(#[from] secrets::ResolveError),
    /// An upstream's OAuth setup.
    #[error("{0}")]
    OAuth(#[from] crate::oauth::OAuthError),
}

/// A change clients may want to hear about.
#[derive(Clone, Debug)]
pub enum Change {
    /// The merged tool list changed.
    Tools,
    /// The merged prompt list changed.
    Prompts,
    /// The merged resource or template list changed.
    Resources,
    /// A resource was updated at its upstream.
    ResourceUpdated {
        /// The resource URI.
        uri: String,
        /// The notification params as the upstream sent them.
        params: Params,
    },
}

/// Most pages followed when reading one upstream list; a server that never ends its pages must
/// not keep the gateway busy forever.
const MAX_LIST_PAGES: usize = 100;
/// Most items kept from one upstream list.
const MAX_LIST_ITEMS: usize = 10_000;

/// The running gateway.
#[derive(Debug)]
pub struct Gateway {
    /// The configuration it runs with.
    pub cfg: Arc<Config>,
    upstreams: Vec<Arc<Upstream>>,
    namespaces: Vec<Namespace>,
    lists: Mutex<Vec<Option<UpstreamLists>>>,
    /// Held for the whole of a rebuild, so a rebuild that read older lists cannot replace the
    /// catalog of one that read newer ones.
    rebuilding: Mutex<()>,
    catalog: RwLock<Arc<Catalog>>,
    changes: broadcast::Sender<Change>,
    settled: watch::Sender<Vec<bool>>,
    resource_refs: Mutex<HashMap<String, (usize, usize)>>,
    pub(crate) parking: Parking,
    scanner: Scanner,
    pins: Pins,
    pub(crate) limiter: Mutex<Limiter>,
    pub(crate) taint: Sessions,
    pub(crate) misuse: Misuse,
    pub(crate) audit: AuditLog,
    pub(crate) output_scanner: OutputScanner,
    /// The API keys HTTP clients authenticate with (`[gateway] auth = "api-key"`).
    pub keys: Keys,
    /// Counters and histograms for `/metrics`.
    pub metrics: crate::metrics::Metrics,
    /// Calls waiting for approval now.
    pub approvals_waiting: crate::approvals::Waiting,
    store: Store,
    /// Cancelled when the gateway shuts down.
    pub shutdown: CancellationToken,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One upstream ready to start: its config with secrets resolved, where its OAuth tokens come
/// from, and its per-user instances.
#[derive(Debug)]
pub struct Prepared {
    /// The config, secrets resolved (shared ones).
    pub cfg: UpstreamConfig,
    /// Its OAuth access tokens, if it uses OAuth.
    pub credential: Option<Arc<TokenSource>>,
    /// Instances for principals with their own secrets.
    pub personal: Option<Personal>,
}

impl Gateway {
    /// Opens the state database in the configured `data_dir`, loads the tool pins, opens the
    /// vault when a master key is available (it must be when an upstream refers to a secret),
    /// resolves each upstream's `vault:NAME` values into the copy of its config only it
    /// receives, installs the redactor over every vault secret, and starts every upstream and
    /// the event loop.
    pub async fn open(cfg: Config, mode: PinMode) -> Result<Arc<Gateway>, OpenError> {
        let store = Store::open(&cfg.gateway.data_dir).await?;
        let pins = Pins::load(store.clone(), cfg.pins.trust_on_first_use, mode).await?;
        let references: Vec<secrets::Reference> = cfg.upstreams.iter().flat_map(secrets::references).collect();
        let salt = match cfg.vault {
            KeySource::Passphrase => Some(Vault::passphrase_salt(&store).await?),
            _ => None,
        };
        let vault = match secrets::master_key(&cfg.vault, &cfg.gateway.data_dir, salt.as_deref())? {
            Some(key) => Some(Arc::new(Vault::open(store.clone(), key, &cfg.vault.to_string()).await?)),
            None => {
                if let Some(r) = references.first() {
                    return Err(OpenError::Resolve(secrets::ResolveError::NoKey {
                        key: r.key.clone(),
                        name: r.name.clone(),
                        why: secrets::no_key_hint(&cfg.vault),
                    }));
                }
                if let Some(u) = cfg.upstreams.iter().find(|u| u.oauth.is_some()) {
                    return Err(OpenError::Resolve(secrets::ResolveError::NoKey {
                        key: format!("upstreams.{}.oauth", u.name),
                        name: UpstreamOAuth::secret_name(&u.name),
                        why: secrets::no_key_hint(&cfg.vault),
                    }));
                }
                None
            }
        };
        let infos = match &vault {
            Some(v) => v.list().await?,
            None => Vec::new(),
        };
        let mut upstreams = Vec::with_capacity(cfg.upstreams.len());
        for u in &cfg.upstreams {
            let resolved = match &vault {
                Some(v) => secrets::resolve(u, v).await?,
                None => u.clone(),
            };
            let credential = match (&u.oauth, &vault) {
                (Some(o), Some(v)) => match cfg.oauth.get(&o.provider) {
                    Some(p) => TokenSource::new(u, p.clone(), v.clone())?.map(Arc::new),
                    None => None,
                },
                _ => None,
            };
            // Principals with their own secret for any of this upstream's references get an
            // instance of their own.
            let names: BTreeSet<String> = secrets::references(u).into_iter().map(|r| r.name).collect();
            let owners: BTreeSet<String> = infos
                .iter()
                .filter(|i| !i.owner.is_empty() && names.contains(&i.name))
                .map(|i| i.owner.clone())
                .collect();
            let personal = match &vault {
                Some(v) if !owners.is_empty() => {
                    tracing::info!(upstream = %u.name, principals = owners.len(), "per-user secrets: those principals get their own instance");
                    Some(Personal::new(
                        u.clone(),
                        v.clone(),
                        owners,
                        cfg.gateway.limits,
                        credential.clone(),
                    ))
                }
                _ => None,
            };
            upstreams.push(Prepared {
                cfg: resolved,
                credential,
                personal,
            });
        }
        let keys = Keys::default();
        if cfg.gateway.auth == ClientAuth::ApiKey {
            let n = keys.reload(&store).await?;
            if n == 0 {
                tracing::warn!(
                    "`auth = \"api-key\"` and no API key exists: every request will be refused; make one with `portcullis keys add PRINCIPAL`"
                );
            }
        }
        // The audit signing key (made on first use) before the redactor, which covers it too.
        let signer = match (&vault, mode) {
            (Some(v), PinMode::Record) => {
                let key = crate::audit::signing_key(v).await?;
                Some(crate::audit::Signer::new(&key, cfg.audit.checkpoint_every))
            }
            (None, PinMode::Record) => {
                tracing::warn!(
                    "no vault: the audit log is hash-chained but its checkpoints are not signed (configure `[vault]`)"
                );
                None
            }
            (_, PinMode::ReadOnly) => None,
        };
        if let Some(v) = &vault {
            let n = secrets::install_from(v).await?;
            tracing::debug!(secrets = n, "redacting every vault secret from output and logs");
        }
        let audit = match mode {
            PinMode::Record => AuditLog::start(store.clone(), signer).await?,
            PinMode::ReadOnly => AuditLog::disabled(),
        };
        let gw = Gateway::start(cfg, pins, upstreams, audit, keys, store);
        gw.reload_suspensions().await;
        if mode == PinMode::Record {
            tokio::spawn(poll_pins(Arc::downgrade(&gw)));
        }
        Ok(gw)
    }

    /// Starts every upstream (each with its own config, secrets resolved) and the event loop,
    /// with the given pins.
    pub fn start(
        cfg: Config,
        pins: Pins,
        upstreams: Vec<Prepared>,
        audit: AuditLog,
        keys: Keys,
        store: Store,
    ) -> Arc<Gateway> {
        crate::install_crypto();
        let cfg = Arc::new(cfg);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let upstreams: Vec<Arc<Upstream>> = upstreams
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                Upstream::start(
                    i,
                    p.cfg,
                    cfg.gateway.limits,
                    events_tx.clone(),
                    p.credential,
                    p.personal,
                )
            })
            .collect();
        let namespaces = cfg
            .upstreams
            .iter()
            .map(|u| Namespace {
                upstream: u.name.clone(),
                prefix: u.prefix.clone(),
            })
            .collect();
        let n = upstreams.len();
        let gw = Arc::new(Gateway {
            parking: Parking::new(cfg.gateway.input_timeout),
            scanner: Scanner::new(),
            pins,
            limiter: Mutex::new(Limiter::new()),
            taint: Sessions::new(cfg.flow),
            audit,
            misuse: Misuse::new(
                cfg.upstreams
                    .iter()
                    .map(|u| {
                        let mut names: Vec<String> = secrets::references(u).into_iter().map(|r| r.name).collect();
                        if u.oauth.is_some() {
                            names.push(UpstreamOAuth::secret_name(&u.name));
                        }
                        names
                    })
                    .collect(),
            ),
            output_scanner: OutputScanner::new(),
            keys,
            metrics: crate::metrics::Metrics::default(),
            approvals_waiting: crate::approvals::Waiting::default(),
            store,
            cfg,
            upstreams,
            namespaces,
            lists: Mutex::new(vec![None; n]),
            rebuilding: Mutex::new(()),
            catalog: RwLock::new(Arc::new(Catalog::default())),
            changes: broadcast::channel(1024).0,
            settled: watch::channel(vec![false; n]).0,
            resource_refs: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
        });
        tokio::spawn(event_loop(Arc::downgrade(&gw), events_rx));
        gw.parking.spawn_sweeper(gw.shutdown.clone());
        gw
    }

    /// The upstreams, in config order.
    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    /// The state database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The tool pins.
    pub fn pins(&self) -> &Pins {
        &self.pins
    }

    /// The current merged catalog.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Subscribes to catalog changes and resource updates.
    pub fn changes(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Whether every upstream has listed its items once or failed once (the catalog is as
    /// complete as it will get), and each upstream's name and readiness.
    pub fn readiness(&self) -> (bool, Vec<(String, bool)>) {
        let settled = self.settled.borrow().iter().all(|b| *b);
        let ups = self
            .upstreams
            .iter()
            .map(|u| (u.cfg.name.clone(), matches!(u.state(), State::Ready(_))))
            .collect();
        (settled && !self.shutdown.is_cancelled(), ups)
    }

    /// Waits until every upstream has either listed its items once or failed once, or until
    /// `timeout`. Returns whether all settled.
    pub async fn wait_settled(&self, timeout: Duration) -> bool {
        let mut rx = self.settled.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| s.iter().all(|b| *b)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Like [`Gateway::wait_settled`], then also waits until every upstream is ready and has
    /// listed, or has stayed down for two seconds (a quick restart after a failed first start
    /// is waited for; a server that keeps failing is not). For commands that look once —
    /// `scan`, `tools` — where a list read half-way would be a wrong answer. Returns whether
    /// every upstream is ready and listed.
    pub async fn wait_listed(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        self.wait_settled(timeout).await;
        loop {
            let lists = lock(&self.lists).iter().map(Option::is_some).collect::<Vec<_>>();
            let mut all = true;
            let mut waiting = false;
            for (i, up) in self.upstreams.iter().enumerate() {
                match up.state() {
                    State::Ready(_) if lists.get(i).copied().unwrap_or(false) => {}
                    State::Down { since, .. } if since.elapsed() >= Duration::from_secs(2) => all = false,
                    _ => {
                        all = false;
                        waiting = true;
                    }
                }
            }
            if !waiting || tokio::time::Instant::now() >= deadline {
                return all;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops every upstream.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        futures::future::join_all(self.upstreams.iter().map(|u| u.shutdown())).await;
        self.pins.flush().await;
        self.audit.close().await;
    }

    fn settle(&self, index: usize) {
        self.settled.send_if_modified(|s| match s.get_mut(index) {
            Some(b) if !*b => {
                *b = true;
                true
            }
            _ => false,
        });
    }

    /// Re-reads the given kinds from one upstream and rebuilds the catalog.
    pub(crate) async fn refresh(&self, index: usize, kinds: &[Kind]) {
        let Some(up) = self.upstreams.get(index) else { return };
        let client = match up.state() {
            State::Ready(c) => c,
            _ => return,
        };
        let mut fresh = lock(&self.lists).get(index).cloned().flatten().unwrap_or_default();
        for kind in kinds {
            match fetch_list(&client, *kind, up.cfg.call_timeout).await {
                Ok((items, ttl)) => {
                    let slot = match kind {
                        Kind::Tool => &mut fresh.tools,
                        Kind::Prompt => &mut fresh.prompts,
                        Kind::Resource => &mut fresh.resources,
                        Kind::Template => &mut fresh.templates,
                    };
                    *slot = items;
                    if let Some(ttl) = ttl {
                        fresh.ttl_ms = Some(fresh.ttl_ms.map_or(ttl, |t| t.min(ttl)));
                    }
                }
                Err(e) => {
                    tracing::warn!(upstream = %up.cfg.name, list = kind.list_key(), error = %e, "listing failed");
                }
            }
        }
        if let Some(slot) = lock(&self.lists).get_mut(index) {
            *slot = Some(fresh);
        }
        self.rebuild(kinds);
    }

    fn rebuild(&self, kinds: &[Kind]) {
        let _serial = lock(&self.rebuilding);
        let lists = lock(&self.lists).clone();
        let refs: Vec<Option<&UpstreamLists>> = lists.iter().map(Option::as_ref).collect();
        let mut catalog = Catalog::build(&self.namespaces, &refs);
        self.pins.apply(&mut catalog, |i| {
            self.namespaces.get(i).map(|n| n.upstream.clone()).unwrap_or_default()
        });
        for c in &catalog.conflicts {
            tracing::error!(kind = c.kind.noun(), name = %c.exposed, upstreams = ?c.upstreams, "name collision: exposed by no upstream until resolved (set distinct prefixes)");
        }
        for r in &catalog.rejected {
            tracing::warn!(upstream = %r.upstream, reason = %r.reason, "definition not exposed");
        }
        self.report_poisoning(&catalog);
        *self.catalog.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(catalog);
        for kind in kinds {
            let change = match kind {
                Kind::Tool => Change::Tools,
                Kind::Prompt => Change::Prompts,
                Kind::Resource | Kind::Template => Change::Resources,
            };
            let _ = self.changes.send(change);
        }
    }

    /// Runs the tool-poisoning scanner over what the upstreams list, every time a list is read,
    /// and logs each finding (high severity as an error, medium as a warning). Blocking suspicious tools is the
    /// policy's job; this makes them visible.
    fn report_poisoning(&self, catalog: &Catalog) {
        for report in crate::poisoning::scan_catalog(&self.scanner, catalog) {
            let upstream = self
                .upstreams
                .get(report.entry.upstream)
                .map(|u| u.cfg.name.as_str())
                .unwrap_or_default();
            for f in &report.findings {
                let (kind, name) = (report.kind.noun(), report.entry.exposed.as_str());
                if f.severity >= Severity::High {
                    tracing::error!(%upstream, kind, name, rule = f.rule, field = %f.field, excerpt = %f.excerpt, "possible tool poisoning: {}", f.message);
                } else if f.severity >= Severity::Medium {
                    tracing::warn!(%upstream, kind, name, rule = f.rule, field = %f.field, excerpt = %f.excerpt, "suspicious description: {}", f.message);
                } else {
                    tracing::debug!(%upstream, kind, name, rule = f.rule, severity = %f.severity, field = %f.field, "description note: {}", f.message);
                }
            }
        }
    }

    /// Takes a reference on a resource subscription at its upstream; returns the upstream index
    /// when this was the first reference (the caller subscribes upstream).
    pub(crate) fn retain_resource(&self, uri: &str, upstream: usize) -> bool {
        let first = {
            let mut refs = lock(&self.resource_refs);
            let entry = refs.entry(uri.to_owned()).or_insert((upstream, 0));
            entry.1 += 1;
            entry.1 == 1
        };
        self.push_resource_subs(upstream);
        first
    }

    /// Drops a reference; returns the upstream when it was the last one.
    pub(crate) fn release_resource(&self, uri: &str) -> Option<usize> {
        let last = {
            let mut refs = lock(&self.resource_refs);
            match refs.get_mut(uri) {
                Some((up, n)) => {
                    *n = n.saturating_sub(1);
                    let up = *up;
                    if *n == 0 {
                        refs.remove(uri);
                        Some(up)
                    } else {
                        None
                    }
                }
                None => None,
            }
        };
        if let Some(up) = last {
            self.push_resource_subs(up);
        }
        last
    }

    fn push_resource_subs(&self, upstream: usize) {
        let set: BTreeSet<String> = self.resource_refs_for(upstream).into_iter().collect();
        if let Some(up) = self.upstreams.get(upstream) {
            up.set_resource_subscriptions(set);
        }
    }

    /// The resource URIs clients follow at one upstream.
    pub(crate) fn resource_refs_for(&self, upstream: usize) -> Vec<String> {
        lock(&self.resource_refs)
            .iter()
            .filter(|(_, (u, n))| *u == upstream && *n > 0)
            .map(|(uri, _)| uri.clone())
            .collect()
    }

    pub(crate) fn publish(&self, change: Change) {
        let _ = self.changes.send(change);
    }
}

/// Which list kinds a server's capabilities say it has.
fn listed_kinds(client: &McpClient) -> Vec<Kind> {
    let caps = &client.server().capabilities;
    let mut kinds = Vec::new();
    if caps.contains_key("tools") {
        kinds.push(Kind::Tool);
    }
    if caps.contains_key("prompts") {
        kinds.push(Kind::Prompt);
    }
    if caps.contains_key("resources") {
        kinds.push(Kind::Resource);
        kinds.push(Kind::Template);
    }
    kinds
}

/// Reads every page of one list.
async fn fetch_list(
    client: &McpClient,
    kind: Kind,
    timeout: Duration,
) -> Result<(Vec<RawObject>, Option<u64>), String> {
    let method = match kind {
        Kind::Tool => "tools/list",
        Kind::Prompt => "prompts/list",
        Kind::Resource => "resources/list",
        Kind::Template => "resources/templates/list",
    };
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let mut ttl: Option<u64> = None;
    for _ in 0..MAX_LIST_PAGES {
        let params = cursor.as_ref().map(|c| {
            let mut p = Params::new();
            let _ = p.insert("cursor", c);
            p
        });
        let resp = client
            .call(Call::new(method, params, timeout))
            .await
            .map_err(|e| e.to_string())?;
        let raw = match resp.outcome {
            Outcome::Result(r) => r,
            Outcome::Error(e) => return Err(format!("{} ({})", e.message, e.code)),
        };
        let page = RawObject::from_raw(&raw).map_err(|e| format!("malformed {method} result: {e}"))?;
        let batch: Vec<RawObject> = page
            .get_as(kind.list_key())
            .map_err(|e| format!("malformed {method} result: {e}"))?
            .unwrap_or_default();
        items.extend(batch);
        if let Ok(Some(t)) = page.get_as::<u64>("ttlMs") {
            ttl = Some(ttl.map_or(t, |cur| cur.min(t)));
        }
        if items.len() > MAX_LIST_ITEMS {
            items.truncate(MAX_LIST_ITEMS);
            tracing::warn!(list = method, "upstream list truncated at {MAX_LIST_ITEMS} items");
            break;
        }
        cursor = page.get_str("nextCursor").filter(|c| !c.is_empty());
        if cursor.is_none() {
            break;
        }
    }
    Ok((items, ttl))
}

/// Re-reads the pins every [`crate::pins::POLL`]; an approval made by another process
/// rebuilds the tool list (and tells clients it changed).
async fn poll_pins(gw: std::sync::Weak<Gateway>) {
    let mut tick = tokio::time::interval(crate::pins::POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(gw) = gw.upgrade() else { return };
        if gw.shutdown.is_cancelled() {
            return;
        }
        gw.reload_suspensions().await;
        if gw.cfg.gateway.auth == ClientAuth::ApiKey
            && let Err(e) = gw.keys.reload(&gw.store).await
        {
            tracing::warn!(error = %e, "could not re-read the API keys; keeping the last known");
        }
        match gw.pins.reload().await {
            Ok(true) => {
                tracing::info!("tool pins changed in the store; rebuilding the tool list");
                gw.rebuild(&[Kind::Tool]);
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not re-read tool pins"),
        }
    }
}

async fn event_loop(gw: std::sync::Weak<Gateway>, mut rx: mpsc::UnboundedReceiver<Event>) {
    while let Some(ev) = rx.recv().await {
        let Some(gw) = gw.upgrade() else { return };
        match ev {
            Event::Ready(i) => {
                let gw = gw.clone();
                tokio::spawn(async move {
                    let kinds = match gw.upstreams.get(i).map(|u| u.state()) {
                        Some(State::Ready(c)) => listed_kinds(&c),
                        _ => Vec::new(),
                    };
                    gw.refresh(i, &kinds).await;
                    gw.settle(i);
                    gw.resubscribe(i).await;
                });
            }
            Event::Down(i, _) => gw.settle(i),
            Event::Notification(i, n) => {
                let kind = match n.method.as_str() {
                    "notifications/tools/list_changed" => Some(Kind::Tool),
                    "notifications/prompts/list_changed" => Some(Kind::Prompt),
                    "notifications/resources/list_changed" => Some(Kind::Resource),
                    _ => None,
                };
                if let Some(kind) = kind {
                    let gw = gw.clone();
                    tokio::spawn(async move {
                        let kinds: &[Kind] = if kind == Kind::Resource {
                            &[Kind::Resource, Kind::Template]
                        } else {
                            &[kind]
                        };
                        gw.refresh(i, kinds).await;
                    });
                } else if n.method == "notifications/resources/updated" {
                    if let Some(params) = n.params
                        && let Some(uri) = params.get_str("uri")
                    {
                        gw.publish(Change::ResourceUpdated { uri, params });
                    }
                } else if n.method == "notifications/message" {
                    let name = gw.upstreams.get(i).map(|u| u.cfg.name.clone()).unwrap_or_default();
                    let data = n.params.map(|p| p.to_value()).unwrap_or_default();
                    tracing::info!(target: "portcullis::upstream", upstream = %name, message = %data, "upstream log");
                } else {
                    tracing::debug!(upstream = i, method = %n.method, "upstream notification not relayed");
                }
            }
        }
    }
}
