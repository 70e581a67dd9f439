//! `transcoder`: the command line. Each subcommand wires the library pieces together and
//! nothing more; see ARCHITECTURE.md for the map.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use tracing::Instrument as _;
use transcoder::jobs;
use transcoder::receiver::LocalReceiver;
use transcoder::stage::{self, LocalJob};
use transcoder::telemetry::{self, LogFormat};
use transcoder::temporal::Temporal;
use transcoder::worker::{self, WorkerConfig};
use transcoder_activities::fetch::{FetchPolicy, InputUri};
use transcoder_activities::metrics::Metrics;
use transcoder_activities::secrets::SecretBox;
use transcoder_activities::{EncoderSettings, Storage};
use transcoder_workflows::webhook::{WebhookBody, WebhookOutput};
use transcoder_workflows::{JobInput, MediaType, DEFAULT_TASK_QUEUE};

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
    /// Run a worker: poll a task queue on the server in TEMPORAL_ADDRESS and execute
    /// workflows and activities until SIGTERM or SIGINT.
    Worker(WorkerArgs),
    /// Start a job (a DESIGN §3.1 JSON payload) on the server in TEMPORAL_ADDRESS.
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
    /// Job payload (JSON, DESIGN §3.1).
    #[arg(long, value_name = "FILE")]
    job: PathBuf,
    /// Wait for the job to finish and print its final webhook body.
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
            Command::Run(args) => run(args).await,
            Command::Worker(args) => run_worker(args).await,
            Command::Submit(args) => submit(args).await,
            Command::Server(args) => server(args).await,
            Command::Verify(args) => verify(args).await,
            Command::Doctor(args) => doctor(args).await,
            Command::Runpod(args) => runpod(args).await,
            Command::Status(args) => status(args).await,
            Command::List(args) => list(args).await,
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

/// Default size of the per-worker cache of downloaded remote objects.
const DEFAULT_CACHE_BYTES: u64 = 20 * 1024 * 1024 * 1024;

async fn worker_config(common: &CommonArgs, secrets: Option<SecretBox>) -> Result<WorkerConfig> {
    let cache_bytes = match std::env::var("TRANSCODER_CACHE_MAX_BYTES") {
        Ok(v) => v
            .trim()
            .parse()
            .context("TRANSCODER_CACHE_MAX_BYTES must be a number of bytes")?,
        Err(_) => DEFAULT_CACHE_BYTES,
    };
    let storage = Storage::from_env(&common.out)
        .context("storage configuration")?
        .with_download_cache(common.state_dir.join("cache"), cache_bytes);
    let swept = storage.sweep_abandoned_uploads();
    if swept > 0 {
        tracing::info!(files = swept, out = %common.out.display(), "removed uploads that crashed workers left unfinished");
    }
    let meter = match common.worker.metrics_addr {
        Some(addr) => Some(telemetry::start_metrics(addr)?.meter),
        None => None,
    };
    let metrics = meter
        .clone()
        .map(Metrics::new)
        .unwrap_or_else(Metrics::disabled);
    if meter.is_some() {
        metrics.start_process_metrics();
    }
    Ok(WorkerConfig {
        task_queue: common.worker.task_queue.clone(),
        out_dir: common.out.clone(),
        storage,
        fetch: FetchPolicy::from_env(),
        scratch_dir: common.state_dir.join("scratch"),
        encoder: EncoderSettings::from_env()
            .await
            .map_err(anyhow::Error::msg)?,
        nvenc: transcoder_activities::nvenc::NvencBudget::from_env().map_err(anyhow::Error::msg)?,
        activity_slots: worker::activity_slots_from_env()?,
        secrets,
        shutdown_grace: Duration::from_secs(common.worker.shutdown_grace),
        meter,
        metrics,
    })
}

/// A media id from arbitrary bytes (a URI) and the creator: the same input gives the same id.
fn media_id_from(bytes: &[u8], creator_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(bytes);
    media_id_of(hasher, creator_id)
}

/// Same file, same creator: same media id. Running the same command again therefore
/// attaches to the saved workflow instead of starting a second job.
fn default_media_id(input: &Path, creator_id: &str) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut file =
        std::fs::File::open(input).with_context(|| format!("reading {}", input.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("reading {}", input.display()))?;
    Ok(media_id_of(hasher, creator_id))
}

