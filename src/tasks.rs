//! The client side of a media task: read and check the payload, seal its signed URLs, start
//! its workflow or attach to the one already running for the same task, and wait for the
//! answer in the shape the payload's style expects.
//!
//! Idempotency: the workflow id is `task-{name}-{key}`, the key being the payload's `id`
//! (`ENCODING` carries one) or else a hash of the task as read. The same task sent again
//! while it runs attaches to it; after it succeeded, its stored answer comes back and
//! nothing runs again; after it failed, it runs again.

use crate::jobs::Submitted;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use sha2::Digest as _;
use temporalio_client::errors::{WorkflowGetResultError, WorkflowStartError};
use temporalio_client::{
    Client, WorkflowGetResultOptions, WorkflowIdConflictPolicy, WorkflowIdReusePolicy,
    WorkflowQueryOptions, WorkflowStartOptions,
};
use transcoder_activities::secrets::SecretBox;
use transcoder_workflows::task::{parse_task, MediaTask, TaskError};
use transcoder_workflows::task_workflow::{task_workflow_id, TaskProgress, TaskRequest};
use transcoder_workflows::MediaTaskWorkflow;

/// The largest task payload: it is kept whole in workflow history, whose payloads Temporal
/// limits to 2 MB, and sealing makes signed URLs longer.
pub const MAX_TASK_BYTES: usize = 1024 * 1024;

/// A checked task, ready to start: its workflow id and its request with signed URLs sealed.
pub struct PreparedTask {
    pub workflow_id: String,
    pub request: TaskRequest,
}

/// The body of a task payload: a RunPod job's `{"input": {…}}` or the `{…}` inside it.
pub fn task_body(payload: &Value) -> &Value {
    match payload.get("input") {
        Some(inner) if inner.is_object() => inner,
        _ => payload,
    }
}

/// Reads and checks `input` (every problem named) and seals every URL that carries a
/// query string (a presigned URL's signature) and every `output_put_url`.
pub fn prepare(input: &Value, secrets: &SecretBox) -> Result<PreparedTask, TaskError> {
    let size = serde_json::to_vec(input).map_or(usize::MAX, |b| b.len());
    if size > MAX_TASK_BYTES {
        return Err(TaskError {
            problems: vec![format!(
                "the task is {size} bytes, over the limit of {MAX_TASK_BYTES} (workflow history keeps it whole)"
            )],
        });
    }
    let task = parse_task(input)?;
    let workflow_id = task_workflow_id(&task_key(&task));
    let mut sealed = task;
    for uri in sealed.uris_mut() {
        if uri.contains('?') && !SecretBox::is_sealed(uri) {
            *uri = secrets.seal(uri);
        }
    }
    Ok(PreparedTask {
        workflow_id,
        request: TaskRequest { task: sealed },
    })
}

/// `{name}-{id}` when the payload's id is a plain one, else `{name}-{hash of the task}`.
fn task_key(task: &MediaTask) -> String {
    let name = task.name().to_ascii_lowercase();
    let plain = |id: &str| {
        !id.is_empty()
            && id.len() <= 128
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    };
    match task.id() {
        Some(id) if plain(id) => format!("{name}-{id}"),
        _ => {
            // The task as read (before sealing, which is randomized), its URLs without
            // their signatures: the same request gives the same key whatever the order of
            // its JSON fields and however often its URLs were signed again.
            let mut unsigned = task.clone();
            for uri in unsigned.uris_mut() {
                *uri = without_signature(uri);
            }
            let bytes = serde_json::to_vec(&unsigned).unwrap_or_default();
            let digest = sha2::Sha256::digest(&bytes);
            format!("{name}-{}", hex::encode(&digest[..12]))
        }
    }
}

