//! Soak: a long run at a steady load through both transports at once, with a hostile upstream
//! in the mix, sampling what each gateway process holds. Not a test: run with
//!
//! ```text
//! cargo build --release -p portcullis -p portcullis-fixture
//! cargo bench -p portcullis --bench soak        # 10 minutes; writes soak.csv
//! scripts/plot-soak soak.csv docs/soak.png
//! ```
//!
//! Two gateways (`portcullis serve` over Streamable HTTP, `portcullis stdio`), each with the
//! Rust fixture and `tests/peers/raw_server.py --faults` as upstreams, every guard and the
//! audit log on. First the peak is measured with both loaded together (16 callers each); then
//! each is driven at `SOAK_LOAD` of its share for `SOAK_SECONDS`, while one more caller sends
//! the hostile upstream a fault every 2 s (garbage, not UTF-8, a 2 000-notification flood, a
//! 20 MiB answer, a crash). Every `SOAK_SAMPLE` seconds, per gateway: resident memory, open
//! file descriptors, threads, bytes in its data folder, calls, failed calls (faults not
//! counted) and latency.
//!
//! Environment: `SOAK_SECONDS` (600), `SOAK_SAMPLE` (10), `SOAK_LOAD` (0.8), `SOAK_CSV`
//! (`soak.csv`), `PORTCULLIS_FIXTURE`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark harness"
)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{call, child_pid, env_or, fixture, free_port, http, options, rss_kib, spawn, stdio, wait_port};
use portcullis_core::Params;
use portcullis_gateway::config::EraChoice;
use portcullis_gateway::upstream::client::{Call, McpClient};
use serde_json::json;

const CALLERS: usize = 16;
const TOOL: &str = "fixture__test_simple_text";

/// What one gateway did in a sampling window.
#[derive(Default)]
struct Window {
    calls: AtomicU64,
    failed: AtomicU64,
    latencies: Mutex<Vec<Duration>>,
}

impl Window {
    fn take(&self) -> (u64, u64, Vec<Duration>) {
        let mut l = std::mem::take(&mut *self.latencies.lock().unwrap());
        l.sort();
        (
            self.calls.swap(0, Ordering::Relaxed),
            self.failed.swap(0, Ordering::Relaxed),
            l,
        )
    }
}

