//! HLS helpers: the muxer options of our segments, measured bandwidths, variant playlists and
//! the master written by us over published renditions (segments and variant playlists
//! before the master, so a player never finds a master that points at missing media), from
//! local renditions ffmpeg wrote (`publish_hls`) or segments chunks already published
//! (`publish_playlists`).

use crate::error::{MediaError, Result};
use crate::ffmpeg::{ffprobe_json, FfmpegArgs};
use crate::storage::Storage;
use m3u8_rs::{MasterPlaylist, MediaPlaylist, MediaPlaylistType, Resolution, VariantStream};
use std::ffi::OsString;
use std::path::Path;
use transcoder_workflows::keys::{
    hls_file_key, hls_master_key, media_playlist_key, media_playlist_uri, MASTER_PLAYLIST,
    MEDIA_PLAYLIST, SEGMENT_PATTERN,
};
use transcoder_workflows::media::{HlsOutput, ObjectRef, SegmentInfo, VariantResult};

/// AAC-LC, the only audio codec string our outputs use.
pub const AAC_LC: &str = "mp4a.40.2";

pub fn hls_muxer(a: &mut FfmpegArgs, work: &Path, segment_seconds: u32, stream_map: String) {
    hls_muxer_numbered(a, work, segment_seconds, 0, stream_map);
}

/// The HLS muxer writing `work/<variant>/NNNNN.ts`, numbering segments from `first_segment`.
pub fn hls_muxer_numbered(
    a: &mut FfmpegArgs,
    work: &Path,
    segment_seconds: u32,
    first_segment: u32,
    stream_map: String,
) {
    a.opt("-start_number", first_segment.to_string());
    hls_segmenter(a, &work.join("%v"), segment_seconds);
    a.opt("-var_stream_map", stream_map)
        .output(&work.join("%v").join(MEDIA_PLAYLIST));
}

/// The HLS muxer writing one playlist, `dir/playlist`, and its segments `dir/NNNNN.ts`.
pub fn hls_muxer_single(a: &mut FfmpegArgs, dir: &Path, segment_seconds: u32, playlist: &str) {
    hls_segmenter(a, dir, segment_seconds);
    a.output(&dir.join(playlist));
}

/// Our segments: VOD, MPEG-TS, each starting on a keyframe, named `NNNNN.ts` in `dir`.
fn hls_segmenter(a: &mut FfmpegArgs, dir: &Path, segment_seconds: u32) {
    a.opt("-f", "hls")
        .opt("-hls_time", segment_seconds.to_string())
        .opt("-hls_playlist_type", "vod")
        .opt("-hls_flags", "independent_segments")
        .opt("-hls_segment_type", "mpegts")
        .opt(
            "-hls_segment_filename",
            dir.join(SEGMENT_PATTERN).into_os_string(),
        );
}

/// A VOD media playlist for published segments.
pub fn media_playlist(segments: &[SegmentInfo]) -> MediaPlaylist {
    let target = segments
        .iter()
        .map(|s| s.duration.round() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    MediaPlaylist {
        version: Some(3),
        target_duration: target,
        media_sequence: 0,
        segments: segments
            .iter()
            .map(|s| m3u8_rs::MediaSegment {
                uri: s.uri.clone(),
                duration: s.duration as f32,
                ..Default::default()
            })
            .collect(),
        end_list: true,
        playlist_type: Some(MediaPlaylistType::Vod),
        independent_segments: true,
        ..Default::default()
    }
}

/// `text` as a playlist's quoted attribute may hold it (`NAME="…"`): a quote or a line break
/// (from a track title in the source, or a payload's name) would end the attribute or the
/// tag early, so quotes become apostrophes and control characters spaces.
pub fn playlist_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect::<String>()
        .trim()
        .to_string()
}

/// Writes `playlist` to `path` and stores it as `obj`.
pub async fn put_playlist(
    storage: &Storage,
    playlist: &MediaPlaylist,
    path: &Path,
    obj: &ObjectRef,
) -> Result<()> {
    put_written(storage, path, obj, |text| playlist.write_to(text)).await
}

/// Writes the master playlist to `path` and stores it as `obj`.
pub async fn put_master_playlist(
    storage: &Storage,
    master: &MasterPlaylist,
    path: &Path,
    obj: &ObjectRef,
) -> Result<()> {
    put_written(storage, path, obj, |text| master.write_to(text)).await
}

/// What `write` produces, written to `path` and then stored as `obj`.
async fn put_written(
    storage: &Storage,
    path: &Path,
    obj: &ObjectRef,
    write: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>,
) -> Result<()> {
    let mut text = Vec::new();
    write(&mut text).map_err(MediaError::io("writing", path))?;
    std::fs::write(path, &text).map_err(MediaError::io("writing", path))?;
    storage.put_file(path, obj).await?;
    Ok(())
}

