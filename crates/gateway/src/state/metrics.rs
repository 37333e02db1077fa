//! Metrics in the Prometheus (OpenMetrics) text format, served at `/metrics`: calls and
//! decisions by upstream and outcome, call latency as a histogram, upstream health, approvals
//! pending. Counters are bumped on the call path (an atomic add); gauges are read when scraped.

use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Decision {
    upstream: String,
    decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Upstream {
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    upstream: String,
    outcome: String,
}

/// The gateway's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    decisions: Family<Decision, Counter>,
    completed: Family<Outcome, Counter>,
    latency: Family<Upstream, Histogram>,
    upstream_up: Family<Upstream, Gauge>,
    approvals_pending: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~53 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 20))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let decisions = Family::<Decision, Counter>::default();
        registry.register(
            "decisions",
            "Decisions on tool calls, prompt gets and resource reads, by upstream and outcome",
            decisions.clone(),
        );
        let completed = Family::<Outcome, Counter>::default();
        registry.register(
            "calls_completed",
            "Forwarded calls that came back, by upstream and outcome (result or error)",
            completed.clone(),
        );
        let latency = Family::<Upstream, Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "call_duration_seconds",
            "Time from forwarding a call to its answer, by upstream",
            latency.clone(),
        );
        let upstream_up = Family::<Upstream, Gauge>::default();
        registry.register(
            "upstream_up",
            "1 when the upstream is connected and ready, else 0",
            upstream_up.clone(),
        );
        let approvals_pending = Gauge::default();
        registry.register(
            "approvals_pending",
            "Calls waiting for a person's approval",
            approvals_pending.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            decisions,
            completed,
            latency,
            upstream_up,
            approvals_pending,
        }
    }
}

impl Metrics {
    /// Counts one decision.
    pub fn decision(&self, upstream: &str, decision: &str) {
        self.decisions
            .get_or_create(&Decision {
                upstream: upstream.to_owned(),
                decision: decision.to_owned(),
            })
            .inc();
    }

    /// Records a forwarded call's answer and how long it took.
    pub fn completed(&self, upstream: &str, outcome: &str, seconds: f64) {
        let u = Upstream {
            upstream: upstream.to_owned(),
        };
        self.latency.get_or_create(&u).observe(seconds);
        self.completed
            .get_or_create(&Outcome {
                upstream: upstream.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The text exposition, with the gauges set from `upstreams` (name, ready) and `pending`.
    pub fn render(&self, upstreams: &[(String, bool)], pending: i64) -> String {
        for (name, up) in upstreams {
            self.upstream_up
                .get_or_create(&Upstream { upstream: name.clone() })
                .set(i64::from(*up));
        }
        self.approvals_pending.set(pending);
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        if encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_carries_every_family() {
        let m = Metrics::default();
        m.decision("mail", "permit");
        m.decision("mail", "permit");
        m.decision("mail", "forbid");
        m.completed("mail", "result", 0.002);
        let text = m.render(&[("mail".into(), true), ("files".into(), false)], 3);
        for want in [
            "portcullis_decisions_total{upstream=\"mail\",decision=\"permit\"} 2",
            "portcullis_decisions_total{upstream=\"mail\",decision=\"forbid\"} 1",
            "portcullis_calls_completed_total{upstream=\"mail\",outcome=\"result\"} 1",
            "portcullis_call_duration_seconds_count{upstream=\"mail\"} 1",
            "portcullis_upstream_up{upstream=\"mail\"} 1",
            "portcullis_upstream_up{upstream=\"files\"} 0",
            "portcullis_approvals_pending 3",
            "# EOF",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }
}
