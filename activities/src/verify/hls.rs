//! The gate's checks of the HLS tree: the master lists the planned renditions; the audio
//! renditions hold AAC over the programme's length; every variant's segments exist, its
//! BANDWIDTH and AVERAGE-BANDWIDTH are what a player fetches (its segments plus its audio),
//! its CODECS are the bitstream's; every video segment starts with an IDR frame at the same
//! time, with the same length, in every rendition.

use super::probe::{segment_codecs, segment_start, segment_starts_in_one_pass, SegmentStart};
use super::{fail, sibling_key, Gate};
use crate::error::Result;
use crate::hls::{measure, Measured, AAC_LC};
use futures::stream::{self, StreamExt, TryStreamExt};
use m3u8_rs::{AlternativeMediaType, MasterPlaylist, VariantStream};
use std::collections::HashMap;
use std::path::PathBuf;

/// How many ffprobe processes run at once while checking segments.
const PROBE_CONCURRENCY: usize = 4;

/// An audio group's measured bitrates, and whether it holds AAC.
type AudioGroups = HashMap<String, (Measured, bool)>;

/// One variant as checked: its key, segment lengths and where each segment starts.
struct Timeline {
    key: String,
    durations: Vec<f64>,
    starts: Vec<SegmentStart>,
}

/// Every check of the tree under the master playlist.
pub(super) async fn check_tree(gate: &mut Gate<'_>) -> Result<()> {
    let master = check_master(gate).await?;
    let groups = check_audio_renditions(gate, &master).await?;
    let mut reference: Option<Timeline> = None;
    for variant in master.variants.iter().filter(|v| !v.is_i_frame) {
        let timeline = check_variant(gate, variant, &groups).await?;
        match &reference {
            None => reference = Some(timeline),
            Some(first) => check_aligned(first, &timeline)?,
        }
    }
    if let Some(first) = &reference {
        let total: f64 = first.durations.iter().sum();
        check_length("the renditions last", total, gate.input.duration_seconds)?;
        check_subtitles(gate, &master, &first.durations).await?;
    }
    let trick_play: Vec<&VariantStream> = master.variants.iter().filter(|v| v.is_i_frame).collect();
    for variant in &trick_play {
        check_iframes(gate, variant).await?;
    }
    if !trick_play.is_empty() {
        gate.passed(format!(
            "{} I-frame playlists address IDR frames inside their renditions' segments",
            trick_play.len()
        ));
    }
    gate.passed("playlists parse, are VOD with ENDLIST, EXTINF within TARGETDURATION");
    gate.passed(
        "BANDWIDTH/AVERAGE-BANDWIDTH match the measured segments; CODECS match the bitstream",
    );
    gate.passed("segments start with IDR frames at identical times in every rendition");
    Ok(())
}

/// `what` lasts `total` seconds: the input's length, within half a second and 0.5 %.
pub(super) fn check_length(what: &str, total: f64, expected: f64) -> Result<()> {
    if (total - expected).abs() > 0.5 + expected * 0.005 {
        return Err(fail(format!(
            "{what} {total:.3} s, but the input lasts {expected:.3} s"
        )));
    }
    Ok(())
}

/// The master parses, lists variants, and (for a video) exactly the planned renditions at
/// their planned sizes (in any order: the one to start with comes first).
async fn check_master(gate: &mut Gate<'_>) -> Result<MasterPlaylist> {
    let (bucket, key) = (&gate.input.media_bucket, &gate.input.master_key);
    let bytes = gate.read(bucket, key).await?;
    let master: MasterPlaylist = m3u8_rs::parse_master_playlist_res(&bytes)
        .map_err(|e| fail(format!("master {key} does not parse: {e:?}")))?;
    if master.variants.is_empty() {
        return Err(fail("the master playlist lists no variants"));
    }
    gate.report.playlists += 1;
    if !gate.input.video_renditions.is_empty() {
        let mut listed: Vec<(String, Option<(u64, u64)>)> = master
            .variants
            .iter()
            .filter(|v| !v.is_i_frame)
            .map(|v| {
                let name = v.uri.split('/').next().unwrap_or_default().to_string();
                (name, v.resolution.map(|r| (r.width, r.height)))
            })
            .collect();
        let mut expected: Vec<(String, Option<(u64, u64)>)> = gate
            .input
            .video_renditions
            .iter()
            .map(|(n, w, h)| (n.clone(), Some((u64::from(*w), u64::from(*h)))))
            .collect();
        listed.sort();
        expected.sort();
        if listed != expected {
            return Err(fail(format!(
                "master lists {listed:?}, expected {expected:?}"
            )));
        }
        gate.passed(format!(
            "master lists exactly {} renditions at their planned sizes",
            expected.len()
        ));
    }
    Ok(master)
}

