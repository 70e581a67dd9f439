//! What is the same around every activity: its scratch folder, its heartbeat (progress,
//! and a chunk's checkpoint), its span attributes and step metrics, cancellation that stops
//! its work, and the mapping of its errors to retryable or not. The activities in `mod.rs`
//! only decode, call and map.

use super::MediaActivities;
use crate::error::MediaError;
use crate::ffmpeg::ProgressSink;
use crate::live;
use crate::metrics::{encoder_label, StepOutcome};
use crate::scratch::ScratchSpace;
use crate::span::annotate;
use opentelemetry::KeyValue;
use std::sync::Arc;
use std::time::{Duration, Instant};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::ApplicationFailure;
use transcoder_workflows::media::{ChunkCheckpoint, HeartbeatDetails};

/// What one activity did, for its span, the worker's metrics and the logs.
#[derive(Default)]
pub(super) struct StepFacts {
    /// Seconds of media processed.
    media_seconds: f64,
    /// The ffmpeg encoder that did the work (`libx264`, `h264_nvenc`, `aac`).
    encoder: Option<String>,
    bytes_out: u64,
}

impl StepFacts {
    pub(super) fn media(seconds: f64) -> Self {
        StepFacts {
            media_seconds: seconds,
            ..Default::default()
        }
    }

    pub(super) fn bytes(bytes: u64) -> Self {
        StepFacts {
            bytes_out: bytes,
            ..Default::default()
        }
    }

    /// The encoder the step reports having run, if any.
    pub(super) fn encoder(mut self, encoder: Option<&str>) -> Self {
        self.encoder = encoder.map(str::to_string);
        self
    }

    pub(super) fn with_bytes(mut self, bytes: u64) -> Self {
        self.bytes_out = bytes;
        self
    }
}

/// What an activity body gets besides its input: where to report progress (read by the
/// heartbeat and by `transcoder run`'s bars) and a scratch folder of its own, removed when
/// the activity ends.
pub(super) struct Step {
    pub(super) progress: ProgressSink,
    pub(super) work: tempfile::TempDir,
}

impl Step {
    pub(super) fn dir(&self) -> &std::path::Path {
        self.work.path()
    }
}

/// The media id of the job an activity works for, from its workflow id.
pub(super) fn media_id_of(ctx: &ActivityContext) -> String {
    let workflow_id = ctx.info().workflow_id.as_deref().unwrap_or_default();
    transcoder_workflows::media_id_of_workflow(workflow_id).to_string()
}

impl MediaActivities {
    /// Runs one activity body with everything around it that is the same for all steps:
    /// a scratch folder, the heartbeat, the in-flight gauge, the duration histogram, span
    /// attributes (media id, step, attempt, bytes, media seconds, realtime factor,
    /// encoder), the realtime-factor and bytes metrics, and the mapping of errors to
    /// retryable or not.
    pub(super) async fn observed<T>(
        &self,
        ctx: &ActivityContext,
        body: impl AsyncFnOnce(Step) -> Result<(T, StepFacts), MediaError>,
    ) -> Result<T, ActivityError> {
        self.observed_with(ctx, None, body).await
    }

    /// [`Self::observed`] for a ladder chunk, whose heartbeats carry its checkpoint.
    pub(super) async fn observed_with<T>(
        &self,
        ctx: &ActivityContext,
        feed: Option<CheckpointFeed>,
        body: impl AsyncFnOnce(Step) -> Result<(T, StepFacts), MediaError>,
    ) -> Result<T, ActivityError> {
        let (progress, _heartbeat) = Heartbeat::start(ctx, feed);
        let info = ctx.info();
        let step = info.activity_type.clone();
        let attempt = info.attempt;
        annotate(vec![
            KeyValue::new("media.id", media_id_of(ctx)),
            KeyValue::new("step", step.clone()),
            KeyValue::new("attempt", i64::from(attempt)),
        ]);
        if step == "ladder_chunk" && attempt > 1 {
            self.metrics.chunk_retry();
        }
        let _running = self.metrics.step_running(&step);
        // If this process dies mid-attempt, the next worker on this scratch folder hands
        // the attempt back at once (see `scratch`).
        let _note = (!info.is_local).then(|| self.scratch.note_task(&info.task_token, &step));
        let started = Instant::now();
        let body = async {
            let work = self.work_dir(ctx)?;
            body(Step { progress, work }).await
        };
        // The SDK only flips the token on cancellation (a cancelled workflow, a heartbeat
        // answered "not found", a worker shutdown past its grace); the body must be dropped
        // here, which kills its ffmpeg (`kill_on_drop`), or a stopped job keeps encoding.
        let result = tokio::select! {
            result = body => result,
            _ = ctx.cancelled() => {
                let wall = started.elapsed();
                self.metrics.step_finished(&step, StepOutcome::Cancelled, wall);
                tracing::info!(step, attempt, elapsed = ?wall, "activity cancelled; its work is stopped");
                return Err(ActivityError::cancelled());
            }
        };
        let wall = started.elapsed();
        let outcome = if result.is_ok() {
            StepOutcome::Ok
        } else {
            StepOutcome::Error
        };
        self.metrics.step_finished(&step, outcome, wall);
        match result {
            Ok((value, facts)) => {
                let mut attributes = vec![KeyValue::new("bytes.out", facts.bytes_out as i64)];
                if facts.media_seconds > 0.0 {
                    attributes.push(KeyValue::new("media.seconds", facts.media_seconds));
                    if let Some(factor) = crate::metrics::realtime_factor(facts.media_seconds, wall)
                    {
                        attributes.push(KeyValue::new("realtime.factor", factor));
                    }
                }
                let encoder = facts.encoder.as_deref().map_or("none", encoder_label);
                if facts.encoder.is_some() {
                    attributes.push(KeyValue::new("encoder", encoder.to_string()));
                }
                annotate(attributes);
                self.metrics
                    .media_processed(&step, encoder, facts.media_seconds, wall);
                self.metrics.uploaded(&step, facts.bytes_out);
                Ok(value)
            }
            Err(e) => Err(to_activity_error(&step, e)),
        }
    }
}

