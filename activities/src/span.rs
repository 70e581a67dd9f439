//! Attributes on the span of the activity running now (the SDK's `RunActivity:…` span),
//! for the plain functions as much as for the adapter: like a log line, a no-op when
//! traces are not exported.

use opentelemetry::trace::get_active_span;
use opentelemetry::KeyValue;
use std::path::Path;

/// Sets `attributes` on the running activity's span.
pub fn annotate(attributes: Vec<KeyValue>) {
    get_active_span(|span| span.set_attributes(attributes));
}

/// Records the size of the file a step reads whole as `bytes.in`.
pub fn bytes_in(path: &Path) {
    if let Ok(meta) = std::fs::metadata(path) {
        annotate(vec![KeyValue::new("bytes.in", meta.len() as i64)]);
    }
}
