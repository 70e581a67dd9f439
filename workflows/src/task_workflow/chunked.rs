//! Long video tasks in chunks, on the transcode's mezzanine machinery: a long
//! `DOWNSAMPLING`, and a long `ENCODING` that burns subtitles in. One piece per chunk (exact
//! frame ranges on the output's constant-rate grid, each piece an activity that a retry
//! finds already stored), the sound in one run beside them, then one stream-copy join
//! checked for its frame count. A worker lost mid-way costs the pieces in flight, not the
//! whole encode.

use super::{fan_out, options, MediaTaskWorkflow};
use crate::activities::defs as transcode;
use crate::activities::task_defs as act;
use crate::ladder::{plan_chunks, plan_mezzanine, MezzaninePlan};
use crate::media::{
    ChunkPlan, JoinMezzanineInput, MezzanineAudioInput, MezzaninePieceInput, MezzanineVideo,
    ObjectRef, PictureEncoder, ProbeResult, StoredObject,
};
use crate::task::{
    sound_fit, task_picture, DownsamplePlan, Encoding, EncodingPlan, SoundRule, SoundSource,
    TaskDelivery, TaskSound,
};
use serde_json::{json, Value};
use temporalio_sdk::{ActivityExecutionError, WorkflowContext};

/// Chunks of 60 s, as the ladder's (10 segments of 6 s).
const SEGMENT_SECONDS: u32 = 6;
const SEGMENTS_PER_CHUNK: u32 = 10;

/// The chunks of a source with `probe`, when it can be cut (else it runs in one activity).
pub(super) fn chunks_of(probe: &ProbeResult) -> Option<Vec<ChunkPlan>> {
    probe.video.as_ref()?;
    let chunks = plan_chunks(probe.duration_seconds, SEGMENT_SECONDS, SEGMENTS_PER_CHUNK);
    matches!(plan_mezzanine(probe, &chunks), MezzaninePlan::Pieces).then_some(chunks)
}

/// A picture made in pieces and joined with its sound into `dest`.
struct Job<'a> {
    source: &'a ObjectRef,
    dest: &'a ObjectRef,
    /// Key prefix of the parts, removed after the join.
    parts: String,
    probe: &'a ProbeResult,
    video: MezzanineVideo,
    chunks: &'a [ChunkPlan],
    /// Where the joined output goes when `dest` is only its place in the parts folder.
    deliver: Option<TaskDelivery>,
    /// Copies the plan made, removed with the parts.
    staged: Vec<ObjectRef>,
}

/// How the job's sound is made.
enum Sound {
    None,
    /// The task's rule ([`TaskSound`]).
    Task(TaskSound),
    /// The mezzanine's stereo AAC (long `DOWNSAMPLING`s planned before the task rule).
    Mezzanine,
}

/// What the join made and where it went.
struct Made {
    /// `output_uri`, `size_bytes`, `verified`.
    delivered: Value,
    frames: u64,
    encoder: Option<String>,
}

impl Job<'_> {
    fn part(&self, name: &str) -> ObjectRef {
        ObjectRef::new(&self.dest.bucket, format!("{}{name}", self.parts))
    }

    async fn run(
        &self,
        ctx: &WorkflowContext<MediaTaskWorkflow>,
        sound: Sound,
        language: Option<String>,
    ) -> Result<Made, ActivityExecutionError> {
        let duration = self.probe.duration_seconds;
        let pieces = fan_out(ctx, self.chunks, |chunk| {
            let input = MezzaninePieceInput {
                source: self.source.clone(),
                dest: self.part(&format!("piece-{:05}.mp4", chunk.index)),
                video: self.video.clone(),
                chunk: *chunk,
                duration_seconds: duration,
            };
            let timeout = (chunk.duration_seconds.max(1.0) * 30.0) as u64 + 300;
            ctx.execute_activity(transcode::MezzaninePiece, input, options(timeout))
        });
        let sound_timeout = options((duration * 2.0) as u64 + 1800);
        let audio = async {
            match sound {
                Sound::None => Ok(None),
                Sound::Task(track) => ctx
                    .execute_activity(act::Sound, track, sound_timeout)
                    .await
                    .map(Some),
                Sound::Mezzanine => {
                    let input = MezzanineAudioInput {
                        source: self.source.clone(),
                        dest: self.part("audio.m4a"),
                        duration_seconds: duration,
                    };
                    ctx.execute_activity(transcode::MezzanineAudio, input, sound_timeout)
                        .await
                        .map(Some)
                }
            }
        };
        let (pieces, audio): (
            Result<Vec<StoredObject>, _>,
            Result<Option<StoredObject>, _>,
        ) = futures::join!(pieces, audio);
        let (pieces, audio) = (pieces?, audio?);
        let frames = self
            .chunks
            .last()
            .map(|c| c.frame_range(self.video.frame_rate).1)
            .unwrap_or_default();
        let mut parts: Vec<ObjectRef> = pieces.iter().map(|p| p.object.clone()).collect();
        let joined = ctx
            .execute_activity(
                transcode::JoinMezzanine,
                JoinMezzanineInput {
                    pieces: parts.clone(),
                    audio: audio.as_ref().map(|a| a.object.clone()),
                    audio_pieces: Vec::new(),
                    dest: self.dest.clone(),
                    video: self.video.clone(),
                    frames,
                    duration_seconds: duration,
                    audio_language: language,
                },
                options((duration * 2.0) as u64 + 1800),
            )
            .await?;
        parts.extend(audio.map(|a| a.object));
        parts.extend(self.video.subtitles.clone());
        parts.extend(self.staged.iter().cloned());
        let delivered = match &self.deliver {
            None => json!({
                "output_uri": stored_uri(self.dest),
                "size_bytes": joined.size_bytes,
                "verified": "stored",
            }),
            Some(delivery) => {
                let timeout = options((duration * 0.5) as u64 + 1800);
                let delivered = ctx
                    .execute_activity(act::Deliver, delivery.clone(), timeout)
                    .await?;
                parts.push(delivery.object.clone());
                delivered
            }
        };
        // Failing to remove the parts costs storage, not the task.
        let _ = ctx
            .execute_activity(transcode::RemoveObjects, parts, options(600))
            .await;
        Ok(Made {
            delivered,
            frames,
            encoder: pieces.iter().find_map(|p| p.encoder.clone()),
        })
    }
}

