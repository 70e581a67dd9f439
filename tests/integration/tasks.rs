//! The small media tasks of RunPod ffmpeg workers (task- and action-style payloads), end to
//! end through `transcoder task` and the RunPod local mode, against a real S3-compatible
//! server (moto), a loopback HTTP server for `http://` inputs, and a presigned PUT URL the
//! S3 server issued. Outputs are read back as a consumer would: sample counts and samples,
//! picture sizes and frame counts, pixels, correlation of sound.

use crate::common::s3::{self, S3Server};
use crate::common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const BUCKET: &str = "videos";

/// The storage settings of the RunPod workers' reference, pointed at moto: S3 for `s3://`,
/// the same server as "GCS" through HMAC keys for `gs://`, PUTs allowed to it.
fn task_env(server: &S3Server, http_port: u16) -> Vec<(String, String)> {
    let e = server.endpoint();
    let host = format!("127.0.0.1:{}", server.port);
    [
        ("S3_ENDPOINT_URL", e.as_str()),
        ("S3_REGION", "us-east-1"),
        ("S3_ADDRESSING_STYLE", "path"),
        ("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", s3::SECRET_KEY),
        ("HMAC_KEY", s3::ACCESS_KEY),
        ("HMAC_SECRET", s3::SECRET_KEY),
        ("GCS_ENDPOINT_URL", e.as_str()),
        ("OUTPUT_PUT_ALLOWED_HOSTS", host.as_str()),
        ("TRANSCODER_TASK_OUTPUTS", "videos"),
        ("TRANSCODER_TASK_INPUTS", "videos/pipelines/"),
        ("INPUT_ALLOWED_HOSTS", &format!("127.0.0.1:{http_port}")),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Serves the files of `dir` on a loopback port; the names asked for, in order, are in
/// the list it returns.
fn serve_dir(
    dir: &Path,
) -> (
    Arc<tiny_http::Server>,
    u16,
    Arc<std::sync::Mutex<Vec<String>>>,
) {
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let port = server.server_addr().to_ip().unwrap().port();
    let asked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (s, log) = (Arc::clone(&server), Arc::clone(&asked));
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        while let Ok(request) = s.recv() {
            let name = request.url().trim_start_matches('/').to_string();
            log.lock().unwrap().push(name.clone());
            let _ = match std::fs::read(dir.join(&name)) {
                Ok(bytes) if !name.contains("..") => {
                    request.respond(tiny_http::Response::from_data(bytes))
                }
                _ => request.respond(tiny_http::Response::empty(404)),
            };
        }
    });
    (server, port, asked)
}

/// The `error` a failed `transcoder task` answered, after checking that it failed.
fn refusal(out: &CmdOutput) -> String {
    out.assert_failure();
    out.json()["error"].as_str().unwrap_or_default().to_string()
}

async fn put(server: &S3Server, key: &str, path: &Path) {
    server
        .client()
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(std::fs::read(path).unwrap().into())
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
}

async fn fetch(server: &S3Server, key: &str, dest: &Path) {
    let bytes = s3::get_bytes(&server.client(), BUCKET, key).await;
    std::fs::write(dest, bytes).unwrap();
}

