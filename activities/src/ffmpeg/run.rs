//! Running ffmpeg/ffprobe: progress parsing, stderr capture, kill on cancellation.

use crate::error::{MediaError, Result};
use std::ffi::OsString;
use std::process::Stdio;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::watch;
use tracing::Instrument as _;

/// Where a long step reports how far it got (0.0..=1.0). Heartbeats read it.
#[derive(Clone, Debug)]
pub struct ProgressSink(Option<Arc<watch::Sender<f64>>>);

impl ProgressSink {
    pub fn none() -> Self {
        ProgressSink(None)
    }

    pub fn channel() -> (Self, watch::Receiver<f64>) {
        let (tx, rx) = watch::channel(0.0);
        (ProgressSink(Some(Arc::new(tx))), rx)
    }

    pub fn set(&self, fraction: f64) {
        if let Some(tx) = &self.0 {
            tx.send_replace(fraction.clamp(0.0, 1.0));
        }
    }

    /// A sink that maps this step's 0..1 onto `start..end` of the parent's range.
    pub fn scaled(&self, start: f64, end: f64) -> ScaledProgress {
        ScaledProgress {
            sink: self.clone(),
            start,
            end,
        }
    }
}

#[derive(Clone, Debug)]
pub struct ScaledProgress {
    sink: ProgressSink,
    start: f64,
    end: f64,
}

impl ScaledProgress {
    /// A part of this range: `start..end` of it.
    pub fn sub(&self, start: f64, end: f64) -> ScaledProgress {
        let span = self.end - self.start;
        ScaledProgress {
            sink: self.sink.clone(),
            start: self.start + span * start,
            end: self.start + span * end,
        }
    }

    pub fn set(&self, fraction: f64) {
        self.sink
            .set(self.start + (self.end - self.start) * fraction.clamp(0.0, 1.0));
    }
}

/// Keeps the last 256 KiB of a child's stderr: a warning per frame over a three-hour file
/// must not grow without bound, and the end is what says why it failed.
pub(crate) async fn read_stderr_tail(stderr: Option<tokio::process::ChildStderr>) -> Vec<u8> {
    const KEEP: usize = 256 * 1024;
    let mut buf = Vec::new();
    if let Some(mut s) = stderr {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = s.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > 2 * KEEP {
                buf.drain(..buf.len() - KEEP);
            }
        }
    }
    buf
}

/// Starts ffmpeg with piped stdout and stderr, dying with us and with the future that owns
/// it: a cancelled or timed-out activity drops the child, and the encode must stop with it.
pub(crate) fn spawn_ffmpeg(args: &[OsString]) -> Result<tokio::process::Child> {
    let mut cmd = Command::new(ffmpeg_bin());
    cmd.args(args);
    spawn_piped(cmd)
}

/// Starts `cmd` (an ffmpeg, or the launcher that confines one) as [`spawn_ffmpeg`] does.
fn spawn_piped(mut cmd: Command) -> Result<tokio::process::Child> {
    crate::process::die_with_parent(cmd.as_std_mut());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| MediaError::Spawn {
            tool: "ffmpeg",
            source,
        })
}

/// The ffmpeg to run: `FFMPEG`, else the one on the `PATH`.
pub fn ffmpeg_bin() -> OsString {
    std::env::var_os("FFMPEG").unwrap_or_else(|| "ffmpeg".into())
}

fn ffprobe_bin() -> OsString {
    std::env::var_os("FFPROBE").unwrap_or_else(|| "ffprobe".into())
}

/// Drops ffmpeg's `[mov,mp4 @ 0x55d…] ` context prefix: noise to a person reading the error.
fn strip_context_prefix(line: &str) -> &str {
    if let Some(rest) = line.strip_prefix('[') {
        if let Some((ctx, after)) = rest.split_once("] ") {
            if ctx.contains(" @ 0x") {
                return after.trim_start();
            }
        }
    }
    line
}

/// Keeps the end of a tool's stderr: the lines that say why it failed.
pub(crate) fn stderr_tail(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .map(strip_context_prefix)
        .filter(|l| !l.is_empty())
        .collect();
    let tail = lines[lines.len().saturating_sub(6)..].join(" | ");
    let mut tail: String = tail
        .chars()
        .rev()
        .take(1200)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if tail.is_empty() {
        tail = "no error output".to_string();
    }
    tail
}

/// ffmpeg's exit status when more of the decode calls failed than `-max_error_rate` allows
/// (2/3 when not given). It still wrote its output; that output hides the damage.
const DECODE_ERROR_LIMIT_EXIT: i32 = 69;

