//! Two-pass EBU R128 loudness normalization (docs: DESIGN §4): pass 1 measures the programme
//! (`loudnorm`'s report in one run, or the chunks' meter readings gated by [`summarize`]),
//! pass 2 applies one constant gain (and a limiter only where the gain would push the peaks
//! over the target) inside every encode that writes audio, and the delivered audio is
//! measured again for the webhook.

use crate::error::{MediaError, Result};
use crate::ffmpeg::run::ScaledProgress;
use crate::ffmpeg::{ffmpeg_with_stderr, FfmpegArgs};
use serde::{Deserialize, Serialize};
use std::path::Path;
use transcoder_workflows::media::LoudnessMeasurement;

/// Targets: -16 LUFS integrated, -1.5 dBTP true peak, 11 LU range.
pub const TARGET_I: f64 = -16.0;
pub const TARGET_TP: f64 = -1.5;
pub const TARGET_LRA: f64 = 11.0;

/// Below this integrated loudness the programme is treated as silence: there is nothing to
/// normalize, and amplifying noise floor by 50 dB would be wrong.
const SILENCE_LUFS: f64 = -70.0;

/// Pass 1 measures the stereo downmix (the same default matrix as the mezzanine's `-ac 2`),
/// because that is what pass 2 normalizes: a 5.1 or mono source measures differently.
fn measure_filter() -> String {
    format!("aformat=channel_layouts=stereo,loudnorm=I={TARGET_I}:TP={TARGET_TP}:LRA={TARGET_LRA}:print_format=json")
}

/// The pass-2 filter for a measured programme: one constant gain to the target, the same for
/// every sample (so a programme normalized in chunks is normalized exactly as in one run),
/// and, only when that gain would lift the true peak over its target, a look-ahead limiter
/// ([`LIMITER`]) that holds the peaks under it. ffmpeg's `loudnorm` would switch to its
/// dynamic mode there, whose state runs through the whole programme and cannot be split.
pub fn apply_filter(m: &LoudnessMeasurement) -> String {
    let gain = TARGET_I - m.integrated;
    let mut f = format!("volume={gain:.2}dB");
    if m.true_peak + gain > TARGET_TP {
        f.push(',');
        f.push_str(&limiter());
    }
    f
}

/// The limiter's ceiling in sample peak, dBFS: a margin under the true-peak target for the
/// peaks between samples and the AAC encode's overshoot.
pub const LIMITER_CEILING_DB: f64 = TARGET_TP - 1.0;

/// `alimiter` settings: 5 ms look-ahead with its delay compensated (no shift against the
/// picture), 50 ms release, no automatic release or output levelling (which would change
/// the gain away from the peaks). Its state lasts tens of milliseconds, so a chunk's
/// pre-roll settles it exactly as a single run would be.
pub const LIMITER: &str = "alimiter=attack=5:release=50:asc=false:level=false:latency=true";

fn limiter() -> String {
    format!(
        "{LIMITER}:limit={:.4}",
        10f64.powf(LIMITER_CEILING_DB / 20.0)
    )
}

/// The audio filter for outputs: pass 2 when there is a measurement, then 48 kHz.
pub fn output_audio_filter(m: Option<&LoudnessMeasurement>) -> String {
    match m {
        Some(m) => format!("{},aresample=48000", apply_filter(m)),
        None => "aresample=48000".to_string(),
    }
}

/// One 100 ms step of the EBU R128 meter, as `ebur128=metadata=1` reports it on a frame of
/// exactly 100 ms.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MeterReading {
    /// The frame's first sample at 48 kHz, counted from the run's start.
    pub start_sample: u64,
    /// Momentary loudness: the 400 ms block ending with the frame, LUFS.
    pub momentary: f64,
    /// Short-term loudness: the 3 s window ending with the frame, LUFS.
    pub short_term: f64,
    /// The frame's true peak, linear.
    pub true_peak: f64,
}

