use super::*;
use crate::ffmpeg::ProgressSink;
use serde_json::Value;
use tokio::process::Command;

fn strings(args: &[OsString]) -> Vec<String> {
    args.iter()
        .map(|s| s.clone().into_string().unwrap())
        .collect()
}

fn no_progress() -> ScaledProgress {
    ProgressSink::none().scaled(0.0, 1.0)
}

// --- pure parts ------------------------------------------------------------------

#[test]
fn blocks_are_summarized_like_audiowaveform() {
    let mut s = PeakSummary::new(4);
    let mut splitter = SampleSplitter::default();
    let samples: [i16; 10] = [0, 300, -300, 5, 32767, -32768, 1, 2, -255, -256];
    let bytes: Vec<u8> = samples.iter().flat_map(|v| v.to_le_bytes()).collect();
    // Chunks that split samples in the middle.
    for chunk in [
        &bytes[..3],
        &bytes[3..4],
        &bytes[4..4],
        &bytes[4..11],
        &bytes[11..],
    ] {
        splitter.feed(chunk, |v| s.push(v));
    }
    assert_eq!(splitter.samples, 10);
    assert_eq!(splitter.odd_byte, None);
    let points = s.finish();
    assert_eq!(
        points,
        vec![
            // 300 / 256 = 1, -300 / 256 = -1 (toward zero)
            Point { min: -1, max: 1 },
            // full scale: -32768 / 256 = -128, 32767 / 256 = 127
            Point {
                min: -128,
                max: 127
            },
            // the partial block counts; -255 / 256 = 0 (not -1 as >> 8 would give)
            Point { min: -1, max: 0 },
        ]
    );
    assert_eq!(to_8_bits(-255), 0);
    assert_eq!(to_8_bits(-256), -1);
    assert_eq!(to_8_bits(255), 0);
    assert_eq!(to_8_bits(256), 1);
}

#[test]
fn pieces_join_into_what_one_pass_summarizes() {
    let n = 3 * 48_000 + 1_234;
    let duration = n as f64 / 48_000.0;
    // Deterministic noise with a slow swell.
    let mut x = 12_345u32;
    let samples: Vec<i16> = (0..n)
        .map(|i| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let noise = ((x >> 16) as i32 % 2000) - 1000;
            (noise * (1 + i as i32 / 20_000)).clamp(-32768, 32767) as i16
        })
        .collect();
    let mut whole_points = PeakSummary::new(SAMPLES_PER_POINT);
    let per_column = image_samples_per_column(duration).expect("known duration");
    let mut whole_columns = PeakSummary::new(per_column);
    for s in &samples {
        whole_points.push(*s);
        whole_columns.push(*s);
    }
    let pieces: Vec<WaveformPiece> = [0, 48_000, 96_000, 144_000, n]
        .windows(2)
        .map(|w| summarize_stretch(&samples[w[0]..w[1]], w[0] as u64, duration))
        .collect();
    let (points, columns) = join_stretches(&pieces);
    assert_eq!(points, whole_points.finish());
    assert_eq!(columns, whole_columns.finish());
}

#[test]
fn exact_blocks_make_no_extra_point() {
    let mut s = PeakSummary::new(SAMPLES_PER_POINT);
    for _ in 0..3 * SAMPLES_PER_POINT {
        s.push(0);
    }
    assert_eq!(s.finish().len(), 3);
    let mut s = PeakSummary::new(SAMPLES_PER_POINT);
    for _ in 0..3 * SAMPLES_PER_POINT + 1 {
        s.push(0);
    }
    assert_eq!(s.finish().len(), 4);
}

#[test]
fn the_picture_has_a_column_per_block_of_the_duration() {
    assert_eq!(image_samples_per_column(0.0), None);
    assert_eq!(image_samples_per_column(f64::NAN), None);
    assert_eq!(image_samples_per_column(8.0), Some(300));
    assert_eq!(image_samples_per_column(3.0 * 3600.0), Some(405_000));
    assert_eq!(image_samples_per_column(0.001), Some(1));
}

