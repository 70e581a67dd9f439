//! The durability promise for the ladder: `kill -9` a worker in the middle of the ladder,
//! start another, and the job completes, redoing only the chunks that were in flight.

use crate::common;

use common::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

const QUEUE: &str = "q-chunks";
/// 48 s at one 6 s segment per chunk: 8 chunks.
const SECONDS: u32 = 48;
const CHUNK_SECONDS: f64 = 6.0;

fn job(media: &str, hook: &WebhookReceiver) -> Value {
    json!({
        "mediaId": media,
        "creatorId": "c1",
        "mediaType": "video",
        "inputBucket": ARCHIVE_BUCKET,
        "inputKey": format!("originals/c1/{media}/original.mp4"),
        "outputBucket": MEDIA_BUCKET,
        "outputPrefix": format!("c1/hls/{media}"),
        "assetsBucket": ASSETS_BUCKET,
        "webhookUrl": hook.url(),
        "webhookSecret": hook.secret,
        "segmentsPerChunk": 1,
    })
}

/// Relative paths of every file under a media item's HLS tree.
fn hls_files(out: &Path, media: &str) -> BTreeSet<String> {
    let root = object_path(out, MEDIA_BUCKET, &format!("c1/hls/{media}"));
    walk(&root)
        .into_iter()
        .map(|p| p.strip_prefix(&root).unwrap().to_string_lossy().to_string())
        .collect()
}

