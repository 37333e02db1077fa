//! Configuration: a raw TOML shape that denies unknown keys, converted by one function into the
//! typed configuration. Every error names the key path and the line it is on.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use portcullis_core::Limits;
use portcullis_core::anomaly::Thresholds;
use portcullis_core::label::Integrity;
use portcullis_core::rate::Rate;
use portcullis_policy::{Effect, PolicyEngine, Profile};
use portcullis_vault::KeySource;

/// The configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has the wrong shape.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A policy file cannot be read, or a policy is invalid against the schema.
    #[error("{path}: policy: {message}")]
    Policy {
        /// The configuration file.
        path: PathBuf,
        /// Every problem, each naming its policy file, line and column.
        message: String,
    },
    /// A value is well-formed TOML but not acceptable.
    #[error("{path}:{line}: `{key}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The 1-based line of the offending value.
        line: usize,
        /// The dotted key path.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// The whole configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Gateway-wide settings.
    pub gateway: GatewayConfig,
    /// Upstream servers, in file order.
    pub upstreams: Vec<UpstreamConfig>,
    /// Which policies judge each call.
    pub policy: PolicyConfig,
    /// How tool definitions are pinned.
    pub pins: PinsConfig,
    /// The limit on every principal's calls across all upstreams (`[rate]`).
    pub rate: Option<Rate>,
    /// Session taint and argument provenance (`[flow]`).
    pub flow: FlowConfig,
    /// Where the vault's master key comes from (`[vault]`).
    pub vault: KeySource,
    /// Credential misuse detection (`[anomaly]`).
    pub anomaly: AnomalyConfig,
    /// OAuth providers for upstream services (`[oauth.NAME]`), by name.
    pub oauth: BTreeMap<String, oauth::Provider>,
    /// The audit log (`[audit]`).
    pub audit: AuditConfig,
    /// Approvals of single calls (`[approvals]`).
    pub approvals: ApprovalsConfig,
    /// The admin web page (`[admin]`): where `portcullis serve` serves it, if anywhere.
    pub admin: Option<SocketAddr>,
    /// OpenTelemetry trace export (`[telemetry]`), off unless an endpoint is set.
    pub telemetry: Option<TelemetryConfig>,
    /// Methods beyond the spec's that clients may call, each planned to one upstream
    /// (`[methods."vendor/name"]`); any other unknown method is refused.
    pub methods: BTreeMap<String, MethodConfig>,
    /// Where the configuration was read from (relative paths resolve against its directory).
    pub source: PathBuf,
}

/// Gateway-wide settings.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The Streamable HTTP listen address.
    pub listen: SocketAddr,
    /// Where embedded state lives.
    pub data_dir: PathBuf,
    /// Extra `Origin` values accepted besides loopback ones.
    pub allowed_origins: Vec<String>,
    /// Extra `Host` values accepted besides loopback ones.
    pub allowed_hosts: Vec<String>,
    /// Frame size and JSON depth limits.
    pub limits: Limits,
    /// Concurrent requests one client may have in flight.
    pub max_concurrent_calls: usize,
    /// Default per-call timeout toward upstreams.
    pub call_timeout: Duration,
    /// Items per page of merged lists.
    pub page_size: usize,
    /// How long a parked cross-era exchange waits for the client's retry.
    pub input_timeout: Duration,
    /// How long an HTTP client may take to send a request's headers.
    pub header_timeout: Duration,
    /// How long an HTTP client may take to send a request's body.
    pub body_timeout: Duration,
    /// How HTTP clients authenticate.
    pub auth: ClientAuth,
    /// Where the stdio upstreams' private folders (home, temporary files) live.
    pub sandbox_dir: PathBuf,
    /// Private networks the gateway may fetch from on its own behalf (an identity provider on
    /// the company network), never the cloud metadata addresses (`fetch_private`).
    pub fetch_private: Vec<ipnet::IpNet>,
}

/// A method beyond the spec's that config lets clients call (`[methods."vendor/name"]`): it
/// goes to one upstream, judged as Cedar action `call_method` on a resource named after the
/// method, with this effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MethodConfig {
    /// The upstream, by config position.
    pub upstream: usize,
    /// What the method does, for policy and the flow rule.
    pub effect: Effect,
}

