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
    // The job itself is fine; only the delivery is refused, and nothing is sent.
    run.assert_success();
    assert_eq!(run.json()["status"], "completed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        hook.received().is_empty(),
        "a request reached a host outside the allowlist"
    );
    assert!(
        run.stderr.contains("WEBHOOK_ALLOWED_HOSTS"),
        "{}",
        run.dump()
    );
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
