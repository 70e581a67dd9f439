//! `TranscodeWorkflow`: validate, probe, plan, then run the media activities and report.
//!
//! Replay-safe: all decisions come from the job and from activity results recorded in
//! history; anything that touches the outside world is an activity.

use crate::activities::{defs as act, JobEvent, WebhookRequest};
use crate::cleanup::{cleanup_workflow_id, OriginalCleanupWorkflow};
use crate::job::{Job, JobInput, MediaType};
use crate::keys::JobKeys;
use crate::ladder::{
    audio_ladder, plan_chunks, plan_mezzanine, plan_video, MezzaninePlan, PlanConfig, VideoPlan,
};
use crate::media::{
    AssembleInput, AudioChunkInput, AudioChunkOutput, AudioChunkWork, AudioHlsInput,
    AudioRendition, AudioRenditionInput, AudioRenditionOutput, ChunkPlan, CleanupInput, FetchInput,
    FinishAudioHlsInput, FinishAudioInput, FinishWaveformInput, HlsOutput, JoinAudioInput,
    JoinMezzanineInput, LadderChunkInput, LadderChunkOutput, LoudnessInput, LoudnessMeasurement,
    LoudnessSummaryInput, MezzanineAudioInput, MezzanineInput, MezzaninePieceInput, MezzanineVideo,
    ObjectRef, PreviewPlan, ProbeInput, ProbeResult, SegmentInfo, StoredObject, ThumbnailInput,
    VerifyInput, WaveformInput, WaveformOutput,
};
use crate::receipt::{Receipt, StepTiming, WebhookDelivery};
use crate::search;
use crate::webhook::{CompletedOutput, MediaTypeText, WebhookBody, WebhookReceipt};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityCloseTimeouts, ActivityExecutionError, ActivityOptions, ApplicationFailure,
    ChildWorkflowOptions, LocalActivityOptions, ParentClosePolicy, WorkflowContext,
    WorkflowContextView, WorkflowResult, WorkflowTermination,
};

/// Result of a completed job: the webhook body that was sent, and whether it got through.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TranscodeResult {
    pub webhook: WebhookBody,
    pub webhook_receipt: Option<WebhookReceipt>,
    /// Encoder used per rendition, e.g. `("720p", "libx264")`.
    pub encoders: Vec<(String, String)>,
    /// What each step cost: wall time, realtime factor, encoder, bytes out. Not part of
    /// the webhook contract.
    #[serde(default)]
    pub receipt: Receipt,
}

/// Where a running job is, for the `progress` query (the RunPod worker turns it into
/// progress updates). Kept in workflow state, not history: it is rebuilt on replay by the
/// same code path, so it costs no events and cannot break determinism.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// The step running now (`probe`, `mezzanine`, `ladder`, …, `done`, `failed`).
    pub step: String,
    /// A rough 0–100 estimate from the steps done; the ladder fills most of it by chunks.
    pub percent: u8,
    pub chunks_done: u32,
    pub chunks_total: u32,
    /// Why the job failed, once it has (set before its failed webhook is delivered, which
    /// may take hours of retries): waiting clients report it at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

#[workflow]
#[derive(Default)]
pub struct TranscodeWorkflow {
    progress: Progress,
    receipt: Receipt,
}

/// Workflow time in seconds since the epoch: replay-safe, it comes from history.
fn clock(ctx: &WorkflowContext<TranscodeWorkflow>) -> f64 {
    ctx.workflow_time()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Adds a finished step to the job's receipt.
fn record(ctx: &WorkflowContext<TranscodeWorkflow>, step: StepTiming) {
    ctx.state_mut(|s| s.receipt.add(step));
}

/// Records that the job failed, and why, as its failed webhook starts (the `progress` query
/// then carries the reason to whoever waits).
fn failed(ctx: &WorkflowContext<TranscodeWorkflow>, reason: &str) {
    step(ctx, "webhook", 99);
    ctx.state_mut(|s| s.progress.failure = Some(reason.to_string()));
}

/// Records the current step in workflow state (read by the `progress` query).
fn step(ctx: &WorkflowContext<TranscodeWorkflow>, name: &str, percent: u8) {
    ctx.state_mut(|s| {
        s.progress.step = name.to_string();
        s.progress.percent = percent;
    });
}

#[workflow_methods]
impl TranscodeWorkflow {
    /// The job's current step and a rough percentage; answered by any worker.
    #[query]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> Progress {
        self.progress.clone()
    }

    /// The receipt so far (`outcome: running` until the job ends).
    #[query]
    pub fn receipt(&self, _ctx: &WorkflowContextView) -> Receipt {
        self.receipt.clone()
    }

    #[run]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: JobInput,
    ) -> WorkflowResult<TranscodeResult> {
        let id = ctx.workflow_id().to_string();
        let started_at = clock(ctx);
        let media_id = input.media_id.clone().unwrap_or_default();
        let media_type = input
            .media_type
            .as_deref()
            .and_then(MediaType::parse)
            .map_or("unknown", MediaType::as_str);
        ctx.state_mut(|s| s.receipt = Receipt::new(&media_id, media_type));
        job_event(ctx, None).await;
        step(ctx, "validate", 0);
        let job = match input.validate() {
            Ok(job) => job,
            Err(invalid) => {
                let reason = invalid.to_string();
                if let Some((url, secret)) = input.usable_webhook() {
                    let body = WebhookBody::failed(
                        id,
                        input.media_id.clone(),
                        input.media_type.clone().map(MediaTypeText),
                        &reason,
                        &[secret],
                    );
                    let reason = body.error.clone().unwrap_or(reason);
                    failed(ctx, &reason);
                    deliver_webhook(ctx, url, secret, body, input.webhook_retry_hours).await;
                    finish_receipt(ctx, false, started_at, 0.0).await;
                    step(ctx, "failed", 100);
                    return Err(ApplicationFailure::non_retryable(reason).into());
                }
                finish_receipt(ctx, false, started_at, 0.0).await;
                step(ctx, "failed", 100);
                return Err(ApplicationFailure::non_retryable(reason).into());
            }
        };

        match process(ctx, &job).await {
            Ok((output, encoders)) => {
                let duration = output.duration_seconds;
                start_original_cleanup(ctx, &job).await;
                step(ctx, "webhook", 99);
                let body = WebhookBody::completed(id, output);
                let receipt = deliver_webhook(
                    ctx,
                    &job.webhook_url,
                    &job.webhook_secret,
                    body.clone(),
                    job.webhook_retry_hours,
                )
                .await;
                let cost = finish_receipt(ctx, true, started_at, duration).await;
                step(ctx, "done", 100);
                Ok(TranscodeResult {
                    webhook: body,
                    webhook_receipt: receipt,
                    encoders,
                    receipt: cost,
                })
            }
            // Cancelled from outside (a RunPod job-stop, `temporal workflow cancel`): the
            // activities were cancelled with it; end as cancelled, with no failed webhook,
            // since whoever cancelled it knows.
            Err(_) if ctx.cancellation_token().is_cancelled() => {
                label(ctx, "cancelled", &[]);
                step(ctx, "cancelled", 100);
                Err(WorkflowTermination::cancelled())
            }
            Err(reason) => {
                let body = WebhookBody::failed(
                    id,
                    Some(job.media_id.clone()),
                    Some(job.media_type.into()),
                    &reason,
                    &[&job.webhook_secret],
                );
                let reason = body.error.clone().unwrap_or(reason);
                failed(ctx, &reason);
                deliver_webhook(
                    ctx,
                    &job.webhook_url,
                    &job.webhook_secret,
                    body,
                    job.webhook_retry_hours,
                )
                .await;
                let media_seconds = ctx.state(|s| s.receipt.media_seconds);
                finish_receipt(ctx, false, started_at, media_seconds).await;
                step(ctx, "failed", 100);
                Err(ApplicationFailure::non_retryable(reason).into())
            }
        }
    }
}

