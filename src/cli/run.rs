//! `transcoder run`: one file or one payload end to end on the embedded default, and what
//! it prints (the outputs, the webhook body, the receipt).

use super::*;
use crate::*;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tracing::Instrument as _;
use transcoder::jobs;
use transcoder::receiver::LocalReceiver;
use transcoder::stage::{self, LocalJob};
use transcoder::temporal::Temporal;
use transcoder::worker;
use transcoder_activities::fetch::InputUri;
use transcoder_activities::secrets::SecretBox;
use transcoder_activities::Storage;
use transcoder_workflows::webhook::{WebhookBody, WebhookOutput};
use transcoder_workflows::MediaType;

/// A media id from arbitrary bytes (a URI) and the creator: the same input gives the same id.
pub(crate) fn media_id_from(bytes: &[u8], creator_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(bytes);
    media_id_of(hasher, creator_id)
}

/// Same file, same creator: same media id. Running the same command again therefore
/// attaches to the saved workflow instead of starting a second job.
pub(crate) fn default_media_id(input: &Path, creator_id: &str) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut file =
        std::fs::File::open(input).with_context(|| format!("reading {}", input.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("reading {}", input.display()))?;
    Ok(media_id_of(hasher, creator_id))
}

/// Finishes a content hash with the creator and turns its first 16 bytes into a UUID.
pub(crate) fn media_id_of(mut hasher: sha2::Sha256, creator_id: &str) -> String {
    use sha2::Digest;
    hasher.update(creator_id.as_bytes());
    let digest = hasher.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(id).into_uuid().to_string()
}

pub(crate) async fn detect_media_type(input: &Path) -> MediaType {
    match transcoder_activities::probe::probe_file(input).await {
        Ok(p) if p.video.is_none() && p.audio.is_some() => MediaType::Audio,
        Ok(_) => MediaType::Video,
        Err(e) => {
            // Not fatal here: the workflow's probe rejects it and sends the failed webhook.
            tracing::warn!(error = %e, "could not probe the input locally; assuming video");
            MediaType::Video
        }
    }
}

