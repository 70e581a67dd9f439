//! Helpers for the end-to-end tests: a Temporal dev server per test, media made with
//! ffmpeg's lavfi sources, a real HTTP webhook receiver that checks signatures, the real
//! `transcoder` binary run as a subprocess, and ffprobe/HLS inspection of what it wrote.
//!
//! Nothing here is a mock: every test talks to a real server, real ffmpeg and a real socket.

#![allow(dead_code)]

pub mod dashboard;
pub mod otlp;
pub mod prometheus;
pub mod s3;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::process::{Child, Command};
use transcoder::devserver::DevServer;

/// How long one `transcoder` command may run before the test fails instead of hanging.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(300);

/// Buckets `transcoder run` writes to (see the CLI contract).
pub const ARCHIVE_BUCKET: &str = "codex-archive";
pub const MEDIA_BUCKET: &str = "codex-media-local";
pub const ASSETS_BUCKET: &str = "codex-assets-local";

/// Environment variables from the developer's shell that could point the binary somewhere
/// other than this test's server and folders.
/// AES-256 key (hex) the test processes seal webhook secrets with.
pub const TEST_SECRETS_KEY: &str =
    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

const FOREIGN_ENV: &[&str] = &[
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_SERVICE_NAME",
    "TRANSCODER_METRICS_ADDR",
    "TRANSCODER_LOG_FORMAT",
    "TEMPORAL_ADDRESS",
    "TEMPORAL_CONFIG_FILE",
    "TEMPORAL_PROFILE",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_API_KEY",
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_CERT",
    "TEMPORAL_TLS_KEY",
    "TEMPORAL_TLS_CA",
    "TEMPORAL_TLS_SERVER_NAME",
    "TEMPORAL_TLS_DISABLE_HOST_VERIFICATION",
    "TEMPORAL_PROFILE",
    "TEMPORAL_CONFIG_FILE",
    "TRANSCODER_STATE_DIR",
    "TRANSCODER_OUT",
    "TRANSCODER_TASK_QUEUE",
    "TRANSCODER_WEBHOOK_SECRET",
    "TRANSCODER_SECRETS_KEY",
    "TRANSCODER_MAX_JOB_RETRIES",
    "TRANSCODER_ENCODER",
    "TRANSCODER_SHUTDOWN_GRACE",
    "TRANSCODER_SEGMENTS_PER_CHUNK",
    "TRANSCODER_ORIGINAL_RETENTION_SECONDS",
    "WEBHOOK_ALLOWED_HOSTS",
    "WEBHOOK_SIGNATURE_TIMESTAMPS",
    "WEBHOOK_RETRY_HOURS",
    "R2_ACCOUNT_ID",
    "R2_ACCESS_KEY_ID",
    "R2_SECRET_ACCESS_KEY",
    "R2_MEDIA_BUCKET",
    "R2_ASSETS_BUCKET",
    "B2_KEY_ID",
    "B2_APPLICATION_KEY",
    "B2_BUCKET_NAME",
    "B2_ENDPOINT",
    "B2_REGION",
    "S3_ENDPOINT_URL",
    "S3_REGION",
    "S3_ADDRESSING_STYLE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "R2_ENDPOINT_URL",
    "GCS_HMAC_ACCESS_KEY_ID",
    "GCS_HMAC_SECRET",
    "GCS_ENDPOINT_URL",
    "TRANSCODER_BUCKETS",
    "TRANSCODER_DEFAULT_STORAGE",
    "TRANSCODER_MAX_INPUT_BYTES",
    "TRANSCODER_MULTIPART_THRESHOLD",
    "TRANSCODER_MULTIPART_PART_SIZE",
    "TRANSCODER_CACHE_MAX_BYTES",
    "INPUT_ALLOWED_HOSTS",
];

// ---------------------------------------------------------------------------------------
// The per-test world: a temp folder and a Temporal dev server.
// ---------------------------------------------------------------------------------------

/// One test's private world. Fields drop in order: the server is killed before its state
/// folder is removed.
pub struct Harness {
    // In a mutex only because asking a child whether it exited needs `&mut`.
    server: Option<std::sync::Mutex<DevServer>>,
    pub tmp: TempDir,
}

impl Harness {
    /// A fresh temp folder and a dev server on free loopback ports with its state inside it.
    pub async fn start() -> Harness {
        let tmp = tempfile::Builder::new()
            .prefix("transcoder-e2e-")
            .tempdir()
            .expect("temp dir");
        let server = DevServer::start(&tmp.path().join("temporal"))
            .await
            .unwrap_or_else(|e| panic!("could not start the Temporal dev server: {e}"));
        Harness {
            server: Some(std::sync::Mutex::new(server)),
            tmp,
        }
    }

    /// A temp folder only (for tests that need no server, like `--help`).
    pub fn without_server() -> Harness {
        let tmp = tempfile::Builder::new()
            .prefix("transcoder-e2e-")
            .tempdir()
            .expect("temp dir");
        Harness { server: None, tmp }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn address(&self) -> String {
        self.server
            .as_ref()
            .expect("this harness has no server")
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .address()
    }

    /// The `transcoder` binary with this test's environment: its server, a temp state
    /// folder, the fast x264 preset, and nothing inherited that could point elsewhere.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_transcoder"));
        cmd.args(args);
        self.with_test_env(cmd)
    }

    /// Runs `transcoder ARGS` on a pseudo-terminal (util-linux `script`), for what is drawn
    /// only on a terminal, like `run`'s progress bars. The output's `stdout` is everything
    /// the terminal received, stdout and stderr together, escape sequences included.
    pub async fn run_in_terminal(&self, args: &[&str]) -> CmdOutput {
        let line = std::iter::once(env!("CARGO_BIN_EXE_transcoder"))
            .chain(args.iter().copied())
            .map(shell_quote)
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = Command::new("script");
        cmd.args([
            "--quiet",
            "--return",
            "--flush",
            "--command",
            &line,
            "/dev/null",
        ]);
        let out = run_to_end(self.with_test_env(cmd), &self.logs_dir(), CMD_TIMEOUT).await;
        if !out.status.success() {
            self.assert_server_alive(&out.dump());
        }
        out
    }

