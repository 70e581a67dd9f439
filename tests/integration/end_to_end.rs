//! End-to-end tests of the real `transcoder` binary: a Temporal dev server per test, real
//! ffmpeg encodes, outputs on disk under `--out`, and a real HTTP receiver that verifies the
//! webhook signature the way media-api does. They check what a consumer of the outputs would
//! check: keys in the webhook point at real objects, playlists parse and play, segments decode.

use crate::common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Every key of a completed webhook's `output` (DESIGN §3.2).
const OUTPUT_KEYS: [&str; 13] = [
    "mediaId",
    "mediaType",
    "hlsMasterPlaylistKey",
    "hlsPreviewKey",
    "thumbnailKey",
    "waveformKey",
    "waveformImageKey",
    "mezzanineKey",
    "durationSeconds",
    "width",
    "height",
    "readyVariants",
    "loudness",
];

/// Which bucket each key of the webhook lives in, for `transcoder run`'s local buckets.
const KEY_BUCKETS: [(&str, &str); 7] = [
    ("storyboardKey", ASSETS_BUCKET),
    ("hlsMasterPlaylistKey", MEDIA_BUCKET),
    ("hlsPreviewKey", MEDIA_BUCKET),
    ("thumbnailKey", ASSETS_BUCKET),
    ("waveformKey", ASSETS_BUCKET),
    ("waveformImageKey", ASSETS_BUCKET),
    ("mezzanineKey", ARCHIVE_BUCKET),
];

/// Checks the shape every completed body shares and that every non-null key in it names an
/// object that exists in its bucket under `out`.
fn check_completed_body(body: &Value, out: &Path, media_id: &str, media_type: &str) {
    assert_eq!(body["status"], "completed", "body: {body:#}");
    assert!(
        body["error"].is_null(),
        "completed body carries an error: {body:#}"
    );
    assert!(
        body["id"].as_str().is_some_and(|id| !id.is_empty()),
        "body has no id: {body:#}"
    );
    let output = body["output"]
        .as_object()
        .unwrap_or_else(|| panic!("output is not an object: {body:#}"));
    for key in OUTPUT_KEYS {
        assert!(
            output.contains_key(key),
            "output lacks {key:?} (keys not produced must be null): {body:#}"
        );
    }
    assert_eq!(output["mediaId"], media_id);
    assert_eq!(output["mediaType"], media_type);
    for (field, bucket) in KEY_BUCKETS {
        // `storyboardKey` is new and optional: left out when there is none.
        match output.get(field).unwrap_or(&Value::Null) {
            Value::Null => {}
            Value::String(key) => {
                assert_object_exists(out, bucket, key);
            }
            other => panic!("{field} should be a key or null, got {other}"),
        }
    }
}

/// A storyboard WebVTT as a player's thumbnail track reads it: a cue every 5 s from 0 to
/// the end, each `SHEET#xywh=x,y,w,h` naming a rectangle inside a JPEG beside it; tiles
/// keep the picture's shape.
fn check_storyboard(vtt: &Path, duration: f64) {
    let text = std::fs::read_to_string(vtt).unwrap_or_else(|e| panic!("{}: {e}", vtt.display()));
    assert!(text.starts_with("WEBVTT"), "{text}");
    let mut at = 0.0;
    let mut cues = 0;
    for (start, end, target) in vtt_cues(&text) {
        assert!(
            (start - at).abs() < 1e-3,
            "a gap before {start} in:\n{text}"
        );
        at = end;
        let (sheet, xywh) = target.split_once("#xywh=").unwrap();
        let r: Vec<u32> = xywh.split(',').map(|v| v.parse().unwrap()).collect();
        let img = image::open(vtt.with_file_name(sheet)).unwrap_or_else(|e| panic!("{sheet}: {e}"));
        assert!(
            r[0] + r[2] <= img.width() && r[1] + r[3] <= img.height(),
            "{sheet}#xywh={xywh} lies outside its {}x{} sheet",
            img.width(),
            img.height()
        );
        cues += 1;
    }
    assert_eq!(cues, (duration / 5.0).ceil() as usize, "{text}");
    assert!(
        (at - duration).abs() < 0.05,
        "the storyboard ends at {at}, the programme at {duration}"
    );
}

/// Loudness of the delivered audio (DESIGN §3.2/§4): x100 integers after two-pass EBU R128
/// normalization to -16 LUFS. Loudness normalization is not built yet (media-pipeline issue),
/// so `null` is accepted; a value, once reported, must be right.
fn check_loudness(body: &Value) {
    let loudness = &body["output"]["loudness"];
    if loudness.is_null() {
        return;
    }
    assert!(loudness.is_object(), "loudness malformed: {body:#}");
    for k in ["integrated", "peak", "range"] {
        assert!(
            loudness[k].is_i64(),
            "loudness.{k} should be a x100 integer: {loudness}"
        );
    }
    // Two-pass EBU R128 to -16 LUFS (x100), true peak at most about -1.5 dBTP.
    let integrated = loudness["integrated"].as_i64().unwrap();
    assert!(
        (-1900..=-1300).contains(&integrated),
        "integrated loudness {integrated} is not near -1600: {loudness}"
    );
    let peak = loudness["peak"].as_i64().unwrap();
    assert!(peak <= 0, "true peak {peak} is above 0 dBTP: {loudness}");
}

/// The top-level MP4 boxes in order (for the faststart check).
fn mp4_top_level_boxes(path: &Path) -> Vec<String> {
    let data = std::fs::read(path).unwrap();
    let mut boxes = Vec::new();
    let mut pos = 0usize;
    while pos + 8 <= data.len() {
        let mut size = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as u64;
        let kind = String::from_utf8_lossy(&data[pos + 4..pos + 8]).into_owned();
        if size == 1 && pos + 16 <= data.len() {
            size = u64::from_be_bytes(data[pos + 8..pos + 16].try_into().unwrap());
        } else if size == 0 {
            size = (data.len() - pos) as u64;
        }
        boxes.push(kind);
        if size < 8 {
            break;
        }
        pos += size as usize;
    }
    boxes
}