/// The picture of `probe` at `size` ([`task_picture`]).
fn picture(
    probe: &ProbeResult,
    size: (u32, u32),
    encoder: PictureEncoder,
    subtitles: Option<ObjectRef>,
) -> Option<MezzanineVideo> {
    let source = probe.video.as_ref()?;
    Some(task_picture(source, size, encoder, subtitles))
}

fn stored_uri(object: &ObjectRef) -> String {
    format!("s3://{}/{}", object.bucket, object.key)
}

pub(super) async fn downsample(
    ctx: &WorkflowContext<MediaTaskWorkflow>,
    plan: &DownsamplePlan,
    chunks: &[ChunkPlan],
) -> Result<Value, ActivityExecutionError> {
    // Plans recorded before the parts had their own folder were made with the mezzanine's
    // encoder and sound; they finish so.
    let (parts, encoder, sound) = match &plan.parts {
        Some(parts) => (
            parts.clone(),
            PictureEncoder::Delivery,
            match plan.probe.audio {
                Some(_) => Sound::Task(TaskSound {
                    field: "parameters.original_video_uri".into(),
                    source: SoundSource::Object(plan.source.clone()),
                    dest: ObjectRef::new(&plan.dest.bucket, format!("{parts}sound.m4a")),
                    length_seconds: plan.probe.duration_seconds,
                    rule: SoundRule::DOWNSAMPLED,
                }),
                None => Sound::None,
            },
        ),
        None => (
            format!("{}.parts/", plan.dest.key),
            PictureEncoder::Mezzanine,
            match plan.probe.audio {
                Some(_) => Sound::Mezzanine,
                None => Sound::None,
            },
        ),
    };
    let Some(video) = picture(&plan.probe, (plan.width, plan.height), encoder, None) else {
        unreachable!("chunks_of() plans only sources with a picture")
    };
    let job = Job {
        source: &plan.source,
        dest: &plan.dest,
        parts,
        probe: &plan.probe,
        video,
        chunks,
        deliver: plan.deliver.clone(),
        staged: plan.staged.clone(),
    };
    let made = job.run(ctx, sound, None).await?;
    let mut answer = json!({
        "task": "DOWNSAMPLING",
        "output_uri": made.delivered["output_uri"],
        "size_bytes": made.delivered["size_bytes"],
        "verified": made.delivered["verified"],
        "width": plan.width,
        "height": plan.height,
        "source_width": plan.source_width,
        "source_height": plan.source_height,
        "frames": made.frames,
        "duration_sec": plan.probe.duration_seconds,
        "encoder": made.encoder,
        "upscale_refused": plan.upscale_refused,
        "chunks": chunks.len(),
    });
    if plan.upscale_refused {
        answer["note"] = json!(
            "the source is no taller than the height asked: it was re-encoded at its own size, never upscaled"
        );
    }
    Ok(answer)
}

pub(super) async fn encoding(
    ctx: &WorkflowContext<MediaTaskWorkflow>,
    task: &Encoding,
    plan: &EncodingPlan,
    chunks: &[ChunkPlan],
) -> Result<Value, ActivityExecutionError> {
    let size = (plan.width, plan.height);
    let subtitles = Some(plan.subtitles.clone());
    let Some(video) = picture(&plan.probe, size, PictureEncoder::Delivery, subtitles) else {
        unreachable!("chunks_of() plans only sources with a picture")
    };
    let job = Job {
        source: &plan.source,
        dest: &plan.dest,
        parts: plan.parts.clone(),
        probe: &plan.probe,
        video,
        chunks,
        deliver: plan.deliver.clone(),
        staged: plan.staged.clone(),
    };
    let sound = match &plan.sound {
        Some(track) => Sound::Task(track.clone()),
        None => Sound::None,
    };
    let made = job.run(ctx, sound, plan.language.clone()).await?;
    let duration = plan.probe.duration_seconds;
    let mut answer = json!({
        "task": "ENCODING",
        "id": task.id,
        "output_uri": made.delivered["output_uri"],
        "size_bytes": made.delivered["size_bytes"],
        "verified": made.delivered["verified"],
        "duration_sec": duration,
        "width": plan.width,
        "height": plan.height,
        "language": task.language,
        "subtitles_burned": true,
        "video": made.encoder,
        "frames": made.frames,
        "chunks": chunks.len(),
    });
    if let Some(given) = plan.given_sound_seconds {
        let (padded, cut) = sound_fit(duration, given);
        answer["audio_padded_sec"] = json!(padded);
        answer["audio_cut_sec"] = json!(cut);
    }
    Ok(answer)
}
