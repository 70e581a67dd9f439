//! The pod's fitness, checked as RunPod's SDK does before a worker takes jobs (reference §4,
//! §9): ffmpeg runs, the state folder's disk has room, the machine has memory. A pod that
//! fails sends one `unhealthy` ping naming the check and exits 1, so RunPod replaces it
//! instead of feeding it jobs it would fail. After a failed job the checks run again: a pod
//! whose disk filled or whose ffmpeg broke asks to be replaced (`stopPod`, the SDK's
//! `refresh_worker`). `RUNPOD_SKIP_AUTO_SYSTEM_CHECKS=true` skips them, as in the SDK.

use std::path::Path;

/// A failed check: its name (RunPod's `check`) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unfit {
    pub check: &'static str,
    pub reason: String,
}

/// The SDK's defaults: at least 10 % of the disk free, 4 GB of memory.
const DEFAULT_MIN_DISK_PERCENT: f64 = 10.0;
const DEFAULT_MIN_MEMORY_GB: f64 = 4.0;

fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Runs every check; the first that fails is returned.
pub async fn check(state_dir: &Path) -> Result<(), Unfit> {
    let skip = std::env::var("RUNPOD_SKIP_AUTO_SYSTEM_CHECKS")
        .is_ok_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
    if skip {
        return Ok(());
    }
    ffmpeg_runs().await?;
    disk(
        state_dir,
        env_number("RUNPOD_MIN_DISK_PERCENT", DEFAULT_MIN_DISK_PERCENT),
    )?;
    memory(env_number("RUNPOD_MIN_MEMORY_GB", DEFAULT_MIN_MEMORY_GB))?;
    Ok(())
}

async fn ffmpeg_runs() -> Result<(), Unfit> {
    let program = transcoder_activities::ffmpeg::run::ffmpeg_bin();
    let ran = tokio::process::Command::new(&program)
        .arg("-version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await;
    match ran {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(Unfit {
            check: "ffmpeg",
            reason: format!("{} -version exited with {s}", program.to_string_lossy()),
        }),
        Err(e) => Err(Unfit {
            check: "ffmpeg",
            reason: format!("{} cannot run: {e}", program.to_string_lossy()),
        }),
    }
}

fn disk(dir: &Path, min_percent: f64) -> Result<(), Unfit> {
    let _ = std::fs::create_dir_all(dir);
    let Some(space) = transcoder_activities::process::disk_space(dir) else {
        return Err(Unfit {
            check: "disk",
            reason: format!("cannot read the free space of {}", dir.display()),
        });
    };
    let percent = if space.total == 0 {
        0.0
    } else {
        space.free as f64 * 100.0 / space.total as f64
    };
    if percent < min_percent {
        return Err(Unfit {
            check: "disk",
            reason: format!(
                "{:.1} % of the disk holding {} is free ({} MB), under RUNPOD_MIN_DISK_PERCENT={min_percent}",
                percent,
                dir.display(),
                space.free / 1_000_000
            ),
        });
    }
    Ok(())
}

fn memory(min_gb: f64) -> Result<(), Unfit> {
    let total_kb: Option<f64> = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    });
    match total_kb {
        Some(kb) if kb / 1_000_000.0 < min_gb => Err(Unfit {
            check: "memory",
            reason: format!(
                "{:.1} GB of memory, under RUNPOD_MIN_MEMORY_GB={min_gb}",
                kb / 1_000_000.0
            ),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_under_the_floor_is_named() {
        let dir = std::env::temp_dir();
        assert!(disk(&dir, 0.0).is_ok());
        let unfit = disk(&dir, 101.0).unwrap_err();
        assert_eq!(unfit.check, "disk");
        assert!(
            unfit.reason.contains("RUNPOD_MIN_DISK_PERCENT=101"),
            "{}",
            unfit.reason
        );
        assert_eq!(memory(1e9).unwrap_err().check, "memory");
        assert!(memory(0.0).is_ok());
    }
}
