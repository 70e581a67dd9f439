//! `transcoder task`: one media task end to end on the embedded default (or the server in
//! TEMPORAL_ADDRESS), its answer printed as JSON on standard output.

use super::*;
use crate::*;
use anyhow::{Context, Result};
use std::process::ExitCode;
use transcoder::jobs::Submitted;
use transcoder::tasks;
use transcoder::temporal::Temporal;
use transcoder::worker;
use transcoder_activities::secrets::SecretBox;

/// Reads the payload argument: a file, `-` for standard input, or inline JSON.
pub(crate) fn read_payload(arg: &str) -> Result<serde_json::Value> {
    let text = if arg == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the payload from stdin")?
    } else if arg.trim_start().starts_with('{') {
        arg.to_string()
    } else {
        std::fs::read_to_string(arg).with_context(|| format!("reading {arg}"))?
    };
    serde_json::from_str(&text).context("the payload is not JSON")
}

pub(crate) async fn task(args: TaskArgs) -> Result<ExitCode> {
    let payload = read_payload(&args.payload)?;
    let secrets = SecretBox::from_env_or_state(&args.common.state_dir)?;
    let prepared = match tasks::prepare(tasks::task_body(&payload), &secrets) {
        Ok(p) => p,
        Err(e) => {
            // Refused before anything starts; the answer says why, as RunPod's would.
            println!("{}", tasks::answer_json(&Err(e.to_string())));
            return Ok(ExitCode::FAILURE);
        }
    };
    let config = worker_config(&args.common, Some(secrets)).await?;
    let temporal = Temporal::connect_or_embed(&args.common.state_dir).await?;
    let id = prepared.workflow_id.clone();
    let submitted = tasks::start_or_attach(&temporal.client, &prepared, &config.task_queue).await?;
    let answer = if submitted == Submitted::AlreadyCompleted {
        eprintln!("Task {id} already completed earlier: its stored answer, nothing runs again.");
        tasks::wait_for_answer(&temporal.client, &id).await
    } else {
        eprintln!("Task {id} running; if interrupted, run the same command again to resume it.");
        let sdk_runtime = worker::runtime(config.meter.clone())?;
        let mut worker = worker::build(&sdk_runtime, temporal.client.clone(), &config)?;
        let stop_worker = worker.shutdown_handle();
        let worker_task = async move {
            if let Err(e) = worker.run().await {
                tracing::warn!(error = %e, "worker stopped with an error");
            }
        };
        tokio::pin!(worker_task);
        let state_dir = args.common.state_dir.display().to_string();
        let answer = tokio::select! {
            answer = tasks::wait_for_answer(&temporal.client, &id) => answer,
            _ = report_parts(&temporal.client, &id) => unreachable!("reports until the answer comes"),
            _ = worker::shutdown_signal() => Err(anyhow::anyhow!(
                "interrupted; the task is saved in {state_dir} and resumes when the same command runs again"
            )),
            _ = &mut worker_task => Err(anyhow::anyhow!(
                "the in-process worker stopped before the task finished; it is saved in {state_dir}: run the same command again to resume it"
            )),
        };
        stop_worker();
        let grace = std::time::Duration::from_secs(if answer.is_ok() { 60 } else { 10 });
        if tokio::time::timeout(grace, &mut worker_task).await.is_err() {
            tracing::warn!("the worker did not stop within {grace:?}; exiting anyway");
        }
        answer
    };
    temporal.shutdown().await;
    let answer = answer?;
    println!(
        "{}",
        serde_json::to_string_pretty(&tasks::answer_json(&answer))?
    );
    Ok(if answer.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Says on stderr how many parts of a task of several (a trim batch, `multi_process`) are
/// done, each time that changes, from the workflow's `progress` query; never returns.
async fn report_parts(client: &temporalio_client::Client, id: &str) {
    let mut last = None;
    loop {
        if let Some(p) = tasks::query_progress(client, id).await {
            if p.total > 1 && last != Some(p.done) {
                eprintln!("{}: {} of {} done", p.task, p.done, p.total);
                last = Some(p.done);
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}
