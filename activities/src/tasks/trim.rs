//! `AUDIO_TRIM`: a span of the sound as WAV, exact to the sample.
//!
//! The span is counted in the source's own samples from its first one: start
//! `round(start_sec × rate)`, length `round(duration_sec × rate)`, cut by `atrim` on the
//! decoded samples (not by seeking, which lands on packet boundaries). The source's rate and
//! channels are kept; PCM sources keep their sample format, compressed ones become 16-bit.
//! The WAV's data chunk is read back and must hold exactly that many samples.

use super::io::refused;
use super::TaskIo;
use crate::error::{MediaError, Result};
use crate::ffmpeg::run::ScaledProgress;
use crate::ffmpeg::{ffmpeg, FfmpegArgs};
use serde_json::{json, Value};
use std::path::Path;
use transcoder_workflows::task::AudioTrim;

/// How far past the end of the audio a span may reach and still be cut whole: rounding of
/// the caller's seconds, not a real overrun.
const END_TOLERANCE_SECONDS: f64 = 0.001;

/// Sample formats a PCM source keeps; anything else is written as 16-bit.
const KEPT_PCM: [&str; 6] = [
    "pcm_u8",
    "pcm_s16le",
    "pcm_s24le",
    "pcm_s32le",
    "pcm_f32le",
    "pcm_f64le",
];

/// The span in samples: (first, count).
pub fn span_in_samples(start_seconds: f64, duration_seconds: f64, rate: u32) -> (u64, u64) {
    let rate = f64::from(rate);
    (
        (start_seconds * rate).round() as u64,
        (duration_seconds * rate).round().max(1.0) as u64,
    )
}

pub async fn audio_trim(
    io: &TaskIo<'_>,
    task: &AudioTrim,
    work: &Path,
    progress: &ScaledProgress,
) -> Result<Value> {
    io.check_output("parameters.output_video_uri", &task.output)?;
    let source = match &task.staged {
        Some(copy) => io.storage.readable_path(copy, work).await?,
        None => {
            io.input("parameters.source_uri", &task.source_uri, work, "source")
                .await?
        }
    };
    let probe = crate::probe::probe_file(&source).await?;
    let Some(audio) = probe.audio.clone() else {
        return Err(refused(
            "parameters.source_uri",
            "the file has no audio stream",
        ));
    };
    let length = probe.duration_seconds;
    if task.start_seconds >= length {
        return Err(refused(
            "parameters.start_sec",
            format!(
                "{} s is past the end of the audio ({length:.3} s)",
                task.start_seconds
            ),
        ));
    }
    if task.start_seconds + task.duration_seconds > length + END_TOLERANCE_SECONDS {
        return Err(refused(
            "parameters.duration_sec",
            format!(
                "{} s from {} s reaches {:.3} s, past the end of the audio ({length:.3} s)",
                task.duration_seconds,
                task.start_seconds,
                task.start_seconds + task.duration_seconds
            ),
        ));
    }
    let rate = audio.sample_rate;
    let (first, count) = span_in_samples(task.start_seconds, task.duration_seconds, rate);
    let codec = if KEPT_PCM.contains(&audio.codec.as_str()) {
        audio.codec.as_str()
    } else {
        "pcm_s16le"
    };
    let out = work.join("trim.wav");
    let mut a = FfmpegArgs::new();
    a.input(&source)
        .opt("-map", "0:a:0")
        .opt(
            "-af",
            format!(
                "atrim=start_sample={first}:end_sample={},asetpts=N/SR/TB",
                first + count
            ),
        )
        .opt("-c:a", codec)
        // No LIST chunk with the encoder's name: the same span gives the same bytes.
        .opt("-fflags", "+bitexact")
        .opt("-flags:a", "+bitexact")
        .output(&out);
    ffmpeg(a.as_slice(), task.duration_seconds, progress).await?;
    let written = wav_samples(&out)?;
    if written.samples != count {
        return Err(refused(
            "parameters.duration_sec",
            format!(
                "the audio holds {} of the {count} samples asked from sample {first} (it ends early)",
                written.samples
            ),
        ));
    }
    let delivered = io
        .output("parameters.output_video_uri", &task.output, &out)
        .await?;
    Ok(json!({
        "task": "AUDIO_TRIM",
        "output_uri": delivered.location,
        "size_bytes": delivered.size_bytes,
        "verified": delivered.verified,
        "start_sec": task.start_seconds,
        "duration_sec": count as f64 / f64::from(rate),
        "start_sample": first,
        "samples": count,
        "sample_rate": rate,
        "channels": written.channels,
        "sample_format": codec,
    }))
}

/// What a WAV file's header says.
#[derive(Debug, PartialEq, Eq)]
pub struct WavFacts {
    pub channels: u16,
    pub sample_rate: u32,
    /// Samples per channel in the data chunk.
    pub samples: u64,
}

/// Reads a RIFF/WAVE file's `fmt ` and `data` chunks.
pub fn wav_samples(path: &Path) -> Result<WavFacts> {
    let bytes = std::fs::read(path).map_err(MediaError::io("reading", path))?;
    parse_wav(&bytes).ok_or_else(|| {
        MediaError::Verification(format!("{} is not a whole WAV file", path.display()))
    })
}

pub fn parse_wav(bytes: &[u8]) -> Option<WavFacts> {
    if bytes.get(0..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    let mut at = 12;
    let mut format: Option<(u16, u32, u16)> = None;
    while at + 8 <= bytes.len() {
        let id = bytes.get(at..at + 4)?;
        let size = u32_at(at + 4)? as usize;
        let body = at + 8;
        match id {
            b"fmt " => format = Some((u16_at(body + 2)?, u32_at(body + 4)?, u16_at(body + 12)?)),
            b"data" => {
                let (channels, sample_rate, block_align) = format?;
                if block_align == 0 || body + size > bytes.len() {
                    return None;
                }
                return Some(WavFacts {
                    channels,
                    sample_rate,
                    samples: (size / usize::from(block_align)) as u64,
                });
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at = body + size + (size & 1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_counted_in_the_sources_samples() {
        assert_eq!(span_in_samples(1.5, 2.0, 44_100), (66_150, 88_200));
        assert_eq!(span_in_samples(0.0, 1.0 / 48_000.0, 48_000), (0, 1));
        // A caller's 0.1 + 0.2 still lands on whole samples.
        assert_eq!(span_in_samples(0.1 + 0.2, 0.7, 8_000), (2_400, 5_600));
    }

    #[test]
    fn a_wav_header_gives_its_sample_count() {
        let mut wav = Vec::new();
        let data = vec![0u8; 4 * 10];
        wav.extend(b"RIFF");
        wav.extend((36 + data.len() as u32).to_le_bytes());
        wav.extend(b"WAVEfmt ");
        wav.extend(16u32.to_le_bytes());
        wav.extend(1u16.to_le_bytes()); // PCM
        wav.extend(2u16.to_le_bytes()); // channels
        wav.extend(44_100u32.to_le_bytes());
        wav.extend((44_100u32 * 4).to_le_bytes());
        wav.extend(4u16.to_le_bytes()); // block align
        wav.extend(16u16.to_le_bytes());
        wav.extend(b"data");
        wav.extend((data.len() as u32).to_le_bytes());
        wav.extend(&data);
        assert_eq!(
            parse_wav(&wav),
            Some(WavFacts {
                channels: 2,
                sample_rate: 44_100,
                samples: 10
            })
        );
        assert_eq!(parse_wav(&wav[..50]), None);
        assert_eq!(parse_wav(b"RIFX"), None);
    }
}
