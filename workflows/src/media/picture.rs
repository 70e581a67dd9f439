//! The messages of a video's picture: the mezzanine (in one run or in pieces), the ladder's
//! chunks and their checkpoints, and the assembly of the playlists and master.

use super::*;
use serde::{Deserialize, Serialize};

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
    /// Which encoder settings the picture gets (the mezzanine's unless a task's pieces are
    /// its final output).
    #[serde(default)]
    pub encoder: PictureEncoder,
    /// An ASS/SSA file drawn onto the picture on the programme's timeline (`ENCODING`'s
    /// burned subtitles); `None` for the transcode.
    #[serde(default)]
    pub subtitles: Option<ObjectRef>,
}

/// The encoder settings of a picture made on the mezzanine's machinery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PictureEncoder {
    /// The archive master's: x264 CRF 18, or NVENC when the worker's mezzanine uses it.
    #[default]
    Mezzanine,
    /// The worker's delivery encoder (the ladder's: capped CRF on x264, NVENC when the
    /// worker has it), for a task whose joined pieces are what the user gets.
    Delivery,
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
    /// Timeline thumbnails to cut from the chunk's decoded frames, when the job has them.
    #[serde(default)]
    pub storyboard: Option<StoryboardPlan>,
}

/// Timeline thumbnails (a storyboard): one tile every `interval_seconds` of the programme,
/// `tile_width`x`tile_height`, taken from the frames the ladder chunks decode anyway.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoryboardPlan {
    pub interval_seconds: u32,
    pub tile_width: u32,
    pub tile_height: u32,
    /// Where the chunks leave their tiles (in the HLS bucket) for the assembly, which
    /// removes them once the sprites are published.
    pub tiles_prefix: String,
    /// The WebVTT file players load; the sprite sheets go beside it.
    pub vtt: ObjectRef,
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
    /// ISO 639-2 language of the sound, written on its track (tasks; the transcode's
    /// mezzanine carries none).
    #[serde(default)]
    pub audio_language: Option<String>,
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
    /// The source's audio track as probed (its language and title name the rendition).
    #[serde(default)]
    pub audio_source: Option<AudioInfo>,
    /// Subtitle tracks extracted for this job, segmented beside the video.
    #[serde(default)]
    pub subtitles: Vec<SubtitleTrack>,
    /// The storyboard to put together from the chunks' tiles.
    #[serde(default)]
    pub storyboard: Option<StoryboardPlan>,
    /// The programme's length (how many storyboard tiles there are).
    #[serde(default)]
    pub duration_seconds: f64,
}

/// The preview: the first seconds of one rendition, republished as its own playlist.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreviewPlan {
    pub from_rendition: String,
    pub seconds: f64,
    /// Key of the preview playlist; segments go next to it.
    pub playlist_key: String,
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
    /// Key of the storyboard's WebVTT (in the assets bucket), when one was made.
    #[serde(default)]
    pub storyboard_key: Option<String>,
    /// Bytes this step wrote to the store (segments and playlists), for the receipt.
    #[serde(default)]
    pub bytes_out: u64,
}

impl HlsOutput {
    /// The encoder of the first variant (the audio encoder of an audio job's ladder).
    pub fn encoder(&self) -> Option<&str> {
        self.variants.first().map(|v| v.encoder.as_str())
    }
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
