//! Poster frame: one frame near the requested time, fitted into the exact output size with
//! black bars (letterbox or pillarbox) so the whole picture stays visible.

use crate::error::{MediaError, Result};
use crate::ffmpeg::run::ScaledProgress;
use crate::ffmpeg::{ffmpeg, FfmpegArgs};
use std::path::Path;

pub fn thumbnail_args(source: &Path, at: f64, width: u32, height: u32, dest: &Path) -> FfmpegArgs {
    let mut a = FfmpegArgs::new();
    a.input_at(at.max(0.0), source)
        .opt("-map", "0:v:0")
        .opt("-frames:v", "1")
        .opt(
            "-vf",
            format!(
                "scale={width}:{height}:force_original_aspect_ratio=decrease:flags=lanczos,\
                 pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,format=yuvj420p"
            ),
        )
        .opt("-q:v", "2")
        .opt("-f", "image2")
        .output(dest);
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

/// Picks the candidate to use: the presentable one nearest the requested time, else the
/// most detailed one. `candidates` are `(time, stats)`.
pub fn choose(at: f64, candidates: &[(f64, FrameStats)]) -> Option<f64> {
    let nearest_good = candidates
        .iter()
        .filter(|(_, s)| s.is_presentable())
        .min_by(|a, b| (a.0 - at).abs().total_cmp(&(b.0 - at).abs()));
    nearest_good
        .or_else(|| {
            candidates
                .iter()
                .max_by(|a, b| a.1.std_dev.total_cmp(&b.1.std_dev))
        })
        .map(|(t, _)| *t)
}

/// Decodes a few small frames around `at` (one short seek, not the whole file) and scores them.
async fn candidates(
    source: &Path,
    at: f64,
    work: &Path,
    progress: &ScaledProgress,
) -> Result<Vec<(f64, FrameStats)>> {
    let start = (at - SEARCH_BEFORE).max(0.0);
    let dir = work.join("candidates");
    std::fs::create_dir_all(&dir).map_err(MediaError::io("creating", &dir))?;
    let mut a = FfmpegArgs::new();
    a.input_at(start, source)
        .opt("-map", "0:v:0")
        .opt("-t", format!("{:.3}", SEARCH_BEFORE + SEARCH_AFTER))
        .opt("-vf", format!("fps={CANDIDATE_FPS}:round=down,scale=160:90:force_original_aspect_ratio=decrease,format=gray"))
        .opt("-f", "image2")
        .output(&dir.join("%03d.png"));
    ffmpeg(a.as_slice(), 0.0, progress).await?;
    let mut out = Vec::new();
    for i in 1..=((SEARCH_BEFORE + SEARCH_AFTER) as u32 * CANDIDATE_FPS + 1) {
        let path = dir.join(format!("{i:03}.png"));
        let Ok(img) = image::open(&path) else {
            continue;
        };
        let t = start + f64::from(i - 1) / f64::from(CANDIDATE_FPS);
        out.push((t, FrameStats::of(&img.to_luma8())));
    }
    Ok(out)
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
    let found = candidates(source, at, work, progress).await?;
    let chosen = choose(at, &found).unwrap_or(at);
    if (chosen - at).abs() > f64::EPSILON {
        tracing::info!(
            requested = at,
            chosen,
            "thumbnail moved off a black or flat frame"
        );
    }
    ffmpeg(
        thumbnail_args(source, chosen, width, height, dest).as_slice(),
        0.0,
        progress,
    )
    .await?;
    if !dest.exists() {
        // Seeking past the last decodable frame yields nothing: take the first frame instead.
        ffmpeg(
            thumbnail_args(source, 0.0, width, height, dest).as_slice(),
            0.0,
            progress,
        )
        .await?;
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
        let c = [
            (9.0, stats(60.0, 40.0)),
            (10.0, stats(2.0, 1.0)),
            (10.5, stats(128.0, 3.0)),
            (12.0, stats(90.0, 30.0)),
        ];
        assert_eq!(choose(10.0, &c), Some(9.0));
        let c = [(10.0, stats(2.0, 1.0)), (10.5, stats(4.0, 6.0))];
        assert_eq!(choose(10.0, &c), Some(10.5), "all bad: the most detailed");
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
