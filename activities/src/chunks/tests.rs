use super::*;
use crate::ffmpeg::args::test_support::{strings, value};
use crate::ffmpeg::ProgressSink;
use transcoder_workflows::media::{FrameRate, SegmentInfo, StoryboardPlan, VideoRendition};

fn input(chunk: ChunkPlan) -> LadderChunkInput {
    let rung = |name: &str, w, h, k| VideoRendition {
        name: name.into(),
        width: w,
        height: h,
        bitrate_kbps: k,
        maxrate_kbps: k,
        bufsize_kbps: 2 * k,
    };
    LadderChunkInput {
        source: ObjectRef::new("b", "k"),
        bucket: "media".into(),
        prefix: "c/hls/m".into(),
        renditions: vec![rung("720p", 1280, 720, 2500), rung("360p", 640, 360, 500)],
        frame_rate: FrameRate {
            num: 30000,
            den: 1001,
        },
        gop_seconds: 2,
        segment_seconds: 6,
        chunk,
        source_offset_seconds: 0.0,
        storyboard: None,
    }
}

fn args(chunk: ChunkPlan) -> Vec<String> {
    let input = input(chunk);
    strings(chunk_args(
        &input,
        Path::new("/mezz.mp4"),
        Path::new("/w"),
        &EncoderSettings::default(),
        RunStart::fresh(&input),
    ))
}

#[test]
fn a_chunk_is_one_decode_of_an_exact_frame_range() {
    let chunk = ChunkPlan {
        index: 1,
        start_seconds: 12.0,
        duration_seconds: 12.0,
        first_segment: 2,
        max_segments: 2,
        last: false,
    };
    let a = args(chunk);
    assert_eq!(a.iter().filter(|x| *x == "-i").count(), 1);
    assert_eq!(value(&a, "-ss"), Some("12.000"));
    assert_eq!(
        value(&a, "-frames:v"),
        Some("360"),
        "frames 360..720 at 29.97 fps"
    );
    assert_eq!(
        value(&a, "-output_ts_offset"),
        Some("12.012000"),
        "frame 360's time"
    );
    assert_eq!(value(&a, "-start_number"), Some("2"));
    assert!(
        a.contains(&"-an".to_string()),
        "audio is encoded once, elsewhere"
    );
    assert!(value(&a, "-filter_complex")
        .unwrap()
        .starts_with("[0:v]split=2[s0][s1]"));
    assert_eq!(
        value(&a, "-var_stream_map"),
        Some("v:0,name:720p v:1,name:360p")
    );
}

#[test]
fn the_gpu_graph_keeps_frames_on_the_gpu_and_scales_bilinear() {
    let chunk = ChunkPlan {
        index: 0,
        start_seconds: 0.0,
        duration_seconds: 12.0,
        first_segment: 0,
        max_segments: 2,
        last: false,
    };
    let gpu = EncoderSettings {
        video: VideoEncoder::Nvenc { cq: 23 },
        ..EncoderSettings::default()
    };
    let input = input(chunk);
    let a = strings(chunk_args(
        &input,
        Path::new("/mezz.mp4"),
        Path::new("/w"),
        &gpu,
        RunStart::fresh(&input),
    ));
    assert_eq!(value(&a, "-hwaccel"), Some("cuda"));
    assert_eq!(value(&a, "-hwaccel_output_format"), Some("cuda"));
    assert_eq!(
        value(&a, "-filter_complex"),
        Some(
            "[0:v]split=2[s0][s1];[s0]scale_cuda=1280:720:interp_algo=bilinear[v0];\
                 [s1]scale_cuda=640:360:interp_algo=bilinear[v1]"
        )
    );
    assert_eq!(value(&a, "-c:v"), Some("h264_nvenc"));
}

#[test]
fn the_last_chunk_runs_to_the_end() {
    let chunk = ChunkPlan {
        index: 3,
        start_seconds: 36.0,
        duration_seconds: 4.0,
        first_segment: 6,
        max_segments: 2,
        last: true,
    };
    assert_eq!(value(&args(chunk), "-frames:v"), None);
}

fn rendition_names(input: &LadderChunkInput) -> Vec<String> {
    input.renditions.iter().map(|r| r.name.clone()).collect()
}

