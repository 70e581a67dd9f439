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
//! - **Legacy form.** It names no audio: the video's own sound is kept (AAC copied,
//!   anything else encoded as AAC 192k).
//! - **Long videos.** Burning subtitles into a video long enough to chunk ([`chunked`]) is
//!   planned in chunks ([`plan`]): the pieces are the mezzanine's, at the picture's
//!   displayed size on a constant-rate grid, drawn with the same ASS file on the
//!   programme's clock (`super::chunking` says where the parts live).

use super::chunking::{chunked, Parts};
use super::io::refused;
use super::sound::sound_args;
use super::TaskIo;
use crate::encoder::EncoderSettings;
use crate::error::{MediaError, Result};
use crate::ffmpeg::run::ScaledProgress;
use crate::ffmpeg::{ffmpeg, FfmpegArgs};
use crate::mezzanine::{subtitles_filter, task_picture_args};
use serde_json::{json, Value};
use std::path::Path;
use transcoder_workflows::media::PictureEncoder;
use transcoder_workflows::task::{
    sound_fit, task_picture, Encoding, EncodingPlan, SoundRule, SoundSource, TaskSound,
};

const OUTPUT: &str = "parameters.output_video_uri";
const VIDEO: &str = "parameters.input_video_uri";
const AUDIO: &str = "parameters.input_audio_uri";
const SUBTITLES: &str = "parameters.subtitles_uri";

/// Checks an `ENCODING` before any encode and, when it burns subtitles into a long video
/// read from and written to objects of this worker's stores, what its chunks are made
/// from: the ASS file is checked and copied beside the parts, the given sound checked.
pub async fn plan(io: &TaskIo<'_>, task: &Encoding, work: &Path) -> Result<Option<EncodingPlan>> {
    io.check_output(OUTPUT, &task.output)?;
    let (Some(subtitles_uri), true) = (&task.subtitles_uri, task.burn_subtitles) else {
        // The picture is copied: quick in one run whatever its length.
        return Ok(None);
    };
    let Some(root) = io.parts_root(&task.output) else {
        return Ok(None);
    };
    let video_path = io
        .input(VIDEO, &task.input_video_uri, work, "video")
        .await?;
    let mut probe = crate::probe::probe_file(&video_path).await?;
    let Some(picture) = probe.video.clone() else {
        return Err(refused(VIDEO, "the file has no video stream"));
    };
    let Some((_, picture_end)) = probe.video_extent else {
        // Unknown stream timing: one run, which cuts by the container's length.
        return Ok(None);
    };
    if !chunked(picture_end) {
        return Ok(None);
    }
    // The output lasts as long as the picture: the timeline the pieces cover ends with it.
    probe.duration_seconds = picture_end;

    let ass = io
        .input(SUBTITLES, subtitles_uri, work, "subtitles")
        .await?;
    check_ass(&ass)?;
    let ass_bytes = std::fs::read(&ass).map_err(MediaError::io("reading", &ass))?;
    let (sound, given_sound_seconds) = match &task.input_audio_uri {
        Some(uri) => {
            let path = io.input(AUDIO, uri, work, "audio").await?;
            let given = crate::probe::probe_file(&path).await?;
            if given.audio.is_none() {
                return Err(refused(AUDIO, "the file has no audio stream"));
            }
            (
                (AUDIO, Some(uri), SoundRule::GIVEN),
                Some(given.duration_seconds),
            )
        }
        None => ((VIDEO, None, SoundRule::OWN), None),
    };
    let has_sound = given_sound_seconds.is_some() || probe.audio.is_some();

    let parts = Parts::new(
        root,
        &[
            "encoding v1",
            &task.input_video_uri,
            &probe.size_bytes.to_string(),
            &format!("{picture_end:.6}"),
            sound.1.map_or("", String::as_str),
        ],
        &[&ass_bytes],
    );
    let subtitles = parts.object("subtitles.ass");
    io.storage.store(&ass, &subtitles).await?;
    let (source, staged) = parts.source(io, &task.input_video_uri, &video_path).await?;
    let (dest, deliver) = parts.landing(io, OUTPUT, &task.output);
    let (width, height) = picture.display_size();
    Ok(Some(EncodingPlan {
        source: source.clone(),
        sound: has_sound.then(|| TaskSound {
            field: sound.0.to_string(),
            source: match sound.1 {
                Some(uri) => SoundSource::Uri(uri.clone()),
                None => SoundSource::Object(source.clone()),
            },
            dest: parts.object("sound.m4a"),
            length_seconds: picture_end,
            rule: sound.2,
        }),
        dest,
        probe,
        width,
        height,
        subtitles,
        given_sound_seconds,
        language: iso639_2(&task.language),
        parts: parts.prefix,
        deliver,
        staged: staged.into_iter().collect(),
    }))
}

pub async fn encoding(
    io: &TaskIo<'_>,
    task: &Encoding,
    encoder: &EncoderSettings,
    work: &Path,
    progress: &ScaledProgress,
) -> Result<Value> {
    io.check_output(OUTPUT, &task.output)?;
    let video_path = io
        .input(VIDEO, &task.input_video_uri, work, "video")
        .await?;
    let video = crate::probe::probe_file(&video_path).await?;
    let Some(picture) = video.video.clone() else {
        return Err(refused(VIDEO, "the file has no video stream"));
    };
    let length = video
        .video_extent
        .map_or(video.duration_seconds, |(start, end)| end - start);
    let audio = match &task.input_audio_uri {
        Some(uri) => {
            let path = io.input(AUDIO, uri, work, "audio").await?;
            let probe = crate::probe::probe_file(&path).await?;
            let Some(sound) = probe.audio else {
                return Err(refused(AUDIO, "the file has no audio stream"));
            };
            Some((path, probe.duration_seconds, sound.codec))
        }
        None => None,
    };
    let subtitles = match (&task.subtitles_uri, task.burn_subtitles) {
        (Some(uri), true) => {
            let path = io.input(SUBTITLES, uri, work, "subtitles").await?;
            check_ass(&path)?;
            Some(path)
        }
        _ => None,
    };

    let out = work.join("export.mp4");
    let mut a = FfmpegArgs::new();
    a.input(&video_path);
    if let Some((path, _, _)) = &audio {
        a.input(path);
    }
    a.opt("-map", "0:v:0");
    match &subtitles {
        Some(ass) => {
            let size = picture.display_size();
            let drawn = task_picture(&picture, size, PictureEncoder::Delivery, None);
            task_picture_args(&mut a, &drawn, Some(&subtitles_filter(ass)?));
            encoder.video_codec_args(&mut a);
        }
        None => {
            a.opt("-c:v", "copy");
        }
    }
    // `-t` below ends the output with the video.
    match &audio {
        Some((_, _, codec)) => sound_args(&mut a, "1:a:0", Some(codec), SoundRule::GIVEN),
        None => {
            let codec = video.audio.as_ref().map(|s| s.codec.as_str());
            sound_args(&mut a, "0:a:0?", codec, SoundRule::OWN)
        }
    };
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
    if let Some((_, audio_length, _)) = audio {
        let (padded, cut) = sound_fit(length, audio_length);
        answer["audio_padded_sec"] = json!(padded);
        answer["audio_cut_sec"] = json!(cut);
    }
    Ok(answer)
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
}
