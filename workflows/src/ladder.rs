//! The plan: which renditions to encode and with what timing (DESIGN §4). A pure function of
//! the probe result and the configuration.

use crate::media::{
    AudioRendition, ChunkPlan, FrameRate, HdrTransfer, ProbeResult, VideoRendition,
};
use serde::{Deserialize, Serialize};

pub use crate::rungs::{Rung, DEFAULT_LADDER};

/// Audio-only ladder: AAC 128k and 64k.
pub fn audio_ladder() -> Vec<AudioRendition> {
    [128, 64]
        .into_iter()
        .map(|kbps| AudioRendition {
            name: format!("{kbps}k"),
            bitrate_kbps: kbps,
        })
        .collect()
}

/// Knobs of the plan that a deployment may change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanConfig {
    pub ladder: Vec<Rung>,
    pub segment_seconds: u32,
    pub gop_seconds: u32,
    /// AAC bitrate muxed into every video rendition.
    pub video_audio_bitrate_kbps: u32,
    /// Thumbnail position as a fraction of the duration.
    pub thumbnail_fraction: f64,
    /// Length of the preview, from the start.
    pub preview_seconds: f64,
    /// Short side of the preview picture (or the source's, if smaller).
    pub preview_short_side: u32,
    /// Segments per ladder chunk (one activity each): 10 x 6 s = 60 s by default.
    pub segments_per_chunk: u32,
    /// Chunks encoded at the same time (across every worker on the task queue).
    pub max_parallel_chunks: usize,
    /// Seconds between storyboard tiles.
    pub storyboard_interval_seconds: u32,
    /// Width of a storyboard tile; its height keeps the picture's shape.
    pub storyboard_tile_width: u32,
}

impl Default for PlanConfig {
    fn default() -> Self {
        Self {
            ladder: DEFAULT_LADDER.to_vec(),
            segment_seconds: 6,
            gop_seconds: 2,
            video_audio_bitrate_kbps: 128,
            thumbnail_fraction: 0.10,
            preview_seconds: 30.0,
            preview_short_side: 720,
            segments_per_chunk: 10,
            max_parallel_chunks: 4,
            storyboard_interval_seconds: 5,
            storyboard_tile_width: 160,
        }
    }
}

/// Largest even number not above `x` (H.264 4:2:0 needs even dimensions), at least 2.
fn even_floor(x: u32) -> u32 {
    (x & !1).max(2)
}

/// Nearest even number to `x`, at least 2.
fn even_round(x: f64) -> u32 {
    let r = (x / 2.0).round() * 2.0;
    (r as u32).max(2)
}

/// Selects the renditions for a picture of `width`x`height` (display orientation).
///
/// Rungs are sized by the short side, so a portrait 1080x1920 source gets a "1080p" rung of
/// 1080x1920. Rungs above the source are skipped (never upscale); aspect ratio is kept and
/// dimensions are even. A source smaller than every rung gets one rendition at its own size.
pub fn select_ladder(width: u32, height: u32, ladder: &[Rung]) -> Vec<VideoRendition> {
    let (short, long) = (width.min(height), width.max(height));
    let portrait = height > width;
    let mut rungs: Vec<Rung> = ladder.to_vec();
    rungs.sort_by_key(|r| std::cmp::Reverse(r.short_side));
    rungs.dedup_by_key(|r| r.short_side);

    let mut out: Vec<VideoRendition> = rungs
        .iter()
        .filter(|r| r.short_side <= short && r.short_side > 0)
        .map(|r| {
            let s = even_floor(r.short_side);
            let l = even_round(f64::from(long) * f64::from(r.short_side) / f64::from(short));
            let (w, h) = if portrait { (s, l) } else { (l, s) };
            rendition(format!("{}p", r.short_side), w, h, r.bitrate_kbps)
        })
        .collect();

    if out.is_empty() && short > 0 {
        // Smaller than every rung: one rendition at the source's own size, with the smallest
        // rung's bitrate scaled down by pixel count (but never starved below 200k).
        let smallest = rungs.last().copied().unwrap_or(Rung {
            short_side: 360,
            bitrate_kbps: 500,
        });
        let ratio = f64::from(short) / f64::from(smallest.short_side.max(1));
        let kbps = ((f64::from(smallest.bitrate_kbps) * ratio * ratio) as u32)
            .clamp(200, smallest.bitrate_kbps);
        out.push(rendition(
            format!("{}p", even_floor(short)),
            even_floor(width),
            even_floor(height),
            kbps,
        ));
    }
    out
}

