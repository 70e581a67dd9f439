//! Scratch space of one worker process. Activities work in temporary folders that are removed
//! when they end, but a process killed mid-activity (`kill -9`, the OOM killer, a preempted
//! pod on a network volume) leaves its folders behind: the chunk's segments, a mezzanine, tens
//! of megabytes per kill, for good.
//!
//! So each process works inside its own folder `ROOT/work-<pid>-<nanos>`, beside a lock file
//! it holds (`flock`) for as long as it lives. A process that starts removes every `work-*`
//! folder whose lock it can take: its owner is dead, whatever the PID says now. Folders of
//! live processes (several workers may share one state folder) stay. What lives directly
//! in `ROOT` (resumable input downloads, named by their URI) is not touched.

use crate::process::try_lock_exclusive;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

const PREFIX: &str = "work-";
const LOCK_SUFFIX: &str = ".lock";

/// This process's scratch folder; removed, with its lock, when dropped.
#[derive(Debug)]
pub struct ScratchSpace {
    root: PathBuf,
    dir: PathBuf,
    lock_path: PathBuf,
    _lock: File,
}

/// What starting up reclaimed from dead processes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reclaimed {
    pub folders: usize,
    pub bytes: u64,
}

impl ScratchSpace {
    /// Creates and locks this process's folder under `root`, after removing the folders of
    /// processes that are gone.
    pub fn claim(root: &Path) -> io::Result<(Self, Reclaimed)> {
        std::fs::create_dir_all(root)?;
        let reclaimed = reclaim_dead(root);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let name = format!("{PREFIX}{}-{nanos}", std::process::id());
        let lock_path = root.join(format!("{name}{LOCK_SUFFIX}"));
        let lock = open_lock(&lock_path)?;
        // The lock comes first: a folder never exists unlocked while its owner lives.
        if !try_lock_exclusive(&lock)? {
            return Err(io::Error::other(format!(
                "{} is locked by another process",
                lock_path.display()
            )));
        }
        let dir = root.join(&name);
        std::fs::create_dir_all(&dir)?;
        Ok((
            ScratchSpace {
                root: root.to_path_buf(),
                dir,
                lock_path,
                _lock: lock,
            },
            reclaimed,
        ))
    }

    /// The shared root (for files meant to outlive this process, like resumable downloads).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// This process's own folder, where activities make their work folders.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ScratchSpace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

fn open_lock(path: &Path) -> io::Result<File> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
}

/// Removes the `work-*` folders (and lock files) of processes that no longer hold their lock.
fn reclaim_dead(root: &Path) -> Reclaimed {
    let mut reclaimed = Reclaimed::default();
    let Ok(entries) = std::fs::read_dir(root) else {
        return reclaimed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(PREFIX) || name.ends_with(LOCK_SUFFIX) {
            continue;
        }
        let lock_path = root.join(format!("{name}{LOCK_SUFFIX}"));
        let Ok(lock) = open_lock(&lock_path) else {
            continue;
        };
        // Taken: nobody holds it, so the owner is dead. Held while the folder goes.
        if try_lock_exclusive(&lock).unwrap_or(false) {
            let path = entry.path();
            let bytes = size_of_tree(&path);
            if std::fs::remove_dir_all(&path).is_ok() {
                reclaimed.folders += 1;
                reclaimed.bytes += bytes;
            }
            let _ = std::fs::remove_file(&lock_path);
        }
    }
    reclaimed
}

fn size_of_tree(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| size_of_tree(&e.path())).sum())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_process_folder_is_reclaimed_and_a_live_one_kept() {
        let root = tempfile::tempdir().unwrap();
        // A dead process's folder: its lock file exists, nobody holds it.
        let dead = root.path().join("work-999999-1");
        std::fs::create_dir_all(dead.join("mezzanine-abc")).unwrap();
        std::fs::write(dead.join("mezzanine-abc/m.mp4"), vec![0u8; 4096]).unwrap();
        File::create(root.path().join("work-999999-1.lock")).unwrap();
        // A crash between the lock and the folder, or an old folder without a lock file.
        std::fs::create_dir_all(root.path().join("work-999998-1")).unwrap();
        // A live one: held by this process (flock is per open file, so a second claim from
        // the same process cannot take it either).
        let (live, first) = ScratchSpace::claim(root.path()).unwrap();
        assert_eq!(
            first,
            Reclaimed {
                folders: 2,
                bytes: 4096
            }
        );
        assert!(!dead.exists());
        assert!(!root.path().join("work-999999-1.lock").exists());
        // Resumable downloads in the root are not ours to remove.
        std::fs::write(root.path().join("input-0123.partial"), b"half").unwrap();

        let (other, second) = ScratchSpace::claim(root.path()).unwrap();
        assert_eq!(second, Reclaimed::default(), "the live folder was taken");
        assert!(live.dir().is_dir());
        assert_ne!(live.dir(), other.dir());
        assert!(root.path().join("input-0123.partial").exists());

        let dir = other.dir().to_path_buf();
        drop(other);
        assert!(
            !dir.exists(),
            "a process's own folder goes when it ends normally"
        );
    }
}
