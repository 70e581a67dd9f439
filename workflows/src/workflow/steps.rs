//! What every step of a job shares: the workflow clock, the receipt and progress it
//! records, activity options, the windows chunks run in, and error wording.

use super::*;

/// Workflow time in seconds since the epoch: replay-safe, it comes from history.
pub(super) fn clock(ctx: &WorkflowContext<TranscodeWorkflow>) -> f64 {
    ctx.workflow_time()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Adds a finished step to the job's receipt.
pub(super) fn record(ctx: &WorkflowContext<TranscodeWorkflow>, step: StepTiming) {
    ctx.state_mut(|s| s.receipt.add(step));
}

/// Records that the job failed, and why, as its failed webhook starts (the `progress` query
/// then carries the reason to whoever waits).
pub(super) fn failed(ctx: &WorkflowContext<TranscodeWorkflow>, reason: &str) {
    step(ctx, "webhook", 99);
    ctx.state_mut(|s| s.progress.failure = Some(reason.to_string()));
}

/// Records the current step in workflow state (read by the `progress` query).
pub(super) fn step(ctx: &WorkflowContext<TranscodeWorkflow>, name: &str, percent: u8) {
    ctx.state_mut(|s| {
        s.progress.step = name.to_string();
        s.progress.percent = percent;
    });
}

/// A readable reason from an activity failure: the innermost cause's message, which is the
/// activity's own error text (not the SDK's "activity task failed" wrapper).
pub(super) fn step_failed(step: &str, err: &ActivityExecutionError) -> String {
    format!("{step} failed: {}", crate::activities::failure_message(err))
}

/// Bounded retries with backoff for failures that may heal (a killed process, I/O, network).
/// Permanent failures are raised as non-retryable by the activity and skip these.
pub(super) fn transient_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_secs(1))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(60))
        .maximum_attempts(attempts)
        .build()
}

/// Options for short steps (probe, thumbnail): they heartbeat too, so a killed worker's
/// step is retried elsewhere after 30 s instead of after its whole timeout.
pub(super) fn short_step(timeout: Duration) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(timeout)
        .heartbeat_timeout(Duration::from_secs(30))
        .retry_policy(transient_retries(5))
        .build()
}

/// Options for encodes: a generous timeout that scales with the input, and a heartbeat
/// timeout (30 s; activities heartbeat every 5 s) so a dead worker's task is retried
/// elsewhere within about a minute.
pub(super) fn long_running(probe: &ProbeResult) -> ActivityOptions {
    // Budget 20x real time on CPU plus a fixed allowance, at least an hour.
    let secs = (probe.duration_seconds.max(0.0) * 20.0) as u64 + 600;
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(secs.max(3600)))
        .heartbeat_timeout(Duration::from_secs(30))
        .retry_policy(transient_retries(3))
        .build()
}

/// Options for one chunk: its timeout scales with its length; a dead worker's chunk is
/// retried elsewhere after the 30 s heartbeat timeout.
pub(super) fn chunk_options(chunk: &ChunkPlan) -> ActivityOptions {
    let secs = (chunk.duration_seconds.max(1.0) * 30.0) as u64 + 300;
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(secs))
        .heartbeat_timeout(Duration::from_secs(30))
        .retry_policy(transient_retries(4))
        .build()
}

/// Runs `start` for each chunk, at most `width` at a time, keeping the progress query's
/// chunk counts (see [`run_windowed`]).
pub(super) async fn in_window<'a, T, F, Fut>(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    chunks: &'a [ChunkPlan],
    width: usize,
    start: F,
) -> Result<Vec<T>, String>
where
    F: Fn(&'a ChunkPlan) -> std::pin::Pin<Box<Fut>>,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let total = chunks.len() as u32;
    ctx.state_mut(|s| s.progress.chunks_total = total);
    run_windowed(chunks, width, start, |finished| {
        let finished = finished as u32;
        ctx.state_mut(|s| {
            s.progress.chunks_done = finished;
            s.progress.percent = ladder_percent(f64::from(finished), total);
        });
    })
    .await
}

pub(super) use crate::window::run_windowed;

/// Removes objects that were only steps on the way (pieces, meter readings, stretches).
/// Failing to remove them costs storage, not the job.
pub(super) async fn remove_scratch(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    objects: Vec<ObjectRef>,
) {
    let _ = ctx
        .execute_activity(
            act::RemoveObjects,
            objects,
            short_step(Duration::from_secs(600)),
        )
        .await;
}

/// The ladder spans these percentages of a video job's progress.
pub(super) const LADDER_START: u8 = 20;

pub(super) const LADDER_END: u8 = 88;

/// A video job's overall percent while its ladder runs, with `done` of `total` chunks
/// finished. `done` may count fractions: `transcoder status` adds the running chunks'
/// heartbeat progress, which the workflow itself never sees.
pub fn ladder_percent(done: f64, total: u32) -> u8 {
    let span = f64::from(LADDER_END - LADDER_START);
    let share = if total == 0 {
        span
    } else {
        // Multiplied first: for whole chunks this is exact, as integer division was.
        (done * span / f64::from(total)).clamp(0.0, span).floor()
    };
    LADDER_START + share as u8
}

/// One activity as a step of the job: runs `call`, adds its wall time to the receipt as
/// `name` with what `facts` reads of the result, and words a failure with `what`, as every
/// step's error is worded.
pub(super) async fn timed<T>(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    name: &str,
    what: &str,
    call: impl std::future::Future<Output = Result<T, ActivityExecutionError>>,
    facts: impl FnOnce(StepTiming, &T) -> StepTiming,
) -> Result<T, String> {
    let t = clock(ctx);
    let made = call.await.map_err(|e| step_failed(what, &e))?;
    record(ctx, facts(StepTiming::new(name, t, clock(ctx)), &made));
    Ok(made)
}