    fn with_test_env(&self, mut cmd: Command) -> Command {
        for var in FOREIGN_ENV {
            cmd.env_remove(var);
        }
        if self.server.is_some() {
            cmd.env("TEMPORAL_ADDRESS", self.address());
        }
        let state = self.path("state");
        std::fs::create_dir_all(&state).expect("state dir");
        cmd.env("TRANSCODER_STATE_DIR", &state)
            .env("TRANSCODER_X264_PRESET", "ultrafast")
            // Every process of a test (run, worker, submit) shares one sealing key.
            .env("TRANSCODER_SECRETS_KEY", TEST_SECRETS_KEY)
            // The project's own temporal CLI, wherever the build put the binary.
            .env(
                "TEMPORAL_CLI",
                Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/temporal"),
            )
            .current_dir(self.tmp.path())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `transcoder ARGS` to completion (or [`CMD_TIMEOUT`]) and captures its output.
    /// A failure caused by this test's own dev server dying is reported as that, with the
    /// server's log, rather than as whatever the command said about a refused connection.
    pub fn run(&self, args: &[&str]) -> impl std::future::Future<Output = CmdOutput> + '_ {
        let cmd = self.command(args);
        let logs = self.logs_dir();
        async move {
            let out = run_to_end(cmd, &logs, CMD_TIMEOUT).await;
            if !out.status.success() {
                self.assert_server_alive(&out.dump());
            }
            out
        }
    }

    /// Panics with the dev server's exit status and log tail if it is no longer running.
    pub fn assert_server_alive(&self, context: &str) {
        if let Some(server) = &self.server {
            let mut server = server.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(status) = server.exit_status() {
                let log = read_lossy(server.log_path());
                let start = log.len().saturating_sub(6_000);
                let tail = log.get(start..).unwrap_or(&log);
                panic!(
                    "this test's Temporal dev server died ({status})\n--- its log (tail) ---\n{tail}\n--- the command that noticed ---\n{context}"
                );
            }
        }
    }

    /// [`Harness::run`] with extra environment variables.
    pub async fn run_with_env<K, V>(
        &self,
        args: &[&str],
        env: impl IntoIterator<Item = (K, V)>,
    ) -> CmdOutput
    where
        K: AsRef<std::ffi::OsStr>,
        V: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = self.command(args);
        cmd.envs(env);
        let out = run_to_end(cmd, &self.logs_dir(), CMD_TIMEOUT).await;
        if !out.status.success() {
            self.assert_server_alive(&out.dump());
        }
        out
    }

    /// Starts `transcoder ARGS` in the background; the returned guard kills it on drop.
    pub fn spawn(&self, args: &[&str]) -> Background {
        self.spawn_with_env(args, &[])
    }

    /// [`Harness::spawn`] with extra environment variables.
    pub fn spawn_with_env(&self, args: &[&str], env: &[(&str, String)]) -> Background {
        let logs = self.logs_dir();
        let name = unique_name("bg");
        let stdout_path = logs.join(format!("{name}.stdout"));
        let stderr_path = logs.join(format!("{name}.stderr"));
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"));
        let child = cmd.spawn().expect("spawn transcoder");
        Background {
            child: Some(child),
            stdout_path,
            stderr_path,
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The project's `temporal` CLI with `args`, against this harness's server; it must
    /// succeed, and its stdout is returned.
    pub async fn temporal_cli(&self, args: &[&str]) -> String {
        let temporal = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/temporal");
        let out = tokio::process::Command::new(temporal)
            .args(args)
            .arg("--address")
            .arg(self.address())
            .output()
            .await
            .expect("the temporal CLI runs");
        assert!(
            out.status.success(),
            "temporal {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn logs_dir(&self) -> PathBuf {
        let dir = self.path("logs");
        std::fs::create_dir_all(&dir).expect("logs dir");
        dir
    }
}

fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", N.fetch_add(1, Ordering::SeqCst))
}

// ---------------------------------------------------------------------------------------
// Running the binary.
// ---------------------------------------------------------------------------------------

/// What a finished command left behind.
#[derive(Debug)]
pub struct CmdOutput {
    pub args: Vec<String>,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    /// The command, its exit status, stdout and the tail of stderr, for failure messages.
    pub fn dump(&self) -> String {
        let tail: String = {
            let chars: Vec<char> = self.stderr.chars().collect();
            let start = chars.len().saturating_sub(12_000);
            chars[start..].iter().collect()
        };
        format!(
            "command: transcoder {}\nstatus: {}\n--- stdout ---\n{}\n--- stderr (tail) ---\n{}\n--------------",
            self.args.join(" "),
            self.status,
            self.stdout,
            tail
        )
    }

    /// Stdout parsed as one JSON document (the `--json` contract: stdout is exactly the body).
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e})\n{}", self.dump()))
    }

    pub fn assert_success(&self) {
        assert!(self.status.success(), "expected exit 0\n{}", self.dump());
    }

    pub fn assert_failure(&self) {
        assert!(
            !self.status.success(),
            "expected a non-zero exit\n{}",
            self.dump()
        );
    }
}

/// Runs `cmd` with stdout/stderr going to files (so they survive a timeout), waits at most
/// `limit`, and kills it if it runs past that.
pub async fn run_to_end(mut cmd: Command, logs: &Path, limit: Duration) -> CmdOutput {
    let std_cmd = cmd.as_std();
    let args: Vec<String> = std_cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let name = unique_name("cmd");
    std::fs::create_dir_all(logs).expect("logs dir");
    let stdout_path = logs.join(format!("{name}.stdout"));
    let stderr_path = logs.join(format!("{name}.stderr"));
    cmd.stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"));
    let mut child = cmd.spawn().expect("spawn transcoder");
    let status = match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => status.expect("wait for transcoder"),
        Err(_) => {
            let _ = child.kill().await;
            let out = CmdOutput {
                args,
                status: child.wait().await.expect("wait after kill"),
                stdout: read_lossy(&stdout_path),
                stderr: read_lossy(&stderr_path),
            };
            panic!(
                "transcoder ran past {} s and was killed\n{}",
                limit.as_secs(),
                out.dump()
            );
        }
    };
    CmdOutput {
        args,
        status,
        stdout: read_lossy(&stdout_path),
        stderr: read_lossy(&stderr_path),
    }
}

/// `arg` as one word for `sh -c`.
fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', "'\\''"))
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// A background `transcoder` process (a worker). Dropping the guard kills it, so a panicking
/// test never leaves a worker behind.
pub struct Background {
    child: Option<Child>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    args: Vec<String>,
}

