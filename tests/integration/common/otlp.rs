//! A real OTLP/HTTP trace receiver for the integration tests: `POST /v1/traces` with an
//! `application/x-protobuf` body (optionally `Content-Encoding: gzip`), decoded with the
//! generated OTLP types, answered `200` with an empty `ExportTraceServiceResponse`.
//! Point the binary under test at it with `OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint()`
//! (the exporter appends `/v1/traces`) and `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`.
//!
//! Dev-dependencies this file needs:
//!   tiny_http = "0.12"
//!   opentelemetry-proto = { version = "0.32", default-features = false,
//!                           features = ["gen-tonic-messages", "trace"] }
//!   prost = "0.14"       (the version opentelemetry-proto 0.32 uses)
//!   flate2 = "1"         (already in Cargo.lock through other crates; only for gzip bodies)
//!
//! Exporter set-up that is known to work (checked in a scratch crate against this receiver,
//! both in a plain `fn main` and inside `#[tokio::main(flavor = "multi_thread")]`):
//!   opentelemetry-otlp 0.32, default-features = false,
//!     features = ["http-proto", "reqwest-blocking-client", "trace"]
//!   opentelemetry_sdk 0.32, features = ["trace"]
//!   `SpanExporter::builder().with_http().build()` + `SdkTracerProvider::builder()
//!   .with_batch_exporter(exporter)` (the default BatchSpanProcessor, which exports on its
//!   own OS thread, so the blocking reqwest client never runs on a tokio worker).
//!   Building the exporter inside a tokio runtime is fine: opentelemetry-otlp 0.32 builds
//!   the blocking client on a separate thread. `force_flush()`/`shutdown()` block the
//!   calling thread until the export thread is done: in async code call them from
//!   `tokio::task::spawn_blocking` (or accept a short block on a multi-thread runtime).
//!   Do NOT combine the feature `reqwest-client` (async reqwest) with the default
//!   BatchSpanProcessor: its export thread has no tokio reactor and every export fails.
//!   Enabling `reqwest-client` anywhere in the dependency graph silently takes priority
//!   over `reqwest-blocking-client` (features are additive).
//!
//! Everything here is blocking and runs the server on its own thread. From an async test,
//! prefer `wait_for_async` (it sleeps with tokio) so the runtime keeps driving other tasks.

#![allow(dead_code)]

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use prost::Message;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One attribute value, flattened from OTLP's `AnyValue`.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// Arrays, key-value lists and bytes, in their `Debug` form.
    Other(String),
}

impl AttrValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// `Int` or `Double` as a float.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            AttrValue::Int(i) => Some(*i as f64),
            AttrValue::Double(d) => Some(*d),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            AttrValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            AttrValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    fn from_any(v: Option<&AnyValue>) -> AttrValue {
        match v.and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => AttrValue::Str(s.clone()),
            Some(any_value::Value::IntValue(i)) => AttrValue::Int(*i),
            Some(any_value::Value::DoubleValue(d)) => AttrValue::Double(*d),
            Some(any_value::Value::BoolValue(b)) => AttrValue::Bool(*b),
            Some(other) => AttrValue::Other(format!("{other:?}")),
            None => AttrValue::Other(String::new()),
        }
    }
}

/// One received span, with the fields a test asserts on.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    /// Lower-case hex, 32 characters.
    pub trace_id: String,
    /// Lower-case hex, 16 characters.
    pub span_id: String,
    /// `None` for a root span (empty `parent_span_id` on the wire).
    pub parent_span_id: Option<String>,
    pub name: String,
    /// OTLP `SpanKind`: 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: i32,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: BTreeMap<String, AttrValue>,
    /// 0 unset, 1 ok, 2 error.
    pub status_code: i32,
    pub status_message: String,
    /// The resource attribute `service.name` of the batch this span came in.
    pub service_name: Option<String>,
    /// Event names, in order.
    pub events: Vec<String>,
}

