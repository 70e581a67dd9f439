//! `MediaTaskWorkflow`: one small media task (a task- or action-style RunPod payload) as a
//! durable workflow. The request reaches history already checked (`task::parse_task`) and
//! with every signed URL sealed; the workflow runs the task's activity, whose retries and
//! heartbeats are the transcode's, and answers in the shape the payload's style expects:
//! a task's result object, or `{"success": true, "result": …}` for an action. A failure
//! fails the workflow with the reason, which the client turns into `{"error": …}`; a
//! request sent again after a failure runs again, after a success returns the stored answer.

use crate::activities::task_defs as act;
use crate::task::{AudioTrim, MediaTask, ProcessStep, StageSource};
use crate::window::run_windowed;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::time::Duration;
use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, ApplicationFailure, WorkflowContext,
    WorkflowContextView, WorkflowResult,
};

/// Prefix of every task workflow id.
pub const TASK_PREFIX: &str = "task-";

/// Workflow id of the task with idempotency key `key`.
pub fn task_workflow_id(key: &str) -> String {
    format!("{TASK_PREFIX}{key}")
}

/// What the workflow is asked to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskRequest {
    pub task: MediaTask,
}

/// Where a running task is, for the `progress` query.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskProgress {
    /// The task's name (`AUDIO_TRIM`, `probe`, …).
    pub task: String,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// Parts finished and planned.
    pub done: u32,
    pub total: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

#[workflow]
#[derive(Default)]
pub struct MediaTaskWorkflow {
    progress: TaskProgress,
}

#[workflow_methods]
impl MediaTaskWorkflow {
    /// The task's state and how many of its parts are done; answered by any worker.
    #[query]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> TaskProgress {
        self.progress.clone()
    }

    #[run]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        request: TaskRequest,
    ) -> WorkflowResult<Value> {
        let name = request.task.name();
        ctx.state_mut(|s| {
            s.progress = TaskProgress {
                task: name.to_string(),
                state: "running".into(),
                done: 0,
                total: 1,
                failure: None,
            }
        });
        let result = match request.task.clone() {
            MediaTask::StageObject(t) => {
                ctx.execute_activity(act::StageObject, t, options(600))
                    .await
            }
            MediaTask::AudioTrim(t) => ctx.execute_activity(act::AudioTrim, t, options(3600)).await,
            MediaTask::Downsampling(t) => {
                match ctx
                    .execute_activity(act::DownsamplePlan, t.clone(), options(3600))
                    .await
                {
                    Err(e) => Err(e),
                    Ok(plan) => {
                        match plan.and_then(|p| chunked::chunks_of(&p.probe).map(|c| (p, c))) {
                            Some((plan, pieces)) => chunked::downsample(ctx, &plan, &pieces).await,
                            None => {
                                ctx.execute_activity(act::Downsample, t, options(6 * 3600))
                                    .await
                            }
                        }
                    }
                }
            }
            MediaTask::Encoding(t) => {
                // Histories without the marker ran every ENCODING as one activity.
                let plan = match ctx.patched(ENCODING_PLANNED) {
                    true => {
                        ctx.execute_activity(act::EncodingPlan, t.clone(), options(3600))
                            .await
                    }
                    false => Ok(None),
                };
                match plan {
                    Err(e) => Err(e),
                    Ok(plan) => {
                        match plan.and_then(|p| chunked::chunks_of(&p.probe).map(|c| (p, c))) {
                            Some((plan, pieces)) => {
                                chunked::encoding(ctx, &t, &plan, &pieces).await
                            }
                            None => {
                                ctx.execute_activity(act::Encoding, t, options(6 * 3600))
                                    .await
                            }
                        }
                    }
                }
            }
            MediaTask::Probe(t) => ctx.execute_activity(act::ProbeMedia, t, options(600)).await,
            MediaTask::Process(process) => {
                let step = ProcessStep {
                    field: "data".into(),
                    process,
                };
                ctx.execute_activity(act::Process, step, options(6 * 3600))
                    .await
            }
            MediaTask::MultiProcess(processes) => {
                let steps: Vec<ProcessStep> = processes
                    .into_iter()
                    .enumerate()
                    .map(|(i, process)| ProcessStep {
                        field: format!("data.processes[{i}]"),
                        process,
                    })
                    .collect();
                fan_out(ctx, &steps, |step| {
                    ctx.execute_activity(act::Process, step.clone(), options(6 * 3600))
                })
                .await
                .map(|results| json!({ "processes": results }))
            }
            MediaTask::AudioTrimBatch(batch) => {
                ctx.state_mut(|s| s.progress.total = batch.segments.len() as u32);
                // An http(s)/gs:// master is copied into a store once, not fetched by every
                // segment (histories without the marker fetched it per segment).
                let staged = match (ctx.patched(TRIM_SOURCE_STAGED), batch.segments.first()) {
                    (true, Some(first)) => {
                        let stage = StageSource {
                            field: "parameters.source_uri".into(),
                            uri: batch.source_uri.clone(),
                            output: first.output.clone(),
                        };
                        ctx.execute_activity(act::StageSource, stage, options(3600))
                            .await
                    }
                    _ => Ok(None),
                };
                let copy = staged.as_ref().ok().cloned().flatten();
                let trims: Vec<AudioTrim> = (0..batch.segments.len())
                    .filter_map(|i| batch.trim(i))
                    .map(|trim| AudioTrim {
                        staged: copy.clone(),
                        ..trim
                    })
                    .collect();
                let cut = match staged {
                    Err(e) => Err(e),
                    Ok(_) => {
                        fan_out(ctx, &trims, |trim| {
                            ctx.execute_activity(act::AudioTrim, trim.clone(), options(3600))
                        })
                        .await
                    }
                };
                if let Some(copy) = copy {
                    // Failing to remove the copy costs storage, not the task.
                    let _ = ctx
                        .execute_activity(
                            crate::activities::defs::RemoveObjects,
                            vec![copy],
                            options(600),
                        )
                        .await;
                }
                cut.map(|results| {
                    json!({
                        "task": "AUDIO_TRIM",
                        "source_uri": crate::job::redact_uri(&batch.source_uri),
                        "done": results.len(),
                        "total": batch.segments.len(),
                        "segments": results,
                    })
                })
            }
            MediaTask::Vmaf(t) => ctx.execute_activity(act::Vmaf, t, options(6 * 3600)).await,
        };
        match result {
            Ok(answer) => {
                ctx.state_mut(|s| {
                    s.progress.state = "done".into();
                    s.progress.done = s.progress.total;
                });
                Ok(if request.task.is_action() {
                    json!({"success": true, "result": answer})
                } else {
                    answer
                })
            }
            Err(e) => {
                let reason = format!("{name} failed: {}", crate::activities::failure_message(&e));
                Err(fail(ctx, reason))
            }
        }
    }
}

