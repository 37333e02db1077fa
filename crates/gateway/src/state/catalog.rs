//! The merged catalog at run time: what each upstream lists, read when it becomes ready and
//! again (coalesced, one refresh at a time per upstream) when it says a list changed; the
//! catalog rebuilt from that with pins applied and the poisoning scanner run; the change feed
//! clients hear list changes and resource updates through; and the reference counts of resource
//! subscriptions held at upstreams.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::catalog::{Catalog, Kind, UpstreamLists};
use portcullis_core::mcp::Era;
use portcullis_core::scan::Severity;
use portcullis_core::{Outcome, Params, RawObject};
use tokio::sync::{broadcast, mpsc};

use super::{Change, Gateway, lock};
use crate::error::GatewayError;
use crate::upstream::client::{Call, McpClient};
use crate::upstream::{Event, State};

/// Most pages followed when reading one upstream list; a server that never ends its pages must
/// not keep the gateway busy forever.
const MAX_LIST_PAGES: usize = 100;
/// Most items kept from one upstream list.
const MAX_LIST_ITEMS: usize = 10_000;
/// Most distinct resource URIs followed at upstreams at once.
pub const MAX_RESOURCE_REFS: usize = 10_000;
/// How long a call waits for an upstream that is still starting.
pub const START_WAIT: Duration = Duration::from_secs(10);

impl Gateway {
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

