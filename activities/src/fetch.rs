//! Inputs given as URIs: `s3://bucket/key`, `gs://bucket/key` (Google Cloud Storage through
//! its S3 interoperability endpoint with HMAC keys) and `http(s)://` URLs.
//!
//! Downloads stream to a file, check the size limit and the free disk before they start,
//! resume with a range request after a dropped connection (and across activity retries on
//! the same worker, since the partial file's name is derived from the URI), and retry
//! network errors, 408, 429 and 5xx with backoff. Anything else is a permanent error that
//! names the problem. An http(s) host must be on `INPUT_ALLOWED_HOSTS`; redirects are only
//! followed to allowed hosts.

use crate::error::{MediaError, Result};
use crate::storage::config::{BackendKind, S3Settings};
use crate::storage::{open_download, MultipartPolicy, ObjectMeta, S3Backend, Storage};
use sha2::Digest as _;
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use transcoder_workflows::media::{ObjectRef, StoredObject};

/// A parsed input URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputUri {
    Http(url::Url),
    S3 { bucket: String, key: String },
    Gs { bucket: String, key: String },
}

impl InputUri {
    pub fn parse(s: &str) -> std::result::Result<Self, String> {
        let url = url::Url::parse(s).map_err(|e| format!("not a URI ({e})"))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "credentials in the URI are refused; configure them in the environment".into(),
            );
        }
        let bucket_key = || {
            let bucket = url.host_str().unwrap_or_default().to_string();
            let key = url.path().trim_start_matches('/').to_string();
            if bucket.is_empty() || key.is_empty() {
                Err(format!(
                    "{}:// URIs are {}://bucket/key",
                    url.scheme(),
                    url.scheme()
                ))
            } else {
                Ok((bucket, key))
            }
        };
        match url.scheme() {
            "http" | "https" if url.host_str().is_some() => Ok(InputUri::Http(url)),
            "s3" => bucket_key().map(|(bucket, key)| InputUri::S3 { bucket, key }),
            "gs" => bucket_key().map(|(bucket, key)| InputUri::Gs { bucket, key }),
            other => Err(format!(
                "unsupported scheme {other:?} (use s3://, gs://, http:// or https://)"
            )),
        }
    }

    /// The URI without query string or fragment, safe for logs and errors (a presigned
    /// URL's signature lives in its query).
    pub fn redacted(&self) -> String {
        match self {
            InputUri::Http(u) => {
                let mut u = u.clone();
                u.set_query(None);
                u.set_fragment(None);
                u.to_string()
            }
            InputUri::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
            InputUri::Gs { bucket, key } => format!("gs://{bucket}/{key}"),
        }
    }

    /// The file extension of the URI's path, if it has a plausible one.
    pub fn extension(&self) -> Option<String> {
        let path = match self {
            InputUri::Http(u) => u.path().to_string(),
            InputUri::S3 { key, .. } | InputUri::Gs { key, .. } => key.clone(),
        };
        let name = path.rsplit('/').next()?;
        let (_, ext) = name.rsplit_once('.')?;
        (!ext.is_empty() && ext.len() <= 5 && ext.chars().all(|c| c.is_ascii_alphanumeric()))
            .then(|| ext.to_ascii_lowercase())
    }
}

/// Limits and credentials for fetching inputs, from the worker's environment.
#[derive(Clone, Debug)]
pub struct FetchPolicy {
    /// `INPUT_ALLOWED_HOSTS`; http(s) inputs are refused while it is empty.
    pub allowed_hosts: Vec<String>,
    /// `TRANSCODER_MAX_INPUT_BYTES` (default 50 GiB).
    pub max_bytes: u64,
    /// `GCS_HMAC_ACCESS_KEY_ID`/`GCS_HMAC_SECRET` (or the RunPod workers' `HMAC_KEY`/
    /// `HMAC_SECRET`), `GCS_ENDPOINT_URL`.
    pub gcs: Option<S3Settings>,
    /// `R2_PUBLIC_BASE_URL` (and `R2_PUBLIC_BUCKET`): where an `s3://` object can be read
    /// without credentials when no store serves its bucket.
    pub public_read: Option<PublicRead>,
}

