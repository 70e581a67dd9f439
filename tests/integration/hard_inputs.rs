//! Hostile and odd inputs (DESIGN §4 "Inputs that must work"): every source is made with
//! ffmpeg's lavfi sources, run through the real `transcoder run` against a real Temporal dev
//! server, and the outputs are checked the way a player or consumer would see them: the
//! master playlist's attributes, and ffprobe on the delivered segments themselves.
//!
//! Features that are not built yet (preview, loudness) are checked when the webhook reports
//! them; while they are null only their absence is checked. A value, once reported, must be
//! right.

use crate::common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const CREATOR: &str = "hard1";

// ---------------------------------------------------------------------------------------
// Running a job.
// ---------------------------------------------------------------------------------------

/// One finished job: the command, its `--json` body (equal to the signed webhook body) and
/// the `--out` folder.
struct Job {
    run: CmdOutput,
    body: Value,
    out: PathBuf,
    media: String,
}

impl Job {
    fn output(&self) -> &Value {
        &self.body["output"]
    }

    fn assert_completed(&self) {
        self.run.assert_success();
        assert_eq!(
            self.body["status"],
            "completed",
            "job did not complete\n{}",
            self.run.dump()
        );
        assert!(self.body["error"].is_null(), "body: {:#}", self.body);
    }
}

/// Runs `transcoder run INPUT --media-type TYPE` with a signed webhook and checks that the
/// webhook body arrived once, verified, and equals what `--json` printed.
async fn transcode(h: &Harness, input: &Path, media_type: &str, media: &str) -> Job {
    let hook = WebhookReceiver::start(&format!("whsec-{media}"));
    let out = h.path("out");
    let url = hook.url();
    let run = h
        .run(&[
            "run",
            s(input),
            "--json",
            "--media-type",
            media_type,
            "--media-id",
            media,
            "--creator-id",
            CREATOR,
            "--out",
            s(&out),
            "--webhook-url",
            &url,
            "--webhook-secret",
            &hook.secret,
        ])
        .await;
    let body = run.json();
    let hooked = hook.expect_one_valid().await;
    assert_eq!(
        hooked,
        body,
        "the webhook body differs from what --json printed\n{}",
        run.dump()
    );
    Job {
        run,
        body,
        out,
        media: media.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// What a player sees.
// ---------------------------------------------------------------------------------------

/// One variant of a master playlist with its segments (files ffprobe can read).
#[derive(Debug)]
struct Rendition {
    name: String,
    resolution: Option<(u64, u64)>,
    codecs: String,
    frame_rate: Option<f64>,
    playlist: PathBuf,
    segments: Vec<(PathBuf, f64)>,
    /// Where a player gets this rendition's audio: its own segments (muxed), or the
    /// EXT-X-MEDIA audio rendition of its AUDIO group (demuxed).
    audio_playlist: PathBuf,
    audio_muxed: bool,
}

impl Rendition {
    fn total(&self) -> f64 {
        self.segments.iter().map(|(_, d)| d).sum()
    }
}

/// Reads the master named by `hlsMasterPlaylistKey` and every variant playlist in it.
fn renditions(job: &Job) -> (String, Vec<Rendition>) {
    let key = job.output()["hlsMasterPlaylistKey"]
        .as_str()
        .unwrap_or_else(|| panic!("no hlsMasterPlaylistKey: {:#}", job.body));
    let master_path = assert_object_exists(&job.out, MEDIA_BUCKET, key);
    let master = read_master(&master_path);
    let text = std::fs::read_to_string(&master_path).unwrap();
    let mut list = Vec::new();
    for v in master.variants.iter().filter(|v| !v.is_i_frame) {
        let playlist = master_path.parent().unwrap().join(&v.uri);
        let group = v.audio.as_ref().map(|id| {
            let alt = master
                .alternatives
                .iter()
                .find(|a| &a.group_id == id && a.media_type == m3u8_rs::AlternativeMediaType::Audio)
                .unwrap_or_else(|| {
                    panic!("{} refers to undefined audio group {id}:\n{text}", v.uri)
                });
            master_path
                .parent()
                .unwrap()
                .join(alt.uri.as_deref().expect("audio rendition URI"))
        });
        list.push(Rendition {
            audio_muxed: group.is_none(),
            audio_playlist: group.unwrap_or_else(|| playlist.clone()),
            name: variant_name(&v.uri),
            resolution: v.resolution.map(|r| (r.width, r.height)),
            codecs: v
                .codecs
                .clone()
                .unwrap_or_else(|| panic!("{} has no CODECS:\n{text}", v.uri)),
            frame_rate: v.frame_rate,
            segments: check_vod_playlist(&playlist),
            playlist,
        });
    }
    assert!(!list.is_empty(), "master lists no variants:\n{text}");
    (text, list)
}

/// The first stream of a kind in a probe, if any.
fn first<'a>(probe: &'a Value, kind: &str) -> Option<&'a Value> {
    streams(probe, kind).into_iter().next()
}

fn size_of(stream: &Value) -> (u64, u64) {
    (
        stream["width"].as_u64().unwrap_or(0),
        stream["height"].as_u64().unwrap_or(0),
    )
}

/// Display-matrix side data on a stream (a player would rotate the picture).
fn rotation_side_data(stream: &Value) -> Option<Value> {
    stream["side_data_list"]
        .as_array()
        .and_then(|l| {
            l.iter()
                .find(|sd| sd["side_data_type"] == "Display Matrix" || sd.get("rotation").is_some())
        })
        .cloned()
        .or_else(|| stream["tags"].get("rotate").cloned())
}

