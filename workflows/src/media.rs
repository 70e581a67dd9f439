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
    /// Tone map from this HDR transfer to SDR BT.709.
    #[serde(default)]
    pub tone_map_from: Option<HdrTransfer>,
    /// The source is interlaced: deinterlace it (one frame per frame, the rate kept).
    #[serde(default)]
    pub deinterlace: bool,
    /// The upright picture size the plan chose ([`VideoStream::display_size`]): square
    /// pixels, even sides. `None` in histories recorded before it was carried; the mezzanine
    /// then derives the same size from the decoded frame.
    #[serde(default)]
    pub size: Option<(u32, u32)>,
}

/// Pass-1 `loudnorm` measurement (EBU R128) of a programme's audio.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoudnessMeasurement {
    /// Integrated loudness, LUFS.
    pub integrated: f64,
    /// True peak, dBTP.
    pub true_peak: f64,
    /// Loudness range, LU.
    pub range: f64,
    /// Gating threshold, LUFS.
    pub threshold: f64,
    /// Offset gain loudnorm proposes for the second pass, LU.
    pub target_offset: f64,
}

impl LoudnessMeasurement {
    /// ×100 integers as the webhook reports them.
    pub fn to_webhook(self) -> crate::webhook::Loudness {
        crate::webhook::Loudness {
            integrated: (self.integrated * 100.0).round() as i32,
            peak: (self.true_peak * 100.0).round() as i32,
            range: (self.range * 100.0).round() as i32,
        }
    }
}

/// Input of the loudness (pass 1) activity.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoudnessInput {
    pub source: ObjectRef,
}

/// Input of the waveform activity.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WaveformInput {
    pub source: ObjectRef,
    /// Pass-1 measurement, so the waveform is drawn from the normalized audio.
    pub loudness: Option<LoudnessMeasurement>,
    pub json_dest: ObjectRef,
    pub png_dest: ObjectRef,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WaveformOutput {
    pub json: ObjectRef,
    pub png: ObjectRef,
    /// Number of min/max pairs (10 per second).
    pub length: u64,
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

/// A slice of the video ladder: whole segments, encoded by one activity for every rendition.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkPlan {
    pub index: u32,
    pub start_seconds: f64,
    pub duration_seconds: f64,
    /// Number of this chunk's first segment; segment numbers are global and deterministic.
    pub first_segment: u32,
    /// Room reserved for this chunk's segments (the next chunk starts numbering after it).
    pub max_segments: u32,
    /// The final chunk runs to the end of the source instead of a frame count.
    #[serde(default)]
    pub last: bool,
}

impl ChunkPlan {
    /// Output frames `[first, end)` of this chunk on the constant-rate grid of `rate`: the
    /// frames whose time falls in `[start, start + duration)`. Consecutive chunks share no
    /// frame and skip none.
    pub fn frame_range(&self, rate: FrameRate) -> (u64, u64) {
        let at = |t: f64| {
            (t * f64::from(rate.num) / f64::from(rate.den) - 1e-6)
                .ceil()
                .max(0.0) as u64
        };
        (
            at(self.start_seconds),
            at(self.start_seconds + self.duration_seconds),
        )
    }

    /// Exact presentation time of frame `index` on the grid of `rate`.
    pub fn frame_time(index: u64, rate: FrameRate) -> f64 {
        index as f64 * f64::from(rate.den) / f64::from(rate.num)
    }
}

/// First frame of segment `i` of one encoder run that starts at frame `run_first`. Inside a
/// run, keyframes are forced and segments cut at the first frame whose time since the run's
/// first frame reaches a multiple of the segment length, so the boundaries are computed the
/// same way here, in integers: `ceil(i * segment * rate)` frames after the run's start.
pub fn run_segment_start(run_first: u64, i: u64, segment_seconds: u32, rate: FrameRate) -> u64 {
    let num = i * u64::from(segment_seconds) * u64::from(rate.num);
    let den = u64::from(rate.den.max(1));
    run_first + num.div_ceil(den)
}

/// What a ladder chunk's attempts have published so far, rendition by rendition. It travels
/// in the attempt's heartbeat details (and in the worker's scratch note, for the hand-back of
/// a dead worker's attempt), so the next attempt continues after the last published segment
/// instead of from the chunk's start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChunkCheckpoint {
    /// The chunk this belongs to (a checkpoint of another chunk is ignored).
    pub index: u32,
    pub variants: Vec<CheckpointVariant>,
}

/// The published, verified segments of one rendition of a chunk, in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointVariant {
    pub name: String,
    pub segments: Vec<SegmentInfo>,
    /// The first frame (programme grid) not yet published: where the next run starts.
    pub next_frame: u64,
}

impl ChunkCheckpoint {
    pub fn variant(&self, name: &str) -> Option<&CheckpointVariant> {
        self.variants.iter().find(|v| v.name == name)
    }

