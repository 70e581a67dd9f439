//! Object storage against a real S3-compatible server (moto on loopback): a whole job with
//! R2-style and B2-style configuration, a multipart upload resumed after an interruption,
//! http(s) inputs (resumed by range, hosts allowlisted), and webhook delivery that outlasts
//! a receiver answering 500.

use crate::common;

use common::s3::{self, Fault, FaultProxy, S3Server};
use common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use transcoder_activities::storage::config::{BackendKind, S3Settings};
use transcoder_activities::storage::{MultipartPolicy, S3Backend};
use transcoder_workflows::media::ObjectRef;

const MEDIA: &str = "codex-media-test";
const ASSETS: &str = "codex-assets-test";
const ARCHIVE: &str = "codex-archive-test";

/// R2 and B2 variables exactly as production sets them, with the endpoints pointed at moto.
fn cloud_env(server: &S3Server) -> Vec<(String, String)> {
    cloud_env_at(&server.endpoint())
}

/// As [`cloud_env`], with every store reached at `endpoint` (a fault proxy in front of moto).
fn cloud_env_at(endpoint: &str) -> Vec<(String, String)> {
    let e = endpoint.to_string();
    [
        ("R2_ACCOUNT_ID", "0123456789abcdef"),
        ("R2_ENDPOINT_URL", e.as_str()),
        ("R2_ACCESS_KEY_ID", s3::ACCESS_KEY),
        ("R2_SECRET_ACCESS_KEY", s3::SECRET_KEY),
        ("R2_MEDIA_BUCKET", MEDIA),
        ("R2_ASSETS_BUCKET", ASSETS),
        ("B2_KEY_ID", s3::ACCESS_KEY),
        ("B2_APPLICATION_KEY", s3::SECRET_KEY),
        ("B2_ENDPOINT", e.as_str()),
        ("B2_REGION", "us-west-004"),
        ("B2_BUCKET_NAME", ARCHIVE),
        // Small parts so the mezzanine of a short clip goes through multipart too.
        ("TRANSCODER_MULTIPART_THRESHOLD", "1048576"),
        ("TRANSCODER_MULTIPART_PART_SIZE", "5242880"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_on_r2_and_b2_style_storage() {
    let h = Harness::start().await;
    let server = cloud_server(&h).await;
    let input = h.path("in/clip.mp4");
    make_video(&input, 640, 360, 4, 25).await;
    let hook = WebhookReceiver::start("whsec-cloud");
    let out = h.path("out");
    let url = hook.url();
    let run = h
        .run_with_env(
            &[
                "run",
                s(&input),
                "--json",
                "--media-id",
                "cloud1",
                "--creator-id",
                "c1",
                "--out",
                s(&out),
                "--webhook-url",
                &url,
                "--webhook-secret",
                &hook.secret,
            ],
            cloud_env(&server),
        )
        .await;
    run.assert_success();
    let body = run.json();
    assert_eq!(body["status"], "completed", "{}", run.dump());
    assert_eq!(hook.expect_one_valid().await, body);
    assert!(
        !run.stderr.contains(s3::SECRET_KEY),
        "a storage secret reached the logs"
    );
    // Nothing went to the local folder: every bucket is remote.
    assert!(
        walk(&out).is_empty(),
        "objects written locally: {:?}",
        walk(&out)
    );

    let client = server.client();
    let o = &body["output"];
    let master_key = o["hlsMasterPlaylistKey"].as_str().expect("master key");
    assert!(master_key.starts_with("c1/hls/cloud1/"), "{master_key}");
    let (ct, cc, _) = s3::head(&client, MEDIA, master_key).await;
    assert_eq!(ct, "application/vnd.apple.mpegurl");
    assert!(cc.contains("max-age=60"), "{cc}");

    // Every variant playlist named by the master exists, and so does every segment in it,
    // with player-facing headers.
    let master_text = s3::get_bytes(&client, MEDIA, master_key).await;
    let master = match m3u8_rs::parse_playlist_res(&master_text) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(m)) => m,
        other => panic!("master playlist does not parse: {other:?}"),
    };
    assert!(!master.variants.is_empty());
    let base = master_key.rsplit_once('/').map(|(b, _)| b).unwrap_or("");
    let media_keys = s3::list_keys(&client, MEDIA).await;
    for v in &master.variants {
        let playlist_key = format!("{base}/{}", v.uri);
        let text = s3::get_bytes(&client, MEDIA, &playlist_key).await;
        let playlist = match m3u8_rs::parse_playlist_res(&text) {
            Ok(m3u8_rs::Playlist::MediaPlaylist(p)) => p,
            other => panic!("{playlist_key} does not parse: {other:?}"),
        };
        assert!(playlist.end_list);
        let dir = playlist_key.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        for seg in &playlist.segments {
            let key = format!("{dir}/{}", seg.uri);
            assert!(media_keys.contains(&key), "segment {key} missing");
        }
        let first = format!("{dir}/{}", playlist.segments[0].uri);
        let (ct, cc, size) = s3::head(&client, MEDIA, &first).await;
        assert_eq!(ct, "video/mp2t", "{first}");
        assert!(cc.contains("immutable"), "{cc}");
        assert!(size > 0);
    }

    let thumb = o["thumbnailKey"].as_str().expect("thumbnail key");
    let (ct, _, _) = s3::head(&client, ASSETS, thumb).await;
    assert_eq!(ct, "image/jpeg");
    let jpeg = s3::get_bytes(&client, ASSETS, thumb).await;
    let img = image::load_from_memory(&jpeg).expect("thumbnail decodes");
    assert_eq!((img.width(), img.height()), (1280, 720));

    // The archive (B2) holds the original and the mezzanine, never served to players.
    let mezz = o["mezzanineKey"].as_str().expect("mezzanine key");
    let (ct, cc, size) = s3::head(&client, ARCHIVE, mezz).await;
    assert_eq!(ct, "video/mp4");
    assert!(cc.contains("no-store"), "{cc}");
    assert!(size > 0);
    let archive_keys = s3::list_keys(&client, ARCHIVE).await;
    assert!(
        archive_keys
            .iter()
            .any(|k| k.starts_with("originals/c1/cloud1/original.")),
        "{archive_keys:?}"
    );
    // No unfinished multipart uploads are left behind.
    for b in [MEDIA, ASSETS, ARCHIVE] {
        assert_eq!(
            pending_uploads(&client, b).await,
            0,
            "unfinished uploads in {b}"
        );
    }

    // The verification gate passes on the remote outputs too.
    verify_remote(&h, &body, &out, &server, "body.json").await;

    // `doctor` reaches every routed bucket with the configured credentials.
    let report = h
        .run_with_env(&["doctor", "--json", "--out", s(&out)], cloud_env(&server))
        .await;
    let checks = report.json()["checks"].clone();
    for (bucket, kind) in [(MEDIA, "r2"), (ASSETS, "r2"), (ARCHIVE, "b2")] {
        let name = format!("bucket {bucket} ({kind})");
        let found = checks
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == name.as_str()))
            .unwrap_or_else(|| panic!("no check {name}: {checks:#}"));
        assert_eq!(found["ok"], true, "{found:#}");
    }
}