/// Closes the receipt and reports the end of the job (metrics, the receipt log line).
async fn finish_receipt(
    ctx: &mut WorkflowContext<TranscodeWorkflow>,
    completed: bool,
    started_at: f64,
    media_seconds: f64,
) -> Receipt {
    let wall = clock(ctx) - started_at;
    ctx.state_mut(|s| s.receipt.finish(completed, wall, media_seconds));
    let receipt = ctx.state(|s| s.receipt.clone());
    label(
        ctx,
        if completed { "completed" } else { "failed" },
        &receipt.encoders,
    );
    job_event(ctx, Some(receipt.clone())).await;
    receipt
}

/// Adds the job's outcome and video encoders to its search attributes, when it was started
/// with them (see `search`): replayed histories from before them issue no command here.
fn label(ctx: &WorkflowContext<TranscodeWorkflow>, outcome: &str, encoders: &[String]) {
    if !ctx.search_attributes().contains_key(&search::CREATOR) {
        return;
    }
    let mut updates = vec![search::OUTCOME.value_set(outcome.to_string())];
    if !encoders.is_empty() {
        updates.push(search::ENCODER.value_set(encoders.join(",")));
    }
    ctx.upsert_search_attributes(updates);
}

/// Tells the worker a job started (`None`) or ended. Best effort: metrics and a log line
/// must never fail a job, so the outcome is ignored.
async fn job_event(ctx: &WorkflowContext<TranscodeWorkflow>, finished: Option<Receipt>) {
    let (media_id, media_type) =
        ctx.state(|s| (s.receipt.media_id.clone(), s.receipt.media_type.clone()));
    let _ = ctx
        .execute_local_activity(
            act::JobEvent,
            JobEvent {
                media_id,
                media_type,
                finished,
            },
            LocalActivityOptions::builder()
                .start_to_close_timeout(Duration::from_secs(10))
                .schedule_to_close_timeout(Duration::from_secs(30))
                .build(),
        )
        .await;
}

type Encoders = Vec<(String, String)>;

