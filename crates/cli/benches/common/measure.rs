//! Latency and throughput of several paths to the same server, measured in one interleaved
//! run, and the CPU and memory of the process on each path (gateway, relay, peer).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis_gateway::upstream::client::McpClient;

use super::{call, cpu_ticks, env_or, parent_pid, rss_kib};

#[derive(Clone, Copy, Debug)]
pub struct Figures {
    pub p50: Duration,
    pub p99: Duration,
    pub per_second: f64,
    /// The gateway's (or relay's) CPU time per call in the throughput phase, and its resident
    /// memory before the first call and after the last.
    pub process: Option<ProcessFigures>,
}

#[derive(Clone, Copy, Debug)]
pub struct ProcessFigures {
    pub cpu_per_call: Duration,
    pub idle_rss_kib: u64,
    pub loaded_rss_kib: u64,
}

/// Which processes a path's CPU and memory are read from.
#[derive(Clone, Debug)]
pub enum Watch {
    /// Nothing between client and server (the direct path).
    Nothing,
    /// One process.
    Pid(u32),
    /// A process and every process under it (a peer that runs workers), except those whose
    /// command line starts with `except` (the upstream server a gateway launched itself).
    Tree { root: u32, except: String },
}

impl Watch {
    fn pids(&self) -> Vec<u32> {
        match self {
            Watch::Nothing => Vec::new(),
            Watch::Pid(pid) => vec![*pid],
            Watch::Tree { root, except } => descendants(*root)
                .into_iter()
                .filter(|pid| {
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    !cmdline.starts_with(except.as_bytes())
                })
                .collect(),
        }
    }

    fn ticks(&self) -> Option<u64> {
        let pids = self.pids();
        (!pids.is_empty()).then(|| pids.into_iter().map(cpu_ticks).sum())
    }

    fn rss_kib(&self) -> Option<u64> {
        let pids = self.pids();
        (!pids.is_empty()).then(|| pids.into_iter().map(rss_kib).sum())
    }
}

