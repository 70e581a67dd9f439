//! ffprobe → [`ProbeResult`].

use crate::error::{MediaError, Result};
use crate::ffmpeg::{args::INPUT_PROTOCOLS, ffprobe_json};
use serde_json::Value;
use std::ffi::OsString;
use std::path::Path;
use transcoder_workflows::media::{AudioInfo, FrameRate, ProbeResult, SubtitleStream, VideoInfo};

/// Runs ffprobe on `path` with `show` (what to print) and returns its JSON.
async fn ffprobe_file(path: &Path, show: &[&str]) -> Result<Value> {
    let mut args: Vec<OsString> = vec!["-protocol_whitelist".into(), INPUT_PROTOCOLS.into()];
    args.extend(show.iter().map(OsString::from));
    args.push(path.as_os_str().to_owned());
    // ffprobe names the file in its errors; the reader of a webhook knows which file it sent,
    // and our scratch paths mean nothing to them.
    ffprobe_json(&args).await.map_err(|e| match e {
        MediaError::Unreadable(msg) => {
            MediaError::Unreadable(msg.replace(&format!("{}: ", path.display()), ""))
        }
        other => other,
    })
}

pub async fn probe_file(path: &Path) -> Result<ProbeResult> {
    Ok(probe_with_doc(path).await?.1)
}

/// The job's input: [`probe_file`], and then a file whose media ends well before its headers
/// say is refused as truncated (an interrupted upload: an MP4 whose index, written first,
/// promises frames the cut-off file does not hold). Encoded anyway, it would become a
/// "ready" video that freezes on its last good frame. Costs one demux-only pass.
pub async fn probe_input(path: &Path) -> Result<ProbeResult> {
    let (doc, result) = probe_with_doc(path).await?;
    if let Some(video) = &result.video {
        check_picture_size(video.width, video.height)?;
    }
    let (video, audio) = chosen_streams(&doc);
    let chosen: Vec<&Value> = [video, audio].into_iter().flatten().collect();
    let declares_a_length = num::<f64>(&doc["format"]["duration"]).is_some()
        || chosen.iter().any(|s| num::<f64>(&s["duration"]).is_some());
    if !declares_a_length {
        // Nothing to hold the packets to (and probe_with_doc measured them already).
        return Ok(result);
    }
    let indexes: Vec<i64> = chosen.iter().filter_map(|s| s["index"].as_i64()).collect();
    let packets = scan_packets(path).await?;
    let streams: Vec<(Option<f64>, Option<f64>)> = chosen
        .iter()
        .map(|s| {
            let index = s["index"].as_i64().unwrap_or(-1);
            (num::<f64>(&s["duration"]), packets_span(&packets, &[index]))
        })
        .collect();
    let whole = (
        num::<f64>(&doc["format"]["duration"]),
        packets_span(&packets, &indexes),
    );
    match truncation(&streams, whole) {
        Some((readable, declared)) => Err(MediaError::Unreadable(format!(
            "the upload is truncated: {readable:.1} s of its {declared:.1} s can be read"
        ))),
        None => Ok(result),
    }
}

/// The smallest and largest picture side the ladder encodes. A side of 1 cannot be 4:2:0
/// (the mezzanine's format, chroma at half size): the encode fails on every retry. Above
/// 8192 no H.264 level applies (level 6.2 ends at 8192x4320).
const MIN_PICTURE_SIDE: u32 = 2;
const MAX_PICTURE_SIDE: u32 = 8192;

/// Refuses, before any encode, a picture no encoder will take: permanent, saying why.
fn check_picture_size(width: u32, height: u32) -> Result<()> {
    if width < MIN_PICTURE_SIDE || height < MIN_PICTURE_SIDE {
        return Err(MediaError::Unsupported(format!(
            "the picture is {width}x{height}; the smallest supported is {MIN_PICTURE_SIDE}x{MIN_PICTURE_SIDE}"
        )));
    }
    if width > MAX_PICTURE_SIDE || height > MAX_PICTURE_SIDE {
        return Err(MediaError::Unsupported(format!(
            "the picture is {width}x{height}; the largest supported side is {MAX_PICTURE_SIDE}"
        )));
    }
    Ok(())
}

