//! Storage briefly unreachable, the way production shows it: uploads fail with an I/O error
//! for a moment. The failing activities retry with backoff and the job completes.

use crate::common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_outage_is_retried() {
    let h = Harness::start().await;
    let out = h.path("out");
    let hook = WebhookReceiver::start("whsec-outage");
    make_video(
        &object_path(&out, ARCHIVE_BUCKET, "originals/c1/out1/original.mp4"),
        640,
        360,
        12,
        25,
    )
    .await;
    let mut job = video_job_payload("out1", "c1", &hook);
    job["segmentsPerChunk"] = json!(1);
    let job_file = write_job(&h, "job.json", &job);

    // The media bucket is "down": a plain file where its folder should be makes every
    // upload into it fail with an I/O error (root ignores permissions, so not chmod).
    let bucket = out.join(MEDIA_BUCKET);
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(&bucket, b"storage outage").unwrap();

    let mut worker = h.spawn(&["worker", "--out", s(&out), "--task-queue", "q-outage"]);
    let submit = h
        .run(&["submit", "--job", s(&job_file), "--task-queue", "q-outage"])
        .await;
    submit.assert_success();

    // Bring the bucket back right after the first failed upload.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !worker.stderr().contains("activity failed") {
        assert!(
            Instant::now() < deadline,
            "no upload failed\n{}",
            worker.dump()
        );
        assert!(
            worker.try_status().is_none(),
            "the worker exited\n{}",
            worker.dump()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        worker.stderr().contains("permanent=false"),
        "an outage must be transient\n{}",
        worker.dump()
    );
    std::fs::remove_file(&bucket).unwrap();

    let done = h
        .run(&[
            "submit",
            "--job",
            s(&job_file),
            "--wait",
            "--task-queue",
            "q-outage",
        ])
        .await;
    if !done.status.success() {
        panic!(
            "the job did not survive the outage\n{}\n{}",
            done.dump(),
            worker.dump()
        );
    }
    let body = done.json();
    assert_eq!(body["status"], "completed", "{body:#}");
    assert_eq!(hook.expect_one_valid().await, body);
    let body_file = h.path("body.json");
    std::fs::write(&body_file, serde_json::to_vec(&body).unwrap()).unwrap();
    h.run(&["verify", "--body", s(&body_file), "--out", s(&out)])
        .await
        .assert_success();

    worker.signal(libc::SIGTERM);
    let status = worker
        .wait_for_exit(Duration::from_secs(60))
        .await
        .expect("worker stops");
    assert!(status.success(), "{}", worker.dump());
}
