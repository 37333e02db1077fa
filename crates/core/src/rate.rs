//! Rate and volume limits: how many calls, and how many bytes of results, one principal may
//! draw from one scope (everything, one upstream, one tool) per window.
//!
//! Each limit is a bucket of `calls` (or `bytes`) tokens refilled evenly over its window: a
//! burst of up to the whole allowance, then a steady rate of allowance ÷ window. A call is
//! admitted only when every bucket that applies to it holds a token, and then takes one from
//! each — all or nothing, so a refused call leaves no partial charge. Result bytes are only
//! known after the call, so the byte buckets are charged afterwards and may go into debt; while
//! a byte bucket is in debt, calls in its scope are refused until it refills.
//!
//! The limiter is pure: every method takes `now`. Its memory is bounded: past
//! [`Limiter::MAX_KEYS`] buckets, full (idle) ones are dropped first, which loses nothing
//! because a full bucket is the same as a new one.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// One configured limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Calls allowed per window.
    pub calls: Option<u64>,
    /// Result bytes allowed per window.
    pub bytes: Option<u64>,
    /// The window.
    pub window: Duration,
}

/// What a limit counts over.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Every call of the principal.
    All,
    /// Calls to one upstream, by its configured name.
    Upstream(String),
    /// Calls to one tool: upstream name and the tool's name there.
    Tool(String, String),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::All => f.write_str("all calls"),
            Scope::Upstream(u) => write!(f, "calls to upstream `{u}`"),
            Scope::Tool(u, t) => write!(f, "calls to tool `{t}` of upstream `{u}`"),
        }
    }
}

/// Which allowance ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Measure {
    /// Calls.
    Calls,
    /// Result bytes.
    Bytes,
}

/// A refused call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exceeded {
    /// The scope whose allowance ran out.
    pub scope: Scope,
    /// Calls or bytes.
    pub measure: Measure,
    /// The allowance per window.
    pub limit: u64,
    /// The window.
    pub window: Duration,
    /// When a call in this scope would be admitted again (rounded up to whole seconds, at
    /// least one).
    pub retry_after: Duration,
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.measure {
            Measure::Calls => "calls",
            Measure::Bytes => "bytes of results",
        };
        write!(
            f,
            "rate limit reached for {}: {} {what} per {}s; retry after {}s",
            self.scope,
            self.limit,
            self.window.as_secs_f64(),
            self.retry_after.as_secs()
        )
    }
}

/// A bucket of tokens refilled continuously.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    /// Tokens now (negative: debt).
    level: f64,
    /// When `level` was computed.
    at: Instant,
    /// Tokens when full.
    capacity: u64,
    /// Time to refill from empty.
    window: Duration,
}

impl Bucket {
    fn full(capacity: u64, window: Duration, now: Instant) -> Bucket {
        Bucket {
            level: capacity as f64,
            at: now,
            capacity,
            window,
        }
    }

    fn per_sec(&self) -> f64 {
        self.capacity as f64 / self.window.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// Brings the level up to `now`. A changed limit (config reload) takes effect at once.
    fn refill(&mut self, capacity: u64, window: Duration, now: Instant) {
        (self.capacity, self.window) = (capacity, window);
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + elapsed * self.per_sec()).min(capacity as f64);
        self.at = now;
    }

    /// Time until the level exceeds `need`, in whole seconds, at least one.
    fn wait_for(&self, need: f64) -> Duration {
        let secs = ((need - self.level) / self.per_sec()).max(0.0);
        Duration::from_secs_f64(secs.ceil().clamp(1.0, f64::from(u32::MAX)))
    }

    fn is_full(&self) -> bool {
        self.level >= self.capacity as f64
    }
}

/// `(principal, scope, measure)`.
type Key = (String, Scope, Measure);

/// The window over which `calls_in_window` is counted for policy.
pub const POLICY_WINDOW: Duration = Duration::from_secs(60);

/// A sliding-window estimate of calls in the last [`POLICY_WINDOW`]: the current fixed window's
/// count plus the previous one's, weighted by how much of it still overlaps.
#[derive(Clone, Copy, Debug)]
struct Count {
    start: Instant,
    current: u64,
    previous: u64,
}

impl Count {
    fn roll(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.start);
        if elapsed >= POLICY_WINDOW * 2 {
            *self = Count {
                start: now,
                current: 0,
                previous: 0,
            };
        } else if elapsed >= POLICY_WINDOW {
            self.previous = self.current;
            self.current = 0;
            self.start += POLICY_WINDOW;
        }
    }

    fn estimate(&self, now: Instant) -> u64 {
        let into = now.saturating_duration_since(self.start).as_secs_f64() / POLICY_WINDOW.as_secs_f64();
        let weight = (1.0 - into).clamp(0.0, 1.0);
        self.current
            .saturating_add((self.previous as f64 * weight).ceil() as u64)
    }
}

/// Every principal's buckets.
#[derive(Debug, Default)]
pub struct Limiter {
    buckets: HashMap<Key, Bucket>,
    counts: HashMap<(String, Scope), Count>,
    /// Buckets dropped to stay within [`Limiter::MAX_KEYS`] (full ones first).
    pub evicted: u64,
}

impl Limiter {
    /// Most buckets (and, separately, most policy counters) kept.
    pub const MAX_KEYS: usize = 100_000;

