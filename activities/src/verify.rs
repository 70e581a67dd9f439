//! The verification gate: before a job is reported ready, check what the success webhook
//! will point at the way a player and a consumer would. Also `transcoder verify`.

use crate::error::{MediaError, Result};
use crate::ffmpeg::ffprobe_json;
use crate::hls::{avc1_codec, measure, Measured, AAC_LC};
use crate::storage::Storage;
use crate::thumbnail::verify_jpeg;
use crate::waveform;
use futures::stream::{self, StreamExt, TryStreamExt};
use m3u8_rs::{AlternativeMediaType, MasterPlaylist, MediaPlaylist, MediaPlaylistType};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use transcoder_workflows::media::{ObjectRef, VerifyInput, VerifyReport};
use transcoder_workflows::workflow::THUMBNAIL_SIZE;

/// How many ffprobe processes run at once while checking segments.
const PROBE_CONCURRENCY: usize = 4;

fn fail(msg: impl Into<String>) -> MediaError {
    MediaError::Verification(msg.into())
}

/// Joins a playlist-relative URI onto the key of the playlist that names it.
fn sibling_key(playlist_key: &str, uri: &str) -> Result<String> {
    if uri.contains("://") || uri.starts_with('/') || uri.split('/').any(|s| s == ".." || s == ".")
    {
        return Err(fail(format!(
            "{playlist_key} references {uri:?}, which is not a plain relative path"
        )));
    }
    Ok(match playlist_key.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{uri}"),
        None => uri.to_string(),
    })
}

async fn local(storage: &Storage, bucket: &str, key: &str, scratch: &Path) -> Result<PathBuf> {
    storage
        .readable_path(&ObjectRef::new(bucket, key), scratch)
        .await
        .map_err(|e| fail(format!("{bucket}/{key} is missing or unreadable: {e}")))
}

async fn read(storage: &Storage, bucket: &str, key: &str, scratch: &Path) -> Result<Vec<u8>> {
    let path = local(storage, bucket, key, scratch).await?;
    std::fs::read(&path).map_err(|e| fail(format!("{bucket}/{key}: {e}")))
}

fn parse_media(key: &str, bytes: &[u8]) -> Result<MediaPlaylist> {
    let p = m3u8_rs::parse_media_playlist_res(bytes)
        .map_err(|e| fail(format!("{key} does not parse: {e:?}")))?;
    if p.playlist_type != Some(MediaPlaylistType::Vod) || !p.end_list {
        return Err(fail(format!(
            "{key} is not a finished VOD playlist (PLAYLIST-TYPE:VOD and ENDLIST)"
        )));
    }
    if p.segments.is_empty() {
        return Err(fail(format!("{key} has no segments")));
    }
    for (i, seg) in p.segments.iter().enumerate() {
        // RFC 8216 §4.3.3.1: each EXTINF, rounded to an integer, must not exceed the target.
        if f64::from(seg.duration).round() as u64 > p.target_duration {
            return Err(fail(format!(
                "{key}: segment {i} lasts {:.3} s, over TARGETDURATION {}",
                seg.duration, p.target_duration
            )));
        }
    }
    Ok(p)
}

/// First video frame of a segment: is it a keyframe, and when does it start.
#[derive(Debug, Clone, Copy)]
struct SegmentStart {
    keyframe: bool,
    pts: f64,
}

async fn segment_start(path: &Path) -> Result<SegmentStart> {
    let args: Vec<OsString> = vec![
        "-select_streams".into(),
        "v:0".into(),
        "-read_intervals".into(),
        "%+#1".into(),
        "-show_entries".into(),
        "frame=key_frame,pict_type,pts_time,best_effort_timestamp_time".into(),
        path.as_os_str().to_owned(),
    ];
    let doc = ffprobe_json(&args)
        .await
        .map_err(|e| fail(format!("{}: {e}", path.display())))?;
    let frame = &doc["frames"][0];
    let time = |k: &str| frame[k].as_str().and_then(|v| v.parse::<f64>().ok());
    Ok(SegmentStart {
        keyframe: frame["key_frame"].as_i64() == Some(1)
            && frame["pict_type"].as_str() == Some("I"),
        pts: time("pts_time")
            .or_else(|| time("best_effort_timestamp_time"))
            .unwrap_or(f64::NAN),
    })
}

