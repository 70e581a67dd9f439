//! One chunk of the video ladder: whole segments of the mezzanine, decoded once and encoded
//! into every rendition, with global segment numbers and continuous timestamps, verified
//! (frame counts agree across renditions and with the chunk's length) before it is published.

use crate::encoder::{EncoderSettings, VideoEncoder};
use crate::error::{MediaError, Result};
use crate::ffmpeg::args::h264_gop;
use crate::ffmpeg::run::{count_video_packets, ScaledProgress};
use crate::ffmpeg::{ffmpeg, FfmpegArgs};
use crate::hls::{hls_muxer_numbered, read_media_playlist};
use crate::nvenc::{self, NvencBudget};
use crate::storage::Storage;
use std::path::Path;
use transcoder_workflows::media::{
    ChunkPlan, ChunkVariant, LadderChunkInput, LadderChunkOutput, ObjectRef, SegmentInfo,
};

/// The single-decode command for one chunk, writing `work/<variant>/NNNNN.ts`.
pub fn chunk_args(
    input: &LadderChunkInput,
    source: &Path,
    work: &Path,
    enc: &EncoderSettings,
) -> FfmpegArgs {
    let n = input.renditions.len();
    let gpu = matches!(enc.video, VideoEncoder::Nvenc { .. });
    let mut graph = format!("[0:v]split={n}");
    for i in 0..n {
        graph.push_str(&format!("[s{i}]"));
    }
    for (i, r) in input.renditions.iter().enumerate() {
        if gpu {
            // Frames stay in GPU memory from NVDEC through the scaler to NVENC. Bilinear, not
            // scale_cuda's default bicubic: ffmpeg 5.1's bicubic (and lanczos) sample a fixed
            // 4x4 footprint whatever the ratio, so a 1080p source scaled to 360p aliases (33.6
            // dB PSNR against libswscale's bicubic, 45.2 dB with bilinear; BENCHMARKS.md, "GPU
            // check", measured on an H200).
            graph.push_str(&format!(
                ";[s{i}]scale_cuda={}:{}:interp_algo=bilinear[v{i}]",
                r.width, r.height
            ));
        } else {
            graph.push_str(&format!(
                ";[s{i}]scale={}:{}:flags=bicubic,setsar=1[v{i}]",
                r.width, r.height
            ));
        }
    }
    let gop_frames = (input.frame_rate.as_f64() * f64::from(input.gop_seconds))
        .round()
        .max(1.0) as u32;
    let chunk = &input.chunk;

    let mut a = FfmpegArgs::new();
    if gpu {
        a.opt("-hwaccel", "cuda")
            .opt("-hwaccel_output_format", "cuda");
    }
    // Input seeking with a re-encode is frame-exact: decoding starts at the keyframe before
    // the chunk and frames before `start` are dropped. Chunks start on mezzanine keyframes.
    // The source is the whole mezzanine or the chunk's own piece of it.
    let seek = (chunk.start_seconds - input.source_offset_seconds).max(0.0);
    a.input_at(seek, source).opt("-filter_complex", graph);
    for i in 0..n {
        a.opt("-map", format!("[v{i}]"));
    }
    let (first, end) = chunk.frame_range(input.frame_rate);
    if !chunk.last {
        // An exact frame count, not a duration: 12 s of 29.97 fps is 359 or 360 frames
        // depending on where the chunk starts, and the next chunk starts right after.
        a.opt("-frames:v", (end - first).to_string());
    }
    a.flag("-an").flag("-sn").flag("-dn");
    match &enc.video {
        VideoEncoder::X264 { preset, crf } => {
            a.opt("-c:v", "libx264")
                .opt("-preset", preset.as_str())
                .opt("-crf", crf.to_string())
                .opt("-profile:v", "high")
                .opt("-pix_fmt", "yuv420p");
        }
        VideoEncoder::Nvenc { cq } => {
            a.opt("-c:v", "h264_nvenc")
                .opt("-preset", "p4")
                .opt("-profile:v", "high")
                .opt("-rc", "vbr")
                .opt("-cq", cq.to_string())
                .opt("-spatial_aq", "1")
                .opt("-no-scenecut", "1");
        }
    }
    a.opt("-r", input.frame_rate.to_ffmpeg())
        .opt("-fps_mode", "cfr");
    // Keyframes at every GOP boundary counted from the chunk start, which is itself a GOP
    // boundary of the whole programme: identical IDR times in every rendition and chunk.
    h264_gop(&mut a, "v", gop_frames, input.gop_seconds);
    for (i, r) in input.renditions.iter().enumerate() {
        // Capped quality: CRF/CQ decides, the VBV caps the rate at the rung's bitrate.
        if gpu {
            a.opt(&format!("-b:v:{i}"), format!("{}k", r.bitrate_kbps * 3 / 4));
        }
        a.opt(&format!("-maxrate:v:{i}"), format!("{}k", r.maxrate_kbps))
            .opt(&format!("-bufsize:v:{i}"), format!("{}k", r.bufsize_kbps));
    }
    // Timestamps continue from the chunk's first frame's place in the programme.
    a.opt(
        "-output_ts_offset",
        format!("{:.6}", ChunkPlan::frame_time(first, input.frame_rate)),
    );
    let map = input
        .renditions
        .iter()
        .enumerate()
        .map(|(i, r)| format!("v:{i},name:{}", r.name))
        .collect::<Vec<_>>()
        .join(" ");
    hls_muxer_numbered(
        &mut a,
        work,
        input.segment_seconds,
        chunk.first_segment,
        map,
    );
    a
}

