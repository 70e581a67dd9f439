//! The embedded store: a local folder with one sub-folder per bucket and objects at
//! `ROOT/<bucket>/<key>`, so the layout on disk is exactly the bucket layout.
//!
//! Writes are atomic (temporary file, then rename) so a reader never sees half an object and
//! a retried upload simply replaces the previous attempt. The temporary files live in
//! `ROOT/.incoming`, outside every bucket (bucket names cannot start with a dot): a worker
//! killed in the middle of an upload leaves nothing among the keys, and
//! [`LocalStorage::sweep_abandoned`] clears what it did leave.

use crate::error::{MediaError, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};
use transcoder_workflows::media::ObjectRef;

/// Where objects are written before they are renamed into place.
const INCOMING: &str = ".incoming";

#[derive(Clone, Debug)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Maps an object to its path, refusing anything that could leave the bucket folder.
    pub fn path(&self, obj: &ObjectRef) -> Result<PathBuf> {
        let safe_segment = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && !s.contains('\\')
                && !s.chars().any(char::is_control)
        };
        if !safe_segment(&obj.bucket) || obj.bucket.contains('/') {
            return Err(MediaError::BadKey(obj.bucket.clone()));
        }
        if obj.key.starts_with('/') || !obj.key.split('/').all(safe_segment) {
            return Err(MediaError::BadKey(obj.key.clone()));
        }
        Ok(self.root.join(&obj.bucket).join(&obj.key))
    }

    pub async fn put_file(&self, src: &Path, obj: &ObjectRef) -> Result<u64> {
        let dest = self.path(obj)?;
        let parent = dest
            .parent()
            .ok_or_else(|| MediaError::BadKey(obj.key.clone()))?;
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(MediaError::io("creating", parent))?;
        let expected = tokio::fs::metadata(src)
            .await
            .map_err(MediaError::io("reading", src))?
            .len();
        let tmp = self.incoming_path(&dest).await?;
        if let Err(e) = tokio::fs::copy(src, &tmp).await {
            // A failed write must not leave its partial behind: on a full disk the partial
            // would keep the space taken and every retry would fail the same way.
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(MediaError::io("writing", &tmp)(e));
        }
        let written = tokio::fs::metadata(&tmp)
            .await
            .map_err(MediaError::io("reading", &tmp))?
            .len();
        if written != expected {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(MediaError::Io {
                context: "short write to",
                path: dest,
                source: std::io::Error::other(format!("{written} of {expected} bytes")),
            });
        }
        let mut renamed = tokio::fs::rename(&tmp, &dest).await;
        if matches!(&renamed, Err(e) if e.kind() == std::io::ErrorKind::NotFound) {
            // Deleting the folder's last object removed the folder meanwhile: again.
            let _ = tokio::fs::create_dir_all(parent).await;
            renamed = tokio::fs::rename(&tmp, &dest).await;
        }
        if let Err(e) = renamed {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(MediaError::io("publishing", &dest)(e));
        }
        Ok(written)
    }

    /// A fresh temporary path for an upload to `dest`: in `ROOT/.incoming`, or beside `dest`
    /// when the bucket folder is on another file system than the root (a rename cannot cross
    /// file systems).
    async fn incoming_path(&self, dest: &Path) -> Result<PathBuf> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let unique = format!(
            "{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let incoming = self.root.join(INCOMING);
        tokio::fs::create_dir_all(&incoming)
            .await
            .map_err(MediaError::io("creating", &incoming))?;
        let parent = dest.parent().unwrap_or(&self.root);
        let same_device = match (
            tokio::fs::metadata(&incoming).await,
            tokio::fs::metadata(parent).await,
        ) {
            (Ok(a), Ok(b)) => {
                std::os::unix::fs::MetadataExt::dev(&a) == std::os::unix::fs::MetadataExt::dev(&b)
            }
            _ => true,
        };
        Ok(if same_device {
            incoming.join(unique)
        } else {
            let name = dest
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("object");
            parent.join(format!(".{name}.partial-{unique}"))
        })
    }

    /// Deletes uploads in `ROOT/.incoming` untouched for `max_age`: what workers that died
    /// mid-upload left behind. Younger files may belong to a live upload (also of another
    /// process sharing this folder) and stay. Returns how many files were removed.
    pub fn sweep_abandoned(&self, max_age: Duration) -> usize {
        let Ok(entries) = std::fs::read_dir(self.root.join(INCOMING)) else {
            return 0;
        };
        let now = SystemTime::now();
        entries
            .flatten()
            .filter(|e| {
                e.metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|age| age >= max_age)
            })
            .filter(|e| std::fs::remove_file(e.path()).is_ok())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Storage;

    #[test]
    fn paths_stay_inside_the_bucket() {
        let s = LocalStorage {
            root: PathBuf::from("/out"),
        };
        assert_eq!(
            s.path(&ObjectRef::new("media", "c/hls/m/master.m3u8"))
                .unwrap(),
            PathBuf::from("/out/media/c/hls/m/master.m3u8")
        );
        for key in ["../x", "a/../../x", "/etc/passwd", "a//b", "a\\b", "a/./b"] {
            assert!(s.path(&ObjectRef::new("media", key)).is_err(), "{key}");
        }
        assert!(s.path(&ObjectRef::new("..", "x")).is_err());
        assert!(s.path(&ObjectRef::new("a/b", "x")).is_err());
    }

    #[tokio::test]
    async fn put_is_atomic_and_reports_size() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path());
        let src = dir.path().join("src.bin");
        std::fs::write(&src, b"hello").unwrap();
        let obj = ObjectRef::new("bucket", "a/b/c.bin");
        assert!(!storage.exists(&obj).await.unwrap());
        assert_eq!(storage.put_file(&src, &obj).await.unwrap(), 5);
        assert!(storage.exists(&obj).await.unwrap());
        assert_eq!(
            std::fs::read(dir.path().join("bucket/a/b/c.bin")).unwrap(),
            b"hello"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("bucket/a/b"))
            .unwrap()
            .collect();
        assert_eq!(leftovers.len(), 1, "no partial files left behind");
        let incoming = std::fs::read_dir(dir.path().join(INCOMING))
            .unwrap()
            .count();
        assert_eq!(incoming, 0, "the temporary file was renamed into place");
    }

    /// Deleting a folder's last object removes the folders it leaves empty, never the
    /// bucket's, and never a folder that still holds something.
    #[tokio::test]
    async fn deleting_the_last_object_removes_its_empty_folders() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path());
        let src = dir.path().join("src.bin");
        std::fs::write(&src, b"x").unwrap();
        let kept = ObjectRef::new("bucket", "out.mp4.parts/keep.txt");
        let piece = ObjectRef::new("bucket", "out.mp4.parts/abc/piece-00000.mp4");
        for obj in [&kept, &piece] {
            storage.put_file(&src, obj).await.unwrap();
        }
        storage.delete(&piece).await.unwrap();
        assert!(!dir.path().join("bucket/out.mp4.parts/abc").exists());
        assert!(dir.path().join("bucket/out.mp4.parts/keep.txt").exists());
        storage.delete(&kept).await.unwrap();
        assert!(!dir.path().join("bucket/out.mp4.parts").exists());
        assert!(
            dir.path().join("bucket").is_dir(),
            "the bucket's folder stays"
        );
        // Gone already: still fine.
        storage.delete(&kept).await.unwrap();
    }

    /// A write that fails part-way (a full disk, an I/O error) leaves no partial file.
    #[tokio::test]
    async fn a_failed_write_leaves_no_partial() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::local(dir.path());
        // Opening works, reading fails (EIO at address 0): the temporary file exists by then.
        let unreadable = Path::new("/proc/self/mem");
        let err = storage
            .put_file(unreadable, &ObjectRef::new("bucket", "k.bin"))
            .await
            .expect_err("reading /proc/self/mem from 0 fails");
        assert!(err.to_string().starts_with("writing"), "{err}");
        let left: Vec<_> = std::fs::read_dir(dir.path().join(INCOMING))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "partial files left: {left:?}");
        assert!(!dir.path().join("bucket/k.bin").exists());
    }

    #[test]
    fn abandoned_uploads_are_swept_once_old() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalStorage::new(dir.path());
        let incoming = dir.path().join(INCOMING);
        std::fs::create_dir_all(&incoming).unwrap();
        let old = incoming.join("111-0");
        let fresh = incoming.join("222-0");
        std::fs::write(&old, b"cut short").unwrap();
        std::fs::write(&fresh, b"in progress").unwrap();
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        assert_eq!(local.sweep_abandoned(Duration::from_secs(3600)), 1);
        assert!(!old.exists());
        assert!(fresh.exists(), "a recent upload may still be running");
        // No folder yet: nothing to do.
        assert_eq!(
            LocalStorage::new(dir.path().join("none")).sweep_abandoned(Duration::ZERO),
            0
        );
    }
}
