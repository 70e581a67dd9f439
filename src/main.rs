//! `transcoder`: the command line. Each subcommand wires the library pieces together and
//! nothing more; see ARCHITECTURE.md for the map.

mod cli;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use transcoder::stage::{self};
use transcoder::telemetry::{self, LogFormat};
use transcoder_workflows::DEFAULT_TASK_QUEUE;

#[derive(Parser)]
#[command(
    name = "transcoder",
    version,
    about = "Durable media transcoding on Temporal: HLS ladders, mezzanines, thumbnails and signed webhooks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as readable text, or one JSON object per line for log collectors.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "TRANSCODER_LOG_FORMAT",
        default_value = "human"
    )]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Transcode one file (or one job payload) end to end and wait for the result.
    ///
    /// Starts an embedded Temporal dev server unless TEMPORAL_ADDRESS is set, runs a worker
    /// in this process, and stores outputs under --out as DIR/<bucket>/<key>.
    Run(RunArgs),
    /// Run one media task (the task- and action-style payloads of RunPod ffmpeg workers:
    /// STAGE_OBJECT, DOWNSAMPLING, AUDIO_TRIM, ENCODING, probe) durably and print its answer.
    ///
    /// Like `run`: an embedded Temporal dev server unless TEMPORAL_ADDRESS is set, and a
    /// worker in this process. The same task sent again attaches to it or returns its answer.
    Task(TaskArgs),
    /// Run a worker: poll a task queue on the server in TEMPORAL_ADDRESS and execute
    /// workflows and activities until SIGTERM or SIGINT.
    Worker(WorkerArgs),
    /// Start a job (a DESIGN §3.1 JSON payload) or a media task on the server in
    /// TEMPORAL_ADDRESS.
    Submit(SubmitArgs),
    /// Run the verification gate on a finished job's outputs: playlists, segments (IDR starts,
    /// alignment across renditions), declared bandwidth and codecs, preview, thumbnail,
    /// waveform. Exits non-zero on the first problem.
    Verify(VerifyArgs),
    /// Check this machine: ffmpeg/ffprobe and their encoders and filters, a real NVENC test
    /// encode, audiowaveform, Temporal and storage. Exits non-zero when something the
    /// configured mode needs is missing.
    Doctor(DoctorArgs),
    /// Start only the embedded Temporal dev server on the saved state, to browse past jobs
    /// in the Web UI; stops on Ctrl-C.
    Server(ServerArgs),
    /// RunPod serverless worker: take jobs from RunPod's queue (RUNPOD_WEBHOOK_GET_JOB …),
    /// run each job's workflow on the Temporal server in TEMPORAL_ADDRESS (or an embedded
    /// one on the network volume) until it ends, and post the result. Without
    /// RUNPOD_WEBHOOK_GET_JOB: --test-input / ./test_input.json, or --serve-api.
    /// See docs/runpod.md.
    Runpod(RunpodArgs),
    /// Where a job is: state, current step, percent, the activities running now and what
    /// each finished step cost. Asks the server in TEMPORAL_ADDRESS, or the embedded one of
    /// a `transcoder run` that is running on the same --state-dir.
    Status(StatusArgs),
    /// Confine this process (Landlock, seccomp) and execute PROGRAM: how a worker runs a
    /// `process` chain's ffmpeg. Not for people.
    #[command(hide = true)]
    SandboxExec(SandboxExecArgs),
    /// List jobs, newest first, filtered by creator, media type, outcome or encoder (the
    /// search attributes every job carries). Asks the same server as `status`.
    List(ListArgs),
}

#[derive(Args)]
struct ListArgs {
    #[arg(long)]
    creator: Option<String>,
    /// `video` or `audio`.
    #[arg(long)]
    media_type: Option<String>,
    /// `completed`, `failed` or `cancelled`.
    #[arg(long)]
    outcome: Option<String>,
    /// `x264` or `nvenc`.
    #[arg(long)]
    encoder: Option<String>,
    /// At most this many jobs.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Print the jobs as a JSON array.
    #[arg(long)]
    json: bool,
    /// State folder of a running `transcoder run` (used when no server is configured).
    #[arg(long, env = "TRANSCODER_STATE_DIR", default_value = ".transcoder")]
    state_dir: PathBuf,
}

#[derive(Args)]
struct StatusArgs {
    /// The job's media id (its workflow is `transcode-MEDIA_ID`).
    media_id: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// State folder of a running `transcoder run` (used when TEMPORAL_ADDRESS is unset).
    #[arg(long, env = "TRANSCODER_STATE_DIR", default_value = ".transcoder")]
    state_dir: PathBuf,
}

#[derive(Args, Clone)]
struct CommonArgs {
    /// Folder of the embedded object store: one sub-folder per bucket.
    #[arg(long, env = "TRANSCODER_OUT", default_value = "out")]
    out: PathBuf,
    /// State folder: embedded Temporal database, logs and scratch space.
    #[arg(long, env = "TRANSCODER_STATE_DIR", default_value = ".transcoder")]
    state_dir: PathBuf,
    #[command(flatten)]
    worker: WorkerSettings,
}