/// The checks every completed video job shares: the ladder decodes, every segment has one
/// H.264 stream at its variant's RESOLUTION and `audio` AAC streams, the renditions share
/// one timeline, durations add up, `readyVariants` and the preview agree, loudness (when
/// reported) is right. Returns the renditions for the case's own checks.
async fn check_video_job(job: &Job, duration: f64, audio: bool) -> (String, Vec<Rendition>) {
    job.assert_completed();
    let output = job.output();
    assert_eq!(output["mediaType"], "video", "{output:#}");
    assert!(
        approx(&output["durationSeconds"], duration, 0.5),
        "durationSeconds {} for a {duration} s source: {output:#}",
        output["durationSeconds"]
    );
    let (master, list) = renditions(job);
    for r in &list {
        let (w, h) = r
            .resolution
            .unwrap_or_else(|| panic!("{} has no RESOLUTION:\n{master}", r.name));
        assert!(
            r.codecs.contains("avc1."),
            "{} CODECS {:?} names no H.264:\n{master}",
            r.name,
            r.codecs
        );
        assert_eq!(
            r.codecs.contains("mp4a"),
            audio,
            "{} CODECS {:?} (source {} audio):\n{master}",
            r.name,
            r.codecs,
            if audio { "has" } else { "has no" }
        );
        assert!(
            (r.total() - duration).abs() < 0.6,
            "{} segments add up to {} s, expected ~{duration}",
            r.name,
            r.total()
        );
        for (seg, _) in &r.segments {
            let probe = ffprobe(seg)
                .await
                .unwrap_or_else(|e| panic!("{} segment does not decode: {e}", r.name));
            let video = streams(&probe, "video");
            assert_eq!(
                video.len(),
                1,
                "{} segment {} should have one video stream: {probe:#}",
                r.name,
                seg.display()
            );
            assert_eq!(video[0]["codec_name"], "h264", "{}", seg.display());
            assert_eq!(
                size_of(video[0]),
                (w, h),
                "{} segment {} decodes at a size other than its RESOLUTION {w}x{h}",
                r.name,
                seg.display()
            );
            let a = streams(&probe, "audio");
            assert_eq!(
                a.len(),
                usize::from(audio && r.audio_muxed),
                "{} segment {} audio streams: {probe:#}",
                r.name,
                seg.display()
            );
            if audio && r.audio_muxed {
                assert_eq!(a[0]["codec_name"], "aac", "{}", seg.display());
            }
        }
        if audio && !r.audio_muxed {
            let audio_segments = check_vod_playlist(&r.audio_playlist);
            let total: f64 = audio_segments.iter().map(|(_, d)| d).sum();
            assert!(
                (total - duration).abs() < 0.6,
                "{} audio lasts {total} s, expected ~{duration}",
                r.name
            );
            for (seg, _) in &audio_segments {
                let probe = ffprobe(seg)
                    .await
                    .unwrap_or_else(|e| panic!("audio segment: {e}"));
                let a = streams(&probe, "audio");
                assert_eq!(a.len(), 1, "audio segment {}: {probe:#}", seg.display());
                assert_eq!(a[0]["codec_name"], "aac", "{}", seg.display());
            }
        }
        assert!(!audio || !r.audio_muxed || r.audio_playlist == r.playlist);
    }
    // One timeline: the same segment durations in every rendition.
    for r in &list[1..] {
        let a: Vec<f64> = r.segments.iter().map(|(_, d)| *d).collect();
        let b: Vec<f64> = list[0].segments.iter().map(|(_, d)| *d).collect();
        assert!(
            a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 0.05),
            "{} and {} are not aligned: {a:?} vs {b:?}",
            r.name,
            list[0].name
        );
    }
    let ready = ready_variants(job);
    for r in &list {
        assert!(
            ready.contains(&r.name),
            "readyVariants {ready:?} lacks {}",
            r.name
        );
    }
    assert_eq!(
        ready.iter().any(|v| v == "preview"),
        !output["hlsPreviewKey"].is_null(),
        "\"preview\" in readyVariants must match hlsPreviewKey: {output:#}"
    );
    if audio {
        check_reported_loudness(job);
    } else {
        assert!(
            output["loudness"].is_null(),
            "a source without audio has no loudness: {output:#}"
        );
    }
    (master, list)
}

fn ready_variants(job: &Job) -> Vec<String> {
    job.output()["readyVariants"]
        .as_array()
        .unwrap_or_else(|| panic!("readyVariants is not a list: {:#}", job.body))
        .iter()
        .map(|v| v.as_str().expect("variant name").to_string())
        .collect()
}

/// The preview's segments (when one was made), with its playlist checked.
fn preview(job: &Job) -> Option<Vec<(PathBuf, f64)>> {
    let key = job.output()["hlsPreviewKey"].as_str()?;
    assert_eq!(
        key,
        format!("{CREATOR}/hls/{}/preview/preview.m3u8", job.media),
        "preview key"
    );
    Some(check_vod_playlist(&assert_object_exists(
        &job.out,
        MEDIA_BUCKET,
        key,
    )))
}

/// Loudness as reported (DESIGN §3.2): x100 integers of the delivered audio after EBU R128
/// normalization to -16 LUFS, true peak -1.5 dBTP. Null is accepted (not built yet).
fn check_reported_loudness(job: &Job) -> Option<(i64, i64, i64)> {
    let l = &job.output()["loudness"];
    if l.is_null() {
        return None;
    }
    for k in ["integrated", "peak", "range"] {
        assert!(l[k].is_i64(), "loudness.{k} should be a x100 integer: {l}");
    }
    let (i, p, r) = (
        l["integrated"].as_i64().unwrap(),
        l["peak"].as_i64().unwrap(),
        l["range"].as_i64().unwrap(),
    );
    assert!(
        (-1700..=-1500).contains(&i),
        "loudness.integrated {i} is not -1600 ± 100 (x100 LUFS): {l}"
    );
    assert!(
        p <= -100,
        "loudness.peak {p} is above -1.0 dBTP (target -1.5): {l}"
    );
    assert!(r >= 0, "loudness.range {r} is negative: {l}");
    Some((i, p, r))
}

/// Packet timestamps of the video in one segment, sorted (presentation order).
async fn video_pts(seg: &Path) -> (Vec<i64>, f64) {
    let packets = ffprobe_packets(seg, "v:0").await;
    let mut pts: Vec<i64> = packets.iter().filter_map(|p| p["pts"].as_i64()).collect();
    pts.sort_unstable();
    // MPEG-TS timestamps are 90 kHz; for anything else read the stream's time base.
    let probe = ffprobe_json(&[
        "-select_streams",
        "v:0",
        "-show_entries",
        "stream=time_base",
        "-of",
        "json",
        s(seg),
    ])
    .await
    .expect("time base");
    let tb = probe["streams"][0]["time_base"]
        .as_str()
        .and_then(|t| t.split_once('/'))
        .map(|(n, d)| n.parse::<f64>().unwrap() / d.parse::<f64>().unwrap())
        .expect("time_base");
    (pts, tb)
}

/// 8-bit SDR H.264 (what every player decodes): no 10-bit, no PQ/HLG, no BT.2020.
fn assert_sdr_8bit(stream: &Value, what: &str) {
    assert_eq!(stream["codec_name"], "h264", "{what}: {stream:#}");
    assert_eq!(
        stream["pix_fmt"], "yuv420p",
        "{what} is not 8-bit 4:2:0: {stream:#}"
    );
    let profile = stream["profile"].as_str().unwrap_or("");
    assert!(
        !profile.contains("10") && !profile.contains("4:2:2") && !profile.contains("4:4:4"),
        "{what} profile {profile:?}: {stream:#}"
    );
    if let Some(bits) = stream["bits_per_raw_sample"].as_str() {
        assert_eq!(bits, "8", "{what} bits_per_raw_sample: {stream:#}");
    }
    let transfer = stream["color_transfer"].as_str().unwrap_or("unknown");
    assert!(
        !["smpte2084", "arib-std-b67"].contains(&transfer),
        "{what} is still tagged as HDR (color_transfer {transfer}): {stream:#}"
    );
    let primaries = stream["color_primaries"].as_str().unwrap_or("unknown");
    assert!(
        primaries != "bt2020",
        "{what} is still tagged BT.2020 primaries: {stream:#}"
    );
    let matrix = stream["color_space"].as_str().unwrap_or("unknown");
    assert!(
        !matrix.starts_with("bt2020"),
        "{what} is still tagged with a BT.2020 matrix ({matrix}): {stream:#}"
    );
}

async fn probe_mezzanine(job: &Job) -> Value {
    let key = format!("mezzanine/{CREATOR}/{}/mezzanine.mp4", job.media);
    assert_eq!(job.output()["mezzanineKey"], key, "{:#}", job.body);
    let path = assert_object_exists(&job.out, ARCHIVE_BUCKET, &key);
    ffprobe(&path)
        .await
        .unwrap_or_else(|e| panic!("mezzanine does not probe: {e}"))
}

