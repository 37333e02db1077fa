//! Session taint at run time: what each client session has seen (its label, and the provenance
//! index of output values), kept per principal and bounded per principal, so one client can
//! never push another's facts out. The pure parts are [`portcullis_core::label`],
//! [`portcullis_core::provenance`] and [`portcullis_core::output`]; this module owns the maps
//! and the clock.
//!
//! A session's scope is given by the caller (`dispatch::ctx`): the stdio connection; else the
//! 2025-11-25 `Mcp-Session-Id`; else, for a stateless 2026-07-28 client, the principal plus the
//! client's name and version, until it has been idle for `[flow] window`.
//!
//! Forgetting is never laundering: a principal whose sessions held untrusted content within
//! the window — a session that is live, ended, idled out or was pushed out by the bound — has
//! every session it opens in that window start untrusted. Only a person clearing it (the admin
//! page) makes it trusted again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use portcullis_core::label::Label;
use portcullis_core::provenance::{ProvenanceIndex, Source};
use serde_json::Value;

use crate::config::FlowConfig;
use crate::guard::judge::Snapshot;
use crate::guard::observe::Seen;

/// Most sessions kept per principal; past it, that principal's longest idle go first.
pub const MAX_SESSIONS_PER_PRINCIPAL: usize = 1_000;
/// Most principals with sessions; past it, principals with no untrusted history and nothing
/// live go first (a principal is an authenticated identity, so this bounds the others).
pub const MAX_PRINCIPALS: usize = 10_000;

/// What one session has seen.
#[derive(Debug)]
pub struct Facts {
    /// The join of every output label.
    pub label: Label,
    /// The first untrusted output, for explanations.
    pub first_untrusted: Option<Source>,
    /// The first output in which the scanner found an injection.
    pub injected: Option<Source>,
    /// Values of the session's outputs.
    pub provenance: ProvenanceIndex,
    last_seen: Instant,
    expires: bool,
}

/// One output as the session records it.
#[derive(Debug, Clone, Copy)]
pub struct Output<'a> {
    /// The tool, resource or prompt (as exposed) or channel it came from.
    pub origin: &'a str,
    /// Its label.
    pub label: Label,
    /// Whether the scanner found an injection in it.
    pub injected: bool,
    /// Its texts.
    pub texts: &'a [&'a str],
    /// The arguments of the call that produced it (`Null` when none).
    pub arguments: &'a Value,
}

/// Where a request's session facts live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Its key (`conn:…`, `session:…`, `client:…`).
    pub key: String,
    /// Whether it ends by idling past the window (stateless clients).
    pub expires: bool,
}

/// One session as the admin page shows it.
#[derive(Debug, Clone)]
pub struct SessionView {
    /// Its scope (`conn:…`, `session:…`, `client:…`).
    pub scope: String,
    /// The principal it belongs to.
    pub principal: String,
    /// Its label's names.
    pub labels: Vec<String>,
    /// Whether it holds untrusted content.
    pub untrusted: bool,
    /// The first untrusted output it saw.
    pub first_untrusted: Option<Source>,
    /// Since its last request.
    pub idle: Duration,
}

/// One principal's sessions, and their untrusted history.
#[derive(Debug, Default)]
struct Principal {
    sessions: HashMap<String, Arc<Mutex<Facts>>>,
    /// The latest untrusted output any of this principal's sessions saw, and when.
    untrusted: Option<(Source, Instant)>,
    /// The latest output with an injection any of this principal's sessions saw, and when.
    injected: Option<(Source, Instant)>,
    last_seen: Option<Instant>,
}

/// Every session's facts.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<String, Principal>>,
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

/// A remembered source, if it was seen within `window`.
fn recent(seen: Option<&(Source, Instant)>, now: Instant, window: Duration) -> Option<&Source> {
    seen.filter(|(_, at)| now.saturating_duration_since(*at) <= window)
        .map(|(s, _)| s)
}

impl Principal {
    /// The untrusted history still within `window`.
    fn history(&self, now: Instant, window: Duration) -> Option<&Source> {
        recent(self.untrusted.as_ref(), now, window)
    }

