//! One RunPod job: its `input` is a media-api payload (DESIGN §3.1), or a task- or
//! action-style payload (`transcoder_workflows::task`, run by `run_task_job`). The pod starts the
//! workflow `transcode-{mediaId}` or attaches to it, runs a Temporal worker on the job's
//! task queue until that workflow ends, and turns the final webhook body into the RunPod
//! result. A job delivered again after its pod died attaches to the same workflow and
//! resumes it: finished activities are in history and are not run again.

use super::client::RunpodClient;
use crate::jobs::{self, Submitted};
use crate::tasks;
use crate::worker::{self, WorkerConfig};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use temporalio_client::{Client, WorkflowCancelOptions};
use temporalio_sdk::Runtime;
use tokio::sync::watch;
use tracing::Instrument as _;
use transcoder_activities::secrets::SecretBox;
use transcoder_workflows::webhook::{clean_error, JobStatus, WebhookBody};
use transcoder_workflows::workflow::Progress;
use transcoder_workflows::{JobInput, TranscodeWorkflow};

use super::protocol::JobResult;

/// How often a running job's progress is read (the workflow's `progress` query, with the
/// running chunks' heartbeats as `status` counts them) and, when it changed, posted to
/// RunPod.
const PROGRESS_EVERY: Duration = Duration::from_secs(3);

/// What a pod needs to run jobs: the Temporal client, the SDK runtime, and the worker
/// settings built exactly as `transcoder worker` builds them.
pub struct Pod {
    pub client: Client,
    pub runtime: Arc<Runtime>,
    pub config: WorkerConfig,
    /// Seals each job's webhook secret before it reaches workflow history.
    pub secrets: SecretBox,
    pub max_retries: u64,
}

/// How a job ended on this pod.
#[derive(Debug)]
pub enum Outcome {
    /// Post this as the job's result.
    Finished(JobResult),
    /// RunPod asked to stop it: its workflow was cancelled, nothing is posted (§10).
    Stopped,
    /// This pod is shutting down before the workflow ended: nothing is posted, so RunPod
    /// delivers the job again and the next pod resumes the workflow where it is.
    Interrupted,
}

/// Signals that reach a running job.
pub struct Signals {
    /// Turns `true` when RunPod sends a job-stop for this job.
    pub stop: watch::Receiver<bool>,
    /// Turns `true` on SIGTERM/SIGINT.
    pub shutdown: watch::Receiver<bool>,
}

/// Where progress updates go: RunPod's job-done endpoint, or only the log (local modes).
pub struct ProgressSink<'a> {
    pub client: Option<&'a RunpodClient>,
    pub job_id: &'a str,
    /// Also told each update (the local API shows the latest in `/status`).
    pub local: Option<ProgressCallback>,
}

/// Told each progress update, as RunPod's `output` of an `IN_PROGRESS` job.
pub type ProgressCallback = std::sync::Arc<dyn Fn(Value) + Send + Sync>;