fn checkpoint_of(input: &LadderChunkInput, segments: usize, next_frame: u64) -> ChunkCheckpoint {
    let mut c = ChunkCheckpoint {
        index: input.chunk.index,
        variants: Vec::new(),
    };
    for name in rendition_names(input) {
        for n in 0..segments {
            let frame = if n + 1 == segments { next_frame } else { 0 };
            c.push(
                &name,
                SegmentInfo {
                    uri: format!("{n:05}.ts"),
                    duration: 6.0,
                    bytes: 1,
                },
                frame,
            );
        }
    }
    c
}

#[test]
fn a_checkpoint_is_used_only_when_every_rendition_agrees() {
    // Frames 360..720 of a 29.97 fps programme, two 6 s segments.
    let chunk = ChunkPlan {
        index: 1,
        start_seconds: 12.0,
        duration_seconds: 12.0,
        first_segment: 2,
        max_segments: 2,
        last: false,
    };
    let input = input(chunk);
    let empty = ChunkCheckpoint {
        index: 1,
        variants: Vec::new(),
    };
    assert_eq!(resume_point(&input, &empty), Resume::Fresh);
    // One segment published in both renditions: continue at frame 540, segment 3.
    let one = checkpoint_of(&input, 1, 540);
    assert_eq!(
        resume_point(&input, &one),
        Resume::From(RunStart {
            frame: 540,
            segment: 3
        })
    );
    // Both: nothing left to encode.
    assert_eq!(
        resume_point(&input, &checkpoint_of(&input, 2, 720)),
        Resume::Complete
    );
    // Another chunk's checkpoint, renditions out of step, a frame outside the chunk.
    let mut other = one.clone();
    other.index = 2;
    assert_eq!(resume_point(&input, &other), Resume::Fresh);
    let mut behind = one.clone();
    behind.variants[1].next_frame = 530;
    assert_eq!(resume_point(&input, &behind), Resume::Fresh);
    let mut missing = one.clone();
    missing.variants.pop();
    assert_eq!(resume_point(&input, &missing), Resume::Fresh);
    assert_eq!(
        resume_point(&input, &checkpoint_of(&input, 1, 900)),
        Resume::Fresh
    );
    assert_eq!(
        resume_point(&input, &checkpoint_of(&input, 3, 700)),
        Resume::Fresh,
        "more segments than the chunk has room for"
    );
    // The last chunk's end is known to a frame: a checkpoint at its end is not trusted.
    let last = LadderChunkInput {
        chunk: ChunkPlan {
            last: true,
            ..chunk
        },
        ..input.clone()
    };
    assert_eq!(
        resume_point(&last, &checkpoint_of(&last, 2, 720)),
        Resume::Fresh
    );
    assert_eq!(
        resume_point(&last, &checkpoint_of(&last, 1, 540)),
        Resume::From(RunStart {
            frame: 540,
            segment: 3
        })
    );
}

#[test]
fn a_resumed_run_starts_at_its_frame() {
    let chunk = ChunkPlan {
        index: 1,
        start_seconds: 12.0,
        duration_seconds: 12.0,
        first_segment: 2,
        max_segments: 2,
        last: false,
    };
    let input = input(chunk);
    let a = strings(chunk_args(
        &input,
        Path::new("/mezz.mp4"),
        Path::new("/w"),
        &EncoderSettings::default(),
        RunStart {
            frame: 540,
            segment: 3,
        },
    ));
    // Frame 540 is at 18.018 s; the seek lands a quarter frame before it.
    assert_eq!(value(&a, "-ss"), Some("18.009658"));
    assert_eq!(value(&a, "-frames:v"), Some("180"));
    assert_eq!(value(&a, "-output_ts_offset"), Some("18.018000"));
    assert_eq!(value(&a, "-start_number"), Some("3"));
}

async fn make_source(path: &Path, seconds: u32) {
    let status = tokio::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=s=320x180:r=25:d={seconds}"))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "50",
            "-keyint_min",
            "50",
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(path)
        .status()
        .await
        .expect("ffmpeg runs");
    assert!(status.success());
}

