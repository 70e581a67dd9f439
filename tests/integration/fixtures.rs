//! `fixtures/` holds what its README says, small enough to stay in git: the media decode as
//! described, the payloads validate (and the bad one fails on each field it is meant to),
//! and the RunPod test input wraps the video payload. The end-to-end tests, the RunPod
//! `test_input.json` test and `make demo` run these same files.

use crate::common::*;
use serde_json::Value;
use transcoder_workflows::JobInput;

/// The README's promise: fixtures stay under 2 MB in all.
const MAX_FIXTURE_BYTES: u64 = 2 * 1024 * 1024;

fn total_size(dir: &std::path::Path) -> u64 {
    walk(dir)
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

fn payload(rel: &str) -> JobInput {
    serde_json::from_value(fixture_json(rel))
        .unwrap_or_else(|e| panic!("{rel} is not a media-api payload: {e}"))
}

fn number(v: &Value) -> f64 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| v.as_f64())
        .unwrap_or(f64::NAN)
}

#[tokio::test]
async fn fixtures_are_small_and_as_described() {
    let size = total_size(&fixture(""));
    assert!(
        size < MAX_FIXTURE_BYTES,
        "fixtures/ holds {size} bytes, over {MAX_FIXTURE_BYTES}"
    );

    // The video: 8 s of 1920x1080 H.264 at 30 fps, stereo AAC at 48 kHz, faststart.
    let probe = ffprobe(&fixture("media/video.mp4"))
        .await
        .expect("video.mp4 probes");
    let video = streams(&probe, "video");
    let audio = streams(&probe, "audio");
    assert_eq!((video.len(), audio.len()), (1, 1), "{probe:#}");
    assert_eq!(video[0]["codec_name"], "h264");
    assert_eq!(
        (video[0]["width"].as_u64(), video[0]["height"].as_u64()),
        (Some(1920), Some(1080))
    );
    assert_eq!(video[0]["r_frame_rate"], "30/1");
    assert_eq!(audio[0]["codec_name"], "aac");
    assert_eq!(audio[0]["channels"], 2);
    assert_eq!(audio[0]["sample_rate"], "48000");
    assert!(
        (number(&probe["format"]["duration"]) - 8.0).abs() < 0.1,
        "{probe:#}"
    );

    // The audio: about 6 s of stereo MP3 at 44.1 kHz, no picture.
    let probe = ffprobe(&fixture("media/audio.mp3"))
        .await
        .expect("audio.mp3 probes");
    let audio = streams(&probe, "audio");
    assert!(streams(&probe, "video").is_empty(), "{probe:#}");
    assert_eq!(audio.len(), 1, "{probe:#}");
    assert_eq!(audio[0]["codec_name"], "mp3");
    assert_eq!(audio[0]["channels"], 2);
    assert_eq!(audio[0]["sample_rate"], "44100");
    assert!(
        (number(&probe["format"]["duration"]) - 6.0).abs() < 0.2,
        "{probe:#}"
    );
}

#[test]
fn fixture_payloads_validate_as_described() {
    for (rel, media_type, ext) in [
        ("jobs/video.json", "video", "mp4"),
        ("jobs/audio.json", "audio", "mp3"),
    ] {
        let job = payload(rel)
            .validate()
            .unwrap_or_else(|e| panic!("{rel} does not validate: {e}"));
        assert_eq!(job.media_type.as_str(), media_type, "{rel}");
        assert!(
            job.input_key.ends_with(&format!("original.{ext}")),
            "{rel}: {}",
            job.input_key
        );
    }

    let problems = payload("jobs/invalid.json")
        .validate()
        .expect_err("jobs/invalid.json validates")
        .problems;
    for field in ["inputKey", "mediaType", "outputPrefix", "segmentsPerChunk"] {
        assert!(
            problems.iter().any(|p| p.starts_with(field)),
            "jobs/invalid.json should fail on {field}: {problems:?}"
        );
    }
    // Its webhook is usable, so the rejection is reported there too.
    assert!(payload("jobs/invalid.json").usable_webhook().is_some());

    let test_input = fixture_json("runpod/test_input.json");
    assert_eq!(test_input["input"], fixture_json("jobs/video.json"));
    assert!(test_input["id"].is_string(), "{test_input:#}");
}
