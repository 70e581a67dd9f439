//! The Temporal face of the activities: decode the input, run the plain function with a
//! scratch folder, map the result; what is the same around every activity (spans, metrics,
//! heartbeats, cancellation, error mapping) is in [`observe`].

mod observe;

pub use observe::HEARTBEAT_EVERY;
use observe::{
    annotate, annotate_bytes_in, to_activity_error, CheckpointFeed, Heartbeat, StepFacts,
};

use crate::audio::adts::AdtsTrack;
use crate::audio::{chunks as audio_chunks, loudness, whole as audio_whole};
use crate::encoder::EncoderSettings;
use crate::error::MediaError;
use crate::metrics::Metrics;
use crate::mezzanine::JoinedAudio;
use crate::nvenc::NvencBudget;
use crate::scratch::ScratchSpace;
use crate::secrets::{SecretBox, SecretError};
use crate::storage::Storage;
use crate::{assemble, chunks, fetch, hls, mezzanine, probe, thumbnail, verify, waveform, webhook};
use transcoder_workflows::keys::may_delete;

use opentelemetry::KeyValue;
use std::path::PathBuf;
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
            let (stored, fetched) = fetch::archive_input(
                &uri_text,
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
            Ok::<_, MediaError>((stored, facts))
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
            if let Some(stored) =
                mezzanine::stored_mezzanine(&self.storage, &input, duration, work.path()).await?
            {
                return Ok((stored, StepFacts::default()));
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
            if let Some(stored) =
                mezzanine::stored_piece(&self.storage, &input, work.path()).await?
            {
                return Ok((stored, StepFacts::default()));
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
