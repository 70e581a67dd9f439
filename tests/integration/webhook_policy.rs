//! Webhook delivery policy set on the worker: an allowlist against SSRF, and the optional
//! timestamped signature (DESIGN §3.2) for replay protection.

use crate::common;

use common::*;
use std::path::Path;
use std::time::Duration;

async fn run_with_env(
    h: &Harness,
    env: &[(&str, &str)],
    input: &Path,
    media: &str,
    hook: &WebhookReceiver,
) -> CmdOutput {
    let out = h.path("out");
    let url = hook.url();
    let mut cmd = h.command(&[
        "run",
        s(input),
        "--json",
        "--media-id",
        media,
        "--out",
        s(&out),
        "--webhook-url",
        &url,
        "--webhook-secret",
        &hook.secret,
    ]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let logs = h.path(&format!("logs-{media}"));
    std::fs::create_dir_all(&logs).unwrap();
    run_to_end(cmd, &logs, Duration::from_secs(300)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disallowed_webhook_host_is_refused() {
    let h = Harness::start().await;
    let input = h.path("in/clip.mp4");
    make_video(&input, 320, 240, 3, 25).await;
    let hook = WebhookReceiver::start("whsec-allow");
    let run = run_with_env(
        &h,
        &[("WEBHOOK_ALLOWED_HOSTS", "hooks.example.com")],
        &input,
        "deny1",
        &hook,
    )
    .await;
    // The job itself is fine; only the delivery is refused, and nothing is sent. That is an
    // outcome, not a warning: the receiver was never told, so run says so and exits 3.
    assert_eq!(run.status.code(), Some(3), "{}", run.dump());
    assert_eq!(run.json()["status"], "completed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        hook.received().is_empty(),
        "a request reached a host outside the allowlist"
    );
    assert!(
        run.stderr.contains(
            "the job completed, but its webhook was not sent: its host is not in the worker's WEBHOOK_ALLOWED_HOSTS"
        ),
        "{}",
        run.dump()
    );

    // status shows it too, in JSON and in words.
    let status = h.run(&["status", "deny1", "--json"]).await;
    status.assert_success();
    let report = status.json();
    assert_eq!(report["webhookStatus"], "ready", "{report:#}");
    assert!(
        report["webhookDelivery"]
            .as_str()
            .is_some_and(|d| d.starts_with("not sent: its host is not in")),
        "{report:#}"
    );
    assert_eq!(
        report["receipt"]["webhook"]["delivered"], false,
        "{report:#}"
    );
    let human = h.run(&["status", "deny1"]).await;
    assert!(
        human.stdout.contains("webhook: ready, not sent: its host"),
        "{}",
        human.dump()
    );

    // A failed job's refused webhook is reported the same way.
    let broken = h.path("in/broken.mp4");
    std::fs::write(&broken, b"not a video at all, just bytes").unwrap();
    let run = run_with_env(
        &h,
        &[("WEBHOOK_ALLOWED_HOSTS", "hooks.example.com")],
        &broken,
        "deny2",
        &hook,
    )
    .await;
    assert_eq!(run.status.code(), Some(3), "{}", run.dump());
    assert_eq!(run.json()["status"], "failed");
    assert!(
        run.stderr
            .contains("the job failed, but its webhook was not sent: its host is not in"),
        "{}",
        run.dump()
    );
    assert!(hook.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamped_signature_verifies() {
    let h = Harness::start().await;
    let input = h.path("in/clip.mp4");
    make_video(&input, 320, 240, 3, 25).await;
    let hook = WebhookReceiver::start("whsec-ts");
    let run = run_with_env(
        &h,
        &[
            ("WEBHOOK_SIGNATURE_TIMESTAMPS", "1"),
            ("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1"),
        ],
        &input,
        "ts1",
        &hook,
    )
    .await;
    run.assert_success();
    let body = hook.expect_one_valid().await;
    assert_eq!(body, run.json());
    let got = hook.received();
    let ts = got[0]
        .timestamp
        .as_deref()
        .expect("X-Runpod-Timestamp sent");
    let ts: u64 = ts.parse().expect("unix seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        now.abs_diff(ts) < 300,
        "timestamp {ts} is not current ({now})"
    );
}

/// A refused job whose receiver cannot be reached: `run` prints why at once and exits with
/// the outcome, instead of holding the terminal through hours of webhook retries; the
/// retries go on in the workflow, and `status` shows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_job_is_reported_at_once_while_its_webhook_is_retried() {
    let h = Harness::start().await;
    let out = h.path("out");
    // Nothing listens there: every delivery is refused by the network.
    let closed = free_port();
    let job = serde_json::json!({
        "mediaId": "refused1",
        "creatorId": "c1",
        "mediaType": "video",
        "inputBucket": ARCHIVE_BUCKET,
        "inputKey": "../../etc/passwd",
        "outputBucket": MEDIA_BUCKET,
        "outputPrefix": "c1/hls/refused1",
        "assetsBucket": ASSETS_BUCKET,
        "webhookUrl": format!("http://127.0.0.1:{closed}/hooks"),
        "webhookSecret": "whsec-refused-0123456789",
    });
    let file = h.path("refused.json");
    std::fs::write(&file, serde_json::to_vec(&job).unwrap()).unwrap();
    let started = std::time::Instant::now();
    let run = h
        .run(&["run", "--job", s(&file), "--out", s(&out), "--json"])
        .await;
    let took = started.elapsed();
    // The server's start is most of it; the webhook alone would retry for 24 hours.
    assert!(
        took < Duration::from_secs(60),
        "run took {took:?}\n{}",
        run.dump()
    );
    assert_eq!(run.status.code(), Some(3), "{}", run.dump());
    let body = run.json();
    assert_eq!(body["status"], "failed", "{body:#}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("inputKey"),
        "the reason names the field: {error}"
    );
    assert!(
        run.stderr
            .contains("the job failed, but its webhook was still being retried"),
        "{}",
        run.dump()
    );
}