pub(crate) async fn run(args: RunArgs) -> Result<ExitCode> {
    let storage = Storage::from_env(&args.common.out).context("storage configuration")?;

    // A receiver in this process when no webhook URL is given, so every run ends with a
    // signed webhook that was actually delivered and verified.
    let mut local_receiver = None;
    // An INPUT given as s3://, gs:// or http(s):// is downloaded by the job itself.
    let mut input_uri: Option<InputUri> = None;
    let job = match (&args.job, &args.input) {
        (Some(file), input) => {
            let mut job = read_job(file)?;
            if args.local_webhook {
                let receiver = LocalReceiver::start_persistent(&args.common.state_dir)?;
                job.webhook_url = Some(receiver.url().to_string());
                job.webhook_secret = Some(receiver.secret().to_string());
                local_receiver = Some(receiver);
            } else if let (Some(url), Some(secret)) = (&args.webhook_url, &args.webhook_secret) {
                job.webhook_url = Some(url.clone());
                job.webhook_secret = Some(secret.clone());
            }
            if let Some(input) = input {
                stage::stage_for_payload(&storage, input, &job).await?;
            }
            job
        }
        (None, Some(input)) => {
            let text = input.to_string_lossy().into_owned();
            if text.contains("://") {
                input_uri =
                    Some(InputUri::parse(&text).map_err(|e| anyhow::anyhow!("input {text}: {e}"))?);
            } else if !input.is_file() {
                bail!("input {} is not a readable file", input.display());
            }
            let (webhook_url, webhook_secret) = match (&args.webhook_url, &args.webhook_secret) {
                (Some(url), Some(secret)) => (url.clone(), secret.clone()),
                _ => {
                    let receiver = LocalReceiver::start_persistent(&args.common.state_dir)?;
                    let pair = (receiver.url().to_string(), receiver.secret().to_string());
                    local_receiver = Some(receiver);
                    pair
                }
            };
            let media_type = match (args.media_type, &input_uri) {
                (Some(MediaTypeArg::Video), _) => MediaType::Video,
                (Some(MediaTypeArg::Audio), _) => MediaType::Audio,
                (None, Some(_)) => bail!(
                    "give --media-type video or audio for a URI input (the job downloads it; it is not probed here)"
                ),
                (None, None) => detect_media_type(input).await,
            };
            let media_id = match (&args.media_id, &input_uri) {
                (Some(id), _) => id.clone(),
                (None, Some(_)) => media_id_from(text.as_bytes(), &args.creator_id),
                (None, None) => default_media_id(input, &args.creator_id)?,
            };
            let local = LocalJob {
                media_id,
                creator_id: args.creator_id.clone(),
                media_type,
                webhook_url,
                webhook_secret,
            };
            match &input_uri {
                Some(uri) => stage::uri_job(uri, &text, &local),
                None => stage::stage_input(&storage, input, &local).await?,
            }
        }
        (None, None) => bail!("give an INPUT file or URI, or --job FILE"),
    };

    // Client and in-process worker share one key: from the environment, or kept in the
    // state folder.
    let secrets = SecretBox::from_env_or_state(&args.common.state_dir)?;
    let mut job = job;
    jobs::apply_env_defaults(&mut job)?;
    jobs::seal_secret(&mut job, &secrets).context(
        "the job was refused before it started (no webhook is signed with a bad secret)",
    )?;
    let mut config = worker_config(&args.common, Some(secrets)).await?;
    // The person at the keyboard chose this URL: its host needs no allowlist entry.
    if let Some(InputUri::Http(url)) = &input_uri {
        if let Some(host) = url.host_str() {
            config.fetch.allow_host(host);
        }
    }

    let temporal = Temporal::connect_or_embed(&args.common.state_dir).await?;
    let sdk_runtime = worker::runtime(config.meter.clone())?;
    let mut worker = worker::build(&sdk_runtime, temporal.client.clone(), &config)?;
    worker::log_start(&config);
    let stop_worker = worker.shutdown_handle();
    let worker_task = async move {
        if let Err(e) = worker.run().await {
            tracing::warn!(error = %e, "worker stopped with an error");
        }
    };
    tokio::pin!(worker_task);

    // The root of the job's trace: the workflow and its activities hang under it.
    let job_span = tracing::info_span!(
        "transcoder run",
        media.id = job.media_id.as_deref().unwrap_or_default(),
        media.type = job.media_type.as_deref().unwrap_or_default(),
        job.status = tracing::field::Empty,
    );
    let (id, submitted) = jobs::start_or_attach(
        &temporal.client,
        &job,
        &config.task_queue,
        jobs::max_job_retries(),
    )
    .instrument(job_span.clone())
    .await?;
    match (&job.media_id, submitted) {
        (_, jobs::Submitted::AlreadyCompleted) => eprintln!(
            "Job {id} already completed earlier: showing its stored result, nothing is encoded again."
        ),
        (Some(media_id), jobs::Submitted::Running) => eprintln!(
            "Job {id} running; if interrupted, run the same command again (or pass --media-id {media_id}) to resume."
        ),
        (None, jobs::Submitted::Running) => {}
    }
    let state_dir = args.common.state_dir.display().to_string();
    let (stop_bars, bars_stopped) = tokio::sync::watch::channel(false);
    let bars = transcoder::progress::spawn(temporal.client.clone(), id.clone(), bars_stopped);
    let outcome = tokio::select! {
        outcome = jobs::wait_for_outcome(&temporal.client, &id, &job).instrument(job_span.clone()) => outcome,
        _ = worker::shutdown_signal() => Err(anyhow::anyhow!(
            "interrupted; the job is saved in {state_dir} and resumes when run again with the same --media-id"
        )),
        _ = &mut worker_task => Err(anyhow::anyhow!(
            "the in-process worker stopped before the job finished (is the Temporal server gone?); the job is saved in {state_dir} and no webhook has been sent: run the same command again to resume it"
        )),
    };
    let _ = stop_bars.send(true);
    let _ = bars.await;
    if let Ok(o) = &outcome {
        job_span.record(
            "job.status",
            if jobs::succeeded(&o.body) {
                "completed"
            } else {
                "failed"
            },
        );
    }
    drop(job_span);
    // Stop polling. After an interrupt, give running activities a moment to wind down but do
    // not hold the terminal for a long encode: Temporal retries it on the next run.
    stop_worker();
    let grace = std::time::Duration::from_secs(if outcome.is_ok() { 60 } else { 10 });
    if tokio::time::timeout(grace, &mut worker_task).await.is_err() {
        tracing::warn!("the worker did not stop within {grace:?}; exiting anyway");
    }
    let ui = temporal.server.as_ref().map(|s| s.ui_url());
    temporal.shutdown().await;
    let outcome = outcome?;
    let body = &outcome.body;

    // A stored result was delivered when it was made; nothing is sent again.
    if let (Some(receiver), jobs::Submitted::Running) = (&local_receiver, submitted) {
        report_local_webhook(receiver, body);
    }
    if args.json {
        println!("{}", serde_json::to_string(body)?);
    } else {
        print_summary(body, &args.common.out, &storage, ui.as_deref());
        if let (Some(receipt), jobs::Submitted::Running) = (&outcome.receipt, submitted) {
            println!(
                "\nReceipt:\n{}",
                transcoder::status::render_receipt(receipt)
            );
        }
    }
    outcome.warn_if_webhook_missed();
    Ok(outcome.exit_code())
}