/// The verification gate (`transcoder verify`) passes on a job's outputs in the stores.
async fn verify_remote(
    h: &Harness,
    body: &Value,
    out: &std::path::Path,
    server: &S3Server,
    name: &str,
) {
    let body_file = h.path(name);
    std::fs::write(&body_file, serde_json::to_vec(body).unwrap()).unwrap();
    h.run_with_env(
        &[
            "verify",
            "--body",
            s(&body_file),
            "--out",
            s(out),
            "--media-bucket",
            MEDIA,
            "--assets-bucket",
            ASSETS,
        ],
        cloud_env(server),
    )
    .await
    .assert_success();
}

/// moto on loopback with the three buckets the cloud settings route to.
async fn cloud_server(h: &Harness) -> S3Server {
    let server = S3Server::start(&h.path("logs"));
    for b in [MEDIA, ASSETS, ARCHIVE] {
        server.create_bucket(b).await;
    }
    server
}

fn backend(server: &S3Server) -> S3Backend {
    backend_at(&server.endpoint())
}

fn backend_at(endpoint: &str) -> S3Backend {
    S3Backend::new(
        S3Settings {
            name: BackendKind::S3,
            endpoint: Some(endpoint.to_string()),
            region: "us-east-1".into(),
            path_style: true,
            access_key_id: s3::ACCESS_KEY.into(),
            secret_access_key: s3::SECRET_KEY.into(),
            session_token: None,
        },
        MultipartPolicy {
            threshold: 5 * 1024 * 1024,
            part_size: 5 * 1024 * 1024,
        },
    )
}