/// The decode error limit `args` set, as a percentage for people.
fn decode_error_limit(args: &[OsString]) -> String {
    let rate = args
        .windows(2)
        .find(|pair| pair[0] == "-max_error_rate")
        .and_then(|pair| pair[1].to_str()?.parse::<f64>().ok())
        .unwrap_or(2.0 / 3.0);
    format!("{:.0} %", rate * 100.0)
}

/// Runs ffmpeg with `args` (which must include `-progress pipe:1`, as [`FfmpegArgs::new`]
/// does). `duration` is the length of media being produced, for the progress fraction.
///
/// [`FfmpegArgs::new`]: super::FfmpegArgs::new
pub async fn ffmpeg(args: &[OsString], duration: f64, progress: &ScaledProgress) -> Result<()> {
    ffmpeg_with_stderr(args, duration, progress)
        .await
        .map(|_| ())
}

/// As [`ffmpeg`], returning what ffmpeg wrote on stderr (for filters that report there).
pub async fn ffmpeg_with_stderr(
    args: &[OsString],
    duration: f64,
    progress: &ScaledProgress,
) -> Result<String> {
    tracing::debug!(args = ?args, "ffmpeg");
    // One span per ffmpeg run, under the activity's span when traces are exported.
    let span = tracing::info_span!(
        "ffmpeg",
        encoder = %video_encoder_of(args).unwrap_or("none"),
        media.seconds = duration,
        realtime.factor = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        otel.status_message = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let result = run_ffmpeg(args, duration, progress)
        .instrument(span.clone())
        .await;
    match &result {
        Ok(_) => {
            if let Some(factor) = crate::metrics::realtime_factor(duration, started.elapsed()) {
                span.record("realtime.factor", factor);
            }
        }
        Err(e) => {
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_message", e.to_string().as_str());
        }
    }
    result
}

/// The video encoder named by `-c:v`/`-c:v:N` in an ffmpeg command line, if any.
fn video_encoder_of(args: &[OsString]) -> Option<&str> {
    args.windows(2).find_map(|pair| {
        let flag = pair[0].to_str()?;
        (flag == "-c:v" || flag.starts_with("-c:v:"))
            .then(|| pair[1].to_str())
            .flatten()
            .map(crate::metrics::encoder_label)
    })
}

async fn run_ffmpeg(args: &[OsString], duration: f64, progress: &ScaledProgress) -> Result<String> {
    let child = spawn_ffmpeg(args)?;
    follow_ffmpeg(child, args, duration, progress).await
}

/// Runs an ffmpeg inside a launcher: `launcher` with `launcher_args`, then the ffmpeg binary
/// and `args`, in `cwd`, with an environment of only `PATH` and what libraries and fonts
/// need. Progress and errors are read as for any ffmpeg.
pub async fn ffmpeg_launched(
    launcher: &std::path::Path,
    launcher_args: &[OsString],
    args: &[OsString],
    cwd: &std::path::Path,
    duration: f64,
    progress: &ScaledProgress,
) -> Result<()> {
    let mut cmd = Command::new(launcher);
    cmd.args(launcher_args)
        .arg(ffmpeg_bin())
        .args(args)
        .current_dir(cwd)
        .env_clear();
    for var in [
        "PATH",
        "LD_LIBRARY_PATH",
        "FONTCONFIG_FILE",
        "FONTCONFIG_PATH",
        "LANG",
    ] {
        if let Some(value) = std::env::var_os(var) {
            cmd.env(var, value);
        }
    }
    cmd.env("HOME", cwd);
    let child = spawn_piped(cmd)?;
    follow_ffmpeg(child, args, duration, progress)
        .await
        .map(|_| ())
}

/// Reads a running ffmpeg's progress and waits for it; its stderr's tail becomes the error.
async fn follow_ffmpeg(
    mut child: tokio::process::Child,
    args: &[OsString],
    duration: f64,
    progress: &ScaledProgress,
) -> Result<String> {
    let stderr = child.stderr.take();
    let stderr_task = tokio::spawn(read_stderr_tail(stderr));

    if let Some(stdout) = child.stdout.take() {
        let mut lines = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            // `out_time_us` is microseconds of output written (older builds call the same
            // microsecond value `out_time_ms`).
            let value = line
                .strip_prefix("out_time_us=")
                .or_else(|| line.strip_prefix("out_time_ms="));
            if let Some(us) = value.and_then(|v| v.trim().parse::<f64>().ok()) {
                if duration > 0.0 {
                    progress.set(us / 1e6 / duration);
                }
            } else if line == "progress=end" {
                progress.set(1.0);
            }
        }
    }
    let status = child.wait().await.map_err(|source| MediaError::Spawn {
        tool: "ffmpeg",
        source,
    })?;
    let stderr = stderr_task.await.unwrap_or_default();
    if status.success() {
        Ok(String::from_utf8_lossy(&stderr).into_owned())
    } else if status.code() == Some(DECODE_ERROR_LIMIT_EXIT) {
        Err(MediaError::Damaged(format!(
            "more than {} of its audio and video frames cannot be decoded (a broken or \
             partly overwritten file; upload it again)",
            decode_error_limit(args)
        )))
    } else {
        Err(MediaError::Tool {
            tool: "ffmpeg",
            status: status.to_string(),
            detail: stderr_tail(&stderr),
        })
    }
}

