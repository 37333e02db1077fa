//! Keys to the kingdom: a compromised stdio upstream (`tests/peers/hostile_server.py`) tries
//! everything a hostile server would against a real `portcullis serve` — read its sibling's
//! secret and the gateway's environment, the state database, a key file, `~/.ssh`; write the
//! database; signal and trace; connect out; fork without end — and every attempt fails. The
//! same lab runs as root and as an unprivileged user (`setpriv`), since the sandbox differs
//! (a pids cgroup as root, `RLIMIT_NPROC` and a plain user namespace otherwise).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers"
)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const SIBLING_SECRET: &str = "sib-7Qk2Zr9Wm4Pd1Lx8Vb3N";
const GATEWAY_MARKER: &str = "gw-marker-5Hc8Tq2Ke7Rm";
const MASTER_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn python() -> &'static str {
    // The system's interpreter: an unprivileged user cannot reach a version manager in /root.
    "/usr/bin/python3"
}

fn hostile() -> PathBuf {
    repo_root()
        .join("tests/peers/hostile_server.py")
        .canonicalize()
        .unwrap()
}

/// A running gateway with a hostile upstream and its sibling, as `uid` (or whoever runs the
/// tests).
struct Lab {
    root: tempfile::TempDir,
    url: String,
    port: u16,
    pid: u32,
    _child: tokio::process::Child,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Lab {
    fn path(&self, p: &str) -> PathBuf {
        self.root.path().join(p)
    }

    async fn attempt(&self, upstream: &str, args: Value) -> String {
        let r = Modern::new(&self.url).call(&format!("{upstream}__attempt"), args).await;
        r["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_else(|| panic!("no answer: {r}"))
            .to_owned()
    }
}

/// Runs `portcullis` as `uid` when given.
fn portcullis_as(uid: Option<u32>) -> Command {
    match uid {
        Some(u) => {
            let mut c = Command::new("setpriv");
            c.args([
                format!("--reuid={u}"),
                format!("--regid={u}"),
                "--clear-groups".into(),
                "--".into(),
            ])
            .arg(portcullis());
            c
        }
        None => Command::new(portcullis()),
    }
}

async fn cli_as(uid: Option<u32>, home: &Path, args: &[&str], stdin: &str) -> (i32, String, String) {
    use tokio::io::AsyncWriteExt as _;
    let mut child = portcullis_as(uid)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home)
        .env("PORTCULLIS_MASTER_KEY", MASTER_KEY)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).await.unwrap();
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn lab(uid: Option<u32>) -> Lab {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(home.join(".ssh/id_test"), "-----BEGIN PRIVATE KEY----- lab\n").unwrap();
    std::fs::write(root.path().join("master.key"), MASTER_KEY).unwrap();
    let port = free_port();
    let config = root.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"state\"\n\n[admin]\nenabled = false\n\n\
             [upstreams.hostile]\ncommand = {py}\nargs = [{h}]\n\n[upstreams.hostile.sandbox]\nnetwork = \"none\"\nprocesses = 32\n\n\
             [upstreams.sibling]\ncommand = {py}\nargs = [{h}, \"--name\", \"sibling\"]\nenv = {{ SIBLING_TOKEN = \"vault:sibling_token\" }}\n",
            py = toml_str(python()),
            h = toml_str(&hostile().to_string_lossy()),
        ),
    )
    .unwrap();
    if let Some(u) = uid {
        let st = std::process::Command::new("chown")
            .args(["-R", &format!("{u}:{u}")])
            .arg(root.path())
            .status()
            .unwrap();
        assert!(st.success());
    }
    let c = config.to_str().unwrap();
    let (code, out, err) = cli_as(
        uid,
        &home,
        &["vault", "set", "sibling_token", "--config", c],
        &format!("{SIBLING_SECRET}\n"),
    )
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let mut child = portcullis_as(uid)
        .args(["serve", "--config", c])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &home)
        .env("PORTCULLIS_MASTER_KEY", MASTER_KEY)
        .env("GATEWAY_MARKER", GATEWAY_MARKER)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let serving = line.contains("serving MCP at");
            log.lock().unwrap().push(line);
            if serving {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(ready, Ok(true)),
        "serve did not start: {:?}",
        log.lock().unwrap()
    );
    let kept = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            kept.lock().unwrap().push(line);
        }
    });
    // `setpriv` execs the gateway: one process, one pid.
    let pid = child.id().unwrap();
    let lab = Lab {
        root,
        url: format!("http://127.0.0.1:{port}/mcp"),
        port,
        pid,
        _child: child,
        log,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let tools = Modern::new(&lab.url).list_tools().await;
        let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
        if names.contains(&"hostile__attempt") && names.contains(&"sibling__attempt") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "upstreams never listed: {names:?}\n{}",
            lab.log.lock().unwrap().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    lab
}

/// The host pid of the process whose command line holds `needle` (outside any sandbox view).
fn host_pid_of(needle: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.filter_map(Result::ok).find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        (cmd.contains(needle) && cmd.contains("python")).then_some(pid)
    })
}

fn failed(answer: &str) -> bool {
    answer.starts_with("error:") || answer.starts_with("stopped at")
}