/// How far before its declared length a stream may end without counting as truncated.
fn truncation_tolerance(declared: f64) -> f64 {
    (declared * 0.02).max(1.0)
}

/// `Some((readable, declared))` when media ends well before the headers say. Each stream is
/// held to its own declared length (`(declared, measured)` pairs), so audio that legitimately
/// outlasts the picture is fine; when no stream declares one, the streams together are held
/// to the container's length (`whole`).
fn truncation(
    streams: &[(Option<f64>, Option<f64>)],
    whole: (Option<f64>, Option<f64>),
) -> Option<(f64, f64)> {
    let short = |declared: f64, measured: Option<f64>| {
        let readable = measured.unwrap_or(0.0);
        (declared.is_finite()
            && declared > 0.0
            && readable < declared - truncation_tolerance(declared))
        .then_some((readable, declared))
    };
    if streams.iter().any(|(declared, _)| declared.is_some()) {
        streams
            .iter()
            .filter_map(|(declared, measured)| short((*declared)?, *measured))
            .next()
    } else {
        short(whole.0?, whole.1)
    }
}

async fn probe_with_doc(path: &Path) -> Result<(Value, ProbeResult)> {
    let doc = ffprobe_file(path, &["-show_format", "-show_streams"]).await?;
    if let Some(result) = parse_probe_with(&doc, None) {
        return Ok((doc, result?));
    }
    // No duration in the headers (a browser's MediaRecorder WebM, a live capture): read it
    // from the packets. Demuxing only, no decoding: seconds even for long files.
    let (video, audio) = chosen_streams(&doc);
    let indexes: Vec<i64> = [video, audio]
        .into_iter()
        .flatten()
        .filter_map(|s| s["index"].as_i64())
        .collect();
    let measured = duration_from_packets(path, &indexes).await?;
    let result = parse_probe_with(&doc, measured)
        .unwrap_or_else(|| Err(MediaError::Unreadable(NO_DURATION.into())))?;
    Ok((doc, result))
}

const NO_DURATION: &str = "its duration cannot be determined";

/// The span of the packets of `streams` (all streams when empty): first timestamp to the
/// end of the last packet.
async fn duration_from_packets(path: &Path, streams: &[i64]) -> Result<Option<f64>> {
    Ok(packets_span(&scan_packets(path).await?, streams))
}

/// Every packet's stream, timestamp and length: one demux-only pass, no decoding.
async fn scan_packets(path: &Path) -> Result<Value> {
    let show = [
        "-show_entries",
        "packet=stream_index,pts_time,duration_time",
    ];
    ffprobe_file(path, &show).await
}

fn packets_span(doc: &Value, streams: &[i64]) -> Option<f64> {
    let mut first = f64::INFINITY;
    let mut last = f64::NEG_INFINITY;
    for packet in doc["packets"].as_array()?.iter() {
        let index = packet["stream_index"].as_i64().unwrap_or(-1);
        if !streams.is_empty() && !streams.contains(&index) {
            continue;
        }
        let Some(pts) = num::<f64>(&packet["pts_time"]).filter(|t| t.is_finite()) else {
            continue;
        };
        let length = num::<f64>(&packet["duration_time"])
            .filter(|d| d.is_finite() && *d >= 0.0)
            .unwrap_or(0.0);
        first = first.min(pts);
        last = last.max(pts + length);
    }
    (last > first).then_some(last - first)
}

fn num<T: std::str::FromStr>(v: &Value) -> Option<T> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

/// Clockwise rotation from the display matrix (ffprobe reports it counter-clockwise) or
/// the legacy `rotate` tag, normalized to 0/90/180/270.
fn rotation(stream: &Value) -> u32 {
    let from_matrix = stream["side_data_list"].as_array().and_then(|list| {
        list.iter()
            .find_map(|sd| sd.get("rotation").and_then(num::<f64>))
            .map(|ccw| -ccw)
    });
    let from_tag = stream["tags"].get("rotate").and_then(num::<f64>);
    let degrees = from_matrix.or(from_tag).unwrap_or(0.0);
    let quarter = (degrees / 90.0).round() as i64;
    (quarter.rem_euclid(4) * 90) as u32
}