/// Runs the media steps of a valid job. `Err` holds the reason a person should read.
async fn process(
    ctx: &mut WorkflowContext<TranscodeWorkflow>,
    job: &Job,
) -> Result<(CompletedOutput, Encoders), String> {
    let keys = JobKeys::new(job);
    let mut config = PlanConfig::default();
    if let Some(n) = job.segments_per_chunk {
        config.segments_per_chunk = n;
    }

    step(ctx, "fetch_input", 1);
    if let Some(uri) = &job.input_uri {
        let t = clock(ctx);
        let fetched = ctx
            .execute_activity(
                act::FetchInput,
                FetchInput {
                    uri: uri.clone(),
                    dest: keys.input(),
                },
                // Large downloads take a while; it heartbeats its progress and resumes by range.
                ActivityOptions::with_start_to_close_timeout(Duration::from_secs(6 * 3600))
                    .heartbeat_timeout(Duration::from_secs(60))
                    .retry_policy(transient_retries(5))
                    .build(),
            )
            .await
            .map_err(|e| step_failed("fetching the input", &e))?;
        record(
            ctx,
            StepTiming::new("fetch_input", t, clock(ctx)).bytes(fetched.size_bytes),
        );
    }

    step(ctx, "probe", 2);
    let t = clock(ctx);
    let probe: ProbeResult = ctx
        .execute_activity(
            act::Probe,
            ProbeInput {
                source: keys.input(),
            },
            short_step(Duration::from_secs(120)),
        )
        .await
        .map_err(|e| step_failed("probe", &e))?;
    record(ctx, StepTiming::new("probe", t, clock(ctx)));
    let duration = probe.duration_seconds;
    ctx.state_mut(|s| s.receipt.media_seconds = duration);

    if probe.audio.is_none() && (job.media_type == MediaType::Audio || probe.video.is_none()) {
        if job.media_type == MediaType::Audio {
            return Err(
                "the input has no audio stream, so it cannot be processed as an audio job".into(),
            );
        }
        return Err("the input has neither a video nor an audio stream".into());
    }
    let video_plan = match job.media_type {
        MediaType::Video => Some(plan_video(&probe, &config).ok_or_else(|| {
            "the input has no video stream; submit it with mediaType \"audio\"".to_string()
        })?),
        MediaType::Audio => None,
    };

    let mezzanine_video = video_plan.as_ref().map(|p| MezzanineVideo {
        frame_rate: p.frame_rate,
        gop_seconds: config.gop_seconds,
        tone_map_from: p.tone_map_from,
        deinterlace: p.deinterlace,
        size: Some((p.display_width, p.display_height)),
    });
    let chunks = plan_chunks(duration, config.segment_seconds, config.segments_per_chunk);
    let in_pieces = match (&video_plan, &mezzanine_video) {
        (Some(plan), Some(video)) => match plan_mezzanine(&probe, &chunks) {
            MezzaninePlan::Pieces => Some((plan, video.clone())),
            MezzaninePlan::Whole(_) => None,
        },
        _ => None,
    };
    // An audio job makes everything in chunks; histories from before that run it whole.
    let audio_in_chunks = video_plan.is_none() && ctx.patched(AUDIO_IN_CHUNKS);
    let mut audio_job_done = None;
    // A chunked mezzanine encodes the ladder as it goes: what it returns is ready.
    let (mezzanine, loudness, ladder_done) = match in_pieces {
        None if audio_in_chunks => {
            let (mezzanine, hls, waveform) =
                audio_job_in_chunks(ctx, job, &keys, &config, &probe, &chunks).await?;
            audio_job_done = Some((hls, waveform));
            (mezzanine, None, None)
        }
        Some((plan, video)) => {
            let (mezzanine, made, audio) = chunked_mezzanine_and_ladder(
                ctx, job, &keys, &config, &probe, plan, video, &chunks,
            )
            .await?;
            (mezzanine, None, Some((made, audio)))
        }
        None => {
            step(ctx, "mezzanine", 5);
            let t = clock(ctx);
            let mezzanine = ctx.execute_activity(
                act::Mezzanine,
                MezzanineInput {
                    source: keys.input(),
                    dest: keys.mezzanine(),
                    video: mezzanine_video.clone(),
                    has_audio: probe.audio.is_some(),
                },
                long_running(&probe),
            );
            let mezzanine = async {
                let made = mezzanine.await;
                if let Ok(made) = &made {
                    let mut timing = StepTiming::new("mezzanine", t, clock(ctx))
                        .media(duration)
                        .bytes(made.size_bytes);
                    if video_plan.is_some() {
                        timing = timing.encoder(made.encoder.as_deref().unwrap_or("libx264"));
                    }
                    record(ctx, timing);
                }
                made
            };
            // Pass 1 of the loudness normalization runs beside the mezzanine encode.
            let loudness = loudness_pass(ctx, &keys, &probe);
            let (mezzanine, loudness) = futures::join!(mezzanine, loudness);
            let mezzanine = mezzanine.map_err(|e| step_failed("mezzanine", &e))?;
            (mezzanine, loudness?, None)
        }
    };

    let mut output = CompletedOutput {
        media_id: job.media_id.clone(),
        media_type: job.media_type.as_str().to_string(),
        mezzanine_key: Some(mezzanine.object.key.clone()),
        duration_seconds: round_ms(probe.duration_seconds),
        ..Default::default()
    };
    let mut verify = VerifyInput {
        media_bucket: job.output_bucket.clone(),
        assets_bucket: job.assets_bucket.clone(),
        duration_seconds: probe.duration_seconds,
        has_audio: Some(probe.audio.is_some()),
        ..Default::default()
    };

    let hls: HlsOutput = match &video_plan {
        Some(plan) => {
            let ladder = async {
                match ladder_done {
                    Some(done) => Ok(done),
                    None => {
                        step(ctx, "ladder", LADDER_START);
                        encode_ladder(
                            ctx,
                            job,
                            &keys,
                            &config,
                            &probe,
                            &chunks,
                            &mezzanine.object,
                            plan,
                            loudness,
                        )
                        .await
                    }
                }
            };
            let t = clock(ctx);
            let thumbnail = ctx.execute_activity(
                act::Thumbnail,
                ThumbnailInput {
                    source: mezzanine.object.clone(),
                    dest: keys.thumbnail(),
                    at_seconds: plan.thumbnail_at_seconds,
                    width: THUMBNAIL_SIZE.0,
                    height: THUMBNAIL_SIZE.1,
                },
                short_step(Duration::from_secs(300)),
            );
            let thumbnail = async {
                let made = thumbnail.await;
                if let Ok(made) = &made {
                    record(
                        ctx,
                        StepTiming::new("thumbnail", t, clock(ctx)).bytes(made.size_bytes),
                    );
                }
                made
            };
            // The poster frame does not wait for the ladder.
            let (ladder, thumb) = futures::join!(ladder, thumbnail);
            let (chunks, audio) = ladder?;
            let thumb = thumb.map_err(|e| step_failed("thumbnail", &e))?;
            step(ctx, "assemble", 90);
            let t = clock(ctx);
            let hls = ctx
                .execute_activity(
                    act::AssembleHls,
                    AssembleInput {
                        bucket: job.output_bucket.clone(),
                        prefix: keys.hls_prefix().to_string(),
                        renditions: plan.renditions.clone(),
                        frame_rate: plan.frame_rate,
                        chunks,
                        audio,
                        preview: plan.preview_from.as_ref().map(|from| PreviewPlan {
                            from_rendition: from.clone(),
                            seconds: plan.preview_seconds,
                            playlist_key: keys.preview_playlist(),
                        }),
                    },
                    long_running(&probe),
                )
                .await
                .map_err(|e| step_failed("HLS assembly", &e))?;
            record(
                ctx,
                StepTiming::new("assemble_hls", t, clock(ctx)).bytes(hls.bytes_out),
            );
            output.thumbnail_key = Some(thumb.object.key.clone());
            output.width = Some(plan.display_width);
            output.height = Some(plan.display_height);
            if let Some(preview_key) = &hls.preview_key {
                output.hls_preview_key = Some(preview_key.clone());
                verify.preview_key = Some(preview_key.clone());
                verify.preview_seconds = plan.preview_seconds;
            }
            verify.thumbnail_key = Some(thumb.object.key);
            verify.video_renditions = plan
                .renditions
                .iter()
                .map(|r| (r.name.clone(), r.width, r.height))
                .collect();
            hls
        }
        None => {
            let (hls, waveform) = match audio_job_done {
                Some(done) => done,
                None => {
                    audio_job_whole(ctx, job, &keys, &config, &probe, &mezzanine, loudness).await?
                }
            };
            output.waveform_key = Some(waveform.json.key.clone());
            output.waveform_image_key = Some(waveform.png.key.clone());
            verify.waveform_json_key = Some(waveform.json.key);
            verify.waveform_png_key = Some(waveform.png.key);
            hls
        }
    };

    verify.master_key = hls.master_key.clone();
    step(ctx, "verify", 95);
    let t = clock(ctx);
    ctx.execute_activity(act::Verify, verify, long_running(&probe))
        .await
        .map_err(|e| step_failed("verification", &e))?;
    record(ctx, StepTiming::new("verify", t, clock(ctx)));

    output.hls_master_playlist_key = Some(hls.master_key.clone());
    output.ready_variants = hls.variants.iter().map(|v| v.name.clone()).collect();
    if output.hls_preview_key.is_some() {
        output.ready_variants.push("preview".to_string());
    }
    output.loudness = hls.delivered_loudness.map(LoudnessMeasurement::to_webhook);
    let encoders = hls
        .variants
        .iter()
        .map(|v| (v.name.clone(), v.encoder.clone()))
        .collect();
    Ok((output, encoders))
}