/// How a worker runs, the same for `run`, `worker` and `runpod`.
#[derive(Args, Clone)]
struct WorkerSettings {
    /// Task queue that workflows and activities run on.
    #[arg(long, env = "TRANSCODER_TASK_QUEUE", default_value = DEFAULT_TASK_QUEUE)]
    task_queue: String,
    /// Seconds running activities (and under `runpod`, the current job) get to finish after
    /// SIGTERM/SIGINT before they are cancelled and left to Temporal to retry.
    #[arg(long, env = "TRANSCODER_SHUTDOWN_GRACE", default_value_t = 30)]
    shutdown_grace: u64,
    /// Serve Prometheus metrics (ours and the Temporal SDK's) on this address, at /metrics.
    #[arg(long, env = "TRANSCODER_METRICS_ADDR", value_name = "HOST:PORT")]
    metrics_addr: Option<std::net::SocketAddr>,
}

#[derive(Copy, Clone, ValueEnum)]
enum MediaTypeArg {
    Video,
    Audio,
}

#[derive(Args)]
struct SandboxExecArgs {
    /// Where to write what was enforced (JSON), before executing PROGRAM.
    #[arg(long)]
    status: PathBuf,
    /// A file or folder PROGRAM may read.
    #[arg(long)]
    read: Vec<PathBuf>,
    /// A folder PROGRAM may write.
    #[arg(long)]
    write: Vec<PathBuf>,
    /// The largest file PROGRAM may write, in bytes.
    #[arg(long)]
    max_file_bytes: Option<u64>,
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    program: Vec<std::ffi::OsString>,
}

#[derive(Args)]
struct TaskArgs {
    /// The payload: a JSON file, `-` for standard input, or the JSON itself. Either the
    /// task (`{"task": …, "parameters": …}`, `{"action": …, "data": …}`) or a RunPod job
    /// around it (`{"input": {…}}`).
    payload: String,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct RunArgs {
    /// Media file to transcode, or a URI the job downloads: s3://bucket/key, gs://bucket/key,
    /// http(s)://… (needs --media-type). With --job: a local file, stored first where the
    /// payload's inputBucket and inputKey say.
    #[arg(required_unless_present = "job")]
    input: Option<PathBuf>,
    /// A job payload (JSON, the media-api contract). Its input must be in --out already, or be
    /// given as INPUT; `fixtures/jobs/` has examples.
    #[arg(long, value_name = "FILE")]
    job: Option<PathBuf>,
    /// With --job: deliver the webhook to a receiver inside this process, which checks its
    /// signature, instead of the payload's webhookUrl (to try a payload locally).
    #[arg(long, requires = "job", conflicts_with = "webhook_url")]
    local_webhook: bool,
    /// Media type; defaults to what ffprobe finds (video if there is a picture).
    #[arg(long, value_enum)]
    media_type: Option<MediaTypeArg>,
    /// Media id; by default derived from the file's content and the creator, so running
    /// the same command again resumes the saved job (or returns its result) instead of
    /// encoding again.
    #[arg(long)]
    media_id: Option<String>,
    /// Creator id.
    #[arg(long, default_value = "local")]
    creator_id: String,
    /// Where to POST the signed webhook; by default a receiver in this process checks it.
    /// With --job it replaces the payload's webhookUrl (and --webhook-secret its secret).
    #[arg(long, requires = "webhook_secret")]
    webhook_url: Option<String>,
    /// HMAC secret for the webhook signature.
    #[arg(long, env = "TRANSCODER_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// Print exactly the final webhook body on stdout (logs stay on stderr).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct WorkerArgs {
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args)]
struct SubmitArgs {
    /// Job payload (JSON, DESIGN §3.1), or a media task (`{"task": …}`, `{"action": …}`,
    /// as `transcoder task` takes).
    #[arg(long, value_name = "FILE")]
    job: PathBuf,
    /// Wait for the job to finish and print its final webhook body (a task: its answer).
    #[arg(long)]
    wait: bool,
    /// Task queue the workers poll.
    #[arg(long, env = "TRANSCODER_TASK_QUEUE", default_value = DEFAULT_TASK_QUEUE)]
    task_queue: String,
}

#[derive(Args)]
struct VerifyArgs {
    /// A completed webhook body (what `run --json` prints); `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    body: PathBuf,
    /// Folder of the embedded object store.
    #[arg(long, env = "TRANSCODER_OUT", default_value = "out")]
    out: PathBuf,
    /// Bucket holding the HLS tree.
    #[arg(long, default_value = stage::MEDIA_BUCKET)]
    media_bucket: String,
    /// Bucket holding thumbnails and waveforms.
    #[arg(long, default_value = stage::ASSETS_BUCKET)]
    assets_bucket: String,
}

#[derive(Args)]
struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Folder of the embedded object store to test for writing.
    #[arg(long, env = "TRANSCODER_OUT", default_value = "out")]
    out: PathBuf,
}