/// A variant encoded into the work folder, not yet published.
#[derive(Debug)]
pub struct LocalVariant {
    pub name: String,
    pub resolution: Option<(u32, u32)>,
    pub frame_rate: Option<f64>,
    pub encoder: String,
    pub has_video: bool,
    pub has_audio: bool,
}

/// Bitrates measured from a variant's segments, in bits per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    pub peak: u64,
    pub average: u64,
}

/// Peak and average bitrate over the segments of a playlist (DESIGN §4: declare what was
/// produced, not what was asked for). `sizes[i]` is the byte size of segment `i`. Durations
/// are taken as a playlist states them (`EXTINF` is written from, and read back as, an
/// `f32`), so whoever measures from the playlist gets the same numbers.
pub fn measure(durations: &[f64], sizes: &[u64]) -> Measured {
    let mut peak = 0.0f64;
    let (mut bits, mut secs) = (0.0f64, 0.0f64);
    for (&d, &s) in durations.iter().zip(sizes) {
        let d = f64::from(d as f32);
        let b = s as f64 * 8.0;
        bits += b;
        secs += d;
        // A very short final segment can show a silly rate; judge it over at least 1 s.
        peak = peak.max(b / d.max(1.0));
    }
    let average = if secs > 0.0 { bits / secs } else { 0.0 };
    Measured {
        peak: peak.ceil() as u64,
        average: average.ceil() as u64,
    }
}

/// `avc1.PPCCLL` from ffprobe's profile name and level of the encoded stream.
pub fn avc1_codec(profile: &str, level: i64) -> Option<String> {
    let (profile_idc, constraints) = match profile {
        "Constrained Baseline" => (0x42, 0xE0),
        "Baseline" => (0x42, 0x00),
        "Main" => (0x4D, 0x40),
        "Extended" => (0x58, 0x00),
        "High" => (0x64, 0x00),
        "High 10" => (0x6E, 0x00),
        "High 4:2:2" => (0x7A, 0x00),
        "High 4:4:4 Predictive" => (0xF4, 0x00),
        _ => return None,
    };
    (level > 0).then(|| format!("avc1.{profile_idc:02x}{constraints:02x}{level:02x}"))
}

pub async fn video_codec_of(segment: &Path) -> Result<String> {
    let args: Vec<OsString> = vec![
        "-select_streams".into(),
        "v:0".into(),
        "-show_entries".into(),
        "stream=codec_name,profile,level".into(),
        segment.as_os_str().to_owned(),
    ];
    let doc = ffprobe_json(&args)
        .await
        .map_err(|e| MediaError::Verification(format!("segment {}: {e}", segment.display())))?;
    let stream = &doc["streams"][0];
    let profile = stream["profile"].as_str().unwrap_or_default();
    let level = stream["level"].as_i64().unwrap_or(0);
    avc1_codec(profile, level).ok_or_else(|| {
        MediaError::Verification(format!(
            "segment {} has no recognizable H.264 profile ({profile:?}, level {level})",
            segment.display()
        ))
    })
}

pub fn read_media_playlist(path: &Path) -> Result<MediaPlaylist> {
    let bytes = std::fs::read(path).map_err(MediaError::io("reading playlist", path))?;
    let playlist = m3u8_rs::parse_media_playlist_res(&bytes).map_err(|e| {
        MediaError::Verification(format!("playlist {} does not parse: {e:?}", path.display()))
    })?;
    if !playlist.end_list || playlist.playlist_type != Some(MediaPlaylistType::Vod) {
        return Err(MediaError::Verification(format!(
            "playlist {} is not a finished VOD playlist",
            path.display()
        )));
    }
    if playlist.segments.is_empty() {
        return Err(MediaError::Verification(format!(
            "playlist {} has no segments",
            path.display()
        )));
    }
    Ok(playlist)
}

/// Publishes the local renditions ffmpeg wrote under `work/<name>/` (segments checked
/// and uploaded), then their playlists and the master.
pub async fn publish_hls(
    storage: &Storage,
    bucket: &str,
    prefix: &str,
    work: &Path,
    variants: &[LocalVariant],
) -> Result<HlsOutput> {
    let mut published = Vec::new();
    for v in variants {
        let dir = work.join(&v.name);
        let playlist = read_media_playlist(&dir.join(MEDIA_PLAYLIST))?;
        let mut segments = Vec::new();
        let mut first_file = None;
        for seg in &playlist.segments {
            if seg.uri.contains('/') || seg.uri.contains("..") {
                return Err(MediaError::Verification(format!(
                    "unexpected segment URI {:?}",
                    seg.uri
                )));
            }
            let path = dir.join(&seg.uri);
            let size = std::fs::metadata(&path)
                .map_err(MediaError::io("reading segment", &path))?
                .len();
            if size == 0 {
                return Err(MediaError::Verification(format!(
                    "segment {} is empty",
                    path.display()
                )));
            }
            storage
                .put_file(
                    &path,
                    &ObjectRef::new(bucket, hls_file_key(prefix, &v.name, &seg.uri)),
                )
                .await?;
            first_file.get_or_insert(path);
            segments.push(SegmentInfo {
                uri: seg.uri.clone(),
                duration: f64::from(seg.duration),
                bytes: size,
            });
        }
        let mut codecs = Vec::new();
        if let (true, Some(first)) = (v.has_video, &first_file) {
            codecs.push(video_codec_of(first).await?);
        }
        if v.has_audio {
            codecs.push(AAC_LC.to_string());
        }
        published.push(PublishedRendition {
            name: v.name.clone(),
            segments,
            codecs: codecs.join(","),
            resolution: v.resolution,
            frame_rate: v.frame_rate,
            encoder: v.encoder.clone(),
        });
    }
    publish_playlists(storage, bucket, prefix, work, &published).await
}

