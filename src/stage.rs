//! `transcoder run INPUT`: put a local file where media-api would have uploaded it, and
//! build the job payload that points at it, so the workflow reads through storage.

use anyhow::{Context, Result};
use std::path::Path;
use transcoder_activities::fetch::InputUri;
use transcoder_activities::Storage;
use transcoder_workflows::keys::{default_output_prefix, original_key};
use transcoder_workflows::media::ObjectRef;
use transcoder_workflows::{JobInput, MediaType};

/// Bucket names of the embedded store, one folder each under `--out`.
pub const ARCHIVE_BUCKET: &str = "codex-archive";
pub const MEDIA_BUCKET: &str = "codex-media-local";
pub const ASSETS_BUCKET: &str = "codex-assets-local";

/// The buckets `run` uses: the R2/B2 bucket variables when set (so `run` writes where a
/// production job would), the embedded names otherwise.
pub struct Buckets {
    pub archive: String,
    pub media: String,
    pub assets: String,
}

impl Buckets {
    pub fn from_env() -> Self {
        let get = |k: &str, d: &str| {
            std::env::var(k)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| d.to_string())
        };
        Buckets {
            archive: get("B2_BUCKET_NAME", ARCHIVE_BUCKET),
            media: get("R2_MEDIA_BUCKET", MEDIA_BUCKET),
            assets: get("R2_ASSETS_BUCKET", ASSETS_BUCKET),
        }
    }
}

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
    let buckets = Buckets::from_env();
    let ext = input.extension().and_then(|e| e.to_str()).unwrap_or("bin");
    let key = original_key(&job.creator_id, &job.media_id, ext);
    storage
        .put_file(input, &ObjectRef::new(&buckets.archive, &key))
        .await
        .with_context(|| format!("staging {} into {}/{key}", input.display(), buckets.archive))?;
    Ok(payload(job, &buckets, key, None))
}

/// `run --job FILE INPUT`: stores `input` where the payload's `inputBucket`/`inputKey` say.
/// An invalid payload stores nothing (the job's own validation then reports every problem,
/// through the usual failed webhook where it can be signed), and a payload that downloads its input (`inputUri`)
/// takes no local file.
pub async fn stage_for_payload(storage: &Storage, input: &Path, job: &JobInput) -> Result<()> {
    let Ok(valid) = job.validate() else {
        return Ok(());
    };
    if !job.secret_problems().is_empty() {
        return Ok(());
    }
    if valid.input_uri.is_some() {
        anyhow::bail!("the payload downloads its input from inputUri; give no INPUT file with it");
    }
    if !input.is_file() {
        anyhow::bail!("input {} is not a readable file", input.display());
    }
    let target = ObjectRef::new(&valid.input_bucket, &valid.input_key);
    storage.put_file(input, &target).await.with_context(|| {
        format!(
            "staging {} into {}/{}",
            input.display(),
            valid.input_bucket,
            valid.input_key
        )
    })?;
    Ok(())
}

/// The payload for an input the job downloads itself: it is archived at the usual
/// original's key.
pub fn uri_job(uri: &InputUri, text: &str, job: &LocalJob) -> JobInput {
    let buckets = Buckets::from_env();
    let ext = uri.extension().unwrap_or_else(|| "bin".to_string());
    let key = original_key(&job.creator_id, &job.media_id, &ext);
    payload(job, &buckets, key, Some(text.to_string()))
}

fn payload(
    job: &LocalJob,
    buckets: &Buckets,
    input_key: String,
    input_uri: Option<String>,
) -> JobInput {
    JobInput {
        media_id: Some(job.media_id.clone()),
        creator_id: Some(job.creator_id.clone()),
        media_type: Some(job.media_type.as_str().to_string()),
        input_bucket: Some(buckets.archive.clone()),
        input_key: Some(input_key),
        output_bucket: Some(buckets.media.clone()),
        output_prefix: Some(default_output_prefix(
            &job.creator_id,
            &job.media_id,
            job.media_type == MediaType::Audio,
        )),
        assets_bucket: Some(buckets.assets.clone()),
        archive_bucket: Some(buckets.archive.clone()),
        webhook_url: Some(job.webhook_url.clone()),
        webhook_secret: Some(job.webhook_secret.clone()),
        original_retention_seconds: None,
        segments_per_chunk: None,
        webhook_retry_hours: None,
        input_uri,
        renditions: None,
        subtitles: None,
        storyboard: None,
        intake_problems: Vec::new(),
    }
}
