//! The Temporal face of the activities: decode the input, run the plain function with a
//! scratch folder and heartbeats, map errors to retryable or not.

use crate::audio::adts::AdtsTrack;
use crate::audio::{chunks as audio_chunks, loudness, whole as audio_whole};
use crate::encoder::EncoderSettings;
use crate::error::MediaError;
use crate::ffmpeg::ProgressSink;
use crate::live;
use crate::metrics::{encoder_label, Metrics, StepOutcome};
use crate::mezzanine::JoinedAudio;
use crate::nvenc::NvencBudget;
use crate::scratch::ScratchSpace;
use crate::secrets::{SecretBox, SecretError};
use crate::storage::Storage;
use crate::{assemble, chunks, fetch, hls, mezzanine, probe, thumbnail, verify, waveform, webhook};
use transcoder_workflows::keys::may_delete;

use opentelemetry::trace::get_active_span;
use opentelemetry::KeyValue;
use sha2::Digest as _;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::ApplicationFailure;
use transcoder_workflows::activities::{defs, JobEvent, WebhookRequest};
use transcoder_workflows::media::{
    AssembleInput, AudioChunkInput, AudioChunkOutput, AudioHlsInput, AudioRenditionInput,
    AudioRenditionOutput, ChunkCheckpoint, CleanupInput, CleanupOutcome, FetchInput,
    FinishAudioHlsInput, FinishAudioInput, FinishWaveformInput, HeartbeatDetails, HlsOutput,
    JoinAudioInput, JoinMezzanineInput, LadderChunkInput, LadderChunkOutput, LoudnessInput,
    LoudnessMeasurement, LoudnessSummaryInput, MezzanineAudioInput, MezzanineInput,
    MezzaninePieceInput, ObjectRef, ProbeInput, ProbeResult, StoredObject, ThumbnailInput,
    VerifyInput, VerifyReport, WaveformInput, WaveformOutput,
};
use transcoder_workflows::webhook::WebhookReceipt;

/// Everything an activity needs from the worker: where objects live, where to work, how
/// to encode.
pub struct MediaActivities {
    storage: Storage,
    /// This process's scratch folder; dead processes' folders are reclaimed when it is made.
    scratch: Arc<ScratchSpace>,
    /// NVENC sessions shared by this worker's chunks.
    nvenc: NvencBudget,
    encoder: EncoderSettings,
    /// Opens sealed webhook secrets; `None` on a worker without `TRANSCODER_SECRETS_KEY`.
    secrets: Option<SecretBox>,
    http: reqwest::Client,
    webhook_policy: webhook::WebhookPolicy,
    fetch_policy: fetch::FetchPolicy,
    metrics: Metrics,
}

/// What one activity did, for its span, the worker's metrics and the logs.
#[derive(Default)]
struct StepFacts {
    /// Seconds of media processed.
    media_seconds: f64,
    /// The ffmpeg encoder that did the work (`libx264`, `h264_nvenc`, `aac`).
    encoder: Option<String>,
    bytes_out: u64,
}

impl StepFacts {
    fn media(seconds: f64) -> Self {
        StepFacts {
            media_seconds: seconds,
            ..Default::default()
        }
    }

    fn bytes(bytes: u64) -> Self {
        StepFacts {
            bytes_out: bytes,
            ..Default::default()
        }
    }

    fn encoder(mut self, encoder: &str) -> Self {
        self.encoder = Some(encoder.to_string());
        self
    }

    fn with_bytes(mut self, bytes: u64) -> Self {
        self.bytes_out = bytes;
        self
    }
}

/// Sets attributes on the span of the activity running now (the SDK's `RunActivity:…`
/// span); a no-op when traces are not exported.
fn annotate(attributes: Vec<KeyValue>) {
    get_active_span(|span| span.set_attributes(attributes));
}

/// Records the size of the file a step reads whole as `bytes.in` on its span.
fn annotate_bytes_in(path: &std::path::Path) {
    if let Ok(meta) = std::fs::metadata(path) {
        annotate(vec![KeyValue::new("bytes.in", meta.len() as i64)]);
    }
}

/// The media id of the job an activity works for, from its workflow id.
fn media_id_of(ctx: &ActivityContext) -> String {
    let workflow_id = ctx.info().workflow_id.as_deref().unwrap_or_default();
    transcoder_workflows::media_id_of_workflow(workflow_id).to_string()
}

