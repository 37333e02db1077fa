//! The composition root: the running gateway's shared state — the supervised upstreams and
//! the merged catalog built from their lists ([`catalog`]), every session's taint
//! ([`taint`]), the rate limiter, the audit writer ([`audit`]), the tool pins ([`pins`]), the
//! misuse watch ([`misuse`]), the API keys ([`keys`]) and the metrics ([`metrics`]). Opening
//! the gateway wires them together; `dispatch` reads and updates them as requests pass.

pub mod audit;
pub mod catalog;
pub mod journal;
pub mod keys;
pub mod metrics;
pub mod misuse;
pub mod pins;
pub mod secrets;
pub mod taint;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use portcullis_core::Params;
use portcullis_core::catalog::{Catalog, Kind, Namespace, UpstreamLists};
use portcullis_core::output::OutputScanner;
use portcullis_core::rate::Limiter;
use portcullis_core::scan::Scanner;
use portcullis_store::{Store, StoreError};
use portcullis_vault::{KeySource, Vault, VaultError};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::oauth::UpstreamOAuth;
use crate::config::refs;
use crate::config::{ClientAuth, Config, UpstreamConfig};
use crate::state::audit::AuditLog;
use crate::state::keys::Keys;
use crate::state::misuse::Misuse;
use crate::state::pins::{PinMode, Pins};
use crate::state::taint::Sessions;
use crate::upstream::exchange::Parking;
use crate::upstream::oauth::TokenSource;
use crate::upstream::secrets::ResolveError;
use crate::upstream::{Personal, Upstream};

impl Gateway {
    /// A client session ended (its connection closed, it was deleted or reaped): its taint
    /// facts go (its untrusted history stays with its principal for the window), and the
    /// approvals its calls waited on expire — nobody waits on them any more. Done in the
    /// background; [`Gateway::end_session`] waits for it.
    pub fn session_ended(self: &Arc<Self>, scope: &str) {
        let gw = Arc::clone(self);
        let scope = scope.to_owned();
        tokio::spawn(async move { gw.end_session(&scope).await });
    }

    /// [`Gateway::session_ended`], waiting until its approvals have expired.
    pub async fn end_session(&self, scope: &str) {
        self.taint.end(scope);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        match self.store.expire_session_approvals(scope, now).await {
            Ok(ids) => {
                for id in &ids {
                    tracing::info!(session = %scope, approval = %id, "the session ended; its pending approval expired");
                    self.approval_event(id, "expired", Some("the client's session ended"))
                        .await;
                }
            }
            Err(e) => tracing::warn!(session = %scope, error = %e, "could not expire the ended session's approvals"),
        }
    }
}

