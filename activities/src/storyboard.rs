//! The storyboard: timeline thumbnails as JPEG sprite sheets and a WebVTT file whose cues
//! name a tile of a sheet by `#xywh=` (the format video.js thumbnail plugins, JW Player and
//! hosted platforms read).
//!
//! No separate decode: each ladder chunk already decodes every frame of its range, so its
//! ffmpeg graph gets one more branch that keeps the frame at each tile time
//! ([`tile_frame`]: the first frame at or after `k × interval`), scales it to the tile size
//! and writes it as a small JPEG ([`tile_branch`]); the chunk then leaves its tiles in
//! storage ([`keep_tiles`]). The assembly lays them out in sheets of 10x10, writes the WebVTT
//! and removes the tiles ([`publish`]). A tile no chunk left (a chunk resumed after a lost
//! worker starts past the tiles its earlier attempt made) is decoded from the published
//! segment that holds its time, so a storyboard is always whole.

use crate::error::{MediaError, Result};
use crate::ffmpeg::args::FfmpegArgs;
use crate::ffmpeg::run::{ffmpeg, ProgressSink};
use crate::storage::Storage;
use crate::webvtt::{parse_vtt, whole_vtt, Cue};
use image::{GenericImage, RgbImage};
use std::ops::Range;
use std::path::{Path, PathBuf};
use transcoder_workflows::keys::{storyboard_sprite_name, storyboard_tile_key};
use transcoder_workflows::media::{FrameRate, ObjectRef, SegmentInfo, StoryboardPlan};

/// Tiles per row and rows per sprite sheet.
pub const SHEET_COLUMNS: u32 = 10;
pub const SHEET_ROWS: u32 = 10;
/// JPEG quality of the sheets (tiles are small; artefacts show early).
const SHEET_QUALITY: u8 = 85;
/// Folder of a chunk's tiles in its scratch folder.
const TILES_DIR: &str = "storyboard";

/// The frame (on the programme's constant-rate grid) that tile `k` shows: the first at or
/// after `k × interval` seconds.
pub fn tile_frame(k: u64, interval_seconds: u32, rate: FrameRate) -> u64 {
    let num = k * u64::from(interval_seconds) * u64::from(rate.num);
    num.div_ceil(u64::from(rate.den.max(1)))
}

/// The tiles whose frames lie in `frames`.
pub fn tiles_in(frames: Range<u64>, interval_seconds: u32, rate: FrameRate) -> Range<u64> {
    let first = first_tile_at_or_after(frames.start, interval_seconds, rate);
    let end = first_tile_at_or_after(frames.end, interval_seconds, rate);
    first..end
}

fn first_tile_at_or_after(frame: u64, interval_seconds: u32, rate: FrameRate) -> u64 {
    // tile_frame is increasing; start from an estimate and step to the exact one.
    let per_tile = f64::from(interval_seconds) * rate.as_f64();
    let mut k = ((frame as f64 / per_tile).floor() as u64).saturating_sub(1);
    while tile_frame(k, interval_seconds, rate) < frame {
        k += 1;
    }
    k
}

/// How many tiles a programme of `duration` seconds has: one for every interval that starts
/// inside it.
pub fn tile_count(duration: f64, interval_seconds: u32) -> u64 {
    if !(duration.is_finite() && duration > 0.0) {
        return 0;
    }
    (duration / f64::from(interval_seconds.max(1)))
        .ceil()
        .max(1.0) as u64
}

/// The filter branch that turns `[input]` (the chunk's decoded frames, frame 0 being
/// `first_frame` of the programme) into `[output]`: the tiles' frames, scaled. `None` when
/// no tile falls in the range.
pub fn tile_branch(
    plan: &StoryboardPlan,
    frames: Range<u64>,
    rate: FrameRate,
    gpu: bool,
    input: &str,
    output: &str,
) -> Option<String> {
    let tiles = tiles_in(frames.clone(), plan.interval_seconds, rate);
    if tiles.is_empty() {
        return None;
    }
    let select = tiles
        .map(|k| {
            format!(
                "eq(n\\,{})",
                tile_frame(k, plan.interval_seconds, rate) - frames.start
            )
        })
        .collect::<Vec<_>>()
        .join("+");
    let (w, h) = (plan.tile_width, plan.tile_height);
    let scale = if gpu {
        format!("scale_cuda={w}:{h}:interp_algo=bilinear,hwdownload,format=nv12")
    } else {
        format!("scale={w}:{h}:flags=bicubic")
    };
    Some(format!(
        "[{input}]select='{select}',{scale},setsar=1,format=yuvj420p[{output}]"
    ))
}

