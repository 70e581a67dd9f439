//! The parts of a chunked video ladder that are not chunks: the audio rendition in one run
//! (a video of one chunk; longer ones make it in `audio_chunks`), and the assembly of
//! playlists, master and preview from what the chunks published.

use crate::error::{MediaError, Result};
use crate::ffmpeg::run::ScaledProgress;
use crate::ffmpeg::{ffmpeg, FfmpegArgs};
use crate::hls::{
    measure, media_playlist, put_master_playlist, put_playlist, read_media_playlist,
    video_codec_of, Measured, AAC_LC,
};
use crate::loudness::{self, output_audio_filter};
use crate::storage::Storage;
use m3u8_rs::{AlternativeMedia, AlternativeMediaType, MasterPlaylist, Resolution, VariantStream};
use std::path::{Path, PathBuf};
use transcoder_workflows::keys::{
    hls_file_key, hls_master_key, media_playlist_key, media_playlist_uri, MASTER_PLAYLIST,
    MEDIA_PLAYLIST, SEGMENT_PATTERN,
};
use transcoder_workflows::media::{
    AssembleInput, AudioRenditionInput, AudioRenditionOutput, HlsOutput, ObjectRef, PreviewPlan,
    SegmentInfo, VariantResult,
};

/// `GROUP-ID` of the audio rendition every video variant refers to.
pub const AUDIO_GROUP: &str = "audio";

pub fn audio_rendition_args(input: &AudioRenditionInput, source: &Path, dir: &Path) -> FfmpegArgs {
    let mut a = FfmpegArgs::new();
    a.input(source)
        .flag("-vn")
        .opt("-map", "0:a:0")
        .opt("-af", output_audio_filter(input.loudness.as_ref()))
        .opt("-c:a", "aac")
        .opt("-b:a", format!("{}k", input.bitrate_kbps))
        .opt("-ac", "2")
        .opt("-ar", "48000")
        .opt("-f", "hls")
        .opt("-hls_time", input.segment_seconds.to_string())
        .opt("-hls_playlist_type", "vod")
        .opt("-hls_flags", "independent_segments")
        .opt("-hls_segment_type", "mpegts")
        .opt(
            "-hls_segment_filename",
            dir.join(SEGMENT_PATTERN).into_os_string(),
        )
        .output(&dir.join(MEDIA_PLAYLIST));
    a
}

/// Encodes the normalized audio once, measures what listeners will hear, publishes it.
pub async fn encode_audio_rendition(
    storage: &Storage,
    input: &AudioRenditionInput,
    source: &Path,
    work: &Path,
    duration: f64,
    progress: &ScaledProgress,
) -> Result<AudioRenditionOutput> {
    let dir = work.join(&input.name);
    std::fs::create_dir_all(&dir).map_err(MediaError::io("creating", &dir))?;
    ffmpeg(
        audio_rendition_args(input, source, &dir).as_slice(),
        duration,
        &progress.sub(0.0, 0.8),
    )
    .await?;
    let playlist_path = dir.join(MEDIA_PLAYLIST);
    let delivered =
        loudness::measure_delivered(&playlist_path, duration, &progress.sub(0.8, 0.95)).await?;
    let playlist = read_media_playlist(&playlist_path)?;
    let mut segments = Vec::new();
    for seg in &playlist.segments {
        let bytes = storage
            .put_file(
                &dir.join(&seg.uri),
                &ObjectRef::new(
                    &input.bucket,
                    hls_file_key(&input.prefix, &input.name, &seg.uri),
                ),
            )
            .await?;
        segments.push(SegmentInfo {
            uri: seg.uri.clone(),
            duration: f64::from(seg.duration),
            bytes,
        });
    }
    let playlist_key = media_playlist_key(&input.prefix, &input.name);
    put_playlist(
        storage,
        &media_playlist(&segments),
        &work.join("audio.m3u8"),
        &ObjectRef::new(&input.bucket, &playlist_key),
    )
    .await?;
    Ok(AudioRenditionOutput {
        name: input.name.clone(),
        playlist_key,
        segments,
        delivered_loudness: delivered,
    })
}

fn measured(segments: &[SegmentInfo]) -> Measured {
    let durations: Vec<f64> = segments.iter().map(|s| s.duration).collect();
    let sizes: Vec<u64> = segments.iter().map(|s| s.bytes).collect();
    measure(&durations, &sizes)
}

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
async fn publish_preview(
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
        a.input(&path);
        audio_file = Some(path);
    }
    a.opt("-map", "0:v:0");
    if audio_file.is_some() {
        a.opt("-map", "1:a:0");
    }
    let dir = work.join("preview");
    std::fs::create_dir_all(&dir).map_err(MediaError::io("creating", &dir))?;
    a.opt("-t", format!("{total:.6}"))
        .opt("-c", "copy")
        .opt("-f", "hls")
        .opt("-hls_time", "6")
        .opt("-hls_playlist_type", "vod")
        .opt("-hls_flags", "independent_segments")
        .opt("-hls_segment_type", "mpegts")
        .opt(
            "-hls_segment_filename",
            dir.join(SEGMENT_PATTERN).into_os_string(),
        )
        .output(&dir.join("preview.m3u8"));
    ffmpeg(a.as_slice(), total, progress).await?;
    let playlist = read_media_playlist(&dir.join("preview.m3u8"))?;
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

