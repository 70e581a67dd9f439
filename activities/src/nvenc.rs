//! The NVENC session budget of one worker. Every NVENC output of an ffmpeg run opens one
//! encoder session, so a ladder chunk of four rungs holds four. GeForce cards allow a fixed
//! number of concurrent sessions per system (8 since the early-2024 drivers, 3 to 5 before);
//! the session past the cap fails to open ("OpenEncodeSessionEx failed: out of memory") even
//! though the start-up test encode, one session, worked. Data-centre cards (L4, A10, T4, L40)
//! have no cap; A100/H100/H200 have no NVENC at all and never get here.
//!
//! So a chunk takes its sessions from this budget before it starts ffmpeg, waiting (while it
//! heartbeats) when running chunks hold them, and a chunk with more rungs than the whole
//! budget encodes them in groups that fit. A session that still fails to open (another
//! process on the GPU holds some) is waited out and tried again inside the attempt: it is the
//! GPU being busy, never a reason to fail the job.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Sessions a worker assumes when `TRANSCODER_NVENC_SESSIONS` is not set: the GeForce cap
/// of current drivers, safe on every NVENC GPU (data-centre cards may raise it).
pub const DEFAULT_SESSIONS: u32 = 8;

/// How often, and how long apart, a session that fails to open is tried again within one
/// attempt (about five minutes in all).
pub const OPEN_RETRIES: u32 = 30;
pub const OPEN_RETRY_WAIT: Duration = Duration::from_secs(10);

/// How many NVENC sessions this worker may hold at once; `None` is no cap.
#[derive(Clone, Debug)]
pub struct NvencBudget {
    sessions: Option<Arc<Semaphore>>,
    capacity: Option<u32>,
}

impl Default for NvencBudget {
    fn default() -> Self {
        Self::with_capacity(Some(DEFAULT_SESSIONS))
    }
}

impl NvencBudget {
    /// `Some(n)` caps the sessions at `n` (at least 1); `None` means no cap.
    pub fn with_capacity(capacity: Option<u32>) -> Self {
        let capacity = capacity.map(|n| n.max(1));
        NvencBudget {
            sessions: capacity.map(|n| Arc::new(Semaphore::new(n as usize))),
            capacity,
        }
    }

    /// `TRANSCODER_NVENC_SESSIONS`: a positive number of sessions, or `unlimited` for cards
    /// without a cap. Unset: [`DEFAULT_SESSIONS`].
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("TRANSCODER_NVENC_SESSIONS") {
            Err(_) => Ok(Self::default()),
            Ok(v) => Self::parse(&v),
        }
    }

    fn parse(value: &str) -> Result<Self, String> {
        let v = value.trim().to_ascii_lowercase();
        match v.as_str() {
            "" => Ok(Self::default()),
            "unlimited" | "none" => Ok(Self::with_capacity(None)),
            n => match n.parse::<u32>() {
                Ok(n) if n > 0 => Ok(Self::with_capacity(Some(n))),
                _ => Err(format!(
                    "TRANSCODER_NVENC_SESSIONS={value:?} must be a positive number of sessions or \"unlimited\""
                )),
            },
        }
    }

    pub fn capacity(&self) -> Option<u32> {
        self.capacity
    }

    /// How a chunk of `rungs` NVENC outputs is split into ffmpeg runs: one run when the
    /// budget holds them all, else groups of at most the budget, as even as possible.
    pub fn groups(&self, rungs: usize) -> Vec<usize> {
        let cap = match self.capacity {
            Some(cap) if (cap as usize) < rungs => cap as usize,
            _ => return if rungs == 0 { Vec::new() } else { vec![rungs] },
        };
        let runs = rungs.div_ceil(cap);
        let (base, extra) = (rungs / runs, rungs % runs);
        (0..runs).map(|i| base + usize::from(i < extra)).collect()
    }

    /// Waits for `sessions` sessions (at most the whole budget). `None` when there is no cap.
    pub async fn acquire(&self, sessions: usize) -> Option<OwnedSemaphorePermit> {
        let semaphore = self.sessions.clone()?;
        let cap = self.capacity.unwrap_or(1) as usize;
        let n = sessions.clamp(1, cap) as u32;
        // The semaphore is never closed, so this cannot fail; without a permit the run
        // would still be correct, only unbudgeted.
        semaphore.acquire_many_owned(n).await.ok()
    }
}

/// Whether ffmpeg's error text says an NVENC session could not be opened: the GPU's session
/// cap or its memory, both freed when other encodes end.
pub fn is_session_open_failure(detail: &str) -> bool {
    detail.contains("OpenEncodeSessionEx failed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

    #[test]
    fn settings_parse() {
        assert_eq!(NvencBudget::parse("").unwrap().capacity(), Some(8));
        assert_eq!(NvencBudget::parse(" 3 ").unwrap().capacity(), Some(3));
        assert_eq!(NvencBudget::parse("Unlimited").unwrap().capacity(), None);
        for bad in ["0", "-2", "many", "2.5"] {
            let err = NvencBudget::parse(bad).unwrap_err();
            assert!(err.contains("TRANSCODER_NVENC_SESSIONS"), "{err}");
        }
    }

    #[test]
    fn chunks_with_more_rungs_than_the_budget_run_in_groups() {
        let budget = |n| NvencBudget::with_capacity(Some(n));
        assert_eq!(budget(8).groups(4), vec![4]);
        assert_eq!(budget(4).groups(4), vec![4]);
        assert_eq!(budget(3).groups(4), vec![2, 2]);
        assert_eq!(budget(3).groups(5), vec![3, 2]);
        assert_eq!(budget(1).groups(3), vec![1, 1, 1]);
        assert_eq!(NvencBudget::with_capacity(None).groups(6), vec![6]);
        assert!(budget(2).groups(0).is_empty());
    }

    /// The scheduler under load: many chunks of four rungs on a GeForce budget of 8 never
    /// hold more than 8 sessions at once, and all of them finish.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_sessions_never_exceed_the_budget() {
        let budget = NvencBudget::with_capacity(Some(8));
        let open = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..24 {
            let (budget, open, peak) = (budget.clone(), open.clone(), peak.clone());
            tasks.push(tokio::spawn(async move {
                let rungs = if i % 3 == 0 { 5 } else { 4 };
                let groups = budget.groups(rungs);
                for group in groups {
                    let _permit = budget.acquire(group).await;
                    let now = open.fetch_add(group, SeqCst) + group;
                    peak.fetch_max(now, SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    open.fetch_sub(group, SeqCst);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let peak = peak.load(SeqCst);
        assert!(peak <= 8, "{peak} sessions open at once");
        assert!(peak >= 4, "the budget was never used ({peak})");
        assert_eq!(open.load(SeqCst), 0);
    }

    #[test]
    fn session_open_failures_are_recognised() {
        assert!(is_session_open_failure(
            "[h264_nvenc @ 0x55] OpenEncodeSessionEx failed: out of memory (10): (no details)"
        ));
        assert!(!is_session_open_failure(
            "Cannot load libcuda.so.1 | Error initializing output stream"
        ));
    }
}
