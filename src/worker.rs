//! A worker: polls a task queue and runs `TranscodeWorkflow`, `MediaTaskWorkflow` and
//! their activities.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use temporalio_client::Client;
use temporalio_common::telemetry::metrics::CoreMeter;
use temporalio_common::telemetry::TelemetryOptions;
use temporalio_sdk::runtime::RuntimeOptions;
use temporalio_sdk::{ApplicationFailure, Runtime, Worker, WorkerOptions};
use transcoder_activities::fetch::FetchPolicy;
use transcoder_activities::metrics::Metrics;
use transcoder_activities::nvenc::NvencBudget;
use transcoder_activities::scratch::{OrphanedTask, ScratchSpace};
use transcoder_activities::secrets::SecretBox;
use transcoder_activities::{EncoderSettings, MediaActivities, Storage};
use transcoder_workflows::{MediaTaskWorkflow, OriginalCleanupWorkflow, TranscodeWorkflow};

/// Where a worker keeps objects and scratch files.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub task_queue: String,
    /// Root of the embedded object store (`DIR/<bucket>/<key>`).
    pub out_dir: PathBuf,
    /// Where each bucket lives (the local folder above, R2, B2, S3).
    pub storage: Storage,
    /// Limits and credentials for `inputUri` downloads.
    pub fetch: FetchPolicy,
    /// Work folders for encodes; removed after each activity.
    pub scratch_dir: PathBuf,
    pub encoder: EncoderSettings,
    /// NVENC sessions the worker's chunks may hold at once (`TRANSCODER_NVENC_SESSIONS`).
    pub nvenc: NvencBudget,
    /// Activities the worker runs at once (`TRANSCODER_ACTIVITY_SLOTS`).
    pub activity_slots: usize,
    /// Opens sealed webhook secrets (see `transcoder_activities::secrets`).
    pub secrets: Option<SecretBox>,
    /// On shutdown, how long running activities may take to finish before they are
    /// cancelled (Temporal then retries them elsewhere).
    pub shutdown_grace: Duration,
    /// The Prometheus meter behind `--metrics-addr`, shared by the SDK's worker metrics and
    /// ours; `None` when metrics are off.
    pub meter: Option<Arc<dyn CoreMeter>>,
    /// Our metrics, registered on `meter` (a no-op without one).
    pub metrics: Metrics,
}

pub fn build(runtime: &Runtime, client: Client, config: &WorkerConfig) -> Result<Worker> {
    let (scratch, reclaimed) = ScratchSpace::claim(&config.scratch_dir)
        .with_context(|| format!("claiming scratch space in {}", config.scratch_dir.display()))?;
    if reclaimed.folders > 0 {
        tracing::info!(
            folders = reclaimed.folders,
            bytes = reclaimed.bytes,
            "removed the scratch folders of worker processes that died mid-activity"
        );
    }
    if !reclaimed.orphans.is_empty() {
        tokio::spawn(hand_back(client.clone(), reclaimed.orphans));
    }
    let activities = MediaActivities::new(
        config.storage.clone(),
        Arc::new(scratch),
        config.encoder.clone(),
        config.secrets.clone(),
    )
    .with_fetch_policy(config.fetch.clone())
    .with_nvenc_budget(config.nvenc.clone())
    .with_metrics(config.metrics.clone());
    // `process` chains run confined by this same binary's `sandbox-exec`.
    let activities = match std::env::current_exe() {
        Ok(me) => activities.with_sandbox_launcher(me),
        Err(e) => {
            tracing::warn!(error = %e, "cannot find this binary: process chains will be refused");
            activities
        }
    };
    let tasks = activities.tasks();
    let options = WorkerOptions::new(config.task_queue.as_str())
        .register_workflow::<TranscodeWorkflow>()
        .context("registering TranscodeWorkflow")?
        .register_workflow::<OriginalCleanupWorkflow>()
        .context("registering OriginalCleanupWorkflow")?
        .register_workflow::<MediaTaskWorkflow>()
        .context("registering MediaTaskWorkflow")?
        .register_activities(activities)
        .register_activities(tasks)
        .graceful_shutdown_period(config.shutdown_grace)
        // Activities heartbeat their progress every 5 s. The SDK would otherwise send at most
        // one per 24 s (0.8 x the 30 s heartbeat timeout), and `transcoder status` reads the
        // running activities' progress from those heartbeats.
        .max_heartbeat_throttle_interval(transcoder_activities::HEARTBEAT_EVERY)
        .tuner(slots(config.activity_slots))
        .build();
    Worker::new(runtime, client, options).context("creating the worker")
}

/// The variable that overrides how many activities a worker runs at once.
pub const ACTIVITY_SLOTS_VAR: &str = "TRANSCODER_ACTIVITY_SLOTS";

