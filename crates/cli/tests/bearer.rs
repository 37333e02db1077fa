//! The gateway as an OAuth 2.1 resource server (`auth = "oauth"`), against a real identity
//! provider on loopback (oidc-provider from npm, `tests/peers/oidc_issuer.mjs`): clients find
//! the authorization server through the Protected Resource Metadata named in the 401
//! challenge; a token of the configured issuer, for this gateway, unexpired and signed with a
//! published key, lets its principal in, in both eras; wrong-audience, wrong-issuer, expired,
//! not-yet-valid and forged tokens do not; the provider's key rotation is followed with one
//! fetch, and a flood of unknown key ids does not become a flood of fetches; a call whose
//! tool's effect needs a broader scope gets 403 `insufficient_scope`; the token's groups reach
//! Cedar; and the client's token never reaches an upstream or the log.

#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers"
)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use common::*;
use serde_json::{Value, json};
use tokio::process::Command;

/// oidc-provider on loopback, with every line it prints.
struct Idp {
    peer: NodePeer,
    issuer: String,
}

impl Idp {
    async fn start(resource: &str, extra: &[&str]) -> Idp {
        portcullis_gateway::install_crypto();
        let mut args = vec!["--resource", resource];
        args.extend_from_slice(extra);
        let peer = NodePeer::start("oidc_issuer.mjs", &args).await;
        Idp {
            issuer: peer.listening.clone(),
            peer,
        }
    }

    /// Every line it printed since it listened.
    fn lines(&self) -> Vec<String> {
        self.peer.lines()
    }

    /// How many times the gateway asked for the keys.
    fn key_fetches(&self) -> usize {
        self.lines()
            .iter()
            .filter(|l| l.starts_with("request GET /jwks"))
            .count()
    }

    fn requests(&self) -> usize {
        self.lines()
            .iter()
            .filter(|l| l.starts_with("request ") && !l.contains("/token"))
            .count()
    }

    /// An access token for `client`, for `resource`, with `scope`.
    async fn token(&self, client: &str, resource: &str, scope: &str) -> String {
        let resp = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(format!("{client}-secret")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                reqwest::Url::parse_with_params(
                    "http://form.invalid/",
                    &[
                        ("grant_type", "client_credentials"),
                        ("resource", resource),
                        ("scope", scope),
                    ],
                )
                .unwrap()
                .query()
                .unwrap()
                .to_owned(),
            )
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
        assert!(status.is_success(), "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    async fn rotate(&self, keep: bool) {
        let url = format!("{}/_test/rotate{}", self.issuer, if keep { "?keep=1" } else { "" });
        let r = reqwest::Client::new().post(url).send().await.unwrap();
        assert!(r.status().is_success());
    }
}

/// A gateway on a port chosen first (its resource URL names the port), trusting `issuer`.
struct Setup {
    dir: tempfile::TempDir,
    port: u16,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            dir: tempfile::tempdir().unwrap(),
            port: free_port(),
        }
    }

    fn resource(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    fn config(&self) -> String {
        self.dir.path().join("portcullis.toml").to_string_lossy().into_owned()
    }

    /// Writes the config: `oauth` holds extra `[gateway.oauth]` keys, `rest` other tables.
    fn write(&self, issuer: &str, oauth: &str, rest: &str) {
        self.write_issuer(issuer, oauth, "", rest);
    }

    /// [`Setup::write`] with extra keys for the issuer's table.
    fn write_issuer(&self, issuer: &str, oauth: &str, issuer_extra: &str, rest: &str) {
        let config = format!(
            r#"[gateway]
listen = "127.0.0.1:{port}"
data_dir = "state"
auth = "oauth"

[gateway.oauth]
resource = "{resource}"
required_scopes = ["mcp:read"]
{skew}
{oauth}

[gateway.oauth.step_up]
send = ["mcp:write", "mcp:admin"]
destructive = ["mcp:admin"]

[gateway.oauth.issuers.corp]
issuer = "{issuer}"
{issuer_extra}

{rest}
"#,
            port = self.port,
            resource = self.resource(),
            skew = if oauth.contains("clock_skew") {
                ""
            } else {
                "clock_skew = \"0s\""
            },
        );
        std::fs::write(self.dir.path().join("portcullis.toml"), config).unwrap();
    }

    async fn serve(self) -> Served {
        Served::start_in(self.dir, self.port, &[]).await
    }
}

