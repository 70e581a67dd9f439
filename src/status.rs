//! `transcoder status MEDIA_ID`: where a job is, from Temporal itself. The execution's
//! description gives its state and the activities running now (with the progress their
//! heartbeats carry); the workflow's `progress` and `receipt` queries give the current step,
//! the percentage and what each finished step cost. A finished job's receipt comes from its
//! result, so no worker has to be running to read it.

use anyhow::{Context, Result};
use serde::Serialize;
use std::time::{Duration, SystemTime};
use temporalio_client::errors::WorkflowGetResultError;
use temporalio_client::{
    Client, WorkflowDescribeOptions, WorkflowExecutionDescription, WorkflowExecutionStatus,
    WorkflowGetResultOptions, WorkflowQueryOptions,
};
use transcoder_workflows::media::HeartbeatDetails;
use transcoder_workflows::receipt::Receipt;
use transcoder_workflows::workflow::{ladder_percent, Progress, TranscodeResult};
use transcoder_workflows::{workflow_id, TranscodeWorkflow};

/// Queries need a worker to answer; one that does not answer in this time is reported as
/// such rather than hanging the command.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// What `status --json` prints.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStatusReport {
    pub media_id: String,
    pub workflow_id: String,
    /// `running`, `completed`, `failed`, `canceled`, `terminated`, `timed_out`, …
    pub state: String,
    /// The workflow's current step (`mezzanine`, `ladder`, …; `done` at the end).
    pub step: Option<String>,
    /// 0–100.
    pub percent: Option<u8>,
    pub chunks_done: Option<u32>,
    pub chunks_total: Option<u32>,
    /// Activities running now, with the progress of their last heartbeat.
    pub running: Vec<RunningActivity>,
    /// Seconds since the epoch.
    pub started_at: Option<f64>,
    pub elapsed_seconds: Option<f64>,
    /// Per-step cost so far (`outcome: running`) or final.
    pub receipt: Option<Receipt>,
    /// `ready` or `failed` for a finished job: the webhook status it sent.
    pub webhook_status: Option<String>,
    /// Whether that webhook got through: `delivered (HTTP 200)`, `not sent: …` (from the
    /// receipt; absent when no worker answered for a failed job).
    pub webhook_delivery: Option<String>,
    pub error: Option<String>,
    /// Why the step/percent fields are missing, when they are (no worker answered).
    pub note: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunningActivity {
    pub step: String,
    pub attempt: u32,
    /// 0–100 from the last heartbeat, if one arrived yet.
    pub percent: Option<f64>,
    pub last_failure: Option<String>,
}

fn state_name(status: WorkflowExecutionStatus) -> &'static str {
    match status {
        WorkflowExecutionStatus::Running => "running",
        WorkflowExecutionStatus::Completed => "completed",
        WorkflowExecutionStatus::Failed => "failed",
        WorkflowExecutionStatus::Canceled => "canceled",
        WorkflowExecutionStatus::Terminated => "terminated",
        WorkflowExecutionStatus::ContinuedAsNew => "continued_as_new",
        WorkflowExecutionStatus::TimedOut => "timed_out",
        WorkflowExecutionStatus::Paused => "paused",
        _ => "unknown",
    }
}

fn unix(t: SystemTime) -> Option<f64> {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs_f64())
}

/// The activities running now, each with the progress of its last heartbeat.
fn running_activities(description: &WorkflowExecutionDescription) -> Vec<RunningActivity> {
    description
        .raw_description
        .pending_activities
        .iter()
        .map(|a| RunningActivity {
            step: a
                .activity_type
                .as_ref()
                .map(|t| t.name.clone())
                .unwrap_or_default(),
            attempt: u32::try_from(a.attempt).unwrap_or(0),
            percent: a
                .heartbeat_details
                .as_ref()
                .and_then(|d| d.payloads.first())
                .and_then(|p| HeartbeatDetails::from_json(&p.data))
                .map(|d| (d.progress * 1000.0).round() / 10.0),
            last_failure: a
                .last_failure
                .as_ref()
                .map(|f| f.message.clone())
                .filter(|m| !m.is_empty()),
        })
        .collect()
}

/// The job's overall percent. The workflow only counts finished chunks, so during the
/// ladder the running chunks' heartbeat progress is added: a job in few long chunks moves
/// instead of sitting on one number.
fn overall_percent(p: &Progress, running: &[RunningActivity]) -> u8 {
    if p.step != "ladder" || p.chunks_total == 0 {
        return p.percent;
    }
    let partial: f64 = running
        .iter()
        .filter(|a| a.step == "ladder_chunk")
        .filter_map(|a| a.percent)
        .map(|percent| (percent / 100.0).clamp(0.0, 1.0))
        .sum();
    ladder_percent(f64::from(p.chunks_done) + partial, p.chunks_total).max(p.percent)
}