impl SpanRecord {
    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attributes.get(key)
    }

    pub fn attr_str(&self, key: &str) -> Option<&str> {
        self.attr(key).and_then(AttrValue::as_str)
    }

    pub fn is_error(&self) -> bool {
        self.status_code == 2
    }

    pub fn duration(&self) -> Duration {
        Duration::from_nanos(self.end_unix_nanos.saturating_sub(self.start_unix_nanos))
    }
}

/// The spans whose parent is `parent` (same trace, `parent_span_id == parent.span_id`).
pub fn children_of<'a>(spans: &'a [SpanRecord], parent: &SpanRecord) -> Vec<&'a SpanRecord> {
    spans
        .iter()
        .filter(|s| {
            s.trace_id == parent.trace_id
                && s.parent_span_id.as_deref() == Some(parent.span_id.as_str())
        })
        .collect()
}

/// Every distinct trace id among `spans`.
pub fn trace_ids(spans: &[SpanRecord]) -> BTreeSet<String> {
    spans.iter().map(|s| s.trace_id.clone()).collect()
}

/// The first span called `name`, if any.
pub fn find_span<'a>(spans: &'a [SpanRecord], name: &str) -> Option<&'a SpanRecord> {
    spans.iter().find(|s| s.name == name)
}

/// A receiver on a free loopback port; the server thread stops when it is dropped.
pub struct OtlpReceiver {
    server: Arc<tiny_http::Server>,
    port: u16,
    spans: Arc<Mutex<Vec<SpanRecord>>>,
    /// Accepted requests as "gzip"/"identity", and rejected ones as
    /// "METHOD URL -> STATUS: reason", for diagnostics.
    accepted: Arc<Mutex<Vec<String>>>,
    rejected: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl OtlpReceiver {
    pub fn start() -> OtlpReceiver {
        let server = Arc::new(
            tiny_http::Server::http("127.0.0.1:0")
                .unwrap_or_else(|e| panic!("OTLP receiver could not bind 127.0.0.1:0: {e}")),
        );
        let port = server
            .server_addr()
            .to_ip()
            .expect("OTLP receiver listens on an IP address")
            .port();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let rejected = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (server, spans) = (server.clone(), spans.clone());
            let (accepted, rejected) = (accepted.clone(), rejected.clone());
            std::thread::Builder::new()
                .name("otlp-receiver".into())
                .spawn(move || {
                    // Ends when `unblock()` is called from Drop.
                    for request in server.incoming_requests() {
                        handle(request, &spans, &accepted, &rejected);
                    }
                })
                .expect("spawn the OTLP receiver thread")
        };
        OtlpReceiver {
            server,
            port,
            spans,
            accepted,
            rejected,
            thread: Some(thread),
        }
    }