struct VideoExpect<'a> {
    creator: &'a str,
    media: &'a str,
    /// (variant name, width, height), highest first.
    variants: &'a [(&'a str, u32, u32)],
    width: u32,
    height: u32,
    duration: f64,
    fps: f64,
    thumbnail_size: Option<(u32, u32)>,
    preview_size: Option<(u32, u32)>,
}

/// Everything a consumer of a completed video job relies on.
async fn check_video_job(body: &Value, out: &Path, e: &VideoExpect<'_>) {
    check_completed_body(body, out, e.media, "video");
    let output = &body["output"];
    let (c, m) = (e.creator, e.media);

    // The original was staged where media-api keeps originals.
    assert_object_exists(
        out,
        ARCHIVE_BUCKET,
        &format!("originals/{c}/{m}/original.mp4"),
    );

    assert!(
        approx(&output["durationSeconds"], e.duration, 0.5),
        "durationSeconds {} != ~{}",
        output["durationSeconds"],
        e.duration
    );
    assert_eq!(output["width"], json!(e.width), "width");
    assert_eq!(output["height"], json!(e.height), "height");
    assert!(
        output["waveformKey"].is_null() && output["waveformImageKey"].is_null(),
        "a video job has no waveform: {output:#}"
    );

    // Master playlist: only the generated variants, with measured, non-zero bandwidth.
    let master_key = format!("{c}/hls/{m}/master.m3u8");
    assert_eq!(output["hlsMasterPlaylistKey"], master_key);
    let master_path = object_path(out, MEDIA_BUCKET, &master_key);
    let master = read_master(&master_path);
    let master_text = std::fs::read_to_string(&master_path).unwrap();
    let variants: Vec<_> = master.variants.iter().filter(|v| !v.is_i_frame).collect();
    let mut by_name = BTreeMap::new();
    for v in &variants {
        by_name.insert(variant_name(&v.uri), *v);
    }
    let mut got: Vec<&str> = by_name.keys().map(String::as_str).collect();
    let mut want: Vec<&str> = e.variants.iter().map(|v| v.0).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "master lists the wrong variants:\n{master_text}");
    assert_eq!(
        variants.len(),
        e.variants.len(),
        "master lists a variant twice:\n{master_text}"
    );

    let mut timelines: Vec<(&str, Vec<f64>)> = Vec::new();
    for &(name, w, h) in e.variants {
        let v = by_name[name];
        let res = v
            .resolution
            .unwrap_or_else(|| panic!("{name} has no RESOLUTION:\n{master_text}"));
        assert_eq!(
            (res.width, res.height),
            (u64::from(w), u64::from(h)),
            "{name} RESOLUTION:\n{master_text}"
        );
        assert!(v.bandwidth > 0, "{name} BANDWIDTH is 0:\n{master_text}");
        // Apple's authoring rules: a variant says it carries no closed captions.
        assert_eq!(
            v.closed_captions,
            Some(m3u8_rs::ClosedCaptionGroupId::None),
            "{name} has no CLOSED-CAPTIONS=NONE:\n{master_text}"
        );
        if let Some(avg) = v.average_bandwidth {
            assert!(
                avg > 0 && avg <= v.bandwidth,
                "{name} AVERAGE-BANDWIDTH {avg} vs BANDWIDTH {}",
                v.bandwidth
            );
        }
        let codecs = v
            .codecs
            .as_deref()
            .unwrap_or_else(|| panic!("{name} has no CODECS:\n{master_text}"));
        assert!(
            codecs.contains("avc1"),
            "{name} CODECS {codecs:?} lacks avc1"
        );
        assert!(
            codecs.contains("mp4a.40.2"),
            "{name} CODECS {codecs:?} lacks mp4a.40.2"
        );
        if let Some(fr) = v.frame_rate {
            assert!(
                (fr - e.fps).abs() < 0.1,
                "{name} FRAME-RATE {fr}, expected {}",
                e.fps
            );
        }

        // Variant playlist: VOD, ENDLIST, every segment decodes at the variant's size.
        let playlist = master_path.parent().unwrap().join(&v.uri);
        let segments = check_vod_playlist(&playlist);
        let durations: Vec<f64> = segments.iter().map(|(_, d)| *d).collect();
        let total: f64 = durations.iter().sum();
        assert!(
            (total - e.duration).abs() < 0.6,
            "{name} segments add up to {total} s, expected ~{}",
            e.duration
        );
        timelines.push((name, durations));
        for (seg, _) in &segments {
            let probe = ffprobe(seg)
                .await
                .unwrap_or_else(|err| panic!("{name} segment does not decode: {err}"));
            let video = streams(&probe, "video");
            assert_eq!(
                video.len(),
                1,
                "{name} segment {} should have one video stream: {probe:#}",
                seg.display()
            );
            assert_eq!(
                video[0]["codec_name"],
                "h264",
                "{name} segment {}",
                seg.display()
            );
            assert_eq!(
                (video[0]["width"].as_u64(), video[0]["height"].as_u64()),
                (Some(u64::from(w)), Some(u64::from(h))),
                "{name} segment {} has the wrong size",
                seg.display()
            );
            // Audio is either muxed into the segment or comes from the variant's
            // EXT-X-MEDIA audio group (checked below): never both, never neither.
            let audio = streams(&probe, "audio");
            if v.audio.is_some() {
                assert!(
                    audio.is_empty(),
                    "{name} segment has audio and an audio group"
                );
            } else {
                assert_eq!(
                    audio.len(),
                    1,
                    "{name} segment {} should carry the audio: {probe:#}",
                    seg.display()
                );
                assert_eq!(audio[0]["codec_name"], "aac");
            }
        }
        if let Some(group) = &v.audio {
            let alt = master
                .alternatives
                .iter()
                .find(|a| {
                    &a.group_id == group && a.media_type == m3u8_rs::AlternativeMediaType::Audio
                })
                .unwrap_or_else(|| {
                    panic!("{name} refers to undefined audio group {group}:\n{master_text}")
                });
            let uri = alt.uri.as_deref().expect("audio rendition URI");
            // Apple's authoring rules for an audio rendition: LANGUAGE (the source's, or
            // `und`), NAME, CHANNELS, DEFAULT and AUTOSELECT.
            assert!(
                alt.language.as_deref().is_some_and(|l| !l.is_empty()),
                "{master_text}"
            );
            assert!(!alt.name.is_empty(), "{master_text}");
            assert_eq!(alt.channels.as_deref(), Some("2"), "{master_text}");
            assert!(alt.default && alt.autoselect, "{master_text}");
            let audio_segments = check_vod_playlist(&master_path.parent().unwrap().join(uri));
            let total: f64 = audio_segments.iter().map(|(_, d)| d).sum();
            assert!(
                (total - e.duration).abs() < 0.6,
                "audio lasts {total} s, expected ~{}",
                e.duration
            );
            // Audio segments follow the video's: each boundary between segments within one
            // AAC frame (1024 samples at 48 kHz) of the video's, never drifting further
            // (the programme's end is checked above, with the encoder's last frame).
            let video = &timelines.last().expect("this variant's timeline").1;
            assert_eq!(audio_segments.len(), video.len(), "{name}: audio segments");
            let (mut audio_end, mut video_end) = (0.0, 0.0);
            let inner = audio_segments.len().saturating_sub(1);
            for ((_, a), v) in audio_segments.iter().zip(video).take(inner) {
                audio_end += a;
                video_end += v;
                assert!(
                    (audio_end - video_end).abs() <= 1024.0 / 48_000.0 + 1e-3,
                    "{name}: an audio segment ends at {audio_end} s, the video's at {video_end} s"
                );
            }
            for (seg, _) in &audio_segments {
                let probe = ffprobe(seg)
                    .await
                    .unwrap_or_else(|err| panic!("audio segment: {err}"));
                let audio = streams(&probe, "audio");
                assert_eq!(audio.len(), 1, "audio segment {}: {probe:#}", seg.display());
                assert_eq!(audio[0]["codec_name"], "aac");
                assert_eq!(audio[0]["channels"], 2);
                assert!(streams(&probe, "video").is_empty());
            }
        }
    }

    // Trick play (Apple's rule 6.1): an I-frame playlist per rendition, each entry an IDR
    // frame of the rendition's own segments by byte range; with its segment's tables
    // (EXT-X-MAP) it decodes to one picture of the rendition's size.
    let trick: Vec<_> = master.variants.iter().filter(|v| v.is_i_frame).collect();
    assert_eq!(
        trick.len(),
        e.variants.len(),
        "I-frame playlists:\n{master_text}"
    );
    for &(name, w, h) in e.variants {
        let v = trick
            .iter()
            .find(|v| v.uri == format!("{name}/iframe.m3u8"))
            .unwrap_or_else(|| panic!("{name} has no I-frame playlist:\n{master_text}"));
        assert!(v.bandwidth > 0 && v.codecs.as_deref().is_some_and(|c| c.starts_with("avc1")));
        let path = master_path.parent().unwrap().join(&v.uri);
        let playlist = m3u8_rs::parse_media_playlist_res(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|err| panic!("{name} I-frame playlist: {err:?}"));
        assert!(playlist.i_frames_only && playlist.end_list);
        let total: f32 = playlist.segments.iter().map(|s| s.duration).sum();
        assert!(
            (f64::from(total) - e.duration).abs() < 0.6,
            "{name} I-frames last {total} s"
        );
        // One IDR frame every 2 s.
        let expected = (e.duration / 2.0).ceil() as usize;
        assert!(
            playlist.segments.len().abs_diff(expected) <= 1,
            "{name}: {} I-frames for {} s",
            playlist.segments.len(),
            e.duration
        );
        let mut tables = Vec::new();
        for (i, entry) in playlist.segments.iter().enumerate().take(4) {
            let segment = std::fs::read(path.parent().unwrap().join(&entry.uri)).unwrap();
            if let Some(map) = &entry.map {
                let r = map.byte_range.as_ref().expect("map range");
                let at = r.offset.unwrap_or(0) as usize;
                tables = segment[at..at + r.length as usize].to_vec();
            }
            let r = entry.byte_range.as_ref().expect("I-frame range");
            let at = r.offset.unwrap_or(0) as usize;
            let mut bytes = tables.clone();
            bytes.extend_from_slice(&segment[at..at + r.length as usize]);
            let one = out.join(format!("{name}-iframe-{i}.ts"));
            std::fs::write(&one, &bytes).unwrap();
            let probe = ffprobe_json(&[
                "-of",
                "json",
                "-count_frames",
                "-show_entries",
                "stream=nb_read_frames,width,height",
                "-select_streams",
                "v:0",
                s(&one),
            ])
            .await
            .unwrap_or_else(|err| panic!("{name} I-frame {i}: {err}"));
            let stream = &probe["streams"][0];
            assert_eq!(stream["nb_read_frames"], "1", "{name} I-frame {i}: {probe}");
            assert_eq!(
                (stream["width"].as_u64(), stream["height"].as_u64()),
                (Some(u64::from(w)), Some(u64::from(h))),
                "{name} I-frame {i}"
            );
            std::fs::remove_file(&one).unwrap();
        }
    }
    assert!(
        std::fs::read_dir(master_path.parent().unwrap())
            .unwrap()
            .flatten()
            .all(|f| !f.file_name().to_string_lossy().starts_with("iframes-")),
        "the chunks' I-frame notes are left beside the master"
    );

    // Aligned renditions (a player switches between them at segment boundaries): the same
    // number of segments with the same durations in every variant.
    let (first_name, first) = &timelines[0];
    for (name, durations) in &timelines[1..] {
        assert_eq!(
            durations.len(),
            first.len(),
            "{name} and {first_name} have different segment counts"
        );
        for (a, b) in durations.iter().zip(first) {
            assert!(
                (a - b).abs() < 0.05,
                "{name} and {first_name} segments are not aligned: {durations:?} vs {first:?}"
            );
        }
    }

    // readyVariants: the ladder in order, plus "preview" exactly when a preview was made.
    let ready: Vec<&str> = output["readyVariants"]
        .as_array()
        .unwrap_or_else(|| panic!("readyVariants is not a list: {output:#}"))
        .iter()
        .map(|v| v.as_str().expect("variant name"))
        .collect();
    let ladder: Vec<&str> = ready.iter().copied().filter(|v| *v != "preview").collect();
    let expected: Vec<&str> = e.variants.iter().map(|v| v.0).collect();
    assert_eq!(ladder, expected, "readyVariants {ready:?}");
    assert_eq!(
        ready.contains(&"preview"),
        !output["hlsPreviewKey"].is_null(),
        "\"preview\" in readyVariants must match hlsPreviewKey: {output:#}"
    );

    // Preview (when produced): its own VOD playlist whose segments decode.
    if let Some(preview_key) = output["hlsPreviewKey"].as_str() {
        assert_eq!(preview_key, format!("{c}/hls/{m}/preview/preview.m3u8"));
        let segments = check_vod_playlist(&object_path(out, MEDIA_BUCKET, preview_key));
        for (seg, _) in &segments {
            let probe = ffprobe(seg)
                .await
                .unwrap_or_else(|err| panic!("preview segment does not decode: {err}"));
            let video = streams(&probe, "video");
            assert_eq!(
                video.len(),
                1,
                "preview segment {}: {probe:#}",
                seg.display()
            );
            if let Some((w, h)) = e.preview_size {
                assert_eq!(
                    (video[0]["width"].as_u64(), video[0]["height"].as_u64()),
                    (Some(u64::from(w)), Some(u64::from(h)))
                );
            }
        }
    }

    // Thumbnail: a real JPEG.
    let thumb_key = format!("{c}/thumbnails/media/{m}/auto-generated.jpg");
    assert_eq!(output["thumbnailKey"], thumb_key);
    let thumb = std::fs::read(object_path(out, ASSETS_BUCKET, &thumb_key)).unwrap();
    assert_eq!(
        image::guess_format(&thumb).ok(),
        Some(image::ImageFormat::Jpeg),
        "thumbnail is not a JPEG"
    );
    let img = image::load_from_memory_with_format(&thumb, image::ImageFormat::Jpeg)
        .expect("thumbnail decodes");
    if let Some((w, h)) = e.thumbnail_size {
        assert_eq!((img.width(), img.height()), (w, h), "thumbnail size");
    }

    // Storyboard: a WebVTT of tiles every 5 s, each a rectangle of a JPEG sheet beside it,
    // covering the programme, as a video.js or JW Player thumbnail track reads it.
    let vtt_key = format!("{c}/storyboards/{m}/storyboard.vtt");
    assert_eq!(output["storyboardKey"], vtt_key);
    let duration = output["durationSeconds"].as_f64().expect("durationSeconds");
    check_storyboard(&object_path(out, ASSETS_BUCKET, &vtt_key), duration);

    // Mezzanine: MP4 (faststart) with H.264 video at the source size and AAC audio.
    let mezz_key = format!("mezzanine/{c}/{m}/mezzanine.mp4");
    assert_eq!(output["mezzanineKey"], mezz_key);
    let mezz = object_path(out, ARCHIVE_BUCKET, &mezz_key);
    let probe = ffprobe(&mezz)
        .await
        .unwrap_or_else(|err| panic!("mezzanine does not probe: {err}"));
    let format = probe["format"]["format_name"].as_str().unwrap_or("");
    assert!(format.contains("mp4"), "mezzanine format is {format:?}");
    let video = streams(&probe, "video");
    assert_eq!(video.len(), 1, "mezzanine: {probe:#}");
    assert_eq!(video[0]["codec_name"], "h264");
    assert_eq!(
        (video[0]["width"].as_u64(), video[0]["height"].as_u64()),
        (Some(u64::from(e.width)), Some(u64::from(e.height)))
    );
    let audio = streams(&probe, "audio");
    assert_eq!(audio.len(), 1, "mezzanine: {probe:#}");
    assert_eq!(audio[0]["codec_name"], "aac");
    let boxes = mp4_top_level_boxes(&mezz);
    let moov = boxes.iter().position(|b| b == "moov");
    let mdat = boxes.iter().position(|b| b == "mdat");
    assert!(
        moov.is_some() && mdat.is_some() && moov < mdat,
        "mezzanine is not faststart (boxes {boxes:?})"
    );
    check_loudness(body);
}