/// Most events (readiness, failures, resource updates) queued from upstreams to the gateway;
/// past it, resource updates are dropped (and logged), never readiness.
const EVENT_QUEUE: usize = 1024;

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
    Resolve(#[from] ResolveError),
    /// An upstream's OAuth setup.
    #[error("{0}")]
    OAuth(#[from] crate::upstream::oauth::OAuthError),
    /// The audit log (its journal, or replaying it).
    #[error("audit log: {0}")]
    Audit(#[from] crate::state::audit::AuditError),
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
    /// The client secret the gateway introspects opaque tokens with (`auth = "oauth"`), read
    /// from the vault at start.
    pub introspection_secret: Option<zeroize::Zeroizing<String>>,
    /// Counters and histograms for `/metrics`.
    pub metrics: crate::state::metrics::Metrics,
    /// Calls waiting for approval now.
    pub approvals_waiting: Waiting,
    store: Store,
    /// Cancelled when the gateway shuts down.
    pub shutdown: CancellationToken,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Calls waiting for a person's approval now (for `/metrics`).
#[derive(Debug, Default)]
pub struct Waiting(AtomicI64);

impl Waiting {
    /// How many.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }

    /// Counts one waiting call until the returned guard drops.
    pub fn enter(&self) -> WaitingGuard<'_> {
        self.0.fetch_add(1, Ordering::Relaxed);
        WaitingGuard(self)
    }
}

/// One call counted as waiting.
#[derive(Debug)]
pub struct WaitingGuard<'a>(&'a Waiting);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::Relaxed);
    }
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
        crate::fetch::allow_private(&cfg.gateway.fetch_private);
        let store = Store::open(&cfg.gateway.data_dir).await?;
        let pins = Pins::load(store.clone(), cfg.pins.trust_on_first_use, cfg.pins.hold_on, mode).await?;
        let references: Vec<refs::Reference> = cfg.upstreams.iter().flat_map(refs::references).collect();
        let salt = match cfg.vault {
            KeySource::Passphrase => Some(Vault::passphrase_salt(&store).await?),
            _ => None,
        };
        let vault = match secrets::master_key(&cfg.vault, &cfg.gateway.data_dir, salt.as_deref())? {
            Some(key) => Some(Arc::new(Vault::open(store.clone(), key, &cfg.vault.to_string()).await?)),
            None => {
                if let Some(r) = references.first() {
                    return Err(OpenError::Resolve(ResolveError::NoKey {
                        key: r.key.clone(),
                        name: r.name.clone(),
                        why: secrets::no_key_hint(&cfg.vault),
                    }));
                }
                if let Some(u) = cfg.upstreams.iter().find(|u| u.oauth.is_some()) {
                    return Err(OpenError::Resolve(ResolveError::NoKey {
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
            if let crate::config::Transport::Stdio { sandbox: None, .. } = &u.transport {
                tracing::warn!(
                    upstream = %u.name,
                    "SANDBOX OFF (`sandbox = false`): this upstream runs with the gateway's user, files and network; a compromised server reaches all of them"
                );
            }
            let resolved = match &vault {
                Some(v) => crate::upstream::secrets::resolve(u, v).await?,
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
            let names: BTreeSet<String> = refs::references(u).into_iter().map(|r| r.name).collect();
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
        if cfg.gateway.auth.api_keys() {
            let n = keys.reload(&store).await?;
            if n == 0 && cfg.gateway.auth == ClientAuth::ApiKey {
                tracing::warn!(
                    "`auth = \"api-key\"` and no API key exists: every request will be refused; make one with `portcullis keys add PRINCIPAL`"
                );
            }
        }
        // The audit signing key (made on first use) before the redactor, which covers it too.
        let signer = match (&vault, mode) {
            (Some(v), PinMode::Record) => {
                let key = crate::state::audit::signing_key(v).await?;
                Some(
                    crate::state::audit::Signer::new(&key, cfg.audit.checkpoint_every)
                        .with_witness(cfg.gateway.data_dir.join(crate::state::audit::WITNESS)),
                )
            }
            (None, PinMode::Record) => {
                tracing::warn!(
                    "no vault: the audit log is hash-chained but its checkpoints are not signed (configure `[vault]`)"
                );
                None
            }
            (_, PinMode::ReadOnly) => None,
        };
        let introspection_secret = match &cfg.gateway.auth {
            ClientAuth::OAuth(b) => match b.issuers.iter().find_map(|i| i.introspection.as_ref().map(|t| (i, t))) {
                Some((i, t)) => {
                    let key = format!("gateway.oauth.issuers.{}.introspection.client_secret", i.name);
                    let v = vault.as_ref().ok_or_else(|| {
                        OpenError::Resolve(ResolveError::NoKey {
                            key: key.clone(),
                            name: t.client_secret.clone(),
                            why: secrets::no_key_hint(&cfg.vault),
                        })
                    })?;
                    let secret = v.get(&t.client_secret, "").await?.ok_or_else(|| {
                        OpenError::Resolve(ResolveError::Missing {
                            key,
                            name: t.client_secret.clone(),
                        })
                    })?;
                    Some(zeroize::Zeroizing::new(secret.expose().to_owned()))
                }
                None => None,
            },
            _ => None,
        };
        if let Some(v) = &vault {
            let n = crate::redact::install_from(v).await?;
            tracing::debug!(secrets = n, "redacting every vault secret from output and logs");
        }
        let audit = match mode {
            PinMode::Record => {
                AuditLog::start(
                    store.clone(),
                    signer,
                    &cfg.gateway.data_dir.join(crate::state::journal::DIR),
                )
                .await?
            }
            PinMode::ReadOnly => AuditLog::disabled(),
        };
        let gw = Gateway::start(cfg, pins, upstreams, audit, (keys, introspection_secret), store);
        gw.reload_suspensions().await;
        if mode == PinMode::Record {
            tokio::spawn(poll_pins(Arc::downgrade(&gw)));
        }
        Ok(gw)
    }

    /// Starts every upstream (each with its own config, secrets resolved) and the event loop,
    /// with the given pins and the credentials clients are checked with.
    pub fn start(
        cfg: Config,
        pins: Pins,
        upstreams: Vec<Prepared>,
        audit: AuditLog,
        (keys, introspection_secret): (Keys, Option<zeroize::Zeroizing<String>>),
        store: Store,
    ) -> Arc<Gateway> {
        crate::install_crypto();
        let cfg = Arc::new(cfg);
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
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
            taint: Sessions::new(cfg.flow.clone()),
            audit,
            misuse: Misuse::new(
                cfg.upstreams
                    .iter()
                    .map(|u| {
                        let mut names: Vec<String> = refs::references(u).into_iter().map(|r| r.name).collect();
                        if u.oauth.is_some() {
                            names.push(UpstreamOAuth::secret_name(&u.name));
                        }
                        names
                    })
                    .collect(),
            ),
            output_scanner: OutputScanner::new(),
            keys,
            introspection_secret,
            metrics: crate::state::metrics::Metrics::default(),
            approvals_waiting: Waiting::default(),
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
        tokio::spawn(catalog::event_loop(Arc::downgrade(&gw), events_rx));
        for i in 0..gw.upstreams.len() {
            tokio::spawn(catalog::refresher(Arc::downgrade(&gw), i));
        }
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

    /// Stops every upstream.
    pub async fn stop(&self) {
        self.shutdown.cancel();
        futures::future::join_all(self.upstreams.iter().map(|u| u.shutdown())).await;
        self.pins.flush().await;
        self.audit.close().await;
    }
}

/// Re-reads the pins every [`crate::state::pins::POLL`]; an approval made by another process
/// rebuilds the tool list (and tells clients it changed).
async fn poll_pins(gw: std::sync::Weak<Gateway>) {
    let mut tick = tokio::time::interval(crate::state::pins::POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(gw) = gw.upgrade() else { return };
        if gw.shutdown.is_cancelled() {
            return;
        }
        gw.reload_suspensions().await;
        if gw.cfg.gateway.auth.api_keys()
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
