//! Where a task's inputs come from and its output goes, with every problem naming the
//! payload field that caused it.
//!
//! Inputs: `http(s)://` (hosts on `INPUT_ALLOWED_HOSTS`), `gs://` (HMAC keys), `s3://`
//! (the store the bucket is routed to, the embedded folder when the worker has no remote
//! store, else the public base URL `R2_PUBLIC_BASE_URL`, else `NO_PRESIGN_METHOD_AVAILABLE`),
//! each streamed to a file in the attempt's folder within the input size limit.
//! Outputs: `s3://` to the bucket's store (never a folder that dies with a pod), `gs://`
//! with the HMAC keys, or an `output_put_url` (hosts on `OUTPUT_PUT_ALLOWED_HOSTS`) that is
//! checked against the file's MD5 when the server answers with an ETag.

use crate::error::{MediaError, Result};
use crate::fetch::{self, FetchPolicy, InputUri, NO_PRESIGN_METHOD_AVAILABLE};
use crate::secrets::{open_if_sealed, SecretBox};
use crate::storage::config::BackendKind;
use crate::storage::{MultipartPolicy, S3Backend, Storage};
use md5::Digest as _;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use transcoder_workflows::job::redact_uri;
use transcoder_workflows::media::ObjectRef;
use transcoder_workflows::task::TaskOutput;

/// The variable listing the hosts `output_put_url` may name (the allowlist syntax of
/// `INPUT_ALLOWED_HOSTS`); presigned PUTs are refused while it is empty.
pub const PUT_HOSTS_VAR: &str = "OUTPUT_PUT_ALLOWED_HOSTS";

/// What a task reads and writes with.
pub struct TaskIo<'a> {
    pub storage: &'a Storage,
    pub fetch: &'a FetchPolicy,
    pub secrets: Option<&'a SecretBox>,
    pub http: &'a reqwest::Client,
}

/// Where an output went, for the task's answer.
#[derive(Clone, Debug, Serialize)]
pub struct Delivered {
    /// The output URI, or the PUT URL without its query (the signature).
    pub location: String,
    pub size_bytes: u64,
    /// How the upload was checked: `stored` (read back from the store), `etag-md5` (the
    /// PUT server's ETag is the file's MD5), or `status` (a 2xx answer without an ETag).
    pub verified: &'static str,
}

/// The problem with `field`, permanent or not as `cause` is.
fn field_error(field: &str, cause: MediaError) -> MediaError {
    let permanent = cause.is_permanent();
    MediaError::Field {
        field: field.to_string(),
        detail: cause.to_string(),
        permanent,
    }
}

/// A permanent problem with the payload field `field`: the one way task code refuses.
pub(crate) fn refused(field: &str, detail: impl Into<String>) -> MediaError {
    MediaError::Field {
        field: field.to_string(),
        detail: detail.into(),
        permanent: true,
    }
}

/// How an `s3://` URI of a task reaches its bucket on this worker.
enum S3Route {
    /// The store the bucket is routed to (remote, or the embedded folder of a worker that
    /// has no remote store).
    Store,
    /// Read-only: the public base URL.
    Public,
    /// Neither.
    Nowhere,
}