// ---------------------------------------------------------------------------------------

/// 1. The fixture video (8 s of 1080p30 with stereo audio) goes through the whole pipeline
/// as a user's first try would send it: the fixture payload with its file
/// (`run --job fixtures/jobs/video.json fixtures/media/video.mp4`), the webhook sent to a
/// receiver of the test's (`--webhook-url` replaces the payload's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_end_to_end() {
    let h = Harness::start().await;
    let hook = WebhookReceiver::start("whsec-video-e2e");
    let payload = fixture_json("jobs/video.json");
    let (creator, media) = (field(&payload, "creatorId"), field(&payload, "mediaId"));
    let out = h.path("out");
    let url = hook.url();

    let run = h
        .run(&[
            "run",
            "--job",
            s(&fixture("jobs/video.json")),
            s(&fixture("media/video.mp4")),
            "--out",
            s(&out),
            "--webhook-url",
            &url,
            "--webhook-secret",
            &hook.secret,
            "--json",
            "--task-queue",
            "e2e-video",
        ])
        .await;
    run.assert_success();
    let body = run.json();

    let hooked = hook.expect_one_valid().await;
    assert_eq!(
        hooked, body,
        "the webhook body differs from what --json printed"
    );
    assert!(
        !run.stdout.contains(&hook.secret) && !run.stderr.contains(&hook.secret),
        "the webhook secret leaked into the output"
    );
    assert!(
        !run.stdout.contains(field(&payload, "webhookSecret"))
            && !run.stderr.contains(field(&payload, "webhookSecret")),
        "the payload's (replaced) webhook secret leaked into the output"
    );
    // The file went where the payload said, byte for byte.
    assert_eq!(
        std::fs::read(object_path(
            &out,
            ARCHIVE_BUCKET,
            field(&payload, "inputKey")
        ))
        .unwrap(),
        std::fs::read(fixture("media/video.mp4")).unwrap(),
        "the staged original differs from the fixture"
    );

    check_video_job(
        &body,
        &out,
        &VideoExpect {
            creator,
            media,
            variants: &[
                ("1080p", 1920, 1080),
                ("720p", 1280, 720),
                ("480p", 854, 480),
                ("360p", 640, 360),
            ],
            width: 1920,
            height: 1080,
            duration: 8.0,
            fps: 30.0,
            thumbnail_size: Some((1280, 720)),
            preview_size: Some((1280, 720)),
        },
    )
    .await;
    // The fixture's sound is tagged `eng`: the rendition says so as HLS wants it.
    let master = read_master(&object_path(
        &out,
        MEDIA_BUCKET,
        &format!("{creator}/hls/{media}/master.m3u8"),
    ));
    let audio = &master.alternatives[0];
    assert_eq!(
        (audio.language.as_deref(), audio.name.as_str()),
        (Some("en"), "English")
    );
}

