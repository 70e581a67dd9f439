//! Subtitles as a viewer gets them. A Matroska source carries an SRT track (English, titled)
//! and an ASS track (French, forced); the job adds a sidecar SRT (German) fetched over HTTP
//! by a presigned-looking URL. The master must list three WebVTT renditions with their
//! language, name and FORCED flag, every segment must line up with the video's and map its
//! clock to the video's first frame, the cues read back from the segments must be the
//! source's (times to the millisecond, each in every segment it overlaps), the URL's
//! signature must appear nowhere, and hls.js in Chromium must list the tracks and show the
//! right line at each moment. A bitmap (PGS) track beside them is skipped, and the log says
//! why. A sidecar that is not a subtitle file fails the job, naming it.

use crate::common;
use crate::playback;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECONDS: u32 = 14;
const SIGNATURE: &str = "X-Amz-Signature=0a1b2c3d4e5f60718293a4b5c6d7e8f9";

const ENGLISH: &str = "1
00:00:01,000 --> 00:00:03,000
Hello from the first segment

2
00:00:05,500 --> 00:00:07,000
Across the boundary

3
00:00:12,000 --> 00:00:13,500
The last words
";

const FRENCH_ASS: &str = "[Script Info]
ScriptType: v4.00+
PlayResX: 640
PlayResY: 360

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Default,DejaVu Sans,20,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,0,0,0,0,100,100,0,0,1,1,0,2,10,10,10,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,0:00:02.00,0:00:04.00,Default,,0,0,0,,Bonjour {\\i1}tout le monde{\\i0}
Dialogue: 0,0:00:08.25,0:00:09.75,Default,,0,0,0,,Au milieu
";

const GERMAN: &str = "1
00:00:03,500 --> 00:00:04,500
Guten Tag

2
00:00:11,000 --> 00:00:12,500
Bis bald
";

/// The lines of each track, in order.
fn lines(language: &str) -> Vec<&'static str> {
    match language {
        "en" => vec![
            "Hello from the first segment",
            "Across the boundary",
            "The last words",
        ],
        "fr" => vec!["Bonjour <i>tout le monde</i>", "Au milieu"],
        "de" => vec!["Guten Tag", "Bis bald"],
        other => panic!("no cues expected for {other}"),
    }
}

/// When a source track's cues show, as the source file says (its muxer may have moved
/// them with the picture and sound), on the programme's clock: from the earliest start of
/// the source's picture and sound.
async fn source_times(source: &Path, subtitle: usize) -> Vec<(f64, f64)> {
    let doc = ffprobe_json(&[
        "-show_entries",
        "stream=codec_type,start_time:packet=pts_time,duration_time",
        "-select_streams",
        &format!("s:{subtitle}"),
        "-show_packets",
        "-of",
        "json",
        s(source),
    ])
    .await
    .unwrap();
    let all = ffprobe_json(&[
        "-show_entries",
        "stream=codec_type,start_time",
        "-of",
        "json",
        s(source),
    ])
    .await
    .unwrap();
    let origin = all["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|st| st["codec_type"] == "video" || st["codec_type"] == "audio")
        .filter_map(|st| st["start_time"].as_str()?.parse::<f64>().ok())
        .fold(f64::INFINITY, f64::min);
    let number = |v: &Value| v.as_str().unwrap().parse::<f64>().unwrap();
    doc["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let start = number(&p["pts_time"]);
            (start - origin, start + number(&p["duration_time"]) - origin)
        })
        .collect()
}

/// The cues every track must end up with: (start, end, text) on the programme's clock.
/// A sidecar is written on the programme's clock.
async fn expected_cues(source: &Path) -> Vec<(&'static str, Vec<(f64, f64, &'static str)>)> {
    let with = |language: &'static str, times: Vec<(f64, f64)>| {
        let cues = times
            .into_iter()
            .zip(lines(language))
            .map(|((a, b), t)| (a, b, t))
            .collect();
        (language, cues)
    };
    vec![
        with("en", source_times(source, 0).await),
        with("fr", source_times(source, 1).await),
        with("de", vec![(3.5, 4.5), (11.0, 12.5)]),
    ]
}

/// Serves `body` at any path on a loopback port; returns the port.
fn serve(body: &'static str) -> (Arc<tiny_http::Server>, u16) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let port = server.server_addr().to_ip().unwrap().port();
    let s = Arc::clone(&server);
    std::thread::spawn(move || {
        while let Ok(request) = s.recv() {
            let _ = request.respond(tiny_http::Response::from_string(body));
        }
    });
    (server, port)
}