/// The largest gap between the starts of the audio and the video taken as real.
const MAX_STREAM_OFFSET: f64 = 30.0;

/// ffmpeg's demuxers for single pictures: `image2` (by file name) and the `*_pipe` ones
/// (by content: `png_pipe`, `jpeg_pipe`, `webp_pipe`, …). An animated GIF has its own
/// demuxer and stays a video.
fn is_still_image_format(format_name: &str) -> bool {
    format_name
        .split(',')
        .any(|f| f == "image2" || f.ends_with("_pipe"))
}

/// The streams a job uses: the first picture that is not cover art, and the first audio.
fn chosen_streams(doc: &Value) -> (Option<&Value>, Option<&Value>) {
    let Some(streams) = doc["streams"].as_array() else {
        return (None, None);
    };
    let is_attached_pic = |s: &Value| s["disposition"]["attached_pic"].as_i64() == Some(1);
    let video = streams.iter().find(|s| {
        s["codec_type"] == "video"
            && !is_attached_pic(s)
            && num::<u32>(&s["width"]).unwrap_or(0) > 0
    });
    let audio = streams.iter().find(|s| s["codec_type"] == "audio");
    (video, audio)
}

pub fn parse_probe(doc: &Value) -> Result<ProbeResult> {
    parse_probe_with(doc, None).unwrap_or_else(|| Err(MediaError::Unreadable(NO_DURATION.into())))
}

/// `None` when neither the streams nor the container say how long the file is and
/// `measured` (the packets' span) is not given either.
fn parse_probe_with(doc: &Value, measured: Option<f64>) -> Option<Result<ProbeResult>> {
    let (video_stream, audio_stream) = chosen_streams(doc);
    let format_name = doc["format"]["format_name"].as_str().unwrap_or("unknown");
    if audio_stream.is_none() && is_still_image_format(format_name) {
        let codec = video_stream
            .and_then(|s| s["codec_name"].as_str())
            .unwrap_or(format_name);
        return Some(Err(MediaError::Unsupported(format!(
            "it is a still image ({codec}), not a video or audio file"
        ))));
    }
    if video_stream.is_none() && audio_stream.is_none() {
        return Some(Err(MediaError::Unreadable(
            "it has no audio or video stream".into(),
        )));
    }

    let video = video_stream.map(|s| VideoInfo {
        codec: s["codec_name"].as_str().unwrap_or("unknown").to_string(),
        width: num(&s["width"]).unwrap_or(0),
        height: num(&s["height"]).unwrap_or(0),
        rotation: rotation(s),
        frame_rate: s["r_frame_rate"].as_str().and_then(FrameRate::parse),
        avg_frame_rate: s["avg_frame_rate"].as_str().and_then(FrameRate::parse),
        pix_fmt: s["pix_fmt"].as_str().map(str::to_string),
        sample_aspect_ratio: s["sample_aspect_ratio"]
            .as_str()
            .and_then(|r| FrameRate::parse(&r.replace(':', "/"))),
        color_transfer: s["color_transfer"].as_str().map(str::to_string),
        color_primaries: s["color_primaries"].as_str().map(str::to_string),
        color_space: s["color_space"].as_str().map(str::to_string),
        field_order: s["field_order"].as_str().map(str::to_string),
    });
    let audio = audio_stream.map(|s| AudioInfo {
        codec: s["codec_name"].as_str().unwrap_or("unknown").to_string(),
        channels: num(&s["channels"]).unwrap_or(0),
        sample_rate: num(&s["sample_rate"]).unwrap_or(0),
        language: s["tags"]["language"].as_str().and_then(language_tag),
        title: title(s),
    });

    // The timeline the streams span together: a stream that starts late (audio after a
    // camera's first frames) or ends late (audio past the last frame) lengthens it.
    let span = |s: &Value| -> Option<(f64, f64)> {
        let duration = num::<f64>(&s["duration"]).filter(|d| d.is_finite() && *d > 0.0)?;
        let start = num::<f64>(&s["start_time"])
            .filter(|t| t.is_finite())
            .unwrap_or(0.0);
        Some((start, start + duration))
    };
    let spans: Vec<(f64, f64)> = [video_stream, audio_stream]
        .into_iter()
        .flatten()
        .filter_map(span)
        .collect();
    let first = spans.iter().map(|(s, _)| *s).fold(f64::INFINITY, f64::min);
    let latest = spans
        .iter()
        .map(|(s, _)| *s)
        .fold(f64::NEG_INFINITY, f64::max);
    // Streams whose starts lie minutes apart are broken timestamps (a wrapped MPEG-TS
    // clock), not a real offset: their offset would become minutes of padding.
    let clock_sane = latest - first <= MAX_STREAM_OFFSET;
    let video_extent = video_stream
        .and_then(span)
        .filter(|_| clock_sane)
        .map(|(s, e)| (s - first, e - first));
    let stream_duration = (!spans.is_empty()).then(|| {
        let last = spans
            .iter()
            .map(|(_, end)| *end)
            .fold(f64::NEG_INFINITY, f64::max);
        let longest = spans.iter().map(|(s, e)| e - s).fold(0.0, f64::max);
        if clock_sane {
            last - first
        } else {
            longest
        }
    });
    let container_duration =
        num::<f64>(&doc["format"]["duration"]).filter(|d| d.is_finite() && *d > 0.0);
    let duration_seconds = stream_duration
        .or(container_duration)
        .or(measured.filter(|d| d.is_finite() && *d > 0.0))?;

    Some(Ok(ProbeResult {
        format_name: format_name.to_string(),
        duration_seconds,
        size_bytes: num(&doc["format"]["size"]).unwrap_or(0),
        video,
        audio,
        video_extent,
        timeline_origin: if first.is_finite() && clock_sane {
            first
        } else {
            0.0
        },
        subtitles: subtitle_streams(doc),
    }))
}

