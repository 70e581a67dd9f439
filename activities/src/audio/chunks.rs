//! A programme's sound in chunks: the mezzanine's track, the loudness meter and the HLS
//! audio renditions, each made one ladder chunk at a time (ARCHITECTURE.md, "Audio in
//! chunks").
//!
//! Why the joins are exact:
//! - Everything is counted on the programme's 48 kHz sample grid. A chunk owns the samples
//!   of its time range; chunk boundaries are whole seconds, so they are whole samples.
//! - AAC packets lie on a grid of 1024 samples. Packet 0 of a run is the encoder's priming
//!   frame, and packet `j` decodes to samples `[(j-1)·1024, j·1024)`. A chunk's decode starts
//!   on that grid (and on the source's own sample grid, so resampling lines up, and on the
//!   meter's 100 ms grid), a few seconds before its range, so its packet `m` is the
//!   programme's packet `m + start/1024`, with the encoder, the resampler, the limiter and
//!   the meter settled by then. It keeps only the packets it owns: those of its segments,
//!   whose boundaries are where one run's HLS muxer would cut (the first packet whose time
//!   reaches the boundary). Consecutive chunks share no packet and skip none.
//! - The meter (EBU R128 momentary and short-term loudness every 100 ms, true peak) keeps the
//!   readings whose 100 ms step ends inside the chunk; with the pre-roll, each is the reading
//!   a single pass gives. [`crate::audio::loudness::summarize`] gates them into the programme's
//!   loudness.

use crate::audio::loudness::{self, MeterSeries};
use crate::error::{MediaError, Result};
use crate::ffmpeg::run::ScaledProgress;
use crate::ffmpeg::{ffmpeg, FfmpegArgs};
use crate::hls::{media_playlist, publish_playlists, put_playlist, PublishedRendition, AAC_LC};
use crate::mezzanine::MEZZANINE_AUDIO_KBPS;
use crate::storage::Storage;
use crate::waveform::{self, WaveformPiece};
use std::ops::Range;
use std::path::{Path, PathBuf};
use transcoder_workflows::keys::{hls_file_key, media_playlist_key, segment_file_name};
use transcoder_workflows::media::{
    AudioChunkInput, AudioChunkOutput, AudioChunkWork, AudioRenditionOutput, ChunkPlan,
    FinishAudioHlsInput, FinishAudioInput, HlsOutput, LoudnessMeasurement, MezzanineInput,
    ObjectRef, SegmentInfo, StoredObject,
};

/// Every audio output runs at 48 kHz.
pub const SAMPLE_RATE: u64 = 48_000;
/// Samples per AAC-LC packet.
pub const AAC_FRAME: u64 = 1_024;
/// The meter's step: EBU R128's 400 ms and 3 s windows advance by 100 ms.
pub const METER_STEP: u64 = SAMPLE_RATE / 10;
/// At least this much is decoded before a chunk's first sample: the short-term (3 s) window
/// of its first reading, plus room for the encoder, resampler and limiter to settle.
const PREROLL: u64 = 3 * SAMPLE_RATE + 2 * METER_STEP;
/// Decoded after a chunk's last sample, so the encoder's and the limiter's look-ahead see
/// what comes next, as in a single run.
const POSTROLL: u64 = SAMPLE_RATE;

/// Where one chunk's decode runs and what it owns, on the programme's 48 kHz timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioWindow {
    /// First sample decoded.
    pub decode_start: u64,
    /// Samples decoded (to the post-roll's end, or the programme's).
    pub decode_len: u64,
    /// The samples the chunk owns: `[own_start, own_end)`.
    pub own_start: u64,
    pub own_end: u64,
    /// The first AAC packet the chunk owns, on the programme's packet grid.
    pub first_packet: u64,
    /// The packet after its last; `None` for the last chunk (to the end).
    pub end_packet: Option<u64>,
}

impl AudioWindow {
    /// Packet index of the run's own packet 0 on the programme's grid.
    fn packet_offset(&self) -> u64 {
        self.decode_start / AAC_FRAME
    }
}

/// Samples of a programme of `duration` seconds.
pub fn programme_samples(duration: f64) -> u64 {
    (duration.max(0.0) * SAMPLE_RATE as f64).round() as u64
}

/// The first packet of segment `k`: the first whose time (packet 0 at time 0) reaches `k`
/// segments, where a single run's HLS muxer cuts.
pub fn segment_first_packet(k: u64, segment_seconds: u32) -> u64 {
    (k * u64::from(segment_seconds) * SAMPLE_RATE).div_ceil(AAC_FRAME)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: u64, b: u64) -> u64 {
    a / gcd(a, b) * b
}

/// Decodes start on multiples of this (48 kHz samples): the AAC packet grid, the meter's
/// grid, and the first 48 kHz sample that falls exactly on a source sample.
fn decode_grid(source_rate: u32) -> u64 {
    let source_step = match u64::from(source_rate) {
        0 => 1,
        r => SAMPLE_RATE / gcd(SAMPLE_RATE, r),
    };
    lcm(lcm(AAC_FRAME, METER_STEP), source_step)
}

/// The window of `chunk` in a programme of `duration` seconds whose source runs at
/// `source_rate` Hz.
pub fn window(
    chunk: &ChunkPlan,
    segment_seconds: u32,
    duration: f64,
    source_rate: u32,
) -> AudioWindow {
    let total = programme_samples(duration);
    let own_start = programme_samples(chunk.start_seconds).min(total);
    let own_end = if chunk.last {
        total
    } else {
        programme_samples(chunk.start_seconds + chunk.duration_seconds).min(total)
    };
    let grid = decode_grid(source_rate);
    let decode_start = own_start.saturating_sub(PREROLL) / grid * grid;
    let decode_end = if chunk.last {
        total
    } else {
        (own_end + POSTROLL).min(total)
    };
    let first_segment = u64::from(chunk.first_segment);
    AudioWindow {
        decode_start,
        decode_len: decode_end - decode_start,
        own_start,
        own_end,
        first_packet: segment_first_packet(first_segment, segment_seconds),
        end_packet: (!chunk.last).then(|| {
            segment_first_packet(
                first_segment + u64::from(chunk.max_segments),
                segment_seconds,
            )
        }),
    }
}

