//! The embedded store: a local folder with one sub-folder per bucket and objects at
//! `ROOT/<bucket>/<key>`, so the layout on disk is exactly the bucket layout.
//!
//! Writes are atomic (temporary file, then rename) so a reader never sees half an object and
//! a retried upload simply replaces the previous attempt.

use crate::error::{MediaError, Result};
use std::path::{Path, PathBuf};
use transcoder_workflows::media::ObjectRef;

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
        let file_name = dest
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object");
        let tmp = parent.join(format!(".{file_name}.partial-{}", std::process::id()));
        tokio::fs::copy(src, &tmp)
            .await
            .map_err(MediaError::io("writing", &tmp))?;
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
        tokio::fs::rename(&tmp, &dest)
            .await
            .map_err(MediaError::io("publishing", &dest))?;
        Ok(written)
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
    }
}