/// A stream's title tag, when it has a non-blank one.
fn title(stream: &Value) -> Option<String> {
    stream["tags"]["title"]
        .as_str()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// Every subtitle stream, text or bitmap, with its language and title.
fn subtitle_streams(doc: &Value) -> Vec<SubtitleStream> {
    doc["streams"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["codec_type"] == "subtitle")
        .filter_map(|s| {
            Some(SubtitleStream {
                index: num(&s["index"])?,
                codec: s["codec_name"].as_str().unwrap_or("unknown").to_string(),
                language: s["tags"]["language"].as_str().and_then(language_tag),
                title: title(s),
                forced: s["disposition"]["forced"].as_i64() == Some(1),
            })
        })
        .collect()
}

/// A container's language tag as an RFC 5646 tag, which HLS's `LANGUAGE` wants: the ISO
/// 639-1 code where one exists (`eng`, `en` → `en`; the bibliographic `fre` and the
/// terminology `fra` both → `fr`), the ISO 639-3 code otherwise (`yue`), a region kept
/// (`en_US` → `en-US`). `None` for a missing, undetermined (`und`) or unknown tag.
pub fn language_tag(raw: &str) -> Option<String> {
    let raw = raw.trim();
    let (primary, region) = match raw.split_once(['-', '_']) {
        Some((p, r)) => (p, Some(r)),
        None => (raw, None),
    };
    let primary = primary.to_ascii_lowercase();
    let language = match primary.len() {
        2 => isolang::Language::from_639_1(&primary),
        3 => isolang::Language::from_639_3(bibliographic_to_terminology(&primary)),
        _ => None,
    }?;
    let code = language.to_639_1().unwrap_or(language.to_639_3());
    if matches!(code, "und" | "mul" | "zxx" | "mis") {
        return None;
    }
    match region {
        Some(r) if r.len() == 2 && r.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Some(format!("{code}-{}", r.to_ascii_uppercase()))
        }
        _ => Some(code.to_string()),
    }
}