/// The audio of a playlist's segments as one file ffmpeg can read.
fn joined_audio(playlist: &Path, dest: &Path) {
    let (pl, _) = read_media(playlist);
    let dir = playlist.parent().unwrap();
    let mut parts = Vec::new();
    if let Some(map) = pl.segments.iter().find_map(|s| s.map.as_ref()) {
        parts.push(dir.join(&map.uri));
    }
    parts.extend(pl.segments.iter().map(|s| dir.join(&s.uri)));
    concat_files(&parts, dest);
}

// ---------------------------------------------------------------------------------------
// Sources.
// ---------------------------------------------------------------------------------------

/// `testsrc2` video (`vf` appended to the source) with a sine tone, encoded H.264/AAC.
async fn make_av(path: &Path, size: &str, fps: u32, seconds: u32, vf: &str, extra: &[&str]) {
    let video = format!("testsrc2=size={size}:rate={fps}:duration={seconds}{vf}");
    let audio = format!("sine=frequency=440:sample_rate=48000:duration={seconds}");
    let mut options = vec!["-shortest"];
    options.extend_from_slice(extra);
    make_sources(path, &video, &audio, 0.0, &options).await;
}

async fn stream_of(path: &Path, kind: &str) -> Value {
    let probe = ffprobe(path).await.expect("probe the source");
    first(&probe, kind)
        .unwrap_or_else(|| panic!("source {} has no {kind}: {probe:#}", path.display()))
        .clone()
}

// ---------------------------------------------------------------------------------------
// 1. Rotation metadata.
// ---------------------------------------------------------------------------------------

/// A phone's portrait clip: 1280x720 coded, display matrix "rotate 90° clockwise". The left
/// quarter of the coded picture is white, so upright output has a white top quarter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_metadata_is_applied() {
    let h = Harness::start().await;
    let input = h.path("in/portrait-phone.mp4");
    make_av(
        &input,
        "1280x720",
        30,
        4,
        ",drawbox=x=0:y=0:w=320:h=720:color=white:t=fill",
        &["-movflags", "+faststart"],
    )
    .await;
    set_mp4_rotation(&input, 90);
    let src = stream_of(&input, "video").await;
    assert_eq!(size_of(&src), (1280, 720), "source: {src:#}");
    let rot = rotation_side_data(&src).unwrap_or_else(|| panic!("no display matrix: {src:#}"));
    assert_eq!(
        rot["rotation"].as_f64().map(f64::abs),
        Some(90.0),
        "source display matrix: {src:#}"
    );

    let job = transcode(&h, &input, "video", "rot1").await;
    let (master, list) = check_video_job(&job, 4.0, true).await;
    let output = job.output();
    assert_eq!(
        (output["width"].as_u64(), output["height"].as_u64()),
        (Some(720), Some(1280)),
        "the webhook should report the displayed (portrait) size: {output:#}"
    );
    let got: BTreeMap<String, (u64, u64)> = list
        .iter()
        .map(|r| (r.name.clone(), r.resolution.unwrap()))
        .collect();
    let want: BTreeMap<String, (u64, u64)> = [
        ("720p", (720, 1280)),
        ("480p", (480, 854)),
        ("360p", (360, 640)),
    ]
    .into_iter()
    .map(|(n, r)| (n.to_string(), r))
    .collect();
    assert_eq!(got, want, "portrait ladder expected:\n{master}");

    for r in &list {
        let (w, h) = r.resolution.unwrap();
        for (seg, _) in &r.segments {
            let probe = ffprobe(seg).await.unwrap();
            let video = first(&probe, "video").unwrap();
            assert!(
                rotation_side_data(video).is_none(),
                "{} segment {} still carries rotation: {video:#}",
                r.name,
                seg.display()
            );
            // Upright pixels: the coded picture's white left edge is the displayed top.
            let frame = decode_gray_frame(seg).await;
            assert_eq!((frame.0, frame.1), (w as u32, h as u32));
            let top = mean_rows(&frame, 0, h as u32 / 5);
            let bottom = mean_rows(&frame, h as u32 * 4 / 5, h as u32);
            assert!(
                top > 200.0 && bottom < 180.0,
                "{} segment {} is not upright: mean gray of the top fifth {top:.0} \
                 (white expected), bottom fifth {bottom:.0}",
                r.name,
                seg.display()
            );
        }
    }

    // The mezzanine is the upright normalization every later step reads (DESIGN §4).
    let mezz = probe_mezzanine(&job).await;
    let mv = first(&mezz, "video").expect("mezzanine video");
    assert_eq!(size_of(mv), (720, 1280), "mezzanine is not upright: {mv:#}");
    assert!(
        rotation_side_data(mv).is_none(),
        "mezzanine still carries rotation: {mv:#}"
    );

    let thumb_key = output["thumbnailKey"]
        .as_str()
        .unwrap_or_else(|| panic!("no thumbnail: {output:#}"));
    let thumb = std::fs::read(assert_object_exists(&job.out, ASSETS_BUCKET, thumb_key)).unwrap();
    let img = image::load_from_memory_with_format(&thumb, image::ImageFormat::Jpeg)
        .expect("thumbnail is a JPEG");
    assert_eq!((img.width(), img.height()), (1280, 720), "thumbnail size");
}

// ---------------------------------------------------------------------------------------
// 2. Variable frame rate.
// ---------------------------------------------------------------------------------------