/// Query parameters that sign a URL rather than name what it points to: S3 and R2
/// (SigV4, and SigV2's), GCS, CloudFront, Azure SAS. Compared without case.
const SIGNING_PARAMETERS: [&str; 15] = [
    "signature",
    "expires",
    "awsaccesskeyid",
    "googleaccessid",
    "key-pair-id",
    "policy",
    "x-amz-security-token",
    "sig",
    "se",
    "st",
    "sp",
    "sv",
    "sr",
    "spr",
    "skoid",
];

/// `url` without the query parameters that only sign it (every `X-Amz-*` and `X-Goog-*`,
/// and [`SIGNING_PARAMETERS`]); other parameters, which may select what is served, stay.
fn without_signature(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_string();
    };
    if parsed.query().is_none() {
        return url.to_string();
    }
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(name, _)| {
            let name = name.to_ascii_lowercase();
            !(name.starts_with("x-amz-")
                || name.starts_with("x-goog-")
                || SIGNING_PARAMETERS.contains(&name.as_str()))
        })
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    parsed.to_string()
}

/// Starts the task's workflow, or attaches to the one running for the same task.
pub async fn start_or_attach(
    client: &Client,
    task: &PreparedTask,
    task_queue: &str,
) -> Result<Submitted> {
    let id = &task.workflow_id;
    let options = WorkflowStartOptions::new(task_queue, id)
        .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
        .id_reuse_policy(WorkflowIdReusePolicy::AllowDuplicateFailedOnly)
        .build();
    match client
        .start_workflow(MediaTaskWorkflow::run, task.request.clone(), options)
        .await
    {
        Ok(_) => {
            tracing::info!(workflow_id = %id, "task started (or attached to the running one)");
            Ok(Submitted::Running)
        }
        Err(WorkflowStartError::AlreadyStarted { .. }) => {
            tracing::info!(workflow_id = %id, "this task already completed; returning its answer");
            Ok(Submitted::AlreadyCompleted)
        }
        Err(e) => Err(e).with_context(|| format!("starting workflow {id}")),
    }
}

/// The task's answer: `Ok` the value to return (a task's result, or an action's
/// `{"success": true, "result": …}`), `Err` the reason it failed.
pub async fn wait_for_answer(client: &Client, id: &str) -> Result<Result<Value, String>> {
    let handle = client.get_workflow_handle::<MediaTaskWorkflow>(id);
    match handle.get_result(WorkflowGetResultOptions::default()).await {
        Ok(answer) => Ok(Ok(answer)),
        Err(WorkflowGetResultError::Failed(failure)) => Ok(Err(failure.failure().message.clone())),
        Err(other) if other.is_workflow_outcome() => {
            Ok(Err(format!("the task did not finish: {other}")))
        }
        Err(other) => bail!(
            "lost contact with Temporal while task {id} was running ({other}); the task is saved there: send it again to attach to it"
        ),
    }
}

/// The task's progress, from any worker (`None` when none answers in time).
pub async fn query_progress(client: &Client, id: &str) -> Option<TaskProgress> {
    let handle = client.get_workflow_handle::<MediaTaskWorkflow>(id);
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        handle.query(
            MediaTaskWorkflow::progress,
            (),
            WorkflowQueryOptions::default(),
        ),
    )
    .await
    .ok()?
    .ok()
}

