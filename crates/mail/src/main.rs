//! `portcullis-mail`: an email MCP server over IMAP and SMTP, on stdio. Its credential comes
//! only from its environment (`MAIL_PASSWORD`, set by Portcullis from the vault); it never
//! writes one to disk. The profile decides which tools exist.

mod config;
mod imap;
mod render;
mod server;
mod smtp;

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use rmcp::ServiceExt as _;

use crate::config::{PASSWORD_ENV, Profile, Security, Settings};

#[derive(Parser, Debug)]
#[command(
    name = "portcullis-mail",
    version,
    about = "An email MCP server (IMAP + SMTP) for Portcullis"
)]
struct Cli {
    /// The IMAP server, `host:port`.
    #[arg(long)]
    imap: String,
    /// The SMTP submission server, `host:port`.
    #[arg(long)]
    smtp: String,
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
    /// The account (its address); the password comes from `MAIL_PASSWORD`.
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
    let settings = match Settings::new(
        (cli.imap, cli.imap_security),
        (cli.smtp, cli.smtp_security),
        cli.ca_file,
        cli.user,
        cli.profiles,
        cli.internal_domains,
        cli.allowed_domains,
        cli.max_recipients,
        std::env::var(PASSWORD_ENV).ok(),
    ) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("portcullis-mail: {e}");
            return ExitCode::from(64);
        }
    };
    let served = match cli.http {
        Some(addr) if !addr.ip().is_loopback() => {
            eprintln!("portcullis-mail: --http `{addr}` is not a loopback address");
            return ExitCode::from(64);
        }
        Some(addr) => serve_http(settings, addr).await,
        None => serve(settings).await,
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portcullis-mail: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let running = server::Mail::new(settings)
        .serve(rmcp::transport::stdio())
        .await
        .context("cannot start the stdio server")?;
    running.waiting().await.context("stdio server failed")?;
    Ok(())
}

/// Streamable HTTP at `/mcp` (rmcp's service: 2025-11-25 sessions and 2026-07-28 requests),
/// until SIGTERM or Ctrl-C.
async fn serve_http(settings: Settings, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on `{addr}`"))?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mail = server::Mail::new(settings);
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