fn small_input(seconds: f64) -> LadderChunkInput {
    let rung = |name: &str, w, h| VideoRendition {
        name: name.into(),
        width: w,
        height: h,
        bitrate_kbps: 300,
        maxrate_kbps: 300,
        bufsize_kbps: 600,
    };
    LadderChunkInput {
        source: ObjectRef::new("b", "k"),
        bucket: "media".into(),
        prefix: "hls".into(),
        renditions: vec![rung("a", 192, 108), rung("b", 128, 72)],
        frame_rate: FrameRate { num: 25, den: 1 },
        gop_seconds: 2,
        segment_seconds: 6,
        chunk: ChunkPlan {
            index: 0,
            start_seconds: 0.0,
            duration_seconds: seconds,
            first_segment: 0,
            max_segments: 3,
            last: true,
        },
        source_offset_seconds: 0.0,
        storyboard: None,
    }
}

/// A run that continues after published segments makes the same segments, with the same
/// frames, as the run that was cut short, and leaves the published ones alone.
#[tokio::test]
async fn a_resumed_chunk_encodes_only_what_was_not_published() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("mezz.mp4");
    make_source(&source, 16).await;
    let input = small_input(16.0);
    let enc = EncoderSettings::default();

    let whole_store = Storage::local(dir.path().join("whole"));
    let whole_sink = CheckpointSink::unread(0);
    let whole = encode_chunk(
        &whole_store,
        &input,
        &source,
        &dir.path().join("w1"),
        &enc,
        &ProgressSink::none().scaled(0.0, 1.0),
        &whole_sink,
    )
    .await
    .unwrap();
    let frames = |v: &ChunkVariant| -> Vec<u64> {
        v.segments
            .iter()
            .map(|s| (s.duration * 25.0).round() as u64)
            .collect()
    };
    assert_eq!(frames(&whole.variants[0]), vec![150, 150, 100]);
    assert_eq!(frames(&whole.variants[1]), vec![150, 150, 100]);

    // An attempt died after publishing the first segment.
    let mut earlier = whole_sink.snapshot();
    for v in &mut earlier.variants {
        v.segments.truncate(1);
        v.next_frame = 150;
    }
    let resumed_store = Storage::local(dir.path().join("resumed"));
    let resumed = encode_chunk(
        &resumed_store,
        &input,
        &source,
        &dir.path().join("w2"),
        &enc,
        &ProgressSink::none().scaled(0.0, 1.0),
        &CheckpointSink::channel(earlier).0,
    )
    .await
    .unwrap();
    assert_eq!(
        resumed
            .variants
            .iter()
            .map(|v| (v.name.clone(), frames(v)))
            .collect::<Vec<_>>(),
        whole
            .variants
            .iter()
            .map(|v| (v.name.clone(), frames(v)))
            .collect::<Vec<_>>()
    );
    let root = dir.path().join("resumed/media/hls/a");
    assert!(
        !root.join("00000.ts").exists(),
        "segment 0 was not encoded again"
    );
    assert!(root.join("00001.ts").exists() && root.join("00002.ts").exists());

    // The resumed segment holds the same pictures as the uninterrupted run's: a frame
    // off would show as a low PSNR on the moving test pattern.
    let out = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-i"])
        .arg(dir.path().join("whole/media/hls/a/00001.ts"))
        .arg("-i")
        .arg(root.join("00001.ts"))
        .args(["-lavfi", "psnr", "-f", "null", "-"])
        .output()
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let average: f64 = log
        .split("average:")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| {
            if t == "inf" {
                Some(99.0)
            } else {
                t.parse().ok()
            }
        })
        .unwrap_or_else(|| panic!("no PSNR in {log}"));
    assert!(average > 40.0, "PSNR {average} dB");
}