/// The public-read fallback for `s3://bucket/key`: `GET {base}/{key}`, for one bucket or
/// (without `R2_PUBLIC_BUCKET`) any.
#[derive(Clone, Debug)]
pub struct PublicRead {
    pub base: url::Url,
    pub bucket: Option<String>,
}

impl PublicRead {
    /// The public URL of `bucket/key`, when this fallback serves the bucket.
    pub fn url(&self, bucket: &str, key: &str) -> Option<url::Url> {
        if self.bucket.as_deref().is_some_and(|b| b != bucket) {
            return None;
        }
        let mut url = self.base.clone();
        let path = format!("{}/{}", url.path().trim_end_matches('/'), key);
        url.set_path(&path);
        Some(url)
    }
}

/// The error code RunPod ffmpeg workers answer when an `s3://` input can be read neither
/// with credentials nor through a public base URL; callers match on it.
pub const NO_PRESIGN_METHOD_AVAILABLE: &str = "NO_PRESIGN_METHOD_AVAILABLE";

pub const DEFAULT_MAX_INPUT_BYTES: u64 = 50 * 1024 * 1024 * 1024;
/// Room left on the scratch disk beyond the input itself (encodes need space too).
const DISK_HEADROOM: u64 = 1024 * 1024 * 1024;
const ATTEMPTS: u32 = 5;

impl FetchPolicy {
    pub fn from_env() -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let hmac = match (get("GCS_HMAC_ACCESS_KEY_ID"), get("GCS_HMAC_SECRET")) {
            (Some(id), Some(secret)) => Some((id, secret)),
            _ => get("HMAC_KEY").zip(get("HMAC_SECRET")),
        };
        let gcs = match hmac {
            Some((id, secret)) => Some(S3Settings {
                name: BackendKind::S3,
                endpoint: Some(
                    get("GCS_ENDPOINT_URL")
                        .unwrap_or_else(|| "https://storage.googleapis.com".into()),
                ),
                region: "auto".into(),
                path_style: true,
                access_key_id: id,
                secret_access_key: secret,
                session_token: None,
            }),
            _ => None,
        };
        Self {
            allowed_hosts: get("INPUT_ALLOWED_HOSTS")
                .map(|v| crate::allowlist::parse_rules(&v))
                .unwrap_or_default(),
            max_bytes: get("TRANSCODER_MAX_INPUT_BYTES")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(DEFAULT_MAX_INPUT_BYTES),
            gcs,
            public_read: get("R2_PUBLIC_BASE_URL")
                .and_then(|base| url::Url::parse(base.trim()).ok())
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .map(|base| PublicRead {
                    base,
                    bucket: get("R2_PUBLIC_BUCKET").map(|b| b.trim().to_string()),
                }),
        }
    }

    /// Also allows `host` (the `run` command allows the host of a URL typed by its user).
    pub fn allow_host(&mut self, host: &str) {
        self.allowed_hosts
            .push(host.trim_end_matches('.').to_ascii_lowercase());
    }
}