/// Demuxed audio (`EXT-X-MEDIA TYPE=AUDIO`): each rendition is checked once, and its
/// bitrates and codec are kept to count into every variant of its group.
async fn check_audio_renditions(
    gate: &mut Gate<'_>,
    master: &MasterPlaylist,
) -> Result<AudioGroups> {
    let mut groups = AudioGroups::default();
    let bucket = gate.input.media_bucket.clone();
    for alt in master
        .alternatives
        .iter()
        .filter(|a| a.media_type == AlternativeMediaType::Audio)
    {
        let Some(uri) = &alt.uri else { continue };
        let key = sibling_key(&gate.input.master_key, uri)?;
        let playlist = gate.media_playlist(&key).await?;
        let (mut sizes, mut durations) = (Vec::new(), Vec::new());
        let mut first = None;
        for seg in &playlist.segments {
            let path = gate.local(&bucket, &sibling_key(&key, &seg.uri)?).await?;
            sizes.push(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0));
            durations.push(f64::from(seg.duration));
            first.get_or_insert(path);
        }
        gate.report.segments += sizes.len() as u32;
        let total: f64 = durations.iter().sum();
        check_length(
            &format!("audio {key} lasts"),
            total,
            gate.input.duration_seconds,
        )?;
        let is_aac = match &first {
            Some(path) => segment_codecs(path).await?.1,
            None => false,
        };
        if !is_aac {
            return Err(fail(format!("audio rendition {key} does not hold AAC")));
        }
        groups.insert(alt.group_id.clone(), (measure(&durations, &sizes), is_aac));
        gate.passed(format!("audio rendition {key} lasts {total:.2} s"));
    }
    Ok(groups)
}

/// Subtitle renditions (`EXT-X-MEDIA TYPE=SUBTITLES`): each a finished VOD playlist whose
/// segments span the video's exactly, every segment a WebVTT file with the
/// `X-TIMESTAMP-MAP` that places its cues on the video's clock, and every variant names
/// the group.
async fn check_subtitles(
    gate: &mut Gate<'_>,
    master: &MasterPlaylist,
    video_durations: &[f64],
) -> Result<()> {
    let bucket = gate.input.media_bucket.clone();
    let tracks: Vec<_> = master
        .alternatives
        .iter()
        .filter(|a| a.media_type == AlternativeMediaType::Subtitles)
        .collect();
    for alt in &tracks {
        let Some(uri) = &alt.uri else {
            return Err(fail(format!("subtitles {:?} have no URI", alt.name)));
        };
        if master
            .variants
            .iter()
            .any(|v| !v.is_i_frame && v.subtitles.as_deref() != Some(alt.group_id.as_str()))
        {
            return Err(fail(format!(
                "a variant does not name the subtitle group {:?}",
                alt.group_id
            )));
        }
        let key = sibling_key(&gate.input.master_key, uri)?;
        let playlist = gate.media_playlist(&key).await?;
        let durations: Vec<f64> = playlist
            .segments
            .iter()
            .map(|s| f64::from(s.duration))
            .collect();
        if durations.len() != video_durations.len()
            || durations
                .iter()
                .zip(video_durations)
                .any(|(a, b)| (a - b).abs() > 0.001)
        {
            return Err(fail(format!(
                "{key}: its segments do not span the video's ({} against {})",
                durations.len(),
                video_durations.len()
            )));
        }
        for seg in &playlist.segments {
            let seg_key = sibling_key(&key, &seg.uri)?;
            let text = gate.read(&bucket, &seg_key).await?;
            let text = String::from_utf8_lossy(&text);
            let mut lines = text.lines();
            if lines.next() != Some("WEBVTT")
                || !lines
                    .next()
                    .is_some_and(|l| l.starts_with("X-TIMESTAMP-MAP=MPEGTS:"))
            {
                return Err(fail(format!(
                    "{seg_key} is not WebVTT with an X-TIMESTAMP-MAP"
                )));
            }
            gate.report.segments += 1;
        }
    }
    if !tracks.is_empty() {
        gate.passed(format!(
            "{} subtitle renditions are WebVTT segments spanning the video's, mapped to its clock",
            tracks.len()
        ));
    }
    Ok(())
}