    /// The value for `OTEL_EXPORTER_OTLP_ENDPOINT` (the exporter appends `/v1/traces`).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The value for `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is, no path appended).
    pub fn traces_endpoint(&self) -> String {
        format!("{}/v1/traces", self.endpoint())
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<SpanRecord> {
        self.spans.lock().unwrap().clone()
    }

    /// The `Content-Encoding` of every accepted export request, in arrival order.
    pub fn accepted(&self) -> Vec<String> {
        self.accepted.lock().unwrap().clone()
    }

    /// Requests the receiver turned away (wrong path, content type, undecodable body).
    pub fn rejected(&self) -> Vec<String> {
        self.rejected.lock().unwrap().clone()
    }

    /// Polls until `pred` holds for the spans received so far, or `timeout` passes; returns
    /// the spans either way (the caller asserts on them, so a timeout fails with context).
    pub fn wait_for(
        &self,
        timeout: Duration,
        pred: impl Fn(&[SpanRecord]) -> bool,
    ) -> Vec<SpanRecord> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if pred(&spans) || Instant::now() >= deadline {
                return spans;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `wait_for` for async tests: sleeps with tokio instead of blocking the runtime.
    pub async fn wait_for_async(
        &self,
        timeout: Duration,
        pred: impl Fn(&[SpanRecord]) -> bool,
    ) -> Vec<SpanRecord> {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if pred(&spans) || Instant::now() >= deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn handle(
    mut request: tiny_http::Request,
    spans: &Mutex<Vec<SpanRecord>>,
    accepted: &Mutex<Vec<String>>,
    rejected: &Mutex<Vec<String>>,
) {
    let header = |name: &str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str().trim().to_ascii_lowercase())
    };
    let content_type = header("Content-Type").unwrap_or_default();
    let encoding = header("Content-Encoding").unwrap_or_else(|| "identity".into());
    let what = format!("{} {}", request.method(), request.url());

    let outcome: Result<Vec<SpanRecord>, (u16, String)> = (|| {
        if *request.method() != tiny_http::Method::Post {
            return Err((405, "only POST is accepted".into()));
        }
        if request.url().split('?').next() != Some("/v1/traces") {
            return Err((404, "only /v1/traces is served".into()));
        }
        // `application/x-protobuf` possibly with parameters; JSON (`http/json`) is not decoded.
        if content_type.split(';').next().map(str::trim) != Some("application/x-protobuf") {
            return Err((415, format!("unsupported Content-Type {content_type:?}")));
        }
        let mut raw = Vec::new();
        request
            .as_reader()
            .read_to_end(&mut raw)
            .map_err(|e| (400, format!("reading the body: {e}")))?;
        let body = match encoding.as_str() {
            "identity" | "" => raw,
            "gzip" => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&raw[..])
                    .read_to_end(&mut out)
                    .map_err(|e| (400, format!("gunzip: {e}")))?;
                out
            }
            other => return Err((415, format!("unsupported Content-Encoding {other:?}"))),
        };
        let export = ExportTraceServiceRequest::decode(&body[..])
            .map_err(|e| (400, format!("not an ExportTraceServiceRequest: {e}")))?;
        Ok(flatten(&export))
    })();

    let response = match outcome {
        Ok(new) => {
            spans.lock().unwrap().extend(new);
            accepted.lock().unwrap().push(encoding.clone());
            tiny_http::Response::from_data(ExportTraceServiceResponse::default().encode_to_vec())
                .with_status_code(200)
                .with_header(
                    "Content-Type: application/x-protobuf"
                        .parse::<tiny_http::Header>()
                        .unwrap(),
                )
        }
        Err((status, reason)) => {
            rejected
                .lock()
                .unwrap()
                .push(format!("{what} -> {status}: {reason}"));
            tiny_http::Response::from_data(reason.into_bytes()).with_status_code(status)
        }
    };
    let _ = request.respond(response);
}

/// Turns one export request into flat span records.
pub fn flatten(export: &ExportTraceServiceRequest) -> Vec<SpanRecord> {
    let mut out = Vec::new();
    for rs in &export.resource_spans {
        let service_name = rs.resource.as_ref().and_then(|r| {
            r.attributes
                .iter()
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| {
                    AttrValue::from_any(kv.value.as_ref())
                        .as_str()
                        .map(String::from)
                })
        });
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let status = span.status.as_ref();
                out.push(SpanRecord {
                    trace_id: to_hex(&span.trace_id),
                    span_id: to_hex(&span.span_id),
                    parent_span_id: (!span.parent_span_id.is_empty())
                        .then(|| to_hex(&span.parent_span_id)),
                    name: span.name.clone(),
                    kind: span.kind,
                    start_unix_nanos: span.start_time_unix_nano,
                    end_unix_nanos: span.end_time_unix_nano,
                    attributes: attributes(&span.attributes),
                    status_code: status.map_or(0, |s| s.code),
                    status_message: status.map(|s| s.message.clone()).unwrap_or_default(),
                    service_name: service_name.clone(),
                    events: span.events.iter().map(|e| e.name.clone()).collect(),
                });
            }
        }
    }
    out
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, AttrValue> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), AttrValue::from_any(kv.value.as_ref())))
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
