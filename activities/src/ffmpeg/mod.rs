//! ffmpeg and ffprobe as child processes: argument building in one place ([`args`]) and a
//! runner that parses `-progress` output for heartbeats and keeps stderr for errors.

pub mod args;
pub mod run;

pub use args::FfmpegArgs;
pub use run::{ffmpeg, ffmpeg_with_stderr, ffprobe_json, ProgressSink};