/// The tiles' output: one JPEG per selected frame, numbered by tile, written whole (a
/// temporary name, then renamed).
pub fn tile_output(a: &mut FfmpegArgs, label: &str, work: &Path, first_tile: u64) {
    a.opt("-map", format!("[{label}]"))
        .opt("-fps_mode", "passthrough")
        .opt("-c:v", "mjpeg")
        .opt("-q:v", "3")
        .opt("-f", "image2")
        .opt("-atomic_writing", "1")
        .opt("-start_number", first_tile.to_string())
        .output(&work.join(TILES_DIR).join("%06d.jpg"));
}

/// The folder a chunk's ffmpeg writes tiles into (made before it starts).
pub fn tiles_dir(work: &Path) -> PathBuf {
    work.join(TILES_DIR)
}

/// Stores every tile the chunk's runs wrote, for the assembly.
pub async fn keep_tiles(
    storage: &Storage,
    bucket: &str,
    plan: &StoryboardPlan,
    work: &Path,
) -> Result<u64> {
    let dir = tiles_dir(work);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(0);
    };
    let mut kept = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(index) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .filter(|_| path.extension().is_some_and(|e| e == "jpg"))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        storage
            .put_file(
                &path,
                &ObjectRef::new(bucket, storyboard_tile_key(&plan.tiles_prefix, index)),
            )
            .await?;
        kept += 1;
    }
    Ok(kept)
}

/// The WebVTT of a storyboard: one cue per tile, naming its sheet and its place in it.
pub fn storyboard_vtt(plan: &StoryboardPlan, tiles: u64, duration: f64) -> String {
    let per_sheet = u64::from(SHEET_COLUMNS * SHEET_ROWS);
    let cues: Vec<Cue> = (0..tiles)
        .map(|k| {
            let start = (k * u64::from(plan.interval_seconds)) as f64;
            let place = k % per_sheet;
            let (x, y) = (
                (place % u64::from(SHEET_COLUMNS)) * u64::from(plan.tile_width),
                (place / u64::from(SHEET_COLUMNS)) * u64::from(plan.tile_height),
            );
            Cue::new(
                start,
                (start + f64::from(plan.interval_seconds)).min(duration),
                format!(
                    "{}#xywh={x},{y},{},{}",
                    storyboard_sprite_name((k / per_sheet) as usize),
                    plan.tile_width,
                    plan.tile_height
                ),
            )
        })
        .collect();
    whole_vtt(&cues)
}

/// One cue of a storyboard's WebVTT: when, which sheet, which rectangle of it.
#[derive(Debug, PartialEq)]
pub struct StoryboardCue {
    pub start: f64,
    pub end: f64,
    pub sheet: String,
    pub rect: (u32, u32, u32, u32),
}

/// The cues of a storyboard WebVTT; `Err` names the first that is not `SHEET#xywh=x,y,w,h`.
pub fn parse_storyboard(text: &str) -> std::result::Result<Vec<StoryboardCue>, String> {
    parse_vtt(text)
        .into_iter()
        .map(|cue| {
            let bad = || format!("storyboard cue at {:.3} s: {:?}", cue.start, cue.text);
            let (sheet, xywh) = cue.text.split_once("#xywh=").ok_or_else(bad)?;
            let n: Vec<u32> = xywh
                .split(',')
                .map(|v| v.trim().parse().ok())
                .collect::<Option<_>>()
                .ok_or_else(bad)?;
            let [x, y, w, h] = n.as_slice() else {
                return Err(bad());
            };
            Ok(StoryboardCue {
                start: cue.start,
                end: cue.end,
                sheet: sheet.to_string(),
                rect: (*x, *y, *w, *h),
            })
        })
        .collect()
}

