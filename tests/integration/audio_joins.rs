//! Sound made in chunks joins as one run would make it. A video job cut into 6 s chunks, from
//! a source that is hard on joins (44.1 kHz, a tone that starts late and stops early, so the
//! chunks resample, pad and cut), delivers: no gap and no click at any join, in the audio
//! rendition and in the mezzanine; every sample of the timeline; the loudness target. An
//! audio job cut the same way gives the same checks on its ladder and a whole waveform.

use crate::common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;

const SECONDS: f64 = 30.0;
/// The tone: 440 Hz, from 1.3 s to 27.5 s.
const TONE_START: f64 = 1.3;
const TONE_END: f64 = 27.5;

fn job(media: &str, media_type: &str, hook: &WebhookReceiver) -> Value {
    json!({
        "mediaId": media,
        "creatorId": "c1",
        "mediaType": media_type,
        "inputBucket": ARCHIVE_BUCKET,
        "inputKey": format!("originals/c1/{media}/original.mp4"),
        "outputBucket": MEDIA_BUCKET,
        "outputPrefix": format!("c1/hls/{media}"),
        "assetsBucket": ASSETS_BUCKET,
        "webhookUrl": hook.url(),
        "webhookSecret": hook.secret,
        "segmentsPerChunk": 1,
    })
}

/// Runs `payload` on `input` and returns the webhook body.
async fn transcode(h: &Harness, payload: &Value, input: &Path, hook: &WebhookReceiver) -> Value {
    let file = h.path(&format!("{}.json", payload["mediaId"].as_str().unwrap()));
    std::fs::write(&file, serde_json::to_vec(payload).unwrap()).unwrap();
    let run = h
        .run(&[
            "run",
            "--job",
            s(&file),
            s(input),
            "--out",
            s(&h.path("out")),
            "--json",
        ])
        .await;
    run.assert_success();
    let body = run.json();
    assert_eq!(hook.expect_one_valid().await, body, "{}", run.dump());
    assert_eq!(body["status"], "completed", "{body:#}");
    body
}