impl Background {
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .and_then(Child::id)
            .expect("process still running")
    }

    /// Whether it has already exited (a worker should not).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    #[allow(unsafe_code)] // kill(2)
    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.pid() as libc::pid_t;
        // SAFETY: kill(2) on the pid of a child this guard owns and has not reaped.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}) failed: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Waits at most `limit` for it to exit; `None` if it is still running.
    pub async fn wait_for_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut().expect("child");
        tokio::time::timeout(limit, child.wait())
            .await
            .ok()
            .map(|r| r.expect("wait"))
    }

    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    pub fn dump(&self) -> String {
        let stderr = self.stderr();
        let chars: Vec<char> = stderr.chars().collect();
        let tail: String = chars[chars.len().saturating_sub(12_000)..].iter().collect();
        format!(
            "background: transcoder {}\n--- stdout ---\n{}\n--- stderr (tail) ---\n{}\n--------------",
            self.args.join(" "),
            read_lossy(&self.stdout_path),
            tail
        )
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(None) = child.try_wait() {
                if std::thread::panicking() {
                    eprintln!("{}", self.dump());
                }
                let _ = child.start_kill();
            }
        }
    }
}

/// A path as the `&str` a command line takes (test folders are always UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Writes `job` as pretty JSON to `name` in the test's folder and returns its path.
pub fn write_job(h: &Harness, name: &str, job: &Value) -> PathBuf {
    let path = h.path(name);
    std::fs::write(&path, serde_json::to_vec_pretty(job).expect("json")).expect("write job");
    path
}

/// A loopback port free at the time of asking.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("probe a free loopback port")
        .port()
}

/// A media-api job payload (DESIGN §3.1) for an original already staged at
/// `originals/{creator}/{media}/original.mp4` in the archive bucket.
pub fn video_job_payload(media: &str, creator: &str, hook: &WebhookReceiver) -> Value {
    serde_json::json!({
        "mediaId": media,
        "creatorId": creator,
        "mediaType": "video",
        "inputBucket": ARCHIVE_BUCKET,
        "inputKey": format!("originals/{creator}/{media}/original.mp4"),
        "outputBucket": MEDIA_BUCKET,
        "outputPrefix": format!("{creator}/hls/{media}"),
        "assetsBucket": ASSETS_BUCKET,
        "webhookUrl": hook.url(),
        "webhookSecret": hook.secret,
    })
}

// ---------------------------------------------------------------------------------------
// fixtures/ at the top of the repository: the media and payloads the demo uses too.
// ---------------------------------------------------------------------------------------

/// `fixtures/<rel>`.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// A JSON fixture, e.g. `fixture_json("jobs/video.json")`.
pub fn fixture_json(rel: &str) -> Value {
    let path = fixture(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A string field of a fixture payload.
pub fn field<'a>(payload: &'a Value, name: &str) -> &'a str {
    payload[name]
        .as_str()
        .unwrap_or_else(|| panic!("the payload has no string {name}: {payload:#}"))
}

// ---------------------------------------------------------------------------------------
// Media made with ffmpeg.
// ---------------------------------------------------------------------------------------

/// Runs ffmpeg with `args` (quiet, overwriting), failing the test when it fails.
pub async fn ffmpeg(args: &[String]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run ffmpeg (is it installed?)");
    assert!(
        out.status.success(),
        "ffmpeg {:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An H.264 + AAC stereo MP4: `testsrc2` picture at `width`x`height`, `fps`, and a sine tone.
pub async fn make_video(path: &Path, width: u32, height: u32, seconds: u32, fps: u32) {
    let video = format!("testsrc2=size={width}x{height}:rate={fps}:duration={seconds}");
    let audio = format!("sine=frequency=440:sample_rate=48000:duration={seconds}");
    let extra = ["-b:a", "128k", "-movflags", "+faststart", "-shortest"];
    make_sources(path, &video, &audio, 0.0, &extra).await;
}

/// Two lavfi sources, a picture and a sound, muxed as H.264/AAC; the sound starts
/// `audio_offset` seconds after the picture.
pub async fn make_sources(
    path: &Path,
    video: &str,
    audio: &str,
    audio_offset: f64,
    extra: &[&str],
) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let offset = audio_offset.to_string();
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        video,
        "-itsoffset",
        &offset,
        "-f",
        "lavfi",
        "-i",
        audio,
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-ac",
        "2",
    ];
    args.extend_from_slice(extra);
    args.push(s(path));
    ffmpeg_make(&args).await;
}

/// A stereo MP3 of a sine tone (speech-podcast-like upload).
pub async fn make_audio_mp3(path: &Path, seconds: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let args: Vec<String> = [
        "-f",
        "lavfi",
        "-i",
        &format!("sine=frequency=330:sample_rate=44100:duration={seconds}"),
        "-ac",
        "2",
        "-c:a",
        "libmp3lame",
        "-b:a",
        "192k",
        path.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    ffmpeg(&args).await;
}

/// Random bytes in a file named like a video: not a readable media file.
pub fn make_corrupt(path: &Path, bytes: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // xorshift64*: deterministic "random" bytes, no magic numbers of any container.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut data = Vec::with_capacity(bytes);
    while data.len() < bytes {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        data.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    data.truncate(bytes);
    std::fs::write(path, data).unwrap();
}

// ---------------------------------------------------------------------------------------
// Inspecting outputs.
// ---------------------------------------------------------------------------------------

/// `ffprobe -show_format -show_streams` as JSON; `Err` with ffprobe's message if it cannot
/// read the file.
pub async fn ffprobe(path: &Path) -> Result<Value, String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_format",
            "-show_streams",
            "-of",
            "json",
        ])
        .arg(path)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("could not run ffprobe: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ffprobe {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("ffprobe output is not JSON: {e}"))
}

/// The streams of one `codec_type` in an ffprobe result.
pub fn streams<'a>(probe: &'a Value, codec_type: &str) -> Vec<&'a Value> {
    probe["streams"]
        .as_array()
        .map(|s| s.iter().filter(|s| s["codec_type"] == codec_type).collect())
        .unwrap_or_default()
}

/// Where object `bucket/key` lives under an `--out` folder.
pub fn object_path(out: &Path, bucket: &str, key: &str) -> PathBuf {
    assert!(
        !key.starts_with('/') && !key.contains(".."),
        "odd key {key:?}"
    );
    out.join(bucket).join(key)
}