/// How HTTP clients authenticate (`[gateway] auth`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Not at all: every client is the local user (loopback use).
    None,
    /// `Authorization: Bearer pcl_…` API keys made with `portcullis keys add`.
    ApiKey,
    /// Access tokens of the identity providers in `[gateway.oauth]` (and API keys, unless that
    /// table turns them off).
    OAuth(Arc<bearer::BearerConfig>),
}

impl ClientAuth {
    /// Whether `Bearer pcl_…` API keys are accepted.
    pub fn api_keys(&self) -> bool {
        match self {
            ClientAuth::None => false,
            ClientAuth::ApiKey => true,
            ClientAuth::OAuth(b) => b.api_keys,
        }
    }
}

/// Which policies judge each call: a built-in profile, and Cedar files added to it, loaded
/// and validated with the rest of the configuration.
#[derive(Clone, Debug)]
pub struct PolicyConfig {
    /// The built-in profile (`default` unless config names another; `none` for only the files).
    pub profile: Option<Profile>,
    /// Cedar policy files, resolved against the config file's folder.
    pub files: Vec<PathBuf>,
    /// The validated policy set.
    pub engine: Arc<PolicyEngine>,
}

/// Session taint and argument provenance (`[flow]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowConfig {
    /// How long a stateless (2026-07-28) client's session lasts without a request.
    pub window: Duration,
    /// Most distinctive values remembered per session for argument provenance.
    pub max_values: usize,
    /// Destinations that are the person's own context whatever output named them (their
    /// address, their company's domain): `alice@corp.test`, `*@corp.test`, `corp.test`,
    /// `*.corp.test`, a URL prefix. Lowercase.
    pub trusted_destinations: Vec<String>,
}

/// How an upstream's (or one tool's) output is labelled: `None` leaves the decision to what
/// comes next (the tool's config, then the upstream's, then the annotations).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutputLabel {
    /// `output = "trusted" | "untrusted"`.
    pub trust: Option<Integrity>,
    /// `private = true | false`.
    pub private: Option<bool>,
}

/// Credential misuse detection (`[anomaly]`).
#[derive(Clone, Debug, PartialEq)]
pub struct AnomalyConfig {
    /// When a use is far outside a credential's baseline.
    pub thresholds: Thresholds,
    /// Suspend the credential on an anomaly (`on_anomaly = "suspend"`), not only alert.
    pub suspend: bool,
    /// Where alerts are POSTed as JSON, if anywhere.
    pub webhook: Option<reqwest::Url>,
}

/// OpenTelemetry trace export (`[telemetry]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP endpoint (traces go to `<endpoint>/v1/traces`, protobuf).
    pub otlp_endpoint: reqwest::Url,
    /// `service.name` of the spans.
    pub service_name: String,
}

/// Approvals of single calls (`[approvals]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApprovalsConfig {
    /// Whether to ask a person at all; `false` (a gateway nobody watches): calls that need
    /// approval are refused at once.
    pub ask: bool,
    /// How long a call waits for a person before it is refused.
    pub timeout: Duration,
}

/// The audit log (`[audit]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditConfig {
    /// A signed checkpoint whenever the chain passes a multiple of this many records (and at
    /// shutdown).
    pub checkpoint_every: u64,
}

/// How tool definitions are pinned (`[pins]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PinsConfig {
    /// Trust a tool never seen before, and pin it; `false` holds new tools until approved.
    pub trust_on_first_use: bool,
    /// A new tool whose definition has a scanner finding at or above this severity is held
    /// until approved, like a changed one (`None`: `hold_on = "never"`).
    pub hold_on: Option<portcullis_core::scan::Severity>,
}

/// How an upstream is reached.
#[derive(Clone, Debug)]
pub enum Transport {
    /// A child process speaking stdio.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Environment set for it (and only it).
        env: BTreeMap<String, String>,
        /// Names of gateway environment variables passed through.
        inherit_env: Vec<String>,
        /// Working directory.
        cwd: Option<PathBuf>,
        /// Its sandbox; `None`: `sandbox = false`.
        sandbox: Option<sandbox::SandboxConfig>,
    },
    /// A Streamable HTTP endpoint.
    Http {
        /// The MCP endpoint URL.
        url: reqwest::Url,
        /// Headers sent on every request to it (and only it).
        headers: BTreeMap<String, String>,
    },
}

/// Which era to speak to an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EraChoice {
    /// Probe: modern first, legacy on failure.
    Auto,
    /// Modern only.
    Modern,
    /// Legacy only.
    Legacy,
}

