//! Cost of the controls in the call path that are pure: fingerprinting a tool definition (done
//! for every tool each time an upstream's list is read) and admitting a call through the rate
//! limiter (done on every call).
//!
//! `cargo bench -p portcullis-core --bench controls`. Each figure is the median of 7 rounds of
//! about 200 ms each; `BENCH_ROUNDS` changes the count.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::{reference_snapshot, rounds, time, tools};

use portcullis_core::pin::Fingerprint;
use portcullis_core::rate::{Limiter, Rate, Scope};

fn main() {
    let rounds = rounds();
    let snapshot = reference_snapshot();
    let tools = tools(&snapshot);
    let bytes: usize = tools.iter().map(|t| t.to_string().len()).sum();
    let secs = time(rounds, || {
        for t in &tools {
            black_box(Fingerprint::of(black_box(t)));
        }
    });
    println!(
        "Fingerprint::of, {} reference tools ({bytes} B)   {:>8.2} µs/tool   {:>7.1} MB/s",
        tools.len(),
        secs * 1e6 / tools.len().max(1) as f64,
        bytes as f64 / secs / 1e6
    );

    let rate = Rate {
        calls: Some(u64::MAX / 2),
        bytes: Some(u64::MAX / 2),
        window: Duration::from_secs(60),
    };
    let limits = [
        (Scope::All, rate),
        (Scope::Upstream("mail".into()), rate),
        (Scope::Tool("mail".into(), "send_message".into()), rate),
    ];
    for principals in [1usize, 10_000] {
        let names: Vec<String> = (0..principals).map(|i| format!("user-{i}")).collect();
        let mut limiter = Limiter::new();
        let mut i = 0usize;
        let secs = time(rounds, || {
            let p = names.get(i % principals).map_or("", String::as_str);
            i += 1;
            let now = Instant::now();
            let _ = black_box(limiter.admit(p, &limits, now));
            limiter.charge_bytes(p, &limits, 1000, now);
            limiter.count(p, &limits[2].0, now);
        });
        println!(
            "admit + charge + count, 3 scopes, {principals:>5} principals   {:>8.3} µs/call",
            secs * 1e6
        );
    }
}
