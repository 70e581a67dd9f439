//! Observability, checked the way an operator's tools see it: a real OTLP/HTTP receiver
//! decodes the spans a worker and a client export (one trace per job, across processes);
//! a real Prometheus server scrapes a worker during a job and answers PromQL about jobs and
//! steps; every query of the Grafana dashboard names a metric the worker exposes and is
//! valid PromQL; `transcoder status` reports a running job and then its receipt; JSON logs
//! parse and carry no secret; `transcoder run` on a terminal draws a bar per step.

use crate::common;

use common::dashboard::{dashboard_exprs, dashboard_metric_names, exposed_metric_names};
use common::otlp::{children_of, trace_ids, OtlpReceiver, SpanRecord};
use common::prometheus::PrometheusServer;
use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// The OTLP variables that point a process at `receiver`, exporting every 200 ms.
fn otlp_env(receiver: &OtlpReceiver, service: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_string()),
        ("OTEL_SERVICE_NAME", service.to_string()),
        ("OTEL_BSP_SCHEDULE_DELAY", "200".to_string()),
    ]
}

fn span<'a>(spans: &'a [&'a SpanRecord], name: &str) -> &'a SpanRecord {
    spans
        .iter()
        .copied()
        .find(|s| s.name == name)
        .unwrap_or_else(|| {
            let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
            panic!("no span {name:?}; spans: {names:?}")
        })
}

fn parent_of<'a>(spans: &'a [&'a SpanRecord], child: &SpanRecord) -> Option<&'a SpanRecord> {
    let parent = child.parent_span_id.as_deref()?;
    spans.iter().copied().find(|s| s.span_id == parent)
}

/// GET http://127.0.0.1:PORT/metrics as text.
async fn scrape(port: u16) -> String {
    let url = format!("http://127.0.0.1:{port}/metrics");
    reqwest::get(&url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .expect("metrics text")
}

/// A worker (its own process) and `submit --wait` (another) export spans to one receiver:
/// the job is one trace from the client's root span through the workflow, every activity
/// and every ffmpeg run, with the media attributes on the spans; a failing job is a second
/// trace whose failed activity span carries the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_per_job_across_processes() {
    let h = Harness::start().await;
    let receiver = OtlpReceiver::start();
    let hook = WebhookReceiver::start("whsec-traces");
    let out = h.path("out");
    let queue = "obs-traces";
    let original = object_path(&out, ARCHIVE_BUCKET, "originals/c1/tr1/original.mp4");
    make_video(&original, 640, 360, 4, 25).await;
    let job_file = write_job(&h, "job.json", &video_job_payload("tr1", "c1", &hook));

    let mut worker = h.spawn_with_env(
        &["worker", "--out", s(&out), "--task-queue", queue],
        &otlp_env(&receiver, "transcoder-worker"),
    );
    let submitted = h
        .run_with_env(
            &[
                "submit",
                "--job",
                s(&job_file),
                "--wait",
                "--task-queue",
                queue,
            ],
            otlp_env(&receiver, "transcoder-client"),
        )
        .await;
    if !submitted.status.success() {
        panic!("submit failed\n{}\n{}", submitted.dump(), worker.dump());
    }
    assert_eq!(
        submitted.json()["status"],
        "completed",
        "{}",
        submitted.dump()
    );

    // The worker exports in batches; the client flushed when it exited.
    let spans = receiver
        .wait_for_async(Duration::from_secs(30), |spans| {
            spans.iter().any(|s| s.name == "RunActivity:webhook")
                && spans.iter().any(|s| s.name == "transcoder submit")
                && spans
                    .iter()
                    .any(|s| s.name == "RunWorkflow:TranscodeWorkflow")
        })
        .await;
    // No span carries the webhook secret: not an attribute, an event or a status message.
    for span in &spans {
        assert!(
            !format!("{span:?}").contains(&hook.secret),
            "the {} span carries the webhook secret",
            span.name
        );
    }
    // One trace holds the whole job. The only spans outside it are the worker's start-up
    // NVENC test encode: an `ffmpeg` span of its own, before any job.
    let root_trace = spans
        .iter()
        .find(|s| s.name == "transcoder submit")
        .map(|s| s.trace_id.clone())
        .expect("root span");
    let strays: Vec<&SpanRecord> = spans.iter().filter(|s| s.trace_id != root_trace).collect();
    assert!(
        strays
            .iter()
            .all(|s| s.name == "ffmpeg" && s.parent_span_id.is_none()),
        "spans outside the job's trace: {:#?}\n{}",
        strays
            .iter()
            .map(|s| (&s.name, &s.attributes))
            .collect::<Vec<_>>(),
        worker.dump()
    );
    let spans: Vec<SpanRecord> = spans
        .into_iter()
        .filter(|s| s.trace_id == root_trace)
        .collect();
    assert_eq!(trace_ids(&spans).len(), 1);
    let all: Vec<&SpanRecord> = spans.iter().collect();

    // The client's root span, the start it made, the workflow, its activities.
    let root = span(&all, "transcoder submit");
    assert_eq!(root.parent_span_id, None, "the client span is the root");
    assert_eq!(root.service_name.as_deref(), Some("transcoder-client"));
    assert_eq!(root.attr_str("media.id"), Some("tr1"));
    let start = span(&all, "StartWorkflow:TranscodeWorkflow");
    assert_eq!(start.parent_span_id.as_deref(), Some(root.span_id.as_str()));
    let workflow = span(&all, "RunWorkflow:TranscodeWorkflow");
    assert_eq!(
        workflow.parent_span_id.as_deref(),
        Some(start.span_id.as_str())
    );
    assert_eq!(workflow.service_name.as_deref(), Some("transcoder-worker"));

    for step in [
        "probe",
        "mezzanine",
        "loudness",
        "ladder_chunk",
        "audio_rendition",
        "thumbnail",
        "assemble_hls",
        "verify",
        "webhook",
    ] {
        let run = span(&all, &format!("RunActivity:{step}"));
        let scheduled = parent_of(&all, run)
            .unwrap_or_else(|| panic!("RunActivity:{step} has no exported parent"));
        assert_eq!(scheduled.name, format!("StartActivity:{step}"));
        assert_eq!(
            scheduled.parent_span_id.as_deref(),
            Some(workflow.span_id.as_str()),
            "StartActivity:{step} hangs under the workflow"
        );
        assert_eq!(
            run.attr_str("media.id"),
            Some("tr1"),
            "{step}: {:?}",
            run.attributes
        );
        assert_eq!(run.attr_str("step"), Some(step));
        assert!(
            run.attr("bytes.out").is_some(),
            "{step}: {:?}",
            run.attributes
        );
        assert!(!run.is_error(), "{step} failed: {}", run.status_message);
    }

    // The ladder chunk: chunk, renditions, encoder, media seconds, realtime factor, bytes.
    let chunk = span(&all, "RunActivity:ladder_chunk");
    assert_eq!(chunk.attr("chunk").and_then(|v| v.as_i64()), Some(0));
    let renditions = chunk.attr_str("rendition").unwrap_or_default();
    assert!(renditions.contains("360p"), "renditions: {renditions}");
    assert_eq!(chunk.attr_str("encoder"), Some("x264"));
    let media = chunk
        .attr("media.seconds")
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0);
    assert!((media - 4.0).abs() < 0.5, "media.seconds {media}");
    assert!(
        chunk
            .attr("realtime.factor")
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0)
            > 0.0
    );
    assert!(
        chunk
            .attr("bytes.out")
            .and_then(|v| v.as_i64())
            .unwrap_or(0)
            > 10_000
    );
    let mezzanine = span(&all, "RunActivity:mezzanine");
    assert!(
        mezzanine
            .attr("bytes.in")
            .and_then(|v| v.as_i64())
            .unwrap_or(0)
            > 10_000
    );
    assert_eq!(mezzanine.attr_str("encoder"), Some("x264"));

    // Every ffmpeg run is a span under the activity that ran it.
    let ffmpeg: Vec<&SpanRecord> = all.iter().copied().filter(|s| s.name == "ffmpeg").collect();
    assert!(ffmpeg.len() >= 5, "ffmpeg spans: {}", ffmpeg.len());
    for run in &ffmpeg {
        let parent = parent_of(&all, run).expect("ffmpeg span's parent was exported");
        assert!(
            parent.name.starts_with("RunActivity:"),
            "ffmpeg under {}",
            parent.name
        );
        assert!(run.attr("media.seconds").is_some());
    }
    let chunk_ffmpeg = children_of(&spans, chunk);
    assert!(
        chunk_ffmpeg
            .iter()
            .any(|s| s.name == "ffmpeg" && s.attr_str("encoder") == Some("x264")),
        "the chunk's encode is an ffmpeg span with encoder x264"
    );

    // A job that fails is its own trace, and the failed step says why on its span.
    let bad = object_path(&out, ARCHIVE_BUCKET, "originals/c1/tr2/original.mp4");
    make_corrupt(&bad, 4096);
    let bad_file = write_job(&h, "bad.json", &video_job_payload("tr2", "c1", &hook));
    let failed = h
        .run_with_env(
            &[
                "submit",
                "--job",
                s(&bad_file),
                "--wait",
                "--task-queue",
                queue,
            ],
            otlp_env(&receiver, "transcoder-client"),
        )
        .await;
    assert_eq!(failed.json()["status"], "failed", "{}", failed.dump());
    let spans = receiver
        .wait_for_async(Duration::from_secs(30), |spans| {
            spans
                .iter()
                .any(|s| s.name == "RunActivity:probe" && s.is_error())
        })
        .await;
    let probe_failed = spans
        .iter()
        .find(|s| s.name == "RunActivity:probe" && s.is_error())
        .unwrap_or_else(|| panic!("no failed probe span\n{}", worker.dump()));
    assert_ne!(
        probe_failed.trace_id, root.trace_id,
        "a second job is a second trace"
    );
    assert!(!probe_failed.status_message.is_empty());
    worker.signal(libc::SIGTERM);
    let _ = worker.wait_for_exit(Duration::from_secs(30)).await;
}