/// One upstream server.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// Its name in the config.
    pub name: String,
    /// The exposure prefix for its tools and prompts.
    pub prefix: String,
    /// How to reach it.
    pub transport: Transport,
    /// Which era to speak.
    pub era: EraChoice,
    /// Per-call timeout.
    pub call_timeout: Duration,
    /// How long it may take to start and answer its handshake (a Python server importing a
    /// large library takes seconds); calls that arrive meanwhile wait for it.
    pub start_timeout: Duration,
    /// Whether the gateway forwards `roots/list` requests from this (legacy) upstream to
    /// clients. Off by default: a client's roots can widen what a server may touch.
    pub forward_roots: bool,
    /// Effects set in config per tool (by the upstream's own tool name); they override the
    /// upstream's annotations, which are only hints from a server that may be hostile.
    pub tool_effects: BTreeMap<String, Effect>,
    /// The limit on each principal's calls to this upstream (`[upstreams.X.rate]`).
    pub rate: Option<Rate>,
    /// Limits on each principal's calls to single tools, by the tool's name at the upstream.
    pub tool_rates: BTreeMap<String, Rate>,
    /// How this upstream's output is labelled.
    pub output: OutputLabel,
    /// How single tools' output is labelled, by the tool's name at the upstream.
    pub tool_outputs: BTreeMap<String, OutputLabel>,
    /// Strip invisible characters and neutralise exfiltration links in untrusted text output.
    pub sanitize: bool,
    /// Wrap untrusted text output in delimiters with a notice.
    pub spotlight: bool,
    /// The OAuth provider this upstream's access token comes from (`[upstreams.X.oauth]`).
    pub oauth: Option<oauth::UpstreamOAuth>,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Stdio { command, args, .. } => {
                write!(f, "stdio: {command}")?;
                for a in args {
                    write!(f, " {a}")?;
                }
                Ok(())
            }
            Transport::Http { url, .. } => {
                // The URL may carry a password (resolved from the vault): never print it.
                let mut shown = url.clone();
                if shown.password().is_some() {
                    let _ = shown.set_password(Some("***"));
                }
                write!(f, "http: {shown}")
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The raw shape.

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    gateway: RawGateway,
    #[serde(default)]
    upstreams: IndexMap<String, Spanned<RawUpstream>>,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    pins: controls::RawPins,
    #[serde(default)]
    flow: controls::RawFlow,
    #[serde(default)]
    vault: controls::RawVault,
    #[serde(default)]
    anomaly: controls::RawAnomaly,
    rate: Option<Spanned<controls::RawRate>>,
    #[serde(default)]
    oauth: BTreeMap<String, Spanned<oauth::RawProvider>>,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    approvals: RawApprovals,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    telemetry: RawTelemetry,
    #[serde(default)]
    methods: BTreeMap<String, Spanned<RawMethod>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMethod {
    upstream: Spanned<String>,
    effect: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    otlp_endpoint: Option<Spanned<String>>,
    service_name: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    enabled: Option<bool>,
    listen: Option<Spanned<String>>,
}

/// The admin page's default address.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8788";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApprovals {
    ask: Option<bool>,
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    checkpoint_every: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    profile: Option<Spanned<String>>,
    #[serde(default)]
    files: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTool {
    effect: Option<Spanned<String>>,
    rate: Option<Spanned<controls::RawRate>>,
    output: Option<Spanned<String>>,
    private: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    listen: Option<Spanned<String>>,
    data_dir: Option<Spanned<String>>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    max_frame_bytes: Option<Spanned<u64>>,
    max_json_depth: Option<Spanned<u64>>,
    max_concurrent_calls: Option<Spanned<u64>>,
    call_timeout: Option<Spanned<String>>,
    page_size: Option<Spanned<u64>>,
    forward_unknown_methods: Option<Spanned<bool>>,
    input_timeout: Option<Spanned<String>>,
    header_timeout: Option<Spanned<String>>,
    body_timeout: Option<Spanned<String>>,
    auth: Option<Spanned<String>>,
    oauth: Option<Spanned<bearer::RawBearer>>,
    sandbox_dir: Option<Spanned<String>>,
    #[serde(default)]
    fetch_private: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    command: Option<Spanned<String>>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    inherit_env: Vec<String>,
    cwd: Option<String>,
    url: Option<Spanned<String>>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Allows an `http://` URL to a host that is not loopback.
    #[serde(default)]
    insecure_http: bool,
    prefix: Option<Spanned<String>>,
    era: Option<Spanned<String>>,
    call_timeout: Option<Spanned<String>>,
    start_timeout: Option<Spanned<String>>,
    #[serde(default)]
    forward_roots: bool,
    #[serde(default)]
    tools: BTreeMap<String, RawTool>,
    rate: Option<Spanned<controls::RawRate>>,
    output: Option<Spanned<String>>,
    private: Option<bool>,
    #[serde(default)]
    sanitize: bool,
    #[serde(default)]
    spotlight: bool,
    oauth: Option<Spanned<oauth::RawUpstreamOAuth>>,
    sandbox: Option<sandbox::RawSandbox>,
}

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Validates configuration text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        Lowering {
            text,
            path,
            fetch_private: std::cell::RefCell::new(Vec::new()),
        }
        .config(raw)
    }
}

