//! A programme's sound in chunks: the mezzanine's track, the loudness meter, the HLS audio
//! renditions and the waveform's stretches, each made one ladder chunk at a time on the
//! grids of [`super::grid`] (ARCHITECTURE.md, "Audio in chunks"), and what finishes them.
//! The meter (EBU R128 momentary and short-term loudness every 100 ms, true peak) keeps the
//! readings whose 100 ms step ends inside the chunk; with the pre-roll, each is the reading a
//! single pass gives. [`super::loudness::summarize`] gates them into the programme's loudness.

use super::adts::{adts_frames, AdtsTrack};
use super::grid::{
    own_packets, seconds, segment_packets, window, AudioWindow, AAC_FRAME, METER_STEP, SAMPLE_RATE,
};
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
    AudioChunkInput, AudioChunkOutput, AudioChunkWork, AudioRenditionOutput, FinishAudioHlsInput,
    FinishAudioInput, HlsOutput, LoudnessMeasurement, MezzanineInput, ObjectRef, SegmentInfo,
    StoredObject,
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
        use crate::audio::grid::{programme_samples, segment_first_packet};
        use crate::ffmpeg::ProgressSink;
        use transcoder_workflows::ladder::plan_chunks;
        use transcoder_workflows::media::AudioRendition;
        use transcoder_workflows::media::ChunkPlan;

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
