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
    /// libx264 preset of the mezzanine when it is encoded on the CPU (CRF 18).
    pub mezzanine_preset: String,
    /// Whether the mezzanine is encoded with NVENC (`TRANSCODER_MEZZANINE_ENCODER`).
    pub mezzanine_nvenc: bool,
}

/// The mezzanine's NVENC settings, chosen for an archive master that is encoded again
/// later: the slowest preset that still runs well above real time (p6) with the `hq` tune,
/// constant quality 19 with no bitrate cap (the archive keeps detail; size is secondary),
/// two-pass-like lookahead and spatial plus temporal adaptive quantization (the parts x264
/// gets from mbtree and psy), B-frames as middle references. Scene cuts insert no extra
/// IDR frames, so IDR frames stay on the 2 s grid the chunks rely on.
pub const MEZZANINE_NVENC: [(&str, &str); 11] = [
    ("-c:v", "h264_nvenc"),
    ("-preset", "p6"),
    ("-tune", "hq"),
    ("-rc", "vbr"),
    ("-cq", "19"),
    ("-b:v", "0"),
    ("-rc-lookahead", "32"),
    ("-spatial_aq", "1"),
    ("-temporal_aq", "1"),
    ("-b_ref_mode", "middle"),
    ("-no-scenecut", "1"),
];

impl Default for EncoderSettings {
    fn default() -> Self {
        Self {
            video: VideoEncoder::X264 {
                preset: "veryfast".to_string(),
                crf: 21,
            },
            mezzanine_preset: "veryfast".to_string(),
            mezzanine_nvenc: false,
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
        let gpu = matches!(video, VideoEncoder::Nvenc { .. });
        let mezzanine_nvenc = mezzanine_uses_nvenc(
            std::env::var("TRANSCODER_MEZZANINE_ENCODER")
                .ok()
                .as_deref(),
            gpu,
        )?;
        Ok(Self {
            video,
            mezzanine_preset: preset,
            mezzanine_nvenc,
        })
    }

    /// The name of the mezzanine's encoder, for results and logs.
    pub fn mezzanine_encoder_name(&self) -> &'static str {
        if self.mezzanine_nvenc {
            "h264_nvenc"
        } else {
            "libx264"
        }
    }

    /// The name recorded per rendition in results and logs.
    /// The H.264 encoder and its quality settings, the same for every encode of the
    /// worker's picture (ladder chunks, tasks): capped CRF on x264, capped CQ on NVENC.
    pub fn video_codec_args(&self, a: &mut FfmpegArgs) {
        match &self.video {
            VideoEncoder::X264 { preset, crf } => {
                a.opt("-c:v", "libx264")
                    .opt("-preset", preset.as_str())
                    .opt("-crf", crf.to_string())
                    .opt("-profile:v", "high")
                    .opt("-pix_fmt", "yuv420p");
            }
            VideoEncoder::Nvenc { cq } => {
                a.opt("-c:v", "h264_nvenc")
                    .opt("-preset", "p4")
                    .opt("-profile:v", "high")
                    .opt("-rc", "vbr")
                    .opt("-cq", cq.to_string())
                    .opt("-spatial_aq", "1")
                    .opt("-no-scenecut", "1");
            }
        }
    }

    pub fn video_encoder_name(&self) -> &'static str {
        match self.video {
            VideoEncoder::X264 { .. } => "libx264",
            VideoEncoder::Nvenc { .. } => "h264_nvenc",
        }
    }
}

/// `TRANSCODER_MEZZANINE_ENCODER` (`x264`, the default; `nvenc`; `auto`: NVENC when the
/// worker's ladder uses it) on a worker whose NVENC works (`gpu`) or not.
fn mezzanine_uses_nvenc(setting: Option<&str>, gpu: bool) -> Result<bool, String> {
    match setting.map(str::trim) {
        None | Some("") | Some("x264") | Some("libx264") => Ok(false),
        Some("auto") => Ok(gpu),
        Some("nvenc") if gpu => Ok(true),
        Some("nvenc") => Err(
            "TRANSCODER_MEZZANINE_ENCODER=nvenc but this worker has no working NVENC (its ladder uses libx264)"
                .to_string(),
        ),
        Some(other) => Err(format!(
            "TRANSCODER_MEZZANINE_ENCODER={other:?} must be x264, nvenc or auto"
        )),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mezzanine_stays_on_x264_unless_asked() {
        assert_eq!(mezzanine_uses_nvenc(None, true), Ok(false));
        assert_eq!(mezzanine_uses_nvenc(Some("x264"), true), Ok(false));
        assert_eq!(mezzanine_uses_nvenc(Some("auto"), true), Ok(true));
        assert_eq!(mezzanine_uses_nvenc(Some("auto"), false), Ok(false));
        assert_eq!(mezzanine_uses_nvenc(Some("nvenc"), true), Ok(true));
        assert!(mezzanine_uses_nvenc(Some("nvenc"), false).is_err());
        assert!(mezzanine_uses_nvenc(Some("gpu"), true)
            .unwrap_err()
            .contains("TRANSCODER_MEZZANINE_ENCODER"));
    }
}