/// A worker with `--metrics-addr` is scraped by a real Prometheus during a job: the job,
/// step, encoder, bytes and webhook metrics answer PromQL, the SDK's worker metrics are on
/// the same endpoint, the dashboard's every query names an exposed metric and is accepted
/// by Prometheus, and the worker's JSON log lines parse and hold no secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_worker_during_a_job() {
    let h = Harness::start().await;
    let hook = WebhookReceiver::start("whsec-metrics-secret-value");
    let out = h.path("out");
    let queue = "obs-metrics";
    let port = free_port();
    let mut worker = h.spawn(&[
        "worker",
        "--out",
        s(&out),
        "--task-queue",
        queue,
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
        "--log-format",
        "json",
    ]);
    let prometheus =
        PrometheusServer::start(&[format!("127.0.0.1:{port}")], Duration::from_secs(1));
    prometheus
        .wait_for_target_up_async(Duration::from_secs(60))
        .await;

    let original = object_path(&out, ARCHIVE_BUCKET, "originals/c1/pm1/original.mp4");
    make_video(&original, 1280, 720, 12, 25).await;
    let mut job = video_job_payload("pm1", "c1", &hook);
    job["segmentsPerChunk"] = json!(1);
    let job_file = write_job(&h, "job.json", &job);
    let submitted = h
        .run(&[
            "submit",
            "--job",
            s(&job_file),
            "--wait",
            "--task-queue",
            queue,
        ])
        .await;
    if !submitted.status.success() {
        panic!("submit failed\n{}\n{}", submitted.dump(), worker.dump());
    }
    assert_eq!(submitted.json()["status"], "completed");

    // Job metrics, by media type.
    let done = prometheus
        .wait_for_query_async(
            "sum by (media_type) (transcoder_jobs_completed_total)",
            Duration::from_secs(30),
            |s| {
                s.iter()
                    .any(|x| x.label("media_type") == Some("video") && x.value == 1.0)
            },
        )
        .await;
    assert!(
        !done.is_empty(),
        "no completed job in Prometheus\n{}",
        worker.dump()
    );
    let started = prometheus.query("sum(transcoder_jobs_started_total)");
    assert_eq!(started.first().map(|s| s.value), Some(1.0), "{started:?}");
    let failed = prometheus.query("sum(transcoder_jobs_failed_total)");
    assert_eq!(
        failed.first().map(|s| s.value),
        Some(0.0),
        "failed starts at zero: {failed:?}"
    );

    // Scraped while the job ran: some scrape saw a ladder chunk in flight.
    let in_flight =
        prometheus.query("max_over_time(transcoder_steps_in_flight{step=\"ladder_chunk\"}[10m])");
    assert!(
        in_flight.iter().any(|s| s.value >= 1.0),
        "no scrape saw a chunk running: {in_flight:?}"
    );

    // Step latency, by step. 12 s in 6 s chunks: the mezzanine is made in pieces.
    let executions = prometheus.query("sum by (step) (transcoder_step_duration_seconds_count)");
    for step in [
        "probe",
        "mezzanine_piece",
        "audio_chunk",
        "loudness_summary",
        "join_mezzanine",
        "ladder_chunk",
        "finish_audio_rendition",
        "thumbnail",
        "assemble_hls",
        "verify",
        "webhook",
    ] {
        assert!(
            executions
                .iter()
                .any(|s| s.label("step") == Some(step) && s.value >= 1.0),
            "no duration recorded for {step}: {executions:?}"
        );
    }
    // A quantile per step over everything recorded (the dashboard takes it over a rate
    // window, which needs traffic across several scrapes; one short job is not that).
    let latency = prometheus.query(
        "histogram_quantile(0.5, sum by (le, step) (transcoder_step_duration_seconds_bucket))",
    );
    let chunk_p50 = latency
        .iter()
        .find(|s| s.label("step") == Some("ladder_chunk"));
    assert!(chunk_p50.is_some_and(|s| s.value > 0.0), "{latency:?}");
    let chunks = prometheus
        .query("sum(transcoder_step_duration_seconds_count{step=\"ladder_chunk\",outcome=\"ok\"})");
    assert_eq!(
        chunks.first().map(|s| s.value),
        Some(2.0),
        "12 s in 6 s chunks: {chunks:?}"
    );
    // Encoder share, realtime factor, bytes, webhook health.
    let encoded = prometheus.query("sum by (encoder) (transcoder_encoded_media_seconds_sum)");
    let x264 = encoded
        .iter()
        .find(|s| s.label("encoder") == Some("x264"))
        .map(|s| s.value);
    // The ladder (12 s) and the mezzanine (12 s) were encoded with x264.
    assert!(
        x264.is_some_and(|seconds| (seconds - 24.0).abs() < 1.0),
        "{encoded:?}"
    );
    let factor = prometheus.query("sum by (step) (transcoder_realtime_factor_count)");
    assert!(
        factor
            .iter()
            .any(|s| s.label("step") == Some("ladder_chunk")),
        "{factor:?}"
    );
    let bytes = prometheus.query("sum(transcoder_bytes_uploaded_total)");
    assert!(
        bytes.first().is_some_and(|s| s.value > 100_000.0),
        "{bytes:?}"
    );
    let webhooks = prometheus.query("sum by (outcome) (transcoder_webhook_attempts_total)");
    let delivered = webhooks
        .iter()
        .find(|s| s.label("outcome") == Some("delivered"));
    assert_eq!(delivered.map(|s| s.value), Some(1.0), "{webhooks:?}");
    let encoder = prometheus.query("transcoder_worker_encoder == 1");
    assert_eq!(
        encoder.first().and_then(|s| s.label("encoder")),
        Some("x264")
    );
    // The Temporal SDK's own worker metrics come from the same endpoint.
    let slots = prometheus.query("temporal_worker_task_slots_available");
    assert!(!slots.is_empty(), "no SDK worker metrics");

    // The dashboard: every metric it names is exposed, and Prometheus accepts every query.
    let text = scrape(port).await;
    // Prometheus's own linter on the real scrape: none of our metrics is flagged (names,
    // units, suffixes). The SDK's metrics are its own.
    let mut lint = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (the prometheus package) runs");
    {
        use std::io::Write as _;
        lint.stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("promtool reads the scrape");
    }
    let lint = lint.wait_with_output().expect("promtool ends");
    let complaints =
        String::from_utf8_lossy(&lint.stdout).to_string() + &String::from_utf8_lossy(&lint.stderr);
    let ours: Vec<&str> = complaints
        .lines()
        .filter(|l| l.contains("transcoder_"))
        .collect();
    assert!(
        ours.is_empty(),
        "promtool check metrics flags our metrics: {ours:?}"
    );
    // The SDK's activity latency reaches the lengths of chunks and mezzanines.
    assert!(
        text.lines()
            .any(|l| l.starts_with("temporal_activity_execution_latency")
                && l.contains("le=\"600\"")),
        "activity latency buckets stop short of 10 minutes"
    );
    // Which build is running, and the worker process's own resources.
    for name in [
        "transcoder_build_info{",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            text.contains(name),
            "{name} is not exposed: {:?}",
            text.lines()
                .filter(|l| l.starts_with("process_") || l.contains("build_info"))
                .collect::<Vec<_>>()
        );
    }
    let exposed = exposed_metric_names(&text);
    let dashboard: Value = serde_json::from_slice(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/transcoder.json"))
            .expect("dashboards/transcoder.json"),
    )
    .expect("the dashboard is JSON");
    let used = dashboard_metric_names(&dashboard);
    assert!(used.len() >= 10, "the dashboard uses {used:?}");
    let missing: Vec<&String> = used.iter().filter(|m| !exposed.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "dashboard metrics the worker does not expose: {missing:?}"
    );
    for expr in dashboard_exprs(&dashboard) {
        let concrete = expr
            .replace("$__rate_interval", "1m")
            .replace("$__interval", "1m")
            .replace("$__range", "1h")
            .replace("${__range}", "1h");
        prometheus
            .try_query(&concrete)
            .unwrap_or_else(|e| panic!("Prometheus rejects the dashboard query {concrete:?}: {e}"));
    }

    // JSON logs: every line parses, the receipt is one of them, no secret anywhere.
    worker.signal(libc::SIGTERM);
    let _ = worker.wait_for_exit(Duration::from_secs(30)).await;
    let stderr = worker.stderr();
    assert!(
        !stderr.contains(&hook.secret),
        "the webhook secret reached the logs"
    );
    let mut receipt = None;
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        if event["fields"]["message"] == "job receipt" {
            receipt = Some(event);
        }
    }
    let receipt = receipt.unwrap_or_else(|| panic!("no job receipt line\n{stderr}"));
    assert_eq!(receipt["fields"]["media_id"], "pm1");
    assert_eq!(receipt["fields"]["outcome"], "completed");
    assert_eq!(receipt["fields"]["encoders"], "x264");
}

