//! `transcoder run INPUT`: put a local file where media-api would have uploaded it, and
//! build the job payload that points at it, so the workflow reads through storage.

use anyhow::{Context, Result};
use std::path::Path;
use transcoder_activities::Storage;
use transcoder_workflows::keys::{default_output_prefix, original_key};
use transcoder_workflows::media::ObjectRef;
use transcoder_workflows::{JobInput, MediaType};

/// Bucket names of the embedded store, one folder each under `--out`.
pub const ARCHIVE_BUCKET: &str = "codex-archive";
pub const MEDIA_BUCKET: &str = "codex-media-local";
pub const ASSETS_BUCKET: &str = "codex-assets-local";

pub struct LocalJob {
    pub media_id: String,
    pub creator_id: String,
    pub media_type: MediaType,
    pub webhook_url: String,
    pub webhook_secret: String,
}

/// Copies `input` to `originals/{creatorId}/{mediaId}/original.<ext>` in the archive bucket
/// and returns the payload for it.
pub async fn stage_input(storage: &Storage, input: &Path, job: &LocalJob) -> Result<JobInput> {
    let ext = input.extension().and_then(|e| e.to_str()).unwrap_or("bin");
    let key = original_key(&job.creator_id, &job.media_id, ext);
    storage
        .put_file(input, &ObjectRef::new(ARCHIVE_BUCKET, &key))
        .await
        .with_context(|| format!("staging {} into {ARCHIVE_BUCKET}/{key}", input.display()))?;
    Ok(JobInput {
        media_id: Some(job.media_id.clone()),
        creator_id: Some(job.creator_id.clone()),
        media_type: Some(job.media_type.as_str().to_string()),
        input_bucket: Some(ARCHIVE_BUCKET.to_string()),
        input_key: Some(key),
        output_bucket: Some(MEDIA_BUCKET.to_string()),
        output_prefix: Some(default_output_prefix(
            &job.creator_id,
            &job.media_id,
            job.media_type == MediaType::Audio,
        )),
        assets_bucket: Some(ASSETS_BUCKET.to_string()),
        archive_bucket: Some(ARCHIVE_BUCKET.to_string()),
        webhook_url: Some(job.webhook_url.clone()),
        webhook_secret: Some(job.webhook_secret.clone()),
        original_retention_seconds: None,
        segments_per_chunk: None,
        webhook_retry_hours: None,
    })
}
