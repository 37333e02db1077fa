//! What the core benches share: the timing loop (`std::time::Instant`, no criterion) and the
//! reference servers' tool snapshot.

#![allow(dead_code, reason = "each bench uses a different part of this module")]

use std::time::{Duration, Instant};

use serde_json::Value;

/// The tool lists of server-everything, server-filesystem and server-memory 2026.8.31.
const REFERENCE_TOOLS: &str = include_str!("../../src/scan/testdata/reference-tools.json");

/// The reference snapshot (`{"tools": [...]}`).
pub fn reference_snapshot() -> Value {
    serde_json::from_str(REFERENCE_TOOLS).unwrap_or(Value::Null)
}

/// The snapshot's tool definitions.
pub fn tools(snapshot: &Value) -> Vec<&Value> {
    snapshot
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect()
}

/// Rounds per figure: `BENCH_ROUNDS`, else 7.
pub fn rounds() -> usize {
    std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(7)
}

/// Runs `f` in `rounds` rounds of about 200 ms each; the median seconds per call of `f`.
pub fn time(rounds: usize, mut f: impl FnMut()) -> f64 {
    let calib = Instant::now();
    let mut passes = 0u32;
    while calib.elapsed() < Duration::from_millis(50) {
        f();
        passes += 1;
    }
    let per_round = (passes * 4).max(1);
    let mut per_pass: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_round {
                f();
            }
            t.elapsed().as_secs_f64() / f64::from(per_round)
        })
        .collect();
    per_pass.sort_by(f64::total_cmp);
    per_pass.get(rounds / 2).copied().unwrap_or(f64::NAN)
}