/// The decoded sound of `path` as raw samples in `format` (`s16le`, `f32le`), after
/// `extra` output options.
async fn samples(path: &Path, format: &str, extra: &[&str]) -> Vec<u8> {
    let mut cmd = tokio::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(path)
        .args(["-map", "0:a:0"])
        .args(extra)
        .args(["-f", format, "-"]);
    let out = cmd.output().await.expect("run ffmpeg");
    assert!(
        out.status.success(),
        "decoding {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Mono 16 kHz float samples of the first `seconds`.
async fn mono(path: &Path, seconds: f64) -> Vec<f32> {
    mono_from(path, 0.0, seconds).await
}

/// Mono 16 kHz float samples of `seconds` from `start`.
async fn mono_from(path: &Path, start: f64, seconds: f64) -> Vec<f32> {
    let raw = samples(
        path,
        "f32le",
        &[
            "-ss",
            &start.to_string(),
            "-ac",
            "1",
            "-ar",
            "16000",
            "-t",
            &seconds.to_string(),
        ],
    )
    .await;
    raw.chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The largest normalized cross-correlation of `a` and `b` within ±`lag` samples.
fn correlation(a: &[f32], b: &[f32], lag: i64) -> f64 {
    let mut best = 0.0f64;
    for shift in -lag..=lag {
        let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
        for (i, &x) in a.iter().enumerate() {
            let j = i as i64 + shift;
            if j < 0 || j as usize >= b.len() {
                continue;
            }
            let y = b[j as usize];
            ab += f64::from(x) * f64::from(y);
            aa += f64::from(x) * f64::from(x);
            bb += f64::from(y) * f64::from(y);
        }
        if aa > 0.0 && bb > 0.0 {
            best = best.max(ab / (aa * bb).sqrt());
        }
    }
    best
}

/// Mean absolute difference of two gray frames over rows `[y0, y1)`.
fn band_difference(a: &(u32, u32, Vec<u8>), b: &(u32, u32, Vec<u8>), y0: u32, y1: u32) -> f64 {
    let w = a.0 as usize;
    let (from, to) = (y0 as usize * w, y1 as usize * w);
    let sum: f64 = a.2[from..to]
        .iter()
        .zip(&b.2[from..to])
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
        .sum();
    sum / (to - from) as f64
}

/// The frame at `seconds` of `path`, as gray pixels.
async fn frame_at(path: &Path, seconds: f64, scratch: &Path) -> (u32, u32, Vec<u8>) {
    let still = scratch.join(format!(
        "{}-{seconds}.mp4",
        path.file_stem().unwrap().to_string_lossy()
    ));
    ffmpeg_make(&[
        "-ss",
        &seconds.to_string(),
        "-i",
        s(path),
        "-frames:v",
        "1",
        "-c:v",
        "libx264",
        "-qp",
        "0",
        s(&still),
    ])
    .await;
    decode_gray_frame(&still).await
}

/// An ASS file of one bottom-centred cue from `start` to `end` (`H:MM:SS.cc`).
fn ass_with_cue(start: &str, end: &str, text: &str) -> String {
    format!(
        "[Script Info]
ScriptType: v4.00+
PlayResX: 640
PlayResY: 360

[V4+ Styles]
Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, MarginL, MarginR, MarginV, Encoding
Style: Default,Arial,40,&H00FFFFFF,&H000000FF,&H00000000,&H00000000,-1,0,0,0,100,100,0,0,1,3,0,2,10,10,30,1

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
Dialogue: 0,{start},{end},Default,,0,0,0,,{text}
"
    )
}

/// Every task of the reference through `transcoder task`, outputs read back from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_runs_through_the_cli_and_its_output_reads_back() {
    let h = Harness::start().await;
    let server = S3Server::start(&h.path("logs"));
    server.create_bucket(BUCKET).await;
    let media = h.path("media");
    std::fs::create_dir_all(&media).unwrap();
    let (_http, http_port, _) = serve_dir(&media);
    let env = task_env(&server, http_port);

    // A 44.1 kHz stereo master as AAC (staged from http) and as PCM; a 6 s 640x360 video
    // with its own sound (one noise); a 4 s voice track (another noise); an .ass file.
    let master_wav = media.join("master.wav");
    ffmpeg_make(&[
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=color=pink:seed=3:sample_rate=44100:duration=12",
        "-ac",
        "2",
        "-c:a",
        "pcm_s16le",
        s(&master_wav),
    ])
    .await;
    let master_m4a = media.join("master.m4a");
    ffmpeg_make(&[
        "-i",
        s(&master_wav),
        "-c:a",
        "aac",
        "-b:a",
        "128k",
        s(&master_m4a),
    ])
    .await;
    let video = media.join("in.mp4");
    ffmpeg_make(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=0x404040:size=640x360:rate=25:duration=6",
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=color=white:seed=11:sample_rate=48000:duration=6",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        "-shortest",
        s(&video),
    ])
    .await;
    let voice = media.join("voice.wav");
    ffmpeg_make(&[
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=color=brown:seed=5:sample_rate=48000:duration=4",
        s(&voice),
    ])
    .await;
    let ass = ass_with_cue("0:00:00.50", "0:00:05.50", "Burned in for good");
    std::fs::write(media.join("subs.ass"), ass).unwrap();
    put(&server, "pipelines/j1/inputs/audio/master.wav", &master_wav).await;
    put(&server, "pipelines/j1/inputs/video/in.mp4", &video).await;
    put(&server, "pipelines/j1/inputs/audio/voice.wav", &voice).await;
    put(
        &server,
        "pipelines/j1/inputs/subs.ass",
        &media.join("subs.ass"),
    )
    .await;

    let task = |payload: Value| {
        let env = env.clone();
        let h = &h;
        async move {
            h.run_with_env(&["task", &payload.to_string()], env.clone())
                .await
        }
    };

    // STAGE_OBJECT: an http(s) source into the bucket, byte for byte.
    let staged = task(json!({"task": "STAGE_OBJECT", "parameters": {
        "source_uri": format!("http://127.0.0.1:{http_port}/master.m4a"),
        "dest_uri": "s3://videos/pipelines/j1/inputs/audio/master.m4a"}}))
    .await;
    staged.assert_success();
    let answer = staged.json();
    assert_eq!(
        answer["dest_uri"],
        "s3://videos/pipelines/j1/inputs/audio/master.m4a",
        "{}",
        staged.dump()
    );
    let stored = s3::get_bytes(
        &server.client(),
        BUCKET,
        "pipelines/j1/inputs/audio/master.m4a",
    )
    .await;
    assert_eq!(stored, std::fs::read(&master_m4a).unwrap());
    assert_eq!(answer["size_bytes"], json!(stored.len()));

    // AUDIO_TRIM of the PCM master: exactly its samples [66150, 66150 + 99225).
    let trim = json!({"task": "AUDIO_TRIM", "parameters": {
        "source_uri": "s3://videos/pipelines/j1/inputs/audio/master.wav",
        "start_sec": 1.5, "duration_sec": 2.25,
        "output_video_uri": "s3://videos/pipelines/j1/stage/segmentation/audio_segments/segment_0.wav"}});
    let trimmed = task(trim.clone()).await;
    trimmed.assert_success();
    let answer = trimmed.json();
    assert_eq!(answer["samples"], 99_225, "{}", trimmed.dump());
    assert_eq!(answer["sample_rate"], 44_100);
    assert_eq!(answer["channels"], 2);
    let segment = h.path("segment_0.wav");
    fetch(
        &server,
        "pipelines/j1/stage/segmentation/audio_segments/segment_0.wav",
        &segment,
    )
    .await;
    let got = samples(&segment, "s16le", &[]).await;
    let all = samples(&master_wav, "s16le", &[]).await;
    let frame = 4; // 2 channels x 16 bits
    assert_eq!(
        got.len(),
        99_225 * frame,
        "the WAV holds the exact sample count"
    );
    assert!(
        got == all[66_150 * frame..(66_150 + 99_225) * frame],
        "the trimmed samples are not the master's samples from 66150"
    );
    let probe = ffprobe_json(&["-of", "json", "-show_streams", s(&segment)])
        .await
        .unwrap();
    assert_eq!(probe["streams"][0]["duration_ts"], 99_225);

    // The same task again: its stored answer, nothing runs again.
    let again = task(trim).await;
    again.assert_success();
    assert_eq!(again.json(), answer);
    assert!(
        again.stderr.contains("already completed"),
        "{}",
        again.dump()
    );

    // AUDIO_TRIM of the staged AAC to a presigned PUT URL the S3 server issued.
    let presigned = server
        .client()
        .put_object()
        .bucket(BUCKET)
        .key("put/segment_1.wav")
        .presigned(
            aws_sdk_s3::presigning::PresigningConfig::expires_in(std::time::Duration::from_secs(
                900,
            ))
            .unwrap(),
        )
        .await
        .unwrap()
        .uri()
        .to_string();
    let put_trim = task(json!({"task": "AUDIO_TRIM", "parameters": {
        "source_uri": "s3://videos/pipelines/j1/inputs/audio/master.m4a",
        "start_sec": 10, "duration_sec": 1.0, "output_put_url": presigned}}))
    .await;
    put_trim.assert_success();
    let answer = put_trim.json();
    assert_eq!(answer["verified"], "etag-md5", "{}", put_trim.dump());
    assert_eq!(answer["samples"], 44_100);
    let segment = h.path("segment_1.wav");
    fetch(&server, "put/segment_1.wav", &segment).await;
    assert_eq!(samples(&segment, "s16le", &[]).await.len(), 44_100 * 4);
    assert!(
        !put_trim.stdout.contains("X-Amz-Signature")
            && !put_trim.stderr.contains("X-Amz-Signature"),
        "the PUT URL's signature was shown\n{}",
        put_trim.dump()
    );

    // A trim past the end is refused, naming the parameter, and writes nothing.
    let past = task(json!({"task": "AUDIO_TRIM", "parameters": {
        "source_uri": "s3://videos/pipelines/j1/inputs/audio/master.wav",
        "start_sec": 11, "duration_sec": 2,
        "output_video_uri": "s3://videos/past.wav"}}))
    .await;
    let error = refusal(&past);
    assert!(
        error.contains("parameters.duration_sec") && error.contains("past the end"),
        "{}",
        past.dump()
    );
    assert!(!s3::list_keys(&server.client(), BUCKET)
        .await
        .contains(&"past.wav".to_string()));

    // An output outside TRANSCODER_TASK_OUTPUTS is refused before any work.
    let elsewhere = task(json!({"task": "AUDIO_TRIM", "parameters": {
        "source_uri": "s3://videos/pipelines/j1/inputs/audio/master.wav",
        "start_sec": 0, "duration_sec": 1,
        "output_video_uri": "s3://archive/stolen.wav"}}))
    .await;
    let error = refusal(&elsewhere);
    assert!(
        error.contains("parameters.output_video_uri") && error.contains("outside the places"),
        "{}",
        elsewhere.dump()
    );

    // So is an input outside TRANSCODER_TASK_INPUTS.
    let outside =
        task(json!({"action": "probe", "data": {"input": "s3://videos/private/other.mp4"}})).await;
    let error = refusal(&outside);
    assert!(
        error.contains("data.input") && error.contains("outside the places tasks may read"),
        "{}",
        outside.dump()
    );

    // DOWNSAMPLING from gs:// (HMAC keys under the reference's names): 360p of a 360p
    // source is its own size; 240 keeps the aspect, even, every frame.
    for (resolution, width, height, refused) in [
        (json!("360p"), 640, 360, false),
        (json!(240), 426, 240, false),
        (json!("480"), 640, 360, true),
    ] {
        let key = format!("out/{height}-{refused}.mp4");
        let out = task(json!({"task": "DOWNSAMPLING", "parameters": {
            "original_video_uri": "gs://videos/pipelines/j1/inputs/video/in.mp4",
            "output_video_uri": format!("s3://videos/{key}"),
            "resolution": resolution}}))
        .await;
        out.assert_success();
        let answer = out.json();
        assert_eq!(answer["upscale_refused"], refused, "{}", out.dump());
        let file = h.path("downsampled.mp4");
        fetch(&server, &key, &file).await;
        let packets = ffprobe_packets(&file, "v:0").await;
        assert_eq!(packets.len(), 150, "every frame of 6 s at 25 fps");
        let probe = ffprobe_json(&["-of", "json", "-show_streams", s(&file)])
            .await
            .unwrap();
        let v = &probe["streams"][0];
        assert_eq!(
            (v["width"].as_u64(), v["height"].as_u64()),
            (Some(width), Some(height))
        );
    }

    // DOWNSAMPLING of 10-bit PQ (HDR) video: tone mapped to 8-bit SDR BT.709, tagged so,
    // as the transcode's pictures are, not 8-bit samples still tagged PQ.
    let hdr = media.join("hdr.mp4");
    make_hdr_video(&hdr, "640x360:rate=25:duration=2", "smpte2084", false).await;
    put(&server, "pipelines/j1/inputs/video/hdr.mp4", &hdr).await;
    let out = task(json!({"task": "DOWNSAMPLING", "parameters": {
        "original_video_uri": "s3://videos/pipelines/j1/inputs/video/hdr.mp4",
        "output_video_uri": "s3://videos/out/hdr-240.mp4", "resolution": 240}}))
    .await;
    out.assert_success();
    let sdr = h.path("hdr-240.mp4");
    fetch(&server, "out/hdr-240.mp4", &sdr).await;
    let probe = ffprobe_json(&["-of", "json", "-show_streams", s(&sdr)])
        .await
        .unwrap();
    let v = &probe["streams"][0];
    assert_eq!(
        (
            v["pix_fmt"].as_str(),
            v["color_transfer"].as_str(),
            v["color_primaries"].as_str()
        ),
        (Some("yuv420p"), Some("bt709"), Some("bt709")),
        "{v}"
    );

    // ENCODING: the voice replaces the video's sound (padded to the video's 6 s), and the
    // subtitles are drawn only when asked.
    let export = |burn: bool, name: &str| {
        json!({"task": "ENCODING", "parameters": {
            "id": format!("export-{name}"), "language": "en", "subtitles": burn,
            "input_video_uri": "s3://videos/pipelines/j1/inputs/video/in.mp4",
            "input_audio_uri": "s3://videos/pipelines/j1/inputs/audio/voice.wav",
            "subtitles_uri": "s3://videos/pipelines/j1/inputs/subs.ass",
            "output_video_uri": format!("s3://videos/out/{name}.mp4")}})
    };
    let mut exports = Vec::new();
    for (burn, name) in [(true, "with-subs"), (false, "without-subs")] {
        let out = task(export(burn, name)).await;
        out.assert_success();
        let answer = out.json();
        assert_eq!(answer["subtitles_burned"], burn, "{}", out.dump());
        assert!((answer["audio_padded_sec"].as_f64().unwrap() - 2.0).abs() < 0.05);
        let file = h.path(&format!("{name}.mp4"));
        fetch(&server, &format!("out/{name}.mp4"), &file).await;
        let probe = ffprobe_json(&["-of", "json", "-show_streams", "-show_format", s(&file)])
            .await
            .unwrap();
        let duration: f64 = probe["format"]["duration"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            (duration - 6.0).abs() < 0.1,
            "the export lasts {duration} s"
        );
        assert_eq!(probe["streams"][1]["tags"]["language"], "eng");
        exports.push(file);
    }
    let with = frame_at(&exports[0], 3.0, &h.path("")).await;
    let without = frame_at(&exports[1], 3.0, &h.path("")).await;
    let bottom = band_difference(&with, &without, 270, 360);
    let top = band_difference(&with, &without, 0, 200);
    eprintln!("subtitle band difference: bottom {bottom:.1}, top {top:.2} (of 255)");
    assert!(
        bottom > 8.0 && top < 2.0,
        "subtitle pixels: bottom band differs by {bottom:.1}, top by {top:.1}"
    );
    // The sound is the voice, not the video's own.
    let exported = mono(&exports[1], 3.5).await;
    let given = mono(&voice, 3.5).await;
    let own = mono(&video, 3.5).await;
    let with_voice = correlation(&exported, &given, 32);
    let with_own = correlation(&exported, &own, 32);
    eprintln!(
        "correlation with the given sound {with_voice:.3}, with the video's own {with_own:.3}"
    );
    assert!(
        with_voice > 0.9 && with_own < 0.2,
        "correlation with the given sound {with_voice:.2}, with the video's own {with_own:.2}"
    );
    // Padded with silence after the voice ends.
    let tail = samples(&exports[1], "s16le", &["-ss", "4.3", "-ac", "1"]).await;
    let peak = tail
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]).unsigned_abs())
        .max()
        .unwrap_or(0);
    assert!(peak < 64, "the padding is not silent (peak {peak})");

    // vmaf: the video against itself scores near 100; against a smaller, coarser copy at
    // half the frame rate (scaled and resampled to the reference, as VMAF users do) lower,
    // with per-frame scores written where asked.
    let textured = media.join("textured.mp4");
    ffmpeg_make(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=25:duration=6",
        "-c:v",
        "libx264",
        "-crf",
        "16",
        s(&textured),
    ])
    .await;
    put(&server, "pipelines/j1/inputs/video/textured.mp4", &textured).await;
    let degraded = media.join("degraded.mp4");
    ffmpeg_make(&[
        "-i",
        s(&textured),
        "-vf",
        "scale=320:180,fps=12.5",
        "-c:v",
        "libx264",
        "-crf",
        "45",
        "-an",
        s(&degraded),
    ])
    .await;
    put(&server, "pipelines/j1/stage/degraded.mp4", &degraded).await;
    let vmaf = |distorted: &str, output: Option<&str>| {
        let mut data = json!({"input1": "s3://videos/pipelines/j1/inputs/video/textured.mp4",
            "input2": format!("s3://videos/pipelines/j1/{distorted}")});
        if let Some(out) = output {
            data["output"] = json!(out);
        }
        task(json!({"action": "vmaf", "data": data}))
    };
    let same = vmaf(
        "inputs/video/textured.mp4",
        Some("s3://videos/pipelines/j1/stage/vmaf.json"),
    )
    .await;
    same.assert_success();
    let same = same.json()["result"].clone();
    let worse = vmaf("stage/degraded.mp4", None).await;
    worse.assert_success();
    let worse = worse.json()["result"].clone();
    eprintln!(
        "VMAF: itself {}, degraded copy {}",
        same["vmaf"], worse["vmaf"]
    );
    assert!(same["vmaf"].as_f64().unwrap() > 97.0, "{same}");
    assert!(
        worse["vmaf"].as_f64().unwrap() < same["vmaf"].as_f64().unwrap() - 15.0,
        "{worse}"
    );
    assert_eq!(worse["distorted_scaled"], true);
    assert_eq!(worse["distorted_resampled"], true);
    assert_eq!(worse["frames"], 150, "{worse}");
    let log: Value = serde_json::from_slice(
        &s3::get_bytes(&server.client(), BUCKET, "pipelines/j1/stage/vmaf.json").await,
    )
    .unwrap();
    assert_eq!(log["frames"].as_array().unwrap().len(), 150);
    assert!(log["frames"][10]["metrics"]["vmaf"].as_f64().unwrap() > 95.0);
    assert_eq!(
        (same["model"].as_str(), same["bit_depth"].as_u64()),
        (Some("vmaf_v0.6.1"), Some(8))
    );

    // A 10-bit reference is scored in 10 bits, with the model the payload names.
    let deep = media.join("deep.mkv");
    ffmpeg_make(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=640x360:rate=25:duration=2",
        "-pix_fmt",
        "yuv420p10le",
        "-c:v",
        "ffv1",
        s(&deep),
    ])
    .await;
    put(&server, "pipelines/j1/inputs/video/deep.mkv", &deep).await;
    let deep_vmaf = |distorted: &str, model: &str| {
        task(json!({"action": "vmaf", "data": {
            "input1": "s3://videos/pipelines/j1/inputs/video/deep.mkv",
            "input2": format!("s3://videos/pipelines/j1/{distorted}"), "model": model}}))
    };
    let itself = deep_vmaf("inputs/video/deep.mkv", "vmaf_v0.6.1neg").await;
    itself.assert_success();
    let itself = itself.json()["result"].clone();
    assert_eq!(itself["bit_depth"], 10, "{itself}");
    assert_eq!(itself["model"], "vmaf_v0.6.1neg");
    assert_eq!(itself["frames"], 50);
    assert!(itself["vmaf"].as_f64().unwrap() > 97.0, "{itself}");
    let coarse = deep_vmaf("stage/degraded.mp4", "vmaf_v0.6.1neg").await;
    coarse.assert_success();
    let coarse = coarse.json()["result"].clone();
    eprintln!(
        "VMAF 10-bit: itself {}, degraded 8-bit copy {}",
        itself["vmaf"], coarse["vmaf"]
    );
    assert!(
        coarse["vmaf"].as_f64().unwrap() < itself["vmaf"].as_f64().unwrap() - 15.0,
        "{coarse}"
    );
    let unknown = deep_vmaf("stage/degraded.mp4", "my_model.json").await;
    assert!(
        refusal(&unknown).contains("data.model"),
        "{}",
        unknown.dump()
    );

    // ENCODING in the legacy form: gs://{bucket}/{bucket_parent_folder}/{input_video_name}
    // in, {bucket_parent_folder}/{name} out in the same bucket, the video's own sound kept.
    put(&server, "pipelines/j1/legacy/raw.mp4", &video).await;
    let legacy = task(json!({"task": "ENCODING", "parameters": {
        "id": "legacy-1", "language": "fr", "subtitles": false, "name": "final.mp4",
        "input_video_name": "raw.mp4", "bucket": "videos",
        "bucket_parent_folder": "pipelines/j1/legacy/"}}))
    .await;
    legacy.assert_success();
    assert_eq!(
        legacy.json()["output_uri"],
        "gs://videos/pipelines/j1/legacy/final.mp4",
        "{}",
        legacy.dump()
    );
    let final_file = h.path("legacy-final.mp4");
    fetch(&server, "pipelines/j1/legacy/final.mp4", &final_file).await;
    let kept = mono(&final_file, 3.5).await;
    assert!(
        correlation(&kept, &own, 32) > 0.9,
        "the legacy form keeps the video's own sound"
    );

    // probe: ffprobe's JSON and our facts, as an action's answer.
    let probed = task(json!({"action": "probe", "data": {
        "input": "s3://videos/pipelines/j1/inputs/video/in.mp4"}}))
    .await;
    probed.assert_success();
    let answer = probed.json();
    assert_eq!(answer["success"], true, "{}", probed.dump());
    assert_eq!(
        answer["result"]["ffprobe"]["streams"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(answer["result"]["facts"]["video"]["width"], 640);
    assert_eq!(
        answer["result"]["ffprobe"]["format"]["filename"],
        "s3://videos/pipelines/j1/inputs/video/in.mp4"
    );
}

/// A RunPod job carrying a task or an action: its answer is the job's output, a refusal
/// its error; and the reference's storage rules: without credentials an `s3://` input is
/// read through `R2_PUBLIC_BASE_URL`, and with neither the error says
/// `NO_PRESIGN_METHOD_AVAILABLE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runpod_jobs_carry_tasks_and_actions() {
    let h = Harness::start().await;
    let public = h.path("public");
    std::fs::create_dir_all(public.join("clips")).unwrap();
    let clip = public.join("clips/tone.wav");
    ffmpeg_make(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=500:sample_rate=22050:duration=3",
        s(&clip),
    ])
    .await;
    let (_http, port, _) = serve_dir(&public);
    // A worker whose only store is R2 for other buckets: an s3:// input elsewhere has no
    // credentials.
    let r2_only = |public_base: Option<String>| {
        let mut env = vec![
            ("R2_ACCOUNT_ID".to_string(), "0123456789abcdef".to_string()),
            ("R2_ENDPOINT_URL".into(), "http://127.0.0.1:9".into()),
            ("R2_ACCESS_KEY_ID".into(), "k".into()),
            ("R2_SECRET_ACCESS_KEY".into(), "s".into()),
            ("R2_MEDIA_BUCKET".into(), "media-only".into()),
        ];
        if let Some(base) = public_base {
            env.push(("R2_PUBLIC_BASE_URL".into(), base));
            env.push(("R2_PUBLIC_BUCKET".into(), "public-videos".into()));
        }
        env
    };
    let probe_job = json!({"input": {"action": "probe", "data": {"input": "s3://public-videos/clips/tone.wav"}}});

    let read_publicly = h
        .run_with_env(
            &["runpod", "--test_input", &probe_job.to_string()],
            r2_only(Some(format!("http://127.0.0.1:{port}"))),
        )
        .await;
    read_publicly.assert_success();
    let body = read_publicly.json();
    assert_eq!(body["output"]["success"], true, "{}", read_publicly.dump());
    assert_eq!(
        body["output"]["result"]["facts"]["audio"]["sampleRate"],
        22_050
    );

    // (Another object: the same request would get its stored answer.)
    let elsewhere = json!({"input": {"action": "probe", "data": {"input": "s3://public-videos/clips/other.wav"}}});
    let unreadable = h
        .run_with_env(
            &["runpod", "--test_input", &elsewhere.to_string()],
            r2_only(None),
        )
        .await;
    let body = unreadable.json();
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("NO_PRESIGN_METHOD_AVAILABLE") && error.contains("data.input"),
        "{}",
        unreadable.dump()
    );

    // A bad payload: every problem named, nothing started.
    let bad = json!({"input": {"task": "AUDIO_TRIM", "parameters": {
        "source_uri": "file:///etc/passwd", "start_sec": -1, "duration_sec": 2,
        "output_video_uri": "s3://x/y.wav"}}});
    let refused = h.run(&["runpod", "--test_input", &bad.to_string()]).await;
    let body = refused.json();
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("parameters.source_uri") && error.contains("parameters.start_sec"),
        "{}",
        refused.dump()
    );
    assert!(body.get("output").is_none());

    // A task job on the embedded folder store: its output is the task's answer.
    let out = h.path("out");
    std::fs::create_dir_all(out.join("local-bucket")).unwrap();
    std::fs::copy(&clip, out.join("local-bucket/tone.wav")).unwrap();
    let trim_job = json!({"input": {"task": "AUDIO_TRIM", "parameters": {
        "source_uri": "s3://local-bucket/tone.wav", "start_sec": 0.5, "duration_sec": 1,
        "output_video_uri": "s3://local-bucket/cut.wav"}}});
    let trimmed = h
        .run(&[
            "runpod",
            "--test_input",
            &trim_job.to_string(),
            "--out",
            s(&out),
        ])
        .await;
    trimmed.assert_success();
    let body = trimmed.json();
    assert_eq!(body["output"]["samples"], 22_050, "{}", trimmed.dump());
    let probe = ffprobe_json(&[
        "-of",
        "json",
        "-show_streams",
        s(&out.join("local-bucket/cut.wav")),
    ])
    .await
    .unwrap();
    assert_eq!(probe["streams"][0]["duration_ts"], 22_050);

    // RunPod's local API: a batch of trims through /runsync, and a refused action.
    let mut api = h.spawn(&[
        "runpod",
        "--serve-api",
        "--api-host",
        "127.0.0.1",
        "--api-port",
        "0",
        "--out",
        s(&out),
    ]);
    let base = api.local_api_base().await;
    let http = reqwest::Client::new();
    let batch = json!({"input": {"task": "AUDIO_TRIM", "parameters": {
        "source_uri": "s3://local-bucket/tone.wav",
        "segments": [
            {"start_sec": 0, "duration_sec": 1, "output_video_uri": "s3://local-bucket/api/0.wav"},
            {"start_sec": 1, "duration_sec": 1.5, "output_video_uri": "s3://local-bucket/api/1.wav"}]}}});
    let answer: Value = http
        .post(format!("{base}/runsync"))
        .json(&batch)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["status"], "COMPLETED", "{answer}\n{}", api.dump());
    assert_eq!(answer["output"]["done"], 2, "{answer}");
    assert_eq!(answer["output"]["segments"][1]["samples"], 33_075);
    let refused: Value = http
        .post(format!("{base}/runsync"))
        .json(&json!({"input": {"action": "transcode", "data": {}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refused["status"], "FAILED", "{refused}");
    assert!(refused["error"]
        .as_str()
        .unwrap_or_default()
        .contains("action \"transcode\" is not one of"));
    api.signal(libc::SIGTERM);
    let _ = api.wait_for_exit(std::time::Duration::from_secs(30)).await;
}

/// The OS layer on its own: `sandbox-exec` (how a worker runs a chain's ffmpeg) lets the
/// program read the system and what it is given, write only its folder, and open no
/// network socket; ffmpeg itself is stopped at `/etc/passwd` and at the network even with
/// no argument check in front.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_confines_what_it_runs() {
    let h = Harness::without_server();
    let folder = h.path("chain");
    std::fs::create_dir_all(&folder).unwrap();
    let given = h.path("given.txt");
    std::fs::write(&given, "allowed").unwrap();
    std::fs::write(h.path("secret.txt"), "secret").unwrap();
    let status = h.path("status.json");
    let confined = |program: &[&str]| {
        let mut args = vec![
            "sandbox-exec",
            "--status",
            s(&status),
            "--read",
            s(&given),
            "--write",
            s(&folder),
            "--",
        ];
        args.extend_from_slice(program);
        let owned: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let h = &h;
        async move {
            let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
            h.run(&refs).await
        }
    };
    let ok = confined(&["cat", s(&given)]).await;
    ok.assert_success();
    assert_eq!(ok.stdout, "allowed");
    let report: Value = serde_json::from_slice(&std::fs::read(&status).unwrap()).unwrap();
    assert_eq!(report["confined"], true, "{report}");
    assert!(report["landlock"].as_str().unwrap().contains("enforced"));

    for (program, what) in [
        (vec!["cat", "/etc/passwd"], "read /etc/passwd"),
        (
            vec!["cat", s(&h.path("secret.txt"))],
            "read a file it was not given",
        ),
        (
            vec![
                "sh",
                "-c",
                &format!("echo x > {}", h.path("escape.txt").display()),
            ],
            "write outside its folder",
        ),
        (
            vec![
                "ffmpeg",
                "-v",
                "error",
                "-i",
                "/etc/passwd",
                "-f",
                "null",
                "-",
            ],
            "let ffmpeg open /etc/passwd",
        ),
        (
            vec![
                "ffmpeg",
                "-v",
                "error",
                "-rw_timeout",
                "2000000",
                "-i",
                "http://127.0.0.1:9/x.mp4",
                "-f",
                "null",
                "-",
            ],
            "let ffmpeg reach the network",
        ),
    ] {
        let out = confined(&program).await;
        assert!(
            !out.status.success(),
            "the sandbox did not stop it: {what}\n{}",
            out.dump()
        );
    }
    assert!(!h.path("escape.txt").exists());
    let wrote = confined(&[
        "sh",
        "-c",
        &format!("echo y > {}/inside.txt", folder.display()),
    ])
    .await;
    wrote.assert_success();
    assert!(folder.join("inside.txt").is_file());
    // The network refusal is seccomp's: socket(2) itself fails.
    let net = confined(&[
        "python3",
        "-c",
        "import socket\ntry:\n socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n print('opened')\nexcept OSError as e:\n print('refused', e.errno)",
    ])
    .await;
    assert!(net.stdout.contains("refused 13"), "{}", net.dump());

    // No file it writes outgrows --max-file-bytes: the kernel stops it there.
    let big = folder.join("big.bin");
    let limited = h
        .run(&[
            "sandbox-exec",
            "--status",
            s(&status),
            "--write",
            s(&folder),
            "--max-file-bytes",
            "100000",
            "--",
            "sh",
            "-c",
            &format!("head -c 1000000 /dev/urandom > {}", big.display()),
        ])
        .await;
    assert!(!limited.status.success(), "{}", limited.dump());
    assert_eq!(std::fs::metadata(&big).unwrap().len(), 100_000);
    let report: Value = serde_json::from_slice(&std::fs::read(&status).unwrap()).unwrap();
    assert_eq!(
        report["file_size"], "files of at most 100000 bytes",
        "{report}"
    );
}

/// Hostile `process` chains through `transcoder task`: refused with the argument named, or
/// confined; `multi_process` runs its chains and answers in their order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_chains_are_checked_and_confined() {
    let h = Harness::start().await;
    let out = h.path("out");
    std::fs::create_dir_all(out.join("jobs")).unwrap();
    make_video(&out.join("jobs/in.mp4"), 320, 240, 3, 25).await;
    let out_arg = s(&out).to_string();
    let run = |data: Value, action: &str| {
        let payload = json!({"action": action, "data": data}).to_string();
        let out_arg = out_arg.clone();
        let h = &h;
        async move { h.run(&["task", &payload, "--out", &out_arg]).await }
    };

    let small = run(
        json!({"chainCmds": ["ffmpeg", "-i", "s3://jobs/in.mp4", "-vf", "scale=160:-2", "s3://jobs/small.mp4"],
               "output": "s3://jobs/small.mp4"}),
        "process",
    )
    .await;
    small.assert_success();
    let answer = small.json();
    assert_eq!(answer["success"], true, "{}", small.dump());
    assert_eq!(answer["result"]["sandbox"]["confined"], true);
    let probe = ffprobe_json(&[
        "-of",
        "json",
        "-show_streams",
        s(&out.join("jobs/small.mp4")),
    ])
    .await
    .unwrap();
    assert_eq!(probe["streams"][0]["width"], 160);

    let escape = h.path("escaped.mp4");
    for (chain, named) in [
        (
            json!(["ffmpeg", "-i", "/etc/passwd", "s3://jobs/o.mp4"]),
            "data.chainCmds[2]",
        ),
        (
            json!([
                "ffmpeg",
                "-f",
                "lavfi",
                "-i",
                "movie=/etc/passwd",
                "s3://jobs/o.mp4"
            ]),
            "movie filter",
        ),
        (
            json!([
                "ffmpeg",
                "-f",
                "lavfi",
                "-i",
                "amovie=/etc/passwd",
                "s3://jobs/o.mp4"
            ]),
            "amovie filter",
        ),
        (
            json!([
                "ffmpeg",
                "-i",
                "s3://jobs/in.mp4",
                "-vf",
                "subtitles=/etc/passwd",
                "s3://jobs/o.mp4"
            ]),
            "subtitles filter",
        ),
        (
            json!([
                "ffmpeg",
                "-f",
                "concat",
                "-safe",
                "0",
                "-i",
                "s3://jobs/list.txt",
                "s3://jobs/o.mp4"
            ]),
            "concat format",
        ),
        (
            json!([
                "ffmpeg",
                "-i",
                "s3://jobs/in.mp4",
                "s3://jobs/o.mp4",
                s(&escape)
            ]),
            "data.chainCmds[4]",
        ),
        (
            json!([
                "ffmpeg",
                "-i",
                "http://127.0.0.1:9/in.mp4",
                "s3://jobs/o.mp4"
            ]),
            "INPUT_ALLOWED_HOSTS",
        ),
    ] {
        let refused = run(
            json!({"chainCmds": chain, "output": "s3://jobs/o.mp4"}),
            "process",
        )
        .await;
        let error = refusal(&refused);
        assert!(
            error.contains(named),
            "{chain}: {error}\n{}",
            refused.dump()
        );
    }
    assert!(!escape.exists());
    assert!(
        !out.join("jobs/o.mp4").exists(),
        "a refused chain published an output"
    );

    // A chain that writes without end (raw video of an endless source) is stopped at the
    // largest file the worker accepts, and says so.
    let payload = json!({"action": "process", "data": {
        "chainCmds": ["ffmpeg", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
                      "-c:v", "rawvideo", "-f", "matroska", "s3://jobs/endless.mkv"],
        "output": "s3://jobs/endless.mkv"}})
    .to_string();
    let endless = h
        .run_with_env(
            &["task", &payload, "--out", &out_arg],
            [("TRANSCODER_MAX_INPUT_BYTES", "5000000")],
        )
        .await;
    let error = refusal(&endless);
    assert!(
        error.contains("5000000 bytes") && error.contains("TRANSCODER_MAX_INPUT_BYTES"),
        "{error}\n{}",
        endless.dump()
    );
    assert!(!out.join("jobs/endless.mkv").exists());

    let both = run(
        json!({"processes": [
            {"chainCmds": ["ffmpeg", "-i", "s3://jobs/in.mp4", "-t", "1", "s3://jobs/a.mp4"], "output": "s3://jobs/a.mp4"},
            {"chainCmds": ["ffmpeg", "-i", "s3://jobs/in.mp4", "-vn", "s3://jobs/b.m4a"], "output": "s3://jobs/b.m4a"}]}),
        "multi_process",
    )
    .await;
    both.assert_success();
    let answer = both.json();
    let processes = answer["result"]["processes"].as_array().unwrap();
    assert_eq!(processes[0]["output"], "s3://jobs/a.mp4", "{}", both.dump());
    assert_eq!(processes[1]["output"], "s3://jobs/b.m4a");
    assert!(out.join("jobs/a.mp4").is_file() && out.join("jobs/b.m4a").is_file());
}

