//! The mezzanine: the source normalized once (upright, progressive, constant frame rate,
//! 8-bit 4:2:0, stereo AAC, picture and sound spanning the same timeline, IDR every GOP,
//! faststart), so every later step reads a predictable file.
//!
//! About 600 lines: the one-run mezzanine, its pieces and their join share the encode
//! settings and the checks that make a piece and a whole file interchangeable, so they stay
//! together (the tests are in `mezzanine/tests.rs`).

use crate::audio::adts::AdtsTrack;
use crate::audio::AAC_ENCODER;
use crate::encoder::{EncoderSettings, VideoEncoder, MEZZANINE_NVENC};
use crate::error::{MediaError, Result};
use crate::ffmpeg::args::h264_gop_from;
use crate::ffmpeg::run::{count_video_packets, ScaledProgress};
use crate::ffmpeg::{ffmpeg, FfmpegArgs};
use crate::nvenc::NvencBudget;
use crate::storage::Storage;
use std::path::Path;
use transcoder_workflows::media::{
    ChunkPlan, FrameRate, HdrTransfer, JoinMezzanineInput, MezzanineAudioInput, MezzanineInput,
    MezzaninePieceInput, MezzanineVideo, PictureEncoder, ProbeResult, StoredObject,
};

/// The share of the source's audio and video frames that may fail to decode. Below it, a
/// damaged stretch is concealed (the decoder patches a broken picture from its neighbours,
/// the constant-rate timeline holds the last good frame over a lost one, lost audio becomes
/// silence); above it the input is refused as damaged, permanently.
pub const MAX_UNDECODABLE_FRACTION: f64 = 0.05;

/// AAC bitrate of the mezzanine's audio: transparent enough to re-encode from later.
pub const MEZZANINE_AUDIO_KBPS: u32 = 256;

/// `duration` is the source's timeline (first stream start to last stream end). A video
/// mezzanine covers exactly that with both streams: a picture that starts late or ends early
/// holds its first or last frame, audio that starts late or ends early is filled with
/// silence. Later steps cut chunks and segments on that one timeline, and players get audio
/// and video of the same length.
pub fn mezzanine_args(
    input: &MezzanineInput,
    source: &Path,
    dest: &Path,
    duration: f64,
    enc: &EncoderSettings,
) -> FfmpegArgs {
    let mut a = FfmpegArgs::new();
    read_source(&mut a, source, 0.0);
    match &input.video {
        Some(video) => {
            // `start_time=0` repeats the first frame back to the timeline's start;
            // `tpad` holds the last one past the picture's end, and `-t` below cuts both
            // streams at the timeline's end.
            let timing = format!(
                "fps={}:start_time=0,tpad=stop_mode=clone:stop_duration={duration:.3}",
                video.frame_rate.to_ffmpeg()
            );
            a.opt("-map", "0:v:0")
                .opt("-vf", video_filter(video, &timing, None, ""));
            encode_video(&mut a, video, enc, 0.0);
        }
        None => {
            a.flag("-vn");
        }
    }
    if input.has_audio {
        encode_audio(&mut a, input.video.is_some());
    }
    if input.video.is_some() {
        a.opt("-t", format!("{duration:.6}"));
    }
    a.flag("-sn")
        .flag("-dn")
        .opt("-map_metadata", "-1")
        .opt("-movflags", "+faststart")
        .opt("-f", "mp4")
        .output(dest);
    a
}

/// The job's source as an input, read from `seek` seconds, under the damage rule: ffmpeg
/// fails (exit 69, [`MediaError::Damaged`]) when more than [`MAX_UNDECODABLE_FRACTION`] of
/// its frames cannot be decoded. Every encode that reads the source goes through here.
pub(crate) fn read_source(a: &mut FfmpegArgs, source: &Path, seek: f64) {
    a.opt("-max_error_rate", MAX_UNDECODABLE_FRACTION.to_string());
    if seek > 0.0 {
        a.input_at(seek, source);
    } else {
        a.input(source);
    }
}

