//! Where the pod's Temporal lives: the cluster in `TEMPORAL_ADDRESS`, or, without it, an
//! embedded dev server whose state is on the RunPod network volume when one is mounted.

use super::RunpodError;
use crate::devserver::DevServer;
use crate::temporal::Temporal;
use std::fs::File;
use std::path::{Path, PathBuf};
use transcoder_activities::secrets::SecretBox;

/// Where RunPod mounts a network volume on serverless workers.
pub const DEFAULT_VOLUME: &str = "/runpod-volume";

/// The RunPod network volume, if one is mounted.
#[derive(Clone, Debug)]
pub struct Volume(Option<PathBuf>);

impl Volume {
    pub fn detect(path: &Path) -> Self {
        Volume(path.is_dir().then(|| path.to_path_buf()))
    }

    pub fn path(&self) -> Option<&Path> {
        self.0.as_deref()
    }

    /// The folder on the volume this program keeps its things in.
    pub fn dir(&self) -> Option<PathBuf> {
        self.0.as_ref().map(|v| v.join("transcoder"))
    }
}

/// A connected Temporal, the key that seals webhook secrets for it, and what keeps the
/// embedded server's state to ourselves.
pub struct PodTemporal {
    pub temporal: Temporal,
    pub secrets: SecretBox,
    /// Held for the process's life: a second pod on the same volume must not open the
    /// same SQLite database.
    _lock: Option<File>,
}

/// Connects to `TEMPORAL_ADDRESS`, or starts the embedded fallback and says plainly in the
/// log what it survives.
pub async fn connect(
    volume: &Volume,
    local_state: &Path,
    pod_id: &str,
) -> Result<PodTemporal, RunpodError> {
    if crate::temporal::remote_configured().map_err(|e| RunpodError::Setup(format!("{e:#}")))? {
        // Every pod on the task queue must open every job's sealed secret: one shared key.
        let secrets = SecretBox::from_env()
            .map_err(|e| RunpodError::Setup(e.to_string()))?
            .ok_or_else(|| {
                RunpodError::Setup(format!(
                    "{} is not set: with TEMPORAL_ADDRESS every pod (and every other worker) needs the same key to seal and open webhook secrets",
                    transcoder_activities::secrets::KEY_ENV
                ))
            })?;
        let client = Temporal::connect_remote()
            .await
            .map_err(|e| RunpodError::Setup(format!("{e:#}")))?;
        tracing::info!(
            "Temporal: the configured server (TEMPORAL_ADDRESS or a Temporal config profile)"
        );
        return Ok(PodTemporal {
            temporal: Temporal {
                client,
                server: None,
            },
            secrets,
            _lock: None,
        });
    }

    let (dir, lock, durable) = match volume.dir() {
        Some(shared) => match lock_dir(&shared) {
            Ok(Some(lock)) => (shared, Some(lock), true),
            Ok(None) => {
                // Another live pod on this volume runs the embedded server on it.
                let own = shared.join("pods").join(sanitize(pod_id));
                tracing::warn!(
                    state = %own.display(),
                    "another pod holds the embedded Temporal state on this volume; this pod keeps its own, which other pods do not see"
                );
                let lock = lock_dir(&own).ok().flatten();
                (own, lock, true)
            }
            Err(e) => return Err(e),
        },
        None => (local_state.join("temporal"), None, false),
    };
    if durable {
        tracing::warn!(
            state = %dir.display(),
            "no TEMPORAL_ADDRESS: embedded Temporal dev server in this pod, its state on the network volume. \
             It survives: this process or pod restarting, and a later pod mounting this volume (a job delivered again resumes where it stopped). \
             It does not: share work between pods running at the same time (each embedded server is private), \
             move between data centers (a volume lives in one), or survive deleting the volume. \
             Set TEMPORAL_ADDRESS for production"
        );
    } else {
        tracing::warn!(
            state = %dir.display(),
            "no TEMPORAL_ADDRESS and no network volume at {}: embedded Temporal dev server on this pod's own disk. \
             It survives a restart of this process only: when the pod goes, its jobs' progress goes with it (a job delivered again starts over). \
             Set TEMPORAL_ADDRESS, or attach a network volume",
            DEFAULT_VOLUME
        );
    }
    let secrets =
        SecretBox::from_env_or_state(&dir).map_err(|e| RunpodError::Setup(e.to_string()))?;
    let server = DevServer::start(&dir)
        .await
        .map_err(|e| RunpodError::Setup(format!("starting the embedded Temporal server: {e}")))?;
    tracing::info!(address = %server.address(), ui = %server.ui_url(), "embedded Temporal dev server running");
    let client = crate::temporal::connect_to(&server.address())
        .await
        .map_err(|e| RunpodError::Setup(format!("{e:#}")))?;
    Ok(PodTemporal {
        temporal: Temporal {
            client,
            server: Some(server),
        },
        secrets,
        _lock: lock,
    })
}

/// Takes an exclusive lock on `dir/lock`: `Ok(None)` when another process holds it. A file
/// system without `flock` (some network mounts) counts as unlocked, with a warning.
fn lock_dir(dir: &Path) -> Result<Option<File>, RunpodError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| RunpodError::Setup(format!("creating {}: {e}", dir.display())))?;
    let path = dir.join("lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| RunpodError::Setup(format!("opening {}: {e}", path.display())))?;
    match transcoder_activities::process::try_lock_exclusive(&file) {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        Err(err) => {
            tracing::warn!(path = %path.display(), error = %err, "cannot lock the state folder; assuming this pod is alone on it");
        }
    }
    Ok(Some(file))
}

/// A pod id as a folder name.
fn sanitize(id: &str) -> String {
    let s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "pod".to_string()
    } else {
        s
    }
}