/// Runs a short-lived tool to its end with no input, collecting what it prints; it dies
/// with us, and with the activity that awaits it (`kill_on_drop`).
pub async fn run_to_end(
    tool: &'static str,
    bin: impl AsRef<std::ffi::OsStr>,
    args: &[OsString],
) -> Result<std::process::Output> {
    let mut cmd = Command::new(bin);
    crate::process::die_with_parent(cmd.as_std_mut());
    cmd.args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| MediaError::Spawn { tool, source })
}

/// Runs ffprobe with JSON output and returns the parsed document. A file ffprobe cannot
/// parse is [`MediaError::Unreadable`]: no retry will change that.
pub async fn ffprobe_json(args: &[OsString]) -> Result<serde_json::Value> {
    let mut all: Vec<OsString> = ["-v", "error", "-of", "json"]
        .iter()
        .map(OsString::from)
        .collect();
    all.extend(args.iter().cloned());
    let output = run_to_end("ffprobe", ffprobe_bin(), &all).await?;
    if !output.status.success() {
        return Err(MediaError::Unreadable(format!(
            "ffprobe: {}",
            stderr_tail(&output.stderr)
        )));
    }
    serde_json::from_slice(&output.stdout)
        .map_err(|e| MediaError::Unreadable(format!("ffprobe printed unparsable JSON: {e}")))
}

/// Packets of the first video stream of a local file, one per frame (demuxing only, no
/// decode). `input_options` go before the file (an HLS playlist needs its own). `None` when
/// the file has no video stream.
pub async fn count_video_packets(
    input_options: &[&str],
    path: &std::path::Path,
) -> Result<Option<u64>> {
    let mut args: Vec<OsString> = input_options.iter().map(OsString::from).collect();
    args.extend(
        [
            "-select_streams",
            "v:0",
            "-count_packets",
            "-show_entries",
            "stream=nb_read_packets",
        ]
        .map(OsString::from),
    );
    args.push(path.as_os_str().to_owned());
    let doc = ffprobe_json(&args).await?;
    Ok(doc["streams"][0]["nb_read_packets"]
        .as_str()
        .and_then(|v| v.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_error_limit_reads_the_args() {
        let args: Vec<OsString> = ["-max_error_rate", "0.05", "-i", "in"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(decode_error_limit(&args), "5 %");
        assert_eq!(decode_error_limit(&[]), "67 %");
    }

    #[test]
    fn stderr_tail_keeps_the_last_lines() {
        let raw = b"line1\n\nline2\nline3\nline4\nline5\nline6\nline7\n";
        assert_eq!(
            stderr_tail(raw),
            "line2 | line3 | line4 | line5 | line6 | line7"
        );
        assert_eq!(stderr_tail(b""), "no error output");
        assert_eq!(
            stderr_tail(b"[mov,mp4,m4a @ 0x5637] moov atom not found\n"),
            "moov atom not found"
        );
    }

    #[test]
    fn video_encoder_is_read_from_the_arguments() {
        let args: Vec<OsString> = ["-i", "in.mp4", "-c:v:0", "libx264", "-c:a", "aac"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(video_encoder_of(&args), Some("x264"));
        let audio: Vec<OsString> = ["-i", "in.mp4", "-c:a", "aac"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(video_encoder_of(&audio), None);
    }

    #[test]
    fn scaled_progress_maps_into_parent_range() {
        let (sink, rx) = ProgressSink::channel();
        let half = sink.scaled(0.5, 1.0);
        half.set(0.5);
        assert!((*rx.borrow() - 0.75).abs() < 1e-9);
        half.set(7.0);
        assert!((*rx.borrow() - 1.0).abs() < 1e-9);
    }
}