/// A PGS (Blu-ray bitmap) subtitle stream, written by hand: one 64x16 picture shown from 2 s
/// to 4 s. Each segment is `PG`, PTS, DTS, type, size, data (composition, window, palette,
/// object with run-length lines, end).
fn pgs_subtitles() -> Vec<u8> {
    fn segment(pts: u32, kind: u8, data: &[u8]) -> Vec<u8> {
        let mut out = b"PG".to_vec();
        out.extend(pts.to_be_bytes());
        out.extend(0u32.to_be_bytes());
        out.push(kind);
        out.extend((data.len() as u16).to_be_bytes());
        out.extend(data);
        out
    }
    let (w, h) = (64u16, 16u16);
    let mut rle = Vec::new();
    for _ in 0..h {
        rle.extend(std::iter::repeat_n(1u8, usize::from(w)));
        rle.extend([0, 0]);
    }
    let mut out = Vec::new();
    for (pts, show) in [(180_000u32, true), (360_000, false)] {
        let mut pcs = vec![0x02, 0x80, 0x01, 0x68, 0x10, 0, u8::from(!show)];
        pcs.extend(if show { [0x80, 0, 0, 1] } else { [0, 0, 0, 0] });
        if show {
            pcs.extend([0, 0, 0, 0, 0, 100, 1, 44]);
        }
        out.extend(segment(pts, 0x16, &pcs));
        let mut window = vec![1, 0, 0, 100, 1, 44];
        window.extend(w.to_be_bytes());
        window.extend(h.to_be_bytes());
        out.extend(segment(pts, 0x17, &window));
        if show {
            out.extend(segment(pts, 0x14, &[0, 0, 1, 235, 128, 128, 255]));
            let mut object = vec![0, 0, 0, 0xC0];
            object.extend(&((rle.len() + 4) as u32).to_be_bytes()[1..]);
            object.extend(w.to_be_bytes());
            object.extend(h.to_be_bytes());
            object.extend(&rle);
            out.extend(segment(pts, 0x15, &object));
        }
        out.extend(segment(pts, 0x80, &[]));
    }
    out
}

async fn source_with_subtitles(h: &Harness) -> std::path::PathBuf {
    let dir = h.path("in");
    std::fs::create_dir_all(&dir).unwrap();
    let (srt, ass) = (dir.join("en.srt"), dir.join("fr.ass"));
    std::fs::write(&srt, ENGLISH).unwrap();
    std::fs::write(&ass, FRENCH_ASS).unwrap();
    let pgs = dir.join("bitmap.sup");
    std::fs::write(&pgs, pgs_subtitles()).unwrap();
    let input = dir.join("subs.mkv");
    let d = SECONDS.to_string();
    ffmpeg_make(&[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=s=640x360:r=25:d={d}"),
        "-f",
        "lavfi",
        "-i",
        &format!("sine=f=440:sample_rate=48000:d={d}"),
        "-i",
        s(&srt),
        "-i",
        s(&ass),
        "-i",
        s(&pgs),
        "-map",
        "0",
        "-map",
        "1",
        "-map",
        "2",
        "-map",
        "3",
        "-map",
        "4",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-c:s",
        "copy",
        "-metadata:s:s:0",
        "language=eng",
        "-metadata:s:s:0",
        "title=English SDH",
        "-metadata:s:s:1",
        "language=fre",
        "-disposition:s:1",
        "forced",
        "-metadata:s:s:2",
        "language=ger",
        s(&input),
    ])
    .await;
    input
}