/// 30 fps with jittered timestamps (frame gaps from 0.2 to 1.8 frames), written as VFR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variable_frame_rate_becomes_constant() {
    let h = Harness::start().await;
    let input = h.path("in/vfr.mp4");
    make_av(
        &input,
        "640x360",
        30,
        6,
        ",settb=1/90000,setpts='(N+0.4*sin(N*1.7))/(30*TB)'",
        &["-fps_mode", "vfr"],
    )
    .await;
    let src = stream_of(&input, "video").await;
    let durations: Vec<i64> = ffprobe_packets(&input, "v:0")
        .await
        .iter()
        .filter_map(|p| {
            p["duration"]
                .as_i64()
                .or_else(|| p["duration"].as_str().and_then(|d| d.parse().ok()))
        })
        .collect();
    let (min, max) = (
        durations.iter().min().copied().unwrap_or(0),
        durations.iter().max().copied().unwrap_or(0),
    );
    assert!(
        max > min * 2 && src["r_frame_rate"] != src["avg_frame_rate"],
        "the source is not VFR (packet durations {min}..{max}): {src:#}"
    );

    let job = transcode(&h, &input, "video", "vfr1").await;
    let (master, list) = check_video_job(&job, 6.0, true).await;
    let mut rates = Vec::new();
    for r in &list {
        let mut delta_all: Option<i64> = None;
        for (seg, _) in &r.segments {
            let (pts, tb) = video_pts(seg).await;
            assert!(
                pts.len() > 2,
                "{} segment {} has {} frames",
                r.name,
                seg.display(),
                pts.len()
            );
            let deltas: Vec<i64> = pts.windows(2).map(|w| w[1] - w[0]).collect();
            let d0 = deltas[0];
            assert!(
                deltas.iter().all(|d| (d - d0).abs() <= 1),
                "{} segment {} is not constant frame rate: pts deltas {deltas:?}",
                r.name,
                seg.display()
            );
            if let Some(prev) = delta_all {
                assert!(
                    (d0 - prev).abs() <= 1,
                    "{} segments differ in frame rate: delta {d0} vs {prev}",
                    r.name
                );
            }
            delta_all = Some(d0);
            let fps = 1.0 / (d0 as f64 * tb);
            rates.push((r.name.clone(), fps));
            assert!(
                (fps - 30.0).abs() < 1.0,
                "{} segment {} runs at {fps:.3} fps; the source averages ~30 fps",
                r.name,
                seg.display()
            );
            if let Some(fr) = r.frame_rate {
                assert!(
                    (fr - fps).abs() < 0.01,
                    "{} FRAME-RATE {fr} but its segments run at {fps:.3} fps:\n{master}",
                    r.name
                );
            }
        }
    }
    eprintln!("vfr1: segment frame rates {rates:?}");
    let first_rate = rates[0].1;
    assert!(
        rates.iter().all(|(_, f)| (f - first_rate).abs() < 0.01),
        "renditions run at different rates: {rates:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 3. Odd dimensions.
// ---------------------------------------------------------------------------------------

/// 853x479 (4:4:4 H.264 allows odd sizes): every rendition must be even-sized, keep the
/// aspect ratio, and never upscale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_dimensions_give_even_renditions() {
    let h = Harness::start().await;
    let input = h.path("in/odd.mp4");
    std::fs::create_dir_all(input.parent().unwrap()).unwrap();
    ffmpeg_make(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=854x480:rate=25:duration=4,scale=853:479,setsar=1,format=yuv444p",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000:duration=4",
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv444p",
        "-c:a",
        "aac",
        "-ac",
        "2",
        "-shortest",
        s(&input),
    ])
    .await;
    let src = stream_of(&input, "video").await;
    assert_eq!(size_of(&src), (853, 479), "source: {src:#}");

    let job = transcode(&h, &input, "video", "odd1").await;
    let (master, list) = check_video_job(&job, 4.0, true).await;
    let output = job.output();
    let (ow, oh) = (
        output["width"].as_u64().unwrap_or(0),
        output["height"].as_u64().unwrap_or(0),
    );
    // The webhook reports the size the outputs really have: the source cut to even sides,
    // as the mezzanine is (it once said 479 while every output was 478 high).
    assert_eq!(
        (ow, oh),
        (852, 478),
        "webhook size {ow}x{oh} for an 853x479 source"
    );
    let mezz = probe_mezzanine(&job).await;
    let mv = first(&mezz, "video").unwrap();
    assert_eq!(size_of(mv), (852, 478), "mezzanine: {mv:#}");
    let source_aspect = 853.0 / 479.0;
    for r in &list {
        let (w, h) = r.resolution.unwrap();
        assert!(
            w % 2 == 0 && h % 2 == 0,
            "{} is {w}x{h}: odd dimensions:\n{master}",
            r.name
        );
        assert!(
            w <= 853 && h <= 479,
            "{} is {w}x{h}: upscaled from 853x479:\n{master}",
            r.name
        );
        let aspect = w as f64 / h as f64;
        assert!(
            (aspect / source_aspect - 1.0).abs() < 0.01,
            "{} is {w}x{h} (aspect {aspect:.4}), source aspect {source_aspect:.4}:\n{master}",
            r.name
        );
        for (seg, _) in &r.segments {
            let probe = ffprobe(seg).await.unwrap();
            let v = first(&probe, "video").unwrap();
            let sar = v["sample_aspect_ratio"].as_str().unwrap_or("1:1");
            assert!(
                sar == "1:1" || sar == "0:1" || sar == "N/A",
                "{} segment {} has non-square pixels {sar}: {v:#}",
                r.name,
                seg.display()
            );
        }
    }
    let mezz = probe_mezzanine(&job).await;
    let mv = first(&mezz, "video").expect("mezzanine video");
    let (mw, mh) = size_of(mv);
    assert!(
        mw % 2 == 0 && mh % 2 == 0 && mw.abs_diff(853) <= 1 && mh.abs_diff(479) <= 1,
        "mezzanine is {mw}x{mh}: {mv:#}"
    );
    assert_eq!(mv["pix_fmt"], "yuv420p", "mezzanine: {mv:#}");
}

// ---------------------------------------------------------------------------------------
// 4. No audio track.
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_without_audio() {
    let h = Harness::start().await;
    let input = h.path("in/silent-film.mp4");
    std::fs::create_dir_all(input.parent().unwrap()).unwrap();
    ffmpeg_make(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=25:duration=4",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        s(&input),
    ])
    .await;
    let probe = ffprobe(&input).await.unwrap();
    assert!(streams(&probe, "audio").is_empty(), "{probe:#}");

    let job = transcode(&h, &input, "video", "noaud1").await;
    // CODECS without mp4a, segments without audio, loudness null.
    let (_, list) = check_video_job(&job, 4.0, false).await;
    assert!(!list.is_empty());
    let mezz = probe_mezzanine(&job).await;
    assert!(
        streams(&mezz, "audio").is_empty(),
        "the mezzanine invented an audio track: {mezz:#}"
    );
}

// ---------------------------------------------------------------------------------------
// 5. 5.1 audio.
// ---------------------------------------------------------------------------------------

/// 5.1 AAC whose only signal is dialog in the centre channel: the stereo downmix must keep it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surround_audio_is_downmixed_to_stereo() {
    let h = Harness::start().await;
    let input = h.path("in/surround.mp4");
    std::fs::create_dir_all(input.parent().unwrap()).unwrap();
    ffmpeg_make(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=25:duration=4",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000:duration=4",
        "-filter_complex",
        "[1:a]pan=5.1|FC=c0[a]",
        "-map",
        "0:v",
        "-map",
        "[a]",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "384k",
        "-shortest",
        s(&input),
    ])
    .await;
    let src = stream_of(&input, "audio").await;
    assert_eq!(src["channels"], 6, "source: {src:#}");

    let job = transcode(&h, &input, "video", "surr1").await;
    let (_, list) = check_video_job(&job, 4.0, true).await;
    for r in &list {
        for (seg, _) in &check_vod_playlist(&r.audio_playlist) {
            let probe = ffprobe(seg).await.unwrap();
            let a = first(&probe, "audio").unwrap();
            assert_eq!(
                a["channels"],
                2,
                "{} segment {} audio is not stereo: {a:#}",
                r.name,
                seg.display()
            );
        }
        let joined = h.path(&format!("{}-audio.ts", r.name));
        joined_audio(&r.audio_playlist, &joined);
        let (integrated, _) = measure_loudness(&joined).await;
        assert!(
            integrated.is_some_and(|i| i > -35.0),
            "{} lost the centre-channel dialog in the downmix: integrated loudness {integrated:?} LUFS",
            r.name
        );
    }
    let mezz = probe_mezzanine(&job).await;
    let ma = first(&mezz, "audio").expect("mezzanine audio");
    assert_eq!(ma["channels"], 2, "mezzanine audio is not stereo: {ma:#}");
}

// ---------------------------------------------------------------------------------------
// 6./7. 10-bit HDR (PQ and HLG).
// ---------------------------------------------------------------------------------------