/// The "segmentation" pattern: N trims of one master as one workflow, which a worker on
/// the cluster runs while its `progress` query counts the segments done; sent again, the
/// stored answer comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trim_batch_is_one_workflow_that_counts_its_segments() {
    let h = Harness::start().await;
    let out = h.path("out");
    std::fs::create_dir_all(out.join("jobs")).unwrap();
    // The master on an http server: copied into the store once, not fetched per segment.
    let served = h.path("served");
    std::fs::create_dir_all(&served).unwrap();
    let master = served.join("master.wav");
    let (_http, http_port, asked) = serve_dir(&served);
    ffmpeg_make(&[
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=color=pink:seed=9:sample_rate=48000:duration=20",
        "-ac",
        "2",
        "-c:a",
        "pcm_s24le",
        s(&master),
    ])
    .await;
    let spans: Vec<(f64, f64)> = (0..8).map(|i| (f64::from(i) * 2.4, 2.3)).collect();
    let payload = json!({"input": {"task": "AUDIO_TRIM", "parameters": {
        "source_uri": format!("http://127.0.0.1:{http_port}/master.wav"),
        "segments": spans.iter().enumerate().map(|(i, (start, length))| json!({
            "start_sec": start, "duration_sec": length,
            "output_video_uri": format!("s3://jobs/stage/segmentation/audio_segments/segment_{i}.wav")}))
            .collect::<Vec<_>>()}}});
    let file = write_job(&h, "batch.json", &payload);
    let mut worker = h.spawn_with_env(
        &["worker", "--out", s(&out)],
        &[
            ("TRANSCODER_ACTIVITY_SLOTS", "2".to_string()),
            ("INPUT_ALLOWED_HOSTS", format!("127.0.0.1:{http_port}")),
        ],
    );
    let submitted = h.run(&["submit", "--job", s(&file)]).await;
    submitted.assert_success();
    let id = submitted.stdout.trim().to_string();
    assert!(id.starts_with("task-audio_trim-"), "{}", submitted.dump());

    // Ask the running workflow how far it is until it says done.
    let mut seen = Vec::new();
    let started = std::time::Instant::now();
    loop {
        let raw = h
            .temporal_cli(&[
                "workflow",
                "query",
                "--workflow-id",
                &id,
                "--type",
                "progress",
                "--output",
                "json",
            ])
            .await;
        let answer: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
        let progress = answer["queryResult"][0].clone();
        if let Some(done) = progress["done"].as_u64() {
            assert_eq!(progress["total"], 8, "{raw}");
            seen.push(done);
        }
        if progress["state"] == "done" {
            break;
        }
        assert!(
            started.elapsed().as_secs() < 120,
            "the batch did not finish: {raw}\n{}",
            worker.dump()
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    eprintln!("segments done, as queried: {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "the count went back: {seen:?}"
    );
    assert_eq!(seen.last(), Some(&8));

    let waited = h.run(&["submit", "--job", s(&file), "--wait"]).await;
    waited.assert_success();
    let answer = waited.json();
    assert_eq!(
        (answer["done"].as_u64(), answer["total"].as_u64()),
        (Some(8), Some(8))
    );
    let all = samples(&master, "s24le", &[]).await;
    let frame = 6; // 2 channels x 24 bits
    for (i, (start, length)) in spans.iter().enumerate() {
        let segment = &answer["segments"][i];
        assert_eq!(
            segment["output_uri"],
            format!("s3://jobs/stage/segmentation/audio_segments/segment_{i}.wav"),
            "segments are answered in the payload's order"
        );
        assert_eq!(segment["sample_format"], "pcm_s24le");
        let first = (start * 48_000.0).round() as usize;
        let count = (length * 48_000.0).round() as usize;
        let got = samples(
            &out.join(format!(
                "jobs/stage/segmentation/audio_segments/segment_{i}.wav"
            )),
            "s24le",
            &[],
        )
        .await;
        assert!(
            got == all[first * frame..(first + count) * frame],
            "segment {i} is not the master's samples {first}..{}",
            first + count
        );
    }
    assert_eq!(
        *asked.lock().unwrap(),
        vec!["master.wav".to_string()],
        "the master is fetched once for all segments"
    );
    let parts = out.join("jobs/stage/segmentation/audio_segments/segment_0.wav.parts");
    assert_eq!(
        files_under(&parts),
        Vec::<std::path::PathBuf>::new(),
        "the master's copy is removed"
    );
    worker.signal(libc::SIGTERM);
    let _ = worker
        .wait_for_exit(std::time::Duration::from_secs(30))
        .await;
}

/// A long task whose worker is killed mid-encode is not lost: the next worker on the queue
/// takes the attempt at once (the dead one's scratch note hands it back) and the task's
/// answer comes as if nothing happened. (A video this short is one activity, so its encode
/// starts over; long ones are chunked, below.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_whose_worker_dies_mid_encode_finishes_on_the_next() {
    let h = Harness::start().await;
    let out = h.path("out");
    std::fs::create_dir_all(out.join("jobs")).unwrap();
    make_video(&out.join("jobs/long.mp4"), 1280, 720, 60, 30).await;
    let payload = json!({"task": "DOWNSAMPLING", "parameters": {
        "original_video_uri": "s3://jobs/long.mp4",
        "output_video_uri": "s3://jobs/long-360p.mp4", "resolution": "360p"}});
    let file = write_job(&h, "long.json", &payload);
    // A slower preset keeps the encode running long enough to be killed in the middle.
    let slow = [("TRANSCODER_X264_PRESET", "medium".to_string())];
    let mut first = h.spawn_with_env(&["worker", "--out", s(&out)], &slow);
    let submitted = h.run(&["submit", "--job", s(&file)]).await;
    submitted.assert_success();
    let id = submitted.stdout.trim().to_string();

    // Wait until the encode (not the plan before it, which may heartbeat too on a busy
    // machine) has heartbeated progress, then kill the worker outright.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let raw = h
            .temporal_cli(&[
                "workflow",
                "describe",
                "--workflow-id",
                &id,
                "--output",
                "json",
            ])
            .await;
        let described: Value = serde_json::from_str(&raw).unwrap_or(Value::Null);
        let beating = described["pendingActivities"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| {
                a["activityType"]["name"] == "task_downsample"
                    && a.get("lastHeartbeatTime").is_some()
                    && a.get("heartbeatDetails").is_some()
            });
        if beating {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the encode never started\n{raw}\n{}",
            first.dump()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    first.signal(libc::SIGKILL);
    first
        .wait_for_exit(std::time::Duration::from_secs(10))
        .await
        .expect("the first worker is gone");
    assert!(
        !out.join("jobs/long-360p.mp4").exists(),
        "no output before the task is done"
    );

    let mut second = h.spawn_with_env(&["worker", "--out", s(&out)], &slow);
    let finished = h.run(&["submit", "--job", s(&file), "--wait"]).await;
    if !finished.status.success() {
        panic!(
            "the task did not finish after the kill\n{}\n{}",
            finished.dump(),
            second.dump()
        );
    }
    let answer = finished.json();
    assert_eq!(answer["frames"], 1800, "{answer}");
    assert_eq!(
        (answer["width"].as_u64(), answer["height"].as_u64()),
        (Some(640), Some(360))
    );
    let packets = ffprobe_packets(&out.join("jobs/long-360p.mp4"), "v:0").await;
    assert_eq!(packets.len(), 1800);

    // The same workflow, its encode attempted twice (the plan before it ran once, on the
    // first worker).
    let history = h.workflow_history_json(&id).await;
    let attempts = activity_attempts(&history, "task_downsample");
    assert_eq!(
        attempts,
        [2],
        "the encode ran again on the second worker: {history}"
    );
    second.signal(libc::SIGTERM);
    let _ = second
        .wait_for_exit(std::time::Duration::from_secs(30))
        .await;
}

/// A long DOWNSAMPLING between objects of the worker's stores is made in chunks (the
/// mezzanine's pieces at the size asked, joined by stream copy); its worker killed after the
/// first piece is stored, the next worker finishes it without encoding that piece again.
/// The first stored piece under `parts` (a chunked task's `.parts` folder, whose parts
/// sit in a subfolder named by what they are made from).
fn first_piece(parts: &Path) -> Option<std::path::PathBuf> {
    std::fs::read_dir(parts)
        .ok()?
        .flatten()
        .map(|entry| entry.path().join("piece-00000.mp4"))
        .find(|piece| piece.exists())
}

/// Files left under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|entry| match entry.path().is_dir() {
            true => files_under(&entry.path()),
            false => vec![entry.path()],
        })
        .collect()
}

