//! Local modes, as the official SDK offers them (reference §13), running the same handler
//! as production: `--test-input JSON` (or `./test_input.json`) runs one job and exits;
//! `--serve-api` serves RunPod's job API on a local port.
//!
//! Differences from the SDK, on purpose, toward RunPod's real API: `POST /run` starts the
//! job at once (the SDK only stores it until `/status` is called), `/status/{id}` answers
//! `GET` like the real API (and `POST` like the SDK), keeps the job and shows its progress,
//! `/runsync` answers within its wait, and `/health`, `/cancel` and `/stream` exist.

use super::handler::{self, Outcome, Pod, ProgressSink, Signals};
use super::protocol::JobResult;
use super::RunpodError;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Id of a `--test-input` job without one (the SDK's default).
const LOCAL_TEST_ID: &str = "local_test";

/// Where a test input comes from.
pub enum TestInput {
    /// `--test-input JSON`.
    Text(String),
    /// `./test_input.json` (no flag and no `RUNPOD_WEBHOOK_GET_JOB`).
    File(std::path::PathBuf),
}

/// A test input, read and checked (before anything is started, so a bad one fails fast).
pub struct TestJob {
    id: String,
    input: Value,
}

impl TestJob {
    /// `{"input": <non-null>, "id"?: "..."}`, as the SDK requires.
    pub fn read(source: TestInput) -> Result<Self, RunpodError> {
        let text = match source {
            TestInput::Text(t) => t,
            TestInput::File(path) => std::fs::read_to_string(&path).map_err(|e| {
                RunpodError::TestInput(format!(
                    "no --test-input and {} cannot be read ({e}); outside RunPod give --test-input JSON, a test_input.json, or --serve-api",
                    path.display()
                ))
            })?,
        };
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| RunpodError::TestInput(format!("not JSON: {e}")))?;
        let input = value
            .get("input")
            .filter(|i| !i.is_null())
            .cloned()
            .ok_or_else(|| RunpodError::TestInput("needs a non-null \"input\"".into()))?;
        let id = value
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or(LOCAL_TEST_ID)
            .to_string();
        Ok(TestJob { id, input })
    }
}