impl TaskIo<'_> {
    fn open(&self, field: &str, text: &str) -> Result<String> {
        open_if_sealed(self.secrets, "task URI", text).map_err(|e| field_error(field, e))
    }

    fn s3_route(&self, bucket: &str, key: &str) -> S3Route {
        let kind = self.storage.backend_kind(bucket);
        if kind != BackendKind::Local {
            return S3Route::Store;
        }
        if self
            .fetch
            .public_read
            .as_ref()
            .and_then(|p| p.url(bucket, key))
            .is_some()
        {
            return S3Route::Public;
        }
        if self.storage.is_local_only() {
            S3Route::Store
        } else {
            S3Route::Nowhere
        }
    }

    /// Reads the input `field` names into a file in `work` (named `stem` plus the URI's
    /// extension) and returns its path. A local-folder object is read in place.
    pub async fn input(&self, field: &str, uri: &str, work: &Path, stem: &str) -> Result<PathBuf> {
        let text = self.open(field, uri)?;
        let parsed = InputUri::parse(&text)
            .map_err(|e| refused(field, format!("{}: {e}", redact_uri(&text))))?;
        if let InputUri::S3 { bucket, key } | InputUri::Gs { bucket, key } = &parsed {
            let allowed = places(INPUTS_VAR);
            if !place_allowed(&allowed, bucket, key) {
                return Err(refused(
                    field,
                    format!(
                        "{bucket}/{key} is outside the places tasks may read ({INPUTS_VAR}={})",
                        allowed.join(",")
                    ),
                ));
            }
        }
        let ext = parsed.extension().unwrap_or_else(|| "bin".into());
        let dest = work.join(format!("{stem}.{ext}"));
        let shown = parsed.redacted();
        let read = async {
            match &parsed {
                InputUri::S3 { bucket, key } => match self.s3_route(bucket, key) {
                    S3Route::Store => {
                        let obj = ObjectRef::new(bucket, key);
                        if let Some(meta) = self.storage.head(&obj).await? {
                            if meta.size > self.fetch.max_bytes {
                                return Err(MediaError::Input {
                                    uri: shown.clone(),
                                    detail: format!("{} bytes is over the input limit of {} bytes (TRANSCODER_MAX_INPUT_BYTES)", meta.size, self.fetch.max_bytes),
                                    permanent: true,
                                });
                            }
                        }
                        let path = self.storage.readable_path(&obj, work).await?;
                        Ok(path)
                    }
                    S3Route::Public => {
                        fetch::fetch(&parsed, &dest, self.fetch, self.storage).await?;
                        Ok(dest.clone())
                    }
                    S3Route::Nowhere => Err(MediaError::Input {
                        uri: shown.clone(),
                        detail: format!("{NO_PRESIGN_METHOD_AVAILABLE}: no store on this worker serves bucket {bucket:?} and no public base URL (R2_PUBLIC_BASE_URL) is set"),
                        permanent: true,
                    }),
                },
                InputUri::Http(_) | InputUri::Gs { .. } => {
                    fetch::fetch(&parsed, &dest, self.fetch, self.storage).await?;
                    Ok(dest.clone())
                }
            }
        };
        read.await.map_err(|e| field_error(field, e))
    }

    /// The object an `s3://` URI names when one of this worker's stores serves its bucket
    /// (what chunked tasks read and write piece by piece); `None` for anything else.
    pub fn store_object(&self, uri: &str) -> Option<ObjectRef> {
        let text = open_if_sealed(self.secrets, "task URI", uri).ok()?;
        match InputUri::parse(&text).ok()? {
            InputUri::S3 { bucket, key } => match self.s3_route(&bucket, &key) {
                S3Route::Store => Some(ObjectRef::new(&bucket, &key)),
                _ => None,
            },
            _ => None,
        }
    }

    /// Where a chunked task with `output` keeps its parts, as (bucket, key prefix): beside
    /// the output (`KEY.parts/`) when it is an object of this worker's stores, else the
    /// place [`PARTS_VAR`] names (on a worker whose storage is only its local folder,
    /// `task-parts/` there by default). `None`: nowhere, so the task runs in one activity.
    pub fn parts_root(&self, output: &TaskOutput) -> Option<(String, String)> {
        if let TaskOutput::Uri(uri) = output {
            if let Some(dest) = self.store_object(uri) {
                return Some((dest.bucket, format!("{}.parts/", dest.key)));
            }
        }
        let place = match std::env::var(PARTS_VAR) {
            Ok(place) if !place.trim().is_empty() => place.trim().trim_matches('/').to_string(),
            _ if self.storage.is_local_only() => "task-parts".to_string(),
            _ => return None,
        };
        let (bucket, prefix) = match place.split_once('/') {
            Some((bucket, prefix)) => (bucket.to_string(), format!("{prefix}/")),
            None => (place, String::new()),
        };
        matches!(self.s3_route(&bucket, &prefix), S3Route::Store).then_some((bucket, prefix))
    }

    /// Checks, before any work, that the output `field` names can be written here.
    pub fn check_output(&self, field: &str, output: &TaskOutput) -> Result<()> {
        match output {
            TaskOutput::PutUrl(sealed) => {
                let url = self.open(field, sealed)?;
                let hosts = put_hosts();
                if hosts.is_empty() {
                    return Err(refused(field, format!("presigned PUT outputs are refused until {PUT_HOSTS_VAR} lists the hosts they may go to")));
                }
                if !crate::allowlist::allows(&hosts, &url) {
                    return Err(refused(
                        field,
                        format!("{}: the host is not in {PUT_HOSTS_VAR}", redact_uri(&url)),
                    ));
                }
                Ok(())
            }
            TaskOutput::Uri(uri) => {
                let text = self.open(field, uri)?;
                if let Ok(InputUri::S3 { bucket, key } | InputUri::Gs { bucket, key }) =
                    InputUri::parse(&text)
                {
                    let allowed = output_places();
                    if !place_allowed(&allowed, &bucket, &key) {
                        return Err(refused(
                            field,
                            format!(
                                "{}/{key} is outside the places tasks may write ({OUTPUTS_VAR}={})",
                                bucket,
                                allowed.join(",")
                            ),
                        ));
                    }
                }
                match InputUri::parse(&text) {
                    Ok(InputUri::S3 { bucket, key }) => match self.s3_route(&bucket, &key) {
                        S3Route::Store => Ok(()),
                        S3Route::Public | S3Route::Nowhere => Err(refused(field, format!("{NO_PRESIGN_METHOD_AVAILABLE}: no store on this worker can write bucket {bucket:?} (set S3_ENDPOINT_URL and/or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or route it with TRANSCODER_BUCKETS)"))),
                    },
                    Ok(InputUri::Gs { .. }) if self.fetch.gcs.is_none() => Err(refused(
                        field,
                        "gs:// outputs need HMAC keys: HMAC_KEY and HMAC_SECRET (or GCS_HMAC_ACCESS_KEY_ID and GCS_HMAC_SECRET)",
                    )),
                    Ok(InputUri::Gs { .. }) => Ok(()),
                    Ok(InputUri::Http(_)) => Err(refused(field, "must be an s3:// or gs:// URI (give a presigned URL as output_put_url)")),
                    Err(e) => Err(refused(field, e)),
                }
            }
        }
    }

    /// Writes `file` to the output `field` names and checks it arrived whole.
    pub async fn output(&self, field: &str, output: &TaskOutput, file: &Path) -> Result<Delivered> {
        let content_type =
            crate::storage::content::headers_for(&file.to_string_lossy()).content_type;
        self.check_output(field, output)?;
        let size = tokio::fs::metadata(file)
            .await
            .map_err(MediaError::io("reading", file))?
            .len();
        let write = async {
            match output {
                TaskOutput::PutUrl(sealed) => {
                    let url = self.open(field, sealed)?;
                    let verified = put_to_url(self.http, &url, file, size, content_type).await?;
                    Ok(Delivered {
                        location: redact_uri(&url),
                        size_bytes: size,
                        verified,
                    })
                }
                TaskOutput::Uri(uri) => {
                    let text = self.open(field, uri)?;
                    let (stored, location) = match InputUri::parse(&text) {
                        Ok(InputUri::S3 { bucket, key }) => {
                            let obj = ObjectRef::new(&bucket, &key);
                            (
                                self.storage.put_file(file, &obj).await?,
                                format!("s3://{bucket}/{key}"),
                            )
                        }
                        Ok(InputUri::Gs { bucket, key }) => {
                            let settings =
                                self.fetch.gcs.clone().ok_or_else(|| {
                                    refused(field, "gs:// outputs need HMAC keys")
                                })?;
                            let gcs = S3Backend::new(settings, MultipartPolicy::default());
                            let obj = ObjectRef::new(&bucket, &key);
                            (
                                gcs.put_file(file, &obj).await?.bytes,
                                format!("gs://{bucket}/{key}"),
                            )
                        }
                        _ => return Err(refused(field, "must be an s3:// or gs:// URI")),
                    };
                    if stored != size {
                        return Err(MediaError::Verification(format!(
                            "{location} holds {stored} bytes after the upload, the output is {size}"
                        )));
                    }
                    Ok(Delivered {
                        location,
                        size_bytes: size,
                        verified: "stored",
                    })
                }
            }
        };
        write.await.map_err(|e| field_error(field, e))
    }
}

