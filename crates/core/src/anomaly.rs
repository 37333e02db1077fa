//! Credential misuse: a rolling baseline of how each credential is used, per hour — calls,
//! distinct destinations (addresses, URLs, domains in the arguments), bytes read, and the hours
//! of the day it is used at — and the rule that says a use is far outside it.
//!
//! An hour's measure is anomalous when it exceeds both its floor and `factor` times the largest
//! value of that measure in any hour of the last [`WINDOW_HOURS`]; a first use at an hour of the
//! day never used before is anomalous once the baseline spans [`MIN_DAYS_FOR_HOURS`] days. Pure:
//! time is an argument; memory is bounded by the window.

use std::collections::{HashSet, VecDeque};
use std::fmt;

/// How far back the baseline reaches, in hours (14 days).
pub const WINDOW_HOURS: i64 = 14 * 24;
/// How many days of history before an unusual hour of the day counts.
pub const MIN_DAYS_FOR_HOURS: i64 = 7;
/// Most distinct destinations remembered per hour.
const MAX_DESTINATIONS: usize = 10_000;

/// When a use is far outside the baseline.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// A measure must exceed this many times its baseline maximum.
    pub factor: f64,
    /// Calls per hour never flagged below this.
    pub calls_per_hour: u64,
    /// Distinct destinations per hour never flagged below this.
    pub destinations_per_hour: u64,
    /// Bytes read per hour never flagged below this.
    pub bytes_per_hour: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            factor: 5.0,
            calls_per_hour: 30,
            destinations_per_hour: 10,
            bytes_per_hour: 10 * 1024 * 1024,
        }
    }
}

/// What was unusual.
#[derive(Clone, Debug, PartialEq)]
pub enum Anomaly {
    /// More calls in this hour than the baseline allows.
    Calls {
        /// Calls this hour.
        now: u64,
        /// The limit they passed.
        limit: u64,
    },
    /// More distinct destinations in this hour.
    Destinations {
        /// Destinations this hour.
        now: u64,
        /// The limit.
        limit: u64,
    },
    /// More bytes read in this hour.
    Bytes {
        /// Bytes this hour.
        now: u64,
        /// The limit.
        limit: u64,
    },
    /// A use at an hour of the day (UTC) not used in the baseline.
    Hour {
        /// The hour of the day, 0–23.
        hour_of_day: i64,
    },
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anomaly::Calls { now, limit } => write!(f, "{now} calls this hour (usual at most {limit})"),
            Anomaly::Destinations { now, limit } => {
                write!(f, "{now} distinct destinations this hour (usual at most {limit})")
            }
            Anomaly::Bytes { now, limit } => write!(f, "{now} bytes read this hour (usual at most {limit})"),
            Anomaly::Hour { hour_of_day } => write!(
                f,
                "used at {hour_of_day:02}:00 UTC, an hour of the day it was not used at in the last {} days",
                WINDOW_HOURS / 24
            ),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Hour {
    /// Hours since the Unix epoch.
    index: i64,
    calls: u64,
    bytes: u64,
    destinations: HashSet<String>,
}

/// One credential's usage history.
#[derive(Clone, Debug, Default)]
pub struct Baseline {
    hours: VecDeque<Hour>,
    /// Anomalies already reported this hour (each kind once an hour).
    reported: Vec<(i64, std::mem::Discriminant<Anomaly>)>,
}

fn limit(baseline_max: u64, floor: u64, factor: f64) -> u64 {
    let scaled = (baseline_max as f64 * factor).ceil();
    floor.max(if scaled >= u64::MAX as f64 {
        u64::MAX
    } else {
        scaled as u64
    })
}

impl Baseline {
    /// An empty history.
    pub fn new() -> Baseline {
        Baseline::default()
    }