/// Archives the job's input at `uri_text` as `dest`, and returns what is stored and how many
/// bytes were downloaded. An input an earlier attempt already archived is not downloaded
/// again (0 bytes). The download goes to a file under `partial_dir` named after the URI, not
/// into a per-attempt folder, so a retry on the same worker continues it by range.
pub async fn archive_input(
    uri_text: &str,
    dest: &ObjectRef,
    policy: &FetchPolicy,
    storage: &Storage,
    partial_dir: &Path,
) -> Result<(StoredObject, u64)> {
    let uri = InputUri::parse(uri_text).map_err(|detail| MediaError::Input {
        uri: transcoder_workflows::job::redact_uri(uri_text),
        detail,
        permanent: true,
    })?;
    let stored = |size_bytes| StoredObject {
        object: dest.clone(),
        size_bytes,
        encoder: None,
    };
    if let Some(meta) = storage.head(dest).await? {
        if meta.size > 0 {
            tracing::info!(dest = %dest, "input already archived; not downloading again");
            return Ok((stored(meta.size), 0));
        }
    }
    std::fs::create_dir_all(partial_dir).map_err(MediaError::io("creating", partial_dir))?;
    let digest = hex::encode(&sha2::Sha256::digest(uri_text.as_bytes())[..12]);
    let partial = partial_dir.join(format!("input-{digest}.partial"));
    let bytes = fetch(&uri, &partial, policy, storage).await?;
    let size = storage.put_file(&partial, dest).await?;
    let _ = tokio::fs::remove_file(&partial).await;
    tracing::info!(input = %uri.redacted(), dest = %dest, bytes, "input fetched and archived");
    Ok((stored(size), bytes))
}

/// Downloads `uri` into `dest` (resuming what an earlier attempt left there) and returns its
/// size.
pub async fn fetch(
    uri: &InputUri,
    dest: &Path,
    policy: &FetchPolicy,
    storage: &Storage,
) -> Result<u64> {
    let shown = uri.redacted();
    match uri {
        InputUri::Http(url) => fetch_http(url, &shown, dest, policy).await,
        InputUri::S3 { bucket, key } => {
            let remote = storage
                .remote(storage.backend_kind(bucket))
                .or_else(|| storage.remote(BackendKind::S3));
            match (remote, policy.public_read.as_ref().and_then(|p| p.url(bucket, key))) {
                (Some(remote), _) => {
                    fetch_object(remote, &ObjectRef::new(bucket, key), &shown, dest, policy).await
                }
                // No credentials for the bucket: its public URL, on a host the operator
                // named (so it needs no allowlist entry of its own).
                (None, Some(public)) => {
                    let mut policy = policy.clone();
                    if let Some(host) = public.host_str() {
                        policy.allow_host(&format!("{host}:{}", public.port_or_known_default().unwrap_or(443)));
                    }
                    fetch_http(&public, &shown, dest, &policy).await
                }
                (None, None) => Err(permanent(&shown, &format!("{NO_PRESIGN_METHOD_AVAILABLE}: this worker can read s3:// objects neither with credentials (S3_ENDPOINT_URL and/or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or a route in TRANSCODER_BUCKETS) nor through a public base URL (R2_PUBLIC_BASE_URL)"))),
            }
        }
        InputUri::Gs { bucket, key } => {
            let settings = policy.gcs.clone().ok_or_else(|| {
                permanent(&shown, "gs:// inputs need GCS_HMAC_ACCESS_KEY_ID and GCS_HMAC_SECRET (HMAC keys of a service account)")
            })?;
            let remote = S3Backend::new(settings, MultipartPolicy::default());
            fetch_object(&remote, &ObjectRef::new(bucket, key), &shown, dest, policy).await
        }
    }
}

async fn fetch_object(
    remote: &S3Backend,
    obj: &ObjectRef,
    shown: &str,
    dest: &Path,
    policy: &FetchPolicy,
) -> Result<u64> {
    let meta: ObjectMeta = remote
        .head(obj)
        .await?
        .ok_or_else(|| MediaError::NotFound(shown.to_string()))?;
    check_size(shown, meta.size, policy)?;
    check_disk(dest, meta.size)?;
    let mut resume = Resume::new(shown);
    loop {
        match remote.download(obj, dest, &meta).await {
            Ok(n) => return Ok(n),
            Err(e) => resume.after(e).await?,
        }
    }
}