pub(crate) fn report_local_webhook(receiver: &LocalReceiver, body: &WebhookBody) {
    let received = receiver.received();
    let expected = serde_json::to_vec(body).unwrap_or_default();
    match received.last() {
        Some(r) if r.signature_valid && r.body == expected => {
            eprintln!("Webhook delivered to the local receiver; HMAC-SHA256 signature verified.")
        }
        Some(r) if r.signature_valid => eprintln!("Webhook delivered and its signature verified."),
        Some(_) => eprintln!("warning: the local receiver got a webhook with a bad signature"),
        None => eprintln!("warning: no webhook reached the local receiver"),
    }
}

pub(crate) fn print_summary(body: &WebhookBody, out: &Path, storage: &Storage, ui: Option<&str>) {
    println!();
    match &body.output {
        WebhookOutput::Completed(o) => {
            println!(
                "Job {} completed: {} {:.1} s, variants {}",
                body.id,
                o.media_type,
                o.duration_seconds,
                o.ready_variants.join(", ")
            );
            if storage.is_local_only() {
                println!("Outputs under {}:", out.display());
                print_tree(out, &o.media_id);
            } else {
                println!("Outputs (bucket routes below):");
                for route in storage.describe() {
                    println!("  {route}");
                }
            }
        }
        WebhookOutput::Failed(_) => {
            println!(
                "Job {} failed: {}",
                body.id,
                body.error.as_deref().unwrap_or("unknown error")
            );
        }
    }
    println!();
    println!("Webhook body:");
    println!("{}", serde_json::to_string_pretty(body).unwrap_or_default());
    if let Some(ui) = ui {
        println!();
        println!("Temporal Web UI (while it ran): {ui}");
        println!("Browse this job's history again with: transcoder server");
    }
}

/// Prints every object of one media item as a tree, with segment folders summarized.
pub(crate) fn print_tree(out: &Path, media_id: &str) {
    let mut files = Vec::new();
    collect_files(out, &mut files);
    let needle = format!("/{media_id}/");
    let mut rows: Vec<String> = Vec::new();
    let mut segments: std::collections::BTreeMap<String, (usize, u64)> = Default::default();
    for (path, size) in files {
        let rel = path
            .strip_prefix(out)
            .unwrap_or(&path)
            .to_string_lossy()
            .to_string();
        if !format!("/{rel}").contains(&needle) {
            continue;
        }
        if rel.ends_with(".ts") {
            let dir = rel
                .rsplit_once('/')
                .map(|(d, _)| d.to_string())
                .unwrap_or_default();
            let e = segments.entry(dir).or_default();
            e.0 += 1;
            e.1 += size;
        } else {
            rows.push(format!(
                "  {rel}  ({})",
                transcoder::status::human_size(size)
            ));
        }
    }
    for (dir, (count, bytes)) in segments {
        rows.push(format!(
            "  {dir}/*.ts  ({count} segments, {})",
            transcoder::status::human_size(bytes)
        ));
    }
    rows.sort();
    for r in rows {
        println!("{r}");
    }
}

pub(crate) fn collect_files(dir: &Path, files: &mut Vec<(PathBuf, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.metadata() {
            Ok(m) if m.is_dir() => collect_files(&path, files),
            Ok(m) if m.is_file() => files.push((path, m.len())),
            _ => {}
        }
    }
}