fn rendition(name: String, width: u32, height: u32, bitrate_kbps: u32) -> VideoRendition {
    // Capped CRF: quality-driven, but the VBV caps the rate at the rung's bitrate over a
    // two-second buffer, so a segment's measured peak stays near what the ladder promises.
    VideoRendition {
        name,
        width,
        height,
        bitrate_kbps,
        maxrate_kbps: bitrate_kbps,
        bufsize_kbps: bitrate_kbps * 2,
    }
}

/// The plan of a video job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoPlan {
    pub renditions: Vec<VideoRendition>,
    pub frame_rate: FrameRate,
    pub display_width: u32,
    pub display_height: u32,
    pub thumbnail_at_seconds: f64,
    pub tone_map_from: Option<HdrTransfer>,
    /// The source is interlaced and is deinterlaced in the mezzanine.
    #[serde(default)]
    pub deinterlace: bool,
    /// Rendition the preview is cut from, and its length.
    pub preview_from: Option<String>,
    pub preview_seconds: f64,
    /// Storyboard tiles: every `interval` seconds, `width`x`height`.
    #[serde(default)]
    pub storyboard: Option<StoryboardSize>,
}

/// The storyboard's interval and tile size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoryboardSize {
    pub interval_seconds: u32,
    pub width: u32,
    pub height: u32,
}

/// Tiles `tile_width` wide (never wider than the picture), as tall as the picture's shape
/// makes them, even.
pub fn storyboard_size(
    display_width: u32,
    display_height: u32,
    config: &PlanConfig,
) -> Option<StoryboardSize> {
    if display_width == 0 || display_height == 0 {
        return None;
    }
    let width = even_floor(config.storyboard_tile_width.min(display_width));
    let height =
        even_round(f64::from(width) * f64::from(display_height) / f64::from(display_width));
    Some(StoryboardSize {
        interval_seconds: config.storyboard_interval_seconds.max(1),
        width,
        height,
    })
}

/// Plans a video job from its probe. `None` when the input has no video stream.
pub fn plan_video(probe: &ProbeResult, config: &PlanConfig) -> Option<VideoPlan> {
    let video = probe.video.as_ref()?;
    let (w, h) = video.display_size();
    let frame_rate = video.output_frame_rate();
    let renditions = select_ladder(w, h, &config.ladder);
    Some(VideoPlan {
        storyboard: storyboard_size(w, h, config),
        preview_from: preview_rendition(&renditions, config.preview_short_side)
            .map(|r| r.name.clone()),
        preview_seconds: preview_length(probe.duration_seconds, config.preview_seconds),
        tone_map_from: video.hdr_transfer(),
        deinterlace: video.is_interlaced(),
        renditions,
        frame_rate,
        display_width: w,
        display_height: h,
        thumbnail_at_seconds: thumbnail_time(
            probe.duration_seconds,
            frame_rate,
            config.thumbnail_fraction,
        ),
    })
}

/// The rendition the preview is cut from: the largest whose short side is at most
/// `short_side` (720p, or the source size when the source is smaller than that).
pub fn preview_rendition(
    renditions: &[VideoRendition],
    short_side: u32,
) -> Option<&VideoRendition> {
    let short = |r: &VideoRendition| r.width.min(r.height);
    renditions
        .iter()
        .filter(|r| short(r) <= short_side)
        .max_by_key(|r| short(r))
        .or_else(|| renditions.iter().min_by_key(|r| short(r)))
}

/// Preview length: `preview_seconds`, clamped to the duration.
pub fn preview_length(duration: f64, preview_seconds: f64) -> f64 {
    if duration.is_finite() && duration > 0.0 {
        duration.min(preview_seconds)
    } else {
        0.0
    }
}

