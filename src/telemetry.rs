//! Logs, traces and metrics for the whole process, set up once in `main`.
//!
//! - **Logs**: human lines on stderr by default, one JSON object per line with
//!   `--log-format json`. Nothing secret is logged anywhere: webhook secrets and presigned
//!   input URIs are sealed before they reach a log line or the workflow history.
//! - **Traces**: when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is
//!   set, spans go to that collector over OTLP/HTTP (protobuf). The SDK's OpenTelemetry plugin
//!   carries the trace context in the `_tracer-data` Temporal header, so one job is one trace
//!   across the client, the workflow and every activity on any worker; our own `tracing`
//!   spans (ffmpeg runs) hang under the activity span that ran them.
//! - **Metrics**: `--metrics-addr` starts the Temporal SDK's Prometheus endpoint; our metrics
//!   (`transcoder_activities::metrics`) are registered on the same meter, so one scrape
//!   returns both.

use anyhow::{Context, Result};
use clap::ValueEnum;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::net::SocketAddr;
use std::sync::Arc;
use temporalio_common::telemetry::metrics::CoreMeter;
use temporalio_common::telemetry::{
    start_prometheus_metric_exporter, HistogramBucketOverrides, PrometheusExporterOptions,
};
use temporalio_sdk::opentelemetry::{OpenTelemetryPlugin, WorkflowIdGenerator};
use temporalio_sdk::SimplePlugin;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

/// How log lines look on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One readable line per event (colours on a terminal).
    #[default]
    Human,
    /// One JSON object per event: `timestamp`, `level`, `fields`, `target`, `span`.
    Json,
    /// RunPod's log view: `{"requestId", "message", "level"}` per line on stdout (the
    /// default of `transcoder runpod` when `RUNPOD_ENDPOINT_ID` is set).
    Runpod,
}

/// Writes each log line to stderr above `transcoder run`'s progress bars, so neither
/// tears the other (without bars on screen it is plain stderr).
struct LogWriter;

/// One log event, written whole when dropped.
struct LogLine(Vec<u8>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> Self::Writer {
        LogLine(Vec::with_capacity(256))
    }
}

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.0);
        crate::progress::bars().suspend(|| {
            use std::io::Write as _;
            let _ = std::io::stderr().lock().write_all(&line);
        });
    }
}

/// Keeps the trace exporter alive; `shutdown` flushes the spans still buffered.
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
}

/// The crates whose `tracing` spans become OpenTelemetry spans. The SDK's own internal
/// spans stay out of traces: the plugin already gives one span per workflow and activity.
const TRACED_CRATES: [&str; 3] = [
    "transcoder",
    "transcoder_activities",
    "transcoder_workflows",
];

/// Whether the standard OTLP variables ask for trace export.
pub fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()))
}

/// Sets up logging and, when configured, trace export. Call once, outside any async
/// runtime (the exporter's HTTP client must not be built inside one).
/// `level` replaces the default `info` (RunPod's `--rp_log_level`); `TRANSCODER_LOG`, when
/// set, wins over both.
pub fn init(format: LogFormat, level: Option<&str>) -> Result<Telemetry> {
    let level = level.unwrap_or("info");
    let filter = EnvFilter::try_from_env("TRANSCODER_LOG").unwrap_or_else(|_| {
        EnvFilter::new(format!(
            "{level},temporalio_sdk_core=warn,temporalio_sdk=warn,temporalio_client=warn"
        ))
    });
    // Colours only on a terminal: logs in files and CI output stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = match format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_writer(LogWriter)
            .with_ansi(ansi)
            .with_target(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(LogWriter)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Runpod => crate::runpod_log::RunpodLog.with_filter(filter).boxed(),
    };

    // A tracing misconfiguration must not stop transcoding: say so and run without traces.
    let (tracer_provider, trace_problem) = if otlp_configured() {
        match tracer_provider() {
            Ok(provider) => (Some(provider), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        }
    } else {
        (None, None)
    };
    let otel = tracer_provider.as_ref().map(|provider| {
        let targets = TRACED_CRATES.iter().fold(Targets::new(), |t, name| {
            t.with_target(*name, LevelFilter::INFO)
        });
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("transcoder"))
            .with_filter(targets)
    });
    tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()
        .context("installing the log subscriber")?;
    if let Some(provider) = &tracer_provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
        tracing::debug!("exporting traces over OTLP/HTTP");
    }
    let _ = TRACING_ON.set(tracer_provider.is_some());
    if let Some(problem) = trace_problem {
        tracing::warn!("traces are off: {problem}");
    }
    Ok(Telemetry { tracer_provider })
}

