//! `ENCODING`: the final export: the video with the given sound track, subtitles burned in
//! when asked, as a faststart MP4.
//!
//! - **Length.** The output lasts as long as the video. A shorter sound track is padded
//!   with silence to the video's end; a longer one is cut there. The answer says by how much
//!   (`audio_padded_sec`, `audio_cut_sec`).
//! - **Picture.** Without burned subtitles the video stream is copied untouched. With them,
//!   the `.ass` file is drawn by libass (fonts through fontconfig; a font the file names but
//!   the worker lacks falls back to a default one) and the picture is encoded by the
//!   worker's encoder.
//! - **Sound.** AAC at 192 kb/s, tagged with `language` (ISO 639-2 in the MP4).
//! - **Legacy form.** It names no audio: the video's own sound is kept (copied).

use super::io::refused;
use super::TaskIo;
use crate::encoder::EncoderSettings;
use crate::error::{MediaError, Result};
use crate::ffmpeg::run::ScaledProgress;
use crate::ffmpeg::{ffmpeg, FfmpegArgs};
use serde_json::{json, Value};
use std::path::Path;
use transcoder_workflows::task::Encoding;

const OUTPUT: &str = "parameters.output_video_uri";

pub async fn encoding(
    io: &TaskIo<'_>,
    task: &Encoding,
    encoder: &EncoderSettings,
    work: &Path,
    progress: &ScaledProgress,
) -> Result<Value> {
    io.check_output(OUTPUT, &task.output)?;
    let video_path = io
        .input(
            "parameters.input_video_uri",
            &task.input_video_uri,
            work,
            "video",
        )
        .await?;
    let video = crate::probe::probe_file(&video_path).await?;
    let Some(picture) = video.video.clone() else {
        return Err(refused(
            "parameters.input_video_uri",
            "the file has no video stream",
        ));
    };
    let length = video
        .video_extent
        .map_or(video.duration_seconds, |(start, end)| end - start);
    let audio = match &task.input_audio_uri {
        Some(uri) => {
            let path = io
                .input("parameters.input_audio_uri", uri, work, "audio")
                .await?;
            let probe = crate::probe::probe_file(&path).await?;
            if probe.audio.is_none() {
                return Err(refused(
                    "parameters.input_audio_uri",
                    "the file has no audio stream",
                ));
            }
            Some((path, probe.duration_seconds))
        }
        None => None,
    };
    let subtitles = match (&task.subtitles_uri, task.burn_subtitles) {
        (Some(uri), true) => {
            let path = io
                .input("parameters.subtitles_uri", uri, work, "subtitles")
                .await?;
            check_ass(&path)?;
            Some(path)
        }
        _ => None,
    };

    let out = work.join("export.mp4");
    let mut a = FfmpegArgs::new();
    a.input(&video_path);
    if let Some((path, _)) = &audio {
        a.input(path);
    }
    a.opt("-map", "0:v:0");
    match &subtitles {
        Some(ass) => {
            a.opt("-vf", subtitles_filter(ass)?);
            encoder.video_codec_args(&mut a);
        }
        None => {
            a.opt("-c:v", "copy");
        }
    }
    match &audio {
        Some(_) => {
            a.opt("-map", "1:a:0")
                // Silence after a short track; `-t` below ends the output with the video.
                .opt("-af", "apad")
                .opt("-c:a", "aac")
                .opt("-b:a", "192k");
        }
        None => {
            a.opt("-map", "0:a:0?").opt("-c:a", "copy");
        }
    }
    if let Some(code) = iso639_2(&task.language) {
        a.opt("-metadata:s:a:0", format!("language={code}"));
    }
    a.opt("-t", format!("{length:.6}"))
        .opt("-movflags", "+faststart")
        .flag("-sn")
        .flag("-dn")
        .output(&out);
    ffmpeg(a.as_slice(), length, progress).await?;

    let made = crate::probe::probe_file(&out).await?;
    if made.video.is_none() || (audio.is_some() && made.audio.is_none()) {
        return Err(MediaError::Verification(
            "the export lacks its video or its audio stream".into(),
        ));
    }
    if (made.duration_seconds - length).abs() > 0.5 {
        return Err(MediaError::Verification(format!(
            "the export lasts {:.3} s, the video {length:.3} s",
            made.duration_seconds
        )));
    }
    let delivered = io.output(OUTPUT, &task.output, &out).await?;
    let (width, height) = picture.display_size();
    let mut answer = json!({
        "task": "ENCODING",
        "id": task.id,
        "output_uri": delivered.location,
        "size_bytes": delivered.size_bytes,
        "verified": delivered.verified,
        "duration_sec": made.duration_seconds,
        "width": width,
        "height": height,
        "language": task.language,
        "subtitles_burned": subtitles.is_some(),
        "video": if subtitles.is_some() { encoder.video_encoder_name() } else { "copied" },
    });
    if let Some((_, audio_length)) = audio {
        answer["audio_padded_sec"] = json!(round_ms((length - audio_length).max(0.0)));
        answer["audio_cut_sec"] = json!(round_ms((audio_length - length).max(0.0)));
    }
    Ok(answer)
}

fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// An `.ass`/`.ssa` file starts with its `[Script Info]` section (after an optional BOM).
/// Checked before libass reads it, so a playlist or anything else named here is refused.
fn check_ass(path: &Path) -> Result<()> {
    let head = std::fs::read(path).map_err(MediaError::io("reading", path))?;
    let text = String::from_utf8_lossy(&head[..head.len().min(4096)]).into_owned();
    let text = text.trim_start_matches('\u{feff}').trim_start();
    if text.starts_with("[Script Info]") {
        Ok(())
    } else {
        Err(refused(
            "parameters.subtitles_uri",
            "is not an ASS/SSA subtitle file (it must start with [Script Info])",
        ))
    }
}

/// The `subtitles` filter drawing `ass`. The path is in our scratch folder; it is quoted
/// for the filter graph, and anything that quoting cannot carry is refused rather than
/// spliced.
fn subtitles_filter(ass: &Path) -> Result<String> {
    let text = ass.to_string_lossy();
    if text
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || "/._-+".contains(c)))
    {
        return Err(MediaError::Verification(format!(
            "the scratch path {text:?} cannot be given to the subtitles filter"
        )));
    }
    Ok(format!("subtitles=filename={text}"))
}

/// `en` → `eng`, `fr` → `fra`: MP4 stores ISO 639-2 codes. Unknown tags are left out.
fn iso639_2(language: &str) -> Option<String> {
    let primary = language.split(['-', '_']).next()?.to_ascii_lowercase();
    let lang = match primary.len() {
        2 => isolang::Language::from_639_1(&primary),
        3 => isolang::Language::from_639_3(&primary),
        _ => None,
    }?;
    Some(lang.to_639_3().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_become_three_letter_codes() {
        assert_eq!(iso639_2("en").as_deref(), Some("eng"));
        assert_eq!(iso639_2("fr-CA").as_deref(), Some("fra"));
        assert_eq!(iso639_2("deu").as_deref(), Some("deu"));
        assert_eq!(iso639_2("klingon"), None);
    }

    #[test]
    fn only_plain_paths_reach_the_filter() {
        assert_eq!(
            subtitles_filter(Path::new("/tmp/w-1/subtitles.ass")).unwrap(),
            "subtitles=filename=/tmp/w-1/subtitles.ass"
        );
        assert!(subtitles_filter(Path::new("/tmp/a:b,c/s.ass")).is_err());
    }
}