/// Runs one job to its end on this pod and hands the outcome to `report` (which posts the
/// result). The job's worker keeps running while `report` runs, so the result never waits
/// for the worker to wind down, and is stopped after it.
pub async fn run_job<F, Fut, T>(
    pod: &Pod,
    input: Value,
    signals: Signals,
    progress: ProgressSink<'_>,
    report: F,
) -> T
where
    F: FnOnce(Outcome) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    if transcoder_workflows::task::is_task(&input) {
        return run_task_job(pod, input, signals, progress, report).await;
    }
    // Taken before parsing, so even a parse error's text cannot carry it out.
    let raw_secret = input
        .get("webhookSecret")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // The job's trace: a child of the `traceparent` the job was queued with, if any.
    let job_span = tracing::info_span!(
        "runpod job",
        runpod.job_id = progress.job_id,
        media.id = input.get("mediaId").and_then(serde_json::Value::as_str).unwrap_or_default(),
        media.type = input.get("mediaType").and_then(serde_json::Value::as_str).unwrap_or_default(),
    );
    if let Some(parent) = input.get("traceparent").and_then(Value::as_str) {
        let state = input.get("tracestate").and_then(Value::as_str);
        crate::telemetry::continue_trace(&job_span, parent, state);
    }
    let too_big = serde_json::to_string(&input)
        .map(|t| t.len() > transcoder_workflows::job::MAX_PAYLOAD_BYTES)
        .unwrap_or(true);
    if !input.is_object() || too_big {
        let text = if too_big {
            format!(
                "the job input is over the limit of {} bytes for a payload",
                transcoder_workflows::job::MAX_PAYLOAD_BYTES
            )
        } else {
            "the job input is not a media-api payload (a JSON object of job fields)".to_string()
        };
        return report(Outcome::Finished(JobResult::error(clean_error(
            &text,
            &[&raw_secret],
        ))))
        .await;
    }
    // Fields of the wrong type or size become problems validation reports, with a failed
    // webhook where one can be sent.
    let mut job = JobInput::from_json(&input);
    let secret = job.webhook_secret.clone().unwrap_or_default();
    let media = json!({ "mediaId": job.media_id, "mediaType": job.media_type });
    let fail = |text: String| {
        Outcome::Finished(JobResult::Error {
            error: clean_error(&text, &[&secret]),
            output: Some(media.clone()),
        })
    };
    if let Err(e) = jobs::apply_env_defaults(&mut job) {
        return report(fail(format!("{e:#}"))).await;
    }
    if let Err(e) = jobs::seal_secret(&mut job, &pod.secrets) {
        return report(fail(e.to_string())).await;
    }

    let task_queue = pod.config.task_queue.clone();
    let (id, submitted) =
        match jobs::start_or_attach(&pod.client, &job, &task_queue, pod.max_retries)
            .instrument(job_span.clone())
            .await
        {
            Ok(started) => started,
            Err(e) => return report(fail(format!("{e:#}"))).await,
        };
    if submitted == Submitted::AlreadyCompleted {
        // Delivered again after its result was made: the stored result, nothing re-encoded.
        let outcome = match jobs::wait_for_body(&pod.client, &id, &job).await {
            Ok(body) => Outcome::Finished(result_from_body(&body)),
            Err(e) => fail(format!("{e:#}")),
        };
        return report(outcome).await;
    }

    let progress_task = spawn_progress(
        pod.client.clone(),
        id.clone(),
        progress.client.cloned(),
        progress.job_id.to_string(),
        progress.local.clone(),
    );
    let body = jobs::wait_for_body(&pod.client, &id, &job);
    let finished = async {
        match body.await {
            Ok(body) => Outcome::Finished(result_from_body(&body)),
            Err(e) => fail(format!("{e:#}")),
        }
    };
    let waiting = wait(pod, &id, finished, signals).instrument(job_span.clone());
    drive(pod, waiting, progress_task, fail, report).await
}

/// A task- or action-style job (`transcoder_workflows::task`): the same life as a
/// transcode job's (start or attach, a worker while it runs, stop and shutdown), answered
/// with the task's answer or `{"error": …}`.
async fn run_task_job<F, Fut, T>(
    pod: &Pod,
    input: Value,
    signals: Signals,
    progress: ProgressSink<'_>,
    report: F,
) -> T
where
    F: FnOnce(Outcome) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let span = tracing::info_span!("runpod task", runpod.job_id = progress.job_id);
    let prepared = match tasks::prepare(&input, &pod.secrets) {
        Ok(p) => p,
        Err(e) => return report(Outcome::Finished(JobResult::error(e.to_string()))).await,
    };
    let id = prepared.workflow_id.clone();
    let fail = |text: String| Outcome::Finished(JobResult::error(text));
    let submitted = match tasks::start_or_attach(&pod.client, &prepared, &pod.config.task_queue)
        .instrument(span.clone())
        .await
    {
        Ok(s) => s,
        Err(e) => return report(fail(format!("{e:#}"))).await,
    };
    let answer = async {
        match tasks::wait_for_answer(&pod.client, &id).await {
            Ok(Ok(value)) => Outcome::Finished(JobResult::Output(value)),
            Ok(Err(reason)) => fail(reason),
            Err(e) => fail(format!("{e:#}")),
        }
    };
    if submitted == Submitted::AlreadyCompleted {
        return report(answer.await).await;
    }
    let progress_task = spawn_task_progress(
        pod.client.clone(),
        id.clone(),
        progress.client.cloned(),
        progress.job_id.to_string(),
        progress.local.clone(),
    );
    let waiting = wait(pod, &id, answer, signals).instrument(span);
    drive(pod, waiting, progress_task, fail, report).await
}

