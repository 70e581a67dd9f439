//! Two-pass EBU R128 loudness normalization (DESIGN §4): pass 1 measures with `loudnorm`
//! (`print_format=json`), pass 2 applies the measured values in linear mode inside every
//! encode that writes audio, and the delivered audio is measured again for the webhook.

use crate::error::{MediaError, Result};
use crate::ffmpeg::run::ScaledProgress;
use crate::ffmpeg::{ffmpeg_with_stderr, FfmpegArgs};
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

/// The pass-2 filter chain for a measured programme: linear gain to the target (loudnorm
/// falls back to its dynamic mode only if the true-peak limit makes linear impossible),
/// then back to 48 kHz (loudnorm works at 192 kHz internally).
pub fn apply_filter(m: &LoudnessMeasurement) -> String {
    format!(
        "loudnorm=I={TARGET_I}:TP={TARGET_TP}:LRA={TARGET_LRA}:measured_I={:.2}:measured_TP={:.2}:\
         measured_LRA={:.2}:measured_thresh={:.2}:offset={:.2}:linear=true:print_format=none,aresample=48000",
        m.integrated, m.true_peak, m.range, m.threshold, m.target_offset
    )
}

/// The audio filter for outputs: pass 2 when there is a measurement, else just 48 kHz.
pub fn output_audio_filter(m: Option<&LoudnessMeasurement>) -> String {
    m.map(apply_filter)
        .unwrap_or_else(|| "aresample=48000".to_string())
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
    fn pass_two_uses_the_measurement_linearly() {
        let m = parse_loudnorm_json(SAMPLE).unwrap();
        let f = apply_filter(&m);
        assert!(
            f.contains("measured_I=-27.61") && f.contains("measured_thresh=-39.20"),
            "{f}"
        );
        assert!(
            f.contains("offset=0.58") && f.contains("linear=true"),
            "{f}"
        );
        assert!(f.ends_with("aresample=48000"));
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