/// The chunk's own decode cuts the storyboard's tiles; the assembly lays them out in a sheet
/// with its WebVTT, and a tile no chunk left is cut from the published segments.
#[tokio::test]
async fn a_chunk_cuts_storyboard_tiles_and_the_sheet_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("mezz.mp4");
    make_source(&source, 16).await;
    let mut input = small_input(16.0);
    let plan = StoryboardPlan {
        interval_seconds: 5,
        tile_width: 64,
        tile_height: 36,
        tiles_prefix: "hls/storyboard-tiles".into(),
        vtt: ObjectRef::new("assets", "c/storyboards/m/storyboard.vtt"),
    };
    input.storyboard = Some(plan.clone());
    let store = Storage::local(dir.path().join("store"));
    let made = encode_chunk(
        &store,
        &input,
        &source,
        &dir.path().join("w"),
        &EncoderSettings::default(),
        &ProgressSink::none().scaled(0.0, 1.0),
        &CheckpointSink::unread(0),
    )
    .await
    .unwrap();
    // 16 s at one tile every 5 s: tiles at 0, 5, 10 and 15 s.
    let tile = |k: u64| {
        dir.path()
            .join("store/media")
            .join(transcoder_workflows::keys::storyboard_tile_key(
                &plan.tiles_prefix,
                k,
            ))
    };
    for k in 0..4 {
        let img = image::open(tile(k)).unwrap_or_else(|e| panic!("tile {k}: {e}"));
        assert_eq!((img.width(), img.height()), (64, 36), "tile {k}");
    }
    assert!(!tile(4).exists());

    // One tile lost (a resumed chunk starts past it): the sheet is still whole.
    let lost = image::open(tile(2)).unwrap().to_luma8();
    let lost_late = image::open(tile(1)).unwrap().to_luma8();
    std::fs::remove_file(tile(2)).unwrap();
    // Tile 1 (5 s) lies near the end of its 6 s segment, where seeking an MPEG-TS input
    // lands past the segment.
    std::fs::remove_file(tile(1)).unwrap();
    let segments: Vec<(ObjectRef, SegmentInfo)> = made.variants[0]
        .segments
        .iter()
        .map(|s| {
            (
                ObjectRef::new("media", format!("hls/a/{}", s.uri)),
                s.clone(),
            )
        })
        .collect();
    std::fs::create_dir_all(dir.path().join("a")).unwrap();
    let key = crate::storyboard::publish(
        &store,
        "media",
        &plan,
        16.0,
        &segments,
        &dir.path().join("a"),
    )
    .await
    .unwrap();
    assert_eq!(key, plan.vtt.key);
    let vtt = std::fs::read_to_string(dir.path().join("store/assets").join(&key)).unwrap();
    assert_eq!(vtt.matches("sprite-000.jpg#xywh=").count(), 4, "{vtt}");
    assert!(
        vtt.contains("00:00:15.000 --> 00:00:16.000\nsprite-000.jpg#xywh=192,0,64,36"),
        "{vtt}"
    );
    let sheet = image::open(
        dir.path()
            .join("store/assets/c/storyboards/m/sprite-000.jpg"),
    )
    .unwrap();
    assert_eq!((sheet.width(), sheet.height()), (256, 36));
    // The tile cut from the segments shows the frame the chunk's tile showed (10 s), not a
    // neighbour: the two differ by coding noise only.
    let third = sheet.crop_imm(128, 0, 64, 36).to_luma8();
    let diff = third
        .pixels()
        .zip(lost.pixels())
        .map(|(a, b)| f64::from(a.0[0].abs_diff(b.0[0])))
        .sum::<f64>()
        / (64.0 * 36.0);
    let next = sheet.crop_imm(192, 0, 64, 36).to_luma8();
    let other = next
        .pixels()
        .zip(lost.pixels())
        .map(|(a, b)| f64::from(a.0[0].abs_diff(b.0[0])))
        .sum::<f64>()
        / (64.0 * 36.0);
    assert!(
        diff < 6.0 && diff * 2.0 < other,
        "tile 2 differs by {diff:.1} (tile 3 by {other:.1})"
    );
    let second = sheet.crop_imm(64, 0, 64, 36).to_luma8();
    let late = second
        .pixels()
        .zip(lost_late.pixels())
        .map(|(a, b)| f64::from(a.0[0].abs_diff(b.0[0])))
        .sum::<f64>()
        / (64.0 * 36.0);
    assert!(late < 6.0, "tile 1 differs by {late:.1}");
    for k in 0..4 {
        assert!(!tile(k).exists(), "tile {k} was not removed");
    }
}
