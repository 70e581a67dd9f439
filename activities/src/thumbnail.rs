//! Poster frame: one frame near the requested time, fitted into the exact output size with
//! black bars (letterbox or pillarbox) so the whole picture stays visible.

use crate::error::{MediaError, Result};
use crate::ffmpeg::run::ScaledProgress;
use crate::ffmpeg::{ffmpeg, FfmpegArgs};
use crate::storage::Storage;
use std::path::Path;
use transcoder_workflows::media::{StoredObject, ThumbnailInput};

/// The output picture: fitted into `width`x`height` with black bars, square pixels.
fn fit_filter(width: u32, height: u32) -> String {
    format!(
        "scale={width}:{height}:force_original_aspect_ratio=decrease:flags=lanczos,\
         pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,format=yuvj420p"
    )
}

/// The frame at `at` seconds.
pub fn thumbnail_args(source: &Path, at: f64, width: u32, height: u32, dest: &Path) -> FfmpegArgs {
    let mut a = FfmpegArgs::new();
    a.input_at(at.max(0.0), source)
        .opt("-map", "0:v:0")
        .opt("-frames:v", "1")
        .opt("-vf", fit_filter(width, height))
        .opt("-q:v", "2")
        .opt("-f", "image2")
        .output(dest);
    a
}

/// The candidates of the search window starting at `start`, all from one decode: each
/// sampled frame is written small and grey (to score it) and at full size (to publish it),
/// so the published picture is exactly the frame that was scored and the window is not
/// decoded a second time.
pub fn candidates_args(
    source: &Path,
    start: f64,
    width: u32,
    height: u32,
    dir: &Path,
) -> FfmpegArgs {
    let mut a = FfmpegArgs::new();
    // Both limits on the input, so they bind both outputs.
    a.opt("-ss", format!("{start:.3}"))
        .opt("-t", format!("{:.3}", SEARCH_BEFORE + SEARCH_AFTER))
        .input(source)
        .opt(
            "-filter_complex",
            format!(
                "[0:v:0]fps={CANDIDATE_FPS}:round=down,split=2[score][full];\
                 [score]scale=160:90:force_original_aspect_ratio=decrease,format=gray[small];\
                 [full]{}[big]",
                fit_filter(width, height)
            ),
        )
        .opt("-map", "[small]")
        .opt("-f", "image2")
        .output(&dir.join("%03d.png"))
        .opt("-map", "[big]")
        .opt("-q:v", "2")
        .opt("-f", "image2")
        .output(&dir.join("full-%03d.jpg"));
    a
}

/// How far around the requested time to look for a better frame than a black or flat one.
const SEARCH_BEFORE: f64 = 1.0;
const SEARCH_AFTER: f64 = 4.0;
/// Candidate frames per second in the search window.
const CANDIDATE_FPS: u32 = 2;

/// Luma statistics of a small candidate frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameStats {
    pub mean: f64,
    pub std_dev: f64,
}

impl FrameStats {
    pub fn of(img: &image::GrayImage) -> Self {
        let n = (img.width() * img.height()).max(1) as f64;
        let mean = img.pixels().map(|p| f64::from(p.0[0])).sum::<f64>() / n;
        let var = img
            .pixels()
            .map(|p| (f64::from(p.0[0]) - mean).powi(2))
            .sum::<f64>()
            / n;
        FrameStats {
            mean,
            std_dev: var.sqrt(),
        }
    }

    /// Not a black, white or flat (fade, slate colour) frame.
    pub fn is_presentable(&self) -> bool {
        self.mean > 20.0 && self.mean < 235.0 && self.std_dev > 12.0
    }
}

/// One sampled frame of the search window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Frame number within the sampled window.
    pub index: u32,
    /// Approximate source time, for choosing the one nearest the mark.
    pub time: f64,
    pub stats: FrameStats,
}

/// Picks the candidate to use: the presentable one nearest the requested time, else the
/// most detailed one.
pub fn choose(at: f64, candidates: &[Candidate]) -> Option<Candidate> {
    let nearest_good = candidates
        .iter()
        .filter(|c| c.stats.is_presentable())
        .min_by(|a, b| (a.time - at).abs().total_cmp(&(b.time - at).abs()));
    nearest_good
        .or_else(|| {
            candidates
                .iter()
                .max_by(|a, b| a.stats.std_dev.total_cmp(&b.stats.std_dev))
        })
        .copied()
}