async fn fetch_http(url: &url::Url, shown: &str, dest: &Path, policy: &FetchPolicy) -> Result<u64> {
    if policy.allowed_hosts.is_empty() {
        return Err(permanent(shown, "http(s) inputs are refused until INPUT_ALLOWED_HOSTS lists the hosts they may come from"));
    }
    if !crate::allowlist::allows(&policy.allowed_hosts, url.as_str()) {
        return Err(permanent(shown, "the host is not in INPUT_ALLOWED_HOSTS"));
    }
    let rules = policy.allowed_hosts.clone();
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                attempt.error("too many redirects")
            } else if crate::allowlist::allows(&rules, attempt.url().as_str()) {
                attempt.follow()
            } else {
                attempt.error("redirect to a host not in INPUT_ALLOWED_HOSTS")
            }
        }))
        .build()
        .map_err(|e| transient(shown, format!("building the HTTP client: {e}")))?;

    let mut total: Option<u64> = None;
    let mut checked_disk = false;
    let mut resume = Resume::new(shown);
    loop {
        let have = tokio::fs::metadata(dest)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        match http_attempt(
            &client,
            url,
            shown,
            dest,
            have,
            policy,
            &mut total,
            &mut checked_disk,
        )
        .await
        {
            Ok(n) => return Ok(n),
            Err(e) => resume.after(e).await?,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn http_attempt(
    client: &reqwest::Client,
    url: &url::Url,
    shown: &str,
    dest: &Path,
    have: u64,
    policy: &FetchPolicy,
    total: &mut Option<u64>,
    checked_disk: &mut bool,
) -> Result<u64> {
    let mut req = client.get(url.clone());
    if have > 0 {
        req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
    }
    let resp = req.send().await.map_err(|e| {
        if e.is_redirect() {
            // Our redirect policy said no (a host off the allowlist, too many hops): asking
            // again gets the same answer, so it is final and says why.
            let why = std::error::Error::source(&e)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "refused".to_string());
            permanent(shown, &format!("the redirect was not followed: {why}"))
        } else {
            transient(shown, format!("request failed: {}", without_url(&e)))
        }
    })?;
    let status = resp.status();
    let (mut file, mut written) = match status.as_u16() {
        206 => {
            // `Content-Range: bytes START-END/TOTAL`: we must be continuing where we stopped.
            let range = resp
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let (start, size) = parse_content_range(&range)
                .ok_or_else(|| transient(shown, format!("unusable Content-Range {range:?}")))?;
            if start != have {
                return Err(transient(
                    shown,
                    format!("the server resumed at {start}, not {have}"),
                ));
            }
            if let Some(size) = size {
                *total = Some(size);
            }
            open_download(dest, have).await?
        }
        200 => {
            // No range support (or a first attempt): start over.
            *total = resp.content_length();
            open_download(dest, 0).await?
        }
        416 if have > 0 && *total == Some(have) => return Ok(have),
        s @ (408 | 429 | 500..=599) => return Err(transient(shown, format!("HTTP {s}"))),
        s => return Err(permanent(shown, &format!("HTTP {s}"))),
    };
    if let Some(size) = *total {
        check_size(shown, size, policy)?;
        if !*checked_disk {
            check_disk(dest, size.saturating_sub(written))?;
            *checked_disk = true;
        }
    }
    let mut resp = resp;
    loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                written += bytes.len() as u64;
                if written > policy.max_bytes {
                    drop(file);
                    let _ = tokio::fs::remove_file(dest).await;
                    return Err(permanent(
                        shown,
                        &format!(
                            "larger than TRANSCODER_MAX_INPUT_BYTES ({} bytes)",
                            policy.max_bytes
                        ),
                    ));
                }
                file.write_all(&bytes)
                    .await
                    .map_err(MediaError::io("writing", dest))?;
            }
            Ok(None) => break,
            Err(e) => {
                let _ = file.flush().await;
                return Err(transient(
                    shown,
                    format!("connection lost after {written} bytes: {}", without_url(&e)),
                ));
            }
        }
    }
    file.flush()
        .await
        .map_err(MediaError::io("writing", dest))?;
    if let Some(size) = *total {
        if written != size {
            return Err(transient(shown, format!("got {written} of {size} bytes")));
        }
    }
    Ok(written)
}