#[test]
fn json_is_written_like_audiowaveform() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(JSON_NAME);
    write_json(
        &path,
        &[
            Point { min: -3, max: 4 },
            Point {
                min: -128,
                max: 127,
            },
        ],
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\"version\":2,\"channels\":1,\"sample_rate\":48000,\"samples_per_pixel\":4800,\
         \"bits\":8,\"length\":2,\"data\":[-3,4,-128,127]}\n"
    );
}

fn doc(length: u64) -> WaveformJson {
    WaveformJson {
        version: 2,
        channels: 1,
        sample_rate: 48_000,
        samples_per_pixel: 4_800,
        bits: 8,
        length,
        data: (0..length).flat_map(|_| [-5, 5]).collect(),
    }
}

#[test]
fn json_checks_refuse_what_players_would_misread() {
    assert!(check_json(&doc(80), 8.0).is_ok());
    assert!(check_json(&doc(81), 8.01).is_ok());
    assert!(
        check_json(&doc(80), 0.0).is_ok(),
        "duration 0 skips that check"
    );
    let bad = |d: WaveformJson, duration: f64| {
        let e = check_json(&d, duration).unwrap_err();
        assert!(matches!(e, MediaError::Verification(_)), "{e}");
        e.to_string()
    };
    assert!(bad(doc(40), 8.0).contains("expected about 80"));
    assert!(bad(
        WaveformJson {
            version: 1,
            ..doc(80)
        },
        8.0
    )
    .contains("version"));
    assert!(bad(
        WaveformJson {
            bits: 16,
            ..doc(80)
        },
        8.0
    )
    .contains("bits"));
    assert!(bad(
        WaveformJson {
            channels: 2,
            ..doc(80)
        },
        8.0
    )
    .contains("channels"));
    assert!(bad(
        WaveformJson {
            samples_per_pixel: 4410,
            ..doc(80)
        },
        8.0
    )
    .contains("points per second"));
    assert!(bad(
        WaveformJson {
            length: 81,
            ..doc(80)
        },
        8.0
    )
    .contains("data holds"));
    assert!(bad(doc(0), 0.0).contains("no points"));
    let mut d = doc(80);
    d.data[7] = 200;
    assert!(bad(d, 8.0).contains("outside"));
    let mut d = doc(80);
    d.data[0] = 6;
    assert!(bad(d, 8.0).contains("above max"));
}

#[test]
fn image_scales_full_scale_to_the_height() {
    // 1280 columns over 2 points: the left half full scale, the right half silence.
    let img = render_image(&[
        Point {
            min: -128,
            max: 127,
        },
        Point { min: 0, max: 0 },
    ]);
    assert_eq!(img.dimensions(), (IMAGE_WIDTH, IMAGE_HEIGHT));
    let at = |x, y| img.get_pixel(x, y).0;
    assert_eq!(row_of(0), IMAGE_HEIGHT / 2);
    assert_eq!(row_of(-128), IMAGE_HEIGHT - 1);
    assert!(row_of(127) <= 3);
    assert_eq!(at(10, IMAGE_HEIGHT - 1), WAVEFORM);
    assert_eq!(at(10, 3), WAVEFORM);
    assert_eq!(at(10, 0), BACKGROUND);
    assert_eq!(at(1000, IMAGE_HEIGHT / 2), WAVEFORM);
    assert_eq!(at(1000, IMAGE_HEIGHT / 2 - 1), BACKGROUND);
    assert_eq!(at(1000, IMAGE_HEIGHT / 2 + 1), BACKGROUND);

    // More points than columns: each column takes the extremes of its points.
    let mut many = vec![Point { min: 0, max: 0 }; 12_800];
    many[5] = Point { min: -64, max: 1 };
    many[6] = Point { min: -1, max: 64 };
    let img = render_image(&many);
    let column: Vec<u32> = (0..IMAGE_HEIGHT)
        .filter(|&y| img.get_pixel(0, y).0 == WAVEFORM)
        .collect();
    assert_eq!(column.first(), Some(&row_of(64)));
    assert_eq!(column.last(), Some(&row_of(-64)));

    let empty = render_image(&[]);
    assert_eq!(empty.get_pixel(0, IMAGE_HEIGHT / 2).0, CENTRE_LINE);
    assert_eq!(empty.get_pixel(0, 0).0, BACKGROUND);
}

