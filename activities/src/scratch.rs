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
//!
//! Each running activity also leaves a note in its process's `tasks/` folder: its Temporal
//! task token. When a dead process's folder is reclaimed, those notes are the attempts it was
//! running when it died; the worker hands them back to the server as failed at once, so they
//! are retried now instead of after their heartbeat (or start-to-close) timeout.

use crate::process::try_lock_exclusive;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

const PREFIX: &str = "work-";
const LOCK_SUFFIX: &str = ".lock";
const TASKS: &str = "tasks";

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
    /// Activity attempts the dead processes were running: to be handed back.
    pub orphans: Vec<OrphanedTask>,
}

/// An activity attempt whose worker process died while running it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrphanedTask {
    /// The attempt's Temporal task token.
    pub token: Vec<u8>,
    /// The activity type, for the log.
    pub step: String,
    /// The attempt's last heartbeat details (a chunk's checkpoint), JSON, if it wrote any:
    /// handed back with the attempt so the retry continues where it stopped.
    pub details: Option<Vec<u8>>,
}

/// The note of a running activity; removed when the activity ends (dropped).
#[derive(Debug)]
pub struct TaskNote {
    path: Option<PathBuf>,
}

impl Drop for TaskNote {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_file(details_path(path));
        }
    }
}

const DETAILS_SUFFIX: &str = ".details";

/// Where a task note keeps its attempt's latest heartbeat details.
fn details_path(note: &Path) -> PathBuf {
    let mut name = note.as_os_str().to_owned();
    name.push(DETAILS_SUFFIX);
    PathBuf::from(name)
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

    /// Notes that this process runs the attempt with `token` until the note is dropped.
    /// Best effort: without the note, a death costs the timeout wait it always did.
    pub fn note_task(&self, token: &[u8], step: &str) -> TaskNote {
        let tasks = self.dir.join(TASKS);
        let path = self.note_path(token);
        let text = format!("{step}\n{}\n", hex::encode(token));
        let written = std::fs::create_dir_all(&tasks).and_then(|_| std::fs::write(&path, text));
        TaskNote {
            path: written.is_ok().then_some(path),
        }
    }
}

impl ScratchSpace {
    fn note_path(&self, token: &[u8]) -> PathBuf {
        use sha2::Digest;
        let name = hex::encode(&sha2::Sha256::digest(token)[..16]);
        self.dir.join(TASKS).join(name)
    }

    /// Keeps the latest heartbeat details of the running attempt with `token` beside its
    /// note (written whole, then renamed into place). Best effort, like the note.
    pub fn note_details(&self, token: &[u8], details: &[u8]) {
        let path = details_path(&self.note_path(token));
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        if std::fs::write(&partial, details).is_ok() {
            let _ = std::fs::rename(&partial, &path);
        }
    }
}

/// The notes a dead process left in `dir/tasks`.
fn orphans_in(dir: &Path) -> Vec<OrphanedTask> {
    let Ok(entries) = std::fs::read_dir(dir.join(TASKS)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().contains('.'))
        .filter_map(|e| {
            let text = std::fs::read_to_string(e.path()).ok()?;
            let mut lines = text.lines();
            let step = lines.next()?.to_string();
            let token = hex::decode(lines.next()?).ok()?;
            let details = std::fs::read(details_path(&e.path())).ok();
            Some(OrphanedTask {
                token,
                step,
                details,
            })
        })
        .collect()
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
            reclaimed.orphans.extend(orphans_in(&path));
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
                bytes: 4096,
                orphans: Vec::new(),
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

        // An attempt noted by a process that then dies is found by the next one; one that
        // ended is not.
        let ended = other.note_task(b"ended-token", "probe");
        drop(ended);
        // A process elsewhere notes a running attempt and dies; its folder (no lock held)
        // is what this root then finds.
        let elsewhere = tempfile::tempdir().unwrap();
        let (dying, _) = ScratchSpace::claim(elsewhere.path()).unwrap();
        std::mem::forget(dying.note_task(&[0, 1, 2, 255], "ladder_chunk"));
        dying.note_details(&[0, 1, 2, 255], b"{\"progress\":0.5}");
        std::mem::forget(dying.note_task(b"no-details", "probe"));
        let dead_dir = root.path().join("work-999997-2");
        std::fs::rename(dying.dir(), &dead_dir).unwrap();
        drop(dying);
        let (other, third) = ScratchSpace::claim(root.path()).unwrap();
        let mut orphans = third.orphans;
        orphans.sort_by(|a, b| a.step.cmp(&b.step));
        assert_eq!(
            orphans,
            vec![
                OrphanedTask {
                    token: vec![0, 1, 2, 255],
                    step: "ladder_chunk".into(),
                    details: Some(b"{\"progress\":0.5}".to_vec()),
                },
                OrphanedTask {
                    token: b"no-details".to_vec(),
                    step: "probe".into(),
                    details: None,
                }
            ]
        );
        assert!(!dead_dir.exists());

        let dir = other.dir().to_path_buf();
        drop(other);
        assert!(
            !dir.exists(),
            "a process's own folder goes when it ends normally"
        );
    }
}
