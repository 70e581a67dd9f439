//! Where a chunked video task's parts live: one rule for `DOWNSAMPLING` and `ENCODING`.
//!
//! The parts wait in a store the worker writes ([`TaskIo::parts_root`]), in a folder named
//! by a digest of everything they are made from, so the parts of another request for the
//! same output are never taken for this one's while a request sent again after a failure
//! finds its own. A source that is not an object of the worker's stores (`http(s)://`,
//! `gs://`) is copied there once, from the file the plan already read, for every piece to
//! read; an output that is not one (a presigned PUT URL, `gs://`) is joined there and then
//! delivered by `task_deliver`.

use super::TaskIo;
use crate::error::Result;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::Path;
use transcoder_workflows::media::ObjectRef;
use transcoder_workflows::task::{StageSource, TaskDelivery, TaskOutput, CHUNKED_FROM_SECONDS};

/// The variable that moves the length from which video tasks are chunked (seconds of
/// picture; `0` chunks every one that can be cut, a very large value none).
pub const CHUNKED_FROM_VAR: &str = "TRANSCODER_TASK_CHUNKED_FROM";

/// Whether a video task whose picture lasts `seconds` is made in chunks: from
/// [`CHUNKED_FROM_SECONDS`], or what [`CHUNKED_FROM_VAR`] says.
pub fn chunked(seconds: f64) -> bool {
    let from = std::env::var(CHUNKED_FROM_VAR)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .unwrap_or(CHUNKED_FROM_SECONDS);
    seconds >= from
}

/// The folder of one chunked task's parts: `bucket`, and its key prefix ending in `/`.
pub struct Parts {
    pub bucket: String,
    pub prefix: String,
}

impl Parts {
    /// The parts folder under `root` (from [`TaskIo::parts_root`]) of a task made from
    /// `inputs` (text) and `contents` (bytes of files the payload names).
    pub fn new(root: (String, String), inputs: &[&str], contents: &[&[u8]]) -> Self {
        let mut digest = Sha256::new();
        for part in inputs
            .iter()
            .map(|s| s.as_bytes())
            .chain(contents.iter().copied())
        {
            digest.update((part.len() as u64).to_le_bytes());
            digest.update(part);
        }
        let (bucket, root) = root;
        let prefix = format!("{root}{}/", hex::encode(&digest.finalize()[..8]));
        Parts { bucket, prefix }
    }

    pub fn object(&self, name: &str) -> ObjectRef {
        ObjectRef::new(&self.bucket, format!("{}{name}", self.prefix))
    }

    /// The source the pieces read: the store object `uri` names, or a copy of `local` (the
    /// file the plan read) in the parts folder, which is also returned to be removed after.
    pub async fn source(
        &self,
        io: &TaskIo<'_>,
        uri: &str,
        local: &Path,
    ) -> Result<(ObjectRef, Option<ObjectRef>)> {
        if let Some(object) = io.store_object(uri) {
            return Ok((object, None));
        }
        let ext = local
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_else(|| "bin".into());
        let copy = self.object(&format!("source.{ext}"));
        io.storage.store(local, &copy).await?;
        Ok((copy.clone(), Some(copy)))
    }

    /// Where the join writes: the output itself when it is an object of this worker's
    /// stores, else the parts folder, with what `task_deliver` then does.
    pub fn landing(
        &self,
        io: &TaskIo<'_>,
        field: &str,
        output: &TaskOutput,
    ) -> (ObjectRef, Option<TaskDelivery>) {
        if let TaskOutput::Uri(uri) = output {
            if let Some(dest) = io.store_object(uri) {
                return (dest, None);
            }
        }
        let joined = self.object("output.mp4");
        let delivery = TaskDelivery {
            field: field.to_string(),
            output: output.clone(),
            object: joined.clone(),
        };
        (joined, Some(delivery))
    }
}

/// Copies a payload's input that is not a store object into the parts place of the task's
/// output, once for all its parts; `None` when it is one already or there is no place.
pub async fn stage_source(
    io: &TaskIo<'_>,
    input: &StageSource,
    work: &Path,
) -> Result<Option<ObjectRef>> {
    if io.store_object(&input.uri).is_some() {
        return Ok(None);
    }
    let Some(root) = io.parts_root(&input.output) else {
        return Ok(None);
    };
    let local = io.input(&input.field, &input.uri, work, "source").await?;
    let parts = Parts::new(root, &["source copy v1", &input.uri], &[]);
    let (copy, _) = parts.source(io, &input.uri, &local).await?;
    Ok(Some(copy))
}

/// Delivers a joined output from the parts folder to where the payload asked.
pub async fn deliver(io: &TaskIo<'_>, input: &TaskDelivery, work: &Path) -> Result<Value> {
    let file = io.storage.readable_path(&input.object, work).await?;
    let delivered = io.output(&input.field, &input.output, &file).await?;
    Ok(json!({
        "output_uri": delivered.location,
        "size_bytes": delivered.size_bytes,
        "verified": delivered.verified,
    }))
}