/// An audio job's HLS ladder and waveform in whole-file activities, as jobs started before
/// audio was chunked made them.
async fn audio_job_whole(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    job: &Job,
    keys: &JobKeys<'_>,
    config: &PlanConfig,
    probe: &ProbeResult,
    mezzanine: &StoredObject,
    loudness: Option<LoudnessMeasurement>,
) -> Result<(HlsOutput, WaveformOutput), String> {
    let duration = probe.duration_seconds;
    step(ctx, "audio HLS", 30);
    let t = clock(ctx);
    let hls = ctx
        .execute_activity(
            act::AudioHls,
            AudioHlsInput {
                source: mezzanine.object.clone(),
                bucket: job.output_bucket.clone(),
                prefix: keys.hls_prefix().to_string(),
                renditions: audio_ladder(),
                segment_seconds: config.segment_seconds,
                loudness,
            },
            long_running(probe),
        )
        .await
        .map_err(|e| step_failed("audio HLS", &e))?;
    record(
        ctx,
        StepTiming::new("audio_hls", t, clock(ctx))
            .media(duration)
            .encoder("aac")
            .bytes(hls.bytes_out),
    );
    step(ctx, "waveform", 80);
    let t = clock(ctx);
    let waveform = ctx
        .execute_activity(
            act::Waveform,
            WaveformInput {
                source: mezzanine.object.clone(),
                loudness,
                json_dest: keys.waveform_json(),
                png_dest: keys.waveform_png(),
            },
            long_running(probe),
        )
        .await
        .map_err(|e| step_failed("waveform", &e))?;
    record(
        ctx,
        StepTiming::new("waveform", t, clock(ctx)).media(duration),
    );
    Ok((hls, waveform))
}

/// Encodes the ladder in chunks (bounded parallelism, fanned out to every worker on the
/// task queue) from the whole mezzanine, while the audio rendition is encoded in one run
/// (a video of one chunk, or a source whose mezzanine is made whole).
#[allow(clippy::too_many_arguments)]
async fn encode_ladder(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    job: &Job,
    keys: &JobKeys<'_>,
    config: &PlanConfig,
    probe: &ProbeResult,
    chunks: &[ChunkPlan],
    mezzanine: &ObjectRef,
    plan: &VideoPlan,
    loudness: Option<LoudnessMeasurement>,
) -> Result<(Vec<LadderChunkOutput>, Option<AudioRenditionOutput>), String> {
    let audio = async {
        match probe.audio {
            Some(_) => audio_rendition(ctx, job, keys, config, probe, mezzanine, loudness)
                .await
                .map(Some),
            None => Ok(None),
        }
    };
    let video = async {
        let mut done = in_window(ctx, chunks, config.max_parallel_chunks, |chunk| {
            let chunk = *chunk;
            Box::pin(async move {
                ladder_chunk(ctx, job, keys, config, plan, mezzanine, 0.0, chunk).await
            })
        })
        .await?;
        done.sort_by_key(|c| c.index);
        Ok::<_, String>(done)
    };
    let (video, audio) = futures::join!(video, audio);
    Ok((video?, audio?))
}

/// The chunked path of a video job: each chunk's mezzanine piece, then that chunk's ladder
/// from the piece, in a sliding window over every worker, so the ladder streams behind the
/// mezzanine and no activity does more than a chunk of video; beside them the audio (its
/// mezzanine track, the loudness pass, the audio rendition). Then the pieces and the track
/// are joined into the one mezzanine and removed. Returns the mezzanine, the chunks and
/// the audio rendition.
#[allow(clippy::too_many_arguments)]
async fn chunked_mezzanine_and_ladder(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    job: &Job,
    keys: &JobKeys<'_>,
    config: &PlanConfig,
    probe: &ProbeResult,
    plan: &VideoPlan,
    video: MezzanineVideo,
    pieces: &[ChunkPlan],
) -> Result<
    (
        StoredObject,
        Vec<LadderChunkOutput>,
        Option<AudioRenditionOutput>,
    ),
    String,
