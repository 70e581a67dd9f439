//! `transcoder runpod` against a stand-in of RunPod's worker API (see `runpod/standin.rs`),
//! a real Temporal dev server, real ffmpeg and a real webhook receiver: a job runs to its
//! result through two pods, a `kill -9`ed pod's job is delivered again and resumes on the
//! other, SIGTERM checkpoints and the job resumes elsewhere, a result post refused with 503
//! is retried, a job-stop cancels the workflow and posts nothing, pings list the job in
//! flight; and the local modes (`--test-input`,
//! `test_input.json`, `--serve-api`).

use crate::common;
mod standin;

use common::*;
use serde_json::{json, Value};
use standin::StandIn;
use std::path::Path;
use std::time::{Duration, Instant};

const API_KEY: &str = "rpa_TESTKEY0123456789";
const LIMIT: Duration = Duration::from_secs(240);

/// Stages a `seconds` long `w`x`h` clip as the original of `media` (creator `c1`).
async fn stage(out: &Path, media: &str, w: u32, h: u32, seconds: u32) {
    let original = object_path(
        out,
        ARCHIVE_BUCKET,
        &format!("originals/c1/{media}/original.mp4"),
    );
    make_video(&original, w, h, seconds, 25).await;
}

/// A `transcoder runpod` pod talking to the stand-in.
fn spawn_pod(h: &Harness, api: &StandIn, pod: &str, out: &Path, queue: &str) -> Background {
    let mut env = api.env(pod);
    env.push(("TRANSCODER_SHUTDOWN_GRACE", "10".to_string()));
    h.spawn_with_env(&["runpod", "--out", s(out), "--task-queue", queue], &env)
}

/// fixtures/runpod/test_input.json as a user would try it, its file staged in `out` where
/// the payload says and its webhook sent to `hook`.
fn staged_test_input(out: &Path, hook: &WebhookReceiver) -> Value {
    let mut test_input = fixture_json("runpod/test_input.json");
    let original = object_path(out, ARCHIVE_BUCKET, field(&test_input["input"], "inputKey"));
    std::fs::create_dir_all(original.parent().unwrap()).unwrap();
    std::fs::copy(fixture("media/video.mp4"), &original).unwrap();
    test_input["input"]["webhookUrl"] = json!(hook.url());
    test_input["input"]["webhookSecret"] = json!(hook.secret);
    test_input
}

/// Video segments published so far for `media` (the audio rendition left out).
fn video_segments(out: &Path, media: &str) -> usize {
    walk(&object_path(out, MEDIA_BUCKET, &format!("c1/hls/{media}")))
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "ts"))
        .filter(|p| !p.components().any(|c| c.as_os_str() == "audio"))
        .count()
}

async fn stop_pods(pods: Vec<Background>) {
    for mut pod in pods {
        if pod.try_status().is_some() {
            continue;
        }
        pod.signal(libc::SIGTERM);
        let status = pod
            .wait_for_exit(Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("the pod did not exit after SIGTERM\n{}", pod.dump()));
        assert!(status.success(), "pod exited with {status}\n{}", pod.dump());
    }
}

/// The pods' logs, for failure messages.
fn dumps(pods: &[&Background]) -> String {
    pods.iter().map(|p| p.dump()).collect::<Vec<_>>().join("\n")
}

