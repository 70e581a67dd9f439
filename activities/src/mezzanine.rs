//! The mezzanine: the source normalized once (upright, constant frame rate, 8-bit 4:2:0,
//! stereo AAC, IDR every GOP, faststart), so every later step reads a predictable file.

use crate::encoder::EncoderSettings;
use crate::error::Result;
use crate::ffmpeg::args::h264_gop;
use crate::ffmpeg::run::ScaledProgress;
use crate::ffmpeg::{ffmpeg, FfmpegArgs};
use std::path::Path;
use transcoder_workflows::media::MezzanineInput;

/// AAC bitrate of the mezzanine's audio: transparent enough to re-encode from later.
pub const MEZZANINE_AUDIO_KBPS: u32 = 256;

pub fn mezzanine_args(
    input: &MezzanineInput,
    source: &Path,
    dest: &Path,
    enc: &EncoderSettings,
) -> FfmpegArgs {
    let mut a = FfmpegArgs::new();
    a.input(source);
    match &input.video {
        Some(video) => {
            let gop_frames = (video.frame_rate.as_f64() * f64::from(video.gop_seconds))
                .round()
                .max(1.0) as u32;
            // ffmpeg rotates upright on decode (autorotate); fps makes the rate constant.
            a.opt("-map", "0:v:0")
                .opt(
                    "-vf",
                    format!("fps={},format=yuv420p", video.frame_rate.to_ffmpeg()),
                )
                .opt("-fps_mode", "cfr")
                .opt("-c:v", "libx264")
                .opt("-preset", enc.x264_preset.as_str())
                .opt("-crf", "18")
                .opt("-profile:v", "high")
                .opt("-pix_fmt", "yuv420p");
            h264_gop(&mut a, "v", gop_frames, video.gop_seconds);
        }
        None => {
            a.flag("-vn");
        }
    }
    if input.has_audio {
        a.opt("-map", "0:a:0")
            .opt("-c:a", "aac")
            .opt("-b:a", format!("{MEZZANINE_AUDIO_KBPS}k"))
            .opt("-ac", "2")
            .opt("-ar", "48000");
    }
    a.flag("-sn")
        .flag("-dn")
        .opt("-map_metadata", "-1")
        .opt("-movflags", "+faststart")
        .opt("-f", "mp4")
        .output(dest);
    a
}

pub async fn encode_mezzanine(
    input: &MezzanineInput,
    source: &Path,
    dest: &Path,
    duration: f64,
    enc: &EncoderSettings,
    progress: &ScaledProgress,
) -> Result<()> {
    let args = mezzanine_args(input, source, dest, enc);
    ffmpeg(args.as_slice(), duration, progress).await
}
