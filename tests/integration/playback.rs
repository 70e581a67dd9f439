//! Playback test: what the pipeline writes must play in a real browser player.
//!
//! A 14 s 1080p30 clip with a tone goes through the real `transcoder` binary against a
//! Temporal dev server; then `tests/playback/play.mjs` opens the master playlist in headless
//! Chromium (Debian's `/usr/bin/chromium`, driven by playwright-core) with hls.js, plays a few
//! seconds, switches to every quality level and checks each one loads, plays and shows its
//! own picture size, with no fatal hls.js error. The preview playlist, when there is one, is
//! played the same way.
//!
//! Needs `node`, Chromium and `npm ci --prefix tests/playback` (`make test` installs them).
//! When they are missing the test fails if `TRANSCODER_REQUIRE_PLAYBACK=1` (as `make test`
//! sets it); otherwise it says so loudly and passes without playing anything.

use crate::common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;

/// play.mjs's own overall limit, and how long the test waits for it before killing it.
const PLAY_TIMEOUT_S: u64 = 90;
const PLAY_KILL_AFTER: Duration = Duration::from_secs(PLAY_TIMEOUT_S + 30);

/// Non-fatal hls.js errors that are part of its normal gap and stall handling (it reports
/// them and recovers by itself). Any other error, fatal or not, fails the test: on loopback,
/// a load error, a parsing error or a buffer append error is a problem with the output.
/// `aborted` is hls.js cancelling its own request when the test seeks or changes subtitle
/// track while a fragment is loading: the player's doing, not the output's.
const TOLERATED_NON_FATAL: [&str; 4] = [
    "bufferStalledError",
    "bufferSeekOverHole",
    "bufferNudgeOnStall",
    "aborted",
];

fn playback_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/playback")
}

fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// What is missing for the playback test to run, if anything.
fn missing_prerequisites() -> Vec<String> {
    let mut missing = Vec::new();
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !node.is_ok_and(|s| s.success()) {
        missing.push("`node` is not on PATH".to_string());
    }
    if !chromium_path().is_file() {
        missing.push(format!(
            "Chromium is not at {} (Debian package `chromium`)",
            chromium_path().display()
        ));
    }
    for module in ["hls.js/dist/hls.js", "playwright-core/package.json"] {
        let path = playback_dir().join("node_modules").join(module);
        if !path.is_file() {
            missing.push(format!(
                "{} is missing (`npm ci --prefix tests/playback`)",
                path.display()
            ));
        }
    }
    missing
}

/// Returns false (after saying so loudly) when the test cannot run here and is not required
/// to; panics when it is required.
pub(crate) fn prerequisites_met() -> bool {
    let missing = missing_prerequisites();
    if missing.is_empty() {
        return true;
    }
    let list = missing.join("\n  - ");
    if std::env::var("TRANSCODER_REQUIRE_PLAYBACK").as_deref() == Ok("1") {
        panic!(
            "the playback test cannot run:\n  - {list}\nrun `make test` (installs chromium and npm deps)"
        );
    }
    eprintln!(
        "\n{bar}\nNOTE: PLAYBACK TEST NOT RUN: the browser playback check was skipped because:\n  - {list}\n\
         run `make test` (installs chromium and npm deps), or set TRANSCODER_REQUIRE_PLAYBACK=1 to make this a failure.\n{bar}\n",
        bar = "!".repeat(90)
    );
    false
}

/// What play.mjs said about one playlist.
pub(crate) struct Played {
    pub(crate) report: Value,
    stderr: String,
    code: Option<i32>,
    elapsed: Duration,
}

impl Played {
    fn dump(&self) -> String {
        format!(
            "play.mjs exit {:?} after {:.1} s\n--- report ---\n{:#}\n--- play.mjs stderr ---\n{}\n--------------",
            self.code,
            self.elapsed.as_secs_f64(),
            self.report,
            self.stderr
        )
    }
}

/// Runs `node tests/playback/play.mjs PLAYLIST` and parses its JSON report.
async fn play(playlist: &Path) -> Played {
    play_with(playlist, &[]).await
}

