//! The log and, with `--otlp-endpoint`, the OpenTelemetry exporter: request spans
//! (`service::trace`) go to the collector over OTLP/HTTP, whatever `RUST_LOG` says of the log.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::prelude::*;

/// Flushes the exporter's last spans when dropped (at the end of `serve`).
pub struct Telemetry(Option<SdkTracerProvider>);

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            if let Err(e) = p.shutdown() {
                eprintln!("flushing spans to the OTLP collector: {e}");
            }
        }
    }
}

/// Starts the log (request spans off unless `RUST_LOG` names them; each prints as it closes) and,
/// given a collector URL, the span exporter.
pub fn init(otlp_endpoint: Option<&str>) -> anyhow::Result<Telemetry> {
    let log = tracing_subscriber::fmt::layer()
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        // Colour only for a person at a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,spans=off,llama_cpp_2=warn")));
    let provider = match otlp_endpoint {
        Some(url) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(url)
                .build()
                .map_err(|e| anyhow::anyhow!("--otlp-endpoint {url}: {e}"))?;
            let resource = opentelemetry_sdk::Resource::builder().with_service_name("thinkscale").build();
            Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
        }
        None => None,
    };
    let spans = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("thinkscale"))
            .with_filter(Targets::new().with_target(crate::service::TRACE_TARGET, tracing::Level::INFO))
    });
    tracing_subscriber::registry().with(log).with(spans).init();
    Ok(Telemetry(provider))
}
