//! Portcullis beside the other MCP gateways, in one interleaved run on the same upstream. Not a
//! test: `scripts/bench-peers` starts the peers and runs this with
//! `cargo bench -p portcullis --bench peers`.
//!
//! Every path calls `test_simple_text` on the Rust fixture server with the gateway's own MCP
//! client, in the 2025-11-25 era (the one every peer speaks):
//!
//! - stdio: the client launches the fixture (direct), a bare line relay that launches it (the
//!   floor: one more process), or `portcullis stdio` that launches it. No peer serves MCP to a
//!   client over stdio.
//! - Streamable HTTP: straight at the fixture (direct), through a bare TCP relay (the floor),
//!   through `portcullis serve` with the fixture as an HTTP upstream and as a stdio upstream,
//!   and through every peer in `BENCH_PEERS_FILE`.
//!
//! Environment: `BENCH_PEERS_FILE`, a JSON list of `{"name", "url", "headers": {…}, "pid"}`
//! (the peer's URL for MCP, the headers it needs, the process whose tree's CPU and memory are
//! its own); `BENCH_UPSTREAM_PORT`, the port of a fixture already serving HTTP (the peers were
//! pointed at it; without it the bench starts one); `BENCH_CSV`, where to write the figures
//! (one row per path); `BENCH_CALLS`, `BENCH_SECONDS`, `BENCH_CONCURRENCY` as in `measure`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark harness"
)]

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use common::measure::{Figures, Watch, added, measure, relay_stdio, relay_tcp, row, write_config};
use common::{child_pid, env_or, fixture, free_port, http_at, options, spawn, stdio, wait_port};
use portcullis_gateway::config::{EraChoice, Transport};
use portcullis_gateway::upstream::client::McpClient;
use serde::Deserialize;

#[derive(Deserialize)]
struct Peer {
    name: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    pid: u32,
    /// The fixture's tool under the name this peer gives it.
    tool: String,
}

struct Route {
    section: &'static str,
    name: String,
    client: Arc<McpClient>,
    watch: Watch,
    tool: String,
}

