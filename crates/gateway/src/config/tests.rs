use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/p/portcullis.toml"))
}

#[test]
fn the_issue_example_loads() {
    let c = parse(
        r#"
[gateway]
listen = "127.0.0.1:8787"
data_dir = "./.portcullis"

[upstreams.everything]
command = "npx"
args = ["-y", "@modelcontextprotocol/server-everything"]
env = { LOG_LEVEL = "info" }

[upstreams.remote]
url = "http://127.0.0.1:3001/mcp"
headers = { X-Team = "a" }
"#,
    )
    .unwrap();
    assert_eq!(c.gateway.listen.to_string(), "127.0.0.1:8787");
    assert_eq!(c.gateway.data_dir, Path::new("/etc/p/./.portcullis"));
    let names: Vec<_> = c
        .upstreams
        .iter()
        .map(|u| (u.name.as_str(), u.prefix.as_str()))
        .collect();
    assert_eq!(names, [("everything", "everything"), ("remote", "remote")]);
    assert!(matches!(&c.upstreams[0].transport, Transport::Stdio { command, .. } if command == "npx"));
    assert!(matches!(&c.upstreams[1].transport, Transport::Http { headers, .. } if headers["X-Team"] == "a"));
}

/// Each bad config names the key and the line, and never loads half-way.
#[test]
fn errors_name_key_and_line() {
    let cases: &[(&str, &str)] = &[
        (
            "[gateway]\nlisten = \"nowhere\"\n",
            "portcullis.toml:2: `gateway.listen`",
        ),
        (
            "[upstreams.a]\ncommand = \"\"\n",
            "portcullis.toml:2: `upstreams.a.command`: must not be empty",
        ),
        (
            "[upstreams.a]\nurl = \"ftp://x\"\n",
            "`upstreams.a.url`: must be an http:// or https:// URL",
        ),
        ("[upstreams.a]\nurl = \"http://x\"\ncommand = \"y\"\n", "not both"),
        (
            "[upstreams.a]\nargs = []\n",
            "`upstreams.a`: needs `command` (stdio) or `url` (HTTP)",
        ),
        (
            "[upstreams.a]\ncommand = \"x\"\nera = \"future\"\n",
            "portcullis.toml:3: `upstreams.a.era`",
        ),
        (
            "[upstreams.a]\ncommand = \"x\"\ncall_timeout = \"soon\"\n",
            "`upstreams.a.call_timeout`",
        ),
        (
            "[upstreams.a]\ncommand = \"x\"\nprefix = \"\"\n[upstreams.b]\ncommand = \"y\"\nprefix = \"\"\n",
            "`upstreams.b.prefix`: prefix `` is also used by upstream `a`",
        ),
        (
            "[upstreams.a]\ncommand = \"x\"\nprefix = \"a.b\"\n",
            "`upstreams.a.prefix`",
        ),
        (
            "[upstreams.a]\ncommand = \"x\"\ncolour = \"red\"\n",
            "unknown field `colour`",
        ),
        (
            "[gateway]\nmax_json_depth = 1\n",
            "`gateway.max_json_depth`: must be between 4 and 512",
        ),
        (
            "[upstreams.a]\nurl = \"https://x\"\nheaders = { \"bad header\" = \"v\" }\n",
            "not a valid header name",
        ),
        // Clear text beyond loopback: credentials and every call on the wire.
        (
            "[upstreams.a]\nurl = \"http://mcp.example.com/mcp\"\n",
            "portcullis.toml:2: `upstreams.a.url`: plain http:// to a host that is not loopback",
        ),
        (
            "[upstreams.a]\nurl = \"http://10.0.0.7:8080/mcp\"\n",
            "set `insecure_http = true` for a network you trust",
        ),
        // Loopback only in name: the host is what follows the `@`, or more than `localhost`.
        (
            "[upstreams.a]\nurl = \"http://127.0.0.1@mcp.example.com/mcp\"\n",
            "plain http:// to a host that is not loopback",
        ),
        (
            "[upstreams.a]\nurl = \"http://localhost.mcp.example.com/mcp\"\n",
            "plain http:// to a host that is not loopback",
        ),
        (
            "[upstreams.a]\nurl = \"https://x\"\ninsecure_http = true\n",
            "`upstreams.a.insecure_http`: applies to http:// URLs only",
        ),
        (
            "[upstreams.a]\ncommand = \"x\"\ninsecure_http = true\n",
            "`upstreams.a.insecure_http`: applies to HTTP upstreams only",
        ),
    ];
    for (text, want) in cases {
        let err = parse(text).expect_err(text).to_string();
        assert!(err.contains(want), "{text:?}\n got: {err}\nwant: {want}");
    }
}

