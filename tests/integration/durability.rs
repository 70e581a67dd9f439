//! Durability promises (DESIGN §5), checked on the real binary, a real Temporal server and
//! real ffmpeg: secrets never reach history in plaintext, a failed job is retried a bounded
//! number of times, a completed one is not encoded again, a killed run or a killed ffmpeg
//! resumes instead of starting over, the original is cleaned up after its retention period
//! (and nothing else is), and a worker's SIGTERM lets the running activity finish.
//!
//! History is read with the real `temporal` CLI (`workflow show/list --output json`), whose
//! payloads are base64: they are decoded before any search (see `searchable_text`).

use crate::common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The path of this test's temp folder as text: every process of this test (ffmpeg, the
/// embedded server) carries it on its command line, other tests' processes do not.
fn tmp_text(h: &Harness) -> String {
    h.tmp.path().to_str().expect("utf-8 path").to_string()
}

/// The workflow id `run` printed on stderr ("Job transcode-… running; …").
fn printed_workflow_id(stderr: &str) -> Option<String> {
    stderr.lines().find_map(|l| {
        l.split_once("Job ")
            .map(|(_, rest)| rest)
            .and_then(|rest| rest.split_whitespace().next())
            .filter(|id| id.starts_with("transcode-"))
            .map(str::to_string)
    })
}

/// Lines that say a mezzanine was (re-)encoded and stored.
fn mezzanine_stored_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains("mezzanine stored"))
        .collect()
}

fn video_job(media: &str, creator: &str, hook: &WebhookReceiver) -> Value {
    json!({
        "mediaId": media,
        "creatorId": creator,
        "mediaType": "video",
        "inputBucket": ARCHIVE_BUCKET,
        "inputKey": format!("originals/{creator}/{media}/original.mp4"),
        "outputBucket": MEDIA_BUCKET,
        "outputPrefix": format!("{creator}/hls/{media}"),
        "assetsBucket": ASSETS_BUCKET,
        "webhookUrl": hook.url(),
        "webhookSecret": hook.secret,
    })
}

/// Runs `transcoder verify --body BODY --out OUT` on a completed body.
async fn verify_outputs(h: &Harness, body: &Value, out: &Path) {
    let body_file = h.path(&format!(
        "body-{}.json",
        body["output"]["mediaId"].as_str().unwrap_or("x")
    ));
    std::fs::write(&body_file, serde_json::to_vec(body).unwrap()).unwrap();
    let r = h
        .run(&["verify", "--body", s(&body_file), "--out", s(out)])
        .await;
    assert!(
        r.status.success(),
        "`transcoder verify` rejects the outputs\n{}",
        r.dump()
    );
}

/// Every activity of every run of `workflow_id`, with the run it belongs to.
async fn all_runs_activities(address: &str, workflow_id: &str) -> Vec<(String, ActivityRecord)> {
    let mut all = Vec::new();
    for listed in list_workflows(address, &format!("WorkflowId = '{workflow_id}'")).await {
        let (_, run_id, _) = execution_summary(&listed);
        let history = workflow_run_history(address, workflow_id, &run_id).await;
        for a in history_activities(&history) {
            all.push((run_id.clone(), a));
        }
    }
    all
}