    /// Records one use at `now_unix` that read `bytes` and went to `destinations`; returns what
    /// became anomalous with it (each kind reported once per hour).
    pub fn record(&mut self, now_unix: i64, bytes: u64, destinations: &[String], t: &Thresholds) -> Vec<Anomaly> {
        let index = now_unix.div_euclid(3600);
        while self.hours.front().is_some_and(|h| h.index <= index - WINDOW_HOURS) {
            self.hours.pop_front();
        }
        self.reported.retain(|(h, _)| *h == index);
        let first_this_hour = self.hours.back().is_none_or(|h| h.index != index);
        // The baseline: every hour in the window but this one.
        let past = self.hours.iter().filter(|h| h.index != index);
        let (mut max_calls, mut max_dest, mut max_bytes) = (0u64, 0u64, 0u64);
        let mut used_hours = [false; 24];
        let mut oldest = index;
        for h in past {
            max_calls = max_calls.max(h.calls);
            max_dest = max_dest.max(h.destinations.len() as u64);
            max_bytes = max_bytes.max(h.bytes);
            if let Some(slot) = used_hours.get_mut(h.index.rem_euclid(24) as usize) {
                *slot = true;
            }
            oldest = oldest.min(h.index);
        }
        if first_this_hour {
            self.hours.push_back(Hour {
                index,
                ..Hour::default()
            });
        }
        let Some(cur) = self.hours.back_mut() else {
            return Vec::new();
        };
        cur.calls += 1;
        cur.bytes = cur.bytes.saturating_add(bytes);
        for d in destinations {
            if cur.destinations.len() < MAX_DESTINATIONS {
                cur.destinations.insert(d.clone());
            }
        }
        let mut found = Vec::new();
        let calls_limit = limit(max_calls, t.calls_per_hour, t.factor);
        if cur.calls > calls_limit {
            found.push(Anomaly::Calls {
                now: cur.calls,
                limit: calls_limit,
            });
        }
        let dest_limit = limit(max_dest, t.destinations_per_hour, t.factor);
        if cur.destinations.len() as u64 > dest_limit {
            found.push(Anomaly::Destinations {
                now: cur.destinations.len() as u64,
                limit: dest_limit,
            });
        }
        let bytes_limit = limit(max_bytes, t.bytes_per_hour, t.factor);
        if cur.bytes > bytes_limit {
            found.push(Anomaly::Bytes {
                now: cur.bytes,
                limit: bytes_limit,
            });
        }
        let hour_of_day = index.rem_euclid(24);
        if first_this_hour
            && index - oldest >= MIN_DAYS_FOR_HOURS * 24
            && !used_hours.get(hour_of_day as usize).copied().unwrap_or(true)
        {
            found.push(Anomaly::Hour { hour_of_day });
        }
        found.retain(|a| {
            let key = (index, std::mem::discriminant(a));
            if self.reported.contains(&key) {
                false
            } else {
                self.reported.push(key);
                true
            }
        });
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    const START: i64 = 1_798_761_600; // a Monday, 00:00 UTC

    fn working_day(b: &mut Baseline, day: i64, t: &Thresholds) -> Vec<Anomaly> {
        let mut found = Vec::new();
        // 09:00–17:00, eight calls an hour to a few colleagues, 20 kB each.
        for hour in 9..17 {
            for i in 0..8 {
                let at = START + day * DAY + hour * 3600 + i * 400;
                let dest = vec![format!("colleague{}@example.com", i % 3)];
                found.extend(b.record(at, 20_000, &dest, t));
            }
        }
        found
    }

    #[test]
    fn a_normal_day_does_not_trip_and_a_replayed_burst_does() {
        let t = Thresholds::default();
        let mut b = Baseline::new();
        for day in 0..10 {
            assert_eq!(working_day(&mut b, day, &t), [], "day {day}");
        }
        // Day 10, 10:00: a stolen token replays 400 calls to 400 addresses in one hour.
        let mut found = Vec::new();
        for i in 0..400 {
            let at = START + 10 * DAY + 10 * 3600 + i;
            found.extend(b.record(at, 50_000, &[format!("victim{i}@elsewhere.test")], &t));
        }
        let kinds: Vec<&str> = found
            .iter()
            .map(|a| match a {
                Anomaly::Calls { .. } => "calls",
                Anomaly::Destinations { .. } => "destinations",
                Anomaly::Bytes { .. } => "bytes",
                Anomaly::Hour { .. } => "hour",
            })
            .collect();
        assert_eq!(kinds, ["destinations", "calls", "bytes"], "each once: {found:?}");
        assert_eq!(found[1].to_string(), "41 calls this hour (usual at most 40)");
    }

    #[test]
    fn an_unusual_hour_counts_only_with_a_week_of_history() {
        let t = Thresholds::default();
        let mut b = Baseline::new();
        // Day 0 at 03:00: no history yet, nothing.
        assert_eq!(b.record(START + 3 * 3600, 1, &[], &t), []);
        for day in 1..8 {
            working_day(&mut b, day, &t);
        }
        // Day 8 at 03:00: used at 03:00 once, 8 days ago — inside the window, so usual.
        assert_eq!(b.record(START + 8 * DAY + 3 * 3600, 1, &[], &t), []);
        // Day 8 at 04:00: never.
        assert_eq!(
            b.record(START + 8 * DAY + 4 * 3600, 1, &[], &t),
            [Anomaly::Hour { hour_of_day: 4 }]
        );
    }

    #[test]
    fn a_new_credential_is_judged_by_the_floors() {
        let t = Thresholds {
            factor: 1.0,
            calls_per_hour: 2,
            destinations_per_hour: 100,
            bytes_per_hour: u64::MAX,
        };
        let mut b = Baseline::new();
        assert_eq!(b.record(START, 0, &[], &t), []);
        assert_eq!(b.record(START + 1, 0, &[], &t), []);
        assert_eq!(b.record(START + 2, 0, &[], &t), [Anomaly::Calls { now: 3, limit: 2 }]);
        // Reported once an hour.
        assert_eq!(b.record(START + 3, 0, &[], &t), []);
    }

    #[test]
    fn memory_is_bounded_by_the_window() {
        let t = Thresholds::default();
        let mut b = Baseline::new();
        for h in 0..(WINDOW_HOURS * 3) {
            b.record(START + h * 3600, 1, &[], &t);
        }
        assert!(b.hours.len() as i64 <= WINDOW_HOURS);
    }
}
