//! `transcoder list`: jobs filtered by their search attributes (creator, media type, outcome,
//! encoder), newest first, as the Web UI or `temporal workflow list --query` would find them.

use anyhow::{bail, Result};
use futures::StreamExt;
use serde::Serialize;
use temporalio_client::{Client, WorkflowListOptions};
use transcoder_workflows::search;

/// What to list.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub creator: Option<String>,
    pub media_type: Option<String>,
    pub outcome: Option<String>,
    pub encoder: Option<String>,
    pub limit: usize,
}

/// One job as listed.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedJob {
    pub workflow_id: String,
    pub status: String,
    pub creator: Option<String>,
    pub media_type: Option<String>,
    pub outcome: Option<String>,
    pub encoder: Option<String>,
    /// Seconds since the Unix epoch.
    pub started_at: Option<u64>,
}

/// The visibility query for `filter`. Values are quoted; a quote or backslash in one is
/// refused rather than escaped, since no creator id or media type holds one.
pub fn query(filter: &Filter) -> Result<String> {
    let mut clauses = vec!["WorkflowType = 'TranscodeWorkflow'".to_string()];
    for (key, value) in [
        (search::CREATOR.name(), &filter.creator),
        (search::MEDIA_TYPE.name(), &filter.media_type),
        (search::OUTCOME.name(), &filter.outcome),
        (search::ENCODER.name(), &filter.encoder),
    ] {
        if let Some(v) = value {
            if v.contains(['\'', '"', '\\']) {
                bail!("{key} filter {v:?} holds a quote or a backslash");
            }
            clauses.push(format!("{key} = '{v}'"));
        }
    }
    Ok(clauses.join(" AND "))
}

/// The jobs matching `filter`, newest first, at most `filter.limit`.
pub async fn list(client: &Client, filter: &Filter) -> Result<Vec<ListedJob>> {
    let query = query(filter)?;
    let options = WorkflowListOptions::builder().limit(filter.limit).build();
    let mut stream = client.list_workflows(query.clone(), options);
    let mut jobs = Vec::new();
    while let Some(item) = stream.next().await {
        let w = item.map_err(|e| anyhow::anyhow!("listing jobs ({query}): {e}"))?;
        let attributes = w.search_attributes();
        jobs.push(ListedJob {
            workflow_id: w.id().to_string(),
            status: format!("{:?}", w.status()),
            creator: attributes.get(&search::CREATOR),
            media_type: attributes.get(&search::MEDIA_TYPE),
            outcome: attributes.get(&search::OUTCOME),
            encoder: attributes.get(&search::ENCODER),
            started_at: w
                .start_time()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
        });
    }
    Ok(jobs)
}

/// One line per job.
pub fn render(jobs: &[ListedJob]) -> String {
    let mut out = String::new();
    for j in jobs {
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{}  {}  creator={} type={} outcome={} encoder={}\n",
            j.workflow_id,
            j.status,
            dash(&j.creator),
            dash(&j.media_type),
            dash(&j.outcome),
            dash(&j.encoder)
        ));
    }
    if jobs.is_empty() {
        out.push_str("no jobs match\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_become_one_query() {
        let filter = Filter {
            creator: Some("c1".into()),
            outcome: Some("failed".into()),
            ..Filter::default()
        };
        assert_eq!(
            query(&filter).unwrap(),
            "WorkflowType = 'TranscodeWorkflow' AND TranscoderCreator = 'c1' AND TranscoderOutcome = 'failed'"
        );
        let hostile = Filter {
            creator: Some("x' OR 1=1".into()),
            ..Filter::default()
        };
        assert!(query(&hostile).is_err());
    }
}
