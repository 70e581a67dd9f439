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

/// When to switch to multipart and how big the parts are.
#[derive(Clone, Copy, Debug)]
pub struct MultipartPolicy {
    pub threshold: u64,
    pub part_size: u64,
}

impl Default for MultipartPolicy {
    fn default() -> Self {
        Self {
            threshold: 64 * MIB,
            part_size: 16 * MIB,
        }
    }
}

impl MultipartPolicy {
    /// `TRANSCODER_MULTIPART_THRESHOLD` and `TRANSCODER_MULTIPART_PART_SIZE` (bytes).
    pub fn from_env() -> Self {
        let get = |k: &str| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let d = Self::default();
        Self {
            threshold: get("TRANSCODER_MULTIPART_THRESHOLD").unwrap_or(d.threshold),
            part_size: get("TRANSCODER_MULTIPART_PART_SIZE")
                .unwrap_or(d.part_size)
                .max(MIN_PART),
        }
    }

    /// Equal parts of at least `part_size` (and at least 5 MiB), few enough for the 10 000
    /// limit, rounded up to whole MiB.
    pub fn part_size_for(&self, size: u64) -> u64 {
        let needed = size.div_ceil(MAX_PARTS);
        let raw = self.part_size.max(MIN_PART).max(needed);
        raw.div_ceil(MIB) * MIB
    }
}

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

    async fn put_multipart(&self, src: &Path, obj: &ObjectRef, size: u64) -> Result<PutReport> {
        let part_size = self.multipart.part_size_for(size);
        let count = size.div_ceil(part_size);
        let ranges: Vec<(i32, u64, u64)> = (0..count)
            .map(|i| {
                let start = i * part_size;
                (i as i32 + 1, start, part_size.min(size - start))
            })
            .collect();

        let (upload_id, existing) = match self.find_unfinished(obj).await? {
            Some(id) => {
                let parts = self.list_parts(obj, &id).await?;
                (id, parts)
            }
            None => (self.create_upload(obj).await?, Vec::new()),
        };
        let result = self
            .send_parts(src, obj, size, &ranges, &upload_id, existing)
            .await;
        if let Err(e) = &result {
            // A transient failure keeps the unfinished upload: the retry resumes it and sends
            // only the parts that are missing. A permanent one (a bucket that refuses writes,
            // a quota) will fail the same way every time: abort it, so its parts stop taking
            // space and costing money.
            if e.is_permanent() {
                self.abort_upload(obj, &upload_id).await;
            }
        }
        result
    }

    /// Best effort: a store that refuses the abort too keeps the upload until its own
    /// lifecycle rule removes it; the job's error is the one that matters.
    async fn abort_upload(&self, obj: &ObjectRef, upload_id: &str) {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&obj.bucket)
            .key(&obj.key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => {
                tracing::info!(object = %obj, "aborted the unfinished upload after a permanent failure")
            }
            Err(e) => tracing::warn!(
                object = %obj,
                error = %storage_error("aborting the upload of", obj, e),
                "could not abort the unfinished upload"
            ),
        }
    }

    /// Sends the parts `existing` lacks, completes the upload and verifies the object.
    #[allow(clippy::too_many_arguments)]
    async fn send_parts(
        &self,
        src: &Path,
        obj: &ObjectRef,
        size: u64,
        ranges: &[(i32, u64, u64)],
        upload_id: &str,
        existing: Vec<(i32, String, u64)>,
    ) -> Result<PutReport> {
        // The MD5 of each of our parts: it decides which leftover parts are ours and is the
        // Content-MD5 of the ones we send.
        let mut digests = Vec::with_capacity(ranges.len());
        for &(_, start, len) in ranges {
            digests.push(md5_of_range(src, start, len).await?);
        }

        let mut completed: Vec<Option<CompletedPart>> = vec![None; ranges.len()];
        let mut reused = 0u32;
        for (n, etag, part_len) in &existing {
            let idx = (*n as usize).wrapping_sub(1);
            if let (Some(&(_, _, len)), Some(digest)) = (ranges.get(idx), digests.get(idx)) {
                if *part_len == len && unquote(etag) == hex::encode(digest) {
                    completed[idx] = Some(
                        CompletedPart::builder()
                            .part_number(*n)
                            .e_tag(etag.clone())
                            .build(),
                    );
                    reused += 1;
                }
            }
        }
        if reused > 0 {
            tracing::info!(object = %obj, reused, total = ranges.len(), "resuming a multipart upload");
        }

        use futures::stream::{self, StreamExt, TryStreamExt};
        let todo: Vec<usize> = (0..ranges.len())
            .filter(|i| completed[*i].is_none())
            .collect();
        let uploaded = todo.len() as u32;
        let sent: Vec<(usize, CompletedPart)> = stream::iter(todo.into_iter().map(|idx| {
            let (n, start, len) = ranges[idx];
            let digest = digests[idx];
            async move {
                let part = self
                    .upload_part(src, obj, upload_id, n, start, len, &digest)
                    .await?;
                Ok::<_, MediaError>((idx, part))
            }
        }))
        .buffer_unordered(PART_CONCURRENCY)
        .try_collect()
        .await?;
        for (idx, part) in sent {
            completed[idx] = Some(part);
        }
        let parts: Vec<CompletedPart> = completed.into_iter().flatten().collect();

        let out = self
            .client
            .complete_multipart_upload()
            .bucket(&obj.bucket)
            .key(&obj.key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| storage_error("completing the upload of", obj, e))?;

        let mut concat = Md5::new();
        for d in &digests {
            concat.update(d);
        }
        let expected_etag = format!("{}-{}", hex::encode(concat.finalize()), digests.len());
        self.verify(obj, size, Some(&expected_etag), out.e_tag())
            .await?;
        Ok(PutReport {
            bytes: size,
            parts_uploaded: uploaded,
            parts_reused: reused,
        })
    }

    async fn find_unfinished(&self, obj: &ObjectRef) -> Result<Option<String>> {
        let out = self
            .client
            .list_multipart_uploads()
            .bucket(&obj.bucket)
            .prefix(&obj.key)
            .send()
            .await
            .map_err(|e| storage_error("listing unfinished uploads of", obj, e))?;
        // The newest unfinished upload of exactly this key is the one a previous attempt left.
        let newest = out
            .uploads()
            .iter()
            .filter(|u| u.key() == Some(obj.key.as_str()))
            .max_by_key(|u| u.initiated().map(|t| (t.secs(), t.subsec_nanos())))
            .and_then(|u| u.upload_id().map(str::to_string));
        Ok(newest)
    }

    /// `(part number, ETag, size)` of the parts already on the server.
    async fn list_parts(
        &self,
        obj: &ObjectRef,
        upload_id: &str,
    ) -> Result<Vec<(i32, String, u64)>> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .client
                .list_parts()
                .bucket(&obj.bucket)
                .key(&obj.key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await
                .map_err(|e| storage_error("listing uploaded parts of", obj, e))?;
            for p in out.parts() {
                if let (Some(n), Some(etag), Some(size)) = (p.part_number(), p.e_tag(), p.size()) {
                    parts.push((n, etag.to_string(), size.max(0) as u64));
                }
            }
            match (out.is_truncated(), out.next_part_number_marker()) {
                (Some(true), Some(next)) => marker = Some(next.to_string()),
                _ => break,
            }
        }
        Ok(parts)
    }

    async fn create_upload(&self, obj: &ObjectRef) -> Result<String> {
        let headers = headers_for(&obj.key);
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&obj.bucket)
            .key(&obj.key)
            .content_type(headers.content_type)
            .cache_control(headers.cache_control)
            .send()
            .await
            .map_err(|e| storage_error("starting the upload of", obj, e))?;
        out.upload_id()
            .map(str::to_string)
            .ok_or_else(|| MediaError::Storage {
                operation: "starting the upload of",
                object: obj.to_string(),
                detail: "the store returned no upload id".into(),
                permanent: false,
            })
    }

    #[allow(clippy::too_many_arguments)]
    async fn upload_part(
        &self,
        src: &Path,
        obj: &ObjectRef,
        upload_id: &str,
        number: i32,
        start: u64,
        len: u64,
        digest: &[u8; 16],
    ) -> Result<CompletedPart> {
        let body = ByteStream::read_from()
            .path(src)
            .offset(start)
            .length(Length::Exact(len))
            .build()
            .await
            .map_err(std::io::Error::other)
            .map_err(MediaError::io("reading", src))?;
        let out = self
            .client
            .upload_part()
            .bucket(&obj.bucket)
            .key(&obj.key)
            .upload_id(upload_id)
            .part_number(number)
            .content_length(len as i64)
            .content_md5(b64(digest))
            .body(body)
            .send()
            .await
            .map_err(|e| storage_error("uploading a part of", obj, e))?;
        let etag = out.e_tag().unwrap_or_default().to_string();
        Ok(CompletedPart::builder()
            .part_number(number)
            .e_tag(etag)
            .build())
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

/// MD5 of `len` bytes of `path` from `start`, read off the async runtime.
pub async fn md5_of_range(path: &Path, start: u64, len: u64) -> Result<[u8; 16]> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<[u8; 16]> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(&owned)?;
        f.seek(SeekFrom::Start(start))?;
        let mut hasher = Md5::new();
        let mut left = len;
        let mut buf = vec![0u8; MIB as usize];
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = f.read(&mut buf[..want])?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "file shorter than expected",
                ));
            }
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        Ok(hasher.finalize().into())
    })
    .await
    .map_err(|e| MediaError::Io {
        context: "hashing",
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?
    .map_err(MediaError::io("hashing", path))
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
mod tests {
    use super::*;

    #[test]
    fn part_sizes_are_equal_and_bounded() {
        let p = MultipartPolicy {
            threshold: 64 * MIB,
            part_size: 16 * MIB,
        };
        assert_eq!(p.part_size_for(100 * MIB), 16 * MIB);
        // 1 TiB needs parts over 100 MiB to stay within 10 000.
        let tib = 1024 * 1024 * MIB;
        let part = p.part_size_for(tib);
        assert!(tib.div_ceil(part) <= MAX_PARTS);
        assert_eq!(part % MIB, 0);
        let small = MultipartPolicy {
            threshold: 0,
            part_size: 1,
        };
        assert_eq!(small.part_size_for(12 * MIB), MIN_PART);
    }

    #[test]
    fn etag_shapes() {
        assert!(looks_like_md5_etag("9e107d9d372bb6826bd81d3542a419d6"));
        assert!(looks_like_md5_etag("9e107d9d372bb6826bd81d3542a419d6-3"));
        assert!(!looks_like_md5_etag("abc"));
        assert!(!looks_like_md5_etag("9e107d9d372bb6826bd81d3542a419d6-"));
    }
}
