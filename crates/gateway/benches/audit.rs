//! Audit log write throughput: how many decision records per second go through the journal and
//! are indexed into SQLite (WAL, `synchronous = NORMAL`), and how long a caller waits for its
//! record to be journaled, with 1, 16 and 64 concurrent callers, with and without signed checkpoints (every 1000
//! records). Not a test: run with `cargo bench -p portcullis-gateway --bench audit`.
//!
//! Environment: `BENCH_SECONDS` (per configuration, default 3).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark harness"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use portcullis_gateway::state::audit::{AuditLog, Signer, decision_body};
use portcullis_store::Store;
use serde_json::json;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn run(callers: usize, signed: bool, seconds: u64) -> (f64, Duration, Duration) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).await.unwrap();
    let signer = signed.then(|| Signer::new(&[7u8; 32], 1000).with_witness(dir.path().join("witness.jsonl")));
    let indexed = store.clone();
    let log = Arc::new(
        AuditLog::start(store, signer, &dir.path().join("audit-journal"))
            .await
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..callers {
        let log = log.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut waits = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = decision_body(
                    "alice",
                    "claude-desktop",
                    "session:abc",
                    "call_tool",
                    "mail",
                    "send_message",
                    &json!({"to": format!("user{c}-{i}@example.com"), "subject": "quarterly numbers", "body": "see attached"}),
                    "permit",
                    "",
                    &["trusted"],
                );
                let t = Instant::now();
                assert!(log.record(body).await, "a record was not committed");
                waits.push(t.elapsed());
                i += 1;
            }
            waits
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut waits: Vec<Duration> = Vec::new();
    for t in tasks {
        waits.extend(t.await.unwrap());
    }
    // Until every record is indexed into the database, not only journaled.
    log.close().await;
    let elapsed = started.elapsed();
    let head = indexed.audit_head().await.unwrap().map_or(0, |(s, _)| s);
    assert_eq!(
        usize::try_from(head).unwrap(),
        waits.len(),
        "records journaled but not indexed"
    );
    waits.sort();
    let p = |q: f64| waits[((waits.len() as f64 - 1.0) * q) as usize];
    (waits.len() as f64 / elapsed.as_secs_f64(), p(0.5), p(0.99))
}

#[tokio::main]
async fn main() {
    let seconds = env_or("BENCH_SECONDS", 3u64);
    println!(
        "audit log, {seconds} s of calls per row: `record` returns once the record is journaled; records/s counts until every record is indexed into the database\n"
    );
    println!("| callers | checkpoints | records/s | wait p50 | wait p99 |");
    println!("|---|---|---|---|---|");
    for signed in [false, true] {
        for callers in [1usize, 16, 64] {
            let (rate, p50, p99) = run(callers, signed, seconds).await;
            println!(
                "| {callers} | {} | {:.0} | {:.0} µs | {:.0} µs |",
                if signed { "signed every 1000" } else { "none" },
                rate,
                p50.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6
            );
        }
    }
}
