//! I-frame playlists (`EXT-X-I-FRAMES-ONLY`), which players use for trick play and
//! scrubbing: each IDR frame of a rendition's segments, addressed by byte range inside the
//! segment it is in, so nothing is encoded twice.
//!
//! The ranges are found where the segments are made: a ladder chunk scans each segment it
//! publishes (ffprobe's packet positions) and notes the ranges of the whole chunk in one
//! small object ([`iframe_index_key`]). The assembly reads those notes, writes one I-frame
//! playlist per rendition and lists it in the master, then removes the notes. A chunk
//! whose note is missing (a job started before this existed) has its segments scanned by
//! the assembly instead.
//!
//! An MPEG-TS segment starts with its tables (SDT, PAT, PMT), which a decoder needs before
//! any frame: each segment's first entry carries an `EXT-X-MAP` of those bytes. A frame's
//! range runs from the TS packet that starts it to the packet that starts the next frame.

use crate::error::{MediaError, Result};
use crate::ffmpeg::ffprobe_json;
use crate::storage::Storage;
use m3u8_rs::{ByteRange, Map, MediaPlaylist, MediaPlaylistType, MediaSegment};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use transcoder_workflows::keys::{hls_file_key, iframe_index_key};
use transcoder_workflows::media::{LadderChunkOutput, ObjectRef, SegmentInfo};

/// One IDR frame inside a segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IFrame {
    /// Byte offset of the TS packet that starts the frame.
    pub offset: u64,
    /// Bytes up to the packet that starts the next frame (or the segment's end).
    pub length: u64,
    /// Seconds from the segment's first frame (in presentation order) to this one.
    pub time: f64,
}

/// The IDR frames of one segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentIFrames {
    pub uri: String,
    /// Bytes of the tables before the first frame (the `EXT-X-MAP` range).
    pub tables: u64,
    pub frames: Vec<IFrame>,
}

/// A chunk's note: per rendition, its segments' IDR frames, in order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChunkIFrames {
    pub renditions: Vec<(String, Vec<SegmentIFrames>)>,
}

/// Finds the IDR frames of the MPEG-TS segment at `path` (named `uri` in its playlist).
pub async fn scan_segment(path: &Path, uri: &str) -> Result<SegmentIFrames> {
    let args: Vec<OsString> = [
        "-select_streams",
        "v:0",
        "-show_entries",
        "packet=pts_time,pos,flags",
    ]
    .iter()
    .map(OsString::from)
    .chain([path.as_os_str().to_owned()])
    .collect();
    let doc = ffprobe_json(&args).await?;
    let size = std::fs::metadata(path)
        .map_err(MediaError::io("reading", path))?
        .len();
    let packets: Vec<(u64, bool, f64)> = doc["packets"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter_map(|p| {
                    let pos = p["pos"].as_str()?.parse().ok()?;
                    let key = p["flags"].as_str().is_some_and(|f| f.starts_with('K'));
                    let pts = p["pts_time"].as_str()?.parse().ok()?;
                    Some((pos, key, pts))
                })
                .collect()
        })
        .unwrap_or_default();
    iframes_of(uri, &packets, size).ok_or_else(|| {
        MediaError::Verification(format!(
            "segment {} has no IDR frame at its start",
            path.display()
        ))
    })
}

/// The IDR frames among a segment's video packets (`(pos, key, pts)` in file order), in a
/// file of `size` bytes. `None` unless the segment starts with one, as ours all do.
pub fn iframes_of(uri: &str, packets: &[(u64, bool, f64)], size: u64) -> Option<SegmentIFrames> {
    let first = packets.first()?;
    if !first.1 {
        return None;
    }
    let start = packets.iter().map(|p| p.2).fold(f64::INFINITY, f64::min);
    let frames = packets
        .iter()
        .enumerate()
        .filter(|(_, p)| p.1)
        .map(|(i, p)| {
            let end = packets.get(i + 1).map_or(size, |next| next.0);
            IFrame {
                offset: p.0,
                length: end.saturating_sub(p.0),
                time: p.2 - start,
            }
        })
        .collect();
    Some(SegmentIFrames {
        uri: uri.to_string(),
        tables: first.0,
        frames,
    })
}

