//! A chunked mezzanine joins exactly: for sources whose seeking is not frame-exact (B-frame
//! reordering, open GOPs, keyframes far apart, a variable frame rate, an NTSC rate whose
//! chunk starts fall between frames), the pieces encoded separately and joined by stream
//! copy hold the same frames, at the same times, as the single-pass mezzanine: the same
//! count, every timestamp on the constant-rate grid, and each frame the same picture (PSNR
//! against the single pass; a frame dropped or repeated at a join shifts every later one).

use crate::common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use transcoder_activities::ffmpeg::{ffmpeg as run_ffmpeg, ProgressSink};
use transcoder_activities::mezzanine;
use transcoder_activities::EncoderSettings;
use transcoder_workflows::ladder::plan_chunks;
use transcoder_workflows::media::{
    FrameRate, JoinMezzanineInput, MezzanineInput, MezzaninePieceInput, MezzanineVideo, ObjectRef,
    PictureEncoder,
};

/// Frame timestamps of the first video stream, in seconds.
async fn frame_times(path: &Path) -> Vec<f64> {
    let doc: Value = ffprobe_json(&[
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "frame=best_effort_timestamp_time",
        "-of",
        "json",
        &path.to_string_lossy(),
    ])
    .await
    .expect("ffprobe frames");
    doc["frames"]
        .as_array()
        .map(|frames| {
            frames
                .iter()
                .filter_map(|f| f["best_effort_timestamp_time"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

async fn encode_both(
    dir: &Path,
    source: &Path,
    rate: FrameRate,
    duration: f64,
) -> (PathBuf, PathBuf) {
    let enc = EncoderSettings::default();
    let progress = ProgressSink::none().scaled(0.0, 1.0);
    let video = MezzanineVideo {
        frame_rate: rate,
        gop_seconds: 2,
        tone_map_from: None,
        deinterlace: false,
        size: Some((320, 180)),
        encoder: PictureEncoder::Mezzanine,
        subtitles: None,
    };
    // The single-pass reference.
    let whole = dir.join("whole.mp4");
    let input = MezzanineInput {
        source: ObjectRef::new("b", "src"),
        dest: ObjectRef::new("b", "mezz"),
        video: Some(video.clone()),
        has_audio: false,
    };
    run_ffmpeg(
        mezzanine::mezzanine_args(&input, source, &whole, duration, &enc).as_slice(),
        duration,
        &progress,
    )
    .await
    .expect("single-pass mezzanine");

    // Pieces of 6 s, as a job with segmentsPerChunk 1 cuts them, then the join.
    let chunks = plan_chunks(duration, 6, 1);
    assert!(chunks.len() >= 3, "{chunks:?}");
    let mut pieces = Vec::new();
    for chunk in &chunks {
        let piece = dir.join(format!("piece-{:05}.mp4", chunk.index));
        let input = MezzaninePieceInput {
            source: ObjectRef::new("b", "src"),
            dest: ObjectRef::new("b", "piece"),
            video: video.clone(),
            chunk: *chunk,
            duration_seconds: duration,
        };
        mezzanine::encode_piece(&input, source, None, &piece, &enc, &progress)
            .await
            .unwrap_or_else(|e| panic!("piece {}: {e}", chunk.index));
        pieces.push(piece);
    }
    let frames = chunks
        .last()
        .map(|c| c.frame_range(rate).1)
        .unwrap_or_default();
    let joined = dir.join("joined.mp4");
    let join = JoinMezzanineInput {
        pieces: Vec::new(),
        audio: None,
        audio_pieces: Vec::new(),
        dest: ObjectRef::new("b", "mezz"),
        video: video.clone(),
        frames,
        duration_seconds: duration,
        audio_language: None,
    };
    mezzanine::join_pieces(&join, &pieces, None, dir, &joined, &progress)
        .await
        .expect("join");
    (whole, joined)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joined_pieces_match_the_single_pass_mezzanine() {
    let h = Harness::without_server();
    let cases: [(&str, FrameRate, &[&str]); 5] = [
        (
            "bframes-ntsc",
            FrameRate {
                num: 30000,
                den: 1001,
            },
            &[
                "-vf",
                "fps=30000/1001",
                "-c:v",
                "libx264",
                "-bf",
                "3",
                "-g",
                "48",
            ],
        ),
        (
            "open-gop",
            FrameRate { num: 25, den: 1 },
            &[
                "-c:v",
                "libx264",
                "-x264-params",
                "open-gop=1:keyint=75:bframes=3",
            ],
        ),
        (
            "far-keyframes",
            FrameRate { num: 25, den: 1 },
            &[
                "-c:v",
                "libx264",
                "-g",
                "600",
                "-keyint_min",
                "600",
                "-sc_threshold",
                "0",
            ],
        ),
        (
            "vfr",
            FrameRate { num: 25, den: 1 },
            // Timestamps jittered frame by frame: a phone's variable rate.
            &[
                "-vf",
                "setpts='(N+0.3*sin(N))/25/TB'",
                "-fps_mode",
                "vfr",
                "-c:v",
                "libx264",
            ],
        ),
        (
            "mpeg2-ts",
            FrameRate { num: 25, den: 1 },
            &[
                "-c:v",
                "mpeg2video",
                "-q:v",
                "3",
                "-g",
                "15",
                "-bf",
                "2",
                "-f",
                "mpegts",
            ],
        ),
    ];
    for (name, rate, encode) in cases {
        let dir = h.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        let ext = if name == "mpeg2-ts" { "ts" } else { "mp4" };
        let source = dir.join(format!("source.{ext}"));
        let mut args = vec![
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=25:duration=20",
        ];
        args.extend_from_slice(encode);
        args.extend_from_slice(&["-pix_fmt", "yuv420p"]);
        let src = source.to_string_lossy().into_owned();
        args.push(&src);
        ffmpeg_make(&args).await;

        // The programme's length as the job measures it.
        let duration = transcoder_activities::probe::probe_file(&source)
            .await
            .expect("probe")
            .duration_seconds;
        let (whole, joined) = encode_both(&dir, &source, rate, duration).await;
        let a = frame_times(&whole).await;
        let b = frame_times(&joined).await;
        assert_eq!(a.len(), b.len(), "{name}: frame counts differ");
        let step = f64::from(rate.den) / f64::from(rate.num);
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() < step / 4.0 && (y - i as f64 * step).abs() < step / 4.0,
                "{name}: frame {i} at {y} s in the join, {x} s in the single pass"
            );
        }
        let psnr = min_psnr(&joined, &whole, &dir.join("psnr.log")).await;
        assert!(
            psnr > 35.0,
            "{name}: a frame of the join differs from the single pass (lowest PSNR {psnr:.1} dB)"
        );
        eprintln!("{name}: {} frames, lowest PSNR {psnr:.1} dB", b.len());
    }
}
