//! Added latency and throughput of the gateway, measured against the same upstream reached
//! directly. Not a test: run with `cargo bench -p portcullis --bench gateway`.
//!
//! For each transport (stdio, Streamable HTTP) it starts the Rust fixture server, then
//! measures `tools/call` of one tool (a) straight at the fixture and (b) through `portcullis`
//! with the fixture as its only upstream, with the same client code the gateway itself uses
//! toward upstreams. Latency is sequential calls (p50, p99 of each call's wall time); throughput
//! is calls per second from several concurrent callers. Both runs of a pair happen back to
//! back in one process, so compare the ratio, not the absolute numbers, on a noisy machine.
//!
//! Environment: `PORTCULLIS_FIXTURE` (the fixture binary; default next to this bench in the
//! target dir), `BENCH_TOOL` (default `test_simple_text`), `BENCH_CALLS` (latency samples,
//! default 5000), `BENCH_SECONDS` (throughput window, default 3), `BENCH_CONCURRENCY`
//! (default 16), `BENCH_BASELINE` (another `portcullis` binary, say a build of the previous
//! commit: measured as one more path in the same interleaved run, for an A/B comparison).
//!
//! `BENCH_INSTRUCTIONS=stdio` (or `http`) counts instead the instructions the gateway executes
//! per call, under callgrind: repeatable for the same binary whatever else the machine is
//! doing, so a change can be judged without the noise of a shared machine. It runs only the
//! through-gateway path: 200 warm-up calls, then the counters are zeroed, `BENCH_CALLS` calls
//! made, and the counters dumped (`callgrind_control`); the dump is kept for
//! `callgrind_annotate` and its path printed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark harness"
)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{
    call, child_pid, cpu_ticks, env_or, fixture, free_port, http, options, rss_kib, spawn, stdio, wait_port,
    wait_port_within,
};
use portcullis_gateway::config::EraChoice;
use portcullis_gateway::upstream::client::McpClient;

#[derive(Clone, Copy)]
struct Figures {
    p50: Duration,
    p99: Duration,
    per_second: f64,
    /// The gateway's (or relay's) CPU time per call in the throughput phase, and its resident
    /// memory before the first call and after the last.
    process: Option<ProcessFigures>,
}

#[derive(Clone, Copy)]
struct ProcessFigures {
    cpu_per_call: Duration,
    idle_rss_kib: u64,
    loaded_rss_kib: u64,
}