/// An answer as printed and returned to RunPod: the value, or `{"error": reason}`.
pub fn answer_json(answer: &Result<Value, String>) -> Value {
    match answer {
        Ok(value) => value.clone(),
        Err(reason) => json!({ "error": reason }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(input: Value) -> String {
        let task = parse_task(&input).expect("valid");
        task_key(&task)
    }

    #[test]
    fn the_same_task_gets_the_same_workflow_whatever_its_field_order() {
        let a = key_of(json!({"task": "AUDIO_TRIM", "parameters": {
            "source_uri": "s3://v/master.m4a", "start_sec": 1, "duration_sec": 2,
            "output_video_uri": "s3://v/s0.wav"}}));
        let b = key_of(json!({"parameters": {"output_video_uri": "s3://v/s0.wav",
            "duration_sec": 2.0, "start_sec": 1.0, "source_uri": "s3://v/master.m4a"},
            "task": "AUDIO_TRIM"}));
        assert_eq!(a, b);
        assert!(a.starts_with("audio_trim-"));
        let other = key_of(json!({"task": "AUDIO_TRIM", "parameters": {
            "source_uri": "s3://v/master.m4a", "start_sec": 1, "duration_sec": 2,
            "output_video_uri": "s3://v/s1.wav"}}));
        assert_ne!(a, other);
        // ENCODING's id is its key, when it is a plain one.
        let encoding = |id: &str| {
            key_of(
                json!({"task": "ENCODING", "parameters": {"id": id, "language": "en",
                "subtitles": false, "input_video_uri": "s3://v/in.mp4",
                "input_audio_uri": "s3://v/a.wav", "output_video_uri": "s3://v/out.mp4"}}),
            )
        };
        assert_eq!(encoding("export-42"), "encoding-export-42");
        assert!(!encoding("../../etc").contains('/'));
    }

    #[test]
    fn a_url_signed_again_is_the_same_task() {
        let trim = |source: &str, put: &str| {
            key_of(json!({"task": "AUDIO_TRIM", "parameters": {
                "source_uri": source, "start_sec": 1, "duration_sec": 2,
                "output_put_url": put}}))
        };
        let first = trim(
            "https://cdn.example/m.wav?X-Amz-Date=20261201T000000Z&X-Amz-Signature=aa",
            "https://r2.example/v/s0.wav?X-Amz-Credential=k&X-Amz-Expires=900&X-Amz-Signature=bb",
        );
        let again = trim(
            "https://cdn.example/m.wav?X-Amz-Date=20261202T000000Z&X-Amz-Signature=cc",
            "https://r2.example/v/s0.wav?X-Amz-Credential=k&X-Amz-Expires=900&X-Amz-Signature=dd",
        );
        assert_eq!(first, again);
        // Parameters that select what is served make another task.
        let other = trim(
            "https://cdn.example/m.wav?take=2&X-Amz-Signature=aa",
            "https://r2.example/v/s0.wav?X-Amz-Signature=bb",
        );
        assert_ne!(first, other);
        assert_eq!(
            without_signature("https://a.example/x.mp4?take=2&Signature=s&Expires=9&Key-Pair-Id=k"),
            "https://a.example/x.mp4?take=2"
        );
        assert_eq!(
            without_signature("https://a.example/x.mp4?sv=2024&sig=s&se=t"),
            "https://a.example/x.mp4"
        );
    }

    #[test]
    fn a_task_too_big_for_history_is_refused() {
        let key = SecretBox::from_key_bytes(&[7u8; 32]).unwrap();
        let segments: Vec<Value> = (0..1000)
            .map(|i| {
                json!({"start_sec": i, "duration_sec": 1,
                "output_video_uri": format!("s3://v/{}/{i}.wav", "x".repeat(2000))})
            })
            .collect();
        let refused = prepare(
            &json!({"task": "AUDIO_TRIM", "parameters": {"source_uri": "s3://v/m.wav", "segments": segments}}),
            &key,
        )
        .err()
        .expect("refused");
        assert!(
            refused.problems[0].contains("over the limit of 1048576"),
            "{refused}"
        );
    }

    #[test]
    fn signed_urls_never_reach_history_in_plain_text() {
        let key = SecretBox::from_key_bytes(&[7u8; 32]).unwrap();
        let prepared = prepare(
            &json!({"task": "DOWNSAMPLING", "parameters": {
                "original_video_uri": "https://cdn.example/in.mp4?X-Amz-Signature=abc",
                "output_put_url": "https://put.example/out.mp4?X-Amz-Signature=def",
                "resolution": "360p"}}),
            &key,
        )
        .unwrap();
        let history = serde_json::to_string(&prepared.request).unwrap();
        assert!(!history.contains("X-Amz-Signature"), "{history}");
        assert!(prepared.workflow_id.starts_with("task-downsampling-"));
    }
}