/// Video packets in a local playlist's segments (demuxing only, no decode).
async fn count_frames(playlist: &Path) -> Result<u64> {
    let hls = ["-allowed_extensions", "ALL", "-protocol_whitelist", "file"];
    count_video_packets(&hls, playlist)
        .await
        .map_err(|e| MediaError::Verification(format!("chunk: {e}")))?
        .ok_or_else(|| {
            MediaError::Verification(format!(
                "chunk playlist {} has no video packets",
                playlist.display()
            ))
        })
}

/// Segment uploads in flight at once for one chunk.
const SEGMENT_UPLOADS: usize = 8;

/// Encodes, verifies and publishes one chunk.
pub async fn encode_chunk(
    storage: &Storage,
    input: &LadderChunkInput,
    source: &Path,
    work: &Path,
    enc: &EncoderSettings,
    progress: &ScaledProgress,
) -> Result<LadderChunkOutput> {
    if input.renditions.is_empty() {
        return Err(MediaError::Unsupported(
            "the plan has no video renditions".into(),
        ));
    }
    let chunk = &input.chunk;
    ffmpeg(
        chunk_args(input, source, work, enc).as_slice(),
        chunk.duration_seconds,
        progress,
    )
    .await?;

    // Per-chunk verification before anything is published: every rendition has the same
    // frames, as many as the chunk's length at the output rate, in at most its segments.
    let (first, end) = chunk.frame_range(input.frame_rate);
    let expected = (end - first) as f64;
    // The last chunk runs to the end of the source, whose duration is known to a frame.
    let tolerance = if chunk.last { 1.0 } else { 0.0 };
    let mut reference: Option<u64> = None;
    let mut playlists = Vec::new();
    for r in &input.renditions {
        let dir = work.join(&r.name);
        let playlist_path = dir.join("playlist.m3u8");
        let playlist = read_media_playlist(&playlist_path)?;
        if playlist.segments.len() as u32 > chunk.max_segments {
            return Err(MediaError::Verification(format!(
                "chunk {} of {} made {} segments, more than its {}",
                chunk.index,
                r.name,
                playlist.segments.len(),
                chunk.max_segments
            )));
        }
        let frames = count_frames(&playlist_path).await?;
        if (frames as f64 - expected).abs() > tolerance {
            return Err(MediaError::Verification(format!(
                "chunk {} of {} has {frames} frames, expected {expected}",
                chunk.index, r.name
            )));
        }
        if let Some(first) = reference {
            if first != frames {
                return Err(MediaError::Verification(format!(
                    "chunk {}: {} has {frames} frames but the first rendition {first}",
                    chunk.index, r.name
                )));
            }
        }
        reference = Some(frames);
        playlists.push((r, dir, playlist));
    }

    // Published only after the whole chunk verified (Av1an-style: nothing unverified reaches
    // the bucket), then uploaded several at a time: against a remote store each PUT is a
    // round trip, and a chunk has tens of segments.
    use futures::stream::{self, StreamExt, TryStreamExt};
    let mut jobs: Vec<(std::path::PathBuf, ObjectRef, String, f64)> = Vec::new();
    for (r, dir, playlist) in &playlists {
        for seg in &playlist.segments {
            jobs.push((
                dir.join(&seg.uri),
                ObjectRef::new(
                    &input.bucket,
                    format!("{}/{}/{}", input.prefix, r.name, seg.uri),
                ),
                seg.uri.clone(),
                f64::from(seg.duration),
            ));
        }
    }
    let uploads = jobs
        .into_iter()
        .map(|(path, obj, uri, duration)| async move {
            let bytes = storage.put_file(&path, &obj).await?;
            Ok::<_, MediaError>(SegmentInfo {
                uri,
                duration,
                bytes,
            })
        });
    // `buffered` keeps the order, so segments stay in playlist order.
    let mut uploaded: Vec<SegmentInfo> = stream::iter(uploads)
        .buffered(SEGMENT_UPLOADS)
        .try_collect()
        .await?;
    let mut variants = Vec::new();
    for (r, _, playlist) in &playlists {
        let rest = uploaded.split_off(playlist.segments.len().min(uploaded.len()));
        variants.push(ChunkVariant {
            name: r.name.clone(),
            segments: std::mem::replace(&mut uploaded, rest),
        });
    }
    Ok(LadderChunkOutput {
        index: chunk.index,
        variants,
        encoder: enc.video_encoder_name().to_string(),
    })
}

