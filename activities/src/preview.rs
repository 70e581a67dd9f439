//! The preview: the first whole segments (about 30 s) of one video rendition, remuxed with
//! the normalized audio into its own muxed VOD playlist, not encoded again.

use crate::error::{MediaError, Result};
use crate::ffmpeg::run::ScaledProgress;
use crate::ffmpeg::{ffmpeg, FfmpegArgs};
use crate::hls::{hls_muxer_single, media_playlist, put_playlist, read_media_playlist};
use crate::storage::Storage;
use std::path::{Path, PathBuf};
use transcoder_workflows::keys::{hls_file_key, PREVIEW_PLAYLIST};

/// The preview's segments: cut again from the remux, on its keyframes (every 2 s).
const PREVIEW_SEGMENT_SECONDS: u32 = 6;
use transcoder_workflows::media::{AssembleInput, ObjectRef, PreviewPlan, SegmentInfo};

/// Concatenates published segments (MPEG-TS concatenates byte-wise) into one local file.
async fn concat_segments(
    storage: &Storage,
    bucket: &str,
    prefix: &str,
    rendition: &str,
    segments: &[SegmentInfo],
    dest: &Path,
    scratch: &Path,
) -> Result<()> {
    let mut out = std::fs::File::create(dest).map_err(MediaError::io("writing", dest))?;
    for seg in segments {
        let path = storage
            .readable_path(
                &ObjectRef::new(bucket, hls_file_key(prefix, rendition, &seg.uri)),
                scratch,
            )
            .await?;
        let mut input = std::fs::File::open(&path).map_err(MediaError::io("reading", &path))?;
        std::io::copy(&mut input, &mut out).map_err(MediaError::io("writing", dest))?;
    }
    Ok(())
}

/// The first whole segments that together last at least `seconds` (all of them if they are
/// shorter; at least one, however short the clip), and how long they last.
fn leading_segments(segments: &[SegmentInfo], seconds: f64) -> (&[SegmentInfo], f64) {
    let mut covered = 0.0;
    let mut count = 0;
    for seg in segments {
        // A clip of half a second or less asks for nothing (its preview target is its length
        // less the 0.5 s tolerance): it still gets its one segment.
        if count > 0 && covered >= seconds {
            break;
        }
        covered += seg.duration;
        count += 1;
    }
    (&segments[..count], covered)
}

/// The preview: the first whole segments (≈`plan.seconds`) of one rendition's video, with
/// the normalized audio, remuxed (no encode) into its own muxed VOD playlist.
pub async fn publish_preview(
    storage: &Storage,
    input: &AssembleInput,
    plan: &PreviewPlan,
    variant: &[SegmentInfo],
    work: &Path,
    progress: &ScaledProgress,
) -> Result<(f64, u64)> {
    let (take, total) = leading_segments(variant, plan.seconds - 0.5);
    if take.is_empty() {
        return Err(MediaError::Verification(format!(
            "rendition {} has no segments for a preview",
            plan.from_rendition
        )));
    }
    let video = work.join("preview-video.ts");
    concat_segments(
        storage,
        &input.bucket,
        &input.prefix,
        &plan.from_rendition,
        take,
        &video,
        work,
    )
    .await?;
    let mut a = FfmpegArgs::new();
    // The segments' own stamps are what keep picture and sound together (the sound's
    // priming frame stamped a frame early): kept as they are, not each input shifted to
    // start at zero.
    a.flag("-copyts");
    a.input(&video);
    let mut audio_file: Option<PathBuf> = None;
    if let Some(audio) = &input.audio {
        // A second more than the video, so the audio never ends before the picture.
        let (audio_take, _) = leading_segments(&audio.segments, total + 1.0);
        let path = work.join("preview-audio.ts");
        concat_segments(
            storage,
            &input.bucket,
            &input.prefix,
            &audio.name,
            audio_take,
            &path,
            work,
        )
        .await?;
        // With `-copyts` an output `-t` would count from the stamps' origin, not the
        // preview's start: the picture is already exactly its segments, and the sound is
        // cut to the same length as it is read (its stamps start a priming frame early).
        a.opt("-t", format!("{:.6}", total + 1024.0 / 48_000.0))
            .input(&path);
        audio_file = Some(path);
    }
    a.opt("-map", "0:v:0");
    if audio_file.is_some() {
        a.opt("-map", "1:a:0");
    }
    let dir = work.join("preview");
    std::fs::create_dir_all(&dir).map_err(MediaError::io("creating", &dir))?;
    a.opt("-c", "copy");
    hls_muxer_single(&mut a, &dir, PREVIEW_SEGMENT_SECONDS, PREVIEW_PLAYLIST);
    ffmpeg(a.as_slice(), total, progress).await?;
    let playlist = read_media_playlist(&dir.join(PREVIEW_PLAYLIST))?;
    let prefix = plan
        .playlist_key
        .rsplit_once('/')
        .map(|(p, _)| p)
        .unwrap_or("");
    let mut segments = Vec::new();
    for seg in &playlist.segments {
        let key = if prefix.is_empty() {
            seg.uri.clone()
        } else {
            format!("{prefix}/{}", seg.uri)
        };
        let bytes = storage
            .put_file(&dir.join(&seg.uri), &ObjectRef::new(&input.bucket, key))
            .await?;
        segments.push(SegmentInfo {
            uri: seg.uri.clone(),
            duration: f64::from(seg.duration),
            bytes,
        });
    }
    put_playlist(
        storage,
        &media_playlist(&segments),
        &work.join("preview-final.m3u8"),
        &ObjectRef::new(&input.bucket, &plan.playlist_key),
    )
    .await?;
    Ok((
        segments.iter().map(|s| s.duration).sum(),
        segments.iter().map(|s| s.bytes).sum(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(durations: &[f64]) -> Vec<SegmentInfo> {
        durations
            .iter()
            .enumerate()
            .map(|(i, &duration)| SegmentInfo {
                uri: format!("{i:05}.ts"),
                duration,
                bytes: 1,
            })
            .collect()
    }

    #[test]
    fn leading_segments_cover_the_asked_length_in_whole_segments() {
        let all = segments(&[4.0, 4.0, 4.0, 2.5]);
        let (take, covered) = leading_segments(&all, 7.5);
        assert_eq!((take.len(), covered), (2, 8.0));
        // A length reached exactly takes no extra segment.
        let (take, covered) = leading_segments(&all, 8.0);
        assert_eq!((take.len(), covered), (2, 8.0));
        // Longer than everything: all of it.
        let (take, covered) = leading_segments(&all, 60.0);
        assert_eq!((take.len(), covered), (4, 14.5));
        assert!(leading_segments(&[], 5.0).0.is_empty());
        // A tiny clip's target is zero or below: one segment, not none.
        let tiny = segments(&[0.4]);
        assert_eq!(leading_segments(&tiny, -0.1), (&tiny[..1], 0.4));
        assert_eq!(leading_segments(&all, 0.0).0.len(), 1);
    }
}