/// The packets of each segment the chunk owns, as `(segment number, programme packets)`,
/// given that the run made `packets` packets.
pub fn segment_packets(
    w: &AudioWindow,
    chunk: &ChunkPlan,
    segment_seconds: u32,
    packets: u64,
) -> Result<Vec<(u32, Range<u64>)>> {
    let own = own_packets(w, chunk, packets)?;
    let offset = w.packet_offset();
    let end = own.end as u64 + offset;
    let mut out = Vec::new();
    let mut k = u64::from(chunk.first_segment);
    loop {
        let from = segment_first_packet(k, segment_seconds).max(w.first_packet);
        if from >= end {
            break;
        }
        let to = segment_first_packet(k + 1, segment_seconds).min(end);
        out.push((k as u32, from..to));
        k += 1;
    }
    Ok(out)
}

/// Byte ranges of the ADTS frames in `bytes` (one raw data block each, as ffmpeg writes).
pub fn adts_frames(bytes: &[u8]) -> Result<Vec<Range<usize>>> {
    let bad = |at: usize, why: &str| {
        MediaError::Verification(format!("the AAC stream is broken at byte {at}: {why}"))
    };
    let mut frames = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let h = &bytes[at..];
        if h.len() < 7 || h[0] != 0xFF || h[1] & 0xF6 != 0xF0 {
            return Err(bad(at, "no ADTS header"));
        }
        if h[6] & 0x03 != 0 {
            return Err(bad(at, "more than one raw data block in a frame"));
        }
        let len =
            (usize::from(h[3] & 0x03) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        if len < 7 || len > h.len() {
            return Err(bad(at, "frame length out of range"));
        }
        frames.push(at..at + len);
        at += len;
    }
    Ok(frames)
}

/// Escapes `value` for use as an option value inside a filtergraph: once for the option
/// parser (`'`, `\`, `:`), then once for the graph parser (`'`, `\`, `[`, `]`, `,`, `;`).
pub fn filter_value(value: &str) -> String {
    let escape = |s: &str, special: &[char]| {
        let mut out = String::with_capacity(s.len());
        for c in s.chars() {
            if special.contains(&c) {
                out.push('\\');
            }
            out.push(c);
        }
        out
    };
    let option = escape(value, &['\'', '\\', ':']);
    escape(&option, &['\'', '\\', '[', ']', ',', ';'])
}

/// The meter's filters: 100 ms frames (the last partial one left out), EBU R128 with true
/// peak, each frame's readings printed to `file`.
fn meter_chain(file: &Path) -> String {
    format!(
        "asetnsamples=n={METER_STEP}:p=0,ebur128=metadata=1:peak=true,ametadata=mode=print:file={}",
        filter_value(&file.to_string_lossy())
    )
}

/// `samples` at 48 kHz as seconds for an ffmpeg option (microseconds, which it reads).
pub fn seconds(samples: u64) -> String {
    format!("{:.6}", samples as f64 / SAMPLE_RATE as f64)
}

/// The chunk's encode: the source's first audio stream from the window's start, placed on
/// the timeline as the single-run mezzanine places it (silence before a late start, in gaps
/// and after an early end), 48 kHz stereo, then per `work`: the archive track plus the meter,
/// or each rendition normalized. Writes `work_dir/enc-N.aac` (ADTS) per output and, for the
/// archive, the meter's readings to `work_dir/meter.txt`.
pub fn chunk_args(
    input: &AudioChunkInput,
    w: &AudioWindow,
    source: &Path,
    work_dir: &Path,
) -> FfmpegArgs {
    let mut a = FfmpegArgs::new();
    // Decodes start on multiples of 0.8 s: the seek is exact in milliseconds.
    crate::mezzanine::read_source(&mut a, source, w.decode_start as f64 / SAMPLE_RATE as f64);
    let front =
        "[0:a:0]aresample=async=1:first_pts=0,apad,aresample=48000,aformat=channel_layouts=stereo";
    let t = seconds(w.decode_len);
    let aac = |a: &mut FfmpegArgs, label: &str, kbps: u32, out: PathBuf| {
        a.opt("-map", format!("[{label}]"))
            .opt("-c:a", "aac")
            .opt("-b:a", format!("{kbps}k"))
            .opt("-t", t.clone())
            .opt("-f", "adts")
            .output(&out);
    };
    match &input.work {
        AudioChunkWork::Archive { .. } => {
            a.opt(
                "-filter_complex",
                format!(
                    "{front},asplit=2[enc][m];[m]{}[meter]",
                    meter_chain(&work_dir.join("meter.txt"))
                ),
            );
            aac(
                &mut a,
                "enc",
                MEZZANINE_AUDIO_KBPS,
                work_dir.join("enc-0.aac"),
            );
            a.opt("-map", "[meter]")
                .opt("-t", t.clone())
                .opt("-f", "null")
                .output(Path::new("-"));
        }
        AudioChunkWork::Renditions {
            renditions,
            loudness,
            waveform_dest,
            ..
        } => {
            let n = renditions.len();
            let waveform = waveform_dest.is_some();
            let mut graph = format!(
                "{front},{},asplit={}",
                loudness::output_audio_filter(loudness.as_ref()),
                n + usize::from(waveform)
            );
            for i in 0..n {
                graph.push_str(&format!("[e{i}]"));
            }
            if waveform {
                // The waveform's samples: the normalized sound in mono (the average of the
                // channels), 16 bits. Converted by its own `aresample`: a format asked of one
                // branch of `asplit` would otherwise be negotiated for all of them.
                graph.push_str(
                    "[w];[w]aresample,aformat=sample_fmts=s16:channel_layouts=mono[wave]",
                );
            }
            a.opt("-filter_complex", graph);
            if waveform {
                a.opt("-map", "[wave]")
                    .opt("-t", t.clone())
                    .opt("-f", "s16le")
                    .output(&work_dir.join(WAVE_FILE));
            }
            for (i, r) in renditions.iter().enumerate() {
                aac(
                    &mut a,
                    &format!("e{i}"),
                    r.bitrate_kbps,
                    work_dir.join(format!("enc-{i}.aac")),
                );
            }
        }
    }
    a
}

