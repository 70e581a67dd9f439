//! One chunk of the video ladder: whole segments of the mezzanine, decoded once and encoded
//! into every rendition, with global segment numbers and continuous timestamps.
//!
//! Segments are published while the encoder runs: a segment is done when the encoder has
//! opened the next one in every rendition (or has exited), then it is verified (the same
//! frames in every rendition, as many as its place in the run says) and uploaded, and the
//! chunk's checkpoint (`ChunkCheckpoint`, carried by the attempt's heartbeat) records it. A
//! retried attempt reads that checkpoint and starts its encoder at the first frame not yet
//! published, so a lost worker costs the segments in flight, not the chunk.
//!
//! Why one file of about 600 lines: the encoder's command line, the watcher that decides a
//! segment is done, its verification and the checkpoint are one protocol whose parts
//! change together; split, each part would need the others' invariants restated.

use crate::encoder::{EncoderSettings, VideoEncoder};
use crate::error::{MediaError, Result};
use crate::ffmpeg::args::h264_gop;
use crate::ffmpeg::run::{count_video_packets, ScaledProgress};
use crate::ffmpeg::{ffmpeg, FfmpegArgs};
use crate::hls::hls_muxer_numbered;
use crate::nvenc::{self, NvencBudget};
use crate::storage::Storage;
use crate::storyboard;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::watch;
use transcoder_workflows::keys::{hls_file_key, segment_file_name};
use transcoder_workflows::media::{
    run_segment_start, ChunkCheckpoint, ChunkPlan, ChunkVariant, LadderChunkInput,
    LadderChunkOutput, ObjectRef, SegmentInfo,
};

/// Where one encoder run of a chunk starts: the chunk's first frame, or the first frame an
/// earlier attempt did not publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunStart {
    /// Frame on the programme's grid.
    pub frame: u64,
    /// Global number of the run's first segment.
    pub segment: u32,
}

impl RunStart {
    /// A run over the whole chunk.
    pub fn fresh(input: &LadderChunkInput) -> RunStart {
        RunStart {
            frame: input.chunk.frame_range(input.frame_rate).0,
            segment: input.chunk.first_segment,
        }
    }
}

/// The chunk's checkpoint as it grows, shared with the heartbeat that carries it.
#[derive(Clone, Debug)]
pub struct CheckpointSink(Arc<watch::Sender<ChunkCheckpoint>>);

impl CheckpointSink {
    /// A sink starting from `checkpoint` (what earlier attempts published), and the receiver
    /// the heartbeat reads.
    pub fn channel(checkpoint: ChunkCheckpoint) -> (Self, watch::Receiver<ChunkCheckpoint>) {
        let (tx, rx) = watch::channel(checkpoint);
        (CheckpointSink(Arc::new(tx)), rx)
    }

    /// A sink nobody reads (tests, callers without a heartbeat).
    pub fn unread(index: u32) -> Self {
        Self::channel(ChunkCheckpoint {
            index,
            variants: Vec::new(),
        })
        .0
    }

    pub fn snapshot(&self) -> ChunkCheckpoint {
        self.0.borrow().clone()
    }

    fn push(&self, name: &str, segment: SegmentInfo, next_frame: u64) {
        self.0.send_modify(|c| c.push(name, segment, next_frame));
    }

    /// Forgets what was published for `names` (a run that starts over writes them again).
    fn forget(&self, names: &[String]) {
        self.0
            .send_modify(|c| c.variants.retain(|v| !names.contains(&v.name)));
    }
}

/// What an attempt does with the checkpoint it was handed, for the renditions it encodes.
#[derive(Clone, Debug, PartialEq)]
pub enum Resume {
    /// Nothing usable: encode the whole chunk.
    Fresh,
    /// Continue at `run`; the segments before it are published.
    From(RunStart),
    /// Every segment is published: nothing to encode.
    Complete,
}

/// Reads `checkpoint` for the renditions of `input`. It is used only when every rendition
/// published the same segments up to the same frame inside the chunk; anything else (another
/// chunk's, renditions out of step, a frame outside the chunk) starts the chunk over. The
/// last chunk's end is known only to a frame, so there the last published segment is always
/// encoded again rather than trusted to be the end.
pub fn resume_point(input: &LadderChunkInput, checkpoint: &ChunkCheckpoint) -> Resume {
    let chunk = &input.chunk;
    if checkpoint.index != chunk.index || input.renditions.is_empty() {
        return Resume::Fresh;
    }
    let (first, end) = chunk.frame_range(input.frame_rate);
    let mut agreed: Option<(usize, u64)> = None;
    for r in &input.renditions {
        let Some(v) = checkpoint.variant(&r.name) else {
            return Resume::Fresh;
        };
        let here = (v.segments.len(), v.next_frame);
        if agreed.is_some_and(|a| a != here) {
            return Resume::Fresh;
        }
        agreed = Some(here);
    }
    let Some((published, next)) = agreed else {
        return Resume::Fresh;
    };
    if published == 0 || published as u32 > chunk.max_segments || next <= first || next > end {
        return Resume::Fresh;
    }
    if next == end && !chunk.last {
        return Resume::Complete;
    }
    if chunk.last && next + 1 >= end {
        // Possibly the chunk's final segment: not trusted to be complete.
        return Resume::Fresh;
    }
    Resume::From(RunStart {
        frame: next,
        segment: chunk.first_segment + published as u32,
    })
}

