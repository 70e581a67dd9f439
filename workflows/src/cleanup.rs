//! `OriginalCleanupWorkflow`: after a job succeeds, wait out the retention period durably,
//! then delete the original upload, but only if the mezzanine (the archive master every
//! future re-encode starts from) still exists, and only keys under `originals/`.

use crate::activities::defs as act;
use crate::media::{CleanupInput, CleanupOutcome};
use std::time::Duration;
use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

/// Prefix of every clean-up workflow id.
pub(crate) const CLEANUP_PREFIX: &str = "cleanup-original-";

/// Workflow id of the clean-up of one media item.
pub fn cleanup_workflow_id(media_id: &str) -> String {
    format!("{CLEANUP_PREFIX}{media_id}")
}

#[workflow]
#[derive(Default)]
pub struct OriginalCleanupWorkflow;

#[workflow_methods]
impl OriginalCleanupWorkflow {
    #[run]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: CleanupInput,
    ) -> WorkflowResult<CleanupOutcome> {
        // A durable timer: survives worker and server restarts, costs nothing while waiting.
        ctx.timer(Duration::from_secs(input.retention_seconds))
            .await;
        let outcome = ctx
            .execute_activity(
                act::DeleteOriginal,
                input,
                ActivityOptions::with_start_to_close_timeout(Duration::from_secs(300))
                    .retry_policy(
                        RetryPolicy::builder()
                            .initial_interval(Duration::from_secs(5))
                            .backoff_coefficient(2.0)
                            .maximum_interval(Duration::from_secs(3600))
                            .build(),
                    )
                    .build(),
            )
            .await?;
        Ok(outcome)
    }
}
