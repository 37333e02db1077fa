//! `portcullis`: the command line. Thin: parse arguments, load and validate configuration
//! before anything binds or spawns, then hand over to the gateway crate.

/// `println!` that ignores a closed stdout (`portcullis tools | head`) instead of panicking.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($t)*);
    }};
}

/// `print!` that ignores a closed stdout.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($t)*);
    }};
}

mod admin;
mod approve;
mod audit;
mod call;
mod connect;
mod doctor;
mod harden;
mod import;
mod keys;
mod logging;
mod policy;
mod scan;
mod tools;
mod vault;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use portcullis_gateway::config::Config;
use portcullis_gateway::state::pins::PinMode;
use portcullis_gateway::state::{Gateway, OpenError};

/// mimalloc instead of glibc's malloc: a call allocates and frees many small objects (JSON
/// values, audit records, Cedar's), and glibc's `malloc`/`free` were about a fifth of the
/// instructions the gateway ran per call (BENCHMARKS.md, "Instructions per call").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for bad usage or configuration (sysexits EX_USAGE).
const EX_USAGE: u8 = 64;
/// Exit code when a required service is unavailable (sysexits EX_UNAVAILABLE).
const EX_UNAVAILABLE: u8 = 69;
/// Exit code when the state database cannot be created or opened (sysexits EX_CANTCREAT).
const EX_CANTCREAT: u8 = 73;

#[derive(Parser, Debug)]
#[command(
    name = "portcullis",
    version,
    about = "A security gateway for the Model Context Protocol"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = logging::Format::Text)]
    log_format: logging::Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct ConfigArg {
    /// The configuration file.
    #[arg(long, short, env = "PORTCULLIS_CONFIG", default_value = "portcullis.toml")]
    config: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve MCP over Streamable HTTP (default http://127.0.0.1:8787/mcp).
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Listen on this address instead of the configured one.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Serve MCP on stdin/stdout, for a host that launches its MCP servers.
    Stdio {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List every upstream's tools with their pin status, or approve a tool's definition.
    Tools(tools::ToolsArgs),
    /// Call one tool, through the gateway (`--config`) or directly at an MCP server (`--url`).
    Call(call::CallArgs),
    /// Scan every upstream's tools, prompts and templates for tool poisoning.
    Scan(scan::ScanArgs),
    /// Validate the policy, or show the decision for one call.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Take over an AI host's MCP servers: add them as upstreams, move their secrets into the
    /// vault, and point the host at Portcullis.
    Import(import::ImportArgs),
    /// Verify or export the tamper-evident audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The admin web page: set its password, or print a one-time sign-in link.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Say what protects each upstream here: which sandbox layers hold, and which cannot.
    Doctor(doctor::DoctorArgs),
    /// List the calls waiting for a person's approval.
    Approvals(approve::ListArgs),
    /// Approve a waiting call (this call only, or the same call for a while with `--for`).
    Approve(approve::ApproveArgs),
    /// Deny a waiting call; the reason reaches the client as the tool error.
    Deny(approve::DenyArgs),
    /// Manage the API keys HTTP clients authenticate with (`[gateway] auth = "api-key"`).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Connect an upstream to an OAuth provider: authorize in a browser, with only the scopes
    /// the upstream's enabled tools need; the refresh token goes into the vault.
    Connect(connect::ConnectArgs),
    /// Revoke an upstream's OAuth grant at the provider and forget it.
    Disconnect(connect::DisconnectArgs),
    /// Manage the credential vault: secrets upstreams get as `vault:NAME`.
    #[command(subcommand)]
    Vault(vault::VaultCommand),
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    portcullis_gateway::config::parse_duration(s).ok_or_else(|| format!("`{s}` is not a duration like `30s`"))
}

/// Loads and validates the configuration (policy included); a bad one is reported and is
/// exit status 64.
fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("portcullis: {e}");
        ExitCode::from(EX_USAGE)
    })
}

/// Loads the configuration and opens its state database (what `keys`, `approvals` and `admin`
/// work on); failures are reported and become the exit code.
async fn open_store(config: &std::path::Path) -> Result<portcullis_store::Store, ExitCode> {
    let cfg = load(config)?;
    portcullis_store::Store::open(&cfg.gateway.data_dir).await.map_err(|e| {
        eprintln!("portcullis: {e}");
        ExitCode::from(EX_CANTCREAT)
    })
}

/// Opens the state database and starts the gateway; a database that cannot be opened is
/// reported and is exit status 73 (EX_CANTCREAT).
async fn open(cfg: Config, mode: PinMode) -> Result<Arc<Gateway>, ExitCode> {
    Gateway::open(cfg, mode).await.map_err(|e| {
        eprintln!("portcullis: {e}");
        match e {
            OpenError::Store(_) | OpenError::Audit(_) => ExitCode::from(EX_CANTCREAT),
            OpenError::Vault(_) | OpenError::Resolve(_) | OpenError::OAuth(_) => ExitCode::from(EX_USAGE),
        }
    })
}