/// One variant: its segments exist and are not empty, its declared bandwidths and codecs
/// are what was made, and its video segments start with IDR frames.
/// An I-frame playlist: I-frames only, VOD, each entry a byte range inside a segment that
/// exists, each segment's first entry mapped to the tables at its start, lasting as long as
/// the programme.
async fn check_iframes(gate: &mut Gate<'_>, variant: &VariantStream) -> Result<()> {
    let bucket = gate.input.media_bucket.clone();
    let key = sibling_key(&gate.input.master_key, &variant.uri)?;
    let bytes = gate.read(&bucket, &key).await?;
    let playlist = m3u8_rs::parse_media_playlist_res(&bytes)
        .map_err(|e| fail(format!("{key} does not parse: {e:?}")))?;
    gate.report.playlists += 1;
    if !playlist.i_frames_only || !playlist.end_list || playlist.segments.is_empty() {
        return Err(fail(format!(
            "{key} is not a finished I-frame playlist with entries"
        )));
    }
    let mut sizes: HashMap<String, u64> = HashMap::new();
    let mut total = 0.0;
    let mut mapped: Option<String> = None;
    for entry in &playlist.segments {
        total += f64::from(entry.duration);
        if let Some(map) = &entry.map {
            mapped = Some(map.uri.clone());
        }
        if mapped.as_deref() != Some(entry.uri.as_str()) {
            return Err(fail(format!(
                "{key}: {} has no EXT-X-MAP of its own tables",
                entry.uri
            )));
        }
        let size = match sizes.get(&entry.uri) {
            Some(size) => *size,
            None => {
                let path = gate.local(&bucket, &sibling_key(&key, &entry.uri)?).await?;
                let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                sizes.insert(entry.uri.clone(), size);
                size
            }
        };
        let range = entry
            .byte_range
            .as_ref()
            .ok_or_else(|| fail(format!("{key}: {} has no byte range", entry.uri)))?;
        let end = range.offset.unwrap_or(0) + range.length;
        if range.length == 0 || end > size {
            return Err(fail(format!(
                "{key}: the range {}@{} lies outside {} ({size} bytes)",
                range.length,
                range.offset.unwrap_or(0),
                entry.uri
            )));
        }
    }
    check_length(&format!("{key} lasts"), total, gate.input.duration_seconds)
}

async fn check_variant(
    gate: &mut Gate<'_>,
    variant: &VariantStream,
    groups: &AudioGroups,
) -> Result<Timeline> {
    let bucket = gate.input.media_bucket.clone();
    let key = sibling_key(&gate.input.master_key, &variant.uri)?;
    let playlist = gate.media_playlist(&key).await?;
    let mut paths: Vec<PathBuf> = Vec::new();
    let (mut sizes, mut durations) = (Vec::new(), Vec::new());
    for seg in &playlist.segments {
        let seg_key = sibling_key(&key, &seg.uri)?;
        let path = gate.local(&bucket, &seg_key).await?;
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if size == 0 {
            return Err(fail(format!("segment {seg_key} is empty")));
        }
        sizes.push(size);
        durations.push(f64::from(seg.duration));
        paths.push(path);
    }
    gate.report.segments += paths.len() as u32;
    let group = match &variant.audio {
        Some(id) => Some(groups.get(id).copied().ok_or_else(|| {
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
    if let Some(expected_audio) = gate.input.has_audio {
        if expected_audio != has_audio {
            return Err(fail(format!(
                "{key}: audio present = {has_audio}, expected {expected_audio}"
            )));
        }
    }

    // Video: each segment starts with a keyframe.
    let starts = if video_codec.is_some() {
        video_starts(&paths).await?
    } else {
        Vec::new()
    };
    if let Some(i) = starts.iter().position(|s| !s.keyframe) {
        return Err(fail(format!(
            "{key}: segment {i} does not start with an IDR frame"
        )));
    }
    Ok(Timeline {
        key,
        durations,
        starts,
    })
}

/// Where each video segment starts: one ffprobe over them all, else one per segment.
async fn video_starts(paths: &[PathBuf]) -> Result<Vec<SegmentStart>> {
    if let Some(starts) = segment_starts_in_one_pass(paths).await {
        return Ok(starts);
    }
    stream::iter(
        paths
            .iter()
            .cloned()
            .map(|p| async move { segment_start(&p).await }),
    )
    .buffered(PROBE_CONCURRENCY)
    .try_collect()
    .await
}

/// Two renditions cut on one timeline: as many segments, of the same lengths, starting at
/// the same times.
fn check_aligned(reference: &Timeline, other: &Timeline) -> Result<()> {
    let (ref_key, key) = (&reference.key, &other.key);
    if reference.durations.len() != other.durations.len() {
        return Err(fail(format!(
            "{key} has {} segments but {ref_key} has {}",
            other.durations.len(),
            reference.durations.len()
        )));
    }
    for (i, (a, b)) in reference.durations.iter().zip(&other.durations).enumerate() {
        if (a - b).abs() > 0.05 {
            return Err(fail(format!(
                "segment {i} lasts {b:.3} s in {key} but {a:.3} s in {ref_key}"
            )));
        }
    }
    for (i, (a, b)) in reference.starts.iter().zip(&other.starts).enumerate() {
        if (a.pts - b.pts).abs() > 0.02 {
            return Err(fail(format!(
                "segment {i} starts at {:.3} s in {key} but {:.3} s in {ref_key}",
                b.pts, a.pts
            )));
        }
    }
    Ok(())
}
