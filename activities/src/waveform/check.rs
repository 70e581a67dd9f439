//! The waveform's rules, checked by the generator and by the verification gate alike.

use super::*;

#[derive(Debug, serde::Deserialize)]
pub(super) struct WaveformJson {
    pub(super) version: u32,
    pub(super) channels: u32,
    pub(super) sample_rate: u32,
    pub(super) samples_per_pixel: u32,
    pub(super) bits: u32,
    pub(super) length: u64,
    pub(super) data: Vec<i64>,
}

/// Number of points expected for `duration` seconds: a final partial block counts.
pub fn expected_length(duration: f64) -> u64 {
    (duration * f64::from(POINTS_PER_SECOND)).ceil().max(0.0) as u64
}

/// How far `length` may be from [`expected_length`] before the output is refused: the
/// container's duration and the decoded audio may differ by a frame or two, and a probe's
/// duration by a little more on long files; a waveform a few percent short is a real loss.
pub(super) fn length_tolerance(expected: u64) -> u64 {
    2 + expected / 100
}

pub(super) fn check_json(doc: &WaveformJson, duration: f64) -> Result<()> {
    let fail = |msg: String| Err(MediaError::Verification(format!("{JSON_NAME}: {msg}")));
    if doc.version != 2 {
        return fail(format!("version is {}, expected 2", doc.version));
    }
    if doc.channels != 1 {
        return fail(format!("{} channels, expected 1", doc.channels));
    }
    if doc.bits != 8 {
        return fail(format!("{} bits, expected 8", doc.bits));
    }
    if doc.samples_per_pixel < 2
        || u64::from(doc.samples_per_pixel) * u64::from(POINTS_PER_SECOND)
            != u64::from(doc.sample_rate)
    {
        return fail(format!(
            "{} samples per point at {} Hz is not {POINTS_PER_SECOND} points per second",
            doc.samples_per_pixel, doc.sample_rate
        ));
    }
    if doc.data.len() as u64 != 2 * doc.length {
        return fail(format!(
            "length is {} but data holds {} values",
            doc.length,
            doc.data.len()
        ));
    }
    if doc.length == 0 {
        return fail("no points".into());
    }
    if let Some(v) = doc.data.iter().find(|v| !(-128..=127).contains(*v)) {
        return fail(format!("value {v} is outside -128..=127"));
    }
    if let Some(pair) = doc.data.chunks_exact(2).find(|p| p[0] > p[1]) {
        return fail(format!("a point has min {} above max {}", pair[0], pair[1]));
    }
    if duration > 0.0 {
        let expected = expected_length(duration);
        if doc.length.abs_diff(expected) > length_tolerance(expected) {
            return fail(format!(
                "{} points for {duration:.3} s of audio, expected about {expected}",
                doc.length
            ));
        }
    }
    Ok(())
}

pub(super) fn verify_png(path: &Path) -> Result<()> {
    let reader = image::ImageReader::open(path)
        .map_err(MediaError::io("reading", path))?
        .with_guessed_format()
        .map_err(MediaError::io("reading", path))?;
    if reader.format() != Some(image::ImageFormat::Png) {
        return Err(MediaError::Verification(format!("{PNG_NAME} is not a PNG")));
    }
    let img = reader
        .decode()
        .map_err(|e| MediaError::Verification(format!("{PNG_NAME} does not decode: {e}")))?;
    if (img.width(), img.height()) != (IMAGE_WIDTH, IMAGE_HEIGHT) {
        return Err(MediaError::Verification(format!(
            "{PNG_NAME} is {}x{}, expected {IMAGE_WIDTH}x{IMAGE_HEIGHT}",
            img.width(),
            img.height()
        )));
    }
    Ok(())
}

/// Checks both files; returns the number of points.
pub(super) fn verify(json: &Path, png: &Path, duration: f64) -> Result<u64> {
    let text = std::fs::read(json).map_err(MediaError::io("reading", json))?;
    let length = check_json_bytes(&text, duration)?;
    verify_png(png)?;
    Ok(length)
}

/// The waveform JSON's rules (module documentation), for the generator and the
/// verification gate alike: returns the number of points. `duration` 0 skips the length.
pub fn check_json_bytes(bytes: &[u8], duration: f64) -> Result<u64> {
    let doc: WaveformJson = serde_json::from_slice(bytes)
        .map_err(|e| MediaError::Verification(format!("{JSON_NAME} does not parse: {e}")))?;
    check_json(&doc, duration)?;
    Ok(doc.length)
}

/// The picture's rules: a PNG of [`IMAGE_WIDTH`]x[`IMAGE_HEIGHT`] that decodes.
pub fn check_png(path: &Path) -> Result<()> {
    verify_png(path)
}