/// A job runs to its result through two pods; the result post is refused with 503 twice
/// and still delivered, once; the pings list the job while it runs and not after; progress
/// updates come before the result, never after; every request follows the protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_runs_to_its_result() {
    let h = Harness::start().await;
    let out = h.path("out");
    let hook = WebhookReceiver::start("whsec-runpod-result");
    stage(&out, "rp1", 320, 240, 8).await;
    let api = StandIn::start(API_KEY);
    api.refuse_results(2);
    let a = spawn_pod(&h, &api, "pod-a", &out, "rp-result");
    let b = spawn_pod(&h, &api, "pod-b", &out, "rp-result");

    let mut input = video_job_payload("rp1", "c1", &hook);
    input["segmentsPerChunk"] = json!(1);
    api.enqueue("job-1-u1", input);

    let delivered = api
        .wait_for(LIMIT, |s| {
            s.results
                .iter()
                .find(|r| r.job == "job-1-u1" && r.status == 200)
                .cloned()
        })
        .await
        .unwrap_or_else(|| panic!("no result accepted\n{}", dumps(&[&a, &b])));
    // Room for a duplicate or a late progress update to show up.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let webhook = hook.expect_one_valid().await;
    assert_eq!(webhook["status"], "completed", "{webhook:#}");
    assert_eq!(
        delivered.body,
        json!({ "output": webhook["output"] }),
        "the RunPod result is not the webhook's output"
    );
    let master = webhook["output"]["hlsMasterPlaylistKey"]
        .as_str()
        .expect("master key");
    assert_object_exists(&out, MEDIA_BUCKET, master);

    let results: Vec<_> = api
        .lock()
        .results
        .iter()
        .filter(|r| r.job == "job-1-u1")
        .map(|r| r.status)
        .collect();
    assert_eq!(
        results,
        vec![503, 503, 200],
        "two refused posts, then one delivered, nothing after"
    );

    let holder = api.holder("job-1-u1").expect("delivered");
    {
        let state = api.lock();
        assert!(
            state
                .pings
                .iter()
                .any(|p| p.pod == holder && p.jobs == ["job-1-u1"]),
            "no ping of {holder} listed the job in flight: {:?}",
            state
                .pings
                .iter()
                .map(|p| (&p.pod, &p.jobs))
                .collect::<Vec<_>>()
        );
        let after: Vec<_> = state
            .pings
            .iter()
            .filter(|p| p.at.elapsed() < Duration::from_millis(1500) && p.pod == holder)
            .collect();
        assert!(
            !after.is_empty() && after.iter().all(|p| p.jobs.is_empty()),
            "pings after the result still list the job (or stopped): {after:?}"
        );
        let progress: Vec<_> = state
            .progress
            .iter()
            .filter(|p| p.job == "job-1-u1")
            .collect();
        assert!(!progress.is_empty(), "no progress update was posted");
        let percents: Vec<u64> = progress
            .iter()
            .filter_map(|p| p.body["output"]["percent"].as_u64())
            .collect();
        assert!(
            percents.windows(2).all(|w| w[0] <= w[1]) && percents.iter().all(|&p| p <= 100),
            "progress went backwards or past 100: {percents:?}"
        );
        assert!(
            progress.iter().all(|p| p.seq < delivered.seq
                && p.body["output"]["workflowId"] == "transcode-rp1"
                && p.body["output"]["percent"].is_u64()),
            "progress updates: {progress:#?}"
        );
        assert!(
            state
                .takes
                .iter()
                .any(|(pod, in_progress)| pod == &holder && in_progress == "0"),
            "job-take never said job_in_progress=0"
        );
    }
    // A job whose input is not a media-api payload gets an error result, a string.
    api.enqueue("job-2-u1", json!("not a payload"));
    let bad = api
        .wait_for(Duration::from_secs(30), |s| {
            s.results.iter().find(|r| r.job == "job-2-u1").cloned()
        })
        .await
        .unwrap_or_else(|| panic!("no result for a bad input\n{}", dumps(&[&a, &b])));
    assert!(
        bad.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("not a media-api payload")),
        "{:#}",
        bad.body
    );
    api.assert_no_violations();
    for pod in [&a, &b] {
        assert!(
            // Logs are RunPod's JSON lines on stdout here (RUNPOD_ENDPOINT_ID is set).
            !pod.dump().contains(API_KEY) && !pod.dump().contains(&hook.secret),
            "a secret is in the log\n{}",
            pod.dump()
        );
    }
    stop_pods(vec![a, b]).await;
}

