//! Deploying new workflow code while jobs run: recorded histories of real jobs (a video, an
//! audio job, a refused one, one resumed after a killed worker; media tasks: a long ENCODING
//! in chunks, a trim batch of an http master), as the SDK encodes them, replayed against the
//! current `TranscodeWorkflow` and `MediaTaskWorkflow`. A change that would fail a running
//! job with a non-determinism error fails here first. The rule for changing workflow code
//! is in ARCHITECTURE.md ("Changing workflow code"); `record_histories` and
//! `record_task_histories` (ignored; run them on purpose) record them again.

use crate::common;

use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use temporalio_client::WorkflowHistory;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};
use transcoder_workflows::{MediaTaskWorkflow, OriginalCleanupWorkflow, TranscodeWorkflow};

/// The recorded histories, one JSON file per job.
fn histories_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/histories")
}

/// The kinds of job recorded; `fixtures/histories` holds each as recorded by today's code
/// (`KIND.json`) and by earlier code still to be replayed (`KIND-SINCE-WHAT.json`).
const KINDS: [&str; 6] = [
    "video",
    "audio",
    "refused",
    "resumed",
    "task-encoding-chunked",
    "task-trim-batch",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_jobs_replay_on_the_current_workflow() {
    let mut options = WorkflowReplayerOptions::new().build();
    options
        .register_workflow::<TranscodeWorkflow>()
        .expect("register TranscodeWorkflow");
    options
        .register_workflow::<OriginalCleanupWorkflow>()
        .expect("register OriginalCleanupWorkflow");
    options
        .register_workflow::<MediaTaskWorkflow>()
        .expect("register MediaTaskWorkflow");
    let replayer = WorkflowReplayer::new(options).expect("replayer");
    let mut files: Vec<PathBuf> = std::fs::read_dir(histories_dir())
        .expect("fixtures/histories")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for kind in KINDS {
        assert!(
            files
                .iter()
                .any(|f| f.file_stem().is_some_and(|s| s == kind)),
            "no {kind}.json recorded by the current code (record with record_histories)"
        );
    }
    let mut histories = Vec::new();
    for path in &files {
        let bytes = std::fs::read(path).expect("history file");
        let history = WorkflowHistory::from_json(&bytes)
            .unwrap_or_else(|e| panic!("{} is not a history: {e:?}", path.display()));
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        histories.push((name, history));
    }
    let (kinds, histories): (Vec<_>, Vec<_>) = histories.into_iter().unzip();
    let results = replayer
        .replay_workflows(histories)
        .await
        .expect("the replay worker runs");
    let failures: Vec<String> = kinds
        .iter()
        .zip(&results)
        .filter_map(|(kind, r)| r.replay_failure.as_ref().map(|f| format!("{kind}: {f}")))
        .collect();
    assert!(
        failures.is_empty(),
        "recorded jobs no longer replay on this workflow code (see ARCHITECTURE.md, \
         \"Changing workflow code\"): {failures:#?}"
    );
    // Each history is a whole job: they would replay trivially if they were empty.
    for (kind, r) in kinds.iter().zip(&results) {
        assert!(
            r.history.events().len() > 10,
            "{kind}: only {} events",
            r.history.events().len()
        );
    }
}

/// A workflow's history on the harness's server, as the SDK encodes it for replay.
async fn history_json(h: &Harness, workflow_id: &str) -> Vec<u8> {
    let client = transcoder::temporal::connect_to(&h.address())
        .await
        .expect("a client of the harness's server");
    client
        .get_workflow_handle::<TranscodeWorkflow>(workflow_id)
        .fetch_history(temporalio_client::WorkflowFetchHistoryOptions::default())
        .to_json()
        .await
        .expect("the history")
}

/// Records the four histories again from real jobs: run it when the workflow changed on
/// purpose, after renaming the current files `KIND-SINCE-WHAT.json` (they keep being
/// replayed while jobs recorded by the old code may still be open).
///     cargo test --test integration replay::record_histories -- --ignored
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "records fixtures; run on purpose"]
async fn record_histories() {
    const QUEUE: &str = "q-record";
    let h = Harness::start().await;
    let out = h.path("out");
    let hook = WebhookReceiver::start("whsec-record-histories");
    let mut worker = h.spawn(&["worker", "--out", s(&out), "--task-queue", QUEUE]);
    let submit = |file: PathBuf| {
        let h = &h;
        async move {
            h.run(&["submit", "--job", s(&file), "--wait", "--task-queue", QUEUE])
                .await
        }
    };
    // A video job in two chunks (the pieces path).
    make_video(
        &object_path(&out, ARCHIVE_BUCKET, "originals/c1/rec-video/original.mp4"),
        320,
        240,
        14,
        25,
    )
    .await;
    let mut video = video_job_payload("rec-video", "c1", &hook);
    video["segmentsPerChunk"] = json!(1);
    submit(write_job(&h, "video.json", &video))
        .await
        .assert_success();
    // An audio job.
    make_audio_mp3(
        &object_path(&out, ARCHIVE_BUCKET, "originals/c1/rec-audio/original.mp3"),
        8,
    )
    .await;
    let mut audio = video_job_payload("rec-audio", "c1", &hook);
    audio["mediaType"] = json!("audio");
    audio["inputKey"] = json!("originals/c1/rec-audio/original.mp3");
    submit(write_job(&h, "audio.json", &audio))
        .await
        .assert_success();
    // A refused payload.
    let mut refused = video_job_payload("rec-refused", "c1", &hook);
    refused["inputKey"] = json!("../../etc/passwd");
    let refused_run = submit(write_job(&h, "refused.json", &refused)).await;
    assert_eq!(
        refused_run.json()["status"],
        "failed",
        "{}",
        refused_run.dump()
    );
    // A job whose worker is killed in the ladder, finished by another.
    make_video(
        &object_path(
            &out,
            ARCHIVE_BUCKET,
            "originals/c1/rec-resumed/original.mp4",
        ),
        640,
        360,
        24,
        25,
    )
    .await;
    let mut resumed = video_job_payload("rec-resumed", "c1", &hook);
    resumed["segmentsPerChunk"] = json!(1);
    let resumed_file = write_job(&h, "resumed.json", &resumed);
    worker.signal(libc::SIGTERM);
    let _ = worker.wait_for_exit(Duration::from_secs(60)).await;
    let mut doomed = h.spawn_with_env(
        &["worker", "--out", s(&out), "--task-queue", QUEUE],
        &[("TRANSCODER_ACTIVITY_SLOTS", "4".to_string())],
    );
    h.run(&["submit", "--job", s(&resumed_file), "--task-queue", QUEUE])
        .await
        .assert_success();
    let segments = object_path(&out, MEDIA_BUCKET, "c1/hls/rec-resumed/360p");
    let deadline = Instant::now() + Duration::from_secs(240);
    while walk(&segments).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no segment in time\n{}",
            doomed.dump()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    doomed.signal(libc::SIGKILL);
    let _ = doomed.wait_for_exit(Duration::from_secs(10)).await;
    let mut rescuer = h.spawn(&["worker", "--out", s(&out), "--task-queue", QUEUE]);
    submit(resumed_file).await.assert_success();

    std::fs::create_dir_all(histories_dir()).expect("histories folder");
    for (kind, media) in [
        ("video", "rec-video"),
        ("audio", "rec-audio"),
        ("refused", "rec-refused"),
        ("resumed", "rec-resumed"),
    ] {
        let history = history_json(&h, &format!("transcode-{media}")).await;
        let path = histories_dir().join(format!("{kind}.json"));
        std::fs::write(&path, history).expect("write");
        eprintln!("recorded {}", path.display());
    }
    rescuer.signal(libc::SIGTERM);
    let _ = rescuer.wait_for_exit(Duration::from_secs(60)).await;
}

