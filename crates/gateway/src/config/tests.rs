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
            "[upstreams.a]\nurl = \"http://x\"\nheaders = { \"bad header\" = \"v\" }\n",
            "not a valid header name",
        ),
    ];
    for (text, want) in cases {
        let err = parse(text).expect_err(text).to_string();
        assert!(err.contains(want), "{text:?}\n got: {err}\nwant: {want}");
    }
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
    for (text, want) in [
        ("[vault]\nkey_file = \"k\"\npassphrase = true\n", "not both"),
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