/// A stretch of a programme's meter readings, 100 ms apart: what a chunk stores for the
/// programme's loudness to be computed from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MeterSeries {
    pub momentary: Vec<f64>,
    pub short_term: Vec<f64>,
    /// Highest true peak, linear.
    pub true_peak: f64,
}

/// Parses what `ametadata=mode=print` wrote after `ebur128=metadata=1:peak=true` at 48 kHz.
pub fn parse_meter_print(text: &str) -> Result<Vec<MeterReading>> {
    let bad = |why: String| MediaError::Tool {
        tool: "ffmpeg",
        status: "ok".into(),
        detail: format!("loudness meter output: {why}"),
    };
    let mut readings: Vec<MeterReading> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("frame:") {
            // pts_time, not pts: the time base of the meter's input varies with its source.
            let at = rest
                .split_whitespace()
                .find_map(|f| f.strip_prefix("pts_time:"))
                .and_then(|p| p.parse::<f64>().ok())
                .filter(|t| t.is_finite() && *t >= 0.0)
                .ok_or_else(|| bad(format!("no time in {line:?}")))?;
            readings.push(MeterReading {
                start_sample: (at * 48_000.0).round() as u64,
                momentary: f64::NAN,
                short_term: f64::NAN,
                true_peak: 0.0,
            });
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let Some(r) = readings.last_mut() else {
            continue;
        };
        // `ebur128` keeps running sums: over digital silence they can round to just under
        // zero, and it prints `nan` where it means silence, as `-inf` does.
        let value = || match value.trim() {
            "-inf" | "nan" | "-nan" => Ok(METER_FLOOR),
            v => v
                .parse::<f64>()
                .ok()
                .filter(|v| !v.is_nan())
                .map(|v| v.max(METER_FLOOR))
                .ok_or_else(|| bad(format!("{key}={v}"))),
        };
        match key {
            "lavfi.r128.M" => r.momentary = value()?,
            "lavfi.r128.S" => r.short_term = value()?,
            "lavfi.r128.true_peak" => r.true_peak = value()?,
            _ => {}
        }
    }
    if let Some(r) = readings
        .iter()
        .find(|r| r.momentary.is_nan() || r.short_term.is_nan())
    {
        return Err(bad(format!(
            "frame at sample {} has no reading",
            r.start_sample
        )));
    }
    Ok(readings)
}

/// Meter readings of silence, LUFS: far under every gate, and finite, so that stored
/// readings stay plain JSON numbers.
pub const METER_FLOOR: f64 = -200.0;

/// Absolute gate of EBU R128 (and BS.1770), LUFS.
const ABSOLUTE_GATE: f64 = -70.0;

fn energy(lufs: f64) -> f64 {
    10f64.powf((lufs + 0.691) / 10.0)
}

fn lufs(energy: f64) -> f64 {
    -0.691 + 10.0 * energy.log10()
}

