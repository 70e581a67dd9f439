//! The in-flight job list and the heartbeat that reports it.
//!
//! The ping runs on its own tokio task, so an encode or a slow Temporal call can never hold
//! it up (reference §9, pitfall 6), and a job stays in the list from the moment it is taken
//! until its result is delivered or given up on (§17).

use super::client::RunpodClient;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// A job id and its stop switch.
type Tracked = (String, watch::Sender<bool>);

/// Jobs taken and not yet reported, each with a stop switch (the job-stop channel flips it).
#[derive(Clone, Default)]
pub struct InFlight {
    jobs: Arc<Mutex<Vec<Tracked>>>,
}

impl InFlight {
    /// Adds a job and returns the receiver that turns `true` when RunPod asks to stop it.
    pub fn add(&self, id: &str) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        let mut jobs = self.lock();
        jobs.retain(|(j, _)| j != id);
        jobs.push((id.to_string(), tx));
        rx
    }

    pub fn remove(&self, id: &str) {
        self.lock().retain(|(j, _)| j != id);
    }

    pub fn ids(&self) -> Vec<String> {
        self.lock().iter().map(|(j, _)| j.clone()).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Flips the stop switch of every listed job we hold; unknown ids are ignored (§10).
    /// Returns the ids that matched.
    pub fn stop(&self, ids: &[String]) -> Vec<String> {
        let jobs = self.lock();
        let mut stopped = Vec::new();
        for (id, tx) in jobs.iter() {
            if ids.contains(id) {
                let _ = tx.send(true);
                stopped.push(id.clone());
            }
        }
        stopped
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Tracked>> {
        // A panic while holding this lock leaves a plain list behind: still usable.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Pings every `ping_interval` until the process ends: the first at once, then after each
/// ping (so the period is the interval plus the request time, as in the SDK).
pub fn spawn_heartbeat(client: RunpodClient, in_flight: InFlight) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if client.endpoints.ping_url(&[]).is_none() {
            tracing::info!(
                "no RUNPOD_WEBHOOK_PING, RUNPOD_AI_API_KEY or RUNPOD_POD_ID: no heartbeat"
            );
            return;
        }
        tracing::info!(interval = ?client.endpoints.ping_interval, "heartbeat started");
        loop {
            client.ping(&in_flight.ids()).await;
            tokio::time::sleep(client.endpoints.ping_interval).await;
        }
    })
}

/// Listens on the job-stop channel (§10) and flips the stop switch of matching jobs.
pub fn spawn_stop_listener(
    client: RunpodClient,
    in_flight: InFlight,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if client.endpoints.stop_url().is_none() {
            tracing::info!("the job-take URL has no /job-take/: the job-stop channel is off");
            return;
        }
        loop {
            match client.stops().await {
                Ok(ids) if !ids.is_empty() => {
                    let stopped = in_flight.stop(&ids);
                    if !stopped.is_empty() {
                        tracing::info!(jobs = ?stopped, "RunPod asked to stop job(s)");
                    }
                }
                Ok(_) => {}
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    })
}