/// Marks trim batches whose `http(s)`/`gs://` master is copied into a store once.
const TRIM_SOURCE_STAGED: &str = "trim-source-staged";

/// Marks `ENCODING`s that are planned first (and long ones with burned subtitles chunked).
const ENCODING_PLANNED: &str = "encoding-planned";

/// How many of a task's parts run at once (chains of `multi_process`, spans of a trim batch).
const PARTS_AT_ONCE: usize = 16;

/// Runs one activity per item, [`PARTS_AT_ONCE`] at a time, counting finished ones for the
/// `progress` query; the answers in the items' order, or the first failure.
pub(crate) async fn fan_out<'a, I, T, F, Fut>(
    ctx: &WorkflowContext<MediaTaskWorkflow>,
    items: &'a [I],
    start: F,
) -> Result<Vec<T>, ActivityExecutionError>
where
    F: Fn(&'a I) -> Fut,
    Fut: std::future::Future<Output = Result<T, ActivityExecutionError>>,
{
    ctx.state_mut(|s| s.progress.total = items.len() as u32);
    let indices: Vec<usize> = (0..items.len()).collect();
    let mut answers = run_windowed(
        &indices,
        PARTS_AT_ONCE,
        |&i| {
            let running = start(&items[i]);
            Box::pin(async move { running.await.map(|answer| (i, answer)) })
        },
        |finished| ctx.state_mut(|s| s.progress.done = finished as u32),
    )
    .await?;
    answers.sort_by_key(|(i, _)| *i);
    Ok(answers.into_iter().map(|(_, answer)| answer).collect())
}

/// Records the failure for the `progress` query and makes it the workflow's.
fn fail(
    ctx: &WorkflowContext<MediaTaskWorkflow>,
    reason: String,
) -> temporalio_sdk::WorkflowTermination {
    ctx.state_mut(|s| {
        s.progress.state = "failed".into();
        s.progress.failure = Some(reason.clone());
    });
    ApplicationFailure::non_retryable(reason).into()
}

mod chunked;

/// A task's activity: up to `timeout_secs`, heartbeats every few seconds (a lost worker's
/// attempt is retried elsewhere within a minute), transient failures retried with backoff;
/// permanent ones (bad input) are raised non-retryable by the activity.
pub(crate) fn options(timeout_secs: u64) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(timeout_secs))
        .heartbeat_timeout(Duration::from_secs(30))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .backoff_coefficient(2.0)
                .maximum_interval(Duration::from_secs(60))
                .maximum_attempts(5)
                .build(),
        )
        .build()
}
