//! `portcullis-mail`: an email MCP server over IMAP + SMTP or the Gmail API, on stdio or
//! Streamable HTTP. Its credential comes only from its environment (`MAIL_PASSWORD`, or
//! `MAIL_ACCESS_TOKEN` for OAuth; set by Portcullis from the vault); it never writes one to
//! disk. The profile decides which tools exist.

mod args;
mod backend;
mod config;
mod gmail;
mod imap;
mod render;
mod server;
mod smtp;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use rmcp::ServiceExt as _;

use crate::backend::Backend;
use crate::config::{PASSWORD_ENV, Profile, Security, Servers, Settings, SettingsError, TOKEN_ENV};

/// Where the mail is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    /// Any provider's IMAP and SMTP submission servers.
    Imap,
    /// Gmail, through the Gmail API (least-privilege OAuth scopes).
    Gmail,
}

/// How IMAP and SMTP logins are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Auth {
    /// A password or app password from `MAIL_PASSWORD`.
    Password,
    /// SASL XOAUTH2 with an access token from `MAIL_ACCESS_TOKEN` (Outlook and others).
    Xoauth2,
}

#[derive(Parser, Debug)]
#[command(
    name = "portcullis-mail",
    version,
    about = "An email MCP server (IMAP + SMTP, or the Gmail API) for Portcullis"
)]
struct Cli {
    /// Where the mail is: `imap` (IMAP + SMTP, any provider) or `gmail` (the Gmail API, with
    /// an OAuth access token from `MAIL_ACCESS_TOKEN`).
    #[arg(long, value_enum, default_value_t = Kind::Imap)]
    backend: Kind,
    /// The IMAP server, `host:port` (imap backend).
    #[arg(long)]
    imap: Option<String>,
    /// The SMTP submission server, `host:port` (imap backend).
    #[arg(long)]
    smtp: Option<String>,
    /// How IMAP and SMTP logins are made: `password` (`MAIL_PASSWORD`) or `xoauth2`
    /// (`MAIL_ACCESS_TOKEN`).
    #[arg(long, value_enum, default_value_t = Auth::Password)]
    auth: Auth,
    /// The Gmail API's base URL (gmail backend); http only on loopback.
    #[arg(long, default_value = gmail::GOOGLE)]
    gmail_api: String,
    /// How the IMAP connection is protected: `tls` (port 993) or `none` (loopback only).
    #[arg(long, value_enum, default_value_t = Security::Tls)]
    imap_security: Security,
    /// How the SMTP connection is protected: `starttls` (587), `tls` (465) or `none`
    /// (loopback only).
    #[arg(long, value_enum, default_value_t = Security::Starttls)]
    smtp_security: Security,
    /// A PEM file of extra trust anchors (a private CA), besides the public web roots.
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    /// The account (its address); the credential comes from the environment.
    #[arg(long)]
    user: String,
    /// Which tools exist beyond reading (repeatable): `compose` (drafts), `send` (send, reply,
    /// forward), `organize` (move, flags, trash); `read-only` (the default) adds nothing.
    #[arg(long = "profile", value_enum)]
    profiles: Vec<Profile>,
    /// A domain whose senders count as internal in a message's provenance (repeatable).
    #[arg(long = "internal-domain")]
    internal_domains: Vec<String>,
    /// Send only to these domains (repeatable; default: any).
    #[arg(long = "allow-domain")]
    allowed_domains: Vec<String>,
    /// Most recipients of one message.
    #[arg(long, default_value_t = 10)]
    max_recipients: usize,
    /// File a copy of each sent message in this IMAP folder. By default a copy goes to the
    /// mailbox's `\Sent` folder (RFC 6154) unless the provider filed the message itself (Gmail
    /// always does; others are checked by Message-ID).
    #[arg(long)]
    sent_folder: Option<String>,
    /// File no copy of sent messages.
    #[arg(long, conflicts_with = "sent_folder")]
    no_sent_copy: bool,
    /// Longest a tool call may take, in seconds, connecting included.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
    /// Idle IMAP sessions kept for the next calls (0: log in for every call).
    #[arg(long, default_value_t = imap::POOL)]
    imap_pool: usize,
    /// Idle SMTP submission connections kept for the next sends (0: a connection per send).
    #[arg(long, default_value_t = smtp::POOL)]
    smtp_pool: usize,
    /// Serve Streamable HTTP at `http://ADDR/mcp` (loopback only) instead of stdio.
    #[arg(long)]
    http: Option<std::net::SocketAddr>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_MAIL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(addr) = cli.http.filter(|a| !a.ip().is_loopback()) {
        eprintln!("portcullis-mail: --http `{addr}` is not a loopback address");
        return ExitCode::from(64);
    }
    let mut settings = Settings::new(
        cli.user.clone(),
        cli.profiles.clone(),
        cli.internal_domains.clone(),
        cli.allowed_domains.clone(),
        cli.max_recipients,
    );
    settings.timeout = std::time::Duration::from_secs(cli.timeout);
    let served = match cli.backend {
        Kind::Imap => match imap_backend(&cli, &settings) {
            Ok(b) => run(settings, b, cli.http).await,
            Err(e) => return usage(&e),
        },
        Kind::Gmail => match gmail_backend(&cli) {
            Ok(b) => run(settings, b, cli.http).await,
            Err(e) => return usage(&e),
        },
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis-mail: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn usage(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("portcullis-mail: {e}");
    ExitCode::from(64)
}

fn imap_backend(cli: &Cli, settings: &Settings) -> Result<imap::ImapSmtp, SettingsError> {
    let imap = cli.imap.clone().ok_or(SettingsError::Missing("imap", "imap"))?;
    let smtp = cli.smtp.clone().ok_or(SettingsError::Missing("smtp", "imap"))?;
    let credential = config::credential(
        cli.auth == Auth::Xoauth2,
        std::env::var(PASSWORD_ENV).ok(),
        std::env::var(TOKEN_ENV).ok(),
    );
    warn_if_missing(&credential);
    let servers = Servers::new(
        (imap, cli.imap_security),
        (smtp, cli.smtp_security),
        config::read_ca(cli.ca_file.clone())?,
        cli.user.clone(),
        credential,
    )?;
    Ok(
        imap::ImapSmtp::new(servers, settings.drafts.clone(), settings.trash.clone(), cli.imap_pool)
            .saving_sent(match (&cli.sent_folder, cli.no_sent_copy) {
                (_, true) => imap::SentCopy::Off,
                (Some(folder), false) => imap::SentCopy::Folder(folder.clone()),
                (None, false) => imap::SentCopy::Auto,
            })
            .keeping_smtp(cli.smtp_pool),
    )
}

fn gmail_backend(cli: &Cli) -> anyhow::Result<gmail::Gmail> {
    let base = config::gmail_api(&cli.gmail_api)?;
    let token = config::credential(true, None, std::env::var(TOKEN_ENV).ok());
    warn_if_missing(&token);
    let ca = config::read_ca(cli.ca_file.clone())?;
    Ok(gmail::Gmail::new(base, cli.user.clone(), token, ca.as_deref())?)
}

/// A missing credential is not fatal (the tools can be listed, which `portcullis connect`
/// needs before there is a token), but it is said at once.
fn warn_if_missing(c: &config::Credential) {
    if let config::Credential::Missing(env) = c {
        eprintln!("portcullis-mail: `{env}` is not set: the tools are listed, but every call will fail until it is");
    }
}

async fn run<B: Backend>(settings: Settings, backend: B, http: Option<std::net::SocketAddr>) -> anyhow::Result<()> {
    let mail = server::Mail::new(settings, backend);
    match http {
        Some(addr) => serve_http(mail, addr).await,
        None => serve(mail).await,
    }
}

async fn serve<B: Backend>(mail: server::Mail<B>) -> anyhow::Result<()> {
    let running = mail
        .serve(rmcp::transport::stdio())
        .await
        .context("cannot start the stdio server")?;
    running.waiting().await.context("stdio server failed")?;
    Ok(())
}

/// Streamable HTTP at `/mcp` (rmcp's service: 2025-11-25 sessions and 2026-07-28 requests),
/// until SIGTERM or Ctrl-C.
async fn serve_http<B: Backend>(mail: server::Mail<B>, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on `{addr}`"))?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let service = StreamableHttpService::new(
        move || Ok(mail.clone()),
        std::sync::Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_cancellation_token(shutdown.clone()),
    );
    let app = axum::Router::new().route_service("/mcp", service);
    eprintln!("portcullis-mail: serving MCP at http://{}/mcp", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            stop_signal().await;
            shutdown.cancel();
        })
        .await
        .context("http server failed")
}

async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    } else {
        let _ = interrupt.await;
    }
}