/// What an earlier attempt of ours left on the server (a pod lost mid-upload): an
/// unfinished upload, created with our headers, holding `parts`.
async fn leave_unfinished_upload(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    parts: &[(i32, Vec<u8>)],
) {
    let headers = transcoder_activities::storage::content::headers_for(key);
    let upload = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .content_type(headers.content_type)
        .cache_control(headers.cache_control)
        .send()
        .await
        .expect("create upload");
    let id = upload.upload_id().expect("upload id");
    for (n, bytes) in parts {
        client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(id)
            .part_number(*n)
            .body(bytes.clone().into())
            .send()
            .await
            .expect("upload part");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_resumes_after_interruption() {
    let h = Harness::without_server();
    let server = S3Server::start(&h.path("logs"));
    server.create_bucket("archive").await;
    let client = server.client();
    let store = backend(&server);

    // 12 MiB of varied bytes: parts of 5, 5 and 2 MiB.
    let mib = 1024 * 1024;
    let data: Vec<u8> = (0..12 * mib).map(|i| (i * 7 + i / 4096) as u8).collect();
    let file = h.path("big.mp4");
    std::fs::write(&file, &data).unwrap();

    // Interrupted after two parts: the resumed upload keeps both and sends only the third.
    let key = "mezzanine/c/m/mezzanine.mp4";
    leave_unfinished_upload(
        &client,
        "archive",
        key,
        &[
            (1, data[..5 * mib].to_vec()),
            (2, data[5 * mib..10 * mib].to_vec()),
        ],
    )
    .await;
    let report = store
        .put_file(&file, &ObjectRef::new("archive", key))
        .await
        .expect("resumed upload");
    assert_eq!(report.parts_reused, 2, "{report:?}");
    assert_eq!(report.parts_uploaded, 1, "{report:?}");
    assert_eq!(report.bytes, data.len() as u64);
    assert_eq!(s3::get_bytes(&client, "archive", key).await, data);
    let (ct, cc, size) = s3::head(&client, "archive", key).await;
    assert_eq!((ct.as_str(), size), ("video/mp4", data.len() as i64));
    assert!(cc.contains("no-store"));
    assert_eq!(
        pending_uploads(&client, "archive").await,
        0,
        "the resumed upload was completed"
    );

    // A leftover part whose bytes are not ours (another version of the file) is sent again.
    let key2 = "mezzanine/c/m2/mezzanine.mp4";
    leave_unfinished_upload(
        &client,
        "archive",
        key2,
        &[(1, data[..5 * mib].to_vec()), (2, vec![0u8; 5 * mib])],
    )
    .await;
    let report = store
        .put_file(&file, &ObjectRef::new("archive", key2))
        .await
        .expect("upload");
    assert_eq!(
        (report.parts_reused, report.parts_uploaded),
        (1, 2),
        "{report:?}"
    );
    assert_eq!(s3::get_bytes(&client, "archive", key2).await, data);

    // A fresh upload of a small file is one verified PUT with its content type.
    let small = h.path("thumb.jpg");
    std::fs::write(&small, b"\xff\xd8\xff not really a jpeg").unwrap();
    let report = store
        .put_file(&small, &ObjectRef::new("archive", "a/thumb.jpg"))
        .await
        .expect("small upload");
    assert_eq!((report.parts_uploaded, report.parts_reused), (1, 0));
    let (ct, _, _) = s3::head(&client, "archive", "a/thumb.jpg").await;
    assert_eq!(ct, "image/jpeg");

    // A presigned PUT URL lets a plain HTTP client store exactly that object.
    let url = store
        .presign_put(
            &ObjectRef::new("archive", "a/waveform.json"),
            Duration::from_secs(300),
        )
        .await
        .expect("presign");
    let resp = reqwest::Client::new()
        .put(&url)
        .header("content-type", "application/json")
        .body("{\"version\":2}")
        .send()
        .await
        .expect("PUT to presigned URL");
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(
        s3::get_bytes(&client, "archive", "a/waveform.json").await,
        b"{\"version\":2}"
    );
}

/// A plain HTTP/1.1 file server that honours `Range`, and cuts its first full response
/// off halfway (a dropped connection) so the download must resume.
struct FlakyFileServer {
    port: u16,
    ranges: Arc<Mutex<Vec<Option<String>>>>,
}

impl FlakyFileServer {
    fn start(data: Vec<u8>) -> FlakyFileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let ranges = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&ranges);
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut range = None;
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("range") {
                            range = Some(v.trim().to_string());
                        }
                    }
                }
                seen.lock().unwrap().push(range.clone());
                let total = data.len();
                let start = range
                    .as_deref()
                    .and_then(|r| r.strip_prefix("bytes="))
                    .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok())
                    .unwrap_or(0);
                let head = if range.is_some() {
                    format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{total}\r\nConnection: close\r\n\r\n",
                        total - start,
                        total - 1
                    )
                } else {
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n")
                };
                let _ = stream.write_all(head.as_bytes());
                let end = if n == 0 { total / 2 } else { total };
                let _ = stream.write_all(&data[start..end]);
                let _ = stream.flush();
                // Dropping the stream closes the connection (mid-body on the first request).
            }
        });
        FlakyFileServer { port, ranges }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