/// Runs one test job; prints the result body it would post to RunPod on stdout. `true`
/// when the job succeeded.
pub async fn run_test_input(pod: &Pod, job: TestJob, shutdown: watch::Receiver<bool>) -> bool {
    let TestJob { id, input } = job;
    tracing::info!(job_id = %id, "running the test input");
    let (_keep, stop) = watch::channel(false);
    let signals = Signals { stop, shutdown };
    let progress = ProgressSink {
        client: None,
        job_id: &id,
        local: None,
    };
    handler::run_job(pod, input, signals, progress, |outcome| async move {
        match outcome {
            Outcome::Finished(result) => {
                println!("{}", result.body());
                !result.is_error()
            }
            Outcome::Stopped | Outcome::Interrupted => {
                eprintln!("interrupted before the job finished; run again to resume it");
                false
            }
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------
// --serve-api
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum LocalStatus {
    InQueue,
    /// With the latest progress update, shown as `output` like the real API does.
    InProgress(Option<Value>),
    Done(JobResult),
    Cancelled,
}

/// What the local API knows about its jobs, and how to stop the one running.
#[derive(Default)]
struct Jobs {
    jobs: Mutex<HashMap<String, LocalStatus>>,
    stops: Mutex<HashMap<String, watch::Sender<bool>>>,
}

impl Jobs {
    fn set(&self, id: &str, status: LocalStatus) {
        self.lock().insert(id.to_string(), status);
    }

    fn get(&self, id: &str) -> Option<LocalStatus> {
        self.lock().get(id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LocalStatus>> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn stops(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<bool>>> {
        self.stops.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A progress update of a running job (ignored once it has ended).
    fn progress(&self, id: &str, update: Value) {
        let mut jobs = self.lock();
        if let Some(status @ LocalStatus::InProgress(_)) = jobs.get_mut(id) {
            *status = LocalStatus::InProgress(Some(update));
        }
    }

    /// `/cancel`: a queued job never starts; a running one is stopped as a RunPod job-stop
    /// stops it (its workflow is cancelled). Ended jobs keep their outcome.
    fn cancel(&self, id: &str) -> Option<LocalStatus> {
        let mut jobs = self.lock();
        let status = jobs.get_mut(id)?;
        match status {
            LocalStatus::InQueue => *status = LocalStatus::Cancelled,
            LocalStatus::InProgress(_) => {
                if let Some(stop) = self.stops().get(id) {
                    let _ = stop.send(true);
                }
                *status = LocalStatus::Cancelled;
            }
            LocalStatus::Done(_) | LocalStatus::Cancelled => {}
        }
        Some(status.clone())
    }
}

/// What RunPod answers for an id it does not know (the SDK's local API does the same).
fn not_found(id: &str) -> Value {
    json!({"id": id, "status": "FAILED", "error": "Job ID not found"})
}

/// How long `/runsync` waits for its job: `?wait=` milliseconds as the real API takes it
/// (1000 to 300000), 90 s by default; then it answers the job's status as it is.
fn runsync_wait(url: &str) -> std::time::Duration {
    let ms = url
        .split_once('?')
        .and_then(|(_, query)| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix("wait="))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .unwrap_or(90_000)
        .clamp(1_000, 300_000);
    std::time::Duration::from_millis(ms)
}

/// A job for the runner; `done` is told when it finished (`/runsync` waits on it).
struct Queued {
    id: String,
    input: Value,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

/// `{id, status, output|error}` as the real `/status` answers.
fn status_body(id: &str, status: &LocalStatus) -> Value {
    match status {
        LocalStatus::InQueue => json!({"id": id, "status": "IN_QUEUE"}),
        LocalStatus::InProgress(None) => json!({"id": id, "status": "IN_PROGRESS"}),
        LocalStatus::InProgress(Some(progress)) => {
            json!({"id": id, "status": "IN_PROGRESS", "output": progress})
        }
        LocalStatus::Cancelled => json!({"id": id, "status": "CANCELLED"}),
        LocalStatus::Done(result) => {
            let mut body = result.body();
            if let Some(m) = body.as_object_mut() {
                m.insert("id".into(), json!(id));
                m.insert(
                    "status".into(),
                    json!(if result.is_error() {
                        "FAILED"
                    } else {
                        "COMPLETED"
                    }),
                );
            }
            body
        }
    }
}

/// Serves the local API until SIGTERM/SIGINT. Requests are answered on their own tasks;
/// jobs run one at a time (the SDK's default concurrency) in this task, because the
/// Temporal worker they drive cannot move between threads.
pub async fn serve_api(
    pod: &Pod,
    host: &str,
    port: u16,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), RunpodError> {
    let addr = format!("{host}:{port}");
    let server = tiny_http::Server::http(&addr).map_err(|e| RunpodError::Serve {
        addr: addr.clone(),
        reason: e.to_string(),
    })?;
    let server = Arc::new(server);
    let bound = server
        .server_addr()
        .to_ip()
        .map(|a| a.to_string())
        .unwrap_or(addr);
    // Tests and scripts read this line to find the port (`--api-port 0` picks a free one).
    eprintln!("RunPod local API on http://{bound} (POST /run, POST /runsync, GET|POST /status/ID, GET /health)");
    let jobs = Arc::new(Jobs::default());
    let (queue, mut queued) = tokio::sync::mpsc::unbounded_channel::<Queued>();
    let rt = tokio::runtime::Handle::current();
    let accept = {
        let server = Arc::clone(&server);
        let jobs = Arc::clone(&jobs);
        std::thread::spawn(move || {
            while let Ok(request) = server.recv() {
                rt.spawn(answer(request, Arc::clone(&jobs), queue.clone()));
            }
        })
    };
    loop {
        let next = tokio::select! {
            next = queued.recv() => next,
            _ = super::flipped(&mut shutdown) => None,
        };
        let Some(job) = next else { break };
        // Cancelled while it waited: it never starts.
        if !matches!(jobs.get(&job.id), Some(LocalStatus::Cancelled)) {
            run_local(pod, &jobs, &job.id, job.input, shutdown.clone()).await;
        }
        if let Some(done) = job.done {
            let _ = done.send(());
        }
    }
    server.unblock();
    let _ = tokio::task::spawn_blocking(move || accept.join()).await;
    Ok(())
}

async fn answer(
    mut request: tiny_http::Request,
    jobs: Arc<Jobs>,
    queue: tokio::sync::mpsc::UnboundedSender<Queued>,
) {
    let mut body = Vec::new();
    let _ = std::io::Read::read_to_end(request.as_reader(), &mut body);
    let method = request.method().clone();
    let url = request.url().to_string();
    let path = url.split('?').next().unwrap_or_default().to_string();
    use tiny_http::Method::{Get, Post};
    let (code, value) = match (&method, path.as_str()) {
        (Get, "/health") => (200, health(&jobs)),
        (Post, "/run") | (Post, "/runsync") => match job_input(&body) {
            Err(detail) => (422, json!({ "detail": detail })),
            Ok(input) => {
                let id = format!("test-{}", uuid::Uuid::new_v4());
                jobs.set(&id, LocalStatus::InQueue);
                let (done_tx, done_rx) = tokio::sync::oneshot::channel();
                let sync = path == "/runsync";
                let sent = queue.send(Queued {
                    id: id.clone(),
                    input,
                    done: sync.then_some(done_tx),
                });
                if sent.is_err() {
                    (503, json!({"error": "the local API is shutting down"}))
                } else if sync {
                    // Like the real API: the result if the job ends in time, else its
                    // status, to be polled on /status.
                    let _ = tokio::time::timeout(runsync_wait(&url), done_rx).await;
                    let status = jobs.get(&id).unwrap_or(LocalStatus::InQueue);
                    (200, status_body(&id, &status))
                } else {
                    (200, json!({"id": id, "status": "IN_QUEUE"}))
                }
            }
        },
        (Get | Post, p) if p.starts_with("/status/") => {
            let id = &p["/status/".len()..];
            match jobs.get(id) {
                Some(status) => (200, status_body(id, &status)),
                None => (200, not_found(id)),
            }
        }
        // The handler is not a generator: the stream is its latest progress update while
        // it runs, then its output.
        (Get | Post, p) if p.starts_with("/stream/") => {
            let id = &p["/stream/".len()..];
            match jobs.get(id) {
                Some(status) => (200, stream_body(id, &status)),
                None => (200, not_found(id)),
            }
        }
        (Post, p) if p.starts_with("/cancel/") => {
            let id = &p["/cancel/".len()..];
            match jobs.cancel(id) {
                Some(status) => (200, status_body(id, &status)),
                None => (200, not_found(id)),
            }
        }
        (_, "/health" | "/run" | "/runsync") => (405, json!({"detail": "Method Not Allowed"})),
        (_, p)
            if p.starts_with("/status/")
                || p.starts_with("/stream/")
                || p.starts_with("/cancel/") =>
        {
            (405, json!({"detail": "Method Not Allowed"}))
        }
        _ => (404, json!({"detail": "Not Found"})),
    };
    let mut response = tiny_http::Response::from_string(value.to_string()).with_status_code(code);
    if let Ok(header) = tiny_http::Header::from_bytes("Content-Type", "application/json") {
        response.add_header(header);
    }
    let _ = tokio::task::spawn_blocking(move || request.respond(response)).await;
}

/// `/stream/{id}`: the status, with what the job produced so far as `stream` chunks.
fn stream_body(id: &str, status: &LocalStatus) -> Value {
    let mut body = status_body(id, status);
    let chunks = match status {
        LocalStatus::InProgress(Some(progress)) => vec![json!({ "output": progress })],
        LocalStatus::Done(result) if !result.is_error() => result
            .body()
            .get("output")
            .map(|o| vec![json!({ "output": o })])
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    if let Some(m) = body.as_object_mut() {
        m.remove("output");
        m.insert("stream".into(), Value::Array(chunks));
    }
    body
}

/// The `input` of a `/run` body: it must be a JSON object (the SDK answers 422 otherwise).
fn job_input(body: &[u8]) -> Result<Value, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    match value.get("input") {
        Some(input @ Value::Object(_)) => Ok(input.clone()),
        _ => Err("\"input\" must be a JSON object".into()),
    }
}

async fn run_local(
    pod: &Pod,
    jobs: &Arc<Jobs>,
    id: &str,
    input: Value,
    shutdown: watch::Receiver<bool>,
) {
    jobs.set(id, LocalStatus::InProgress(None));
    let (stop_tx, stop) = watch::channel(false);
    jobs.stops().insert(id.to_string(), stop_tx);
    let signals = Signals { stop, shutdown };
    let updates = Arc::clone(jobs);
    let job_id = id.to_string();
    let progress = ProgressSink {
        client: None,
        job_id: id,
        local: Some(Arc::new(move |update| updates.progress(&job_id, update))),
    };
    handler::run_job(pod, input, signals, progress, |outcome| async move {
        let status = match outcome {
            Outcome::Finished(result) => LocalStatus::Done(result),
            Outcome::Stopped => LocalStatus::Cancelled,
            Outcome::Interrupted => LocalStatus::Done(JobResult::error(
                "the local API stopped before the job finished",
            )),
        };
        jobs.set(id, status);
    })
    .await;
    jobs.stops().remove(id);
}

/// Counts like the real `/health`.
fn health(jobs: &Jobs) -> Value {
    let all: Vec<LocalStatus> = jobs.lock().values().cloned().collect();
    let count = |f: fn(&LocalStatus) -> bool| all.iter().filter(|s| f(s)).count();
    let running = count(|s| matches!(s, LocalStatus::InProgress(_)));
    json!({
        "jobs": {
            "completed": count(|s| matches!(s, LocalStatus::Done(r) if !r.is_error())),
            "failed": count(|s| matches!(s, LocalStatus::Done(r) if r.is_error())),
            "inProgress": running,
            "inQueue": count(|s| matches!(s, LocalStatus::InQueue)),
            "retried": 0,
        },
        "workers": { "idle": usize::from(running == 0), "running": usize::from(running > 0) },
    })
}
