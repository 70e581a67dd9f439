//! The Temporal face of the activities: each decodes its input, calls the plain function
//! that does the work and maps the result to what the workflow reads; what is the same
//! around every activity (scratch folder, heartbeats, spans, metrics, cancellation, error
//! mapping) is in [`observe`].
//!
//! About 670 lines because there are 24 activities, each a few lines of the same shape;
//! nothing else lives here.

mod observe;
mod tasks;

pub use tasks::TaskActivities;

pub use observe::HEARTBEAT_EVERY;
use observe::{CheckpointFeed, StepFacts};

use crate::audio::{chunks as audio_chunks, loudness, whole as audio_whole};
use crate::encoder::EncoderSettings;
use crate::error::MediaError;
use crate::metrics::Metrics;
use crate::nvenc::NvencBudget;
use crate::scratch::ScratchSpace;
use crate::secrets::{open_if_sealed, SecretBox};
use crate::span::{annotate, bytes_in};
use crate::storage::Storage;
use crate::{
    assemble, chunks, fetch, mezzanine, original, probe, subtitles, thumbnail, verify, waveform,
    webhook,
};

use opentelemetry::KeyValue;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use transcoder_workflows::activities::{defs, JobEvent, WebhookRequest};
use transcoder_workflows::media::{
    AssembleInput, AudioChunkInput, AudioChunkOutput, AudioHlsInput, AudioRenditionInput,
    AudioRenditionOutput, ChunkCheckpoint, CleanupInput, CleanupOutcome, FetchInput,
    FinishAudioHlsInput, FinishAudioInput, FinishWaveformInput, HeartbeatDetails, HlsOutput,
    JoinAudioInput, JoinMezzanineInput, LadderChunkInput, LadderChunkOutput, LoudnessInput,
    LoudnessMeasurement, LoudnessSummaryInput, MezzanineAudioInput, MezzanineInput,
    MezzaninePieceInput, ObjectRef, ProbeInput, ProbeResult, StoredObject, SubtitlesInput,
    SubtitlesOutput, ThumbnailInput, VerifyInput, VerifyReport, WaveformInput, WaveformOutput,
};
use transcoder_workflows::webhook::WebhookReceipt;