    /// A limiter with no history.
    pub fn new() -> Limiter {
        Limiter::default()
    }

    /// Admits one call of `principal` that falls under `limits`, or says which allowance ran
    /// out (the one that frees up last). An admitted call takes one token from every call
    /// bucket; a refused one takes nothing.
    pub fn admit(&mut self, principal: &str, limits: &[(Scope, Rate)], now: Instant) -> Result<(), Exceeded> {
        let mut refused: Option<Exceeded> = None;
        for (scope, rate) in limits {
            for (measure, capacity, need) in [(Measure::Calls, rate.calls, 1.0), (Measure::Bytes, rate.bytes, 0.0)] {
                let Some(capacity) = capacity else { continue };
                let key = (principal.to_owned(), scope.clone(), measure);
                let Some(bucket) = self.buckets.get_mut(&key) else {
                    continue;
                };
                bucket.refill(capacity, rate.window, now);
                // Calls need a whole token; bytes need the bucket out of debt.
                let short = match measure {
                    Measure::Calls => bucket.level < need,
                    Measure::Bytes => bucket.level <= need,
                };
                if short {
                    let retry_after = bucket.wait_for(need);
                    if refused.as_ref().is_none_or(|r| retry_after > r.retry_after) {
                        refused = Some(Exceeded {
                            scope: scope.clone(),
                            measure,
                            limit: capacity,
                            window: rate.window,
                            retry_after,
                        });
                    }
                }
            }
        }
        if let Some(r) = refused {
            return Err(r);
        }
        for (scope, rate) in limits {
            if let Some(capacity) = rate.calls {
                self.take(principal, scope, Measure::Calls, capacity, rate.window, 1.0, now);
            }
        }
        Ok(())
    }

    /// Charges `bytes` of results to every byte bucket of `limits` (after the call).
    pub fn charge_bytes(&mut self, principal: &str, limits: &[(Scope, Rate)], bytes: u64, now: Instant) {
        for (scope, rate) in limits {
            if let Some(capacity) = rate.bytes {
                self.take(
                    principal,
                    scope,
                    Measure::Bytes,
                    capacity,
                    rate.window,
                    bytes as f64,
                    now,
                );
            }
        }
    }

    #[expect(clippy::too_many_arguments, reason = "one bucket's full address and charge")]
    fn take(
        &mut self,
        principal: &str,
        scope: &Scope,
        measure: Measure,
        capacity: u64,
        window: Duration,
        amount: f64,
        now: Instant,
    ) {
        let key = (principal.to_owned(), scope.clone(), measure);
        if !self.buckets.contains_key(&key) && self.buckets.len() >= Self::MAX_KEYS {
            self.evict(now);
        }
        let bucket = self
            .buckets
            .entry(key)
            .or_insert_with(|| Bucket::full(capacity, window, now));
        bucket.refill(capacity, window, now);
        bucket.level -= amount;
    }

    /// Drops buckets that have refilled (a full bucket is the same as none); if that frees
    /// nothing, drops the least recently used half, which forgets some principals' use.
    fn evict(&mut self, now: Instant) {
        let before = self.buckets.len();
        self.buckets.retain(|_, b| {
            let (capacity, window) = (b.capacity, b.window);
            b.refill(capacity, window, now);
            !b.is_full()
        });
        if self.buckets.len() >= Self::MAX_KEYS {
            let mut ats: Vec<Instant> = self.buckets.values().map(|b| b.at).collect();
            ats.sort_unstable();
            if let Some(cut) = ats.get(ats.len() / 2).copied() {
                self.buckets.retain(|_, b| b.at > cut);
            }
        }
        self.evicted += (before - self.buckets.len()) as u64;
    }

    /// Counts one call of `principal` in `scope` toward `calls_in_window`.
    pub fn count(&mut self, principal: &str, scope: &Scope, now: Instant) {
        let key = (principal.to_owned(), scope.clone());
        if !self.counts.contains_key(&key) && self.counts.len() >= Self::MAX_KEYS {
            self.counts
                .retain(|_, c| now.saturating_duration_since(c.start) < POLICY_WINDOW * 2);
        }
        let c = self.counts.entry(key).or_insert(Count {
            start: now,
            current: 0,
            previous: 0,
        });
        c.roll(now);
        c.current = c.current.saturating_add(1);
    }

    /// Calls of `principal` in `scope` in the last [`POLICY_WINDOW`] (a sliding estimate).
    pub fn calls_in_window(&mut self, principal: &str, scope: &Scope, now: Instant) -> u64 {
        match self.counts.get_mut(&(principal.to_owned(), scope.clone())) {
            Some(c) => {
                c.roll(now);
                c.estimate(now)
            }
            None => 0,
        }
    }

    /// Buckets held now.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Tokens left in one bucket now (`None`: no bucket, i.e. full).
    #[cfg(test)]
    fn level(&mut self, principal: &str, scope: &Scope, measure: Measure, now: Instant) -> Option<f64> {
        let b = self.buckets.get_mut(&(principal.to_owned(), scope.clone(), measure))?;
        let (capacity, window) = (b.capacity, b.window);
        b.refill(capacity, window, now);
        Some(b.level)
    }
}

#[cfg(test)]
mod tests;