/// The single-decode command for one run of a chunk, writing `work/<variant>/NNNNN.ts`.
pub fn chunk_args(
    input: &LadderChunkInput,
    source: &Path,
    work: &Path,
    enc: &EncoderSettings,
    run: RunStart,
) -> FfmpegArgs {
    let n = input.renditions.len();
    let gpu = matches!(enc.video, VideoEncoder::Nvenc { .. });
    let (_, chunk_end) = input.chunk.frame_range(input.frame_rate);
    // The storyboard's tiles come from the same decode: one more branch of the split.
    let tiles = input.storyboard.as_ref().and_then(|plan| {
        let branch = storyboard::tile_branch(
            plan,
            run.frame..chunk_end,
            input.frame_rate,
            gpu,
            "st",
            "tiles",
        )?;
        let first = storyboard::tiles_in(
            run.frame..chunk_end,
            plan.interval_seconds,
            input.frame_rate,
        )
        .start;
        Some((branch, first))
    });
    let mut graph = format!("[0:v]split={}", n + usize::from(tiles.is_some()));
    for i in 0..n {
        graph.push_str(&format!("[s{i}]"));
    }
    if let Some((branch, _)) = &tiles {
        graph.push_str("[st];");
        graph.push_str(branch);
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
    let (first, end) = chunk.frame_range(input.frame_rate);
    if run.frame == first {
        let seek = (chunk.start_seconds - input.source_offset_seconds).max(0.0);
        a.input_at(seek, source);
    } else {
        // A resumed run starts at a frame, not a round time: the seek lands a quarter frame
        // before it, so that frame is the first kept and the rate conversion puts it first.
        let at = ChunkPlan::frame_time(run.frame, input.frame_rate)
            - input.source_offset_seconds
            - 0.25 / input.frame_rate.as_f64();
        a.opt("-ss", format!("{:.6}", at.max(0.0))).input(source);
    }
    a.opt("-filter_complex", graph);
    for i in 0..n {
        a.opt("-map", format!("[v{i}]"));
    }
    if !chunk.last {
        // An exact frame count, not a duration: 12 s of 29.97 fps is 359 or 360 frames
        // depending on where the chunk starts, and the next chunk starts right after.
        a.opt("-frames:v", (end - run.frame).to_string());
    }
    a.flag("-an").flag("-sn").flag("-dn");
    enc.video_codec_args(&mut a);
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
    // Timestamps continue from the run's first frame's place in the programme.
    a.opt(
        "-output_ts_offset",
        format!("{:.6}", ChunkPlan::frame_time(run.frame, input.frame_rate)),
    );
    let map = input
        .renditions
        .iter()
        .enumerate()
        .map(|(i, r)| format!("v:{i},name:{}", r.name))
        .collect::<Vec<_>>()
        .join(" ");
    hls_muxer_numbered(&mut a, work, input.segment_seconds, run.segment, map);
    if let Some((_, first)) = tiles {
        storyboard::tile_output(&mut a, "tiles", work, first);
    }
    a
}

/// Video packets in one local segment (demuxing only, no decode).
async fn count_frames(segment: &Path) -> Result<u64> {
    count_video_packets(&[], segment)
        .await
        .map_err(|e| MediaError::Verification(format!("chunk: {e}")))?
        .ok_or_else(|| {
            MediaError::Verification(format!(
                "chunk segment {} has no video packets",
                segment.display()
            ))
        })
}

/// How often a running encode is checked for finished segments.
const PUBLISH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Publishes the segments of one encoder run as they are finished.
struct Publisher<'a> {
    storage: &'a Storage,
    input: &'a LadderChunkInput,
    work: &'a Path,
    run: RunStart,
    /// Segments of this run published so far.
    published: u32,
    /// The first frame not yet published.
    next_frame: u64,
    checkpoint: &'a CheckpointSink,
}

