//! Starting jobs and waiting for their outcome.

use anyhow::{bail, Context, Result};
use temporalio_client::errors::{WorkflowGetResultError, WorkflowStartError};
use temporalio_client::{
    Client, WorkflowCountOptions, WorkflowGetResultOptions, WorkflowIdConflictPolicy,
    WorkflowIdReusePolicy, WorkflowQueryOptions, WorkflowStartOptions,
};
use temporalio_common::search_attributes::SearchAttributes;
use transcoder_activities::secrets::SecretBox;
use transcoder_workflows::job::MediaType;
use transcoder_workflows::receipt::{Receipt, WEBHOOK_NOT_DELIVERED_EXIT};
use transcoder_workflows::rungs::{ladder_from_text, LADDER_VAR};
use transcoder_workflows::search;
use transcoder_workflows::webhook::{clean_error, JobStatus, MediaTypeText, WebhookBody};
use transcoder_workflows::workflow::{Progress, TranscodeResult};
use transcoder_workflows::{workflow_id, JobInput, TranscodeWorkflow, ValidationError};

/// Workflow id for a payload; a payload without a usable `mediaId` still runs (so it can be
/// rejected with a failed webhook) under an id of its own.
pub fn workflow_id_for(job: &JobInput) -> String {
    match job.media_id.as_deref().map(str::trim) {
        Some(id)
            if !id.is_empty()
                && id.len() <= 128
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
        {
            workflow_id(id)
        }
        _ => format!("transcode-rejected-{}", uuid::Uuid::new_v4()),
    }
}

/// What submitting a job did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// A new run started, or the running one was attached to.
    Running,
    /// The media item already completed: its stored result stands, nothing runs again.
    AlreadyCompleted,
}

/// How many times a failed job may be submitted again (media-api expects one retry).
pub fn max_job_retries() -> u64 {
    std::env::var("TRANSCODER_MAX_JOB_RETRIES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(1)
}

/// The job's first search attributes (creator, media type), when the namespace has them
/// registered (see `transcoder_workflows::search`); `None` otherwise, and the job runs
/// unsearchable rather than not at all.
async fn start_attributes(client: &Client, job: &JobInput) -> Option<SearchAttributes> {
    if !search_attributes_registered(client).await {
        return None;
    }
    let (creator, media_type) = match job.validate() {
        Ok(valid) => (valid.creator_id, valid.media_type.as_str().to_string()),
        // Refused jobs are findable too, as such (the payload's values may be anything).
        Err(_) => ("(invalid)".to_string(), "(invalid)".to_string()),
    };
    Some(SearchAttributes::new([
        search::CREATOR.value_set(creator),
        search::MEDIA_TYPE.value_set(media_type),
    ]))
}

/// Whether the namespace has our search attributes, registering them when it does not (the
/// embedded server registers them at start; a cluster needs an operator, or a client
/// allowed to add them). Says once per process when they are missing.
pub async fn search_attributes_registered(client: &Client) -> bool {
    use temporalio_client::tonic::Request;
    use temporalio_client::NamespacedClient as _;
    use temporalio_common::protos::temporal::api::enums::v1::IndexedValueType;
    use temporalio_common::protos::temporal::api::operatorservice::v1::{
        AddSearchAttributesRequest, ListSearchAttributesRequest,
    };
    static WARNED: std::sync::Once = std::sync::Once::new();
    // Once found, they stay: later starts of this process (a pod's next jobs) ask no more.
    static REGISTERED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if REGISTERED.load(std::sync::atomic::Ordering::Relaxed) {
        return true;
    }
    let namespace = client.namespace();
    let mut operator = client.connection().operator_service();
    let missing = |known: &std::collections::HashMap<String, i32>| -> Vec<&'static str> {
        search::NAMES
            .into_iter()
            .filter(|n| !known.contains_key(*n))
            .collect()
    };
    let listed = operator
        .list_search_attributes(Request::new(ListSearchAttributesRequest {
            namespace: namespace.clone(),
        }))
        .await;
    let absent = match listed {
        Ok(r) => missing(&r.into_inner().custom_attributes),
        Err(e) => {
            tracing::debug!(error = %e, "listing search attributes");
            search::NAMES.to_vec()
        }
    };
    if absent.is_empty() {
        REGISTERED.store(true, std::sync::atomic::Ordering::Relaxed);
        return true;
    }
    let added = operator
        .add_search_attributes(Request::new(AddSearchAttributesRequest {
            search_attributes: absent
                .iter()
                .map(|n| (n.to_string(), IndexedValueType::Keyword as i32))
                .collect(),
            namespace: namespace.clone(),
        }))
        .await;
    if added.is_ok() {
        tracing::info!(attributes = ?absent, namespace, "registered the job search attributes");
        REGISTERED.store(true, std::sync::atomic::Ordering::Relaxed);
        return true;
    }
    WARNED.call_once(|| {
        tracing::warn!(
            attributes = ?absent,
            namespace,
            "the job search attributes are not registered on this namespace (and this client may not add them): jobs run, but cannot be filtered by creator, media type, outcome or encoder. Register them once: temporal operator search-attribute create --namespace {namespace} --name TranscoderCreator --type Keyword (and TranscoderMediaType, TranscoderOutcome, TranscoderEncoder)"
        )
    });
    false
}

