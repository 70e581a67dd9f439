//! Waveform of an audio job: `waveform.json` for players that draw one (Peaks.js and other
//! users of BBC's waveform-data.js) and `waveform.png`, a 1280x720 picture for people.
//!
//! # The JSON
//! BBC audiowaveform's JSON format, version 2, exactly as `audiowaveform --pixels-per-second
//! 10 -b 8` writes it:
//! `{"version":2,"channels":1,"sample_rate":48000,"samples_per_pixel":4800,"bits":8,"length":L,"data":[min0,max0,min1,max1,…]}`
//!
//! - **Decode.** The first audio stream of the source is decoded by ffmpeg to signed 16-bit
//!   samples at [`SAMPLE_RATE`] (48 kHz: the loudness-normalized audio already is, so
//!   nothing is resampled in practice), which makes `samples_per_pixel` exactly 4800, i.e.
//!   [`POINTS_PER_SECOND`] = 10 points per second for any source rate.
//! - **Channels merged into one** by ffmpeg's downmix (`-ac 1`) before either generator sees
//!   the audio: for stereo each mono sample is the average `(L + R) / 2`; other layouts use
//!   libswresample's downmix matrix with its weights scaled to add up to 1, so the mix cannot
//!   clip (5.1: centre 0.29, front left and right 0.21 each, i.e. -3 dB, surrounds 0.15
//!   each, i.e. -6 dB, LFE left out). audiowaveform, when used, therefore reads a mono WAV:
//!   its own channel averaging never applies, and both generators compute the same numbers
//!   from the same samples.
//! - **Points.** For each block of 4800 consecutive samples, the smallest and largest sample;
//!   a final partial block is a point too (audiowaveform's `WaveformGenerator::done`), so
//!   `length = ceil(samples / 4800)`, i.e. `ceil(duration × 10)`.
//! - **8 bits.** Each 16-bit min/max is divided by 256 rounding toward zero, as audiowaveform
//!   does (`value / 256`, C++ integer division; not an arithmetic `>> 8`, which would turn
//!   -1..-255 into -1): full scale is -128..=127, and low-level noise reads 0.
//!
//! # The PNG
//! [`IMAGE_WIDTH`]x[`IMAGE_HEIGHT`], RGB, on a [`BACKGROUND`] (#0f172a) field with a
//! [`CENTRE_LINE`] (#334155) through the middle row. Each of the 1280 columns covers an equal
//! share of the audio and gets a vertical [`WAVEFORM`] (#38bdf8) line from the lowest min to
//! the highest max in it, around the centre line, scaled so that 8-bit full scale (±128)
//! spans the height. The native generator summarizes the samples a second time for it, in
//! blocks of `int(duration × 48000) / 1280` samples (what audiowaveform's `--zoom auto`
//! uses), so a short clip is drawn with as much detail as a long one; without a duration it
//! spreads the JSON's points over the columns (each column takes the extremes of the points
//! that fall in it; a point spans several columns when there are fewer than 1280).
//! audiowaveform draws the same picture with the same colours (`--no-axis-labels`), only
//! without the centre line.
//!
//! # Generators
//! If an `audiowaveform` executable is found (`$AUDIOWAVEFORM`, else `audiowaveform` on
//! `PATH`; `AUDIOWAVEFORM=` set but empty disables it), the source is decoded to a temporary
//! mono WAV with the usual ffmpeg runner and audiowaveform writes both files. If it fails or
//! its output does not pass the checks, the native generator runs instead (logged as a
//! warning). The native generator streams the decoded samples from ffmpeg's stdout and
//! keeps only one `(min, max)` pair per 4800 samples (about 100 KiB for three hours of
//! audio), never the audio itself. Both outputs are checked before returning: the JSON
//! parses, has version 2, one channel, 8 bits, 10 points per second, `length` matching the
//! data and the duration; the PNG decodes at 1280x720.

use crate::error::{MediaError, Result};
use crate::ffmpeg::run::ScaledProgress;
use crate::ffmpeg::{ffmpeg, FfmpegArgs};
use crate::storage::Storage;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use tokio::io::AsyncReadExt;
use transcoder_workflows::media::{ObjectRef, WaveformInput, WaveformOutput};

/// Points (min/max pairs) per second of audio.
pub const POINTS_PER_SECOND: u32 = 10;
/// Rate the audio is decoded at before summarizing.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples summarized by each point: `samples_per_pixel` in the JSON.
pub const SAMPLES_PER_POINT: u32 = SAMPLE_RATE / POINTS_PER_SECOND;

pub const IMAGE_WIDTH: u32 = 1280;
pub const IMAGE_HEIGHT: u32 = 720;
/// PNG background: #0f172a.
pub const BACKGROUND: [u8; 3] = [0x0f, 0x17, 0x2a];
/// PNG waveform: #38bdf8.
pub const WAVEFORM: [u8; 3] = [0x38, 0xbd, 0xf8];
/// PNG centre line (zero amplitude), a little lighter than the background: #334155.
pub const CENTRE_LINE: [u8; 3] = [0x33, 0x41, 0x55];

pub const JSON_NAME: &str = "waveform.json";
pub const PNG_NAME: &str = "waveform.png";

pub const GENERATOR_AUDIOWAVEFORM: &str = "audiowaveform";
pub const GENERATOR_NATIVE: &str = "native";

/// Share of this step's progress spent decoding in the native generator; drawing and
/// checking the files take the rest.
const DECODE_SHARE: f64 = 0.95;