/// 2. The ladder never upscales and follows the picture's orientation: a 360p source gets
/// only 360p, a portrait 720x1280 gets 720p/480p/360p in portrait, and a source smaller
/// than every rung gets one rendition at its own size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ladder_fits_small_and_portrait_sources() {
    let h = Harness::start().await;
    let small = h.path("in/small.mp4");
    let portrait = h.path("in/portrait.mp4");
    let tiny = h.path("in/tiny.mp4");
    make_video(&small, 640, 360, 4, 25).await;
    make_video(&portrait, 720, 1280, 4, 30).await;
    make_video(&tiny, 320, 240, 3, 25).await;
    let out_small = h.path("out-small");
    let out_portrait = h.path("out-portrait");
    let out_tiny = h.path("out-tiny");

    let (r_small, r_portrait, r_tiny) = tokio::join!(
        h.run(&[
            "run",
            s(&small),
            "--media-id",
            "small1",
            "--creator-id",
            "c1",
            "--media-type",
            "video",
            "--out",
            s(&out_small),
            "--json",
            "--task-queue",
            "e2e-small"
        ]),
        h.run(&[
            "run",
            s(&portrait),
            "--media-id",
            "port1",
            "--creator-id",
            "c1",
            "--media-type",
            "video",
            "--out",
            s(&out_portrait),
            "--json",
            "--task-queue",
            "e2e-portrait"
        ]),
        h.run(&[
            "run",
            s(&tiny),
            "--media-id",
            "tiny1",
            "--creator-id",
            "c1",
            "--media-type",
            "video",
            "--out",
            s(&out_tiny),
            "--json",
            "--task-queue",
            "e2e-tiny"
        ]),
    );
    for r in [&r_small, &r_portrait, &r_tiny] {
        r.assert_success();
    }

    check_video_job(
        &r_small.json(),
        &out_small,
        &VideoExpect {
            creator: "c1",
            media: "small1",
            variants: &[("360p", 640, 360)],
            width: 640,
            height: 360,
            duration: 4.0,
            fps: 25.0,
            thumbnail_size: None,
            preview_size: None,
        },
    )
    .await;
    check_video_job(
        &r_portrait.json(),
        &out_portrait,
        &VideoExpect {
            creator: "c1",
            media: "port1",
            variants: &[("720p", 720, 1280), ("480p", 480, 854), ("360p", 360, 640)],
            width: 720,
            height: 1280,
            duration: 4.0,
            fps: 30.0,
            thumbnail_size: None,
            preview_size: None,
        },
    )
    .await;
    check_video_job(
        &r_tiny.json(),
        &out_tiny,
        &VideoExpect {
            creator: "c1",
            media: "tiny1",
            variants: &[("240p", 320, 240)],
            width: 320,
            height: 240,
            duration: 3.0,
            fps: 25.0,
            thumbnail_size: None,
            preview_size: None,
        },
    )
    .await;
}

