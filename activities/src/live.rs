//! Live progress of the activities running in this process, read by `transcoder run` to
//! draw its progress bars. Each running activity registers the same progress channel its
//! heartbeats read (fed by ffmpeg's `-progress` output), so the bars move as ffmpeg works,
//! not at the heartbeat's pace. Other processes see progress through the workflow's
//! `progress` query and the heartbeat details instead.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use tokio::sync::watch;

/// One running activity, as `run` sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveActivity {
    pub workflow_id: String,
    /// The activity type: `mezzanine`, `ladder_chunk`, …
    pub step: String,
    pub activity_id: String,
    pub attempt: u32,
    /// 0.0..=1.0
    pub fraction: f64,
}

struct Entry {
    workflow_id: String,
    step: String,
    activity_id: String,
    attempt: u32,
    progress: watch::Receiver<f64>,
}

fn board() -> &'static Mutex<HashMap<u64, Entry>> {
    static BOARD: OnceLock<Mutex<HashMap<u64, Entry>>> = OnceLock::new();
    BOARD.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Removes the activity from the board when dropped (however the activity ends).
pub struct Registration(u64);

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut board) = board().lock() {
            board.remove(&self.0);
        }
    }
}

/// Puts a running activity on the board until the returned guard is dropped.
pub fn register(
    workflow_id: &str,
    step: &str,
    activity_id: &str,
    attempt: u32,
    progress: watch::Receiver<f64>,
) -> Registration {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let key = NEXT.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut board) = board().lock() {
        board.insert(
            key,
            Entry {
                workflow_id: workflow_id.to_string(),
                step: step.to_string(),
                activity_id: activity_id.to_string(),
                attempt,
                progress,
            },
        );
    }
    Registration(key)
}

/// The activities of `workflow_id` running in this process now, sorted by step and id.
pub fn running(workflow_id: &str) -> Vec<LiveActivity> {
    let mut found: Vec<LiveActivity> = match board().lock() {
        Ok(board) => board
            .values()
            .filter(|e| e.workflow_id == workflow_id)
            .map(|e| LiveActivity {
                workflow_id: e.workflow_id.clone(),
                step: e.step.clone(),
                activity_id: e.activity_id.clone(),
                attempt: e.attempt,
                fraction: *e.progress.borrow(),
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    found.sort_by(|a, b| (&a.step, &a.activity_id).cmp(&(&b.step, &b.activity_id)));
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activities_appear_while_registered() {
        let (tx, rx) = watch::channel(0.0);
        let guard = register("transcode-live-test", "mezzanine", "7", 1, rx);
        tx.send_replace(0.25);
        let now = running("transcode-live-test");
        assert_eq!(now.len(), 1);
        assert_eq!(now[0].step, "mezzanine");
        assert!((now[0].fraction - 0.25).abs() < 1e-9);
        assert!(running("transcode-other").is_empty());
        drop(guard);
        assert!(running("transcode-live-test").is_empty());
    }
}
