//! The ffmpeg command lines that decode the sound for either generator.

use super::*;

/// The decode shared by both generators: first audio stream, through `filter` if any,
/// downmixed to mono, 48 kHz, signed 16-bit PCM.
pub(super) fn mono_pcm(a: &mut FfmpegArgs, source: &Path, filter: Option<&str>) {
    a.input(source).opt("-map", "0:a:0");
    if let Some(filter) = filter {
        a.opt("-af", filter);
    }
    a.opt("-ac", "1")
        .opt("-ar", SAMPLE_RATE.to_string())
        .opt("-c:a", "pcm_s16le");
}

/// ffmpeg writing raw mono samples (s16le) of `source` to stdout, for the native generator.
/// Like [`FfmpegArgs::new`] but without `-progress pipe:1`: stdout carries the samples, and
/// progress is counted from the samples themselves.
pub fn pcm_args(source: &Path, filter: Option<&str>) -> FfmpegArgs {
    let mut a = FfmpegArgs::default();
    a.flags(["-hide_banner", "-nostdin", "-y", "-nostats"])
        .opt("-loglevel", "error");
    mono_pcm(&mut a, source, filter);
    a.opt("-f", "s16le").output(Path::new("pipe:1"));
    a
}

/// ffmpeg writing a mono WAV of `source` for audiowaveform (RF64 only past 4 GiB, about 12
/// hours at 48 kHz mono).
pub fn wav_args(source: &Path, filter: Option<&str>, wav: &Path) -> FfmpegArgs {
    let mut a = FfmpegArgs::new();
    mono_pcm(&mut a, source, filter);
    a.opt("-f", "wav").opt("-rf64", "auto").output(wav);
    a
}