/// 3. An audio upload gets AAC 128k/64k HLS under `hls-audio`, a mezzanine and a waveform,
/// and no thumbnail. The fixture payload with its file (a 6 s 44.1 kHz stereo MP3), its
/// webhook delivered to `run`'s own receiver (`--local-webhook`), which checks the signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_end_to_end() {
    let h = Harness::start().await;
    let payload = fixture_json("jobs/audio.json");
    let (creator, media) = (field(&payload, "creatorId"), field(&payload, "mediaId"));
    let out = h.path("out");

    let run = h
        .run(&[
            "run",
            "--job",
            s(&fixture("jobs/audio.json")),
            s(&fixture("media/audio.mp3")),
            "--local-webhook",
            "--out",
            s(&out),
            "--json",
            "--task-queue",
            "e2e-audio",
        ])
        .await;
    run.assert_success();
    let body = run.json();
    assert!(
        run.stderr
            .contains("Webhook delivered to the local receiver; HMAC-SHA256 signature verified."),
        "the local receiver did not verify the webhook\n{}",
        run.dump()
    );
    assert!(
        !run.stderr.contains(field(&payload, "webhookUrl")),
        "the payload's webhookUrl was used despite --local-webhook\n{}",
        run.dump()
    );

    check_completed_body(&body, &out, media, "audio");
    let output = &body["output"];
    assert!(
        output["thumbnailKey"].is_null(),
        "an audio job has no thumbnail: {output:#}"
    );
    assert!(
        output["hlsPreviewKey"].is_null(),
        "an audio job has no preview: {output:#}"
    );
    assert!(
        output["width"].is_null() && output["height"].is_null(),
        "an audio job has no picture size: {output:#}"
    );
    assert!(
        approx(&output["durationSeconds"], 6.0, 0.5),
        "durationSeconds {}",
        output["durationSeconds"]
    );
    assert_object_exists(&out, ARCHIVE_BUCKET, field(&payload, "inputKey"));

    let master_key = format!("{creator}/hls-audio/{media}/master.m3u8");
    assert_eq!(output["hlsMasterPlaylistKey"], master_key);
    let master_path = object_path(&out, MEDIA_BUCKET, &master_key);
    let master = read_master(&master_path);
    let master_text = std::fs::read_to_string(&master_path).unwrap();
    let variants: Vec<_> = master.variants.iter().filter(|v| !v.is_i_frame).collect();
    assert_eq!(
        variants.len(),
        2,
        "expected exactly two audio variants:\n{master_text}"
    );
    let mut by_name = BTreeMap::new();
    for v in &variants {
        by_name.insert(variant_name(&v.uri), *v);
    }
    assert_eq!(
        by_name.keys().map(String::as_str).collect::<Vec<_>>(),
        ["128k", "64k"],
        "{master_text}"
    );
    let (hi, lo) = (by_name["128k"], by_name["64k"]);
    assert!(
        (96_000..=256_000).contains(&hi.bandwidth),
        "128k BANDWIDTH {} is not ~128k:\n{master_text}",
        hi.bandwidth
    );
    assert!(
        (40_000..=128_000).contains(&lo.bandwidth),
        "64k BANDWIDTH {} is not ~64k:\n{master_text}",
        lo.bandwidth
    );
    assert!(
        hi.bandwidth > lo.bandwidth,
        "128k should declare more bandwidth than 64k:\n{master_text}"
    );

    for (name, v) in &by_name {
        assert!(
            v.resolution.is_none(),
            "audio variant {name} declares a RESOLUTION:\n{master_text}"
        );
        if let Some(codecs) = &v.codecs {
            assert!(codecs.contains("mp4a.40"), "{name} CODECS {codecs:?}");
            assert!(
                !codecs.contains("avc1"),
                "{name} CODECS {codecs:?} names video"
            );
        }
        let segments = check_vod_playlist(&master_path.parent().unwrap().join(&v.uri));
        let total: f64 = segments.iter().map(|(_, d)| d).sum();
        assert!(
            (total - 6.0).abs() < 0.6,
            "{name} segments add up to {total} s, expected ~6"
        );
        for (seg, _) in &segments {
            let probe = ffprobe(seg)
                .await
                .unwrap_or_else(|err| panic!("{name} segment does not decode: {err}"));
            assert!(
                streams(&probe, "video").is_empty(),
                "{name} segment has video: {probe:#}"
            );
            let audio = streams(&probe, "audio");
            assert_eq!(
                audio.len(),
                1,
                "{name} segment {}: {probe:#}",
                seg.display()
            );
            assert_eq!(
                audio[0]["codec_name"],
                "aac",
                "{name} segment {}",
                seg.display()
            );
        }
    }
    let mut ready: Vec<&str> = output["readyVariants"]
        .as_array()
        .expect("readyVariants")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ready.sort();
    assert_eq!(ready, ["128k", "64k"], "readyVariants");

    // Mezzanine: high-quality audio MP4, no video.
    let mezz_key = format!("mezzanine/{creator}/{media}/mezzanine.mp4");
    assert_eq!(output["mezzanineKey"], mezz_key);
    let probe = ffprobe(&object_path(&out, ARCHIVE_BUCKET, &mezz_key))
        .await
        .expect("mezzanine probes");
    assert!(
        probe["format"]["format_name"]
            .as_str()
            .unwrap_or("")
            .contains("mp4"),
        "{probe:#}"
    );
    assert!(
        streams(&probe, "video").is_empty(),
        "audio mezzanine has video: {probe:#}"
    );
    assert_eq!(streams(&probe, "audio").len(), 1, "{probe:#}");

    // Waveform: BBC audiowaveform JSON v2, 8-bit, 10 points per second, and a 1280x720 PNG.
    // Not built yet (media-pipeline issue): both keys are null until it is, then checked fully.
    if output["waveformKey"].is_null() {
        assert!(output["waveformImageKey"].is_null(), "{output:#}");
    } else {
        check_waveform(&out, output, creator, media, 6.0);
    }
    check_loudness(&body);
}

