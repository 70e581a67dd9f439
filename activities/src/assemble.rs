//! The parts of a chunked video ladder that are not chunks: the variant playlists and the
//! measured master from what the chunks published (the preview is in `preview`, the audio
//! rendition in `audio`).

use crate::error::{MediaError, Result};
use crate::ffmpeg::run::ScaledProgress;
use crate::hls::{
    measure, media_playlist, playlist_text, put_master_playlist, put_playlist, video_codec_of,
    Measured, AAC_LC,
};
use crate::iframes::iframe_playlist;
use crate::probe::language_name;
use crate::storage::Storage;
use m3u8_rs::{
    AlternativeMedia, AlternativeMediaType, ClosedCaptionGroupId, MasterPlaylist, Resolution,
    VariantStream,
};
use std::path::Path;
use transcoder_workflows::keys::{
    hls_file_key, hls_master_key, iframe_playlist_uri, media_playlist_key, media_playlist_uri,
    IFRAME_PLAYLIST, MASTER_PLAYLIST,
};
use transcoder_workflows::media::{
    AssembleInput, AudioInfo, AudioRenditionOutput, HlsOutput, LadderChunkOutput, ObjectRef,
    SegmentInfo, VariantResult,
};

/// `GROUP-ID` of the audio rendition every video variant refers to.
pub const AUDIO_GROUP: &str = "audio";

