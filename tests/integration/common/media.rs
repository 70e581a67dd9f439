//! Media for the tests, made with ffmpeg (lavfi sources, damaged and odd files), and the
//! helpers the hostile-input tests read frames and sound with.

use super::*;

// ---------------------------------------------------------------------------------------
// Media made with ffmpeg.
// ---------------------------------------------------------------------------------------

/// Runs ffmpeg with `args` (quiet, overwriting), failing the test when it fails.
pub async fn ffmpeg(args: &[String]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("run ffmpeg (is it installed?)");
    assert!(
        out.status.success(),
        "ffmpeg {:?} failed: {}",
        args,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// An H.264 + AAC stereo MP4: `testsrc2` picture at `width`x`height`, `fps`, and a sine tone.
pub async fn make_video(path: &Path, width: u32, height: u32, seconds: u32, fps: u32) {
    let video = format!("testsrc2=size={width}x{height}:rate={fps}:duration={seconds}");
    let audio = format!("sine=frequency=440:sample_rate=48000:duration={seconds}");
    let extra = ["-b:a", "128k", "-movflags", "+faststart", "-shortest"];
    make_sources(path, &video, &audio, 0.0, &extra).await;
}

/// HDR video as cameras and grading tools write it: HEVC 10-bit 4:2:0, BT.2020, with
/// `transfer` (`smpte2084` for PQ, `arib-std-b67` for HLG), from `testsrc2=size=…` given as
/// `size_rate_duration` (`1280x720:rate=30:duration=4`), with a stereo AAC tone when
/// `with_sound`.
pub async fn make_hdr_video(
    path: &Path,
    size_rate_duration: &str,
    transfer: &str,
    with_sound: bool,
) {
    let picture = format!("testsrc2=size={size_rate_duration}");
    let mut args = vec!["-f", "lavfi", "-i", &picture];
    if with_sound {
        args.extend([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-map",
            "0:v",
            "-map",
            "1:a",
            "-c:a",
            "aac",
            "-ac",
            "2",
            "-shortest",
        ]);
    }
    args.extend([
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "log-level=error",
        "-pix_fmt",
        "yuv420p10le",
        "-color_primaries",
        "bt2020",
        "-color_trc",
        transfer,
        "-colorspace",
        "bt2020nc",
        "-tag:v",
        "hvc1",
    ]);
    let out = path.to_str().expect("utf-8 path");
    args.push(out);
    ffmpeg_make(&args).await;
}

/// Two lavfi sources, a picture and a sound, muxed as H.264/AAC; the sound starts
/// `audio_offset` seconds after the picture.
pub async fn make_sources(
    path: &Path,
    video: &str,
    audio: &str,
    audio_offset: f64,
    extra: &[&str],
) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let offset = audio_offset.to_string();
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        video,
        "-itsoffset",
        &offset,
        "-f",
        "lavfi",
        "-i",
        audio,
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-ac",
        "2",
    ];
    args.extend_from_slice(extra);
    args.push(s(path));
    ffmpeg_make(&args).await;
}