async fn count(client: &Client, query: String) -> Result<u64> {
    let n = client
        .count_workflows(query.clone(), WorkflowCountOptions::default())
        .await
        .with_context(|| format!("counting workflows ({query})"))?;
    Ok(n.count() as u64)
}

/// Starts the job's workflow, or attaches to the one already running for this `mediaId`;
/// a job that already completed returns its stored result without encoding again; a job
/// that failed runs again at most `max_retries` times, then is refused.
pub async fn start_or_attach(
    client: &Client,
    job: &JobInput,
    task_queue: &str,
    max_retries: u64,
) -> Result<(String, Submitted)> {
    let id = workflow_id_for(job);
    let by_id = format!("WorkflowId = '{id}'");
    let live = count(
        client,
        format!("{by_id} AND ExecutionStatus IN ('Running', 'Completed')"),
    )
    .await?;
    if live == 0 {
        let failed = count(
            client,
            format!("{by_id} AND ExecutionStatus != 'Running' AND ExecutionStatus != 'Completed'"),
        )
        .await?;
        if failed > max_retries {
            bail!(
                "media {id} already failed {failed} times (the limit is {max_retries} retr{}); not starting it again",
                if max_retries == 1 { "y" } else { "ies" }
            );
        }
    }
    let options = WorkflowStartOptions::new(task_queue, &id)
        .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
        .id_reuse_policy(WorkflowIdReusePolicy::AllowDuplicateFailedOnly)
        .maybe_search_attributes(start_attributes(client, job).await)
        .build();
    match client
        .start_workflow(TranscodeWorkflow::run, job.clone(), options)
        .await
    {
        Ok(_) => {
            tracing::info!(workflow_id = %id, "workflow started (or attached to the running one)");
            Ok((id, Submitted::Running))
        }
        Err(WorkflowStartError::AlreadyStarted { .. }) => {
            tracing::info!(workflow_id = %id, "this media item already completed; returning its result");
            Ok((id, Submitted::AlreadyCompleted))
        }
        Err(e) => Err(e).with_context(|| format!("starting workflow {id}")),
    }
}

/// The final webhook body of a finished workflow, exactly as it was sent.
pub async fn wait_for_body(client: &Client, id: &str, job: &JobInput) -> Result<WebhookBody> {
    Ok(wait_for_outcome(client, id, job).await?.body)
}

/// A finished job: the webhook body, and the job's receipt when it can be read (a completed
/// job's is in its result; a failed job's is asked of a worker).
pub struct JobOutcome {
    pub body: WebhookBody,
    pub receipt: Option<Receipt>,
}

impl JobOutcome {
    /// Why the webhook did not reach the receiver, when it did not.
    pub fn webhook_problem(&self) -> Option<&str> {
        let delivery = self.receipt.as_ref()?.webhook.as_ref()?;
        (!delivery.delivered).then_some(delivery.detail.as_str())
    }

    /// 0 when the job completed and its webhook got through, 1 when it failed,
    /// [`WEBHOOK_NOT_DELIVERED_EXIT`] when its webhook did not get through (whatever the
    /// job's outcome: media-api was never told).
    pub fn exit_code(&self) -> std::process::ExitCode {
        if self.webhook_problem().is_some() {
            std::process::ExitCode::from(WEBHOOK_NOT_DELIVERED_EXIT)
        } else if succeeded(&self.body) {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        }
    }