/// Measures several paths to the same server. Latency samples are taken in interleaved rounds
/// (a batch on each path in turn), so a change in the machine's load hits every path alike;
/// throughput is measured per path afterwards.
async fn measure(clients: &[Arc<McpClient>], pids: &[Option<u32>], tool: &str) -> Vec<Figures> {
    let calls: usize = env_or("BENCH_CALLS", 5000);
    let seconds: u64 = env_or("BENCH_SECONDS", 3);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 16);
    const ROUND: usize = 100;
    let idle: Vec<Option<u64>> = pids.iter().map(|p| p.map(rss_kib)).collect();
    // Warm up (connections, allocator, page cache).
    for client in clients {
        for _ in 0..200 {
            let r = client.call(call(tool)).await.unwrap();
            assert!(r.as_error().is_none(), "the call failed: {r:?}");
        }
    }
    let mut samples: Vec<Vec<Duration>> = clients.iter().map(|_| Vec::with_capacity(calls)).collect();
    for _ in 0..calls.div_ceil(ROUND) {
        for (client, samples) in clients.iter().zip(samples.iter_mut()) {
            for _ in 0..ROUND {
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
                let tool = tool.to_owned();
                tokio::spawn(async move {
                    while Instant::now() < until {
                        client.call(call(&tool)).await.unwrap();
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let started = Instant::now();
        let ticks = pids[i].map(cpu_ticks);
        for w in workers {
            w.await.unwrap();
        }
        let calls = done.load(Ordering::Relaxed);
        // `/proc` counts in USER_HZ, 100 on Linux whatever the kernel's own tick.
        let hz = 100u64;
        let process = pids[i].zip(ticks).map(|(pid, before)| ProcessFigures {
            cpu_per_call: Duration::from_secs_f64((cpu_ticks(pid) - before) as f64 / hz as f64 / calls.max(1) as f64),
            idle_rss_kib: idle[i].unwrap_or(0),
            loaded_rss_kib: rss_kib(pid),
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

fn row(label: &str, f: Figures) {
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

fn added(direct: Figures, through: Figures) {
    println!(
        "{:<38} p50 {:>+8.1} µs   p99 {:>+8.1} µs   throughput ×{:.2}",
        "  added",
        (through.p50.as_secs_f64() - direct.p50.as_secs_f64()) * 1e6,
        (through.p99.as_secs_f64() - direct.p99.as_secs_f64()) * 1e6,
        through.per_second / direct.per_second
    );
}

fn write_config(dir: &Path, listen_port: u16, upstream: &str) -> PathBuf {
    let path = dir.join("portcullis.toml");
    // The fixture's tools carry no annotations, so the default profile would hold them as
    // destructive; the bench measures forwarding, with a policy that permits every call.
    let permit_all = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/permit-all.cedar");
    let text = format!(
        "[gateway]\nlisten = \"127.0.0.1:{listen_port}\"\ndata_dir = \"state\"\nmax_concurrent_calls = 1024\n\n[policy]\nprofile = \"none\"\nfiles = [{:?}]\n\n[upstreams.fixture]\nprefix = \"\"\n{upstream}\n",
        permit_all.to_string_lossy()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The floor: the cheapest possible extra process between client and server, a blocking
/// line relay (`bench --relay-stdio SERVER ARGS…`). Whatever the gateway adds beyond this is
/// its own work; up to this is the cost of one more process on the path on this machine.
fn relay_stdio(server: &str, args: &[String]) {
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, flag, server, rest @ ..] = args.as_slice()
        && flag == "--relay-stdio"
    {
        return relay_stdio(server, rest);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    match std::env::var("BENCH_INSTRUCTIONS") {
        Ok(transport) => runtime.block_on(instructions(&transport)),
        Err(_) => runtime.block_on(bench()),
    }
}

/// Instructions per call of the gateway, counted by callgrind (`BENCH_INSTRUCTIONS`).
async fn instructions(transport: &str) {
    portcullis_gateway::install_crypto();
    let tool: String = env_or("BENCH_TOOL", "test_simple_text".to_owned());
    let calls: u64 = env_or("BENCH_CALLS", 2000);
    let fixture = fixture();
    let portcullis = PathBuf::from(env!("CARGO_BIN_EXE_portcullis"));
    let dir = tempfile::tempdir().unwrap();
    let out = std::env::temp_dir().join(format!("portcullis-callgrind-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    let out_file = out.join("callgrind.out");
    let valgrind_args = [
        "--tool=callgrind".to_owned(),
        format!("--callgrind-out-file={}", out_file.display()),
        portcullis.to_string_lossy().into_owned(),
    ];
    let valgrind = Path::new("valgrind");
    let mut _server = None;
    let mut _gateway = None;
    let client = match transport {
        "stdio" => {
            let upstream = format!("command = {:?}\nargs = [\"stdio\"]", fixture.to_string_lossy());
            let cfg = write_config(dir.path(), free_port(), &upstream);
            let cfg = cfg.to_string_lossy();
            let mut args: Vec<&str> = valgrind_args.iter().map(String::as_str).collect();
            args.extend(["stdio", "--config", &cfg]);
            // The sandbox helper is the gateway's own binary, which under valgrind is not
            // `/proc/self/exe`.
            let mut transport = stdio(valgrind, &args);
            if let portcullis_gateway::config::Transport::Stdio { env, .. } = &mut transport {
                env.insert(
                    "PORTCULLIS_SANDBOX_HELPER".into(),
                    portcullis.to_string_lossy().into_owned(),
                );
            }
            McpClient::connect(&transport, &options(EraChoice::Modern))
                .await
                .unwrap()
        }
        "http" => {
            let fport = free_port();
            _server = Some(spawn(&fixture, &["http", "--listen", &format!("127.0.0.1:{fport}")]));
            wait_port(fport).await;
            let gport = free_port();
            let cfg = write_config(dir.path(), gport, &format!("url = \"http://127.0.0.1:{fport}/mcp\""));
            let cfg = cfg.to_string_lossy();
            let mut args: Vec<&str> = valgrind_args.iter().map(String::as_str).collect();
            args.extend(["serve", "--config", &cfg]);
            _gateway = Some(spawn(valgrind, &args));
            wait_port_within(gport, Duration::from_secs(120)).await;
            McpClient::connect(&http(gport), &options(EraChoice::Modern))
                .await
                .unwrap()
        }
        other => panic!("BENCH_INSTRUCTIONS is `stdio` or `http`, not `{other}`"),
    };
    // Under valgrind the upstream may take longer to list its tools than a call waits for.
    let deadline = Instant::now() + Duration::from_secs(120);
    while let Some(e) = client.call(call(&tool)).await.unwrap().as_error() {
        assert!(Instant::now() < deadline, "the call failed: {e:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for _ in 0..200 {
        let r = client.call(call(&tool)).await.unwrap();
        assert!(r.as_error().is_none(), "the call failed: {r:?}");
    }
    // Let the audit writer catch up with the warm-up before the counters start.
    tokio::time::sleep(Duration::from_secs(2)).await;
    callgrind_control("-z");
    for _ in 0..calls {
        client.call(call(&tool)).await.unwrap();
    }
    // ...and index this run's records, so their cost is counted too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    callgrind_control("-d");
    let dump = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "1"))
        .expect("callgrind wrote no dump");
    let text = std::fs::read_to_string(&dump).unwrap();
    let total: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("summary: ").or_else(|| l.strip_prefix("totals: ")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("no totals in the dump");
    println!(
        "{transport}: {calls} calls, {total} instructions in the gateway, {} per call\ndump: {}",
        total / calls.max(1),
        dump.display()
    );
    drop(client);
}

/// Runs `callgrind_control FLAG` on every callgrind process of this user (there is one).
fn callgrind_control(flag: &str) {
    let status = std::process::Command::new("callgrind_control")
        .arg(flag)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "callgrind_control {flag} failed");
}

async fn bench() {
    portcullis_gateway::install_crypto();
    let tool: String = env_or("BENCH_TOOL", "test_simple_text".to_owned());
    let fixture = fixture();
    let portcullis = PathBuf::from(env!("CARGO_BIN_EXE_portcullis"));
    let dir = tempfile::tempdir().unwrap();
    println!(
        "tool `{tool}`, fixture {}, portcullis {}",
        fixture.display(),
        portcullis.display()
    );

    // stdio: the client launches the server, or launches portcullis which launches it, or a
    // bare relay which launches it.
    let direct = McpClient::connect(&stdio(&fixture, &["stdio"]), &options(EraChoice::Modern))
        .await
        .unwrap();
    let upstream = format!("command = {:?}\nargs = [\"stdio\"]", fixture.to_string_lossy());
    let cfg = write_config(dir.path(), free_port(), &upstream);
    let through = McpClient::connect(
        &stdio(&portcullis, &["stdio", "--config", &cfg.to_string_lossy()]),
        &options(EraChoice::Modern),
    )
    .await
    .unwrap();
    let me = std::env::current_exe().unwrap();
    let relay = McpClient::connect(
        &stdio(&me, &["--relay-stdio", &fixture.to_string_lossy(), "stdio"]),
        &options(EraChoice::Modern),
    )
    .await
    .unwrap();
    let mut pids = vec![
        None,
        Some(child_pid(&portcullis, " stdio ")),
        Some(child_pid(&me, "--relay-stdio")),
    ];
    let mut clients = vec![Arc::new(direct), Arc::new(through), Arc::new(relay)];
    let baseline = std::env::var_os("BENCH_BASELINE").map(PathBuf::from);
    if let Some(base) = &baseline {
        println!("baseline {}", base.display());
        let bdir = tempfile::tempdir().unwrap();
        let cfg = write_config(bdir.path(), free_port(), &upstream);
        clients.push(Arc::new(
            McpClient::connect(
                &stdio(base, &["stdio", "--config", &cfg.to_string_lossy()]),
                &options(EraChoice::Modern),
            )
            .await
            .unwrap(),
        ));
        pids.push(Some(child_pid(base, " stdio ")));
        std::mem::forget(bdir);
    }
    let stdio_figures = measure(&clients, &pids, &tool).await;
    drop(clients);
    let (direct_stdio, through_stdio, relay_stdio) = (stdio_figures[0], stdio_figures[1], stdio_figures[2]);

    // Streamable HTTP: the fixture listens; the gateway listens and reaches it over HTTP.
    let fport = free_port();
    let _fixture = spawn(&fixture, &["http", "--listen", &format!("127.0.0.1:{fport}")]);
    wait_port(fport).await;
    let direct = McpClient::connect(&http(fport), &options(EraChoice::Modern))
        .await
        .unwrap();
    let gport = free_port();
    let cfg = write_config(dir.path(), gport, &format!("url = \"http://127.0.0.1:{fport}/mcp\""));
    let _gateway = spawn(&portcullis, &["serve", "--config", &cfg.to_string_lossy()]);
    wait_port(gport).await;
    let through = McpClient::connect(&http(gport), &options(EraChoice::Modern))
        .await
        .unwrap();
    let mut clients = vec![Arc::new(direct), Arc::new(through)];
    let mut pids = vec![None, _gateway.id()];
    let mut _base_gateway = None;
    if let Some(base) = &baseline {
        let bdir = tempfile::tempdir().unwrap();
        let bport = free_port();
        let cfg = write_config(bdir.path(), bport, &format!("url = \"http://127.0.0.1:{fport}/mcp\""));
        let child = spawn(base, &["serve", "--config", &cfg.to_string_lossy()]);
        wait_port(bport).await;
        clients.push(Arc::new(
            McpClient::connect(&http(bport), &options(EraChoice::Modern))
                .await
                .unwrap(),
        ));
        pids.push(child.id());
        _base_gateway = Some((child, bdir));
    }
    let http_figures = measure(&clients, &pids, &tool).await;
    let (direct_http, through_http) = (http_figures[0], http_figures[1]);

    println!();
    row("stdio, direct", direct_stdio);
    row("stdio, through portcullis", through_stdio);
    added(direct_stdio, through_stdio);
    row("stdio, through a bare line relay", relay_stdio);
    added(direct_stdio, relay_stdio);
    row("http (2026-07-28), direct", direct_http);
    row("http (2026-07-28), through portcullis", through_http);
    added(direct_http, through_http);
    if let (Some(base_stdio), Some(base_http)) = (stdio_figures.get(3), http_figures.get(2)) {
        println!();
        row("stdio, through the baseline", *base_stdio);
        added(direct_stdio, *base_stdio);
        row("http (2026-07-28), through the baseline", *base_http);
        added(direct_http, *base_http);
    }
}
