//! Object storage: the embedded local folder, or S3-compatible stores (R2, B2, any S3),
//! chosen per bucket by [`config::StorageConfig`].
//!
//! Activities see one [`Storage`] and name objects by bucket and key; which store holds a
//! bucket is configuration, never workflow logic. Remote objects that ffmpeg must read are
//! downloaded once per worker into a cache folder (a chunked ladder reads the same mezzanine
//! in every chunk activity) and checked against the store's size and ETag on each use.

pub mod config;
pub mod content;
mod local;
pub mod s3;

pub use config::{BackendKind, ConfigError, StorageConfig};
pub use local::LocalStorage;
pub use s3::{MultipartPolicy, ObjectMeta, PutReport, S3Backend};

use crate::error::{MediaError, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use transcoder_workflows::media::{ObjectRef, StoredObject};

/// Where each bucket lives, plus the download cache for remote reads.
#[derive(Clone, Debug)]
pub struct Storage {
    local: LocalStorage,
    r2: Option<Arc<S3Backend>>,
    b2: Option<Arc<S3Backend>>,
    s3: Option<Arc<S3Backend>>,
    routes: BTreeMap<String, BackendKind>,
    default: BackendKind,
    cache: Option<Arc<DownloadCache>>,
}

enum Target<'a> {
    Local(&'a LocalStorage),
    Remote(&'a S3Backend),
}

impl Storage {
    /// Every bucket in the folder `root` (the embedded default).
    pub fn local(root: impl Into<PathBuf>) -> Self {
        Self {
            local: LocalStorage::new(root),
            r2: None,
            b2: None,
            s3: None,
            routes: BTreeMap::new(),
            default: BackendKind::Local,
            cache: None,
        }
    }

    /// The stores the environment configures; buckets routed nowhere stay under `root`.
    pub fn from_env(root: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        let config = StorageConfig::from_env()?;
        Ok(Self::from_config(
            root,
            &config,
            MultipartPolicy::from_env(),
        ))
    }

    pub fn from_config(
        root: impl Into<PathBuf>,
        config: &StorageConfig,
        multipart: MultipartPolicy,
    ) -> Self {
        let make = |s: &Option<config::S3Settings>| {
            s.clone()
                .map(|settings| Arc::new(S3Backend::new(settings, multipart)))
        };
        Self {
            local: LocalStorage::new(root),
            r2: make(&config.r2),
            b2: make(&config.b2),
            s3: make(&config.s3),
            routes: config.routes.clone(),
            default: config.default.unwrap_or(BackendKind::Local),
            cache: None,
        }
    }

    /// Removes uploads to the local folder that workers killed mid-upload left behind, once
    /// they are an hour old (no live copy takes that long). Returns how many were removed.
    pub fn sweep_abandoned_uploads(&self) -> usize {
        self.local
            .sweep_abandoned(std::time::Duration::from_secs(3600))
    }

    /// Remote objects read by ffmpeg are kept in `dir` (shared by the worker's activities)
    /// up to about `max_bytes`.
    pub fn with_download_cache(mut self, dir: impl Into<PathBuf>, max_bytes: u64) -> Self {
        self.cache = Some(Arc::new(DownloadCache {
            dir: dir.into(),
            max_bytes,
            locks: Mutex::new(HashMap::new()),
        }));
        self
    }

    /// Whether every bucket is in the local folder.
    pub fn is_local_only(&self) -> bool {
        self.default == BackendKind::Local && self.routes.values().all(|k| *k == BackendKind::Local)
    }

    /// The backend that holds `bucket`.
    pub fn backend_kind(&self, bucket: &str) -> BackendKind {
        self.routes.get(bucket).copied().unwrap_or(self.default)
    }

    /// The S3 client of one configured backend (for `s3://` inputs).
    pub fn remote(&self, kind: BackendKind) -> Option<&S3Backend> {
        match kind {
            BackendKind::Local => None,
            BackendKind::R2 => self.r2.as_deref(),
            BackendKind::B2 => self.b2.as_deref(),
            BackendKind::S3 => self.s3.as_deref(),
        }
    }

    fn target(&self, bucket: &str) -> Target<'_> {
        match self.remote(self.backend_kind(bucket)) {
            Some(remote) => Target::Remote(remote),
            // Unconfigured routes are refused when the config is read; local is the rest.
            None => Target::Local(&self.local),
        }
    }

    /// One line per route, for the worker's start-up log (endpoints, never keys).
    pub fn describe(&self) -> Vec<String> {
        let name = |kind: BackendKind| match self.remote(kind) {
            Some(r) => r.describe(),
            None => format!("local folder {}", self.local.root().display()),
        };
        let mut lines: Vec<String> = self
            .routes
            .iter()
            .map(|(bucket, kind)| format!("{bucket} → {}", name(*kind)))
            .collect();
        lines.push(format!("other buckets → {}", name(self.default)));
        lines
    }

    /// A local path from which `obj` can be read: the object's own file in the local store,
    /// or a verified download of a remote object (cached per worker, else in `scratch`).
    pub async fn readable_path(&self, obj: &ObjectRef, scratch: &Path) -> Result<PathBuf> {
        match self.target(&obj.bucket) {
            Target::Local(local) => {
                let path = local.path(obj)?;
                match tokio::fs::metadata(&path).await {
                    Ok(meta) if meta.is_file() => Ok(path),
                    Ok(_) => Err(MediaError::NotFound(obj.to_string())),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        Err(MediaError::NotFound(obj.to_string()))
                    }
                    Err(e) => Err(MediaError::Io {
                        context: "reading",
                        path,
                        source: e,
                    }),
                }
            }
            Target::Remote(remote) => {
                let meta = remote
                    .head(obj)
                    .await?
                    .ok_or_else(|| MediaError::NotFound(obj.to_string()))?;
                match &self.cache {
                    Some(cache) => cache.fetch(remote, obj, &meta).await,
                    None => {
                        // Unique per object: renditions share segment file names.
                        let dest = LocalStorage::new(scratch.join("downloads")).path(obj)?;
                        if let Some(parent) = dest.parent() {
                            tokio::fs::create_dir_all(parent)
                                .await
                                .map_err(MediaError::io("creating", parent))?;
                        }
                        remote.download(obj, &dest, &meta).await?;
                        Ok(dest)
                    }
                }
            }
        }
    }

    /// [`Storage::readable_path`] of each of `objs`, in order (each object has its own path).
    pub async fn readable_paths(&self, objs: &[ObjectRef], scratch: &Path) -> Result<Vec<PathBuf>> {
        let mut paths = Vec::with_capacity(objs.len());
        for obj in objs {
            paths.push(self.readable_path(obj, scratch).await?);
        }
        Ok(paths)
    }

    /// Stores `value` as JSON at `obj`, written first to `path`.
    pub async fn put_json<T: serde::Serialize>(
        &self,
        value: &T,
        path: &Path,
        obj: &ObjectRef,
    ) -> Result<u64> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| MediaError::Verification(format!("{obj} as JSON: {e}")))?;
        std::fs::write(path, bytes).map_err(MediaError::io("writing", path))?;
        self.put_file(path, obj).await
    }

    /// Reads each of `objs` (JSON written by [`Storage::put_json`]), in order.
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        objs: &[ObjectRef],
        scratch: &Path,
    ) -> Result<Vec<T>> {
        let mut values = Vec::with_capacity(objs.len());
        for (obj, path) in objs.iter().zip(self.readable_paths(objs, scratch).await?) {
            let bytes = std::fs::read(&path).map_err(MediaError::io("reading", &path))?;
            values.push(
                serde_json::from_slice(&bytes)
                    .map_err(|e| MediaError::Verification(format!("{obj}: {e}")))?,
            );
        }
        Ok(values)
    }

    /// Stores the file at `src` as `obj` and returns the stored size after checking it.
    pub async fn put_file(&self, src: &Path, obj: &ObjectRef) -> Result<u64> {
        Ok(self.put_file_report(src, obj).await?.bytes)
    }

    /// Stores the file at `src` as `obj` and describes what was stored (no encoder named).
    pub async fn store(&self, src: &Path, obj: &ObjectRef) -> Result<StoredObject> {
        let size_bytes = self.put_file(src, obj).await?;
        Ok(StoredObject {
            object: obj.clone(),
            size_bytes,
            encoder: None,
        })
    }

    /// Like [`Storage::put_file`], saying how the upload went (parts sent and resumed).
    pub async fn put_file_report(&self, src: &Path, obj: &ObjectRef) -> Result<PutReport> {
        match self.target(&obj.bucket) {
            Target::Local(local) => Ok(PutReport {
                bytes: local.put_file(src, obj).await?,
                parts_uploaded: 1,
                parts_reused: 0,
            }),
            Target::Remote(remote) => remote.put_file(src, obj).await,
        }
    }

    /// Deletes `obj`; deleting an object that is already gone succeeds (idempotent).
    pub async fn delete(&self, obj: &ObjectRef) -> Result<()> {
        match self.target(&obj.bucket) {
            Target::Local(local) => {
                let path = local.path(obj)?;
                match tokio::fs::remove_file(&path).await {
                    Ok(()) => {
                        // Folders the object leaves empty go too (a folder store has no
                        // objects to hold them), up to the bucket's own folder.
                        let bucket = local.root().join(&obj.bucket);
                        for folder in path.ancestors().skip(1) {
                            if folder == bucket || !folder.starts_with(&bucket) {
                                break;
                            }
                            if tokio::fs::remove_dir(folder).await.is_err() {
                                break;
                            }
                        }
                        Ok(())
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(MediaError::Io {
                        context: "deleting",
                        path,
                        source: e,
                    }),
                }
            }
            Target::Remote(remote) => remote.delete(obj).await,
        }
    }

    /// Size (and ETag, for remote stores) of `obj`, or `None` when it does not exist.
    pub async fn head(&self, obj: &ObjectRef) -> Result<Option<ObjectMeta>> {
        match self.target(&obj.bucket) {
            Target::Local(local) => Ok(tokio::fs::metadata(local.path(obj)?)
                .await
                .ok()
                .filter(|m| m.is_file())
                .map(|m| ObjectMeta {
                    size: m.len(),
                    etag: None,
                })),
            Target::Remote(remote) => remote.head(obj).await,
        }
    }

    pub async fn exists(&self, obj: &ObjectRef) -> Result<bool> {
        Ok(self.head(obj).await?.is_some())
    }

    /// A presigned PUT URL for `obj` (remote stores only).
    pub async fn presign_put(&self, obj: &ObjectRef, expires_in: Duration) -> Result<String> {
        match self.target(&obj.bucket) {
            Target::Remote(remote) => remote.presign_put(obj, expires_in).await,
            Target::Local(_) => Err(MediaError::Storage {
                operation: "presigning",
                object: obj.to_string(),
                detail: "the bucket is in the local folder; presigned URLs need an S3 store".into(),
                permanent: true,
            }),
        }
    }
}

