//! Deterministic orchestration for transcoder: the job contract, the pure plan, and the
//! Temporal workflow that drives the activities.
//!
//! Nothing in this crate touches the file system, the network or ffmpeg: it is safe to run
//! inside a workflow (replay) and to unit-test without a server.

pub mod activities;
pub mod cleanup;
pub mod job;
pub mod keys;
pub mod ladder;
pub mod media;
pub mod receipt;
pub mod rungs;
pub mod search;
pub mod task;
pub mod task_workflow;
pub mod webhook;
mod window;
pub mod workflow;

pub use cleanup::OriginalCleanupWorkflow;
pub use job::{Job, JobInput, MediaType, ValidationError};
pub use task_workflow::MediaTaskWorkflow;
pub use workflow::TranscodeWorkflow;

/// The default task queue workers poll and clients start workflows on.
pub const DEFAULT_TASK_QUEUE: &str = "transcoder";

/// Prefix of every transcode workflow id.
const TRANSCODE_PREFIX: &str = "transcode-";

/// Workflow id for a media item: one workflow per `mediaId` (DESIGN §5).
pub fn workflow_id(media_id: &str) -> String {
    format!("{TRANSCODE_PREFIX}{media_id}")
}

/// The media id a workflow of ours works on: the inverse of [`workflow_id`] and
/// [`cleanup::cleanup_workflow_id`]; the id itself for any other workflow.
pub fn media_id_of_workflow(workflow_id: &str) -> &str {
    workflow_id
        .strip_prefix(TRANSCODE_PREFIX)
        .or_else(|| workflow_id.strip_prefix(cleanup::CLEANUP_PREFIX))
        .unwrap_or(workflow_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_ids_come_back_from_workflow_ids() {
        assert_eq!(media_id_of_workflow(&workflow_id("m-1")), "m-1");
        assert_eq!(
            media_id_of_workflow(&cleanup::cleanup_workflow_id("m-1")),
            "m-1"
        );
        assert_eq!(media_id_of_workflow("other"), "other");
    }
}