/// The first video packet of every segment of one rendition, from a single ffprobe over
/// the segments joined with the `concat:` protocol: each packet's byte position says which
/// file it came from, so one process replaces one per segment (ffprobe's start-up is most
/// of the cost of a small probe). `None` when that cannot be done (a path with `|` in it,
/// no positions, a segment with no video packet): the caller probes each file instead.
async fn segment_starts_in_one_pass(paths: &[PathBuf]) -> Option<Vec<SegmentStart>> {
    let mut joined = OsString::from("concat:");
    let mut ends = Vec::with_capacity(paths.len());
    let mut offset = 0u64;
    for (i, path) in paths.iter().enumerate() {
        let text = path.to_str()?;
        if text.contains('|') {
            return None;
        }
        if i > 0 {
            joined.push("|");
        }
        joined.push(text);
        offset += std::fs::metadata(path).ok()?.len();
        ends.push(offset);
    }
    let args: Vec<OsString> = vec![
        "-select_streams".into(),
        "v:0".into(),
        "-show_entries".into(),
        "packet=pts_time,flags,pos".into(),
        joined,
    ];
    let doc = ffprobe_json(&args).await.ok()?;
    let packets = doc["packets"].as_array()?;
    let mut starts: Vec<Option<SegmentStart>> = vec![None; paths.len()];
    for packet in packets {
        let pos: u64 = packet["pos"].as_str()?.parse().ok()?;
        let segment = ends.iter().position(|&end| pos < end)?;
        if starts[segment].is_none() {
            let flags = packet["flags"].as_str().unwrap_or_default();
            starts[segment] = Some(SegmentStart {
                keyframe: flags.contains('K'),
                pts: packet["pts_time"]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN),
            });
        }
    }
    starts.into_iter().collect()
}

/// Codec string and audio presence of a segment, read from the bitstream.
async fn segment_codecs(path: &Path) -> Result<(Option<String>, bool)> {
    let args: Vec<OsString> = vec![
        "-show_entries".into(),
        "stream=codec_type,codec_name,profile,level".into(),
        path.as_os_str().to_owned(),
    ];
    let doc = ffprobe_json(&args)
        .await
        .map_err(|e| fail(format!("{}: {e}", path.display())))?;
    let streams = doc["streams"].as_array().cloned().unwrap_or_default();
    let video = streams.iter().find(|s| s["codec_type"] == "video");
    let codec = video.and_then(|v| {
        avc1_codec(
            v["profile"].as_str().unwrap_or_default(),
            v["level"].as_i64().unwrap_or(0),
        )
    });
    let audio = streams
        .iter()
        .any(|s| s["codec_type"] == "audio" && s["codec_name"] == "aac");
    Ok((codec, audio))
}