    /// Records a published segment of `name`, ending at frame `next_frame`.
    pub fn push(&mut self, name: &str, segment: SegmentInfo, next_frame: u64) {
        match self.variants.iter_mut().find(|v| v.name == name) {
            Some(v) => {
                v.segments.push(segment);
                v.next_frame = next_frame;
            }
            None => self.variants.push(CheckpointVariant {
                name: name.to_string(),
                segments: vec![segment],
                next_frame,
            }),
        }
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

/// Input of a ladder chunk: encode `chunk` of `source` into every rendition, video only
/// (audio is encoded once for the whole file, so chunk edges cannot cause AAC gaps).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LadderChunkInput {
    pub source: ObjectRef,
    pub bucket: String,
    /// Key prefix of the HLS tree (no trailing slash).
    pub prefix: String,
    pub renditions: Vec<VideoRendition>,
    pub frame_rate: FrameRate,
    pub gop_seconds: u32,
    pub segment_seconds: u32,
    pub chunk: ChunkPlan,
    /// Where `source` starts on the programme's timeline: 0 for the whole mezzanine, the
    /// chunk's start when `source` is the chunk's own mezzanine piece.
    #[serde(default)]
    pub source_offset_seconds: f64,
}

/// One piece of a chunked mezzanine: the frames of `chunk` (video only), encoded from the
/// source as the whole-file mezzanine would encode them, starting on an IDR frame.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MezzaninePieceInput {
    pub source: ObjectRef,
    pub dest: ObjectRef,
    pub video: MezzanineVideo,
    pub chunk: ChunkPlan,
    /// The programme's length (first stream start to last stream end).
    pub duration_seconds: f64,
}

/// The mezzanine's audio, alone: stereo AAC over the whole timeline in one run. Jobs started
/// before audio was chunked still call it; new jobs encode the sound in [`AudioChunkInput`]s.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MezzanineAudioInput {
    pub source: ObjectRef,
    pub dest: ObjectRef,
    pub duration_seconds: f64,
}

/// The pieces (and the audio) joined into the one faststart mezzanine, without re-encoding.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinMezzanineInput {
    /// In timeline order.
    pub pieces: Vec<ObjectRef>,
    /// The sound as one track (jobs started before audio was chunked).
    pub audio: Option<ObjectRef>,
    /// The sound as per-chunk ADTS pieces, in timeline order, joined byte for byte.
    #[serde(default)]
    pub audio_pieces: Vec<ObjectRef>,
    pub dest: ObjectRef,
    /// What the pieces were encoded as (the joined file is checked against it).
    pub video: MezzanineVideo,
    /// Frames of the whole programme: the join is refused unless it holds exactly these.
    pub frames: u64,
    /// The programme's length.
    pub duration_seconds: f64,
}

/// One published segment: its file name (relative to its playlist), length and size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentInfo {
    pub uri: String,
    pub duration: f64,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkVariant {
    pub name: String,
    pub segments: Vec<SegmentInfo>,
}

/// What a chunk published, per rendition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LadderChunkOutput {
    pub index: u32,
    pub variants: Vec<ChunkVariant>,
    pub encoder: String,
}

impl LadderChunkOutput {
    /// Bytes of every segment the chunk published, all renditions.
    pub fn bytes(&self) -> u64 {
        self.variants
            .iter()
            .flat_map(|v| &v.segments)
            .map(|s| s.bytes)
            .sum()
    }
}

/// Input of the audio rendition of a video job: normalized AAC, encoded once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AudioRenditionInput {
    pub source: ObjectRef,
    pub bucket: String,
    pub prefix: String,
    /// Folder of the rendition under `prefix` (`audio`).
    pub name: String,
    pub bitrate_kbps: u32,
    pub segment_seconds: u32,
    pub loudness: Option<LoudnessMeasurement>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AudioRenditionOutput {
    pub name: String,
    pub playlist_key: String,
    pub segments: Vec<SegmentInfo>,
    pub delivered_loudness: Option<LoudnessMeasurement>,
}

impl AudioRenditionOutput {
    /// Bytes of every segment of the rendition.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }
}

/// Input of the assembly: playlists from the chunk results, the master, the preview.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AssembleInput {
    pub bucket: String,
    pub prefix: String,
    pub renditions: Vec<VideoRendition>,
    pub frame_rate: FrameRate,
    pub chunks: Vec<LadderChunkOutput>,
    pub audio: Option<AudioRenditionOutput>,
    pub preview: Option<PreviewPlan>,
}

/// The preview: the first seconds of one rendition, republished as its own playlist.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreviewPlan {
    pub from_rendition: String,
    pub seconds: f64,
    /// Key of the preview playlist; segments go next to it.
    pub playlist_key: String,
}