/// BBC audiowaveform JSON v2, 8-bit, 10 points per second, and a 1280x720 PNG.
fn check_waveform(out: &Path, output: &Value, creator: &str, media: &str, seconds: f64) {
    let out = out.to_path_buf();
    let wf_key = format!("{creator}/waveforms/{media}/waveform.json");
    assert_eq!(output["waveformKey"], wf_key);
    let wf: Value =
        serde_json::from_slice(&std::fs::read(object_path(&out, ASSETS_BUCKET, &wf_key)).unwrap())
            .expect("waveform is JSON");
    assert_eq!(wf["version"], 2, "waveform version");
    assert_eq!(wf["bits"], 8, "waveform bits");
    let rate = wf["sample_rate"].as_f64().expect("sample_rate");
    let spp = wf["samples_per_pixel"].as_f64().expect("samples_per_pixel");
    assert!(
        ((rate / spp) - 10.0).abs() < 0.5,
        "waveform has {} points/s",
        rate / spp
    );
    let length = wf["length"].as_u64().expect("length");
    let expected = seconds * 10.0;
    assert!(
        (length as f64 - expected).abs() <= 5.0,
        "waveform length {length} for {seconds} s at 10 points/s"
    );
    let channels = wf["channels"].as_u64().unwrap_or(1);
    assert_eq!(
        wf["data"].as_array().expect("data").len() as u64,
        length * 2 * channels,
        "waveform data length"
    );

    let png_key = format!("{creator}/thumbnails/media/{media}/waveform.png");
    assert_eq!(output["waveformImageKey"], png_key);
    let png = std::fs::read(object_path(&out, ASSETS_BUCKET, &png_key)).unwrap();
    let img = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
        .expect("waveform PNG decodes");
    assert_eq!(
        (img.width(), img.height()),
        (1280, 720),
        "waveform image size"
    );
}