/// Meters an encoded run (`enc`, ADTS) as a listener's decoder plays it: the priming frame
/// dropped, so sample 0 is the window's first.
fn delivered_meter_args(enc: &Path, meter: &Path) -> FfmpegArgs {
    let mut a = FfmpegArgs::new();
    a.opt("-f", "aac").input(enc).opt(
        "-af",
        format!(
            "atrim=start_sample={AAC_FRAME},asetpts=PTS-STARTPTS,{}",
            meter_chain(meter)
        ),
    );
    a.opt("-f", "null").output(Path::new("-"));
    a
}

/// Writes the programme packets `packets` of a run (its `frames` of `bytes`) as one MPEG-TS
/// segment at `dest`, time-stamped where a single run puts them.
async fn write_segment(
    bytes: &[u8],
    frames: &[Range<usize>],
    packets: Range<u64>,
    offset: u64,
    scratch: &Path,
    dest: &Path,
) -> Result<()> {
    let local = (packets.start - offset) as usize..(packets.end - offset) as usize;
    let mut raw = Vec::new();
    for f in &frames[local] {
        raw.extend_from_slice(&bytes[f.clone()]);
    }
    std::fs::write(scratch, &raw).map_err(MediaError::io("writing", scratch))?;
    let mut a = FfmpegArgs::new();
    a.opt("-f", "aac")
        .input(scratch)
        .opt("-map", "0:a:0")
        .opt("-c:a", "copy")
        .opt(
            "-output_ts_offset",
            format!(
                "{:.6}",
                (packets.start * AAC_FRAME) as f64 / SAMPLE_RATE as f64
            ),
        )
        .opt("-f", "mpegts")
        .output(dest);
    ffmpeg(
        a.as_slice(),
        0.0,
        &crate::ffmpeg::ProgressSink::none().scaled(0.0, 1.0),
    )
    .await
}

/// Encodes, meters and publishes one audio chunk.
pub async fn encode_audio_chunk(
    storage: &Storage,
    input: &AudioChunkInput,
    source: &Path,
    work_dir: &Path,
    progress: &ScaledProgress,
) -> Result<AudioChunkOutput> {
    let chunk = &input.chunk;
    let w = window(
        chunk,
        input.segment_seconds,
        input.duration_seconds,
        input.source_sample_rate,
    );
    let run_seconds = w.decode_len as f64 / SAMPLE_RATE as f64;
    ffmpeg(
        chunk_args(input, &w, source, work_dir).as_slice(),
        run_seconds,
        &progress.sub(0.0, 0.7),
    )
    .await?;
    let read = |path: &Path| std::fs::read(path).map_err(MediaError::io("reading", path));
    let mut output = AudioChunkOutput {
        index: chunk.index,
        piece: None,
        renditions: Vec::new(),
        meter: input.meter_dest.clone(),
        waveform: None,
    };
    let meter_file = work_dir.join("meter.txt");
    match &input.work {
        AudioChunkWork::Archive { dest } => {
            let enc = work_dir.join("enc-0.aac");
            let bytes = read(&enc)?;
            let frames = adts_frames(&bytes)?;
            let own = own_packets(&w, chunk, frames.len() as u64)?;
            let piece = work_dir.join("piece.aac");
            let start = frames[own.start].start;
            let end = frames[own.end - 1].end;
            std::fs::write(&piece, &bytes[start..end])
                .map_err(MediaError::io("writing", &piece))?;
            let size_bytes = storage.put_file(&piece, dest).await?;
            output.piece = Some(StoredObject {
                object: dest.clone(),
                size_bytes,
                encoder: None,
            });
        }
        AudioChunkWork::Renditions {
            bucket,
            prefix,
            renditions,
            waveform_dest,
            ..
        } => {
            if let Some(dest) = waveform_dest {
                let piece =
                    waveform_stretch(&work_dir.join(WAVE_FILE), &w, input.duration_seconds)?;
                storage
                    .put_json(&piece, &work_dir.join("waveform.json"), dest)
                    .await?;
                output.waveform = Some(dest.clone());
            }
            for (i, r) in renditions.iter().enumerate() {
                let enc = work_dir.join(format!("enc-{i}.aac"));
                if i == 0 {
                    ffmpeg(
                        delivered_meter_args(&enc, &meter_file).as_slice(),
                        run_seconds,
                        &progress.sub(0.7, 0.8),
                    )
                    .await?;
                }
                let bytes = read(&enc)?;
                let frames = adts_frames(&bytes)?;
                let dir = work_dir.join(&r.name);
                std::fs::create_dir_all(&dir).map_err(MediaError::io("creating", &dir))?;
                let mut segments = Vec::new();
                let plan = segment_packets(&w, chunk, input.segment_seconds, frames.len() as u64)?;
                for (number, packets) in plan {
                    let uri = segment_file_name(number);
                    let local = dir.join(&uri);
                    let count = packets.end - packets.start;
                    write_segment(
                        &bytes,
                        &frames,
                        packets,
                        w.packet_offset(),
                        &work_dir.join("segment.aac"),
                        &local,
                    )
                    .await?;
                    let obj = ObjectRef::new(bucket, hls_file_key(prefix, &r.name, &uri));
                    let bytes = storage.put_file(&local, &obj).await?;
                    segments.push(SegmentInfo {
                        uri,
                        duration: (count * AAC_FRAME) as f64 / SAMPLE_RATE as f64,
                        bytes,
                    });
                }
                output.renditions.push((r.name.clone(), segments));
            }
        }
    }
    progress.set(0.9);
    let text =
        std::fs::read_to_string(&meter_file).map_err(MediaError::io("reading", &meter_file))?;
    let series = own_readings(&text, &w)?;
    storage
        .put_json(&series, &work_dir.join("meter.json"), &input.meter_dest)
        .await?;
    Ok(output)
}