fn describe(activities: &[ActivityRecord]) -> String {
    activities
        .iter()
        .map(|a| {
            format!(
                "#{} {} attempt {:?} {}",
                a.scheduled_event_id, a.activity_type, a.started_attempt, a.outcome
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------

/// 1. The webhook secret is sealed before the workflow starts: no history on the server
/// holds it (payloads decoded), the server's files do not either, the command does not
/// print it, and the worker still opened it (the webhook verifies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_secret_never_in_history() {
    let h = Harness::start().await;
    // The receiver's secret begins with this canary; finding the canary anywhere would
    // mean the secret is there.
    let secret = "whsec-Canary-9d41f3e07b2a-never-in-history";
    let hook = WebhookReceiver::start(secret);
    let input = h.path("in/secret.mp4");
    make_video(&input, 640, 360, 4, 25).await;
    let out = h.path("out");
    let url = hook.url();

    let run = h
        .run(&[
            "run",
            s(&input),
            "--media-type",
            "video",
            "--media-id",
            "sec1",
            "--creator-id",
            "c1",
            "--out",
            s(&out),
            "--webhook-url",
            &url,
            "--webhook-secret",
            &hook.secret,
            "--json",
            "--task-queue",
            "dur-secret",
        ])
        .await;
    run.assert_success();
    let body = run.json();
    assert_eq!(body["status"], "completed", "body: {body:#}");
    let hooked = hook.expect_one_valid().await;
    assert_eq!(
        hooked, body,
        "the webhook body differs from what --json printed"
    );
    assert!(
        !run.stdout.contains(secret) && !run.stderr.contains(secret),
        "the webhook secret is printed by `run`\n{}",
        run.dump()
    );

    // Every execution on this test's server: the job and its clean-up child.
    let address = h.address();
    let listed = list_workflows(&address, "").await;
    let ids: Vec<(String, String, String)> = listed.iter().map(execution_summary).collect();
    assert!(
        ids.iter().any(|(id, _, _)| id == "transcode-sec1"),
        "the job's workflow is not on the server: {ids:?}"
    );
    let mut sealed_seen = false;
    for (id, run_id, _) in &ids {
        let history = workflow_run_history(&address, id, run_id).await;
        assert!(
            !history_events(&history).is_empty(),
            "history of {id} is empty: {history}"
        );
        let text = searchable_text(&history);
        assert!(
            !text.contains(secret),
            "workflow {id} (run {run_id}) holds the webhook secret in plaintext"
        );
        if id == "transcode-sec1" {
            sealed_seen = text.contains("sealed:v1:");
        }
    }
    assert!(
        sealed_seen,
        "the job's history has no `sealed:v1:` secret: the search above proves nothing"
    );

    // The server's own files (SQLite database and WAL, log): payload bytes are raw there.
    for file in walk(&h.path("temporal")) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the Temporal server's file {} holds the webhook secret",
            file.display()
        );
    }
    // Nor any log the commands wrote.
    for file in walk(&h.path("logs")) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            !text.contains(secret),
            "{} holds the secret",
            file.display()
        );
    }
}

/// 2. A job that fails may be submitted once more (TRANSCODER_MAX_JOB_RETRIES defaults to
/// 1); after that it is refused with "already failed" and no webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_job_is_retried_once_then_refused() {
    let h = Harness::start().await;
    let hook = WebhookReceiver::start("whsec-retry-once");
    let input = h.path("in/broken.mp4");
    make_corrupt(&input, 64 * 1024);
    let out = h.path("out");
    let url = hook.url();
    let args = [
        "run",
        s(&input),
        "--media-type",
        "video",
        "--media-id",
        "fail1",
        "--creator-id",
        "c1",
        "--out",
        s(&out),
        "--webhook-url",
        &url,
        "--webhook-secret",
        &hook.secret,
        "--json",
        "--task-queue",
        "dur-fail",
    ];

    for attempt in 1..=2usize {
        let r = h.run(&args).await;
        r.assert_failure();
        let body = r.json();
        assert_eq!(
            body["status"],
            "failed",
            "run {attempt}: {body:#}\n{}",
            r.dump()
        );
        assert_eq!(
            body["output"]["mediaId"], "fail1",
            "run {attempt}: {body:#}"
        );
        let got = hook.wait_for(attempt, Duration::from_secs(60)).await;
        assert_eq!(
            got.len(),
            attempt,
            "run {attempt}: expected {attempt} webhooks in total, got {}",
            got.len()
        );
        let last = &got[attempt - 1];
        assert!(
            last.valid,
            "run {attempt}: webhook signature does not verify"
        );
        assert_eq!(
            last.json(),
            body,
            "run {attempt}: webhook differs from stdout"
        );
    }

    let third = h.run(&args).await;
    third.assert_failure();
    assert!(
        third.stderr.contains("already failed"),
        "the third run should be refused with \"already failed\"\n{}",
        third.dump()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = hook.received();
    assert_eq!(
        got.len(),
        2,
        "the refused run sent a webhook: {:?}",
        got.iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect::<Vec<_>>()
    );

    let runs: Vec<_> = list_workflows(&h.address(), "WorkflowId = 'transcode-fail1'")
        .await
        .iter()
        .map(execution_summary)
        .collect();
    assert_eq!(
        runs.len(),
        2,
        "expected two runs of transcode-fail1: {runs:?}"
    );
    assert!(
        runs.iter().all(|(_, _, status)| status == "FAILED"),
        "both runs should have failed: {runs:?}"
    );
}