#[test]
fn decode_args_restrict_inputs_and_keep_stdout_for_samples() {
    let src = Path::new("/tmp/in put; rm.m4a");
    let pcm = strings(pcm_args(src, None).as_slice());
    assert!(!pcm.iter().any(|s| s == "-progress"), "{pcm:?}");
    assert!(!pcm.iter().any(|s| s == "-af"), "{pcm:?}");
    let i = pcm.iter().position(|s| s == "-i").unwrap();
    assert_eq!(pcm[i - 2..i], ["-protocol_whitelist", "file"]);
    assert_eq!(pcm[i + 1], "/tmp/in put; rm.m4a");
    for pair in [
        ["-map", "0:a:0"],
        ["-ac", "1"],
        ["-ar", "48000"],
        ["-c:a", "pcm_s16le"],
        ["-f", "s16le"],
    ] {
        assert!(pcm.windows(2).any(|w| w == pair), "{pair:?} in {pcm:?}");
    }
    assert_eq!(pcm.last().unwrap(), "pipe:1");

    let wav = strings(wav_args(src, Some("volume=0.5"), Path::new("/w/x.wav")).as_slice());
    let af = wav.iter().position(|s| s == "-af").unwrap();
    assert_eq!(wav[af + 1], "volume=0.5");
    assert!(af < wav.iter().position(|s| s == "-ac").unwrap());
    assert!(wav.windows(2).any(|w| w == ["-progress", "pipe:1"]));
    assert!(wav.windows(2).any(|w| w == ["-ac", "1"]));
    assert!(wav.windows(2).any(|w| w == ["-f", "wav"]));
    assert_eq!(wav.last().unwrap(), "/w/x.wav");
}

#[test]
fn audiowaveform_args_are_whole_and_use_the_native_palette() {
    let wav = Path::new("/work dir/waveform-1.wav");
    assert_eq!(
        strings(&audiowaveform_json_args(
            wav,
            Path::new("/work dir/waveform.json")
        )),
        [
            "-q",
            "-i",
            "/work dir/waveform-1.wav",
            "-o",
            "/work dir/waveform.json",
            "--pixels-per-second",
            "10",
            "-b",
            "8"
        ]
    );
    assert_eq!(
        strings(&audiowaveform_png_args(
            wav,
            Path::new("/work dir/waveform.png")
        )),
        [
            "-q",
            "-i",
            "/work dir/waveform-1.wav",
            "-o",
            "/work dir/waveform.png",
            "-w",
            "1280",
            "-h",
            "720",
            "--zoom",
            "auto",
            "--no-axis-labels",
            "--background-color",
            "0f172a",
            "--waveform-color",
            "38bdf8"
        ]
    );
}

#[test]
fn audiowaveform_is_found_on_path_or_named_by_env() {
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let path = std::env::join_paths([empty.path(), dir.path()]).unwrap();
    assert_eq!(resolve_audiowaveform(None, Some(path.clone())), None);

    let bin = dir.path().join("audiowaveform");
    std::fs::write(&bin, "#!/bin/sh\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            resolve_audiowaveform(None, Some(path.clone())),
            None,
            "not executable"
        );
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    assert_eq!(resolve_audiowaveform(None, Some(path.clone())), Some(bin));
    assert_eq!(
        resolve_audiowaveform(Some("/opt/aw".into()), Some(path.clone())),
        Some(PathBuf::from("/opt/aw"))
    );
    assert_eq!(resolve_audiowaveform(Some("".into()), Some(path)), None);
    assert_eq!(resolve_audiowaveform(None, None), None);
}

// --- with ffmpeg ------------------------------------------------------------------

/// Makes a test source from an ffmpeg lavfi audio graph.
async fn make_audio(dir: &Path, name: &str, graph: &str, seconds: f64, codec: &str) -> PathBuf {
    let path = dir.join(name);
    let mut a = FfmpegArgs::new();
    a.opt("-f", "lavfi")
        .opt("-i", graph)
        .opt("-t", format!("{seconds}"))
        .opt("-c:a", codec)
        .output(&path);
    ffmpeg(a.as_slice(), seconds, &no_progress()).await.unwrap();
    path
}