/// Splits `duration` into chunks of `segments_per_chunk` whole segments. Chunk boundaries
/// fall on multiples of the segment length, which are keyframes of the mezzanine (its GOP
/// divides the segment), so every chunk starts with an IDR at the same time in every rung.
pub fn plan_chunks(duration: f64, segment_seconds: u32, segments_per_chunk: u32) -> Vec<ChunkPlan> {
    let per_chunk = segments_per_chunk.max(1);
    let chunk_len = f64::from(segment_seconds.max(1) * per_chunk);
    if !duration.is_finite() || duration <= 0.0 {
        return Vec::new();
    }
    let count = (duration / chunk_len).ceil().max(1.0) as u32;
    let mut chunks: Vec<ChunkPlan> = (0..count)
        .map(|index| {
            let start = f64::from(index) * chunk_len;
            ChunkPlan {
                index,
                start_seconds: start,
                duration_seconds: (duration - start).min(chunk_len),
                first_segment: index * per_chunk,
                max_segments: per_chunk,
                last: false,
            }
        })
        // A sliver under 10 ms after the last whole chunk holds no frame.
        .filter(|c| c.duration_seconds > 0.01 || c.index == 0)
        .collect();
    if let Some(last) = chunks.last_mut() {
        last.last = true;
    }
    chunks
}