/// 3. Running a completed job again returns the stored result: same body, quickly, no
/// second encode (the mezzanine activity ran once across all runs, outputs untouched).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_job_is_not_encoded_again() {
    let h = Harness::start().await;
    let hook = WebhookReceiver::start("whsec-done-once");
    let input = h.path("in/done.mp4");
    make_video(&input, 640, 360, 4, 25).await;
    let out = h.path("out");
    let url = hook.url();
    let args = [
        "run",
        s(&input),
        "--media-type",
        "video",
        "--media-id",
        "done1",
        "--creator-id",
        "c1",
        "--out",
        s(&out),
        "--webhook-url",
        &url,
        "--webhook-secret",
        &hook.secret,
        "--json",
        "--task-queue",
        "dur-done",
    ];

    let t1 = Instant::now();
    let first = h.run(&args).await;
    let first_secs = t1.elapsed().as_secs_f64();
    first.assert_success();
    let body = first.json();
    assert_eq!(body["status"], "completed", "body: {body:#}");
    assert_eq!(hook.expect_one_valid().await, body);

    // Everything produced (not the staged original, which `run` copies in again).
    let produced = |out: &Path| -> Vec<(PathBuf, std::time::SystemTime, u64)> {
        walk(out)
            .into_iter()
            .filter(|p| !p.to_string_lossy().contains("/originals/"))
            .map(|p| {
                let m = std::fs::metadata(&p).unwrap();
                (p, m.modified().unwrap(), m.len())
            })
            .collect()
    };
    let mut before = produced(&out);
    before.sort();

    let t2 = Instant::now();
    let second = h.run(&args).await;
    let second_secs = t2.elapsed().as_secs_f64();
    second.assert_success();
    assert_eq!(
        second.json(),
        body,
        "the second run printed a different body\n{}",
        second.dump()
    );
    assert!(
        mezzanine_stored_lines(&second.stderr).is_empty(),
        "the second run encoded the mezzanine again\n{}",
        second.dump()
    );
    assert!(
        second_secs < 30.0,
        "returning a stored result took {second_secs:.1} s (the encode took {first_secs:.1} s)"
    );
    let mut after = produced(&out);
    after.sort();
    assert_eq!(before, after, "the second run rewrote outputs");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        hook.received().len(),
        1,
        "returning the stored result sent another webhook"
    );

    let address = h.address();
    let runs: Vec<_> = list_workflows(&address, "WorkflowId = 'transcode-done1'")
        .await
        .iter()
        .map(execution_summary)
        .collect();
    assert_eq!(
        runs.len(),
        1,
        "the completed job was started again: {runs:?}"
    );
    assert_eq!(runs[0].2, "COMPLETED", "{runs:?}");
    let activities = all_runs_activities(&address, "transcode-done1").await;
    let mezz = activities
        .iter()
        .filter(|(_, a)| a.activity_type == "mezzanine")
        .count();
    assert_eq!(
        mezz,
        1,
        "mezzanine scheduled {mezz} times across runs:\n{}",
        describe(&activities.into_iter().map(|(_, a)| a).collect::<Vec<_>>())
    );
    eprintln!("encode {first_secs:.1} s, stored result {second_secs:.1} s");
}

