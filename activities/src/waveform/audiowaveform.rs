//! The audiowaveform generator: finding the executable, its command lines, running it.

use super::*;

/// Which audiowaveform to run: `$AUDIOWAVEFORM` when set (set but empty: none), else an
/// executable `audiowaveform` in one of the `PATH` folders.
pub(super) fn resolve_audiowaveform(
    var: Option<OsString>,
    path: Option<OsString>,
) -> Option<PathBuf> {
    match var {
        Some(v) if v.is_empty() => None,
        Some(v) => Some(PathBuf::from(v)),
        None => std::env::split_paths(&path?)
            .map(|dir| dir.join("audiowaveform"))
            .find(|candidate| is_executable(candidate)),
    }
}

pub(super) fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

pub(super) fn hex(rgb: [u8; 3]) -> String {
    format!("{:02x}{:02x}{:02x}", rgb[0], rgb[1], rgb[2])
}

/// `audiowaveform -q -i WAV -o JSON --pixels-per-second 10 -b 8`: the JSON, at 10 points
/// per second (4800 samples per point for our 48 kHz WAV), 8 bits, one merged channel.
pub fn audiowaveform_json_args(wav: &Path, json: &Path) -> Vec<OsString> {
    vec![
        "-q".into(),
        "-i".into(),
        wav.into(),
        "-o".into(),
        json.into(),
        "--pixels-per-second".into(),
        POINTS_PER_SECOND.to_string().into(),
        "-b".into(),
        "8".into(),
    ]
}

/// `audiowaveform -q -i WAV -o PNG -w 1280 -h 720 --zoom auto --no-axis-labels
/// --background-color 0f172a --waveform-color 38bdf8`: the whole audio fitted to the width,
/// in the native palette, without border or time labels.
pub fn audiowaveform_png_args(wav: &Path, png: &Path) -> Vec<OsString> {
    vec![
        "-q".into(),
        "-i".into(),
        wav.into(),
        "-o".into(),
        png.into(),
        "-w".into(),
        IMAGE_WIDTH.to_string().into(),
        "-h".into(),
        IMAGE_HEIGHT.to_string().into(),
        "--zoom".into(),
        "auto".into(),
        "--no-axis-labels".into(),
        "--background-color".into(),
        hex(BACKGROUND).into(),
        "--waveform-color".into(),
        hex(WAVEFORM).into(),
    ]
}

pub(super) async fn run_audiowaveform(bin: &Path, args: &[OsString]) -> Result<()> {
    tracing::debug!(bin = %bin.display(), args = ?args, "audiowaveform");
    let output = crate::ffmpeg::run::run_to_end("audiowaveform", bin, args).await?;
    if output.status.success() {
        Ok(())
    } else {
        Err(MediaError::Tool {
            tool: "audiowaveform",
            status: output.status.to_string(),
            detail: crate::ffmpeg::run::stderr_tail(&output.stderr),
        })
    }
}