    /// Says on stderr that the webhook did not get through, and why.
    pub fn warn_if_webhook_missed(&self) {
        if let Some(problem) = self.webhook_problem() {
            let outcome = if succeeded(&self.body) {
                "completed"
            } else {
                "failed"
            };
            eprintln!(
                "error: the job {outcome}, but its webhook was {problem}: the receiver has not been told (exit status {WEBHOOK_NOT_DELIVERED_EXIT})."
            );
        }
    }
}

/// How long a failed job's receipt is waited for: a worker answers the query.
pub const RECEIPT_QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A job's receipt from the `receipt` query (running or closed: a worker answers it);
/// `None` when none answers within `timeout`.
pub async fn query_receipt(
    client: &Client,
    id: &str,
    timeout: std::time::Duration,
) -> Option<Receipt> {
    let handle = client.get_workflow_handle::<TranscodeWorkflow>(id);
    tokio::time::timeout(
        timeout,
        handle.query(
            TranscodeWorkflow::receipt,
            (),
            WorkflowQueryOptions::default(),
        ),
    )
    .await
    .ok()?
    .ok()
}

/// How often a waiting client asks a running job whether it has failed.
const FAILURE_POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a failed job's webhook is given to get through before the wait reports the
/// failure without it (its retries go on durably in the workflow).
const FAILED_WEBHOOK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// As [`wait_for_body`], keeping the receipt too. A job that has failed is reported as soon
/// as it says so, without waiting out its failed webhook's retries (a receiver down for
/// hours would otherwise hold the terminal or the RunPod job that long); the webhook keeps
/// being retried by the workflow, and `status` shows it.
pub async fn wait_for_outcome(client: &Client, id: &str, job: &JobInput) -> Result<JobOutcome> {
    let result = wait_for_result(client, id, job);
    tokio::pin!(result);
    let failure = tokio::select! {
        outcome = &mut result => return outcome,
        reason = failure_reported(client, id) => reason,
    };
    // Its webhook may get through at once: then the workflow's own outcome is complete.
    if let Ok(outcome) = tokio::time::timeout(FAILED_WEBHOOK_WAIT, &mut result).await {
        return outcome;
    }
    let mut receipt = query_receipt(client, id, RECEIPT_QUERY_TIMEOUT).await;
    if let Some(r) = receipt.as_mut() {
        r.webhook = Some(transcoder_workflows::receipt::WebhookDelivery {
            delivered: false,
            detail: format!(
                "still being retried (the job keeps trying for up to {} h; `transcoder status {id}` shows how it goes)",
                job.webhook_retry_hours.unwrap_or(24).max(1)
            ),
        });
    }
    Ok(JobOutcome {
        body: failed_body(id, job, &failure),
        receipt,
    })
}

/// Resolves with the reason once the running job reports it has failed (its `progress`
/// query); never, while it has not.
async fn failure_reported(client: &Client, id: &str) -> String {
    let handle = client.get_workflow_handle::<TranscodeWorkflow>(id);
    loop {
        let asked = tokio::time::timeout(
            RECEIPT_QUERY_TIMEOUT,
            handle.query(
                TranscodeWorkflow::progress,
                (),
                WorkflowQueryOptions::default(),
            ),
        )
        .await;
        if let Ok(Ok(Progress {
            failure: Some(reason),
            ..
        })) = asked
        {
            return reason;
        }
        tokio::time::sleep(FAILURE_POLL).await;
    }
}

/// The workflow's own outcome, when it ends.
async fn wait_for_result(client: &Client, id: &str, job: &JobInput) -> Result<JobOutcome> {
    let handle = client.get_workflow_handle::<TranscodeWorkflow>(id);
    let (body, receipt) = match handle.get_result(WorkflowGetResultOptions::default()).await {
        Ok(TranscodeResult {
            webhook, receipt, ..
        }) => (webhook, Some(receipt)),
        Err(WorkflowGetResultError::Failed(failure)) => {
            // The workflow fails with the same text its failed webhook carried.
            let message = failure.failure().message.clone();
            (
                failed_body(id, job, &message),
                query_receipt(client, id, RECEIPT_QUERY_TIMEOUT).await,
            )
        }
        // The job ended some other way (cancelled, terminated, timed out): that is its outcome.
        Err(other) if other.is_workflow_outcome() => (
            failed_body(id, job, &format!("the job did not finish: {other}")),
            None,
        ),
        // The server went away (an embedded one killed, a network cut): the job did not end,
        // it is saved on the server, and no webhook was sent. Say so instead of inventing a
        // failed body.
        Err(other) => bail!(
            "lost contact with Temporal while job {id} was running ({}); the job is saved \
             there and no webhook has been sent: run the same command again to attach to it \
             and finish it",
            short_transport_error(&other)
        ),
    };
    Ok(JobOutcome { body, receipt })
}

