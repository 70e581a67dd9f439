//! `STAGE_OBJECT`: one object copied into a bucket, so later tasks read a canonical key.

use super::TaskIo;
use crate::error::{MediaError, Result};
use serde_json::{json, Value};
use sha2::Digest as _;
use std::path::Path;
use tokio::io::AsyncReadExt as _;
use transcoder_workflows::task::{StageObject, TaskOutput};

pub async fn stage_object(io: &TaskIo<'_>, task: &StageObject, work: &Path) -> Result<Value> {
    let dest = TaskOutput::Uri(task.dest_uri.clone());
    io.check_output("parameters.dest_uri", &dest)?;
    let file = io
        .input("parameters.source_uri", &task.source_uri, work, "source")
        .await?;
    let sha256 = sha256_of(&file).await?;
    let delivered = io.output("parameters.dest_uri", &dest, &file).await?;
    Ok(json!({
        "task": "STAGE_OBJECT",
        "dest_uri": delivered.location,
        "size_bytes": delivered.size_bytes,
        "sha256": sha256,
        "verified": delivered.verified,
    }))
}

/// The SHA-256 of a file, read in blocks.
pub async fn sha256_of(path: &Path) -> Result<String> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(MediaError::io("reading", path))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(MediaError::io("reading", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
