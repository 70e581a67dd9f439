//! The sound of a task's video output, one rule ([`SoundRule`]) for the one-run and the
//! chunked forms: an AAC track copied untouched where the rule allows, anything else AAC
//! at the rule's bitrate, padded with silence where the rule says; the output's `-t` cuts
//! a longer track.

use super::TaskIo;
use crate::audio::AAC_ENCODER;
use crate::error::{MediaError, Result};
use crate::ffmpeg::run::ScaledProgress;
use crate::ffmpeg::{ffmpeg, FfmpegArgs};
use std::path::Path;
use transcoder_workflows::media::StoredObject;
use transcoder_workflows::task::{SoundRule, SoundSource, TaskSound};

/// The sound's options for the track `map` selects (`1:a:0`, `0:a:0?`), whose codec
/// (ffprobe's name) is `codec`; the encoder's name, or `copied`.
pub fn sound_args(
    a: &mut FfmpegArgs,
    map: &str,
    codec: Option<&str>,
    rule: SoundRule,
) -> &'static str {
    a.opt("-map", map);
    if rule.copy_aac && !rule.pad && codec == Some("aac") {
        a.opt("-c:a", "copy");
        return "copied";
    }
    if rule.pad {
        a.opt("-af", "apad");
    }
    a.opt("-c:a", AAC_ENCODER)
        .opt("-b:a", format!("{}k", rule.bitrate_kbps));
    AAC_ENCODER
}

/// Makes the sound track of a chunked task (an `.m4a` of exactly `length_seconds`, or
/// shorter when the rule does not pad) and stores it for the join.
pub async fn make_track(
    io: &TaskIo<'_>,
    input: &TaskSound,
    work: &Path,
    progress: &ScaledProgress,
) -> Result<StoredObject> {
    let path = match &input.source {
        SoundSource::Uri(uri) => io.input(&input.field, uri, work, "sound").await?,
        SoundSource::Object(object) => io.storage.readable_path(object, work).await?,
    };
    let probe = crate::probe::probe_file(&path).await?;
    let Some(audio) = probe.audio.as_ref() else {
        return Err(super::io::refused(
            &input.field,
            "the file has no audio stream",
        ));
    };
    let out = work.join("sound.m4a");
    let mut a = FfmpegArgs::new();
    a.input(&path).flag("-vn");
    let encoder = sound_args(&mut a, "0:a:0", Some(&audio.codec), input.rule);
    a.opt("-t", format!("{:.6}", input.length_seconds))
        .flag("-sn")
        .flag("-dn")
        .opt("-map_metadata", "-1")
        .opt("-f", "mp4")
        .output(&out);
    ffmpeg(a.as_slice(), input.length_seconds, progress).await?;
    let made = crate::probe::probe_file(&out).await?;
    if made.audio.is_none() {
        return Err(MediaError::Verification(
            "the sound track came out without audio".into(),
        ));
    }
    let mut stored = io.storage.store(&out, &input.dest).await?;
    stored.encoder = Some(encoder.to_string());
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffmpeg::args::test_support::{strings, value};

    fn args(codec: &str, rule: SoundRule) -> Vec<String> {
        let mut a = FfmpegArgs::new();
        sound_args(&mut a, "1:a:0", Some(codec), rule);
        strings(a)
    }

    #[test]
    fn aac_is_copied_only_where_the_rule_allows_and_nothing_pads_a_copy() {
        assert_eq!(
            value(&args("aac", SoundRule::DOWNSAMPLED), "-c:a"),
            Some("copy")
        );
        let opus = args("opus", SoundRule::DOWNSAMPLED);
        assert_eq!(value(&opus, "-b:a"), Some("128k"));
        let given = args("aac", SoundRule::GIVEN);
        assert_eq!(value(&given, "-af"), Some("apad"));
        assert_eq!(value(&given, "-b:a"), Some("192k"));
        assert_eq!(value(&args("aac", SoundRule::OWN), "-c:a"), Some("copy"));
    }
}
