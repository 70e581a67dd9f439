//! Subtitles as WebVTT renditions.
//!
//! The extraction (one activity beside the ladder) turns every text subtitle stream of the
//! source, and every sidecar file the job names, into one WebVTT file of cues on the
//! programme's clock (`subtitles/NAME/all.vtt`). The assembly then cuts each into segments
//! that span exactly the video's segments, each with the `X-TIMESTAMP-MAP` that ties its
//! clock to the MPEG-TS stamps of the video, and lists them in the master as
//! `EXT-X-MEDIA TYPE=SUBTITLES`. Bitmap subtitles (PGS, DVB, DVD) have no text to carry and
//! are skipped, with the reason logged and returned.

use crate::error::{MediaError, Result};
use crate::fetch::{FetchPolicy, InputUri};
use crate::ffmpeg::args::FfmpegArgs;
use crate::ffmpeg::run::{ffmpeg, ProgressSink};
use crate::hls::{playlist_text, put_playlist};
use crate::probe::language_name;
use crate::secrets::{open_if_sealed, SecretBox};
use crate::storage::Storage;
use crate::webvtt::{parse_vtt, whole_vtt, write_cue, Cue};
use m3u8_rs::{
    AlternativeMedia, AlternativeMediaType, MediaPlaylist, MediaPlaylistType, MediaSegment,
};
use std::path::{Path, PathBuf};
use transcoder_workflows::job::SidecarSubtitle;
use transcoder_workflows::keys::{
    hls_file_key, media_playlist_uri, subtitle_rendition, subtitle_segment_name, MEDIA_PLAYLIST,
    SUBTITLE_FILE,
};
use transcoder_workflows::media::{
    ObjectRef, SegmentInfo, SubtitleStream, SubtitleTrack, SubtitlesInput, SubtitlesOutput,
};

/// `GROUP-ID` of the subtitle renditions every video variant refers to.
pub const SUBTITLE_GROUP: &str = "subs";
/// The largest sidecar file taken: a feature film's subtitles are a few hundred KB.
pub const SIDECAR_MAX_BYTES: u64 = 20 * 1024 * 1024;
/// MPEG-TS clock rate (X-TIMESTAMP-MAP's `MPEGTS` is in its ticks).
const TS_HZ: f64 = 90_000.0;

/// The track cut into one WebVTT segment per video segment (`bounds` are their start and
/// end on the programme's clock). A cue that spans a boundary is repeated in every segment
/// it overlaps, with its own times, which players show once. `mpegts_zero` is the MPEG-TS
/// stamp of the programme's time 0 in the video, so cue times (programme seconds, `LOCAL`
/// 0) land on the frames they belong to.
pub fn segment_vtt(cues: &[Cue], bounds: &[(f64, f64)], mpegts_zero: u64) -> Vec<String> {
    bounds
        .iter()
        .map(|&(start, end)| {
            let mut out =
                format!("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:{mpegts_zero},LOCAL:00:00:00.000\n\n");
            for cue in cues.iter().filter(|c| c.end > start && c.start < end) {
                write_cue(&mut out, cue);
            }
            out
        })
        .collect()
}

/// Start and end of each segment on the programme's clock, from their durations.
pub fn segment_bounds(segments: &[SegmentInfo]) -> Vec<(f64, f64)> {
    let mut t = 0.0;
    segments
        .iter()
        .map(|s| {
            let bounds = (t, t + s.duration);
            t += s.duration;
            bounds
        })
        .collect()
}

/// Folder names for tracks: the language tag, then `-2`, `-3` for a second track of one
/// language.
fn unique_name(language: &str, taken: &mut Vec<String>) -> String {
    let base: String = language
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let base = if base.is_empty() {
        "und".to_string()
    } else {
        base
    };
    let mut name = base.clone();
    let mut n = 2;
    while taken.contains(&name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    taken.push(name.clone());
    name
}

/// What players list for a track: its title, else its language's name, else the tag.
fn label(title: Option<&str>, language: &str) -> String {
    title
        .map(str::to_string)
        .or_else(|| language_name(language).map(str::to_string))
        .unwrap_or_else(|| language.to_string())
}

/// The format of a sidecar file, read from its first bytes: ffmpeg is then told it, so a
/// file that is really a playlist or a concat list is never opened as one.
fn sidecar_format(bytes: &[u8]) -> Option<&'static str> {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4096)]);
    let text = text.trim_start_matches('\u{feff}').trim_start();
    if text.starts_with("WEBVTT") {
        Some("webvtt")
    } else if text.starts_with("[Script Info]") {
        Some("ass")
    } else if text
        .lines()
        .take(3)
        .any(|l| l.contains("-->") && l.contains(','))
    {
        Some("srt")
    } else {
        None
    }
}