/// `kill -9` the pod running a job in the middle of the ladder; the platform delivers the
/// job again, the other pod attaches to the same workflow and finishes it: finished chunks
/// are not encoded again, and exactly one result is posted, by the second pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_pod_job_resumes_on_the_other() {
    let h = Harness::start().await;
    let out = h.path("out");
    let hook = WebhookReceiver::start("whsec-runpod-kill");
    // 48 s at one 6 s segment per chunk: 8 chunks, 4 at a time.
    stage(&out, "rpk", 320, 180, 48).await;
    let api = StandIn::start(API_KEY);
    let pods = [
        spawn_pod(&h, &api, "pod-a", &out, "rp-kill"),
        spawn_pod(&h, &api, "pod-b", &out, "rp-kill"),
    ];
    let mut input = video_job_payload("rpk", "c1", &hook);
    input["segmentsPerChunk"] = json!(1);
    api.enqueue("job-k-u1", input.clone());

    let first = api
        .wait_for(LIMIT, |s| {
            s.delivered
                .iter()
                .find(|(j, _)| j == "job-k-u1")
                .map(|(_, p)| p.clone())
        })
        .await
        .unwrap_or_else(|| {
            let context = dumps(&[&pods[0], &pods[1]]);
            h.assert_server_alive(&context);
            panic!("the job was never taken\n{context}")
        });
    let (mut victim, survivor) = match first.as_str() {
        "pod-a" => {
            let [a, b] = pods;
            (a, b)
        }
        _ => {
            let [a, b] = pods;
            (b, a)
        }
    };
    let deadline = Instant::now() + LIMIT;
    while video_segments(&out, "rpk") < 3 {
        assert!(
            Instant::now() < deadline,
            "no chunk finished in time\n{}",
            victim.dump()
        );
        assert!(victim.try_status().is_none(), "{}", victim.dump());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    victim.signal(libc::SIGKILL);
    victim
        .wait_for_exit(Duration::from_secs(10))
        .await
        .expect("the killed pod is gone");
    // The platform notices the worker is gone and delivers the job again.
    api.requeue("job-k-u1", input);

    let delivered = api
        .wait_for(LIMIT, |s| {
            s.results
                .iter()
                .find(|r| r.job == "job-k-u1" && r.status == 200)
                .cloned()
        })
        .await
        .unwrap_or_else(|| panic!("no result after the kill\n{}", survivor.dump()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let second = if first == "pod-a" { "pod-b" } else { "pod-a" };
    assert_eq!(api.holder("job-k-u1").as_deref(), Some(second));
    assert_eq!(delivered.pod, second, "the result came from the killed pod");
    assert_eq!(
        api.accepted_results("job-k-u1").len(),
        1,
        "exactly one final result"
    );
    let webhook = hook.expect_one_valid().await;
    assert_eq!(webhook["status"], "completed", "{webhook:#}");
    assert_eq!(delivered.body, json!({ "output": webhook["output"] }));
    assert_object_exists(
        &out,
        MEDIA_BUCKET,
        webhook["output"]["hlsMasterPlaylistKey"]
            .as_str()
            .expect("master"),
    );

    // One workflow, resumed: every chunk scheduled once, only those in flight redone, the
    // mezzanine made once.
    let runs = list_workflows(&h.address(), "WorkflowId = 'transcode-rpk'").await;
    assert_eq!(runs.len(), 1, "the job ran as one workflow: {runs:?}");
    let history = workflow_history(&h.address(), "transcode-rpk").await;
    let activities = history_activities(&history);
    assert_mezzanine_made_once(&activities, 8, 4);
    api.assert_no_violations();
    stop_pods(vec![survivor]).await;
}

/// SIGTERM in the middle of a job: the pod lets its running activities wind down within
/// the grace period, posts nothing and exits 0; the job, delivered again, finishes on
/// another pod from where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_checkpoints_and_the_job_resumes() {
    let h = Harness::start().await;
    let out = h.path("out");
    let hook = WebhookReceiver::start("whsec-runpod-term");
    stage(&out, "rpt2", 320, 180, 60).await;
    let api = StandIn::start(API_KEY);
    let mut env = api.env("pod-t");
    // The job must still have seconds of work left when SIGTERM comes, or it finishes
    // within the grace period and its result is (rightly) posted: ten chunks at a slow
    // preset on this pod, and a 1 s grace.
    env.push(("TRANSCODER_SHUTDOWN_GRACE", "1".to_string()));
    env.push(("TRANSCODER_X264_PRESET", "slower".to_string()));
    let mut first = h.spawn_with_env(
        &["runpod", "--out", s(&out), "--task-queue", "rp-term"],
        &env,
    );
    let mut input = video_job_payload("rpt2", "c1", &hook);
    input["segmentsPerChunk"] = json!(1);
    api.enqueue("job-t-u1", input.clone());
    let deadline = Instant::now() + LIMIT;
    while video_segments(&out, "rpt2") < 1 {
        assert!(
            Instant::now() < deadline,
            "no chunk in time\n{}",
            first.dump()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.signal(libc::SIGTERM);
    let status = first
        .wait_for_exit(Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("the pod did not exit after SIGTERM\n{}", first.dump()));
    assert!(status.success(), "exit {status}\n{}", first.dump());
    assert!(
        api.lock().results.iter().all(|r| r.job != "job-t-u1"),
        "a result was posted for an unfinished job"
    );

    api.requeue("job-t-u1", input);
    let second = spawn_pod(&h, &api, "pod-u", &out, "rp-term");
    let delivered = api
        .wait_for(LIMIT, |s| {
            s.results
                .iter()
                .find(|r| r.job == "job-t-u1" && r.status == 200)
                .cloned()
        })
        .await
        .unwrap_or_else(|| panic!("no result after the restart\n{}", second.dump()));
    assert_eq!(delivered.pod, "pod-u");
    let webhook = hook.expect_one_valid().await;
    assert_eq!(delivered.body, json!({ "output": webhook["output"] }));
    let history = workflow_history(&h.address(), "transcode-rpt2").await;
    let activities = history_activities(&history);
    let chunks = activities
        .iter()
        .filter(|a| a.activity_type == "ladder_chunk")
        .count();
    assert_mezzanine_made_once(&activities, chunks, 4);
    api.assert_no_violations();
    stop_pods(vec![second]).await;
}

/// A job-stop cancels the job's workflow and nothing is posted for it; the encode that was
/// running is killed instead of finishing for nobody; the pod stays up and its pings stop
/// listing the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_stop_cancels_and_posts_nothing() {
    let h = Harness::start().await;
    let out = h.path("out");
    let tmp = h.tmp.path().to_str().expect("utf-8 path").to_string();
    let hook = WebhookReceiver::start("whsec-runpod-stop");
    // Long enough that the mezzanine encode is still running when the stop comes.
    stage(&out, "rps", 320, 180, 120).await;
    let api = StandIn::start(API_KEY);
    let mut pod = spawn_pod(&h, &api, "pod-s", &out, "rp-stop");
    let mut input = video_job_payload("rps", "c1", &hook);
    input["segmentsPerChunk"] = json!(1);
    api.enqueue("job-s-u1", input);

    // Running: its pings list it, and the mezzanine is being encoded.
    api.wait_for(LIMIT, |s| {
        s.pings.iter().any(|p| p.jobs == ["job-s-u1"]).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("the job never showed in a ping\n{}", pod.dump()));
    poll_until(LIMIT, || {
        find_ffmpeg(&[&tmp, "mezzanine"]).into_iter().next()
    })
    .await
    .unwrap_or_else(|| panic!("the mezzanine encode never started\n{}", pod.dump()));
    api.stop("job-s-u1");

    let address = h.address();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let runs = list_workflows(&address, "WorkflowId = 'transcode-rps'").await;
        let status = runs.first().map(execution_summary).map(|(_, _, s)| s);
        if status.as_deref() == Some("CANCELED") || status.as_deref() == Some("CANCELLED") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the workflow was not cancelled (status {status:?})\n{}",
            pod.dump()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let stopped_at = Instant::now();
    // The cancellation reaches the running activities with their next heartbeat (every
    // 5 s); dropping them kills their ffmpeg.
    let leftover = poll_until(Duration::from_secs(15), || {
        find_ffmpeg(&[&tmp]).is_empty().then_some(())
    })
    .await;
    assert!(
        leftover.is_some(),
        "ffmpeg still runs {:.1} s after the job was cancelled: {:?}\n{}",
        stopped_at.elapsed().as_secs_f64(),
        find_ffmpeg(&[&tmp]),
        pod.dump()
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mezzanine = object_path(&out, ARCHIVE_BUCKET, "mezzanine/c1/rps/mezzanine.mp4");
    assert!(
        !mezzanine.exists(),
        "the cancelled job's mezzanine was finished and stored anyway\n{}",
        pod.dump()
    );
    {
        let state = api.lock();
        assert!(
            !state.results.iter().any(|r| r.job == "job-s-u1"),
            "a result was posted for a stopped job: {:?}",
            state.results
        );
        let late: Vec<_> = state
            .pings
            .iter()
            .filter(|p| p.at.elapsed() < Duration::from_millis(1500))
            .collect();
        assert!(
            !late.is_empty() && late.iter().all(|p| p.jobs.is_empty()),
            "pings {:.1} s after the stop: {late:?}",
            stopped_at.elapsed().as_secs_f64()
        );
    }
    assert!(hook.received().is_empty(), "a cancelled job sent a webhook");
    assert!(pod.try_status().is_none(), "the pod exited\n{}", pod.dump());
    api.assert_no_violations();
    stop_pods(vec![pod]).await;
}

/// `--test-input` runs one job and prints the result body; without TEMPORAL_ADDRESS the
/// embedded server keeps its state on the volume, so `test_input.json` run afterwards (a
/// new process) finds the finished job and returns its stored result without encoding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_input_and_embedded_state_on_the_volume() {
    let h = Harness::without_server();
    let out = h.path("out");
    let volume = h.path("volume");
    std::fs::create_dir_all(&volume).unwrap();
    let hook = WebhookReceiver::start("whsec-runpod-local");
    let test_input = staged_test_input(&out, &hook).to_string();

    // The spellings and flags of RunPod's SDK, as a start command copied from a Python
    // worker would pass them.
    let first = h
        .run(&[
            "runpod",
            "--test_input",
            &test_input,
            "--rp_log_level",
            "debug",
            "--rp_debugger",
            "--rp_api_concurrency",
            "1",
            "--volume",
            s(&volume),
            "--out",
            s(&out),
        ])
        .await;
    first.assert_success();
    assert!(
        first.stderr.contains("DEBUG"),
        "--rp_log_level debug shows debug lines\n{}",
        first.dump()
    );
    let result = first.json();
    let webhook = hook.expect_one_valid().await;
    assert_eq!(
        result,
        json!({ "output": webhook["output"] }),
        "{}",
        first.dump()
    );
    assert!(
        volume.join("transcoder/temporal.db").is_file(),
        "the embedded state is not on the volume\n{}",
        first.dump()
    );
    assert!(
        first.stderr.contains("survives"),
        "the log does not say what the embedded fallback survives\n{}",
        first.dump()
    );

    std::fs::write(h.path("test_input.json"), &test_input).unwrap();
    let again = h
        .run(&["runpod", "--volume", s(&volume), "--out", s(&out)])
        .await;
    again.assert_success();
    assert_eq!(again.json(), result, "{}", again.dump());
    assert!(
        !again.stderr.contains("mezzanine stored"),
        "the finished job was encoded again\n{}",
        again.dump()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        hook.received().len(),
        1,
        "the stored result sent a webhook again"
    );

    let missing = h
        .run(&[
            "runpod",
            "--test-input",
            "{\"id\": \"x\"}",
            "--volume",
            s(&volume),
        ])
        .await;
    missing.assert_failure();
    let bad_level = h
        .run(&["runpod", "--rp_log_level", "LOUD", "--volume", s(&volume)])
        .await;
    bad_level.assert_failure();
    assert!(
        bad_level
            .stderr
            .contains("expected NOTSET, TRACE, DEBUG, INFO, WARN or ERROR"),
        "{}",
        bad_level.dump()
    );
}

/// `--serve-api`: `/runsync` runs a job and answers its result (or, past its `?wait=`, its
/// status), `/run` queues one that `GET` and `POST /status/{id}` report with its progress
/// while it runs, `/stream` and `/cancel` answer as the real API does, `/health` counts them,
/// bad input is a 422 and an unknown id a FAILED "Job ID not found".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_api_runs_jobs() {
    let h = Harness::start().await;
    let out = h.path("out");
    let hook = WebhookReceiver::start("whsec-runpod-api");
    stage(&out, "rpa1", 320, 180, 3).await;
    stage(&out, "rpa2", 320, 180, 3).await;
    let mut server = h.spawn(&[
        "runpod",
        "--serve-api",
        "--api-host",
        "127.0.0.1",
        "--api-port",
        "0",
        "--out",
        s(&out),
        "--task-queue",
        "rp-api",
    ]);
    let base = server.local_api_base().await;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{base}{path}")).send();
    let post = |path: &str, body: Value| http.post(format!("{base}{path}")).json(&body).send();

    let health: Value = get("/health").await.unwrap().json().await.unwrap();
    assert_eq!(health["jobs"]["completed"], 0, "{health}");
    let bad = post("/run", json!({"input": "not an object"}))
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 422);
    for route in ["/status/test-nope", "/stream/test-nope"] {
        let unknown: Value = get(route).await.unwrap().json().await.unwrap();
        assert_eq!(
            unknown,
            json!({"id": "test-nope", "status": "FAILED", "error": "Job ID not found"})
        );
    }

    let queued: Value = post(
        "/run",
        json!({"input": video_job_payload("rpa2", "c1", &hook)}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let queued_id = queued["id"].as_str().expect("id").to_string();
    assert!(queued_id.starts_with("test-"), "{queued}");

    // A third job, cancelled while it waits behind the others: it never starts.
    stage(&out, "rpa3", 320, 180, 3).await;
    let doomed: Value = post(
        "/run",
        json!({"input": video_job_payload("rpa3", "c1", &hook)}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let doomed_id = doomed["id"].as_str().expect("id").to_string();
    let cancelled: Value = post(&format!("/cancel/{doomed_id}"), json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cancelled["status"], "CANCELLED", "{cancelled:#}");

    // `/runsync` with a short wait answers the job's status in time; the job goes on.
    let started = std::time::Instant::now();
    let sync = post(
        "/runsync?wait=1000",
        json!({"input": video_job_payload("rpa1", "c1", &hook)}),
    )
    .await
    .unwrap_or_else(|e| panic!("/runsync: {e}\n{}", server.dump()));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "/runsync waited {:?}",
        started.elapsed()
    );
    assert_eq!(sync.status().as_u16(), 200);
    let early: Value = sync.json().await.unwrap();
    assert!(
        early["status"] == "IN_QUEUE" || early["status"] == "IN_PROGRESS",
        "{early:#}"
    );
    let sync_id = early["id"].as_str().expect("id").to_string();
    // Polled like the real API; an update of the job's progress shows as its output.
    let mut progress_seen = None;
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let sync = loop {
        let body: Value = get(&format!("/status/{sync_id}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["status"] == "IN_PROGRESS" && body["output"]["step"].is_string() {
            progress_seen = Some(body.clone());
        }
        if body["status"] != "IN_QUEUE" && body["status"] != "IN_PROGRESS" {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the job did not end\n{}",
            server.dump()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(sync["status"], "COMPLETED", "{sync:#}\n{}", server.dump());
    assert!(
        progress_seen.is_some(),
        "no IN_PROGRESS status carried the job's progress"
    );
    assert_eq!(sync["output"]["mediaId"], "rpa1", "{sync:#}");
    assert_object_exists(
        &out,
        MEDIA_BUCKET,
        sync["output"]["hlsMasterPlaylistKey"]
            .as_str()
            .expect("master"),
    );

    // Jobs run one at a time, in order: the queued one finished before the synchronous one.
    let status: Value = get(&format!("/status/{queued_id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "COMPLETED", "{status:#}");
    assert_eq!(status["output"]["mediaId"], "rpa2", "{status:#}");
    let again: Value = post(&format!("/status/{queued_id}"), json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again, status);
    // The stream of a finished job is its output; the cancelled job stayed cancelled.
    let stream: Value = post(&format!("/stream/{queued_id}"), json!({}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stream["status"], "COMPLETED", "{stream:#}");
    assert_eq!(
        stream["stream"][0]["output"], status["output"],
        "{stream:#}"
    );
    let doomed: Value = get(&format!("/status/{doomed_id}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doomed["status"], "CANCELLED", "{doomed:#}");
    let health: Value = get("/health").await.unwrap().json().await.unwrap();
    assert_eq!(health["jobs"]["completed"], 2, "{health}");
    assert_eq!(hook.wait_for(2, Duration::from_secs(10)).await.len(), 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(hook.received().len(), 2, "the cancelled job sent a webhook");
    server.signal(libc::SIGTERM);
    let exit = server
        .wait_for_exit(Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("the local API did not stop\n{}", server.dump()));
    assert!(exit.success(), "{}", server.dump());
}

/// With `RUNPOD_ENDPOINT_ID` set (as on RunPod), logs are the SDK's JSON lines on stdout,
/// `{"requestId", "message", "level"}`, and the job's own lines name the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_on_runpod_are_json_lines_naming_the_job() {
    let h = Harness::without_server();
    let out = h.path("out");
    let volume = h.path("volume");
    std::fs::create_dir_all(&volume).unwrap();
    let hook = WebhookReceiver::start("whsec-runpod-logs");
    let mut test_input = staged_test_input(&out, &hook);
    test_input["id"] = json!("job-logs-1");
    let run = h
        .run_with_env(
            &[
                "runpod",
                "--test_input",
                &test_input.to_string(),
                "--volume",
                s(&volume),
                "--out",
                s(&out),
            ],
            [("RUNPOD_ENDPOINT_ID", "ep-local")],
        )
        .await;
    run.assert_success();
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect();
    let logs: Vec<&Value> = lines.iter().filter(|l| l.get("level").is_some()).collect();
    assert!(logs.len() > 3, "{}", run.dump());
    for l in &logs {
        assert!(
            l["message"].is_string() && l.get("requestId").is_some(),
            "{l}"
        );
    }
    assert!(
        logs.iter().any(|l| l["requestId"] == "job-logs-1"),
        "no line names the job\n{}",
        run.dump()
    );
    assert!(
        lines
            .iter()
            .any(|l| l["output"]["status"].is_null() && l["output"]["mediaId"].is_string()),
        "the result is on stdout too\n{}",
        run.dump()
    );
    assert!(
        !run.stdout.contains(&hook.secret),
        "a secret reached the logs"
    );
}

/// A pod that fails a fitness check (here: less free disk than it demands) sends one
/// unhealthy ping naming the check and the reason, takes no job, and exits 1, as the SDK's
/// workers do, so RunPod replaces it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfit_pod_says_why_and_takes_no_job() {
    let h = Harness::start().await;
    let out = h.path("out");
    let api = StandIn::start(API_KEY);
    let mut env = api.env("pod-unfit");
    env.push(("RUNPOD_MIN_DISK_PERCENT", "101".to_string()));
    let mut pod = h.spawn_with_env(
        &["runpod", "--out", s(&out), "--task-queue", "rp-unfit"],
        &env,
    );
    let status = pod
        .wait_for_exit(Duration::from_secs(90))
        .await
        .unwrap_or_else(|| panic!("the unfit pod kept running\n{}", pod.dump()));
    assert_eq!(status.code(), Some(1), "{}", pod.dump());
    let (pings, takes) = api
        .wait_for(Duration::from_secs(5), |s| {
            Some((
                s.pings
                    .iter()
                    .map(|p| (p.status.clone(), p.check.clone(), p.reason.clone()))
                    .collect::<Vec<_>>(),
                s.takes.len(),
            ))
        })
        .await
        .unwrap();
    assert_eq!(takes, 0, "an unfit pod took jobs");
    assert_eq!(pings.len(), 1, "{pings:?}\n{}", pod.dump());
    let (status, check, reason) = &pings[0];
    assert_eq!(status.as_deref(), Some("unhealthy"));
    assert_eq!(check.as_deref(), Some("disk"));
    let reason = reason.clone().unwrap_or_default();
    assert!(
        reason.contains("RUNPOD_MIN_DISK_PERCENT=101") && reason.chars().count() <= 256,
        "{reason}"
    );
    api.assert_no_violations();
}

/// A pod whose ffmpeg breaks while it serves: its job fails, the fitness checks run again
/// and fail, and the result asks RunPod to replace the pod (`stopPod`, the SDK's
/// `refresh_worker`); the pod takes no further job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_whose_ffmpeg_breaks_asks_to_be_replaced() {
    use std::os::unix::fs::PermissionsExt as _;
    let h = Harness::start().await;
    let out = h.path("out");
    let hook = WebhookReceiver::start("whsec-runpod-refresh");
    stage(&out, "rpr", 320, 180, 3).await;
    // ffmpeg through a wrapper the test can break.
    let wrapper = h.path("bin/ffmpeg");
    std::fs::create_dir_all(wrapper.parent().unwrap()).unwrap();
    std::fs::write(&wrapper, "#!/bin/sh\nexec ffmpeg \"$@\"\n").unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let api = StandIn::start(API_KEY);
    let mut env = api.env("pod-r");
    env.push(("FFMPEG", s(&wrapper).to_string()));
    env.push(("TRANSCODER_SHUTDOWN_GRACE", "5".to_string()));
    let mut pod = h.spawn_with_env(
        &["runpod", "--out", s(&out), "--task-queue", "rp-refresh"],
        &env,
    );
    // Serving (it pings only once fit), then its ffmpeg breaks.
    api.wait_for(LIMIT, |s| (!s.pings.is_empty()).then_some(()))
        .await
        .unwrap_or_else(|| panic!("the pod never pinged\n{}", pod.dump()));
    std::fs::write(&wrapper, "#!/bin/sh\nexit 127\n").unwrap();
    api.enqueue("job-r-1", video_job_payload("rpr", "c1", &hook));
    let result = api
        .wait_for(LIMIT, |s| {
            s.results
                .iter()
                .find(|r| r.job == "job-r-1")
                .map(|r| r.body.clone())
        })
        .await
        .unwrap_or_else(|| panic!("no result\n{}", pod.dump()));
    assert!(result["error"].is_string(), "{result:#}");
    assert_eq!(result["stopPod"], true, "{result:#}\n{}", pod.dump());
    // It stops taking jobs and exits.
    api.enqueue("job-r-2", video_job_payload("rpr", "c1", &hook));
    let status = pod
        .wait_for_exit(Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("the unfit pod kept running\n{}", pod.dump()));
    assert!(status.success(), "{}", pod.dump());
    let delivered: Vec<String> = api
        .wait_for(Duration::from_secs(1), |s| {
            Some(s.delivered.iter().map(|(j, _)| j.clone()).collect())
        })
        .await
        .unwrap();
    assert!(
        !delivered.contains(&"job-r-2".to_string()),
        "the unfit pod took another job: {delivered:?}"
    );
    api.assert_no_violations();
}
