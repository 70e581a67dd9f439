//! The native generator: min and max of each block of samples as ffmpeg streams them, and
//! the JSON and picture written from them.

use super::*;

/// One point of the waveform, in 8 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Point {
    pub min: i8,
    pub max: i8,
}

/// 16 bits to 8 the way audiowaveform does: divide by 256, rounding toward zero.
pub(super) fn to_8_bits(sample: i16) -> i8 {
    (i32::from(sample) / 256) as i8
}

/// Min and max of each block of `samples_per_point` samples, in 8 bits: audiowaveform's
/// `WaveformGenerator` for one channel.
#[derive(Debug)]
pub(super) struct PeakSummary {
    pub(super) samples_per_point: u32,
    pub(super) count: u32,
    pub(super) min: i16,
    pub(super) max: i16,
    pub(super) points: Vec<Point>,
}

impl PeakSummary {
    pub(super) fn new(samples_per_point: u32) -> Self {
        assert!(samples_per_point > 0);
        PeakSummary {
            samples_per_point,
            count: 0,
            min: i16::MAX,
            max: i16::MIN,
            points: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, sample: i16) {
        self.min = self.min.min(sample);
        self.max = self.max.max(sample);
        self.count += 1;
        if self.count == self.samples_per_point {
            self.close_block();
        }
    }

    pub(super) fn close_block(&mut self) {
        self.points.push(Point {
            min: to_8_bits(self.min),
            max: to_8_bits(self.max),
        });
        self.count = 0;
        self.min = i16::MAX;
        self.max = i16::MIN;
    }

    /// All points, the last partial block included.
    pub(super) fn finish(mut self) -> Vec<Point> {
        if self.count > 0 {
            self.close_block();
        }
        self.points
    }
}

/// Cuts raw s16le bytes, arriving in chunks of any size, into samples (a sample split
/// across two chunks is put back together; ffmpeg never ends on half a sample).
#[derive(Debug, Default)]
pub(super) struct SampleSplitter {
    pub(super) odd_byte: Option<u8>,
    pub(super) samples: u64,
}

impl SampleSplitter {
    pub(super) fn feed(&mut self, mut bytes: &[u8], mut each: impl FnMut(i16)) {
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
pub(super) fn image_samples_per_column(duration: f64) -> Option<u32> {
    if !(duration.is_finite() && duration > 0.0) {
        return None;
    }
    let samples = (duration * f64::from(SAMPLE_RATE)) as u64;
    Some((samples / u64::from(IMAGE_WIDTH)).clamp(1, u64::from(u32::MAX)) as u32)
}

/// What the native generator keeps while the samples stream past.
#[derive(Debug)]
pub(super) struct Summaries {
    /// 10 per second, for the JSON.
    pub(super) points: Vec<Point>,
    /// About 1280 for the picture when the duration is known (so that a short clip is drawn
    /// with as much detail as audiowaveform draws it), else the JSON's points again.
    pub(super) image: Vec<Point>,
}

/// Runs ffmpeg with [`pcm_args`] and summarizes the samples as they arrive.
pub(super) async fn decode_points(
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
pub(super) fn write_json(path: &Path, points: &[Point]) -> Result<()> {
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
pub(super) fn row_of(value: i8) -> u32 {
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

pub(super) fn write_png(path: &Path, points: &[Point]) -> Result<()> {
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
