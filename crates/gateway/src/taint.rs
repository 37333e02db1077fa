//! Session taint at run time: what each client session has seen (its label, and the provenance
//! index of untrusted output values), kept per session scope, and the flow rule applied to
//! calls. The pure parts are [`portcullis_core::label`], [`portcullis_core::provenance`] and
//! [`portcullis_core::output`]; this module owns the map of sessions and the clock.
//!
//! A session's scope: the stdio connection; else the 2025-11-25 `Mcp-Session-Id` (until the
//! session ends); else, for a stateless 2026-07-28 client, the principal plus the client's
//! name and version, until it has been idle for `[flow] window`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portcullis_core::label::Label;
use portcullis_core::provenance::{Hit, ProvenanceIndex, Source};
use serde_json::Value;

use crate::config::FlowConfig;
use crate::session::ClientCtx;

/// Most sessions kept; past it, the longest idle go first.
const MAX_SESSIONS: usize = 10_000;

/// What one session has seen.
#[derive(Debug)]
pub struct Facts {
    /// The join of every output label.
    pub label: Label,
    /// The first untrusted output, for explanations.
    pub first_untrusted: Option<Source>,
    /// Values of the session's outputs.
    pub provenance: ProvenanceIndex,
    last_seen: Instant,
    expires: bool,
}

/// A session's facts as a call is judged.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The session's label.
    pub label: Label,
    /// Its first untrusted source.
    pub first_untrusted: Option<Source>,
    /// The call's argument values that came from untrusted output.
    pub hits: Vec<Hit>,
}

/// One session as the admin page shows it.
#[derive(Debug, Clone)]
pub struct SessionView {
    /// Its scope (`stdio:…`, `session:…`, `client:…`).
    pub scope: String,
    /// Its label's names.
    pub labels: Vec<String>,
    /// Whether it holds untrusted content.
    pub untrusted: bool,
    /// The first untrusted output it saw.
    pub first_untrusted: Option<Source>,
    /// Since its last request.
    pub idle: Duration,
}

/// Every session's facts.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<Mutex<Facts>>>>,
    cfg: FlowConfig,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Seconds since the Unix epoch.
pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The scope of a request's session, and whether it ends by idling.
pub(crate) fn scope(ctx: &ClientCtx) -> (String, bool) {
    if let Some(c) = &ctx.connection {
        return (format!("conn:{c}"), false);
    }
    if let Some(s) = &ctx.session {
        return (session_scope(&s.id), false);
    }
    let info = |k: &str| {
        ctx.meta
            .client_info
            .as_ref()
            .and_then(|i| i.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    (
        format!("client:{}\u{0}{}\u{0}{}", ctx.principal, info("name"), info("version")),
        true,
    )
}

/// The scope of a 2025-11-25 session.
pub(crate) fn session_scope(id: &str) -> String {
    format!("session:{id}")
}

impl Sessions {
    /// No sessions yet.
    pub fn new(cfg: FlowConfig) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            cfg,
        }
    }

    fn facts(&self, ctx: &ClientCtx) -> Arc<Mutex<Facts>> {
        let (key, expires) = scope(ctx);
        let now = Instant::now();
        let mut map = lock(&self.map);
        if let Some(f) = map.get(&key) {
            let stale = {
                let f = lock(f);
                f.expires && now.saturating_duration_since(f.last_seen) > self.cfg.window
            };
            if !stale {
                let f = f.clone();
                lock(&f).last_seen = now;
                return f;
            }
            tracing::debug!(session = %key, "session idle past the flow window; starting afresh");
        }
        if map.len() >= MAX_SESSIONS {
            self.evict(&mut map, now);
        }
        let f = Arc::new(Mutex::new(Facts {
            label: Label::TRUSTED,
            first_untrusted: None,
            provenance: ProvenanceIndex::new(self.cfg.max_values),
            last_seen: now,
            expires,
        }));
        map.insert(key, f.clone());
        f
    }

    fn evict(&self, map: &mut HashMap<String, Arc<Mutex<Facts>>>, now: Instant) {
        let window = self.cfg.window;
        map.retain(|_, f| {
            let f = lock(f);
            !(f.expires && now.saturating_duration_since(f.last_seen) > window)
        });
        if map.len() >= MAX_SESSIONS {
            let mut by_age: Vec<(Instant, String)> = map.iter().map(|(k, f)| (lock(f).last_seen, k.clone())).collect();
            by_age.sort();
            for (_, k) in by_age.iter().take(map.len() / 10 + 1) {
                tracing::warn!(session = %k, "session facts dropped: too many sessions");
                map.remove(k);
            }
        }
    }

    /// Forgets a session (it ended, or a person cleared it); whether it was known.
    pub fn forget(&self, scope: &str) -> bool {
        lock(&self.map).remove(scope).is_some()
    }

    /// Every session's scope, label names, first untrusted source and idle time, most recently
    /// active first (for the admin page).
    pub fn list(&self) -> Vec<SessionView> {
        let now = Instant::now();
        let map = lock(&self.map);
        let mut out: Vec<SessionView> = map
            .iter()
            .map(|(scope, f)| {
                let f = lock(f);
                SessionView {
                    scope: scope.clone(),
                    labels: f.label.names().iter().map(|s| (*s).to_owned()).collect(),
                    untrusted: f.label.is_untrusted(),
                    first_untrusted: f.first_untrusted.clone(),
                    idle: now.saturating_duration_since(f.last_seen),
                }
            })
            .collect();
        out.sort_by_key(|v| v.idle);
        out
    }

    /// The session's facts as a call with `arguments` is judged; provenance is looked up only
    /// when `side_effect` (reads carry nothing anywhere).
    pub fn snapshot(&self, ctx: &ClientCtx, arguments: &Value, side_effect: bool) -> Snapshot {
        let f = self.facts(ctx);
        let f = lock(&f);
        Snapshot {
            label: f.label,
            first_untrusted: f.first_untrusted.clone(),
            hits: if side_effect && f.label.is_untrusted() {
                f.provenance.lookup_arguments(arguments)
            } else {
                Vec::new()
            },
        }
    }

    /// Records an output of `origin` with `label` and its texts.
    pub fn observe(&self, ctx: &ClientCtx, origin: &str, label: Label, texts: &[&str]) {
        let f = self.facts(ctx);
        let mut f = lock(&f);
        let at = now_unix();
        f.label = f.label.join(label);
        if label.is_untrusted() && f.first_untrusted.is_none() {
            f.first_untrusted = Some(Source {
                origin: origin.to_owned(),
                at_unix: at,
            });
        }
        let before = f.provenance.evicted;
        for t in texts {
            f.provenance.observe(t, label.is_untrusted(), origin, at);
        }
        if f.provenance.evicted > before {
            tracing::debug!(
                evicted = f.provenance.evicted - before,
                "provenance values forgotten (oldest first)"
            );
        }
    }

    /// The window after which an idle stateless session starts afresh.
    pub fn window(&self) -> Duration {
        self.cfg.window
    }
}

#[cfg(test)]
mod tests;