async fn hdr_case(transfer: &str, media: &str) {
    let h = Harness::start().await;
    let input = h.path(&format!("in/{media}.mp4"));
    std::fs::create_dir_all(input.parent().unwrap()).unwrap();
    make_hdr_video(&input, "1280x720:rate=30:duration=4", transfer, true).await;
    let src = stream_of(&input, "video").await;
    assert_eq!(src["pix_fmt"], "yuv420p10le", "source: {src:#}");
    assert_eq!(src["color_transfer"], transfer, "source: {src:#}");
    assert_eq!(src["color_primaries"], "bt2020", "source: {src:#}");

    let job = transcode(&h, &input, "video", media).await;
    let (master, list) = check_video_job(&job, 4.0, true).await;
    for r in &list {
        // avc1.6e.... is High 10, avc1.7a.... High 4:2:2, avc1.f4.... High 4:4:4.
        let avc = r
            .codecs
            .split(',')
            .find(|c| c.trim().starts_with("avc1."))
            .unwrap()
            .trim()
            .to_ascii_lowercase();
        assert!(
            ["avc1.42", "avc1.4d", "avc1.64", "avc1.58"]
                .iter()
                .any(|p| avc.starts_with(p)),
            "{} CODECS {avc} is not an 8-bit H.264 profile:\n{master}",
            r.name
        );
        for (seg, _) in &r.segments {
            let probe = ffprobe(seg).await.unwrap();
            let v = first(&probe, "video").unwrap();
            assert_sdr_8bit(v, &format!("{} segment {}", r.name, seg.display()));
        }
    }
    let mezz = probe_mezzanine(&job).await;
    assert_sdr_8bit(first(&mezz, "video").expect("mezzanine video"), "mezzanine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hdr10_pq_becomes_8bit_sdr() {
    hdr_case("smpte2084", "pq1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hdr_hlg_becomes_8bit_sdr() {
    hdr_case("arib-std-b67", "hlg1").await;
}

// ---------------------------------------------------------------------------------------
// 8.-10. Short and long clips against the segment and preview lengths.
// ---------------------------------------------------------------------------------------

/// 3 s, shorter than one 6 s segment: one segment per variant lasting ~3 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clip_shorter_than_one_segment() {
    let h = Harness::start().await;
    let input = h.path("in/short.mp4");
    make_av(&input, "640x360", 25, 3, "", &[]).await;

    let job = transcode(&h, &input, "video", "short1").await;
    let (_, list) = check_video_job(&job, 3.0, true).await;
    assert!(
        approx(&job.output()["durationSeconds"], 3.0, 0.25),
        "durationSeconds {}",
        job.output()["durationSeconds"]
    );
    for r in &list {
        let (_, text) = read_media(&r.playlist);
        assert_eq!(
            r.segments.len(),
            1,
            "{} should be one segment:\n{text}",
            r.name
        );
        assert!(
            (r.segments[0].1 - 3.0).abs() < 0.25,
            "{} EXTINF {} for a 3 s clip:\n{text}",
            r.name,
            r.segments[0].1
        );
    }
    if let Some(segs) = preview(&job) {
        let total: f64 = segs.iter().map(|(_, d)| d).sum();
        assert!(
            (total - 3.0).abs() < 0.5,
            "preview lasts {total} s for a 3 s clip"
        );
    }
}

/// Clips of half a second and of one frame: shorter than a GOP and than the preview's 0.5 s
/// tolerance. Both used to fail after the whole encode ("rendition 360p has no segments for
/// a preview"); now each gets one segment per rendition and a one-segment preview.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clips_of_half_a_second_and_of_one_frame() {
    let h = Harness::start().await;
    for (name, seconds) in [("half", 0.4), ("oneframe", 0.04)] {
        let input = h.path(&format!("in/{name}.mp4"));
        let video = format!("testsrc2=size=640x360:rate=25:duration={seconds}");
        let audio = format!("sine=frequency=440:sample_rate=48000:duration={seconds}");
        make_sources(&input, &video, &audio, 0.0, &["-shortest"]).await;

        let job = transcode(&h, &input, "video", name).await;
        job.assert_completed();
        assert!(
            approx(&job.output()["durationSeconds"], seconds, 0.1),
            "{name}: durationSeconds {}",
            job.output()["durationSeconds"]
        );
        let (master, list) = renditions(&job);
        assert!(!list.is_empty(), "{name}: no renditions:\n{master}");
        for r in &list {
            assert_eq!(r.segments.len(), 1, "{name} {}:\n{master}", r.name);
            let probe = ffprobe(&r.segments[0].0)
                .await
                .expect("the segment decodes");
            assert_eq!(streams(&probe, "video").len(), 1, "{name} {}", r.name);
        }
        let segs = preview(&job).unwrap_or_else(|| panic!("{name}: no preview"));
        assert_eq!(segs.len(), 1, "{name}: preview {segs:?}");
    }
}

/// An 8K clip of two frames (7680x4320, H.264 level 6.x): the largest picture a camera or an
/// export hands us, and shorter than anything. It failed like the half-second clip did; now
/// the ladder stops at its top rung, the webhook reports the source size, and every
/// rendition and the preview have their one segment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_8k_clip_of_two_frames() {
    let h = Harness::start().await;
    let input = h.path("in/8k.mp4");
    make_sources(
        &input,
        "testsrc2=size=7680x4320:rate=25:duration=0.08",
        "sine=frequency=440:sample_rate=48000:duration=0.08",
        0.0,
        &["-shortest"],
    )
    .await;
    let src = stream_of(&input, "video").await;
    assert_eq!(size_of(&src), (7680, 4320), "source: {src:#}");

    let job = transcode(&h, &input, "video", "eightk").await;
    job.assert_completed();
    let output = job.output();
    assert_eq!(
        (output["width"].as_u64(), output["height"].as_u64()),
        (Some(7680), Some(4320)),
        "{output:#}"
    );
    let (master, list) = renditions(&job);
    assert!(!list.is_empty(), "no renditions:\n{master}");
    for r in &list {
        assert_eq!(r.segments.len(), 1, "{}:\n{master}", r.name);
        let probe = ffprobe(&r.segments[0].0)
            .await
            .expect("the segment decodes");
        let v = first(&probe, "video").expect("a video stream");
        let (w, h) = size_of(v);
        let aspect = w as f64 / h as f64;
        assert!(
            (aspect / (16.0 / 9.0) - 1.0).abs() < 0.01 && w <= 7680,
            "{} is {w}x{h}",
            r.name
        );
    }
    let segs = preview(&job).expect("a preview");
    assert_eq!(segs.len(), 1, "preview {segs:?}");
    let mezz = probe_mezzanine(&job).await;
    assert_eq!(size_of(first(&mezz, "video").unwrap()), (7680, 4320));
}

/// A 1x1 picture (an H.264 in 4:4:4, which ffmpeg writes) cannot become the 4:2:0 the ladder
/// needs: refused at the probe, once, saying why. It used to fail in the encoder, three
/// times, after the mezzanine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_pixel_picture_is_refused_at_once() {
    let h = Harness::start().await;
    let input = h.path("in/pixel.mp4");
    std::fs::create_dir_all(input.parent().unwrap()).unwrap();
    ffmpeg_to(
        &input,
        &[
            "-f",
            "lavfi",
            "-i",
            "color=c=red:size=1x1:rate=25:duration=2,format=yuv444p",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:duration=2",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv444p",
            "-c:a",
            "aac",
            "-shortest",
        ],
    )
    .await;
    let job = transcode(&h, &input, "video", "pixel").await;
    job.run.assert_failure();
    let error = job.body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("the picture is 1x1; the smallest supported is 2x2"),
        "{error:?}"
    );
    assert!(
        !job.run.stderr.contains("mezzanine stored"),
        "it was encoded before it was refused\n{}",
        job.run.dump()
    );
}