/// A rendition whose segments are in the store: what its playlist and the master need.
#[derive(Debug, Clone)]
pub struct PublishedRendition {
    pub name: String,
    pub segments: Vec<SegmentInfo>,
    /// `CODECS` of the master's entry.
    pub codecs: String,
    pub resolution: Option<(u32, u32)>,
    pub frame_rate: Option<f64>,
    pub encoder: String,
}

/// Writes each rendition's playlist and the master over them, with bandwidths measured
/// from the segments.
pub async fn publish_playlists(
    storage: &Storage,
    bucket: &str,
    prefix: &str,
    work: &Path,
    renditions: &[PublishedRendition],
) -> Result<HlsOutput> {
    let mut results = Vec::new();
    let mut bytes_out = 0u64;
    let mut master = MasterPlaylist {
        version: Some(3),
        independent_segments: true,
        ..Default::default()
    };
    for r in renditions {
        if r.segments.is_empty() {
            return Err(MediaError::Verification(format!(
                "rendition {} has no segments",
                r.name
            )));
        }
        let durations: Vec<f64> = r.segments.iter().map(|s| s.duration).collect();
        let sizes: Vec<u64> = r.segments.iter().map(|s| s.bytes).collect();
        let measured = measure(&durations, &sizes);
        bytes_out += sizes.iter().sum::<u64>();
        let playlist_key = media_playlist_key(prefix, &r.name);
        put_playlist(
            storage,
            &media_playlist(&r.segments),
            &work.join(format!("{}.m3u8", r.name)),
            &ObjectRef::new(bucket, &playlist_key),
        )
        .await?;
        master.variants.push(VariantStream {
            uri: media_playlist_uri(&r.name),
            bandwidth: measured.peak,
            average_bandwidth: Some(measured.average),
            codecs: Some(r.codecs.clone()),
            resolution: r.resolution.map(|(w, h)| Resolution {
                width: u64::from(w),
                height: u64::from(h),
            }),
            frame_rate: r.frame_rate.map(|f| (f * 1000.0).round() / 1000.0),
            ..Default::default()
        });
        results.push(VariantResult {
            name: r.name.clone(),
            playlist_key,
            resolution: r.resolution,
            bandwidth: measured.peak,
            average_bandwidth: measured.average,
            codecs: r.codecs.clone(),
            segment_count: r.segments.len() as u32,
            encoder: r.encoder.clone(),
        });
    }
    let master_key = hls_master_key(prefix);
    put_master_playlist(
        storage,
        &master,
        &work.join(MASTER_PLAYLIST),
        &ObjectRef::new(bucket, &master_key),
    )
    .await?;
    Ok(HlsOutput {
        master_key,
        variants: results,
        delivered_loudness: None,
        preview_key: None,
        preview_seconds: None,
        bytes_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_attributes_cannot_be_broken_out_of() {
        assert_eq!(playlist_text("The \"Cut\"\n,URI=x"), "The 'Cut' ,URI=x");
    }

    #[test]
    fn measures_peak_and_average() {
        let m = measure(&[6.0, 6.0, 2.0], &[750_000, 1_500_000, 100_000]);
        assert_eq!(m.peak, 2_000_000);
        assert_eq!(m.average, (2_350_000.0f64 * 8.0 / 14.0).ceil() as u64);
        // A tiny last segment is judged over one second, not 0.1 s.
        let m = measure(&[0.1], &[1000]);
        assert_eq!(m.peak, 8000);
    }

    #[test]
    fn codec_strings() {
        assert_eq!(avc1_codec("High", 40).as_deref(), Some("avc1.640028"));
        assert_eq!(avc1_codec("Main", 31).as_deref(), Some("avc1.4d401f"));
        assert_eq!(
            avc1_codec("Constrained Baseline", 30).as_deref(),
            Some("avc1.42e01e")
        );
        assert_eq!(avc1_codec("High", -99), None);
        assert_eq!(avc1_codec("Weird", 30), None);
    }
}