> {
    step(ctx, "ladder", LADDER_START);
    let duration = probe.duration_seconds;
    let audio = async {
        if probe.audio.is_none() {
            return Ok(ProgrammeSound::default());
        }
        if ctx.patched(AUDIO_IN_CHUNKS) {
            return chunked_audio(ctx, job, keys, config, probe, pieces).await;
        }
        // Jobs started before audio was chunked replay this path unchanged.
        let t = clock(ctx);
        let track = async {
            ctx.execute_activity(
                act::MezzanineAudio,
                MezzanineAudioInput {
                    source: keys.input(),
                    dest: keys.mezzanine_audio(),
                    duration_seconds: duration,
                },
                long_running(probe),
            )
            .await
            .inspect(|made| {
                record(
                    ctx,
                    StepTiming::new("mezzanine_audio", t, clock(ctx))
                        .media(duration)
                        .encoder("aac")
                        .bytes(made.size_bytes),
                )
            })
            .map_err(|e| step_failed("mezzanine audio", &e))
        };
        let (track, loudness) = futures::join!(track, loudness_pass(ctx, keys, probe));
        let (track, loudness) = (track?, loudness?);
        let rendition =
            audio_rendition(ctx, job, keys, config, probe, &track.object, loudness).await?;
        Ok::<_, String>(ProgrammeSound {
            track: Some(track.object.clone()),
            scratch: vec![track.object],
            rendition: Some(rendition),
            ..Default::default()
        })
    };
    let ladder = async {
        let mut done = in_window(ctx, pieces, config.max_parallel_chunks, |chunk| {
            let chunk = *chunk;
            let video = video.clone();
            Box::pin(async move {
                let t = clock(ctx);
                let piece = ctx
                    .execute_activity(
                        act::MezzaninePiece,
                        MezzaninePieceInput {
                            source: keys.input(),
                            dest: keys.mezzanine_piece(chunk.index),
                            video,
                            chunk,
                            duration_seconds: duration,
                        },
                        chunk_options(&chunk),
                    )
                    .await
                    .map_err(|e| step_failed(&format!("mezzanine piece {}", chunk.index), &e))?;
                record(
                    ctx,
                    StepTiming::new("mezzanine", t, clock(ctx))
                        .media(chunk.duration_seconds)
                        .encoder(piece.encoder.as_deref().unwrap_or("libx264"))
                        .bytes(piece.size_bytes),
                );
                let made = ladder_chunk(
                    ctx,
                    job,
                    keys,
                    config,
                    plan,
                    &piece.object,
                    chunk.start_seconds,
                    chunk,
                )
                .await?;
                Ok((made, piece.object))
            })
        })
        .await?;
        done.sort_by_key(|(c, _)| c.index);
        Ok::<_, String>(done)
    };
    let (ladder, audio) = futures::join!(ladder, audio);
    let (chunks, piece_objects): (Vec<_>, Vec<_>) = ladder?.into_iter().unzip();
    let sound = audio?;

    let t = clock(ctx);
    let frames = pieces
        .last()
        .map(|c| c.frame_range(video.frame_rate).1)
        .unwrap_or_default();
    let mezzanine = ctx
        .execute_activity(
            act::JoinMezzanine,
            JoinMezzanineInput {
                pieces: piece_objects.clone(),
                audio: sound.track,
                audio_pieces: sound.pieces,
                dest: keys.mezzanine(),
                video: video.clone(),
                frames,
                duration_seconds: duration,
            },
            long_running(probe),
        )
        .await
        .map_err(|e| step_failed("mezzanine join", &e))?;
    record(
        ctx,
        StepTiming::new("mezzanine_join", t, clock(ctx)).bytes(mezzanine.size_bytes),
    );
    // The pieces were steps on the way; the joined mezzanine is the archive.
    let mut leftovers = piece_objects;
    leftovers.extend(sound.scratch);
    remove_scratch(ctx, leftovers).await;
    Ok((mezzanine, chunks, sound.rendition))
}

/// Marks jobs whose sound is made in chunks ([`chunked_audio`]); histories without it made
/// the sound in whole-file activities.
const AUDIO_IN_CHUNKS: &str = "audio-in-chunks";

/// A video job's sound, made beside its chunked picture.
#[derive(Default)]
struct ProgrammeSound {
    /// The mezzanine's track in one file (jobs from before audio was chunked).
    track: Option<ObjectRef>,
    /// The mezzanine's track in chunk pieces, in order.
    pieces: Vec<ObjectRef>,
    /// What is removed once the mezzanine is joined.
    scratch: Vec<ObjectRef>,
    rendition: Option<AudioRenditionOutput>,
}

/// The sound of a video job in chunks, on the ladder's chunk boundaries (ARCHITECTURE.md,
/// "Audio in chunks"): the archive round (mezzanine pieces and the source's loudness), the
/// rendition round, then the rendition's playlist and its delivered loudness. No step does
/// more than a chunk of media work.
async fn chunked_audio(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    job: &Job,
    keys: &JobKeys<'_>,
    config: &PlanConfig,
    probe: &ProbeResult,
    chunks: &[ChunkPlan],
) -> Result<ProgrammeSound, String> {
    let rounds = SoundRounds {
        ctx,
        job,
        keys,
        config,
        probe,
        chunks,
    };
    let archive = rounds.archive().await?;
    let name = AUDIO_RENDITION.to_string();
    let rendition = AudioRendition {
        name: name.clone(),
        bitrate_kbps: config.video_audio_bitrate_kbps,
    };
    let t = clock(ctx);
    let made = rounds
        .renditions(vec![rendition], archive.loudness, false)
        .await?;
    let finished = ctx
        .execute_activity(
            act::FinishAudioRendition,
            FinishAudioInput {
                bucket: job.output_bucket.clone(),
                prefix: keys.hls_prefix().to_string(),
                name,
                segments: made.segments.into_iter().flat_map(|(_, s)| s).collect(),
                meters: made.meters.clone(),
            },
            short_step(Duration::from_secs(300)),
        )
        .await
        .map_err(|e| step_failed("audio rendition", &e))?;
    record(
        ctx,
        StepTiming::new("audio_rendition", t, clock(ctx))
            .media(probe.duration_seconds)
            .encoder("aac")
            .bytes(finished.bytes()),
    );
    let mut scratch = archive.scratch();
    scratch.extend(made.meters);
    Ok(ProgrammeSound {
        track: None,
        pieces: archive.pieces,
        scratch,
        rendition: Some(finished),
    })
}