/// Input of the audio HLS activity.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AudioHlsInput {
    pub source: ObjectRef,
    pub bucket: String,
    pub prefix: String,
    pub renditions: Vec<AudioRendition>,
    pub segment_seconds: u32,
    #[serde(default)]
    pub loudness: Option<LoudnessMeasurement>,
}

/// What an HLS activity published: the master playlist and, per variant, what was measured.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HlsOutput {
    pub master_key: String,
    pub variants: Vec<VariantResult>,
    /// Loudness measured on the delivered audio (first rendition), if there is audio.
    #[serde(default)]
    pub delivered_loudness: Option<LoudnessMeasurement>,
    /// Key of the preview playlist, when one was made.
    #[serde(default)]
    pub preview_key: Option<String>,
    #[serde(default)]
    pub preview_seconds: Option<f64>,
    /// Bytes this step wrote to the store (segments and playlists), for the receipt.
    #[serde(default)]
    pub bytes_out: u64,
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

/// One chunk of a programme's sound: decoded from the source (with a pre-roll before the
/// chunk and a post-roll after it, so the filters and the encoder are settled at its edges),
/// encoded on the programme's AAC frame grid, and only the frames the chunk owns kept, so
/// consecutive chunks join frame for frame (ARCHITECTURE.md, "Audio in chunks").
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AudioChunkInput {
    pub source: ObjectRef,
    pub chunk: ChunkPlan,
    pub segment_seconds: u32,
    /// The programme's length: the sound is padded or cut to it.
    pub duration_seconds: f64,
    /// The source's sample rate (0 when unknown): decodes start where its sample grid and
    /// the 48 kHz grid meet, so resampling is the same in every chunk.
    pub source_sample_rate: u32,
    /// Where the loudness meter's readings of this chunk are stored.
    pub meter_dest: ObjectRef,
    pub work: AudioChunkWork,
}

/// What an audio chunk makes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AudioChunkWork {
    /// The mezzanine's sound for the chunk (an ADTS piece at `dest`), metering the source:
    /// pass 1 of the loudness normalization.
    Archive { dest: ObjectRef },
    /// HLS segments of each rendition for the chunk, normalized by `loudness`, metering
    /// the first rendition as listeners decode it.
    Renditions {
        bucket: String,
        prefix: String,
        renditions: Vec<AudioRendition>,
        loudness: Option<LoudnessMeasurement>,
        /// Where the chunk's stretch of the waveform (of the normalized sound) is stored,
        /// for audio jobs.
        #[serde(default)]
        waveform_dest: Option<ObjectRef>,
    },
}

/// What an audio chunk made.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AudioChunkOutput {
    pub index: u32,
    /// The mezzanine piece (archive work).
    pub piece: Option<StoredObject>,
    /// Published segments per rendition, in the order asked (rendition work).
    pub renditions: Vec<(String, Vec<SegmentInfo>)>,
    /// The meter's readings.
    pub meter: ObjectRef,
    /// The chunk's stretch of the waveform, when asked.
    #[serde(default)]
    pub waveform: Option<ObjectRef>,
}

impl AudioChunkOutput {
    pub fn bytes(&self) -> u64 {
        let segments: u64 = self
            .renditions
            .iter()
            .flat_map(|(_, s)| s)
            .map(|s| s.bytes)
            .sum();
        segments + self.piece.as_ref().map_or(0, |p| p.size_bytes)
    }
}

/// The loudness of a whole programme from its chunks' meter readings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoudnessSummaryInput {
    /// In timeline order.
    pub meters: Vec<ObjectRef>,
}

/// An audio rendition made in chunks, finished: its playlist written and what listeners
/// get measured from the chunks' meters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FinishAudioInput {
    pub bucket: String,
    pub prefix: String,
    pub name: String,
    /// Every chunk's segments, in timeline order.
    pub segments: Vec<SegmentInfo>,
    pub meters: Vec<ObjectRef>,
}

/// An audio job's mezzanine from its chunks' ADTS pieces, joined without re-encoding.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinAudioInput {
    /// In timeline order.
    pub pieces: Vec<ObjectRef>,
    pub dest: ObjectRef,
    pub duration_seconds: f64,
}

/// An audio job's HLS ladder made in chunks, finished: each rendition's playlist, the
/// master, and what listeners get (the first rendition) from the chunks' meter readings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FinishAudioHlsInput {
    pub bucket: String,
    pub prefix: String,
    /// Each rendition with every chunk's segments, in timeline order.
    pub renditions: Vec<(String, Vec<SegmentInfo>)>,
    pub meters: Vec<ObjectRef>,
}

/// The waveform JSON and picture joined from the chunks' stretches.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FinishWaveformInput {
    /// In timeline order.
    pub pieces: Vec<ObjectRef>,
    pub duration_seconds: f64,
    pub json_dest: ObjectRef,
    pub png_dest: ObjectRef,
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