/// The ISO 639-2 bibliographic codes (what MP4 and Matroska files often carry) that differ
/// from the terminology codes ISO 639-3 uses.
fn bibliographic_to_terminology(code: &str) -> &str {
    match code {
        "alb" => "sqi",
        "arm" => "hye",
        "baq" => "eus",
        "bur" => "mya",
        "chi" => "zho",
        "cze" => "ces",
        "dut" => "nld",
        "fre" => "fra",
        "geo" => "kat",
        "ger" => "deu",
        "gre" => "ell",
        "ice" => "isl",
        "mac" => "mkd",
        "mao" => "mri",
        "may" => "msa",
        "per" => "fas",
        "rum" => "ron",
        "slo" => "slk",
        "tib" => "bod",
        "wel" => "cym",
        other => other,
    }
}

/// A person's name for a language tag [`language_tag`] made (`fr` → `French`).
pub fn language_name(tag: &str) -> Option<&'static str> {
    let primary = tag.split('-').next().unwrap_or(tag);
    let language = match primary.len() {
        2 => isolang::Language::from_639_1(primary),
        _ => isolang::Language::from_639_3(primary),
    }?;
    Some(language.to_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_languages_become_rfc_5646_tags_with_names() {
        for (raw, tag) in [
            ("eng", Some("en")),
            ("fre", Some("fr")),
            ("fra", Some("fr")),
            ("ger", Some("de")),
            ("chi", Some("zh")),
            ("EN", Some("en")),
            ("en_US", Some("en-US")),
            ("pt-br", Some("pt-BR")),
            ("yue", Some("yue")),
            ("und", None),
            ("mul", None),
            ("", None),
            ("xx", None),
            ("english", None),
        ] {
            assert_eq!(language_tag(raw).as_deref(), tag, "{raw:?}");
        }
        assert_eq!(language_name("fr"), Some("French"));
        assert_eq!(language_name("en-US"), Some("English"));
        assert_eq!(language_name("yue"), Some("Yue Chinese"));
    }
    use serde_json::json;

    #[test]
    fn parses_rotated_vfr_video_with_container_duration_fallback() {
        let doc = json!({
            "streams": [
                {"codec_type": "video", "codec_name": "h264", "width": 1920, "height": 1080,
                 "r_frame_rate": "30/1", "avg_frame_rate": "2997/100", "pix_fmt": "yuv420p",
                 "side_data_list": [{"side_data_type": "Display Matrix", "rotation": -90}]},
                {"codec_type": "audio", "codec_name": "aac", "channels": 6, "sample_rate": "48000"}
            ],
            "format": {"format_name": "mov,mp4", "duration": "12.5", "size": "1000"}
        });
        let p = parse_probe(&doc).unwrap();
        let v = p.video.unwrap();
        assert_eq!(v.rotation, 90);
        assert_eq!(v.display_size(), (1080, 1920));
        assert_eq!(
            v.avg_frame_rate,
            Some(FrameRate {
                num: 2997,
                den: 100
            })
        );
        assert_eq!(p.audio.unwrap().channels, 6);
        assert_eq!(p.duration_seconds, 12.5);
    }

    #[test]
    fn duration_is_the_span_of_the_streams() {
        let doc = |audio_start: &str, audio_duration: &str| {
            json!({
                "streams": [
                    {"codec_type": "video", "codec_name": "h264", "width": 640, "height": 360,
                     "r_frame_rate": "25/1", "start_time": "0.000000", "duration": "8.000000"},
                    {"codec_type": "audio", "codec_name": "aac", "channels": 2,
                     "sample_rate": "48000", "start_time": audio_start, "duration": audio_duration}
                ],
                "format": {"format_name": "mov,mp4", "duration": "8.0"}
            })
        };
        let duration = |d: Value| parse_probe(&d).unwrap().duration_seconds;
        // Audio inside the picture's span: the picture's length.
        assert!((duration(doc("1.500000", "6.500000")) - 8.0).abs() < 1e-9);
        // Audio that starts late and runs past the last frame: to its end.
        assert!((duration(doc("1.500000", "8.000000")) - 9.5).abs() < 1e-9);
        // Audio longer than the picture from the start.
        assert!((duration(doc("0.000000", "10.000000")) - 10.0).abs() < 1e-9);
        // A start hours away is a broken clock: the longest stream, not hours of padding.
        assert!((duration(doc("95000.000000", "7.900000")) - 8.0).abs() < 1e-9);
    }

    #[test]
    fn packets_give_the_length_when_headers_do_not() {
        let doc = json!({"packets": [
            {"stream_index": 0, "pts_time": "0.007000", "duration_time": "0.033000"},
            {"stream_index": 1, "pts_time": "-0.007000", "duration_time": "0.020000"},
            {"stream_index": 0, "pts_time": "4.974000", "duration_time": "0.033000"},
            {"stream_index": 1, "pts_time": "4.993000", "duration_time": "0.020000"},
            {"stream_index": 2, "pts_time": "9.000000"},
            {"stream_index": 0, "pts_time": "N/A"}
        ]});
        let span = packets_span(&doc, &[0, 1]).unwrap();
        assert!((span - 5.020).abs() < 1e-9, "{span}");
        // A stream the job does not use (a data track) is left out; all of them when asked.
        assert!((packets_span(&doc, &[]).unwrap() - 9.007).abs() < 1e-9);
        assert_eq!(packets_span(&json!({"packets": []}), &[]), None);

        // Headers without any length: unreadable, unless the packets measured it.
        let headers = json!({
            "streams": [{"index": 0, "codec_type": "video", "codec_name": "vp8",
                         "width": 320, "height": 180, "r_frame_rate": "1000/1"}],
            "format": {"format_name": "matroska,webm"}
        });
        assert!(parse_probe(&headers).unwrap_err().is_permanent());
        let p = parse_probe_with(&headers, Some(5.02)).unwrap().unwrap();
        assert_eq!(p.duration_seconds, 5.02);
    }

    #[test]
    fn pictures_no_encoder_takes_are_refused() {
        assert!(check_picture_size(1, 1)
            .unwrap_err()
            .to_string()
            .contains("1x1; the smallest supported is 2x2"));
        assert!(check_picture_size(640, 1).is_err());
        assert!(check_picture_size(2, 2).is_ok());
        assert!(check_picture_size(7680, 4320).is_ok());
        assert!(check_picture_size(8192, 8192).is_ok());
        assert!(check_picture_size(16384, 8192)
            .unwrap_err()
            .to_string()
            .contains("largest supported side is 8192"));
    }

    #[test]
    fn truncation_holds_each_stream_to_its_own_length() {
        // A faststart MP4 cut at 30 %: the index promises 8 s, 2.4 s of packets remain.
        assert_eq!(
            truncation(
                &[(Some(8.0), Some(2.4)), (Some(8.0), Some(2.5))],
                (Some(8.0), Some(2.5))
            ),
            Some((2.4, 8.0))
        );
        // Nothing of a stream can be read at all.
        assert_eq!(
            truncation(&[(Some(8.0), None)], (Some(8.0), None)),
            Some((0.0, 8.0))
        );
        // Complete, within the tolerance (1 s, or 2 % of long files).
        assert_eq!(
            truncation(&[(Some(8.0), Some(7.2))], (Some(8.0), Some(7.2))),
            None
        );
        assert_eq!(
            truncation(&[(Some(3600.0), Some(3540.0))], (None, None)),
            None
        );
        assert!(truncation(&[(Some(3600.0), Some(3500.0))], (None, None)).is_some());
        // Audio outlasting the picture is each stream at its own length: fine.
        assert_eq!(
            truncation(
                &[(Some(6.0), Some(6.0)), (Some(8.0), Some(8.0))],
                (Some(8.0), Some(8.0))
            ),
            None
        );
        // No stream declares a length (Matroska): the streams together against the container.
        assert_eq!(
            truncation(
                &[(None, Some(6.0)), (None, Some(8.0))],
                (Some(8.0), Some(8.0))
            ),
            None
        );
        assert_eq!(
            truncation(&[(None, Some(3.0))], (Some(8.0), Some(3.0))),
            Some((3.0, 8.0))
        );
        // Nothing declared anywhere: nothing to hold it to.
        assert_eq!(truncation(&[(None, Some(3.0))], (None, Some(3.0))), None);
    }

    #[test]
    fn still_images_are_refused_by_name() {
        let picture = |format: &str| {
            json!({
                "streams": [{"index": 0, "codec_type": "video", "codec_name": "png",
                             "width": 300, "height": 300, "r_frame_rate": "25/1"}],
                "format": {"format_name": format, "duration": "0.040000"}
            })
        };
        for format in ["png_pipe", "jpeg_pipe", "image2", "webp_pipe"] {
            let err = parse_probe(&picture(format)).unwrap_err();
            assert!(err.is_permanent(), "{format}");
            assert!(err.to_string().contains("still image (png)"), "{err}");
        }
        // Animated GIFs and real video containers are not still images.
        assert!(parse_probe(&picture("gif")).is_ok());
        assert!(parse_probe(&picture("mov,mp4,m4a,3gp,3g2,mj2")).is_ok());
    }

    #[test]
    fn field_order_says_whether_to_deinterlace() {
        let with = |order: Option<&str>| {
            let mut stream = json!({"codec_type": "video", "codec_name": "mpeg2video",
                "width": 720, "height": 576, "r_frame_rate": "25/1", "duration": "4.0"});
            if let Some(order) = order {
                stream["field_order"] = json!(order);
            }
            let doc = json!({"streams": [stream], "format": {"format_name": "mpegts"}});
            parse_probe(&doc).unwrap().video.unwrap().is_interlaced()
        };
        assert!(with(Some("tt")) && with(Some("bb")) && with(Some("tb")) && with(Some("bt")));
        assert!(!with(Some("progressive")) && !with(Some("unknown")) && !with(None));
    }

    #[test]
    fn subtitle_streams_are_listed_with_language_title_and_forced() {
        let doc = json!({
            "format": {"format_name": "matroska,webm", "duration": "10.0"},
            "streams": [
                {"index": 0, "codec_type": "video", "codec_name": "h264", "width": 640, "height": 360,
                 "r_frame_rate": "25/1", "duration": "10.0", "start_time": "0.021"},
                {"index": 1, "codec_type": "audio", "codec_name": "aac", "channels": 2,
                 "sample_rate": "48000", "duration": "10.0", "start_time": "-0.021"},
                {"index": 2, "codec_type": "subtitle", "codec_name": "subrip",
                 "tags": {"language": "eng", "title": " SDH "}, "disposition": {"forced": 0}},
                {"index": 3, "codec_type": "subtitle", "codec_name": "hdmv_pgs_subtitle",
                 "tags": {"language": "fre"}, "disposition": {"forced": 1}}
            ]
        });
        let probe = parse_probe(&doc).unwrap();
        assert_eq!(probe.timeline_origin, -0.021);
        assert_eq!(
            probe.subtitles,
            vec![
                SubtitleStream {
                    index: 2,
                    codec: "subrip".into(),
                    language: Some("en".into()),
                    title: Some("SDH".into()),
                    forced: false,
                },
                SubtitleStream {
                    index: 3,
                    codec: "hdmv_pgs_subtitle".into(),
                    language: Some("fr".into()),
                    title: None,
                    forced: true,
                },
            ]
        );
        assert!(probe.subtitles[0].is_text() && !probe.subtitles[1].is_text());
    }

    #[test]
    fn cover_art_is_not_video_and_empty_files_are_unreadable() {
        let doc = json!({
            "streams": [
                {"codec_type": "audio", "codec_name": "mp3", "channels": 2, "sample_rate": "44100", "duration": "3.0"},
                {"codec_type": "video", "codec_name": "mjpeg", "width": 500, "height": 500, "disposition": {"attached_pic": 1}}
            ],
            "format": {"format_name": "mp3"}
        });
        let p = parse_probe(&doc).unwrap();
        assert!(p.video.is_none());
        assert_eq!(p.duration_seconds, 3.0);
        let err = parse_probe(&json!({"streams": [], "format": {}})).unwrap_err();
        assert!(err.is_permanent());
    }
}
