//! A programme's sound in one run: the audio rendition of a video of one chunk, and the
//! audio job's ladder, for jobs started before the sound was made in chunks ([`super::chunks`]
//! makes it for every other job).

use super::grid::{AAC_FRAME, SAMPLE_RATE};
use super::loudness::{self, output_audio_filter};
use super::AAC_ENCODER;
use crate::error::{MediaError, Result};
use crate::ffmpeg::run::ScaledProgress;
use crate::ffmpeg::{ffmpeg, FfmpegArgs};
use crate::hls::{
    hls_muxer, hls_muxer_single, media_playlist, publish_hls, put_playlist, read_media_playlist,
    LocalVariant,
};
use crate::storage::Storage;
use std::path::Path;
use transcoder_workflows::keys::{hls_file_key, media_playlist_key, MEDIA_PLAYLIST};
use transcoder_workflows::media::{
    AudioHlsInput, AudioRenditionInput, AudioRenditionOutput, HlsOutput, LoudnessMeasurement,
    ObjectRef, SegmentInfo,
};

/// ffmpeg's `-muxdelay` when none is given, in seconds.
const DEFAULT_MUXDELAY: f64 = 0.7;

pub fn audio_rendition_args(input: &AudioRenditionInput, source: &Path, dir: &Path) -> FfmpegArgs {
    let mut a = FfmpegArgs::new();
    a.input(source)
        .flag("-vn")
        .opt("-map", "0:a:0")
        .opt("-af", output_audio_filter(input.loudness.as_ref()))
        .opt("-c:a", AAC_ENCODER)
        .opt("-b:a", format!("{}k", input.bitrate_kbps))
        .opt("-ac", "2")
        .opt("-ar", "48000")
        // The encoder's priming frame comes first and MPEG-TS cannot say it is not to be
        // played, so it must be stamped one frame before the sound's start, which the muxer
        // puts at the picture's start (it clamps earlier stamps). The HLS muxer starts its
        // stamps at twice `-muxdelay` (0.7 s by default, what the picture's chunks use):
        // half a frame less here puts the priming frame a whole frame earlier, and the sound
        // plays with its picture, not one frame late (tests/integration/av_sync.rs).
        .opt(
            "-muxdelay",
            format!(
                "{:.6}",
                DEFAULT_MUXDELAY - AAC_FRAME as f64 / SAMPLE_RATE as f64 / 2.0
            ),
        );
    hls_muxer_single(&mut a, dir, input.segment_seconds, MEDIA_PLAYLIST);
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
        encoder: Some(AAC_ENCODER.to_string()),
    })
}

/// Filter graph that decodes the audio once, applies pass-2 loudness normalization once and
/// splits it to `n` encoders (`[a0]`…): every rendition carries the same normalized audio.
fn audio_graph(loudness: Option<&LoudnessMeasurement>, n: usize) -> String {
    let mut g = format!("[0:a:0]{},asplit={n}", output_audio_filter(loudness));
    for i in 0..n {
        g.push_str(&format!("[a{i}]"));
    }
    g
}

pub fn audio_ladder_args(input: &AudioHlsInput, source: &Path, work: &Path) -> FfmpegArgs {
    let n = input.renditions.len();
    let mut a = FfmpegArgs::new();
    a.input(source)
        .flag("-vn")
        .opt("-filter_complex", audio_graph(input.loudness.as_ref(), n));
    for i in 0..n {
        a.opt("-map", format!("[a{i}]"));
    }
    a.opt("-c:a", AAC_ENCODER)
        .opt("-ac", "2")
        .opt("-ar", "48000");
    for (i, r) in input.renditions.iter().enumerate() {
        a.opt(&format!("-b:a:{i}"), format!("{}k", r.bitrate_kbps));
    }
    let map = input
        .renditions
        .iter()
        .enumerate()
        .map(|(i, r)| format!("a:{i},name:{}", r.name))
        .collect::<Vec<_>>()
        .join(" ");
    hls_muxer(&mut a, work, input.segment_seconds, map);
    a
}

pub async fn encode_audio_ladder(
    input: &AudioHlsInput,
    source: &Path,
    work: &Path,
    duration: f64,
    progress: &ScaledProgress,
) -> Result<Vec<LocalVariant>> {
    ffmpeg(
        audio_ladder_args(input, source, work).as_slice(),
        duration,
        progress,
    )
    .await?;
    Ok(input
        .renditions
        .iter()
        .map(|r| LocalVariant {
            name: r.name.clone(),
            resolution: None,
            frame_rate: None,
            encoder: AAC_ENCODER.to_string(),
            has_video: false,
            has_audio: true,
        })
        .collect())
}

/// An audio job's ladder in one run: encoded, the first rendition measured as listeners
/// decode it, then published with its playlists and master.
pub async fn audio_hls(
    storage: &Storage,
    input: &AudioHlsInput,
    source: &Path,
    work: &Path,
    duration: f64,
    progress: &ScaledProgress,
) -> Result<HlsOutput> {
    let out = work.join("hls");
    let variants =
        encode_audio_ladder(input, source, &out, duration, &progress.sub(0.0, 0.85)).await?;
    let delivered = match variants.first() {
        Some(first) => {
            let playlist = out.join(&first.name).join(MEDIA_PLAYLIST);
            loudness::measure_delivered(&playlist, duration, &progress.sub(0.85, 0.95)).await?
        }
        None => None,
    };
    let mut result = publish_hls(storage, &input.bucket, &input.prefix, &out, &variants).await?;
    result.delivered_loudness = delivered;
    Ok(result)
}