/// Unfinished multipart uploads in `bucket`.
async fn pending_uploads(client: &aws_sdk_s3::Client, bucket: &str) -> usize {
    client
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .expect("list uploads")
        .uploads()
        .len()
}

/// Write failures injected between us and a real S3 server. A transient one (the store
/// answering 500 past the SDK's own retries) keeps the unfinished upload and the retry
/// resumes it; a permanent one (a bucket that refuses writes) aborts it, so no parts are
/// left taking space, and nothing is published under the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_multipart_writes_resume_or_clean_up() {
    let h = Harness::without_server();
    let server = S3Server::start(&h.path("logs"));
    server.create_bucket("archive").await;
    let client = server.client();
    let mib = 1024 * 1024;
    let data: Vec<u8> = (0..12 * mib).map(|i| (i * 13 + i / 999) as u8).collect();
    let file = h.path("big.mp4");
    std::fs::write(&file, &data).unwrap();

    // Transient: part 3 answers 500 InternalError five times (the SDK tries four).
    let refused = std::sync::atomic::AtomicUsize::new(0);
    let proxy = FaultProxy::start(server.port, move |r| {
        if r.method == "PUT"
            && r.target.contains("partNumber=3")
            && refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 5
        {
            Fault::Answer(500, "InternalError")
        } else {
            Fault::Pass
        }
    });
    let store = backend_at(&proxy.endpoint());
    let key = "mezzanine/c/flaky/mezzanine.mp4";
    let obj = ObjectRef::new("archive", key);
    let err = store.put_file(&file, &obj).await.expect_err("part 3 fails");
    assert!(!err.is_permanent(), "a 500 is transient: {err}");
    assert!(err.to_string().contains("HTTP 500 InternalError"), "{err}");
    assert_eq!(
        pending_uploads(&client, "archive").await,
        1,
        "kept to resume"
    );
    let report = store
        .put_file(&file, &obj)
        .await
        .expect("the retry resumes");
    assert_eq!(
        (report.parts_reused, report.parts_uploaded),
        (2, 1),
        "{report:?}"
    );
    assert_eq!(s3::get_bytes(&client, "archive", key).await, data);
    assert_eq!(pending_uploads(&client, "archive").await, 0);

    // Permanent: the bucket refuses the parts (403 AccessDenied, a revoked write grant).
    let proxy = FaultProxy::start(server.port, |r| {
        if r.method == "PUT" && r.target.contains("partNumber=") {
            Fault::Answer(403, "AccessDenied")
        } else {
            Fault::Pass
        }
    });
    let store = backend_at(&proxy.endpoint());
    let key = "mezzanine/c/denied/mezzanine.mp4";
    let err = store
        .put_file(&file, &ObjectRef::new("archive", key))
        .await
        .expect_err("refused");
    assert!(err.is_permanent(), "a 403 is permanent: {err}");
    assert!(err.to_string().contains("HTTP 403 AccessDenied"), "{err}");
    assert_eq!(
        pending_uploads(&client, "archive").await,
        0,
        "the unfinished upload is aborted"
    );
    assert!(!s3::list_keys(&client, "archive")
        .await
        .iter()
        .any(|k| k == key));
    // No part was asked twice: a permanent answer is not retried by the SDK either (parts
    // go up to four at a time, so those already in flight were refused too).
    let refused = proxy.count(Fault::Answer(403, "AccessDenied"));
    assert!((1..=3).contains(&refused), "{refused} refusals");
}

