//! How portcullis-mail fails: a server that never answers (a time limit, and for a send a
//! warning that it may have gone out), a port where nothing listens, a tool outside the
//! profile. No mail server is needed: the peers here are plain loopback sockets.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers"
)]

use std::net::TcpListener;

use serde_json::json;

mod stdio;

use stdio::{Mcp, tool_error};

/// A loopback port that accepts connections and never says a word.
fn silent() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

async fn mail(imap: &str, smtp: &str) -> Mcp {
    Mcp::spawn(
        &[
            "--imap",
            imap,
            "--imap-security",
            "none",
            "--smtp",
            smtp,
            "--smtp-security",
            "none",
            "--user",
            "alice@example.test",
            "--profile",
            "send",
            "--timeout",
            "2",
        ],
        &[("MAIL_PASSWORD", "x")],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_server_is_a_clear_timeout_and_a_send_says_it_may_have_gone() {
    // The listeners' backlogs take the connections; nobody ever greets.
    let (_imap, imap) = silent();
    let (_smtp, smtp) = silent();
    let mut m = mail(&imap, &smtp).await;
    let started = std::time::Instant::now();
    let e = tool_error(&m.call("list_folders", json!({})).await);
    assert!(e.contains("no answer from the mail server within 2 s"), "{e}");
    assert!(!e.contains("may or may not"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let e = tool_error(
        &m.call(
            "send_message",
            json!({"to": ["bob@example.test"], "subject": "s", "body": "b"}),
        )
        .await,
    );
    assert!(e.contains("may or may not have gone out"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_listening_is_a_clear_error_and_a_tool_outside_the_profile_does_not_exist() {
    let free = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut m = mail(&free, &free).await;
    let e = tool_error(&m.call("list_folders", json!({})).await);
    assert!(e.contains(&format!("cannot reach the mail server at {free}")), "{e}");
    // Not in the send profile: a JSON-RPC error, as for any tool that does not exist.
    let r = m.call("trash_message", json!({"uid": 1})).await;
    assert_eq!(r["error"]["code"], -32602, "{r}");
    assert!(r["error"]["message"].as_str().unwrap().contains("unknown tool"), "{r}");
}