/// Decoded mono samples (48 kHz, f32) of the first audio stream of `path` (a file or one of
/// our playlists), from the start of its stream.
async fn samples(path: &Path) -> Vec<f32> {
    let out = tokio::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args([
            "-map", "0:a:0", "-ac", "1", "-ar", "48000", "-f", "f32le", "-",
        ])
        .output()
        .await
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Level (dB relative to the tone) of what is not the 440 Hz tone in `x` around `at`: the
/// tone removed by fitting it (least squares, sine and cosine) over the window. A click, a
/// gap or a slip of a sample at a join shows as a residue tens of dB over coding noise.
fn residue(x: &[f32], at: usize) -> f64 {
    let span = at.saturating_sub(2048)..(at + 2048).min(x.len());
    let w = 2.0 * std::f64::consts::PI * 440.0 / 48_000.0;
    let (mut ss, mut cc, mut sc, mut xs, mut xc) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for i in span.clone() {
        let (s, c) = ((w * i as f64).sin(), (w * i as f64).cos());
        let v = f64::from(x[i]);
        ss += s * s;
        cc += c * c;
        sc += s * c;
        xs += v * s;
        xc += v * c;
    }
    let det = ss * cc - sc * sc;
    let a = (xs * cc - xc * sc) / det;
    let b = (xc * ss - xs * sc) / det;
    let (mut rest, mut tone) = (0.0, 0.0);
    for i in span {
        let fit = a * (w * i as f64).sin() + b * (w * i as f64).cos();
        rest += (f64::from(x[i]) - fit).powi(2);
        tone += fit * fit;
    }
    10.0 * (rest / tone).log10()
}

/// Every chunk join (6 s apart) inside the tone is as clean as the tone away from joins.
fn assert_no_seams(x: &[f32], offset: usize, what: &str) {
    let at = |t: f64| (t * 48_000.0) as usize + offset;
    let joins: Vec<f64> = (1..5).map(|k| f64::from(k) * 6.0).collect();
    let elsewhere: Vec<f64> = (0..40)
        .map(|i| 3.0 + f64::from(i) * 0.6)
        .filter(|t| *t < TONE_END - 1.0 && joins.iter().all(|j| (t - j).abs() > 0.5))
        .map(|t| residue(x, at(t)))
        .collect();
    let typical = elsewhere.iter().copied().fold(f64::MIN, f64::max);
    for j in joins {
        let r = residue(x, at(j));
        assert!(
            r < typical + 3.0,
            "{what}: the join at {j} s leaves {r:.1} dB beside the tone, {typical:.1} dB elsewhere"
        );
    }
    assert!(
        typical < -30.0,
        "{what}: the tone is buried in {typical:.1} dB of noise"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sound_in_chunks_has_no_seams() {
    let h = Harness::start().await;
    let out = h.path("out");
    let hook = WebhookReceiver::start("whsec-seams");
    let input = h.path("in/seams.mp4");
    make_sources(
        &input,
        &format!("testsrc2=size=320x180:rate=25:duration={SECONDS}"),
        &format!(
            "sine=frequency=440:sample_rate=44100:duration={}",
            TONE_END - TONE_START
        ),
        TONE_START,
        &["-metadata:s:a:0", "language=fre"],
    )
    .await;

    // A video job: five chunks.
    let body = transcode(&h, &job("seams", "video", &hook), &input, &hook).await;
    let loudness = &body["output"]["loudness"];
    let integrated = loudness["integrated"].as_i64().expect("loudness measured");
    assert!(
        (-1650..=-1550).contains(&integrated),
        "delivered loudness {integrated} (x100 LUFS): {loudness}"
    );

    // The track is tagged `fre` (ISO 639-2/B): HLS gets the RFC 5646 `fr`, and a name.
    let master = read_master(&object_path(&out, MEDIA_BUCKET, "c1/hls/seams/master.m3u8"));
    let audio = &master.alternatives[0];
    assert_eq!(
        (audio.language.as_deref(), audio.name.as_str()),
        (Some("fr"), "French")
    );
    let rendition = object_path(&out, MEDIA_BUCKET, "c1/hls/seams/audio/playlist.m3u8");
    let delivered = samples(&rendition).await;
    // The rendition starts with the encoder's priming frame (MPEG-TS cannot say to skip it).
    assert_no_seams(&delivered, 1024, "audio rendition");
    let silent = silences(&rendition).await;
    assert!(
        matches!(silent.as_slice(),
            [(a, Some(b)), (c, _)]
            if *a < 0.1 && (b - TONE_START).abs() < 0.1 && (c - TONE_END).abs() < 0.1),
        "silence only before and after the tone: {silent:?}"
    );

    let mezzanine = object_path(&out, ARCHIVE_BUCKET, "mezzanine/c1/seams/mezzanine.mp4");
    // The MP4 says it holds every sample of the timeline and no more (its edit list skips
    // the priming frame; the last packet lasts to the end), as a track encoded in one run
    // says.
    let probe = ffprobe(&mezzanine).await.expect("ffprobe the mezzanine");
    let audio = streams(&probe, "audio");
    assert_eq!(audio[0]["duration_ts"], json!(1_440_000), "{probe:#}");
    assert_eq!(audio[0]["start_time"], json!("0.000000"), "{probe:#}");
    assert_no_seams(&samples(&mezzanine).await, 0, "mezzanine");
    // The pieces and the meter readings were steps on the way.
    let pieces = object_path(
        &out,
        ARCHIVE_BUCKET,
        "mezzanine/c1/seams/mezzanine.mp4.pieces",
    );
    assert!(walk(&pieces).is_empty(), "left behind: {:?}", walk(&pieces));

    // An audio job of the same sound: its ladder and its waveform.
    let audio_input = h.path("in/seams-audio.m4a");
    ffmpeg(&[
        "-i".into(),
        s(&input).into(),
        "-map".into(),
        "0:a".into(),
        "-c".into(),
        "copy".into(),
        s(&audio_input).into(),
    ])
    .await;
    let hook = WebhookReceiver::start("whsec-seams-a");
    let mut payload = job("seams-a", "audio", &hook);
    payload["inputKey"] = json!("originals/c1/seams-a/original.m4a");
    let body = transcode(&h, &payload, &audio_input, &hook).await;
    // The tone alone: 26.2 s from its first sample.
    let duration = body["output"]["durationSeconds"]
        .as_f64()
        .expect("duration");
    assert!(
        (duration - (TONE_END - TONE_START)).abs() < 0.05,
        "{body:#}"
    );
    for rung in ["128k", "64k"] {
        let playlist = object_path(
            &out,
            MEDIA_BUCKET,
            &format!("c1/hls/seams-a/{rung}/playlist.m3u8"),
        );
        assert_no_seams(&samples(&playlist).await, 1024, rung);
    }
    let waveform = object_path(
        &out,
        ASSETS_BUCKET,
        body["output"]["waveformKey"].as_str().expect("waveformKey"),
    );
    let doc: Value = serde_json::from_slice(&std::fs::read(&waveform).unwrap()).unwrap();
    let data: Vec<i64> = doc["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(
        doc["length"],
        json!((duration * 10.0).ceil() as u64),
        "10 points a second"
    );
    // The tone's level, the same through every join.
    let level = |i: usize| data[2 * i + 1] - data[2 * i];
    let loud: Vec<i64> = (2..258).map(level).collect();
    let (low, high) = (loud.iter().min().unwrap(), loud.iter().max().unwrap());
    assert!(
        *low > 20 && high - low <= 2,
        "the tone's waveform dips or jumps: {low}..{high}"
    );
    let mezzanine = object_path(&out, ARCHIVE_BUCKET, "mezzanine/c1/seams-a/mezzanine.mp4");
    assert_no_seams(&samples(&mezzanine).await, 0, "audio mezzanine");
}