/// 4. Random bytes named `.mp4`: the job fails with a reason a person can act on, a signed
/// failed webhook, and nothing published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_input_fails_cleanly() {
    let h = Harness::start().await;
    let hook = WebhookReceiver::start("whsec-corrupt-e2e");
    let input = h.path("in/broken.mp4");
    make_corrupt(&input, 256 * 1024);
    let out = h.path("out");
    let url = hook.url();

    let run = h
        .run(&[
            "run",
            s(&input),
            "--media-type",
            "video",
            "--media-id",
            "bad1",
            "--creator-id",
            "cre3",
            "--out",
            s(&out),
            "--webhook-url",
            &url,
            "--webhook-secret",
            &hook.secret,
            "--json",
            "--task-queue",
            "e2e-corrupt",
        ])
        .await;
    run.assert_failure();
    let body = run.json();
    assert_eq!(body["status"], "failed", "body: {body:#}");
    assert_eq!(
        body["output"],
        json!({"mediaId": "bad1", "mediaType": "video"}),
        "failed output"
    );
    let error = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("failed body has no error text: {body:#}"));
    assert!(!error.trim().is_empty());
    assert!(error.len() <= 2048, "error is {} bytes", error.len());
    let lower = error.to_lowercase();
    assert!(
        [
            "probe",
            "not a",
            "invalid",
            "readable",
            "recogni",
            "corrupt",
            "unsupported",
            "no video or audio",
            "media file"
        ]
        .iter()
        .any(|w| lower.contains(w)),
        "the error does not say the input is not readable media: {error:?}"
    );
    assert!(
        !looks_like_stack_dump(error),
        "the error looks like a stack dump: {error:?}"
    );
    assert!(
        !error.contains(&hook.secret),
        "the error leaks the webhook secret"
    );

    let hooked = hook.expect_one_valid().await;
    assert_eq!(
        hooked, body,
        "the webhook body differs from what --json printed"
    );

    let published: Vec<_> = walk(&out)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "m3u8"))
        .collect();
    assert!(
        published.is_empty(),
        "a failed job published playlists: {published:?}"
    );
    assert!(!object_path(&out, MEDIA_BUCKET, "cre3/hls/bad1/master.m3u8").exists());
}

/// 5. A standalone worker and `submit --wait`, then a clean SIGTERM shutdown of the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_and_submit() {
    let h = Harness::start().await;
    let hook = WebhookReceiver::start("whsec-submit-e2e");
    let out = h.path("out");
    let queue = "q-x";

    make_video(
        &object_path(&out, ARCHIVE_BUCKET, "originals/c1/m1/original.mp4"),
        640,
        360,
        4,
        25,
    )
    .await;
    let job = video_job_payload("m1", "c1", &hook);
    let job_file = write_job(&h, "job.json", &job);

    let mut worker = h.spawn(&["worker", "--out", s(&out), "--task-queue", queue]);
    let submit = h
        .run(&[
            "submit",
            "--job",
            s(&job_file),
            "--wait",
            "--task-queue",
            queue,
        ])
        .await;
    assert!(
        worker.try_status().is_none(),
        "the worker exited early\n{}",
        worker.dump()
    );
    if !submit.status.success() {
        panic!("submit failed\n{}\n{}", submit.dump(), worker.dump());
    }
    let body = submit.json();
    let hooked = hook.expect_one_valid().await;
    assert_eq!(
        hooked, body,
        "the webhook body differs from what submit printed"
    );

    // A clean shutdown: SIGTERM makes an idle worker exit 0 promptly.
    worker.signal(libc::SIGTERM);
    match worker.wait_for_exit(Duration::from_secs(30)).await {
        Some(status) => assert!(
            status.success(),
            "worker exited with {status} on SIGTERM\n{}",
            worker.dump()
        ),
        None => panic!(
            "the worker did not exit within 30 s of SIGTERM\n{}",
            worker.dump()
        ),
    }

    check_video_job(
        &body,
        &out,
        &VideoExpect {
            creator: "c1",
            media: "m1",
            variants: &[("360p", 640, 360)],
            width: 640,
            height: 360,
            duration: 4.0,
            fps: 25.0,
            thumbnail_size: None,
            preview_size: None,
        },
    )
    .await;
}

/// 6. The fixture bad payload (`fixtures/jobs/invalid.json`: an inputKey that climbs out of
/// its tree, an unknown mediaType, no outputPrefix, segmentsPerChunk 0) is rejected with
/// every problem named, still reported through a signed failed webhook, and publishes
/// nothing. The INPUT given beside it is not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_job_file_is_rejected_with_failed_webhook() {
    let h = Harness::start().await;
    let hook = WebhookReceiver::start("whsec-invalid-e2e");
    let out = h.path("out");
    let payload = fixture_json("jobs/invalid.json");
    let url = hook.url();

    let run = h
        .run(&[
            "run",
            "--job",
            s(&fixture("jobs/invalid.json")),
            s(&fixture("media/video.mp4")),
            "--webhook-url",
            &url,
            "--webhook-secret",
            &hook.secret,
            "--out",
            s(&out),
            "--json",
            "--task-queue",
            "e2e-invalid",
        ])
        .await;
    run.assert_failure();
    let body = run.json();
    assert_eq!(body["status"], "failed", "body: {body:#}");
    assert_eq!(
        body["output"]["mediaId"], payload["mediaId"],
        "body: {body:#}"
    );
    let error = body["error"].as_str().expect("error text");
    for named in ["inputKey", "mediaType", "outputPrefix", "segmentsPerChunk"] {
        assert!(
            error.contains(named),
            "the error should name {named}: {error:?}"
        );
    }
    assert!(error.len() <= 2048);
    assert!(!looks_like_stack_dump(error), "{error:?}");
    assert!(
        !error.contains(&hook.secret),
        "the error leaks the webhook secret"
    );

    let hooked = hook.expect_one_valid().await;
    assert_eq!(hooked["status"], "failed");
    assert!(
        hooked["error"]
            .as_str()
            .is_some_and(|e| e.contains("inputKey")),
        "webhook: {hooked:#}"
    );
    let published = walk(&out);
    assert!(
        published
            .iter()
            .all(|p| p.extension().is_none_or(|e| e != "m3u8" && e != "mp4")),
        "an invalid job stored or published something: {published:?}"
    );
}

