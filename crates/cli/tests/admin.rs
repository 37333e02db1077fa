//! The admin web page in real headless Chromium (Debian's `chromium`, driven by playwright-core
//! from `tests/peers/admin_browser.mjs`): sign in, see the pending approval a real call raised,
//! approve it, and the waiting call completes; every page is visited and screenshotted (kept in
//! `$CARGO_TARGET_TMPDIR/admin-screenshots`). Over plain HTTP: a POST without the CSRF token or
//! from another origin is refused, the one-time sign-in link works once, the security headers
//! are on every page.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers"
)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use serde_json::json;

/// Sends need a person's approval; everything else is permitted.
const POLICY: &str = SENDS_NEED_APPROVAL;

const PASSWORD: &str = "correct horse battery staple";

async fn gateway() -> (Served, String) {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("approval.cedar");
    std::fs::write(&policy, POLICY).unwrap();
    let admin_port = free_port();
    let rest = format!(
        "[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\n[policy]\nprofile = \"none\"\nfiles = [{}]\n\n[approvals]\ntimeout = \"90s\"\n\n{}",
        toml_str(&policy.to_string_lossy()),
        raw_upstream("raw", "output = \"trusted\"")
    );
    let gw = Served::start_config("data_dir = \"state\"", &rest, &[]).await;
    std::mem::forget(dir);
    gw.wait_for_tools(&["raw__"]).await;
    let config = gw.dir.path().join("portcullis.toml");
    let (code, _, err) = run_portcullis(
        &["admin", "set-password", "--config", config.to_str().unwrap()],
        &format!("{PASSWORD}\n"),
        &[],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    (gw, format!("http://127.0.0.1:{admin_port}"))
}

fn screenshots() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("admin-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_approves_a_waiting_call_in_chromium() {
    let (gw, admin) = gateway().await;
    let url = gw.url.clone();
    let call = tokio::spawn(async move {
        Modern::new(&url)
            .call("raw__send_message", json!({"to": "gina@example.com"}))
            .await
    });
    let shots = screenshots();
    let out = tokio::process::Command::new(node22())
        .arg(repo_root().join("tests/peers/admin_browser.mjs"))
        .args([admin.as_str(), PASSWORD, shots.to_str().unwrap(), "gina@example.com"])
        .current_dir(repo_root().join("tests/peers"))
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stdout.contains("OK"), "{stdout}\n{stderr}");
    // The call that waited went through once the person approved it in the browser.
    let r = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r["result"]["content"][0]["text"], "sent to gina@example.com", "{r}");
    for page in ["login", "approvals", "tools", "audit", "credentials", "sessions"] {
        let shot = shots.join(format!("{page}.png"));
        assert!(
            std::fs::metadata(&shot).map(|m| m.len() > 1000).unwrap_or(false),
            "{}",
            shot.display()
        );
    }
}

/// A raw HTTP exchange with the admin page (no redirects followed, cookies by hand).
async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, String) {
    portcullis_gateway::install_crypto();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut req = client.request(method.parse().unwrap(), url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(b.to_owned());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap())
}

