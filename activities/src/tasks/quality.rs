//! The `vmaf` action: the VMAF score of a distorted video against its reference, with
//! libvmaf's standard model (`vmaf_v0.6.1`, or another built-in one the payload names as
//! `model`), per-frame scores written where asked.
//!
//! As VMAF users prepare their inputs: both are decoded by ffmpeg to 4:2:0 at the
//! reference's depth (8-bit, or 10-bit for a reference of more than 8; upright, as
//! displayed); a distorted video of another size is scaled to the reference's with
//! bicubic scaling (how a player would show it on the reference's screen), and one of
//! another frame rate is resampled to the reference's rate (frames dropped or repeated by
//! timestamp), so frame `k` of each is the same moment. Frames are scored in pairs until
//! either ends; the answer gives both counts.

use super::io::refused;
use super::TaskIo;
use crate::error::{MediaError, Result};
use crate::ffmpeg::run::{ffmpeg_bin, ScaledProgress};
use crate::vmaf::{Scorer, Scores, MODEL};
use serde_json::{json, Value};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use transcoder_workflows::media::FrameRate;
use transcoder_workflows::task::VMAF_MODELS;
use transcoder_workflows::task::{TaskOutput, Vmaf};

/// What is scored: the reference's displayed size and rate.
#[derive(Clone)]
struct Plan {
    width: u32,
    height: u32,
    rate: FrameRate,
    expected_frames: f64,
    scaled: bool,
    resampled: bool,
    /// 8, or 10 for a reference deeper than 8 bits.
    bits: u32,
    model: String,
}

pub async fn vmaf(
    io: &TaskIo<'_>,
    task: &Vmaf,
    work: &Path,
    progress: &ScaledProgress,
) -> Result<Value> {
    let output = task.output.as_ref().map(|uri| TaskOutput::Uri(uri.clone()));
    if let Some(out) = &output {
        io.check_output("data.output", out)?;
    }
    let reference = io
        .input("data.input1", &task.reference, work, "reference")
        .await?;
    let distorted = io
        .input("data.input2", &task.distorted, work, "distorted")
        .await?;
    let video = |path: PathBuf, field: &'static str| async move {
        let probe = crate::probe::probe_file(&path).await?;
        probe
            .video
            .clone()
            .map(|v| (v, probe.duration_seconds))
            .ok_or_else(|| refused(field, "the file has no video stream"))
    };
    let (ref_video, ref_seconds) = video(reference.clone(), "data.input1").await?;
    let (dist_video, _) = video(distorted.clone(), "data.input2").await?;
    let (width, height) = ref_video.display_size();
    let rate = ref_video
        .avg_frame_rate
        .or(ref_video.frame_rate)
        .unwrap_or(FrameRate { num: 25, den: 1 });
    let dist_rate = dist_video.avg_frame_rate.or(dist_video.frame_rate);
    let plan = Plan {
        width,
        height,
        rate,
        expected_frames: ref_seconds * rate.as_f64(),
        scaled: dist_video.display_size() != (width, height),
        resampled: dist_rate.is_some_and(|r| (r.as_f64() - rate.as_f64()).abs() > 0.001),
        bits: if ref_video.bit_depth() > 8 { 10 } else { 8 },
        model: task
            .model
            .clone()
            .filter(|m| VMAF_MODELS.contains(&m.as_str()))
            .unwrap_or_else(|| MODEL.to_string()),
    };

    let cancelled = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = CancelOnDrop(Arc::clone(&cancelled));
    let sink = progress.clone();
    let (scores, counts) = {
        let (reference, distorted) = (reference.clone(), distorted.clone());
        let plan_for_thread = plan.clone();
        let flag = Arc::clone(&cancelled);
        tokio::task::spawn_blocking(move || {
            score(&reference, &distorted, &plan_for_thread, &flag, &sink)
        })
        .await
        .map_err(|e| MediaError::Verification(format!("the VMAF thread stopped: {e}")))??
    };
    let mut answer = json!({
        "vmaf": round3(scores.mean),
        "vmaf_harmonic_mean": round3(scores.harmonic_mean),
        "vmaf_min": round3(scores.min),
        "vmaf_max": round3(scores.max),
        "model": plan.model,
        "bit_depth": plan.bits,
        "frames": scores.per_frame.len(),
        "frames_reference": counts.0,
        "frames_distorted": counts.1,
        "width": width,
        "height": height,
        "frame_rate": rate.to_ffmpeg(),
        "distorted_scaled": plan.scaled,
        "distorted_resampled": plan.resampled,
    });
    if let Some(out) = &output {
        let file = work.join("vmaf.json");
        let log = per_frame_log(&scores, &plan.model);
        std::fs::write(&file, serde_json::to_vec_pretty(&log).unwrap_or_default())
            .map_err(MediaError::io("writing", &file))?;
        let delivered = io.output("data.output", out, &file).await?;
        answer["output"] = Value::String(delivered.location);
    }
    Ok(answer)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// libvmaf's own JSON log shape: frames with their metrics, and the pooled metrics.