/// Reads a WebVTT file ffmpeg wrote.
async fn read_cues(path: &Path) -> Result<Vec<Cue>> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(MediaError::io("reading", path))?;
    Ok(parse_vtt(&text))
}

/// Converts a sidecar file, read as `format`, to WebVTT.
async fn sidecar_to_webvtt(input: &Path, format: &str, out: &Path) -> Result<Vec<Cue>> {
    let mut a = FfmpegArgs::new();
    a.opt("-f", format)
        .input(input)
        .opt("-map", "0:s:0")
        .opt("-c:s", "webvtt")
        .opt("-f", "webvtt")
        .output(out);
    ffmpeg(a.as_slice(), 0.0, &ProgressSink::none().scaled(0.0, 1.0)).await?;
    read_cues(out).await
}

/// Converts the source's text streams to WebVTT in one read of the source (a film may carry
/// dozens of languages; each is one more output, not one more pass over the file), with the
/// source's own time stamps. Returns each stream's file.
async fn streams_to_webvtt(
    source: &Path,
    streams: &[&SubtitleStream],
    work: &Path,
) -> Result<Vec<PathBuf>> {
    let mut a = FfmpegArgs::new();
    a.flag("-copyts").input(source);
    let mut files = Vec::new();
    for s in streams {
        let out = work.join(format!("stream-{}.vtt", s.index));
        a.opt("-map", format!("0:{}", s.index))
            .opt("-c:s", "webvtt")
            .opt("-f", "webvtt")
            .output(&out);
        files.push(out);
    }
    ffmpeg(a.as_slice(), 0.0, &ProgressSink::none().scaled(0.0, 1.0)).await?;
    Ok(files)
}

/// Extracts every text track of the source and every sidecar into `all.vtt` under its
/// rendition folder. A sidecar that cannot be fetched or read fails the job, naming it;
/// a bitmap stream or an empty one is skipped and said so.
pub async fn extract(
    storage: &Storage,
    input: &SubtitlesInput,
    policy: &FetchPolicy,
    secrets: Option<&SecretBox>,
    work: &Path,
) -> Result<SubtitlesOutput> {
    let mut output = SubtitlesOutput::default();
    let mut taken = Vec::new();
    let text_streams: Vec<&SubtitleStream> = input.streams.iter().filter(|s| s.is_text()).collect();
    for s in input.streams.iter().filter(|s| !s.is_text()) {
        let why = format!(
            "subtitle stream {} ({}) is pictures, not text: it cannot become WebVTT and is skipped",
            s.index, s.codec
        );
        tracing::warn!(stream = s.index, codec = %s.codec, "{why}");
        output.skipped.push(why);
    }
    if !text_streams.is_empty() {
        let source = storage.readable_path(&input.source, work).await?;
        let files = streams_to_webvtt(&source, &text_streams, work).await?;
        for (s, file) in text_streams.into_iter().zip(files) {
            let cues: Vec<Cue> = read_cues(&file)
                .await?
                .into_iter()
                .filter_map(|c| on_programme_clock(c, input.origin_seconds))
                .collect();
            let language = s.language.clone().unwrap_or_else(|| "und".to_string());
            if cues.is_empty() {
                let why = format!(
                    "subtitle stream {} ({}) has no cues; skipped",
                    s.index, s.codec
                );
                tracing::warn!(stream = s.index, "{why}");
                output.skipped.push(why);
                continue;
            }
            let name = unique_name(&language, &mut taken);
            let track = store_track(
                storage,
                input,
                &name,
                &language,
                label(s.title.as_deref(), &language),
                s.forced,
                &cues,
                work,
            )
            .await?;
            output.tracks.push(track);
        }
    }
    for (i, sidecar) in input.sidecars.iter().enumerate() {
        let field = format!("subtitles[{i}]");
        let cues = fetch_sidecar(storage, sidecar, &field, policy, secrets, work, i).await?;
        let name = unique_name(&sidecar.language, &mut taken);
        let track = store_track(
            storage,
            input,
            &name,
            &sidecar.language,
            label(sidecar.name.as_deref(), &sidecar.language),
            sidecar.forced,
            &cues,
            work,
        )
        .await?;
        output.tracks.push(track);
    }
    Ok(output)
}

/// A cue moved from the source's clock onto the programme's; `None` when it ends before the
/// programme starts.
fn on_programme_clock(cue: Cue, origin: f64) -> Option<Cue> {
    let end = cue.end - origin;
    (end > 0.0).then(|| Cue {
        start: (cue.start - origin).max(0.0),
        end,
        ..cue
    })
}