pub fn read_master(path: &Path) -> m3u8_rs::MasterPlaylist {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    match m3u8_rs::parse_playlist_res(&bytes) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(m)) => m,
        Ok(m3u8_rs::Playlist::MediaPlaylist(_)) => {
            panic!(
                "{} is a media playlist, expected a master:\n{}",
                path.display(),
                String::from_utf8_lossy(&bytes)
            )
        }
        Err(e) => panic!(
            "{} does not parse as HLS ({e:?}):\n{}",
            path.display(),
            String::from_utf8_lossy(&bytes)
        ),
    }
}

pub fn read_media(path: &Path) -> (m3u8_rs::MediaPlaylist, String) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let text = String::from_utf8_lossy(&bytes).into_owned();
    match m3u8_rs::parse_playlist_res(&bytes) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(m)) => (m, text),
        Ok(m3u8_rs::Playlist::MasterPlaylist(_)) => {
            panic!(
                "{} is a master playlist, expected a media playlist:\n{text}",
                path.display()
            )
        }
        Err(e) => panic!("{} does not parse as HLS ({e:?}):\n{text}", path.display()),
    }
}

/// The variant's name: the folder of its playlist URI (`720p/playlist.m3u8` → `720p`).
pub fn variant_name(uri: &str) -> String {
    let parts: Vec<&str> = uri.split('/').collect();
    assert_eq!(
        parts.len(),
        2,
        "variant URI should be {{variant}}/playlist.m3u8, got {uri:?}"
    );
    assert_eq!(
        parts[1], "playlist.m3u8",
        "variant URI should be {{variant}}/playlist.m3u8, got {uri:?}"
    );
    parts[0].to_string()
}

/// Checks a VOD media playlist and returns, for each segment, a file ffprobe can read (for
/// fMP4 segments, the init section joined with the segment) and its `#EXTINF` duration.
pub fn check_vod_playlist(playlist_path: &Path) -> Vec<(PathBuf, f64)> {
    let (pl, text) = read_media(playlist_path);
    assert!(
        pl.end_list,
        "{} has no #EXT-X-ENDLIST:\n{text}",
        playlist_path.display()
    );
    assert!(
        text.lines().any(|l| l.trim() == "#EXT-X-ENDLIST"),
        "{} has no #EXT-X-ENDLIST line:\n{text}",
        playlist_path.display()
    );
    assert_eq!(
        pl.playlist_type,
        Some(m3u8_rs::MediaPlaylistType::Vod),
        "{} is not #EXT-X-PLAYLIST-TYPE:VOD:\n{text}",
        playlist_path.display()
    );
    assert!(
        !pl.segments.is_empty(),
        "{} lists no segments:\n{text}",
        playlist_path.display()
    );
    let dir = playlist_path.parent().unwrap();
    let mut init: Option<PathBuf> = None;
    let mut files = Vec::new();
    for (i, seg) in pl.segments.iter().enumerate() {
        assert!(
            !seg.uri.contains("://") && !seg.uri.starts_with('/') && !seg.uri.contains(".."),
            "segment URI should be relative, got {:?}",
            seg.uri
        );
        assert!(
            seg.duration > 0.0,
            "segment {} has duration {}",
            seg.uri,
            seg.duration
        );
        // RFC 8216 §4.3.3.1: every EXTINF, rounded, is at most EXT-X-TARGETDURATION.
        assert!(
            (f64::from(seg.duration)).round() as u64 <= pl.target_duration,
            "segment {} lasts {} s, over the target duration {}:\n{text}",
            seg.uri,
            seg.duration,
            pl.target_duration
        );
        let stem = Path::new(&seg.uri)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("");
        assert!(
            !stem.is_empty() && stem.chars().all(|c| c.is_ascii_digit()),
            "segment names should be numeric, got {:?}",
            seg.uri
        );
        if let Some(map) = &seg.map {
            init = Some(dir.join(&map.uri));
        }
        let path = dir.join(&seg.uri);
        assert!(
            path.is_file(),
            "segment {} (#{i}) listed in {} is missing",
            path.display(),
            playlist_path.display()
        );
        match &init {
            Some(init_path) => {
                assert!(
                    init_path.is_file(),
                    "init section {} is missing",
                    init_path.display()
                );
                let joined = path.with_extension("joined-for-probe.mp4");
                let mut bytes = std::fs::read(init_path).unwrap();
                bytes.extend(std::fs::read(&path).unwrap());
                std::fs::write(&joined, bytes).unwrap();
                files.push((joined, f64::from(seg.duration)));
            }
            None => files.push((path, f64::from(seg.duration))),
        }
    }
    files
}

/// Asserts that `body.output[field]` is a key of an existing, non-empty object in `bucket`.
pub fn assert_object_exists(out: &Path, bucket: &str, key: &str) -> PathBuf {
    let path = object_path(out, bucket, key);
    let meta = std::fs::metadata(&path).unwrap_or_else(|e| {
        panic!(
            "{bucket}/{key} is in the webhook but not on disk at {}: {e}",
            path.display()
        )
    });
    assert!(
        meta.is_file() && meta.len() > 0,
        "{} is empty or not a file",
        path.display()
    );
    path
}

/// Every file under `root`, recursively.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

pub fn approx(value: &Value, expected: f64, tolerance: f64) -> bool {
    value
        .as_f64()
        .is_some_and(|v| (v - expected).abs() <= tolerance)
}

// ---------------------------------------------------------------------------------------
// The webhook receiver.
// ---------------------------------------------------------------------------------------

type HmacSha256 = Hmac<Sha256>;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    pub signature: Option<String>,
    pub timestamp: Option<String>,
    pub content_type: Option<String>,
    /// The signature verified against the secret (answered 200; otherwise 401).
    pub valid: bool,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "webhook body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A real HTTP server on 127.0.0.1:0 that plays media-api's webhook endpoint: it checks
/// `X-Runpod-Signature` (hex HMAC-SHA256 of the raw body, or of `"<ts>.<body>"` when
/// `X-Runpod-Timestamp` is sent) and answers 401 when it does not verify.
pub struct WebhookReceiver {
    server: Arc<tiny_http::Server>,
    received: Arc<Mutex<Vec<Received>>>,
    thread: Option<JoinHandle<()>>,
    port: u16,
    pub secret: String,
}

impl WebhookReceiver {
    pub fn start(secret: &str) -> WebhookReceiver {
        Self::start_failing_first(secret, 0, 500)
    }