/// Runs ffmpeg with `args`, writing `dest`.
async fn ffmpeg_to(dest: &Path, args: &[&str]) {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.push(dest.to_string_lossy().into_owned());
    ffmpeg(&all).await;
}

/// An interrupted upload: the fixture cut to 30, 60 and 90 % of its bytes (a faststart MP4,
/// whose index promises all 8 s), and a non-faststart copy cut in half (no index at all).
/// Each is refused before any encode, saying it is truncated (or unreadable), and nothing is
/// published. It used to complete as an 8 s video frozen on its last good frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_uploads_are_refused() {
    let h = Harness::start().await;
    let whole = std::fs::read(fixture("media/video.mp4")).unwrap();
    let moov_last = h.path("in/moov-last.mp4");
    std::fs::create_dir_all(moov_last.parent().unwrap()).unwrap();
    ffmpeg_copy_without_faststart(&fixture("media/video.mp4"), &moov_last).await;
    let moov_last = std::fs::read(&moov_last).unwrap();
    let cases = [
        ("cut30", &whole, 30, "the upload is truncated"),
        ("cut60", &whole, 60, "the upload is truncated"),
        ("cut90", &whole, 90, "the upload is truncated"),
        ("moovlast50", &moov_last, 50, "not a readable media file"),
    ];
    for (name, bytes, percent, expected) in cases {
        let input = h.path(&format!("in/{name}.mp4"));
        std::fs::write(&input, &bytes[..bytes.len() * percent / 100]).unwrap();
        let job = transcode(&h, &input, "video", name).await;
        job.run.assert_failure();
        assert_eq!(job.body["status"], "failed", "{name}: {}", job.body);
        let error = job.body["error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{name}: {error:?}");
        let masters: Vec<_> = walk(&job.out)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "m3u8"))
            .collect();
        assert!(masters.is_empty(), "{name}: published {masters:?}");
    }
}

/// A damaged middle (bytes overwritten inside the media data, the index intact, as a bad
/// disk sector or a botched copy leaves it): a small stretch is concealed and the job
/// completes at the true length with every frame slot filled; beyond 5 % of frames that
/// cannot be decoded, the input is refused as damaged, once, and nothing is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_middles_are_concealed_or_refused() {
    let h = Harness::start().await;
    let whole = std::fs::read(fixture("media/video.mp4")).unwrap();
    // Deterministic noise (xorshift) over `percent` of the file from 45 % on.
    let damage = |percent: usize| {
        let mut bytes = whole.clone();
        let start = bytes.len() * 45 / 100;
        let len = bytes.len() * percent / 100;
        let mut x: u32 = 0x9e37_79b9;
        for b in &mut bytes[start..start + len] {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        bytes
    };

    let input = h.path("in/scratched.mp4");
    std::fs::create_dir_all(input.parent().unwrap()).unwrap();
    std::fs::write(&input, damage(2)).unwrap();
    let job = transcode(&h, &input, "video", "scratched").await;
    job.assert_completed();
    assert!(
        approx(&job.output()["durationSeconds"], 8.0, 0.05),
        "{:#}",
        job.body
    );
    let mezz = probe_mezzanine(&job).await;
    let frames = first(&mezz, "video").unwrap()["nb_frames"]
        .as_str()
        .and_then(|n| n.parse::<u32>().ok());
    assert_eq!(frames, Some(240), "8 s at 30 fps: {mezz:#}");

    let input = h.path("in/shredded.mp4");
    std::fs::write(&input, damage(10)).unwrap();
    let job = transcode(&h, &input, "video", "shredded").await;
    job.run.assert_failure();
    assert_eq!(job.body["status"], "failed", "{}", job.body);
    let error = job.body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(
            "the input is damaged: more than 5 % of its audio and video frames cannot be decoded"
        ),
        "{error:?}"
    );
    let masters: Vec<_> = walk(&job.out)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "m3u8"))
        .filter(|p| p.to_string_lossy().contains("shredded"))
        .collect();
    assert!(masters.is_empty(), "published {masters:?}");
    let attempts = job
        .run
        .stderr
        .lines()
        .filter(|l| l.contains("activity failed") && l.contains("the input is damaged"))
        .count();
    assert_eq!(
        attempts,
        1,
        "a damaged input is not retried\n{}",
        job.run.dump()
    );
}

/// A stream copy of `src` with the index (`moov`) at the end, as a camera writes it.
async fn ffmpeg_copy_without_faststart(src: &Path, dest: &Path) {
    ffmpeg_to(dest, &["-i", &src.to_string_lossy(), "-c", "copy"]).await;
}

/// 8 s, shorter than the 30 s preview: the preview is the whole clip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clip_shorter_than_preview() {
    let h = Harness::start().await;
    let input = h.path("in/eight.mp4");
    make_av(&input, "640x360", 25, 8, "", &[]).await;

    let job = transcode(&h, &input, "video", "eight1").await;
    check_video_job(&job, 8.0, true).await;
    let ready = ready_variants(&job);
    eprintln!(
        "{}: hlsPreviewKey {} readyVariants {ready:?}",
        job.media,
        job.output()["hlsPreviewKey"]
    );
    match preview(&job) {
        None => assert!(
            !ready.iter().any(|v| v == "preview"),
            "readyVariants {ready:?} names a preview the webhook does not have"
        ),
        Some(segs) => {
            let total: f64 = segs.iter().map(|(_, d)| d).sum();
            assert!(
                (total - 8.0).abs() < 0.5,
                "preview of an 8 s clip lasts {total} s ({segs:?})"
            );
            assert!(
                ready.iter().any(|v| v == "preview"),
                "readyVariants {ready:?}"
            );
            for (seg, _) in &segs {
                let probe = ffprobe(seg).await.expect("preview segment decodes");
                let v = first(&probe, "video").expect("preview video");
                assert_eq!(size_of(v), (640, 360), "preview segment {}", seg.display());
            }
        }
    }
}