/// A tile no chunk left, decoded from the published segment that holds its time.
async fn tile_from_segments(
    storage: &Storage,
    plan: &StoryboardPlan,
    at: f64,
    segments: &[(ObjectRef, SegmentInfo)],
    work: &Path,
    k: u64,
) -> Result<PathBuf> {
    // The segment whose span holds `at` (the last one for a time at the very end).
    let mut start = 0.0;
    let mut holder = None;
    for (i, s) in segments.iter().enumerate() {
        if at < start + s.1.duration || i + 1 == segments.len() {
            holder = Some((s, start));
            break;
        }
        start += s.1.duration;
    }
    let ((object, info), start) = holder.ok_or_else(|| {
        MediaError::Verification("no segments to cut storyboard tiles from".into())
    })?;
    let segment = storage.readable_path(object, work).await?;
    let out = work.join(format!("tile-{k:06}.jpg"));
    // Seeking on the output side: the segment is decoded from its start and frames before
    // the time are dropped. (Seeking an MPEG-TS input guesses by bytes and can land past
    // the segment's end, which gives no frame at all.) Clamped inside the segment.
    let offset = (at - start).clamp(0.0, (info.duration - 0.05).max(0.0));
    let mut a = FfmpegArgs::new();
    a.input(&segment)
        .opt("-ss", format!("{offset:.3}"))
        .opt("-frames:v", "1")
        .opt(
            "-vf",
            format!(
                "scale={}:{}:flags=bicubic,setsar=1",
                plan.tile_width, plan.tile_height
            ),
        )
        .opt("-q:v", "3")
        .output(&out);
    ffmpeg(a.as_slice(), 0.0, &ProgressSink::none().scaled(0.0, 1.0)).await?;
    if !out.is_file() {
        return Err(MediaError::Verification(format!(
            "storyboard tile {k} ({at:.3} s) could not be cut from {}",
            object.key
        )));
    }
    Ok(out)
}