fn session_cookie(headers: &reqwest::header::HeaderMap) -> String {
    let set = headers["set-cookie"].to_str().unwrap();
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn forms_need_their_token_and_the_one_time_link_works_once() {
    let (gw, admin) = gateway().await;
    // Security headers on every page, signed in or not.
    let (status, headers, _) = request("GET", &format!("{admin}/login"), &[], None).await;
    assert_eq!(status, 200);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    // A Host that is not loopback (DNS rebinding) is refused.
    let (status, _, _) = request("GET", &format!("{admin}/login"), &[("host", "evil.example")], None).await;
    assert_eq!(status, 403);

    let (status, headers, _) = request(
        "POST",
        &format!("{admin}/login"),
        &[],
        Some("password=correct+horse+battery+staple"),
    )
    .await;
    assert_eq!(status, 303);
    let cookie = session_cookie(&headers);
    assert!(cookie.starts_with("__Host-portcullis-admin="), "{cookie}");
    let set = headers["set-cookie"].to_str().unwrap();
    assert!(
        set.contains("HttpOnly") && set.contains("Secure") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let (_, _, page) = request("GET", &format!("{admin}/approvals"), &[("cookie", &cookie)], None).await;
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let host = admin.trim_start_matches("http://");
    // Signed in, but no token: refused.
    let (status, _, _) = request(
        "POST",
        &format!("{admin}/sessions/clear"),
        &[("cookie", &cookie)],
        Some("scope=x"),
    )
    .await;
    assert_eq!(status, 403);
    // The token, but from another origin: refused.
    let body = format!("scope=x&csrf={csrf}");
    let (status, _, _) = request(
        "POST",
        &format!("{admin}/sessions/clear"),
        &[("cookie", &cookie), ("origin", "http://evil.example")],
        Some(&body),
    )
    .await;
    assert_eq!(status, 403);
    // Token and origin right: done.
    let origin = format!("http://{host}");
    let (status, headers, _) = request(
        "POST",
        &format!("{admin}/sessions/clear"),
        &[("cookie", &cookie), ("origin", &origin)],
        Some(&body),
    )
    .await;
    assert_eq!((status, headers["location"].to_str().unwrap()), (303, "/sessions"));

    // `serve`'s stderr is no terminal here: its one-time link is not in the log.
    let log = gw.log.lock().unwrap().join("\n");
    assert!(!log.contains("/login/link/"), "a sign-in link reached the log:\n{log}");
    // `portcullis admin link` prints one for the running gateway: it works once.
    let config = gw.dir.path().join("portcullis.toml");
    let (code, out, err) = run_portcullis(&["admin", "link", "--config", config.to_str().unwrap()], "", &[]).await;
    assert_eq!(code, 0, "{err}");
    let path = out
        .split_whitespace()
        .find_map(|w| w.find("/login/link/").map(|i| w[i..].to_owned()))
        .unwrap_or_else(|| panic!("no link in: {out}"));
    let link = format!("{admin}{path}");
    let (status, headers, _) = request("GET", &link, &[], None).await;
    assert_eq!(status, 303);
    assert!(session_cookie(&headers).starts_with("__Host-portcullis-admin="));
    let (status, _, _) = request("GET", &link, &[], None).await;
    assert_eq!(status, 403);
    // A made-up link does nothing.
    let (status, _, _) = request("GET", &format!("{admin}/login/link/forged"), &[], None).await;
    assert_eq!(status, 403);
}

/// Regression: `POST /login` had no `Origin` check and no attempt limit (and its Argon2 ran on
/// the threads that serve `/mcp`: it now runs one at a time on the blocking pool).
#[tokio::test(flavor = "multi_thread")]
async fn sign_ins_from_elsewhere_are_refused_and_guessing_backs_off() {
    let (_gw, admin) = gateway().await;
    let host = admin.trim_start_matches("http://").to_owned();
    let good = "password=correct+horse+battery+staple";
    for headers in [
        vec![("origin", "http://evil.example")],
        vec![("sec-fetch-site", "cross-site")],
    ] {
        let (status, _, _) = request("POST", &format!("{admin}/login"), &headers, Some(good)).await;
        assert_eq!(status, 403, "{headers:?}");
    }
    let origin = format!("http://{host}");
    let same = [("origin", origin.as_str()), ("sec-fetch-site", "same-origin")];
    let (status, _, _) = request("POST", &format!("{admin}/login"), &same, Some(good)).await;
    assert_eq!(status, 303, "the page's own sign-in works");
    // Guessing: a few tries, then the address waits (even for the right password).
    let mut statuses = Vec::new();
    for _ in 0..7 {
        let (status, _, _) = request("POST", &format!("{admin}/login"), &same, Some("password=guess")).await;
        statuses.push(status);
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert_eq!(statuses[6], 429, "{statuses:?}");
    let (status, headers, _) = request("POST", &format!("{admin}/login"), &same, Some(good)).await;
    assert_eq!(status, 429);
    assert!(headers.contains_key("retry-after"));
}
