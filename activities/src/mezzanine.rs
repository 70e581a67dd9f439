//! The mezzanine: the source normalized once (upright, progressive, constant frame rate,
//! 8-bit 4:2:0, stereo AAC, picture and sound spanning the same timeline, IDR every GOP,
//! faststart), so every later step reads a predictable file.

use crate::encoder::EncoderSettings;
use crate::error::{MediaError, Result};
use crate::ffmpeg::args::h264_gop;
use crate::ffmpeg::run::ScaledProgress;
use crate::ffmpeg::{ffmpeg, FfmpegArgs};
use std::path::Path;
use transcoder_workflows::media::{HdrTransfer, MezzanineInput, ProbeResult};

/// The share of the source's audio and video frames that may fail to decode. Below it, a
/// damaged stretch is concealed (the decoder patches a broken picture from its neighbours,
/// the constant-rate timeline holds the last good frame over a lost one, lost audio becomes
/// silence); above it the input is refused as damaged, permanently.
pub const MAX_UNDECODABLE_FRACTION: f64 = 0.05;

/// AAC bitrate of the mezzanine's audio: transparent enough to re-encode from later.
pub const MEZZANINE_AUDIO_KBPS: u32 = 256;

/// `duration` is the source's timeline (first stream start to last stream end). A video
/// mezzanine covers exactly that with both streams: a picture that starts late or ends early
/// holds its first or last frame, audio that starts late or ends early is filled with
/// silence. Later steps cut chunks and segments on that one timeline, and players get audio
/// and video of the same length.
pub fn mezzanine_args(
    input: &MezzanineInput,
    source: &Path,
    dest: &Path,
    duration: f64,
    enc: &EncoderSettings,
) -> FfmpegArgs {
    let mut a = FfmpegArgs::new();
    a.opt("-max_error_rate", MAX_UNDECODABLE_FRACTION.to_string());
    a.input(source);
    match &input.video {
        Some(video) => {
            let gop_frames = (video.frame_rate.as_f64() * f64::from(video.gop_seconds))
                .round()
                .max(1.0) as u32;
            // ffmpeg rotates upright on decode (autorotate); an interlaced source is
            // deinterlaced before anything scales it; fps makes the rate constant;
            // HDR is tone mapped to SDR BT.709 and everything ends 8-bit 4:2:0.
            // Square pixels and even dimensions (4:2:0 H.264 cannot carry odd sizes).
            let mut vf = String::new();
            if video.deinterlace {
                vf.push_str(DEINTERLACE_FILTER);
                vf.push(',');
            }
            // `start_time=0` repeats the first frame back to the timeline's start;
            // `tpad` holds the last one past the picture's end, and `-t` below cuts both
            // streams at the timeline's end.
            let scale = match video.size {
                Some((w, h)) => format!("scale={w}:{h}"),
                None => "scale=trunc(iw*sar/2)*2:trunc(ih/2)*2".to_owned(),
            };
            vf.push_str(&format!(
                "{scale},setsar=1,fps={}:start_time=0,\
                 tpad=stop_mode=clone:stop_duration={duration:.3}",
                video.frame_rate.to_ffmpeg()
            ));
            if let Some(transfer) = video.tone_map_from {
                vf.push(',');
                vf.push_str(&tone_map_filter(transfer));
            }
            vf.push_str(",format=yuv420p");
            a.opt("-map", "0:v:0")
                .opt("-vf", vf)
                .opt("-fps_mode", "cfr")
                .opt("-c:v", "libx264")
                .opt("-preset", enc.mezzanine_preset.as_str())
                .opt("-crf", "18")
                .opt("-profile:v", "high")
                .opt("-pix_fmt", "yuv420p");
            h264_gop(&mut a, "v", gop_frames, video.gop_seconds);
            if video.tone_map_from.is_some() {
                a.opt("-color_primaries", "bt709")
                    .opt("-color_trc", "bt709")
                    .opt("-colorspace", "bt709");
            }
        }
        None => {
            a.flag("-vn");
        }
    }
    if input.has_audio {
        a.opt("-map", "0:a:0");
        if input.video.is_some() {
            // Silence where the audio has none: before its first sample, in gaps, and after
            // its end, up to the cut.
            a.opt("-af", "aresample=async=1:first_pts=0,apad");
        }
        a.opt("-c:a", "aac")
            .opt("-b:a", format!("{MEZZANINE_AUDIO_KBPS}k"))
            .opt("-ac", "2")
            .opt("-ar", "48000");
    }
    if input.video.is_some() {
        a.opt("-t", format!("{duration:.6}"));
    }
    a.flag("-sn")
        .flag("-dn")
        .opt("-map_metadata", "-1")
        .opt("-movflags", "+faststart")
        .opt("-f", "mp4")
        .output(dest);
    a
}

/// Deinterlacing for sources that say they are interlaced: `bwdif` (motion adaptive, sharper
/// than `yadif` on still areas), one frame out per frame in so the planned rate holds, the
/// field order read from each frame, and only frames flagged interlaced touched, so the
/// progressive parts of a mixed stream pass through as they are.
pub const DEINTERLACE_FILTER: &str = "bwdif=mode=send_frame:parity=auto:deint=interlaced";

