//! One S3-compatible store (R2, B2, AWS, GCS interop, moto…) through `aws-sdk-s3`.
//!
//! - Requests carry checksums only "when required": since 2025 the AWS SDKs add CRC32
//!   checksums by default, which R2 and B2 reject. Integrity comes from `Content-MD5` on
//!   every body we send instead, which all of them check.
//! - Objects up to the multipart threshold are one `PutObject`; larger ones are a multipart
//!   upload of equal parts (R2 requires equal parts of at least 5 MiB, S3 allows 10 000).
//!   A retried or resumed upload finds its own unfinished upload on the server, keeps every
//!   part whose ETag is the MD5 of our bytes for that range, and sends only the rest.
//! - Every upload is verified before it is reported: size by `HeadObject`, and the ETag
//!   against the MD5 we computed (single part) or the multipart ETag rule
//!   (`md5(concat(part md5s))-N`) where the store gives such ETags.

use super::config::S3Settings;
use super::content::headers_for;
use crate::error::{MediaError, Result};
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use base64::Engine;
use md5::{Digest, Md5};
use std::path::Path;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use transcoder_workflows::media::ObjectRef;

const MIB: u64 = 1024 * 1024;
/// S3's (and R2's) smallest part, except the last.
pub const MIN_PART: u64 = 5 * MIB;
const MAX_PARTS: u64 = 10_000;
/// Parts in flight at once for one object.
const PART_CONCURRENCY: usize = 4;

/// What an upload did, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PutReport {
    pub bytes: u64,
    /// Parts sent by this attempt (1 for a single PUT).
    pub parts_uploaded: u32,
    /// Parts found on the server from an earlier attempt and kept.
    pub parts_reused: u32,
}

#[derive(Clone, Debug)]
pub struct S3Backend {
    client: aws_sdk_s3::Client,
    settings: S3Settings,
    multipart: MultipartPolicy,
}

/// Size and ETag of a stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    pub size: u64,
    pub etag: Option<String>,
}

impl S3Backend {
    pub fn new(settings: S3Settings, multipart: MultipartPolicy) -> Self {
        let credentials = Credentials::new(
            settings.access_key_id.clone(),
            settings.secret_access_key.clone(),
            settings.session_token.clone(),
            None,
            "transcoder-environment",
        );
        let timeouts = aws_sdk_s3::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(60))
            .build();
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(settings.path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(4))
            .timeout_config(timeouts);
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Self {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            settings,
            multipart,
        }
    }

    /// `r2 (https://…)`, for logs; never the keys.
    pub fn describe(&self) -> String {
        format!(
            "{} ({}, region {})",
            self.settings.name,
            self.settings
                .endpoint
                .as_deref()
                .unwrap_or("AWS default endpoint"),
            self.settings.region
        )
    }

    pub async fn head(&self, obj: &ObjectRef) -> Result<Option<ObjectMeta>> {
        match self
            .client
            .head_object()
            .bucket(&obj.bucket)
            .key(&obj.key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectMeta {
                size: out.content_length().unwrap_or(0).max(0) as u64,
                etag: out.e_tag().map(str::to_string),
            })),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(storage_error("checking", obj, e)),
        }
    }

    pub async fn delete(&self, obj: &ObjectRef) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&obj.bucket)
            .key(&obj.key)
            .send()
            .await
            .map(|_| ())
            .or_else(|e| match status_of(&e) {
                // Deleting what is already gone succeeds.
                Some(404) => Ok(()),
                _ => Err(storage_error("deleting", obj, e)),
            })
    }

    /// Downloads `obj` into `dest`, continuing a `dest` that already holds the first bytes
    /// (a previous attempt) with a range request. Returns the final size.
    pub async fn download(
        &self,
        obj: &ObjectRef,
        dest: &Path,
        expected: &ObjectMeta,
    ) -> Result<u64> {
        let have = tokio::fs::metadata(dest)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        // A file as long as the object or longer is not a prefix of it: start over.
        let resume_from = if have < expected.size { have } else { 0 };
        let (mut file, mut written) = super::open_download(dest, resume_from).await?;
        if written < expected.size || expected.size == 0 {
            let mut req = self.client.get_object().bucket(&obj.bucket).key(&obj.key);
            if written > 0 {
                req = req.range(format!("bytes={written}-"));
                // The object must not have changed under us between the attempts.
                if let Some(etag) = &expected.etag {
                    req = req.if_match(etag);
                }
            }
            let resp = req.send().await.map_err(|e| match status_of(&e) {
                Some(404) => MediaError::NotFound(obj.to_string()),
                _ => storage_error("downloading", obj, e),
            })?;
            let mut body = resp.body;
            loop {
                match body.try_next().await {
                    Ok(Some(bytes)) => {
                        file.write_all(&bytes)
                            .await
                            .map_err(MediaError::io("writing", dest))?;
                        written += bytes.len() as u64;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = file.flush().await;
                        return Err(MediaError::Storage {
                            operation: "downloading",
                            object: obj.to_string(),
                            detail: format!("connection lost after {written} bytes: {e}"),
                            permanent: false,
                        });
                    }
                }
            }
        }
        file.flush()
            .await
            .map_err(MediaError::io("writing", dest))?;
        if written != expected.size {
            return Err(MediaError::Storage {
                operation: "downloading",
                object: obj.to_string(),
                detail: format!("got {written} bytes, the store lists {}", expected.size),
                permanent: false,
            });
        }
        Ok(written)
    }

    /// Uploads `src` as `obj` (single PUT or resumable multipart) and verifies it.
    pub async fn put_file(&self, src: &Path, obj: &ObjectRef) -> Result<PutReport> {
        let size = tokio::fs::metadata(src)
            .await
            .map_err(MediaError::io("reading", src))?
            .len();
        let report = if size > self.multipart.threshold {
            self.put_multipart(src, obj, size).await?
        } else {
            self.put_single(src, obj, size).await?
        };
        Ok(report)
    }

    async fn put_single(&self, src: &Path, obj: &ObjectRef, size: u64) -> Result<PutReport> {
        let digest = md5_of_range(src, 0, size).await?;
        let headers = headers_for(&obj.key);
        let body = ByteStream::from_path(src)
            .await
            .map_err(std::io::Error::other)
            .map_err(MediaError::io("reading", src))?;
        let out = self
            .client
            .put_object()
            .bucket(&obj.bucket)
            .key(&obj.key)
            .content_length(size as i64)
            .content_md5(b64(&digest))
            .content_type(headers.content_type)
            .cache_control(headers.cache_control)
            .body(body)
            .send()
            .await
            .map_err(|e| storage_error("uploading", obj, e))?;
        let expected_etag = hex::encode(digest);
        self.verify(obj, size, Some(&expected_etag), out.e_tag())
            .await?;
        Ok(PutReport {
            bytes: size,
            parts_uploaded: 1,
            parts_reused: 0,
        })
    }

    /// The object must be there with our size, and with our hash where its ETag is one.
    async fn verify(
        &self,
        obj: &ObjectRef,
        size: u64,
        expected_etag: Option<&str>,
        returned_etag: Option<&str>,
    ) -> Result<()> {
        let meta = self.head(obj).await?.ok_or_else(|| MediaError::Storage {
            operation: "verifying",
            object: obj.to_string(),
            detail: "the object is missing right after its upload".into(),
            permanent: false,
        })?;
        if meta.size != size {
            return Err(MediaError::Storage {
                operation: "verifying",
                object: obj.to_string(),
                detail: format!("stored {} bytes, uploaded {size}", meta.size),
                permanent: false,
            });
        }
        if let (Some(expected), Some(etag)) =
            (expected_etag, meta.etag.as_deref().or(returned_etag))
        {
            let etag = unquote(etag);
            // Only ETags shaped like content hashes are compared (SSE-KMS and some stores
            // give opaque ones).
            if looks_like_md5_etag(etag) && !etag.eq_ignore_ascii_case(expected) {
                return Err(MediaError::Storage {
                    operation: "verifying",
                    object: obj.to_string(),
                    detail: format!("ETag {etag} does not match the uploaded bytes ({expected})"),
                    permanent: false,
                });
            }
        }
        Ok(())
    }

    /// A URL that lets its holder PUT exactly `obj` (with its content type) until it expires.
    pub async fn presign_put(&self, obj: &ObjectRef, expires_in: Duration) -> Result<String> {
        let config = PresigningConfig::expires_in(expires_in).map_err(|e| MediaError::Storage {
            operation: "presigning",
            object: obj.to_string(),
            detail: e.to_string(),
            permanent: true,
        })?;
        let req = self
            .client
            .put_object()
            .bucket(&obj.bucket)
            .key(&obj.key)
            .content_type(headers_for(&obj.key).content_type)
            .presigned(config)
            .await
            .map_err(|e| storage_error("presigning", obj, e))?;
        Ok(req.uri().to_string())
    }
}

