//! A long `DOWNSAMPLING` in chunks, on the transcode's mezzanine machinery: one piece per
//! chunk (exact frame ranges on the output's constant-rate grid, each piece an activity
//! that a retry finds already stored), the sound in one run beside them, then one
//! stream-copy join checked for its frame count. A worker lost mid-way costs the pieces in
//! flight, not the whole encode.

use super::{fan_out, options, MediaTaskWorkflow};
use crate::activities::defs as transcode;
use crate::ladder::{plan_chunks, plan_mezzanine, MezzaninePlan};
use crate::media::{
    ChunkPlan, JoinMezzanineInput, MezzanineAudioInput, MezzaninePieceInput, MezzanineVideo,
    ObjectRef, StoredObject,
};
use crate::task::DownsamplePlan;
use serde_json::{json, Value};
use temporalio_sdk::{ActivityExecutionError, WorkflowContext};

/// Chunks of 60 s, as the ladder's (10 segments of 6 s), on 2 s GOPs.
const SEGMENT_SECONDS: u32 = 6;
const SEGMENTS_PER_CHUNK: u32 = 10;
const GOP_SECONDS: u32 = 2;

/// The chunks of `plan`, when its source can be cut (else it runs in one activity).
pub(super) fn pieces(plan: &DownsamplePlan) -> Option<Vec<ChunkPlan>> {
    plan.probe.video.as_ref()?;
    let chunks = plan_chunks(
        plan.probe.duration_seconds,
        SEGMENT_SECONDS,
        SEGMENTS_PER_CHUNK,
    );
    matches!(plan_mezzanine(&plan.probe, &chunks), MezzaninePlan::Pieces).then_some(chunks)
}

/// Where the parts of `dest` wait for the join: beside it, removed after.
fn part(dest: &ObjectRef, name: &str) -> ObjectRef {
    ObjectRef::new(&dest.bucket, format!("{}.parts/{name}", dest.key))
}

pub(super) async fn downsample(
    ctx: &WorkflowContext<MediaTaskWorkflow>,
    plan: &DownsamplePlan,
    chunks: &[ChunkPlan],
) -> Result<Value, ActivityExecutionError> {
    let Some(source) = plan.probe.video.as_ref() else {
        unreachable!("pieces() plans only sources with a picture")
    };
    let duration = plan.probe.duration_seconds;
    let video = MezzanineVideo {
        frame_rate: source.output_frame_rate(),
        gop_seconds: GOP_SECONDS,
        tone_map_from: source.hdr_transfer(),
        deinterlace: source.is_interlaced(),
        size: Some((plan.width, plan.height)),
    };
    let pieces = fan_out(ctx, chunks, |chunk| {
        let input = MezzaninePieceInput {
            source: plan.source.clone(),
            dest: part(&plan.dest, &format!("piece-{:05}.mp4", chunk.index)),
            video: video.clone(),
            chunk: *chunk,
            duration_seconds: duration,
        };
        let timeout = (chunk.duration_seconds.max(1.0) * 30.0) as u64 + 300;
        ctx.execute_activity(transcode::MezzaninePiece, input, options(timeout))
    });
    let audio = async {
        match plan.probe.audio {
            None => Ok(None),
            Some(_) => {
                let input = MezzanineAudioInput {
                    source: plan.source.clone(),
                    dest: part(&plan.dest, "audio.m4a"),
                    duration_seconds: duration,
                };
                let timeout = (duration * 2.0) as u64 + 1800;
                ctx.execute_activity(transcode::MezzanineAudio, input, options(timeout))
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
    let frames = chunks
        .last()
        .map(|c| c.frame_range(video.frame_rate).1)
        .unwrap_or_default();
    let mut parts: Vec<ObjectRef> = pieces.iter().map(|p| p.object.clone()).collect();
    let joined = ctx
        .execute_activity(
            transcode::JoinMezzanine,
            JoinMezzanineInput {
                pieces: parts.clone(),
                audio: audio.as_ref().map(|a| a.object.clone()),
                audio_pieces: Vec::new(),
                dest: plan.dest.clone(),
                video,
                frames,
                duration_seconds: duration,
            },
            options((duration * 2.0) as u64 + 1800),
        )
        .await?;
    parts.extend(audio.map(|a| a.object));
    // Failing to remove the parts costs storage, not the task.
    let _ = ctx
        .execute_activity(transcode::RemoveObjects, parts, options(600))
        .await;
    let encoder = pieces.iter().find_map(|p| p.encoder.clone());
    let mut answer = json!({
        "task": "DOWNSAMPLING",
        "output_uri": format!("s3://{}/{}", plan.dest.bucket, plan.dest.key),
        "size_bytes": joined.size_bytes,
        "verified": "stored",
        "width": plan.width,
        "height": plan.height,
        "source_width": plan.source_width,
        "source_height": plan.source_height,
        "frames": frames,
        "duration_sec": duration,
        "encoder": encoder,
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
