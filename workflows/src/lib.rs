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
pub mod webhook;
pub mod workflow;

pub use cleanup::OriginalCleanupWorkflow;
pub use job::{Job, JobInput, MediaType, ValidationError};
pub use workflow::TranscodeWorkflow;

/// The default task queue workers poll and clients start workflows on.
pub const DEFAULT_TASK_QUEUE: &str = "transcoder";

/// Workflow id for a media item: one workflow per `mediaId` (DESIGN §5).
pub fn workflow_id(media_id: &str) -> String {
    format!("transcode-{media_id}")
}