/// A 2025-11-25 session opened with `token`.
async fn legacy_session(url: &str, token: &str) -> (Reply, Option<String>) {
    let auth = format!("Bearer {token}");
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "legacy-client", "version": "0"}
    }});
    let r = post(url, &[("authorization", &auth)], init.to_string()).await;
    let sid = r.headers.get("mcp-session-id").map(|v| v.to_str().unwrap().to_owned());
    (r, sid)
}

async fn legacy_call(url: &str, sid: &str, token: &str, tool: &str, args: Value) -> Reply {
    let auth = format!("Bearer {token}");
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": tool, "arguments": args}});
    post(
        url,
        &[
            ("authorization", &auth),
            ("mcp-session-id", sid),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        body.to_string(),
    )
    .await
}

/// The parameters of a `WWW-Authenticate: Bearer …` challenge.
fn challenge(r: &Reply) -> std::collections::BTreeMap<String, String> {
    let v = r
        .headers
        .get("www-authenticate")
        .unwrap_or_else(|| panic!("no challenge: {} {}", r.status, r.body))
        .to_str()
        .unwrap();
    let rest = v.strip_prefix("Bearer ").unwrap();
    let mut out = std::collections::BTreeMap::new();
    for part in rest.split("\", ") {
        let (k, v) = part.split_once('=').unwrap();
        out.insert(k.trim().to_owned(), v.trim_matches('"').to_owned());
    }
    out
}

#[tokio::test]
async fn a_signed_in_client_gets_in_and_bad_tokens_do_not() {
    let s = Setup::new();
    let idp = Idp::start(&s.resource(), &[]).await;
    s.write(&idp.issuer, "", &raw_upstream("raw", ""));
    let resource = s.resource();
    // Machines keep their API keys beside the people's tokens.
    let (code, key, err) = run_portcullis(&["keys", "add", "robot", "--config", &s.config()], "", &[]).await;
    assert_eq!(code, 0, "{err}");
    let gw = s.serve().await;
    let origin = gw.url.trim_end_matches("/mcp").to_owned();
    let r = Modern::with_key(&gw.url, key.trim())
        .request("tools/list", json!({}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = Modern::with_key(&gw.url, "pcl_AAAAAAAAAAAA_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .request("tools/list", json!({}))
        .await;
    assert_eq!(r.status, 401, "{}", r.body);

    // No token: 401, and the challenge leads to the metadata, which leads to the provider.
    let anon = Modern::new(&gw.url).request("tools/list", json!({})).await;
    assert_eq!(anon.status, 401, "{}", anon.body);
    let c = challenge(&anon);
    assert!(!c.contains_key("error"), "no token is not an invalid token: {c:?}");
    assert_eq!(c["scope"], "mcp:read");
    let prm_url = &c["resource_metadata"];
    assert_eq!(*prm_url, format!("{origin}/.well-known/oauth-protected-resource/mcp"));
    for url in [
        prm_url.clone(),
        format!("{origin}/.well-known/oauth-protected-resource"),
    ] {
        let prm: Value = serde_json::from_str(&reqwest::get(&url).await.unwrap().text().await.unwrap()).unwrap();
        assert_eq!(prm["resource"], resource.as_str(), "{prm}");
        assert_eq!(prm["authorization_servers"], json!([idp.issuer]), "{prm}");
        assert_eq!(prm["bearer_methods_supported"], json!(["header"]));
        assert!(prm["scopes_supported"].as_array().unwrap().contains(&json!("mcp:read")));
    }

    // A token for this gateway: in, in both eras, as its subject.
    let alice = idp.token("alice-svc", &resource, "mcp:read").await;
    gw.wait_for_tools_with(&alice, &["raw__"]).await;
    let r = Modern::with_key(&gw.url, &alice)
        .call("raw__echo_params", json!({"x": 1}))
        .await;
    assert!(r["result"].is_object(), "{r}");
    // The scheme in any case.
    let upper = format!("BEARER {alice}");
    let r = post(
        &gw.url,
        &[
            ("authorization", upper.as_str()),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
        ],
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {"_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "0"}}}})
        .to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (init, sid) = legacy_session(&gw.url, &alice).await;
    assert_eq!(init.status, 200, "{}", init.body);
    let sid = sid.unwrap();
    let r = legacy_call(&gw.url, &sid, &alice, "raw__echo_params", json!({"y": 2})).await;
    assert!(r.response()["result"].is_object(), "{}", r.body);
    // Another principal's valid token does not open alice's session.
    let bob = idp.token("bob-svc", &resource, "mcp:read").await;
    let r = legacy_call(&gw.url, &sid, &bob, "raw__echo_params", json!({})).await;
    assert_eq!(r.status, 404, "{}", r.body);

    // Refused with 401 invalid_token: another audience, garbage, a changed payload.
    let other = idp
        .token("alice-svc", &format!("{}/other", idp.issuer), "mcp:read")
        .await;
    let (h, rest) = alice.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let mut claims: Value = serde_json::from_slice(&B64.decode(rest.split('.').next().unwrap()).unwrap()).unwrap();
    claims["sub"] = json!("admin");
    let forged = format!("{h}.{}.{sig}", B64.encode(claims.to_string()));
    for bad in [other.as_str(), "not-a-token", forged.as_str(), "a.b.c"] {
        let r = Modern::with_key(&gw.url, bad).request("tools/list", json!({})).await;
        assert_eq!(r.status, 401, "{bad}: {}", r.body);
        assert_eq!(challenge(&r)["error"], "invalid_token");
    }
    // A token without the required scope: 403 naming it.
    let none = idp.token("alice-svc", &resource, "mcp:write").await;
    let r = Modern::with_key(&gw.url, &none).request("tools/list", json!({})).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(challenge(&r)["error"], "insufficient_scope");
    assert_eq!(challenge(&r)["scope"], "mcp:read");
    // A token in the query string, or two Authorization headers: 400.
    let r = post(
        &format!("{}?access_token={alice}", gw.url),
        &[],
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let auth = format!("Bearer {alice}");
    let r = post(
        &gw.url,
        &[("authorization", &auth), ("authorization", &auth)],
        json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);

    // Expired (one-second tokens, no skew) and not yet valid.
    let short = idp.token("short", &resource, "mcp:read").await;
    // Accepted while valid (and remembered as verified), refused once expired all the same.
    let r = Modern::with_key(&gw.url, &short).request("tools/list", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let future = idp.token("future", &resource, "mcp:read").await;
    for bad in [&short, &future] {
        let r = Modern::with_key(&gw.url, bad).request("tools/list", json!({})).await;
        assert_eq!(r.status, 401, "{}", r.body);
    }

    // Another issuer with the very same keys (and kid): refused, and never asked for anything.
    let keys = gw.dir.path().join("shared-keys.json");
    let twin_a = Idp::start(&resource, &["--keys", keys.to_str().unwrap()]).await;
    let twin_b = Idp::start(&resource, &["--keys", keys.to_str().unwrap()]).await;
    let foreign = twin_b.token("alice-svc", &resource, "mcp:read").await;
    let r = Modern::with_key(&gw.url, &foreign)
        .request("tools/list", json!({}))
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(twin_a.requests() + twin_b.requests(), 0);

    // The log names why, never the token.
    let log = gw.log.lock().unwrap().join("\n");
    assert!(log.contains("the token is for another audience"), "{log}");
    assert!(log.contains("the token has expired"), "{log}");
    assert!(log.contains("is not trusted"), "{log}");
    for t in [&alice, &bob, &other, &short] {
        let sig = t.rsplit('.').next().unwrap();
        assert!(!log.contains(sig), "a token's signature reached the log");
    }
}

#[tokio::test]
async fn key_rotation_is_followed_and_unknown_key_ids_do_not_flood_the_provider() {
    let s = Setup::new();
    let idp = Idp::start(&s.resource(), &[]).await;
    s.write(&idp.issuer, "", &raw_upstream("raw", ""));
    let resource = s.resource();
    let gw = s.serve().await;
    let old = idp.token("alice-svc", &resource, "mcp:read").await;
    gw.wait_for_tools_with(&old, &["raw__"]).await;
    let fetched = idp.key_fetches();
    assert_eq!(fetched, 1, "the keys are fetched once at start");

    // The provider publishes a new key beside the old one and signs with it.
    idp.rotate(true).await;
    let new = idp.token("alice-svc", &resource, "mcp:read").await;
    for t in [&new, &old, &new] {
        let r = Modern::with_key(&gw.url, t).request("tools/list", json!({})).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(idp.key_fetches(), fetched + 1, "one fetch for the new key id");

    // Tokens naming key ids nobody published: refused, and no more fetches within 30 s.
    let (h, rest) = new.split_once('.').unwrap();
    let mut header: Value = serde_json::from_slice(&B64.decode(h).unwrap()).unwrap();
    for i in 0..10 {
        header["kid"] = json!(format!("forged-{i}"));
        let t = format!("{}.{rest}", B64.encode(header.to_string()));
        let r = Modern::with_key(&gw.url, &t).request("tools/list", json!({})).await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    assert_eq!(idp.key_fetches(), fetched + 1);
}

#[tokio::test]
async fn elliptic_curve_and_edwards_keys_are_accepted() {
    for alg in ["ES256", "EdDSA"] {
        let s = Setup::new();
        let idp = Idp::start(&s.resource(), &["--alg", alg]).await;
        s.write(&idp.issuer, "", &raw_upstream("raw", ""));
        let resource = s.resource();
        let gw = s.serve().await;
        let t = idp.token("alice-svc", &resource, "mcp:read").await;
        let header: Value = serde_json::from_slice(&B64.decode(t.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["alg"], alg);
        let r = Modern::with_key(&gw.url, &t).request("tools/list", json!({})).await;
        assert_eq!(r.status, 200, "{alg}: {}", r.body);
    }
}

#[tokio::test]
async fn a_call_whose_effect_needs_a_broader_scope_is_challenged_in_both_eras() {
    let s = Setup::new();
    let idp = Idp::start(&s.resource(), &[]).await;
    // Policy permits everything: what stops a call here is its scope alone.
    let policy = s.dir.path().join("all.cedar");
    std::fs::write(&policy, "permit(principal, action, resource);\n").unwrap();
    let rest = format!(
        "[policy]\nprofile = \"none\"\nfiles = [{}]\n\n{}",
        toml_str(&policy.to_string_lossy()),
        raw_upstream("raw", "")
    );
    s.write(&idp.issuer, "", &rest);
    let resource = s.resource();
    let gw = s.serve().await;
    let read = idp.token("alice-svc", &resource, "mcp:read").await;
    gw.wait_for_tools_with(&read, &["raw__"]).await;

    let r = Modern::with_key(&gw.url, &read)
        .request(
            "tools/call",
            json!({"name": "raw__send_message", "arguments": {"to": "bob@corp.test"}}),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.body);
    let c = challenge(&r);
    assert_eq!(c["error"], "insufficient_scope");
    assert_eq!(c["scope"], "mcp:read mcp:write");
    assert!(c["resource_metadata"].ends_with("/.well-known/oauth-protected-resource/mcp"));
    let (_, sid) = legacy_session(&gw.url, &read).await;
    let sid = sid.unwrap();
    let r = legacy_call(&gw.url, &sid, &read, "raw__delete_everything", json!({})).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(challenge(&r)["scope"], "mcp:read mcp:admin");

    // Stepped up: the call reaches the pipeline (and its policy) instead. (Destructive first:
    // once a call has returned untrusted content, the flow rule would hold it for approval.)
    let admin = idp.token("alice-svc", &resource, "mcp:read mcp:admin").await;
    let r = legacy_call(&gw.url, &sid, &admin, "raw__delete_everything", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.response()["result"].is_object(), "{}", r.body);
    let write = idp.token("alice-svc", &resource, "mcp:read mcp:write").await;
    let r = Modern::with_key(&gw.url, &write)
        .request(
            "tools/call",
            json!({"name": "raw__send_message", "arguments": {"to": "bob@corp.test"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.response()["result"].is_object(), "{}", r.body);
    // Reads need nothing more than the required scope.
    let r = legacy_call(&gw.url, &sid, &read, "raw__echo_params", json!({})).await;
    assert!(r.response()["result"].is_object(), "{}", r.body);
}

#[tokio::test]
async fn groups_from_the_token_reach_policy_and_the_principal_claim_names_who_is_audited() {
    let s = Setup::new();
    let idp = Idp::start(&s.resource(), &[]).await;
    let policy = s.dir.path().join("ops.cedar");
    std::fs::write(
        &policy,
        "@id(\"ops-only\")\nforbid(principal, action == Action::\"call_tool\", resource) unless { principal.groups.contains(\"ops\") };\n",
    )
    .unwrap();
    let rest = format!(
        "[policy]\nfiles = [{}]\n\n{}",
        toml_str(&policy.to_string_lossy()),
        raw_upstream("raw", "")
    );
    s.write(
        &idp.issuer,
        "principal_claim = \"email\"\ngroups_claim = \"groups\"\nroles_claim = \"roles\"",
        &rest,
    );
    let resource = s.resource();
    let config = s.config();
    let gw = s.serve().await;
    let alice = idp.token("alice-svc", &resource, "mcp:read").await;
    let bob = idp.token("bob-svc", &resource, "mcp:read").await;
    let tools = gw.wait_for_tools_with(&alice, &["raw__"]).await;
    assert!(tools.iter().any(|t| t["name"] == "raw__echo_params"));

    let r = Modern::with_key(&gw.url, &alice)
        .call("raw__echo_params", json!({}))
        .await;
    assert!(r["result"].is_object(), "{r}");
    let r = Modern::with_key(&gw.url, &bob)
        .call("raw__echo_params", json!({}))
        .await;
    assert!(r["error"].is_object(), "bob is not in ops: {r}");
    // Tools bob may never call are not listed to him.
    let listed = Modern::with_key(&gw.url, &bob).list_tools().await;
    assert!(!listed.iter().any(|t| t["name"] == "raw__echo_params"), "{listed:?}");

    // The audit names the principals by their email claim.
    let (code, out, err) = run_portcullis(&["audit", "export", "--jsonl", "--config", &config], "", &[]).await;
    assert_eq!(code, 0, "{err}");
    let decisions: Vec<Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["record"]["kind"] == "decision")
        .collect();
    let who = |p: &str, d: &str| {
        decisions
            .iter()
            .any(|r| r["record"]["principal"] == p && r["record"]["decision"] == d)
    };
    assert!(who("alice@corp.test", "permit"), "{out}");
    assert!(who("bob@corp.test", "forbid"), "{out}");
}

#[tokio::test]
async fn the_clients_token_never_reaches_an_upstream() {
    let s = Setup::new();
    let idp = Idp::start(&s.resource(), &[]).await;
    let http_port = free_port();
    let mut upstream = Command::new("python3")
        .arg(repo_root().join("tests/peers/raw_http_server.py"))
        .arg(http_port.to_string())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let rest = format!(
        "{}\n[upstreams.web]\nurl = \"http://127.0.0.1:{http_port}/mcp\"\nheaders = {{ Authorization = \"Bearer upstream-own-credential\" }}\n",
        raw_upstream("raw", "")
    );
    s.write(&idp.issuer, "", &rest);
    let resource = s.resource();
    let gw = s.serve().await;
    let token = idp.token("alice-svc", &resource, "mcp:read mcp:write").await;
    gw.wait_for_tools_with(&token, &["raw__", "web__"]).await;
    let signature = token.rsplit('.').next().unwrap().to_owned();

    let client = Modern::with_key(&gw.url, &token);
    let seen = client.call("web__headers", json!({})).await;
    let headers: Value = serde_json::from_str(seen["result"]["content"][0]["text"].as_str().unwrap()).unwrap();
    assert_eq!(headers["authorization"], "Bearer upstream-own-credential", "{headers}");
    let echoed = client.call("raw__echo_params", json!({"x": 1})).await;
    let (init, sid) = legacy_session(&gw.url, &token).await;
    assert_eq!(init.status, 200);
    let legacy = legacy_call(&gw.url, &sid.unwrap(), &token, "web__headers", json!({})).await;
    for (what, text) in [
        ("the HTTP upstream", seen.to_string()),
        ("the stdio upstream", echoed.to_string()),
        ("the HTTP upstream (legacy)", legacy.body.clone()),
        ("the log", gw.log.lock().unwrap().join("\n")),
    ] {
        assert!(!text.contains(&signature), "the client's token reached {what}: {text}");
    }
    upstream.kill().await.unwrap();
}

/// The official TypeScript SDK's client, given only the gateway's URL and its own client
/// credentials, finds the provider through the 401 and the metadata, signs in, and works.
#[tokio::test]
async fn a_real_sdk_client_signs_in_by_itself() {
    let s = Setup::new();
    let idp = Idp::start(&s.resource(), &[]).await;
    s.write(&idp.issuer, "", &raw_upstream("raw", ""));
    let gw = s.serve().await;
    let out = Command::new(node22())
        .arg(repo_root().join("tests/peers/sdk_oauth_client.mjs"))
        .args([
            gw.url.as_str(),
            idp.issuer.as_str(),
            "alice-svc",
            "alice-svc-secret",
            "mcp:read",
            "raw__echo_params",
        ])
        .current_dir(repo_root().join("tests/peers"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert!(
        seen["tools"].as_array().unwrap().contains(&json!("raw__echo_params")),
        "{seen}"
    );
    assert_eq!(seen["isError"], false, "{seen}");
    assert_eq!(seen["token"], "obtained");
    // It asked the provider for a token once, after reading the gateway's metadata.
    assert_eq!(
        idp.lines().iter().filter(|l| l.as_str() == "token alice-svc").count(),
        1
    );
}

/// Opaque tokens are introspected at the issuer configured for them; a revoked one is refused
/// once its cached answer runs out (here at once).
#[tokio::test]
async fn opaque_tokens_are_introspected_and_revocation_holds() {
    let s = Setup::new();
    let idp = Idp::start(&s.resource(), &[]).await;
    let key = s.dir.path().join("master.key");
    let rest = format!(
        "[vault]\nkey_file = {}\n\n{}",
        toml_str(&key.to_string_lossy()),
        raw_upstream("raw", "")
    );
    s.write_issuer(
        &idp.issuer,
        "introspection_cache = \"0s\"\napi_keys = false",
        "introspection = { client_id = \"portcullis-rs\", client_secret = \"vault:idp_introspection\" }",
        &rest,
    );
    new_vault(
        std::path::Path::new(&s.config()),
        &key,
        &[("idp_introspection", "rs-secret")],
    )
    .await;
    let resource = s.resource();
    let gw = s.serve().await;

    let opaque = idp.token("opaque", &resource, "mcp:read").await;
    assert_eq!(opaque.split('.').count(), 1, "an opaque token: {opaque}");
    let tools = gw.wait_for_tools_with(&opaque, &["raw__"]).await;
    assert!(!tools.is_empty());
    // A JWT still works beside it; a made-up opaque string does not.
    let jwt = idp.token("alice-svc", &resource, "mcp:read").await;
    let r = Modern::with_key(&gw.url, &jwt).request("tools/list", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = Modern::with_key(&gw.url, "made-up-opaque-token")
        .request("tools/list", json!({}))
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    // With API keys off, something shaped like one is refused without showing it to the
    // provider.
    let asked = |idp: &Idp| {
        idp.lines()
            .iter()
            .filter(|l| l.starts_with("request POST /token/introspection"))
            .count()
    };
    let before = asked(&idp);
    assert!(before > 0, "the opaque tokens were introspected");
    let key = "pcl_AAAAAAAAAAAA_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let r = Modern::with_key(&gw.url, key).request("tools/list", json!({})).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(asked(&idp), before, "an API key was sent to the identity provider");
    // For another audience: refused.
    let other = idp.token("opaque", &format!("{}/other", idp.issuer), "mcp:read").await;
    let r = Modern::with_key(&gw.url, &other).request("tools/list", json!({})).await;
    assert_eq!(r.status, 401, "{}", r.body);

    // The client revokes its token: the next request is refused.
    let revoked = reqwest::Client::new()
        .post(format!("{}/token/revocation", idp.issuer))
        .basic_auth("opaque", Some("opaque-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={opaque}"))
        .send()
        .await
        .unwrap();
    assert!(revoked.status().is_success(), "{}", revoked.status());
    let r = Modern::with_key(&gw.url, &opaque)
        .request("tools/list", json!({}))
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let log = gw.log.lock().unwrap().join("\n");
    assert!(log.contains("not active"), "{log}");
    assert!(!log.contains(&opaque), "the token reached the log");
}

/// Opens a 2025-11-25 session's GET stream with `token`: whether it ends (its body completes)
/// within 6 s, rather than staying open.
async fn stream_ends(url: &str, sid: &str, token: &str) -> bool {
    let resp = reqwest::Client::new()
        .get(url)
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", sid)
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    tokio::time::timeout(Duration::from_secs(6), resp.text()).await.is_ok()
}

/// A stream that would outlive its token (a 2025-11-25 session's GET stream) ends when the
/// token expires; the client comes back with a fresh one.
#[tokio::test]
async fn a_long_lived_stream_ends_when_its_token_expires() {
    let s = Setup::new();
    let idp = Idp::start(&s.resource(), &[]).await;
    // A one-second token stays acceptable for a few seconds more (so this test does not race
    // its clock); its stream ends at `exp` itself.
    s.write(&idp.issuer, "clock_skew = \"5s\"", &raw_upstream("raw", ""));
    let resource = s.resource();
    let gw = s.serve().await;
    let long = idp.token("alice-svc", &resource, "mcp:read").await;
    gw.wait_for_tools_with(&long, &["raw__"]).await;

    // The same session, streamed with a long-lived token and with a one-second one.
    let (init, sid) = legacy_session(&gw.url, &long).await;
    assert_eq!(init.status, 200, "{}", init.body);
    let sid = sid.unwrap();
    let short = idp.token("short", &resource, "mcp:read").await;
    // `short` is another principal: it may not stream alice's session.
    let r = reqwest::Client::new()
        .get(&gw.url)
        .header("authorization", format!("Bearer {short}"))
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (init, short_sid) = legacy_session(&gw.url, &short).await;
    assert_eq!(init.status, 200, "{}", init.body);
    let short_sid = short_sid.unwrap();
    let (long_ended, short_ended) = tokio::join!(
        stream_ends(&gw.url, &sid, &long),
        stream_ends(&gw.url, &short_sid, &short)
    );
    assert!(short_ended, "the stream outlived its one-second token");
    assert!(!long_ended, "a stream with a valid token ended");
}

/// Portcullis as the client of a server that wants OAuth (here: a Portcullis gateway with
/// `auth = "oauth"`): the 401 is reported as what it is, with the scope and the metadata it
/// names, in both eras and with the era left to the probe (a 401 is not the sign of a legacy
/// server); with a token in a header, the same client gets in.
#[tokio::test]
async fn a_client_without_credentials_is_told_the_server_needs_authorization() {
    let s = Setup::new();
    let idp = Idp::start(&s.resource(), &[]).await;
    s.write(&idp.issuer, "", &raw_upstream("raw", ""));
    let resource = s.resource();
    let gw = s.serve().await;
    for era in ["auto", "modern", "legacy"] {
        let (code, out, err) = run_portcullis(&["call", "--url", &gw.url, "--era", era], "", &[]).await;
        assert_ne!(code, 0, "{era}: {out}");
        assert!(err.contains("needs authorization (HTTP 401"), "{era}: {err}");
        assert!(err.contains("scope `mcp:read`"), "{era}: {err}");
        assert!(
            err.contains("/.well-known/oauth-protected-resource/mcp"),
            "{era}: {err}"
        );
    }
    let token = idp.token("alice-svc", &resource, "mcp:read").await;
    gw.wait_for_tools_with(&token, &["raw__"]).await;
    let auth = format!("Authorization: Bearer {token}");
    let (code, out, err) = run_portcullis(&["call", "--url", &gw.url, "--header", &auth], "", &[]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("raw__echo_params"), "{out}");
}

/// `portcullis doctor` fetches each identity provider's keys and says how it went; a provider
/// it cannot reach fails the check.
#[tokio::test]
async fn doctor_checks_the_identity_providers() {
    let s = Setup::new();
    let idp = Idp::start(&s.resource(), &["--alg", "ES256"]).await;
    s.write(&idp.issuer, "", "");
    let (code, out, err) = run_portcullis(&["doctor", "--config", &s.config()], "", &[]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!(
            "identity provider `corp` ({}): 1 signing key(s) loaded",
            idp.issuer
        )),
        "{out}"
    );
    assert_eq!(idp.key_fetches(), 1);
    // A provider nobody answers for.
    let dead = format!("http://127.0.0.1:{}", free_port());
    s.write(&dead, "", "");
    let (code, out, _) = run_portcullis(&["doctor", "--config", &s.config(), "--json"], "", &[]).await;
    assert_eq!(code, 1, "{out}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["gateway.oauth.issuers.corp"]["issuer"], dead.as_str());
    assert!(v["gateway.oauth.issuers.corp"]["error"].is_string(), "{v}");
}