/// An audio job in chunks: the archive round, the mezzanine joined from its pieces beside
/// the rendition round (every rung of the audio ladder and the waveform's stretches), then
/// the playlists, the master and the waveform from what the chunks made.
async fn audio_job_in_chunks(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    job: &Job,
    keys: &JobKeys<'_>,
    config: &PlanConfig,
    probe: &ProbeResult,
    chunks: &[ChunkPlan],
) -> Result<(StoredObject, HlsOutput, WaveformOutput), String> {
    let duration = probe.duration_seconds;
    let rounds = SoundRounds {
        ctx,
        job,
        keys,
        config,
        probe,
        chunks,
    };
    step(ctx, "mezzanine", 5);
    let archive = rounds.archive().await?;
    step(ctx, "audio HLS", 30);
    let t = clock(ctx);
    let mezzanine = async {
        let t = clock(ctx);
        ctx.execute_activity(
            act::JoinAudioMezzanine,
            JoinAudioInput {
                pieces: archive.pieces.clone(),
                dest: keys.mezzanine(),
                duration_seconds: duration,
            },
            short_step(Duration::from_secs(1800)),
        )
        .await
        .inspect(|made| {
            record(
                ctx,
                StepTiming::new("mezzanine_join", t, clock(ctx)).bytes(made.size_bytes),
            )
        })
        .map_err(|e| step_failed("mezzanine join", &e))
    };
    let made = rounds.renditions(audio_ladder(), archive.loudness, true);
    let (mezzanine, made) = futures::join!(mezzanine, made);
    let (mezzanine, made) = (mezzanine?, made?);
    let hls = ctx.execute_activity(
        act::FinishAudioHls,
        FinishAudioHlsInput {
            bucket: job.output_bucket.clone(),
            prefix: keys.hls_prefix().to_string(),
            renditions: made.segments,
            meters: made.meters.clone(),
        },
        short_step(Duration::from_secs(300)),
    );
    let waveform = ctx.execute_activity(
        act::FinishWaveform,
        FinishWaveformInput {
            pieces: made.waveforms.clone(),
            duration_seconds: duration,
            json_dest: keys.waveform_json(),
            png_dest: keys.waveform_png(),
        },
        short_step(Duration::from_secs(300)),
    );
    let (hls, waveform) = futures::join!(hls, waveform);
    let hls = hls.map_err(|e| step_failed("audio HLS", &e))?;
    record(
        ctx,
        StepTiming::new("audio_hls", t, clock(ctx))
            .media(duration)
            .encoder("aac")
            .bytes(hls.bytes_out),
    );
    let waveform = waveform.map_err(|e| step_failed("waveform", &e))?;
    let mut scratch = archive.scratch();
    scratch.extend(made.meters);
    scratch.extend(made.waveforms);
    remove_scratch(ctx, scratch).await;
    Ok((mezzanine, hls, waveform))
}

/// Removes objects that were only steps on the way (pieces, meter readings, stretches).
/// Failing to remove them costs storage, not the job.
async fn remove_scratch(ctx: &WorkflowContext<TranscodeWorkflow>, objects: Vec<ObjectRef>) {
    let _ = ctx
        .execute_activity(
            act::RemoveObjects,
            objects,
            short_step(Duration::from_secs(600)),
        )
        .await;
}

/// The two rounds of chunks a programme's sound goes through.
struct SoundRounds<'a, 'k> {
    ctx: &'a WorkflowContext<TranscodeWorkflow>,
    job: &'a Job,
    keys: &'a JobKeys<'k>,
    config: &'a PlanConfig,
    probe: &'a ProbeResult,
    chunks: &'a [ChunkPlan],
}

/// What the archive round made.
struct ArchiveRound {
    /// The mezzanine's sound, a piece per chunk, in order.
    pieces: Vec<ObjectRef>,
    meters: Vec<ObjectRef>,
    /// The source's loudness, `None` for silence.
    loudness: Option<LoudnessMeasurement>,
}

impl ArchiveRound {
    fn scratch(&self) -> Vec<ObjectRef> {
        self.pieces.iter().chain(&self.meters).cloned().collect()
    }
}

/// What the rendition round made.
struct RenditionRound {
    /// Each rendition with every chunk's segments, in order.
    segments: Vec<(String, Vec<SegmentInfo>)>,
    /// Meter readings of the first rendition as delivered.
    meters: Vec<ObjectRef>,
    /// The waveform's stretches, when asked.
    waveforms: Vec<ObjectRef>,
}

impl SoundRounds<'_, '_> {
    fn input(&self, chunk: &ChunkPlan, meter: ObjectRef, work: AudioChunkWork) -> AudioChunkInput {
        AudioChunkInput {
            source: self.keys.input(),
            chunk: *chunk,
            segment_seconds: self.config.segment_seconds,
            duration_seconds: self.probe.duration_seconds,
            source_sample_rate: self.probe.audio.as_ref().map_or(0, |a| a.sample_rate),
            meter_dest: meter,
            work,
        }
    }

    /// Each chunk's mezzanine piece and the source's meter readings, then the programme's
    /// loudness from them (pass 1 of the normalization).
    async fn archive(&self) -> Result<ArchiveRound, String> {
        let (ctx, keys) = (self.ctx, self.keys);
        let duration = self.probe.duration_seconds;
        let t = clock(ctx);
        let made = run_windowed(
            self.chunks,
            self.config.max_parallel_chunks,
            |chunk| {
                let work = AudioChunkWork::Archive {
                    dest: keys.mezzanine_audio_piece(chunk.index),
                };
                let meter = keys.loudness_meter("source", chunk.index);
                Box::pin(audio_chunk(
                    ctx,
                    self.input(chunk, meter, work),
                    "mezzanine audio",
                ))
            },
            |_| {},
        )
        .await?;
        let made = in_order(made);
        record(
            ctx,
            StepTiming::new("mezzanine_audio", t, clock(ctx))
                .media(duration)
                .encoder("aac")
                .bytes(made.iter().map(AudioChunkOutput::bytes).sum()),
        );
        let t = clock(ctx);
        let meters: Vec<ObjectRef> = made.iter().map(|c| c.meter.clone()).collect();
        let loudness = ctx
            .execute_activity(
                act::LoudnessSummary,
                LoudnessSummaryInput {
                    meters: meters.clone(),
                },
                short_step(Duration::from_secs(300)),
            )
            .await
            .map_err(|e| step_failed("loudness analysis", &e))?;
        record(
            ctx,
            StepTiming::new("loudness", t, clock(ctx)).media(duration),
        );
        Ok(ArchiveRound {
            pieces: made
                .into_iter()
                .filter_map(|c| c.piece.map(|p| p.object))
                .collect(),
            meters,
            loudness,
        })
    }

    /// Each chunk's segments of every rendition, normalized by `loudness`, with the
    /// delivered sound's meter readings and, when asked, the waveform's stretches.
    async fn renditions(
        &self,
        renditions: Vec<AudioRendition>,
        loudness: Option<LoudnessMeasurement>,
        waveform: bool,
    ) -> Result<RenditionRound, String> {
        let (ctx, job, keys) = (self.ctx, self.job, self.keys);
        let made = run_windowed(
            self.chunks,
            self.config.max_parallel_chunks,
            |chunk| {
                let work = AudioChunkWork::Renditions {
                    bucket: job.output_bucket.clone(),
                    prefix: keys.hls_prefix().to_string(),
                    renditions: renditions.clone(),
                    loudness,
                    waveform_dest: waveform.then(|| keys.waveform_piece(chunk.index)),
                };
                let meter = keys.loudness_meter("delivered", chunk.index);
                Box::pin(audio_chunk(ctx, self.input(chunk, meter, work), "audio"))
            },
            |_| {},
        )
        .await?;
        let made = in_order(made);
        let mut segments: Vec<(String, Vec<SegmentInfo>)> = renditions
            .iter()
            .map(|r| (r.name.clone(), Vec::new()))
            .collect();
        for chunk in &made {
            for ((_, all), (_, these)) in segments.iter_mut().zip(&chunk.renditions) {
                all.extend(these.iter().cloned());
            }
        }
        Ok(RenditionRound {
            segments,
            meters: made.iter().map(|c| c.meter.clone()).collect(),
            waveforms: made.iter().filter_map(|c| c.waveform.clone()).collect(),
        })
    }
}

