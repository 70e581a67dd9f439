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
            // In 1/90000: the programme's sound starts at 1.4 s (where MPEG-TS starts one
            // run), and packet `m` is stamped where its sound starts, `m - 1` frames in (the
            // priming packet a frame before).
            assert_eq!(
                first_pts,
                126_000 + (packet as i64 - 1) * 1920,
                "segment {k}"
            );
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
            let made = rendition_chunk(&storage, &source, dir.path(), c, "limited", pushed).await;
            segments.extend(made.renditions.into_iter().flat_map(|(_, s)| s));
        }
        let mut ts = Vec::new();
        for seg in &segments {
            ts.extend(
                std::fs::read(dir.path().join("store/media/hls/limited").join(&seg.uri)).unwrap(),
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