/// `bytes 100-199/1000` → (100, Some(1000)); `bytes 100-199/*` → (100, None).
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, size) = rest.split_once('/')?;
    let (start, _) = range.split_once('-')?;
    let size = match size.trim() {
        "*" => None,
        s => Some(s.parse().ok()?),
    };
    Some((start.trim().parse().ok()?, size))
}

fn check_size(shown: &str, size: u64, policy: &FetchPolicy) -> Result<()> {
    if size > policy.max_bytes {
        return Err(permanent(
            shown,
            &format!(
                "{size} bytes is larger than TRANSCODER_MAX_INPUT_BYTES ({} bytes)",
                policy.max_bytes
            ),
        ));
    }
    Ok(())
}

/// Refuses to start a download that cannot fit (with headroom for the encodes). Not
/// permanent: another worker may have the room.
fn check_disk(dest: &Path, needed: u64) -> Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    if let Some(free) = free_bytes(dir) {
        if free < needed.saturating_add(DISK_HEADROOM) {
            return Err(MediaError::Input {
                uri: dir.display().to_string(),
                detail: format!(
                    "not enough free disk: {needed} bytes needed plus {DISK_HEADROOM} headroom, {free} free"
                ),
                permanent: false,
            });
        }
    }
    Ok(())
}

fn free_bytes(dir: &Path) -> Option<u64> {
    crate::process::disk_space(dir).map(|d| d.free)
}

/// The attempts of one resumable download: each retry continues from what is on disk.
struct Resume<'a> {
    shown: &'a str,
    attempt: u32,
}

impl<'a> Resume<'a> {
    fn new(shown: &'a str) -> Self {
        Self { shown, attempt: 1 }
    }

    /// After a failed attempt: waits (exponential backoff) and returns `Ok` when the download
    /// should go on, or gives `error` back when it is permanent or the attempts are spent.
    async fn after(&mut self, error: MediaError) -> Result<()> {
        if error.is_permanent() || self.attempt >= ATTEMPTS {
            return Err(error);
        }
        tracing::warn!(input = self.shown, attempt = self.attempt, error = %error, "input download interrupted; resuming");
        tokio::time::sleep(Duration::from_millis(500 * 2u64.pow(self.attempt.min(5)))).await;
        self.attempt += 1;
        Ok(())
    }
}

/// reqwest errors print the URL, query string (a presigned signature) included.
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<input URL>");
    }
    s
}

fn permanent(shown: &str, detail: &str) -> MediaError {
    MediaError::Input {
        uri: shown.to_string(),
        detail: detail.to_string(),
        permanent: true,
    }
}

fn transient(shown: &str, detail: String) -> MediaError {
    MediaError::Input {
        uri: shown.to_string(),
        detail,
        permanent: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_redacts() {
        assert_eq!(
            InputUri::parse("s3://bucket/a/b.mp4").unwrap(),
            InputUri::S3 {
                bucket: "bucket".into(),
                key: "a/b.mp4".into()
            }
        );
        let u = InputUri::parse("https://cdn.example.com/x/y.MOV?X-Amz-Signature=secret").unwrap();
        assert_eq!(u.redacted(), "https://cdn.example.com/x/y.MOV");
        assert_eq!(u.extension().as_deref(), Some("mov"));
        assert!(InputUri::parse("ftp://x/y").unwrap_err().contains("scheme"));
        assert!(InputUri::parse("s3://bucket").is_err());
        assert!(InputUri::parse("https://user:pw@example.com/a.mp4").is_err());
        assert!(InputUri::parse("file:///etc/passwd").is_err());
    }

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 100-199/1000"),
            Some((100, Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }
}