/// How a video job's mezzanine is made.
#[derive(Clone, Debug, PartialEq)]
pub enum MezzaninePlan {
    /// One piece per ladder chunk, on the chunk's boundaries: the pieces fan out to every
    /// worker, each is a checkpoint in storage, each ladder chunk starts as soon as its piece
    /// exists, and the pieces are joined into the one mezzanine at the end.
    Pieces,
    /// One ffmpeg run over the whole file, and why (a safe path for what cannot be cut).
    Whole(&'static str),
}

/// Pieces when the programme has more than one chunk and the picture spans every chunk
/// (each piece then has source frames to pick from, so it holds the same frames the single
/// run would). A picture that starts after the first chunk or ends before the last one, or
/// streams whose timing is unknown or broken, take the single run, which holds frames
/// across the whole timeline.
pub fn plan_mezzanine(probe: &ProbeResult, chunks: &[ChunkPlan]) -> MezzaninePlan {
    let (Some(first), Some(last)) = (chunks.first(), chunks.last()) else {
        return MezzaninePlan::Whole("nothing to cut");
    };
    if chunks.len() < 2 {
        return MezzaninePlan::Whole("the programme is one chunk");
    }
    let Some((start, end)) = probe.video_extent else {
        return MezzaninePlan::Whole("the streams' timing is unknown or broken");
    };
    // Half a second of margin: a piece needs source frames inside its own range.
    if start > first.duration_seconds - PIECE_MARGIN_SECONDS {
        return MezzaninePlan::Whole("the picture starts after the first chunk");
    }
    if end < last.start_seconds + PIECE_MARGIN_SECONDS {
        return MezzaninePlan::Whole("the picture ends before the last chunk");
    }
    MezzaninePlan::Pieces
}

const PIECE_MARGIN_SECONDS: f64 = 0.5;

/// `fraction` of the way in, clamped so at least one frame remains after it.
pub fn thumbnail_time(duration: f64, frame_rate: FrameRate, fraction: f64) -> f64 {
    if !duration.is_finite() || duration <= 0.0 {
        return 0.0;
    }
    let last_frame = (duration - 1.0 / frame_rate.as_f64()).max(0.0);
    (duration * fraction).clamp(0.0, last_frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(r: &[VideoRendition]) -> Vec<(String, u32, u32)> {
        r.iter()
            .map(|r| (r.name.clone(), r.width, r.height))
            .collect()
    }

    #[test]
    fn landscape_1080p_gets_every_rung() {
        let r = select_ladder(1920, 1080, &DEFAULT_LADDER);
        assert_eq!(
            names(&r),
            vec![
                ("1080p".into(), 1920, 1080),
                ("720p".into(), 1280, 720),
                ("480p".into(), 854, 480),
                ("360p".into(), 640, 360),
            ]
        );
        assert_eq!(r[0].bitrate_kbps, 5000);
        assert_eq!(r[3].bitrate_kbps, 500);
    }

    #[test]
    fn never_upscales() {
        let r = select_ladder(1280, 720, &DEFAULT_LADDER);
        assert_eq!(names(&r)[0], ("720p".into(), 1280, 720));
        assert_eq!(r.len(), 3);
        let r = select_ladder(1000, 700, &DEFAULT_LADDER);
        assert_eq!(
            r.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["480p", "360p"]
        );
    }

    #[test]
    fn portrait_uses_short_side() {
        let r = select_ladder(1080, 1920, &DEFAULT_LADDER);
        assert_eq!(names(&r)[0], ("1080p".into(), 1080, 1920));
        assert_eq!(names(&r)[1], ("720p".into(), 720, 1280));
        assert!(r.iter().all(|r| r.height > r.width));
    }

    #[test]
    fn odd_aspect_keeps_even_dimensions() {
        let r = select_ladder(1998, 1080, &DEFAULT_LADDER);
        for v in &r {
            assert_eq!(v.width % 2, 0, "{v:?}");
            assert_eq!(v.height % 2, 0, "{v:?}");
            let aspect = f64::from(v.width) / f64::from(v.height);
            assert!((aspect - 1998.0 / 1080.0).abs() < 0.01, "{v:?}");
        }
    }

    #[test]
    fn small_source_gets_one_rendition_at_its_own_size() {
        let r = select_ladder(320, 241, &DEFAULT_LADDER);
        assert_eq!(names(&r), vec![("240p".into(), 320, 240)]);
        assert!(r[0].bitrate_kbps >= 200 && r[0].bitrate_kbps <= 500);
    }

    #[test]
    fn preview_comes_from_720p_or_the_largest_smaller_rendition() {
        let full = select_ladder(1920, 1080, &DEFAULT_LADDER);
        assert_eq!(preview_rendition(&full, 720).unwrap().name, "720p");
        let small = select_ladder(640, 360, &DEFAULT_LADDER);
        assert_eq!(preview_rendition(&small, 720).unwrap().name, "360p");
        let portrait = select_ladder(1080, 1920, &DEFAULT_LADDER);
        let p = preview_rendition(&portrait, 720).unwrap();
        assert_eq!((p.width, p.height), (720, 1280));
        assert_eq!(preview_length(12.5, 30.0), 12.5);
        assert_eq!(preview_length(600.0, 30.0), 30.0);
    }

    #[test]
    fn chunks_cover_the_duration_in_whole_segments() {
        let c = plan_chunks(125.0, 6, 10);
        assert_eq!(c.len(), 3);
        assert_eq!(
            (
                c[0].start_seconds,
                c[0].duration_seconds,
                c[0].first_segment
            ),
            (0.0, 60.0, 0)
        );
        assert_eq!((c[1].start_seconds, c[1].first_segment), (60.0, 10));
        assert_eq!(
            (
                c[2].start_seconds,
                c[2].duration_seconds,
                c[2].first_segment
            ),
            (120.0, 5.0, 20)
        );
        let total: f64 = c.iter().map(|c| c.duration_seconds).sum();
        assert!((total - 125.0).abs() < 1e-9);
        assert_eq!(plan_chunks(4.0, 6, 10).len(), 1);
        assert_eq!(plan_chunks(60.0, 6, 10).len(), 1);
        assert_eq!(plan_chunks(60.005, 6, 10).len(), 1, "no chunk for a sliver");
        // A 3-hour film stays far below Temporal's limits: 180 activities.
        assert_eq!(plan_chunks(3.0 * 3600.0, 6, 10).len(), 180);
        assert!(c[2].last && !c[1].last);
    }

    #[test]
    fn chunk_frames_tile_the_grid_without_overlap() {
        let ntsc = FrameRate {
            num: 30000,
            den: 1001,
        };
        let c = plan_chunks(40.007, 6, 2);
        let ranges: Vec<(u64, u64)> = c.iter().map(|c| c.frame_range(ntsc)).collect();
        assert_eq!(ranges[0], (0, 360));
        assert_eq!(ranges[1], (360, 720));
        assert_eq!(
            ranges[2],
            (720, 1079),
            "12 s of 29.97 fps is 359 or 360 frames"
        );
        for w in ranges.windows(2) {
            assert_eq!(w[0].1, w[1].0, "no gap, no overlap");
        }
        assert!((ChunkPlan::frame_time(360, ntsc) - 12.012).abs() < 1e-9);
    }

    #[test]
    fn storyboard_tiles_keep_the_shape() {
        let config = PlanConfig::default();
        let size = |w, h| storyboard_size(w, h, &config).map(|s| (s.width, s.height));
        assert_eq!(size(1920, 1080), Some((160, 90)));
        assert_eq!(size(1080, 1920), Some((160, 284)));
        assert_eq!(size(100, 50), Some((100, 50)));
        assert_eq!(size(0, 50), None);
    }

    #[test]
    fn thumbnail_time_is_clamped() {
        let fr = FrameRate { num: 25, den: 1 };
        assert!((thumbnail_time(100.0, fr, 0.1) - 10.0).abs() < 1e-9);
        assert_eq!(thumbnail_time(0.0, fr, 0.1), 0.0);
        assert!(thumbnail_time(0.02, fr, 0.9) <= 0.02);
    }

    #[test]
    fn output_rate_snaps_to_standard_rates() {
        let video = |avg: FrameRate| crate::media::VideoInfo {
            codec: "h264".into(),
            width: 1920,
            height: 1080,
            rotation: 0,
            frame_rate: Some(FrameRate { num: 90000, den: 1 }),
            avg_frame_rate: Some(avg),
            pix_fmt: None,
            sample_aspect_ratio: Some(FrameRate { num: 4, den: 3 }),
            color_transfer: None,
            color_primaries: None,
            color_space: None,
            field_order: None,
        };
        let phone = video(FrameRate {
            num: 8100000,
            den: 268753,
        });
        assert_eq!(phone.output_frame_rate(), FrameRate { num: 30, den: 1 });
        let ntsc = video(FrameRate {
            num: 2997,
            den: 100,
        });
        assert_eq!(
            ntsc.output_frame_rate(),
            FrameRate {
                num: 30000,
                den: 1001
            }
        );
        let odd = video(FrameRate { num: 20, den: 1 });
        assert_eq!(odd.output_frame_rate(), FrameRate { num: 20, den: 1 });
        assert_eq!(
            video(FrameRate { num: 120, den: 1 }).output_frame_rate(),
            FrameRate { num: 60, den: 1 }
        );
        // 4:3 pixels widen 1920 to 2560.
        assert_eq!(phone.display_size(), (2560, 1080));
    }

    /// The long-file case against Temporal's limits (50k events and 50 MB of history per
    /// workflow, 2 MB per payload, 2k pending activities), for a 3-hour 1080p film with the
    /// default plan. The largest payload is the assembly's input, which lists every segment.
    #[test]
    fn a_three_hour_film_fits_temporal_limits() {
        use crate::media::{
            AssembleInput, AudioRenditionOutput, ChunkVariant, LadderChunkOutput, SegmentInfo,
        };
        let config = PlanConfig::default();
        let renditions = select_ladder(1920, 1080, &config.ladder);
        let duration = 3.0 * 3600.0;
        let chunks = plan_chunks(duration, config.segment_seconds, config.segments_per_chunk);
        let segment = |n: u32| SegmentInfo {
            uri: format!("{n:05}.ts"),
            duration: 6.006,
            bytes: 4_567_890,
        };
        let outputs: Vec<LadderChunkOutput> = chunks
            .iter()
            .map(|c| LadderChunkOutput {
                index: c.index,
                variants: renditions
                    .iter()
                    .map(|r| ChunkVariant {
                        name: r.name.clone(),
                        segments: (c.first_segment..c.first_segment + c.max_segments)
                            .map(segment)
                            .collect(),
                    })
                    .collect(),
                encoder: "h264_nvenc".into(),
            })
            .collect();
        let segments = (duration / f64::from(config.segment_seconds)) as u32;
        let assemble = AssembleInput {
            bucket: "codex-media-production".into(),
            prefix: "creator-0123456789/hls/0b6c5a9e-1f1e-4c8e-9d1b-2f3a4b5c6d7e".into(),
            renditions: renditions.clone(),
            frame_rate: FrameRate {
                num: 24000,
                den: 1001,
            },
            chunks: outputs.clone(),
            audio: Some(AudioRenditionOutput {
                name: "audio".into(),
                playlist_key: "x/audio/playlist.m3u8".into(),
                segments: (0..segments).map(segment).collect(),
                delivered_loudness: None,
                encoder: Some("aac".into()),
            }),
            preview: None,
            audio_source: None,
            subtitles: Vec::new(),
            storyboard: None,
            duration_seconds: duration,
        };
        let largest = serde_json::to_vec(&assemble).unwrap().len();
        let chunk_result = serde_json::to_vec(&outputs[0]).unwrap().len();
        // The sound's rendition is finished from every chunk's audio segments.
        let finish_audio = crate::media::FinishAudioInput {
            bucket: assemble.bucket.clone(),
            prefix: assemble.prefix.clone(),
            name: "audio".into(),
            segments: (0..segments).map(segment).collect(),
            meters: chunks
                .iter()
                .map(|c| {
                    crate::media::ObjectRef::new(
                        "codex-archive",
                        format!(
                            "mezzanine/c/m/mezzanine.mp4.pieces/meter-delivered-{:05}.json",
                            c.index
                        ),
                    )
                })
                .collect(),
        };
        let finish_audio = serde_json::to_vec(&finish_audio).unwrap().len();
        // Each chunk is four activities (mezzanine piece, ladder chunk, the sound's archive
        // and rendition chunks), and the job about 15 more. An activity is three events
        // (scheduled, started, closed; retries add none), and at most three more for the
        // workflow task its completion wakes; the rest of the job is about 40 (start,
        // markers, the end). A 10-chunk job measured 312 events (BENCHMARKS.md).
        let activities = chunks.len() * 4 + 15;
        let events = activities * 6 + 40;
        // Each chunk's results (picture and sound, about the same size) and the two lists.
        let history = largest * 2 + finish_audio * 2 + chunks.len() * chunk_result * 4;
        eprintln!(
            "3 h film: {} chunks, {} renditions, {activities} activities, ~{events} events, \
             largest payload {largest} B, the audio's finish {finish_audio} B, one chunk's \
             result {chunk_result} B, history ~{history} B",
            chunks.len(),
            renditions.len()
        );
        assert_eq!(chunks.len(), 180);
        assert!(events < 10_000, "{events} events");
        assert!(largest < 1024 * 1024, "assembly input {largest} B");
        assert!(
            finish_audio < 512 * 1024,
            "audio rendition's input {finish_audio} B"
        );
        assert!(history < 5 * 1024 * 1024, "history {history} B");
        // Pending at once: a window of chunks for the picture and one for the sound.
        assert!(2 * config.max_parallel_chunks + 2 < 2_000);
    }

    #[test]
    fn the_mezzanine_is_cut_only_where_every_piece_has_picture() {
        let probe = |extent: Option<(f64, f64)>, duration: f64| ProbeResult {
            format_name: "mov,mp4".into(),
            duration_seconds: duration,
            size_bytes: 0,
            video: None,
            audio: None,
            video_extent: extent,
            timeline_origin: 0.0,
            subtitles: Vec::new(),
        };
        let chunks = plan_chunks(20.0, 6, 1);
        assert_eq!(chunks.len(), 4);
        assert_eq!(
            plan_mezzanine(&probe(Some((0.0, 20.0)), 20.0), &chunks),
            MezzaninePlan::Pieces
        );
        // A picture a little late or short is held by the first and last piece.
        assert_eq!(
            plan_mezzanine(&probe(Some((1.5, 19.0)), 20.0), &chunks),
            MezzaninePlan::Pieces
        );
        for (extent, why) in [
            (None, "the streams' timing is unknown or broken"),
            (Some((0.0, 18.2)), "the picture ends before the last chunk"),
            (
                Some((5.8, 20.0)),
                "the picture starts after the first chunk",
            ),
        ] {
            assert_eq!(
                plan_mezzanine(&probe(extent, 20.0), &chunks),
                MezzaninePlan::Whole(why)
            );
        }
        let one = plan_chunks(20.0, 6, 10);
        assert_eq!(
            plan_mezzanine(&probe(Some((0.0, 20.0)), 20.0), &one),
            MezzaninePlan::Whole("the programme is one chunk")
        );
    }

    #[test]
    fn display_size_is_even_as_the_outputs_are() {
        let video = |width, height, rotation| crate::media::VideoInfo {
            codec: "h264".into(),
            width,
            height,
            rotation,
            frame_rate: Some(FrameRate { num: 25, den: 1 }),
            avg_frame_rate: None,
            pix_fmt: None,
            sample_aspect_ratio: None,
            color_transfer: None,
            color_primaries: None,
            color_space: None,
            field_order: None,
        };
        assert_eq!(video(1919, 1079, 0).display_size(), (1918, 1078));
        assert_eq!(video(1919, 1079, 90).display_size(), (1078, 1918));
        assert_eq!(video(1920, 1080, 0).display_size(), (1920, 1080));
        assert_eq!(video(3, 3, 0).display_size(), (2, 2));
    }

    #[test]
    fn frame_rate_parses_ffprobe_rationals() {
        assert_eq!(
            FrameRate::parse("30000/1001"),
            Some(FrameRate {
                num: 30000,
                den: 1001
            })
        );
        assert_eq!(FrameRate::parse("0/0"), None);
        assert_eq!(FrameRate::parse("25"), Some(FrameRate { num: 25, den: 1 }));
    }
}