/// Submits the task in `file` to a worker on `out` (with `env`), kills that worker
/// (SIGKILL) once the first piece is stored under `parts`, and lets a second worker finish
/// it. Returns the answer and the workflow's history, after checking that every piece was
/// scheduled once, that the piece stored before the kill was not encoded again, and that
/// no part is left.
async fn finish_after_a_lost_worker(
    h: &Harness,
    (out, env): (&Path, &[(&str, String)]),
    file: &Path,
    parts: &Path,
    pieces: usize,
) -> (Value, Value) {
    let mut first = h.spawn_with_env(&["worker", "--out", s(out)], env);
    let submitted = h.run(&["submit", "--job", s(file)]).await;
    submitted.assert_success();
    let id = submitted.stdout.trim().to_string();
    if poll_until(Duration::from_secs(240), || first_piece(parts))
        .await
        .is_none()
    {
        panic!("no piece was stored\n{}", first.dump());
    }
    first.signal(libc::SIGKILL);
    first
        .wait_for_exit(Duration::from_secs(10))
        .await
        .expect("the first worker is gone");

    let mut second = h.spawn_with_env(&["worker", "--out", s(out)], env);
    let finished = h.run(&["submit", "--job", s(file), "--wait"]).await;
    if !finished.status.success() {
        panic!(
            "the task did not finish\n{}\n{}",
            finished.dump(),
            second.dump()
        );
    }
    let answer = finished.json();
    let history = h.workflow_history_json(&id).await;
    let scheduled = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["activityTaskScheduledEventAttributes"]["activityType"]["name"] == "mezzanine_piece"
        })
        .count();
    assert_eq!(scheduled, pieces, "each piece scheduled once\n{history}");
    let piece_attempts = activity_attempts(&history, "mezzanine_piece");
    eprintln!("piece attempts: {piece_attempts:?}");
    assert!(
        piece_attempts.contains(&1),
        "no piece finished before the kill: {piece_attempts:?}"
    );
    assert_eq!(
        files_under(parts),
        Vec::<std::path::PathBuf>::new(),
        "parts are removed"
    );
    second.signal(libc::SIGTERM);
    let _ = second.wait_for_exit(Duration::from_secs(30)).await;
    (answer, history)
}