fn main() -> ExitCode {
    // A sandbox helper the gateway started runs here and never returns: before any thread
    // exists (a process enters namespaces alone).
    portcullis_sandbox::stage::run_if_helper();
    harden::at_start();
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Serve { .. } => "info",
        // `scan` and `tools` print the findings themselves; the gateway's own log of them would
        // say it twice.
        Command::Scan(_) | Command::Tools(_) => "warn,portcullis_gateway::gateway=off",
        _ => "warn",
    };
    // Trace export is configured in the file of `serve` / `stdio`; read it before logging starts
    // (errors in it are reported again, properly, when the command loads it).
    let otel = match &cli.command {
        Command::Serve { config, .. } | Command::Stdio { config } => {
            Config::load(&config.config).ok().and_then(|c| c.telemetry)
        }
        _ => None,
    };
    let _telemetry = logging::init(cli.log_format, default_filter, otel.as_ref());
    // One client on stdio: a single-threaded runtime saves a cross-thread wake-up at every hop
    // of a call (measured in BENCHMARKS.md). `serve` answers many clients and uses every core.
    let mut builder = match cli.command {
        Command::Stdio { .. } => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("portcullis: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> ExitCode {
    match command {
        Command::Serve { config, listen } => {
            let mut cfg = match load(&config.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            if let Some(addr) = listen {
                cfg.gateway.listen = addr;
            }
            report(serve(cfg).await)
        }
        Command::Stdio { config } => match load(&config.config) {
            Ok(cfg) => report(stdio(cfg).await),
            Err(code) => code,
        },
        Command::Tools(args) => tools::run(args).await,
        Command::Call(args) => call::run(args).await,
        Command::Scan(args) => scan::run(args).await,
        Command::Policy(cmd) => policy::run(cmd).await,
        Command::Vault(cmd) => vault::run(cmd).await,
        Command::Import(args) => import::run(args).await,
        Command::Audit(cmd) => audit::run(cmd).await,
        Command::Connect(args) => connect::connect(args).await,
        Command::Keys(cmd) => keys::run(cmd).await,
        Command::Approvals(args) => approve::list(args).await,
        Command::Admin(cmd) => admin::run(cmd).await,
        Command::Doctor(args) => doctor::run(args).await,
        Command::Approve(args) => approve::approve(args).await,
        Command::Deny(args) => approve::deny(args).await,
        Command::Disconnect(args) => connect::disconnect(args).await,
    }
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis: {e:#}");
            // A state database or audit log that cannot be opened (a read-only or full data
            // folder) is EX_CANTCREAT, as for every other command.
            match e.downcast_ref::<OpenError>() {
                Some(OpenError::Store(_) | OpenError::Audit(_)) => ExitCode::from(EX_CANTCREAT),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let addr = cfg.gateway.listen;
    if !addr.ip().is_loopback() && cfg.gateway.auth == portcullis_gateway::config::ClientAuth::None {
        tracing::warn!(%addr, "listening beyond loopback without client authentication: set `[gateway] auth = \"api-key\"` or `\"oauth\"` (and `allowed_hosts` must name this host)");
    }
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let gw = Gateway::open(cfg, PinMode::Record).await?;
    let local = listener.local_addr()?;
    tracing::info!("Portcullis serving MCP at http://{local}/mcp");
    eprintln!("portcullis: serving MCP at http://{local}/mcp");
    let stopper = gw.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        stopper.shutdown.cancel();
    });
    if let Some(addr) = gw.cfg.admin {
        start_admin(&gw, addr).await;
    }
    portcullis_gateway::front::http::serve(gw.clone(), listener).await?;
    gw.stop().await;
    Ok(())
}

/// Serves the admin page on `addr` and prints its one-time sign-in link. A port that cannot be
/// bound leaves the gateway running without the page (said in the log).
async fn start_admin(gw: &Arc<Gateway>, addr: std::net::SocketAddr) {
    use portcullis_gateway::admin::Admin;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the admin page listens beyond loopback: put it behind TLS");
    }
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "admin page not served (set `[admin] listen` or `enabled = false`)");
            return;
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    let admin = Admin::new(gw.clone());
    // The one-time link signs in whoever reads it: it goes to a terminal, never to a log a
    // service manager keeps (`portcullis admin link` prints one on demand).
    match admin.login_link() {
        Some(link) if std::io::stderr().is_terminal() => {
            eprintln!("portcullis: admin page at http://{local}/ (one-time sign-in, 10 minutes: http://{local}{link})");
        }
        _ => eprintln!(
            "portcullis: admin page at http://{local}/ (sign in with the admin password, or a link from `portcullis admin link`)"
        ),
    }
    tokio::spawn(async move {
        if let Err(e) = portcullis_gateway::admin::serve(admin, listener).await {
            tracing::error!(error = %e, "admin page stopped");
        }
    });
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}

async fn stdio(cfg: Config) -> anyhow::Result<()> {
    let gw = Gateway::open(cfg, PinMode::Record).await?;
    let served = portcullis_gateway::front::stdio::serve(gw.clone(), stdin(), stdout());
    tokio::select! {
        () = served => {}
        () = wait_for_signal() => {}
    }
    gw.stop().await;
    Ok(())
}

/// Our stdin as an async reader. A host launches us with pipes: read them through the reactor
/// (non-blocking), not through tokio's `Stdin`, which hands every read to the blocking pool and
/// costs a thread hop per message. Anything else (a terminal, a file) falls back to `Stdin`.
fn stdin() -> Box<dyn tokio::io::AsyncRead + Unpin + Send> {
    use std::os::fd::AsFd as _;
    let pipe = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(tokio::net::unix::pipe::Receiver::from_file);
    match pipe {
        Ok(p) => Box::new(p),
        Err(_) => Box::new(tokio::io::stdin()),
    }
}

/// Our stdout as an async writer; see [`stdin`].
fn stdout() -> Box<dyn tokio::io::AsyncWrite + Unpin + Send> {
    use std::os::fd::AsFd as _;
    let pipe = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(tokio::net::unix::pipe::Sender::from_file);
    match pipe {
        Ok(p) => Box::new(p),
        Err(_) => Box::new(tokio::io::stdout()),
    }
}