/// Finishes a content hash with the creator and turns its first 16 bytes into a UUID.
fn media_id_of(mut hasher: sha2::Sha256, creator_id: &str) -> String {
    use sha2::Digest;
    hasher.update(creator_id.as_bytes());
    let digest = hasher.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(id).into_uuid().to_string()
}

async fn detect_media_type(input: &Path) -> MediaType {
    match transcoder_activities::probe::probe_file(input).await {
        Ok(p) if p.video.is_none() && p.audio.is_some() => MediaType::Audio,
        Ok(_) => MediaType::Video,
        Err(e) => {
            // Not fatal here: the workflow's probe rejects it and sends the failed webhook.
            tracing::warn!(error = %e, "could not probe the input locally; assuming video");
            MediaType::Video
        }
    }
}

/// A job file as the payload it holds. Fields of the wrong type or size become problems that
/// validation reports (with a failed webhook where one can be sent); only a file that is not
/// JSON at all, or too large to read, is refused here.
fn read_job(path: &Path) -> Result<JobInput> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("reading job file {}", path.display()))?
        .len();
    if size > transcoder_workflows::job::MAX_PAYLOAD_BYTES as u64 {
        bail!(
            "job file {} is {size} bytes, over the limit of {} for a payload",
            path.display(),
            transcoder_workflows::job::MAX_PAYLOAD_BYTES
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading job file {}", path.display()))?;
    JobInput::from_json_text(&text)
        .map_err(|why| anyhow::anyhow!("job file {}: {why}", path.display()))
}

async fn run(args: RunArgs) -> Result<ExitCode> {
    let storage = Storage::from_env(&args.common.out).context("storage configuration")?;

    // A receiver in this process when no webhook URL is given, so every run ends with a
    // signed webhook that was actually delivered and verified.
    let mut local_receiver = None;
    // An INPUT given as s3://, gs:// or http(s):// is downloaded by the job itself.
    let mut input_uri: Option<InputUri> = None;
    let job = match (&args.job, &args.input) {
        (Some(file), input) => {
            let mut job = read_job(file)?;
            if args.local_webhook {
                let receiver = LocalReceiver::start_persistent(&args.common.state_dir)?;
                job.webhook_url = Some(receiver.url().to_string());
                job.webhook_secret = Some(receiver.secret().to_string());
                local_receiver = Some(receiver);
            } else if let (Some(url), Some(secret)) = (&args.webhook_url, &args.webhook_secret) {
                job.webhook_url = Some(url.clone());
                job.webhook_secret = Some(secret.clone());
            }
            if let Some(input) = input {
                stage::stage_for_payload(&storage, input, &job).await?;
            }
            job
        }
        (None, Some(input)) => {
            let text = input.to_string_lossy().into_owned();
            if text.contains("://") {
                input_uri =
                    Some(InputUri::parse(&text).map_err(|e| anyhow::anyhow!("input {text}: {e}"))?);
            } else if !input.is_file() {
                bail!("input {} is not a readable file", input.display());
            }
            let (webhook_url, webhook_secret) = match (&args.webhook_url, &args.webhook_secret) {
                (Some(url), Some(secret)) => (url.clone(), secret.clone()),
                _ => {
                    let receiver = LocalReceiver::start_persistent(&args.common.state_dir)?;
                    let pair = (receiver.url().to_string(), receiver.secret().to_string());
                    local_receiver = Some(receiver);
                    pair
                }
            };
            let media_type = match (args.media_type, &input_uri) {
                (Some(MediaTypeArg::Video), _) => MediaType::Video,
                (Some(MediaTypeArg::Audio), _) => MediaType::Audio,
                (None, Some(_)) => bail!(
                    "give --media-type video or audio for a URI input (the job downloads it; it is not probed here)"
                ),
                (None, None) => detect_media_type(input).await,
            };
            let media_id = match (&args.media_id, &input_uri) {
                (Some(id), _) => id.clone(),
                (None, Some(_)) => media_id_from(text.as_bytes(), &args.creator_id),
                (None, None) => default_media_id(input, &args.creator_id)?,
            };
            let local = LocalJob {
                media_id,
                creator_id: args.creator_id.clone(),
                media_type,
                webhook_url,
                webhook_secret,
            };
            match &input_uri {
                Some(uri) => stage::uri_job(uri, &text, &local),
                None => stage::stage_input(&storage, input, &local).await?,
            }
        }
        (None, None) => bail!("give an INPUT file or URI, or --job FILE"),
    };

    // Client and in-process worker share one key: from the environment, or kept in the
    // state folder.
    let secrets = SecretBox::from_env_or_state(&args.common.state_dir)?;
    let mut job = job;
    jobs::apply_env_defaults(&mut job)?;
    jobs::seal_secret(&mut job, &secrets).context(
        "the job was refused before it started (no webhook is signed with a bad secret)",
    )?;
    let mut config = worker_config(&args.common, Some(secrets)).await?;
    // The person at the keyboard chose this URL: its host needs no allowlist entry.
    if let Some(InputUri::Http(url)) = &input_uri {
        if let Some(host) = url.host_str() {
            config.fetch.allow_host(host);
        }
    }

    let temporal = Temporal::connect_or_embed(&args.common.state_dir).await?;
    let sdk_runtime = worker::runtime(config.meter.clone())?;
    let mut worker = worker::build(&sdk_runtime, temporal.client.clone(), &config)?;
    worker::log_start(&config);
    let stop_worker = worker.shutdown_handle();
    let worker_task = async move {
        if let Err(e) = worker.run().await {
            tracing::warn!(error = %e, "worker stopped with an error");
        }
    };
    tokio::pin!(worker_task);

    // The root of the job's trace: the workflow and its activities hang under it.
    let job_span = tracing::info_span!(
        "transcoder run",
        media.id = job.media_id.as_deref().unwrap_or_default(),
        media.type = job.media_type.as_deref().unwrap_or_default(),
        job.status = tracing::field::Empty,
    );
    let (id, submitted) = jobs::start_or_attach(
        &temporal.client,
        &job,
        &config.task_queue,
        jobs::max_job_retries(),
    )
    .instrument(job_span.clone())
    .await?;
    match (&job.media_id, submitted) {
        (_, jobs::Submitted::AlreadyCompleted) => eprintln!(
            "Job {id} already completed earlier: showing its stored result, nothing is encoded again."
        ),
        (Some(media_id), jobs::Submitted::Running) => eprintln!(
            "Job {id} running; if interrupted, run the same command again (or pass --media-id {media_id}) to resume."
        ),
        (None, jobs::Submitted::Running) => {}
    }
    let state_dir = args.common.state_dir.display().to_string();
    let (stop_bars, bars_stopped) = tokio::sync::watch::channel(false);
    let bars = transcoder::progress::spawn(temporal.client.clone(), id.clone(), bars_stopped);
    let outcome = tokio::select! {
        outcome = jobs::wait_for_outcome(&temporal.client, &id, &job).instrument(job_span.clone()) => outcome,
        _ = worker::shutdown_signal() => Err(anyhow::anyhow!(
            "interrupted; the job is saved in {state_dir} and resumes when run again with the same --media-id"
        )),
        _ = &mut worker_task => Err(anyhow::anyhow!(
            "the in-process worker stopped before the job finished (is the Temporal server gone?); the job is saved in {state_dir} and no webhook has been sent: run the same command again to resume it"
        )),
    };
    let _ = stop_bars.send(true);
    let _ = bars.await;
    if let Ok(o) = &outcome {
        job_span.record(
            "job.status",
            if jobs::succeeded(&o.body) {
                "completed"
            } else {
                "failed"
            },
        );
    }
    drop(job_span);
    // Stop polling. After an interrupt, give running activities a moment to wind down but do
    // not hold the terminal for a long encode: Temporal retries it on the next run.
    stop_worker();
    let grace = std::time::Duration::from_secs(if outcome.is_ok() { 60 } else { 10 });
    if tokio::time::timeout(grace, &mut worker_task).await.is_err() {
        tracing::warn!("the worker did not stop within {grace:?}; exiting anyway");
    }
    let ui = temporal.server.as_ref().map(|s| s.ui_url());
    temporal.shutdown().await;
    let outcome = outcome?;
    let body = &outcome.body;

    // A stored result was delivered when it was made; nothing is sent again.
    if let (Some(receiver), jobs::Submitted::Running) = (&local_receiver, submitted) {
        report_local_webhook(receiver, body);
    }
    if args.json {
        println!("{}", serde_json::to_string(body)?);
    } else {
        print_summary(body, &args.common.out, &storage, ui.as_deref());
        if let (Some(receipt), jobs::Submitted::Running) = (&outcome.receipt, submitted) {
            println!(
                "\nReceipt:\n{}",
                transcoder::status::render_receipt(receipt)
            );
        }
    }
    outcome.warn_if_webhook_missed();
    Ok(outcome.exit_code())
}

fn report_local_webhook(receiver: &LocalReceiver, body: &WebhookBody) {
    let received = receiver.received();
    let expected = serde_json::to_vec(body).unwrap_or_default();
    match received.last() {
        Some(r) if r.signature_valid && r.body == expected => {
            eprintln!("Webhook delivered to the local receiver; HMAC-SHA256 signature verified.")
        }
        Some(r) if r.signature_valid => eprintln!("Webhook delivered and its signature verified."),
        Some(_) => eprintln!("warning: the local receiver got a webhook with a bad signature"),
        None => eprintln!("warning: no webhook reached the local receiver"),
    }
}

fn print_summary(body: &WebhookBody, out: &Path, storage: &Storage, ui: Option<&str>) {
    println!();
    match &body.output {
        WebhookOutput::Completed(o) => {
            println!(
                "Job {} completed: {} {:.1} s, variants {}",
                body.id,
                o.media_type,
                o.duration_seconds,
                o.ready_variants.join(", ")
            );
            if storage.is_local_only() {
                println!("Outputs under {}:", out.display());
                print_tree(out, &o.media_id);
            } else {
                println!("Outputs (bucket routes below):");
                for route in storage.describe() {
                    println!("  {route}");
                }
            }
        }
        WebhookOutput::Failed(_) => {
            println!(
                "Job {} failed: {}",
                body.id,
                body.error.as_deref().unwrap_or("unknown error")
            );
        }
    }
    println!();
    println!("Webhook body:");
    println!("{}", serde_json::to_string_pretty(body).unwrap_or_default());
    if let Some(ui) = ui {
        println!();
        println!("Temporal Web UI (while it ran): {ui}");
        println!("Browse this job's history again with: transcoder server");
    }
}

/// Prints every object of one media item as a tree, with segment folders summarized.
fn print_tree(out: &Path, media_id: &str) {
    let mut files = Vec::new();
    collect_files(out, &mut files);
    let needle = format!("/{media_id}/");
    let mut rows: Vec<String> = Vec::new();
    let mut segments: std::collections::BTreeMap<String, (usize, u64)> = Default::default();
    for (path, size) in files {
        let rel = path
            .strip_prefix(out)
            .unwrap_or(&path)
            .to_string_lossy()
            .to_string();
        if !format!("/{rel}").contains(&needle) {
            continue;
        }
        if rel.ends_with(".ts") {
            let dir = rel
                .rsplit_once('/')
                .map(|(d, _)| d.to_string())
                .unwrap_or_default();
            let e = segments.entry(dir).or_default();
            e.0 += 1;
            e.1 += size;
        } else {
            rows.push(format!(
                "  {rel}  ({})",
                transcoder::status::human_size(size)
            ));
        }
    }
    for (dir, (count, bytes)) in segments {
        rows.push(format!(
            "  {dir}/*.ts  ({count} segments, {})",
            transcoder::status::human_size(bytes)
        ));
    }
    rows.sort();
    for r in rows {
        println!("{r}");
    }
}

fn collect_files(dir: &Path, files: &mut Vec<(PathBuf, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.metadata() {
            Ok(m) if m.is_dir() => collect_files(&path, files),
            Ok(m) if m.is_file() => files.push((path, m.len())),
            _ => {}
        }
    }
}

async fn status(args: StatusArgs) -> Result<ExitCode> {
    let client = Temporal::connect_existing(&args.state_dir).await?;
    let report = transcoder::status::job_status(&client, &args.media_id).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", transcoder::status::render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(args: ListArgs) -> Result<ExitCode> {
    let client = Temporal::connect_existing(&args.state_dir).await?;
    let filter = transcoder::list::Filter {
        creator: args.creator,
        media_type: args.media_type,
        outcome: args.outcome,
        encoder: args.encoder,
        limit: args.limit,
    };
    let jobs = transcoder::list::list(&client, &filter).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
    } else {
        print!("{}", transcoder::list::render(&jobs));
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_worker(args: WorkerArgs) -> Result<ExitCode> {
    let secrets = SecretBox::from_env()?;
    if secrets.is_none() {
        tracing::warn!(
            "{} is not set: this worker cannot open sealed webhook secrets",
            transcoder_activities::secrets::KEY_ENV
        );
    }
    let config = worker_config(&args.common, secrets).await?;
    let client = Temporal::connect_remote().await?;
    let sdk_runtime = worker::runtime(config.meter.clone())?;
    let mut worker = worker::build(&sdk_runtime, client, &config)?;
    worker::log_start(&config);
    let stop = worker.shutdown_handle();
    tokio::spawn(async move {
        worker::shutdown_signal().await;
        tracing::info!("shutdown requested: no new tasks; finishing the ones running");
        stop();
    });
    worker.run().await.context("worker failed")?;
    tracing::info!("worker stopped");
    Ok(ExitCode::SUCCESS)
}

async fn submit(args: SubmitArgs) -> Result<ExitCode> {
    let mut job = read_job(&args.job)?;
    jobs::apply_env_defaults(&mut job)?;
    let key = SecretBox::from_env()?.ok_or(transcoder_activities::secrets::SecretError::NoKey)?;
    jobs::seal_secret(&mut job, &key).context(
        "the job was refused before it was submitted (no webhook is signed with a bad secret)",
    )?;
    let client = Temporal::connect_remote().await?;
    // The root of the job's trace when traces are exported.
    let job_span = tracing::info_span!(
        "transcoder submit",
        media.id = job.media_id.as_deref().unwrap_or_default(),
        media.type = job.media_type.as_deref().unwrap_or_default(),
    );
    let (id, _) = jobs::start_or_attach(&client, &job, &args.task_queue, jobs::max_job_retries())
        .instrument(job_span.clone())
        .await?;
    if !args.wait {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = jobs::wait_for_outcome(&client, &id, &job)
        .instrument(job_span)
        .await?;
    println!("{}", serde_json::to_string(&outcome.body)?);
    outcome.warn_if_webhook_missed();
    Ok(outcome.exit_code())
}

async fn verify(args: VerifyArgs) -> Result<ExitCode> {
    let text = if args.body.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the webhook body from stdin")?
    } else {
        std::fs::read_to_string(&args.body)
            .with_context(|| format!("reading {}", args.body.display()))?
    };
    let body: WebhookBody =
        serde_json::from_str(&text).context("the body is not a webhook body")?;
    let WebhookOutput::Completed(o) = &body.output else {
        bail!(
            "job {} failed ({}); there is nothing to verify",
            body.id,
            body.error.as_deref().unwrap_or("no reason")
        );
    };
    let master_key = o
        .hls_master_playlist_key
        .clone()
        .context("the body has no hlsMasterPlaylistKey")?;
    let input = transcoder_workflows::media::VerifyInput {
        media_bucket: args.media_bucket,
        assets_bucket: args.assets_bucket,
        master_key,
        preview_key: o.hls_preview_key.clone(),
        thumbnail_key: o.thumbnail_key.clone(),
        waveform_json_key: o.waveform_key.clone(),
        waveform_png_key: o.waveform_image_key.clone(),
        duration_seconds: o.duration_seconds,
        video_renditions: Vec::new(),
        has_audio: None,
        preview_seconds: transcoder_workflows::ladder::preview_length(
            o.duration_seconds,
            transcoder_workflows::ladder::PlanConfig::default().preview_seconds,
        ),
    };
    // The local store reads objects in place; remote objects are downloaded here.
    let storage = Storage::from_env(&args.out).context("storage configuration")?;
    let scratch = std::env::temp_dir().join(format!("transcoder-verify-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let verified = transcoder_activities::verify::verify_outputs(&storage, &input, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    match verified {
        Ok(report) => {
            println!("{}", serde_json::to_string_pretty(&report)?);
            eprintln!(
                "verified: {} playlists, {} segments",
                report.playlists, report.segments
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("verification failed: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn doctor(args: DoctorArgs) -> Result<ExitCode> {
    let report = transcoder::doctor::run(&args.out).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for c in &report.checks {
            let mark = match (c.ok, c.required) {
                (true, _) => "ok  ",
                (false, true) => "FAIL",
                (false, false) => "--  ",
            };
            println!("{mark} {:<30} {}", c.name, c.detail);
        }
        println!(
            "{}",
            if report.ready {
                "ready"
            } else {
                "NOT READY: a required check failed"
            }
        );
    }
    Ok(if report.ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn server(args: ServerArgs) -> Result<ExitCode> {
    let server = transcoder::devserver::DevServer::start(&args.state_dir).await?;
    eprintln!(
        "Temporal dev server on {} with the state in {}",
        server.address(),
        args.state_dir.display()
    );
    eprintln!("Temporal Web UI: {}   (Ctrl-C to stop)", server.ui_url());
    worker::shutdown_signal().await;
    server.stop().await;
    Ok(ExitCode::SUCCESS)
}

async fn runpod(args: RunpodArgs) -> Result<ExitCode> {
    use transcoder::runpod::{self, handler::Pod, local, protocol::Endpoints, state};
    let volume = state::Volume::detect(&args.volume);
    let common = CommonArgs {
        out: args.out.clone().unwrap_or_else(|| {
            volume
                .dir()
                .map(|d| d.join("out"))
                .unwrap_or_else(|| PathBuf::from("out"))
        }),
        state_dir: args.state_dir.clone(),
        worker: args.worker.clone(),
    };
    if args.rp_debugger {
        tracing::info!(
            "--rp_debugger: accepted; the result's receipt carries the step timings it would show"
        );
    }
    if let Some(n) = args.rp_api_concurrency {
        tracing::info!(
            requested = n,
            "--rp_api_concurrency: accepted; the local API runs one job at a time (the SDK's default), whatever the value"
        );
    }
    // Mode order of the SDK (§1): local API, then a test input (the flag, or the file when
    // RunPod's job URL is not set), then the production loop. A test input is read before
    // anything starts, so a bad one fails at once.
    let endpoints = Endpoints::from_env()?;
    enum Mode {
        ServeApi,
        Test(local::TestJob),
        Worker(Endpoints),
    }
    let mode = if args.serve_api {
        Mode::ServeApi
    } else if let Some(text) = args.test_input.clone() {
        Mode::Test(local::TestJob::read(local::TestInput::Text(text))?)
    } else if let Some(endpoints) = endpoints {
        Mode::Worker(endpoints)
    } else {
        let file = PathBuf::from("test_input.json");
        Mode::Test(local::TestJob::read(local::TestInput::File(file))?)
    };
    let pod_id = match &mode {
        Mode::Worker(e) => e.pod_id.clone(),
        _ => std::env::var("RUNPOD_POD_ID").unwrap_or_else(|_| "local".to_string()),
    };
    let connected = state::connect(&volume, &common.state_dir, &pod_id).await?;
    // The worker is configured exactly as `transcoder worker` configures it.
    let config = worker_config(&common, Some(connected.secrets.clone())).await?;
    let pod = Pod {
        client: connected.temporal.client.clone(),
        runtime: std::sync::Arc::new(worker::runtime(config.meter.clone())?),
        config,
        secrets: connected.secrets.clone(),
        max_retries: jobs::max_job_retries(),
    };
    let shutdown = runpod::shutdown_watch();
    let ok = match mode {
        Mode::ServeApi => {
            local::serve_api(&pod, &args.api_host, args.api_port, shutdown).await?;
            true
        }
        Mode::Test(job) => local::run_test_input(&pod, job, shutdown).await,
        Mode::Worker(endpoints) => {
            let client = runpod::client::RunpodClient::new(endpoints)?;
            // As the SDK: fitness first; an unfit pod says why in one unhealthy ping and
            // exits, so RunPod replaces it rather than feeding it jobs.
            match runpod::fitness::check(&pod.config.scratch_dir).await {
                Ok(()) => {
                    runpod::serve(&pod, client, shutdown).await;
                    true
                }
                Err(unfit) => {
                    tracing::error!(check = unfit.check, reason = %unfit.reason, "this pod failed a fitness check: unhealthy ping sent, exiting");
                    client.ping_unhealthy(&unfit).await;
                    false
                }
            }
        }
    };
    connected.temporal.shutdown().await;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
