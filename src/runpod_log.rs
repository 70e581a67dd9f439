//! Log lines as RunPod's log view reads them (what its Python SDK prints when
//! `RUNPOD_ENDPOINT_ID` is set): one JSON object per line on stdout,
//! `{"requestId": <job id or null>, "message": …, "level": …}`. The job id comes from the
//! `runpod job` span the handler opens around each job (its `runpod.job_id` field): lines the
//! handler logs for a job name it. Activities run on the worker's own tasks, for any job of
//! the task queue, so their lines carry `null` and name the media id in their fields.

use serde_json::json;
use std::fmt::Write as _;
use std::io::Write as _;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// The span field that carries the RunPod job id.
const JOB_ID_FIELD: &str = "runpod.job_id";

/// The SDK cuts messages longer than this out of their middle.
const MAX_MESSAGE: usize = 4096;

/// The layer; see the module docs.
pub struct RunpodLog;

/// A span's job id, kept in its extensions.
struct JobId(String);

struct JobIdVisitor(Option<String>);

impl Visit for JobIdVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == JOB_ID_FIELD && !value.is_empty() {
            self.0 = Some(value.to_string());
        }
    }
    fn record_debug(&mut self, _: &Field, _: &dyn std::fmt::Debug) {}
}

/// The event's message, then its other fields as `key=value`.
#[derive(Default)]
struct MessageVisitor {
    message: String,
    fields: String,
}

impl Visit for MessageVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={value:?}", field.name());
        }
    }
}

/// RunPod's level names.
fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// `text` at most [`MAX_MESSAGE`] characters, its middle cut out as the SDK does.
fn cut(text: String) -> String {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= MAX_MESSAGE {
        return text;
    }
    let keep = (MAX_MESSAGE - 5) / 2;
    let head: String = chars[..keep].iter().collect();
    let tail: String = chars[chars.len() - keep..].iter().collect();
    format!("{head} ... {tail}")
}

/// One log line for `event`, with the job id of the nearest enclosing job span.
pub fn line(request_id: Option<&str>, level: &Level, message: String) -> String {
    json!({
        "requestId": request_id,
        "message": cut(message),
        "level": level_name(level),
    })
    .to_string()
}

impl<S> Layer<S> for RunpodLog
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut visitor = JobIdVisitor(None);
        attrs.record(&mut visitor);
        if let (Some(job), Some(span)) = (visitor.0, ctx.span(id)) {
            span.extensions_mut().insert(JobId(job));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let request_id = ctx.event_scope(event).and_then(|scope| {
            scope
                .into_iter()
                .find_map(|span| span.extensions().get::<JobId>().map(|j| j.0.clone()))
        });
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        let text = format!("{}{}", visitor.message, visitor.fields);
        let mut out = line(request_id.as_deref(), event.metadata().level(), text);
        out.push('\n');
        // One write per line, so lines from concurrent tasks never interleave.
        let _ = std::io::stdout().lock().write_all(out.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_the_sdks_shape_and_long_messages_lose_their_middle() {
        let l: serde_json::Value =
            serde_json::from_str(&line(Some("job-1"), &Level::WARN, "hello".into())).unwrap();
        assert_eq!(
            l,
            json!({"requestId": "job-1", "message": "hello", "level": "WARN"})
        );
        let l: serde_json::Value =
            serde_json::from_str(&line(None, &Level::INFO, "x".repeat(10_000))).unwrap();
        assert_eq!(l["requestId"], serde_json::Value::Null);
        let message = l["message"].as_str().unwrap();
        assert!(message.chars().count() <= MAX_MESSAGE && message.contains(" ... "));
    }
}