/// The audio rendition's `EXT-X-MEDIA`: stereo, the default and auto-selected, its
/// `LANGUAGE` the source track's (`und` when it names none) and its `NAME` the track's
/// title, else the language's name, else `Main`.
pub fn audio_media(audio: &AudioRenditionOutput, source: Option<&AudioInfo>) -> AlternativeMedia {
    let language = source.and_then(|s| s.language.clone());
    let name = source
        .and_then(|s| s.title.clone())
        .or_else(|| {
            language
                .as_deref()
                .and_then(language_name)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "Main".to_string());
    AlternativeMedia {
        media_type: AlternativeMediaType::Audio,
        uri: Some(media_playlist_uri(&audio.name)),
        group_id: AUDIO_GROUP.to_string(),
        language: Some(language.unwrap_or_else(|| "und".to_string())),
        name: playlist_text(&name),
        default: true,
        autoselect: true,
        channels: Some("2".to_string()),
        ..Default::default()
    }
}

/// Where a player should start: Apple's authoring spec advises a first variant of about
/// 2 Mb/s, since players (AVPlayer, hls.js) begin with the first one listed before they
/// have measured the network.
pub const START_BANDWIDTH: u64 = 2_000_000;

/// Moves the variant whose average bandwidth is nearest `target` to the front; the others
/// keep their order (largest first).
pub fn start_near(variants: &mut Vec<VariantStream>, target: u64) {
    let distance = |v: &VariantStream| v.average_bandwidth.unwrap_or(v.bandwidth).abs_diff(target);
    if let Some(best) = (0..variants.len()).min_by_key(|&i| distance(&variants[i])) {
        let first = variants.remove(best);
        variants.insert(0, first);
    }
}

/// Every segment of rendition `name`, in order, from the chunks (sorted by index).
fn rendition_segments(chunks: &[LadderChunkOutput], name: &str) -> Result<Vec<SegmentInfo>> {
    let mut segments = Vec::new();
    for chunk in chunks {
        let v = chunk
            .variants
            .iter()
            .find(|v| v.name == name)
            .ok_or_else(|| {
                MediaError::Verification(format!("chunk {} has no {name} rendition", chunk.index))
            })?;
        segments.extend(v.segments.iter().cloned());
    }
    Ok(segments)
}

fn measured(segments: &[SegmentInfo]) -> Measured {
    let durations: Vec<f64> = segments.iter().map(|s| s.duration).collect();
    let sizes: Vec<u64> = segments.iter().map(|s| s.bytes).collect();
    measure(&durations, &sizes)
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
        master
            .alternatives
            .push(audio_media(audio, input.audio_source.as_ref()));
    }
    let iframes =
        crate::iframes::gather(storage, &input.bucket, &input.prefix, &chunks, work).await?;
    let mut trick_play = Vec::new();
    let mut results = Vec::new();
    let mut preview = None;
    let mut preview_bytes = 0u64;
    // The first rendition's segments and first segment: the subtitles follow their timing.
    let mut timing: Option<(Vec<SegmentInfo>, std::path::PathBuf)> = None;
    for r in &input.renditions {
        let segments = rendition_segments(&chunks, &r.name)?;
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
        if timing.is_none() {
            timing = Some((segments.clone(), first.clone()));
        }
        let resolution = Resolution {
            width: u64::from(r.width),
            height: u64::from(r.height),
        };
        if let Some(frames) = iframes.get(&r.name) {
            let (playlist, bandwidth) = iframe_playlist(&segments, frames)?;
            put_playlist(
                storage,
                &playlist,
                &work.join(format!("{}-iframe.m3u8", r.name)),
                &ObjectRef::new(
                    &input.bucket,
                    hls_file_key(&input.prefix, &r.name, IFRAME_PLAYLIST),
                ),
            )
            .await?;
            trick_play.push(VariantStream {
                is_i_frame: true,
                uri: iframe_playlist_uri(&r.name),
                bandwidth: bandwidth.peak,
                average_bandwidth: Some(bandwidth.average),
                codecs: Some(codecs.clone()),
                resolution: Some(resolution),
                ..Default::default()
            });
        }
        if input.audio.is_some() {
            codecs.push(',');
            codecs.push_str(AAC_LC);
        }
        master.variants.push(VariantStream {
            uri: media_playlist_uri(&r.name),
            bandwidth: peak,
            average_bandwidth: Some(average),
            codecs: Some(codecs.clone()),
            resolution: Some(resolution),
            frame_rate: Some((input.frame_rate.as_f64() * 1000.0).round() / 1000.0),
            audio: input.audio.as_ref().map(|_| AUDIO_GROUP.to_string()),
            // No captions are carried in the video (Apple's rule: say so, or players look).
            closed_captions: Some(ClosedCaptionGroupId::None),
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
                crate::preview::publish_preview(storage, input, plan, &segments, work, progress)
                    .await?;
            preview = Some((plan.playlist_key.clone(), seconds));
            preview_bytes = bytes;
        }
    }

    if let (false, Some((segments, first))) = (input.subtitles.is_empty(), &timing) {
        let zero = crate::subtitles::mpegts_zero(first).await?;
        let media = crate::subtitles::publish(
            storage,
            &input.bucket,
            &input.prefix,
            &input.subtitles,
            segments,
            zero,
            work,
        )
        .await?;
        master.alternatives.extend(media);
        for v in &mut master.variants {
            v.subtitles = Some(crate::subtitles::SUBTITLE_GROUP.to_string());
        }
    }
    let storyboard_key = match (&input.storyboard, &timing) {
        (Some(plan), Some(_)) => {
            // Tiles no chunk left are cut from the smallest rendition at least a tile wide.
            let from = input
                .renditions
                .iter()
                .rev()
                .find(|r| r.width >= plan.tile_width)
                .or(input.renditions.first());
            let segments: Vec<(ObjectRef, SegmentInfo)> = match from {
                Some(r) => rendition_segments(&chunks, &r.name)?
                    .into_iter()
                    .map(|s| {
                        let key = hls_file_key(&input.prefix, &r.name, &s.uri);
                        (ObjectRef::new(&input.bucket, key), s)
                    })
                    .collect(),
                None => Vec::new(),
            };
            Some(
                crate::storyboard::publish(
                    storage,
                    &input.bucket,
                    plan,
                    input.duration_seconds,
                    &segments,
                    work,
                )
                .await?,
            )
        }
        _ => None,
    };
    start_near(&mut master.variants, START_BANDWIDTH);
    // The trick-play renditions follow the ones that play.
    master.variants.extend(trick_play);
    let master_key = hls_master_key(&input.prefix);
    put_master_playlist(
        storage,
        &master,
        &work.join(MASTER_PLAYLIST),
        &ObjectRef::new(&input.bucket, &master_key),
    )
    .await?;
    crate::iframes::remove_notes(storage, &input.bucket, &input.prefix, &chunks).await;
    Ok(HlsOutput {
        master_key,
        variants: results,
        delivered_loudness: input.audio.as_ref().and_then(|a| a.delivered_loudness),
        preview_key: preview.as_ref().map(|(k, _)| k.clone()),
        preview_seconds: preview.map(|(_, s)| s),
        storyboard_key,
        // Playlists are a few KB; the preview's remuxed segments are what this step wrote.
        bytes_out: preview_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(language: Option<&str>, title: Option<&str>) -> AudioInfo {
        AudioInfo {
            codec: "aac".into(),
            channels: 2,
            sample_rate: 48_000,
            language: language.map(str::to_string),
            title: title.map(str::to_string),
        }
    }

    #[test]
    fn the_first_variant_is_the_one_nearest_two_megabits() {
        let variant = |kbps: u64| VariantStream {
            uri: format!("{kbps}"),
            bandwidth: kbps * 1200,
            average_bandwidth: Some(kbps * 1000),
            ..Default::default()
        };
        let order = |kbps: &[u64]| {
            let mut v: Vec<VariantStream> = kbps.iter().map(|k| variant(*k)).collect();
            start_near(&mut v, START_BANDWIDTH);
            v.into_iter().map(|v| v.uri).collect::<Vec<_>>()
        };
        assert_eq!(
            order(&[5000, 2500, 1000, 500]),
            ["2500", "5000", "1000", "500"]
        );
        assert_eq!(order(&[5000, 1800, 1000]), ["1800", "5000", "1000"]);
        assert_eq!(order(&[700, 300]), ["700", "300"]);
        assert!(order(&[]).is_empty());
    }

    #[test]
    fn the_audio_rendition_is_named_by_its_title_then_its_language() {
        let audio = AudioRenditionOutput {
            name: "audio".into(),
            playlist_key: "x/audio/playlist.m3u8".into(),
            segments: Vec::new(),
            delivered_loudness: None,
            encoder: None,
        };
        let media = |s: Option<AudioInfo>| {
            let m = audio_media(&audio, s.as_ref());
            (m.language.unwrap_or_default(), m.name)
        };
        assert_eq!(media(None), ("und".into(), "Main".into()));
        assert_eq!(
            media(Some(source(Some("fr"), None))),
            ("fr".into(), "French".into())
        );
        assert_eq!(
            media(Some(source(Some("en"), Some("Director's commentary")))),
            ("en".into(), "Director's commentary".into())
        );
        let m = audio_media(&audio, None);
        assert!(m.default && m.autoselect);
        assert_eq!(m.channels.as_deref(), Some("2"));
        assert_eq!(m.group_id, AUDIO_GROUP);
    }
}