/// The attempt of every `activity` activity in a workflow's history.
async fn chunk_attempts(h: &Harness, workflow_id: &str, activity: &str) -> Vec<u64> {
    activity_attempts(&h.workflow_history_json(workflow_id).await, activity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_worker_costs_at_most_the_chunks_in_flight() {
    let h = Harness::start().await;
    let out = h.path("out");
    let hook = WebhookReceiver::start("whsec-chunks");
    for media in ["kill1", "calm1"] {
        make_video(
            &object_path(
                &out,
                ARCHIVE_BUCKET,
                &format!("originals/c1/{media}/original.mp4"),
            ),
            640,
            360,
            SECONDS,
            25,
        )
        .await;
        std::fs::write(
            h.path(&format!("{media}.json")),
            serde_json::to_vec(&job(media, &hook)).unwrap(),
        )
        .unwrap();
    }

    // Worker A takes the job; once some chunks are published, it is killed outright. It
    // runs four activities at once, so chunks are surely in flight at the kill (with the
    // default slots of a 2-core machine, two, the audio steps may hold both).
    let mut first = h.spawn_with_env(
        &["worker", "--out", s(&out), "--task-queue", QUEUE],
        &[("TRANSCODER_ACTIVITY_SLOTS", "4".to_string())],
    );
    let started = h
        .run(&[
            "submit",
            "--job",
            s(&h.path("kill1.json")),
            "--task-queue",
            QUEUE,
        ])
        .await;
    started.assert_success();
    let segments_dir = object_path(&out, MEDIA_BUCKET, "c1/hls/kill1/360p");
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let done = std::fs::read_dir(&segments_dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "ts"))
                    .count()
            })
            .unwrap_or(0);
        // Three chunks done: with four at a time, others are in flight right now.
        if done >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no chunk finished in time\n{}",
            first.dump()
        );
        assert!(
            first.try_status().is_none(),
            "worker A exited early\n{}",
            first.dump()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    first.signal(libc::SIGKILL);
    first
        .wait_for_exit(Duration::from_secs(10))
        .await
        .expect("worker A is gone");
    assert!(
        !std::fs::read_dir(&segments_dir).unwrap().any(|e| e
            .unwrap()
            .path()
            .to_string_lossy()
            .contains("playlist")),
        "no playlist may be published before every chunk is done"
    );

    // Worker B finishes the job; `submit --wait` attaches to the running workflow.
    let mut second = h.spawn(&["worker", "--out", s(&out), "--task-queue", QUEUE]);
    let finished = h
        .run(&[
            "submit",
            "--job",
            s(&h.path("kill1.json")),
            "--wait",
            "--task-queue",
            QUEUE,
        ])
        .await;
    if !finished.status.success() {
        panic!(
            "the job did not complete after the kill\n{}\n{}",
            finished.dump(),
            second.dump()
        );
    }
    let body = finished.json();
    assert_eq!(body["status"], "completed", "{body:#}");
    assert_eq!(
        body["id"],
        started.stdout.trim(),
        "attached to the same workflow"
    );

    // Only chunks in flight ran again; every chunk was scheduled once. The mezzanine is
    // made in pieces, one per chunk, in the same window as the ladder, and the sound in two
    // rounds of chunks beside them: a piece, a ladder chunk and a chunk of sound in flight
    // count alike, and no activity encoded the whole mezzanine or the whole sound.
    let attempts = chunk_attempts(&h, "transcode-kill1", "ladder_chunk").await;
    let pieces = chunk_attempts(&h, "transcode-kill1", "mezzanine_piece").await;
    let sound = chunk_attempts(&h, "transcode-kill1", "audio_chunk").await;
    let whole = chunk_attempts(&h, "transcode-kill1", "mezzanine").await;
    for step in ["mezzanine_audio", "loudness", "audio_rendition"] {
        let ran = chunk_attempts(&h, "transcode-kill1", step).await;
        assert!(ran.is_empty(), "a whole-file {step} ran: {ran:?}");
    }
    let chunks = (f64::from(SECONDS) / CHUNK_SECONDS).ceil() as usize;
    assert_eq!(
        attempts.len(),
        chunks,
        "one ladder_chunk activity per chunk: {attempts:?}"
    );
    assert_eq!(
        pieces.len(),
        chunks,
        "one mezzanine_piece activity per chunk: {pieces:?}"
    );
    assert_eq!(
        sound.len(),
        2 * chunks,
        "two audio_chunk activities per chunk (archive and renditions): {sound:?}"
    );
    assert!(whole.is_empty(), "a whole-file mezzanine ran: {whole:?}");
    let redone = attempts.iter().filter(|a| **a > 1).count();
    let pieces_redone = pieces.iter().filter(|a| **a > 1).count();
    let sound_redone = sound.iter().filter(|a| **a > 1).count();
    let all_redone = redone + pieces_redone + sound_redone;
    assert!(
        all_redone >= 1,
        "the kill should have interrupted at least one chunk: ladder {attempts:?}, pieces \
         {pieces:?}, sound {sound:?}"
    );
    // Worker A runs 4 activities at once: what was in flight, and no more, runs again.
    assert!(
        all_redone <= 4,
        "at most the 4 chunks in flight may run again: ladder {attempts:?}, pieces \
         {pieces:?}, sound {sound:?}"
    );
    eprintln!(
        "resume waste: {redone} ladder chunk(s), {pieces_redone} mezzanine piece(s) and \
         {sound_redone} chunk(s) of sound run again (chunk = {CHUNK_SECONDS} s, {chunks} chunks)"
    );
    // The joined mezzanine is the archive; its pieces are gone.
    let mezzanine = object_path(&out, ARCHIVE_BUCKET, "mezzanine/c1/kill1/mezzanine.mp4");
    assert!(
        mezzanine.is_file(),
        "no mezzanine at {}",
        mezzanine.display()
    );
    let pieces_dir = object_path(
        &out,
        ARCHIVE_BUCKET,
        "mezzanine/c1/kill1/mezzanine.mp4.pieces",
    );
    assert!(
        walk(&pieces_dir).is_empty(),
        "pieces left behind: {:?}",
        walk(&pieces_dir)
    );

    // The same outputs as an uninterrupted run, and they pass the verification gate.
    let calm = h
        .run(&[
            "submit",
            "--job",
            s(&h.path("calm1.json")),
            "--wait",
            "--task-queue",
            QUEUE,
        ])
        .await;
    calm.assert_success();
    assert_eq!(
        hls_files(&out, "kill1"),
        hls_files(&out, "calm1"),
        "key sets differ"
    );
    let body_file = h.path("kill1-body.json");
    std::fs::write(&body_file, serde_json::to_vec(&body).unwrap()).unwrap();
    let verify = h
        .run(&["verify", "--body", s(&body_file), "--out", s(&out)])
        .await;
    verify.assert_success();

    second.signal(libc::SIGTERM);
    let status = second
        .wait_for_exit(Duration::from_secs(60))
        .await
        .expect("worker B stops");
    assert!(
        status.success(),
        "worker B exited with {status}\n{}",
        second.dump()
    );
}