struct Lowering<'a> {
    text: &'a str,
    path: &'a Path,
    /// `[gateway] fetch_private`, once lowered: the URLs checked after it may be inside.
    fetch_private: std::cell::RefCell<Vec<ipnet::IpNet>>,
}

impl Lowering<'_> {
    fn err<T>(&self, span: std::ops::Range<usize>, key: &str, message: impl Into<String>) -> Result<T, ConfigError> {
        let line = self.text.get(..span.start).map_or(1, |t| t.matches('\n').count() + 1);
        Err(ConfigError::Invalid {
            path: self.path.to_owned(),
            line,
            key: key.to_owned(),
            message: message.into(),
        })
    }

    fn base_dir(&self) -> PathBuf {
        self.path.parent().map(Path::to_path_buf).unwrap_or_default()
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let gateway = self.gateway(raw.gateway)?;
        let vault = self.vault(raw.vault)?;
        // What no upstream's sandbox may reach.
        // (the folder of every upstream's private folders too: an upstream reaches only its own)
        let mut protected = vec![gateway.data_dir.clone(), gateway.sandbox_dir.clone()];
        if let KeySource::File(k) = &vault {
            protected.push(k.clone());
        }
        let mut providers = BTreeMap::new();
        for (name, p) in raw.oauth {
            let provider = self.provider(&name, p)?;
            providers.insert(name, provider);
        }
        let mut upstreams = Vec::new();
        for (name, up) in raw.upstreams {
            let span = up.span();
            upstreams.push(self.upstream(&name, up.into_inner(), span, &gateway, &providers, &protected)?);
        }
        // Two upstreams with one prefix would expose colliding names.
        for (i, a) in upstreams.iter().enumerate() {
            if let Some(b) = upstreams.iter().skip(i + 1).find(|b| b.prefix == a.prefix) {
                return Err(ConfigError::Invalid {
                    path: self.path.to_owned(),
                    line: 1,
                    key: format!("upstreams.{}.prefix", b.name),
                    message: format!(
                        "prefix `{}` is also used by upstream `{}`; names would collide",
                        b.prefix, a.name
                    ),
                });
            }
        }
        let policy = self.policy(raw.policy)?;
        let rate = self.rate(raw.rate, "rate")?;
        let methods = self.methods(raw.methods, &upstreams)?;
        Ok(Config {
            gateway,
            upstreams,
            policy,
            pins: self.pins(raw.pins)?,
            flow: self.flow(raw.flow)?,
            vault,
            anomaly: self.anomaly(raw.anomaly)?,
            oauth: providers,
            admin: match (raw.admin.enabled, raw.admin.listen) {
                (Some(false), _) => None,
                (_, None) => DEFAULT_ADMIN_LISTEN.parse().ok(),
                (_, Some(l)) => match l.get_ref().parse::<SocketAddr>() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        return self.err(
                            l.span(),
                            "admin.listen",
                            format!("`{}` is not an address like `127.0.0.1:8788`", l.get_ref()),
                        );
                    }
                },
            },
            telemetry: match raw.telemetry.otlp_endpoint {
                None => None,
                Some(e) => match reqwest::Url::parse(e.get_ref()) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") => Some(TelemetryConfig {
                        otlp_endpoint: u,
                        service_name: raw.telemetry.service_name.unwrap_or_else(|| "portcullis".into()),
                    }),
                    _ => {
                        return self.err(
                            e.span(),
                            "telemetry.otlp_endpoint",
                            "must be an http:// or https:// URL (the OTLP/HTTP receiver, e.g. http://127.0.0.1:4318)",
                        );
                    }
                },
            },
            approvals: ApprovalsConfig {
                ask: raw.approvals.ask.unwrap_or(true),
                timeout: self.duration(raw.approvals.timeout, "approvals.timeout", Duration::from_secs(120))?,
            },
            audit: AuditConfig {
                checkpoint_every: self.bounded(
                    raw.audit.checkpoint_every,
                    "audit.checkpoint_every",
                    1,
                    1_000_000,
                    1000,
                )?,
            },
            rate,
            methods,
            source: self.path.to_owned(),
        })
    }

    /// `[methods."…"]`: methods beyond the spec's, each planned to a named upstream with an
    /// effect. A method the spec defines cannot be re-planned here.
    fn methods(
        &self,
        raw: BTreeMap<String, Spanned<RawMethod>>,
        upstreams: &[UpstreamConfig],
    ) -> Result<BTreeMap<String, MethodConfig>, ConfigError> {
        let mut out = BTreeMap::new();
        for (name, m) in raw {
            let span = m.span();
            let m = m.into_inner();
            let key = format!("methods.\"{name}\"");
            if portcullis_core::mcp::SPEC_REQUESTS.contains(&name.as_str()) || name.starts_with("notifications/") {
                return self.err(
                    span,
                    &key,
                    "is a method of the MCP specification; its plan is the gateway's own",
                );
            }
            let Some(upstream) = upstreams.iter().position(|u| u.name == *m.upstream.get_ref()) else {
                return self.err(
                    m.upstream.span(),
                    &format!("{key}.upstream"),
                    format!("no upstream is named `{}`", m.upstream.get_ref()),
                );
            };
            let effect = match m.effect.get_ref().parse::<Effect>() {
                Ok(e) => e,
                Err(_) => {
                    let names: Vec<&str> = Effect::ALL.iter().map(|e| e.as_str()).collect();
                    return self.err(
                        m.effect.span(),
                        &format!("{key}.effect"),
                        format!("must be one of {}, got `{}`", names.join(", "), m.effect.get_ref()),
                    );
                }
            };
            out.insert(name, MethodConfig { upstream, effect });
        }
        Ok(out)
    }

    fn gateway(&self, g: RawGateway) -> Result<GatewayConfig, ConfigError> {
        if let Some(f) = g.forward_unknown_methods {
            return self.err(
                f.span(),
                "gateway.forward_unknown_methods",
                "was removed: an unknown method is refused; plan each one under `[methods.\"NAME\"]` with its `upstream` and `effect`",
            );
        }
        let mut fetch_private = Vec::new();
        for n in &g.fetch_private {
            let net = match n.get_ref().parse::<ipnet::IpNet>() {
                Ok(net) => net,
                Err(_) => match n.get_ref().parse::<std::net::IpAddr>() {
                    Ok(ip) => ipnet::IpNet::from(ip),
                    Err(_) => {
                        return self.err(
                            n.span(),
                            "gateway.fetch_private",
                            format!("`{}` is not a network (`10.20.0.0/16`) or an address", n.get_ref()),
                        );
                    }
                },
            };
            if crate::fetch::METADATA.iter().any(|m| net.contains(m)) {
                return self.err(
                    n.span(),
                    "gateway.fetch_private",
                    format!(
                        "`{net}` holds a cloud metadata address (169.254.169.254, fd00:ec2::254), which the gateway never fetches from"
                    ),
                );
            }
            fetch_private.push(net);
        }
        *self.fetch_private.borrow_mut() = fetch_private.clone();
        let listen = match g.listen {
            None => DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8787))),
            Some(s) => match s.get_ref().parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    return self.err(
                        s.span(),
                        "gateway.listen",
                        format!("`{}` is not an IP address and port", s.get_ref()),
                    );
                }
            },
        };
        let data_dir = match g.data_dir {
            None => self.base_dir().join(".portcullis"),
            Some(s) if s.get_ref().is_empty() => return self.err(s.span(), "gateway.data_dir", "must not be empty"),
            Some(s) => self.base_dir().join(s.get_ref()),
        };
        let sandbox_dir = match g.sandbox_dir {
            None => sandbox::default_dir(&data_dir),
            Some(s) if s.get_ref().is_empty() => {
                return self.err(s.span(), "gateway.sandbox_dir", "must not be empty");
            }
            Some(s) => {
                let dir = self.base_dir().join(s.get_ref());
                if dir.starts_with(&data_dir) || data_dir.starts_with(&dir) {
                    return self.err(
                        s.span(),
                        "gateway.sandbox_dir",
                        "must be apart from `data_dir`: no upstream may reach the gateway's state",
                    );
                }
                dir
            }
        };
        let defaults = Limits::default();
        let limits = Limits {
            max_frame_bytes: self.bounded(
                g.max_frame_bytes,
                "gateway.max_frame_bytes",
                1024,
                1 << 30,
                defaults.max_frame_bytes as u64,
            )? as usize,
            max_depth: self.bounded(
                g.max_json_depth,
                "gateway.max_json_depth",
                4,
                512,
                defaults.max_depth as u64,
            )? as usize,
        };
        Ok(GatewayConfig {
            listen,
            data_dir,
            allowed_origins: g.allowed_origins,
            allowed_hosts: g.allowed_hosts,
            limits,
            max_concurrent_calls: self.bounded(
                g.max_concurrent_calls,
                "gateway.max_concurrent_calls",
                1,
                100_000,
                64,
            )? as usize,
            call_timeout: self.duration(g.call_timeout, "gateway.call_timeout", Duration::from_secs(60))?,
            page_size: self.bounded(g.page_size, "gateway.page_size", 1, 100_000, 500)? as usize,
            input_timeout: self.duration(g.input_timeout, "gateway.input_timeout", Duration::from_secs(300))?,
            sandbox_dir,
            header_timeout: self.duration(g.header_timeout, "gateway.header_timeout", Duration::from_secs(10))?,
            body_timeout: self.duration(g.body_timeout, "gateway.body_timeout", Duration::from_secs(30))?,
            fetch_private,
            auth: match (g.auth, g.oauth) {
                (None, None) => ClientAuth::None,
                (Some(a), o) => match (a.get_ref().as_str(), o) {
                    ("none", None) => ClientAuth::None,
                    ("api-key", None) => ClientAuth::ApiKey,
                    ("oauth", Some(o)) => ClientAuth::OAuth(Arc::new(self.bearer(o)?)),
                    ("oauth", None) => {
                        return self.err(
                            a.span(),
                            "gateway.auth",
                            "`oauth` needs a `[gateway.oauth]` table: this gateway's `resource` URL and its identity providers",
                        );
                    }
                    ("none" | "api-key", Some(o)) => {
                        return self.err(o.span(), "gateway.oauth", "is used only with `auth = \"oauth\"`");
                    }
                    (other, _) => {
                        return self.err(
                            a.span(),
                            "gateway.auth",
                            format!("must be `none`, `api-key` or `oauth`, got `{other}`"),
                        );
                    }
                },
                (None, Some(o)) => {
                    return self.err(o.span(), "gateway.oauth", "is used only with `auth = \"oauth\"`");
                }
            },
        })
    }

    /// The policy section: the profile, and the files read and validated now, so a bad policy
    /// stops the gateway before it serves anything.
    fn policy(&self, p: RawPolicy) -> Result<PolicyConfig, ConfigError> {
        let profile = match p.profile {
            None => Some(Profile::Default),
            Some(s) if s.get_ref() == "none" => None,
            Some(s) => match s.get_ref().parse::<Profile>() {
                Ok(p) => Some(p),
                Err(_) => {
                    let names: Vec<&str> = Profile::ALL.iter().map(|p| p.as_str()).collect();
                    return self.err(
                        s.span(),
                        "policy.profile",
                        format!("must be one of {} or `none`, got `{}`", names.join(", "), s.get_ref()),
                    );
                }
            },
        };
        let mut files = Vec::new();
        let mut sources = Vec::new();
        for f in p.files {
            if f.get_ref().trim().is_empty() {
                return self.err(f.span(), "policy.files", "a file name must not be empty");
            }
            let path = self.base_dir().join(f.get_ref());
            match std::fs::read_to_string(&path) {
                Ok(text) => sources.push((f.get_ref().clone(), text)),
                Err(e) => {
                    return self.err(
                        f.span(),
                        "policy.files",
                        format!("cannot read `{}`: {e}", path.display()),
                    );
                }
            }
            files.push(path);
        }
        let engine = PolicyEngine::from_sources(profile, &sources).map_err(|e| ConfigError::Policy {
            path: self.path.to_owned(),
            message: e.to_string(),
        })?;
        Ok(PolicyConfig {
            profile,
            files,
            engine: Arc::new(engine),
        })
    }

    fn bounded(
        &self,
        v: Option<Spanned<u64>>,
        key: &str,
        min: u64,
        max: u64,
        default: u64,
    ) -> Result<u64, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) if (min..=max).contains(s.get_ref()) => Ok(*s.get_ref()),
            Some(s) => self.err(
                s.span(),
                key,
                format!("must be between {min} and {max}, got {}", s.get_ref()),
            ),
        }
    }

    fn duration(&self, v: Option<Spanned<String>>, key: &str, default: Duration) -> Result<Duration, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => match parse_duration(s.get_ref()) {
                Some(d) if !d.is_zero() => Ok(d),
                _ => self.err(
                    s.span(),
                    key,
                    format!("`{}` is not a duration like `30s`, `500ms` or `2m`", s.get_ref()),
                ),
            },
        }
    }

    fn upstream(
        &self,
        name: &str,
        u: RawUpstream,
        span: std::ops::Range<usize>,
        gateway: &GatewayConfig,
        providers: &BTreeMap<String, oauth::Provider>,
        protected: &[PathBuf],
    ) -> Result<UpstreamConfig, ConfigError> {
        let key = |k: &str| format!("upstreams.{name}.{k}");
        if !valid_name(name) {
            return self.err(
                span,
                &format!("upstreams.{name}"),
                "upstream names use letters, digits, `-` and `_` only",
            );
        }
        let stdio_only_keys = u.command_is_stdio_only();
        let transport = match (u.command, u.url) {
            (Some(_), Some(url)) => {
                return self.err(
                    url.span(),
                    &key("url"),
                    "an upstream has either `command` (stdio) or `url` (HTTP), not both",
                );
            }
            (None, None) => {
                return self.err(
                    span,
                    &format!("upstreams.{name}"),
                    "needs `command` (stdio) or `url` (HTTP)",
                );
            }
            (Some(cmd), None) => {
                if cmd.get_ref().trim().is_empty() {
                    return self.err(cmd.span(), &key("command"), "must not be empty");
                }
                if !u.headers.is_empty() {
                    return self.err(span, &key("headers"), "headers apply to HTTP upstreams only");
                }
                if u.insecure_http {
                    return self.err(span, &key("insecure_http"), "applies to HTTP upstreams only");
                }
                let sandbox = sandbox::lower(
                    u.sandbox,
                    &self.base_dir(),
                    gateway.sandbox_dir.join(name),
                    protected.to_vec(),
                )
                .or_else(|(span_of, k, message)| {
                    self.err(
                        span_of.unwrap_or_else(|| cmd.span()),
                        &key(&format!("sandbox.{k}")),
                        message,
                    )
                })?;
                Transport::Stdio {
                    command: cmd.into_inner(),
                    args: u.args,
                    env: u.env,
                    inherit_env: u.inherit_env,
                    cwd: u.cwd.map(|c| self.base_dir().join(c)),
                    sandbox,
                }
            }
            (None, Some(url)) => {
                let parsed = match reqwest::Url::parse(url.get_ref()) {
                    Ok(p) if matches!(p.scheme(), "http" | "https") && p.host().is_some() => p,
                    Ok(_) => return self.err(url.span(), &key("url"), "must be an http:// or https:// URL"),
                    Err(e) => {
                        return self.err(
                            url.span(),
                            &key("url"),
                            format!("`{}` is not a URL: {e}", url.get_ref()),
                        );
                    }
                };
                // Credentials in its headers, and every call and answer, would cross the network
                // in clear text (and be open to change on the way).
                if parsed.scheme() == "http" && !crate::fetch::names_loopback(&parsed) && !u.insecure_http {
                    return self.err(
                        url.span(),
                        &key("url"),
                        "plain http:// to a host that is not loopback would send this upstream's credentials and every call in clear text: use https://, or set `insecure_http = true` for a network you trust",
                    );
                }
                if u.insecure_http && parsed.scheme() == "https" {
                    return self.err(url.span(), &key("insecure_http"), "applies to http:// URLs only");
                }
                if stdio_only_keys {
                    return self.err(
                        url.span(),
                        &key("args"),
                        "`args`, `env`, `inherit_env` and `cwd` apply to stdio upstreams only",
                    );
                }
                if u.sandbox.is_some() {
                    return self.err(
                        url.span(),
                        &key("sandbox"),
                        "a sandbox applies to stdio upstreams only (a remote server runs elsewhere)",
                    );
                }
                for h in u.headers.keys() {
                    if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                        return self.err(url.span(), &key("headers"), format!("`{h}` is not a valid header name"));
                    }
                }
                Transport::Http {
                    url: parsed,
                    headers: u.headers,
                }
            }
        };
        let values = match &transport {
            Transport::Stdio { env, .. } => env,
            Transport::Http { headers, .. } => headers,
        };
        let field = match &transport {
            Transport::Stdio { .. } => "env",
            Transport::Http { .. } => "headers",
        };
        let mut refs: Vec<(String, String)> = values
            .iter()
            .map(|(k, v)| (format!("{field}.{k}"), v.clone()))
            .collect();
        if let Transport::Http { url, .. } = &transport {
            refs.extend(crate::config::refs::url_password(url).map(|p| ("url".to_owned(), p)));
            refs.extend(url.query_pairs().map(|(_, v)| ("url".to_owned(), v.into_owned())));
        }
        for (k, v) in &refs {
            if let Some(secret) = crate::config::refs::reference(v)
                && !portcullis_vault::valid_name(secret)
            {
                return self.err(
                    span.clone(),
                    &key(k),
                    format!("`vault:{secret}` is not a secret name (letters, digits, `_`, `-`, `.`)"),
                );
            }
        }
        let prefix = match u.prefix {
            None => name.to_owned(),
            Some(p) if p.get_ref().is_empty() || valid_name(p.get_ref()) => p.into_inner(),
            Some(p) => {
                return self.err(
                    p.span(),
                    &key("prefix"),
                    "prefixes use letters, digits, `-` and `_` only",
                );
            }
        };
        let era = match u.era.as_ref().map(|e| e.get_ref().as_str()) {
            None | Some("auto") => EraChoice::Auto,
            Some("modern") => EraChoice::Modern,
            Some("legacy") => EraChoice::Legacy,
            Some(other) => {
                let span = u.era.as_ref().map(Spanned::span).unwrap_or_default();
                return self.err(
                    span,
                    &key("era"),
                    format!("must be `auto`, `modern` or `legacy`, got `{other}`"),
                );
            }
        };
        let oauth = u
            .oauth
            .map(|o| self.upstream_oauth(name, o, providers, &transport))
            .transpose()?;
        let mut tool_effects = BTreeMap::new();
        let mut tool_rates = BTreeMap::new();
        let mut tool_outputs = BTreeMap::new();
        let output = self.output_label(u.output, u.private, &key("output"))?;
        for (tool, t) in u.tools {
            let label = self.output_label(t.output, t.private, &key(&format!("tools.{tool}.output")))?;
            if label != OutputLabel::default() {
                tool_outputs.insert(tool.clone(), label);
            }
            if let Some(rate) = self.rate(t.rate, &key(&format!("tools.{tool}.rate")))? {
                tool_rates.insert(tool.clone(), rate);
            }
            if let Some(effect) = t.effect {
                match effect.get_ref().parse::<Effect>() {
                    Ok(e) => {
                        tool_effects.insert(tool, e);
                    }
                    Err(_) => {
                        let names: Vec<&str> = Effect::ALL.iter().map(|e| e.as_str()).collect();
                        return self.err(
                            effect.span(),
                            &key(&format!("tools.{tool}.effect")),
                            format!("must be one of {}, got `{}`", names.join(", "), effect.get_ref()),
                        );
                    }
                }
            }
        }
        Ok(UpstreamConfig {
            name: name.to_owned(),
            prefix,
            transport,
            era,
            call_timeout: self.duration(u.call_timeout, &key("call_timeout"), gateway.call_timeout)?,
            start_timeout: self.duration(u.start_timeout, &key("start_timeout"), Duration::from_secs(60))?,
            forward_roots: u.forward_roots,
            tool_effects,
            rate: self.rate(u.rate, &key("rate"))?,
            tool_rates,
            output,
            tool_outputs,
            sanitize: u.sanitize,
            spotlight: u.spotlight,
            oauth,
        })
    }
}

impl RawUpstream {
    fn command_is_stdio_only(&self) -> bool {
        !self.args.is_empty() || !self.env.is_empty() || !self.inherit_env.is_empty() || self.cwd.is_some()
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Parses `250ms`, `30s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

pub mod bearer;
mod controls;
pub mod oauth;
pub mod refs;
pub mod sandbox;
#[cfg(test)]
mod tests;
