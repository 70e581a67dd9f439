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

pub async fn extract_thumbnail(
    source: &Path,
    at: f64,
    width: u32,
    height: u32,
    dest: &Path,
    progress: &ScaledProgress,
) -> Result<()> {
    ffmpeg(
        thumbnail_args(source, at, width, height, dest).as_slice(),
        0.0,
        progress,
    )
    .await?;
    if at > 0.0 && !dest.exists() {
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
fn verify_jpeg(path: &Path, width: u32, height: u32) -> Result<()> {
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