/// The embedded Temporal server dies mid-job (kill -9): `run` says the job is saved and
/// resumes when run again, prints no body and sends no webhook (it used to print a `failed`
/// body that was never sent, with raw transport errors); the same command then finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_embedded_server_is_explained_and_the_job_resumes() {
    let h = Harness::without_server();
    let hook = WebhookReceiver::start("whsec-server-dies");
    let input = h.path("in/clip.mp4");
    make_video(&input, 1280, 720, 12, 25).await;
    let out = h.path("out");
    let state = h.path("state");
    let url = hook.url();
    let args = [
        "run",
        s(&input),
        "--out",
        s(&out),
        "--webhook-url",
        &url,
        "--webhook-secret",
        &hook.secret,
        "--json",
    ];
    let mut first = h.spawn(&args);
    poll_until(Duration::from_secs(120), || {
        printed_workflow_id(&first.stderr())
    })
    .await
    .unwrap_or_else(|| panic!("`run` printed no workflow id\n{}", first.dump()));
    let state_text = s(&state).to_string();
    let servers = find_processes(&["start-dev", &state_text]);
    assert!(
        !servers.is_empty(),
        "no embedded server found\n{}",
        first.dump()
    );
    for (pid, _) in &servers {
        send_signal(*pid, libc::SIGKILL);
    }
    let status = first
        .wait_for_exit(Duration::from_secs(180))
        .await
        .unwrap_or_else(|| panic!("`run` did not exit after its server died\n{}", first.dump()));
    assert!(!status.success(), "{}", first.dump());
    assert!(
        first.stdout().trim().is_empty(),
        "a body was printed for a job that did not end\n{}",
        first.dump()
    );
    assert!(
        first.stderr().contains("run the same command again"),
        "no hint that the job resumes\n{}",
        first.dump()
    );
    assert!(
        hook.received().is_empty(),
        "a webhook was sent for a job that did not end"
    );

    let second = h.run(&args).await;
    second.assert_success();
    let body = second.json();
    assert_eq!(body["status"], "completed", "{}", second.dump());
    assert_eq!(hook.expect_one_valid().await, body);
}