/// 34 s, longer than the preview: the preview stops at 30 s, at the source's own size
/// (640x360 is below 720p, which would otherwise be the preview's size).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clip_longer_than_preview() {
    let h = Harness::start().await;
    let input = h.path("in/long.mp4");
    make_av(&input, "640x360", 25, 34, "", &[]).await;

    let job = transcode(&h, &input, "video", "long1").await;
    check_video_job(&job, 34.0, true).await;
    let ready = ready_variants(&job);
    eprintln!(
        "{}: hlsPreviewKey {} readyVariants {ready:?}",
        job.media,
        job.output()["hlsPreviewKey"]
    );
    match preview(&job) {
        None => assert!(
            !ready.iter().any(|v| v == "preview"),
            "readyVariants {ready:?} names a preview the webhook does not have"
        ),
        Some(segs) => {
            let total: f64 = segs.iter().map(|(_, d)| d).sum();
            assert!(
                (total - 30.0).abs() <= 0.5,
                "preview of a 34 s clip lasts {total} s, expected 30 ({segs:?})"
            );
            let mut decoded = 0.0;
            for (seg, _) in &segs {
                let probe = ffprobe(seg).await.expect("preview segment decodes");
                let v = first(&probe, "video").expect("preview video");
                assert_eq!(size_of(v), (640, 360), "preview segment {}", seg.display());
                assert!(
                    first(&probe, "audio").is_some(),
                    "preview segment {} has no audio: {probe:#}",
                    seg.display()
                );
                decoded += probe["format"]["duration"]
                    .as_str()
                    .and_then(|d| d.parse::<f64>().ok())
                    .unwrap_or(0.0);
            }
            assert!(
                (decoded - 30.0).abs() <= 0.6,
                "preview segments hold {decoded} s of media, expected 30"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// 11./12. The wrong media type.
// ---------------------------------------------------------------------------------------

/// An MP3 sent as a video job: a failed webhook that says there is no video stream and
/// points at the audio type; nothing published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_file_sent_as_video_fails_clearly() {
    let h = Harness::start().await;
    let input = h.path("in/podcast.mp3");
    make_audio_mp3(&input, 4).await;

    let job = transcode(&h, &input, "video", "wrong1").await;
    job.run.assert_failure();
    let body = &job.body;
    assert_eq!(body["status"], "failed", "body: {body:#}");
    assert_eq!(body["output"]["mediaId"], "wrong1", "body: {body:#}");
    let error = body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("failed body has no error: {body:#}"));
    let lower = error.to_lowercase();
    assert!(
        [
            "no video",
            "not contain a video",
            "not contain any video",
            "not have a video",
            "without a video",
            "without video",
            "lacks a video",
            "missing video",
            "has no video",
        ]
        .iter()
        .any(|p| lower.contains(p)),
        "the error should say there is no video stream: {error:?}"
    );
    assert!(
        lower.contains("audio"),
        "the error should suggest the audio media type: {error:?}"
    );
    assert!(error.len() <= 2048, "error is {} bytes", error.len());
    assert!(!looks_like_stack_dump(error), "stack dump: {error:?}");
    let published: Vec<_> = walk(&job.out)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "m3u8"))
        .collect();
    assert!(published.is_empty(), "a failed job published {published:?}");
}

/// A video file sent as an audio job: completed as audio (hls-audio 128k/64k), its picture
/// dropped everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_file_sent_as_audio_is_an_audio_job() {
    let h = Harness::start().await;
    let input = h.path("in/interview.mp4");
    make_av(&input, "640x360", 25, 4, "", &[]).await;

    let job = transcode(&h, &input, "audio", "asaud1").await;
    job.assert_completed();
    let output = job.output();
    assert_eq!(output["mediaType"], "audio", "{output:#}");
    assert_eq!(
        output["hlsMasterPlaylistKey"],
        format!("{CREATOR}/hls-audio/asaud1/master.m3u8"),
        "{output:#}"
    );
    assert!(
        output["thumbnailKey"].is_null(),
        "audio job has a thumbnail: {output:#}"
    );
    assert!(
        output["hlsPreviewKey"].is_null(),
        "audio job has a preview: {output:#}"
    );
    assert!(
        output["width"].is_null() && output["height"].is_null(),
        "an audio job has no picture size: {output:#}"
    );
    assert!(
        approx(&output["durationSeconds"], 4.0, 0.5),
        "durationSeconds {}",
        output["durationSeconds"]
    );
    let (master, list) = renditions(&job);
    let mut names: Vec<&str> = list.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["128k", "64k"], "audio ladder:\n{master}");
    for r in &list {
        assert!(
            r.resolution.is_none(),
            "{} has a RESOLUTION:\n{master}",
            r.name
        );
        assert!(
            !r.codecs.contains("avc1"),
            "{} CODECS {:?} names video:\n{master}",
            r.name,
            r.codecs
        );
        for (seg, _) in &r.segments {
            let probe = ffprobe(seg).await.expect("audio segment decodes");
            assert!(
                streams(&probe, "video").is_empty(),
                "{} segment {} carries video: {probe:#}",
                r.name,
                seg.display()
            );
            assert_eq!(streams(&probe, "audio").len(), 1, "{probe:#}");
        }
    }
    let thumbs: Vec<_> = walk(&job.out)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "jpg" || e == "jpeg"))
        .collect();
    assert!(
        thumbs.is_empty(),
        "an audio job wrote a thumbnail: {thumbs:?}"
    );
    let mezz = probe_mezzanine(&job).await;
    assert!(
        streams(&mezz, "video").is_empty(),
        "the audio mezzanine carries video: {mezz:#}"
    );
    check_reported_loudness(&job);
}

// ---------------------------------------------------------------------------------------
// 13. Loudness.
// ---------------------------------------------------------------------------------------