fn sine(amplitude: f64, seconds: f64) -> String {
    format!("aevalsrc={amplitude}*sin(2*PI*440*t):s=48000:d={seconds}")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn data(doc: &Value) -> Vec<i64> {
    doc["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

/// The checks every generated waveform of `seconds` must pass; returns the data.
fn assert_well_formed(files: &WaveformFiles, seconds: f64) -> Vec<i64> {
    let doc = read_json(&files.json);
    assert_eq!(doc["version"], 2);
    assert_eq!(doc["channels"], 1);
    assert_eq!(doc["bits"], 8);
    assert_eq!(doc["sample_rate"], 48000);
    assert_eq!(doc["samples_per_pixel"], 4800);
    let length = doc["length"].as_u64().unwrap();
    assert_eq!(length, files.length);
    let expected = expected_length(seconds);
    assert!(
        length.abs_diff(expected) <= 1,
        "length {length}, expected {expected} ± 1"
    );
    let values = data(&doc);
    assert_eq!(values.len() as u64, 2 * length);
    assert!(values.iter().all(|v| (-128..=127).contains(v)));
    assert!(values.chunks(2).all(|p| p[0] <= p[1]));

    let img = image::open(&files.png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (IMAGE_WIDTH, IMAGE_HEIGHT));
    let first = img.get_pixel(0, 0);
    assert!(img.pixels().any(|p| p != first), "PNG is a single colour");
    values
}

/// The weakest peaks among the points between `from` and `to` seconds: the highest min
/// and the lowest max (every point there reaches at least that far).
fn weakest_between(values: &[i64], from: f64, to: f64) -> (i64, i64) {
    let points = &values[2 * (from * 10.0) as usize..2 * (to * 10.0) as usize];
    let max = points.chunks(2).map(|p| p[1]).min().unwrap();
    let min = points.chunks(2).map(|p| p[0]).max().unwrap();
    (min, max)
}

#[tokio::test]
async fn aac_sine_gives_its_amplitude() {
    let dir = tempfile::tempdir().unwrap();
    let src = make_audio(dir.path(), "sine.m4a", &sine(0.8, 8.0), 8.0, "aac").await;
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let (sink, rx) = ProgressSink::channel();
    let files = generate_with(&src, None, &work, 8.0, &sink.scaled(0.0, 1.0), None)
        .await
        .unwrap();
    assert_eq!(files.generator, GENERATOR_NATIVE);
    assert_eq!(files.json, work.join(JSON_NAME));
    assert_eq!(files.png, work.join(PNG_NAME));
    assert!((*rx.borrow() - 1.0).abs() < 1e-9);
    let values = assert_well_formed(&files, 8.0);
    // 0.8 full scale = 26214 / 256 = 102; AAC overshoots at the abrupt start, so look
    // at the steady middle. Every point there spans 44 periods of the sine.
    let (weakest_min, weakest_max) = weakest_between(&values, 1.0, 7.0);
    assert!((96..=108).contains(&weakest_max), "max {weakest_max}");
    assert!((-108..=-96).contains(&weakest_min), "min {weakest_min}");
    assert!(values.iter().all(|v| v.abs() <= 128));

    // The picture: waveform pixels well away from the centre line, in the middle.
    let img = image::open(&files.png).unwrap().to_rgb8();
    let x = IMAGE_WIDTH / 2;
    let lit: Vec<u32> = (0..IMAGE_HEIGHT)
        .filter(|&y| img.get_pixel(x, y).0 == WAVEFORM)
        .collect();
    let span = lit.last().unwrap() - lit.first().unwrap();
    // ±102 of ±128 over 720 rows: about 570 rows.
    assert!((520..=620).contains(&span), "span {span}");
    assert_eq!(img.get_pixel(x, 0).0, BACKGROUND);
}

#[tokio::test]
async fn stereo_channels_are_averaged() {
    let dir = tempfile::tempdir().unwrap();
    // Lossless, so that the check is about the downmix: left 0.8, right 0.2, in phase.
    let graph = "aevalsrc=0.8*sin(2*PI*440*t)|0.2*sin(2*PI*440*t):s=48000:d=8:c=stereo";
    let src = make_audio(dir.path(), "stereo.flac", graph, 8.0, "flac").await;
    let files = generate_with(&src, None, dir.path(), 8.0, &no_progress(), None)
        .await
        .unwrap();
    let values = assert_well_formed(&files, 8.0);
    assert_eq!(files.length, 80);
    // (0.8 + 0.2) / 2 = 0.5 full scale = 16383 / 256 = 63.
    let (min, max) = weakest_between(&values, 0.0, 8.0);
    assert!((62..=64).contains(&max), "max {max}");
    assert!((-64..=-62).contains(&min), "min {min}");
}

#[tokio::test]
async fn the_filter_runs_in_the_same_decode() {
    let dir = tempfile::tempdir().unwrap();
    let src = make_audio(dir.path(), "sine.flac", &sine(0.8, 4.0), 4.0, "flac").await;
    let files = generate_with(
        &src,
        Some("volume=0.5"),
        dir.path(),
        4.0,
        &no_progress(),
        None,
    )
    .await
    .unwrap();
    let values = assert_well_formed(&files, 4.0);
    // 0.4 full scale = 13107 / 256 = 51.
    let (min, max) = weakest_between(&values, 0.0, 4.0);
    assert!((50..=52).contains(&max), "max {max}");
    assert!((-52..=-50).contains(&min), "min {min}");
}

#[tokio::test]
async fn silence_is_all_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let src = make_audio(
        dir.path(),
        "silence.m4a",
        "anullsrc=r=48000:cl=stereo",
        8.0,
        "aac",
    )
    .await;
    let files = generate_with(&src, None, dir.path(), 8.0, &no_progress(), None)
        .await
        .unwrap();
    let values = assert_well_formed(&files, 8.0);
    assert!(values.iter().all(|&v| v == 0), "{values:?}");
    // Only the background, the centre line and the flat waveform on it.
    let img = image::open(&files.png).unwrap().to_rgb8();
    for (_, y, p) in img.enumerate_pixels() {
        if y == IMAGE_HEIGHT / 2 {
            assert_eq!(p.0, WAVEFORM);
        } else {
            assert_eq!(p.0, BACKGROUND);
        }
    }
}

#[tokio::test]
async fn a_final_partial_block_is_a_point() {
    let dir = tempfile::tempdir().unwrap();
    // 2.55 s = 122400 samples = 25.5 blocks of 4800.
    let src = make_audio(dir.path(), "short.wav", &sine(0.5, 2.55), 2.55, "pcm_s16le").await;
    let files = generate_with(&src, None, dir.path(), 2.55, &no_progress(), None)
        .await
        .unwrap();
    assert_well_formed(&files, 2.55);
    assert_eq!(files.length, 26);
}

#[tokio::test]
async fn inputs_without_audio_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.m4a");
    std::fs::write(&garbage, vec![0x42u8; 4096]).unwrap();
    let e = generate_with(&garbage, None, dir.path(), 8.0, &no_progress(), None)
        .await
        .unwrap_err();
    assert!(matches!(e, MediaError::Tool { tool: "ffmpeg", .. }), "{e}");

    let video = dir.path().join("video.mp4");
    let mut a = FfmpegArgs::new();
    a.opt("-f", "lavfi")
        .opt("-i", "testsrc2=size=64x64:rate=10:duration=1")
        .opt("-c:v", "mpeg4")
        .output(&video);
    ffmpeg(a.as_slice(), 1.0, &no_progress()).await.unwrap();
    let e = generate_with(&video, None, dir.path(), 1.0, &no_progress(), None)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("matches no streams"), "{e}");
    assert!(!dir.path().join(JSON_NAME).exists());
}