impl MediaActivities {
    /// A scratch folder of the activity's own in this process's scratch space.
    fn work_dir(&self, ctx: &ActivityContext) -> Result<tempfile::TempDir, MediaError> {
        let dir = self.scratch.dir();
        std::fs::create_dir_all(dir).map_err(MediaError::io("creating", dir))?;
        let prefix = format!("{}-", ctx.info().activity_type);
        tempfile::Builder::new()
            .prefix(&prefix)
            .tempdir_in(dir)
            .map_err(MediaError::io("creating a work folder in", dir))
    }
}

/// Permanent errors are non-retryable application failures; the rest retry per the
/// workflow's policy.
pub(super) fn to_activity_error(step: &str, err: MediaError) -> ActivityError {
    tracing::warn!(step, error = %err, permanent = err.is_permanent(), "activity failed");
    if err.is_permanent() {
        ActivityError::from(ApplicationFailure::non_retryable(err))
    } else {
        ActivityError::from(ApplicationFailure::new(err))
    }
}

/// How often a running activity heartbeats its progress. Workers raise the SDK's heartbeat
/// throttle to match (`WorkerOptions::max_heartbeat_throttle_interval`), so the server, and
/// `transcoder status` through it, sees progress this fresh.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// Heartbeats with the latest progress every few seconds until dropped, so the server
/// notices a dead worker within the heartbeat timeout. The same progress is shown live to
/// `transcoder run` in this process (`crate::live`).
struct Heartbeat(
    tokio::task::JoinHandle<()>,
    #[allow(dead_code)] live::Registration,
);

/// A ladder chunk's checkpoint for its heartbeat: where it is read, and the scratch folder
/// that keeps a copy for the hand-back of this attempt if the process dies.
pub(super) struct CheckpointFeed {
    pub(super) checkpoint: tokio::sync::watch::Receiver<ChunkCheckpoint>,
    pub(super) scratch: Arc<ScratchSpace>,
}

impl Heartbeat {
    /// Starts beating; with a `feed`, the chunk's checkpoint is in every heartbeat's
    /// details, sent as soon as it changes (the SDK still throttles what reaches the server
    /// to one per 5 s).
    fn start(ctx: &ActivityContext, feed: Option<CheckpointFeed>) -> (ProgressSink, Heartbeat) {
        let (sink, rx) = ProgressSink::channel();
        let info = ctx.info();
        let registration = live::register(
            info.workflow_id.as_deref().unwrap_or_default(),
            &info.activity_type,
            &info.activity_id,
            info.attempt,
            rx.clone(),
        );
        let ctx = ctx.clone();
        let task = tokio::spawn(async move {
            let mut feed = feed;
            // The scratch note is rewritten only when the checkpoint changed (and once at
            // the start, for what earlier attempts published), not on every beat.
            let mut noted = false;
            loop {
                let (checkpoint, changed) = match feed.as_mut() {
                    Some(f) => {
                        let current = f.checkpoint.borrow_and_update();
                        (Some(current.clone()), current.has_changed())
                    }
                    None => (None, false),
                };
                let details = HeartbeatDetails {
                    progress: *rx.borrow(),
                    checkpoint: checkpoint.filter(|c| !c.variants.is_empty()),
                };
                if let (Some(f), Some(_)) = (&feed, &details.checkpoint) {
                    if changed || !noted {
                        if let Ok(json) = serde_json::to_vec(&details) {
                            f.scratch.note_details(&ctx.info().task_token, &json);
                            noted = true;
                        }
                    }
                }
                let _ = ctx.record_heartbeat(details).await;
                match feed.as_mut() {
                    Some(f) => {
                        tokio::select! {
                            _ = tokio::time::sleep(HEARTBEAT_EVERY) => {}
                            changed = f.checkpoint.changed() => {
                                if changed.is_err() {
                                    tokio::time::sleep(HEARTBEAT_EVERY).await;
                                }
                            }
                        }
                    }
                    None => tokio::time::sleep(HEARTBEAT_EVERY).await,
                }
            }
        });
        (sink, Heartbeat(task, registration))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}
