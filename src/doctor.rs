//! `transcoder doctor`: what this machine has, checked for real, and whether that is enough
//! for the configured mode.

use crate::devserver::DevServer;
use serde::Serialize;
use std::path::Path;
use tokio::process::Command;
use transcoder_activities::encoder::probe_nvenc;

#[derive(Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// Whether the configured mode cannot work without it.
    pub required: bool,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
    /// True when every required check passed.
    pub ready: bool,
}

fn check(name: &str, ok: bool, required: bool, detail: impl Into<String>) -> Check {
    Check {
        name: name.to_string(),
        ok,
        required,
        detail: detail.into(),
    }
}

async fn output_of(program: &std::ffi::OsStr, args: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(program);
    transcoder_activities::process::die_with_parent(cmd.as_std_mut());
    match cmd
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
    {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(out) => Err(format!("exited with {}", out.status)),
        Err(e) => Err(e.to_string()),
    }
}

fn tool(var: &str, default: &str) -> std::ffi::OsString {
    std::env::var_os(var).unwrap_or_else(|| default.into())
}

/// Whether a name appears as a whole word in ffmpeg's `-encoders`/`-filters` listing.
fn listed(listing: &str, name: &str) -> bool {
    listing
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(name))
}

/// Runs every check. `out` is the embedded store to test for writing.
pub async fn run(out: &Path) -> Report {
    let mut checks = Vec::new();
    let ffmpeg = tool("FFMPEG", "ffmpeg");
    let ffprobe = tool("FFPROBE", "ffprobe");
    let nvenc_required = std::env::var("TRANSCODER_ENCODER").as_deref() == Ok("nvenc");

    let version = output_of(&ffmpeg, &["-hide_banner", "-version"]).await;
    let ffmpeg_ok = version.is_ok();
    checks.push(match &version {
        Ok(v) => check("ffmpeg", true, true, v.lines().next().unwrap_or_default()),
        Err(e) => check(
            "ffmpeg",
            false,
            true,
            format!("{}: {e}", ffmpeg.to_string_lossy()),
        ),
    });
    checks.push(
        match output_of(&ffprobe, &["-hide_banner", "-version"]).await {
            Ok(v) => check("ffprobe", true, true, v.lines().next().unwrap_or_default()),
            Err(e) => check(
                "ffprobe",
                false,
                true,
                format!("{}: {e}", ffprobe.to_string_lossy()),
            ),
        },
    );
    if ffmpeg_ok {
        let encoders = output_of(&ffmpeg, &["-hide_banner", "-encoders"])
            .await
            .unwrap_or_default();
        for (name, required) in [
            ("libx264", true),
            ("aac", true),
            ("h264_nvenc", nvenc_required),
        ] {
            let ok = listed(&encoders, name);
            checks.push(check(
                &format!("encoder {name}"),
                ok,
                required,
                if ok {
                    "listed"
                } else {
                    "not in `ffmpeg -encoders`"
                },
            ));
        }
        let filters = output_of(&ffmpeg, &["-hide_banner", "-filters"])
            .await
            .unwrap_or_default();
        for (name, required) in [
            ("loudnorm", true),
            ("zscale", true),
            ("tonemap", true),
            ("scale_cuda", nvenc_required),
        ] {
            let ok = listed(&filters, name);
            checks.push(check(
                &format!("filter {name}"),
                ok,
                required,
                if ok {
                    "listed"
                } else {
                    "not in `ffmpeg -filters`"
                },
            ));
        }
        // Listing proves nothing for NVENC (Debian's ffmpeg lists it everywhere): encode.
        checks.push(match probe_nvenc().await {
            Ok(()) => check(
                "nvenc test encode",
                true,
                nvenc_required,
                "a 1280x720 test encode with h264_nvenc succeeded",
            ),
            Err(why) => check("nvenc test encode", false, nvenc_required, why),
        });
    }
    let audiowaveform = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("audiowaveform"))
            .find(|p| p.is_file())
    });
    checks.push(match audiowaveform {
        Some(p) => check("audiowaveform", true, false, p.display().to_string()),
        None => check(
            "audiowaveform",
            false,
            false,
            "not on PATH: waveforms are drawn by the built-in generator",
        ),
    });

    // Temporal: the configured server must answer; the embedded mode needs the CLI.
    if crate::temporal::remote_configured().unwrap_or(true) {
        checks.push(match crate::temporal::Temporal::connect_remote().await {
            Ok(_) => check(
                "temporal server",
                true,
                true,
                "the configured server answers",
            ),
            Err(e) => check("temporal server", false, true, format!("{e:#}")),
        });
    } else {
        checks.push(match DevServer::find_cli() {
            Ok(p) => check(
                "temporal cli (embedded mode)",
                true,
                true,
                p.display().to_string(),
            ),
            Err(e) => check("temporal cli (embedded mode)", false, true, e.to_string()),
        });
    }

    // Storage: the embedded store must take a write.
    let probe = out.join(".doctor-write-test");
    let writable = std::fs::create_dir_all(out).and_then(|_| std::fs::write(&probe, b"ok"));
    let _ = std::fs::remove_file(&probe);
    checks.push(match writable {
        Ok(()) => check(
            "storage",
            true,
            true,
            format!("{} is writable", out.display()),
        ),
        Err(e) => check("storage", false, true, format!("{}: {e}", out.display())),
    });

    // Remote stores: the configuration must parse and each routed bucket must answer an
    // authenticated request (a HEAD of a key that need not exist: 404 is a good answer).
    match transcoder_activities::Storage::from_env(out) {
        Err(e) => checks.push(check("storage configuration", false, true, e.to_string())),
        Ok(storage) => {
            let config =
                transcoder_activities::storage::StorageConfig::from_env().unwrap_or_default();
            for bucket in config.routes.keys() {
                if storage.backend_kind(bucket)
                    == transcoder_activities::storage::BackendKind::Local
                {
                    continue;
                }
                let name = format!("bucket {bucket} ({})", storage.backend_kind(bucket));
                let probe =
                    transcoder_workflows::media::ObjectRef::new(bucket, ".transcoder-doctor");
                checks.push(match storage.head(&probe).await {
                    Ok(_) => check(&name, true, true, "reachable, credentials accepted"),
                    Err(e) => check(&name, false, true, e.to_string()),
                });
            }
        }
    }

    let ready = checks.iter().all(|c| c.ok || !c.required);
    Report { checks, ready }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_matches_whole_names() {
        let listing = " V....D libx264              libx264 H.264\n V....D libx264rgb           libx264 RGB\n";
        assert!(listed(listing, "libx264"));
        assert!(!listed(listing, "libx26"));
        assert!(!listed(listing, "h264_nvenc"));
    }
}