/// Lays the tiles out in sprite sheets beside the WebVTT, publishes both, removes the tiles,
/// and returns the WebVTT's key. `segments` are a rendition's published segments, for tiles
/// no chunk left.
pub async fn publish(
    storage: &Storage,
    bucket: &str,
    plan: &StoryboardPlan,
    duration: f64,
    segments: &[(ObjectRef, SegmentInfo)],
    work: &Path,
) -> Result<String> {
    let tiles = tile_count(duration, plan.interval_seconds);
    let per_sheet = u64::from(SHEET_COLUMNS * SHEET_ROWS);
    let (w, h) = (plan.tile_width, plan.tile_height);
    let folder = plan
        .vtt
        .key
        .rsplit_once('/')
        .map(|(dir, _)| dir.to_string())
        .unwrap_or_default();
    let mut sheet: Option<RgbImage> = None;
    let mut made_here = 0u64;
    for k in 0..tiles {
        let place = k % per_sheet;
        if place == 0 {
            let count = (tiles - k).min(per_sheet) as u32;
            let columns = count.min(SHEET_COLUMNS);
            let rows = count.div_ceil(SHEET_COLUMNS);
            sheet = Some(RgbImage::new(columns * w, rows * h));
        }
        let kept = ObjectRef::new(bucket, storyboard_tile_key(&plan.tiles_prefix, k));
        // `readable_path` asks the store once and says when the tile is not there.
        let path = match storage.readable_path(&kept, work).await {
            Ok(path) => path,
            Err(e) if !matches!(e, MediaError::NotFound(_)) => return Err(e),
            Err(_) => {
                made_here += 1;
                let at = (k * u64::from(plan.interval_seconds)) as f64;
                tile_from_segments(storage, plan, at, segments, work, k).await?
            }
        };
        let tile = image::open(&path)
            .map_err(|e| MediaError::Verification(format!("storyboard tile {k}: {e}")))?
            .to_rgb8();
        let tile = if tile.dimensions() == (w, h) {
            tile
        } else {
            image::imageops::resize(&tile, w, h, image::imageops::FilterType::Triangle)
        };
        if let Some(sheet) = sheet.as_mut() {
            let (x, y) = (
                (place % u64::from(SHEET_COLUMNS)) as u32 * w,
                (place / u64::from(SHEET_COLUMNS)) as u32 * h,
            );
            sheet
                .copy_from(&tile, x, y)
                .map_err(|e| MediaError::Verification(format!("storyboard tile {k}: {e}")))?;
        }
        if place + 1 == per_sheet || k + 1 == tiles {
            if let Some(done) = sheet.take() {
                let name = storyboard_sprite_name((k / per_sheet) as usize);
                let local = work.join(&name);
                let file =
                    std::fs::File::create(&local).map_err(MediaError::io("writing", &local))?;
                image::codecs::jpeg::JpegEncoder::new_with_quality(
                    std::io::BufWriter::new(file),
                    SHEET_QUALITY,
                )
                .encode_image(&done)
                .map_err(|e| MediaError::Verification(format!("storyboard sheet {name}: {e}")))?;
                storage
                    .put_file(
                        &local,
                        &ObjectRef::new(&plan.vtt.bucket, format!("{folder}/{name}")),
                    )
                    .await?;
            }
        }
    }
    if made_here > 0 {
        tracing::info!(
            tiles = made_here,
            "storyboard tiles no chunk left were cut from the segments"
        );
    }
    let vtt = work.join("storyboard.vtt");
    std::fs::write(&vtt, storyboard_vtt(plan, tiles, duration))
        .map_err(MediaError::io("writing", &vtt))?;
    storage.put_file(&vtt, &plan.vtt).await?;
    for k in 0..tiles {
        let _ = storage
            .delete(&ObjectRef::new(
                bucket,
                storyboard_tile_key(&plan.tiles_prefix, k),
            ))
            .await;
    }
    Ok(plan.vtt.key.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NTSC: FrameRate = FrameRate {
        num: 30000,
        den: 1001,
    };

    fn plan() -> StoryboardPlan {
        StoryboardPlan {
            interval_seconds: 5,
            tile_width: 160,
            tile_height: 90,
            tiles_prefix: "p/storyboard-tiles".into(),
            vtt: ObjectRef::new("assets", "c/storyboards/m/storyboard.vtt"),
        }
    }

    #[test]
    fn tiles_fall_on_the_first_frame_at_or_after_each_interval() {
        let rate = FrameRate { num: 25, den: 1 };
        assert_eq!(tile_frame(0, 5, rate), 0);
        assert_eq!(tile_frame(3, 5, rate), 375);
        // 29.97 fps: 5 s is frame 149.85, so the tile is frame 150.
        assert_eq!(tile_frame(1, 5, NTSC), 150);
        assert_eq!(tile_frame(2, 5, NTSC), 300);
        // Consecutive chunks share no tile and skip none.
        let a = tiles_in(0..1798, 5, NTSC);
        let b = tiles_in(1798..3596, 5, NTSC);
        assert_eq!(a.end, b.start);
        assert_eq!(a, 0..12);
        for k in a.chain(b) {
            let f = tile_frame(k, 5, NTSC);
            assert!(f < 3596);
        }
        assert_eq!(tile_count(14.0, 5), 3);
        assert_eq!(tile_count(15.0, 5), 3);
        assert_eq!(tile_count(15.1, 5), 4);
    }

    #[test]
    fn the_branch_selects_frames_counted_from_the_run() {
        let rate = FrameRate { num: 25, den: 1 };
        let branch = tile_branch(&plan(), 250..625, rate, false, "st", "tiles").unwrap();
        assert_eq!(
            branch,
            "[st]select='eq(n\\,0)+eq(n\\,125)+eq(n\\,250)',scale=160:90:flags=bicubic,setsar=1,format=yuvj420p[tiles]"
        );
        assert!(tile_branch(&plan(), 301..374, rate, false, "st", "tiles").is_none());
    }

    #[test]
    fn the_webvtt_names_each_tile_of_each_sheet() {
        let vtt = storyboard_vtt(&plan(), 102, 508.0);
        let cues = parse_storyboard(&vtt).unwrap();
        assert_eq!(cues.len(), 102);
        assert_eq!(
            cues[101],
            StoryboardCue {
                start: 505.0,
                end: 508.0,
                sheet: "sprite-001.jpg".into(),
                rect: (160, 0, 160, 90)
            }
        );
        let cues: Vec<&str> = vtt.split("\n\n").filter(|b| b.contains("-->")).collect();
        assert_eq!(cues.len(), 102);
        assert_eq!(
            cues[0],
            "00:00:00.000 --> 00:00:05.000\nsprite-000.jpg#xywh=0,0,160,90"
        );
        assert_eq!(
            cues[11],
            "00:00:55.000 --> 00:01:00.000\nsprite-000.jpg#xywh=160,90,160,90"
        );
        assert_eq!(
            cues[101],
            "00:08:25.000 --> 00:08:28.000\nsprite-001.jpg#xywh=160,0,160,90"
        );
    }
}