    /// A receiver that answers `status` to its first `failures` requests (as a receiver in
    /// the middle of a deploy would), then verifies and accepts as usual.
    pub fn start_failing_first(label: &str, failures: usize, status: u16) -> WebhookReceiver {
        // Long enough for the 16-character minimum, and still unique to the test.
        let secret = &format!("{label}-test-signing-key");
        let server =
            Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind webhook receiver"));
        let port = server.server_addr().to_ip().expect("ip listener").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let server = Arc::clone(&server);
            let received = Arc::clone(&received);
            let secret = secret.to_string();
            std::thread::spawn(move || {
                while let Ok(mut request) = server.recv() {
                    let mut body = Vec::new();
                    let _ = request.as_reader().read_to_end(&mut body);
                    let headers: Vec<(String, String)> = request
                        .headers()
                        .iter()
                        .map(|h| {
                            (
                                h.field.as_str().as_str().to_ascii_lowercase(),
                                h.value.as_str().to_string(),
                            )
                        })
                        .collect();
                    let header = |name: &str| {
                        let name = name.to_ascii_lowercase();
                        headers
                            .iter()
                            .find(|(k, _)| *k == name)
                            .map(|(_, v)| v.clone())
                    };
                    let signature = header("X-Runpod-Signature");
                    let timestamp = header("X-Runpod-Timestamp");
                    let content_type = header("Content-Type");
                    let valid = request.method() == &tiny_http::Method::Post
                        && verify(&secret, &body, signature.as_deref(), timestamp.as_deref());
                    received.lock().unwrap().push(Received {
                        method: request.method().to_string(),
                        path: request.url().to_string(),
                        body,
                        signature,
                        timestamp,
                        content_type,
                        valid,
                    });
                    let seen = received.lock().unwrap().len();
                    let response = if seen <= failures {
                        tiny_http::Response::from_string("try again later").with_status_code(status)
                    } else if valid {
                        tiny_http::Response::from_string("ok").with_status_code(200)
                    } else {
                        tiny_http::Response::from_string("bad signature").with_status_code(401)
                    };
                    let _ = request.respond(response);
                }
            })
        };
        WebhookReceiver {
            server,
            received,
            thread: Some(thread),
            port,
            secret: secret.to_string(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/webhooks/transcode", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (or `limit` passed) and returns them all.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got = self.received();
            if got.len() >= n || start.elapsed() > limit {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Asserts exactly one request arrived, that it was a signed JSON POST that verified, and
    /// returns its body. Waits a little after the first one so a duplicate would be seen.
    pub async fn expect_one_valid(&self) -> Value {
        let got = self.wait_for(1, Duration::from_secs(60)).await;
        assert!(!got.is_empty(), "the webhook receiver got no request");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let got = self.received();
        assert_eq!(
            got.len(),
            1,
            "expected exactly one webhook request, got {}: {:#?}",
            got.len(),
            got.iter()
                .map(|r| (r.valid, String::from_utf8_lossy(&r.body).into_owned()))
                .collect::<Vec<_>>()
        );
        let r = &got[0];
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/webhooks/transcode");
        assert!(
            r.signature.is_some(),
            "webhook has no X-Runpod-Signature header"
        );
        assert!(
            r.valid,
            "webhook signature {:?} (timestamp {:?}) does not verify for body {}",
            r.signature,
            r.timestamp,
            String::from_utf8_lossy(&r.body)
        );
        if let Some(ct) = &r.content_type {
            assert!(
                ct.starts_with("application/json"),
                "webhook Content-Type is {ct:?}"
            );
        }
        r.json()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `hex(HMAC-SHA256(secret, body))`, or over `"<ts>.<body>"` with a fresh timestamp.
pub fn verify(secret: &str, body: &[u8], signature: Option<&str>, timestamp: Option<&str>) -> bool {
    let Some(signature) = signature else {
        return false;
    };
    let Ok(sig) = hex::decode(signature.trim()) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
    if let Some(ts) = timestamp {
        let ts = ts.trim();
        let Ok(seconds) = ts.parse::<u64>() else {
            return false;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        if now.abs_diff(seconds) > 300 {
            return false;
        }
        mac.update(ts.as_bytes());
        mac.update(b".");
    }
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Text that betrays a stack dump or a panic rather than a message for a person.
pub fn looks_like_stack_dump(text: &str) -> bool {
    let lower = text.to_lowercase();
    [
        "panicked at",
        "stack backtrace",
        "rust_backtrace",
        "\n   0: ",
        "at src/",
        ".rs:",
        "goroutine ",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}

// ---------------------------------------------------------------------------------------
// Helpers for hostile inputs (tests/integration/hard_inputs.rs).
// ---------------------------------------------------------------------------------------

/// Runs `ffmpeg ARGS` (quiet, overwrite) and fails the test with its message if it fails.
pub async fn ffmpeg_make(args: &[&str]) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    ffmpeg(&args).await;
}

/// Runs `ffprobe ARGS` and returns its stdout parsed as JSON (`-of json` is up to the caller).
pub async fn ffprobe_json(args: &[&str]) -> Result<Value, String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("could not run ffprobe: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ffprobe {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("ffprobe output is not JSON: {e}"))
}

/// The packets of one stream (`selector` like `v:0`): pts, dts and duration in its time base.
pub async fn ffprobe_packets(path: &Path, selector: &str) -> Vec<Value> {
    let p = path.to_str().expect("utf-8 path");
    let probe = ffprobe_json(&[
        "-select_streams",
        selector,
        "-show_entries",
        "packet=pts,dts,duration,flags:stream=time_base",
        "-of",
        "json",
        p,
    ])
    .await
    .unwrap_or_else(|e| panic!("packets of {}: {e}", path.display()));
    probe["packets"].as_array().cloned().unwrap_or_default()
}

/// Sets the display matrix of the first video track of an MP4/MOV file in place, the way a
/// phone records a portrait clip: the coded picture stays as is and the `tkhd` matrix says
/// "rotate `degrees` clockwise for display" (ffprobe then reports rotation `-degrees`).
pub fn set_mp4_rotation(path: &Path, degrees: u32) {
    fn boxes(data: &[u8], start: usize, end: usize) -> Vec<([u8; 4], usize, usize)> {
        // (type, payload start, box end)
        let mut out = Vec::new();
        let mut pos = start;
        while pos + 8 <= end {
            let mut size = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
            let kind: [u8; 4] = data[pos + 4..pos + 8].try_into().unwrap();
            let mut header = 8;
            if size == 1 {
                size = u64::from_be_bytes(data[pos + 8..pos + 16].try_into().unwrap()) as usize;
                header = 16;
            } else if size == 0 {
                size = end - pos;
            }
            assert!(size >= header && pos + size <= end, "malformed MP4 box");
            out.push((kind, pos + header, pos + size));
            pos += size;
        }
        out
    }
    let mut data = std::fs::read(path).unwrap();
    let len = data.len();
    let mut matrix_at = None;
    'moov: for (kind, start, end) in boxes(&data, 0, len) {
        if &kind != b"moov" {
            continue;
        }
        for (kind, start, end) in boxes(&data, start, end) {
            if &kind != b"trak" {
                continue;
            }
            let mut tkhd = None;
            let mut is_video = false;
            for (kind, start, end) in boxes(&data, start, end) {
                if &kind == b"tkhd" {
                    tkhd = Some(start);
                }
                if &kind == b"mdia" {
                    for (kind, start, _) in boxes(&data, start, end) {
                        // hdlr: version+flags (4), pre_defined (4), handler_type (4).
                        if &kind == b"hdlr" && &data[start + 8..start + 12] == b"vide" {
                            is_video = true;
                        }
                    }
                }
            }
            if let (true, Some(tkhd)) = (is_video, tkhd) {
                // tkhd v0: version/flags 4, times+track id+reserved+duration 20, reserved 8,
                // layer/group/volume/reserved 8, then the 3x3 matrix; v1 has 12 more bytes.
                let offset = if data[tkhd] == 1 { 52 } else { 40 };
                matrix_at = Some(tkhd + offset);
                break 'moov;
            }
        }
    }
    let at = matrix_at.unwrap_or_else(|| panic!("{} has no video tkhd", path.display()));
    let width = u32::from_be_bytes(data[at + 36..at + 40].try_into().unwrap()) >> 16;
    let height = u32::from_be_bytes(data[at + 40..at + 44].try_into().unwrap()) >> 16;
    let one: i32 = 1 << 16;
    let (w, h) = (width as i32, height as i32);
    // {a, b, u, c, d, v, x, y, w}: x' = a*x + c*y + tx, y' = b*x + d*y + ty (16.16; w 2.30).
    let m: [i32; 9] = match degrees % 360 {
        0 => [one, 0, 0, 0, one, 0, 0, 0, 1 << 30],
        90 => [0, one, 0, -one, 0, 0, h * one, 0, 1 << 30],
        180 => [-one, 0, 0, 0, -one, 0, w * one, h * one, 1 << 30],
        270 => [0, -one, 0, one, 0, 0, 0, w * one, 1 << 30],
        other => panic!("rotation {other} is not a multiple of 90"),
    };
    for (i, v) in m.iter().enumerate() {
        data[at + 4 * i..at + 4 * i + 4].copy_from_slice(&v.to_be_bytes());
    }
    std::fs::write(path, data).unwrap();
}

/// Decodes the first video frame of `path` as 8-bit gray: (width, height, pixels).
pub async fn decode_gray_frame(path: &Path) -> (u32, u32, Vec<u8>) {
    let probe = ffprobe(path).await.expect("probe for frame size");
    let video = streams(&probe, "video");
    assert!(!video.is_empty(), "{} has no video", path.display());
    let w = video[0]["width"].as_u64().unwrap() as u32;
    let h = video[0]["height"].as_u64().unwrap() as u32;
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(path)
        .args([
            "-map",
            "0:v:0",
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ])
        .kill_on_drop(true)
        .output()
        .await
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "decoding a frame of {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.stdout.len(),
        (w * h) as usize,
        "decoded frame of {} is not {w}x{h}",
        path.display()
    );
    (w, h, out.stdout)
}

/// Mean gray level of the rows `[y0, y1)` of a frame.
pub fn mean_rows(frame: &(u32, u32, Vec<u8>), y0: u32, y1: u32) -> f64 {
    let (w, _, px) = frame;
    let rows = &px[(y0 * w) as usize..(y1 * w) as usize];
    rows.iter().map(|&p| f64::from(p)).sum::<f64>() / rows.len() as f64
}

/// Runs `ffmpeg -i PATH -map MAP FLAG FILTER -f null -` for a measuring filter (`idet`,
/// `silencedetect`, `ebur128`) and returns what it printed on stderr, where such filters
/// report.
async fn filter_report(path: &Path, map: &str, flag: &str, filter: &str) -> String {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-nostdin", "-i"])
        .arg(path)
        .args(["-map", map, flag, filter, "-f", "null", "-"])
        .kill_on_drop(true)
        .output()
        .await
        .expect("run ffmpeg");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{filter} on {} failed: {stderr}",
        path.display()
    );
    stderr
}

/// What ffmpeg's `idet` filter sees in the video of `path` (its multi-frame verdict, which
/// looks at the neighbours of each frame): `(interlaced, progressive)` frame counts. Combing
/// left in a picture reads as interlaced.
pub async fn interlace_detection(path: &Path) -> (u64, u64) {
    let stderr = filter_report(path, "0:v:0", "-vf", "idet").await;
    let verdict = stderr
        .lines()
        .find_map(|l| {
            l.split_once("Multi frame detection:")
                .map(|(_, v)| v.to_string())
        })
        .unwrap_or_else(|| panic!("no idet verdict for {}: {stderr}", path.display()));
    // "TFF:    12 BFF:     0 Progressive:    88 Undetermined:     0"
    let count = |label: &str| -> u64 {
        verdict
            .split_once(label)
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {label} in idet verdict {verdict:?}"))
    };
    (count("TFF:") + count("BFF:"), count("Progressive:"))
}

/// The silent stretches of the audio of `path` (below -50 dBFS for at least 0.3 s), as
/// `(start, end)` seconds from its first sample; a silence running to the end ends at `None`.
pub async fn silences(path: &Path) -> Vec<(f64, Option<f64>)> {
    let stderr = filter_report(path, "0:a:0", "-af", "silencedetect=n=-50dB:d=0.3").await;
    let after = |line: &str, label: &str| -> Option<f64> {
        line.split_once(label)
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    let mut spans: Vec<(f64, Option<f64>)> = Vec::new();
    for line in stderr.lines() {
        if let Some(start) = after(line, "silence_start: ") {
            spans.push((start, None));
        } else if let Some(end) = after(line, "silence_end: ") {
            if let Some(last) = spans.last_mut() {
                last.1 = Some(end);
            }
        }
    }
    spans
}

/// EBU R128 measurement of the audio of `path` with ffmpeg's `ebur128=peak=true`:
/// (integrated loudness in LUFS, true peak in dBTP). `None` for -inf (silence).
pub async fn measure_loudness(path: &Path) -> (Option<f64>, Option<f64>) {
    let stderr = filter_report(path, "0:a:0", "-af", "ebur128=peak=true:framelog=verbose").await;
    let summary = stderr
        .rsplit_once("Summary:")
        .unwrap_or_else(|| panic!("no ebur128 summary for {}: {stderr}", path.display()))
        .1;
    let value = |label: &str| -> Option<f64> {
        summary
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite())
    };
    (value("I:"), value("Peak:"))
}

/// Byte-concatenates files (MPEG-TS segments join into one playable stream).
pub fn concat_files(parts: &[PathBuf], dest: &Path) {
    let mut bytes = Vec::new();
    for p in parts {
        bytes.extend(std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())));
    }
    std::fs::write(dest, bytes).unwrap();
}

// ---------------------------------------------------------------------------------------
// Helpers for the durability tests (tests/integration/durability.rs): workflow history read with the
// real `temporal` CLI, payloads decoded for searching, processes found through /proc.
// ---------------------------------------------------------------------------------------

impl Background {
    /// What it has written on stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }
}

/// The `temporal` CLI the dev server runs from (`TEMPORAL_CLI`, the project `.venv`, PATH).
pub fn temporal_cli() -> PathBuf {
    DevServer::find_cli().unwrap_or_else(|e| panic!("no temporal CLI: {e}"))
}

/// Runs `temporal ARGS --address ADDRESS --output json` and parses its stdout.
pub async fn temporal_json(address: &str, args: &[&str]) -> Value {
    let mut cmd = Command::new(temporal_cli());
    for var in FOREIGN_ENV {
        cmd.env_remove(var);
    }
    cmd.args(args)
        .args(["--address", address, "--output", "json"])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("temporal {args:?} took over 60 s"))
        .expect("run the temporal CLI");
    assert!(
        out.status.success(),
        "temporal {args:?} --address {address} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Value::Array(Vec::new());
    }
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("temporal {args:?} printed no JSON ({e}):\n{text}"))
}

