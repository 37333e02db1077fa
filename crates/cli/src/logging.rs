//! Logging to stderr (stdout may be the MCP channel), as text or JSON, filtered by
//! `PORTCULLIS_LOG` (or `RUST_LOG`) with a per-command default. Every line passes the vault
//! redactor first.

use std::io::Write;

use tracing_subscriber::EnvFilter;

/// Stderr, with every vault secret redacted from each line before it is written.
struct Scrubbed;

impl Write for Scrubbed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().write_all(&portcullis_gateway::redact::scrub(buf))?;
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

/// Exports spans to an OTLP receiver until dropped (which flushes what is queued).
pub struct Telemetry {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("portcullis: could not flush traces: {e}");
        }
    }
}

/// The OTLP/HTTP exporter and the tracer provider for `t`.
fn telemetry(t: &portcullis_gateway::config::TelemetryConfig) -> Result<Telemetry, String> {
    let endpoint = format!("{}/v1/traces", t.otlp_endpoint.as_str().trim_end_matches('/'));
    use opentelemetry_otlp::WithExportConfig as _;
    // The exporter builds its reqwest client (rustls) at once: the TLS provider comes first.
    portcullis_gateway::install_crypto();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| e.to_string())?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(t.service_name.clone())
        .build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    Ok(Telemetry { provider })
}

/// Installs the global subscriber: log lines to stderr under the filter, and, with `otel`,
/// the gateway's spans to an OTLP receiver (whatever the log filter).
pub fn init(
    format: Format,
    default: &str,
    otel: Option<&portcullis_gateway::config::TelemetryConfig>,
) -> Option<Telemetry> {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = std::env::var("PORTCULLIS_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let fmt = match format {
        Format::Text => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(|| Scrubbed)
            .with_filter(filter)
            .boxed(),
        Format::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(|| Scrubbed)
            .with_filter(filter)
            .boxed(),
    };
    let (otel_layer, guard) = match otel.map(telemetry) {
        None => (None, None),
        Some(Err(e)) => {
            eprintln!("portcullis: traces will not be exported: {e}");
            (None, None)
        }
        Some(Ok(t)) => {
            let tracer = t.provider.tracer("portcullis");
            let layer = tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(EnvFilter::new("portcullis_gateway=info"));
            (Some(layer), Some(t))
        }
    };
    let _ = tracing_subscriber::registry().with(fmt).with(otel_layer).try_init();
    guard
}
