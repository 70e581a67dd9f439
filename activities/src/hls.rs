//! HLS helpers: the muxer options of our segments, measured bandwidths, variant playlists and
//! the master written by us over published renditions (segments and variant playlists
//! before the master, so a player never finds a master that points at missing media), from
//! local renditions ffmpeg wrote (`publish_hls`) or segments chunks already published
//! (`publish_playlists`).

use crate::error::{MediaError, Result};
use crate::ffmpeg::FfmpegArgs;
use crate::storage::Storage;
use m3u8_rs::{MasterPlaylist, MediaPlaylist, MediaPlaylistType, Resolution, VariantStream};
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

/// `avc1.PPCCLL` as RFC 6381 spells it: the three bytes after the first sequence parameter
/// set's NAL header in an Annex B stream (profile_idc, the constraint flags, level_idc),
/// exactly as the encoder wrote them. (A profile *name* does not give the flags: x264's
/// Constrained Baseline is `42c0`, other encoders write `42e0`.)
pub fn avc1_from_sps(annexb: &[u8]) -> Option<String> {
    let mut i = 0;
    while i + 3 < annexb.len() {
        if annexb[i..].starts_with(&[0, 0, 1]) {
            let nal = annexb.get(i + 3..i + 7)?;
            if nal[0] & 0x1f == 7 {
                return Some(format!("avc1.{:02x}{:02x}{:02x}", nal[1], nal[2], nal[3]));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    None
}

/// The `CODECS` entry of a segment's H.264 video, read from its first frame's parameter
/// sets; `None` when it holds no H.264 video.
pub async fn sps_codec(segment: &Path) -> Result<Option<String>> {
    let mut a = FfmpegArgs::default();
    a.flags(["-hide_banner", "-nostdin", "-v", "error"])
        .input(segment)
        .opt("-map", "0:v:0?")
        .opt("-frames:v", "1")
        .opt("-c:v", "copy")
        .opt("-f", "h264")
        .output(Path::new("pipe:1"));
    let out =
        crate::ffmpeg::run::run_to_end("ffmpeg", crate::ffmpeg::run::ffmpeg_bin(), a.as_slice())
            .await?;
    if !out.status.success() {
        return Err(MediaError::Verification(format!(
            "segment {}: ffmpeg cannot read its video: {}",
            segment.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(avc1_from_sps(&out.stdout))
}

pub async fn video_codec_of(segment: &Path) -> Result<String> {
    sps_codec(segment).await?.ok_or_else(|| {
        MediaError::Verification(format!(
            "segment {} has no H.264 sequence parameter set",
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
        storyboard_key: None,
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
    fn codec_strings_are_the_sps_bytes() {
        // An access unit delimiter, then the SPS (High 4.0), then the PPS.
        let high = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x67, 0x64, 0x00, 0x28, 0xac, 0, 0, 1, 0x68,
        ];
        assert_eq!(avc1_from_sps(&high).as_deref(), Some("avc1.640028"));
        // x264's Constrained Baseline: constraint_set0 and set1, not set2.
        let baseline = [0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0xd9];
        assert_eq!(avc1_from_sps(&baseline).as_deref(), Some("avc1.42c01e"));
        assert_eq!(avc1_from_sps(&[0, 0, 1, 0x68, 0xce]), None);
        assert_eq!(avc1_from_sps(&[0, 0, 1, 0x67, 0x42]), None);
    }
}
