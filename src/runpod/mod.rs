//! `transcoder runpod`: a native RunPod serverless worker (queue-based endpoints).
//!
//! The pod is the activity executor: each RunPod job starts or attaches to the job's
//! Temporal workflow and this pod runs a worker until that workflow ends. The protocol
//! follows `runpod-worker-protocol.md` (shared design folder) and fixes the SDK pitfalls it
//! lists. Modules:
//! - `protocol`: environment, URLs and bodies (pure);
//! - `client`: HTTP to the worker API, with timeouts, backoff and retries;
//! - `heartbeat`: the in-flight list, the ping task and the job-stop listener;
//! - `handler`: one job → one workflow → one result;
//! - `local`: `--test-input`, `test_input.json` and `--serve-api`;
//! - `state`: where Temporal lives (TEMPORAL_ADDRESS, or an embedded server on the volume).

pub mod client;
pub mod fitness;
pub mod handler;
pub mod heartbeat;
pub mod local;
pub mod protocol;
pub mod state;

use client::{backoff, RunpodClient, TakeAnswer, EMPTY_ANSWER_FLOOR, TOO_MANY_REQUESTS_DELAY};
use handler::{Outcome, Pod, ProgressSink, Signals};
use heartbeat::InFlight;
use protocol::{Job, JobResult, Taken};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Errors of the RunPod worker.
#[derive(Debug, thiserror::Error)]
pub enum RunpodError {
    #[error(transparent)]
    Config(#[from] protocol::ConfigError),
    #[error("HTTP client: {0}")]
    Http(#[source] reqwest::Error),
    #[error("RunPod refused the result ({0}); it is lost")]
    Rejected(String),
    #[error("the result could not be delivered after {attempts} attempts (last: {last})")]
    GaveUp { attempts: u32, last: String },
    #[error("{0}")]
    Setup(String),
    #[error("test input: {0}")]
    TestInput(String),
    #[error("local API on {addr}: {reason}")]
    Serve { addr: String, reason: String },
}

/// The longest wait between two job-take attempts after failures.
const TAKE_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Resolves once the watch reads `true` (or its sender is gone). Holds no borrow of the
/// value across awaits.
pub async fn flipped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// A watch that turns `true` on SIGTERM or SIGINT.
pub fn shutdown_watch() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        crate::worker::shutdown_signal().await;
        tracing::info!("SIGTERM/SIGINT: no new jobs; finishing or checkpointing the current one");
        let _ = tx.send(true);
    });
    rx
}