/// A stereo MP3 of a sine tone (speech-podcast-like upload).
pub async fn make_audio_mp3(path: &Path, seconds: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let args: Vec<String> = [
        "-f",
        "lavfi",
        "-i",
        &format!("sine=frequency=330:sample_rate=44100:duration={seconds}"),
        "-ac",
        "2",
        "-c:a",
        "libmp3lame",
        "-b:a",
        "192k",
        path.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    ffmpeg(&args).await;
}

/// Random bytes in a file named like a video: not a readable media file.
pub fn make_corrupt(path: &Path, bytes: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // xorshift64*: deterministic "random" bytes, no magic numbers of any container.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut data = Vec::with_capacity(bytes);
    while data.len() < bytes {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        data.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    data.truncate(bytes);
    std::fs::write(path, data).unwrap();
}

// ---------------------------------------------------------------------------------------
// Helpers for hostile inputs (tests/integration/hard_inputs.rs).
// ---------------------------------------------------------------------------------------

/// Runs `ffmpeg ARGS` (quiet, overwrite) and fails the test with its message if it fails.
pub async fn ffmpeg_make(args: &[&str]) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    ffmpeg(&args).await;
}

/// Runs `ffprobe ARGS` and returns its stdout parsed as JSON (`-of json` is up to the caller).
pub async fn ffprobe_json(args: &[&str]) -> Result<Value, String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("could not run ffprobe: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ffprobe {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("ffprobe output is not JSON: {e}"))
}

/// The packets of one stream (`selector` like `v:0`): pts, dts and duration in its time base.
pub async fn ffprobe_packets(path: &Path, selector: &str) -> Vec<Value> {
    let p = path.to_str().expect("utf-8 path");
    let probe = ffprobe_json(&[
        "-select_streams",
        selector,
        "-show_entries",
        "packet=pts,dts,duration,flags:stream=time_base",
        "-of",
        "json",
        p,
    ])
    .await
    .unwrap_or_else(|e| panic!("packets of {}: {e}", path.display()));
    probe["packets"].as_array().cloned().unwrap_or_default()
}

/// Sets the display matrix of the first video track of an MP4/MOV file in place, the way a
/// phone records a portrait clip: the coded picture stays as is and the `tkhd` matrix says
/// "rotate `degrees` clockwise for display" (ffprobe then reports rotation `-degrees`).
pub fn set_mp4_rotation(path: &Path, degrees: u32) {
    fn boxes(data: &[u8], start: usize, end: usize) -> Vec<([u8; 4], usize, usize)> {
        // (type, payload start, box end)
        let mut out = Vec::new();
        let mut pos = start;
        while pos + 8 <= end {
            let mut size = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
            let kind: [u8; 4] = data[pos + 4..pos + 8].try_into().unwrap();
            let mut header = 8;
            if size == 1 {
                size = u64::from_be_bytes(data[pos + 8..pos + 16].try_into().unwrap()) as usize;
                header = 16;
            } else if size == 0 {
                size = end - pos;
            }
            assert!(size >= header && pos + size <= end, "malformed MP4 box");
            out.push((kind, pos + header, pos + size));
            pos += size;
        }
        out
    }
    let mut data = std::fs::read(path).unwrap();
    let len = data.len();
    let mut matrix_at = None;
    'moov: for (kind, start, end) in boxes(&data, 0, len) {
        if &kind != b"moov" {
            continue;
        }
        for (kind, start, end) in boxes(&data, start, end) {
            if &kind != b"trak" {
                continue;
            }
            let mut tkhd = None;
            let mut is_video = false;
            for (kind, start, end) in boxes(&data, start, end) {
                if &kind == b"tkhd" {
                    tkhd = Some(start);
                }
                if &kind == b"mdia" {
                    for (kind, start, _) in boxes(&data, start, end) {
                        // hdlr: version+flags (4), pre_defined (4), handler_type (4).
                        if &kind == b"hdlr" && &data[start + 8..start + 12] == b"vide" {
                            is_video = true;
                        }
                    }
                }
            }
            if let (true, Some(tkhd)) = (is_video, tkhd) {
                // tkhd v0: version/flags 4, times+track id+reserved+duration 20, reserved 8,
                // layer/group/volume/reserved 8, then the 3x3 matrix; v1 has 12 more bytes.
                let offset = if data[tkhd] == 1 { 52 } else { 40 };
                matrix_at = Some(tkhd + offset);
                break 'moov;
            }
        }
    }
    let at = matrix_at.unwrap_or_else(|| panic!("{} has no video tkhd", path.display()));
    let width = u32::from_be_bytes(data[at + 36..at + 40].try_into().unwrap()) >> 16;
    let height = u32::from_be_bytes(data[at + 40..at + 44].try_into().unwrap()) >> 16;
    let one: i32 = 1 << 16;
    let (w, h) = (width as i32, height as i32);
    // {a, b, u, c, d, v, x, y, w}: x' = a*x + c*y + tx, y' = b*x + d*y + ty (16.16; w 2.30).
    let m: [i32; 9] = match degrees % 360 {
        0 => [one, 0, 0, 0, one, 0, 0, 0, 1 << 30],
        90 => [0, one, 0, -one, 0, 0, h * one, 0, 1 << 30],
        180 => [-one, 0, 0, 0, -one, 0, w * one, h * one, 1 << 30],
        270 => [0, -one, 0, one, 0, 0, 0, w * one, 1 << 30],
        other => panic!("rotation {other} is not a multiple of 90"),
    };
    for (i, v) in m.iter().enumerate() {
        data[at + 4 * i..at + 4 * i + 4].copy_from_slice(&v.to_be_bytes());
    }
    std::fs::write(path, data).unwrap();
}