/// Chunk outputs in timeline order.
fn in_order(mut outputs: Vec<AudioChunkOutput>) -> Vec<AudioChunkOutput> {
    outputs.sort_by_key(|c| c.index);
    outputs
}

/// One audio chunk, `what` naming it in errors.
async fn audio_chunk(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    input: AudioChunkInput,
    what: &str,
) -> Result<AudioChunkOutput, String> {
    let chunk = input.chunk;
    ctx.execute_activity(act::AudioChunk, input, chunk_options(&chunk))
        .await
        .map_err(|e| step_failed(&format!("{what} chunk {}", chunk.index), &e))
}

/// Runs `start` for each chunk, at most `width` at a time, keeping the progress query's
/// chunk counts (see [`run_windowed`]).
async fn in_window<'a, T, F, Fut>(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    chunks: &'a [ChunkPlan],
    width: usize,
    start: F,
) -> Result<Vec<T>, String>
where
    F: Fn(&'a ChunkPlan) -> std::pin::Pin<Box<Fut>>,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let total = chunks.len() as u32;
    ctx.state_mut(|s| s.progress.chunks_total = total);
    run_windowed(chunks, width, start, |finished| {
        let finished = finished as u32;
        ctx.state_mut(|s| {
            s.progress.chunks_done = finished;
            s.progress.percent = ladder_percent(f64::from(finished), total);
        });
    })
    .await
}

/// Runs `start` for each chunk, at most `width` at a time: a new one starts as soon as any
/// running one finishes, and `finished` hears how many have. Results come in the order they
/// finish. (`select_all` polls with the SDK's own waker; `FuturesUnordered` would not.)
async fn run_windowed<'a, T, F, Fut>(
    chunks: &'a [ChunkPlan],
    width: usize,
    start: F,
    mut finished: impl FnMut(usize),
) -> Result<Vec<T>, String>
where
    F: Fn(&'a ChunkPlan) -> std::pin::Pin<Box<Fut>>,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let mut waiting = chunks.iter();
    let mut running: Vec<_> = waiting.by_ref().take(width.max(1)).map(&start).collect();
    let mut done = Vec::with_capacity(chunks.len());
    while !running.is_empty() {
        let (result, _, rest) = futures::future::select_all(running).await;
        running = rest;
        done.push(result?);
        finished(done.len());
        running.extend(waiting.next().map(&start));
    }
    Ok(done)
}

/// One ladder chunk, read from `source`, which starts `source_offset` seconds into the
/// programme (the whole mezzanine, or the chunk's own piece).
#[allow(clippy::too_many_arguments)]
async fn ladder_chunk(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    job: &Job,
    keys: &JobKeys<'_>,
    config: &PlanConfig,
    plan: &VideoPlan,
    source: &ObjectRef,
    source_offset: f64,
    chunk: ChunkPlan,
) -> Result<LadderChunkOutput, String> {
    let t = clock(ctx);
    ctx.execute_activity(
        act::LadderChunk,
        LadderChunkInput {
            source: source.clone(),
            bucket: job.output_bucket.clone(),
            prefix: keys.hls_prefix().to_string(),
            renditions: plan.renditions.clone(),
            frame_rate: plan.frame_rate,
            gop_seconds: config.gop_seconds,
            segment_seconds: config.segment_seconds,
            chunk,
            source_offset_seconds: source_offset,
        },
        chunk_options(&chunk),
    )
    .await
    .inspect(|made| {
        record(
            ctx,
            StepTiming::new("ladder", t, clock(ctx))
                .media(chunk.duration_seconds)
                .encoder(&made.encoder)
                .bytes(made.bytes()),
        )
    })
    .map_err(|e| step_failed(&format!("ladder chunk {}", chunk.index), &e))
}

/// The audio rendition of a video job, from `source` (the mezzanine or its audio track).
async fn audio_rendition(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    job: &Job,
    keys: &JobKeys<'_>,
    config: &PlanConfig,
    probe: &ProbeResult,
    source: &ObjectRef,
    loudness: Option<LoudnessMeasurement>,
) -> Result<AudioRenditionOutput, String> {
    let t = clock(ctx);
    ctx.execute_activity(
        act::AudioRendition,
        AudioRenditionInput {
            source: source.clone(),
            bucket: job.output_bucket.clone(),
            prefix: keys.hls_prefix().to_string(),
            name: AUDIO_RENDITION.to_string(),
            bitrate_kbps: config.video_audio_bitrate_kbps,
            segment_seconds: config.segment_seconds,
            loudness,
        },
        long_running(probe),
    )
    .await
    .inspect(|made| {
        record(
            ctx,
            StepTiming::new("audio_rendition", t, clock(ctx))
                .media(probe.duration_seconds)
                .encoder("aac")
                .bytes(made.bytes()),
        )
    })
    .map_err(|e| step_failed("audio encode", &e))
}

/// Pass 1 of the two-pass loudness normalization: it decodes only the source's audio,
/// downmixed to stereo exactly as the mezzanine is, so it runs beside the mezzanine.
async fn loudness_pass(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    keys: &JobKeys<'_>,
    probe: &ProbeResult,
) -> Result<Option<LoudnessMeasurement>, String> {
    if probe.audio.is_none() {
        return Ok(None);
    }
    let t = clock(ctx);
    ctx.execute_activity(
        act::Loudness,
        LoudnessInput {
            source: keys.input(),
        },
        long_running(probe),
    )
    .await
    .inspect(|_| {
        record(
            ctx,
            StepTiming::new("loudness", t, clock(ctx)).media(probe.duration_seconds),
        )
    })
    .map_err(|e| step_failed("loudness analysis", &e))
}