/// Records the media tasks' histories again (see `record_histories`):
///     cargo test --test integration replay::record_task_histories -- --ignored
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "records fixtures; run on purpose"]
async fn record_task_histories() {
    const QUEUE: &str = "q-record-tasks";
    let h = Harness::start().await;
    let out = h.path("out");
    std::fs::create_dir_all(out.join("jobs")).expect("jobs folder");
    // A master on a loopback HTTP server (the batch copies it once).
    let served = h.path("served");
    std::fs::create_dir_all(&served).expect("served folder");
    ffmpeg_make(&[
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=seed=3:sample_rate=48000:duration=6",
        s(&served.join("master.wav")),
    ])
    .await;
    let server = tiny_http::Server::http("127.0.0.1:0").expect("http server");
    let port = server.server_addr().to_ip().expect("ip").port();
    let master = std::fs::read(served.join("master.wav")).expect("master");
    std::thread::spawn(move || {
        while let Ok(request) = server.recv() {
            let _ = request.respond(tiny_http::Response::from_data(master.clone()));
        }
    });
    let mut worker = h.spawn_with_env(
        &["worker", "--out", s(&out), "--task-queue", QUEUE],
        &[
            ("INPUT_ALLOWED_HOSTS", format!("127.0.0.1:{port}")),
            ("TRANSCODER_TASK_CHUNKED_FROM", "10".to_string()),
        ],
    );
    make_video(&out.join("jobs/film.mp4"), 320, 180, 130, 25).await;
    ffmpeg_make(&[
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=seed=4:sample_rate=48000:duration=120",
        s(&out.join("jobs/voice.wav")),
    ])
    .await;
    std::fs::write(
        out.join("jobs/subs.ass"),
        "[Script Info]\nScriptType: v4.00+\n\n[Events]\nFormat: Layer, Start, End, Style, Text\n\
         Dialogue: 0,0:00:58.00,0:01:03.00,Default,Across the cut\n",
    )
    .expect("subtitles");
    let encoding = json!({"task": "ENCODING", "parameters": {
        "id": "rec-encoding", "language": "en", "subtitles": true,
        "input_video_uri": "s3://jobs/film.mp4", "input_audio_uri": "s3://jobs/voice.wav",
        "subtitles_uri": "s3://jobs/subs.ass",
        "output_video_uri": "s3://jobs/film-subs.mp4"}});
    let batch = json!({"task": "AUDIO_TRIM", "parameters": {
        "source_uri": format!("http://127.0.0.1:{port}/master.wav"),
        "segments": [
            {"start_sec": 0, "duration_sec": 2, "output_video_uri": "s3://jobs/seg0.wav"},
            {"start_sec": 2, "duration_sec": 2, "output_video_uri": "s3://jobs/seg1.wav"}]}});
    std::fs::create_dir_all(histories_dir()).expect("histories folder");
    for (kind, payload) in [
        ("task-encoding-chunked", encoding),
        ("task-trim-batch", batch),
    ] {
        let file = write_job(&h, &format!("{kind}.json"), &payload);
        let started = h
            .run(&["submit", "--job", s(&file), "--task-queue", QUEUE])
            .await;
        started.assert_success();
        let id = started.stdout.trim().to_string();
        h.run(&["submit", "--job", s(&file), "--wait", "--task-queue", QUEUE])
            .await
            .assert_success();
        let path = histories_dir().join(format!("{kind}.json"));
        std::fs::write(&path, history_json(&h, &id).await).expect("write");
        eprintln!("recorded {}", path.display());
    }
    worker.signal(libc::SIGTERM);
    let _ = worker.wait_for_exit(Duration::from_secs(60)).await;
}