/// Loud, clipping pink noise (about -9 LUFS, true peak 0 dBTP): the delivered audio must be
/// normalized to -16 LUFS with headroom, and the webhook must report what was delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loudness_is_normalized() {
    let h = Harness::start().await;
    let input = h.path("in/loud.mp4");
    std::fs::create_dir_all(input.parent().unwrap()).unwrap();
    ffmpeg_make(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=25:duration=8",
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=color=pink:amplitude=1.0:sample_rate=48000:duration=8:seed=7,volume=6dB",
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "192k",
        "-ac",
        "2",
        "-shortest",
        s(&input),
    ])
    .await;
    let (src_i, _) = measure_loudness(&input).await;
    let src_i = src_i.expect("source loudness");
    assert!(src_i > -13.0, "the source should be loud, is {src_i} LUFS");

    let job = transcode(&h, &input, "video", "loud1").await;
    let (_, list) = check_video_job(&job, 8.0, true).await;
    let Some((reported_i, reported_p, _)) = check_reported_loudness(&job) else {
        eprintln!("loud1: loudness is null (not built yet); only its absence was checked");
        assert!(job.output()["loudness"].is_null());
        return;
    };
    for r in &list {
        let joined = h.path(&format!("{}-audio.ts", r.name));
        joined_audio(&r.audio_playlist, &joined);
        let (i, tp) = measure_loudness(&joined).await;
        eprintln!(
            "loud1 {}: reported {} / measured {i:?} LUFS, true peak {tp:?} dBTP (source {src_i:.1} LUFS)",
            r.name,
            job.output()["loudness"]
        );
        let i = i.unwrap_or_else(|| panic!("{} delivered silence", r.name));
        assert!(
            (i + 16.0).abs() <= 1.0,
            "{} delivers {i:.1} LUFS, expected -16 ± 1 (source {src_i:.1})",
            r.name
        );
        assert!(
            (i * 100.0 - reported_i as f64).abs() <= 100.0,
            "{} delivers {i:.1} LUFS but the webhook reports {reported_i}",
            r.name
        );
        if let Some(tp) = tp {
            assert!(
                tp <= -0.5,
                "{} true peak {tp:.1} dBTP (target -1.5, reported {reported_p})",
                r.name
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Interlaced source.
// ---------------------------------------------------------------------------------------

/// A 720p25 top-field-first interlaced clip, as a broadcast or camcorder file arrives (each
/// frame carries two fields 1/50 s apart). The outputs are progressive pictures at 25 fps:
/// the full-size rendition, which is not scaled and so would keep every comb, reads as
/// progressive to ffmpeg's `idet`, as the source reads interlaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interlaced_source_is_deinterlaced() {
    let h = Harness::start().await;
    let input = h.path("in/interlaced.mp4");
    let weave = ",tinterlace=mode=interleave_top,setfield=tff";
    let coding = ["-flags", "+ilme+ildct", "-x264-params", "tff=1"];
    make_av(&input, "1280x720", 50, 6, weave, &coding).await;
    let source = stream_of(&input, "video").await;
    assert_eq!(
        source["field_order"], "tt",
        "the source is not flagged interlaced: {source:#}"
    );
    let (combed, _) = interlace_detection(&input).await;
    assert!(
        combed > 100,
        "the source does not look interlaced ({combed} frames)"
    );

    let job = transcode(&h, &input, "video", "intl1").await;
    let (_, list) = check_video_job(&job, 6.0, true).await;
    let full = list
        .iter()
        .find(|r| r.resolution == Some((1280, 720)))
        .unwrap_or_else(|| panic!("no 1280x720 rendition: {list:#?}"));
    assert_eq!(full.frame_rate.map(f64::round), Some(25.0), "{full:#?}");
    let joined = h.path("full.ts");
    concat_files(
        &full
            .segments
            .iter()
            .map(|(p, _)| p.clone())
            .collect::<Vec<_>>(),
        &joined,
    );
    let (combed, progressive) = interlace_detection(&joined).await;
    assert!(
        combed * 20 <= combed + progressive,
        "combing left in the 720p rendition: idet says {combed} interlaced, {progressive} progressive frames"
    );
    let mezz = probe_mezzanine(&job).await;
    let video = first(&mezz, "video").expect("mezzanine video");
    assert_ne!(video["field_order"], "tt", "{video:#}");
}

// ---------------------------------------------------------------------------------------
// Audio and picture of different lengths.
// ---------------------------------------------------------------------------------------

/// An 8 s picture with a tone and a source whose streams do not span the same time: the
/// video outputs and the audio rendition all last the whole timeline, so players neither
/// stall nor cut the end, and the sound stays where it was against the picture.
async fn uneven_streams(h: &Harness, name: &str, video_s: u32, audio_s: f64, offset: f64) -> Job {
    let input = h.path(&format!("in/{name}.mp4"));
    let video = format!("testsrc2=size=640x360:rate=25:duration={video_s}");
    let audio = format!("sine=frequency=440:sample_rate=48000:duration={audio_s}");
    make_sources(&input, &video, &audio, offset, &[]).await;
    transcode(h, &input, "video", name).await
}

/// The sound of the audio rendition (or the first rendition's muxed audio) as one file.
fn delivered_audio(h: &Harness, list: &[Rendition], name: &str) -> PathBuf {
    let dest = h.path(&format!("{name}-audio.ts"));
    joined_audio(&list[0].audio_playlist, &dest);
    dest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_starting_late_is_padded_with_silence() {
    let h = Harness::start().await;
    // The tone starts 1.5 s after the first frame and ends with the picture.
    let job = uneven_streams(&h, "lateaud1", 8, 6.5, 1.5).await;
    let (_, list) = check_video_job(&job, 8.0, true).await;
    let silent = silences(&delivered_audio(&h, &list, "lateaud1")).await;
    assert!(
        matches!(silent.as_slice(), [(start, Some(end))] if *start < 0.1 && (end - 1.5).abs() < 0.15),
        "expected silence from 0 to ~1.5 s, then the tone to the end: {silent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_outlasting_the_picture_keeps_its_end() {
    let h = Harness::start().await;
    // A 6 s picture with 8 s of tone: the last frame holds while the tone plays out.
    let job = uneven_streams(&h, "longaud1", 6, 8.0, 0.0).await;
    let (_, list) = check_video_job(&job, 8.0, true).await;
    let silent = silences(&delivered_audio(&h, &list, "longaud1")).await;
    assert!(
        silent.is_empty(),
        "the tone has gaps or was cut: {silent:?}"
    );
}

// ---------------------------------------------------------------------------------------
// A recording whose headers carry no length.
// ---------------------------------------------------------------------------------------

/// A WebM as a browser's MediaRecorder writes it (VP8 + Opus, written live: no duration in
/// the header, no cues). The length is read from the packets and the job completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webm_without_a_duration_is_measured() {
    let h = Harness::start().await;
    let input = h.path("in/recording.webm");
    std::fs::create_dir_all(input.parent().unwrap()).unwrap();
    ffmpeg_make(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=30:duration=5",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000:duration=5",
        "-c:v",
        "libvpx",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-b:v",
        "500k",
        "-c:a",
        "libopus",
        "-live",
        "1",
        "-f",
        "webm",
        s(&input),
    ])
    .await;
    let probe = ffprobe(&input).await.expect("probe the source");
    assert!(
        probe["format"]["duration"].is_null() && streams(&probe, "video")[0]["duration"].is_null(),
        "the source has a duration in its headers: {probe:#}"
    );
    let job = transcode(&h, &input, "video", "webm1").await;
    check_video_job(&job, 5.0, true).await;
}

/// A photo uploaded as a video: refused at the probe with a message that says what it is,
/// a failed webhook, nothing published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn still_image_is_refused_clearly() {
    let h = Harness::start().await;
    let input = h.path("in/photo.png");
    std::fs::create_dir_all(input.parent().unwrap()).unwrap();
    ffmpeg_make(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x480",
        "-frames:v",
        "1",
        s(&input),
    ])
    .await;
    let job = transcode(&h, &input, "video", "photo1").await;
    job.run.assert_failure();
    let body = &job.body;
    assert_eq!(body["status"], "failed", "body: {body:#}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("still image (png)"),
        "the error should say the input is a still image: {error:?}"
    );
    assert!(!looks_like_stack_dump(error), "stack dump: {error:?}");
    let published: Vec<_> = walk(&job.out)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "m3u8" || e == "ts"))
        .collect();
    assert!(published.is_empty(), "a failed job published {published:?}");
}

/// A clip that opens on black past the 10 % mark: the thumbnail is taken a little later,
/// from real picture, not from the black frame at exactly 10 %.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thumbnail_skips_a_black_opening() {
    let h = Harness::start().await;
    let input = h.path("in/fade.mp4");
    // 20 s: 10 % is 2 s, but the picture fades in from black only at 3 s.
    make_av(&input, "640x360", 25, 20, ",fade=t=in:st=3:d=0.2", &[]).await;
    let job = transcode(&h, &input, "video", "fade1").await;
    let key = job.output()["thumbnailKey"]
        .as_str()
        .expect("thumbnailKey")
        .to_string();
    let jpeg = std::fs::read(assert_object_exists(&job.out, ASSETS_BUCKET, &key)).unwrap();
    let img = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
        .expect("thumbnail decodes")
        .to_luma8();
    assert_eq!(img.dimensions(), (1280, 720));
    // Only the 640x360 picture area (the frame is letterboxed to 16:9 exactly, so all of it).
    let mean = img.pixels().map(|p| f64::from(p.0[0])).sum::<f64>() / f64::from(1280 * 720);
    assert!(
        mean > 40.0,
        "thumbnail is (nearly) black: mean luma {mean:.1}"
    );
}