/// The picture's filters, around `timing` (where frames are placed on the constant-rate
/// grid): ffmpeg rotates upright on decode (autorotate); an interlaced source is
/// deinterlaced before anything scales it; the planned size with square pixels (even sides,
/// which 4:2:0 needs); HDR tone mapped to SDR BT.709; 8-bit 4:2:0; then `subtitles` (a
/// filter drawing them) on the finished picture while its timestamps are still the
/// programme's, and last `rebase` (a piece's move to start at 0).
fn video_filter(
    video: &MezzanineVideo,
    timing: &str,
    subtitles: Option<&str>,
    rebase: &str,
) -> String {
    let mut vf: Vec<String> = Vec::new();
    if video.deinterlace {
        vf.push(DEINTERLACE_FILTER.into());
    }
    // A task's picture is what its user gets: the sharper scaler for it.
    let flags = match video.encoder {
        PictureEncoder::Delivery => ":flags=lanczos",
        PictureEncoder::Mezzanine => "",
    };
    vf.push(match video.size {
        Some((w, h)) => format!("scale={w}:{h}{flags}"),
        None => format!("scale=trunc(iw*sar/2)*2:trunc(ih/2)*2{flags}"),
    });
    vf.push("setsar=1".into());
    vf.push(timing.into());
    if let Some(transfer) = video.tone_map_from {
        vf.push(tone_map_filter(transfer));
    }
    vf.push("format=yuv420p".into());
    vf.push(subtitles.unwrap_or_default().into());
    vf.push(rebase.into());
    vf.retain(|f| !f.is_empty());
    vf.join(",")
}

/// The picture of a task made in one run (`DOWNSAMPLING`, `ENCODING` that burns subtitles
/// in): the filters and colour tags of its pieces ([`piece_args`]), on the source's own
/// timing, `subtitles` (a filter) drawn last; the encoder's options are the caller's.
pub fn task_picture_args(a: &mut FfmpegArgs, video: &MezzanineVideo, subtitles: Option<&str>) {
    a.opt("-vf", video_filter(video, "", subtitles, ""));
    colour_tags(a, video);
}

/// BT.709 tags on a picture tone mapped to it.
fn colour_tags(a: &mut FfmpegArgs, video: &MezzanineVideo) {
    if video.tone_map_from.is_some() {
        a.opt("-color_primaries", "bt709")
            .opt("-color_trc", "bt709")
            .opt("-colorspace", "bt709");
    }
}

/// The picture's encoder: for the mezzanine libx264 CRF 18 (or NVENC,
/// [`MEZZANINE_NVENC`], when the worker is set so), for a task's delivered picture the
/// worker's delivery encoder; high profile, an IDR frame every GOP
/// (counted from a GOP boundary `gop_offset` seconds before the first frame).
fn encode_video(
    a: &mut FfmpegArgs,
    video: &MezzanineVideo,
    enc: &EncoderSettings,
    gop_offset: f64,
) {
    let gop_frames = (video.frame_rate.as_f64() * f64::from(video.gop_seconds))
        .round()
        .max(1.0) as u32;
    a.opt("-fps_mode", "cfr");
    match video.encoder {
        PictureEncoder::Delivery => enc.video_codec_args(a),
        PictureEncoder::Mezzanine if enc.mezzanine_nvenc => {
            for (flag, value) in MEZZANINE_NVENC {
                a.opt(flag, value);
            }
        }
        PictureEncoder::Mezzanine => {
            a.opt("-c:v", "libx264")
                .opt("-preset", enc.mezzanine_preset.as_str())
                .opt("-crf", "18");
        }
    }
    a.opt("-profile:v", "high").opt("-pix_fmt", "yuv420p");
    h264_gop_from(a, "v", gop_frames, video.gop_seconds, gop_offset);
    colour_tags(a, video);
}