    /// How long a request that names something no upstream lists yet waits for upstreams
    /// still starting: the longest configured start timeout (at least [`START_WAIT`]).
    pub fn start_wait(&self) -> Duration {
        self.cfg
            .upstreams
            .iter()
            .map(|u| u.start_timeout)
            .max()
            .unwrap_or(START_WAIT)
            .max(START_WAIT)
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

    pub(crate) fn settle(&self, index: usize) {
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

    pub(crate) fn rebuild(&self, kinds: &[Kind]) {
        let _serial = lock(&self.rebuilding);
        let lists = lock(&self.lists).clone();
        let refs: Vec<Option<&UpstreamLists>> = lists.iter().map(Option::as_ref).collect();
        let mut catalog = Catalog::build(&self.namespaces, &refs);
        let flagged = self.flagged(&catalog);
        self.pins.apply(
            &mut catalog,
            |i| self.namespaces.get(i).map(|n| n.upstream.clone()).unwrap_or_default(),
            &flagged,
        );
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

    /// The tools whose definitions have a finding at or above `[pins] hold_on`, by exposed
    /// name, with the worst finding (rule, message): new ones among them are held.
    fn flagged(&self, catalog: &Catalog) -> HashMap<String, (String, String)> {
        let Some(floor) = self.pins.hold_on() else {
            return HashMap::new();
        };
        crate::guard::poisoning::scan_catalog(&self.scanner, catalog)
            .into_iter()
            .filter(|r| r.kind == Kind::Tool)
            .filter_map(|r| {
                let worst = r
                    .findings
                    .iter()
                    .filter(|f| f.severity >= floor)
                    .max_by_key(|f| f.severity)?;
                Some((r.entry.exposed.clone(), (worst.rule.to_owned(), worst.message.clone())))
            })
            .collect()
    }

    /// Runs the tool-poisoning scanner over what the upstreams list, every time a list is read,
    /// and logs each finding (high severity as an error, medium as a warning). Blocking suspicious tools is the
    /// policy's job; this makes them visible.
    fn report_poisoning(&self, catalog: &Catalog) {
        for report in crate::guard::poisoning::scan_catalog(&self.scanner, catalog) {
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

    /// Takes a reference on a resource subscription at its upstream: `Some(true)` when this was
    /// the first reference (the caller subscribes upstream), `None` when the gateway already
    /// follows [`MAX_RESOURCE_REFS`] resources.
    pub(crate) fn retain_resource(&self, uri: &str, upstream: usize) -> Option<bool> {
        let first = {
            let mut refs = lock(&self.resource_refs);
            if !refs.contains_key(uri) && refs.len() >= MAX_RESOURCE_REFS {
                return None;
            }
            let entry = refs.entry(uri.to_owned()).or_insert((upstream, 0));
            entry.1 += 1;
            entry.1 == 1
        };
        self.push_resource_subs(upstream);
        Some(first)
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

    /// Subscribes a legacy upstream to a resource, or unsubscribes it (modern ones get it
    /// through their listen stream, which follows the reference counts).
    pub(crate) async fn upstream_subscription(&self, upstream: usize, uri: &str, on: bool) -> Result<(), GatewayError> {
        let Some(up) = self.upstreams().get(upstream) else {
            return Ok(());
        };
        let client = up.client(START_WAIT).await?;
        if client.server().era != Era::Legacy {
            return Ok(());
        }
        let mut p = Params::new();
        let _ = p.insert("uri", uri);
        let method = if on {
            "resources/subscribe"
        } else {
            "resources/unsubscribe"
        };
        let resp = client
            .call(Call::new(method, Some(p), up.cfg.call_timeout))
            .await
            .map_err(|error| GatewayError::Upstream {
                upstream: up.cfg.name.clone(),
                error,
            })?;
        if let Outcome::Error(e) = resp.outcome {
            tracing::warn!(upstream = %up.cfg.name, %uri, error = %e.message, "upstream refused the subscription");
        }
        Ok(())
    }

    /// Re-subscribes a legacy upstream that came back to the resources clients still follow.
    async fn resubscribe(&self, upstream: usize) {
        for uri in self.resource_refs_for(upstream) {
            let _ = self.upstream_subscription(upstream, &uri, true).await;
        }
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
        // A secret in a definition never reaches the pins, the scanner's excerpts, a diff or a
        // listing: definitions are scrubbed as they are read.
        items.extend(batch.into_iter().filter_map(scrubbed));
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

/// A definition with every secret in it redacted (`None`, and left out, in the unlikely case
/// the redacted text no longer reads as one).
fn scrubbed(item: RawObject) -> Option<RawObject> {
    let raw = item.to_raw();
    match crate::redact::scrub(raw.get().as_bytes()) {
        std::borrow::Cow::Borrowed(_) => Some(item),
        std::borrow::Cow::Owned(clean) => {
            tracing::warn!("a definition carried a secret; redacted before it was stored or shown");
            RawObject::from_json(&String::from_utf8_lossy(&clean)).ok()
        }
    }
}

/// Re-reads an upstream's lists whenever it says one changed: one refresh at a time, all the
/// changes announced meanwhile folded into the next (a flood of `list_changed` costs one
/// refresh, not one task each).
pub(crate) async fn refresher(gw: std::sync::Weak<Gateway>, index: usize) {
    let Some(changed) = gw
        .upgrade()
        .and_then(|g| g.upstreams().get(index).map(|u| u.changed.clone()))
    else {
        return;
    };
    loop {
        let kinds = changed.next().await;
        let Some(gw) = gw.upgrade() else { return };
        if gw.shutdown.is_cancelled() {
            return;
        }
        gw.refresh(index, &kinds).await;
    }
}

/// What upstreams report that belongs to no call: readiness, failure, resource updates.
pub(crate) async fn event_loop(gw: std::sync::Weak<Gateway>, mut rx: mpsc::Receiver<Event>) {
    while let Some(ev) = rx.recv().await {
        let Some(gw) = gw.upgrade() else { return };
        match ev {
            Event::Ready(i) => {
                let gw = gw.clone();
                tokio::spawn(async move {
                    let kinds = match gw.upstreams().get(i).map(|u| u.state()) {
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
                if n.method == "notifications/resources/updated" {
                    if let Some(params) = n.params
                        && let Some(uri) = params.get_str("uri")
                    {
                        gw.publish(Change::ResourceUpdated { uri, params });
                    }
                } else if n.method == "notifications/message" {
                    let name = gw.upstreams().get(i).map(|u| u.cfg.name.clone()).unwrap_or_default();
                    let data = n.params.map(|p| p.to_value()).unwrap_or_default();
                    tracing::info!(target: "portcullis::upstream", upstream = %name, message = %data, "upstream log");
                } else {
                    tracing::debug!(upstream = i, method = %n.method, "upstream notification not relayed");
                }
            }
        }
    }
}

/// A broadcast receiver's lag, logged.
pub(crate) fn lagged(e: &broadcast::error::RecvError) {
    if let broadcast::error::RecvError::Lagged(n) = e {
        tracing::warn!(dropped = n, "change notifications dropped for a slow client");
    }
}
