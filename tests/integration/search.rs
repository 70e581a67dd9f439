//! Operators find jobs by what they are: every job carries its creator and media type from
//! the start and its outcome and encoder from its end, as search attributes registered on the
//! embedded server; `transcoder list` filters by them.

use crate::common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// `transcoder list ARGS --json`, asked until it answers `want` jobs (visibility is updated a
/// moment after a job ends).
async fn list(h: &Harness, args: &[&str], want: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut all = vec!["list", "--json"];
        all.extend_from_slice(args);
        let out = h.run(&all).await;
        out.assert_success();
        let jobs = out.json().as_array().cloned().unwrap_or_default();
        if jobs.len() == want || Instant::now() > deadline {
            return jobs;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_listed_by_creator_type_outcome_and_encoder() {
    const QUEUE: &str = "q-search";
    let h = Harness::start().await;
    let out = h.path("out");
    let hook = WebhookReceiver::start("whsec-search");
    let mut worker = h.spawn(&["worker", "--out", s(&out), "--task-queue", QUEUE]);
    make_video(
        &object_path(&out, ARCHIVE_BUCKET, "originals/alice/s1/original.mp4"),
        320,
        240,
        2,
        25,
    )
    .await;
    let done = write_job(&h, "ok.json", &video_job_payload("s1", "alice", &hook));
    let mut refused = video_job_payload("s2", "bob", &hook);
    refused["inputKey"] = json!("../../etc/passwd");
    let refused = write_job(&h, "refused.json", &refused);
    for file in [&done, &refused] {
        h.run(&["submit", "--job", s(file), "--wait", "--task-queue", QUEUE])
            .await;
    }

    let alice = list(&h, &["--creator", "alice"], 1).await;
    assert_eq!(alice.len(), 1, "{alice:#?}");
    assert_eq!(alice[0]["workflowId"], "transcode-s1");
    assert_eq!(alice[0]["mediaType"], "video");
    assert_eq!(alice[0]["outcome"], "completed");
    assert_eq!(alice[0]["encoder"], "x264");

    let failed = list(&h, &["--outcome", "failed"], 1).await;
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0]["workflowId"], "transcode-s2");
    assert_eq!(
        failed[0]["creator"], "(invalid)",
        "a refused payload's values are not trusted"
    );

    let x264_videos = list(&h, &["--media-type", "video", "--encoder", "x264"], 1).await;
    assert_eq!(x264_videos.len(), 1, "{x264_videos:#?}");
    assert!(list(&h, &["--creator", "nobody"], 0).await.is_empty());

    // The same attributes answer Temporal's own query language.
    let listed = h
        .temporal_cli(&[
            "workflow",
            "list",
            "--query",
            "TranscoderCreator = 'alice' AND TranscoderOutcome = 'completed'",
            "--output",
            "json",
        ])
        .await;
    assert!(listed.contains("transcode-s1"), "{listed}");

    worker.signal(libc::SIGTERM);
    let _ = worker.wait_for_exit(Duration::from_secs(30)).await;
}