/// Runs this pod's worker while `waiting` decides the job's outcome, stops the progress
/// updates, hands the outcome to `report`, and stops the worker after it.
async fn drive<W, F, Fut, T>(
    pod: &Pod,
    waiting: W,
    (progress_stop, progress_task): ProgressTask,
    fail: impl Fn(String) -> Outcome,
    report: F,
) -> T
where
    W: std::future::Future<Output = Outcome>,
    F: FnOnce(Outcome) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut worker = match worker::build(&pod.runtime, pod.client.clone(), &pod.config) {
        Ok(w) => w,
        Err(e) => {
            let _ = progress_stop.send(true);
            return report(fail(format!("this pod cannot run a worker: {e:#}"))).await;
        }
    };
    worker::log_start(&pod.config);
    let stop_worker = worker.shutdown_handle();
    // The SDK's worker future is not `Send`: it is driven here, beside the job, not spawned.
    let worker_run = async {
        if let Err(e) = worker.run().await {
            tracing::warn!(error = %e, "worker stopped with an error");
        }
    };
    tokio::pin!(worker_run);
    let mut worker_done = false;

    let outcome = {
        tokio::pin!(waiting);
        tokio::select! {
            outcome = &mut waiting => outcome,
            _ = &mut worker_run => {
                worker_done = true;
                fail("this pod's Temporal worker stopped before the job ended; the job's workflow is saved and resumes when it is submitted again".to_string())
            }
        }
    };
    // Progress ends before the result is posted: an update can never land after it
    // (pitfall 5). The update being sent is finished, not cut off halfway.
    let _ = progress_stop.send(true);
    let _ = progress_task.await;

    let reported = report(outcome);
    tokio::pin!(reported);
    let value = loop {
        tokio::select! {
            value = &mut reported => break value,
            _ = &mut worker_run, if !worker_done => worker_done = true,
        }
    };
    // Now stop polling and let running activities finish (they may be another job's
    // chunks: any pod on the task queue runs them), up to the grace period; after it they
    // are cancelled and Temporal retries them elsewhere.
    if !worker_done {
        stop_worker();
        let limit = pod.config.shutdown_grace + Duration::from_secs(10);
        if tokio::time::timeout(limit, &mut worker_run).await.is_err() {
            tracing::warn!("the worker did not stop within {limit:?}");
        }
    }
    value
}

/// Waits for the workflow to end (`finished` gives its outcome), for a job-stop, or for
/// shutdown.
async fn wait(
    pod: &Pod,
    id: &str,
    finished: impl std::future::Future<Output = Outcome>,
    mut signals: Signals,
) -> Outcome {
    tokio::pin!(finished);
    tokio::select! {
        outcome = &mut finished => outcome,
        _ = super::flipped(&mut signals.stop) => {
            // Cancelling is by workflow id: the handle's type only shapes results and
            // queries, so this serves task workflows too.
            let handle = pod.client.get_workflow_handle::<TranscodeWorkflow>(id);
            let options = WorkflowCancelOptions::builder()
                .reason("RunPod job stopped (cancelled, expired or timed out)".to_string())
                .build();
            match handle.cancel(options).await {
                Ok(()) => {
                    // The cancellation is carried out by a workflow task: keep this pod's
                    // worker (polled beside this future) running until the workflow ends.
                    let ended = tokio::time::timeout(pod.config.shutdown_grace, &mut finished).await;
                    tracing::info!(workflow_id = %id, ended = ended.is_ok(), "job stopped by RunPod: workflow cancelled");
                }
                Err(e) => tracing::warn!(workflow_id = %id, error = %e, "job stopped by RunPod; cancelling its workflow failed"),
            }
            Outcome::Stopped
        }
        _ = super::flipped(&mut signals.shutdown) => {
            // Finish if the workflow ends within the grace period; otherwise leave it to
            // the next pod: every finished activity is already in history.
            let grace = pod.config.shutdown_grace;
            tracing::info!(workflow_id = %id, ?grace, "shutting down: waiting for the job to finish within the grace period");
            match tokio::time::timeout(grace, &mut finished).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    tracing::info!(workflow_id = %id, "job not finished: no result posted, RunPod delivers it again and the next pod resumes it");
                    Outcome::Interrupted
                }
            }
        }
    }
}

