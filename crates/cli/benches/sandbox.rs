//! What the sandbox costs: an upstream's start (spawn and handshake) and a call, with and
//! without the sandbox, on the same Rust fixture server. Not a test: run with
//! `cargo bench -p portcullis --bench sandbox`. Rounds alternate the two paths, so a change in
//! the machine's load hits both alike; compare the ratios.
//!
//! Environment: `PORTCULLIS_FIXTURE` (default next to this bench), `BENCH_STARTS` (default 20),
//! `BENCH_CALLS` (default 2000).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark harness"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portcullis_core::Params;
use portcullis_gateway::config::sandbox::{Limits, Network, SandboxConfig};
use portcullis_gateway::config::{EraChoice, Transport};
use portcullis_gateway::upstream::client::{Call, ConnectOptions, McpClient};
use serde_json::{Map, json};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn fixture() -> PathBuf {
    if let Some(p) = std::env::var_os("PORTCULLIS_FIXTURE") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().join("portcullis-fixture")
}

fn transport(fixture: &Path, sandbox: Option<SandboxConfig>) -> Transport {
    Transport::Stdio {
        command: fixture.to_string_lossy().into_owned(),
        args: vec!["stdio".into()],
        env: BTreeMap::new(),
        inherit_env: vec![],
        cwd: None,
        sandbox,
    }
}

fn options() -> ConnectOptions {
    ConnectOptions {
        era: EraChoice::Modern,
        legacy_capabilities: Map::new(),
        limits: portcullis_core::Limits::default(),
        probe_timeout: Duration::from_secs(10),
        handshake_timeout: Duration::from_secs(30),
        label: "bench".into(),
    }
}

fn call() -> Call {
    let mut p = Params::new();
    let _ = p.insert("name", "test_simple_text");
    let _ = p.insert("arguments", &json!({}));
    Call::new("tools/call", Some(p), Duration::from_secs(30))
}

fn pick(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * q).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main]
async fn main() {
    // The helper is the `portcullis` binary; this bench is not.
    let helper = PathBuf::from(env!("CARGO_BIN_EXE_portcullis"));
    let fixture = fixture();
    let dir = tempfile::tempdir().unwrap();
    let sandbox = SandboxConfig {
        fs_read: vec![],
        fs_write: vec![],
        network: Network::None,
        limits: Limits::default(),
        accept_weaker: vec![],
        private: dir.path().join("private"),
        protected: vec![dir.path().join("state")],
    };
    let starts: usize = env_or("BENCH_STARTS", 20);
    let calls: usize = env_or("BENCH_CALLS", 2000);
    println!(
        "fixture {}, helper {} (PORTCULLIS_SANDBOX_HELPER)",
        fixture.display(),
        helper.display()
    );
    assert!(
        std::env::var_os("PORTCULLIS_SANDBOX_HELPER").is_some(),
        "run with PORTCULLIS_SANDBOX_HELPER={} (the helper is the portcullis binary)",
        helper.display()
    );

    let mut plain_starts = Vec::new();
    let mut boxed_starts = Vec::new();
    for _ in 0..starts {
        for (sb, out) in [(None, &mut plain_starts), (Some(sandbox.clone()), &mut boxed_starts)] {
            let t = Instant::now();
            let c = McpClient::connect(&transport(&fixture, sb), &options()).await.unwrap();
            out.push(t.elapsed());
            c.shutdown().await;
        }
    }
    let plain = McpClient::connect(&transport(&fixture, None), &options())
        .await
        .unwrap();
    let boxed = McpClient::connect(&transport(&fixture, Some(sandbox)), &options())
        .await
        .unwrap();
    for c in [&plain, &boxed] {
        for _ in 0..200 {
            c.call(call()).await.unwrap();
        }
    }
    let mut plain_calls = Vec::new();
    let mut boxed_calls = Vec::new();
    for _ in 0..calls.div_ceil(100) {
        for (c, out) in [(&plain, &mut plain_calls), (&boxed, &mut boxed_calls)] {
            for _ in 0..100 {
                let t = Instant::now();
                c.call(call()).await.unwrap();
                out.push(t.elapsed());
            }
        }
    }
    println!();
    println!("| path | start p50 | start p90 | call p50 | call p99 |");
    println!("|---|---|---|---|---|");
    for (name, s, c) in [
        ("unsandboxed", &mut plain_starts, &mut plain_calls),
        ("sandboxed", &mut boxed_starts, &mut boxed_calls),
    ] {
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.0} µs | {:.0} µs |",
            us(pick(s, 0.5)) / 1000.0,
            us(pick(s, 0.9)) / 1000.0,
            us(pick(c, 0.5)),
            us(pick(c, 0.99)),
        );
    }
}