impl Publisher<'_> {
    fn file(&self, rendition: &str, number: u32) -> PathBuf {
        self.work.join(rendition).join(segment_file_name(number))
    }

    /// Segments of this run that are finished in every rendition: followed by the next
    /// one, or all of them once the encoder has exited.
    fn finished(&self, exited: bool) -> u32 {
        let mut ready = u32::MAX;
        for r in &self.input.renditions {
            let mut n = self.published;
            while self.file(&r.name, self.run.segment + n).exists()
                && (exited || self.file(&r.name, self.run.segment + n + 1).exists())
            {
                n += 1;
            }
            ready = ready.min(n);
        }
        if ready == u32::MAX {
            0
        } else {
            ready
        }
    }

    /// Verifies and publishes every finished segment, in order.
    async fn publish_finished(&mut self, exited: bool) -> Result<()> {
        let ready = self.finished(exited);
        while self.published < ready {
            let last_of_run = exited && self.published + 1 == ready;
            self.publish_one(last_of_run).await?;
        }
        Ok(())
    }

    /// Verifies segment `published` of the run in every rendition and uploads it.
    async fn publish_one(&mut self, last_of_run: bool) -> Result<()> {
        let input = self.input;
        let chunk = &input.chunk;
        let rate = input.frame_rate;
        let number = self.run.segment + self.published;
        let (_, end) = chunk.frame_range(rate);
        let start = run_segment_start(
            self.run.frame,
            u64::from(self.published),
            input.segment_seconds,
            rate,
        );
        if chunk.first_segment + chunk.max_segments <= number || start >= end {
            return Err(MediaError::Verification(format!(
                "chunk {} made segment {number}, past its {} segments",
                chunk.index, chunk.max_segments
            )));
        }
        // A segment inside the run holds exactly the frames up to the next boundary; the
        // run's last holds the rest of the chunk (whose end, for the last chunk, is known to
        // a frame).
        let (expected, tolerance) = if last_of_run {
            (end - start, if chunk.last { 1 } else { 0 })
        } else {
            let next = run_segment_start(
                self.run.frame,
                u64::from(self.published) + 1,
                input.segment_seconds,
                rate,
            );
            (next.min(end) - start, 0)
        };
        let mut frames: Option<u64> = None;
        for r in &input.renditions {
            let counted = count_frames(&self.file(&r.name, number)).await?;
            if counted.abs_diff(expected) > tolerance {
                return Err(MediaError::Verification(format!(
                    "chunk {} segment {number} of {} has {counted} frames, expected {expected}",
                    chunk.index, r.name
                )));
            }
            if let Some(first) = frames.filter(|f| *f != counted) {
                return Err(MediaError::Verification(format!(
                    "chunk {} segment {number}: {} has {counted} frames but the first rendition {first}",
                    chunk.index, r.name
                )));
            }
            frames = Some(counted);
        }
        let frames = frames.unwrap_or(expected);
        let uri = segment_file_name(number);
        let storage = self.storage;
        let uploads = input.renditions.iter().map(|r| {
            let obj = ObjectRef::new(&input.bucket, hls_file_key(&input.prefix, &r.name, &uri));
            let path = self.file(&r.name, number);
            async move { storage.put_file(&path, &obj).await }
        });
        let sizes = futures::future::try_join_all(uploads).await?;
        self.next_frame = start + frames;
        let duration = frames as f64 * f64::from(rate.den) / f64::from(rate.num);
        for (r, bytes) in input.renditions.iter().zip(sizes) {
            self.checkpoint.push(
                &r.name,
                SegmentInfo {
                    uri: uri.clone(),
                    duration,
                    bytes,
                },
                self.next_frame,
            );
        }
        self.published += 1;
        Ok(())
    }
}