/// The programme's loudness from its chunks' stored meter readings (in timeline order).
pub async fn summarize_meters(
    storage: &Storage,
    meters: &[ObjectRef],
    work_dir: &Path,
) -> Result<Option<LoudnessMeasurement>> {
    let stretches: Vec<MeterSeries> = storage.get_json(meters, work_dir).await?;
    Ok(loudness::summarize(&stretches))
}

/// Finishes a rendition made in chunks: its playlist from the chunks' segments, and what
/// listeners get from the chunks' meter readings.
pub async fn finish_rendition(
    storage: &Storage,
    input: &FinishAudioInput,
    work_dir: &Path,
) -> Result<AudioRenditionOutput> {
    if input.segments.is_empty() {
        return Err(MediaError::Verification(format!(
            "audio rendition {} has no segments",
            input.name
        )));
    }
    let delivered = summarize_meters(storage, &input.meters, work_dir).await?;
    let playlist_key = media_playlist_key(&input.prefix, &input.name);
    put_playlist(
        storage,
        &media_playlist(&input.segments),
        &work_dir.join("playlist.m3u8"),
        &ObjectRef::new(&input.bucket, &playlist_key),
    )
    .await?;
    Ok(AudioRenditionOutput {
        name: input.name.clone(),
        playlist_key,
        segments: input.segments.clone(),
        delivered_loudness: delivered,
    })
}

/// The raw mono samples a rendition chunk writes for the waveform.
const WAVE_FILE: &str = "wave.raw";

/// The chunk's own stretch of the waveform from the run's raw mono samples.
fn waveform_stretch(raw: &Path, w: &AudioWindow, duration: f64) -> Result<WaveformPiece> {
    let bytes = std::fs::read(raw).map_err(MediaError::io("reading", raw))?;
    let samples: Vec<i16> = bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let from = (w.own_start - w.decode_start) as usize;
    let to = (w.own_end - w.decode_start) as usize;
    if samples.len() < to {
        return Err(MediaError::Verification(format!(
            "the waveform's decode gave {} samples, short of {to}",
            samples.len()
        )));
    }
    Ok(waveform::summarize_stretch(
        &samples[from..to],
        w.own_start,
        duration,
    ))
}

/// A programme's sound joined from its chunks' ADTS pieces, ready to mux.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdtsTrack {
    pub path: PathBuf,
    /// AAC packets, the priming frame included.
    pub packets: u64,
    /// The programme's samples.
    pub samples: u64,
}

impl AdtsTrack {
    /// Joins `pieces` (local files, in order) at `dest` for a programme of `duration`
    /// seconds: ADTS frames carry their own headers, so the pieces join byte for byte.
    pub fn join(pieces: &[PathBuf], dest: &Path, duration: f64) -> Result<AdtsTrack> {
        let mut bytes = Vec::new();
        for piece in pieces {
            bytes.extend(std::fs::read(piece).map_err(MediaError::io("reading", piece))?);
        }
        let track = AdtsTrack {
            path: dest.to_path_buf(),
            packets: adts_frames(&bytes)?.len() as u64,
            samples: programme_samples(duration),
        };
        track.last_packet_samples()?;
        std::fs::write(dest, bytes).map_err(MediaError::io("writing", dest))?;
        Ok(track)
    }

    /// Samples of the last packet that belong to the programme: packet `j` holds samples
    /// `[(j-1)·1024, j·1024)`, so the last ends `packets·1024 - samples` past the end.
    fn last_packet_samples(&self) -> Result<u64> {
        let before_last = self.packets.saturating_sub(2) * AAC_FRAME;
        match self.samples.checked_sub(before_last) {
            Some(n) if self.packets >= 2 && (1..=AAC_FRAME).contains(&n) => Ok(n),
            _ => Err(MediaError::Verification(format!(
                "the joined sound has {} AAC packets, not the {} samples of the programme",
                self.packets, self.samples
            ))),
        }
    }

    /// Adds the track as an input. ADTS says nothing of the encoder's priming frame: placed
    /// one frame early, an MP4 muxer trims it with an edit list, as it does for a track
    /// encoded in one run.
    pub fn input(&self, a: &mut FfmpegArgs) {
        a.opt("-itsoffset", format!("-{}", seconds(AAC_FRAME)))
            .opt("-f", "aac")
            .input(&self.path);
    }

    /// Output options for its stream `spec` (e.g. `a:0`): the last packet lasts only to
    /// the programme's end, so the MP4 says exactly how many samples it holds, as a run
    /// that encoded the whole programme says (ADTS gives every packet a whole frame).
    pub fn end_exactly(&self, a: &mut FfmpegArgs, spec: &str) -> Result<()> {
        let last = self.last_packet_samples()?;
        if last < AAC_FRAME {
            a.opt(
                &format!("-bsf:{spec}"),
                format!(
                    "setts=duration=if(eq(N\\,{})\\,DURATION*{last}/{AAC_FRAME}\\,DURATION)",
                    self.packets - 1
                ),
            );
        }
        Ok(())
    }
}

/// An audio job's mezzanine from its joined ADTS pieces: stream copy, faststart, checked as
/// a mezzanine made in one run is.
pub async fn join_audio_mezzanine(
    pieces: &[PathBuf],
    work_dir: &Path,
    dest: &Path,
    duration: f64,
    progress: &ScaledProgress,
) -> Result<()> {
    let track = AdtsTrack::join(pieces, &work_dir.join("audio.aac"), duration)?;
    let mut a = FfmpegArgs::new();
    track.input(&mut a);
    a.opt("-map", "0:a:0").opt("-c", "copy");
    track.end_exactly(&mut a, "a:0")?;
    a.opt("-map_metadata", "-1")
        .opt("-movflags", "+faststart")
        .opt("-f", "mp4")
        .output(dest);
    ffmpeg(a.as_slice(), duration, progress).await?;
    let made = crate::probe::probe_file(dest)
        .await
        .map_err(|e| MediaError::Verification(format!("mezzanine: {e}")))?;
    let as_planned = MezzanineInput {
        source: ObjectRef::new("", ""),
        dest: ObjectRef::new("", ""),
        video: None,
        has_audio: true,
    };
    crate::mezzanine::check_mezzanine(&as_planned, &made, duration)
}