/// An OTLP/HTTP exporter configured by the standard `OTEL_EXPORTER_OTLP_*` variables
/// (endpoint, headers, timeout) behind a batch processor. Workflow span ids come from
/// the workflow's replay-safe randomness, so a replay gives the same ids.
fn tracer_provider() -> Result<SdkTracerProvider> {
    if let Ok(protocol) = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL") {
        if !protocol.starts_with("http") {
            anyhow::bail!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={protocol} is not supported: use http/protobuf (port 4318 on Jaeger, Tempo and the OpenTelemetry Collector)"
            );
        }
    }
    // rustls needs a process-wide crypto provider for https:// collectors: ring (already
    // built for the other HTTP clients). An error only means one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .context("building the OTLP/HTTP span exporter")?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("transcoder");
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_id_generator(WorkflowIdGenerator::default())
        .with_resource(resource.build())
        .build())
}

impl Telemetry {
    /// Flushes buffered spans to the collector. Call after the async runtime is done.
    pub fn shutdown(self) {
        if let Some(provider) = self.tracer_provider {
            if let Err(e) = provider.shutdown() {
                eprintln!("warning: flushing traces failed: {e}");
            }
        }
    }
}

/// The Temporal plugin that traces client calls, workflows and activities and propagates
/// the context between them; `None` when traces are not exported.
pub fn temporal_plugin() -> Option<SimplePlugin> {
    TRACING_ON
        .get()
        .copied()
        .unwrap_or(false)
        .then(|| OpenTelemetryPlugin::builder().build())
}

/// Set once by [`init`]: whether spans are exported.
static TRACING_ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// A Prometheus endpoint serving `/metrics` on `addr`, for the SDK's worker metrics and ours.
pub struct MetricsEndpoint {
    pub meter: Arc<dyn CoreMeter>,
    pub bound: SocketAddr,
}

/// Starts the endpoint (inside the tokio runtime). Counters get the `_total` suffix and
/// durations are in seconds, as Prometheus conventions want.
pub fn start_metrics(addr: SocketAddr) -> Result<MetricsEndpoint> {
    let mut buckets = HistogramBucketOverrides::default();
    for (name, bounds) in transcoder_activities::metrics::histogram_buckets() {
        buckets.overrides.insert(name.to_string(), bounds);
    }
    // The SDK's activity latency buckets stop at 60 s; a chunk or a mezzanine piece runs
    // minutes, a whole-file step longer. (Matched as a part of the metric's name, so the
    // local-activity histogram gets them too.)
    buckets.overrides.insert(
        "activity_execution_latency".to_string(),
        vec![
            0.05, 0.1, 0.5, 1., 5., 10., 30., 60., 120., 300., 600., 1800., 3600., 10800.,
        ],
    );
    let options = PrometheusExporterOptions::builder()
        .socket_addr(addr)
        .counters_total_suffix(true)
        .use_seconds_for_durations(true)
        .unit_suffix(true)
        .histogram_bucket_overrides(buckets)
        .build();
    let started = start_prometheus_metric_exporter(options)
        .with_context(|| format!("starting the metrics endpoint on {addr}"))?;
    tracing::info!(addr = %started.bound_addr, "Prometheus metrics on http://{}/metrics", started.bound_addr);
    Ok(MetricsEndpoint {
        meter: started.meter,
        bound: started.bound_addr,
    })
}

/// Makes `span` continue the W3C trace context in `traceparent` (and `tracestate`), as
/// given by whoever queued the job; a malformed value is ignored and the span starts a new
/// trace.
pub fn continue_trace(span: &tracing::Span, traceparent: &str, tracestate: Option<&str>) {
    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let mut carrier = std::collections::HashMap::new();
    carrier.insert("traceparent".to_string(), traceparent.to_string());
    if let Some(state) = tracestate {
        carrier.insert("tracestate".to_string(), state.to_string());
    }
    let context = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    } else {
        tracing::warn!(traceparent, "ignoring a malformed traceparent");
    }
}