    /// The injection history still within `window`.
    fn injected_history(&self, now: Instant, window: Duration) -> Option<&Source> {
        recent(self.injected.as_ref(), now, window)
    }

    fn stale(f: &Facts, now: Instant, window: Duration) -> bool {
        f.expires && now.saturating_duration_since(f.last_seen) > window
    }

    /// Makes room for one more session: the stale ones first, then the longest idle tenth.
    fn evict(&mut self, now: Instant, window: Duration) {
        self.sessions.retain(|_, f| !Self::stale(&lock(f), now, window));
        if self.sessions.len() < MAX_SESSIONS_PER_PRINCIPAL {
            return;
        }
        let mut by_age: Vec<(Instant, String)> = self
            .sessions
            .iter()
            .map(|(k, f)| (lock(f).last_seen, k.clone()))
            .collect();
        by_age.sort();
        for (_, k) in by_age.iter().take(self.sessions.len() / 10 + 1) {
            tracing::warn!(session = %k, "session facts dropped: too many sessions for one principal");
            self.sessions.remove(k);
        }
    }
}

impl Sessions {
    /// No sessions yet.
    pub fn new(cfg: FlowConfig) -> Sessions {
        Sessions {
            map: Mutex::new(HashMap::new()),
            cfg,
        }
    }

    fn facts(&self, principal: &str, scope: &Scope) -> Arc<Mutex<Facts>> {
        let now = Instant::now();
        let window = self.cfg.window;
        let mut map = lock(&self.map);
        if !map.contains_key(principal) && map.len() >= MAX_PRINCIPALS {
            // Principals with nothing to remember go first; one with untrusted history stays.
            map.retain(|_, p| p.history(now, window).is_some() || !p.sessions.is_empty());
        }
        let p = map.entry(principal.to_owned()).or_default();
        p.last_seen = Some(now);
        if let Some(f) = p.sessions.get(&scope.key) {
            let stale = Principal::stale(&lock(f), now, window);
            if !stale {
                let f = f.clone();
                lock(&f).last_seen = now;
                return f;
            }
            tracing::debug!(session = %scope.key, "session idle past the flow window; starting afresh");
        }
        if p.sessions.len() >= MAX_SESSIONS_PER_PRINCIPAL {
            p.evict(now, window);
        }
        // A new session of a principal that held untrusted content within the window starts
        // where that left off: untrusted.
        let inherited = p.history(now, window).cloned();
        let injected = p.injected_history(now, window).cloned();
        let f = Arc::new(Mutex::new(Facts {
            label: if inherited.is_some() {
                Label::UNTRUSTED
            } else {
                Label::TRUSTED
            },
            first_untrusted: inherited,
            injected,
            provenance: ProvenanceIndex::new(self.cfg.max_values),
            last_seen: now,
            expires: scope.expires,
        }));
        p.sessions.insert(scope.key.clone(), f.clone());
        f
    }

    /// Ends a session (its connection closed, or the client deleted it). Its untrusted history
    /// stays with the principal for the window.
    pub fn end(&self, scope: &str) -> bool {
        lock(&self.map).values_mut().any(|p| p.sessions.remove(scope).is_some())
    }

    /// A person cleared a session: its facts and its principal's untrusted history go.
    pub fn clear(&self, scope: &str) -> bool {
        let mut map = lock(&self.map);
        for p in map.values_mut() {
            if p.sessions.remove(scope).is_some() {
                p.untrusted = None;
                p.injected = None;
                return true;
            }
        }
        false
    }

    /// Every session's scope, label names, first untrusted source and idle time, most recently
    /// active first (for the admin page).
    pub fn list(&self) -> Vec<SessionView> {
        let now = Instant::now();
        let map = lock(&self.map);
        let mut out: Vec<SessionView> = map
            .iter()
            .flat_map(|(principal, p)| {
                p.sessions.iter().map(move |(scope, f)| {
                    let f = lock(f);
                    SessionView {
                        scope: scope.clone(),
                        principal: principal.clone(),
                        labels: f.label.names().iter().map(|s| (*s).to_owned()).collect(),
                        untrusted: f.label.is_untrusted(),
                        first_untrusted: f.first_untrusted.clone(),
                        idle: now.saturating_duration_since(f.last_seen),
                    }
                })
            })
            .collect();
        out.sort_by_key(|v| v.idle);
        out
    }