/// The mezzanine's sound: stereo AAC at 48 kHz. Beside a picture it spans the timeline:
/// silence before its first sample, in gaps and after its end, up to the cut.
fn encode_audio(a: &mut FfmpegArgs, over_timeline: bool) {
    a.opt("-map", "0:a:0");
    if over_timeline {
        a.opt("-af", "aresample=async=1:first_pts=0,apad");
    }
    a.opt("-c:a", AAC_ENCODER)
        .opt("-b:a", format!("{MEZZANINE_AUDIO_KBPS}k"))
        .opt("-ac", "2")
        .opt("-ar", "48000");
}

/// How far before a piece's start its decode begins, so that the frame rate conversion sees
/// the frames around the boundary exactly as the whole-file encode does (a variable-rate
/// source's frame just before the boundary may be the one that fills the first slot).
pub const PIECE_PREROLL_SECONDS: f64 = 1.0;

/// MP4 timescale of the mezzanine's video: a multiple of the frame rate's numerator, so
/// every frame lasts a whole number of ticks and pieces join with no rounding drift.
pub fn video_timescale(rate: FrameRate) -> u32 {
    let num = rate.num.max(1);
    num * 10_000u32.div_ceil(num)
}

/// One piece of a chunked mezzanine: the chunk's frames of the constant-rate grid, picked
/// from the source exactly as [`mezzanine_args`] picks them, video only, starting at 0 with
/// an IDR frame. Decoding starts [`PIECE_PREROLL_SECONDS`] early; timestamps are put back on
/// the programme's timeline for the rate conversion (and for `subtitles`, the local copy of
/// the ASS file the input names), then the piece is moved to start at 0.
pub fn piece_args(
    input: &MezzaninePieceInput,
    source: &Path,
    subtitles: Option<&Path>,
    dest: &Path,
    enc: &EncoderSettings,
) -> Result<FfmpegArgs> {
    let video = &input.video;
    let rate = video.frame_rate;
    let chunk = &input.chunk;
    let (first, end) = chunk.frame_range(rate);
    let first_time = ChunkPlan::frame_time(first, rate);
    let seek = (chunk.start_seconds - PIECE_PREROLL_SECONDS).max(0.0);
    let mut a = FfmpegArgs::new();
    read_source(&mut a, source, seek);
    let timing = format!(
        "setpts=PTS+{seek:.3}/TB,fps={}:start_time={first_time:.6},\
         tpad=stop_mode=clone:stop_duration={:.3}",
        rate.to_ffmpeg(),
        input.duration_seconds
    );
    let subtitles = subtitles.map(subtitles_filter).transpose()?;
    a.opt("-map", "0:v:0")
        .opt(
            "-vf",
            video_filter(video, &timing, subtitles.as_deref(), "setpts=PTS-STARTPTS"),
        )
        .opt("-frames:v", (end - first).to_string());
    encode_video(&mut a, video, enc, first_time - chunk.start_seconds);
    a.flag("-an")
        .flag("-sn")
        .flag("-dn")
        .opt("-video_track_timescale", video_timescale(rate).to_string())
        .opt("-map_metadata", "-1")
        .opt("-f", "mp4")
        .output(dest);
    Ok(a)
}

/// The `subtitles` filter drawing the ASS/SSA file at `ass` (libass, fonts through
/// fontconfig). The path is one of our scratch folders; it is quoted for the filter graph,
/// and anything that quoting cannot carry is refused rather than spliced.
pub fn subtitles_filter(ass: &Path) -> Result<String> {
    let text = ass.to_string_lossy();
    if text
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || "/._-+".contains(c)))
    {
        return Err(MediaError::Verification(format!(
            "the scratch path {text:?} cannot be given to the subtitles filter"
        )));
    }
    Ok(format!("subtitles=filename={text}"))
}

/// The audio of a chunked mezzanine: the whole timeline in one run, as [`mezzanine_args`]
/// encodes it beside the picture.
pub fn audio_args(source: &Path, dest: &Path, duration: f64) -> FfmpegArgs {
    let mut a = FfmpegArgs::new();
    read_source(&mut a, source, 0.0);
    a.flag("-vn");
    encode_audio(&mut a, true);
    a.opt("-t", format!("{duration:.6}"))
        .flag("-sn")
        .flag("-dn")
        .opt("-map_metadata", "-1")
        .opt("-f", "mp4")
        .output(dest);
    a
}