/// Decodes small frames around `at` (one short seek, not the whole file) and scores them.
async fn candidates(
    source: &Path,
    start: f64,
    width: u32,
    height: u32,
    dir: &Path,
    progress: &ScaledProgress,
) -> Result<Vec<Candidate>> {
    std::fs::create_dir_all(dir).map_err(MediaError::io("creating", dir))?;
    let a = candidates_args(source, start, width, height, dir);
    ffmpeg(a.as_slice(), 0.0, progress).await?;
    let mut out = Vec::new();
    for index in 0..((SEARCH_BEFORE + SEARCH_AFTER) as u32 * CANDIDATE_FPS + 1) {
        // image2 numbers files from 1.
        let path = dir.join(format!("{:03}.png", index + 1));
        let Ok(img) = image::open(&path) else {
            continue;
        };
        let time = start + f64::from(index) / f64::from(CANDIDATE_FPS);
        out.push(Candidate {
            index,
            time,
            stats: FrameStats::of(&img.to_luma8()),
        });
    }
    Ok(out)
}

/// The poster frame of `input.source`, checked and stored at `input.dest`.
pub async fn make_thumbnail(
    storage: &Storage,
    input: &ThumbnailInput,
    work: &Path,
    progress: &ScaledProgress,
) -> Result<StoredObject> {
    let source = storage.readable_path(&input.source, work).await?;
    let out = work.join("thumbnail.jpg");
    extract_thumbnail(
        &source,
        input.at_seconds,
        input.width,
        input.height,
        work,
        &out,
        progress,
    )
    .await?;
    storage.store(&out, &input.dest).await
}

pub async fn extract_thumbnail(
    source: &Path,
    at: f64,
    width: u32,
    height: u32,
    work: &Path,
    dest: &Path,
    progress: &ScaledProgress,
) -> Result<()> {
    let start = (at - SEARCH_BEFORE).max(0.0);
    let dir = work.join("candidates");
    let found = candidates(source, start, width, height, &dir, progress).await?;
    if let Some(chosen) = choose(at, &found) {
        if !chosen.stats.is_presentable() || (chosen.time - at).abs() > 0.5 {
            tracing::info!(requested = at, chosen = chosen.time, stats = ?chosen.stats, "thumbnail moved off a black or flat frame");
        }
        // image2 numbers files from 1.
        let picture = dir.join(format!("full-{:03}.jpg", chosen.index + 1));
        std::fs::rename(&picture, dest).map_err(MediaError::io("moving", &picture))?;
    }
    if !dest.exists() {
        // No candidate decoded (a clip shorter than a frame step): take the frame at the mark,
        // or the first frame when the mark is past the last decodable one.
        ffmpeg(
            thumbnail_args(source, at, width, height, dest).as_slice(),
            0.0,
            progress,
        )
        .await?;
        if !dest.exists() {
            ffmpeg(
                thumbnail_args(source, 0.0, width, height, dest).as_slice(),
                0.0,
                progress,
            )
            .await?;
        }
    }
    verify_jpeg(dest, width, height)
}

/// Decodes the JPEG we are about to publish and checks its size.
pub fn verify_jpeg(path: &Path, width: u32, height: u32) -> Result<()> {
    let reader = image::ImageReader::open(path)
        .map_err(MediaError::io("reading thumbnail", path))?
        .with_guessed_format()
        .map_err(MediaError::io("reading thumbnail", path))?;
    if reader.format() != Some(image::ImageFormat::Jpeg) {
        return Err(MediaError::Verification("thumbnail is not a JPEG".into()));
    }
    let (w, h) = reader
        .into_dimensions()
        .map_err(|e| MediaError::Verification(format!("thumbnail does not decode: {e}")))?;
    if (w, h) != (width, height) {
        return Err(MediaError::Verification(format!(
            "thumbnail is {w}x{h}, expected {width}x{height}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(mean: f64, std_dev: f64) -> FrameStats {
        FrameStats { mean, std_dev }
    }

    #[test]
    fn black_and_flat_frames_are_skipped_for_the_nearest_good_one() {
        let c = |index: u32, time: f64, mean: f64, std_dev: f64| Candidate {
            index,
            time,
            stats: stats(mean, std_dev),
        };
        let all = [
            c(0, 9.0, 60.0, 40.0),
            c(2, 10.0, 2.0, 1.0),
            c(3, 10.5, 128.0, 3.0),
            c(6, 12.0, 90.0, 30.0),
        ];
        assert_eq!(choose(10.0, &all).map(|c| c.index), Some(0));
        let bad = [c(0, 10.0, 2.0, 1.0), c(1, 10.5, 4.0, 6.0)];
        assert_eq!(
            choose(10.0, &bad).map(|c| c.index),
            Some(1),
            "all bad: the most detailed"
        );
        assert_eq!(choose(10.0, &[]), None);
    }

    #[test]
    fn stats_of_a_flat_image() {
        let img = image::GrayImage::from_pixel(16, 9, image::Luma([0]));
        let s = FrameStats::of(&img);
        assert_eq!((s.mean, s.std_dev), (0.0, 0.0));
        assert!(!s.is_presentable());
    }
}
