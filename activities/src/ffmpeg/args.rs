//! Builders for ffmpeg command lines. Each argument is its own `OsString`, never a string
//! spliced into a shell line, so file names with spaces or quotes are safe.

use std::ffi::OsString;
use std::path::Path;

/// Protocols ffmpeg may open for an input. Only plain files: an "mp4" that is really a
/// playlist must not make ffmpeg read other local files or reach the network (DESIGN §6).
pub const INPUT_PROTOCOLS: &str = "file";

#[derive(Debug, Clone, Default)]
pub struct FfmpegArgs {
    args: Vec<OsString>,
}

impl FfmpegArgs {
    /// Common prefix of every run: quiet logs, machine-readable progress on stdout, no stdin.
    pub fn new() -> Self {
        Self::with_loglevel("error")
    }

    /// As [`FfmpegArgs::new`], with a chattier log level for filters that report on stderr
    /// (`loudnorm` prints its measurement at `info`).
    pub fn with_loglevel(level: &str) -> Self {
        let mut a = Self::default();
        a.flags(["-hide_banner", "-nostdin", "-y", "-nostats"])
            .opt("-loglevel", level)
            .opt("-progress", "pipe:1");
        a
    }

    pub fn flag(&mut self, flag: &str) -> &mut Self {
        self.args.push(flag.into());
        self
    }

    pub fn flags<'a>(&mut self, flags: impl IntoIterator<Item = &'a str>) -> &mut Self {
        self.args.extend(flags.into_iter().map(OsString::from));
        self
    }

    pub fn opt(&mut self, name: &str, value: impl Into<OsString>) -> &mut Self {
        self.args.push(name.into());
        self.args.push(value.into());
        self
    }

    /// An input file, restricted to [`INPUT_PROTOCOLS`].
    pub fn input(&mut self, path: &Path) -> &mut Self {
        self.opt("-protocol_whitelist", INPUT_PROTOCOLS)
            .opt("-i", path.as_os_str())
    }

    /// An input file read from `seek` seconds (input seeking: fast, decodes from the
    /// preceding keyframe and discards up to the exact time).
    pub fn input_at(&mut self, seek: f64, path: &Path) -> &mut Self {
        self.opt("-ss", format!("{seek:.3}")).input(path)
    }

    pub fn output(&mut self, path: &Path) -> &mut Self {
        self.args.push(path.as_os_str().to_owned());
        self
    }

    pub fn into_vec(self) -> Vec<OsString> {
        self.args
    }

    pub fn as_slice(&self) -> &[OsString] {
        &self.args
    }
}

/// x264 settings shared by every H.264 encode: fixed GOP of `gop_frames` with IDR frames only
/// where forced (every `gop_seconds`, at identical timestamps in every rendition), no
/// scene-cut keyframes, closed GOPs.
pub fn h264_gop(a: &mut FfmpegArgs, stream: &str, gop_frames: u32, gop_seconds: u32) {
    h264_gop_from(a, stream, gop_frames, gop_seconds, 0.0);
}

/// As [`h264_gop`] for output that starts `offset` seconds (less than a frame) after a GOP
/// boundary of the programme: a mezzanine piece whose first frame falls just after it (at
/// 29.97 fps, frame 1799 is at 60.027 s). Its IDR frames then fall on the same frames as
/// the whole-file encode's.
pub fn h264_gop_from(
    a: &mut FfmpegArgs,
    stream: &str,
    gop_frames: u32,
    gop_seconds: u32,
    offset: f64,
) {
    let time = if offset > 0.0 {
        format!("t+{offset:.9}")
    } else {
        "t".to_string()
    };
    a.opt(&format!("-g:{stream}"), gop_frames.to_string())
        .opt(&format!("-keyint_min:{stream}"), gop_frames.to_string())
        .opt("-sc_threshold", "0")
        .opt("-forced-idr", "1")
        .opt(
            &format!("-force_key_frames:{stream}"),
            format!("expr:gte({time},n_forced*{gop_seconds})"),
        );
}

/// Reading built command lines back in unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::FfmpegArgs;

    /// The command line as strings.
    pub fn strings(args: FfmpegArgs) -> Vec<String> {
        args.into_vec()
            .into_iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect()
    }

    /// The argument after the first `flag`.
    pub fn value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
        let at = args.iter().position(|a| a == flag)?;
        args.get(at + 1).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_protocol_restricted_and_paths_stay_whole() {
        let mut a = FfmpegArgs::new();
        a.input(Path::new("/tmp/my file; rm -rf.mp4"))
            .output(Path::new("/tmp/out.mp4"));
        let v: Vec<String> = a
            .into_vec()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        let i = v.iter().position(|s| s == "-i").unwrap();
        assert_eq!(v[i - 2], "-protocol_whitelist");
        assert_eq!(v[i - 1], "file");
        assert_eq!(v[i + 1], "/tmp/my file; rm -rf.mp4");
        assert_eq!(v.last().unwrap(), "/tmp/out.mp4");
        assert!(v.contains(&"pipe:1".to_string()));
    }
}