/// The sound a join muxes beside the pieces.
#[derive(Debug, Clone, Copy)]
pub enum JoinedAudio<'a> {
    /// One track encoded in one run (jobs from before audio was chunked).
    Track(&'a Path),
    /// The chunks' ADTS pieces, joined.
    Adts(&'a AdtsTrack),
}

/// The join: the pieces one after the other (ffmpeg's concat demuxer, listed in `list`) and
/// the audio, stream copy only, faststart.
pub fn join_args(
    list: &Path,
    audio: Option<JoinedAudio<'_>>,
    language: Option<&str>,
    dest: &Path,
    rate: FrameRate,
) -> Result<FfmpegArgs> {
    let mut a = FfmpegArgs::new();
    a.opt("-f", "concat").opt("-safe", "0").input(list);
    match audio {
        Some(JoinedAudio::Track(path)) => {
            a.input(path);
        }
        Some(JoinedAudio::Adts(track)) => track.input(&mut a),
        None => {}
    }
    a.opt("-map", "0:v:0");
    if audio.is_some() {
        a.opt("-map", "1:a:0");
    }
    a.opt("-c", "copy");
    if let Some(JoinedAudio::Adts(track)) = audio {
        track.end_exactly(&mut a, "a:0")?;
    }
    a.opt("-map_metadata", "-1");
    if let (Some(_), Some(code)) = (audio, language) {
        a.opt("-metadata:s:a:0", format!("language={code}"));
    }
    a.opt("-video_track_timescale", video_timescale(rate).to_string())
        .opt("-movflags", "+faststart")
        .opt("-f", "mp4")
        .output(dest);
    Ok(a)
}

/// The concat demuxer's list of `pieces` (local paths), each quoted as it requires and made
/// absolute: the demuxer reads a relative path from the list's own folder, not ours (a
/// worker with a relative `--out` failed every join so).
pub fn concat_list(pieces: &[std::path::PathBuf]) -> String {
    pieces
        .iter()
        .map(|p| {
            let path = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            format!("file '{}'\n", path.to_string_lossy().replace('\'', "'\\''"))
        })
        .collect()
}

/// Deinterlacing for sources that say they are interlaced: `bwdif` (motion adaptive, sharper
/// than `yadif` on still areas), one frame out per frame in so the planned rate holds, the
/// field order read from each frame, and only frames flagged interlaced touched, so the
/// progressive parts of a mixed stream pass through as they are.
pub const DEINTERLACE_FILTER: &str = "bwdif=mode=send_frame:parity=auto:deint=interlaced";

/// HDR (PQ or HLG, BT.2020) to SDR BT.709: linearize, map with Hable (keeps highlight detail
/// without clipping), convert primaries, and re-apply the BT.709 transfer. The input's
/// transfer is stated explicitly so untagged-but-probed files convert too.
pub fn tone_map_filter(transfer: HdrTransfer) -> String {
    format!(
        "zscale=tin={}:min=bt2020nc:pin=bt2020:rin=tv:t=linear:npl=100,format=gbrpf32le,\
         zscale=p=bt709,tonemap=tonemap=hable:desat=0,zscale=t=bt709:m=bt709:r=tv",
        transfer.zimg_name()
    )
}

/// What a usable mezzanine is: the planned streams, the source's length, and for video the
/// planned constant frame rate in 8-bit 4:2:0.
pub fn check_mezzanine(
    input: &MezzanineInput,
    made: &ProbeResult,
    source_duration: f64,
) -> Result<()> {
    let fail = |why: String| Err(MediaError::Verification(format!("mezzanine {why}")));
    if input.has_audio && made.audio.is_none() {
        return fail("has no audio stream".into());
    }
    if let Some(plan) = &input.video {
        let Some(video) = &made.video else {
            return fail("has no video stream".into());
        };
        if video.pix_fmt.as_deref() != Some("yuv420p") {
            return fail(format!("is {:?}, not yuv420p", video.pix_fmt));
        }
        if video.frame_rate != Some(plan.frame_rate) {
            return fail(format!(
                "runs at {:?}, not {:?}",
                video.frame_rate, plan.frame_rate
            ));
        }
    }
    if (made.duration_seconds - source_duration).abs() > 0.5 {
        return fail(format!(
            "lasts {:.3} s, the source {source_duration:.3} s",
            made.duration_seconds
        ));
    }
    Ok(())
}

pub async fn encode_mezzanine(
    input: &MezzanineInput,
    source: &Path,
    dest: &Path,
    duration: f64,
    enc: &EncoderSettings,
    progress: &ScaledProgress,
) -> Result<()> {
    let args = mezzanine_args(input, source, dest, duration, enc);
    ffmpeg(args.as_slice(), duration, progress).await
}

/// Encodes one piece and checks it holds exactly its chunk's frames.
pub async fn encode_piece(
    input: &MezzaninePieceInput,
    source: &Path,
    subtitles: Option<&Path>,
    dest: &Path,
    enc: &EncoderSettings,
    progress: &ScaledProgress,
) -> Result<()> {
    let args = piece_args(input, source, subtitles, dest, enc)?;
    ffmpeg(args.as_slice(), input.chunk.duration_seconds, progress).await?;
    check_piece(input, dest).await
}

/// A piece is usable when it holds exactly its chunk's frames.
pub async fn check_piece(input: &MezzaninePieceInput, path: &Path) -> Result<()> {
    let (first, end) = input.chunk.frame_range(input.video.frame_rate);
    let frames = video_packets(path).await?;
    if frames != end - first {
        return Err(MediaError::Verification(format!(
            "mezzanine piece {} has {frames} frames, expected {}",
            input.chunk.index,
            end - first
        )));
    }
    Ok(())
}

/// Encodes the audio of a chunked mezzanine.
pub async fn encode_audio_track(
    source: &Path,
    dest: &Path,
    duration: f64,
    progress: &ScaledProgress,
) -> Result<()> {
    ffmpeg(
        audio_args(source, dest, duration).as_slice(),
        duration,
        progress,
    )
    .await
}

/// Joins `pieces` (local paths, in order) and `audio` into `dest`, and checks the result
/// holds every frame of the programme.
pub async fn join_pieces(
    input: &JoinMezzanineInput,
    pieces: &[std::path::PathBuf],
    audio: Option<JoinedAudio<'_>>,
    work: &Path,
    dest: &Path,
    progress: &ScaledProgress,
) -> Result<()> {
    let list = work.join("pieces.txt");
    std::fs::write(&list, concat_list(pieces)).map_err(MediaError::io("writing", &list))?;
    let rate = input.video.frame_rate;
    let seconds = ChunkPlan::frame_time(input.frames, rate);
    ffmpeg(
        join_args(&list, audio, input.audio_language.as_deref(), dest, rate)?.as_slice(),
        seconds,
        progress,
    )
    .await?;
    let frames = video_packets(dest).await?;
    if frames != input.frames {
        return Err(MediaError::Verification(format!(
            "the joined mezzanine has {frames} frames, expected {}",
            input.frames
        )));
    }
    // The same checks as a mezzanine made in one run.
    let made = crate::probe::probe_file(dest)
        .await
        .map_err(|e| MediaError::Verification(format!("mezzanine: {e}")))?;
    let as_planned = MezzanineInput {
        source: input.dest.clone(),
        dest: input.dest.clone(),
        video: Some(input.video.clone()),
        has_audio: audio.is_some(),
    };
    check_mezzanine(&as_planned, &made, input.duration_seconds)
}

/// The mezzanine an earlier attempt stored before its worker died without reporting it:
/// when it passes the checks a new one would, it is the checkpoint and is not encoded again.
pub async fn stored_mezzanine(
    storage: &Storage,
    input: &MezzanineInput,
    duration: f64,
    work: &Path,
) -> Result<Option<StoredObject>> {
    if !storage.exists(&input.dest).await? {
        return Ok(None);
    }
    let existing = storage.readable_path(&input.dest, work).await?;
    let Ok(made) = crate::probe::probe_file(&existing).await else {
        return Ok(None);
    };
    if check_mezzanine(input, &made, duration).is_err() {
        return Ok(None);
    }
    tracing::info!(dest = %input.dest, "verified mezzanine already stored; not encoding again");
    Ok(Some(StoredObject {
        object: input.dest.clone(),
        size_bytes: std::fs::metadata(&existing)
            .map(|m| m.len())
            .unwrap_or(made.size_bytes),
        encoder: None,
    }))
}

/// A piece an earlier attempt stored before its worker died: the checkpoint, when it passes
/// the piece's checks.
pub async fn stored_piece(
    storage: &Storage,
    input: &MezzaninePieceInput,
    work: &Path,
) -> Result<Option<StoredObject>> {
    if !storage.exists(&input.dest).await? {
        return Ok(None);
    }
    let existing = storage.readable_path(&input.dest, work).await?;
    if check_piece(input, &existing).await.is_err() {
        return Ok(None);
    }
    Ok(Some(StoredObject {
        object: input.dest.clone(),
        size_bytes: std::fs::metadata(&existing).map(|m| m.len()).unwrap_or(0),
        encoder: None,
    }))
}

/// An NVENC session for an encode of the picture (`video`, with `encoder`'s settings) when
/// those settings use NVENC on this worker.
async fn nvenc_session(
    enc: &EncoderSettings,
    nvenc: &NvencBudget,
    video: Option<PictureEncoder>,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let uses_nvenc = match video {
        None => false,
        Some(PictureEncoder::Mezzanine) => enc.mezzanine_nvenc,
        Some(PictureEncoder::Delivery) => matches!(enc.video, VideoEncoder::Nvenc { .. }),
    };
    if uses_nvenc {
        nvenc.acquire(1).await
    } else {
        None
    }
}

/// The name of the encoder `video`'s settings use on this worker, for results and logs.
fn picture_encoder_name(enc: &EncoderSettings, video: PictureEncoder) -> &'static str {
    match video {
        PictureEncoder::Mezzanine => enc.mezzanine_encoder_name(),
        PictureEncoder::Delivery => enc.video_encoder_name(),
    }
}

