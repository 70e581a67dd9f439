//! Facts about media and the small, serializable messages exchanged with activities.
//! Activity inputs and outputs carry keys and numbers, never bytes (Temporal payload limits).
//! This file holds what every kind of job shares (objects, probe facts, segments, the gate,
//! the clean-up); [`picture`] the video's chunks, mezzanine and ladder; [`sound`] the
//! programme's sound, its loudness and the waveform; [`text`] the subtitles.

use serde::{Deserialize, Serialize};
use std::fmt;

mod picture;
mod sound;
mod text;
pub use picture::*;
pub use sound::*;
pub use text::*;

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

    /// Broadcast and camera rates that a measured average snaps to.
    pub const STANDARD: [FrameRate; 11] = [
        FrameRate {
            num: 24000,
            den: 1001,
        },
        FrameRate { num: 24, den: 1 },
        FrameRate { num: 25, den: 1 },
        FrameRate {
            num: 30000,
            den: 1001,
        },
        FrameRate { num: 30, den: 1 },
        FrameRate { num: 48, den: 1 },
        FrameRate { num: 50, den: 1 },
        FrameRate {
            num: 60000,
            den: 1001,
        },
        FrameRate { num: 60, den: 1 },
        FrameRate { num: 15, den: 1 },
        FrameRate { num: 12, den: 1 },
    ];

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
    /// Where the picture starts and ends on the timeline (seconds from its start), when the
    /// streams' timing is known and sane; `None` otherwise (then nothing is cut by time).
    #[serde(default)]
    pub video_extent: Option<(f64, f64)>,
    /// Where the programme's time 0 lies on the source's own clock (its streams' earliest
    /// start): what a subtitle cue's time is measured from.
    #[serde(default)]
    pub timeline_origin: f64,
    /// Subtitle streams, text and bitmap.
    #[serde(default)]
    pub subtitles: Vec<SubtitleStream>,
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
    /// Sample (pixel) aspect ratio; `None` or 1:1 for square pixels.
    #[serde(default)]
    pub sample_aspect_ratio: Option<FrameRate>,
    /// `color_transfer` as ffprobe names it (`bt709`, `smpte2084`, `arib-std-b67`, …).
    #[serde(default)]
    pub color_transfer: Option<String>,
    #[serde(default)]
    pub color_primaries: Option<String>,
    #[serde(default)]
    pub color_space: Option<String>,
    /// `field_order` as ffprobe names it: `progressive`, or for interlaced video the field
    /// coded first and shown first (`tt`, `bb`, `tb`, `bt`); `None` or `unknown` when the
    /// stream does not say.
    #[serde(default)]
    pub field_order: Option<String>,
}

impl VideoInfo {
    /// Whether the stream says it is interlaced (broadcast, camcorder, DV, DVD sources).
    /// Every output is progressive, so such a source is deinterlaced once, in the
    /// mezzanine: scaling interlaced frames smears the two fields into each other.
    pub fn is_interlaced(&self) -> bool {
        matches!(self.field_order.as_deref(), Some("tt" | "bb" | "tb" | "bt"))
    }

    /// Bits per sample of the picture, read from its pixel format's name: the YUV, planar
    /// RGB and gray families name it after a `p` or the family (`yuv420p10le`, `p010le`,
    /// `gbrp12le`, `gray10le`); everything else (`yuv420p`, `nv12`, `rgb24`, unknown) is 8.
    pub fn bit_depth(&self) -> u32 {
        let Some(name) = self.pix_fmt.as_deref() else {
            return 8;
        };
        let base = name
            .strip_suffix("le")
            .or_else(|| name.strip_suffix("be"))
            .unwrap_or(name);
        let digits = base.len() - base.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        let family = ["yuv", "gbr", "gray", "p0", "p2", "p4", "y2", "xv3"]
            .iter()
            .any(|f| base.starts_with(f));
        match base[base.len() - digits..].parse::<u32>() {
            Ok(bits @ 9..=16) if family => bits,
            _ => 8,
        }
    }

    /// Size as displayed: width and height swap for 90/270 degree rotations.
    /// Anamorphic sources (non-square pixels) are widened to square pixels first.
    pub fn display_size(&self) -> (u32, u32) {
        let width = match self.sample_aspect_ratio {
            Some(sar) if sar.num > 0 && sar.den > 0 && sar.num != sar.den => {
                (f64::from(self.width) * sar.as_f64()).round() as u32
            }
            _ => self.width,
        };
        // 4:2:0 H.264 cannot carry odd sizes: the mezzanine (and so every output) is cut
        // to even, and this is the one place that says so (the plan, the mezzanine's scale
        // and the webhook's width and height all read it).
        let even = |side: u32| (side / 2 * 2).max(2);
        if self.rotation % 180 == 90 {
            (even(self.height), even(width))
        } else {
            (even(width), even(self.height))
        }
    }

    /// The HDR transfer function of this stream, if it is PQ or HLG: such sources are tone
    /// mapped to SDR BT.709, since the ladder is 8-bit SDR H.264.
    pub fn hdr_transfer(&self) -> Option<HdrTransfer> {
        match self.color_transfer.as_deref() {
            Some("smpte2084") => Some(HdrTransfer::Pq),
            Some("arib-std-b67") => Some(HdrTransfer::Hlg),
            _ => None,
        }
    }