impl MediaActivities {
    pub fn new(
        storage: Storage,
        scratch: Arc<ScratchSpace>,
        encoder: EncoderSettings,
        secrets: Option<SecretBox>,
    ) -> Self {
        Self {
            storage,
            scratch,
            encoder,
            secrets,
            http: webhook::http_client(),
            webhook_policy: webhook::WebhookPolicy::from_env(),
            fetch_policy: fetch::FetchPolicy::from_env(),
            metrics: Metrics::disabled(),
            nvenc: NvencBudget::default(),
        }
    }

    /// An NVENC session for a mezzanine encode when the mezzanine uses NVENC (`video`).
    async fn mezzanine_session(&self, video: bool) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if video && self.encoder.mezzanine_nvenc {
            self.nvenc.acquire(1).await
        } else {
            None
        }
    }

    /// The NVENC sessions this worker may hold at once (`TRANSCODER_NVENC_SESSIONS`).
    pub fn with_nvenc_budget(mut self, budget: NvencBudget) -> Self {
        self.nvenc = budget;
        self
    }

    /// Records metrics on `metrics` (the worker's Prometheus meter) instead of nowhere.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Runs one activity body with everything around it that is the same for all steps:
    /// the in-flight gauge, the duration histogram, span attributes (media id, step,
    /// attempt, bytes, media seconds, realtime factor, encoder), the realtime-factor and
    /// bytes metrics, and the mapping of errors to retryable or not.
    async fn observed<T>(
        &self,
        ctx: &ActivityContext,
        body: impl Future<Output = Result<(T, StepFacts), MediaError>>,
    ) -> Result<T, ActivityError> {
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

    /// Replaces the input download policy read from the environment.
    pub fn with_fetch_policy(mut self, policy: fetch::FetchPolicy) -> Self {
        self.fetch_policy = policy;
        self
    }

    /// A scratch folder for this activity, a local path to `source` and its duration.
    async fn open_source(
        &self,
        ctx: &ActivityContext,
        source: &ObjectRef,
    ) -> Result<(tempfile::TempDir, PathBuf, f64), MediaError> {
        let work = self.work_dir(ctx)?;
        let path = self.storage.readable_path(source, work.path()).await?;
        annotate_bytes_in(&path);
        let duration = probe::probe_file(&path).await?.duration_seconds;
        Ok((work, path, duration))
    }

    /// Opens a value sealed by `transcoder submit`/`run` (plain values pass through).
    fn open_sealed(&self, text: &str) -> Result<String, MediaError> {
        if !SecretBox::is_sealed(text) {
            return Ok(text.to_string());
        }
        match &self.secrets {
            Some(key) => key.open(text).map_err(|e| MediaError::Sealed {
                what: "input URI",
                detail: e.to_string(),
            }),
            None => Err(MediaError::Input {
                uri: "(sealed input URI)".into(),
                detail: SecretError::NoKey.to_string(),
                permanent: false,
            }),
        }
    }

    /// Stores a mezzanine joined from `pieces` pieces.
    async fn store_joined(
        &self,
        out: &std::path::Path,
        dest: &ObjectRef,
        pieces: usize,
    ) -> Result<(StoredObject, StepFacts), MediaError> {
        let size_bytes = self.storage.put_file(out, dest).await?;
        tracing::info!(dest = %dest, pieces, size_bytes, "mezzanine stored (joined from its pieces)");
        let stored = StoredObject {
            object: dest.clone(),
            size_bytes,
            encoder: None,
        };
        Ok((stored, StepFacts::default().with_bytes(size_bytes)))
    }

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
fn to_activity_error(step: &str, err: MediaError) -> ActivityError {
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
struct CheckpointFeed {
    checkpoint: tokio::sync::watch::Receiver<ChunkCheckpoint>,
    scratch: Arc<ScratchSpace>,
}

impl Heartbeat {
    fn start(ctx: &ActivityContext) -> (ProgressSink, Heartbeat) {
        Self::start_with(ctx, None)
    }

    /// As `start`, with the chunk's checkpoint in every heartbeat's details, sent as soon as
    /// it changes (the SDK still throttles what reaches the server to one per 5 s).
    fn start_with(
        ctx: &ActivityContext,
        feed: Option<CheckpointFeed>,
    ) -> (ProgressSink, Heartbeat) {
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

#[activities]
impl MediaActivities {
    #[activity(definition = defs::FetchInput)]
    pub async fn fetch_input(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: FetchInput,
    ) -> Result<StoredObject, ActivityError> {
        let _hb = Heartbeat::start(&ctx);
        let run = async {
            let uri_text = self.open_sealed(&input.uri)?;
            let uri = fetch::InputUri::parse(&uri_text).map_err(|detail| MediaError::Input {
                uri: transcoder_workflows::job::redact_uri(&uri_text),
                detail,
                permanent: true,
            })?;
            // Already archived by an earlier attempt: nothing to download again.
            if let Some(meta) = self.storage.head(&input.dest).await? {
                if meta.size > 0 {
                    tracing::info!(dest = %input.dest, "input already archived; not downloading again");
                    let stored = StoredObject {
                        object: input.dest.clone(),
                        size_bytes: meta.size,
                        encoder: None,
                    };
                    return Ok((stored, StepFacts::default()));
                }
            }
            // A name derived from the URI, outside the per-attempt work folder, so a retry on
            // this worker continues the partial download by range.
            let root = self.scratch.root();
            std::fs::create_dir_all(root).map_err(MediaError::io("creating", root))?;
            let digest = hex::encode(&sha2::Sha256::digest(uri_text.as_bytes())[..12]);
            let partial = root.join(format!("input-{digest}.partial"));
            let bytes = fetch::fetch(&uri, &partial, &self.fetch_policy, &self.storage).await?;
            annotate(vec![KeyValue::new("bytes.in", bytes as i64)]);
            let stored = self.storage.put_file(&partial, &input.dest).await?;
            let _ = tokio::fs::remove_file(&partial).await;
            tracing::info!(input = %uri.redacted(), dest = %input.dest, bytes, "input fetched and archived");
            let object = StoredObject {
                object: input.dest.clone(),
                size_bytes: stored,
                encoder: None,
            };
            Ok::<_, MediaError>((object, StepFacts::bytes(stored)))
        };
        self.observed(&ctx, run).await
    }

    #[activity(definition = defs::Probe)]
    pub async fn probe(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ProbeInput,
    ) -> Result<ProbeResult, ActivityError> {
        let _hb = Heartbeat::start(&ctx);
        let run = async {
            let work = self.work_dir(&ctx)?;
            let path = self
                .storage
                .readable_path(&input.source, work.path())
                .await?;
            annotate_bytes_in(&path);
            let result = probe::probe_input(&path).await?;
            tracing::info!(source = %input.source, duration = result.duration_seconds, video = ?result.video, audio = ?result.audio, "probed");
            Ok::<_, MediaError>((result, StepFacts::default()))
        };
        self.observed(&ctx, run).await
    }

    #[activity(definition = defs::Mezzanine)]
    pub async fn mezzanine(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: MezzanineInput,
    ) -> Result<StoredObject, ActivityError> {
        let (progress, _hb) = Heartbeat::start(&ctx);
        let run = async {
            let (work, source, duration) = self.open_source(&ctx, &input.source).await?;
            // A retry after the mezzanine was stored (the worker died before reporting it)
            // must not encode it again: a verified mezzanine is the checkpoint.
            if self.storage.exists(&input.dest).await? {
                let existing = self.storage.readable_path(&input.dest, work.path()).await?;
                if let Ok(made) = probe::probe_file(&existing).await {
                    if mezzanine::check_mezzanine(&input, &made, duration).is_ok() {
                        let size_bytes = std::fs::metadata(&existing)
                            .map(|m| m.len())
                            .unwrap_or(made.size_bytes);
                        tracing::info!(dest = %input.dest, "verified mezzanine already stored; not encoding again");
                        let stored = StoredObject {
                            object: input.dest.clone(),
                            size_bytes,
                            encoder: None,
                        };
                        return Ok((stored, StepFacts::default()));
                    }
                }
            }
            let out = work.path().join("mezzanine.mp4");
            let _session = self.mezzanine_session(input.video.is_some()).await;
            mezzanine::encode_mezzanine(
                &input,
                &source,
                &out,
                duration,
                &self.encoder,
                &progress.scaled(0.0, 0.95),
            )
            .await?;
            // Check what we made before anyone builds on it.
            let made = probe::probe_file(&out)
                .await
                .map_err(|e| MediaError::Verification(format!("mezzanine: {e}")))?;
            mezzanine::check_mezzanine(&input, &made, duration)?;
            let size_bytes = self.storage.put_file(&out, &input.dest).await?;
            tracing::info!(dest = %input.dest, size_bytes, "mezzanine stored");
            let encoder = self.encoder.mezzanine_encoder_name();
            let stored = StoredObject {
                object: input.dest.clone(),
                size_bytes,
                encoder: input.video.is_some().then(|| encoder.to_string()),
            };
            let mut facts = StepFacts::media(duration).with_bytes(size_bytes);
            if input.video.is_some() {
                facts = facts.encoder(encoder);
            }
            Ok((stored, facts))
        };
        self.observed(&ctx, run).await
    }

    #[activity(definition = defs::MezzaninePiece)]
    pub async fn mezzanine_piece(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: MezzaninePieceInput,
    ) -> Result<StoredObject, ActivityError> {
        let (progress, _hb) = Heartbeat::start(&ctx);
        annotate(vec![KeyValue::new("chunk", i64::from(input.chunk.index))]);
        let run = async {
            let work = self.work_dir(&ctx)?;
            // A piece stored by an attempt that died before reporting it is the checkpoint.
            if self.storage.exists(&input.dest).await? {
                let existing = self.storage.readable_path(&input.dest, work.path()).await?;
                if mezzanine::check_piece(&input, &existing).await.is_ok() {
                    let size_bytes = std::fs::metadata(&existing).map(|m| m.len()).unwrap_or(0);
                    let stored = StoredObject {
                        object: input.dest.clone(),
                        size_bytes,
                        encoder: None,
                    };
                    return Ok((stored, StepFacts::default()));
                }
            }
            let source = self
                .storage
                .readable_path(&input.source, work.path())
                .await?;
            annotate_bytes_in(&source);
            let out = work.path().join("piece.mp4");
            let _session = self.mezzanine_session(true).await;
            mezzanine::encode_piece(
                &input,
                &source,
                &out,
                &self.encoder,
                &progress.scaled(0.0, 0.95),
            )
            .await?;
            let size_bytes = self.storage.put_file(&out, &input.dest).await?;
            tracing::info!(dest = %input.dest, chunk = input.chunk.index, size_bytes, "mezzanine piece stored");
            let encoder = self.encoder.mezzanine_encoder_name();
            let stored = StoredObject {
                object: input.dest.clone(),
                size_bytes,
                encoder: Some(encoder.to_string()),
            };
            let facts = StepFacts::media(input.chunk.duration_seconds)
                .with_bytes(size_bytes)
                .encoder(encoder);
            Ok((stored, facts))
        };
        self.observed(&ctx, run).await
    }

    #[activity(definition = defs::MezzanineAudio)]
    pub async fn mezzanine_audio(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: MezzanineAudioInput,
    ) -> Result<StoredObject, ActivityError> {
        let (progress, _hb) = Heartbeat::start(&ctx);
        let run = async {
            let work = self.work_dir(&ctx)?;
            let source = self
                .storage
                .readable_path(&input.source, work.path())
                .await?;
            let out = work.path().join("audio.m4a");
            mezzanine::encode_audio_track(
                &source,
                &out,
                input.duration_seconds,
                &progress.scaled(0.0, 0.95),
            )
            .await?;
            let size_bytes = self.storage.put_file(&out, &input.dest).await?;
            let stored = StoredObject {
                object: input.dest.clone(),
                size_bytes,
                encoder: None,
            };
            let facts = StepFacts::media(input.duration_seconds)
                .with_bytes(size_bytes)
                .encoder("aac");
            Ok((stored, facts))
        };
        self.observed(&ctx, run).await
    }

    #[activity(definition = defs::AudioChunk)]
    pub async fn audio_chunk(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: AudioChunkInput,
    ) -> Result<AudioChunkOutput, ActivityError> {
        let (progress, _hb) = Heartbeat::start(&ctx);
        annotate(vec![KeyValue::new("chunk", i64::from(input.chunk.index))]);
        let run = async {
            let work = self.work_dir(&ctx)?;
            let source = self
                .storage
                .readable_path(&input.source, work.path())
                .await?;
            let made = audio_chunks::encode_audio_chunk(
                &self.storage,
                &input,
                &source,
                work.path(),
                &progress.scaled(0.0, 1.0),
            )
            .await?;
            let facts = StepFacts::media(input.chunk.duration_seconds)
                .encoder("aac")
                .with_bytes(made.bytes());
            Ok((made, facts))
        };
        self.observed(&ctx, run).await
    }

    #[activity(definition = defs::LoudnessSummary)]
    pub async fn loudness_summary(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: LoudnessSummaryInput,
    ) -> Result<Option<LoudnessMeasurement>, ActivityError> {
        let run = async {
            let work = self.work_dir(&ctx)?;
            let m =
                audio_chunks::summarize_meters(&self.storage, &input.meters, work.path()).await?;
            tracing::info!(measurement = ?m, chunks = input.meters.len(), "loudness measured (pass 1, in chunks)");
            Ok::<_, MediaError>((m, StepFacts::default()))
        };
        self.observed(&ctx, run).await
    }

    #[activity(definition = defs::FinishAudioRendition)]
    pub async fn finish_audio_rendition(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: FinishAudioInput,
    ) -> Result<AudioRenditionOutput, ActivityError> {
        annotate(vec![KeyValue::new("rendition", input.name.clone())]);
        let run = async {
            let work = self.work_dir(&ctx)?;
            let made = audio_chunks::finish_rendition(&self.storage, &input, work.path()).await?;
            let facts = StepFacts::bytes(made.bytes());
            Ok((made, facts))
        };
        self.observed(&ctx, run).await
    }

    #[activity(definition = defs::JoinAudioMezzanine)]
    pub async fn join_audio_mezzanine(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: JoinAudioInput,
    ) -> Result<StoredObject, ActivityError> {
        let (progress, _hb) = Heartbeat::start(&ctx);
        let run = async {
            let work = self.work_dir(&ctx)?;
            let pieces = self
                .storage
                .readable_paths(&input.pieces, work.path())
                .await?;
            let out = work.path().join("mezzanine.mp4");
            audio_chunks::join_audio_mezzanine(
                &pieces,
                work.path(),
                &out,
                input.duration_seconds,
                &progress.scaled(0.0, 0.9),
            )
            .await?;
            self.store_joined(&out, &input.dest, pieces.len()).await
        };
        self.observed(&ctx, run).await
    }

    #[activity(definition = defs::FinishAudioHls)]
    pub async fn finish_audio_hls(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: FinishAudioHlsInput,
    ) -> Result<HlsOutput, ActivityError> {
        let run = async {
            let work = self.work_dir(&ctx)?;
            let hls = audio_chunks::finish_audio_hls(&self.storage, &input, work.path()).await?;
            let facts = StepFacts::bytes(hls.bytes_out);
            Ok((hls, facts))
        };
        self.observed(&ctx, run).await
    }

    #[activity(definition = defs::FinishWaveform)]
    pub async fn finish_waveform(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: FinishWaveformInput,
    ) -> Result<WaveformOutput, ActivityError> {
        let run = async {
            let work = self.work_dir(&ctx)?;
            let files = audio_chunks::finish_waveform(
                &self.storage,
                &input.pieces,
                input.duration_seconds,
                work.path(),
            )
            .await?;
            let json_bytes = self.storage.put_file(&files.json, &input.json_dest).await?;
            let png_bytes = self.storage.put_file(&files.png, &input.png_dest).await?;
            let made = WaveformOutput {
                json: input.json_dest.clone(),
                png: input.png_dest.clone(),
                length: files.length,
            };
            Ok((made, StepFacts::bytes(json_bytes + png_bytes)))
        };
        self.observed(&ctx, run).await
    }

    #[activity(definition = defs::JoinMezzanine)]
    pub async fn join_mezzanine(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: JoinMezzanineInput,
    ) -> Result<StoredObject, ActivityError> {
        let (progress, _hb) = Heartbeat::start(&ctx);
        let run = async {
            let work = self.work_dir(&ctx)?;
            let pieces = self
                .storage
                .readable_paths(&input.pieces, work.path())
                .await?;
            let mut track = None;
            let mut adts = None;
            if !input.audio_pieces.is_empty() {
                let pieces = self
                    .storage
                    .readable_paths(&input.audio_pieces, work.path())
                    .await?;
                let joined = work.path().join("audio.aac");
                adts = Some(AdtsTrack::join(&pieces, &joined, input.duration_seconds)?);
            } else if let Some(audio) = &input.audio {
                track = Some(self.storage.readable_path(audio, work.path()).await?);
            }
            let audio = match (&adts, &track) {
                (Some(adts), _) => Some(JoinedAudio::Adts(adts)),
                (None, Some(track)) => Some(JoinedAudio::Track(track)),
                (None, None) => None,
            };
            let out = work.path().join("mezzanine.mp4");
            mezzanine::join_pieces(
                &input,
                &pieces,
                audio,
                work.path(),
                &out,
                &progress.scaled(0.0, 0.9),
            )
            .await?;
            self.store_joined(&out, &input.dest, pieces.len()).await
        };
        self.observed(&ctx, run).await
    }

    #[activity(definition = defs::RemoveObjects)]
    pub async fn remove_objects(
        self: Arc<Self>,
        ctx: ActivityContext,
        objects: Vec<ObjectRef>,
    ) -> Result<(), ActivityError> {
        let run = async {
            for obj in &objects {
                self.storage.delete(obj).await?;
            }
            Ok::<_, MediaError>(((), StepFacts::default()))
        };
        self.observed(&ctx, run).await
    }

    #[activity(definition = defs::Loudness)]
    pub async fn loudness(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: LoudnessInput,
    ) -> Result<Option<LoudnessMeasurement>, ActivityError> {
        let (progress, _hb) = Heartbeat::start(&ctx);
        let run = async {
            let (_work, source, duration) = self.open_source(&ctx, &input.source).await?;
            let m = loudness::measure(&source, duration, &progress.scaled(0.0, 1.0)).await?;
            tracing::info!(source = %input.source, measurement = ?m, "loudness measured (pass 1)");
            Ok::<_, MediaError>((m, StepFacts::media(duration)))
        };
        self.observed(&ctx, run).await
    }

    #[activity(definition = defs::LadderChunk)]
    pub async fn ladder_chunk(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: LadderChunkInput,
    ) -> Result<LadderChunkOutput, ActivityError> {
        // What earlier attempts of this chunk published, from their last heartbeat.
        let earlier = ctx
            .heartbeat_details()
            .deserialize::<HeartbeatDetails>()
            .ok()
            .flatten()
            .and_then(|d| d.checkpoint)
            .unwrap_or_else(|| ChunkCheckpoint {
                index: input.chunk.index,
                variants: Vec::new(),
            });
        let (checkpoint, feed) = chunks::CheckpointSink::channel(earlier);
        let (progress, _hb) = Heartbeat::start_with(
            &ctx,
            Some(CheckpointFeed {
                checkpoint: feed,
                scratch: self.scratch.clone(),
            }),
        );
        let renditions: Vec<String> = input.renditions.iter().map(|r| r.name.clone()).collect();
        annotate(vec![
            KeyValue::new("chunk", i64::from(input.chunk.index)),
            KeyValue::new("rendition", renditions.join(",")),
        ]);
        let run = async {
            let work = self.work_dir(&ctx)?;
            let source = self
                .storage
                .readable_path(&input.source, work.path())
                .await?;
            let out = work.path().join("hls");
            let result = chunks::encode_chunk_budgeted(
                &self.storage,
                &input,
                &source,
                &out,
                &self.encoder,
                &self.nvenc,
                &progress.scaled(0.0, 1.0),
                &checkpoint,
            )
            .await?;
            tracing::info!(
                chunk = input.chunk.index,
                start = input.chunk.start_seconds,
                seconds = input.chunk.duration_seconds,
                encoder = %result.encoder,
                attempt = ctx.info().attempt,
                "ladder chunk encoded"
            );
            let facts = StepFacts::media(input.chunk.duration_seconds)
                .encoder(&result.encoder)
                .with_bytes(result.bytes());
            Ok::<_, MediaError>((result, facts))
        };
        self.observed(&ctx, run).await
    }

    #[activity(definition = defs::AudioRendition)]
    pub async fn audio_rendition(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: AudioRenditionInput,
    ) -> Result<AudioRenditionOutput, ActivityError> {
        let (progress, _hb) = Heartbeat::start(&ctx);
        annotate(vec![KeyValue::new("rendition", input.name.clone())]);
        let run = async {
            let (work, source, duration) = self.open_source(&ctx, &input.source).await?;
            let made = audio_whole::encode_audio_rendition(
                &self.storage,
                &input,
                &source,
                work.path(),
                duration,
                &progress.scaled(0.0, 1.0),
            )
            .await?;
            let facts = StepFacts::media(duration)
                .encoder("aac")
                .with_bytes(made.bytes());
            Ok((made, facts))
        };
        self.observed(&ctx, run).await
    }

    #[activity(definition = defs::AssembleHls)]
    pub async fn assemble_hls(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: AssembleInput,
    ) -> Result<HlsOutput, ActivityError> {
        let (progress, _hb) = Heartbeat::start(&ctx);
        let run = async {
            let work = self.work_dir(&ctx)?;
            let hls = assemble::assemble(
                &self.storage,
                &input,
                work.path(),
                &progress.scaled(0.0, 1.0),
            )
            .await?;
            let facts = StepFacts::bytes(hls.bytes_out);
            Ok((hls, facts))
        };
        self.observed(&ctx, run).await
    }

    #[activity(definition = defs::AudioHls)]
    pub async fn audio_hls(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: AudioHlsInput,
    ) -> Result<HlsOutput, ActivityError> {
        let (progress, _hb) = Heartbeat::start(&ctx);
        let run = async {
            let (work, source, duration) = self.open_source(&ctx, &input.source).await?;
            let out = work.path().join("hls");
            let variants = audio_whole::encode_audio_ladder(
                &input,
                &source,
                &out,
                duration,
                &progress.scaled(0.0, 0.85),
            )
            .await?;
            let delivered = match variants.first() {
                Some(first) => {
                    let playlist = out
                        .join(&first.name)
                        .join(transcoder_workflows::keys::MEDIA_PLAYLIST);
                    loudness::measure_delivered(&playlist, duration, &progress.scaled(0.85, 0.95))
                        .await?
                }
                None => None,
            };
            let mut result =
                hls::publish_hls(&self.storage, &input.bucket, &input.prefix, &out, &variants)
                    .await?;
            result.delivered_loudness = delivered;
            let facts = StepFacts::media(duration)
                .encoder("aac")
                .with_bytes(result.bytes_out);
            Ok((result, facts))
        };
        self.observed(&ctx, run).await
    }

    #[activity(definition = defs::Waveform)]
    pub async fn waveform(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: WaveformInput,
    ) -> Result<WaveformOutput, ActivityError> {
        let (progress, _hb) = Heartbeat::start(&ctx);
        let run = async {
            let (work, source, duration) = self.open_source(&ctx, &input.source).await?;
            // The waveform shows what listeners hear: the loudness-normalized audio, applied
            // in the same decode.
            let filter = loudness::output_audio_filter(input.loudness.as_ref());
            let files = waveform::generate_waveform_filtered(
                &source,
                Some(&filter),
                work.path(),
                duration,
                &progress.scaled(0.0, 0.95),
            )
            .await?;
            tracing::info!(generator = %files.generator, length = files.length, "waveform drawn");
            let json_bytes = self.storage.put_file(&files.json, &input.json_dest).await?;
            let png_bytes = self.storage.put_file(&files.png, &input.png_dest).await?;
            let made = WaveformOutput {
                json: input.json_dest.clone(),
                png: input.png_dest.clone(),
                length: files.length,
            };
            Ok((
                made,
                StepFacts::media(duration).with_bytes(json_bytes + png_bytes),
            ))
        };
        self.observed(&ctx, run).await
    }

    #[activity(definition = defs::Verify)]
    pub async fn verify(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: VerifyInput,
    ) -> Result<VerifyReport, ActivityError> {
        let _hb = Heartbeat::start(&ctx);
        let run = async {
            let work = self.work_dir(&ctx)?;
            let report = verify::verify_outputs(&self.storage, &input, work.path()).await?;
            tracing::info!(
                playlists = report.playlists,
                segments = report.segments,
                "verification gate passed"
            );
            Ok::<_, MediaError>((report, StepFacts::default()))
        };
        self.observed(&ctx, run).await
    }

    #[activity(definition = defs::Thumbnail)]
    pub async fn thumbnail(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ThumbnailInput,
    ) -> Result<StoredObject, ActivityError> {
        let (progress, _hb) = Heartbeat::start(&ctx);
        let run = async {
            let work = self.work_dir(&ctx)?;
            let source = self
                .storage
                .readable_path(&input.source, work.path())
                .await?;
            let out = work.path().join("thumbnail.jpg");
            thumbnail::extract_thumbnail(
                &source,
                input.at_seconds,
                input.width,
                input.height,
                work.path(),
                &out,
                &progress.scaled(0.0, 1.0),
            )
            .await?;
            let size_bytes = self.storage.put_file(&out, &input.dest).await?;
            let stored = StoredObject {
                object: input.dest.clone(),
                size_bytes,
                encoder: None,
            };
            Ok((stored, StepFacts::bytes(size_bytes)))
        };
        self.observed(&ctx, run).await
    }

    #[activity(definition = defs::DeleteOriginal)]
    pub async fn delete_original(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: CleanupInput,
    ) -> Result<CleanupOutcome, ActivityError> {
        let run = async {
            if !may_delete(&input.original.key) {
                let kept = CleanupOutcome {
                    deleted: false,
                    kept_because: Some(format!("{} is not under originals/", input.original.key)),
                };
                return Ok((kept, StepFacts::default()));
            }
            if !self.storage.exists(&input.mezzanine).await? {
                tracing::warn!(mezzanine = %input.mezzanine, "mezzanine missing: keeping the original");
                let kept = CleanupOutcome {
                    deleted: false,
                    kept_because: Some(format!("mezzanine {} does not exist", input.mezzanine)),
                };
                return Ok((kept, StepFacts::default()));
            }
            self.storage.delete(&input.original).await?;
            tracing::info!(original = %input.original, "original deleted after its retention period");
            let deleted = CleanupOutcome {
                deleted: true,
                kept_because: None,
            };
            Ok::<_, MediaError>((deleted, StepFacts::default()))
        };
        self.observed(&ctx, run).await
    }

    #[activity(definition = defs::Webhook)]
    pub async fn webhook(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: WebhookRequest,
    ) -> Result<WebhookReceipt, ActivityError> {
        let attempt = ctx.info().attempt;
        let mut input = input;
        if SecretBox::is_sealed(&input.secret) {
            // A value this key cannot open will not open on a retry either (permanent); a worker
            // started without any key may be alone in that, so that stays retryable.
            let opened = match &self.secrets {
                Some(key) => key.open(&input.secret).map_err(|e| MediaError::Sealed {
                    what: "webhook secret",
                    detail: e.to_string(),
                }),
                None => Err(MediaError::Webhook(SecretError::NoKey.to_string())),
            };
            input.secret = opened.map_err(|e| to_activity_error("webhook", e))?;
        }
        let status = match input.body.status {
            transcoder_workflows::webhook::JobStatus::Completed => "completed",
            transcoder_workflows::webhook::JobStatus::Failed => "failed",
        };
        let run = async {
            let delivered = webhook::deliver(&self.http, &input, &self.webhook_policy).await;
            self.metrics.webhook_attempt(match &delivered {
                Ok(r) if r.delivered => "delivered",
                Ok(_) => "rejected",
                Err(_) => "retrying",
            });
            let receipt = delivered?;
            annotate(vec![
                KeyValue::new("webhook.status", status),
                KeyValue::new(
                    "http.response.status_code",
                    receipt.status_code.map_or(0, i64::from),
                ),
            ]);
            tracing::info!(url = %input.url, attempt, status = ?receipt.status_code, delivered = receipt.delivered, "webhook sent");
            Ok((receipt, StepFacts::default()))
        };
        self.observed(&ctx, run).await
    }

    /// A job started or ended (a local activity, so it runs once per job, not per replay):
    /// counts it and, at the end, logs the receipt.
    #[activity(definition = defs::JobEvent)]
    pub async fn job_event(
        self: Arc<Self>,
        _ctx: ActivityContext,
        event: JobEvent,
    ) -> Result<(), ActivityError> {
        match &event.finished {
            None => {
                self.metrics.job_started(&event.media_type);
                tracing::info!(media_id = %event.media_id, media_type = %event.media_type, "job started");
            }
            Some(receipt) => {
                let completed = receipt.outcome == "completed";
                self.metrics.job_finished(
                    &event.media_type,
                    completed,
                    Duration::from_secs_f64(receipt.wall_seconds.max(0.0)),
                );
                let steps = receipt
                    .steps
                    .iter()
                    .map(|s| {
                        let factor = s
                            .realtime_factor
                            .map(|f| format!(" {f:.2}x"))
                            .unwrap_or_default();
                        format!("{} {:.1}s{factor}", s.step, s.wall_seconds)
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                tracing::info!(
                    media_id = %event.media_id,
                    media_type = %event.media_type,
                    outcome = %receipt.outcome,
                    wall_seconds = receipt.wall_seconds,
                    media_seconds = receipt.media_seconds,
                    realtime_factor = receipt.realtime_factor.unwrap_or(0.0),
                    encoders = %receipt.encoders.join(","),
                    bytes_out = receipt.bytes_out,
                    steps = %steps,
                    receipt = %serde_json::to_string(receipt).unwrap_or_default(),
                    "job receipt"
                );
            }
        }
        Ok(())
    }
}