/// Writes an executable shell script (a stand-in for audiowaveform).
fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[tokio::test]
async fn audiowaveform_gets_a_mono_wav_and_writes_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let src = make_audio(dir.path(), "sine.m4a", &sine(0.8, 8.0), 8.0, "aac").await;
    // The stand-in copies what the native generator wrote, so the checks pass.
    let reference = dir.path().join("reference");
    std::fs::create_dir(&reference).unwrap();
    generate_with(&src, None, &reference, 8.0, &no_progress(), None)
        .await
        .unwrap();
    let log = dir.path().join("calls.log");
    let seen = dir.path().join("seen.wav");
    let fake = dir.path().join("fake-audiowaveform");
    script(
        &fake,
        &format!(
            r#"printf '%s\n' "$*" >> '{log}'
out=; in=
while [ $# -gt 0 ]; do
  case "$1" in -i) in=$2; shift ;; -o) out=$2; shift ;; esac
  shift
done
cp "$in" '{seen}' || exit 3
case "$out" in
  *.json) cp '{r}/waveform.json' "$out" ;;
  *.png) cp '{r}/waveform.png' "$out" ;;
  *) exit 4 ;;
esac"#,
            log = log.display(),
            seen = seen.display(),
            r = reference.display()
        ),
    );
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let (sink, rx) = ProgressSink::channel();
    let files = generate_with(&src, None, &work, 8.0, &sink.scaled(0.0, 1.0), Some(&fake))
        .await
        .unwrap();
    assert_eq!(files.generator, GENERATOR_AUDIOWAVEFORM);
    assert!((*rx.borrow() - 1.0).abs() < 1e-9);
    assert_well_formed(&files, 8.0);

    let calls = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls[0].ends_with("waveform.json --pixels-per-second 10 -b 8"),
        "{}",
        calls[0]
    );
    assert!(
        calls[1].contains("waveform.png -w 1280 -h 720 --zoom auto"),
        "{}",
        calls[1]
    );

    // What audiowaveform read: a 48 kHz mono 16-bit WAV of the whole audio (ffmpeg puts
    // a JUNK chunk before "fmt " to leave room for RF64, so walk the chunks).
    let wav = std::fs::read(&seen).unwrap();
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(&wav[8..12], b"WAVE");
    let mut at = 12;
    let fmt = loop {
        let size = u32::from_le_bytes(wav[at + 4..at + 8].try_into().unwrap()) as usize;
        if &wav[at..at + 4] == b"fmt " {
            break &wav[at + 8..at + 8 + size];
        }
        at += 8 + size + size % 2;
    };
    let u16_at = |i: usize| u16::from_le_bytes([fmt[i], fmt[i + 1]]);
    assert_eq!(u16_at(0), 1, "PCM");
    assert_eq!(u16_at(2), 1, "channels");
    assert_eq!(u32::from_le_bytes(fmt[4..8].try_into().unwrap()), 48_000);
    assert_eq!(u16_at(14), 16, "bits");
    assert!(wav.len() >= 8 * 48_000 * 2);

    // The temporary WAV is gone.
    let mut left: Vec<_> = std::fs::read_dir(&work)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, [JSON_NAME, PNG_NAME]);
}