/// The event history of the latest run of a workflow (`{"events": [...]}`).
pub async fn workflow_history(address: &str, workflow_id: &str) -> Value {
    temporal_json(address, &["workflow", "show", "--workflow-id", workflow_id]).await
}

/// The event history of one run of a workflow.
pub async fn workflow_run_history(address: &str, workflow_id: &str, run_id: &str) -> Value {
    temporal_json(
        address,
        &[
            "workflow",
            "show",
            "--workflow-id",
            workflow_id,
            "--run-id",
            run_id,
        ],
    )
    .await
}

/// Workflow executions matching a visibility query (every run, newest first); an empty
/// query lists all of them.
pub async fn list_workflows(address: &str, query: &str) -> Vec<Value> {
    let mut args = vec!["workflow", "list"];
    if !query.is_empty() {
        args.extend(["--query", query]);
    }
    match temporal_json(address, &args).await {
        Value::Array(list) => list,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// `(workflowId, runId, status)` of a listed execution; status like `COMPLETED`, `FAILED`.
pub fn execution_summary(listed: &Value) -> (String, String, String) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let status = text(&listed["status"]);
    let status = status
        .strip_prefix("WORKFLOW_EXECUTION_STATUS_")
        .unwrap_or(&status)
        .to_ascii_uppercase();
    (
        text(&listed["execution"]["workflowId"]),
        text(&listed["execution"]["runId"]),
        status,
    )
}

/// The events of a history as printed by `temporal workflow show --output json`.
pub fn history_events(history: &Value) -> Vec<Value> {
    history["events"].as_array().cloned().unwrap_or_default()
}

/// An event's type, normalized: `EVENT_TYPE_ACTIVITY_TASK_STARTED` and
/// `ActivityTaskStarted` both become `activitytaskstarted`.
pub fn event_kind(event: &Value) -> String {
    let t = event["eventType"].as_str().unwrap_or_default();
    let t = t.strip_prefix("EVENT_TYPE_").unwrap_or(t);
    t.chars()
        .filter(|c| *c != '_')
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The `...EventAttributes` object of an event.
pub fn event_attributes(event: &Value) -> Value {
    event
        .as_object()
        .and_then(|o| {
            o.iter()
                .find(|(k, _)| k.ends_with("EventAttributes"))
                .map(|(_, v)| v.clone())
        })
        .unwrap_or(Value::Null)
}

/// A number the CLI may print as a JSON number or as a string (int64 in proto JSON).
pub fn json_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// One activity execution read from a history.
#[derive(Clone, Debug)]
pub struct ActivityRecord {
    pub scheduled_event_id: u64,
    pub activity_type: String,
    /// The attempt of its (last) started event, when it started.
    pub started_attempt: Option<u64>,
    /// `completed`, `failed`, `timedout`, `canceled`, or `open`.
    pub outcome: String,
}

/// The mezzanine was made once: one whole-file run, at its first attempt; or, made in pieces,
/// one piece per chunk and one join, with at most `in_flight` pieces and ladder chunks
/// together run again (those a lost worker had in flight). Returns how many were redone.
pub fn assert_mezzanine_made_once(
    activities: &[ActivityRecord],
    chunks: usize,
    in_flight: usize,
) -> usize {
    let of = |kind: &str| -> Vec<&ActivityRecord> {
        activities
            .iter()
            .filter(|a| a.activity_type == kind)
            .collect()
    };
    let redone = |records: &[&ActivityRecord]| {
        records
            .iter()
            .filter(|a| a.started_attempt.unwrap_or(1) > 1)
            .count()
    };
    let whole = of("mezzanine");
    let pieces = of("mezzanine_piece");
    let ladder = of("ladder_chunk");
    assert_eq!(
        ladder.len(),
        chunks,
        "one ladder chunk per chunk: {ladder:?}"
    );
    if pieces.is_empty() {
        assert!(
            whole.len() == 1 && whole[0].started_attempt == Some(1),
            "the mezzanine was made again: {whole:?}"
        );
        let n = redone(&ladder);
        assert!(
            n <= in_flight,
            "more than the chunks in flight ran again: {ladder:?}"
        );
        n
    } else {
        assert!(
            whole.is_empty(),
            "both a whole mezzanine and pieces: {whole:?}"
        );
        assert_eq!(pieces.len(), chunks, "one piece per chunk: {pieces:?}");
        assert_eq!(of("join_mezzanine").len(), 1, "one join");
        let n = redone(&pieces) + redone(&ladder);
        assert!(
            n <= in_flight,
            "more than the chunks in flight ran again: pieces {pieces:?}, ladder {ladder:?}"
        );
        n
    }
}

/// Every activity scheduled in a history, with its last attempt and how it closed.
pub fn history_activities(history: &Value) -> Vec<ActivityRecord> {
    let mut records: Vec<ActivityRecord> = Vec::new();
    for e in history_events(history) {
        let kind = event_kind(&e);
        let attrs = event_attributes(&e);
        let id = json_u64(&e["eventId"]).unwrap_or(0);
        if kind == "activitytaskscheduled" {
            records.push(ActivityRecord {
                scheduled_event_id: id,
                activity_type: attrs["activityType"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                started_attempt: None,
                outcome: "open".into(),
            });
            continue;
        }
        let Some(scheduled) = json_u64(&attrs["scheduledEventId"]) else {
            continue;
        };
        let Some(r) = records
            .iter_mut()
            .find(|r| r.scheduled_event_id == scheduled)
        else {
            continue;
        };
        match kind.as_str() {
            "activitytaskstarted" => {
                r.started_attempt = Some(json_u64(&attrs["attempt"]).unwrap_or(1))
            }
            "activitytaskcompleted" => r.outcome = "completed".into(),
            "activitytaskfailed" => r.outcome = "failed".into(),
            "activitytasktimedout" => r.outcome = "timedout".into(),
            "activitytaskcanceled" => r.outcome = "canceled".into(),
            _ => {}
        }
    }
    records
}

/// The decoded JSON value of the first payload in `payloads` (`{"payloads": [{data}]}`).
pub fn first_payload_json(payloads: &Value) -> Option<Value> {
    let data = payloads["payloads"][0]["data"].as_str()?;
    let bytes = base64_decode(data)?;
    serde_json::from_slice(&bytes).ok()
}

/// The result of a history's `WorkflowExecutionCompleted` event, decoded; `None` while the
/// workflow has not completed.
pub fn workflow_result(history: &Value) -> Option<Value> {
    history_events(history)
        .iter()
        .find(|e| event_kind(e) == "workflowexecutioncompleted")
        .and_then(|e| first_payload_json(&event_attributes(e)["result"]))
}

/// Decodes standard or URL-safe base64 (padding optional); `None` if `s` is not base64.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        })
    }
    let body = s.trim_end_matches('=');
    if body.len() % 4 == 1 || s.len() - body.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in body.as_bytes() {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Everything readable in a JSON document: its text, plus the base64-decoded form of every
/// string that is base64 (Temporal's JSON prints payload bytes that way), recursively, so a
/// plaintext search of the result sees what the payloads really hold.
pub fn searchable_text(v: &Value) -> String {
    fn collect(v: &Value, out: &mut String, depth: usize) {
        match v {
            Value::String(s) if depth < 4 && s.len() >= 4 => {
                if let Some(bytes) = base64_decode(s) {
                    let decoded = String::from_utf8_lossy(&bytes).into_owned();
                    out.push('\n');
                    out.push_str(&decoded);
                    if let Ok(inner) = serde_json::from_slice::<Value>(&bytes) {
                        collect(&inner, out, depth + 1);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| collect(x, out, depth)),
            Value::Object(o) => o.values().for_each(|x| collect(x, out, depth)),
            _ => {}
        }
    }
    let mut out = v.to_string();
    collect(v, &mut out, 0);
    out
}

/// Processes whose command line contains every one of `needles` (each in some argument):
/// `(pid, argv)`. Never this test process itself.
pub fn find_processes(needles: &[&str]) -> Vec<(u32, Vec<String>)> {
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if argv.is_empty() {
            continue;
        }
        if needles.iter().all(|n| argv.iter().any(|a| a.contains(n))) {
            found.push((pid, argv));
        }
    }
    found
}

/// ffmpeg processes (argv[0] named `ffmpeg`) whose arguments contain every one of `needles`.
pub fn find_ffmpeg(needles: &[&str]) -> Vec<(u32, Vec<String>)> {
    find_processes(needles)
        .into_iter()
        .filter(|(_, argv)| {
            Path::new(&argv[0])
                .file_name()
                .is_some_and(|n| n == "ffmpeg")
        })
        .collect()
}

/// Sends `signal` to `pid`; `false` if it no longer exists.
#[allow(unsafe_code)] // kill(2)
pub fn send_signal(pid: u32, signal: libc::c_int) -> bool {
    // SAFETY: kill(2) with a pid this test found and chose to signal.
    unsafe { libc::kill(pid as libc::pid_t, signal) == 0 }
}

/// Polls `check` every 200 ms until it returns `Some` or `limit` passes.
pub async fn poll_until<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts `transcoder server --state-dir DIR` in the background and returns it with the
/// gRPC address it printed.
pub async fn spawn_state_server(h: &Harness, state_dir: &Path) -> (Background, String) {
    let mut server = h.spawn(&["server", "--state-dir", state_dir.to_str().expect("utf-8")]);
    let found = poll_until(Duration::from_secs(90), || {
        server.stderr().lines().find_map(|l| {
            l.split_once("Temporal dev server on ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .map(str::to_string)
        })
    })
    .await;
    match found {
        Some(address) => (server, address),
        None => {
            let status = server.try_status();
            panic!(
                "`transcoder server` printed no address (exit status {status:?})\n{}",
                server.dump()
            )
        }
    }
}

/// The lowest per-frame PSNR (Y) of `a` against `b`, frame by frame.
pub async fn min_psnr(a: &Path, b: &Path, stats: &Path) -> f64 {
    frame_psnr(a, b, stats)
        .await
        .into_iter()
        .fold(f64::INFINITY, f64::min)
}

/// The PSNR (Y) of each frame of `a` against the same frame of `b` (99 for identical).
pub async fn frame_psnr(a: &Path, b: &Path, stats: &Path) -> Vec<f64> {
    let filter = format!(
        "[0:v][1:v]psnr=stats_file={}",
        stats.to_string_lossy().replace(':', "\\:")
    );
    ffmpeg_make(&[
        "-i",
        &a.to_string_lossy(),
        "-i",
        &b.to_string_lossy(),
        "-lavfi",
        &filter,
        "-f",
        "null",
        "-",
    ])
    .await;
    std::fs::read_to_string(stats)
        .expect("psnr stats")
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix("psnr_y:"))
                .map(|v| {
                    if v == "inf" {
                        99.0
                    } else {
                        v.parse().unwrap_or(0.0)
                    }
                })
        })
        .collect()
}