async fn fetch_sidecar(
    storage: &Storage,
    sidecar: &SidecarSubtitle,
    field: &str,
    policy: &FetchPolicy,
    secrets: Option<&SecretBox>,
    work: &Path,
    i: usize,
) -> Result<Vec<Cue>> {
    let refuse = |detail: String| MediaError::Field {
        field: field.to_string(),
        detail,
        permanent: true,
    };
    let uri_text = open_if_sealed(secrets, "subtitle URI", &sidecar.uri)?;
    let uri = InputUri::parse(&uri_text).map_err(refuse)?;
    let shown = uri.redacted();
    let mut policy = policy.clone();
    policy.max_bytes = policy.max_bytes.min(SIDECAR_MAX_BYTES);
    let file = work.join(format!("sidecar-{i}.sub"));
    // A download that failed for now (a 503, a reset) is retried like any step; one that
    // cannot succeed (not found, not allowed, too large) fails the job naming the entry.
    crate::fetch::fetch(&uri, &file, &policy, storage)
        .await
        .map_err(|e| MediaError::Field {
            field: field.to_string(),
            permanent: e.is_permanent(),
            detail: match e {
                MediaError::Input { uri, detail, .. } => format!("{uri}: {detail}"),
                other => format!("{shown}: {other}"),
            },
        })?;
    let bytes = tokio::fs::read(&file)
        .await
        .map_err(MediaError::io("reading", &file))?;
    let format = sidecar_format(&bytes).ok_or_else(|| {
        refuse(format!(
            "{shown} is not an SRT, WebVTT or ASS subtitle file"
        ))
    })?;
    let cues = sidecar_to_webvtt(&file, format, &work.join(format!("sidecar-{i}.vtt")))
        .await
        .map_err(|e| refuse(format!("{shown} could not be read as {format}: {e}")))?;
    if cues.is_empty() {
        return Err(refuse(format!("{shown} holds no cues")));
    }
    Ok(cues)
}

#[allow(clippy::too_many_arguments)]
async fn store_track(
    storage: &Storage,
    input: &SubtitlesInput,
    name: &str,
    language: &str,
    label: String,
    forced: bool,
    cues: &[Cue],
    work: &Path,
) -> Result<SubtitleTrack> {
    let path = work.join(format!("{name}.vtt"));
    tokio::fs::write(&path, whole_vtt(cues))
        .await
        .map_err(MediaError::io("writing", &path))?;
    let object = ObjectRef::new(
        &input.bucket,
        hls_file_key(&input.prefix, &subtitle_rendition(name), SUBTITLE_FILE),
    );
    storage.put_file(&path, &object).await?;
    Ok(SubtitleTrack {
        name: name.to_string(),
        language: language.to_string(),
        label,
        forced,
        cues: object,
        cue_count: cues.len() as u32,
    })
}

/// The MPEG-TS stamp of the programme's time 0 in a rendition: the presentation stamp of
/// its first frame, read from its first segment.
pub async fn mpegts_zero(first_segment: &Path) -> Result<u64> {
    let doc = crate::ffmpeg::run::ffprobe_json(&[
        "-v".into(),
        "error".into(),
        "-select_streams".into(),
        "v:0".into(),
        "-show_entries".into(),
        "stream=start_pts,start_time".into(),
        "-of".into(),
        "json".into(),
        first_segment.as_os_str().to_owned(),
    ])
    .await?;
    let stream = &doc["streams"][0];
    stream["start_pts"]
        .as_u64()
        .or_else(|| {
            stream["start_time"]
                .as_str()
                .and_then(|t| t.parse::<f64>().ok())
                .map(|t| (t * TS_HZ).round() as u64)
        })
        .ok_or_else(|| {
            MediaError::Verification(format!(
                "{} has no video start time to map subtitles to",
                first_segment.display()
            ))
        })
}

