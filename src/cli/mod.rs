//! The subcommands' bodies: `run` (with what it prints) in [`run`], `task` in [`task`], the others in
//! [`commands`], and the worker settings every command that runs a worker shares.

pub(crate) mod commands;
pub(crate) mod run;
pub(crate) mod sandbox;
pub(crate) mod task;

use crate::*;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Duration;
use transcoder::telemetry::{self};
use transcoder::worker::{self, WorkerConfig};
use transcoder_activities::fetch::FetchPolicy;
use transcoder_activities::metrics::Metrics;
use transcoder_activities::secrets::SecretBox;
use transcoder_activities::{EncoderSettings, Storage};
use transcoder_workflows::JobInput;

/// Default size of the per-worker cache of downloaded remote objects.
pub(crate) const DEFAULT_CACHE_BYTES: u64 = 20 * 1024 * 1024 * 1024;

pub(crate) async fn worker_config(
    common: &CommonArgs,
    secrets: Option<SecretBox>,
) -> Result<WorkerConfig> {
    let cache_bytes = match std::env::var("TRANSCODER_CACHE_MAX_BYTES") {
        Ok(v) => v
            .trim()
            .parse()
            .context("TRANSCODER_CACHE_MAX_BYTES must be a number of bytes")?,
        Err(_) => DEFAULT_CACHE_BYTES,
    };
    let storage = Storage::from_env(&common.out)
        .context("storage configuration")?
        .with_download_cache(common.state_dir.join("cache"), cache_bytes);
    let swept = storage.sweep_abandoned_uploads();
    if swept > 0 {
        tracing::info!(files = swept, out = %common.out.display(), "removed uploads that crashed workers left unfinished");
    }
    let meter = match common.worker.metrics_addr {
        Some(addr) => Some(telemetry::start_metrics(addr)?.meter),
        None => None,
    };
    let metrics = meter
        .clone()
        .map(Metrics::new)
        .unwrap_or_else(Metrics::disabled);
    if meter.is_some() {
        metrics.start_process_metrics();
    }
    Ok(WorkerConfig {
        task_queue: common.worker.task_queue.clone(),
        out_dir: common.out.clone(),
        storage,
        fetch: FetchPolicy::from_env(),
        scratch_dir: common.state_dir.join("scratch"),
        encoder: EncoderSettings::from_env()
            .await
            .map_err(anyhow::Error::msg)?,
        nvenc: transcoder_activities::nvenc::NvencBudget::from_env().map_err(anyhow::Error::msg)?,
        activity_slots: worker::activity_slots_from_env()?,
        secrets,
        shutdown_grace: Duration::from_secs(common.worker.shutdown_grace),
        meter,
        metrics,
    })
}

/// A job file as the payload it holds. Fields of the wrong type or size become problems that
/// validation reports (with a failed webhook where one can be sent); only a file that is not
/// JSON at all, or too large to read, is refused here.
pub(crate) fn read_job(path: &Path) -> Result<JobInput> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading job file {}", path.display()))?
        .len();
    if size > transcoder_workflows::job::MAX_PAYLOAD_BYTES as u64 {
        bail!(
            "job file {} is {size} bytes, over the limit of {} for a payload",
            path.display(),
            transcoder_workflows::job::MAX_PAYLOAD_BYTES
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading job file {}", path.display()))?;
    JobInput::from_json_text(&text)
        .map_err(|why| anyhow::anyhow!("job file {}: {why}", path.display()))
}