/// Encodes one chunk, publishing each segment once it is finished and verified, and
/// continuing after what `checkpoint` says earlier attempts published.
pub async fn encode_chunk(
    storage: &Storage,
    input: &LadderChunkInput,
    source: &Path,
    work: &Path,
    enc: &EncoderSettings,
    progress: &ScaledProgress,
    checkpoint: &CheckpointSink,
) -> Result<LadderChunkOutput> {
    if input.renditions.is_empty() {
        return Err(MediaError::Unsupported(
            "the plan has no video renditions".into(),
        ));
    }
    let chunk = &input.chunk;
    let names: Vec<String> = input.renditions.iter().map(|r| r.name.clone()).collect();
    let run = match resume_point(input, &checkpoint.snapshot()) {
        Resume::Complete => {
            tracing::info!(
                chunk = chunk.index,
                "every segment of the chunk was published by an earlier attempt"
            );
            return Ok(output_of(input, &checkpoint.snapshot(), enc));
        }
        Resume::From(run) => {
            tracing::info!(
                chunk = chunk.index,
                segment = run.segment,
                frame = run.frame,
                "resuming the chunk after the segments an earlier attempt published"
            );
            run
        }
        Resume::Fresh => {
            checkpoint.forget(&names);
            RunStart::fresh(input)
        }
    };
    let (_, end) = chunk.frame_range(input.frame_rate);
    let run_seconds = ChunkPlan::frame_time(end - run.frame, input.frame_rate);
    let args = chunk_args(input, source, work, enc, run);
    if input.storyboard.is_some() {
        let dir = storyboard::tiles_dir(work);
        std::fs::create_dir_all(&dir).map_err(MediaError::io("creating", &dir))?;
    }
    let mut publisher = Publisher {
        storage,
        input,
        work,
        run,
        published: 0,
        next_frame: run.frame,
        checkpoint,
    };
    let encode = ffmpeg(args.as_slice(), run_seconds, progress);
    tokio::pin!(encode);
    loop {
        tokio::select! {
            done = &mut encode => {
                done?;
                break;
            }
            _ = tokio::time::sleep(PUBLISH_EVERY) => publisher.publish_finished(false).await?,
        }
    }
    publisher.publish_finished(true).await?;

    // The run covered the chunk to its end: every frame is in exactly one segment.
    let tolerance = if chunk.last { 1 } else { 0 };
    if publisher.published == 0 || publisher.next_frame.abs_diff(end) > tolerance {
        return Err(MediaError::Verification(format!(
            "chunk {} ends at frame {}, expected {end}",
            chunk.index, publisher.next_frame
        )));
    }
    if let Some(plan) = &input.storyboard {
        storyboard::keep_tiles(storage, &input.bucket, plan, work).await?;
    }
    Ok(output_of(input, &checkpoint.snapshot(), enc))
}

/// The chunk's output from its checkpoint: every published segment of its renditions.
fn output_of(
    input: &LadderChunkInput,
    checkpoint: &ChunkCheckpoint,
    enc: &EncoderSettings,
) -> LadderChunkOutput {
    LadderChunkOutput {
        index: input.chunk.index,
        variants: input
            .renditions
            .iter()
            .map(|r| ChunkVariant {
                name: r.name.clone(),
                segments: checkpoint
                    .variant(&r.name)
                    .map(|v| v.segments.clone())
                    .unwrap_or_default(),
            })
            .collect(),
        encoder: enc.video_encoder_name().to_string(),
    }
}

/// [`encode_chunk`] within the worker's NVENC session budget: a chunk takes one session per
/// rung before its ffmpeg starts, runs its rungs in groups when the budget cannot hold them
/// all, and waits out a session that fails to open (the GPU busy with other encodes)
/// instead of failing. libx264 chunks run as they are.
/// Then notes the byte ranges of the chunk's IDR frames for the I-frame playlists.
#[allow(clippy::too_many_arguments)]
pub async fn encode_chunk_budgeted(
    storage: &Storage,
    input: &LadderChunkInput,
    source: &Path,
    work: &Path,
    enc: &EncoderSettings,
    budget: &NvencBudget,
    progress: &ScaledProgress,
    checkpoint: &CheckpointSink,
) -> Result<LadderChunkOutput> {
    let made = encode_within_budget(
        storage, input, source, work, enc, budget, progress, checkpoint,
    )
    .await?;
    crate::iframes::note_chunk(storage, &input.bucket, &input.prefix, &made, work).await?;
    Ok(made)
}

#[allow(clippy::too_many_arguments)]
async fn encode_within_budget(
    storage: &Storage,
    input: &LadderChunkInput,
    source: &Path,
    work: &Path,
    enc: &EncoderSettings,
    budget: &NvencBudget,
    progress: &ScaledProgress,
    checkpoint: &CheckpointSink,
) -> Result<LadderChunkOutput> {
    // (A plan without renditions is refused by `encode_chunk` itself.)
    if !matches!(enc.video, VideoEncoder::Nvenc { .. }) || input.renditions.is_empty() {
        return encode_chunk(storage, input, source, work, enc, progress, checkpoint).await;
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
            // The first group's decode cuts the storyboard's tiles.
            storyboard: input.storyboard.clone().filter(|_| i == 0),
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
            checkpoint,
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
#[allow(clippy::too_many_arguments)]
async fn encode_with_sessions(
    storage: &Storage,
    input: &LadderChunkInput,
    source: &Path,
    work: &Path,
    enc: &EncoderSettings,
    budget: &NvencBudget,
    progress: &ScaledProgress,
    checkpoint: &CheckpointSink,
) -> Result<LadderChunkOutput> {
    let mut waited = 0;
    loop {
        let sessions = budget.acquire(input.renditions.len()).await;
        // A try after a failed open continues after whatever the failed one published.
        let result = encode_chunk(storage, input, source, work, enc, progress, checkpoint).await;
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
mod tests;