/// The mezzanine in one run: what an earlier attempt stored when it passes the checks, or
/// a new encode, checked before it is stored. Says whether this attempt encoded it.
#[allow(clippy::too_many_arguments)]
pub async fn make_mezzanine(
    storage: &Storage,
    input: &MezzanineInput,
    source: &Path,
    duration: f64,
    work: &Path,
    enc: &EncoderSettings,
    nvenc: &NvencBudget,
    progress: &ScaledProgress,
) -> Result<(StoredObject, bool)> {
    if let Some(stored) = stored_mezzanine(storage, input, duration, work).await? {
        return Ok((stored, false));
    }
    let out = work.join("mezzanine.mp4");
    let _session = nvenc_session(enc, nvenc, input.video.as_ref().map(|v| v.encoder)).await;
    encode_mezzanine(input, source, &out, duration, enc, progress).await?;
    // Check what we made before anyone builds on it.
    let made = crate::probe::probe_file(&out)
        .await
        .map_err(|e| MediaError::Verification(format!("mezzanine: {e}")))?;
    check_mezzanine(input, &made, duration)?;
    let mut stored = storage.store(&out, &input.dest).await?;
    tracing::info!(dest = %input.dest, size_bytes = stored.size_bytes, "mezzanine stored");
    stored.encoder = input
        .video
        .as_ref()
        .map(|v| picture_encoder_name(enc, v.encoder).to_string());
    Ok((stored, true))
}

