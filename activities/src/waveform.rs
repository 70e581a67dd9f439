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
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

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

// ---------------------------------------------------------------------------------------
// ffmpeg command lines

/// The decode shared by both generators: first audio stream, through `filter` if any,
/// downmixed to mono, 48 kHz, signed 16-bit PCM.
fn mono_pcm(a: &mut FfmpegArgs, source: &Path, filter: Option<&str>) {
    a.input(source).opt("-map", "0:a:0");
    if let Some(filter) = filter {
        a.opt("-af", filter);
    }
    a.opt("-ac", "1")
        .opt("-ar", SAMPLE_RATE.to_string())
        .opt("-c:a", "pcm_s16le");
}

/// ffmpeg writing raw mono samples (s16le) of `source` to stdout, for the native generator.
/// Like [`FfmpegArgs::new`] but without `-progress pipe:1`: stdout carries the samples, and
/// progress is counted from the samples themselves.
pub fn pcm_args(source: &Path, filter: Option<&str>) -> FfmpegArgs {
    let mut a = FfmpegArgs::default();
    a.flags(["-hide_banner", "-nostdin", "-y", "-nostats"])
        .opt("-loglevel", "error");
    mono_pcm(&mut a, source, filter);
    a.opt("-f", "s16le").output(Path::new("pipe:1"));
    a
}

/// ffmpeg writing a mono WAV of `source` for audiowaveform (RF64 only past 4 GiB, about 12
/// hours at 48 kHz mono).
pub fn wav_args(source: &Path, filter: Option<&str>, wav: &Path) -> FfmpegArgs {
    let mut a = FfmpegArgs::new();
    mono_pcm(&mut a, source, filter);
    a.opt("-f", "wav").opt("-rf64", "auto").output(wav);
    a
}

// ---------------------------------------------------------------------------------------
// audiowaveform