/// A local copy of `uri` of `rendition`: the file this attempt wrote under `work` (in the
/// rendition's folder, or a rung group's), else the published object.
async fn local_segment(
    storage: &Storage,
    bucket: &str,
    prefix: &str,
    rendition: &str,
    uri: &str,
    work: &Path,
) -> Result<PathBuf> {
    let mut candidates = vec![work.join(rendition).join(uri)];
    if let Ok(dirs) = std::fs::read_dir(work) {
        candidates.extend(dirs.flatten().map(|d| d.path().join(rendition).join(uri)));
    }
    if let Some(found) = candidates.into_iter().find(|p| p.is_file()) {
        return Ok(found);
    }
    let obj = ObjectRef::new(bucket, hls_file_key(prefix, rendition, uri));
    storage.readable_path(&obj, work).await
}

/// Scans every segment a chunk published and returns its note.
pub async fn scan_chunk(
    storage: &Storage,
    bucket: &str,
    prefix: &str,
    chunk: &LadderChunkOutput,
    work: &Path,
) -> Result<ChunkIFrames> {
    let mut note = ChunkIFrames::default();
    for variant in &chunk.variants {
        let mut segments = Vec::with_capacity(variant.segments.len());
        for seg in &variant.segments {
            let path =
                local_segment(storage, bucket, prefix, &variant.name, &seg.uri, work).await?;
            segments.push(scan_segment(&path, &seg.uri).await?);
        }
        note.renditions.push((variant.name.clone(), segments));
    }
    Ok(note)
}

/// Notes a finished chunk's IDR frames for the assembly.
pub async fn note_chunk(
    storage: &Storage,
    bucket: &str,
    prefix: &str,
    chunk: &LadderChunkOutput,
    work: &Path,
) -> Result<()> {
    std::fs::create_dir_all(work).map_err(MediaError::io("creating", work))?;
    let note = scan_chunk(storage, bucket, prefix, chunk, work).await?;
    let obj = ObjectRef::new(bucket, iframe_index_key(prefix, chunk.index));
    let path = work.join(format!("iframes-{}.json", chunk.index));
    storage.put_json(&note, &path, &obj).await?;
    Ok(())
}

/// Every chunk's note, by rendition, in chunk order: read where the chunk left it, or
/// scanned now where it did not.
pub async fn gather(
    storage: &Storage,
    bucket: &str,
    prefix: &str,
    chunks: &[LadderChunkOutput],
    work: &Path,
) -> Result<HashMap<String, Vec<SegmentIFrames>>> {
    let mut all: HashMap<String, Vec<SegmentIFrames>> = HashMap::new();
    for chunk in chunks {
        let obj = ObjectRef::new(bucket, iframe_index_key(prefix, chunk.index));
        let note = if storage.exists(&obj).await? {
            let mut read: Vec<ChunkIFrames> =
                storage.get_json(std::slice::from_ref(&obj), work).await?;
            read.pop().unwrap_or_default()
        } else {
            tracing::info!(
                chunk = chunk.index,
                "no I-frame note: scanning the chunk's segments"
            );
            scan_chunk(storage, bucket, prefix, chunk, work).await?
        };
        for (name, segments) in note.renditions {
            all.entry(name).or_default().extend(segments);
        }
    }
    Ok(all)
}

/// Removes the chunks' notes (once the master that needed them is published).
pub async fn remove_notes(
    storage: &Storage,
    bucket: &str,
    prefix: &str,
    chunks: &[LadderChunkOutput],
) {
    for chunk in chunks {
        let obj = ObjectRef::new(bucket, iframe_index_key(prefix, chunk.index));
        if let Err(e) = storage.delete(&obj).await {
            tracing::warn!(object = %obj, error = %e, "could not remove an I-frame note");
        }
    }
}

/// What a rendition's I-frame playlist declares in the master, in bits per second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IFrameBandwidth {
    pub peak: u64,
    pub average: u64,
}