/// The format's duration of `path`, by ffprobe.
async fn duration_of(path: &Path) -> f64 {
    let probe = ffprobe_json(&["-of", "json", "-show_format", s(path)])
        .await
        .unwrap();
    probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// A long DOWNSAMPLING from an `http://` source to a presigned PUT URL: the source is copied
/// once beside the parts (the worker's local folder here, `task-parts/`), the pieces read
/// the copy, the joined file is PUT where the payload asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_downsample_is_chunked_and_resumes_after_a_lost_worker() {
    let h = Harness::start().await;
    let server = S3Server::start(&h.path("logs"));
    server.create_bucket(BUCKET).await;
    let served = h.path("served");
    std::fs::create_dir_all(&served).unwrap();
    let source = served.join("film.mp4");
    make_video(&source, 640, 360, 150, 25).await;
    let (_http, http_port, _) = serve_dir(&served);
    let put_url = server
        .client()
        .put_object()
        .bucket(BUCKET)
        .key("out/film-240.mp4")
        .presigned(
            aws_sdk_s3::presigning::PresigningConfig::expires_in(Duration::from_secs(3600))
                .unwrap(),
        )
        .await
        .unwrap()
        .uri()
        .to_string();
    let payload = json!({"task": "DOWNSAMPLING", "parameters": {
        "original_video_uri": format!("http://127.0.0.1:{http_port}/film.mp4"),
        "output_put_url": put_url, "resolution": 240}});
    let file = write_job(&h, "film.json", &payload);
    let out = h.path("out");
    let env = [
        ("INPUT_ALLOWED_HOSTS", format!("127.0.0.1:{http_port}")),
        (
            "OUTPUT_PUT_ALLOWED_HOSTS",
            format!("127.0.0.1:{}", server.port),
        ),
    ];
    let parts = out.join("task-parts");
    let (answer, _) = finish_after_a_lost_worker(&h, (&out, &env), &file, &parts, 3).await;
    assert_eq!(answer["chunks"], 3, "{answer}");
    assert_eq!(answer["frames"], 3750);
    assert_eq!(
        answer["encoder"], "libx264",
        "the worker's delivery encoder"
    );
    assert_eq!(
        answer["verified"], "etag-md5",
        "the PUT was checked: {answer}"
    );
    assert!(
        !answer.to_string().contains("X-Amz-Signature"),
        "the answer shows no signature: {answer}"
    );
    assert_eq!(
        (answer["width"].as_u64(), answer["height"].as_u64()),
        (Some(426), Some(240))
    );
    let film = h.path("film-240.mp4");
    fetch(&server, "out/film-240.mp4", &film).await;
    assert_eq!(ffprobe_packets(&film, "v:0").await.len(), 3750);
    let duration = duration_of(&film).await;
    assert!((duration - 150.0).abs() < 0.1, "{duration}");
    let probe = ffprobe_json(&["-of", "json", "-show_streams", s(&film)])
        .await
        .unwrap();
    let (video, sound) = (&probe["streams"][0], &probe["streams"][1]);
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(426), Some(240))
    );
    // The source's AAC is kept as it is, as the one-run DOWNSAMPLING keeps it: it decodes
    // to the same samples.
    assert_eq!(sound["codec_name"], "aac");
    let first = ["-t", "5"];
    assert!(
        samples(&film, "s16le", &first).await == samples(&source, "s16le", &first).await,
        "the sound was not copied"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_encoding_burns_subtitles_in_chunks_and_resumes_after_a_lost_worker() {
    let h = Harness::start().await;
    let out = h.path("out");
    let jobs = out.join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let film = jobs.join("film.mp4");
    make_video(&film, 640, 360, 150, 25).await;
    // The given sound: 140 s of noise, 10 s shorter than the picture.
    let voice = jobs.join("voice.wav");
    ffmpeg_make(&[
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=color=brown:seed=7:sample_rate=48000:duration=140",
        s(&voice),
    ])
    .await;
    // One cue across the first chunk boundary (60 s).
    let ass = ass_with_cue("0:00:58.00", "0:01:03.00", "Across the cut");
    std::fs::write(jobs.join("subs.ass"), ass).unwrap();
    let payload = json!({"task": "ENCODING", "parameters": {
        "id": "long-export", "language": "en", "subtitles": true,
        "input_video_uri": "s3://jobs/film.mp4",
        "input_audio_uri": "s3://jobs/voice.wav",
        "subtitles_uri": "s3://jobs/subs.ass",
        "output_video_uri": "s3://jobs/export.mp4"}});
    let file = write_job(&h, "export.json", &payload);
    let parts = jobs.join("export.mp4.parts");
    let (answer, history) = finish_after_a_lost_worker(&h, (&out, &[]), &file, &parts, 3).await;
    assert!(!parts.exists(), "the parts' folders are removed with them");
    assert_eq!(
        activity_attempts(&history, "task_encoding"),
        Vec::<u64>::new()
    );
    assert_eq!(answer["chunks"], 3, "{answer}");
    assert_eq!(answer["frames"], 3750);
    assert_eq!(answer["subtitles_burned"], true);
    assert_eq!(answer["id"], "long-export");
    assert!((answer["audio_padded_sec"].as_f64().unwrap() - 10.0).abs() < 0.05);

    let export = jobs.join("export.mp4");
    assert_eq!(ffprobe_packets(&export, "v:0").await.len(), 3750);
    let duration = duration_of(&export).await;
    assert!((duration - 150.0).abs() < 0.1, "{duration}");
    let probe = ffprobe_json(&["-of", "json", "-show_streams", s(&export)])
        .await
        .unwrap();
    assert_eq!(probe["streams"][1]["tags"]["language"], "eng");

    // The cue is drawn on both sides of the chunk boundary, and nowhere else.
    let scratch = h.path("");
    let mut bands = Vec::new();
    for t in [30.0, 59.0, 61.5, 64.5] {
        let made = frame_at(&export, t, &scratch).await;
        let source = frame_at(&film, t, &scratch).await;
        bands.push((
            t,
            band_difference(&made, &source, 270, 360),
            band_difference(&made, &source, 0, 200),
        ));
    }
    eprintln!("(time, bottom band, top band) against the source: {bands:?}");
    for (t, bottom, top) in &bands {
        let cue = (58.0..63.0).contains(t);
        assert!(
            top < &3.0,
            "at {t} s the picture above the cue differs by {top:.1}"
        );
        assert!(
            if cue { *bottom > 8.0 } else { *bottom < 3.0 },
            "at {t} s the cue's band differs by {bottom:.1} (cue shown: {cue})"
        );
    }
    // The sound is the given one, in place on both sides of the boundary, then silence.
    for start in [10.0, 58.0] {
        let made = mono_from(&export, start, 4.0).await;
        let given = mono_from(&voice, start, 4.0).await;
        let own = mono_from(&film, start, 4.0).await;
        let (with_given, with_own) = (correlation(&made, &given, 32), correlation(&made, &own, 32));
        eprintln!("from {start} s: correlation with the given sound {with_given:.3}, with the video's own {with_own:.3}");
        assert!(
            with_given > 0.9 && with_own < 0.2,
            "from {start} s: {with_given:.2} / {with_own:.2}"
        );
    }
    let tail = samples(&export, "s16le", &["-ss", "140.3", "-ac", "1"]).await;
    let peak = tail
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]).unsigned_abs())
        .max()
        .unwrap_or(0);
    assert!(peak < 64, "the padding is not silent (peak {peak})");
}