/// The ladder spans these percentages of a video job's progress.
const LADDER_START: u8 = 20;
const LADDER_END: u8 = 88;

/// A video job's overall percent while its ladder runs, with `done` of `total` chunks
/// finished. `done` may count fractions: `transcoder status` adds the running chunks'
/// heartbeat progress, which the workflow itself never sees.
pub fn ladder_percent(done: f64, total: u32) -> u8 {
    let span = f64::from(LADDER_END - LADDER_START);
    let share = if total == 0 {
        span
    } else {
        // Multiplied first: for whole chunks this is exact, as integer division was.
        (done * span / f64::from(total)).clamp(0.0, span).floor()
    };
    LADDER_START + share as u8
}

/// Name of the audio rendition's folder in a video job's HLS tree.
pub const AUDIO_RENDITION: &str = "audio";

/// Options for one chunk: its timeout scales with its length; a dead worker's chunk is
/// retried elsewhere after the 30 s heartbeat timeout.
fn chunk_options(chunk: &ChunkPlan) -> ActivityOptions {
    let secs = (chunk.duration_seconds.max(1.0) * 30.0) as u64 + 300;
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(secs))
        .heartbeat_timeout(Duration::from_secs(30))
        .retry_policy(transient_retries(4))
        .build()
}

/// Size of the poster JPEG.
pub const THUMBNAIL_SIZE: (u32, u32) = (1280, 720);

/// Starts the clean-up of the original as its own workflow, abandoned by this one: it waits
/// out the retention period on its own, whatever happens to this workflow.
async fn start_original_cleanup(ctx: &mut WorkflowContext<TranscodeWorkflow>, job: &Job) {
    let keys = JobKeys::new(job);
    let input = CleanupInput {
        original: keys.input(),
        mezzanine: keys.mezzanine(),
        retention_seconds: job.original_retention_seconds,
    };
    let options = ChildWorkflowOptions::builder()
        .workflow_id(cleanup_workflow_id(&job.media_id))
        .parent_close_policy(ParentClosePolicy::Abandon)
        .build();
    // Failing to schedule clean-up must not fail a finished job: the original is only kept.
    let _ = ctx
        .start_child_workflow(OriginalCleanupWorkflow::run, input, options)
        .await;
}

/// Sends a webhook; its failure is recorded, never fatal, and never undoes the job's outputs.
async fn deliver_webhook(
    ctx: &mut WorkflowContext<TranscodeWorkflow>,
    url: &str,
    secret: &str,
    body: WebhookBody,
    retry_hours: Option<u32>,
) -> Option<WebhookReceipt> {
    let retry_for = Duration::from_secs(u64::from(retry_hours.unwrap_or(24).max(1)) * 3600);
    let t = clock(ctx);
    let receipt = ctx
        .execute_activity(
            act::Webhook,
            WebhookRequest {
                url: url.to_string(),
                secret: secret.to_string(),
                body,
            },
            // Receivers go down for deploys: keep trying with backoff for hours (24 by default).
            ActivityOptions::with_close_timeouts(ActivityCloseTimeouts::ScheduleAndStartToClose {
                schedule_to_close: retry_for,
                start_to_close: Duration::from_secs(60),
            })
            .retry_policy(
                RetryPolicy::builder()
                    .initial_interval(Duration::from_secs(2))
                    .backoff_coefficient(2.0)
                    .maximum_interval(Duration::from_secs(30 * 60))
                    .build(),
            )
            .build(),
        )
        .await
        .ok();
    record(ctx, StepTiming::new("webhook", t, clock(ctx)));
    let delivery = WebhookDelivery::from_receipt(receipt.as_ref(), retry_for.as_secs() / 3600);
    ctx.state_mut(|s| s.receipt.webhook = Some(delivery));
    receipt
}

/// Bounded retries with backoff for failures that may heal (a killed process, I/O, network).
/// Permanent failures are raised as non-retryable by the activity and skip these.
fn transient_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_secs(1))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(60))
        .maximum_attempts(attempts)
        .build()
}

/// Options for short steps (probe, thumbnail): they heartbeat too, so a killed worker's
/// step is retried elsewhere after 30 s instead of after its whole timeout.
fn short_step(timeout: Duration) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(timeout)
        .heartbeat_timeout(Duration::from_secs(30))
        .retry_policy(transient_retries(5))
        .build()
}

/// Options for encodes: a generous timeout that scales with the input, and a heartbeat
/// timeout (30 s; activities heartbeat every 5 s) so a dead worker's task is retried
/// elsewhere within about a minute.
fn long_running(probe: &ProbeResult) -> ActivityOptions {
    // Budget 20x real time on CPU plus a fixed allowance, at least an hour.
    let secs = (probe.duration_seconds.max(0.0) * 20.0) as u64 + 600;
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(secs.max(3600)))
        .heartbeat_timeout(Duration::from_secs(30))
        .retry_policy(transient_retries(3))
        .build()
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// A readable reason from an activity failure: the innermost cause's message, which is the
/// activity's own error text (not the SDK's "activity task failed" wrapper).
fn step_failed(step: &str, err: &ActivityExecutionError) -> String {
    let mut message = String::new();
    let mut next = err.failure();
    while let Some(failure) = next {
        if !failure.message.is_empty() {
            message = failure.message.clone();
        }
        next = failure.cause.as_deref();
    }
    if message.is_empty() {
        message = err.to_string();
    }
    format!("{step} failed: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_percent_spans_the_ladder_share() {
        assert_eq!(ladder_percent(0.0, 4), LADDER_START);
        assert_eq!(ladder_percent(4.0, 4), LADDER_END);
        assert_eq!(ladder_percent(2.0, 4), 54);
        // Whole chunks land exactly where integer division put them.
        for total in 1..=40u32 {
            for done in 0..=total {
                let integer =
                    u32::from(LADDER_START) + done * u32::from(LADDER_END - LADDER_START) / total;
                assert_eq!(u32::from(ladder_percent(f64::from(done), total)), integer);
            }
        }
        // A running chunk's fraction moves it; nothing goes past the ladder's share.
        assert!(ladder_percent(2.5, 4) > ladder_percent(2.0, 4));
        assert_eq!(ladder_percent(9.0, 4), LADDER_END);
        assert_eq!(ladder_percent(1.0, 0), LADDER_END);
    }
}