/// 4. `kill -9` of an embedded `run` in the middle of the ladder: its Temporal server dies
/// with it, and the same command again resumes the same workflow (content-derived media id)
/// without redoing the mezzanine, and finishes with outputs that verify.
///
/// Work lost with the killed process must be picked up again after at most a heartbeat
/// timeout (30 s), not after an activity's whole start-to-close timeout: the resumed run
/// gets [`RESUME_LIMIT`], and if it runs past that the activities still pending on its
/// server are named in the failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_run_resumes_same_workflow() {
    let h = Harness::without_server();
    let hook = WebhookReceiver::start("whsec-resume");
    let input = h.path("in/long.mp4");
    make_video(&input, 1280, 720, 20, 25).await;
    let out = h.path("out");
    let state = h.path("state");
    let url = hook.url();
    // No --media-id: the default is derived from the content, so the same command resumes.
    let args = [
        "run",
        s(&input),
        "--out",
        s(&out),
        "--webhook-url",
        &url,
        "--webhook-secret",
        &hook.secret,
        "--json",
    ];

    let mut first = h.spawn(&args);
    let id = poll_until(Duration::from_secs(120), || {
        printed_workflow_id(&first.stderr())
    })
    .await
    .unwrap_or_else(|| panic!("`run` printed no workflow id\n{}", first.dump()));
    let first_server = embedded_address(&first.stderr())
        .unwrap_or_else(|| panic!("`run` printed no server address\n{}", first.dump()));
    let media = id.strip_prefix("transcode-").unwrap().to_string();
    let mezzanine = object_path(
        &out,
        ARCHIVE_BUCKET,
        &format!("mezzanine/local/{media}/mezzanine.mp4"),
    );
    let tmp = tmp_text(&h);
    // The mezzanine is stored and the ladder (reading it) is encoding: kill now.
    let laddering = poll_until(Duration::from_secs(180), || {
        if mezzanine.is_file() && !find_ffmpeg(&["-filter_complex", &tmp]).is_empty() {
            Some(true)
        } else if first.try_status().is_some() {
            Some(false)
        } else {
            None
        }
    })
    .await;
    assert_eq!(
        laddering,
        Some(true),
        "the ladder never ran with the mezzanine at {} before `run` ended\n{}",
        mezzanine.display(),
        first.dump()
    );
    let pending_at_kill = pending_activities(&first_server, &id).await;
    assert!(
        first.try_status().is_none(),
        "the job finished before it could be killed; use a longer clip\n{}",
        first.dump()
    );
    let state_text = s(&state).to_string();
    let servers = find_processes(&["start-dev", &state_text]);
    assert!(
        !servers.is_empty(),
        "found no embedded Temporal server with state in {state_text}"
    );

    first.signal(libc::SIGKILL);
    first
        .wait_for_exit(Duration::from_secs(10))
        .await
        .expect("the killed run did not exit");
    let stderr1 = first.stderr();
    let leftover = poll_until(Duration::from_secs(10), || {
        find_processes(&["start-dev", &state_text])
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(
        leftover.is_some(),
        "the embedded Temporal server outlived the killed run: {:?}",
        find_processes(&["start-dev", &state_text])
    );
    // Encodes of the killed run that outlived it are not this test's subject, but they
    // would steal the CPU the second run needs: note them and stop them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let orphans = find_ffmpeg(&[&tmp]);
    if !orphans.is_empty() {
        eprintln!(
            "note: {} ffmpeg process(es) of the killed run outlived it: {:?}",
            orphans.len(),
            orphans.iter().map(|(p, _)| p).collect::<Vec<_>>()
        );
        for (pid, _) in &orphans {
            send_signal(*pid, libc::SIGKILL);
        }
    }

    let t = Instant::now();
    let mut second = h.spawn(&args);
    let status = match second.wait_for_exit(RESUME_LIMIT).await {
        Some(status) => status,
        None => {
            let pending = match embedded_address(&second.stderr()) {
                Some(address) => pending_activities(&address, &id).await,
                None => "(no server address printed)".to_string(),
            };
            panic!(
                "the resumed run did not finish within {} s.\nActivities pending on its server \
                 now:\n{pending}\nActivities pending when the first run was killed:\n\
                 {pending_at_kill}\n{}",
                RESUME_LIMIT.as_secs(),
                second.dump()
            );
        }
    };
    let resume_secs = t.elapsed().as_secs_f64();
    eprintln!("resumed run took {resume_secs:.1} s");
    let stderr2 = second.stderr();
    // The attempts the killed run held were handed back when the second run started,
    // instead of waiting out their heartbeat timeouts (30 s) before any retry.
    assert!(
        stderr2.contains("handed back an attempt of a dead worker process"),
        "the resumed run did not hand back the killed run's attempts\n{}",
        second.dump()
    );
    assert!(
        status.success(),
        "the resumed run failed\n{}",
        second.dump()
    );
    assert_eq!(
        printed_workflow_id(&stderr2).as_deref(),
        Some(id.as_str()),
        "the second run is not the same workflow\n{}",
        second.dump()
    );
    assert!(
        mezzanine_stored_lines(&stderr2).is_empty(),
        "the resumed run encoded the mezzanine again (first run stored it: {})\n{}",
        !mezzanine_stored_lines(&stderr1).is_empty(),
        second.dump()
    );
    let body: Value = serde_json::from_str(second.stdout().trim())
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", second.dump()));
    assert_eq!(body["status"], "completed", "body: {body:#}");
    assert_eq!(body["output"]["mediaId"], media.as_str());
    assert_eq!(hook.expect_one_valid().await, body);
    verify_outputs(&h, &body, &out).await;

    // The killed run's work folders (a chunk's segments, tens of MB) are gone: the second run
    // reclaimed them when it started, and removed its own when it ended.
    let scratch = state.join("scratch");
    let left: Vec<_> = std::fs::read_dir(&scratch)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !name.starts_with("input-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "scratch space of the killed run was left in {}: {left:?}\n{}",
        scratch.display(),
        second.dump()
    );
    assert!(
        stderr2.contains("removed the scratch folders of worker processes that died"),
        "the resumed run did not say it reclaimed the killed run's scratch\n{}",
        second.dump()
    );

    // One workflow for the media, seen on the saved state.
    let (mut server, address) = spawn_state_server(&h, &state).await;
    let jobs: Vec<_> = list_workflows(&address, "WorkflowType = 'TranscodeWorkflow'")
        .await
        .iter()
        .map(execution_summary)
        .collect();
    assert_eq!(
        jobs.len(),
        1,
        "expected exactly one TranscodeWorkflow execution: {jobs:?}"
    );
    assert_eq!(jobs[0].0, id, "{jobs:?}");
    assert_eq!(jobs[0].2, "COMPLETED", "{jobs:?}");
    let activities = history_activities(&workflow_history(&address, &id).await);
    let mezz: Vec<_> = activities
        .iter()
        .filter(|a| a.activity_type == "mezzanine")
        .collect();
    assert_eq!(
        mezz.len(),
        1,
        "mezzanine scheduled {} times:\n{}",
        mezz.len(),
        describe(&activities)
    );
    assert_eq!(
        mezz[0].started_attempt,
        Some(1),
        "the mezzanine was encoded again:\n{}",
        describe(&activities)
    );
    server.signal(libc::SIGTERM);
    let _ = server.wait_for_exit(Duration::from_secs(20)).await;
    eprintln!(
        "pending at kill:\n{pending_at_kill}\nresumed run took {resume_secs:.1} s\n{}",
        describe(&activities)
    );
}

/// How long a resumed run may take: a 30 s heartbeat timeout for the work lost with the
/// killed process, then the rest of a 20 s 720p job on a busy 2-core machine.
const RESUME_LIMIT: Duration = Duration::from_secs(200);

/// The embedded server's address a `run` printed ("Temporal dev server on ADDR (…)").
fn embedded_address(stderr: &str) -> Option<String> {
    stderr.lines().find_map(|l| {
        l.split_once("Temporal dev server on ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .map(str::to_string)
    })
}

/// The pending activities of a workflow, one line each (type, state, attempt, times, last
/// failure), from `temporal workflow describe`.
async fn pending_activities(address: &str, workflow_id: &str) -> String {
    let described = temporal_json(
        address,
        &["workflow", "describe", "--workflow-id", workflow_id],
    )
    .await;
    let pending = described["pendingActivities"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if pending.is_empty() {
        return "  (none)".to_string();
    }
    pending
        .iter()
        .map(|p| {
            format!(
                "  {} state={} attempt={} lastStarted={} lastHeartbeat={} lastFailure={}",
                p["activityType"]["name"].as_str().unwrap_or("?"),
                p["state"].as_str().unwrap_or("?"),
                json_u64(&p["attempt"]).unwrap_or(0),
                p["lastStartedTime"].as_str().unwrap_or("-"),
                p["lastHeartbeatTime"].as_str().unwrap_or("-"),
                p["lastFailure"]["message"].as_str().unwrap_or("-"),
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// 5. SIGKILL of the ladder's ffmpeg is a transient failure: the activity is retried and
/// the job completes with one completed webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_ffmpeg_kill_is_retried() {
    let h = Harness::start().await;
    let hook = WebhookReceiver::start("whsec-ffmpeg-kill");
    let input = h.path("in/long.mp4");
    make_video(&input, 1280, 720, 30, 25).await;
    let out = h.path("out");
    let url = hook.url();
    let mut run = h.spawn(&[
        "run",
        s(&input),
        "--media-type",
        "video",
        "--media-id",
        "kill1",
        "--creator-id",
        "c1",
        "--out",
        s(&out),
        "--webhook-url",
        &url,
        "--webhook-secret",
        &hook.secret,
        "--json",
        "--task-queue",
        "dur-kill",
    ]);

    let tmp = tmp_text(&h);
    // Kill one ladder ffmpeg once, after it got going (if it ends first, take the next).
    let deadline = Instant::now() + Duration::from_secs(240);
    let (pid, argv) = loop {
        let target = poll_until(deadline.saturating_duration_since(Instant::now()), || {
            if let Some(found) = find_ffmpeg(&["-filter_complex", &tmp]).into_iter().next() {
                return Some(Some(found));
            }
            run.try_status().is_some().then_some(None)
        })
        .await
        .flatten();
        let (pid, argv) = target.unwrap_or_else(|| {
            panic!(
                "no ladder ffmpeg (-filter_complex) of this test was running to kill\n{}",
                run.dump()
            )
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        if send_signal(pid, libc::SIGKILL) {
            break (pid, argv);
        }
    };
    eprintln!("killed ffmpeg {pid}: {}", argv.join(" "));
    let killed_at = Instant::now();

    let status = run
        .wait_for_exit(CMD_TIMEOUT)
        .await
        .unwrap_or_else(|| panic!("the job did not finish\n{}", run.dump()));
    assert!(
        status.success(),
        "the job failed after one ffmpeg kill\n{}",
        run.dump()
    );
    let body: Value = serde_json::from_str(run.stdout().trim())
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", run.dump()));
    assert_eq!(body["status"], "completed", "body: {body:#}");
    assert_eq!(hook.expect_one_valid().await, body);

    let history = workflow_history(&h.address(), "transcode-kill1").await;
    let activities = history_activities(&history);
    let retried: Vec<_> = activities
        .iter()
        .filter(|a| a.started_attempt.is_some_and(|n| n >= 2) && a.outcome == "completed")
        .collect();
    assert!(
        !retried.is_empty(),
        "no activity shows a retry after ffmpeg was killed:\n{}",
        describe(&activities)
    );
    assert!(
        activities.iter().all(|a| a.outcome == "completed"),
        "an activity did not complete:\n{}",
        describe(&activities)
    );
    verify_outputs(&h, &body, &out).await;
    eprintln!(
        "killed ffmpeg {pid}; job finished {:.1} s later\n{}",
        killed_at.elapsed().as_secs_f64(),
        describe(&activities)
    );
}

/// 6. After the retention period the clean-up workflow deletes the original, and only the
/// original; then the worker stops cleanly on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_deletes_only_the_original() {
    let h = Harness::start().await;
    let hook = WebhookReceiver::start("whsec-cleanup");
    let out = h.path("out");
    let queue = "dur-cleanup";
    let original = object_path(&out, ARCHIVE_BUCKET, "originals/c1/m1/original.mp4");
    make_video(&original, 640, 360, 4, 25).await;
    let mut job = video_job("m1", "c1", &hook);
    job["originalRetentionSeconds"] = json!(3);
    let job_file = write_job(&h, "job.json", &job);

    let mut worker = h.spawn(&["worker", "--out", s(&out), "--task-queue", queue]);
    let submit = h
        .run(&[
            "submit",
            "--job",
            s(&job_file),
            "--wait",
            "--task-queue",
            queue,
        ])
        .await;
    if !submit.status.success() {
        panic!("submit failed\n{}\n{}", submit.dump(), worker.dump());
    }
    let snapshot: BTreeSet<PathBuf> = walk(&out).into_iter().collect();
    let body = submit.json();
    assert_eq!(body["status"], "completed", "body: {body:#}");
    assert_eq!(hook.expect_one_valid().await, body);

    let gone = poll_until(Duration::from_secs(60), || {
        (!original.exists()).then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "the original still exists 60 s after a 3 s retention\n{}",
        worker.dump()
    );

    let output = &body["output"];
    let mezzanine = assert_object_exists(
        &out,
        ARCHIVE_BUCKET,
        output["mezzanineKey"].as_str().expect("mezzanineKey"),
    );
    assert_eq!(
        mezzanine,
        object_path(&out, ARCHIVE_BUCKET, "mezzanine/c1/m1/mezzanine.mp4")
    );
    assert_object_exists(
        &out,
        MEDIA_BUCKET,
        output["hlsMasterPlaylistKey"].as_str().expect("master key"),
    );
    assert_object_exists(
        &out,
        ASSETS_BUCKET,
        output["thumbnailKey"].as_str().expect("thumbnail key"),
    );
    let after: BTreeSet<PathBuf> = walk(&out).into_iter().collect();
    let missing: Vec<_> = snapshot
        .iter()
        .filter(|p| **p != original && !after.contains(*p))
        .collect();
    assert!(
        missing.is_empty(),
        "clean-up deleted more than the original: {missing:#?}"
    );
    verify_outputs(&h, &body, &out).await;

    // The clean-up workflow reports what it did.
    let address = h.address();
    let result = {
        let start = Instant::now();
        loop {
            let history = workflow_history(&address, "cleanup-original-m1").await;
            if let Some(result) = workflow_result(&history) {
                break result;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "cleanup-original-m1 did not complete: {:?}",
                history_events(&history)
                    .iter()
                    .map(event_kind)
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    assert_eq!(result["deleted"], json!(true), "clean-up result: {result}");

    worker.signal(libc::SIGTERM);
    match worker.wait_for_exit(Duration::from_secs(30)).await {
        Some(status) => assert!(
            status.success(),
            "worker exited with {status} on SIGTERM\n{}",
            worker.dump()
        ),
        None => panic!(
            "the worker did not exit within 30 s of SIGTERM\n{}",
            worker.dump()
        ),
    }
}

/// 7. SIGTERM to a worker in the middle of the ladder: it stops taking work, lets the
/// running activity finish within --shutdown-grace, exits 0; another worker finishes the
/// job with nothing redone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_sigterm_finishes_running_activity() {
    let h = Harness::start().await;
    let hook = WebhookReceiver::start("whsec-sigterm");
    let out = h.path("out");
    let queue = "dur-sigterm";
    make_video(
        &object_path(&out, ARCHIVE_BUCKET, "originals/c7/m7/original.mp4"),
        1280,
        720,
        30,
        25,
    )
    .await;
    let job_file = write_job(&h, "job.json", &video_job("m7", "c7", &hook));
    let grace = 60u64;
    let grace_text = grace.to_string();

    let mut worker = h.spawn(&[
        "worker",
        "--out",
        s(&out),
        "--task-queue",
        queue,
        "--shutdown-grace",
        &grace_text,
    ]);
    let submit = h
        .run(&["submit", "--job", s(&job_file), "--task-queue", queue])
        .await;
    if !submit.status.success() {
        panic!("submit failed\n{}\n{}", submit.dump(), worker.dump());
    }

    let tmp = tmp_text(&h);
    let running = poll_until(Duration::from_secs(240), || {
        if let Some(found) = find_ffmpeg(&["-filter_complex", &tmp]).into_iter().next() {
            return Some(Some(found));
        }
        worker.try_status().is_some().then_some(None)
    })
    .await
    .flatten();
    let (pid, _) = running.unwrap_or_else(|| {
        panic!(
            "the ladder ffmpeg never ran on the worker\n{}",
            worker.dump()
        )
    });
    worker.signal(libc::SIGTERM);
    let signalled = Instant::now();
    let status = worker
        .wait_for_exit(Duration::from_secs(grace + 15))
        .await
        .unwrap_or_else(|| {
            panic!(
                "the worker did not exit within {} s of SIGTERM (grace {grace} s)\n{}",
                grace + 15,
                worker.dump()
            )
        });
    let exit_secs = signalled.elapsed().as_secs_f64();
    assert!(
        status.success(),
        "the worker exited with {status} on SIGTERM\n{}",
        worker.dump()
    );
    let ffmpeg_alive = Path::new(&format!("/proc/{pid}")).exists();

    let mut second = h.spawn(&["worker", "--out", s(&out), "--task-queue", queue]);
    let wait = h
        .run(&[
            "submit",
            "--job",
            s(&job_file),
            "--wait",
            "--task-queue",
            queue,
        ])
        .await;
    if !wait.status.success() {
        panic!(
            "the job did not complete\n{}\n{}",
            wait.dump(),
            second.dump()
        );
    }
    let body = wait.json();
    assert_eq!(body["status"], "completed", "body: {body:#}");
    assert_eq!(hook.expect_one_valid().await, body);
    verify_outputs(&h, &body, &out).await;

    let history = workflow_history(&h.address(), "transcode-m7").await;
    let activities = history_activities(&history);
    assert!(
        activities
            .iter()
            .all(|a| a.outcome == "completed" && a.started_attempt == Some(1)),
        "an activity had to be redone: the one running at SIGTERM did not finish within the \
         {grace} s grace (worker exited {exit_secs:.1} s after SIGTERM; its ffmpeg alive \
         afterwards: {ffmpeg_alive})\n{}\n{}",
        describe(&activities),
        worker.dump()
    );

    second.signal(libc::SIGTERM);
    let status = second.wait_for_exit(Duration::from_secs(30)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "the second worker did not exit 0 on SIGTERM ({status:?})\n{}",
        second.dump()
    );
    eprintln!(
        "worker exited {exit_secs:.1} s after SIGTERM\n{}",
        describe(&activities)
    );
}