#[tokio::test]
async fn a_failing_or_missing_audiowaveform_falls_back_to_native() {
    let dir = tempfile::tempdir().unwrap();
    let src = make_audio(dir.path(), "sine.m4a", &sine(0.8, 3.0), 3.0, "aac").await;
    let failing = dir.path().join("failing-audiowaveform");
    script(&failing, "echo 'Error: cannot do it' >&2\nexit 1");
    let bogus = dir.path().join("bogus-audiowaveform");
    // Exits 0 but writes JSON in the old format (no version): refused by the checks.
    script(
        &bogus,
        r#"while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
printf '{"sample_rate":48000,"samples_per_pixel":4800,"bits":8,"length":1,"data":[0,0]}' > "$out""#,
    );
    let missing = dir.path().join("no-such-audiowaveform");
    for bin in [&failing, &bogus, &missing] {
        let work = tempfile::tempdir_in(dir.path()).unwrap();
        let files = generate_with(&src, None, work.path(), 3.0, &no_progress(), Some(bin))
            .await
            .unwrap();
        assert_eq!(files.generator, GENERATOR_NATIVE, "{}", bin.display());
        assert_well_formed(&files, 3.0);
        let count = std::fs::read_dir(work.path()).unwrap().count();
        assert_eq!(count, 2, "the temporary WAV is removed");
    }
}