fn per_frame_log(scores: &Scores, model: &str) -> Value {
    json!({
        "model": model,
        "frames": scores.per_frame.iter().enumerate()
            .map(|(i, s)| json!({"frameNum": i, "metrics": {"vmaf": s}}))
            .collect::<Vec<_>>(),
        "pooled_metrics": {"vmaf": {
            "min": scores.min, "max": scores.max,
            "mean": scores.mean, "harmonic_mean": scores.harmonic_mean}},
    })
}

/// Sets the flag when the activity's future is dropped (cancelled), so the scoring thread
/// stops its decoders.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// An ffmpeg decoding `path` to raw 4:2:0 frames in `pix_fmt` of the plan's size on its
/// stdout.
fn decoder(path: &Path, filters: &str, pix_fmt: &str) -> Result<Child> {
    let mut cmd = Command::new(ffmpeg_bin());
    crate::process::die_with_parent(&mut cmd);
    cmd.args([
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-protocol_whitelist",
        "file",
        "-i",
    ])
    .arg(path)
    .args([
        "-map", "0:v:0", "-an", "-sn", "-vf", filters, "-f", "rawvideo", "-pix_fmt", pix_fmt, "-",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .map_err(|source| MediaError::Spawn {
        tool: "ffmpeg",
        source,
    })
}

/// Reads one frame, or `None` at the end of the stream.
fn read_frame(child: &mut Child, buf: &mut [u8]) -> Result<Option<()>> {
    let Some(out) = child.stdout.as_mut() else {
        return Ok(None);
    };
    let mut filled = 0;
    while filled < buf.len() {
        match out.read(&mut buf[filled..]) {
            Ok(0) => return Ok(None),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(MediaError::Io {
                    context: "reading decoded frames",
                    path: PathBuf::from("ffmpeg stdout"),
                    source: e,
                })
            }
        }
    }
    Ok(Some(()))
}

fn score(
    reference: &Path,
    distorted: &Path,
    plan: &Plan,
    cancelled: &AtomicBool,
    progress: &ScaledProgress,
) -> Result<(Scores, (u64, u64))> {
    let (w, h) = (plan.width, plan.height);
    // Little-endian 16-bit words, as libvmaf reads 10-bit pictures.
    let pix_fmt = if plan.bits > 8 {
        "yuv420p10le"
    } else {
        "yuv420p"
    };
    let ref_filters = format!("scale={w}:{h}:flags=bicubic,format={pix_fmt}");
    let mut dist_filters = format!("scale={w}:{h}:flags=bicubic");
    if plan.resampled {
        dist_filters.push_str(&format!(",fps={}", plan.rate.to_ffmpeg()));
    }
    dist_filters.push_str(&format!(",format={pix_fmt}"));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u32;
    let mut scorer =
        Scorer::new(w, h, plan.bits, &plan.model, threads).map_err(MediaError::Verification)?;
    let mut ref_dec = decoder(reference, &ref_filters, pix_fmt)?;
    let mut dist_dec = decoder(distorted, &dist_filters, pix_fmt)?;
    let mut a = vec![0u8; scorer.frame_bytes()];
    let mut b = vec![0u8; scorer.frame_bytes()];
    let (mut ref_frames, mut dist_frames, mut scored) = (0u64, 0u64, 0u64);
    let result = loop {
        if cancelled.load(Ordering::Relaxed) {
            break Err(MediaError::Verification("cancelled".into()));
        }
        let got_a = read_frame(&mut ref_dec, &mut a)?;
        let got_b = read_frame(&mut dist_dec, &mut b)?;
        ref_frames += u64::from(got_a.is_some());
        dist_frames += u64::from(got_b.is_some());
        if got_a.is_none() || got_b.is_none() {
            // Count what the longer one still holds, for the answer.
            let (longer, count, buf) = if got_a.is_some() {
                (&mut ref_dec, &mut ref_frames, &mut a)
            } else {
                (&mut dist_dec, &mut dist_frames, &mut b)
            };
            if got_a.is_some() || got_b.is_some() {
                while read_frame(longer, buf)?.is_some() {
                    *count += 1;
                }
            }
            break Ok(());
        }
        scorer.push(&a, &b).map_err(MediaError::Verification)?;
        scored += 1;
        if plan.expected_frames > 0.0 {
            progress.set(scored as f64 / plan.expected_frames);
        }
    };
    for child in [&mut ref_dec, &mut dist_dec] {
        let _ = child.kill();
        let _ = child.wait();
    }
    result?;
    if scored == 0 {
        return Err(MediaError::Unreadable(
            "no frame of the two videos could be decoded in pairs".into(),
        ));
    }
    let scores = scorer.finish().map_err(MediaError::Verification)?;
    Ok((scores, (ref_frames, dist_frames)))
}
