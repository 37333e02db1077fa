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
use std::time::{Duration, Instant};

use common::measure::{Watch, added, measure, relay_stdio, row, write_config};
use common::{call, child_pid, env_or, fixture, free_port, http, options, spawn, stdio, wait_port, wait_port_within};
use portcullis_gateway::config::EraChoice;
use portcullis_gateway::upstream::client::McpClient;

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
        Watch::Nothing,
        Watch::Pid(child_pid(&portcullis, " stdio ")),
        Watch::Pid(child_pid(&me, "--relay-stdio")),
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
        pids.push(Watch::Pid(child_pid(base, " stdio ")));
        std::mem::forget(bdir);
    }
    let stdio_figures = measure(&clients, &pids, &vec![tool.as_str(); clients.len()]).await;
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
    let mut pids = vec![Watch::Nothing, Watch::Pid(_gateway.id().unwrap())];
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
        pids.push(Watch::Pid(child.id().unwrap()));
        _base_gateway = Some((child, bdir));
    }
    let http_figures = measure(&clients, &pids, &vec![tool.as_str(); clients.len()]).await;
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