/// With a real audiowaveform at hand (`$AUDIOWAVEFORM` or on `PATH`; Debian has no
/// package, so usually none is), both generators must write the same JSON byte for byte.
#[tokio::test]
async fn native_json_is_what_audiowaveform_writes() {
    let Some(bin) =
        resolve_audiowaveform(std::env::var_os("AUDIOWAVEFORM"), std::env::var_os("PATH"))
    else {
        eprintln!("note: no audiowaveform found; native_json_is_what_audiowaveform_writes compared nothing");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sources = [
        (
            // Swelling and fading, so that points differ; 44.1 kHz, resampled to 48 kHz.
            make_audio(
                dir.path(),
                "swell.m4a",
                "aevalsrc=0.9*sin(PI*t/7)*sin(2*PI*330*t):s=44100:d=7.33",
                7.33,
                "aac",
            )
            .await,
            7.33,
        ),
        (
            make_audio(
                dir.path(),
                "stereo.flac",
                "aevalsrc=0.7*sin(2*PI*440*t)|-0.3*sin(2*PI*550*t):s=48000:d=5:c=stereo",
                5.0,
                "flac",
            )
            .await,
            5.0,
        ),
        (
            make_audio(dir.path(), "quiet.wav", &sine(0.003, 3.0), 3.0, "pcm_s16le").await,
            3.0,
        ),
    ];
    for (src, seconds) in &sources {
        let native = tempfile::tempdir_in(dir.path()).unwrap();
        let theirs = tempfile::tempdir_in(dir.path()).unwrap();
        let a = generate_with(src, None, native.path(), *seconds, &no_progress(), None)
            .await
            .unwrap();
        let b = generate_with(
            src,
            None,
            theirs.path(),
            *seconds,
            &no_progress(),
            Some(&bin),
        )
        .await
        .unwrap();
        assert_eq!(b.generator, GENERATOR_AUDIOWAVEFORM, "{}", src.display());
        assert_eq!(a.length, b.length, "{}", src.display());
        assert_eq!(
            std::fs::read_to_string(&a.json).unwrap(),
            std::fs::read_to_string(&b.json).unwrap(),
            "{}",
            src.display()
        );
    }
}

/// Loads our JSON with waveform-data.js (the library Peaks.js uses), through
/// `tests/waveform-js/check-waveform.mjs`. Needs `npm ci` there first: `make test` does
/// it and sets `TRANSCODER_REQUIRE_NODE=1`, which turns a missing install into a failure.
#[tokio::test]
async fn json_loads_in_waveform_data_js() {
    let js = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/waveform-js");
    if !js.join("node_modules/waveform-data").is_dir() {
        let message = format!(
            "{} has no node_modules: run `make test` (it runs `npm ci --prefix tests/waveform-js`)",
            js.display()
        );
        if std::env::var_os("TRANSCODER_REQUIRE_NODE").is_some_and(|v| v == "1") {
            panic!("{message}");
        }
        eprintln!(
            "\n*** NOTE: json_loads_in_waveform_data_js did not check anything: {message} ***\n"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = make_audio(dir.path(), "sine.m4a", &sine(0.8, 8.0), 8.0, "aac").await;
    let files = generate_with(&src, None, dir.path(), 8.0, &no_progress(), None)
        .await
        .unwrap();
    let out = Command::new(std::env::var_os("NODE").unwrap_or_else(|| "node".into()))
        .arg(js.join("check-waveform.mjs"))
        .arg(&files.json)
        .arg("8")
        .output()
        .await
        .expect("running node (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "check-waveform.mjs failed ({}): {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["channels"], 1);
    assert_eq!(summary["bits"], 8);
    assert_eq!(summary["length"], files.length);
    assert_eq!(summary["scale"], 4800);
}