/// Writes each track's segments (one per video segment, with the video's durations) and
/// playlist, and returns the master's `EXT-X-MEDIA` entries.
pub async fn publish(
    storage: &Storage,
    bucket: &str,
    prefix: &str,
    tracks: &[SubtitleTrack],
    video_segments: &[SegmentInfo],
    mpegts_zero: u64,
    work: &Path,
) -> Result<Vec<AlternativeMedia>> {
    let bounds = segment_bounds(video_segments);
    let mut media = Vec::new();
    for (i, track) in tracks.iter().enumerate() {
        let whole = storage.readable_path(&track.cues, work).await?;
        let text = tokio::fs::read_to_string(&whole)
            .await
            .map_err(MediaError::io("reading", &whole))?;
        let cues = parse_vtt(&text);
        let rendition = subtitle_rendition(&track.name);
        let mut playlist = MediaPlaylist {
            version: Some(3),
            target_duration: video_segments
                .iter()
                .map(|s| s.duration)
                .fold(0.0, f64::max)
                .ceil() as u64,
            playlist_type: Some(MediaPlaylistType::Vod),
            end_list: true,
            ..Default::default()
        };
        for (k, (segment, video)) in segment_vtt(&cues, &bounds, mpegts_zero)
            .into_iter()
            .zip(video_segments)
            .enumerate()
        {
            let file = subtitle_segment_name(k as u32);
            let path = work.join(format!("sub{i}-{file}"));
            tokio::fs::write(&path, segment)
                .await
                .map_err(MediaError::io("writing", &path))?;
            storage
                .put_file(
                    &path,
                    &ObjectRef::new(bucket, hls_file_key(prefix, &rendition, &file)),
                )
                .await?;
            playlist.segments.push(MediaSegment {
                uri: file,
                duration: video.duration as f32,
                ..Default::default()
            });
        }
        put_playlist(
            storage,
            &playlist,
            &work.join(format!("sub{i}.m3u8")),
            &ObjectRef::new(bucket, hls_file_key(prefix, &rendition, MEDIA_PLAYLIST)),
        )
        .await?;
        media.push(AlternativeMedia {
            media_type: AlternativeMediaType::Subtitles,
            uri: Some(media_playlist_uri(&rendition)),
            group_id: SUBTITLE_GROUP.to_string(),
            language: Some(track.language.clone()),
            name: playlist_text(&track.label),
            // Nothing is shown unless the viewer asks, but a player may pick the track that
            // matches the viewer's language; a forced track shows with none chosen.
            default: false,
            autoselect: true,
            forced: track.forced,
            ..Default::default()
        });
    }
    Ok(media)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_hold_every_cue_that_overlaps_them() {
        let cues = [
            Cue::new(1.0, 2.0, "a"),
            Cue::new(5.5, 6.5, "across"),
            Cue::new(12.0, 13.0, "last"),
        ];
        let bounds = [(0.0, 6.0), (6.0, 12.0), (12.0, 14.0)];
        let segments = segment_vtt(&cues, &bounds, 126_000);
        assert_eq!(segments.len(), 3);
        for s in &segments {
            assert!(s.starts_with("WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:00.000\n\n"));
        }
        let texts = |s: &str| parse_vtt(s).into_iter().map(|c| c.text).collect::<Vec<_>>();
        assert_eq!(texts(&segments[0]), ["a", "across"]);
        assert_eq!(texts(&segments[1]), ["across"]);
        assert_eq!(texts(&segments[2]), ["last"]);
    }

    #[test]
    fn cues_move_onto_the_programme_clock() {
        assert_eq!(on_programme_clock(Cue::new(0.5, 1.0, "x"), 1.4), None);
        assert_eq!(
            on_programme_clock(Cue::new(1.0, 2.4, "x"), 1.4),
            Some(Cue::new(0.0, 1.0, "x"))
        );
    }

    #[test]
    fn sidecars_are_recognised_by_content_and_names_are_unique() {
        assert_eq!(sidecar_format(b"\xef\xbb\xbfWEBVTT\n\n"), Some("webvtt"));
        assert_eq!(
            sidecar_format(b"1\n00:00:01,000 --> 00:00:02,000\nHi\n"),
            Some("srt")
        );
        assert_eq!(sidecar_format(b"[Script Info]\nTitle: x\n"), Some("ass"));
        assert_eq!(sidecar_format(b"#EXTM3U\n#EXTINF:1,\n/etc/passwd\n"), None);
        assert_eq!(
            sidecar_format(b"ffconcat version 1.0\nfile /etc/passwd\n"),
            None
        );
        let mut taken = Vec::new();
        assert_eq!(unique_name("en", &mut taken), "en");
        assert_eq!(unique_name("en", &mut taken), "en-2");
        assert_eq!(unique_name("pt-BR", &mut taken), "pt-br");
        assert_eq!(label(None, "fr"), "French");
        assert_eq!(label(Some("SDH"), "fr"), "SDH");
    }

    #[test]
    fn bitmap_streams_are_not_text() {
        let stream = |codec: &str| SubtitleStream {
            index: 2,
            codec: codec.into(),
            language: None,
            title: None,
            forced: false,
        };
        for codec in ["subrip", "ass", "mov_text", "webvtt"] {
            assert!(stream(codec).is_text(), "{codec}");
        }
        for codec in ["hdmv_pgs_subtitle", "dvb_subtitle", "dvd_subtitle", "xsub"] {
            assert!(!stream(codec).is_text(), "{codec}");
        }
    }
}