/// The I-frame playlist of a rendition whose segments are `segments` (as in its media
/// playlist) and their IDR frames `frames` (the same segments, in order), and its
/// bandwidths. An IDR frame lasts until the next one (or its segment's end).
pub fn iframe_playlist(
    segments: &[SegmentInfo],
    frames: &[SegmentIFrames],
) -> Result<(MediaPlaylist, IFrameBandwidth)> {
    if segments.len() != frames.len() || segments.iter().zip(frames).any(|(s, f)| s.uri != f.uri) {
        return Err(MediaError::Verification(
            "the I-frame notes do not match the rendition's segments".into(),
        ));
    }
    let mut entries = Vec::new();
    let (mut peak, mut bytes, mut seconds) = (0f64, 0u64, 0f64);
    for (seg, f) in segments.iter().zip(frames) {
        for (i, frame) in f.frames.iter().enumerate() {
            let until = f.frames.get(i + 1).map_or(seg.duration, |next| next.time);
            let duration = (until - frame.time).max(0.001);
            peak = peak.max(frame.length as f64 * 8.0 / duration);
            bytes += frame.length;
            seconds += duration;
            entries.push(MediaSegment {
                uri: f.uri.clone(),
                duration: duration as f32,
                byte_range: Some(ByteRange {
                    length: frame.length,
                    offset: Some(frame.offset),
                }),
                map: (i == 0).then(|| Map {
                    uri: f.uri.clone(),
                    byte_range: Some(ByteRange {
                        length: f.tables,
                        offset: Some(0),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    let target = entries
        .iter()
        .map(|e| f64::from(e.duration).ceil() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    let playlist = MediaPlaylist {
        // EXT-X-MAP in an I-frame playlist needs version 5.
        version: Some(5),
        target_duration: target,
        segments: entries,
        end_list: true,
        playlist_type: Some(MediaPlaylistType::Vod),
        i_frames_only: true,
        independent_segments: true,
        ..Default::default()
    };
    let average = if seconds > 0.0 {
        (bytes as f64 * 8.0 / seconds).round() as u64
    } else {
        0
    };
    Ok((
        playlist,
        IFrameBandwidth {
            peak: peak.ceil() as u64,
            average,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idr_frames_are_found_with_their_ranges_and_times() {
        // Tables in the first 564 bytes; IDR frames at 0 s and 2 s; B- and P-frames between.
        let packets = [
            (564, true, 1.4667),
            (5264, false, 1.6),
            (7144, false, 1.5333),
            (73132, true, 3.4667),
            (80000, false, 3.5333),
        ];
        let seg = iframes_of("00003.ts", &packets, 100_000).unwrap();
        assert_eq!(seg.tables, 564);
        assert_eq!(seg.frames.len(), 2);
        assert_eq!((seg.frames[0].offset, seg.frames[0].length), (564, 4700));
        assert_eq!((seg.frames[1].offset, seg.frames[1].length), (73132, 6868));
        assert!((seg.frames[1].time - 2.0).abs() < 1e-3);
        // A segment that does not start on an IDR frame is not ours.
        assert!(iframes_of("x.ts", &packets[1..], 100_000).is_none());
    }

    #[test]
    fn the_playlist_maps_each_segment_and_lasts_as_long_as_the_rendition() {
        let seg = |n: u32, duration: f64| SegmentInfo {
            uri: format!("{n:05}.ts"),
            duration,
            bytes: 100_000,
        };
        let frames = |n: u32, times: &[f64]| SegmentIFrames {
            uri: format!("{n:05}.ts"),
            tables: 564,
            frames: times
                .iter()
                .enumerate()
                .map(|(i, t)| IFrame {
                    offset: 564 + i as u64 * 30_000,
                    length: 10_000,
                    time: *t,
                })
                .collect(),
        };
        let segments = [seg(0, 6.0), seg(1, 3.0)];
        let notes = [frames(0, &[0.0, 2.0, 4.0]), frames(1, &[0.0, 2.0])];
        let (playlist, bandwidth) = iframe_playlist(&segments, &notes).unwrap();
        assert!(playlist.i_frames_only);
        assert_eq!(playlist.segments.len(), 5);
        let total: f32 = playlist.segments.iter().map(|s| s.duration).sum();
        assert!((total - 9.0).abs() < 1e-3, "{total}");
        // The last frame lasts 1 s: 80 kb/s at its peak.
        assert_eq!(bandwidth.peak, 80_000);
        let maps = playlist.segments.iter().filter(|s| s.map.is_some()).count();
        assert_eq!(maps, 2);
        let mut text = Vec::new();
        playlist.write_to(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("#EXT-X-I-FRAMES-ONLY"), "{text}");
        assert!(
            text.contains("#EXT-X-MAP:URI=\"00001.ts\",BYTERANGE=\"564@0\""),
            "{text}"
        );
        assert!(text.contains("#EXT-X-BYTERANGE:10000@30564"), "{text}");
        // Notes that do not match the segments are refused.
        assert!(iframe_playlist(&segments, &notes[..1]).is_err());
    }
}