/// The `progress` query's answer with `percent` made live as in `status` (running chunks
/// counted). For progress reports that poll a running job, e.g. the RunPod worker's.
pub async fn live_progress(client: &Client, workflow_id: &str) -> Result<Progress> {
    let handle = client.get_workflow_handle::<TranscodeWorkflow>(workflow_id);
    let mut progress = tokio::time::timeout(
        QUERY_TIMEOUT,
        handle.query(
            TranscodeWorkflow::progress,
            (),
            WorkflowQueryOptions::default(),
        ),
    )
    .await
    .context("no worker answered the progress query")??;
    if progress.step == "ladder" {
        if let Ok(description) = handle.describe(WorkflowDescribeOptions::default()).await {
            progress.percent = overall_percent(&progress, &running_activities(&description));
        }
    }
    Ok(progress)
}

/// Reads the status of `transcode-{media_id}`.
pub async fn job_status(client: &Client, media_id: &str) -> Result<JobStatusReport> {
    let id = workflow_id(media_id);
    let handle = client.get_workflow_handle::<TranscodeWorkflow>(&id);
    let description = handle
        .describe(WorkflowDescribeOptions::default())
        .await
        .with_context(|| format!("no job {id} on this Temporal server (media id {media_id})"))?;
    let state = description.status();
    let started = description.start_time();
    let ended = description.close_time();
    let elapsed = started.and_then(|s| {
        ended
            .unwrap_or_else(SystemTime::now)
            .duration_since(s)
            .ok()
            .map(|d| (d.as_secs_f64() * 10.0).round() / 10.0)
    });
    let running = running_activities(&description);
    let mut report = JobStatusReport {
        media_id: media_id.to_string(),
        workflow_id: id.clone(),
        state: state_name(state).to_string(),
        step: None,
        percent: None,
        chunks_done: None,
        chunks_total: None,
        running,
        started_at: started.and_then(unix),
        elapsed_seconds: elapsed,
        receipt: None,
        webhook_status: None,
        webhook_delivery: None,
        error: None,
        note: None,
    };

    match state {
        WorkflowExecutionStatus::Running => {
            let progress = tokio::time::timeout(
                QUERY_TIMEOUT,
                handle.query(
                    TranscodeWorkflow::progress,
                    (),
                    WorkflowQueryOptions::default(),
                ),
            )
            .await;
            match progress {
                Ok(Ok(p)) => apply_progress(&mut report, p),
                Ok(Err(e)) => report.note = Some(format!("the progress query failed: {e}")),
                Err(_) => {
                    report.note = Some(format!(
                        "no worker answered the progress query within {}s (is a worker polling the task queue?)",
                        QUERY_TIMEOUT.as_secs()
                    ))
                }
            }
            if report.note.is_none() {
                report.receipt = crate::jobs::query_receipt(client, &id, QUERY_TIMEOUT).await;
            }
        }
        WorkflowExecutionStatus::Completed => {
            match handle.get_result(WorkflowGetResultOptions::default()).await {
                Ok(TranscodeResult {
                    webhook, receipt, ..
                }) => {
                    report.step = Some("done".into());
                    report.percent = Some(100);
                    report.webhook_status = Some(
                        match webhook.status {
                            transcoder_workflows::webhook::JobStatus::Completed => "ready",
                            transcoder_workflows::webhook::JobStatus::Failed => "failed",
                        }
                        .to_string(),
                    );
                    report.error = webhook.error;
                    report.receipt = Some(receipt);
                }
                Err(e) => report.note = Some(format!("reading the result failed: {e}")),
            }
        }
        _ => {
            report.step = Some(report.state.clone());
            report.percent = Some(100);
            match handle.get_result(WorkflowGetResultOptions::default()).await {
                Err(WorkflowGetResultError::Failed(failure)) => {
                    report.error = Some(failure.failure().message.clone());
                    report.webhook_status = Some("failed".into());
                    report.receipt =
                        crate::jobs::query_receipt(client, &id, crate::jobs::RECEIPT_QUERY_TIMEOUT)
                            .await;
                }
                Err(other) => report.error = Some(other.to_string()),
                Ok(_) => {}
            }
        }
    }
    report.webhook_delivery = report
        .receipt
        .as_ref()
        .and_then(|r| r.webhook.as_ref())
        .map(|w| w.detail.clone());
    Ok(report)
}

/// Fills step, percent and chunks from the workflow's `progress` query.
fn apply_progress(report: &mut JobStatusReport, p: Progress) {
    report.percent = Some(overall_percent(&p, &report.running));
    if p.chunks_total > 0 {
        report.chunks_done = Some(p.chunks_done);
        report.chunks_total = Some(p.chunks_total);
    }
    report.step = Some(p.step);
}

