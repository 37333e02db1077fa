//! The audit log end to end: every decision through `portcullis serve` is committed before the
//! client hears of it, with its completion after; `portcullis audit verify` accepts the intact
//! chain and names the first bad record after a record is edited, deleted or two are swapped
//! directly in the database; `audit export --jsonl` prints the records.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers"
)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Value, json};

async fn cli(args: &[&str]) -> (i32, String, String) {
    run_portcullis(args, "", &[]).await
}

/// Runs SQL on the gateway's database with Python's sqlite3 (an attacker with file access).
fn tamper(db: &Path, sql: &str) {
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys\nc = sqlite3.connect(sys.argv[1])\nc.executescript(sys.argv[2])\nc.commit()",
            db.to_str().unwrap(),
            sql,
        ])
        .status()
        .unwrap();
    assert!(status.success(), "{sql}");
}

fn records(export: &str) -> Vec<Value> {
    export.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// How many permit decisions an export holds.
fn permits(export: &str) -> usize {
    records(export)
        .iter()
        .filter(|r| r["record"]["kind"] == "decision" && r["record"]["decision"] == "permit")
        .count()
}

/// Calls `raw__pid` `n` times; each must be answered.
async fn call_pid(client: &Modern, n: usize) {
    for _ in 0..n {
        let r = client.call("raw__pid", json!({})).await;
        assert!(r["result"].is_object(), "{r}");
    }
}

const POLICY: &str = r#"
@id("no-mail-to-evil")
forbid (principal, action == Action::"call_tool", resource)
when { resource.name == "send_message" && context.arguments has to && context.arguments.to like "*@evil.test" };
"#;

#[tokio::test(flavor = "multi_thread")]
async fn decisions_are_recorded_first_and_tampering_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.cedar");
    std::fs::write(&policy, POLICY).unwrap();
    let rest = format!(
        "[policy]\nfiles = [{}]\n\n{}",
        toml_str(&policy.to_string_lossy()),
        raw_upstream("raw", "output = \"trusted\"")
    );
    let gw = Served::start_config("data_dir = \"state\"", &rest, &[]).await;
    gw.wait_for_tools(&["raw__"]).await;
    let config = gw.dir.path().join("portcullis.toml");
    let c = config.to_str().unwrap();
    let client = Modern::new(&gw.url);

    let r = client
        .call("raw__send_message", json!({"to": "bob@example.com", "body": "hi"}))
        .await;
    assert!(r["result"].is_object(), "{r}");
    // Journaled before the call went upstream: the record is in the journal the moment the
    // client has the answer ...
    let journal = gw.dir.path().join("state/audit-journal");
    let journaled: Vec<Value> = std::fs::read_dir(&journal)
        .unwrap()
        .flat_map(|e| {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        journaled
            .iter()
            .any(|l| l["body"]["kind"] == "decision" && l["body"]["arguments"]["to"] == "bob@example.com"),
        "{journaled:?}"
    );
    // ... and `audit export`, which waits until what was journaled before it started is
    // indexed, shows it at once.
    let (_, out, _) = cli(&["audit", "export", "--jsonl", "--config", c]).await;
    let first = records(&out);
    assert_eq!(first[0]["record"]["decision"], "permit", "{out}");
    assert_eq!(first[0]["record"]["arguments"]["to"], "bob@example.com");

    let r = client
        .call(
            "raw__send_message",
            json!({"to": "eve@evil.test", "body": "x".repeat(2000)}),
        )
        .await;
    assert_eq!(r["error"]["code"], -31001, "{r}");
    client.call("raw__pid", json!({})).await;
    // Completion notes are written after the answer: give the writer a moment.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let (code, out, err) = cli(&["audit", "verify", "--config", c]).await;
    let dump = cli(&["audit", "export", "--jsonl", "--config", c]).await.1;
    assert_eq!(code, 0, "{out}{err}\n{dump}");
    let (_, out, _) = cli(&["audit", "export", "--jsonl", "--config", c]).await;
    let all = records(&out);
    let decisions: Vec<(&str, &str)> = all
        .iter()
        .filter(|r| r["record"]["kind"] == "decision")
        .map(|r| {
            (
                r["record"]["target"].as_str().unwrap(),
                r["record"]["decision"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("send_message", "permit"),
            ("send_message", "forbid"),
            ("pid", "permit")
        ],
        "{out}"
    );
    let forbid = all.iter().find(|r| r["record"]["decision"] == "forbid").unwrap();
    assert!(
        forbid["record"]["reason"].as_str().unwrap().contains("no-mail-to-evil"),
        "{forbid}"
    );
    // Long values are digested, not stored.
    assert!(
        forbid["record"]["arguments"]["body"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"),
        "{forbid}"
    );
    let completions = all.iter().filter(|r| r["record"]["kind"] == "completion").count();
    assert_eq!(completions, 2, "{out}");
    let n = all.len();
    assert!(n >= 5);
    // Stop the gateway, keep its folder.
    let Served { child, dir: _keep, .. } = gw;
    drop(child);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    let db = config.parent().unwrap().join("state/portcullis.db");
    let copy = |name: &str| {
        let d = config.parent().unwrap().join(name);
        std::fs::create_dir_all(&d).unwrap();
        for f in ["portcullis.db", "portcullis.db-wal", "portcullis.db-shm"] {
            let src = db.parent().unwrap().join(f);
            if src.exists() {
                std::fs::copy(&src, d.join(f)).unwrap();
            }
        }
        let cfg = config.parent().unwrap().join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!("[gateway]\ndata_dir = {}\n", toml_str(&d.to_string_lossy())),
        )
        .unwrap();
        (d.join("portcullis.db"), cfg)
    };
    let cases = [
        (
            "edited",
            "UPDATE audit_records SET body = replace(body, 'forbid', 'permit') WHERE seq = 3;",
            3,
        ),
        ("deleted", "DELETE FROM audit_records WHERE seq = 2;", 2),
        (
            "swapped",
            "UPDATE audit_records SET seq = -1 WHERE seq = 2; UPDATE audit_records SET seq = 2 WHERE seq = 3; UPDATE audit_records SET seq = 3 WHERE seq = -1;",
            2,
        ),
    ];
    for (name, sql, bad) in cases {
        let (db, cfg) = copy(name);
        tamper(&db, sql);
        let (code, out, err) = cli(&["audit", "verify", "--config", cfg.to_str().unwrap()]).await;
        assert_eq!(code, 65, "{name}: {out}{err}");
        assert!(out.contains(&format!("audit record {bad}:")), "{name}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn processes_sharing_a_data_dir_share_one_chain() {
    let gw = Served::start_config("data_dir = \"state\"", &raw_upstream("raw", ""), &[]).await;
    gw.wait_for_tools(&["raw__"]).await;
    let config = gw.dir.path().join("portcullis.toml");
    let c = config.to_str().unwrap();
    let client = Modern::new(&gw.url);
    // The server and one-shot `portcullis call` processes append to the same log, interleaved.
    for i in 0..3 {
        let r = client.call("raw__pid", json!({})).await;
        assert!(r["result"].is_object(), "{r}");
        let (code, out, err) = cli(&["call", "--config", c, "raw__pid"]).await;
        assert_eq!(code, 0, "call {i}: {out}{err}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (code, out, err) = cli(&["audit", "verify", "--config", c]).await;
    assert_eq!(code, 0, "{out}{err}");
    let (_, out, _) = cli(&["audit", "export", "--jsonl", "--config", c]).await;
    let decisions = records(&out)
        .iter()
        .filter(|r| r["record"]["kind"] == "decision")
        .count();
    assert_eq!(decisions, 6, "{out}");
}

/// Recomputes every record's hash after `edit` (Python, as an attacker with the file would):
/// the chain itself verifies again afterwards.
const REWRITE: &str = r#"
import hashlib, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
rows = c.execute("SELECT seq, at_ms, body FROM audit_records ORDER BY seq").fetchall()
prev = "0" * 64
for seq, at_ms, body in rows:
    if seq == 1:
        body = body.replace('"permit"', '"forbid"')
    h = hashlib.sha256(f"portcullis-audit-v1\n{seq}\n{at_ms}\n{prev}\n".encode() + body.encode()).hexdigest()
    c.execute("UPDATE audit_records SET body = ?, prev = ?, hash = ? WHERE seq = ?", (body, prev, h, seq))
    prev = h
c.commit()
"#;

/// A gateway config in `dir` that keeps its state in `dir/state`, with a new vault (so
/// checkpoints are signed), the tables `audit` and the raw upstream, written to
/// `dir/portcullis.toml`. Returns its path, its `[gateway]` line and the rest (for
/// `Served::start_config`).
async fn vaulted(dir: &Path, audit: &str) -> (PathBuf, String, String) {
    let key = dir.join("master.key");
    let rest = format!(
        "[vault]\nkey_file = {}\n\n{audit}{}",
        toml_str(&key.to_string_lossy()),
        raw_upstream("raw", "output = \"trusted\"")
    );
    let gateway = format!("data_dir = {}", toml_str(&dir.join("state").to_string_lossy()));
    let config = dir.join("portcullis.toml");
    std::fs::write(&config, format!("[gateway]\n{gateway}\n\n{rest}")).unwrap();
    new_vault(&config, &key, &[]).await;
    (config, gateway, rest)
}

fn copy_state(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        // The audit journal's folder is empty after a clean stop.
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_checkpoints_catch_a_rewritten_chain_truncation_and_removed_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (config, gateway, rest) = vaulted(dir.path(), "[audit]\ncheckpoint_every = 4\n\n").await;
    let config_for = |state: &str| {
        format!(
            "[gateway]\ndata_dir = {}\n\n{rest}",
            toml_str(&dir.path().join(state).to_string_lossy())
        )
    };
    let c = config.to_str().unwrap();
    let mut gw = Served::start_config(&gateway, &rest, &[]).await;
    gw.wait_for_tools(&["raw__"]).await;
    let client = Modern::new(&gw.url);
    call_pid(&client, 5).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // A clean stop signs the head.
    gw.stop().await;

    let (code, out, err) = cli(&["audit", "verify", "--config", c]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok: 10 records, the hash chain is intact"), "{out}");
    // Checkpoints at 4 and 8 (the batches that passed them) and the head at shutdown.
    assert!(
        out.contains("signed checkpoints") && out.contains("cover records 1 to 10; 0 newer"),
        "{out}"
    );
    let (code, public, err) = cli(&["audit", "public-key", "--config", c]).await;
    assert_eq!(code, 0, "{err}");
    let public = public.trim().to_owned();
    // An auditor without the master key verifies with the public key alone.
    let auditor = dir.path().join("auditor.toml");
    std::fs::write(
        &auditor,
        format!(
            "[gateway]\ndata_dir = {}\n",
            toml_str(&dir.path().join("state").to_string_lossy())
        ),
    )
    .unwrap();
    let a = auditor.to_str().unwrap();
    let (code, out, _) = cli(&["audit", "verify", "--config", a]).await;
    assert_eq!(code, 0);
    assert!(out.contains("unverified:"), "{out}");
    let (code, out, err) = cli(&["audit", "verify", "--public-key", &public, "--config", a]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("cover records 1 to 10"), "{out}");

    let db = |state: &str| dir.path().join(state).join("portcullis.db");
    let scenario = |name: &'static str| {
        copy_state(&dir.path().join("state"), &dir.path().join(name));
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, config_for(name)).unwrap();
        path
    };

    // The whole chain rewritten consistently: the chain verifies, the signatures do not.
    let cfg = scenario("rewritten");
    let status = std::process::Command::new("python3")
        .args(["-c", REWRITE, db("rewritten").to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, out, _) = cli(&["audit", "verify", "--config", cfg.to_str().unwrap()]).await;
    assert_eq!(code, 65, "{out}");
    assert!(out.contains("the chain was rewritten"), "{out}");

    // The newest records removed (and the chain still intact up to there).
    let cfg = scenario("truncated");
    tamper(&db("truncated"), "DELETE FROM audit_records WHERE seq > 6;");
    let (code, out, _) = cli(&["audit", "verify", "--config", cfg.to_str().unwrap()]).await;
    assert_eq!(code, 65, "{out}");
    assert!(out.contains("audit record 7") && out.contains("truncated"), "{out}");

    // A checkpoint removed.
    let cfg = scenario("unsigned");
    tamper(
        &db("unsigned"),
        "DELETE FROM audit_checkpoints WHERE seq = (SELECT MIN(seq) FROM audit_checkpoints);",
    );
    let (code, out, _) = cli(&["audit", "verify", "--config", cfg.to_str().unwrap()]).await;
    assert_eq!(code, 65, "{out}");
    assert!(out.contains("a checkpoint was removed"), "{out}");

    // A checkpoint's signature altered.
    let cfg = scenario("forged");
    tamper(&db("forged"), "UPDATE audit_checkpoints SET at_ms = at_ms + 1;");
    let (code, out, _) = cli(&["audit", "verify", "--config", cfg.to_str().unwrap()]).await;
    assert_eq!(code, 65, "{out}");
    assert!(out.contains("does not verify"), "{out}");

    // Regression (issue 19): the tail removed with the newest checkpoint over it — what is left
    // verifies by itself; the witness file beside the database remembers how far it came.
    let cfg = scenario("cut");
    tamper(
        &db("cut"),
        "DELETE FROM audit_records WHERE seq > 8; DELETE FROM audit_checkpoints WHERE seq > 8;",
    );
    let (code, out, _) = cli(&["audit", "verify", "--config", cfg.to_str().unwrap()]).await;
    assert_eq!(code, 65, "{out}");
    assert!(
        out.contains("witness file recorded a signed checkpoint over records through 10"),
        "{out}"
    );
    // Every checkpoint removed.
    let cfg = scenario("stripped");
    tamper(&db("stripped"), "DELETE FROM audit_checkpoints;");
    let (code, out, _) = cli(&["audit", "verify", "--config", cfg.to_str().unwrap()]).await;
    assert_eq!(code, 65, "{out}");
    assert!(out.contains("no longer has"), "{out}");
    // The untouched copy says the witness agrees.
    let (code, out, _) = cli(&["audit", "verify", "--config", c]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok: the witness file's") && out.contains("checkpoints are all in the database"),
        "{out}"
    );
}

/// Regression (issue 19): a gateway killed after a quiet moment left its newest records
/// unsigned, so they could be deleted without `audit verify` noticing. A checkpoint now
/// follows a second after the first unsigned record.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_after_a_quiet_second_leaves_no_record_unsigned() {
    let dir = tempfile::tempdir().unwrap();
    let (config, gateway, rest) = vaulted(dir.path(), "").await;
    let state = dir.path().join("state");
    let c = config.to_str().unwrap();
    let mut gw = Served::start_config(&gateway, &rest, &[]).await;
    gw.wait_for_tools(&["raw__"]).await;
    let client = Modern::new(&gw.url);
    call_pid(&client, 4).await;
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    gw.child.start_kill().unwrap();
    let _ = gw.child.wait().await;

    let (code, out, err) = cli(&["audit", "verify", "--config", c]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok: 8 records"), "{out}");
    assert!(out.contains("cover records 1 to 8; 0 newer"), "{out}");
    // The attacker deletes the last three records: a signed checkpoint covers them.
    tamper(&state.join("portcullis.db"), "DELETE FROM audit_records WHERE seq > 5;");
    let (code, out, _) = cli(&["audit", "verify", "--config", c]).await;
    assert_eq!(code, 65, "{out}");
}

/// Issue 20: a decision is journaled (one `write(2)`) before its call goes upstream and indexed
/// into the database off the call path; a gateway killed the moment it answered — its writer
/// given no time to index — loses none: `portcullis audit` indexes what the dead gateway
/// journaled, every answered call has its decision, and the chain verifies.
#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_killed_right_after_answering_loses_no_decision() {
    let dir = tempfile::tempdir().unwrap();
    let (config, gateway, rest) = vaulted(dir.path(), "").await;
    let c = config.to_str().unwrap();
    let mut gw = Served::start_config(&gateway, &rest, &[]).await;
    gw.wait_for_tools(&["raw__"]).await;
    let client = Modern::new(&gw.url);
    call_pid(&client, 20).await;
    gw.child.start_kill().unwrap();
    let _ = gw.child.wait().await;

    let (code, out, err) = cli(&["audit", "export", "--jsonl", "--config", c]).await;
    assert_eq!(code, 0, "{err}");
    let decisions = permits(&out);
    assert_eq!(decisions, 20, "{out}\n{err}");
    let (code, out, err) = cli(&["audit", "verify", "--config", c]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("the hash chain is intact"), "{out}");
    // Nothing is left to index.
    let left = std::fs::read_dir(dir.path().join("state/audit-journal"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".jsonl"))
        .count();
    assert_eq!(left, 0);
}

/// Issue 19: the database locked by another process (a long write transaction) does not lose a
/// decision nor stop the calls that are recorded: each decision is journaled before its call
/// goes upstream, and indexed once the lock goes. (A backlog of 16 384 journaled records waiting
/// for the database refuses further calls: ARCHITECTURE.md, "Bounds".)
#[tokio::test(flavor = "multi_thread")]
async fn a_locked_database_delays_indexing_and_loses_nothing() {
    use tokio::io::AsyncBufReadExt as _;
    let dir = tempfile::tempdir().unwrap();
    let (config, gateway, rest) = vaulted(dir.path(), "").await;
    let c = config.to_str().unwrap();
    let gw = Served::start_config(&gateway, &rest, &[]).await;
    gw.wait_for_tools(&["raw__"]).await;
    let client = Modern::new(&gw.url);
    let db = dir.path().join("state/portcullis.db");
    let mut locker = tokio::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys, time\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\nc.execute('BEGIN EXCLUSIVE')\nprint('locked', flush=True)\ntime.sleep(6)\nc.execute('COMMIT')",
            db.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(locker.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("locked"));
    let started = std::time::Instant::now();
    call_pid(&client, 5).await;
    // Answered while the database was still locked.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(locker.wait().await.unwrap().success());
    // Indexed once the lock went (the writer retries with a growing pause, at most 5 s).
    let mut decisions = 0;
    for _ in 0..100 {
        let (_, out, _) = cli(&["audit", "export", "--jsonl", "--config", c]).await;
        decisions = permits(&out);
        if decisions == 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(decisions, 5);
    let (code, out, err) = cli(&["audit", "verify", "--config", c]).await;
    assert_eq!(code, 0, "{out}{err}");
}

/// Unmounts (lazily: the gateway may still hold files) when the test ends, however it ends.
/// Mounts a tmpfs of `size` (e.g. `4m`) at `at`, made here; unmounted when dropped.
fn tmpfs(at: &Path, size: &str) -> Unmount {
    std::fs::create_dir(at).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
        .arg(at)
        .status()
        .unwrap();
    assert!(mounted.success());
    Unmount(at.to_owned())
}

struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Issue 19: a full disk refuses calls — a decision that cannot be journaled is not forwarded —
/// with a clear error, leaves no torn record behind, and service resumes once there is room.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_calls_and_service_resumes_with_room() {
    if !is_root() {
        eprintln!("not run: mounting a small tmpfs as the data folder needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let _unmount = tmpfs(&state, "4m");
    let (config, gateway, rest) = vaulted(dir.path(), "").await;
    let c = config.to_str().unwrap();
    let gw = Served::start_config(&gateway, &rest, &[]).await;
    gw.wait_for_tools(&["raw__"]).await;
    let client = Modern::new(&gw.url);
    let r = client.call("raw__pid", json!({})).await;
    assert!(r["result"].is_object(), "{r}");

    // Fill the disk.
    let filler = state.join("filler");
    {
        use std::io::Write as _;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        while f.write_all(&chunk[..512]).is_ok() {}
    }
    let mut answered = 1;
    let mut refusal = None;
    // The journal's last page may still hold a few records.
    for _ in 0..200 {
        let r = client.call("raw__pid", json!({})).await;
        if r["result"].is_object() {
            answered += 1;
        } else {
            refusal = Some(r);
            break;
        }
    }
    let refusal = refusal.expect("a call went through with the disk full");
    assert!(
        refusal["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the audit log cannot be written; the call was not forwarded"),
        "{refusal}"
    );

    // Room again: service resumes.
    std::fs::remove_file(&filler).unwrap();
    let r = client.call("raw__pid", json!({})).await;
    assert!(r["result"].is_object(), "{r}");
    answered += 1;

    // Every answered call has its decision, the chain verifies: the failed writes left no torn
    // line in the journal.
    let (code, out, err) = cli(&["audit", "export", "--jsonl", "--config", c]).await;
    assert_eq!(code, 0, "{err}");
    let decisions = permits(&out);
    let log = gw.log.lock().unwrap().join("\n");
    assert_eq!(decisions, answered, "{err}\n{log}");
    let (code, out, err) = cli(&["audit", "verify", "--config", c]).await;
    assert_eq!(code, 0, "{out}{err}");
}

/// Issue 19: a read-only data folder. The gateway does not start — it cannot record a decision,
/// so it would forward nothing — and says why, naming the folder; an auditor's `audit verify`
/// and `audit export` read the folder as it is (a snapshot, a read-only mount); once the folder
/// is writable again the gateway starts and serves.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_only_data_folder_refuses_to_serve_and_can_still_be_audited() {
    if !is_root() {
        eprintln!("not run: mounting and remounting a tmpfs as the data folder needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let _unmount = tmpfs(&state, "16m");
    let (config, gateway, rest) = vaulted(dir.path(), "").await;
    let c = config.to_str().unwrap();
    let mut gw = Served::start_config(&gateway, &rest, &[]).await;
    gw.wait_for_tools(&["raw__"]).await;
    let client = Modern::new(&gw.url);
    call_pid(&client, 3).await;
    gw.stop().await;
    let remount = |mode: &str| {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&state)
            .status()
            .unwrap();
        assert!(ok.success(), "remount {mode}");
    };
    remount("ro");

    // The gateway refuses to start, and says why.
    let serve = tokio::process::Command::new(portcullis())
        .args(["serve", "--config", c])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), serve)
        .await
        .expect("the gateway kept running on a read-only data folder")
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(73), "{err}");
    assert!(
        err.contains(&format!("the data folder `{}` cannot be written", state.display()))
            && err.contains("Read-only file system"),
        "{err}"
    );

    // An auditor reads it as it is: three calls (six records), signed at the clean stop.
    let (code, out, err) = cli(&["audit", "verify", "--config", c]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("the data folder is read-only"), "{err}");
    assert!(out.contains("ok: 6 records, the hash chain is intact"), "{out}");
    assert!(out.contains("cover records 1 to 6; 0 newer"), "{out}{err}");
    assert!(out.contains("ok: the witness file's"), "{out}");
    let (code, out, err) = cli(&["audit", "export", "--jsonl", "--config", c]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(permits(&out), 3, "{out}");

    // Writable again: the gateway starts and serves.
    remount("rw");
    let gw = Served::start_config(&gateway, &rest, &[]).await;
    gw.wait_for_tools(&["raw__"]).await;
    let r = Modern::new(&gw.url).call("raw__pid", json!({})).await;
    assert!(r["result"].is_object(), "{r}");
}

/// Issue 19 (fuzzing, wider): the verifier on corrupted databases. Bytes flipped anywhere in
/// the database file: `audit verify` never panics, answers ok (0), tampered (65) or unreadable
/// (73), and when it says ok the records are exactly the ones written.
#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_database_is_never_vouched_for() {
    let dir = tempfile::tempdir().unwrap();
    let (config, gateway, rest) = vaulted(dir.path(), "").await;
    let mut gw = Served::start_config(&gateway, &rest, &[]).await;
    gw.wait_for_tools(&["raw__"]).await;
    call_pid(&Modern::new(&gw.url), 12).await;
    gw.stop().await;
    let c = config.to_str().unwrap();
    let (code, original, err) = cli(&["audit", "export", "--jsonl", "--config", c]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(permits(&original), 12);
    let db = std::fs::read(dir.path().join("state").join("portcullis.db")).unwrap();

    // A fixed pseudo-random sequence (a 64-bit LCG), so a failure can be replayed.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x >> 33
    };
    let mut seen = std::collections::BTreeMap::<i32, usize>::new();
    for round in 0..40 {
        let name = format!("flip{round}");
        copy_state(&dir.path().join("state"), &dir.path().join(&name));
        let mut bytes = db.clone();
        let flips = 1 + next() % 4;
        let mut at = Vec::new();
        for _ in 0..flips {
            let i = usize::try_from(next()).unwrap() % bytes.len();
            bytes[i] ^= u8::try_from(1 + next() % 255).unwrap();
            at.push(i);
        }
        std::fs::write(dir.path().join(&name).join("portcullis.db"), &bytes).unwrap();
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "[gateway]\ndata_dir = {}\n\n{rest}",
                toml_str(&dir.path().join(&name).to_string_lossy())
            ),
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let (code, out, err) = cli(&["audit", "verify", "--config", p]).await;
        assert!(
            [0, 65, 73].contains(&code) && !err.contains("panicked"),
            "bytes {at:?}: exit {code}\n{out}{err}"
        );
        *seen.entry(code).or_default() += 1;
        if code == 0 {
            let (code, export, err) = cli(&["audit", "export", "--jsonl", "--config", p]).await;
            assert_eq!(code, 0, "{err}");
            assert_eq!(
                export, original,
                "bytes {at:?}: verify said ok, but the records differ\n{out}"
            );
        }
    }
    eprintln!("exit codes over 40 corrupted copies: {seen:?}");
}
