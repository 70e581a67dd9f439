//! The other subcommands: `status`, `list`, `worker`, `submit`, `verify`, `doctor`,
//! `server` and `runpod`.

use super::*;
use crate::*;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use tracing::Instrument as _;
use transcoder::jobs;
use transcoder::temporal::Temporal;
use transcoder::worker;
use transcoder_activities::secrets::SecretBox;
use transcoder_activities::Storage;
use transcoder_workflows::webhook::{WebhookBody, WebhookOutput};

pub(crate) async fn status(args: StatusArgs) -> Result<ExitCode> {
    let client = Temporal::connect_existing(&args.state_dir).await?;
    let report = transcoder::status::job_status(&client, &args.media_id).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", transcoder::status::render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn list(args: ListArgs) -> Result<ExitCode> {
    let client = Temporal::connect_existing(&args.state_dir).await?;
    let filter = transcoder::list::Filter {
        creator: args.creator,
        media_type: args.media_type,
        outcome: args.outcome,
        encoder: args.encoder,
        limit: args.limit,
    };
    let jobs = transcoder::list::list(&client, &filter).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
    } else {
        print!("{}", transcoder::list::render(&jobs));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn run_worker(args: WorkerArgs) -> Result<ExitCode> {
    let secrets = SecretBox::from_env()?;
    if secrets.is_none() {
        tracing::warn!(
            "{} is not set: this worker cannot open sealed webhook secrets",
            transcoder_activities::secrets::KEY_ENV
        );
    }
    let config = worker_config(&args.common, secrets).await?;
    let client = Temporal::connect_remote().await?;
    let sdk_runtime = worker::runtime(config.meter.clone())?;
    let mut worker = worker::build(&sdk_runtime, client, &config)?;
    worker::log_start(&config);
    let stop = worker.shutdown_handle();
    tokio::spawn(async move {
        worker::shutdown_signal().await;
        tracing::info!("shutdown requested: no new tasks; finishing the ones running");
        stop();
    });
    worker.run().await.context("worker failed")?;
    tracing::info!("worker stopped");
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn submit(args: SubmitArgs) -> Result<ExitCode> {
    let payload = super::task::read_payload(&args.job.to_string_lossy())?;
    let body = transcoder::tasks::task_body(&payload);
    if transcoder_workflows::task::is_task(body) {
        return submit_task(body, &args).await;
    }
    let mut job = read_job(&args.job)?;
    jobs::apply_env_defaults(&mut job)?;
    let key = SecretBox::from_env()?.ok_or(transcoder_activities::secrets::SecretError::NoKey)?;
    jobs::seal_secret(&mut job, &key).context(
        "the job was refused before it was submitted (no webhook is signed with a bad secret)",
    )?;
    let client = Temporal::connect_remote().await?;
    // The root of the job's trace when traces are exported.
    let job_span = tracing::info_span!(
        "transcoder submit",
        media.id = job.media_id.as_deref().unwrap_or_default(),
        media.type = job.media_type.as_deref().unwrap_or_default(),
    );
    let (id, _) = jobs::start_or_attach(&client, &job, &args.task_queue, jobs::max_job_retries())
        .instrument(job_span.clone())
        .await?;
    if !args.wait {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let outcome = jobs::wait_for_outcome(&client, &id, &job)
        .instrument(job_span)
        .await?;
    println!("{}", serde_json::to_string(&outcome.body)?);
    outcome.warn_if_webhook_missed();
    Ok(outcome.exit_code())
}

/// `submit` of a task- or action-style payload: its workflow id, or with `--wait` its answer.
async fn submit_task(body: &serde_json::Value, args: &SubmitArgs) -> Result<ExitCode> {
    use transcoder::tasks;
    let key = SecretBox::from_env()?.ok_or(transcoder_activities::secrets::SecretError::NoKey)?;
    let prepared =
        tasks::prepare(body, &key).context("the task was refused before it was submitted")?;
    let client = Temporal::connect_remote().await?;
    tasks::start_or_attach(&client, &prepared, &args.task_queue).await?;
    if !args.wait {
        println!("{}", prepared.workflow_id);
        return Ok(ExitCode::SUCCESS);
    }
    let answer = tasks::wait_for_answer(&client, &prepared.workflow_id).await?;
    println!("{}", serde_json::to_string(&tasks::answer_json(&answer))?);
    Ok(if answer.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) async fn verify(args: VerifyArgs) -> Result<ExitCode> {
    let text = if args.body.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the webhook body from stdin")?
    } else {
        std::fs::read_to_string(&args.body)
            .with_context(|| format!("reading {}", args.body.display()))?
    };
    let body: WebhookBody =
        serde_json::from_str(&text).context("the body is not a webhook body")?;
    let WebhookOutput::Completed(o) = &body.output else {
        bail!(
            "job {} failed ({}); there is nothing to verify",
            body.id,
            body.error.as_deref().unwrap_or("no reason")
        );
    };
    let master_key = o
        .hls_master_playlist_key
        .clone()
        .context("the body has no hlsMasterPlaylistKey")?;
    let input = transcoder_workflows::media::VerifyInput {
        media_bucket: args.media_bucket,
        assets_bucket: args.assets_bucket,
        master_key,
        preview_key: o.hls_preview_key.clone(),
        thumbnail_key: o.thumbnail_key.clone(),
        waveform_json_key: o.waveform_key.clone(),
        waveform_png_key: o.waveform_image_key.clone(),
        duration_seconds: o.duration_seconds,
        video_renditions: Vec::new(),
        has_audio: None,
        preview_seconds: transcoder_workflows::ladder::preview_length(
            o.duration_seconds,
            transcoder_workflows::ladder::PlanConfig::default().preview_seconds,
        ),
        storyboard_key: o.storyboard_key.clone(),
    };
    // The local store reads objects in place; remote objects are downloaded here.
    let storage = Storage::from_env(&args.out).context("storage configuration")?;
    let scratch = std::env::temp_dir().join(format!("transcoder-verify-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let verified = transcoder_activities::verify::verify_outputs(&storage, &input, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    match verified {
        Ok(report) => {
            println!("{}", serde_json::to_string_pretty(&report)?);
            eprintln!(
                "verified: {} playlists, {} segments",
                report.playlists, report.segments
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("verification failed: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

pub(crate) async fn doctor(args: DoctorArgs) -> Result<ExitCode> {
    let report = transcoder::doctor::run(&args.out).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for c in &report.checks {
            let mark = match (c.ok, c.required) {
                (true, _) => "ok  ",
                (false, true) => "FAIL",
                (false, false) => "--  ",
            };
            println!("{mark} {:<30} {}", c.name, c.detail);
        }
        println!(
            "{}",
            if report.ready {
                "ready"
            } else {
                "NOT READY: a required check failed"
            }
        );
    }
    Ok(if report.ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(crate) async fn server(args: ServerArgs) -> Result<ExitCode> {
    let server = transcoder::devserver::DevServer::start(&args.state_dir).await?;
    eprintln!(
        "Temporal dev server on {} with the state in {}",
        server.address(),
        args.state_dir.display()
    );
    eprintln!("Temporal Web UI: {}   (Ctrl-C to stop)", server.ui_url());
    worker::shutdown_signal().await;
    server.stop().await;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn runpod(args: RunpodArgs) -> Result<ExitCode> {
    use transcoder::runpod::{self, handler::Pod, local, protocol::Endpoints, state};
    let volume = state::Volume::detect(&args.volume);
    let common = CommonArgs {
        out: args.out.clone().unwrap_or_else(|| {
            volume
                .dir()
                .map(|d| d.join("out"))
                .unwrap_or_else(|| PathBuf::from("out"))
        }),
        state_dir: args.state_dir.clone(),
        worker: args.worker.clone(),
    };
    if args.rp_debugger {
        tracing::info!(
            "--rp_debugger: accepted; the result's receipt carries the step timings it would show"
        );
    }
    if let Some(n) = args.rp_api_concurrency {
        tracing::info!(
            requested = n,
            "--rp_api_concurrency: accepted; the local API runs one job at a time (the SDK's default), whatever the value"
        );
    }
    // Mode order of the SDK (§1): local API, then a test input (the flag, or the file when
    // RunPod's job URL is not set), then the production loop. A test input is read before
    // anything starts, so a bad one fails at once.
    let endpoints = Endpoints::from_env()?;
    enum Mode {
        ServeApi,
        Test(local::TestJob),
        Worker(Endpoints),
    }
    let mode = if args.serve_api {
        Mode::ServeApi
    } else if let Some(text) = args.test_input.clone() {
        Mode::Test(local::TestJob::read(local::TestInput::Text(text))?)
    } else if let Some(endpoints) = endpoints {
        Mode::Worker(endpoints)
    } else {
        let file = PathBuf::from("test_input.json");
        Mode::Test(local::TestJob::read(local::TestInput::File(file))?)
    };
    let pod_id = match &mode {
        Mode::Worker(e) => e.pod_id.clone(),
        _ => std::env::var("RUNPOD_POD_ID").unwrap_or_else(|_| "local".to_string()),
    };
    let connected = state::connect(&volume, &common.state_dir, &pod_id).await?;
    // The worker is configured exactly as `transcoder worker` configures it.
    let config = worker_config(&common, Some(connected.secrets.clone())).await?;
    let pod = Pod {
        client: connected.temporal.client.clone(),
        runtime: std::sync::Arc::new(worker::runtime(config.meter.clone())?),
        config,
        secrets: connected.secrets.clone(),
        max_retries: jobs::max_job_retries(),
    };
    let shutdown = runpod::shutdown_watch();
    let ok = match mode {
        Mode::ServeApi => {
            local::serve_api(&pod, &args.api_host, args.api_port, shutdown).await?;
            true
        }
        Mode::Test(job) => local::run_test_input(&pod, job, shutdown).await,
        Mode::Worker(endpoints) => {
            let client = runpod::client::RunpodClient::new(endpoints)?;
            // As the SDK: fitness first; an unfit pod says why in one unhealthy ping and
            // exits, so RunPod replaces it rather than feeding it jobs.
            match runpod::fitness::check(&pod.config.scratch_dir).await {
                Ok(()) => {
                    runpod::serve(&pod, client, shutdown).await;
                    true
                }
                Err(unfit) => {
                    tracing::error!(check = unfit.check, reason = %unfit.reason, "this pod failed a fitness check: unhealthy ping sent, exiting");
                    client.ping_unhealthy(&unfit).await;
                    false
                }
            }
        }
    };
    connected.temporal.shutdown().await;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