/// `root` and every process under it.
fn descendants(root: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some(ppid) = parent_pid(pid) {
            parents.push((pid, ppid));
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while let Some(&p) = out.get(i) {
        out.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

/// A call slower than this on average (in the warm-up) is a slow path: it takes smaller rounds
/// and fewer samples, so that a peer 100× slower does not stretch the run 100×.
const SLOW: Duration = Duration::from_millis(2);

/// Measures several paths to the same server. Latency samples are taken in interleaved rounds
/// (a batch on each path in turn), so a change in the machine's load hits every path alike;
/// throughput is measured per path afterwards.
///
/// Environment: `BENCH_CALLS` (latency samples per fast path, default 5000), `BENCH_SECONDS`
/// (throughput window, default 3), `BENCH_CONCURRENCY` (default 16).
/// `tools` holds the tool's name on each path (a peer may rename it).
pub async fn measure(clients: &[Arc<McpClient>], watch: &[Watch], tools: &[&str]) -> Vec<Figures> {
    let calls: usize = env_or("BENCH_CALLS", 5000);
    let seconds: u64 = env_or("BENCH_SECONDS", 3);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 16);
    const ROUND: usize = 100;
    const SLOW_ROUND: usize = 5;
    let idle: Vec<Option<u64>> = watch.iter().map(Watch::rss_kib).collect();
    // Warm up (connections, allocator, page cache), and tell slow paths from fast ones.
    let mut rounds = Vec::new();
    for (client, tool) in clients.iter().zip(tools) {
        let started = Instant::now();
        let mut n = 0u32;
        while n < 200 && (n < 20 || started.elapsed() < SLOW * n) {
            let r = client.call(call(tool)).await.unwrap();
            assert!(r.as_error().is_none(), "the call failed: {r:?}");
            n += 1;
        }
        rounds.push(if started.elapsed() > SLOW * n {
            SLOW_ROUND
        } else {
            ROUND
        });
    }
    let mut samples: Vec<Vec<Duration>> = clients.iter().map(|_| Vec::with_capacity(calls)).collect();
    for _ in 0..calls.div_ceil(ROUND) {
        for (((client, samples), round), tool) in clients.iter().zip(samples.iter_mut()).zip(&rounds).zip(tools) {
            for _ in 0..*round {
                let t = Instant::now();
                client.call(call(tool)).await.unwrap();
                samples.push(t.elapsed());
            }
        }
    }
    let mut figures = Vec::new();
    for (i, (client, mut samples)) in clients.iter().zip(samples).enumerate() {
        samples.sort();
        let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
        let done = Arc::new(AtomicU64::new(0));
        let until = Instant::now() + Duration::from_secs(seconds);
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let client = client.clone();
                let done = done.clone();
                let tool = tools[i].to_owned();
                tokio::spawn(async move {
                    while Instant::now() < until {
                        client.call(call(&tool)).await.unwrap();
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let started = Instant::now();
        let ticks = watch[i].ticks();
        for w in workers {
            w.await.unwrap();
        }
        let calls = done.load(Ordering::Relaxed);
        // `/proc` counts in USER_HZ, 100 on Linux whatever the kernel's own tick.
        let hz = 100u64;
        let process = ticks.zip(watch[i].ticks()).map(|(before, after)| ProcessFigures {
            cpu_per_call: Duration::from_secs_f64((after - before) as f64 / hz as f64 / calls.max(1) as f64),
            idle_rss_kib: idle[i].unwrap_or(0),
            loaded_rss_kib: watch[i].rss_kib().unwrap_or(0),
        });
        figures.push(Figures {
            p50: pick(0.50),
            p99: pick(0.99),
            per_second: calls as f64 / started.elapsed().as_secs_f64(),
            process,
        });
    }
    figures
}

pub fn row(label: &str, f: Figures) {
    let process = f.process.map_or(String::new(), |p| {
        format!(
            "   CPU {:>6.1} µs/call   RSS {:.1} MiB idle, {:.1} MiB loaded",
            p.cpu_per_call.as_secs_f64() * 1e6,
            p.idle_rss_kib as f64 / 1024.0,
            p.loaded_rss_kib as f64 / 1024.0
        )
    });
    println!(
        "{label:<38} p50 {:>8.1} µs   p99 {:>8.1} µs   {:>9.0} calls/s{process}",
        f.p50.as_secs_f64() * 1e6,
        f.p99.as_secs_f64() * 1e6,
        f.per_second
    );
}

pub fn added(direct: Figures, through: Figures) {
    println!(
        "{:<38} p50 {:>+8.1} µs   p99 {:>+8.1} µs   throughput ×{:.2}",
        "  added",
        (through.p50.as_secs_f64() - direct.p50.as_secs_f64()) * 1e6,
        (through.p99.as_secs_f64() - direct.p99.as_secs_f64()) * 1e6,
        through.per_second / direct.per_second
    );
}

/// A `portcullis.toml` with the fixture as its only upstream (`upstream` is the transport's
/// lines) and a policy that permits every call: the benches measure forwarding with every
/// guard and the audit log on, not a profile's holds.
pub fn write_config(dir: &Path, listen_port: u16, upstream: &str) -> std::path::PathBuf {
    let path = dir.join("portcullis.toml");
    // The fixture's tools carry no annotations, so the default profile would hold them as
    // destructive.
    let permit_all = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/permit-all.cedar");
    let text = format!(
        "[gateway]\nlisten = \"127.0.0.1:{listen_port}\"\ndata_dir = \"state\"\nmax_concurrent_calls = 1024\n\n[policy]\nprofile = \"none\"\nfiles = [{:?}]\n\n[upstreams.fixture]\nprefix = \"\"\n{upstream}\n",
        permit_all.to_string_lossy()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The floor on stdio: the cheapest possible extra process between client and server, a
/// blocking line relay (`BENCH --relay-stdio SERVER ARGS…`). Whatever a gateway adds beyond
/// this is its own work; up to this is the cost of one more process on this machine.
pub fn relay_stdio(server: &str, args: &[String]) {
    use std::io::{BufRead, BufReader, Write};
    let mut child = std::process::Command::new(server)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_child = child.stdin.take().unwrap();
    let from_child = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        let mut out = std::io::stdout().lock();
        for line in from_child.lines() {
            let line = line.unwrap();
            out.write_all(line.as_bytes()).unwrap();
            out.write_all(b"\n").unwrap();
            out.flush().unwrap();
        }
    });
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if to_child
            .write_all(line.as_bytes())
            .and_then(|()| to_child.write_all(b"\n"))
            .and_then(|()| to_child.flush())
            .is_err()
        {
            break;
        }
    }
    drop(to_child);
    let _ = child.wait();
}

/// The floor on HTTP: a blocking TCP relay (`BENCH --relay-tcp LISTEN_PORT UPSTREAM_PORT`), a
/// thread pair per connection copying bytes both ways, on 127.0.0.1.
pub fn relay_tcp(listen: u16, upstream: u16) {
    let listener = std::net::TcpListener::bind(("127.0.0.1", listen)).unwrap();
    for conn in listener.incoming() {
        let Ok(client) = conn else { continue };
        let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(mut client_r), Ok(mut server_r)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        let (mut client_w, mut server_w) = (client, server);
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut client_r, &mut server_w);
            let _ = server_w.shutdown(std::net::Shutdown::Write);
        });
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut server_r, &mut client_w);
            let _ = client_w.shutdown(std::net::Shutdown::Write);
        });
    }
}