async fn first_video_pts(segment: &Path) -> u64 {
    let doc = ffprobe_json(&[
        "-select_streams",
        "v:0",
        "-show_entries",
        "stream=start_pts",
        "-of",
        "json",
        s(segment),
    ])
    .await
    .unwrap();
    doc["streams"][0]["start_pts"].as_u64().expect("start_pts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_tracks_and_sidecars_become_webvtt_renditions_that_hlsjs_shows() {
    let h = Harness::start().await;
    let input = source_with_subtitles(&h).await;
    let cues = expected_cues(&input).await;
    let expected = |language: &str| {
        cues.iter()
            .find(|(l, _)| *l == language)
            .map(|(_, c)| c.clone())
            .unwrap_or_else(|| panic!("no cues expected for {language}"))
    };
    let (server, port) = serve(GERMAN);
    let hook = WebhookReceiver::start("whsec-subtitles-0123");
    let mut job = video_job_payload("subs", "c1", &hook);
    job["inputKey"] = json!("originals/c1/subs/original.mkv");
    job["renditions"] = json!(["360p", "234p"]);
    job["subtitles"] = json!([{
        "uri": format!("http://127.0.0.1:{port}/de.srt?{SIGNATURE}"),
        "language": "de",
        "name": "Deutsch"
    }]);
    let job_file = write_job(&h, "job.json", &job);
    let out = h.path("out");
    let run = h
        .run_with_env(
            &[
                "run",
                "--job",
                s(&job_file),
                s(&input),
                "--json",
                "--out",
                s(&out),
            ],
            [("INPUT_ALLOWED_HOSTS", "127.0.0.1")],
        )
        .await;
    run.assert_success();
    let body = run.json();
    assert_eq!(body["status"], "completed", "{}", run.dump());
    assert_eq!(hook.expect_one_valid().await, body);
    // The PGS track is pictures: skipped, and the log says why.
    assert!(
        run.dump()
            .contains("subtitle stream 4 (hdmv_pgs_subtitle) is pictures, not text"),
        "{}",
        run.dump()
    );

    // The signature of the sidecar's URL is a secret: nowhere in logs, webhook or history.
    let history = workflow_history(&h.address(), "transcode-subs")
        .await
        .to_string();
    for (what, text) in [
        ("the history", history.as_str()),
        ("the logs", &run.dump()),
        ("the webhook", &body.to_string()),
    ] {
        assert!(
            !text.contains(SIGNATURE),
            "{what} holds the URL's signature"
        );
    }

    let hls = |key: &str| object_path(&out, MEDIA_BUCKET, &format!("c1/hls/subs/{key}"));
    let master_path = hls("master.m3u8");
    let master_text = std::fs::read_to_string(&master_path).unwrap();
    let master = read_master(&master_path);
    let tracks: Vec<&m3u8_rs::AlternativeMedia> = master
        .alternatives
        .iter()
        .filter(|a| a.media_type == m3u8_rs::AlternativeMediaType::Subtitles)
        .collect();
    let listed: BTreeSet<(String, String, bool)> = tracks
        .iter()
        .map(|t| {
            (
                t.language.clone().unwrap_or_default(),
                t.name.clone(),
                t.forced,
            )
        })
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from([
            ("de".into(), "Deutsch".into(), false),
            ("en".into(), "English SDH".into(), false),
            ("fr".into(), "French".into(), true),
        ]),
        "{master_text}"
    );
    for v in master.variants.iter().filter(|v| !v.is_i_frame) {
        assert_eq!(v.subtitles.as_deref(), Some("subs"), "{master_text}");
    }

    // Each track lines up with the video and holds the source's cues.
    let video_uri = &master.variants.iter().find(|v| !v.is_i_frame).unwrap().uri;
    let (video, _) = read_media(&hls(video_uri));
    let video_dir = hls(video_uri).parent().unwrap().to_path_buf();
    let zero = first_video_pts(&video_dir.join(&video.segments[0].uri)).await;
    let mut bounds = Vec::new();
    let mut t = 0.0;
    for seg in &video.segments {
        bounds.push((t, t + f64::from(seg.duration)));
        t += f64::from(seg.duration);
    }
    for track in &tracks {
        let language = track.language.clone().unwrap();
        let playlist_path = hls(track.uri.as_deref().unwrap());
        let (playlist, text) = read_media(&playlist_path);
        assert!(playlist.end_list, "{text}");
        assert_eq!(
            playlist
                .segments
                .iter()
                .map(|s| s.duration)
                .collect::<Vec<_>>(),
            video
                .segments
                .iter()
                .map(|s| s.duration)
                .collect::<Vec<_>>(),
            "{language}: subtitle segments must span the video's"
        );
        let mut all: Vec<(f64, f64, String)> = Vec::new();
        for (k, seg) in playlist.segments.iter().enumerate() {
            let vtt =
                std::fs::read_to_string(playlist_path.parent().unwrap().join(&seg.uri)).unwrap();
            assert!(vtt.starts_with("WEBVTT\n"), "{vtt}");
            let mpegts = vtt
                .lines()
                .find_map(|l| l.strip_prefix("X-TIMESTAMP-MAP=MPEGTS:"))
                .and_then(|r| r.split(',').next())
                .and_then(|n| n.parse().ok());
            let cues = vtt_cues(&vtt);
            assert_eq!(
                mpegts,
                Some(zero),
                "{language} segment {k}: cues must be mapped to the video's first frame"
            );
            let (start, end) = bounds[k];
            for want in expected(&language) {
                let overlaps = want.1 > start && want.0 < end;
                let here = cues.iter().any(|c| c.2 == want.2);
                assert_eq!(
                    here,
                    overlaps,
                    "{language} segment {k} ({start}-{end} s): cue {want:?} {}",
                    if overlaps {
                        "missing"
                    } else {
                        "does not belong"
                    }
                );
            }
            all.extend(cues);
        }
        all.sort_by(|a, b| a.partial_cmp(b).unwrap());
        all.dedup();
        let want = expected(&language);
        assert_eq!(all.len(), want.len(), "{language}: {all:?}");
        for (got, want) in all.iter().zip(&want) {
            assert!(
                (got.0 - want.0).abs() < 0.0015 && (got.1 - want.1).abs() < 0.0015,
                "{language}: {got:?} against {want:?}"
            );
            assert_eq!(got.2, want.2, "{language}");
        }
    }

    // hls.js in Chromium lists the tracks and shows the right line at each moment.
    if playback::prerequisites_met() {
        let times = [1.5, 3.8, 6.2, 9.0, 12.2];
        let options: Vec<String> = times
            .iter()
            .flat_map(|t| ["--cue-at".to_string(), t.to_string()])
            .collect();
        let played = playback::play_with(&master_path, &options).await;
        playback::check_played("master with subtitles", &played, true);
        let shown = played.report["subtitles"].as_array().expect("subtitles");
        assert_eq!(shown.len(), 3, "hls.js lists every track: {shown:#?}");
        for track in shown {
            let language = track["lang"].as_str().unwrap();
            let want = expected(language);
            for (at, seen) in times.iter().zip(track["shown"].as_array().unwrap()) {
                let texts: Vec<&str> = seen["texts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap())
                    .collect();
                // What the element shows as text: tags are rendered, not shown.
                let plain = |t: &str| t.replace("<i>", "").replace("</i>", "");
                let now = seen["currentTime"].as_f64().unwrap_or(*at);
                let expected: Vec<String> = want
                    .iter()
                    .filter(|c| c.0 <= now && now < c.1)
                    .map(|c| plain(c.2))
                    .collect();
                let texts: Vec<String> = texts.iter().map(|t| plain(t)).collect();
                assert_eq!(
                    texts, expected,
                    "{language} at {now:.2} s: hls.js showed {texts:?}"
                );
            }
        }
    }
    server.unblock();
}

/// A sidecar that is a playlist of local files, not subtitles: the job fails within
/// seconds, naming the entry; nothing is published as ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_that_is_not_subtitles_fails_the_job_naming_it() {
    let h = Harness::start().await;
    let input = h.path("in/clip.mp4");
    make_video(&input, 320, 180, 4, 25).await;
    let (server, port) = serve("#EXTM3U\n#EXTINF:10,\nfile:///etc/passwd\n");
    let hook = WebhookReceiver::start("whsec-subtitles-bad-0123");
    let mut job = video_job_payload("badsubs", "c1", &hook);
    job["subtitles"] = json!([{
        "uri": format!("http://127.0.0.1:{port}/evil.srt"),
        "language": "en"
    }]);
    let job_file = write_job(&h, "job.json", &job);
    let out = h.path("out");
    let started = Instant::now();
    let run = h
        .run_with_env(
            &[
                "run",
                "--job",
                s(&job_file),
                s(&input),
                "--json",
                "--out",
                s(&out),
            ],
            [("INPUT_ALLOWED_HOSTS", "127.0.0.1")],
        )
        .await;
    run.assert_failure();
    let body: Value = run.json();
    assert_eq!(body["status"], "failed", "{}", run.dump());
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("subtitles[0]") && error.contains("not an SRT, WebVTT or ASS"),
        "{error}"
    );
    assert!(!error.contains("passwd"), "{error}");
    assert_eq!(hook.expect_one_valid().await, body);
    assert!(
        !object_path(&out, MEDIA_BUCKET, "c1/hls/badsubs/master.m3u8").exists(),
        "a master was published"
    );
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the refusal took {:?}",
        started.elapsed()
    );
    server.unblock();
}