/// Which audiowaveform to run: `$AUDIOWAVEFORM` when set (set but empty: none), else an
/// executable `audiowaveform` in one of the `PATH` folders.
fn resolve_audiowaveform(var: Option<OsString>, path: Option<OsString>) -> Option<PathBuf> {
    match var {
        Some(v) if v.is_empty() => None,
        Some(v) => Some(PathBuf::from(v)),
        None => std::env::split_paths(&path?)
            .map(|dir| dir.join("audiowaveform"))
            .find(|candidate| is_executable(candidate)),
    }
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

fn hex(rgb: [u8; 3]) -> String {
    format!("{:02x}{:02x}{:02x}", rgb[0], rgb[1], rgb[2])
}

/// `audiowaveform -q -i WAV -o JSON --pixels-per-second 10 -b 8`: the JSON, at 10 points
/// per second (4800 samples per point for our 48 kHz WAV), 8 bits, one merged channel.
pub fn audiowaveform_json_args(wav: &Path, json: &Path) -> Vec<OsString> {
    vec![
        "-q".into(),
        "-i".into(),
        wav.into(),
        "-o".into(),
        json.into(),
        "--pixels-per-second".into(),
        POINTS_PER_SECOND.to_string().into(),
        "-b".into(),
        "8".into(),
    ]
}

/// `audiowaveform -q -i WAV -o PNG -w 1280 -h 720 --zoom auto --no-axis-labels
/// --background-color 0f172a --waveform-color 38bdf8`: the whole audio fitted to the width,
/// in the native palette, without border or time labels.
pub fn audiowaveform_png_args(wav: &Path, png: &Path) -> Vec<OsString> {
    vec![
        "-q".into(),
        "-i".into(),
        wav.into(),
        "-o".into(),
        png.into(),
        "-w".into(),
        IMAGE_WIDTH.to_string().into(),
        "-h".into(),
        IMAGE_HEIGHT.to_string().into(),
        "--zoom".into(),
        "auto".into(),
        "--no-axis-labels".into(),
        "--background-color".into(),
        hex(BACKGROUND).into(),
        "--waveform-color".into(),
        hex(WAVEFORM).into(),
    ]
}

async fn run_audiowaveform(bin: &Path, args: &[OsString]) -> Result<()> {
    tracing::debug!(bin = %bin.display(), args = ?args, "audiowaveform");
    let mut cmd = Command::new(bin);
    crate::process::die_with_parent(cmd.as_std_mut());
    let output = cmd
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| MediaError::Spawn {
            tool: "audiowaveform",
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(MediaError::Tool {
            tool: "audiowaveform",
            status: output.status.to_string(),
            detail: crate::ffmpeg::run::stderr_tail(&output.stderr),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Native generator

/// One point of the waveform, in 8 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Point {
    pub min: i8,
    pub max: i8,
}

/// 16 bits to 8 the way audiowaveform does: divide by 256, rounding toward zero.
fn to_8_bits(sample: i16) -> i8 {
    (i32::from(sample) / 256) as i8
}

/// Min and max of each block of `samples_per_point` samples, in 8 bits: audiowaveform's
/// `WaveformGenerator` for one channel.
#[derive(Debug)]
struct PeakSummary {
    samples_per_point: u32,
    count: u32,
    min: i16,
    max: i16,
    points: Vec<Point>,
}

impl PeakSummary {
    fn new(samples_per_point: u32) -> Self {
        assert!(samples_per_point > 0);
        PeakSummary {
            samples_per_point,
            count: 0,
            min: i16::MAX,
            max: i16::MIN,
            points: Vec::new(),
        }
    }

    fn push(&mut self, sample: i16) {
        self.min = self.min.min(sample);
        self.max = self.max.max(sample);
        self.count += 1;
        if self.count == self.samples_per_point {
            self.close_block();
        }
    }

    fn close_block(&mut self) {
        self.points.push(Point {
            min: to_8_bits(self.min),
            max: to_8_bits(self.max),
        });
        self.count = 0;
        self.min = i16::MAX;
        self.max = i16::MIN;
    }

    /// All points, the last partial block included.
    fn finish(mut self) -> Vec<Point> {
        if self.count > 0 {
            self.close_block();
        }
        self.points
    }
}

/// Cuts raw s16le bytes, arriving in chunks of any size, into samples (a sample split
/// across two chunks is put back together; ffmpeg never ends on half a sample).
#[derive(Debug, Default)]
struct SampleSplitter {
    odd_byte: Option<u8>,
    samples: u64,
}

impl SampleSplitter {
    fn feed(&mut self, mut bytes: &[u8], mut each: impl FnMut(i16)) {
        if let Some(low) = self.odd_byte.take() {
            let Some((&high, rest)) = bytes.split_first() else {
                self.odd_byte = Some(low);
                return;
            };
            each(i16::from_le_bytes([low, high]));
            self.samples += 1;
            bytes = rest;
        }
        let pairs = bytes.chunks_exact(2);
        self.odd_byte = pairs.remainder().first().copied();
        self.samples += pairs.len() as u64;
        for pair in pairs {
            each(i16::from_le_bytes([pair[0], pair[1]]));
        }
    }
}

/// Samples per column of the picture for `duration` seconds, as audiowaveform's `--zoom
/// auto` computes it (`int(duration × rate) / width`); `None` when the duration is unknown.
fn image_samples_per_column(duration: f64) -> Option<u32> {
    if !(duration.is_finite() && duration > 0.0) {
        return None;
    }
    let samples = (duration * f64::from(SAMPLE_RATE)) as u64;
    Some((samples / u64::from(IMAGE_WIDTH)).clamp(1, u64::from(u32::MAX)) as u32)
}

/// What the native generator keeps while the samples stream past.
#[derive(Debug)]
struct Summaries {
    /// 10 per second, for the JSON.
    points: Vec<Point>,
    /// About 1280 for the picture when the duration is known (so that a short clip is drawn
    /// with as much detail as audiowaveform draws it), else the JSON's points again.
    image: Vec<Point>,
}

/// Runs ffmpeg with [`pcm_args`] and summarizes the samples as they arrive.
async fn decode_points(
    source: &Path,
    filter: Option<&str>,
    duration: f64,
    progress: &ScaledProgress,
) -> Result<Summaries> {
    let args = pcm_args(source, filter);
    tracing::debug!(args = ?args.as_slice(), "ffmpeg (waveform samples)");
    let mut child = crate::ffmpeg::run::spawn_ffmpeg(args.as_slice())?;
    let stderr_task = tokio::spawn(crate::ffmpeg::run::read_stderr_tail(child.stderr.take()));
    let mut stdout = child.stdout.take().ok_or_else(|| MediaError::Spawn {
        tool: "ffmpeg",
        source: std::io::Error::other("stdout is not piped"),
    })?;

    let expected_samples = duration * f64::from(SAMPLE_RATE);
    let mut splitter = SampleSplitter::default();
    let mut points = PeakSummary::new(SAMPLES_PER_POINT);
    let mut image = image_samples_per_column(duration).map(PeakSummary::new);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stdout
            .read(&mut buf)
            .await
            .map_err(MediaError::io("reading the decoded samples of", source))?;
        if n == 0 {
            break;
        }
        splitter.feed(&buf[..n], |sample| {
            points.push(sample);
            if let Some(image) = image.as_mut() {
                image.push(sample);
            }
        });
        if expected_samples > 0.0 {
            progress.set(DECODE_SHARE * splitter.samples as f64 / expected_samples);
        }
    }

    let status = child.wait().await.map_err(|source| MediaError::Spawn {
        tool: "ffmpeg",
        source,
    })?;
    let stderr = stderr_task.await.unwrap_or_default();
    if !status.success() {
        return Err(MediaError::Tool {
            tool: "ffmpeg",
            status: status.to_string(),
            detail: crate::ffmpeg::run::stderr_tail(&stderr),
        });
    }
    if splitter.samples == 0 {
        return Err(MediaError::Unreadable(
            "the audio stream decodes to no samples".into(),
        ));
    }
    progress.set(DECODE_SHARE);
    let points = points.finish();
    let image = image.map_or_else(|| points.clone(), PeakSummary::finish);
    Ok(Summaries { points, image })
}

/// Writes the JSON byte for byte as audiowaveform's `WaveformBuffer::saveAsJson` does
/// (same key order, no spaces, final newline).
fn write_json(path: &Path, points: &[Point]) -> Result<()> {
    let write = || -> std::io::Result<()> {
        let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
        write!(
            w,
            "{{\"version\":2,\"channels\":1,\"sample_rate\":{SAMPLE_RATE},\
             \"samples_per_pixel\":{SAMPLES_PER_POINT},\"bits\":8,\"length\":{},\"data\":[",
            points.len()
        )?;
        for (i, p) in points.iter().enumerate() {
            if i > 0 {
                w.write_all(b",")?;
            }
            write!(w, "{},{}", p.min, p.max)?;
        }
        w.write_all(b"]}\n")?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()
    };
    write().map_err(MediaError::io("writing", path))
}

/// Row of an 8-bit value: +128 at the top edge, -128 at the bottom, 0 on the centre line.
fn row_of(value: i8) -> u32 {
    let h = IMAGE_HEIGHT as i32;
    ((128 - i32::from(value)) * h / 256).clamp(0, h - 1) as u32
}

/// Draws the waveform picture (see the module documentation).
pub fn render_image(points: &[Point]) -> image::RgbImage {
    let mut img = image::RgbImage::from_pixel(IMAGE_WIDTH, IMAGE_HEIGHT, image::Rgb(BACKGROUND));
    let centre = row_of(0);
    for x in 0..IMAGE_WIDTH {
        img.put_pixel(x, centre, image::Rgb(CENTRE_LINE));
    }
    let n = points.len() as u64;
    if n == 0 {
        return img;
    }
    let width = u64::from(IMAGE_WIDTH);
    for x in 0..width {
        let start = x * n / width;
        let end = ((x + 1) * n / width).max(start + 1);
        let (low, high) = points[start as usize..end as usize]
            .iter()
            .fold((i8::MAX, i8::MIN), |(low, high), p| {
                (low.min(p.min), high.max(p.max))
            });
        let (top, bottom) = (row_of(high), row_of(low));
        for y in top.min(bottom)..=top.max(bottom) {
            img.put_pixel(x as u32, y, image::Rgb(WAVEFORM));
        }
    }
    img
}

fn write_png(path: &Path, points: &[Point]) -> Result<()> {
    render_image(points)
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|e| MediaError::Io {
            context: "writing",
            path: path.to_path_buf(),
            source: match e {
                image::ImageError::IoError(e) => e,
                other => std::io::Error::other(other),
            },
        })
}

// ---------------------------------------------------------------------------------------
// In chunks

/// A stretch of a programme's waveform, summarized by the chunk that decoded it: the points
/// of its 100 ms blocks, and the extremes of each picture column it touches (the first and
/// last may be shared with the neighbours). Min and max combine, so the pieces join into
/// exactly what one pass over the whole programme summarizes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WaveformPiece {
    pub points: Vec<Point>,
    /// Index of `columns[0]` among the picture's columns.
    pub first_column: u64,
    pub columns: Vec<Point>,
}

/// Summarizes mono samples starting at programme sample `first_sample` (a multiple of
/// [`SAMPLES_PER_POINT`]) of a programme of `duration` seconds.
pub fn summarize_stretch(samples: &[i16], first_sample: u64, duration: f64) -> WaveformPiece {
    let mut points = PeakSummary::new(SAMPLES_PER_POINT);
    for s in samples {
        points.push(*s);
    }
    let (first_column, columns) = match image_samples_per_column(duration) {
        Some(per_column) => {
            let per_column = u64::from(per_column);
            let first_column = first_sample / per_column;
            let mut columns: Vec<(i16, i16)> = Vec::new();
            for (i, s) in samples.iter().enumerate() {
                let c = ((first_sample + i as u64) / per_column - first_column) as usize;
                if c == columns.len() {
                    columns.push((i16::MAX, i16::MIN));
                }
                let (low, high) = &mut columns[c];
                *low = (*low).min(*s);
                *high = (*high).max(*s);
            }
            let columns = columns
                .into_iter()
                .map(|(low, high)| Point {
                    min: to_8_bits(low),
                    max: to_8_bits(high),
                })
                .collect();
            (first_column, columns)
        }
        None => (0, Vec::new()),
    };
    WaveformPiece {
        points: points.finish(),
        first_column,
        columns,
    }
}

/// Joins pieces (in timeline order) into the JSON's points and the picture's columns.
pub fn join_stretches(pieces: &[WaveformPiece]) -> (Vec<Point>, Vec<Point>) {
    let mut points = Vec::new();
    let mut columns: Vec<Point> = Vec::new();
    let mut next_column = 0u64;
    for piece in pieces {
        points.extend_from_slice(&piece.points);
        for (i, c) in piece.columns.iter().enumerate() {
            let index = piece.first_column + i as u64;
            if index + 1 == next_column {
                if let Some(last) = columns.last_mut() {
                    last.min = last.min.min(c.min);
                    last.max = last.max.max(c.max);
                }
            } else {
                columns.push(*c);
                next_column = index + 1;
            }
        }
    }
    if columns.is_empty() {
        columns = points.clone();
    }
    (points, columns)
}

/// Writes and checks the JSON and the picture of a waveform joined from pieces (the native
/// generator's files, from the same numbers).
pub fn write_joined(pieces: &[WaveformPiece], work: &Path, duration: f64) -> Result<WaveformFiles> {
    let (points, columns) = join_stretches(pieces);
    if points.is_empty() {
        return Err(MediaError::Unreadable(
            "the audio stream decodes to no samples".into(),
        ));
    }
    let json = work.join(JSON_NAME);
    let png = work.join(PNG_NAME);
    write_json(&json, &points)?;
    write_png(&png, &columns)?;
    let length = verify(&json, &png, duration)?;
    Ok(WaveformFiles {
        json,
        png,
        length,
        generator: GENERATOR_NATIVE.to_string(),
    })
}

// ---------------------------------------------------------------------------------------
// Checks before publishing

#[derive(Debug, serde::Deserialize)]
struct WaveformJson {
    version: u32,
    channels: u32,
    sample_rate: u32,
    samples_per_pixel: u32,
    bits: u32,
    length: u64,
    data: Vec<i64>,
}

/// Number of points expected for `duration` seconds: a final partial block counts.
pub fn expected_length(duration: f64) -> u64 {
    (duration * f64::from(POINTS_PER_SECOND)).ceil().max(0.0) as u64
}

/// How far `length` may be from [`expected_length`] before the output is refused: the
/// container's duration and the decoded audio may differ by a frame or two, and a probe's
/// duration by a little more on long files; a waveform a few percent short is a real loss.
fn length_tolerance(expected: u64) -> u64 {
    2 + expected / 100
}

fn check_json(doc: &WaveformJson, duration: f64) -> Result<()> {
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

fn verify_png(path: &Path) -> Result<()> {
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
fn verify(json: &Path, png: &Path, duration: f64) -> Result<u64> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffmpeg::ProgressSink;
    use serde_json::Value;

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|s| s.clone().into_string().unwrap())
            .collect()
    }

    fn no_progress() -> ScaledProgress {
        ProgressSink::none().scaled(0.0, 1.0)
    }

    // --- pure parts ------------------------------------------------------------------

    #[test]
    fn blocks_are_summarized_like_audiowaveform() {
        let mut s = PeakSummary::new(4);
        let mut splitter = SampleSplitter::default();
        let samples: [i16; 10] = [0, 300, -300, 5, 32767, -32768, 1, 2, -255, -256];
        let bytes: Vec<u8> = samples.iter().flat_map(|v| v.to_le_bytes()).collect();
        // Chunks that split samples in the middle.
        for chunk in [
            &bytes[..3],
            &bytes[3..4],
            &bytes[4..4],
            &bytes[4..11],
            &bytes[11..],
        ] {
            splitter.feed(chunk, |v| s.push(v));
        }
        assert_eq!(splitter.samples, 10);
        assert_eq!(splitter.odd_byte, None);
        let points = s.finish();
        assert_eq!(
            points,
            vec![
                // 300 / 256 = 1, -300 / 256 = -1 (toward zero)
                Point { min: -1, max: 1 },
                // full scale: -32768 / 256 = -128, 32767 / 256 = 127
                Point {
                    min: -128,
                    max: 127
                },
                // the partial block counts; -255 / 256 = 0 (not -1 as >> 8 would give)
                Point { min: -1, max: 0 },
            ]
        );
        assert_eq!(to_8_bits(-255), 0);
        assert_eq!(to_8_bits(-256), -1);
        assert_eq!(to_8_bits(255), 0);
        assert_eq!(to_8_bits(256), 1);
    }

    #[test]
    fn pieces_join_into_what_one_pass_summarizes() {
        let n = 3 * 48_000 + 1_234;
        let duration = n as f64 / 48_000.0;
        // Deterministic noise with a slow swell.
        let mut x = 12_345u32;
        let samples: Vec<i16> = (0..n)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let noise = ((x >> 16) as i32 % 2000) - 1000;
                (noise * (1 + i as i32 / 20_000)).clamp(-32768, 32767) as i16
            })
            .collect();
        let mut whole_points = PeakSummary::new(SAMPLES_PER_POINT);
        let per_column = image_samples_per_column(duration).expect("known duration");
        let mut whole_columns = PeakSummary::new(per_column);
        for s in &samples {
            whole_points.push(*s);
            whole_columns.push(*s);
        }
        let pieces: Vec<WaveformPiece> = [0, 48_000, 96_000, 144_000, n]
            .windows(2)
            .map(|w| summarize_stretch(&samples[w[0]..w[1]], w[0] as u64, duration))
            .collect();
        let (points, columns) = join_stretches(&pieces);
        assert_eq!(points, whole_points.finish());
        assert_eq!(columns, whole_columns.finish());
    }

    #[test]
    fn exact_blocks_make_no_extra_point() {
        let mut s = PeakSummary::new(SAMPLES_PER_POINT);
        for _ in 0..3 * SAMPLES_PER_POINT {
            s.push(0);
        }
        assert_eq!(s.finish().len(), 3);
        let mut s = PeakSummary::new(SAMPLES_PER_POINT);
        for _ in 0..3 * SAMPLES_PER_POINT + 1 {
            s.push(0);
        }
        assert_eq!(s.finish().len(), 4);
    }

    #[test]
    fn the_picture_has_a_column_per_block_of_the_duration() {
        assert_eq!(image_samples_per_column(0.0), None);
        assert_eq!(image_samples_per_column(f64::NAN), None);
        assert_eq!(image_samples_per_column(8.0), Some(300));
        assert_eq!(image_samples_per_column(3.0 * 3600.0), Some(405_000));
        assert_eq!(image_samples_per_column(0.001), Some(1));
    }

    #[test]
    fn json_is_written_like_audiowaveform() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JSON_NAME);
        write_json(
            &path,
            &[
                Point { min: -3, max: 4 },
                Point {
                    min: -128,
                    max: 127,
                },
            ],
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"version\":2,\"channels\":1,\"sample_rate\":48000,\"samples_per_pixel\":4800,\
             \"bits\":8,\"length\":2,\"data\":[-3,4,-128,127]}\n"
        );
    }

    fn doc(length: u64) -> WaveformJson {
        WaveformJson {
            version: 2,
            channels: 1,
            sample_rate: 48_000,
            samples_per_pixel: 4_800,
            bits: 8,
            length,
            data: (0..length).flat_map(|_| [-5, 5]).collect(),
        }
    }

    #[test]
    fn json_checks_refuse_what_players_would_misread() {
        assert!(check_json(&doc(80), 8.0).is_ok());
        assert!(check_json(&doc(81), 8.01).is_ok());
        assert!(
            check_json(&doc(80), 0.0).is_ok(),
            "duration 0 skips that check"
        );
        let bad = |d: WaveformJson, duration: f64| {
            let e = check_json(&d, duration).unwrap_err();
            assert!(matches!(e, MediaError::Verification(_)), "{e}");
            e.to_string()
        };
        assert!(bad(doc(40), 8.0).contains("expected about 80"));
        assert!(bad(
            WaveformJson {
                version: 1,
                ..doc(80)
            },
            8.0
        )
        .contains("version"));
        assert!(bad(
            WaveformJson {
                bits: 16,
                ..doc(80)
            },
            8.0
        )
        .contains("bits"));
        assert!(bad(
            WaveformJson {
                channels: 2,
                ..doc(80)
            },
            8.0
        )
        .contains("channels"));
        assert!(bad(
            WaveformJson {
                samples_per_pixel: 4410,
                ..doc(80)
            },
            8.0
        )
        .contains("points per second"));
        assert!(bad(
            WaveformJson {
                length: 81,
                ..doc(80)
            },
            8.0
        )
        .contains("data holds"));
        assert!(bad(doc(0), 0.0).contains("no points"));
        let mut d = doc(80);
        d.data[7] = 200;
        assert!(bad(d, 8.0).contains("outside"));
        let mut d = doc(80);
        d.data[0] = 6;
        assert!(bad(d, 8.0).contains("above max"));
    }

    #[test]
    fn image_scales_full_scale_to_the_height() {
        // 1280 columns over 2 points: the left half full scale, the right half silence.
        let img = render_image(&[
            Point {
                min: -128,
                max: 127,
            },
            Point { min: 0, max: 0 },
        ]);
        assert_eq!(img.dimensions(), (IMAGE_WIDTH, IMAGE_HEIGHT));
        let at = |x, y| img.get_pixel(x, y).0;
        assert_eq!(row_of(0), IMAGE_HEIGHT / 2);
        assert_eq!(row_of(-128), IMAGE_HEIGHT - 1);
        assert!(row_of(127) <= 3);
        assert_eq!(at(10, IMAGE_HEIGHT - 1), WAVEFORM);
        assert_eq!(at(10, 3), WAVEFORM);
        assert_eq!(at(10, 0), BACKGROUND);
        assert_eq!(at(1000, IMAGE_HEIGHT / 2), WAVEFORM);
        assert_eq!(at(1000, IMAGE_HEIGHT / 2 - 1), BACKGROUND);
        assert_eq!(at(1000, IMAGE_HEIGHT / 2 + 1), BACKGROUND);

        // More points than columns: each column takes the extremes of its points.
        let mut many = vec![Point { min: 0, max: 0 }; 12_800];
        many[5] = Point { min: -64, max: 1 };
        many[6] = Point { min: -1, max: 64 };
        let img = render_image(&many);
        let column: Vec<u32> = (0..IMAGE_HEIGHT)
            .filter(|&y| img.get_pixel(0, y).0 == WAVEFORM)
            .collect();
        assert_eq!(column.first(), Some(&row_of(64)));
        assert_eq!(column.last(), Some(&row_of(-64)));

        let empty = render_image(&[]);
        assert_eq!(empty.get_pixel(0, IMAGE_HEIGHT / 2).0, CENTRE_LINE);
        assert_eq!(empty.get_pixel(0, 0).0, BACKGROUND);
    }

    #[test]
    fn decode_args_restrict_inputs_and_keep_stdout_for_samples() {
        let src = Path::new("/tmp/in put; rm.m4a");
        let pcm = strings(pcm_args(src, None).as_slice());
        assert!(!pcm.iter().any(|s| s == "-progress"), "{pcm:?}");
        assert!(!pcm.iter().any(|s| s == "-af"), "{pcm:?}");
        let i = pcm.iter().position(|s| s == "-i").unwrap();
        assert_eq!(pcm[i - 2..i], ["-protocol_whitelist", "file"]);
        assert_eq!(pcm[i + 1], "/tmp/in put; rm.m4a");
        for pair in [
            ["-map", "0:a:0"],
            ["-ac", "1"],
            ["-ar", "48000"],
            ["-c:a", "pcm_s16le"],
            ["-f", "s16le"],
        ] {
            assert!(pcm.windows(2).any(|w| w == pair), "{pair:?} in {pcm:?}");
        }
        assert_eq!(pcm.last().unwrap(), "pipe:1");

        let wav = strings(wav_args(src, Some("volume=0.5"), Path::new("/w/x.wav")).as_slice());
        let af = wav.iter().position(|s| s == "-af").unwrap();
        assert_eq!(wav[af + 1], "volume=0.5");
        assert!(af < wav.iter().position(|s| s == "-ac").unwrap());
        assert!(wav.windows(2).any(|w| w == ["-progress", "pipe:1"]));
        assert!(wav.windows(2).any(|w| w == ["-ac", "1"]));
        assert!(wav.windows(2).any(|w| w == ["-f", "wav"]));
        assert_eq!(wav.last().unwrap(), "/w/x.wav");
    }

    #[test]
    fn audiowaveform_args_are_whole_and_use_the_native_palette() {
        let wav = Path::new("/work dir/waveform-1.wav");
        assert_eq!(
            strings(&audiowaveform_json_args(
                wav,
                Path::new("/work dir/waveform.json")
            )),
            [
                "-q",
                "-i",
                "/work dir/waveform-1.wav",
                "-o",
                "/work dir/waveform.json",
                "--pixels-per-second",
                "10",
                "-b",
                "8"
            ]
        );
        assert_eq!(
            strings(&audiowaveform_png_args(
                wav,
                Path::new("/work dir/waveform.png")
            )),
            [
                "-q",
                "-i",
                "/work dir/waveform-1.wav",
                "-o",
                "/work dir/waveform.png",
                "-w",
                "1280",
                "-h",
                "720",
                "--zoom",
                "auto",
                "--no-axis-labels",
                "--background-color",
                "0f172a",
                "--waveform-color",
                "38bdf8"
            ]
        );
    }

    #[test]
    fn audiowaveform_is_found_on_path_or_named_by_env() {
        let dir = tempfile::tempdir().unwrap();
        let empty = tempfile::tempdir().unwrap();
        let path = std::env::join_paths([empty.path(), dir.path()]).unwrap();
        assert_eq!(resolve_audiowaveform(None, Some(path.clone())), None);

        let bin = dir.path().join("audiowaveform");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                resolve_audiowaveform(None, Some(path.clone())),
                None,
                "not executable"
            );
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        assert_eq!(resolve_audiowaveform(None, Some(path.clone())), Some(bin));
        assert_eq!(
            resolve_audiowaveform(Some("/opt/aw".into()), Some(path.clone())),
            Some(PathBuf::from("/opt/aw"))
        );
        assert_eq!(resolve_audiowaveform(Some("".into()), Some(path)), None);
        assert_eq!(resolve_audiowaveform(None, None), None);
    }

    // --- with ffmpeg ------------------------------------------------------------------

    /// Makes a test source from an ffmpeg lavfi audio graph.
    async fn make_audio(dir: &Path, name: &str, graph: &str, seconds: f64, codec: &str) -> PathBuf {
        let path = dir.join(name);
        let mut a = FfmpegArgs::new();
        a.opt("-f", "lavfi")
            .opt("-i", graph)
            .opt("-t", format!("{seconds}"))
            .opt("-c:a", codec)
            .output(&path);
        ffmpeg(a.as_slice(), seconds, &no_progress()).await.unwrap();
        path
    }

    fn sine(amplitude: f64, seconds: f64) -> String {
        format!("aevalsrc={amplitude}*sin(2*PI*440*t):s=48000:d={seconds}")
    }

    fn read_json(path: &Path) -> Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    fn data(doc: &Value) -> Vec<i64> {
        doc["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect()
    }

    /// The checks every generated waveform of `seconds` must pass; returns the data.
    fn assert_well_formed(files: &WaveformFiles, seconds: f64) -> Vec<i64> {
        let doc = read_json(&files.json);
        assert_eq!(doc["version"], 2);
        assert_eq!(doc["channels"], 1);
        assert_eq!(doc["bits"], 8);
        assert_eq!(doc["sample_rate"], 48000);
        assert_eq!(doc["samples_per_pixel"], 4800);
        let length = doc["length"].as_u64().unwrap();
        assert_eq!(length, files.length);
        let expected = expected_length(seconds);
        assert!(
            length.abs_diff(expected) <= 1,
            "length {length}, expected {expected} ± 1"
        );
        let values = data(&doc);
        assert_eq!(values.len() as u64, 2 * length);
        assert!(values.iter().all(|v| (-128..=127).contains(v)));
        assert!(values.chunks(2).all(|p| p[0] <= p[1]));

        let img = image::open(&files.png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (IMAGE_WIDTH, IMAGE_HEIGHT));
        let first = img.get_pixel(0, 0);
        assert!(img.pixels().any(|p| p != first), "PNG is a single colour");
        values
    }

    /// The weakest peaks among the points between `from` and `to` seconds: the highest min
    /// and the lowest max (every point there reaches at least that far).
    fn weakest_between(values: &[i64], from: f64, to: f64) -> (i64, i64) {
        let points = &values[2 * (from * 10.0) as usize..2 * (to * 10.0) as usize];
        let max = points.chunks(2).map(|p| p[1]).min().unwrap();
        let min = points.chunks(2).map(|p| p[0]).max().unwrap();
        (min, max)
    }

    #[tokio::test]
    async fn aac_sine_gives_its_amplitude() {
        let dir = tempfile::tempdir().unwrap();
        let src = make_audio(dir.path(), "sine.m4a", &sine(0.8, 8.0), 8.0, "aac").await;
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let (sink, rx) = ProgressSink::channel();
        let files = generate_with(&src, None, &work, 8.0, &sink.scaled(0.0, 1.0), None)
            .await
            .unwrap();
        assert_eq!(files.generator, GENERATOR_NATIVE);
        assert_eq!(files.json, work.join(JSON_NAME));
        assert_eq!(files.png, work.join(PNG_NAME));
        assert!((*rx.borrow() - 1.0).abs() < 1e-9);
        let values = assert_well_formed(&files, 8.0);
        // 0.8 full scale = 26214 / 256 = 102; AAC overshoots at the abrupt start, so look
        // at the steady middle. Every point there spans 44 periods of the sine.
        let (weakest_min, weakest_max) = weakest_between(&values, 1.0, 7.0);
        assert!((96..=108).contains(&weakest_max), "max {weakest_max}");
        assert!((-108..=-96).contains(&weakest_min), "min {weakest_min}");
        assert!(values.iter().all(|v| v.abs() <= 128));

        // The picture: waveform pixels well away from the centre line, in the middle.
        let img = image::open(&files.png).unwrap().to_rgb8();
        let x = IMAGE_WIDTH / 2;
        let lit: Vec<u32> = (0..IMAGE_HEIGHT)
            .filter(|&y| img.get_pixel(x, y).0 == WAVEFORM)
            .collect();
        let span = lit.last().unwrap() - lit.first().unwrap();
        // ±102 of ±128 over 720 rows: about 570 rows.
        assert!((520..=620).contains(&span), "span {span}");
        assert_eq!(img.get_pixel(x, 0).0, BACKGROUND);
    }

    #[tokio::test]
    async fn stereo_channels_are_averaged() {
        let dir = tempfile::tempdir().unwrap();
        // Lossless, so that the check is about the downmix: left 0.8, right 0.2, in phase.
        let graph = "aevalsrc=0.8*sin(2*PI*440*t)|0.2*sin(2*PI*440*t):s=48000:d=8:c=stereo";
        let src = make_audio(dir.path(), "stereo.flac", graph, 8.0, "flac").await;
        let files = generate_with(&src, None, dir.path(), 8.0, &no_progress(), None)
            .await
            .unwrap();
        let values = assert_well_formed(&files, 8.0);
        assert_eq!(files.length, 80);
        // (0.8 + 0.2) / 2 = 0.5 full scale = 16383 / 256 = 63.
        let (min, max) = weakest_between(&values, 0.0, 8.0);
        assert!((62..=64).contains(&max), "max {max}");
        assert!((-64..=-62).contains(&min), "min {min}");
    }

    #[tokio::test]
    async fn the_filter_runs_in_the_same_decode() {
        let dir = tempfile::tempdir().unwrap();
        let src = make_audio(dir.path(), "sine.flac", &sine(0.8, 4.0), 4.0, "flac").await;
        let files = generate_with(
            &src,
            Some("volume=0.5"),
            dir.path(),
            4.0,
            &no_progress(),
            None,
        )
        .await
        .unwrap();
        let values = assert_well_formed(&files, 4.0);
        // 0.4 full scale = 13107 / 256 = 51.
        let (min, max) = weakest_between(&values, 0.0, 4.0);
        assert!((50..=52).contains(&max), "max {max}");
        assert!((-52..=-50).contains(&min), "min {min}");
    }

    #[tokio::test]
    async fn silence_is_all_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let src = make_audio(
            dir.path(),
            "silence.m4a",
            "anullsrc=r=48000:cl=stereo",
            8.0,
            "aac",
        )
        .await;
        let files = generate_with(&src, None, dir.path(), 8.0, &no_progress(), None)
            .await
            .unwrap();
        let values = assert_well_formed(&files, 8.0);
        assert!(values.iter().all(|&v| v == 0), "{values:?}");
        // Only the background, the centre line and the flat waveform on it.
        let img = image::open(&files.png).unwrap().to_rgb8();
        for (_, y, p) in img.enumerate_pixels() {
            if y == IMAGE_HEIGHT / 2 {
                assert_eq!(p.0, WAVEFORM);
            } else {
                assert_eq!(p.0, BACKGROUND);
            }
        }
    }

    #[tokio::test]
    async fn a_final_partial_block_is_a_point() {
        let dir = tempfile::tempdir().unwrap();
        // 2.55 s = 122400 samples = 25.5 blocks of 4800.
        let src = make_audio(dir.path(), "short.wav", &sine(0.5, 2.55), 2.55, "pcm_s16le").await;
        let files = generate_with(&src, None, dir.path(), 2.55, &no_progress(), None)
            .await
            .unwrap();
        assert_well_formed(&files, 2.55);
        assert_eq!(files.length, 26);
    }

    #[tokio::test]
    async fn inputs_without_audio_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("garbage.m4a");
        std::fs::write(&garbage, vec![0x42u8; 4096]).unwrap();
        let e = generate_with(&garbage, None, dir.path(), 8.0, &no_progress(), None)
            .await
            .unwrap_err();
        assert!(matches!(e, MediaError::Tool { tool: "ffmpeg", .. }), "{e}");

        let video = dir.path().join("video.mp4");
        let mut a = FfmpegArgs::new();
        a.opt("-f", "lavfi")
            .opt("-i", "testsrc2=size=64x64:rate=10:duration=1")
            .opt("-c:v", "mpeg4")
            .output(&video);
        ffmpeg(a.as_slice(), 1.0, &no_progress()).await.unwrap();
        let e = generate_with(&video, None, dir.path(), 1.0, &no_progress(), None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("matches no streams"), "{e}");
        assert!(!dir.path().join(JSON_NAME).exists());
    }

    /// Writes an executable shell script (a stand-in for audiowaveform).
    fn script(path: &Path, body: &str) {
        std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }

    #[tokio::test]
    async fn audiowaveform_gets_a_mono_wav_and_writes_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let src = make_audio(dir.path(), "sine.m4a", &sine(0.8, 8.0), 8.0, "aac").await;
        // The stand-in copies what the native generator wrote, so the checks pass.
        let reference = dir.path().join("reference");
        std::fs::create_dir(&reference).unwrap();
        generate_with(&src, None, &reference, 8.0, &no_progress(), None)
            .await
            .unwrap();
        let log = dir.path().join("calls.log");
        let seen = dir.path().join("seen.wav");
        let fake = dir.path().join("fake-audiowaveform");
        script(
            &fake,
            &format!(
                r#"printf '%s\n' "$*" >> '{log}'
out=; in=
while [ $# -gt 0 ]; do
  case "$1" in -i) in=$2; shift ;; -o) out=$2; shift ;; esac
  shift
done
cp "$in" '{seen}' || exit 3
case "$out" in
  *.json) cp '{r}/waveform.json' "$out" ;;
  *.png) cp '{r}/waveform.png' "$out" ;;
  *) exit 4 ;;
