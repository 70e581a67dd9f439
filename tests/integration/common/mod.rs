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

mod history;
mod inspect;
mod media;
mod webhook;

pub use history::*;
pub use inspect::*;
pub use media::*;
pub use webhook::*;

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

    /// A workflow's history as `temporal workflow show --output json` prints it.
    pub async fn workflow_history_json(&self, workflow_id: &str) -> Value {
        let out = self
            .temporal_cli(&[
                "workflow",
                "show",
                "--workflow-id",
                workflow_id,
                "--output",
                "json",
            ])
            .await;
        serde_json::from_str(&out).expect("history JSON")
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

    /// The base URL (`http://127.0.0.1:PORT`) of the RunPod local API this process
    /// (`transcoder runpod --serve-api`) says it serves, once it says it (at most 90 s).
    pub async fn local_api_base(&self) -> String {
        poll_until(Duration::from_secs(90), || {
            self.stderr().lines().find_map(|l| {
                l.split_once("RunPod local API on ")
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .map(str::to_string)
            })
        })
        .await
        .unwrap_or_else(|| panic!("no local API address\n{}", self.dump()))
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