/// Finishes an audio job's ladder made in chunks: playlists, master, and the delivered
/// loudness of the first rendition.
pub async fn finish_audio_hls(
    storage: &Storage,
    input: &FinishAudioHlsInput,
    work_dir: &Path,
) -> Result<HlsOutput> {
    let published: Vec<PublishedRendition> = input
        .renditions
        .iter()
        .map(|(name, segments)| PublishedRendition {
            name: name.clone(),
            segments: segments.clone(),
            codecs: AAC_LC.to_string(),
            resolution: None,
            frame_rate: None,
            encoder: "aac".to_string(),
        })
        .collect();
    let mut hls =
        publish_playlists(storage, &input.bucket, &input.prefix, work_dir, &published).await?;
    hls.delivered_loudness = summarize_meters(storage, &input.meters, work_dir).await?;
    Ok(hls)
}

/// An audio job's waveform JSON and picture from its chunks' stretches (checked before
/// they are returned).
pub async fn finish_waveform(
    storage: &Storage,
    pieces: &[ObjectRef],
    duration: f64,
    work_dir: &Path,
) -> Result<waveform::WaveformFiles> {
    let stretches: Vec<WaveformPiece> = storage.get_json(pieces, work_dir).await?;
    waveform::write_joined(&stretches, work_dir, duration)
}

/// The run's own packets as local indices `[first, end)`.
fn own_packets(w: &AudioWindow, chunk: &ChunkPlan, packets: u64) -> Result<Range<usize>> {
    let offset = w.packet_offset();
    let end = w.end_packet.unwrap_or(offset + packets);
    if end > offset + packets || w.first_packet < offset || w.first_packet >= end {
        return Err(MediaError::Verification(format!(
            "audio chunk {} made packets {offset}..{}, short of its own {}..{end}",
            chunk.index,
            offset + packets,
            w.first_packet
        )));
    }
    Ok((w.first_packet - offset) as usize..(end - offset) as usize)
}