/// [`encode_chunk`] within the worker's NVENC session budget: a chunk takes one session per
/// rung before its ffmpeg starts, runs its rungs in groups when the budget cannot hold them
/// all, and waits out a session that fails to open (the GPU busy with other encodes)
/// instead of failing. libx264 chunks run as they are.
pub async fn encode_chunk_budgeted(
    storage: &Storage,
    input: &LadderChunkInput,
    source: &Path,
    work: &Path,
    enc: &EncoderSettings,
    budget: &NvencBudget,
    progress: &ScaledProgress,
) -> Result<LadderChunkOutput> {
    // (A plan without renditions is refused by `encode_chunk` itself.)
    if !matches!(enc.video, VideoEncoder::Nvenc { .. }) || input.renditions.is_empty() {
        return encode_chunk(storage, input, source, work, enc, progress).await;
    }
    let groups = budget.groups(input.renditions.len());
    if groups.len() > 1 {
        tracing::info!(
            chunk = input.chunk.index,
            groups = ?groups,
            sessions = ?budget.capacity(),
            "more rungs than NVENC sessions: the chunk encodes them in groups"
        );
    }
    let total = groups.len() as f64;
    let mut variants = Vec::with_capacity(input.renditions.len());
    let mut rest = input.renditions.as_slice();
    for (i, size) in groups.into_iter().enumerate() {
        let (these, after) = rest.split_at(size.min(rest.len()));
        rest = after;
        let part = LadderChunkInput {
            renditions: these.to_vec(),
            ..input.clone()
        };
        let made = encode_with_sessions(
            storage,
            &part,
            source,
            &work.join(format!("group-{i}")),
            enc,
            budget,
            &progress.sub(i as f64 / total, (i + 1) as f64 / total),
        )
        .await?;
        variants.extend(made.variants);
    }
    Ok(LadderChunkOutput {
        index: input.chunk.index,
        variants,
        encoder: enc.video_encoder_name().to_string(),
    })
}

/// One ffmpeg run holding a session per rung, tried again while sessions fail to open.
async fn encode_with_sessions(
    storage: &Storage,
    input: &LadderChunkInput,
    source: &Path,
    work: &Path,
    enc: &EncoderSettings,
    budget: &NvencBudget,
    progress: &ScaledProgress,
) -> Result<LadderChunkOutput> {
    let mut waited = 0;
    loop {
        let sessions = budget.acquire(input.renditions.len()).await;
        let result = encode_chunk(storage, input, source, work, enc, progress).await;
        drop(sessions);
        match result {
            Err(MediaError::Tool { detail, .. })
                if nvenc::is_session_open_failure(&detail) && waited < nvenc::OPEN_RETRIES =>
            {
                waited += 1;
                tracing::warn!(
                    chunk = input.chunk.index,
                    try_again_in = ?nvenc::OPEN_RETRY_WAIT,
                    waited,
                    "an NVENC session could not be opened (the GPU's session cap or memory, held by other encodes); waiting"
                );
                let _ = std::fs::remove_dir_all(work);
                tokio::time::sleep(nvenc::OPEN_RETRY_WAIT).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ffmpeg::args::test_support::{strings, value};
    use transcoder_workflows::media::{FrameRate, VideoRendition};

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
        }
    }

    fn args(chunk: ChunkPlan) -> Vec<String> {
        strings(chunk_args(
            &input(chunk),
            Path::new("/mezz.mp4"),
            Path::new("/w"),
            &EncoderSettings::default(),
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
        let a = strings(chunk_args(
            &input(chunk),
            Path::new("/mezz.mp4"),
            Path::new("/w"),
            &gpu,
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
}