#[derive(Args)]
struct RunpodArgs {
    /// Run one job and exit: `{"input": <job payload>, "id"?: "..."}`. Prints the result
    /// body that would be posted to RunPod. Without this flag, outside RunPod (no
    /// RUNPOD_WEBHOOK_GET_JOB), ./test_input.json is used.
    #[arg(
        long,
        alias = "test_input",
        value_name = "JSON",
        conflicts_with = "serve_api"
    )]
    test_input: Option<String>,
    /// Serve RunPod's job API locally: POST /run, POST /runsync, GET|POST /status/ID, GET /health.
    #[arg(long, alias = "rp_serve_api")]
    serve_api: bool,
    /// Address for --serve-api.
    #[arg(long, alias = "rp_api_host", default_value = "localhost")]
    api_host: String,
    /// Port for --serve-api (0 picks a free one; the log says which).
    #[arg(long, alias = "rp_api_port", default_value_t = 8000)]
    api_port: u16,
    /// The RunPod SDK's log level: NOTSET, TRACE, DEBUG, INFO, WARN or ERROR (any case).
    /// TRANSCODER_LOG, when set, wins.
    #[arg(long = "rp_log_level", alias = "rp-log-level", value_name = "LEVEL", value_parser = rp_log_level)]
    rp_log_level: Option<&'static str>,
    /// The RunPod SDK's debugger flag. Accepted; the result's receipt (step timings, realtime
    /// factors, encoders) is what it would show, so nothing is added to the output.
    #[arg(long = "rp_debugger", alias = "rp-debugger")]
    rp_debugger: bool,
    /// The RunPod SDK's local API concurrency. Accepted; the local API runs one job at a
    /// time (the SDK's default), whatever the value.
    #[arg(
        long = "rp_api_concurrency",
        alias = "rp-api-concurrency",
        value_name = "N"
    )]
    rp_api_concurrency: Option<u32>,
    /// The RunPod network volume: holds the embedded Temporal state when TEMPORAL_ADDRESS
    /// is unset, and the default --out.
    #[arg(long, env = "TRANSCODER_RUNPOD_VOLUME", default_value = transcoder::runpod::state::DEFAULT_VOLUME)]
    volume: PathBuf,
    /// Folder of the embedded object store; default: `transcoder/out` on the volume when
    /// one is mounted, else `out`.
    #[arg(long, env = "TRANSCODER_OUT")]
    out: Option<PathBuf>,
    /// Local state folder: scratch space for encodes.
    #[arg(long, env = "TRANSCODER_STATE_DIR", default_value = ".transcoder")]
    state_dir: PathBuf,
    #[command(flatten)]
    worker: WorkerSettings,
}

#[derive(Args)]
struct ServerArgs {
    /// State folder holding the embedded Temporal database.
    #[arg(long, env = "TRANSCODER_STATE_DIR", default_value = ".transcoder")]
    state_dir: PathBuf,
}

/// A RunPod SDK log level as a log filter level.
fn rp_log_level(value: &str) -> Result<&'static str, String> {
    match value.trim().to_ascii_uppercase().as_str() {
        "NOTSET" | "TRACE" => Ok("trace"),
        "DEBUG" => Ok("debug"),
        "INFO" => Ok("info"),
        "WARN" | "WARNING" => Ok("warn"),
        "ERROR" => Ok("error"),
        _ => Err("expected NOTSET, TRACE, DEBUG, INFO, WARN or ERROR".to_string()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before any thread exists: the confinement is this thread's, carried over exec.
    if let Command::SandboxExec(args) = cli.command {
        return cli::sandbox::exec(args);
    }
    let level = match &cli.command {
        Command::Runpod(args) => args.rp_log_level,
        _ => None,
    };
    // On RunPod, the worker logs as RunPod's log view expects, unless told otherwise.
    let format = match (&cli.command, cli.log_format) {
        (Command::Runpod(_), LogFormat::Human)
            if std::env::var_os("RUNPOD_ENDPOINT_ID").is_some()
                && std::env::var_os("TRANSCODER_LOG_FORMAT").is_none() =>
        {
            LogFormat::Runpod
        }
        (_, format) => format,
    };
    // Before the async runtime: the trace exporter's HTTP client must not be built inside it.
    let telemetry = match telemetry::init(format, level) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => cli::run::run(args).await,
            Command::Task(args) => cli::task::task(args).await,
            Command::Worker(args) => cli::commands::run_worker(args).await,
            Command::Submit(args) => cli::commands::submit(args).await,
            Command::Server(args) => cli::commands::server(args).await,
            Command::Verify(args) => cli::commands::verify(args).await,
            Command::Doctor(args) => cli::commands::doctor(args).await,
            Command::Runpod(args) => cli::commands::runpod(args).await,
            Command::Status(args) => cli::commands::status(args).await,
            Command::List(args) => cli::commands::list(args).await,
            Command::SandboxExec(_) => unreachable!("handled before the runtime starts"),
        }
    });
    drop(runtime);
    // Spans still buffered go out before the process ends.
    telemetry.shutdown();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