fn mean_energy<'a>(values: impl Iterator<Item = &'a f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0u64), |(s, n), v| (s + energy(*v), n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// The programme's loudness from its stretches of readings, in timeline order: integrated
/// loudness gated as BS.1770-4 gates the 400 ms blocks (absolute -70 LUFS, then relative -10
/// LU), loudness range as EBU Tech 3342 takes it from the 3 s windows (absolute -70, relative
/// -20 LU, 10th to 95th percentile), and the highest true peak. `None` for silence.
pub fn summarize(stretches: &[MeterSeries]) -> Option<LoudnessMeasurement> {
    let blocks: Vec<f64> = stretches
        .iter()
        .flat_map(|s| &s.momentary)
        .copied()
        .filter(|m| *m > ABSOLUTE_GATE)
        .collect();
    let threshold = lufs(mean_energy(blocks.iter())?) - 10.0;
    let integrated = lufs(mean_energy(blocks.iter().filter(|m| **m > threshold))?);
    if !integrated.is_finite() || integrated <= SILENCE_LUFS {
        return None;
    }
    let windows: Vec<f64> = stretches
        .iter()
        .flat_map(|s| &s.short_term)
        .copied()
        .filter(|s| *s > ABSOLUTE_GATE)
        .collect();
    let range = match mean_energy(windows.iter()) {
        Some(e) => {
            let gate = lufs(e) - 20.0;
            let mut kept: Vec<f64> = windows.into_iter().filter(|s| *s > gate).collect();
            kept.sort_by(f64::total_cmp);
            let at = |p: f64| kept[((kept.len() - 1) as f64 * p).round() as usize];
            if kept.is_empty() {
                0.0
            } else {
                at(0.95) - at(0.10)
            }
        }
        None => 0.0,
    };
    let peak = stretches.iter().map(|s| s.true_peak).fold(0.0, f64::max);
    Some(LoudnessMeasurement {
        integrated,
        true_peak: 20.0 * peak.log10(),
        range,
        threshold,
        target_offset: 0.0,
    })
}

/// An ffmpeg reading `input` at the `info` log level (where meters print their reports).
/// `input` may be an HLS playlist of our own: its segments are plain files next to it.
fn measuring(input: &Path) -> FfmpegArgs {
    let mut a = FfmpegArgs::with_loglevel("info");
    if input.extension().is_some_and(|e| e == "m3u8") {
        a.opt("-allowed_extensions", "ALL");
    }
    a.input(input);
    a
}

/// Measures the first audio stream of `input` (audio decode only, video skipped).
/// `None` for silence. `input` may also be an HLS playlist of our own.
pub async fn measure(
    input: &Path,
    duration: f64,
    progress: &ScaledProgress,
) -> Result<Option<LoudnessMeasurement>> {
    let mut a = measuring(input);
    a.opt("-map", "0:a:0")
        .flag("-vn")
        .flag("-sn")
        .flag("-dn")
        .opt("-af", measure_filter())
        .opt("-f", "null");
    a.output(Path::new("-"));
    let stderr = ffmpeg_with_stderr(a.as_slice(), duration, progress).await?;
    let m = parse_loudnorm_json(&stderr)?;
    Ok((m.integrated.is_finite() && m.integrated > SILENCE_LUFS).then_some(m))
}

/// Measures what listeners get, for the webhook's `loudness`: integrated loudness, loudness
/// range and true peak of `input`'s first audio stream, by ffmpeg's `ebur128` meter. It
/// is the same EBU R128 measurement as pass 1, but a pure meter: about six times cheaper
/// than a `loudnorm` pass (which also resamples to 192 kHz), and it runs beside the ladder
/// encode. `None` for silence. `input` may be an HLS playlist of our own.
pub async fn measure_delivered(
    input: &Path,
    duration: f64,
    progress: &ScaledProgress,
) -> Result<Option<LoudnessMeasurement>> {
    let mut a = measuring(input);
    // Per-frame lines go to the verbose level, below `info`: only the summary is printed.
    a.opt(
        "-filter_complex",
        "[0:a:0]ebur128=peak=true:framelog=verbose[meter]",
    )
    .opt("-map", "[meter]")
    .opt("-f", "null");
    a.output(Path::new("-"));
    let stderr = ffmpeg_with_stderr(a.as_slice(), duration, progress).await?;
    let m = parse_ebur128_summary(&stderr)?;
    Ok((m.integrated.is_finite() && m.integrated > SILENCE_LUFS).then_some(m))
}

/// Reads the `Summary:` block `ebur128` prints at the end (I, its threshold, LRA, true peak).
pub fn parse_ebur128_summary(stderr: &str) -> Result<LoudnessMeasurement> {
    let missing = |what: &str| MediaError::Tool {
        tool: "ffmpeg",
        status: "ok".into(),
        detail: format!("the ebur128 summary has no {what}"),
    };
    let summary = stderr
        .rfind("Summary:")
        .map(|at| &stderr[at..])
        .ok_or_else(|| missing("summary"))?;
    let value = |label: &str| -> Option<f64> {
        summary.lines().find_map(|line| {
            let rest = line.trim().strip_prefix(label)?;
            let number = rest.split_whitespace().next()?;
            match number {
                "-inf" => Some(f64::NEG_INFINITY),
                n => n.parse().ok(),
            }
        })
    };
    Ok(LoudnessMeasurement {
        integrated: value("I:").ok_or_else(|| missing("integrated loudness"))?,
        true_peak: value("Peak:").ok_or_else(|| missing("true peak"))?,
        range: value("LRA:").ok_or_else(|| missing("loudness range"))?,
        threshold: value("Threshold:").ok_or_else(|| missing("threshold"))?,
        target_offset: 0.0,
    })
}

/// Extracts loudnorm's JSON report (the last `{…}` block on stderr).
pub fn parse_loudnorm_json(stderr: &str) -> Result<LoudnessMeasurement> {
    let start = stderr.rfind('{');
    let end = stderr.rfind('}');
    let (Some(start), Some(end)) = (start, end) else {
        return Err(MediaError::Tool {
            tool: "ffmpeg",
            status: "ok".into(),
            detail: "loudnorm printed no measurement".into(),
        });
    };
    if end < start {
        return Err(MediaError::Tool {
            tool: "ffmpeg",
            status: "ok".into(),
            detail: "loudnorm measurement is cut off".into(),
        });
    }
    let doc: serde_json::Value =
        serde_json::from_str(&stderr[start..=end]).map_err(|e| MediaError::Tool {
            tool: "ffmpeg",
            status: "ok".into(),
            detail: format!("loudnorm JSON: {e}"),
        })?;
    // loudnorm prints numbers as strings, and "-inf" for silence.
    let field = |k: &str| -> f64 {
        match doc[k].as_str().map(str::trim) {
            Some("-inf") => f64::NEG_INFINITY,
            Some("inf") => f64::INFINITY,
            Some(v) => v.parse().unwrap_or(f64::NAN),
            None => doc[k].as_f64().unwrap_or(f64::NAN),
        }
    };
    Ok(LoudnessMeasurement {
        integrated: field("input_i"),
        true_peak: field("input_tp"),
        range: field("input_lra"),
        threshold: field("input_thresh"),
        target_offset: field("target_offset"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"[Parsed_loudnorm_0 @ 0x55] 
{
	"input_i" : "-27.61",
	"input_tp" : "-4.47",
	"input_lra" : "18.06",
	"input_thresh" : "-39.20",
	"output_i" : "-16.58",
	"output_tp" : "-1.50",
	"output_lra" : "14.78",
	"output_thresh" : "-27.71",
	"normalization_type" : "dynamic",
	"target_offset" : "0.58"
}
"#;

    #[test]
    fn parses_the_report() {
        let m = parse_loudnorm_json(SAMPLE).unwrap();
        assert_eq!(m.integrated, -27.61);
        assert_eq!(m.true_peak, -4.47);
        assert_eq!(m.range, 18.06);
        assert_eq!(m.threshold, -39.2);
        assert_eq!(m.target_offset, 0.58);
        let w = m.to_webhook();
        assert_eq!((w.integrated, w.peak, w.range), (-2761, -447, 1806));
    }

    #[test]
    fn pass_two_is_one_gain_and_a_limiter_only_where_peaks_need_it() {
        let quiet_peaky = parse_loudnorm_json(SAMPLE).unwrap();
        let f = apply_filter(&quiet_peaky);
        assert!(f.starts_with("volume=11.61dB,alimiter="), "{f}");
        assert!(
            f.contains("latency=true") && f.contains("level=false"),
            "{f}"
        );
        let loud = LoudnessMeasurement {
            integrated: -9.0,
            true_peak: 0.0,
            range: 5.0,
            threshold: -19.0,
            target_offset: 0.0,
        };
        assert_eq!(apply_filter(&loud), "volume=-7.00dB");
        assert!(output_audio_filter(Some(&loud)).ends_with(",aresample=48000"));
    }

    const PRINT: &str = "frame:0    pts:0       pts_time:0\nlavfi.r128.M=-120.691\nlavfi.r128.S=-120.691\nlavfi.r128.I=-70.000\nlavfi.r128.true_peaks_ch0=0.088\nlavfi.r128.true_peak=0.088\nframe:1    pts:4800    pts_time:0.1\nlavfi.r128.M=-21.757\nlavfi.r128.S=-23.5\nlavfi.r128.true_peak=0.5\n";

    #[test]
    fn meter_print_is_parsed_per_frame() {
        let r = parse_meter_print(PRINT).expect("parsed");
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].start_sample, 4800);
        assert_eq!(
            (r[1].momentary, r[1].short_term, r[1].true_peak),
            (-21.757, -23.5, 0.5)
        );
        assert!(parse_meter_print("frame:0 pts:0\nlavfi.r128.S=-1\n").is_err());
        assert!(parse_meter_print("frame:0 pts:0 pts_time:0\nlavfi.r128.S=-1\n").is_err());
        let silent =
            parse_meter_print("frame:0 pts:0 pts_time:0\nlavfi.r128.M=nan\nlavfi.r128.S=-inf\n")
                .expect("silence");
        assert_eq!(silent[0].momentary, METER_FLOOR);
    }

    #[test]
    fn summary_gates_like_bs1770() {
        // A steady -20 LUFS programme with a silent stretch: silence is gated out.
        let steady = MeterSeries {
            momentary: vec![-20.0; 100],
            short_term: vec![-20.0; 100],
            true_peak: 0.5,
        };
        let silent = MeterSeries {
            momentary: vec![-120.7; 50],
            short_term: vec![-120.7; 50],
            true_peak: 0.0,
        };
        let m = summarize(&[steady.clone(), silent.clone()]).expect("loud enough");
        assert!((m.integrated + 20.0).abs() < 1e-9, "{m:?}");
        assert!((m.threshold + 30.0).abs() < 1e-9, "{m:?}");
        assert_eq!(m.range, 0.0);
        assert!((m.true_peak - 20.0 * 0.5f64.log10()).abs() < 1e-9);
        // Quiet blocks more than 10 LU under the loud ones do not count.
        let quiet = MeterSeries {
            momentary: vec![-45.0; 100],
            short_term: vec![-45.0; 100],
            true_peak: 0.01,
        };
        let m = summarize(&[steady.clone(), quiet]).expect("loud enough");
        assert!((m.integrated + 20.0).abs() < 1e-9, "{m:?}");
        // The range: -20 and -30 windows, both within 20 LU of the mean.
        let lower = MeterSeries {
            momentary: vec![-30.0; 100],
            short_term: vec![-30.0; 100],
            true_peak: 0.1,
        };
        let m = summarize(&[steady, lower]).expect("loud enough");
        assert!((m.range - 10.0).abs() < 1e-9, "{m:?}");
        assert_eq!(summarize(&[silent]), None);
        assert_eq!(summarize(&[]), None);
    }

    #[test]
    fn silence_reads_as_minus_infinity() {
        let m = parse_loudnorm_json(r#"{"input_i":"-inf","input_tp":"-inf","input_lra":"0.00","input_thresh":"-70.00","target_offset":"inf"}"#).unwrap();
        assert!(m.integrated.is_infinite());
        assert!(parse_loudnorm_json("no report").is_err());
    }
    #[test]
    fn reads_the_ebur128_summary() {
        let stderr = "[Parsed_ebur128_0 @ 0x5] Summary:\n\n  Integrated loudness:\n    I:         -16.1 LUFS\n    Threshold: -26.3 LUFS\n\n  Loudness range:\n    LRA:         4.2 LU\n    Threshold: -36.2 LUFS\n    LRA low:   -18.3 LUFS\n    LRA high:  -14.1 LUFS\n\n  True peak:\n    Peak:       -1.6 dBFS\n";
        let m = parse_ebur128_summary(stderr).expect("summary");
        assert_eq!(m.integrated, -16.1);
        assert_eq!(m.threshold, -26.3);
        assert_eq!(m.range, 4.2);
        assert_eq!(m.true_peak, -1.6);
        assert!(parse_ebur128_summary("no summary here").is_err());
    }
}