/// The production loop (reference §4–§11): take a job, run it, post its result; pings and
/// the job-stop listener on their own tasks. Returns after SIGTERM/SIGINT once the current
/// job is finished (result posted) or checkpointed (left to be delivered again).
pub async fn serve(pod: &Pod, client: RunpodClient, mut shutdown: watch::Receiver<bool>) {
    let in_flight = InFlight::default();
    let heartbeat = heartbeat::spawn_heartbeat(client.clone(), in_flight.clone());
    let stops = heartbeat::spawn_stop_listener(client.clone(), in_flight.clone());
    tracing::info!(pod_id = %client.endpoints.pod_id, "RunPod worker taking jobs");

    let mut queue: VecDeque<(Job, watch::Receiver<bool>)> = VecDeque::new();
    let mut failures = 0u32;
    let mut unfit: Option<fitness::Unfit> = None;
    while !*shutdown.borrow() {
        let Some((job, stop)) = queue.pop_front() else {
            let started = Instant::now();
            // The long poll is dropped on shutdown instead of running out its 90 s: we
            // hold no job while polling (§11 notes the SDK's exit can take that long).
            let answer = tokio::select! {
                a = client.take(!in_flight.is_empty()) => a,
                _ = flipped(&mut shutdown) => break,
            };
            let pause = match answer {
                TakeAnswer::Taken(Taken::Jobs(jobs)) => {
                    failures = 0;
                    for job in jobs {
                        tracing::info!(job_id = %job.id, "job taken");
                        let stop = in_flight.add(&job.id);
                        queue.push_back((job, stop));
                    }
                    Duration::ZERO
                }
                TakeAnswer::Taken(Taken::Nothing) => {
                    failures = 0;
                    EMPTY_ANSWER_FLOOR.saturating_sub(started.elapsed())
                }
                TakeAnswer::Taken(Taken::Invalid { id, reason }) => {
                    failures = 0;
                    tracing::warn!(job_id = %id, %reason, "job without usable input");
                    in_flight.add(&id);
                    report(&client, &id, &JobResult::error(reason)).await;
                    in_flight.remove(&id);
                    Duration::ZERO
                }
                TakeAnswer::Taken(Taken::Unusable(why)) => {
                    tracing::warn!(%why, "job-take answer dropped: no job id to report to");
                    EMPTY_ANSWER_FLOOR
                }
                TakeAnswer::TooMany => TOO_MANY_REQUESTS_DELAY,
                TakeAnswer::Failed(why) => {
                    failures += 1;
                    let wait = backoff(failures - 1, TAKE_MAX_BACKOFF);
                    tracing::warn!(error = %why, retry_in = ?wait, "job-take failed");
                    wait
                }
            };
            if !pause.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = flipped(&mut shutdown) => break,
                }
            }
            continue;
        };

        let signals = Signals {
            stop,
            shutdown: shutdown.clone(),
        };
        let progress = ProgressSink {
            client: Some(&client),
            job_id: &job.id,
            local: None,
        };
        let job_id = job.id.clone();
        let client_ref = &client;
        let in_flight_ref = &in_flight;
        let unfit_ref = &mut unfit;
        handler::run_job(pod, job.input, signals, progress, |outcome| async move {
            match outcome {
                Outcome::Finished(result) => {
                    // A failed job may be the pod's fault (its disk filled, its ffmpeg
                    // broke): if the fitness checks now fail, ask for a new pod.
                    if result.is_error() {
                        if let Err(why) = fitness::check(&pod.config.scratch_dir).await {
                            tracing::error!(check = why.check, reason = %why.reason, "this pod is no longer fit: asking RunPod to replace it (stopPod)");
                            *unfit_ref = Some(why);
                        }
                    }
                    report_stopping(client_ref, &job_id, &result, unfit_ref.is_some()).await
                }
                Outcome::Stopped => tracing::info!(%job_id, "job stopped; nothing posted"),
                Outcome::Interrupted => {
                    // Still ours while the worker checkpoints what it can in the grace
                    // period: it leaves the ping below, once the worker has stopped.
                    tracing::info!(%job_id, "job left for RunPod to deliver again");
                    return;
                }
            }
            // Out of the ping only now that the result is delivered (or given up on), and
            // already now: the pod's worker may take seconds more to wind down its
            // activities, and pings must not go on claiming a job that is over.
            in_flight_ref.remove(&job_id);
        })
        .await;
        in_flight.remove(&job.id);
        if let Some(why) = &unfit {
            tracing::error!(check = why.check, "stopping: RunPod replaces this pod");
            break;
        }
    }
    // Jobs taken in a batch and not started: nothing posted, RunPod delivers them again.
    for (job, _) in queue {
        tracing::info!(job_id = %job.id, "not started before shutdown; left for RunPod");
    }
    heartbeat.abort();
    stops.abort();
    tracing::info!("RunPod worker stopped");
}

async fn report(client: &RunpodClient, job_id: &str, result: &JobResult) {
    report_stopping(client, job_id, result, false).await;
}

/// Posts a result; with `stop_pod`, it also asks RunPod to replace this pod (the SDK's
/// `refresh_worker`).
async fn report_stopping(client: &RunpodClient, job_id: &str, result: &JobResult, stop_pod: bool) {
    if let Err(e) = client.post_result(job_id, result, stop_pod).await {
        tracing::error!(job_id, error = %e, "the job's result was not delivered");
    }
}