fn write_config(dir: &Path, name: &str, port: u16, fixture: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let permit_all = root.join("tests/conformance/permit-all.cedar");
    let raw = root.join("tests/peers/raw_server.py");
    let text = format!(
        "[gateway]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"state-{name}\"\nmax_concurrent_calls = 1024\n\n\
         [approvals]\nask = false\n\n[policy]\nprofile = \"none\"\nfiles = [{:?}]\n\n\
         [upstreams.fixture]\ncommand = {:?}\nargs = [\"stdio\"]\n\n\
         [upstreams.raw]\ncommand = \"python3\"\nargs = [{:?}, \"--faults\"]\ncall_timeout = \"5s\"\n",
        permit_all.to_string_lossy(),
        fixture.to_string_lossy(),
        raw.to_string_lossy()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn count(dir: String) -> usize {
    std::fs::read_dir(dir).map_or(0, Iterator::count)
}

fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => tree_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Calls `TOOL` as fast as `CALLERS` callers can for `seconds`: calls per second.
async fn peak(clients: &[Arc<McpClient>], seconds: u64) -> Vec<f64> {
    let until = Instant::now() + Duration::from_secs(seconds);
    let counters: Vec<Arc<AtomicU64>> = clients.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut workers = Vec::new();
    for (client, done) in clients.iter().zip(&counters) {
        for _ in 0..CALLERS {
            let (client, done) = (client.clone(), done.clone());
            workers.push(tokio::spawn(async move {
                while Instant::now() < until {
                    if client.call(call(TOOL)).await.is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    for w in workers {
        w.await.unwrap();
    }
    counters
        .iter()
        .map(|c| c.load(Ordering::Relaxed) as f64 / seconds as f64)
        .collect()
}

/// One caller at `per_second`, until `until`.
fn paced(client: Arc<McpClient>, per_second: f64, until: Instant, window: Arc<Window>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while Instant::now() < until {
            tick.tick().await;
            let t = Instant::now();
            let ok = matches!(client.call(call(TOOL)).await, Ok(r) if r.as_error().is_none());
            window.latencies.lock().unwrap().push(t.elapsed());
            window.calls.fetch_add(1, Ordering::Relaxed);
            if !ok {
                window.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
}

/// The hostile upstream's faults, one every 2 s, in turn. Their failures are expected.
fn faults(client: Arc<McpClient>, until: Instant) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let faults = [
            ("raw__garbage_then_answer", json!({})),
            ("raw__invalid_utf8", json!({})),
            ("raw__flood", json!({"count": 2000})),
            ("raw__huge_result", json!({"mib": 20})),
            ("raw__crash", json!({})),
        ];
        let mut sent = 0u64;
        while Instant::now() < until {
            let (tool, arguments) = &faults[(sent as usize) % faults.len()];
            let mut p = Params::new();
            let _ = p.insert("name", tool);
            let _ = p.insert("arguments", arguments);
            let _ = client
                .call(Call::new("tools/call", Some(p), Duration::from_secs(30)))
                .await;
            sent += 1;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        sent
    })
}

fn main() {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(soak());
}

async fn soak() {
    portcullis_gateway::install_crypto();
    let seconds: u64 = env_or("SOAK_SECONDS", 600);
    let sample: u64 = env_or("SOAK_SAMPLE", 10);
    let load: f64 = env_or("SOAK_LOAD", 0.8);
    let csv_path = PathBuf::from(env_or("SOAK_CSV", "soak.csv".to_owned()));
    let fixture = fixture();
    let portcullis = PathBuf::from(env!("CARGO_BIN_EXE_portcullis"));
    let dir = tempfile::tempdir().unwrap();

    let port = free_port();
    let http_cfg = write_config(dir.path(), "http", port, &fixture);
    let mut server = spawn(&portcullis, &["serve", "--config", &http_cfg.to_string_lossy()]);
    wait_port(port).await;
    let over_http = Arc::new(
        McpClient::connect(&http(port), &options(EraChoice::Modern))
            .await
            .unwrap(),
    );
    let stdio_cfg = write_config(dir.path(), "stdio", free_port(), &fixture);
    let over_stdio = Arc::new(
        McpClient::connect(
            &stdio(&portcullis, &["stdio", "--config", &stdio_cfg.to_string_lossy()]),
            &options(EraChoice::Modern),
        )
        .await
        .unwrap(),
    );
    let gateways = [
        (
            "http",
            server.id().unwrap(),
            dir.path().join("state-http"),
            over_http.clone(),
        ),
        (
            "stdio",
            child_pid(&portcullis, " stdio "),
            dir.path().join("state-stdio"),
            over_stdio.clone(),
        ),
    ];
    // Both upstreams of both gateways started.
    for (_, _, _, client) in &gateways {
        let deadline = Instant::now() + Duration::from_secs(60);
        while client.call(call(TOOL)).await.map_or(true, |r| r.as_error().is_some()) {
            assert!(Instant::now() < deadline, "the gateway never served {TOOL}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    let peaks = peak(&[over_http.clone(), over_stdio.clone()], 10).await;
    println!(
        "peak with both loaded: http {:.0} calls/s, stdio {:.0} calls/s; soaking at {:.0}% for {seconds} s",
        peaks[0],
        peaks[1],
        load * 100.0
    );

    let until = Instant::now() + Duration::from_secs(seconds);
    let windows: Vec<Arc<Window>> = gateways.iter().map(|_| Arc::new(Window::default())).collect();
    let mut callers = Vec::new();
    for ((_, _, _, client), (window, peak)) in gateways.iter().zip(windows.iter().zip(&peaks)) {
        for _ in 0..CALLERS {
            callers.push(paced(
                client.clone(),
                peak * load / CALLERS as f64,
                until,
                window.clone(),
            ));
        }
    }
    let hostile = faults(over_http.clone(), until);

    let mut csv = std::fs::File::create(&csv_path).unwrap();
    writeln!(
        csv,
        "t_s,gateway,rss_kib,fds,threads,data_bytes,calls,failed,p50_us,p99_us"
    )
    .unwrap();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(sample));
    tick.tick().await;
    while Instant::now() < until {
        tick.tick().await;
        let t = started.elapsed().as_secs();
        for ((name, pid, data, _), window) in gateways.iter().zip(&windows) {
            let (calls, failed, l) = window.take();
            let pick = |q: f64| {
                l.get(((l.len().max(1) - 1) as f64 * q).round() as usize)
                    .map_or(0, |d| d.as_micros())
            };
            let line = format!(
                "{t},{name},{},{},{},{},{calls},{failed},{},{}",
                rss_kib(*pid),
                count(format!("/proc/{pid}/fd")),
                count(format!("/proc/{pid}/task")),
                tree_bytes(data),
                pick(0.5),
                pick(0.99)
            );
            println!("{line}");
            writeln!(csv, "{line}").unwrap();
        }
    }
    for c in callers {
        c.await.unwrap();
    }
    let sent = hostile.await.unwrap();
    println!(
        "{sent} faults sent to the hostile upstream; samples in {}",
        csv_path.display()
    );
    let _ = server.kill().await;
}