async fn connect(transport: &Transport) -> Arc<McpClient> {
    Arc::new(
        McpClient::connect(transport, &options(EraChoice::Legacy))
            .await
            .unwrap(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.as_slice() {
        [_, flag, server, rest @ ..] if flag == "--relay-stdio" => return relay_stdio(server, rest),
        [_, flag, listen, upstream] if flag == "--relay-tcp" => {
            return relay_tcp(listen.parse().unwrap(), upstream.parse().unwrap());
        }
        _ => {}
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench());
}

async fn bench() {
    portcullis_gateway::install_crypto();
    let tool: String = env_or("BENCH_TOOL", "test_simple_text".to_owned());
    let fixture = fixture();
    let fixture_s = fixture.to_string_lossy().into_owned();
    let portcullis = PathBuf::from(env!("CARGO_BIN_EXE_portcullis"));
    let me = std::env::current_exe().unwrap();
    let peers: Vec<Peer> = std::env::var_os("BENCH_PEERS_FILE")
        .map(|f| serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap())
        .unwrap_or_default();
    let dir = tempfile::tempdir().unwrap();
    let stdio_upstream = format!("command = {fixture_s:?}\nargs = [\"stdio\"]");
    let mut keep = Vec::new();
    let mut paths = Vec::new();

    // stdio
    paths.push(Route {
        section: "stdio",
        name: "direct".into(),
        client: connect(&stdio(&fixture, &["stdio"])).await,
        watch: Watch::Nothing,
        tool: tool.clone(),
    });
    paths.push(Route {
        section: "stdio",
        name: "bare line relay".into(),
        client: connect(&stdio(&me, &["--relay-stdio", &fixture_s, "stdio"])).await,
        watch: Watch::Pid(child_pid(&me, "--relay-stdio")),
        tool: tool.clone(),
    });
    let sdir = dir.path().join("stdio");
    std::fs::create_dir_all(&sdir).unwrap();
    let cfg = write_config(&sdir, free_port(), &stdio_upstream);
    paths.push(Route {
        section: "stdio",
        name: "portcullis".into(),
        client: connect(&stdio(&portcullis, &["stdio", "--config", &cfg.to_string_lossy()])).await,
        watch: Watch::Pid(child_pid(&portcullis, " stdio ")),
        tool: tool.clone(),
    });

    // Streamable HTTP
    let fport = match std::env::var("BENCH_UPSTREAM_PORT") {
        Ok(p) => p.parse().unwrap(),
        Err(_) => {
            let p = free_port();
            keep.push(spawn(&fixture, &["http", "--listen", &format!("127.0.0.1:{p}")]));
            p
        }
    };
    wait_port(fport).await;
    let url = |port: u16| format!("http://127.0.0.1:{port}/mcp");
    paths.push(Route {
        section: "http",
        name: "direct".into(),
        client: connect(&http_at(&url(fport), BTreeMap::new())).await,
        watch: Watch::Nothing,
        tool: tool.clone(),
    });
    let rport = free_port();
    let relay = spawn(&me, &["--relay-tcp", &rport.to_string(), &fport.to_string()]);
    wait_port(rport).await;
    paths.push(Route {
        section: "http",
        name: "bare TCP relay".into(),
        client: connect(&http_at(&url(rport), BTreeMap::new())).await,
        watch: Watch::Pid(relay.id().unwrap()),
        tool: tool.clone(),
    });
    keep.push(relay);
    for (name, upstream) in [
        ("portcullis (HTTP upstream)", format!("url = {:?}", url(fport))),
        ("portcullis (stdio upstream)", stdio_upstream.clone()),
    ] {
        let gdir = dir.path().join(name.replace(['(', ')', ' '], "-"));
        std::fs::create_dir_all(&gdir).unwrap();
        let gport = free_port();
        let cfg = write_config(&gdir, gport, &upstream);
        let gateway = spawn(&portcullis, &["serve", "--config", &cfg.to_string_lossy()]);
        wait_port(gport).await;
        paths.push(Route {
            section: "http",
            name: name.into(),
            client: connect(&http_at(&url(gport), BTreeMap::new())).await,
            watch: Watch::Tree {
                root: gateway.id().unwrap(),
                except: fixture_s.clone(),
            },
            tool: tool.clone(),
        });
        keep.push(gateway);
    }
    for peer in peers {
        paths.push(Route {
            section: "http",
            client: connect(&http_at(&peer.url, peer.headers)).await,
            watch: Watch::Tree {
                root: peer.pid,
                except: fixture_s.clone(),
            },
            name: peer.name,
            tool: peer.tool,
        });
    }

    let mut results: Vec<(&Route, Figures)> = Vec::new();
    for section in ["stdio", "http"] {
        let these: Vec<&Route> = paths.iter().filter(|p| p.section == section).collect();
        let clients: Vec<_> = these.iter().map(|p| p.client.clone()).collect();
        let watch: Vec<_> = these.iter().map(|p| p.watch.clone()).collect();
        let tools: Vec<&str> = these.iter().map(|p| p.tool.as_str()).collect();
        let figures = measure(&clients, &watch, &tools).await;
        results.extend(these.into_iter().zip(figures));
    }

    let mut csv = std::env::var_os("BENCH_CSV").map(|f| std::fs::File::create(f).unwrap());
    if let Some(csv) = &mut csv {
        writeln!(
            csv,
            "transport,path,p50_us,p99_us,calls_per_s,added_p50_us,added_p99_us,throughput_vs_direct,cpu_us_per_call,rss_idle_mib,rss_loaded_mib"
        )
        .unwrap();
    }
    println!();
    for (path, f) in &results {
        let direct = results
            .iter()
            .find(|(p, _)| p.section == path.section && p.name == "direct")
            .map(|(_, f)| *f)
            .unwrap();
        row(&format!("{}, {}", path.section, path.name), *f);
        if path.name != "direct" {
            added(direct, *f);
        }
        if let Some(csv) = &mut csv {
            let us = |d: std::time::Duration| d.as_secs_f64() * 1e6;
            let (cpu, idle, loaded) = f.process.map_or((String::new(), String::new(), String::new()), |p| {
                (
                    format!("{:.1}", us(p.cpu_per_call)),
                    format!("{:.1}", p.idle_rss_kib as f64 / 1024.0),
                    format!("{:.1}", p.loaded_rss_kib as f64 / 1024.0),
                )
            });
            writeln!(
                csv,
                "{},{},{:.1},{:.1},{:.0},{:.1},{:.1},{:.3},{cpu},{idle},{loaded}",
                path.section,
                path.name.replace(',', " "),
                us(f.p50),
                us(f.p99),
                f.per_second,
                us(f.p50) - us(direct.p50),
                us(f.p99) - us(direct.p99),
                f.per_second / direct.per_second,
            )
            .unwrap();
        }
    }
    drop(keep);
}