/// Decodes the first video frame of `path` as 8-bit gray: (width, height, pixels).
pub async fn decode_gray_frame(path: &Path) -> (u32, u32, Vec<u8>) {
    let probe = ffprobe(path).await.expect("probe for frame size");
    let video = streams(&probe, "video");
    assert!(!video.is_empty(), "{} has no video", path.display());
    let w = video[0]["width"].as_u64().unwrap() as u32;
    let h = video[0]["height"].as_u64().unwrap() as u32;
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(path)
        .args([
            "-map",
            "0:v:0",
            "-frames:v",
            "1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-",
        ])
        .kill_on_drop(true)
        .output()
        .await
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "decoding a frame of {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.stdout.len(),
        (w * h) as usize,
        "decoded frame of {} is not {w}x{h}",
        path.display()
    );
    (w, h, out.stdout)
}

/// Mean gray level of the rows `[y0, y1)` of a frame.
pub fn mean_rows(frame: &(u32, u32, Vec<u8>), y0: u32, y1: u32) -> f64 {
    let (w, _, px) = frame;
    let rows = &px[(y0 * w) as usize..(y1 * w) as usize];
    rows.iter().map(|&p| f64::from(p)).sum::<f64>() / rows.len() as f64
}

/// Runs `ffmpeg -i PATH -map MAP FLAG FILTER -f null -` for a measuring filter (`idet`,
/// `silencedetect`, `ebur128`) and returns what it printed on stderr, where such filters
/// report.
async fn filter_report(path: &Path, map: &str, flag: &str, filter: &str) -> String {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-nostdin", "-i"])
        .arg(path)
        .args(["-map", map, flag, filter, "-f", "null", "-"])
        .kill_on_drop(true)
        .output()
        .await
        .expect("run ffmpeg");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{filter} on {} failed: {stderr}",
        path.display()
    );
    stderr
}

/// What ffmpeg's `idet` filter sees in the video of `path` (its multi-frame verdict, which
/// looks at the neighbours of each frame): `(interlaced, progressive)` frame counts. Combing
/// left in a picture reads as interlaced.
pub async fn interlace_detection(path: &Path) -> (u64, u64) {
    let stderr = filter_report(path, "0:v:0", "-vf", "idet").await;
    let verdict = stderr
        .lines()
        .find_map(|l| {
            l.split_once("Multi frame detection:")
                .map(|(_, v)| v.to_string())
        })
        .unwrap_or_else(|| panic!("no idet verdict for {}: {stderr}", path.display()));
    // "TFF:    12 BFF:     0 Progressive:    88 Undetermined:     0"
    let count = |label: &str| -> u64 {
        verdict
            .split_once(label)
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no {label} in idet verdict {verdict:?}"))
    };
    (count("TFF:") + count("BFF:"), count("Progressive:"))
}

/// The silent stretches of the audio of `path` (below -50 dBFS for at least 0.3 s), as
/// `(start, end)` seconds from its first sample; a silence running to the end ends at `None`.
pub async fn silences(path: &Path) -> Vec<(f64, Option<f64>)> {
    let stderr = filter_report(path, "0:a:0", "-af", "silencedetect=n=-50dB:d=0.3").await;
    let after = |line: &str, label: &str| -> Option<f64> {
        line.split_once(label)
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    let mut spans: Vec<(f64, Option<f64>)> = Vec::new();
    for line in stderr.lines() {
        if let Some(start) = after(line, "silence_start: ") {
            spans.push((start, None));
        } else if let Some(end) = after(line, "silence_end: ") {
            if let Some(last) = spans.last_mut() {
                last.1 = Some(end);
            }
        }
    }
    spans
}

/// EBU R128 measurement of the audio of `path` with ffmpeg's `ebur128=peak=true`:
/// (integrated loudness in LUFS, true peak in dBTP). `None` for -inf (silence).
pub async fn measure_loudness(path: &Path) -> (Option<f64>, Option<f64>) {
    let stderr = filter_report(path, "0:a:0", "-af", "ebur128=peak=true:framelog=verbose").await;
    let summary = stderr
        .rsplit_once("Summary:")
        .unwrap_or_else(|| panic!("no ebur128 summary for {}: {stderr}", path.display()))
        .1;
    let value = |label: &str| -> Option<f64> {
        summary
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite())
    };
    (value("I:"), value("Peak:"))
}

/// Byte-concatenates files (MPEG-TS segments join into one playable stream).
pub fn concat_files(parts: &[PathBuf], dest: &Path) {
    let mut bytes = Vec::new();
    for p in parts {
        bytes.extend(std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display())));
    }
    std::fs::write(dest, bytes).unwrap();
}