async fn nothing_escapes(lab: &Lab, uid: Option<u32>) {
    // Its own view of processes: only its sandbox's, never the gateway or its sibling.
    let pids = lab.attempt("hostile", json!({"action": "pids"})).await;
    let seen: Vec<u32> = serde_json::from_str(pids.strip_prefix("ok:").unwrap()).unwrap();
    assert!(seen.len() <= 4, "it sees {seen:?}");
    let sibling = host_pid_of("--name sibling").expect("the sibling runs");
    for pid in [lab.pid, sibling] {
        for action in ["environ", "mem"] {
            let a = lab.attempt("hostile", json!({"action": action, "pid": pid})).await;
            assert!(failed(&a), "{action} of {pid}: {a}");
        }
        let a = lab
            .attempt("hostile", json!({"action": "kill", "pid": pid, "signal": 9}))
            .await;
        assert!(failed(&a), "kill {pid}: {a}");
    }
    // The gateway's state, a key file, the person's credentials: unreadable; the database
    // unwritable; nothing outside its private folder writable.
    for p in [
        lab.path("state/portcullis.db"),
        lab.path("master.key"),
        lab.path("home/.ssh/id_test"),
        lab.path("portcullis.toml"),
    ] {
        let a = lab.attempt("hostile", json!({"action": "read", "path": p})).await;
        assert!(failed(&a), "read {}: {a}", p.display());
    }
    for p in [
        lab.path("state/portcullis.db"),
        lab.path("planted.txt"),
        PathBuf::from("/tmp/planted-by-hostile"),
    ] {
        let a = lab.attempt("hostile", json!({"action": "write", "path": p})).await;
        assert!(failed(&a), "write {}: {a}", p.display());
    }
    assert!(!lab.path("planted.txt").exists());
    let env: Value = serde_json::from_str(
        lab.attempt("hostile", json!({"action": "env"}))
            .await
            .strip_prefix("ok:")
            .unwrap(),
    )
    .unwrap();
    let home = env["HOME"].as_str().unwrap();
    let own = PathBuf::from(env["TMPDIR"].as_str().unwrap()).join("mine.txt");
    let a = lab.attempt("hostile", json!({"action": "write", "path": own})).await;
    assert_eq!(a, "ok", "its own private folder is writable");
    let env_text = env.to_string();
    for leaked in [SIBLING_SECRET, GATEWAY_MARKER, MASTER_KEY] {
        assert!(!env_text.contains(leaked), "{leaked} in its environment: {env_text}");
    }
    assert!(
        home != lab.path("home").to_string_lossy() && home.ends_with("/hostile/home"),
        "a private HOME: {home}"
    );
    // No network: not even the gateway on loopback.
    let a = lab
        .attempt(
            "hostile",
            json!({"action": "connect", "host": "127.0.0.1", "port": lab.port}),
        )
        .await;
    assert!(failed(&a), "connect: {a}");
    // No tracing, even of its own sandbox's processes.
    let a = lab.attempt("hostile", json!({"action": "ptrace", "pid": 1})).await;
    assert!(failed(&a), "ptrace: {a}");
    // A fork bomb stops at the process limit (32).
    let a = lab.attempt("hostile", json!({"action": "forks", "count": 200})).await;
    assert!(a.starts_with("stopped at"), "forks: {a}");
    let made: usize = a["stopped at ".len()..].split(':').next().unwrap().parse().unwrap();
    assert!(made < 32, "{a}");

    // The sibling holds its own secret, and the gateway still serves it.
    let env = lab.attempt("sibling", json!({"action": "env"})).await;
    assert!(
        env.contains(SIBLING_SECRET) || env.contains("[redacted:sibling_token]"),
        "{env}"
    );
    assert!(
        !env.contains(SIBLING_SECRET),
        "the secret never reaches the client: {env}"
    );

    // The gateway's own environment holds no master key (it re-executed itself without it),
    // and no other process of its user can read its environment.
    let own = std::fs::read(format!("/proc/{}/environ", lab.pid)).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&own).contains(MASTER_KEY));
    if let Some(u) = uid {
        let out = std::process::Command::new("setpriv")
            .args([
                format!("--reuid={u}"),
                format!("--regid={u}"),
                "--clear-groups".into(),
                "--".into(),
            ])
            .arg("cat")
            .arg(format!("/proc/{}/environ", lab.pid))
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "a same-user process read the gateway's environment"
        );
    }
    // Each upstream reported its sandbox.
    let log = lab.log.lock().unwrap().join("\n");
    for layer in [
        "namespaces=active",
        "landlock=active",
        "seccomp=active",
        "limits=active",
    ] {
        assert!(log.contains(layer), "{layer} not reported:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compromised_upstream_reaches_nothing_it_was_not_given() {
    let lab = lab(None).await;
    nothing_escapes(&lab, None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_compromised_upstream_of_an_unprivileged_gateway_reaches_nothing_either() {
    if !is_root() {
        // Already unprivileged: the test above is this one.
        let lab = lab(None).await;
        nothing_escapes(&lab, None).await;
        return;
    }
    let lab = lab(Some(65534)).await;
    nothing_escapes(&lab, Some(65534)).await;
}

/// `portcullis doctor` says what protects each upstream, and fails when a layer an upstream
/// requires cannot be had.
#[tokio::test(flavor = "multi_thread")]
async fn doctor_reports_each_layer() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\ndata_dir = \"state\"\n\n[upstreams.h]\ncommand = {py}\nargs = [{h}]\n\n[upstreams.h.sandbox]\nnetwork = \"loopback\"\n\n\
             [upstreams.bare]\ncommand = {py}\nargs = [{h}]\nsandbox = false\n",
            py = toml_str(python()),
            h = toml_str(&hostile().to_string_lossy()),
        ),
    )
    .unwrap();
    let (code, out, err) = run_portcullis(&["doctor", "--config", config.to_str().unwrap()], "", &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "landlock",
        "active",
        "seccomp",
        "network-namespace  active (loopback)",
        "SANDBOX OFF",
    ] {
        assert!(out.contains(want), "{want}:\n{out}");
    }
    let (code, out, _) = run_portcullis(&["doctor", "--json", "--config", config.to_str().unwrap()], "", &[]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["h"]["blocked"], false, "{v}");
}
