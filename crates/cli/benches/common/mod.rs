//! What the benches share: where the binaries are, how to reach a server, what a process uses.

#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark harness; each bench uses its own part"
)]

pub mod measure;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portcullis_core::Params;
use portcullis_gateway::config::{EraChoice, Transport};
use portcullis_gateway::upstream::client::{Call, ConnectOptions};
use serde_json::{Map, json};

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn fixture() -> PathBuf {
    if let Some(p) = std::env::var_os("PORTCULLIS_FIXTURE") {
        return PathBuf::from(p);
    }
    // benches run from target/<profile>/deps/; the binaries sit one level up.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let p = dir.join("portcullis-fixture");
    assert!(
        p.exists(),
        "build the fixture first: cargo build --release -p portcullis-fixture (looked at {})",
        p.display()
    );
    p
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn options(era: EraChoice) -> ConnectOptions {
    ConnectOptions {
        era,
        legacy_capabilities: Map::new(),
        limits: portcullis_core::Limits::default(),
        probe_timeout: Duration::from_secs(10),
        handshake_timeout: Duration::from_secs(30),
        label: "bench".into(),
    }
}

pub fn stdio(command: &Path, args: &[&str]) -> Transport {
    Transport::Stdio {
        command: command.to_string_lossy().into_owned(),
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        env: BTreeMap::new(),
        inherit_env: vec!["PATH".into(), "HOME".into()],
        cwd: None,
        // The direct path, the limit the gateway is measured against: no helper here.
        sandbox: None,
    }
}

pub fn http(port: u16) -> Transport {
    http_at(&format!("http://127.0.0.1:{port}/mcp"), BTreeMap::new())
}

/// Streamable HTTP at `url`, with `headers` on every request.
pub fn http_at(url: &str, headers: BTreeMap<String, String>) -> Transport {
    Transport::Http {
        url: url.parse().unwrap(),
        headers,
    }
}

pub async fn wait_port(port: u16) {
    wait_port_within(port, Duration::from_secs(30)).await;
}

/// Waits until something listens on `port`, for at most `wait` (a gateway under valgrind
/// starts slowly).
pub async fn wait_port_within(port: u16, wait: Duration) {
    let deadline = Instant::now() + wait;
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn spawn(cmd: &Path, args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

pub fn call(tool: &str) -> Call {
    let mut p = Params::new();
    let _ = p.insert("name", tool);
    let _ = p.insert("arguments", &json!({}));
    Call::new("tools/call", Some(p), Duration::from_secs(30))
}

/// utime + stime of `pid`, in clock ticks (`/proc/PID/stat`, fields 14 and 15).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The parent of `pid` (`/proc/PID/stat`, field 4), if it still runs.
pub fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rfind(')')
        .and_then(|close| stat.get(close + 2..))
        .and_then(|rest| rest.split(' ').nth(1))
        .and_then(|p| p.parse().ok())
}

/// The process under this one whose command line starts with `program` and holds `word`, the
/// one with the most threads (a sandbox helper stage that only waits has one).
pub fn child_pid(program: &Path, word: &str) -> u32 {
    let me = std::process::id();
    let below_me = |mut pid: u32| {
        while pid > 1 {
            pid = parent_pid(pid).unwrap_or(0);
            if pid == me {
                return true;
            }
        }
        false
    };
    let mut best: Option<(usize, u32)> = None;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let started = cmdline.starts_with(&format!("{} ", program.to_string_lossy()));
        if started && cmdline.contains(word) && below_me(pid) {
            let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count);
            if best.is_none_or(|(t, _)| threads > t) {
                best = Some((threads, pid));
            }
        }
    }
    best.unwrap_or_else(|| panic!("no process {} {word} under this one", program.display()))
        .1
}