/// Writes every variant playlist from the chunk results, measures bandwidth (video plus the
/// audio a player fetches with it), reads CODECS from the bitstream, cuts the preview, and
/// publishes the master last.
pub async fn assemble(
    storage: &Storage,
    input: &AssembleInput,
    work: &Path,
    progress: &ScaledProgress,
) -> Result<HlsOutput> {
    let mut chunks = input.chunks.clone();
    chunks.sort_by_key(|c| c.index);
    let audio_measure = input.audio.as_ref().map(|a| measured(&a.segments));
    let mut master = MasterPlaylist {
        version: Some(4),
        independent_segments: true,
        ..Default::default()
    };
    if let Some(audio) = &input.audio {
        master.alternatives.push(AlternativeMedia {
            media_type: AlternativeMediaType::Audio,
            uri: Some(media_playlist_uri(&audio.name)),
            group_id: AUDIO_GROUP.to_string(),
            name: "Main".to_string(),
            default: true,
            autoselect: true,
            channels: Some("2".to_string()),
            ..Default::default()
        });
    }
    let mut results = Vec::new();
    let mut preview = None;
    let mut preview_bytes = 0u64;
    for r in &input.renditions {
        let mut segments: Vec<SegmentInfo> = Vec::new();
        for chunk in &chunks {
            let v = chunk
                .variants
                .iter()
                .find(|v| v.name == r.name)
                .ok_or_else(|| {
                    MediaError::Verification(format!(
                        "chunk {} has no {} rendition",
                        chunk.index, r.name
                    ))
                })?;
            segments.extend(v.segments.iter().cloned());
        }
        if segments.is_empty() {
            return Err(MediaError::Verification(format!(
                "rendition {} has no segments",
                r.name
            )));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = segments.iter().find(|s| !seen.insert(s.uri.clone())) {
            return Err(MediaError::Verification(format!(
                "rendition {} has segment {} twice",
                r.name, dup.uri
            )));
        }
        let playlist_key = media_playlist_key(&input.prefix, &r.name);
        put_playlist(
            storage,
            &media_playlist(&segments),
            &work.join(format!("{}.m3u8", r.name)),
            &ObjectRef::new(&input.bucket, &playlist_key),
        )
        .await?;

        let video = measured(&segments);
        let (peak, average) = match audio_measure {
            Some(a) => (video.peak + a.peak, video.average + a.average),
            None => (video.peak, video.average),
        };
        let first = storage
            .readable_path(
                &ObjectRef::new(
                    &input.bucket,
                    hls_file_key(&input.prefix, &r.name, &segments[0].uri),
                ),
                work,
            )
            .await?;
        let mut codecs = video_codec_of(&first).await?;
        if input.audio.is_some() {
            codecs.push(',');
            codecs.push_str(AAC_LC);
        }
        master.variants.push(VariantStream {
            uri: media_playlist_uri(&r.name),
            bandwidth: peak,
            average_bandwidth: Some(average),
            codecs: Some(codecs.clone()),
            resolution: Some(Resolution {
                width: u64::from(r.width),
                height: u64::from(r.height),
            }),
            frame_rate: Some((input.frame_rate.as_f64() * 1000.0).round() / 1000.0),
            audio: input.audio.as_ref().map(|_| AUDIO_GROUP.to_string()),
            ..Default::default()
        });
        let encoder = chunks
            .first()
            .map(|c| c.encoder.clone())
            .unwrap_or_default();
        results.push(VariantResult {
            name: r.name.clone(),
            playlist_key,
            resolution: Some((r.width, r.height)),
            bandwidth: peak,
            average_bandwidth: average,
            codecs,
            segment_count: segments.len() as u32,
            encoder,
        });
        if let Some(plan) = input
            .preview
            .as_ref()
            .filter(|p| p.from_rendition == r.name)
        {
            let (seconds, bytes) =
                publish_preview(storage, input, plan, &segments, work, progress).await?;
            preview = Some((plan.playlist_key.clone(), seconds));
            preview_bytes = bytes;
        }
    }

    let master_key = hls_master_key(&input.prefix);
    put_master_playlist(
        storage,
        &master,
        &work.join(MASTER_PLAYLIST),
        &ObjectRef::new(&input.bucket, &master_key),
    )
    .await?;
    Ok(HlsOutput {
        master_key,
        variants: results,
        delivered_loudness: input.audio.as_ref().and_then(|a| a.delivered_loudness),
        preview_key: preview.as_ref().map(|(k, _)| k.clone()),
        preview_seconds: preview.map(|(_, s)| s),
        // Playlists are a few KB; the preview's remuxed segments are what this step wrote.
        bytes_out: preview_bytes,
    })
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