/// Downloads shared by a worker's activities: `DIR/<bucket>/<key>` plus `<key>.etag`, one
/// download at a time per object, the least recently used evicted past `max_bytes`.
#[derive(Debug)]
struct DownloadCache {
    dir: PathBuf,
    max_bytes: u64,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Files handed out within this long are never evicted (an ffmpeg may be about to open one).
const IN_USE: Duration = Duration::from_secs(30 * 60);

impl DownloadCache {
    async fn fetch(
        &self,
        remote: &S3Backend,
        obj: &ObjectRef,
        meta: &ObjectMeta,
    ) -> Result<PathBuf> {
        let path = LocalStorage::new(&self.dir).path(obj)?;
        let tag_path = sidecar(&path, "etag");
        let partial = sidecar(&path, "partial");
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(obj.to_string()).or_default().clone()
        };
        let _guard = lock.lock().await;
        let identity = format!("{} {}", meta.size, meta.etag.as_deref().unwrap_or("-"));
        let cached = tokio::fs::read_to_string(&tag_path).await.ok();
        let size_ok = tokio::fs::metadata(&path)
            .await
            .is_ok_and(|m| m.len() == meta.size);
        if cached.as_deref() == Some(identity.as_str()) && size_ok {
            touch(&path);
            return Ok(path);
        }
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(MediaError::io("creating", parent))?;
        }
        // A partial download of another version of the object is useless.
        let partial_tag = sidecar(&path, "partial-etag");
        if tokio::fs::read_to_string(&partial_tag)
            .await
            .ok()
            .as_deref()
            != Some(identity.as_str())
        {
            let _ = tokio::fs::remove_file(&partial).await;
            tokio::fs::write(&partial_tag, &identity)
                .await
                .map_err(MediaError::io("writing", &partial_tag))?;
        }
        self.evict(meta.size).await;
        remote.download(obj, &partial, meta).await?;
        tokio::fs::rename(&partial, &path)
            .await
            .map_err(MediaError::io("publishing", &path))?;
        tokio::fs::write(&tag_path, &identity)
            .await
            .map_err(MediaError::io("writing", &tag_path))?;
        let _ = tokio::fs::remove_file(&partial_tag).await;
        Ok(path)
    }

    /// Removes the oldest cached objects not used recently until `incoming` more bytes fit.
    async fn evict(&self, incoming: u64) {
        let dir = self.dir.clone();
        let max = self.max_bytes;
        let _ = tokio::task::spawn_blocking(move || {
            let mut files = Vec::new();
            let mut stack = vec![dir];
            while let Some(d) = stack.pop() {
                let Ok(entries) = std::fs::read_dir(&d) else {
                    continue;
                };
                for e in entries.flatten() {
                    let Ok(m) = e.metadata() else { continue };
                    if m.is_dir() {
                        stack.push(e.path());
                    } else if m.is_file() {
                        let mtime = m.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                        files.push((mtime, m.len(), e.path()));
                    }
                }
            }
            let mut total: u64 = files.iter().map(|f| f.1).sum();
            files.sort();
            let now = SystemTime::now();
            for (mtime, len, path) in files {
                if total + incoming <= max {
                    break;
                }
                let idle = now.duration_since(mtime).unwrap_or_default();
                let is_data = !path
                    .extension()
                    .is_some_and(|e| e == "etag" || e == "partial" || e == "partial-etag");
                if is_data && idle > IN_USE && std::fs::remove_file(&path).is_ok() {
                    let _ = std::fs::remove_file(sidecar(&path, "etag"));
                    total = total.saturating_sub(len);
                }
            }
        })
        .await;
    }
}

fn sidecar(path: &Path, ext: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".");
    s.push(ext);
    PathBuf::from(s)
}

/// Marks a cached file as just used (its mtime is the LRU clock).
fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::options().append(true).open(path) {
        let _ = f.set_modified(SystemTime::now());
    }
}

/// Opens `dest` for a download: appending after its first `from` bytes to resume one, or,
/// when `from` is 0, created empty to start over. Returns the file and the bytes already
/// in it.
pub(crate) async fn open_download(dest: &Path, from: u64) -> Result<(tokio::fs::File, u64)> {
    if from > 0 {
        let f = tokio::fs::OpenOptions::new()
            .append(true)
            .open(dest)
            .await
            .map_err(MediaError::io("opening", dest))?;
        Ok((f, from))
    } else {
        let f = tokio::fs::File::create(dest)
            .await
            .map_err(MediaError::io("creating", dest))?;
        Ok((f, 0))
    }
}