/// `status` on a job a worker is running names the state, the step and the running
/// activities; once it is done, the receipt: per-step wall time, realtime factor, encoder
/// and bytes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_follows_a_running_job_to_its_receipt() {
    let h = Harness::start().await;
    let hook = WebhookReceiver::start("whsec-status");
    let out = h.path("out");
    let queue = "obs-status";
    let original = object_path(&out, ARCHIVE_BUCKET, "originals/c1/st1/original.mp4");
    make_video(&original, 1280, 720, 18, 25).await;
    let mut job = video_job_payload("st1", "c1", &hook);
    job["segmentsPerChunk"] = json!(1);
    let job_file = write_job(&h, "job.json", &job);
    let mut worker = h.spawn(&["worker", "--out", s(&out), "--task-queue", queue]);
    let submitted = h
        .run(&["submit", "--job", s(&job_file), "--task-queue", queue])
        .await;
    assert!(submitted.status.success(), "{}", submitted.dump());

    // While it runs.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen_running = None;
    while Instant::now() < deadline {
        let status = h.run(&["status", "st1", "--json"]).await;
        assert!(status.status.success(), "{}", status.dump());
        let report = status.json();
        if report["state"] == "running"
            && report["step"].is_string()
            && report["running"].as_array().is_some_and(|a| !a.is_empty())
        {
            seen_running = Some(report);
            break;
        }
        if report["state"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let report = seen_running
        .unwrap_or_else(|| panic!("status never showed the job running\n{}", worker.dump()));
    assert_eq!(report["workflowId"], "transcode-st1");
    assert!(
        report["percent"].as_u64().is_some_and(|p| p <= 100),
        "{report:#}"
    );
    let step = report["running"][0]["step"].as_str().unwrap_or_default();
    assert!(!step.is_empty(), "{report:#}");
    assert_eq!(report["receipt"]["outcome"], "running", "{report:#}");
    let human = h.run(&["status", "st1"]).await;
    assert!(
        human.stdout.contains("st1 (transcode-st1): "),
        "{}",
        human.dump()
    );

    // When it is done.
    hook.expect_one_valid().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let report = loop {
        let status = h.run(&["status", "st1", "--json"]).await;
        let report = status.json();
        if report["state"] == "completed" || Instant::now() > deadline {
            break report;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(report["state"], "completed", "{report:#}");
    assert_eq!(report["webhookStatus"], "ready");
    assert_eq!(report["percent"], 100);
    let receipt = &report["receipt"];
    assert_eq!(receipt["outcome"], "completed");
    assert!(approx(&receipt["mediaSeconds"], 18.0, 0.5), "{receipt:#}");
    assert_eq!(receipt["encoders"], json!(["x264"]));
    let steps = receipt["steps"].as_array().expect("steps");
    let find = |name: &str| {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no {name} step in {receipt:#}"))
    };
    let ladder = find("ladder");
    assert_eq!(ladder["activities"], 3, "18 s in 6 s chunks");
    assert!(ladder["bytesOut"].as_u64().unwrap_or(0) > 100_000);
    assert_eq!(ladder["encoder"], "x264");
    assert!(ladder["realtimeFactor"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(approx(&ladder["mediaSeconds"], 18.0, 0.5));
    for name in [
        "probe",
        "mezzanine",
        "loudness",
        "audio_rendition",
        "thumbnail",
        "assemble_hls",
        "verify",
        "webhook",
    ] {
        let step = find(name);
        assert!(
            step["wallSeconds"].as_f64().is_some_and(|w| w >= 0.0),
            "{step}"
        );
    }
    let sum: u64 = steps
        .iter()
        .map(|s| s["bytesOut"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(receipt["bytesOut"].as_u64(), Some(sum));
    let total = receipt["wallSeconds"].as_f64().unwrap_or(0.0);
    assert!(
        total >= ladder["wallSeconds"].as_f64().unwrap_or(0.0),
        "{receipt:#}"
    );

    // A job that does not exist is an error that names it.
    let missing = h.run(&["status", "no-such-media"]).await;
    missing.assert_failure();
    assert!(
        missing.stderr.contains("no-such-media"),
        "{}",
        missing.dump()
    );
    worker.signal(libc::SIGTERM);
    let _ = worker.wait_for_exit(Duration::from_secs(30)).await;
}

/// A RunPod job queued with a W3C `traceparent` in its input continues the caller's trace:
/// the pod's `runpod job` span is a child of the caller's span, and the workflow and its
/// activities are in the same trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runpod_job_continues_the_callers_trace() {
    let h = Harness::start().await;
    let receiver = OtlpReceiver::start();
    let hook = WebhookReceiver::start("whsec-runpod-trace");
    let out = h.path("out");
    let original = object_path(&out, ARCHIVE_BUCKET, "originals/c1/rpt1/original.mp4");
    make_video(&original, 320, 180, 3, 25).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller = "00f067aa0ba902b7";
    let mut input = video_job_payload("rpt1", "c1", &hook);
    input["traceparent"] = json!(format!("00-{trace}-{caller}-01"));
    let test_input = json!({ "id": "job-trace-1", "input": input }).to_string();
    let ran = h
        .run_with_env(
            &[
                "runpod",
                "--test-input",
                &test_input,
                "--volume",
                s(&h.path("volume")),
                "--out",
                s(&out),
                "--task-queue",
                "obs-runpod",
            ],
            otlp_env(&receiver, "transcoder-runpod"),
        )
        .await;
    ran.assert_success();
    hook.expect_one_valid().await;

    let spans = receiver
        .wait_for_async(Duration::from_secs(30), |spans| {
            spans.iter().any(|s| s.name == "runpod job")
                && spans.iter().any(|s| s.name == "RunActivity:webhook")
        })
        .await;
    let job = spans
        .iter()
        .find(|s| s.name == "runpod job")
        .unwrap_or_else(|| panic!("no runpod job span\n{}", ran.dump()));
    assert_eq!(job.trace_id, trace, "the job continues the caller's trace");
    assert_eq!(job.parent_span_id.as_deref(), Some(caller));
    assert_eq!(job.attr_str("media.id"), Some("rpt1"));
    for name in [
        "RunWorkflow:TranscodeWorkflow",
        "RunActivity:ladder_chunk",
        "RunActivity:webhook",
    ] {
        let span = spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span"));
        assert_eq!(span.trace_id, trace, "{name} is in the caller's trace");
    }
}

/// An `https://` collector that is down costs the spans, never the process: the exporter's
/// TLS client is set up (no missing crypto provider) and a failed export does not panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_https_collector_does_not_stop_the_process() {
    let h = Harness::without_server();
    let port = free_port();
    let out = h
        .run_with_env(
            &["doctor", "--out", s(&h.path("out"))],
            [
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    format!("https://127.0.0.1:{port}"),
                ),
                ("OTEL_BSP_SCHEDULE_DELAY", "100".to_string()),
            ],
        )
        .await;
    assert!(!out.stderr.contains("panicked"), "{}", out.dump());
    assert!(out.stdout.contains("ffmpeg"), "{}", out.dump());
}

/// One frame of a progress bar as the terminal showed it: `{step} [{bar}] {percent}% {msg}`.
#[derive(Debug)]
struct BarFrame {
    step: String,
    percent: u32,
    message: String,
}

/// Every bar frame in what a terminal received, escape sequences and all.
fn bar_frames(terminal: &str) -> Vec<BarFrame> {
    let escapes = regex::Regex::new(r"\x1b\[[0-9;?]*[A-Za-z]").expect("escape pattern");
    let bar = regex::Regex::new(r"(\S+) \[[=> ]{32}\] +(\d+)%(?: ((?:done|chunks \d+/\d+)))?")
        .expect("bar pattern");
    let text = escapes.replace_all(terminal, "\n");
    bar.captures_iter(&text)
        .map(|c| BarFrame {
            step: c[1].to_string(),
            percent: c[2].parse().unwrap_or(0),
            message: c.get(3).map(|m| m.as_str().to_string()).unwrap_or_default(),
        })
        .collect()
}

/// `transcoder run` on a terminal draws a bar per step: ffmpeg's `-progress` moves it, the
/// workflow's chunk count labels the ladder's, and each finished step's ends at 100 % "done".
/// Without a terminal nothing is drawn, so piped output and logs stay clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_draws_a_bar_per_step_on_a_terminal() {
    let h = Harness::start().await;
    let hook = WebhookReceiver::start("whsec-bars");
    let out = h.path("out");
    let original = object_path(&out, ARCHIVE_BUCKET, "originals/c1/bar1/original.mp4");
    make_video(&original, 1280, 720, 12, 25).await;
    let mut job = video_job_payload("bar1", "c1", &hook);
    job["segmentsPerChunk"] = json!(1);
    let job_file = write_job(&h, "job.json", &job);
    let args = ["run", "--job", s(&job_file), "--out", s(&out)];

    let run = h.run_in_terminal(&args).await;
    assert!(run.status.success(), "{}", run.dump());
    let frames = bar_frames(&run.stdout);
    let steps: std::collections::BTreeSet<&str> = frames.iter().map(|f| f.step.as_str()).collect();
    for step in ["mezzanine", "audio", "thumbnail", "ladder"] {
        assert!(
            steps.contains(step),
            "no {step} bar among {steps:?}\n{}",
            run.dump()
        );
        assert!(
            frames
                .iter()
                .any(|f| f.step == step && f.percent == 100 && f.message == "done"),
            "the {step} bar never ended at 100% done\n{}",
            run.dump()
        );
    }
    assert!(
        frames.iter().any(|f| f.percent > 0 && f.percent < 100),
        "no bar ever showed progress between 0 and 100 %\n{}",
        run.dump()
    );
    // 12 s in 6 s segments, one segment per chunk: the ladder bar counts 2 chunks.
    assert!(
        frames.iter().any(|f| f.step == "ladder"
            && f.message.starts_with("chunks ")
            && f.message.ends_with("/2")),
        "the ladder bar never showed the chunk count\n{}",
        run.dump()
    );
    assert_eq!(hook.wait_for(1, Duration::from_secs(30)).await.len(), 1);

    // The same job again, piped: no bars (it answers from the saved result).
    let piped = h.run(&args).await;
    assert!(piped.status.success(), "{}", piped.dump());
    assert!(
        bar_frames(&piped.stderr).is_empty() && bar_frames(&piped.stdout).is_empty(),
        "bars drawn without a terminal\n{}",
        piped.dump()
    );
}