/// HDR (PQ or HLG, BT.2020) to SDR BT.709: linearize, map with Hable (keeps highlight detail
/// without clipping), convert primaries, and re-apply the BT.709 transfer. The input's
/// transfer is stated explicitly so untagged-but-probed files convert too.
pub fn tone_map_filter(transfer: HdrTransfer) -> String {
    format!(
        "zscale=tin={}:min=bt2020nc:pin=bt2020:rin=tv:t=linear:npl=100,format=gbrpf32le,\
         zscale=p=bt709,tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv",
        transfer.zimg_name()
    )
}

/// What a usable mezzanine is: the planned streams, the source's length, and for video the
/// planned constant frame rate in 8-bit 4:2:0.
pub fn check_mezzanine(
    input: &MezzanineInput,
    made: &ProbeResult,
    source_duration: f64,
) -> Result<()> {
    let fail = |why: String| Err(MediaError::Verification(format!("mezzanine {why}")));
    if input.has_audio && made.audio.is_none() {
        return fail("has no audio stream".into());
    }
    if let Some(plan) = &input.video {
        let Some(video) = &made.video else {
            return fail("has no video stream".into());
        };
        if video.pix_fmt.as_deref() != Some("yuv420p") {
            return fail(format!("is {:?}, not yuv420p", video.pix_fmt));
        }
        if video.frame_rate != Some(plan.frame_rate) {
            return fail(format!(
                "runs at {:?}, not {:?}",
                video.frame_rate, plan.frame_rate
            ));
        }
    }
    if (made.duration_seconds - source_duration).abs() > 0.5 {
        return fail(format!(
            "lasts {:.3} s, the source {source_duration:.3} s",
            made.duration_seconds
        ));
    }
    Ok(())
}

pub async fn encode_mezzanine(
    input: &MezzanineInput,
    source: &Path,
    dest: &Path,
    duration: f64,
    enc: &EncoderSettings,
    progress: &ScaledProgress,
) -> Result<()> {
    let args = mezzanine_args(input, source, dest, duration, enc);
    ffmpeg(args.as_slice(), duration, progress).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffmpeg::args::test_support::{strings, value};
    use transcoder_workflows::media::{FrameRate, MezzanineVideo, ObjectRef};

    fn input(deinterlace: bool) -> MezzanineInput {
        MezzanineInput {
            source: ObjectRef::new("b", "in.mp4"),
            dest: ObjectRef::new("b", "mezzanine.mp4"),
            video: Some(MezzanineVideo {
                frame_rate: FrameRate { num: 25, den: 1 },
                gop_seconds: 2,
                tone_map_from: None,
                deinterlace,
                size: Some((1280, 720)),
            }),
            has_audio: true,
        }
    }

    fn args(input: &MezzanineInput, duration: f64) -> Vec<String> {
        let enc = EncoderSettings::default();
        strings(mezzanine_args(
            input,
            Path::new("in"),
            Path::new("out"),
            duration,
            &enc,
        ))
    }

    fn video_filter(args: &[String]) -> &str {
        value(args, "-vf").expect("a -vf")
    }

    #[test]
    fn planned_size_and_damage_limit_are_set() {
        let a = args(&input(false), 8.0);
        assert!(video_filter(&a).starts_with("scale=1280:720,setsar=1,"));
        assert_eq!(value(&a, "-max_error_rate"), Some("0.05"));
        let a = args(
            &MezzanineInput {
                video: None,
                ..input(false)
            },
            8.0,
        );
        assert_eq!(value(&a, "-max_error_rate"), Some("0.05"));
    }

    #[test]
    fn both_streams_span_the_whole_timeline() {
        let a = args(&input(false), 8.5);
        let vf = video_filter(&a);
        assert!(
            vf.contains("fps=25/1:start_time=0,tpad=stop_mode=clone:stop_duration=8.500"),
            "{vf}"
        );
        assert_eq!(value(&a, "-af"), Some("aresample=async=1:first_pts=0,apad"));
        assert_eq!(value(&a, "-t"), Some("8.500000"));

        // An audio-only mezzanine is the audio as it is: nothing to line up with.
        let audio_only = MezzanineInput {
            video: None,
            ..input(false)
        };
        let a = args(&audio_only, 8.5);
        assert_eq!(value(&a, "-af"), None);
        assert_eq!(value(&a, "-t"), None);
    }

    #[test]
    fn interlaced_sources_are_deinterlaced_before_scaling() {
        let a = args(&input(true), 8.0);
        let vf = video_filter(&a);
        assert!(
            vf.starts_with(&format!("{DEINTERLACE_FILTER},scale=")),
            "{vf}"
        );

        let a = args(&input(false), 8.0);
        let vf = video_filter(&a);
        assert!(vf.starts_with("scale=") && !vf.contains("bwdif"), "{vf}");
    }
}