esac"#,
                log = log.display(),
                seen = seen.display(),
                r = reference.display()
            ),
        );
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let (sink, rx) = ProgressSink::channel();
        let files = generate_with(&src, None, &work, 8.0, &sink.scaled(0.0, 1.0), Some(&fake))
            .await
            .unwrap();
        assert_eq!(files.generator, GENERATOR_AUDIOWAVEFORM);
        assert!((*rx.borrow() - 1.0).abs() < 1e-9);
        assert_well_formed(&files, 8.0);

        let calls = std::fs::read_to_string(&log).unwrap();
        let calls: Vec<&str> = calls.lines().collect();
        assert_eq!(calls.len(), 2, "{calls:?}");
        assert!(
            calls[0].ends_with("waveform.json --pixels-per-second 10 -b 8"),
            "{}",
            calls[0]
        );
        assert!(
            calls[1].contains("waveform.png -w 1280 -h 720 --zoom auto"),
            "{}",
            calls[1]
        );

        // What audiowaveform read: a 48 kHz mono 16-bit WAV of the whole audio (ffmpeg puts
        // a JUNK chunk before "fmt " to leave room for RF64, so walk the chunks).
        let wav = std::fs::read(&seen).unwrap();
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(&wav[8..12], b"WAVE");
        let mut at = 12;
        let fmt = loop {
            let size = u32::from_le_bytes(wav[at + 4..at + 8].try_into().unwrap()) as usize;
            if &wav[at..at + 4] == b"fmt " {
                break &wav[at + 8..at + 8 + size];
            }
            at += 8 + size + size % 2;
        };
        let u16_at = |i: usize| u16::from_le_bytes([fmt[i], fmt[i + 1]]);
        assert_eq!(u16_at(0), 1, "PCM");
        assert_eq!(u16_at(2), 1, "channels");
        assert_eq!(u32::from_le_bytes(fmt[4..8].try_into().unwrap()), 48_000);
        assert_eq!(u16_at(14), 16, "bits");
        assert!(wav.len() >= 8 * 48_000 * 2);

        // The temporary WAV is gone.
        let mut left: Vec<_> = std::fs::read_dir(&work)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [JSON_NAME, PNG_NAME]);
    }

    #[tokio::test]
    async fn a_failing_or_missing_audiowaveform_falls_back_to_native() {
        let dir = tempfile::tempdir().unwrap();
        let src = make_audio(dir.path(), "sine.m4a", &sine(0.8, 3.0), 3.0, "aac").await;
        let failing = dir.path().join("failing-audiowaveform");
        script(&failing, "echo 'Error: cannot do it' >&2\nexit 1");
        let bogus = dir.path().join("bogus-audiowaveform");
        // Exits 0 but writes JSON in the old format (no version): refused by the checks.
        script(
            &bogus,
            r#"while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
printf '{"sample_rate":48000,"samples_per_pixel":4800,"bits":8,"length":1,"data":[0,0]}' > "$out""#,
        );
        let missing = dir.path().join("no-such-audiowaveform");
        for bin in [&failing, &bogus, &missing] {
            let work = tempfile::tempdir_in(dir.path()).unwrap();
            let files = generate_with(&src, None, work.path(), 3.0, &no_progress(), Some(bin))
                .await
                .unwrap();
            assert_eq!(files.generator, GENERATOR_NATIVE, "{}", bin.display());
            assert_well_formed(&files, 3.0);
            let count = std::fs::read_dir(work.path()).unwrap().count();
            assert_eq!(count, 2, "the temporary WAV is removed");
        }
    }

    /// With a real audiowaveform at hand (`$AUDIOWAVEFORM` or on `PATH`; Debian has no
    /// package, so usually none is), both generators must write the same JSON byte for byte.
    #[tokio::test]
    async fn native_json_is_what_audiowaveform_writes() {
        let Some(bin) =
            resolve_audiowaveform(std::env::var_os("AUDIOWAVEFORM"), std::env::var_os("PATH"))
        else {
            eprintln!("note: no audiowaveform found; native_json_is_what_audiowaveform_writes compared nothing");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let sources = [
            (
                // Swelling and fading, so that points differ; 44.1 kHz, resampled to 48 kHz.
                make_audio(
                    dir.path(),
                    "swell.m4a",
                    "aevalsrc=0.9*sin(PI*t/7)*sin(2*PI*330*t):s=44100:d=7.33",
                    7.33,
                    "aac",
                )
                .await,
                7.33,
            ),
            (
                make_audio(
                    dir.path(),
                    "stereo.flac",
                    "aevalsrc=0.7*sin(2*PI*440*t)|-0.3*sin(2*PI*550*t):s=48000:d=5:c=stereo",
                    5.0,
                    "flac",
                )
                .await,
                5.0,
            ),
            (
                make_audio(dir.path(), "quiet.wav", &sine(0.003, 3.0), 3.0, "pcm_s16le").await,
                3.0,
            ),
        ];
        for (src, seconds) in &sources {
            let native = tempfile::tempdir_in(dir.path()).unwrap();
            let theirs = tempfile::tempdir_in(dir.path()).unwrap();
            let a = generate_with(src, None, native.path(), *seconds, &no_progress(), None)
                .await
                .unwrap();
            let b = generate_with(
                src,
                None,
                theirs.path(),
                *seconds,
                &no_progress(),
                Some(&bin),
            )
            .await
            .unwrap();
            assert_eq!(b.generator, GENERATOR_AUDIOWAVEFORM, "{}", src.display());
            assert_eq!(a.length, b.length, "{}", src.display());
            assert_eq!(
                std::fs::read_to_string(&a.json).unwrap(),
                std::fs::read_to_string(&b.json).unwrap(),
                "{}",
                src.display()
            );
        }
    }

    /// Loads our JSON with waveform-data.js (the library Peaks.js uses), through
    /// `tests/waveform-js/check-waveform.mjs`. Needs `npm ci` there first: `make test` does
    /// it and sets `TRANSCODER_REQUIRE_NODE=1`, which turns a missing install into a failure.
    #[tokio::test]
    async fn json_loads_in_waveform_data_js() {
        let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/waveform-js");
        if !js.join("node_modules/waveform-data").is_dir() {
            let message = format!(
                "{} has no node_modules: run `make test` (it runs `npm ci --prefix tests/waveform-js`)",
                js.display()
            );
            if std::env::var_os("TRANSCODER_REQUIRE_NODE").is_some_and(|v| v == "1") {
                panic!("{message}");
            }
            eprintln!("\n*** NOTE: json_loads_in_waveform_data_js did not check anything: {message} ***\n");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let src = make_audio(dir.path(), "sine.m4a", &sine(0.8, 8.0), 8.0, "aac").await;
        let files = generate_with(&src, None, dir.path(), 8.0, &no_progress(), None)
            .await
            .unwrap();
        let out = Command::new(std::env::var_os("NODE").unwrap_or_else(|| "node".into()))
            .arg(js.join("check-waveform.mjs"))
            .arg(&files.json)
            .arg("8")
            .output()
            .await
            .expect("running node (is Node.js installed?)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "check-waveform.mjs failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(summary["ok"], true);
        assert_eq!(summary["channels"], 1);
        assert_eq!(summary["bits"], 8);
        assert_eq!(summary["length"], files.length);
        assert_eq!(summary["scale"], 4800);
    }
}