/// 6b. A webhook secret that is blank, too short, or already in our sealed form (so one we
/// could never open) is refused before anything starts, naming webhookSecret together with
/// the payload's other problems: nothing is stored, no workflow runs, and the refusal comes
/// within seconds instead of a day of webhook retries. The secret never appears in the text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_webhook_secrets_are_refused_before_anything_starts() {
    let h = Harness::without_server();
    let out = h.path("out");
    let hook = WebhookReceiver::start("whsec-bad-secret");
    let cases = [
        ("", "webhookSecret is empty or blank"),
        ("      ", "webhookSecret is empty or blank"),
        (
            "short-secret",
            "webhookSecret must be at least 16 characters, got 12",
        ),
        (
            "sealed:v1:c2VhbGVkIGJ5IHNvbWVib2R5IGVsc2UsIG5vdCB1cw==",
            "webhookSecret must be the secret itself, not a sealed value",
        ),
    ];
    for (i, (secret, expected)) in cases.iter().enumerate() {
        let mut job = fixture_json("jobs/video.json");
        job["webhookUrl"] = json!(hook.url());
        job["webhookSecret"] = json!(secret);
        // Every other case has a second problem, reported in the same refusal; in the rest
        // the payload is otherwise valid, and its file must not be stored either.
        let second_problem = i % 2 == 0;
        if second_problem {
            job["segmentsPerChunk"] = json!(0);
        }
        let job_file = write_job(&h, &format!("job-{i}.json"), &job);
        let started = std::time::Instant::now();
        let run = h
            .run(&[
                "run",
                "--job",
                s(&job_file),
                s(&fixture("media/video.mp4")),
                "--out",
                s(&out),
                "--json",
                "--task-queue",
                "e2e-bad-secret",
            ])
            .await;
        run.assert_failure();
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the refusal took {:?}",
            started.elapsed()
        );
        assert!(run.stderr.contains(expected), "{secret:?}: {}", run.dump());
        assert_eq!(
            run.stderr.contains("segmentsPerChunk"),
            second_problem,
            "{}",
            run.dump()
        );
        assert!(
            run.stdout.trim().is_empty(),
            "a body was printed for a job that never ran: {}",
            run.dump()
        );
        if secret.trim().len() > 3 {
            assert!(
                !run.stderr.contains(secret),
                "the secret is in the error: {}",
                run.dump()
            );
        }
    }
    assert!(
        walk(&out).is_empty(),
        "a refused job stored something: {:?}",
        walk(&out)
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        hook.received().is_empty(),
        "a webhook was sent with a bad secret"
    );
}

/// 6c. Type errors and oversized values go the way of every other payload problem: named by
/// field in the failed body and webhook, the oversized value left out of workflow history
/// (a 5 MB field used to fail in gRPC with no webhook) and out of every message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_type_errors_and_oversized_values_are_named() {
    let h = Harness::start().await;
    let hook = WebhookReceiver::start("whsec-shape-e2e");
    let out = h.path("out");
    let mut job = fixture_json("jobs/video.json");
    job["webhookUrl"] = json!(hook.url());
    job["webhookSecret"] = json!(hook.secret);
    job["creatorId"] = json!(123);
    job["assetsBucket"] = json!("a".repeat(5 * 1024 * 1024 / 2));
    job["segmentsPerChunk"] = json!("ten");
    let job_file = write_job(&h, "job.json", &job);
    let run = h
        .run(&[
            "run",
            "--job",
            s(&job_file),
            "--out",
            s(&out),
            "--json",
            "--task-queue",
            "e2e-shape",
        ])
        .await;
    run.assert_failure();
    let body = run.json();
    assert_eq!(body["status"], "failed", "{}", run.dump());
    let error = body["error"].as_str().expect("error text");
    for expected in [
        "creatorId must be a string, got a number",
        "assetsBucket is 2621440 bytes long, over the limit of 8192",
        "segmentsPerChunk must be a whole number",
    ] {
        assert!(error.contains(expected), "{expected:?} not in {error:?}");
    }
    let hooked = hook.expect_one_valid().await;
    assert_eq!(hooked, body);
    assert!(
        run.stderr.len() + run.stdout.len() < 64 * 1024,
        "the oversized value reached the output ({} bytes of stderr)",
        run.stderr.len()
    );
}

/// 7. `--help` works for the program and each subcommand and names their options.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_for_every_command() {
    let h = Harness::without_server();
    let cases: [(&[&str], &[&str]); 4] = [
        (&["--help"], &["run", "worker", "submit"]),
        (
            &["run", "--help"],
            &[
                "--media-type",
                "--media-id",
                "--creator-id",
                "--out",
                "--webhook-url",
                "--webhook-secret",
                "--json",
                "--job",
                "--task-queue",
            ],
        ),
        (&["worker", "--help"], &["--task-queue", "--out"]),
        (&["submit", "--help"], &["--job", "--wait", "--task-queue"]),
    ];
    for (args, words) in cases {
        let r = run_to_end(h.command(args), &h.path(""), Duration::from_secs(60)).await;
        r.assert_success();
        for w in words {
            assert!(
                r.stdout.contains(w),
                "`transcoder {}` does not mention {w}\n{}",
                args.join(" "),
                r.dump()
            );
        }
    }
}
