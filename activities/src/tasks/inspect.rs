//! The `probe` action: ffprobe's own JSON of the input, and the facts our transcode reads
//! from it (display size, rotation, frame rate, interlacing, HDR, duration fallback).

use super::TaskIo;
use crate::error::Result;
use crate::ffmpeg::run::ffprobe_json;
use serde_json::{json, Value};
use std::ffi::OsString;
use std::path::Path;
use transcoder_workflows::task::Probe;

pub async fn probe_media(io: &TaskIo<'_>, task: &Probe, work: &Path) -> Result<Value> {
    let file = io.input("data.input", &task.input, work, "input").await?;
    let args: Vec<OsString> = ["-show_format", "-show_streams", "-show_chapters"]
        .iter()
        .map(OsString::from)
        .chain([
            OsString::from("-protocol_whitelist"),
            "file".into(),
            file.clone().into(),
        ])
        .collect();
    let mut ffprobe = ffprobe_json(&args).await?;
    // The file's name in the worker's folder means nothing to the caller.
    if let Some(format) = ffprobe.get_mut("format").and_then(Value::as_object_mut) {
        format.insert("filename".into(), Value::String(redacted(&task.input)));
    }
    let facts = crate::probe::probe_file(&file).await?;
    let display = facts.video.as_ref().map(|v| {
        let (w, h) = v.display_size();
        json!({"width": w, "height": h})
    });
    Ok(json!({
        "ffprobe": ffprobe,
        "facts": facts,
        "display": display,
    }))
}

/// The input as the caller wrote it, without a URL's query (a signature) or a sealed form.
fn redacted(input: &str) -> String {
    if crate::secrets::SecretBox::is_sealed(input) {
        "<sealed URI>".into()
    } else {
        transcoder_workflows::job::redact_uri(input)
    }
}