/// The files [`generate_waveform`] wrote into the work folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaveformFiles {
    /// `waveform.json` (audiowaveform JSON format version 2).
    pub json: PathBuf,
    /// `waveform.png` (1280x720).
    pub png: PathBuf,
    /// Number of min/max pairs in the JSON: 10 per second of audio, rounded up.
    pub length: u64,
    /// Which generator wrote the files: [`GENERATOR_AUDIOWAVEFORM`] or [`GENERATOR_NATIVE`].
    pub generator: String,
}

/// Writes `waveform.json` and `waveform.png` for the first audio stream of `source` into
/// `work` (see the module documentation for what they contain). `duration_seconds` is the
/// length of the audio, for progress and to check the number of points (0 skips that check).
pub async fn generate_waveform(
    source: &Path,
    work: &Path,
    duration_seconds: f64,
    progress: &ScaledProgress,
) -> Result<WaveformFiles> {
    generate_waveform_filtered(source, None, work, duration_seconds, progress).await
}

/// Stores the drawn files where the job's keys say; returns what was stored and its bytes.
pub async fn publish(
    storage: &Storage,
    files: &WaveformFiles,
    json_dest: &ObjectRef,
    png_dest: &ObjectRef,
) -> Result<(WaveformOutput, u64)> {
    let json_bytes = storage.put_file(&files.json, json_dest).await?;
    let png_bytes = storage.put_file(&files.png, png_dest).await?;
    let made = WaveformOutput {
        json: json_dest.clone(),
        png: png_dest.clone(),
        length: files.length,
    };
    Ok((made, json_bytes + png_bytes))
}

/// An audio job's waveform in one run (jobs from before the sound was chunked): drawn from
/// what listeners hear, the loudness-normalized sound, in the same decode, and stored.
pub async fn make_waveform(
    storage: &Storage,
    input: &WaveformInput,
    source: &Path,
    work: &Path,
    duration: f64,
    progress: &ScaledProgress,
) -> Result<(WaveformOutput, u64)> {
    let filter = crate::audio::loudness::output_audio_filter(input.loudness.as_ref());
    let files = generate_waveform_filtered(source, Some(&filter), work, duration, progress).await?;
    tracing::info!(generator = %files.generator, length = files.length, "waveform drawn");
    publish(storage, &files, &input.json_dest, &input.png_dest).await
}

/// [`generate_waveform`] of `source` passed through the ffmpeg audio filter `audio_filter`
/// first (e.g. the loudness normalization), in the same decode: no intermediate file of
/// the filtered audio is needed. The filter runs on the source's channels, before the
/// downmix to mono.
pub async fn generate_waveform_filtered(
    source: &Path,
    audio_filter: Option<&str>,
    work: &Path,
    duration_seconds: f64,
    progress: &ScaledProgress,
) -> Result<WaveformFiles> {
    let audiowaveform =
        resolve_audiowaveform(std::env::var_os("AUDIOWAVEFORM"), std::env::var_os("PATH"));
    generate_with(
        source,
        audio_filter,
        work,
        duration_seconds,
        progress,
        audiowaveform.as_deref(),
    )
    .await
}

/// [`generate_waveform_filtered`] with the audiowaveform executable given (`None`: native
/// only).
async fn generate_with(
    source: &Path,
    filter: Option<&str>,
    work: &Path,
    duration: f64,
    progress: &ScaledProgress,
    audiowaveform: Option<&Path>,
) -> Result<WaveformFiles> {
    // Absolute paths: a relative name starting with '-' must never read as an option.
    let source = std::path::absolute(source).map_err(MediaError::io("resolving", source))?;
    let work = std::path::absolute(work).map_err(MediaError::io("resolving", work))?;
    let json = work.join(JSON_NAME);
    let png = work.join(PNG_NAME);
    let files = |length, generator: &str| WaveformFiles {
        json: json.clone(),
        png: png.clone(),
        length,
        generator: generator.to_string(),
    };

    if let Some(bin) = audiowaveform {
        // Deleted when `wav` drops, whatever happens below.
        let wav = tempfile::Builder::new()
            .prefix("waveform-")
            .suffix(".wav")
            .tempfile_in(&work)
            .map_err(MediaError::io("creating a temporary file in", &work))?;
        // A source ffmpeg cannot decode fails here, as it would natively.
        ffmpeg(
            wav_args(&source, filter, wav.path()).as_slice(),
            duration,
            progress,
        )
        .await?;
        let outcome = async {
            run_audiowaveform(bin, &audiowaveform_json_args(wav.path(), &json)).await?;
            run_audiowaveform(bin, &audiowaveform_png_args(wav.path(), &png)).await?;
            verify(&json, &png, duration)
        }
        .await;
        match outcome {
            Ok(length) => {
                progress.set(1.0);
                return Ok(files(length, GENERATOR_AUDIOWAVEFORM));
            }
            Err(error) => tracing::warn!(
                %error,
                audiowaveform = %bin.display(),
                "audiowaveform did not produce a usable waveform; drawing it natively"
            ),
        }
    }

    let decoded = decode_points(&source, filter, duration, progress).await?;
    write_json(&json, &decoded.points)?;
    write_png(&png, &decoded.image)?;
    let length = verify(&json, &png, duration)?;
    progress.set(1.0);
    Ok(files(length, GENERATOR_NATIVE))
}

mod args;
mod audiowaveform;
mod check;
mod native;
mod stretch;
#[cfg(test)]
mod tests;

pub use args::*;
pub use audiowaveform::*;
pub use check::*;
pub use native::*;
pub use stretch::*;