/// One piece of a chunked mezzanine: what an earlier attempt stored when it holds its
/// chunk's frames, or a new encode. Says whether this attempt encoded it.
pub async fn make_piece(
    storage: &Storage,
    input: &MezzaninePieceInput,
    work: &Path,
    enc: &EncoderSettings,
    nvenc: &NvencBudget,
    progress: &ScaledProgress,
) -> Result<(StoredObject, bool)> {
    if let Some(stored) = stored_piece(storage, input, work).await? {
        return Ok((stored, false));
    }
    let source = storage.readable_path(&input.source, work).await?;
    crate::span::bytes_in(&source);
    let subtitles = match &input.video.subtitles {
        Some(object) => {
            // A copy under our own scratch name: the only path the filter is given.
            let fetched = storage.readable_path(object, work).await?;
            let local = std::path::absolute(work.join("subtitles.ass"))
                .map_err(MediaError::io("resolving", work))?;
            if fetched != local {
                std::fs::copy(&fetched, &local).map_err(MediaError::io("copying", &fetched))?;
            }
            Some(local)
        }
        None => None,
    };
    let out = work.join("piece.mp4");
    let _session = nvenc_session(enc, nvenc, Some(input.video.encoder)).await;
    encode_piece(input, &source, subtitles.as_deref(), &out, enc, progress).await?;
    let mut stored = storage.store(&out, &input.dest).await?;
    tracing::info!(dest = %input.dest, chunk = input.chunk.index, size_bytes = stored.size_bytes, "mezzanine piece stored");
    stored.encoder = Some(picture_encoder_name(enc, input.video.encoder).to_string());
    Ok((stored, true))
}

