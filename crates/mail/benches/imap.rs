//! What keeping IMAP sessions and SMTP connections buys: `read_message` through
//! portcullis-mail on stdio against the real loopback mail server (`../shared/mail-test`), with
//! the default pool and with `--imap-pool 0` (a login per call); then `send_message` with the
//! default `--smtp-pool` and with `--smtp-pool 0` (a connection, TLS-less here, and a login per
//! send). Each pair alternates in rounds so the machine's noise falls on both alike. Needs the
//! kit's Debian packages and root, as the tests do.
//!
//! `BENCH_CALLS=200 BENCH_SENDS=100 cargo bench -p portcullis-mail --bench imap`

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stdout,
    reason = "bench harness"
)]

#[path = "../tests/kit/mod.rs"]
mod kit;
#[path = "../tests/stdio/mod.rs"]
mod stdio;

use std::time::{Duration, Instant};

use serde_json::json;
use stdio::{Mcp, structured};

async fn start(pool: &str) -> Mcp {
    let mut args = kit::PLAINTEXT.to_vec();
    args.extend(["--user", "alice@example.test", "--imap-pool", pool]);
    Mcp::spawn(&args, &[("MAIL_PASSWORD", "alicepass")]).await
}

async fn start_sender(pool: &str) -> Mcp {
    let mut args = kit::PLAINTEXT.to_vec();
    args.extend([
        "--user",
        "alice@example.test",
        "--profile",
        "send",
        "--no-sent-copy",
        "--smtp-pool",
        pool,
    ]);
    Mcp::spawn(&args, &[("MAIL_PASSWORD", "alicepass")]).await
}

/// Alternates `call` on each of `servers` for `rounds` rounds; the first round of each is not
/// counted (it connects either way). Prints p50/p90/p99 per server and the p50 ratio.
async fn alternate(title: &str, servers: [(&str, &mut Mcp); 2], rounds: usize, tool: &str, args: serde_json::Value) {
    let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let [(a_name, a), (b_name, b)] = servers;
    for round in 0..rounds {
        for (mcp, t) in [(&mut *a, 0usize), (&mut *b, 1usize)] {
            let start = Instant::now();
            let r = mcp.call(tool, args.clone()).await;
            let took = start.elapsed();
            assert!(r["result"]["isError"] != true, "{r}");
            if round > 0 {
                times[t].push(took);
            }
        }
    }
    for t in &mut times {
        t.sort();
    }
    println!("{title}, {} calls each, alternating", rounds - 1);
    for (name, t) in [(a_name, &times[0]), (b_name, &times[1])] {
        println!(
            "{name:>28}: p50 {:>7.0} µs  p90 {:>7.0} µs  p99 {:>7.0} µs",
            percentile(t, 0.5).as_secs_f64() * 1e6,
            percentile(t, 0.9).as_secs_f64() * 1e6,
            percentile(t, 0.99).as_secs_f64() * 1e6,
        );
    }
    println!(
        "p50 ratio ({b_name} / {a_name}): {:.2}",
        percentile(&times[1], 0.5).as_secs_f64() / percentile(&times[0], 0.5).as_secs_f64()
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let calls: usize = std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let _server = kit::MailServer::start();
    let deliver = r#"
import smtplib
from email.message import EmailMessage
m = EmailMessage()
m["From"] = "bob@example.test"; m["To"] = "alice@example.test"; m["Subject"] = "bench"
m.set_content("A short body. " * 40)
with smtplib.SMTP("127.0.0.1", 10026) as s:
    s.send_message(m)
"#;
    kit::python(deliver, &[]);
    let mut kept = start("4").await;
    let mut fresh = start("0").await;
    let uid = loop {
        let r = kept.call("search_messages", json!({"subject": "bench"})).await;
        if let Some(u) = structured(&r)["messages"][0]["uid"].as_u64() {
            break u;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    alternate(
        "read_message over stdio",
        [
            ("imap pool 4 (default)", &mut kept),
            ("imap pool 0 (login per call)", &mut fresh),
        ],
        calls,
        "read_message",
        json!({"uid": uid}),
    )
    .await;

    let sends: usize = std::env::var("BENCH_SENDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut pooled = start_sender("2").await;
    let mut unpooled = start_sender("0").await;
    alternate(
        "send_message over stdio (no Sent copy)",
        [("smtp pool 2", &mut pooled), ("smtp pool 0 (default)", &mut unpooled)],
        sends,
        "send_message",
        json!({"to": ["bob@example.test"], "subject": "bench send", "body": "A short body."}),
    )
    .await;
}
