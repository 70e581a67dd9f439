//! `DOWNSAMPLING`: the video at a smaller height, aspect kept, as a faststart MP4.
//!
//! The height is the displayed picture's (after rotation, in square pixels). The width
//! follows the displayed aspect, rounded to even. A source no taller than the height asked
//! is never upscaled: it is re-encoded at its own size, and the answer says so
//! (`upscale_refused`). Interlaced sources are deinterlaced; every output is 8-bit 4:2:0
//! H.264 from the worker's encoder (NVENC when the worker has it); AAC sound is copied,
//! other sound becomes AAC ([`SoundRule::DOWNSAMPLED`]). A long video read from and written
//! to objects of the worker's stores is planned in chunks ([`plan`]) with the same encoder
//! and sound rule, on a constant-rate grid.

use super::chunking::{chunked, Parts};
use super::io::refused;
use super::sound::sound_args;
use super::TaskIo;
use crate::encoder::EncoderSettings;
use crate::error::{MediaError, Result};
use crate::ffmpeg::run::{count_video_packets, ScaledProgress};
use crate::ffmpeg::{ffmpeg, FfmpegArgs};
use crate::mezzanine::task_picture_args;
use serde_json::{json, Value};
use std::path::Path;
use transcoder_workflows::media::PictureEncoder;
use transcoder_workflows::task::{task_picture, DownsamplePlan, Downsampling, SoundRule};

/// The output size for a displayed `width`x`height` asked to be `asked` lines high:
/// (width, height, whether the request was above the source and so not followed).
pub fn target_size(width: u32, height: u32, asked: u32) -> (u32, u32, bool) {
    let even = |side: f64| ((side / 2.0).round() as u32 * 2).max(2);
    if asked >= height {
        return (width / 2 * 2, height / 2 * 2, asked > height);
    }
    let w = even(f64::from(width) * f64::from(asked) / f64::from(height));
    (w, asked, false)
}

/// Checks a `DOWNSAMPLING` before any encode and, when its input and output are objects of
/// this worker's stores and the video is long, what its chunks are made from.
pub async fn plan(
    io: &TaskIo<'_>,
    task: &Downsampling,
    work: &Path,
) -> Result<Option<DownsamplePlan>> {
    const OUTPUT: &str = "parameters.output_video_uri";
    const INPUT: &str = "parameters.original_video_uri";
    io.check_output(OUTPUT, &task.output)?;
    let Some(root) = io.parts_root(&task.output) else {
        return Ok(None);
    };
    let path = io.input(INPUT, &task.input_uri, work, "source").await?;
    let probe = crate::probe::probe_file(&path).await?;
    let Some(video) = probe.video.as_ref() else {
        return Err(refused(INPUT, "the file has no video stream"));
    };
    if !chunked(probe.duration_seconds) {
        return Ok(None);
    }
    let (source_width, source_height) = video.display_size();
    let (width, height, upscale_refused) = target_size(source_width, source_height, task.height);
    let parts = Parts::new(
        root,
        &[
            "downsampling v2",
            &task.input_uri,
            &probe.size_bytes.to_string(),
            &format!("{:.6}", probe.duration_seconds),
            &format!("{width}x{height}"),
        ],
        &[],
    );
    let (source, staged) = parts.source(io, &task.input_uri, &path).await?;
    let (dest, deliver) = parts.landing(io, OUTPUT, &task.output);
    Ok(Some(DownsamplePlan {
        source,
        dest,
        probe,
        width,
        height,
        source_width,
        source_height,
        upscale_refused,
        parts: Some(parts.prefix),
        deliver,
        staged: staged.into_iter().collect(),
    }))
}

pub async fn downsample(
    io: &TaskIo<'_>,
    task: &Downsampling,
    encoder: &EncoderSettings,
    work: &Path,
    progress: &ScaledProgress,
) -> Result<Value> {
    const OUTPUT: &str = "parameters.output_video_uri";
    io.check_output(OUTPUT, &task.output)?;
    let source = io
        .input(
            "parameters.original_video_uri",
            &task.input_uri,
            work,
            "source",
        )
        .await?;
    let probe = crate::probe::probe_file(&source).await?;
    let Some(video) = probe.video.clone() else {
        return Err(refused(
            "parameters.original_video_uri",
            "the file has no video stream",
        ));
    };
    let (dw, dh) = video.display_size();
    let (width, height, upscale_refused) = target_size(dw, dh, task.height);
    let picture = task_picture(&video, (width, height), PictureEncoder::Delivery, None);
    let out = work.join("downsampled.mp4");
    let mut a = FfmpegArgs::new();
    a.input(&source).opt("-map", "0:v:0");
    task_picture_args(&mut a, &picture, None);
    encoder.video_codec_args(&mut a);
    let codec = probe.audio.as_ref().map(|a| a.codec.as_str());
    sound_args(&mut a, "0:a:0?", codec, SoundRule::DOWNSAMPLED);
    a.opt("-movflags", "+faststart")
        .flag("-sn")
        .flag("-dn")
        .output(&out);
    ffmpeg(a.as_slice(), probe.duration_seconds, progress).await?;

    let made = crate::probe::probe_file(&out).await?;
    let made_video = made
        .video
        .as_ref()
        .ok_or_else(|| MediaError::Verification("the output has no video stream".into()))?;
    if made_video.display_size() != (width, height) {
        return Err(MediaError::Verification(format!(
            "the output is {}x{}, {width}x{height} was planned",
            made_video.width, made_video.height
        )));
    }
    let frames = count_video_packets(&[], &out).await?.unwrap_or(0);
    let delivered = io.output(OUTPUT, &task.output, &out).await?;
    let mut answer = json!({
        "task": "DOWNSAMPLING",
        "output_uri": delivered.location,
        "size_bytes": delivered.size_bytes,
        "verified": delivered.verified,
        "width": width,
        "height": height,
        "source_width": dw,
        "source_height": dh,
        "frames": frames,
        "duration_sec": made.duration_seconds,
        "encoder": encoder.video_encoder_name(),
        "upscale_refused": upscale_refused,
    });
    if upscale_refused {
        answer["note"] = Value::String(format!(
            "the source is {dh} lines high, below the {} asked: it was re-encoded at its own size, never upscaled",
            task.height
        ));
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aspect_is_kept_even_and_never_upscaled() {
        assert_eq!(target_size(1920, 1080, 360), (640, 360, false));
        assert_eq!(target_size(1920, 1080, 240), (426, 240, false));
        // Portrait: the height asked is the picture's height.
        assert_eq!(target_size(1080, 1920, 480), (270, 480, false));
        // 4:3 anamorphic DVD shown as 854x480: 360 lines keep its shape.
        assert_eq!(target_size(854, 480, 360), (640, 360, false));
        assert_eq!(target_size(640, 360, 480), (640, 360, true));
        assert_eq!(target_size(640, 360, 360), (640, 360, false));
    }
}