/// The meter's readings whose 100 ms step ends inside the chunk's own samples, from the
/// text `ametadata` printed (frames counted from the window's start).
pub fn own_readings(text: &str, w: &AudioWindow) -> Result<MeterSeries> {
    let all = loudness::parse_meter_print(text)?;
    let mut series = MeterSeries::default();
    for r in all {
        let end = w.decode_start + r.start_sample + METER_STEP;
        if end > w.own_start && end <= w.own_end {
            series.momentary.push(r.momentary);
            series.short_term.push(r.short_term);
            series.true_peak = series.true_peak.max(r.true_peak);
        }
    }
    let expected = ((w.own_end - w.own_start) / METER_STEP) as usize;
    if series.momentary.len() != expected {
        return Err(MediaError::Verification(format!(
            "the loudness meter gave {} readings for samples {}..{}, expected {expected}",
            series.momentary.len(),
            w.own_start,
            w.own_end
        )));
    }
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(index: u32, start: f64, duration: f64, last: bool) -> ChunkPlan {
        ChunkPlan {
            index,
            start_seconds: start,
            duration_seconds: duration,
            first_segment: index * 10,
            max_segments: 10,
            last,
        }
    }

    #[test]
    fn segments_start_where_one_run_cuts_them() {
        // 6 s is 281.25 packets: the cut falls on the first packet at or after it.
        assert_eq!(segment_first_packet(0, 6), 0);
        assert_eq!(segment_first_packet(1, 6), 282);
        assert_eq!(segment_first_packet(4, 6), 1125);
        assert_eq!(segment_first_packet(10, 6), 2813);
    }

    #[test]
    fn windows_start_on_every_grid_before_the_pre_roll() {
        for rate in [0, 48_000, 44_100, 22_050, 32_000, 8_000, 96_000, 11_025] {
            let c = chunk(1, 60.0, 60.0, false);
            let w = window(&c, 6, 300.0, rate);
            assert_eq!(w.decode_start % AAC_FRAME, 0, "{rate}");
            assert_eq!((w.own_start - w.decode_start) % METER_STEP, 0, "{rate}");
            if rate > 0 {
                let source = w.decode_start as u128 * rate as u128;
                assert_eq!(source % 48_000, 0, "{rate}: not on a source sample");
            }
            assert!(w.own_start - w.decode_start >= PREROLL, "{rate}");
            assert_eq!(w.own_start, 60 * 48_000);
            assert_eq!(w.own_end, 120 * 48_000);
            assert_eq!(w.decode_start + w.decode_len, 121 * 48_000);
            assert_eq!(w.first_packet, 2813);
            assert_eq!(w.end_packet, Some(5625));
        }
        let first = window(&chunk(0, 0.0, 60.0, false), 6, 300.0, 44_100);
        assert_eq!((first.decode_start, first.first_packet), (0, 0));
        let last = window(&chunk(4, 240.0, 60.0, true), 6, 299.5, 48_000);
        assert_eq!(last.own_end, programme_samples(299.5));
        assert_eq!(last.decode_start + last.decode_len, last.own_end);
        assert_eq!(last.end_packet, None);
    }

    #[test]
    fn consecutive_chunks_own_every_packet_once() {
        let duration = 130.4;
        let chunks = [
            chunk(0, 0.0, 60.0, false),
            chunk(1, 60.0, 60.0, false),
            chunk(2, 120.0, 10.4, true),
        ];
        let total_packets = programme_samples(duration).div_ceil(AAC_FRAME) + 1;
        let mut next = 0;
        let mut next_segment = 0;
        for c in &chunks {
            let w = window(c, 6, duration, 48_000);
            // What a run of the window makes: its samples plus the priming packet.
            let made = w.decode_len.div_ceil(AAC_FRAME) + 1;
            let segs = segment_packets(&w, c, 6, made).expect("segments");
            for (number, packets) in segs {
                assert_eq!(number, next_segment);
                assert_eq!(packets.start, next, "chunk {} segment {number}", c.index);
                next = packets.end;
                next_segment += 1;
            }
        }
        assert_eq!(next, total_packets);
        assert_eq!(next_segment, 22);
    }

    #[test]
    fn a_short_run_is_refused() {
        let c = chunk(1, 60.0, 60.0, false);
        let w = window(&c, 6, 300.0, 48_000);
        assert!(segment_packets(&w, &c, 6, 100).is_err());
        assert!(own_packets(&w, &c, 100).is_err());
    }

    #[test]
    fn adts_frames_are_walked_and_damage_is_named() {
        let frame = |len: usize| {
            let mut f = vec![0xFF, 0xF1, 0x50, 0x80, 0, 0, 0xFC];
            f[3] |= ((len >> 11) & 0x03) as u8;
            f[4] = ((len >> 3) & 0xFF) as u8;
            f[5] = (((len & 0x07) << 5) | 0x1F) as u8;
            f.resize(len, 0);
            f
        };
        let mut bytes = frame(20);
        bytes.extend(frame(9));
        assert_eq!(adts_frames(&bytes).unwrap(), vec![0..20, 20..29]);
        bytes.push(0);
        let e = adts_frames(&bytes).unwrap_err().to_string();
        assert!(e.contains("byte 29"), "{e}");
    }

    #[test]
    fn a_joined_track_ends_where_the_programme_does() {
        use crate::ffmpeg::args::test_support::{strings, value};
        let track = |packets, samples| AdtsTrack {
            path: PathBuf::from("a.aac"),
            packets,
            samples,
        };
        // 7.99 s: 375 packets of sound and the priming one; the last holds 544 samples.
        let mut a = FfmpegArgs::new();
        track(376, 383_520).end_exactly(&mut a, "a:0").unwrap();
        let args = strings(a);
        assert_eq!(
            value(&args, "-bsf:a:0"),
            Some("setts=duration=if(eq(N\\,375)\\,DURATION*544/1024\\,DURATION)")
        );
        // A whole last packet needs nothing; a count that does not fit is refused.
        let mut a = FfmpegArgs::new();
        track(376, 384_000).end_exactly(&mut a, "a:0").unwrap();
        assert!(!strings(a).contains(&"-bsf:a:0".to_string()));
        assert!(track(370, 384_000).last_packet_samples().is_err());
        assert!(track(380, 384_000).last_packet_samples().is_err());
    }

    #[test]
    fn filter_values_are_escaped_for_both_parsers() {
        assert_eq!(filter_value("/tmp/a b/m.txt"), "/tmp/a b/m.txt");
        assert_eq!(filter_value("/x:y"), "/x\\\\:y");
        assert_eq!(filter_value("/a,b"), "/a\\,b");
        assert_eq!(filter_value("/it's"), "/it\\\\\\'s");
    }

    /// Runs every chunk of a 44.1 kHz sweep through the archive and rendition work, as
    /// the workflow does, and compares with a single run.
    mod against_one_run {
        use super::super::*;
        use crate::ffmpeg::ProgressSink;
        use transcoder_workflows::ladder::plan_chunks;
        use transcoder_workflows::media::AudioRendition;

        const SECONDS: f64 = 20.0;

        async fn run(args: &[&str]) -> Vec<u8> {
            let out = tokio::process::Command::new("ffmpeg")
                .args(["-hide_banner", "-v", "error", "-y"])
                .args(args)
                .output()
                .await
                .expect("ffmpeg runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        }

        /// Decoded samples of an ADTS file, interleaved stereo (priming included).
        async fn decode(path: &Path) -> Vec<f32> {
            let raw = run(&[
                "-f",
                "aac",
                "-i",
                &path.to_string_lossy(),
                "-f",
                "f32le",
                "-",
            ])
            .await;
            raw.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        }

        fn rms(x: impl Iterator<Item = f32>) -> f64 {
            let (sum, n) = x.fold((0.0, 0u64), |(s, n), v| (s + f64::from(v).powi(2), n + 1));
            (sum / n.max(1) as f64).sqrt()
        }

        #[tokio::test]
        async fn chunks_join_like_one_run() {
            let dir = tempfile::tempdir().unwrap();
            let source = dir.path().join("sweep.wav");
            // Two sweeps (a click or a slip at a join would stand out against them), at a
            // rate that is not 48 kHz, starting quiet and getting louder.
            run(&[
                "-f",
                "lavfi",
                "-i",
                &format!("aevalsrc=(0.1+0.04*t)*sin(2*PI*(200*t+40*t*t))|(0.1+0.04*t)*sin(2*PI*(300*t+30*t*t)):s=44100:d={SECONDS}"),
                &source.to_string_lossy(),
            ])
            .await;
            let storage = Storage::local(dir.path().join("store"));
            let chunks = plan_chunks(SECONDS, 2, 2);
            assert_eq!(chunks.len(), 5);
            let input = |c: &ChunkPlan, work| AudioChunkInput {
                source: ObjectRef::new("in", "sweep.wav"),
                chunk: *c,
                segment_seconds: 2,
                duration_seconds: SECONDS,
                source_sample_rate: 44_100,
                meter_dest: ObjectRef::new("scratch", format!("meter-{}.json", c.index)),
                work,
            };
            let progress = ProgressSink::none().scaled(0.0, 1.0);
            let mut joined = Vec::new();
            let mut meters = Vec::new();
            for c in &chunks {
                let work_dir = dir.path().join(format!("archive-{}", c.index));
                std::fs::create_dir_all(&work_dir).unwrap();
                let dest = ObjectRef::new("scratch", format!("audio-{}.aac", c.index));
                let made = encode_audio_chunk(
                    &storage,
                    &input(c, AudioChunkWork::Archive { dest: dest.clone() }),
                    &source,
                    &work_dir,
                    &progress,
                )
                .await
                .expect("archive chunk");
                assert_eq!(made.piece.map(|p| p.object), Some(dest.clone()));
                let piece = storage.readable_path(&dest, &work_dir).await.unwrap();
                joined.extend(std::fs::read(piece).unwrap());
                meters.push(made.meter);
            }
            let joined_path = dir.path().join("joined.aac");
            std::fs::write(&joined_path, &joined).unwrap();

            // The same sound in one run.
            let whole_path = dir.path().join("whole.aac");
            run(&[
                "-i",
                &source.to_string_lossy(),
                "-af",
                "aresample=async=1:first_pts=0,apad,aresample=48000,aformat=channel_layouts=stereo",
                "-t",
                &SECONDS.to_string(),
                "-c:a",
                "aac",
                "-b:a",
                "256k",
                "-f",
                "adts",
                &whole_path.to_string_lossy(),
            ])
            .await;
            let whole_bytes = std::fs::read(&whole_path).unwrap();
            assert_eq!(
                adts_frames(&joined).unwrap().len(),
                adts_frames(&whole_bytes).unwrap().len(),
                "packets"
            );
            let a = decode(&joined_path).await;
            let b = decode(&whole_path).await;
            assert_eq!(a.len(), b.len(), "decoded samples");
            assert_joins_match(&a, &b, &chunks);

            // The chunks' meter gives the loudness ffmpeg's meter gives in one pass.
            let m = summarize_meters(&storage, &meters, dir.path())
                .await
                .unwrap()
                .expect("not silent");
            let mut one = FfmpegArgs::with_loglevel("info");
            one.input(&source).opt(
                "-af",
                "aresample=48000,aformat=channel_layouts=stereo,ebur128=peak=true:framelog=verbose",
            );
            one.opt("-f", "null").output(Path::new("-"));
            let stderr = crate::ffmpeg::ffmpeg_with_stderr(one.as_slice(), SECONDS, &progress)
                .await
                .unwrap();
            let reference = loudness::parse_ebur128_summary(&stderr).unwrap();
            assert!(
                (m.integrated - reference.integrated).abs() < 0.1,
                "{m:?} vs {reference:?}"
            );
            assert!(
                (m.range - reference.range).abs() < 0.2,
                "{m:?} vs {reference:?}"
            );
            assert!(
                (m.true_peak - reference.true_peak).abs() < 0.2,
                "{m:?} vs {reference:?}"
            );

            // The rendition: normalized segments, time-stamped where one run puts them.
            let mut delivered = Vec::new();
            let mut segments = Vec::new();
            let mut waveforms = Vec::new();
            for c in &chunks {
                let made = rendition_chunk(&storage, &source, dir.path(), c, "audio", m).await;
                segments.extend(made.renditions.into_iter().flat_map(|(_, s)| s));
                delivered.push(made.meter);
                waveforms.extend(made.waveform);
            }
            assert_eq!(waveforms.len(), chunks.len());
            // As one run's muxer cuts them: the packet past 20 s (the priming frame shifts
            // the last one over) makes an eleventh segment of one packet.
            let packets = programme_samples(SECONDS).div_ceil(AAC_FRAME) + 1;
            let expected = (0..)
                .take_while(|k| segment_first_packet(*k, 2) < packets)
                .count();
            assert_eq!((segments.len(), expected), (11, 11));
            let mut packet = 0u64;
            for (k, seg) in segments.iter().enumerate() {
                assert_eq!(seg.uri, segment_file_name(k as u32));
                let path = dir.path().join("store/media/hls/audio").join(&seg.uri);
                let probe = tokio::process::Command::new("ffprobe")
                    .args([
                        "-v",
                        "error",
                        "-show_entries",
                        "packet=pts",
                        "-of",
                        "csv=p=0",
                    ])
                    .arg(&path)
                    .output()
                    .await
                    .expect("ffprobe runs");
                let first_pts: i64 = String::from_utf8_lossy(&probe.stdout)
                    .lines()
                    .find_map(|l| l.trim().trim_end_matches(',').parse().ok())
                    .expect("a packet");
                // In 1/90000; MPEG-TS starts one run at 1.4 s.
                assert_eq!(first_pts, 126_000 + packet as i64 * 1920, "segment {k}");
                packet += (seg.duration * SAMPLE_RATE as f64 / AAC_FRAME as f64).round() as u64;
            }
            assert_eq!(packet, packets);
            let finished = finish_rendition(
                &storage,
                &FinishAudioInput {
                    bucket: "media".into(),
                    prefix: "hls".into(),
                    name: "audio".into(),
                    segments,
                    meters: delivered,
                },
                dir.path(),
            )
            .await
            .unwrap();
            // The waveform joined from the chunks' stretches is the one a single pass over
            // the normalized sound draws (a sample rounded the other way may move a point
            // by one step of 256).
            let wf_dir = dir.path().join("wf");
            std::fs::create_dir_all(&wf_dir).unwrap();
            let joined = finish_waveform(&storage, &waveforms, SECONDS, &wf_dir)
                .await
                .expect("waveform");
            let whole_dir = dir.path().join("wf-whole");
            std::fs::create_dir_all(&whole_dir).unwrap();
            let whole = waveform::generate_waveform_filtered(
                &source,
                Some(&loudness::output_audio_filter(Some(&m))),
                &whole_dir,
                SECONDS,
                &progress,
            )
            .await
            .expect("one pass");
            let data = |p: &Path| -> Vec<i64> {
                let doc: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
                doc["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_i64().unwrap())
                    .collect()
            };
            let (a, b) = (data(&joined.json), data(&whole.json));
            assert_eq!(a.len(), b.len());
            let worst = a.iter().zip(&b).map(|(x, y)| x.abs_diff(*y)).max();
            assert!(worst <= Some(1), "points differ by {worst:?}");

            let got = finished.delivered_loudness.expect("measured");
            assert!((got.integrated - loudness::TARGET_I).abs() < 0.3, "{got:?}");
            assert!(got.true_peak <= loudness::TARGET_TP + 0.5, "{got:?}");

            // Pushed 15 dB louder than it is, the peaks need the limiter: its state too
            // crosses the joins as in one run.
            let pushed = LoudnessMeasurement {
                integrated: m.integrated - 15.0,
                ..m
            };
            assert!(loudness::apply_filter(&pushed).contains("alimiter"));
            let mut segments = Vec::new();
            for c in &chunks {
                let made =
                    rendition_chunk(&storage, &source, dir.path(), c, "limited", pushed).await;
                segments.extend(made.renditions.into_iter().flat_map(|(_, s)| s));
            }
            let mut ts = Vec::new();
            for seg in &segments {
                ts.extend(
                    std::fs::read(dir.path().join("store/media/hls/limited").join(&seg.uri))
                        .unwrap(),
                );
            }
            let ts_path = dir.path().join("limited.ts");
            std::fs::write(&ts_path, ts).unwrap();
            // Two encodes of the same sound differ by their coding noise: what must hold is
            // that the joins add nothing to it. Measured against the filtered sound itself.
            let filtered = run(&[
                "-i",
                &source.to_string_lossy(),
                "-af",
                &format!(
                    "aresample=async=1:first_pts=0,apad,aresample=48000,aformat=channel_layouts=stereo,{}",
                    loudness::output_audio_filter(Some(&pushed))
                ),
                "-t",
                &SECONDS.to_string(),
                "-f",
                "f32le",
                "-",
            ])
            .await;
            let reference: Vec<f32> = filtered
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let raw = run(&["-i", &ts_path.to_string_lossy(), "-f", "f32le", "-"]).await;
            let a: Vec<f32> = raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            // The priming frame first, then the programme.
            let a = &a[AAC_FRAME as usize * 2..];
            assert!(
                a.len() >= reference.len(),
                "decoded {} < {}",
                a.len(),
                reference.len()
            );
            let noise = |at: usize| {
                let span = at.saturating_sub(4096)..(at + 4096).min(reference.len());
                rms(a[span.clone()]
                    .iter()
                    .zip(&reference[span])
                    .map(|(x, y)| x - y))
            };
            let joins: Vec<usize> = chunks[1..]
                .iter()
                .map(|c| programme_samples(c.start_seconds) as usize * 2)
                .collect();
            let mut elsewhere: Vec<f64> = (1..40)
                .map(|i: usize| i * 24_000 * 2)
                .filter(|at: &usize| joins.iter().all(|j| at.abs_diff(*j) > 48_000))
                .map(noise)
                .collect();
            elsewhere.sort_by(f64::total_cmp);
            let typical = elsewhere[elsewhere.len() * 9 / 10];
            for (c, at) in chunks[1..].iter().zip(&joins) {
                let db = 20.0 * (noise(*at) / typical).log10();
                assert!(
                    db < 3.0,
                    "the join at {} s is {db:.1} dB noisier than elsewhere",
                    c.start_seconds
                );
            }
            // The limiter holds the filtered sound under its ceiling. (The 128 kb/s encode of
            // this sweep, limited by 4 dB all along, overshoots it: AAC's low-pass rings.)
            let peak = reference.iter().fold(0f32, |p, x| p.max(x.abs()));
            assert!(
                20.0 * f64::from(peak).log10() <= loudness::LIMITER_CEILING_DB + 0.01,
                "sample peak {peak}"
            );
        }

        /// One chunk of rendition `name`, normalized by `m`, with its waveform stretch.
        async fn rendition_chunk(
            storage: &Storage,
            source: &Path,
            dir: &Path,
            c: &ChunkPlan,
            name: &str,
            m: LoudnessMeasurement,
        ) -> AudioChunkOutput {
            let work_dir = dir.join(format!("{name}-{}", c.index));
            std::fs::create_dir_all(&work_dir).unwrap();
            let input = AudioChunkInput {
                source: ObjectRef::new("in", "sweep.wav"),
                chunk: *c,
                segment_seconds: 2,
                duration_seconds: SECONDS,
                source_sample_rate: 44_100,
                meter_dest: ObjectRef::new("scratch", format!("{name}-{}.json", c.index)),
                work: AudioChunkWork::Renditions {
                    bucket: "media".into(),
                    prefix: "hls".into(),
                    renditions: vec![AudioRendition {
                        name: name.into(),
                        bitrate_kbps: 128,
                    }],
                    loudness: Some(m),
                    waveform_dest: Some(ObjectRef::new(
                        "scratch",
                        format!("{name}-waveform-{}.json", c.index),
                    )),
                },
            };
            let progress = ProgressSink::none().scaled(0.0, 1.0);
            encode_audio_chunk(storage, &input, source, &work_dir, &progress)
                .await
                .expect("rendition chunk")
        }

        /// Around each join (decoded sample = programme sample + the priming frame), the
        /// chunked sound `a` differs from one run's `b` by coding noise at most: a click, a
        /// gap or a slip of one sample on these sweeps would be tens of dB louder.
        fn assert_joins_match(a: &[f32], b: &[f32], chunks: &[ChunkPlan]) {
            let signal = rms(b.iter().copied());
            for c in chunks.iter().skip(1) {
                let at = (programme_samples(c.start_seconds) + AAC_FRAME) as usize * 2;
                let span = at - 4096..at + 4096;
                let diff = rms(a[span.clone()].iter().zip(&b[span]).map(|(x, y)| x - y));
                let db = 20.0 * (diff / signal).log10();
                assert!(
                    db < -35.0,
                    "join at {} s differs by {db:.1} dB",
                    c.start_seconds
                );
            }
        }
    }
}