/// A whole job through a store that fails now and then: the first uploads of the media
/// bucket answer 500 past the SDK's retries and some connections drop. The activities
/// retry, the job completes, every output verifies and no unfinished upload is left.
/// Then a media bucket that refuses every write: the job fails at once with a failed
/// webhook naming the refusal, and nothing is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_through_a_failing_store() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    static FAILS: AtomicUsize = AtomicUsize::new(0);
    static LATER: AtomicUsize = AtomicUsize::new(0);
    let h = Harness::start().await;
    let server = cloud_server(&h).await;
    let input = h.path("in/clip.mp4");
    make_video(&input, 640, 360, 4, 25).await;
    let hook = WebhookReceiver::start("whsec-flaky");
    let out = h.path("out");
    let media_put =
        |r: &s3::SeenRequest| r.method == "PUT" && r.target.starts_with(&format!("/{MEDIA}/"));

    // The first object written to the media bucket fails five times in a row (past the
    // SDK's four tries, so its activity fails and is retried); later writes drop now and then
    // (within the SDK's retries).
    let first_media_put = std::sync::Mutex::new(None::<String>);
    let flaky = FaultProxy::start(server.port, move |r| {
        if !media_put(r) {
            return Fault::Pass;
        }
        let mut first = first_media_put.lock().unwrap();
        let first = first.get_or_insert_with(|| r.target.clone());
        if *first == r.target {
            return if r.index < 1000 && FAILS.fetch_add(1, SeqCst) < 5 {
                Fault::Answer(500, "InternalError")
            } else {
                Fault::Pass
            };
        }
        // Every fourth later write drops, counted among the media writes (not all requests),
        // so a drop happens however many other requests the job makes.
        if LATER.fetch_add(1, SeqCst) % 4 == 1 {
            Fault::Drop
        } else {
            Fault::Pass
        }
    });
    let args = |media: &str, hook: &WebhookReceiver| {
        vec![
            "run".to_string(),
            s(&input).to_string(),
            "--json".into(),
            "--media-id".into(),
            media.into(),
            "--creator-id".into(),
            "c1".into(),
            "--out".into(),
            s(&out).to_string(),
            "--webhook-url".into(),
            hook.url(),
            "--webhook-secret".into(),
            hook.secret.clone(),
        ]
    };
    let flaky_args = args("flaky1", &hook);
    let run = h
        .run_with_env(
            &flaky_args.iter().map(String::as_str).collect::<Vec<_>>(),
            cloud_env_at(&flaky.endpoint()),
        )
        .await;
    run.assert_success();
    let body = run.json();
    assert_eq!(body["status"], "completed", "{}", run.dump());
    assert_eq!(hook.expect_one_valid().await, body);
    assert!(
        flaky.count(Fault::Answer(500, "InternalError")) > 0 && flaky.count(Fault::Drop) > 0,
        "no fault was injected ({} answered 500, {} dropped)",
        flaky.count(Fault::Answer(500, "InternalError")),
        flaky.count(Fault::Drop)
    );
    assert!(
        run.stderr.contains("permanent=false"),
        "no activity had to retry\n{}",
        run.dump()
    );
    let client = server.client();
    for b in [MEDIA, ASSETS, ARCHIVE] {
        assert_eq!(
            pending_uploads(&client, b).await,
            0,
            "unfinished uploads in {b}"
        );
    }
    verify_remote(&h, &body, &out, &server, "flaky-body.json").await;

    let refusing = FaultProxy::start(server.port, move |r| {
        if media_put(r) {
            Fault::Answer(403, "AccessDenied")
        } else {
            Fault::Pass
        }
    });
    let hook = WebhookReceiver::start("whsec-denied");
    let denied_args = args("denied1", &hook);
    let run = h
        .run_with_env(
            &denied_args.iter().map(String::as_str).collect::<Vec<_>>(),
            cloud_env_at(&refusing.endpoint()),
        )
        .await;
    assert_eq!(run.status.code(), Some(1), "{}", run.dump());
    let body = run.json();
    assert_eq!(body["status"], "failed");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("storage: uploading") && error.contains("HTTP 403 AccessDenied"),
        "{error:?}"
    );
    assert_eq!(hook.expect_one_valid().await, body);
    // Steps running side by side (a ladder chunk, the audio rendition) may each meet the
    // refusal, once: none is retried.
    let failed: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("activity failed"))
        .collect();
    assert!(!failed.is_empty(), "{}", run.dump());
    let mut steps = std::collections::HashSet::new();
    for line in &failed {
        assert!(line.contains("permanent=true"), "{line}");
        let step = line.split("step=").nth(1).and_then(|r| r.split(' ').next());
        assert!(steps.insert(step), "retried: {line}\n{}", run.dump());
    }
    for b in [MEDIA, ASSETS, ARCHIVE] {
        assert_eq!(
            pending_uploads(&client, b).await,
            0,
            "unfinished uploads in {b}"
        );
    }
    assert!(
        !s3::list_keys(&client, MEDIA)
            .await
            .iter()
            .any(|k| k.contains("denied1")),
        "something was published for the refused job"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_input_is_downloaded_resumed_and_archived() {
    let h = Harness::start().await;
    let input = h.path("in/clip.mp4");
    make_video(&input, 320, 240, 3, 25).await;
    let data = std::fs::read(&input).unwrap();
    let server = FlakyFileServer::start(data.clone());
    let hook = WebhookReceiver::start("whsec-http");
    let out = h.path("out");
    let url = hook.url();
    let source = server.url("uploads/clip.mp4?X-Amz-Signature=do-not-log-me");
    let run = h
        .run(&[
            "run",
            &source,
            "--media-type",
            "video",
            "--json",
            "--media-id",
            "http1",
            "--creator-id",
            "c2",
            "--out",
            s(&out),
            "--webhook-url",
            &url,
            "--webhook-secret",
            &hook.secret,
        ])
        .await;
    run.assert_success();
    assert_eq!(run.json()["status"], "completed", "{}", run.dump());
    hook.expect_one_valid().await;
    // The first response was cut off; the second asked for the rest.
    let ranges = server.ranges.lock().unwrap().clone();
    assert!(ranges.len() >= 2, "{ranges:?}");
    assert_eq!(ranges[0], None);
    assert_eq!(ranges[1], Some(format!("bytes={}-", data.len() / 2)));
    // Archived byte for byte as the original.
    let original = object_path(&out, ARCHIVE_BUCKET, "originals/c2/http1/original.mp4");
    assert_eq!(std::fs::read(&original).expect("original archived"), data);
    assert!(
        !run.stderr.contains("do-not-log-me"),
        "the presigned signature reached the logs"
    );
    let history = workflow_history(&h.address(), "transcode-http1").await;
    assert!(
        !searchable_text(&history).contains("do-not-log-me"),
        "the presigned signature is in workflow history"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_input_from_a_host_not_allowed_is_refused() {
    let h = Harness::start().await;
    let server = FlakyFileServer::start(vec![0u8; 1024]);
    let hook = WebhookReceiver::start("whsec-deny");
    let mut job = video_job_payload("deny-in", "c3", &hook);
    job["inputUri"] = serde_json::json!(server.url("clip.mp4"));
    let job_file = write_job(&h, "job.json", &job);
    let out = h.path("out");
    let run = h
        .run_with_env(
            &["run", "--job", s(&job_file), "--json", "--out", s(&out)],
            [("INPUT_ALLOWED_HOSTS", "media.example.com")],
        )
        .await;
    run.assert_failure();
    let body: Value = run.json();
    assert_eq!(body["status"], "failed");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("INPUT_ALLOWED_HOSTS"), "{error}");
    assert_eq!(hook.expect_one_valid().await, body);
    assert!(
        server.ranges.lock().unwrap().is_empty(),
        "a request reached a host outside the allowlist"
    );
    assert!(
        walk(&out.join(MEDIA_BUCKET)).is_empty(),
        "nothing published"
    );
}

/// An allowed host that redirects to one off the allowlist: refused at once, naming the
/// allowlist, after one request (it used to count as transient: 25 requests over 97 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_input_redirected_off_the_allowlist_fails_at_once() {
    let h = Harness::start().await;
    let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
    let port = server.server_addr().to_ip().unwrap().port();
    let requests = Arc::new(Mutex::new(0usize));
    {
        let (server, requests) = (Arc::clone(&server), Arc::clone(&requests));
        std::thread::spawn(move || {
            while let Ok(request) = server.recv() {
                *requests.lock().unwrap() += 1;
                let to = format!("http://localhost:{port}/elsewhere.mp4");
                let header = tiny_http::Header::from_bytes("Location", to.as_bytes()).unwrap();
                let _ = request.respond(tiny_http::Response::empty(302).with_header(header));
            }
        });
    }
    let hook = WebhookReceiver::start("whsec-redirect");
    let mut job = video_job_payload("redir-in", "c3", &hook);
    job["inputUri"] = serde_json::json!(format!("http://127.0.0.1:{port}/clip.mp4"));
    let job_file = write_job(&h, "job.json", &job);
    let out = h.path("out");
    let started = Instant::now();
    let run = h
        .run_with_env(
            &["run", "--job", s(&job_file), "--json", "--out", s(&out)],
            [("INPUT_ALLOWED_HOSTS", "127.0.0.1")],
        )
        .await;
    run.assert_failure();
    let body: Value = run.json();
    assert_eq!(body["status"], "failed", "{}", run.dump());
    let error = body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("redirect") && error.contains("INPUT_ALLOWED_HOSTS"),
        "{error}"
    );
    assert_eq!(hook.expect_one_valid().await, body);
    assert_eq!(
        *requests.lock().unwrap(),
        1,
        "the refused redirect was retried"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the refusal took {:?}",
        started.elapsed()
    );
    server.unblock();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_outlasts_a_receiver_answering_500() {
    let h = Harness::start().await;
    let input = h.path("in/clip.mp4");
    make_video(&input, 320, 240, 2, 25).await;
    let hook = WebhookReceiver::start_failing_first("whsec-retry", 2, 500);
    let out = h.path("out");
    let url = hook.url();
    let run = h
        .run(&[
            "run",
            s(&input),
            "--json",
            "--media-id",
            "retry1",
            "--out",
            s(&out),
            "--webhook-url",
            &url,
            "--webhook-secret",
            &hook.secret,
        ])
        .await;
    run.assert_success();
    let got = hook.wait_for(3, Duration::from_secs(120)).await;
    assert_eq!(got.len(), 3, "expected 2 refused attempts and 1 delivery");
    for r in &got {
        assert!(r.valid, "every attempt is signed correctly");
        assert_eq!(r.body, got[0].body, "the same body on every attempt");
        assert_eq!(r.signature, got[0].signature, "the same signature");
    }
    assert_eq!(got[0].json(), run.json());
    // The job's result records the delivery.
    let history = workflow_history(&h.address(), "transcode-retry1").await;
    let result = workflow_result(&history).expect("workflow result");
    assert_eq!(result["webhookReceipt"]["delivered"], true, "{result:#}");
    assert_eq!(result["webhookReceipt"]["statusCode"], 200, "{result:#}");
}