/// A transport error in a line: the gRPC status code and the first line of its message.
fn short_transport_error(e: &WorkflowGetResultError) -> String {
    let text = match e {
        WorkflowGetResultError::Rpc(status) | WorkflowGetResultError::NotFound(status) => {
            format!("{:?}: {}", status.code(), status.message())
        }
        other => other.to_string(),
    };
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(200).collect()
}

fn failed_body(id: &str, job: &JobInput, message: &str) -> WebhookBody {
    let secret = job.webhook_secret.as_deref().unwrap_or_default();
    let (media_id, media_type) = match job.validate() {
        Ok(valid) => (
            Some(valid.media_id),
            Some(MediaTypeText::from(valid.media_type)),
        ),
        Err(_) => (
            job.media_id.clone(),
            job.media_type.clone().map(MediaTypeText),
        ),
    };
    WebhookBody::failed(
        id.to_string(),
        media_id,
        media_type,
        &clean_error(message, &[secret]),
        &[secret],
    )
}

pub fn succeeded(body: &WebhookBody) -> bool {
    body.status == JobStatus::Completed
}

/// Deployment defaults a payload may leave out: chunk size, webhook retry window, original
/// retention, and a video job's ladder.
pub fn apply_env_defaults(job: &mut JobInput) -> Result<()> {
    let video = job.media_type.as_deref().and_then(MediaType::parse) == Some(MediaType::Video);
    if video && job.renditions.is_none() {
        if let Ok(text) = std::env::var(LADDER_VAR) {
            job.renditions =
                Some(ladder_from_text(LADDER_VAR, &text).map_err(|why| anyhow::anyhow!(why))?);
        }
    }
    default_from_env(
        &mut job.segments_per_chunk,
        "TRANSCODER_SEGMENTS_PER_CHUNK",
        "a number",
    )?;
    default_from_env(
        &mut job.webhook_retry_hours,
        "WEBHOOK_RETRY_HOURS",
        "a whole number of hours",
    )?;
    default_from_env(
        &mut job.original_retention_seconds,
        "TRANSCODER_ORIGINAL_RETENTION_SECONDS",
        "a number",
    )
}

/// Fills `field`, when the payload left it out, from the variable `var` if it is set.
fn default_from_env<T>(field: &mut Option<T>, var: &str, what: &str) -> Result<()>
where
    T: std::str::FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    if field.is_none() {
        if let Ok(v) = std::env::var(var) {
            *field = Some(
                v.trim()
                    .parse()
                    .with_context(|| format!("{var} must be {what}"))?,
            );
        }
    }
    Ok(())
}

/// Seals the payload's webhook secret (and a presigned input URI) so workflow history never
/// holds them in plaintext. A secret that is blank, too short or already sealed is refused.
pub fn seal_secret(job: &mut JobInput, key: &SecretBox) -> Result<(), ValidationError> {
    // Checked in plain text, before anything starts: once sealed, an empty secret looks like
    // any other, and no webhook can be signed safely with a bad one, so the refusal goes to
    // the caller (terminal, RunPod result) with every other problem of the payload.
    let secret_problems = job.secret_problems();
    if !secret_problems.is_empty() {
        let mut problems = secret_problems;
        if let Err(other) = job.validate() {
            problems.extend(
                other
                    .problems
                    .into_iter()
                    .filter(|p| !p.starts_with("webhookSecret")),
            );
        }
        return Err(ValidationError { problems });
    }
    if let Some(secret) = job.webhook_secret.as_mut() {
        *secret = key.seal(secret);
    }
    // An input URI with a query string is most likely presigned: its signature is a secret.
    if let Some(uri) = job.input_uri.as_mut() {
        if uri.contains('?') {
            *uri = key.seal(uri);
        }
    }
    for sidecar in job.subtitles.iter_mut().flatten() {
        if sidecar.uri.contains('?') {
            sidecar.uri = key.seal(&sidecar.uri);
        }
    }
    Ok(())
}
