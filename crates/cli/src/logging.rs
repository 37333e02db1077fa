//! Logging to stderr (stdout may be the MCP channel), as text or JSON, filtered by
//! `PORTCULLIS_LOG` (or `RUST_LOG`) with a per-command default. Every line passes the vault
//! redactor first.

use std::io::Write;

use tracing_subscriber::EnvFilter;

/// Stderr, with every vault secret redacted from each line before it is written.
struct Scrubbed;

impl Write for Scrubbed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().write_all(&portcullis_gateway::secrets::scrub(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber.
pub fn init(format: Format, default: &str) {
    let filter = std::env::var("PORTCULLIS_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Scrubbed);
    let _ = match format {
        Format::Text => builder.with_ansi(false).try_init(),
        Format::Json => builder.json().try_init(),
    };
}