/// Runs every check; the first failure is returned as a permanent verification error.
pub async fn verify_outputs(
    storage: &Storage,
    input: &VerifyInput,
    scratch: &Path,
) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let bucket = input.media_bucket.as_str();
    let master_bytes = read(storage, bucket, &input.master_key, scratch).await?;
    let master: MasterPlaylist = m3u8_rs::parse_master_playlist_res(&master_bytes)
        .map_err(|e| fail(format!("master {} does not parse: {e:?}", input.master_key)))?;
    if master.variants.is_empty() {
        return Err(fail("the master playlist lists no variants"));
    }
    report.playlists += 1;

    // Expected renditions, by name and size, in ladder order.
    if !input.video_renditions.is_empty() {
        let listed: Vec<(String, Option<(u64, u64)>)> = master
            .variants
            .iter()
            .map(|v| {
                let name = v.uri.split('/').next().unwrap_or_default().to_string();
                (name, v.resolution.map(|r| (r.width, r.height)))
            })
            .collect();
        let expected: Vec<(String, Option<(u64, u64)>)> = input
            .video_renditions
            .iter()
            .map(|(n, w, h)| (n.clone(), Some((u64::from(*w), u64::from(*h)))))
            .collect();
        if listed != expected {
            return Err(fail(format!(
                "master lists {listed:?}, expected {expected:?}"
            )));
        }
        report.checks.push(format!(
            "master lists exactly {} renditions at their planned sizes",
            expected.len()
        ));
    }

    // Demuxed audio (EXT-X-MEDIA TYPE=AUDIO): check the audio rendition once, then count
    // its bandwidth and codec into every variant that refers to its group.
    let mut audio_groups: std::collections::HashMap<String, (Measured, bool)> = Default::default();
    for alt in master
        .alternatives
        .iter()
        .filter(|a| a.media_type == AlternativeMediaType::Audio)
    {
        let Some(uri) = &alt.uri else { continue };
        let key = sibling_key(&input.master_key, uri)?;
        let playlist = parse_media(&key, &read(storage, bucket, &key, scratch).await?)?;
        report.playlists += 1;
        let (mut sizes, mut durations) = (Vec::new(), Vec::new());
        let mut first = None;
        for seg in &playlist.segments {
            let path = local(storage, bucket, &sibling_key(&key, &seg.uri)?, scratch).await?;
            sizes.push(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0));
            durations.push(f64::from(seg.duration));
            first.get_or_insert(path);
        }
        report.segments += sizes.len() as u32;
        let total: f64 = durations.iter().sum();
        if (total - input.duration_seconds).abs() > 0.5 + input.duration_seconds * 0.005 {
            return Err(fail(format!(
                "audio {key} lasts {total:.3} s but the input lasts {:.3} s",
                input.duration_seconds
            )));
        }
        let is_aac = match &first {
            Some(path) => segment_codecs(path).await?.1,
            None => false,
        };
        if !is_aac {
            return Err(fail(format!("audio rendition {key} does not hold AAC")));
        }
        audio_groups.insert(alt.group_id.clone(), (measure(&durations, &sizes), is_aac));
        report
            .checks
            .push(format!("audio rendition {key} lasts {total:.2} s"));
    }

    let mut reference: Option<(String, Vec<f64>, Vec<SegmentStart>)> = None;
    for variant in &master.variants {
        let key = sibling_key(&input.master_key, &variant.uri)?;
        let playlist = parse_media(&key, &read(storage, bucket, &key, scratch).await?)?;
        report.playlists += 1;
        let mut paths = Vec::new();
        let mut sizes = Vec::new();
        let mut durations = Vec::new();
        for seg in &playlist.segments {
            let seg_key = sibling_key(&key, &seg.uri)?;
            let path = local(storage, bucket, &seg_key, scratch).await?;
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if size == 0 {
                return Err(fail(format!("segment {seg_key} is empty")));
            }
            sizes.push(size);
            durations.push(f64::from(seg.duration));
            paths.push(path);
        }
        report.segments += paths.len() as u32;
        let group = match &variant.audio {
            Some(id) => Some(audio_groups.get(id).copied().ok_or_else(|| {
                fail(format!(
                    "{key} refers to audio group {id:?}, which the master does not define"
                ))
            })?),
            None => None,
        };

        // Declared bandwidth must be what a player fetches: the segments plus their audio.
        let mut measured = measure(&durations, &sizes);
        if let Some((audio, _)) = group {
            measured.peak += audio.peak;
            measured.average += audio.average;
        }
        if variant.bandwidth < measured.peak
            || variant.bandwidth > measured.peak + measured.peak / 100 + 1
        {
            return Err(fail(format!(
                "{key}: BANDWIDTH {} but the measured peak is {}",
                variant.bandwidth, measured.peak
            )));
        }
        let declared_avg = variant.average_bandwidth.unwrap_or(0);
        if declared_avg.abs_diff(measured.average) > measured.average / 100 + 1 {
            return Err(fail(format!(
                "{key}: AVERAGE-BANDWIDTH {declared_avg} but the measured average is {}",
                measured.average
            )));
        }

        // CODECS must describe the bitstream.
        let declared = variant.codecs.clone().unwrap_or_default();
        let (video_codec, muxed_audio) = segment_codecs(&paths[0]).await?;
        let has_audio = muxed_audio || group.is_some_and(|(_, aac)| aac);
        let mut actual: Vec<String> = video_codec.iter().cloned().collect();
        if has_audio {
            actual.push(AAC_LC.to_string());
        }
        if declared != actual.join(",") {
            return Err(fail(format!(
                "{key}: CODECS {declared:?} but the segments hold {:?}",
                actual.join(",")
            )));
        }
        if let Some(expected_audio) = input.has_audio {
            if expected_audio != has_audio {
                return Err(fail(format!(
                    "{key}: audio present = {has_audio}, expected {expected_audio}"
                )));
            }
        }

        // Video: each segment starts with a keyframe, at the same time in every rendition.
        let starts: Vec<SegmentStart> = if video_codec.is_some() {
            match segment_starts_in_one_pass(&paths).await {
                Some(starts) => starts,
                None => {
                    stream::iter(
                        paths
                            .clone()
                            .into_iter()
                            .map(|p| async move { segment_start(&p).await }),
                    )
                    .buffered(PROBE_CONCURRENCY)
                    .try_collect()
                    .await?
                }
            }
        } else {
            Vec::new()
        };
        if let Some(i) = starts.iter().position(|s| !s.keyframe) {
            return Err(fail(format!(
                "{key}: segment {i} does not start with an IDR frame"
            )));
        }
        match &reference {
            None => reference = Some((key.clone(), durations, starts)),
            Some((ref_key, ref_durations, ref_starts)) => {
                if ref_durations.len() != durations.len() {
                    return Err(fail(format!(
                        "{key} has {} segments but {ref_key} has {}",
                        durations.len(),
                        ref_durations.len()
                    )));
                }
                for (i, (a, b)) in ref_durations.iter().zip(&durations).enumerate() {
                    if (a - b).abs() > 0.05 {
                        return Err(fail(format!(
                            "segment {i} lasts {b:.3} s in {key} but {a:.3} s in {ref_key}"
                        )));
                    }
                }
                for (i, (a, b)) in ref_starts.iter().zip(&starts).enumerate() {
                    if (a.pts - b.pts).abs() > 0.02 {
                        return Err(fail(format!(
                            "segment {i} starts at {:.3} s in {key} but {:.3} s in {ref_key}",
                            b.pts, a.pts
                        )));
                    }
                }
            }
        }
    }
    if let Some((_, durations, _)) = &reference {
        let total: f64 = durations.iter().sum();
        if (total - input.duration_seconds).abs() > 0.5 + input.duration_seconds * 0.005 {
            return Err(fail(format!(
                "renditions last {total:.3} s but the input lasts {:.3} s",
                input.duration_seconds
            )));
        }
    }
    report
        .checks
        .push("playlists parse, are VOD with ENDLIST, EXTINF within TARGETDURATION".into());
    report.checks.push(
        "BANDWIDTH/AVERAGE-BANDWIDTH match the measured segments; CODECS match the bitstream"
            .into(),
    );
    report
        .checks
        .push("segments start with IDR frames at identical times in every rendition".into());

    if let Some(preview_key) = &input.preview_key {
        let playlist = parse_media(
            preview_key,
            &read(storage, bucket, preview_key, scratch).await?,
        )?;
        report.playlists += 1;
        for seg in &playlist.segments {
            local(
                storage,
                bucket,
                &sibling_key(preview_key, &seg.uri)?,
                scratch,
            )
            .await?;
        }
        let total: f64 = playlist
            .segments
            .iter()
            .map(|s| f64::from(s.duration))
            .sum();
        if (total - input.preview_seconds).abs() > 1.5 {
            return Err(fail(format!(
                "preview lasts {total:.2} s, expected about {:.2} s",
                input.preview_seconds
            )));
        }
        report.checks.push(format!("preview lasts {total:.2} s"));
    }

    let assets = input.assets_bucket.as_str();
    if let Some(key) = &input.thumbnail_key {
        let path = local(storage, assets, key, scratch).await?;
        let (w, h) = THUMBNAIL_SIZE;
        verify_jpeg(&path, w, h)?;
        report.checks.push(format!("thumbnail is a {w}x{h} JPEG"));
    }
    if let Some(key) = &input.waveform_json_key {
        let bytes = read(storage, assets, key, scratch).await?;
        waveform::check_json_bytes(&bytes, input.duration_seconds)?;
        report
            .checks
            .push("waveform JSON is audiowaveform v2, 8-bit, 10 points/s".into());
    }
    if let Some(key) = &input.waveform_png_key {
        waveform::check_png(&local(storage, assets, key, scratch).await?)?;
        report.checks.push(format!(
            "waveform PNG is {}x{}",
            waveform::IMAGE_WIDTH,
            waveform::IMAGE_HEIGHT
        ));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Segments cut every 2 s from a stream with one keyframe every 4 s: every other one
    /// starts mid-GOP. The one-pass probe must see exactly what probing each file sees.
    #[tokio::test]
    async fn one_pass_probe_finds_segments_that_do_not_start_with_a_keyframe() {
        let dir = tempfile::tempdir().expect("tmp");
        let status = tokio::process::Command::new(crate::ffmpeg::run::ffmpeg_bin())
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
            .args([
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x180:rate=25",
                "-t",
                "8",
            ])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "100",
                "-sc_threshold",
                "0",
            ])
            .args(["-f", "hls", "-hls_time", "2", "-hls_flags", "split_by_time"])
            .args(["-hls_segment_filename"])
            .arg(dir.path().join("%03d.ts"))
            .arg(dir.path().join("index.m3u8"))
            .status()
            .await
            .expect("ffmpeg");
        assert!(status.success());
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "ts"))
            .collect();
        paths.sort();
        assert_eq!(paths.len(), 4, "{paths:?}");
        let one_pass = segment_starts_in_one_pass(&paths).await.expect("one pass");
        let keyframes: Vec<bool> = one_pass.iter().map(|s| s.keyframe).collect();
        assert_eq!(keyframes, [true, false, true, false]);
        for (path, fast) in paths.iter().zip(&one_pass) {
            let slow = segment_start(path).await.expect("probe");
            assert_eq!(slow.keyframe, fast.keyframe, "{}", path.display());
            // A segment that starts mid-GOP decodes to nothing on its own; where there is a
            // keyframe, both see the same start time.
            if slow.keyframe {
                assert!(
                    (slow.pts - fast.pts).abs() < 1e-3,
                    "{} {slow:?} {fast:?}",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn relative_uris_only() {
        assert_eq!(
            sibling_key("c/hls/m/master.m3u8", "720p/playlist.m3u8").unwrap(),
            "c/hls/m/720p/playlist.m3u8"
        );
        assert!(sibling_key("c/hls/m/master.m3u8", "../x.m3u8").is_err());
        assert!(sibling_key("c/hls/m/master.m3u8", "http://evil/x.m3u8").is_err());
        assert!(sibling_key("c/hls/m/master.m3u8", "/etc/passwd").is_err());
    }

    #[test]
    fn waveform_json_rules() {
        let good = serde_json::json!({"version":2,"channels":1,"sample_rate":44100,"samples_per_pixel":4410,"bits":8,"length":3,"data":[0,1,-1,2,-2,3]});
        let bytes = |v: &serde_json::Value| serde_json::to_vec(v).unwrap();
        waveform::check_json_bytes(&bytes(&good), 0.25).unwrap();
        assert!(
            waveform::check_json_bytes(&bytes(&good), 1.0).is_err(),
            "length 3 for 1 s"
        );
        let mut bad = good.clone();
        bad["bits"] = 16.into();
        assert!(waveform::check_json_bytes(&bytes(&bad), 0.25).is_err());
    }
}