    /// The session's facts as a request with `arguments` is judged; provenance is looked up
    /// only when `side_effect` (reads carry nothing anywhere).
    pub fn snapshot(&self, principal: &str, scope: &Scope, arguments: &Value, side_effect: bool) -> Snapshot {
        let f = self.facts(principal, scope);
        let f = lock(&f);
        Snapshot {
            label: f.label,
            first_untrusted: f.first_untrusted.clone(),
            injected: f.injected.clone(),
            hits: if side_effect && f.label.is_untrusted() {
                let mut hits = f.provenance.lookup_arguments(arguments);
                // The person's own destinations are trusted context whatever output named them.
                hits.retain(|h| {
                    !self
                        .cfg
                        .trusted_destinations
                        .iter()
                        .any(|p| portcullis_core::provenance::destination_matches(p, &h.value))
                });
                hits
            } else {
                Vec::new()
            },
        }
    }

    /// Records an output of `origin` with `label` and its texts.
    pub fn observe(&self, principal: &str, scope: &Scope, origin: &str, label: Label, texts: &[&str]) {
        self.observe_output(
            principal,
            scope,
            &Output {
                origin,
                label,
                injected: false,
                texts,
                arguments: &Value::Null,
            },
        );
    }

    /// Records an output as the scanner `seen` it: its label, and whether it carried an
    /// injection.
    pub fn observe_seen(
        &self,
        principal: &str,
        scope: &Scope,
        origin: &str,
        seen: &Seen,
        texts: &[&str],
        arguments: &Value,
    ) {
        self.observe_output(
            principal,
            scope,
            &Output {
                origin,
                label: seen.label,
                injected: seen.injected(),
                texts,
                arguments,
            },
        );
    }

    /// Records an output: its label, whether it carried an injection, its texts, and the
    /// arguments of the call that produced it (trusted output does not confirm a value the
    /// call was given).
    pub fn observe_output(&self, principal: &str, scope: &Scope, out: &Output<'_>) {
        let Output {
            origin,
            label,
            injected,
            texts,
            arguments,
        } = *out;
        let at = now_unix();
        let f = self.facts(principal, scope);
        if label.is_untrusted() || injected {
            let source = Source {
                origin: origin.to_owned(),
                at_unix: at,
            };
            if let Some(p) = lock(&self.map).get_mut(principal) {
                if injected {
                    p.injected = Some((source.clone(), Instant::now()));
                }
                p.untrusted = Some((source, Instant::now()));
            }
        }
        let mut f = lock(&f);
        if injected && f.injected.is_none() {
            f.injected = Some(Source {
                origin: origin.to_owned(),
                at_unix: at,
            });
        }
        f.label = f.label.join(label);
        if label.is_untrusted() && f.first_untrusted.is_none() {
            f.first_untrusted = Some(Source {
                origin: origin.to_owned(),
                at_unix: at,
            });
        }
        let before = f.provenance.evicted;
        f.provenance
            .observe_echo(texts, label.is_untrusted(), origin, at, arguments);
        if f.provenance.evicted > before {
            tracing::debug!(
                evicted = f.provenance.evicted - before,
                "provenance values forgotten (oldest first)"
            );
        }
    }

    /// Records the values of a permitted call's arguments as trusted context when the session
    /// has seen nothing untrusted: the assistant can only have had them from the person or
    /// from trusted output (an address the person named in a first search is theirs).
    pub fn note_clean_arguments(&self, principal: &str, scope: &Scope, origin: &str, arguments: &Value) {
        let f = self.facts(principal, scope);
        let mut f = lock(&f);
        if f.label.is_untrusted() {
            return;
        }
        let at = now_unix();
        portcullis_core::provenance::walk_strings(arguments, &mut String::new(), &mut |_, s| {
            f.provenance.observe(s, false, origin, at);
        });
    }

    /// The window after which an idle stateless session starts afresh.
    pub fn window(&self) -> Duration {
        self.cfg.window
    }
}

#[cfg(test)]
mod tests;