/// The human form: a headline, the running activities, and the receipt's steps.
pub fn render(report: &JobStatusReport) -> String {
    let mut out = String::new();
    let mut headline = format!(
        "{} ({}): {}",
        report.media_id, report.workflow_id, report.state
    );
    if let Some(step) = &report.step {
        headline.push_str(&format!(", step {step}"));
    }
    if let Some(percent) = report.percent {
        headline.push_str(&format!(", {percent}%"));
    }
    if let (Some(done), Some(total)) = (report.chunks_done, report.chunks_total) {
        headline.push_str(&format!(", ladder chunks {done}/{total}"));
    }
    if let Some(elapsed) = report.elapsed_seconds {
        headline.push_str(&format!(", {elapsed:.1}s elapsed"));
    }
    out.push_str(&headline);
    out.push('\n');
    for a in &report.running {
        let percent = a.percent.map(|p| format!(" {p:.0}%")).unwrap_or_default();
        out.push_str(&format!(
            "  running: {} (attempt {}){percent}",
            a.step, a.attempt
        ));
        if let Some(failure) = &a.last_failure {
            out.push_str(&format!(", last failure: {failure}"));
        }
        out.push('\n');
    }
    match (&report.webhook_status, &report.webhook_delivery) {
        (Some(status), Some(delivery)) => {
            out.push_str(&format!("  webhook: {status}, {delivery}\n"))
        }
        (Some(status), None) => out.push_str(&format!("  webhook: {status}\n")),
        (None, Some(delivery)) => out.push_str(&format!("  webhook: {delivery}\n")),
        (None, None) => {}
    }
    if let Some(error) = &report.error {
        out.push_str(&format!("  error: {error}\n"));
    }
    if let Some(note) = &report.note {
        out.push_str(&format!("  note: {note}\n"));
    }
    if let Some(receipt) = &report.receipt {
        out.push_str(&render_receipt(receipt));
    }
    out
}

/// The receipt as a small table: one line per step.
pub fn render_receipt(receipt: &Receipt) -> String {
    let mut out = String::new();
    if receipt.outcome != "running" {
        let factor = receipt
            .realtime_factor
            .map(|f| format!(", {f:.2}x realtime"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  receipt: {} in {:.1}s for {:.1}s of media{factor}, {} out, encoder {}\n",
            receipt.outcome,
            receipt.wall_seconds,
            receipt.media_seconds,
            human_size(receipt.bytes_out),
            if receipt.encoders.is_empty() {
                "none".to_string()
            } else {
                receipt.encoders.join(",")
            },
        ));
    }
    for s in &receipt.steps {
        let factor = s
            .realtime_factor
            .map(|f| format!("{f:>7.2}x"))
            .unwrap_or_else(|| "        ".to_string());
        let encoder = s.encoder.as_deref().unwrap_or("");
        let count = if s.activities > 1 {
            format!(" ({} activities)", s.activities)
        } else {
            String::new()
        };
        out.push_str(&format!(
            "    {:<16}{:>8.1}s {factor} {:>10} {encoder}{count}\n",
            s.step,
            s.wall_seconds,
            human_size(s.bytes_out),
        ));
    }
    out
}

/// A size as people read it, in the binary units the rest of the CLI prints (`run`'s
/// summary of stored files and the receipt share this).
pub fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running_chunk(percent: Option<f64>) -> RunningActivity {
        RunningActivity {
            step: "ladder_chunk".into(),
            attempt: 1,
            percent,
            last_failure: None,
        }
    }

    fn report_with(running: Vec<RunningActivity>) -> JobStatusReport {
        JobStatusReport {
            media_id: "m".into(),
            workflow_id: "transcode-m".into(),
            state: "running".into(),
            step: None,
            percent: None,
            chunks_done: None,
            chunks_total: None,
            running,
            started_at: None,
            elapsed_seconds: None,
            receipt: None,
            webhook_status: None,
            webhook_delivery: None,
            error: None,
            note: None,
        }
    }

    fn ladder(done: u32, total: u32) -> Progress {
        Progress {
            step: "ladder".into(),
            percent: ladder_percent(f64::from(done), total),
            chunks_done: done,
            chunks_total: total,
            failure: None,
        }
    }

    #[test]
    fn running_chunks_move_the_ladder_percent() {
        // One chunk of one, half done: halfway through the ladder's share, not its start.
        let mut report = report_with(vec![running_chunk(Some(50.0))]);
        apply_progress(&mut report, ladder(0, 1));
        assert_eq!(report.percent, Some(ladder_percent(0.5, 1)));
        assert!(report.percent > Some(ladder_percent(0.0, 1)));
        assert_eq!(
            (report.chunks_done, report.chunks_total),
            (Some(0), Some(1))
        );

        // Chunks without a heartbeat yet, and other steps, add nothing.
        let mut report = report_with(vec![
            running_chunk(None),
            RunningActivity {
                step: "loudness".into(),
                ..running_chunk(Some(90.0))
            },
        ]);
        apply_progress(&mut report, ladder(1, 4));
        assert_eq!(report.percent, Some(ladder_percent(1.0, 4)));

        // Outside the ladder the workflow's percent stands as it is.
        let mut report = report_with(vec![running_chunk(Some(50.0))]);
        let mezzanine = Progress {
            step: "mezzanine".into(),
            percent: 5,
            ..Progress::default()
        };
        apply_progress(&mut report, mezzanine);
        assert_eq!(report.percent, Some(5));
    }

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1_536), "1.5 KiB");
        assert_eq!(human_size(41_300_000), "39.4 MiB");
    }
}