/// How many activities a worker runs at once: `TRANSCODER_ACTIVITY_SLOTS`, or half the
/// machine's cores (at least 2). Every step is an encode or a decode that keeps a core or
/// more busy, so a pod takes from the task queue only what it can run now; the rest waits
/// there for any worker, and work that has not started is not lost with a pod. (The SDK's
/// default, 100 at once, had a 2-core worker start every chunk a job offered.)
pub fn activity_slots_from_env() -> Result<usize> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    match std::env::var(ACTIVITY_SLOTS_VAR) {
        Err(_) => Ok(default_activity_slots(cores)),
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => anyhow::bail!("{ACTIVITY_SLOTS_VAR}={v:?} must be a whole number from 1 to 1000"),
        },
    }
}

fn default_activity_slots(cores: usize) -> usize {
    (cores / 2).max(2)
}

/// Fixed slots: `activities` at once; the SDK's defaults for workflow tasks, local
/// activities (the job's start and end events) and Nexus.
fn slots(activities: usize) -> temporalio_sdk::runtime::worker_tuner::TunerHolder {
    use temporalio_sdk::runtime::worker_tuner::{FixedSizeSlotSupplier, TunerHolder};
    const DEFAULT: usize = 100;
    TunerHolder::builder()
        .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(DEFAULT))
        .activity_task_slot_supplier(FixedSizeSlotSupplier::new(activities))
        .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(DEFAULT))
        .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(DEFAULT))
        .build()
}

/// Fails the attempts a dead worker process was running (found in its scratch folder), so
/// Temporal retries them now rather than after their heartbeat or start-to-close timeout.
/// An attempt that already timed out, or finished elsewhere, is simply not found.
async fn hand_back(client: Client, orphans: Vec<OrphanedTask>) {
    use temporalio_client::{ActivityIdentifier, AsyncActivityHandle, RpcOptions};
    use temporalio_common::protos::TaskToken;
    let mut handed = 0;
    for orphan in orphans {
        let handle = AsyncActivityHandle::new(
            client.clone(),
            ActivityIdentifier::from_task_token(TaskToken::from(orphan.token)),
        );
        let failure = ApplicationFailure::new(
            "the worker process running this attempt died (found by the next worker on its scratch folder); retrying now",
        );
        // The attempt's last heartbeat details go back with it: a ladder chunk's retry reads
        // its checkpoint there and continues after the segments it already published.
        let details = orphan
            .details
            .as_deref()
            .and_then(|d| serde_json::from_slice::<serde_json::Value>(d).ok());
        match handle.fail(failure, details, RpcOptions::default()).await {
            Ok(()) => {
                handed += 1;
                tracing::info!(step = %orphan.step, "handed back an attempt of a dead worker process");
            }
            Err(e) => {
                tracing::debug!(step = %orphan.step, error = %e, "a dead worker's attempt was already closed")
            }
        }
    }
    tracing::info!(
        attempts = handed,
        "handed back the attempts dead worker processes were running"
    );
}

/// The process-wide SDK runtime on the current tokio runtime, exporting the SDK's worker
/// metrics to `meter` when there is one.
pub fn runtime(meter: Option<Arc<dyn CoreMeter>>) -> Result<Runtime> {
    let options = match meter {
        Some(meter) => RuntimeOptions::builder()
            .telemetry_options(TelemetryOptions::builder().metrics(meter).build())
            .build()
            .map_err(|e| anyhow::anyhow!("SDK runtime options: {e}"))?,
        None => RuntimeOptions::default(),
    };
    Runtime::from_current_tokio(options).context("starting the Temporal SDK runtime")
}

/// Logs the worker's configuration once at start.
pub fn log_start(config: &WorkerConfig) {
    tracing::info!(
        task_queue = %config.task_queue,
        out = %config.out_dir.display(),
        video_encoder = config.encoder.video_encoder_name(),
        activity_slots = config.activity_slots,
        encoder = ?config.encoder.video,
        "worker starting"
    );
    if config.encoder.video_encoder_name() == "h264_nvenc" {
        match config.nvenc.capacity() {
            Some(n) => tracing::info!(
                sessions = n,
                "NVENC sessions budgeted (TRANSCODER_NVENC_SESSIONS)"
            ),
            None => {
                tracing::info!("NVENC sessions not capped (TRANSCODER_NVENC_SESSIONS=unlimited)")
            }
        }
    }
    config
        .metrics
        .worker_encoder(transcoder_activities::metrics::encoder_label(
            config.encoder.video_encoder_name(),
        ));
    for route in config.storage.describe() {
        tracing::info!(%route, "storage");
    }
}

/// A future that resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_runs_half_its_cores_at_once_and_never_fewer_than_two() {
        assert_eq!(default_activity_slots(1), 2);
        assert_eq!(default_activity_slots(2), 2);
        assert_eq!(default_activity_slots(8), 4);
        assert_eq!(default_activity_slots(64), 32);
    }
}