#[test]
fn plain_http_is_for_loopback_unless_allowed() {
    for url in [
        "http://127.0.0.1:3001/mcp",
        "http://localhost:3001/mcp",
        "http://[::1]:3001/mcp",
    ] {
        parse(&format!("[upstreams.a]\nurl = \"{url}\"\n")).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
    parse("[upstreams.a]\nurl = \"http://10.0.0.7:8080/mcp\"\ninsecure_http = true\n").unwrap();
}

#[test]
fn durations() {
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
    assert_eq!(parse_duration("2"), None);
    assert_eq!(parse_duration("s"), None);
}

#[test]
fn pins_and_rate_limits() {
    let c = parse(
        r#"
[pins]
trust_on_first_use = false

[rate]
calls = 600
window = "1m"

[upstreams.mail]
command = "x"
rate = { bytes = 1000000, window = "1h" }

[upstreams.mail.tools.send_message]
effect = "send"
rate = { calls = 5, bytes = 100, window = "24h" }
"#,
    )
    .unwrap();
    assert!(!c.pins.trust_on_first_use);
    let minute = Duration::from_secs(60);
    assert_eq!(
        c.rate,
        Some(Rate {
            calls: Some(600),
            bytes: None,
            window: minute
        })
    );
    let mail = &c.upstreams[0];
    assert_eq!(mail.rate.map(|r| (r.calls, r.bytes)), Some((None, Some(1_000_000))));
    let send = mail.tool_rates["send_message"];
    assert_eq!(
        (send.calls, send.bytes, send.window),
        (Some(5), Some(100), Duration::from_secs(86_400))
    );
    assert_eq!(mail.tool_effects["send_message"], Effect::Send);
    // Defaults: first use is trusted, nothing is limited.
    let c = parse("[upstreams.a]\ncommand = \"x\"\n").unwrap();
    assert!(c.pins.trust_on_first_use);
    assert!(c.rate.is_none() && c.upstreams[0].rate.is_none() && c.upstreams[0].tool_rates.is_empty());
}

#[test]
fn bad_limits_name_their_key() {
    let cases: &[(&str, &str)] = &[
        ("[rate]\ncalls = 1\nwindow = \"0s\"\n", "`rate.window`"),
        ("[rate]\ncalls = 1\nwindow = \"200h\"\n", "between 1s and 168h"),
        (
            "[upstreams.a]\ncommand = \"x\"\nrate = { bytes = 0, window = \"1m\" }\n",
            "portcullis.toml:3: `upstreams.a.rate.bytes`: must be at least 1",
        ),
        (
            "[upstreams.a]\ncommand = \"x\"\n[upstreams.a.tools.t]\nrate = { window = \"1m\" }\n",
            "`upstreams.a.tools.t.rate`: needs `calls`, `bytes`, or both",
        ),
        ("[pins]\ntrust = true\n", "unknown field `trust`"),
    ];
    for (text, want) in cases {
        let err = parse(text).expect_err(text).to_string();
        assert!(err.contains(want), "{text:?}\n got: {err}\nwant: {want}");
    }
}

#[test]
fn output_labels_and_flow() {
    let c = parse(
        r#"
[flow]
window = "10m"
max_values = 5000
trusted_destinations = ["Alice@Corp.test", "*@corp.test"]

[upstreams.mail]
command = "x"
output = "untrusted"
sanitize = true
spotlight = true

[upstreams.mail.tools.list_folders]
output = "trusted"

[upstreams.mail.tools.read_message]
private = true
"#,
    )
    .unwrap();
    assert_eq!(c.flow.window, Duration::from_secs(600));
    assert_eq!(c.flow.max_values, 5000);
    assert_eq!(c.flow.trusted_destinations, ["alice@corp.test", "*@corp.test"]);
    let mail = &c.upstreams[0];
    assert_eq!(mail.output.trust, Some(Integrity::Untrusted));
    assert!(mail.sanitize && mail.spotlight);
    assert_eq!(mail.tool_outputs["list_folders"].trust, Some(Integrity::Trusted));
    assert_eq!(
        mail.tool_outputs["read_message"],
        OutputLabel {
            trust: None,
            private: Some(true)
        }
    );
    // Defaults: 30 minutes, 20 000 values, labels from annotations, no rewriting.
    let c = parse("[upstreams.a]\ncommand = \"x\"\n").unwrap();
    assert_eq!(c.flow.window, Duration::from_secs(1800));
    assert_eq!(c.flow.max_values, 20_000);
    assert_eq!(c.upstreams[0].output, OutputLabel::default());
    assert!(!c.upstreams[0].sanitize && !c.upstreams[0].spotlight);
    for (text, want) in [
        (
            "[upstreams.a]\ncommand = \"x\"\noutput = \"maybe\"\n",
            "portcullis.toml:3: `upstreams.a.output`: must be `trusted` or `untrusted`, got `maybe`",
        ),
        ("[flow]\nmax_values = 1\n", "`flow.max_values`: must be between 100"),
        (
            "[flow]\ntrusted_destinations = [\"*\"]\n",
            "`flow.trusted_destinations`: `*` is not a destination pattern",
        ),
        (
            "[flow]\ntrusted_destinations = [\"*@\"]\n",
            "`flow.trusted_destinations`: `*@` is not a destination pattern",
        ),
    ] {
        let err = parse(text).expect_err(text).to_string();
        assert!(err.contains(want), "{text:?}\n got: {err}\nwant: {want}");
    }
}

#[test]
fn vault_and_anomaly() {
    let c = parse(
        r#"
[vault]
key_file = "keys/master.key"

[anomaly]
on_anomaly = "suspend"
webhook = "http://127.0.0.1:9000/hook"
factor = 3.0
calls_per_hour = 50

[upstreams.mail]
command = "x"
env = { IMAP_PASSWORD = "vault:mail_password", LOG = "info" }
"#,
    )
    .unwrap();
    assert_eq!(c.vault, KeySource::File(PathBuf::from("/etc/p/keys/master.key")));
    assert!(c.anomaly.suspend);
    assert_eq!(c.anomaly.thresholds.factor, 3.0);
    assert_eq!(c.anomaly.thresholds.calls_per_hour, 50);
    assert_eq!(
        c.anomaly.webhook.as_ref().map(|u| u.as_str()),
        Some("http://127.0.0.1:9000/hook")
    );
    // Defaults: the key from PORTCULLIS_MASTER_KEY, alerts only.
    let c = parse("").unwrap();
    assert_eq!(c.vault, KeySource::Env);
    assert!(!c.anomaly.suspend && c.anomaly.webhook.is_none());
    assert_eq!(parse("[vault]\nkeyring = true\n").unwrap().vault, KeySource::Keyring);
    for (text, want) in [
        ("[vault]\nkey_file = \"k\"\npassphrase = true\n", "not both"),
        (
            "[vault]\nkey_file = \"k\"\nkeyring = true\n",
            "`vault.keyring`: give one of `key_file`, `passphrase`, `keyring`",
        ),
        ("[anomaly]\non_anomaly = \"panic\"\n", "must be `alert` or `suspend`"),
        (
            "[anomaly]\nfactor = 0.5\n",
            "`anomaly.factor`: must be between 1 and 1000",
        ),
        ("[anomaly]\nwebhook = \"ftp://x\"\n", "`anomaly.webhook`"),
        (
            "[upstreams.a]\ncommand = \"x\"\nenv = { T = \"vault:bad name\" }\n",
            "`upstreams.a.env.T`: `vault:bad name` is not a secret name",
        ),
    ] {
        let err = parse(text).expect_err(text).to_string();
        assert!(err.contains(want), "{text:?}\n got: {err}\nwant: {want}");
    }
}

#[test]
fn oauth_providers_and_upstreams() {
    let c = parse(
        r#"
[oauth.google]
client_id = "123.apps.googleusercontent.com"
client_secret = "vault:google_client"

[oauth.corp]
issuer = "https://login.example.com/"
client_id = "portcullis"
scopes = ["offline_access"]

[upstreams.mail]
command = "portcullis-mail"
[upstreams.mail.oauth]
provider = "google"
env = "GMAIL_ACCESS_TOKEN"

[upstreams.crm]
url = "https://crm.example.com/mcp"
[upstreams.crm.oauth]
provider = "corp"
scopes = { "crm.read" = ["search"] }
"#,
    )
    .unwrap();
    let g = &c.oauth["google"];
    // The preset: Google's endpoints and offline access.
    assert!(matches!(&g.endpoints, oauth::Endpoints::Fixed { token, .. } if token.as_str() == oauth::google::TOKEN));
    assert_eq!(g.params["access_type"], "offline");
    assert_eq!(g.client_secret.as_deref(), Some("google_client"));
    let mail = c.upstreams[0].oauth.as_ref().unwrap();
    assert_eq!(mail.delivery, oauth::Delivery::Env("GMAIL_ACCESS_TOKEN".into()));
    // The preset's scopes for portcullis-mail's tools: never full access.
    assert_eq!(
        mail.tool_scopes[oauth::google::SEND],
        ["send_message", "reply", "forward"]
    );
    assert!(!mail.tool_scopes.contains_key("https://mail.google.com/"));
    let crm = c.upstreams[1].oauth.as_ref().unwrap();
    assert_eq!(crm.delivery, oauth::Delivery::Header("Authorization".into()));
    assert!(
        matches!(&c.oauth["corp"].endpoints, oauth::Endpoints::Issuer(u) if u.host_str() == Some("login.example.com"))
    );

    let up = "[upstreams.a]\ncommand = \"x\"\n[upstreams.a.oauth]\n";
    for (text, want) in [
        (
            format!("{up}provider = \"nope\"\nenv = \"T\"\n"),
            "`upstreams.a.oauth.provider`: no provider `nope`",
        ),
        (
            format!(
                "[oauth.p]\nissuer = \"https://i.example\"\nclient_id = \"c\"\n{up}provider = \"p\"\nscopes = {{}}\n"
            ),
            "`upstreams.a.oauth.env`: a stdio upstream receives its access token in an environment variable",
        ),
        (
            format!(
                "[oauth.p]\nissuer = \"https://i.example\"\nclient_id = \"c\"\n{up}provider = \"p\"\nenv = \"T\"\n"
            ),
            "`upstreams.a.oauth.scopes`: name the scope each tool needs",
        ),
        (
            "[oauth.p]\nissuer = \"http://login.example.com\"\nclient_id = \"c\"\n".into(),
            "`oauth.p.issuer`: must be an https:// URL (http:// only for 127.0.0.1",
        ),
        (
            "[oauth.p]\nauthorization_url = \"https://login.example.com/auth\"\ntoken_url = \"https://169.254.169.254/token\"\nclient_id = \"c\"\n".into(),
            "`oauth.p.token_url`: `169.254.169.254` is a link-local address (where cloud metadata services answer): the gateway fetches only from public addresses, this machine, or networks named in `[gateway] fetch_private`",
        ),
        (
            "[oauth.p]\nissuer = \"https://10.20.30.40/realms/corp\"\nclient_id = \"c\"\n".into(),
            "`oauth.p.issuer`: `10.20.30.40` is a private address",
        ),
        (
            "[oauth.p]\nissuer = \"https://i.example\"\nclient_id = \"c\"\nclient_secret = \"hunter2\"\n".into(),
            "`oauth.p.client_secret`: must be a vault reference",
        ),
        (
            "[oauth.p]\nissuer = \"https://i.example\"\nclient_id = \"c\"\nparams = { state = \"x\" }\n".into(),
            "`oauth.p.params.state`: is set by Portcullis itself",
        ),
        (
            "[oauth.p]\nclient_id = \"c\"\n".into(),
            "`oauth.p`: needs `issuer`, or `authorization_url` and `token_url`",
        ),
        ("[oauth.google]\n".into(), "`oauth.google.client_id`: is required"),
        (
            "[oauth.p]\nissuer = \"https://i.example\"\nclient_id = \"c\"\n[upstreams.w]\nurl = \"https://w.example/mcp\"\n[upstreams.w.oauth]\nprovider = \"p\"\nenv = \"T\"\nscopes = {}\n".into(),
            "`upstreams.w.oauth.env`: an HTTP upstream receives its token in a header",
        ),
    ] {
        let err = parse(&text).expect_err(&text).to_string();
        assert!(err.contains(want), "{text:?}\n got: {err}\nwant: {want}");
    }
}

#[test]
fn url_credentials_may_come_from_the_vault_and_are_never_displayed() {
    let c = parse("[upstreams.w]\nurl = \"https://bot:vault%3Aw_pass@w.example/mcp?key=vault:w_key&x=1\"\n").unwrap();
    let refs = crate::config::refs::references(&c.upstreams[0]);
    let got: Vec<(crate::config::refs::Slot, &str)> = refs.iter().map(|r| (r.slot.clone(), r.name.as_str())).collect();
    assert_eq!(
        got,
        [
            (crate::config::refs::Slot::UrlPassword, "w_pass"),
            (crate::config::refs::Slot::UrlQuery("key".into()), "w_key")
        ]
    );
    let err = parse("[upstreams.w]\nurl = \"https://w.example/mcp?key=vault:bad%20name\"\n")
        .expect_err("bad name")
        .to_string();
    assert!(err.contains("`vault:bad name` is not a secret name"), "{err}");
    let mut shown = c.upstreams[0].clone();
    if let Transport::Http { url, .. } = &mut shown.transport {
        url.set_password(Some("resolved-secret")).unwrap();
    }
    assert!(!shown.transport.to_string().contains("resolved-secret"));
}

mod prop {
    //! The config loader reads a file a person wrote, often by hand and half-finished: any
    //! text, and any mix of the real sections and keys with values of any type, loads or is
    //! refused with a message that names where, never a panic (issue 19, fuzzing wider).

    use proptest::prelude::*;

    use super::parse;

    const SECTIONS: &[&str] = &[
        "[gateway]",
        "[policy]",
        "[approvals]",
        "[rate]",
        "[pins]",
        "[flow]",
        "[anomaly]",
        "[telemetry]",
        "[vault]",
        "[upstreams.a]",
        "[upstreams.a.rate]",
        "[upstreams.a.sandbox]",
        "[upstreams.a.oauth]",
        "[upstreams.a.tools.t]",
        "[upstreams.b]",
        "[methods.\"acme/x\"]",
        "[oauth.corp]",
        "[[upstreams]]",
    ];
    const KEYS: &[&str] = &[
        "listen",
        "data_dir",
        "command",
        "args",
        "env",
        "url",
        "headers",
        "prefix",
        "call_timeout",
        "start_timeout",
        "max_frame_bytes",
        "max_concurrent_calls",
        "profile",
        "files",
        "ask",
        "calls",
        "window",
        "bytes",
        "network",
        "paths",
        "effect",
        "upstream",
        "label",
        "forward_roots",
        "hold_on",
        "trust_on_first_use",
        "auth",
        "max_values",
        "on_anomaly",
        "issuer",
        "scopes",
        "inherit_env",
        "cwd",
        "memory",
        "era",
        "input_timeout",
        "insecure_http",
    ];

    fn value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            "\"[ -~]{0,16}\"",
            Just("\"127.0.0.1:0\"".to_owned()),
            Just("\"http://127.0.0.1:1/mcp\"".to_owned()),
            Just("\"10s\"".to_owned()),
            Just("\"soon\"".to_owned()),
            Just("\"vault:X\"".to_owned()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            Just("1e400".to_owned()),
            Just("nan".to_owned()),
            Just("\"\\u0000\"".to_owned()),
        ];
        leaf.prop_recursive(2, 8, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
                prop::collection::vec(("[a-z_]{1,6}", inner), 0..3).prop_map(|kv| format!(
                    "{{ {} }}",
                    kv.iter()
                        .map(|(k, v)| format!("{k} = {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ]
        })
    }

    fn line() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(SECTIONS).prop_map(str::to_owned),
            (prop::sample::select(KEYS), value()).prop_map(|(k, v)| format!("{k} = {v}")),
            "\\PC{0,24}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_mix_of_sections_and_keys_loads_or_is_refused(lines in prop::collection::vec(line(), 0..16)) {
            if let Err(e) = parse(&lines.join("\n")) {
                prop_assert!(!e.to_string().is_empty());
            }
        }

        #[test]
        fn any_text_loads_or_is_refused(text in "\\PC{0,256}") {
            if let Err(e) = parse(&text) {
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}

#[test]
fn signed_in_clients() {
    let base = |oauth: &str| {
        format!(
            "[gateway]\nauth = \"oauth\"\n\n[gateway.oauth]\n{oauth}\n\n[gateway.oauth.issuers.corp]\nissuer = \"https://login.example.com/realms/corp\"\n"
        )
    };
    let c = parse(&base(
        "resource = \"https://MCP.example.com/team/mcp/\"\naudiences = [\"api://portcullis\"]\nrequired_scopes = [\"mcp:read\"]\ngroups_claim = \"realm_access.groups\"\n[gateway.oauth.step_up]\nsend = [\"mcp:write\", \"mcp:admin\"]",
    ))
    .unwrap();
    let ClientAuth::OAuth(b) = &c.gateway.auth else {
        panic!("{:?}", c.gateway.auth)
    };
    assert_eq!(b.resource, "https://mcp.example.com/team/mcp");
    assert_eq!(b.resource_path, "/team/mcp");
    assert_eq!(b.audiences, ["https://mcp.example.com/team/mcp", "api://portcullis"]);
    assert_eq!(b.principal_claim, "sub");
    assert_eq!(b.groups_claim.as_deref(), Some("realm_access.groups"));
    assert_eq!(b.step_up[&Effect::Send], ["mcp:write", "mcp:admin"]);
    assert_eq!(b.issuers[0].issuer, "https://login.example.com/realms/corp");
    assert_eq!(b.clock_skew, Duration::from_secs(30));
    assert!(b.api_keys && c.gateway.auth.api_keys());
    assert!(
        !b.algorithms
            .iter()
            .any(|a| a.family() == jsonwebtoken::AlgorithmFamily::Hmac)
    );

    for (text, expect) in [
        ("[gateway]\nauth = \"oauth\"\n".to_owned(), "needs a `[gateway.oauth]` table"),
        (
            "[gateway]\nauth = \"api-key\"\n[gateway.oauth]\nresource = \"https://x/mcp\"\n".to_owned(),
            "`gateway.oauth`: is used only with `auth = \"oauth\"`",
        ),
        (base(""), "`gateway.oauth.resource`: is required"),
        (base("resource = \"https://x.example/mcp#f\""), "no query and no fragment"),
        (base("resource = \"http://mcp.example.com/mcp\""), "must be an https:// URL"),
        (
            base("resource = \"https://x.example/mcp\"\nscopes_supported = [\"offline_access\"]"),
            "`offline_access`",
        ),
        (
            base("resource = \"https://x.example/mcp\"\nrequired_scopes = [\"a b\"]"),
            "is not a scope",
        ),
        (
            base("resource = \"https://x.example/mcp\"\nalgorithms = [\"HS256\"]"),
            "`HS256` is not accepted",
        ),
        (
            base("resource = \"https://x.example/mcp\"\nalgorithms = [\"none\"]"),
            "`none` is not accepted",
        ),
        (base("resource = \"https://x.example/mcp\"\nclock_skew = \"10m\""), "at most `5m`"),
        (
            base("resource = \"https://x.example/mcp\"\n[gateway.oauth.step_up]\nexplode = [\"x\"]"),
            "is not an effect",
        ),
        (
            base("resource = \"https://x.example/mcp\"\nprincipal_claim = \"a..b\""),
            "`gateway.oauth.principal_claim`",
        ),
        (
            "[gateway]\nauth = \"oauth\"\n[gateway.oauth]\nresource = \"https://x.example/mcp\"\n".to_owned(),
            "`gateway.oauth.issuers`: name at least one",
        ),
        (
            "[gateway]\nauth = \"oauth\"\n[gateway.oauth]\nresource = \"https://x.example/mcp\"\n[gateway.oauth.issuers.a]\nissuer = \"https://a.example\"\n[gateway.oauth.issuers.b]\nissuer = \"https://b.example\"\nprincipal_prefix = \"b.\"\n".to_owned(),
            "`gateway.oauth.issuers.a.principal_prefix`: is required with more than one issuer",
        ),
        (
            "[gateway]\nauth = \"oauth\"\n[gateway.oauth]\nresource = \"https://x.example/mcp\"\n[gateway.oauth.issuers.a]\nissuer = \"https://169.254.169.254/\"\n".to_owned(),
            "`gateway.oauth.issuers.a.issuer`",
        ),
        (
            "[gateway]\nauth = \"oauth\"\n[gateway.oauth]\nresource = \"https://x.example/mcp\"\n[gateway.oauth.issuers.a]\nissuer = \"http://idp.example.com\"\n".to_owned(),
            "must be an https:// URL",
        ),
        (
            "[gateway]\nauth = \"kerberos\"\n".to_owned(),
            "must be `none`, `api-key` or `oauth`",
        ),
        (
            "[gateway]\nauth = \"oauth\"\n[gateway.oauth]\nresource = \"https://x.example/mcp\"\n[gateway.oauth.issuers.a]\nissuer = \"https://a.example\"\nintrospection = { client_id = \"gw\", client_secret = \"plain-secret\" }\n".to_owned(),
            "`gateway.oauth.issuers.a.introspection.client_secret`: must be a vault reference",
        ),
        (
            "[gateway]\nauth = \"oauth\"\n[gateway.oauth]\nresource = \"https://x.example/mcp\"\n[gateway.oauth.issuers.a]\nissuer = \"https://a.example\"\nprincipal_prefix = \"a.\"\nintrospection = { client_id = \"gw\", client_secret = \"vault:a\" }\n[gateway.oauth.issuers.b]\nissuer = \"https://b.example\"\nprincipal_prefix = \"b.\"\nintrospection = { client_id = \"gw\", client_secret = \"vault:b\" }\n".to_owned(),
            "only one issuer may introspect",
        ),
        (
            base("resource = \"https://x.example/mcp\"\nintrospection_cache = \"1h\""),
            "`gateway.oauth.introspection_cache`",
        ),
    ] {
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains(expect), "{text}\n=> {e}");
    }
}

#[test]
fn private_networks_to_fetch_from_are_named_and_never_hold_metadata() {
    let c = parse(
        "[gateway]\nfetch_private = [\"10.20.0.0/16\", \"fd12::1\"]\nauth = \"oauth\"\n[gateway.oauth]\nresource = \"https://mcp.example.com/mcp\"\n[gateway.oauth.issuers.corp]\nissuer = \"https://10.20.0.5/realms/corp\"\n",
    )
    .unwrap();
    assert_eq!(c.gateway.fetch_private.len(), 2);
    assert_eq!(c.gateway.fetch_private[1].to_string(), "fd12::1/128");
    // Without the entry the same issuer is refused.
    let e = parse(
        "[gateway]\nauth = \"oauth\"\n[gateway.oauth]\nresource = \"https://mcp.example.com/mcp\"\n[gateway.oauth.issuers.corp]\nissuer = \"https://10.20.0.5/realms/corp\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("fetch_private"), "{e}");
    for (bad, expect) in [
        ("169.254.0.0/16", "cloud metadata"),
        ("0.0.0.0/0", "cloud metadata"),
        ("fd00::/8", "cloud metadata"),
        ("corp", "is not a network"),
    ] {
        let e = parse(&format!("[gateway]\nfetch_private = [\"{bad}\"]\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(expect), "{bad}: {e}");
    }
}