/// [`play`] with more of play.mjs's options (`--cue-at SECONDS`).
pub(crate) async fn play_with(playlist: &Path, options: &[String]) -> Played {
    let started = Instant::now();
    let mut cmd = Command::new("node");
    cmd.arg(playback_dir().join("play.mjs"))
        .arg(playlist)
        .args(options)
        .arg("--timeout")
        .arg(PLAY_TIMEOUT_S.to_string())
        .arg("--chromium")
        .arg(chromium_path())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("spawn node tests/playback/play.mjs");
    let out = tokio::time::timeout(PLAY_KILL_AFTER, child.wait_with_output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "play.mjs ran past {} s although it limits itself to {PLAY_TIMEOUT_S} s, and was killed",
                PLAY_KILL_AFTER.as_secs()
            )
        })
        .expect("wait for play.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "play.mjs did not print one JSON report ({e}); exit {:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
            out.status.code()
        )
    });
    Played {
        report,
        stderr,
        code: out.status.code(),
        elapsed: started.elapsed(),
    }
}

/// The checks every playlist shares: play.mjs succeeded, hls.js raised no fatal error and no
/// error outside its own gap handling, and every level was switched to and played.
pub(crate) fn check_played(what: &str, p: &Played, expect_audio: bool) {
    let r = &p.report;
    eprintln!(
        "[playback] {what}: exit {:?} in {:.1} s; {}; levels: {}",
        p.code,
        p.elapsed.as_secs_f64(),
        r["browser"].as_str().unwrap_or("?"),
        r["levels"]
            .as_array()
            .map(|ls| ls
                .iter()
                .map(|l| format!(
                    "{}x{}@{} played={} ({} ms)",
                    l["width"], l["height"], l["bitrate"], l["played"], l["switchMs"]
                ))
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default()
    );
    if let Some(errors) = r["nonFatalErrors"].as_array().filter(|e| !e.is_empty()) {
        for e in errors {
            eprintln!(
                "[playback] {what}: non-fatal hls.js error {}/{} at {}: {} ({})",
                e["type"].as_str().unwrap_or("?"),
                e["details"].as_str().unwrap_or("?"),
                e["currentTime"],
                e["reason"].as_str().or(e["message"].as_str()).unwrap_or(""),
                e["url"].as_str().unwrap_or("")
            );
        }
    }
    assert_eq!(
        p.code,
        Some(0),
        "{what} did not play: {}\n{}",
        r["failureReasons"],
        p.dump()
    );
    assert_eq!(r["ok"], true, "{what}: report is not ok\n{}", p.dump());
    assert_eq!(
        r["fatalErrors"].as_array().map(Vec::len),
        Some(0),
        "{what}: hls.js raised fatal errors\n{}",
        p.dump()
    );
    let unexpected: Vec<&Value> = r["nonFatalErrors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| !TOLERATED_NON_FATAL.contains(&e["details"].as_str().unwrap_or_default()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{what}: hls.js raised errors that point at the output: {unexpected:#?}\n{}",
        p.dump()
    );
    let levels = r["levels"].as_array().expect("report.levels");
    assert!(!levels.is_empty(), "{what}: no levels\n{}", p.dump());
    for l in levels {
        assert_eq!(
            l["played"],
            true,
            "{what}: level {l} did not play\n{}",
            p.dump()
        );
        // A lone media playlist (the preview) carries no RESOLUTION: width/height are 0.
        if l["width"].as_u64().unwrap_or(0) > 0 {
            assert_eq!(
                (&l["videoWidth"], &l["videoHeight"]),
                (&l["width"], &l["height"]),
                "{what}: picture size after switching differs from the playlist\n{}",
                p.dump()
            );
        } else {
            assert!(
                l["videoWidth"].as_u64().unwrap_or(0) > 0,
                "{what}: no picture\n{}",
                p.dump()
            );
        }
    }
    if expect_audio {
        assert!(
            r["audioDecodedBytes"].as_u64().is_some_and(|b| b > 0),
            "{what}: the segments carry audio, but Chromium decoded none\n{}",
            p.dump()
        );
    }
    assert_eq!(
        r["http"]["failed"].as_array().map(Vec::len),
        Some(0),
        "{what}: the player asked for files that are not there\n{}",
        p.dump()
    );
}

/// The master and preview of a 14 s 1080p30 upload play in Chromium with hls.js, at every
/// quality level.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hls_output_plays_in_chromium_with_hlsjs() {
    if !prerequisites_met() {
        return;
    }
    let t0 = Instant::now();
    let h = Harness::start().await;
    let input = h.path("in/source.mp4");
    // 14 s at 6 s segments: three segments (6 + 6 + 2), so switches land mid-stream and the
    // player has to cross a segment boundary; 1080p gives all four rungs.
    make_video(&input, 1920, 1080, 14, 30).await;
    let out = h.path("out");
    let run = h
        .run(&[
            "run",
            input.to_str().unwrap(),
            "--media-type",
            "video",
            "--media-id",
            "play1",
            "--creator-id",
            "cre1",
            "--out",
            out.to_str().unwrap(),
            "--json",
            "--task-queue",
            "e2e-playback",
        ])
        .await;
    run.assert_success();
    let body = run.json();
    let t_pipeline = t0.elapsed();
    assert_eq!(body["status"], "completed", "{body:#}");
    let output = &body["output"];

    // The master: every variant it lists must be a level hls.js played.
    let master_key = output["hlsMasterPlaylistKey"]
        .as_str()
        .unwrap_or_else(|| panic!("no hlsMasterPlaylistKey: {body:#}"));
    let master_path = assert_object_exists(&out, MEDIA_BUCKET, master_key);
    let master = read_master(&master_path);
    let master_text = std::fs::read_to_string(&master_path).unwrap();
    let want: BTreeSet<(u64, u64, u64)> = master
        .variants
        .iter()
        .filter(|v| !v.is_i_frame)
        .map(|v| {
            let res = v
                .resolution
                .unwrap_or_else(|| panic!("variant {} has no RESOLUTION:\n{master_text}", v.uri));
            (res.width, res.height, v.bandwidth)
        })
        .collect();
    assert_eq!(
        want.iter().map(|v| v.1).collect::<BTreeSet<_>>(),
        BTreeSet::from([360, 480, 720, 1080]),
        "a 1080p source should get all four rungs:\n{master_text}"
    );

    let played = play(&master_path).await;
    check_played("master playlist", &played, master_text.contains("mp4a"));
    let got: BTreeSet<(u64, u64, u64)> = played.report["levels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["played"] == true)
        .map(|l| {
            (
                l["width"].as_u64().unwrap_or(0),
                l["height"].as_u64().unwrap_or(0),
                l["bitrate"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        got,
        want,
        "the levels hls.js played (width, height, bitrate) are not the master's variants:\n{master_text}\n{}",
        played.dump()
    );
    let t_master = played.elapsed;

    // The preview, when the pipeline made one: a single media playlist.
    let mut t_preview = None;
    if let Some(preview_key) = output["hlsPreviewKey"].as_str() {
        let preview_path = assert_object_exists(&out, MEDIA_BUCKET, preview_key);
        // Audio is expected in the preview exactly when its first segment carries some.
        let (preview, _) = read_media(&preview_path);
        let first = preview_path
            .parent()
            .unwrap()
            .join(&preview.segments.first().expect("preview has segments").uri);
        let probe = ffprobe(&first)
            .await
            .unwrap_or_else(|e| panic!("preview segment: {e}"));
        let has_audio = !streams(&probe, "audio").is_empty();
        let played = play(&preview_path).await;
        check_played("preview playlist", &played, has_audio);
        t_preview = Some(played.elapsed);
    } else {
        eprintln!("[playback] no hlsPreviewKey in the output: nothing to play for the preview");
    }

    eprintln!(
        "[playback] timings: pipeline {:.1} s, master playback {:.1} s, preview playback {}, total {:.1} s",
        t_pipeline.as_secs_f64(),
        t_master.as_secs_f64(),
        t_preview.map_or("-".to_string(), |t| format!("{:.1} s", t.as_secs_f64())),
        t0.elapsed().as_secs_f64()
    );
}