    /// The constant frame rate outputs use: the average rate when it is sane (it is what a
    /// VFR phone clip really delivers), else the nominal one, snapped to the nearest standard
    /// rate within 2 % (a phone's 30.14 fps average is 30 fps), capped at 60 fps.
    pub fn output_frame_rate(&self) -> FrameRate {
        let sane = |r: &FrameRate| (1.0..=240.0).contains(&r.as_f64());
        let rate = self
            .avg_frame_rate
            .filter(sane)
            .or(self.frame_rate.filter(sane))
            .unwrap_or(FrameRate::FALLBACK);
        if rate.as_f64() > 60.0 {
            return FrameRate { num: 60, den: 1 };
        }
        FrameRate::STANDARD
            .iter()
            .copied()
            .min_by(|a, b| {
                (a.as_f64() - rate.as_f64())
                    .abs()
                    .total_cmp(&(b.as_f64() - rate.as_f64()).abs())
            })
            .filter(|std| (std.as_f64() - rate.as_f64()).abs() <= rate.as_f64() * 0.02)
            .unwrap_or(rate)
    }
}

/// HDR transfer functions we tone map from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HdrTransfer {
    /// SMPTE ST 2084 (HDR10, Dolby Vision base layers).
    Pq,
    /// ARIB STD-B67 hybrid log-gamma (broadcast HDR).
    Hlg,
}

impl HdrTransfer {
    /// ffmpeg/zimg name of the transfer.
    pub fn zimg_name(self) -> &'static str {
        match self {
            HdrTransfer::Pq => "smpte2084",
            HdrTransfer::Hlg => "arib-std-b67",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudioInfo {
    pub codec: String,
    pub channels: u32,
    pub sample_rate: u32,
    /// The track's language as an RFC 5646 tag (`fr`, not the container's `fre`), when the
    /// source names a real one.
    #[serde(default)]
    pub language: Option<String>,
    /// The track's title, when the source gives one.
    #[serde(default)]
    pub title: Option<String>,
}

/// Input of the probe activity.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProbeInput {
    pub source: ObjectRef,
}

/// What the verification gate checks before a job is reported ready.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VerifyInput {
    pub media_bucket: String,
    pub assets_bucket: String,
    pub master_key: String,
    pub preview_key: Option<String>,
    pub thumbnail_key: Option<String>,
    pub waveform_json_key: Option<String>,
    pub waveform_png_key: Option<String>,
    pub duration_seconds: f64,
    /// Expected video renditions `(name, width, height)`; empty for audio jobs, or when only
    /// the playlists themselves are to be checked (`transcoder verify`).
    pub video_renditions: Vec<(String, u32, u32)>,
    /// Whether the renditions must (or must not) carry audio; `None` trusts the master's CODECS.
    pub has_audio: Option<bool>,
    pub preview_seconds: f64,
    /// The storyboard's WebVTT in the assets bucket, when the job made one.
    #[serde(default)]
    pub storyboard_key: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct VerifyReport {
    pub playlists: u32,
    pub segments: u32,
    pub checks: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredObject {
    pub object: ObjectRef,
    pub size_bytes: u64,
    /// The video encoder that made it, for encodes (`libx264`, `h264_nvenc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<String>,
}

/// Download the job's `inputUri` and archive it as the original.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchInput {
    /// As in the payload (sealed when it carried a query string).
    pub uri: String,
    pub dest: ObjectRef,
}

// Hand-written so a presigned URL's signature never reaches a log.
impl fmt::Debug for FetchInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchInput")
            .field("uri", &crate::job::redact_uri(&self.uri))
            .field("dest", &self.dest)
            .finish()
    }
}

/// The details every activity heartbeat carries: its progress (read by `transcoder status`)
/// and, for a ladder chunk, what it has published.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatDetails {
    /// 0.0..=1.0.
    pub progress: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<ChunkCheckpoint>,
}

impl HeartbeatDetails {
    /// Reads details as stored by the server: this struct, or a bare progress number (what
    /// workers wrote before checkpoints existed).
    pub fn from_json(bytes: &[u8]) -> Option<HeartbeatDetails> {
        serde_json::from_slice::<HeartbeatDetails>(bytes)
            .ok()
            .or_else(|| {
                serde_json::from_slice::<f64>(bytes)
                    .ok()
                    .map(|progress| HeartbeatDetails {
                        progress,
                        checkpoint: None,
                    })
            })
    }
}

/// One published segment: its file name (relative to its playlist), length and size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentInfo {
    pub uri: String,
    pub duration: f64,
    pub bytes: u64,
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

/// Input of the original's clean-up (its workflow and its `delete_original` activity).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanupInput {
    pub original: ObjectRef,
    pub mezzanine: ObjectRef,
    pub retention_seconds: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanupOutcome {
    pub deleted: bool,
    /// Why nothing was deleted, when nothing was.
    pub kept_because: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_depth_is_read_from_the_pixel_format() {
        let depth = |pix_fmt: Option<&str>| {
            VideoInfo {
                codec: "h264".into(),
                width: 64,
                height: 64,
                rotation: 0,
                frame_rate: None,
                avg_frame_rate: None,
                pix_fmt: pix_fmt.map(String::from),
                sample_aspect_ratio: None,
                color_transfer: None,
                color_primaries: None,
                color_space: None,
                field_order: None,
            }
            .bit_depth()
        };
        for (name, bits) in [
            ("yuv420p", 8),
            ("yuvj420p", 8),
            ("nv12", 8),
            ("rgb24", 8),
            ("rgb48le", 8),
            ("yuv420p10le", 10),
            ("yuv422p10be", 10),
            ("p010le", 10),
            ("gbrp12le", 12),
            ("gray10le", 10),
            ("yuv444p16le", 16),
        ] {
            assert_eq!(depth(Some(name)), bits, "{name}");
        }
        assert_eq!(depth(None), 8);
    }
}