/// Everything an activity needs from the worker: where objects live, where to work, how
/// to encode. Cloned for the task activities, which share all of it.
#[derive(Clone)]
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
    /// The program that confines a `process` chain's ffmpeg (this binary's `sandbox-exec`);
    /// `None`: chains are refused.
    sandbox_launcher: Option<PathBuf>,
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
            sandbox_launcher: None,
        }
    }

    /// The program that runs `process` chains confined (see `crate::sandbox`).
    pub fn with_sandbox_launcher(mut self, launcher: PathBuf) -> Self {
        self.sandbox_launcher = Some(launcher);
        self
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

    /// Replaces the input download policy read from the environment.
    pub fn with_fetch_policy(mut self, policy: fetch::FetchPolicy) -> Self {
        self.fetch_policy = policy;
        self
    }

    /// A local path to `source` in `work` (recorded as the step's `bytes.in`).
    async fn local(&self, source: &ObjectRef, work: &Path) -> Result<PathBuf, MediaError> {
        let path = self.storage.readable_path(source, work).await?;
        bytes_in(&path);
        Ok(path)
    }

    /// A local path to `source` and its duration.
    async fn local_with_duration(
        &self,
        source: &ObjectRef,
        work: &Path,
    ) -> Result<(PathBuf, f64), MediaError> {
        let path = self.local(source, work).await?;
        let duration = probe::probe_file(&path).await?.duration_seconds;
        Ok((path, duration))
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
        self.observed(&ctx, async |_step| {
            let uri = open_if_sealed(self.secrets.as_ref(), "input URI", &input.uri)?;
            let (stored, fetched) = fetch::archive_input(
                &uri,
                &input.dest,
                &self.fetch_policy,
                &self.storage,
                self.scratch.root(),
            )
            .await?;
            // What this attempt downloaded and stored (nothing when it was archived already).
            let facts = if fetched > 0 {
                annotate(vec![KeyValue::new("bytes.in", fetched as i64)]);
                StepFacts::bytes(stored.size_bytes)
            } else {
                StepFacts::default()
            };
            Ok((stored, facts))
        })
        .await
    }

    #[activity(definition = defs::Probe)]
    pub async fn probe(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ProbeInput,
    ) -> Result<ProbeResult, ActivityError> {
        self.observed(&ctx, async |step| {
            let path = self.local(&input.source, step.dir()).await?;
            let result = probe::probe_input(&path).await?;
            tracing::info!(source = %input.source, duration = result.duration_seconds, video = ?result.video, audio = ?result.audio, "probed");
            Ok((result, StepFacts::default()))
        })
        .await
    }

    #[activity(definition = defs::Mezzanine)]
    pub async fn mezzanine(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: MezzanineInput,
    ) -> Result<StoredObject, ActivityError> {
        self.observed(&ctx, async |step| {
            let (source, duration) = self.local_with_duration(&input.source, step.dir()).await?;
            let (stored, encoded) = mezzanine::make_mezzanine(
                &self.storage,
                &input,
                &source,
                duration,
                step.dir(),
                &self.encoder,
                &self.nvenc,
                &step.progress.scaled(0.0, 0.95),
            )
            .await?;
            let facts = match encoded {
                true => StepFacts::media(duration)
                    .with_bytes(stored.size_bytes)
                    .encoder(stored.encoder.as_deref()),
                false => StepFacts::default(),
            };
            Ok((stored, facts))
        })
        .await
    }

    #[activity(definition = defs::MezzaninePiece)]
    pub async fn mezzanine_piece(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: MezzaninePieceInput,
    ) -> Result<StoredObject, ActivityError> {
        annotate(vec![KeyValue::new("chunk", i64::from(input.chunk.index))]);
        self.observed(&ctx, async |step| {
            let (stored, encoded) = mezzanine::make_piece(
                &self.storage,
                &input,
                step.dir(),
                &self.encoder,
                &self.nvenc,
                &step.progress.scaled(0.0, 0.95),
            )
            .await?;
            let facts = match encoded {
                true => StepFacts::media(input.chunk.duration_seconds)
                    .with_bytes(stored.size_bytes)
                    .encoder(stored.encoder.as_deref()),
                false => StepFacts::default(),
            };
            Ok((stored, facts))
        })
        .await
    }

    #[activity(definition = defs::MezzanineAudio)]
    pub async fn mezzanine_audio(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: MezzanineAudioInput,
    ) -> Result<StoredObject, ActivityError> {
        self.observed(&ctx, async |step| {
            let stored = mezzanine::make_audio_track(
                &self.storage,
                &input,
                step.dir(),
                &step.progress.scaled(0.0, 0.95),
            )
            .await?;
            let facts = StepFacts::media(input.duration_seconds)
                .with_bytes(stored.size_bytes)
                .encoder(stored.encoder.as_deref());
            Ok((stored, facts))
        })
        .await
    }

    #[activity(definition = defs::AudioChunk)]
    pub async fn audio_chunk(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: AudioChunkInput,
    ) -> Result<AudioChunkOutput, ActivityError> {
        annotate(vec![KeyValue::new("chunk", i64::from(input.chunk.index))]);
        self.observed(&ctx, async |step| {
            let source = self.local(&input.source, step.dir()).await?;
            let made = audio_chunks::encode_audio_chunk(
                &self.storage,
                &input,
                &source,
                step.dir(),
                &step.progress.scaled(0.0, 1.0),
            )
            .await?;
            let facts = StepFacts::media(input.chunk.duration_seconds)
                .encoder(made.encoder.as_deref())
                .with_bytes(made.bytes());
            Ok((made, facts))
        })
        .await
    }

    #[activity(definition = defs::LoudnessSummary)]
    pub async fn loudness_summary(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: LoudnessSummaryInput,
    ) -> Result<Option<LoudnessMeasurement>, ActivityError> {
        self.observed(&ctx, async |step| {
            let m = audio_chunks::summarize_meters(&self.storage, &input.meters, step.dir()).await?;
            tracing::info!(measurement = ?m, chunks = input.meters.len(), "loudness measured (pass 1, in chunks)");
            Ok((m, StepFacts::default()))
        })
        .await
    }

    #[activity(definition = defs::FinishAudioRendition)]
    pub async fn finish_audio_rendition(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: FinishAudioInput,
    ) -> Result<AudioRenditionOutput, ActivityError> {
        annotate(vec![KeyValue::new("rendition", input.name.clone())]);
        self.observed(&ctx, async |step| {
            let made = audio_chunks::finish_rendition(&self.storage, &input, step.dir()).await?;
            let facts = StepFacts::bytes(made.bytes());
            Ok((made, facts))
        })
        .await
    }

    #[activity(definition = defs::JoinAudioMezzanine)]
    pub async fn join_audio_mezzanine(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: JoinAudioInput,
    ) -> Result<StoredObject, ActivityError> {
        self.observed(&ctx, async |step| {
            let stored = audio_chunks::join_stored_audio(
                &self.storage,
                &input,
                step.dir(),
                &step.progress.scaled(0.0, 0.9),
            )
            .await?;
            let facts = StepFacts::bytes(stored.size_bytes);
            Ok((stored, facts))
        })
        .await
    }

    #[activity(definition = defs::FinishAudioHls)]
    pub async fn finish_audio_hls(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: FinishAudioHlsInput,
    ) -> Result<HlsOutput, ActivityError> {
        self.observed(&ctx, async |step| {
            let hls = audio_chunks::finish_audio_hls(&self.storage, &input, step.dir()).await?;
            let facts = StepFacts::bytes(hls.bytes_out);
            Ok((hls, facts))
        })
        .await
    }

    #[activity(definition = defs::FinishWaveform)]
    pub async fn finish_waveform(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: FinishWaveformInput,
    ) -> Result<WaveformOutput, ActivityError> {
        self.observed(&ctx, async |step| {
            let (made, bytes) =
                audio_chunks::finish_stored_waveform(&self.storage, &input, step.dir()).await?;
            Ok((made, StepFacts::bytes(bytes)))
        })
        .await
    }

    #[activity(definition = defs::JoinMezzanine)]
    pub async fn join_mezzanine(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: JoinMezzanineInput,
    ) -> Result<StoredObject, ActivityError> {
        self.observed(&ctx, async |step| {
            let stored = mezzanine::join_stored(
                &self.storage,
                &input,
                step.dir(),
                &step.progress.scaled(0.0, 0.9),
            )
            .await?;
            let facts = StepFacts::bytes(stored.size_bytes);
            Ok((stored, facts))
        })
        .await
    }

    #[activity(definition = defs::RemoveObjects)]
    pub async fn remove_objects(
        self: Arc<Self>,
        ctx: ActivityContext,
        objects: Vec<ObjectRef>,
    ) -> Result<(), ActivityError> {
        self.observed(&ctx, async |_step| {
            for obj in &objects {
                self.storage.delete(obj).await?;
            }
            Ok(((), StepFacts::default()))
        })
        .await
    }

    #[activity(definition = defs::Loudness)]
    pub async fn loudness(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: LoudnessInput,
    ) -> Result<Option<LoudnessMeasurement>, ActivityError> {
        self.observed(&ctx, async |step| {
            let (source, duration) = self.local_with_duration(&input.source, step.dir()).await?;
            let m = loudness::measure(&source, duration, &step.progress.scaled(0.0, 1.0)).await?;
            tracing::info!(source = %input.source, measurement = ?m, "loudness measured (pass 1)");
            Ok((m, StepFacts::media(duration)))
        })
        .await
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
        let feed = CheckpointFeed {
            checkpoint: feed,
            scratch: self.scratch.clone(),
        };
        let renditions: Vec<String> = input.renditions.iter().map(|r| r.name.clone()).collect();
        annotate(vec![
            KeyValue::new("chunk", i64::from(input.chunk.index)),
            KeyValue::new("rendition", renditions.join(",")),
        ]);
        let attempt = ctx.info().attempt;
        self.observed_with(&ctx, Some(feed), async |step| {
            let source = self.local(&input.source, step.dir()).await?;
            let result = chunks::encode_chunk_budgeted(
                &self.storage,
                &input,
                &source,
                &step.dir().join("hls"),
                &self.encoder,
                &self.nvenc,
                &step.progress.scaled(0.0, 1.0),
                &checkpoint,
            )
            .await?;
            tracing::info!(
                chunk = input.chunk.index,
                start = input.chunk.start_seconds,
                seconds = input.chunk.duration_seconds,
                encoder = %result.encoder,
                attempt,
                "ladder chunk encoded"
            );
            let facts = StepFacts::media(input.chunk.duration_seconds)
                .encoder(Some(&result.encoder))
                .with_bytes(result.bytes());
            Ok((result, facts))
        })
        .await
    }

    #[activity(definition = defs::AudioRendition)]
    pub async fn audio_rendition(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: AudioRenditionInput,
    ) -> Result<AudioRenditionOutput, ActivityError> {
        annotate(vec![KeyValue::new("rendition", input.name.clone())]);
        self.observed(&ctx, async |step| {
            let (source, duration) = self.local_with_duration(&input.source, step.dir()).await?;
            let made = audio_whole::encode_audio_rendition(
                &self.storage,
                &input,
                &source,
                step.dir(),
                duration,
                &step.progress.scaled(0.0, 1.0),
            )
            .await?;
            let facts = StepFacts::media(duration)
                .encoder(made.encoder.as_deref())
                .with_bytes(made.bytes());
            Ok((made, facts))
        })
        .await
    }

    #[activity(definition = defs::AssembleHls)]
    pub async fn assemble_hls(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: AssembleInput,
    ) -> Result<HlsOutput, ActivityError> {
        self.observed(&ctx, async |step| {
            let hls = assemble::assemble(
                &self.storage,
                &input,
                step.dir(),
                &step.progress.scaled(0.0, 1.0),
            )
            .await?;
            let facts = StepFacts::bytes(hls.bytes_out);
            Ok((hls, facts))
        })
        .await
    }

    #[activity(definition = defs::AudioHls)]
    pub async fn audio_hls(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: AudioHlsInput,
    ) -> Result<HlsOutput, ActivityError> {
        self.observed(&ctx, async |step| {
            let (source, duration) = self.local_with_duration(&input.source, step.dir()).await?;
            let hls = audio_whole::audio_hls(
                &self.storage,
                &input,
                &source,
                step.dir(),
                duration,
                &step.progress.scaled(0.0, 0.95),
            )
            .await?;
            let facts = StepFacts::media(duration)
                .encoder(hls.encoder())
                .with_bytes(hls.bytes_out);
            Ok((hls, facts))
        })
        .await
    }

    #[activity(definition = defs::Waveform)]
    pub async fn waveform(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: WaveformInput,
    ) -> Result<WaveformOutput, ActivityError> {
        self.observed(&ctx, async |step| {
            let (source, duration) = self.local_with_duration(&input.source, step.dir()).await?;
            let (made, bytes) = waveform::make_waveform(
                &self.storage,
                &input,
                &source,
                step.dir(),
                duration,
                &step.progress.scaled(0.0, 0.95),
            )
            .await?;
            Ok((made, StepFacts::media(duration).with_bytes(bytes)))
        })
        .await
    }

    #[activity(definition = defs::Verify)]
    pub async fn verify(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: VerifyInput,
    ) -> Result<VerifyReport, ActivityError> {
        self.observed(&ctx, async |step| {
            let report = verify::verify_outputs(&self.storage, &input, step.dir()).await?;
            tracing::info!(
                playlists = report.playlists,
                segments = report.segments,
                "verification gate passed"
            );
            Ok((report, StepFacts::default()))
        })
        .await
    }

    #[activity(definition = defs::Thumbnail)]
    pub async fn thumbnail(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ThumbnailInput,
    ) -> Result<StoredObject, ActivityError> {
        self.observed(&ctx, async |step| {
            let stored = thumbnail::make_thumbnail(
                &self.storage,
                &input,
                step.dir(),
                &step.progress.scaled(0.0, 1.0),
            )
            .await?;
            let facts = StepFacts::bytes(stored.size_bytes);
            Ok((stored, facts))
        })
        .await
    }

    #[activity(definition = defs::ExtractSubtitles)]
    pub async fn extract_subtitles(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: SubtitlesInput,
    ) -> Result<SubtitlesOutput, ActivityError> {
        self.observed(&ctx, async |step| {
            let extracted = subtitles::extract(
                &self.storage,
                &input,
                &self.fetch_policy,
                self.secrets.as_ref(),
                step.dir(),
            )
            .await?;
            Ok((extracted, StepFacts::default()))
        })
        .await
    }

    #[activity(definition = defs::DeleteOriginal)]
    pub async fn delete_original(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: CleanupInput,
    ) -> Result<CleanupOutcome, ActivityError> {
        self.observed(&ctx, async |_step| {
            let outcome = original::delete_original(&self.storage, &input).await?;
            Ok((outcome, StepFacts::default()))
        })
        .await
    }

    #[activity(definition = defs::Webhook)]
    pub async fn webhook(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: WebhookRequest,
    ) -> Result<WebhookReceipt, ActivityError> {
        let attempt = ctx.info().attempt;
        self.observed(&ctx, async |_step| {
            let mut input = input;
            input.secret = open_if_sealed(self.secrets.as_ref(), "webhook secret", &input.secret)?;
            let delivered = webhook::deliver(&self.http, &input, &self.webhook_policy).await;
            self.metrics.webhook_attempt(match &delivered {
                Ok(r) if r.delivered => "delivered",
                Ok(_) => "rejected",
                Err(_) => "retrying",
            });
            let receipt = delivered?;
            annotate(vec![
                KeyValue::new("webhook.status", input.body.status.as_str()),
                KeyValue::new(
                    "http.response.status_code",
                    receipt.status_code.map_or(0, i64::from),
                ),
            ]);
            tracing::info!(url = %input.url, attempt, status = ?receipt.status_code, delivered = receipt.delivered, "webhook sent");
            Ok((receipt, StepFacts::default()))
        })
        .await
    }

    /// A job started or ended (a local activity, so it runs once per job, not per replay):
    /// counts it and, at the end, logs the receipt. Not wrapped by `observed`: it is
    /// bookkeeping about the job, not a step of it (no scratch, heartbeat or step metrics).
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