/// The variable listing where task outputs may go: `bucket` or `bucket/prefix/`, comma
/// separated. Unset: any bucket this worker's stores (or HMAC keys) can write.
pub const OUTPUTS_VAR: &str = "TRANSCODER_TASK_OUTPUTS";

/// The variable naming where chunked tasks whose output is not an object of this worker's
/// stores (a presigned PUT URL, `gs://`) keep their parts: `bucket` or `bucket/prefix/` of a
/// store this worker writes.
pub const PARTS_VAR: &str = "TRANSCODER_TASK_PARTS";

/// The variable listing where task inputs may be read from (`s3://`, `gs://`), in the same
/// form. Unset: any object this worker's stores (or HMAC keys) can read.
pub const INPUTS_VAR: &str = "TRANSCODER_TASK_INPUTS";

fn output_places() -> Vec<String> {
    places(OUTPUTS_VAR)
}

fn places(var: &str) -> Vec<String> {
    std::env::var(var)
        .map(|v| {
            v.split(',')
                .map(|p| p.trim().trim_start_matches('/').to_string())
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `bucket/key` lies in one of `places` (all allowed when there are none). A key
/// with `..` or `//` segments never does: stores treat them as plain characters, people do not.
fn place_allowed(places: &[String], bucket: &str, key: &str) -> bool {
    if key.split('/').any(|part| part == ".." || part.is_empty()) {
        return false;
    }
    places.is_empty()
        || places.iter().any(|place| match place.split_once('/') {
            None => place == bucket,
            Some((b, prefix)) => b == bucket && key.starts_with(prefix),
        })
}

fn put_hosts() -> Vec<String> {
    std::env::var(PUT_HOSTS_VAR)
        .map(|v| crate::allowlist::parse_rules(&v))
        .unwrap_or_default()
}

/// PUTs `file` to a presigned URL and checks the answer: a 2xx, and when the server sends
/// an ETag that is an MD5 (a single-part upload to S3, R2, GCS), that it is the file's.
async fn put_to_url(
    http: &reqwest::Client,
    url: &str,
    file: &Path,
    size: u64,
    content_type: &str,
) -> Result<&'static str> {
    let shown = redact_uri(url);
    let md5 = {
        let bytes = tokio::fs::read(file)
            .await
            .map_err(MediaError::io("reading", file))?;
        hex::encode(md5::Md5::digest(&bytes))
    };
    let body = tokio::fs::File::open(file)
        .await
        .map_err(MediaError::io("reading", file))?;
    let answer = http
        .put(url)
        .timeout(Duration::from_secs(3600))
        .header(reqwest::header::CONTENT_LENGTH, size)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(reqwest::Body::wrap_stream(
            tokio_util::io::ReaderStream::new(body),
        ))
        .send()
        .await
        .map_err(|e| MediaError::Storage {
            operation: "PUT",
            object: shown.clone(),
            detail: error_text(e),
            permanent: false,
        })?;
    let status = answer.status();
    if !status.is_success() {
        // 4xx: an expired or wrong signature will not heal; 5xx and 429 may.
        let permanent =
            status.is_client_error() && status.as_u16() != 429 && status.as_u16() != 408;
        return Err(MediaError::Storage {
            operation: "PUT",
            object: shown,
            detail: format!("the server answered {status}"),
            permanent,
        });
    }
    let etag = answer
        .headers()
        .get(reqwest::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_ascii_lowercase()
        });
    match etag {
        Some(tag) if tag.len() == 32 && tag.chars().all(|c| c.is_ascii_hexdigit()) => {
            if tag == md5 {
                Ok("etag-md5")
            } else {
                Err(MediaError::Storage {
                    operation: "PUT",
                    object: shown,
                    detail: format!(
                        "the server stored MD5 {tag}, the file's is {md5}: the upload was damaged"
                    ),
                    permanent: false,
                })
            }
        }
        _ => Ok("status"),
    }
}

/// An HTTP error with its causes (reqwest's own text leaves out why a connection failed),
/// without the URL, whose query is a signature.
fn error_text(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_stay_in_their_places() {
        let places = vec!["videos".to_string(), "media/exports/".to_string()];
        assert!(place_allowed(&places, "videos", "any/key.mp4"));
        assert!(place_allowed(&places, "media", "exports/a.mp4"));
        assert!(!place_allowed(&places, "media", "hls/c1/master.m3u8"));
        assert!(!place_allowed(&places, "archive", "x.mp4"));
        assert!(!place_allowed(&places, "videos", "a/../../b.mp4"));
        assert!(!place_allowed(&places, "videos", "a//b.mp4"));
        assert!(place_allowed(&[], "anything", "a/b.wav"));
    }
}