/// The audio track of a chunked mezzanine (jobs from before the sound was chunked).
pub async fn make_audio_track(
    storage: &Storage,
    input: &MezzanineAudioInput,
    work: &Path,
    progress: &ScaledProgress,
) -> Result<StoredObject> {
    let source = storage.readable_path(&input.source, work).await?;
    let out = work.join("audio.m4a");
    encode_audio_track(&source, &out, input.duration_seconds, progress).await?;
    let mut stored = storage.store(&out, &input.dest).await?;
    stored.encoder = Some(AAC_ENCODER.to_string());
    Ok(stored)
}

/// Joins the stored pieces, with the sound's ADTS pieces (or, in jobs from before the sound
/// was chunked, its one track), checks the result and stores it.
pub async fn join_stored(
    storage: &Storage,
    input: &JoinMezzanineInput,
    work: &Path,
    progress: &ScaledProgress,
) -> Result<StoredObject> {
    let pieces = storage.readable_paths(&input.pieces, work).await?;
    let adts = if input.audio_pieces.is_empty() {
        None
    } else {
        let sound = storage.readable_paths(&input.audio_pieces, work).await?;
        Some(AdtsTrack::join(
            &sound,
            &work.join("audio.aac"),
            input.duration_seconds,
        )?)
    };
    let track = match (&adts, &input.audio) {
        (None, Some(audio)) => Some(storage.readable_path(audio, work).await?),
        _ => None,
    };
    let audio = match (&adts, &track) {
        (Some(adts), _) => Some(JoinedAudio::Adts(adts)),
        (None, Some(track)) => Some(JoinedAudio::Track(track)),
        (None, None) => None,
    };
    let out = work.join("mezzanine.mp4");
    join_pieces(input, &pieces, audio, work, &out, progress).await?;
    let stored = storage.store(&out, &input.dest).await?;
    tracing::info!(dest = %input.dest, pieces = pieces.len(), size_bytes = stored.size_bytes, "mezzanine stored (joined from its pieces)");
    Ok(stored)
}

/// Video packets in a local MP4 (demuxing only, no decode): one per frame.
async fn video_packets(path: &Path) -> Result<u64> {
    count_video_packets(&[], path)
        .await?
        .ok_or_else(|| MediaError::Verification(format!("{} has no video", path.display())))
}

#[cfg(test)]
mod tests;
