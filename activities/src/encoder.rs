//! Which H.264 encoder a worker uses, decided once at start by a real test encode.

use crate::ffmpeg::run::ScaledProgress;
use crate::ffmpeg::{ffmpeg, FfmpegArgs, ProgressSink};
use std::path::Path;
use std::time::Duration;

/// x264 presets ffmpeg accepts.
const X264_PRESETS: [&str; 10] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VideoEncoder {
    /// CPU: libx264, capped CRF.
    X264 { preset: String, crf: u32 },
    /// GPU: NVDEC decode, `scale_cuda`, `h264_nvenc` preset p4 with capped CQ.
    Nvenc { cq: u32 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncoderSettings {
    /// Encoder of the ladder and the preview.
    pub video: VideoEncoder,
    /// libx264 preset of the mezzanine (always CPU: CRF 18 archive quality).
    pub mezzanine_preset: String,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        Self {
            video: VideoEncoder::X264 {
                preset: "veryfast".to_string(),
                crf: 21,
            },
            mezzanine_preset: "veryfast".to_string(),
        }
    }
}

/// What `TRANSCODER_ENCODER` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncoderRequest {
    /// NVENC if the test encode works, else libx264.
    Auto,
    Nvenc,
    X264,
}

impl EncoderSettings {
    /// Reads `TRANSCODER_X264_PRESET` and `TRANSCODER_ENCODER` (auto|nvenc|x264) and, for
    /// `auto`/`nvenc`, runs a real NVENC test encode. Unknown values are errors.
    pub async fn from_env() -> Result<Self, String> {
        let preset = match std::env::var("TRANSCODER_X264_PRESET") {
            Ok(p) => {
                let p = p.trim().to_ascii_lowercase();
                if !X264_PRESETS.contains(&p.as_str()) {
                    return Err(format!(
                        "TRANSCODER_X264_PRESET={p:?} is not an x264 preset (one of {})",
                        X264_PRESETS.join(", ")
                    ));
                }
                p
            }
            Err(_) => "veryfast".to_string(),
        };
        let request = match std::env::var("TRANSCODER_ENCODER")
            .as_deref()
            .map(str::trim)
        {
            Err(_) | Ok("") | Ok("auto") => EncoderRequest::Auto,
            Ok("nvenc") => EncoderRequest::Nvenc,
            Ok("x264") | Ok("libx264") => EncoderRequest::X264,
            Ok(other) => {
                return Err(format!(
                    "TRANSCODER_ENCODER={other:?} must be auto, nvenc or x264"
                ))
            }
        };
        let x264 = VideoEncoder::X264 {
            preset: preset.clone(),
            crf: 21,
        };
        let video = match request {
            EncoderRequest::X264 => {
                tracing::info!(encoder = "libx264", preset = %preset, "video encoder chosen by TRANSCODER_ENCODER");
                x264
            }
            EncoderRequest::Auto | EncoderRequest::Nvenc => match probe_nvenc().await {
                Ok(()) => {
                    tracing::info!(
                        encoder = "h264_nvenc",
                        preset = "p4",
                        "NVENC test encode succeeded; using the GPU"
                    );
                    VideoEncoder::Nvenc { cq: 23 }
                }
                Err(why) if request == EncoderRequest::Nvenc => {
                    return Err(format!(
                        "TRANSCODER_ENCODER=nvenc but the NVENC test encode failed: {why}"
                    ))
                }
                Err(why) => {
                    tracing::info!(encoder = "libx264", preset = %preset, reason = %why, "NVENC unavailable; using libx264");
                    x264
                }
            },
        };
        Ok(Self {
            video,
            mezzanine_preset: preset,
        })
    }

    /// The name recorded per rendition in results and logs.
    pub fn video_encoder_name(&self) -> &'static str {
        match self.video {
            VideoEncoder::X264 { .. } => "libx264",
            VideoEncoder::Nvenc { .. } => "h264_nvenc",
        }
    }
}

/// A real, short NVENC encode of a 1280x720 frame sequence (tiny frames can fail on working
/// GPUs, and listing encoders proves nothing: Debian's ffmpeg lists h264_nvenc everywhere).
/// `Err` says why, e.g. "no NVENC capable devices found" on A100/H100/H200.
pub async fn probe_nvenc() -> Result<(), String> {
    let mut a = FfmpegArgs::new();
    a.opt("-f", "lavfi")
        .opt("-i", "testsrc2=size=1280x720:rate=30")
        .opt("-frames:v", "15")
        .opt("-c:v", "h264_nvenc")
        .opt("-preset", "p4")
        .opt("-f", "null")
        .output(Path::new("-"));
    let progress: ScaledProgress = ProgressSink::none().scaled(0.0, 1.0);
    match tokio::time::timeout(
        Duration::from_secs(60),
        ffmpeg(a.as_slice(), 0.5, &progress),
    )
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the NVENC test encode did not finish within 60 s".to_string()),
    }
}
