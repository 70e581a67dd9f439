//! A programme's sound in chunks: the mezzanine's track, the loudness meter, the HLS audio
//! renditions and the waveform's stretches, each made one ladder chunk at a time on the
//! grids of [`super::grid`] (ARCHITECTURE.md, "Audio in chunks"), and what finishes them.
//! The meter (EBU R128 momentary and short-term loudness every 100 ms, true peak) keeps the
//! readings whose 100 ms step ends inside the chunk; with the pre-roll, each is the reading a
//! single pass gives. [`super::loudness::summarize`] gates them into the programme's loudness.
//!
//! About 500 lines: the chunk's encode and the finishing steps that read what it stored
//! share the packet, segment and meter layouts; the tests are in `chunks/tests.rs`.

use super::adts::{adts_frames, AdtsTrack};
use super::grid::{
    own_packets, seconds, segment_packets, window, AudioWindow, AAC_FRAME, METER_STEP, SAMPLE_RATE,
};
use crate::audio::loudness::{self, MeterSeries};
use crate::audio::AAC_ENCODER;
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
    AudioChunkInput, AudioChunkOutput, AudioChunkWork, AudioRenditionOutput, FinishAudioHlsInput,
    FinishAudioInput, FinishWaveformInput, HlsOutput, JoinAudioInput, LoudnessMeasurement,
    MezzanineInput, ObjectRef, SegmentInfo, StoredObject, WaveformOutput,
};

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
            .opt("-c:a", AAC_ENCODER)
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
        // Packet `m` decodes to samples `[(m-1)·1024, m·1024)`: stamped where its sound
        // starts, so a player that does not know of the encoder's priming frame (MPEG-TS
        // has no way to say) plays the sound with its picture, not one frame late.
        .opt(
            "-output_ts_offset",
            format!(
                "{:.6}",
                (packets.start as f64 - 1.0) * AAC_FRAME as f64 / SAMPLE_RATE as f64
            ),
        )
        // The first segment's priming packet is stamped before zero: kept there, not shifted.
        .opt("-avoid_negative_ts", "disabled")
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
        encoder: Some(AAC_ENCODER.to_string()),
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
        // Finishing encodes nothing; the chunks name their encoder.
        encoder: None,
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

/// An audio job's mezzanine from its stored ADTS pieces, joined and stored.
pub async fn join_stored_audio(
    storage: &Storage,
    input: &JoinAudioInput,
    work_dir: &Path,
    progress: &ScaledProgress,
) -> Result<StoredObject> {
    let pieces = storage.readable_paths(&input.pieces, work_dir).await?;
    let out = work_dir.join("mezzanine.mp4");
    join_audio_mezzanine(&pieces, work_dir, &out, input.duration_seconds, progress).await?;
    let stored = storage.store(&out, &input.dest).await?;
    tracing::info!(dest = %input.dest, pieces = pieces.len(), size_bytes = stored.size_bytes, "mezzanine stored (joined from its pieces)");
    Ok(stored)
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
            encoder: AAC_ENCODER.to_string(),
        })
        .collect();
    let mut hls =
        publish_playlists(storage, &input.bucket, &input.prefix, work_dir, &published).await?;
    hls.delivered_loudness = summarize_meters(storage, &input.meters, work_dir).await?;
    Ok(hls)
}

/// An audio job's waveform from its chunks' stretches, stored where the job's keys say;
/// returns what was stored and its bytes.
pub async fn finish_stored_waveform(
    storage: &Storage,
    input: &FinishWaveformInput,
    work_dir: &Path,
) -> Result<(WaveformOutput, u64)> {
    let files = finish_waveform(storage, &input.pieces, input.duration_seconds, work_dir).await?;
    waveform::publish(storage, &files, &input.json_dest, &input.png_dest).await
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
mod tests;