/// Segment numbers (and modification times) of the `.ts` files in a rendition's folder.
fn segment_times(dir: &Path) -> std::collections::BTreeMap<u32, std::time::SystemTime> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let number = name.strip_suffix(".ts")?.parse().ok()?;
                    Some((number, e.metadata().ok()?.modified().ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A chunk of several segments publishes each one as the encoder moves past it; a worker
/// killed mid-chunk costs the segments in flight, not the chunk: the next worker hands the
/// attempt back with its checkpoint and the retry encodes only what was not published. The
/// result holds the same pictures as an uninterrupted run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_chunk_resumes_from_its_last_segment() {
    const QUEUE: &str = "q-mid-chunk";
    /// Two chunks of three 6 s segments.
    const SEGMENTS_PER_CHUNK: u32 = 3;
    let h = Harness::start().await;
    let out = h.path("out");
    let hook = WebhookReceiver::start("whsec-mid-chunk");
    for media in ["midkill", "midcalm"] {
        make_video(
            &object_path(
                &out,
                ARCHIVE_BUCKET,
                &format!("originals/c1/{media}/original.mp4"),
            ),
            960,
            540,
            36,
            25,
        )
        .await;
        let mut payload = job(media, &hook);
        payload["segmentsPerChunk"] = json!(SEGMENTS_PER_CHUNK);
        std::fs::write(
            h.path(&format!("{media}.json")),
            serde_json::to_vec(&payload).unwrap(),
        )
        .unwrap();
    }

    let mut first = h.spawn(&["worker", "--out", s(&out), "--task-queue", QUEUE]);
    h.run(&[
        "submit",
        "--job",
        s(&h.path("midkill.json")),
        "--task-queue",
        QUEUE,
    ])
    .await
    .assert_success();
    // Killed once some chunk has published part of its segments, not all, and its
    // checkpoint says so (the worker notes it in its scratch folder right after the upload;
    // a kill between the two costs that segment, which this test does not measure).
    let rendition = object_path(&out, MEDIA_BUCKET, "c1/hls/midkill/360p");
    let scratch = h.path("state/scratch");
    let deadline = Instant::now() + Duration::from_secs(300);
    let before = loop {
        let part_done = walk(&scratch)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|x| x == "details"))
            .filter_map(|p| std::fs::read(p).ok())
            .filter_map(|b| serde_json::from_slice::<Value>(&b).ok())
            .any(|d| {
                d["checkpoint"]["variants"]
                    .as_array()
                    .and_then(|v| v.first())
                    .and_then(|v| v["segments"].as_array())
                    .is_some_and(|s| !s.is_empty() && (s.len() as u32) < SEGMENTS_PER_CHUNK)
            });
        if part_done {
            break segment_times(&rendition);
        }
        assert!(
            Instant::now() < deadline,
            "no chunk published part of its segments in time\n{}",
            first.dump()
        );
        assert!(
            first.try_status().is_none(),
            "worker A exited early\n{}",
            first.dump()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    first.signal(libc::SIGKILL);
    first
        .wait_for_exit(Duration::from_secs(10))
        .await
        .expect("worker A is gone");

    let mut second = h.spawn(&["worker", "--out", s(&out), "--task-queue", QUEUE]);
    let finished = h
        .run(&[
            "submit",
            "--job",
            s(&h.path("midkill.json")),
            "--wait",
            "--task-queue",
            QUEUE,
        ])
        .await;
    if !finished.status.success() {
        panic!(
            "the job did not complete after the kill\n{}\n{}",
            finished.dump(),
            second.dump()
        );
    }
    assert_eq!(finished.json()["status"], "completed");
    let log = second.stderr();
    assert!(
        log.contains("resuming the chunk after the segments an earlier attempt published"),
        "the retried chunk started over\n{}",
        second.dump()
    );
    // What was published before the kill stays: at most the one segment whose checkpoint
    // was being written at the instant of the kill is made again, per chunk.
    let after = segment_times(&rendition);
    let rewritten: Vec<u32> = before
        .iter()
        .filter(|(n, t)| after.get(n) != Some(t))
        .map(|(n, _)| *n)
        .collect();
    assert!(
        rewritten.len() <= 2 && rewritten.len() < before.len(),
        "published segments were encoded again: {rewritten:?} of {:?}",
        before.keys()
    );
    eprintln!(
        "published before the kill: {:?}; made again: {rewritten:?}",
        before.keys()
    );

    // The same pictures as an uninterrupted job, and the verification gate passes.
    h.run(&[
        "submit",
        "--job",
        s(&h.path("midcalm.json")),
        "--wait",
        "--task-queue",
        QUEUE,
    ])
    .await
    .assert_success();
    assert_eq!(hls_files(&out, "midkill"), hls_files(&out, "midcalm"));
    let calm = object_path(&out, MEDIA_BUCKET, "c1/hls/midcalm/360p/playlist.m3u8");
    let killed = rendition.join("playlist.m3u8");
    let psnr = frame_psnr(&killed, &calm, &h.path("psnr.log")).await;
    assert_eq!(psnr.len(), 36 * 25, "frames of the 360p rendition");
    let low: Vec<(usize, f64)> = psnr
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, p)| *p < 45.0)
        .collect();
    eprintln!(
        "{} frames under 45 dB against the uninterrupted run, lowest {:?}",
        low.len(),
        low.iter().map(|l| l.1).fold(f64::INFINITY, f64::min)
    );
    // Segments not encoded again are the same bytes (99 dB). Encoded again, the same frames
    // measure 34-45 dB against the first encode (the rate control starts afresh at the
    // resumed segment's IDR); a picture one frame off measures about 22 dB on this pattern.
    assert!(
        psnr.iter().all(|p| *p > 30.0),
        "a frame of the resumed rendition differs from the uninterrupted one: {low:?}"
    );
    let body_file = h.path("midkill-body.json");
    std::fs::write(&body_file, serde_json::to_vec(&finished.json()).unwrap()).unwrap();
    h.run(&["verify", "--body", s(&body_file), "--out", s(&out)])
        .await
        .assert_success();

    second.signal(libc::SIGTERM);
    second.wait_for_exit(Duration::from_secs(60)).await;
}
