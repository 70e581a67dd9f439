//! `TranscodeWorkflow`: validate, probe, plan, then run the media activities and report.
//!
//! Replay-safe: all decisions come from the job and from activity results recorded in
//! history; anything that touches the outside world is an activity.
//!
//! About 540 lines: the job's whole order of steps, which is what a reader of this file
//! wants in one place; the picture (`video.rs`), the sound (`sound.rs`) and the step
//! plumbing (`steps.rs`) are beside it.

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
    ObjectRef, PictureEncoder, PreviewPlan, ProbeInput, ProbeResult, SegmentInfo, StoredObject,
    StoryboardPlan, SubtitlesInput, SubtitlesOutput, ThumbnailInput, VerifyInput, WaveformInput,
    WaveformOutput,
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

mod sound;
mod steps;
mod video;

pub use sound::AUDIO_RENDITION;
use sound::*;
pub use steps::ladder_percent;
use steps::*;
use video::*;

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
    if let Some(ladder) = &job.renditions {
        config.ladder = ladder.clone();
    }
    if let Some(request) = job.storyboard {
        if let Some(i) = request.interval_seconds {
            config.storyboard_interval_seconds = i;
        }
        if let Some(w) = request.tile_width {
            config.storyboard_tile_width = w;
        }
    }

    step(ctx, "fetch_input", 1);
    if let Some(uri) = &job.input_uri {
        timed(
            ctx,
            "fetch_input",
            "fetching the input",
            ctx.execute_activity(
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
            ),
            |t, fetched| t.bytes(fetched.size_bytes),
        )
        .await?;
    }

    step(ctx, "probe", 2);
    let probe: ProbeResult = timed(
        ctx,
        "probe",
        "probe",
        ctx.execute_activity(
            act::Probe,
            ProbeInput {
                source: keys.input(),
            },
            short_step(Duration::from_secs(120)),
        ),
        |t, _| t,
    )
    .await?;
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
        encoder: PictureEncoder::Mezzanine,
        subtitles: None,
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
            let (mezzanine, loudness) =
                whole_mezzanine(ctx, &keys, &probe, mezzanine_video).await?;
            (mezzanine, loudness, None)
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
            video_outputs(
                ctx,
                job,
                &keys,
                &config,
                &probe,
                &chunks,
                plan,
                &mezzanine,
                loudness,
                ladder_done,
                &mut output,
                &mut verify,
            )
            .await?
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
    timed(
        ctx,
        "verify",
        "verification",
        ctx.execute_activity(act::Verify, verify, long_running(&probe)),
        |t, _| t,
    )
    .await?;

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

/// The mezzanine in one run (a video of one chunk, an audio job from before the sound was
/// chunked), with pass 1 of the loudness normalization beside it.
async fn whole_mezzanine(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    keys: &JobKeys<'_>,
    probe: &ProbeResult,
    video: Option<MezzanineVideo>,
) -> Result<(StoredObject, Option<LoudnessMeasurement>), String> {
    step(ctx, "mezzanine", 5);
    let t = clock(ctx);
    let mezzanine = ctx.execute_activity(
        act::Mezzanine,
        MezzanineInput {
            source: keys.input(),
            dest: keys.mezzanine(),
            video,
            has_audio: probe.audio.is_some(),
        },
        long_running(probe),
    );
    let mezzanine = async {
        let made = mezzanine.await;
        if let Ok(made) = &made {
            // The activity names an encoder only when it encoded a picture.
            let timing = StepTiming::new("mezzanine", t, clock(ctx))
                .media(probe.duration_seconds)
                .encoder(made.encoder.as_deref())
                .bytes(made.size_bytes);
            record(ctx, timing);
        }
        made
    };
    let loudness = loudness_pass(ctx, keys, probe);
    let (mezzanine, loudness) = futures::join!(mezzanine, loudness);
    let mezzanine = mezzanine.map_err(|e| step_failed("mezzanine", &e))?;
    Ok((mezzanine, loudness?))
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

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
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