/// The RunPod result for a final webhook body: its `output` (pitfall 1: not wrapped in
/// another `output`), or the failure text as a string `error` with the media id and type.
pub fn result_from_body(body: &WebhookBody) -> JobResult {
    let output = serde_json::to_value(&body.output).unwrap_or(Value::Null);
    match body.status {
        JobStatus::Completed => JobResult::Output(output),
        JobStatus::Failed => JobResult::Error {
            error: body
                .error
                .clone()
                .unwrap_or_else(|| "the job failed".to_string()),
            output: Some(output),
        },
    }
}

/// A running progress reporter: its stop switch and its task.
type ProgressTask = (watch::Sender<bool>, tokio::task::JoinHandle<()>);

/// The transcode's progress (its `progress` query with the running chunks' heartbeats, as
/// `status` counts them), posted when it changed; the percentage never goes back.
fn spawn_progress(
    temporal: Client,
    workflow_id: String,
    runpod: Option<RunpodClient>,
    job_id: String,
    local: Option<ProgressCallback>,
) -> ProgressTask {
    // Running chunks' heartbeats can lag a chunk's finish by a beat; what RunPod shows must
    // never go backwards.
    let highest = Arc::new(std::sync::atomic::AtomicU8::new(0));
    spawn_reporter(runpod, job_id, local, move || {
        let (temporal, workflow_id, highest) =
            (temporal.clone(), workflow_id.clone(), Arc::clone(&highest));
        async move {
            let p: Progress = crate::status::live_progress(&temporal, &workflow_id)
                .await
                .ok()?;
            let percent = highest
                .fetch_max(p.percent, std::sync::atomic::Ordering::Relaxed)
                .max(p.percent);
            Some(json!({
                "workflowId": workflow_id,
                "step": p.step,
                "percent": percent,
                "chunksDone": p.chunks_done,
                "chunksTotal": p.chunks_total,
            }))
        }
    })
}

/// A task's progress: its state and how many of its parts are done.
fn spawn_task_progress(
    temporal: Client,
    workflow_id: String,
    runpod: Option<RunpodClient>,
    job_id: String,
    local: Option<ProgressCallback>,
) -> ProgressTask {
    spawn_reporter(runpod, job_id, local, move || {
        let (temporal, workflow_id) = (temporal.clone(), workflow_id.clone());
        async move {
            let p = tasks::query_progress(&temporal, &workflow_id).await?;
            Some(json!({
                "workflowId": workflow_id,
                "task": p.task,
                "state": p.state,
                "done": p.done,
                "total": p.total,
            }))
        }
    })
}

/// Every [`PROGRESS_EVERY`], reads the job's progress with `read` and, when it changed, tells
/// the local API and posts it to RunPod, one post at a time, until told to stop.
fn spawn_reporter<R, Fut>(
    runpod: Option<RunpodClient>,
    job_id: String,
    local: Option<ProgressCallback>,
    mut read: R,
) -> ProgressTask
where
    R: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<Value>> + Send,
{
    let (tx, mut rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut last: Option<Value> = None;
        loop {
            let current = tokio::select! {
                r = read() => r,
                _ = super::flipped(&mut rx) => return,
            };
            if let Some(value) = current {
                if last.as_ref() != Some(&value) && !*rx.borrow() {
                    tracing::info!(job_id, progress = %value, "progress");
                    if let Some(tell) = &local {
                        tell(value.clone());
                    }
                    if let Some(client) = &runpod {
                        client.post_progress(&job_id, &value).await;
                    }
                    last = Some(value);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(PROGRESS_EVERY) => {}
                _ = super::flipped(&mut rx) => return,
            }
        }
    });
    (tx, task)
}
