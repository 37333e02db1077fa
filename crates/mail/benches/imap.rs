//! What keeping IMAP sessions buys: `read_message` through portcullis-mail on stdio against
//! the real loopback mail server (`../shared/mail-test`), with the default pool and with
//! `--imap-pool 0` (a login per call), alternating in rounds so the machine's noise falls on
//! both alike. Needs the kit's Debian packages and root, as the tests do.
//!
//! `BENCH_CALLS=200 cargo bench -p portcullis-mail --bench imap`

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
    let (mut with_pool, mut without) = (Vec::new(), Vec::new());
    for round in 0..calls {
        for (mcp, times) in [(&mut kept, &mut with_pool), (&mut fresh, &mut without)] {
            let t = Instant::now();
            let r = mcp.call("read_message", json!({"uid": uid})).await;
            let took = t.elapsed();
            structured(&r);
            // The first call of each logs in either way.
            if round > 0 {
                times.push(took);
            }
        }
    }
    with_pool.sort();
    without.sort();
    println!("read_message over stdio, {} calls each, alternating", calls - 1);
    for (name, t) in [("pool 4 (default)", &with_pool), ("pool 0 (login per call)", &without)] {
        println!(
            "{name:>24}: p50 {:>7.0} µs  p90 {:>7.0} µs  p99 {:>7.0} µs",
            percentile(t, 0.5).as_secs_f64() * 1e6,
            percentile(t, 0.9).as_secs_f64() * 1e6,
            percentile(t, 0.99).as_secs_f64() * 1e6,
        );
    }
    println!(
        "p50 ratio (login per call / kept): {:.2}",
        percentile(&without, 0.5).as_secs_f64() / percentile(&with_pool, 0.5).as_secs_f64()
    );
}
