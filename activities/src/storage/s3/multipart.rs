//! Multipart uploads to an S3-compatible store: equal parts (R2 requires equal parts of at
//! least 5 MiB, S3 allows 10 000), several in flight, and a retried or resumed upload that
//! finds its own unfinished upload on the server, keeps every part whose ETag is the MD5 of
//! our bytes for that range and sends only the rest.

use super::*;

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

impl S3Backend {
    pub(super) async fn put_multipart(
        &self,
        src: &Path,
        obj: &ObjectRef,
        size: u64,
    ) -> Result<PutReport> {
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
