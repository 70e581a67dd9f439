//! Facts about media and the small, serializable messages exchanged with activities.
//! Activity inputs and outputs carry keys and numbers, never bytes (Temporal payload limits).

use serde::{Deserialize, Serialize};
use std::fmt;

/// An object in a bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
}

impl ObjectRef {
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            key: key.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.bucket, self.key)
    }
}

/// An exact frame rate as a fraction (29.97 is 30000/1001, not 29.97).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameRate {
    pub num: u32,
    pub den: u32,
}

impl FrameRate {
    pub const FALLBACK: FrameRate = FrameRate { num: 30, den: 1 };

    /// Parses ffprobe's `"30000/1001"`; `None` for `0/0` and other unusable values.
    pub fn parse(s: &str) -> Option<Self> {
        let (n, d) = s.split_once('/').unwrap_or((s, "1"));
        let num: u32 = n.trim().parse().ok()?;
        let den: u32 = d.trim().parse().ok()?;
        (num > 0 && den > 0).then_some(FrameRate { num, den })
    }

    pub fn as_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den)
    }

    /// ffmpeg's rational syntax, `30000/1001`.
    pub fn to_ffmpeg(self) -> String {
        format!("{}/{}", self.num, self.den)
    }
}

/// What ffprobe says about an input, reduced to what planning needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeResult {
    /// Container format names as ffprobe reports them (`mov,mp4,m4a,3gp,3g2,mj2`).
    pub format_name: String,
    /// Seconds; the longest stream, falling back to the container's duration.
    pub duration_seconds: f64,
    pub size_bytes: u64,
    pub video: Option<VideoInfo>,
    pub audio: Option<AudioInfo>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoInfo {
    pub codec: String,
    /// Coded size, before rotation.
    pub width: u32,
    pub height: u32,
    /// Clockwise display rotation in degrees, normalized to 0, 90, 180 or 270.
    pub rotation: u32,
    /// Nominal frame rate (`r_frame_rate`).
    pub frame_rate: Option<FrameRate>,
    /// Average frame rate; differs from the nominal one for variable-frame-rate sources.
    pub avg_frame_rate: Option<FrameRate>,
    pub pix_fmt: Option<String>,
}

impl VideoInfo {
    /// Size as displayed: width and height swap for 90/270 degree rotations.
    pub fn display_size(&self) -> (u32, u32) {
        if self.rotation % 180 == 90 {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }

    /// The constant frame rate outputs use: the average rate when it is sane (it is what a
    /// VFR phone clip really delivers), else the nominal one, capped at 60 fps.
    pub fn output_frame_rate(&self) -> FrameRate {
        let sane = |r: &FrameRate| (1.0..=240.0).contains(&r.as_f64());
        let rate = self
            .avg_frame_rate
            .filter(sane)
            .or(self.frame_rate.filter(sane))
            .unwrap_or(FrameRate::FALLBACK);
        if rate.as_f64() > 60.0 {
            FrameRate { num: 60, den: 1 }
        } else {
            rate
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioInfo {
    pub codec: String,
    pub channels: u32,
    pub sample_rate: u32,
}

/// Input of the probe activity.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbeInput {
    pub source: ObjectRef,
}

/// Input of the mezzanine activity.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MezzanineInput {
    pub source: ObjectRef,
    pub dest: ObjectRef,
    /// `None` for audio-only mezzanines.
    pub video: Option<MezzanineVideo>,
    pub has_audio: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MezzanineVideo {
    pub frame_rate: FrameRate,
    pub gop_seconds: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredObject {
    pub object: ObjectRef,
    pub size_bytes: u64,
}

/// One rendition of the video ladder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoRendition {
    /// Folder and `readyVariants` name, e.g. `720p`.
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub bitrate_kbps: u32,
    pub maxrate_kbps: u32,
    pub bufsize_kbps: u32,
}

/// One rendition of an audio-only ladder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioRendition {
    pub name: String,
    pub bitrate_kbps: u32,
}

/// Input of the video HLS activity: encode every rendition from one decode of `source`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VideoHlsInput {
    pub source: ObjectRef,
    pub bucket: String,
    /// Key prefix of the HLS tree (no trailing slash).
    pub prefix: String,
    pub renditions: Vec<VideoRendition>,
    pub frame_rate: FrameRate,
    pub gop_seconds: u32,
    pub segment_seconds: u32,
    /// Muxed AAC audio at this bitrate in every rendition; `None` when the source is silent.
    pub audio_bitrate_kbps: Option<u32>,
}

/// Input of the audio HLS activity.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AudioHlsInput {
    pub source: ObjectRef,
    pub bucket: String,
    pub prefix: String,
    pub renditions: Vec<AudioRendition>,
    pub segment_seconds: u32,
}

/// What an HLS activity published: the master playlist and, per variant, what was measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HlsOutput {
    pub master_key: String,
    pub variants: Vec<VariantResult>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VariantResult {
    pub name: String,
    pub playlist_key: String,
    /// `None` for audio-only variants.
    pub resolution: Option<(u32, u32)>,
    /// Peak segment bitrate, bits per second.
    pub bandwidth: u64,
    pub average_bandwidth: u64,
    pub codecs: String,
    pub segment_count: u32,
    /// The encoder that produced the video (`libx264`, `h264_nvenc`), or the audio encoder.
    pub encoder: String,
}

/// Input of the thumbnail activity.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ThumbnailInput {
    pub source: ObjectRef,
    pub dest: ObjectRef,
    pub at_seconds: f64,
    pub width: u32,
    pub height: u32,
}
