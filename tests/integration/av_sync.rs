//! Picture and sound stay together as a player decodes them. A source with a white flash and
//! a beep at the same instants (one in each of three chunks) goes through a video job, in 6 s
//! chunks and in one run; in the
//! ladder (a video variant and the separate audio rendition, aligned by their PTS as a
//! player aligns them) and in the preview (one muxed playlist), each flash and its beep are
//! at most one AAC frame (1024 samples at 48 kHz) apart.

use crate::common;

use common::*;
use serde_json::json;
use std::path::Path;

const SECONDS: f64 = 20.0;
/// The instants of the flashes and beeps: inside the first, second and third 6 s chunk.
const EVENTS: [f64; 3] = [1.0, 7.0, 13.52];
/// One AAC frame at 48 kHz.
const AUDIO_FRAME: f64 = 1024.0 / 48_000.0;

/// Times (PTS, seconds, as the file says) at which the picture turns white, from
/// `showinfo`'s per-frame mean luma, with `-copyts` so no timestamp is shifted.
async fn flashes(path: &Path) -> Vec<f64> {
    let out = tokio::process::Command::new("ffmpeg")
        .args(["-v", "info", "-copyts", "-i"])
        .arg(path)
        .args(["-map", "0:v:0", "-vf", "showinfo", "-f", "null", "-"])
        .output()
        .await
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stderr);
    let mut found = Vec::new();
    let mut was_white = false;
    for line in text.lines().filter(|l| l.contains("pts_time:")) {
        let field = |name: &str| {
            let at = line.find(name)? + name.len();
            line[at..].split_whitespace().next().map(str::to_string)
        };
        let pts: f64 = field("pts_time:").and_then(|v| v.parse().ok()).unwrap();
        let mean = line
            .split("mean:[")
            .nth(1)
            .and_then(|m| m.split_whitespace().next())
            .and_then(|y| y.parse::<f64>().ok())
            .unwrap_or(0.0);
        let white = mean > 128.0;
        if white && !was_white {
            found.push(pts);
        }
        was_white = white;
    }
    found
}

/// Times (PTS, seconds) at which a beep starts: each decoded audio frame placed at its own
/// PTS, as a player schedules it, and the first sample over -20 dBFS after silence.
async fn beeps(path: &Path) -> Vec<f64> {
    let frames = ffprobe_json(&[
        "-of",
        "json",
        "-select_streams",
        "a:0",
        "-show_entries",
        "frame=pts_time,nb_samples",
        s(path),
    ])
    .await
    .expect("ffprobe reads the audio");
    let frames: Vec<(f64, usize)> = frames["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| {
            (
                f["pts_time"].as_str().unwrap().parse().unwrap(),
                f["nb_samples"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    let out = tokio::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:a:0", "-ac", "1", "-f", "f32le", "-"])
        .output()
        .await
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<f32> = out
        .stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let total: usize = frames.iter().map(|f| f.1).sum();
    assert_eq!(total, samples.len(), "decoded samples and frames disagree");
    let mut found = Vec::new();
    let (mut index, mut quiet_for) = (0usize, usize::MAX);
    for (pts, n) in frames {
        for k in 0..n {
            let loud = samples[index + k].abs() > 0.1;
            if loud && quiet_for > 4_800 {
                found.push(pts + k as f64 / 48_000.0);
            }
            quiet_for = if loud { 0 } else { quiet_for.saturating_add(1) };
        }
        index += n;
    }
    found
}

fn assert_together(flashes: &[f64], beeps: &[f64], what: &str) {
    assert_eq!(
        flashes.len(),
        EVENTS.len(),
        "{what}: flashes at {flashes:?}"
    );
    assert_eq!(beeps.len(), EVENTS.len(), "{what}: beeps at {beeps:?}");
    for (f, b) in flashes.iter().zip(beeps) {
        assert!(
            (f - b).abs() <= AUDIO_FRAME,
            "{what}: a flash at {f:.4} s and its beep at {b:.4} s are {:.1} ms apart \
             (flashes {flashes:?}, beeps {beeps:?})",
            (f - b) * 1000.0
        );
    }
}

/// Chunks of 6 s: the sound is made in chunks beside the picture's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flash_and_its_beep_stay_together_in_chunks() {
    flash_and_beep_together(Some(1)).await;
}

/// One chunk (the default 60 s chunks): the sound is made in one run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flash_and_its_beep_stay_together_in_one_run() {
    flash_and_beep_together(None).await;
}

async fn flash_and_beep_together(segments_per_chunk: Option<u32>) {
    let h = Harness::start().await;
    let out = h.path("out");
    let hook = WebhookReceiver::start("whsec-av-sync");
    let input = h.path("in/sync.mp4");
    let during = |t: f64, length: f64| format!("between(t,{t},{})", t + length);
    let white = EVENTS
        .iter()
        .map(|t| during(*t, 0.039))
        .collect::<Vec<_>>()
        .join("+");
    let loud = EVENTS
        .iter()
        .map(|t| during(*t, 0.1))
        .collect::<Vec<_>>()
        .join("+");
    make_sources(
        &input,
        &format!(
            "color=c=black:s=320x180:r=25:d={SECONDS},\
             drawbox=x=0:y=0:w=iw:h=ih:color=white:t=fill:enable='{white}'"
        ),
        &format!("aevalsrc='if({loud},0.5*sin(2*PI*1000*t),0)':s=48000:d={SECONDS}"),
        0.0,
        &[],
    )
    .await;
    // The source itself has them together.
    assert_together(&flashes(&input).await, &beeps(&input).await, "the source");

    let mut payload = json!({
        "mediaId": "sync",
        "creatorId": "c1",
        "mediaType": "video",
        "inputBucket": ARCHIVE_BUCKET,
        "inputKey": "originals/c1/sync/original.mp4",
        "outputBucket": MEDIA_BUCKET,
        "outputPrefix": "c1/hls/sync",
        "assetsBucket": ASSETS_BUCKET,
        "webhookUrl": hook.url(),
        "webhookSecret": hook.secret,
    });
    if let Some(n) = segments_per_chunk {
        payload["segmentsPerChunk"] = json!(n);
    }
    let file = h.path("sync.json");
    std::fs::write(&file, serde_json::to_vec(&payload).unwrap()).unwrap();
    let run = h
        .run(&[
            "run",
            "--job",
            s(&file),
            s(&input),
            "--out",
            s(&out),
            "--json",
        ])
        .await;
    run.assert_success();
    assert_eq!(run.json()["status"], "completed", "{}", run.dump());

    let hls = |key: &str| object_path(&out, MEDIA_BUCKET, &format!("c1/hls/sync/{key}"));
    let master = read_master(&hls("master.m3u8"));
    let audio = hls(master.alternatives[0].uri.as_deref().expect("audio URI"));
    let audio_beeps = beeps(&audio).await;
    for v in master.variants.iter().filter(|v| !v.is_i_frame) {
        let picture = flashes(&hls(&v.uri)).await;
        assert_together(&picture, &audio_beeps, &format!("the ladder's {}", v.uri));
    }
    let preview = hls("preview/preview.m3u8");
    assert_together(
        &flashes(&preview).await,
        &beeps(&preview).await,
        "the preview",
    );
}
