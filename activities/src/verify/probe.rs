//! What the gate reads of segments with ffprobe: the first video frame (is it a keyframe,
//! when does it start) and the codecs the bitstream holds.

use super::fail;
use crate::error::Result;
use crate::ffmpeg::ffprobe_json;
use crate::hls::sps_codec;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// First video frame of a segment: is it a keyframe, and when does it start.
#[derive(Debug, Clone, Copy)]
pub(super) struct SegmentStart {
    pub(super) keyframe: bool,
    pub(super) pts: f64,
}

pub(super) async fn segment_start(path: &Path) -> Result<SegmentStart> {
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
pub(super) async fn segment_starts_in_one_pass(paths: &[PathBuf]) -> Option<Vec<SegmentStart>> {
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
pub(super) async fn segment_codecs(path: &Path) -> Result<(Option<String>, bool)> {
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
    let codec = match video {
        Some(_) => sps_codec(path)
            .await
            .map_err(|e| fail(format!("{}: {e}", path.display())))?,
        None => None,
    };
    let audio = streams
        .iter()
        .any(|s| s["codec_type"] == "audio" && s["codec_name"] == "aac");
    Ok((codec, audio))
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
}