fn unquote(etag: &str) -> &str {
    etag.trim_matches('"')
}

fn looks_like_md5_etag(etag: &str) -> bool {
    let (hash, parts) = match etag.split_once('-') {
        Some((h, n)) => (h, Some(n)),
        None => (etag, None),
    };
    hash.len() == 32
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
        && parts.is_none_or(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn b64(digest: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(digest)
}

fn status_of<E, R>(err: &SdkError<E, R>) -> Option<u16>
where
    R: HttpStatus,
{
    err.raw_response().map(HttpStatus::status_u16)
}

/// The status code of a raw response (a trait so `status_of` stays generic over the SDK's
/// response type).
pub trait HttpStatus {
    fn status_u16(&self) -> u16;
}

impl HttpStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_u16(&self) -> u16 {
        self.status().as_u16()
    }
}

/// Maps an SDK error to ours: 4xx other than 408/429 is permanent (a missing bucket or denied
/// access does not heal by retrying); throttling, 5xx, timeouts and network errors are not.
fn storage_error<E>(
    operation: &'static str,
    obj: &ObjectRef,
    err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> MediaError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = status_of(&err);
    let code = err.code().map(str::to_string);
    let permanent = match status {
        Some(408 | 429) => false,
        Some(s) if (400..500).contains(&s) => !matches!(
            code.as_deref(),
            Some("RequestTimeout" | "SlowDown" | "RequestTimeTooSkewed")
        ),
        _ => false,
    };
    let detail = match (
        status.filter(|s| !(200..300).contains(s)),
        code,
        err.message(),
    ) {
        (Some(s), Some(c), Some(m)) => format!("HTTP {s} {c}: {m}"),
        (Some(s), Some(c), None) => format!("HTTP {s} {c}"),
        (Some(s), None, _) => format!("HTTP {s}"),
        _ => DisplayErrorContext(&err).to_string(),
    };
    MediaError::Storage {
        operation,
        object: obj.to_string(),
        detail,
        permanent,
    }
}

#[cfg(test)]
mod tests;

mod multipart;
pub use multipart::{md5_of_range, MultipartPolicy};
