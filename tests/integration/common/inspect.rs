//! Inspecting outputs as a player or consumer would: ffprobe, playlists, objects in the
//! local store, frame PSNR.

use super::*;

// ---------------------------------------------------------------------------------------
// Inspecting outputs.
// ---------------------------------------------------------------------------------------

/// `ffprobe -show_format -show_streams` as JSON; `Err` with ffprobe's message if it cannot
/// read the file.
pub async fn ffprobe(path: &Path) -> Result<Value, String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_format",
            "-show_streams",
            "-of",
            "json",
        ])
        .arg(path)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("could not run ffprobe: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "ffprobe {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("ffprobe output is not JSON: {e}"))
}

/// The streams of one `codec_type` in an ffprobe result.
pub fn streams<'a>(probe: &'a Value, codec_type: &str) -> Vec<&'a Value> {
    probe["streams"]
        .as_array()
        .map(|s| s.iter().filter(|s| s["codec_type"] == codec_type).collect())
        .unwrap_or_default()
}

/// Where object `bucket/key` lives under an `--out` folder.
pub fn object_path(out: &Path, bucket: &str, key: &str) -> PathBuf {
    assert!(
        !key.starts_with('/') && !key.contains(".."),
        "odd key {key:?}"
    );
    out.join(bucket).join(key)
}

pub fn read_master(path: &Path) -> m3u8_rs::MasterPlaylist {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    match m3u8_rs::parse_playlist_res(&bytes) {
        Ok(m3u8_rs::Playlist::MasterPlaylist(m)) => m,
        Ok(m3u8_rs::Playlist::MediaPlaylist(_)) => {
            panic!(
                "{} is a media playlist, expected a master:\n{}",
                path.display(),
                String::from_utf8_lossy(&bytes)
            )
        }
        Err(e) => panic!(
            "{} does not parse as HLS ({e:?}):\n{}",
            path.display(),
            String::from_utf8_lossy(&bytes)
        ),
    }
}

pub fn read_media(path: &Path) -> (m3u8_rs::MediaPlaylist, String) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let text = String::from_utf8_lossy(&bytes).into_owned();
    match m3u8_rs::parse_playlist_res(&bytes) {
        Ok(m3u8_rs::Playlist::MediaPlaylist(m)) => (m, text),
        Ok(m3u8_rs::Playlist::MasterPlaylist(_)) => {
            panic!(
                "{} is a master playlist, expected a media playlist:\n{text}",
                path.display()
            )
        }
        Err(e) => panic!("{} does not parse as HLS ({e:?}):\n{text}", path.display()),
    }
}

/// The variant's name: the folder of its playlist URI (`720p/playlist.m3u8` → `720p`).
pub fn variant_name(uri: &str) -> String {
    let parts: Vec<&str> = uri.split('/').collect();
    assert_eq!(
        parts.len(),
        2,
        "variant URI should be {{variant}}/playlist.m3u8, got {uri:?}"
    );
    assert_eq!(
        parts[1], "playlist.m3u8",
        "variant URI should be {{variant}}/playlist.m3u8, got {uri:?}"
    );
    parts[0].to_string()
}

/// Checks a VOD media playlist and returns, for each segment, a file ffprobe can read (for
/// fMP4 segments, the init section joined with the segment) and its `#EXTINF` duration.
pub fn check_vod_playlist(playlist_path: &Path) -> Vec<(PathBuf, f64)> {
    let (pl, text) = read_media(playlist_path);
    assert!(
        pl.end_list,
        "{} has no #EXT-X-ENDLIST:\n{text}",
        playlist_path.display()
    );
    assert!(
        text.lines().any(|l| l.trim() == "#EXT-X-ENDLIST"),
        "{} has no #EXT-X-ENDLIST line:\n{text}",
        playlist_path.display()
    );
    assert_eq!(
        pl.playlist_type,
        Some(m3u8_rs::MediaPlaylistType::Vod),
        "{} is not #EXT-X-PLAYLIST-TYPE:VOD:\n{text}",
        playlist_path.display()
    );
    assert!(
        !pl.segments.is_empty(),
        "{} lists no segments:\n{text}",
        playlist_path.display()
    );
    let dir = playlist_path.parent().unwrap();
    let mut init: Option<PathBuf> = None;
    let mut files = Vec::new();
    for (i, seg) in pl.segments.iter().enumerate() {
        assert!(
            !seg.uri.contains("://") && !seg.uri.starts_with('/') && !seg.uri.contains(".."),
            "segment URI should be relative, got {:?}",
            seg.uri
        );
        assert!(
            seg.duration > 0.0,
            "segment {} has duration {}",
            seg.uri,
            seg.duration
        );
        // RFC 8216 §4.3.3.1: every EXTINF, rounded, is at most EXT-X-TARGETDURATION.
        assert!(
            (f64::from(seg.duration)).round() as u64 <= pl.target_duration,
            "segment {} lasts {} s, over the target duration {}:\n{text}",
            seg.uri,
            seg.duration,
            pl.target_duration
        );
        let stem = Path::new(&seg.uri)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("");
        assert!(
            !stem.is_empty() && stem.chars().all(|c| c.is_ascii_digit()),
            "segment names should be numeric, got {:?}",
            seg.uri
        );
        if let Some(map) = &seg.map {
            init = Some(dir.join(&map.uri));
        }
        let path = dir.join(&seg.uri);
        assert!(
            path.is_file(),
            "segment {} (#{i}) listed in {} is missing",
            path.display(),
            playlist_path.display()
        );
        match &init {
            Some(init_path) => {
                assert!(
                    init_path.is_file(),
                    "init section {} is missing",
                    init_path.display()
                );
                let joined = path.with_extension("joined-for-probe.mp4");
                let mut bytes = std::fs::read(init_path).unwrap();
                bytes.extend(std::fs::read(&path).unwrap());
                std::fs::write(&joined, bytes).unwrap();
                files.push((joined, f64::from(seg.duration)));
            }
            None => files.push((path, f64::from(seg.duration))),
        }
    }
    files
}

/// Asserts that `body.output[field]` is a key of an existing, non-empty object in `bucket`.
pub fn assert_object_exists(out: &Path, bucket: &str, key: &str) -> PathBuf {
    let path = object_path(out, bucket, key);
    let meta = std::fs::metadata(&path).unwrap_or_else(|e| {
        panic!(
            "{bucket}/{key} is in the webhook but not on disk at {}: {e}",
            path.display()
        )
    });
    assert!(
        meta.is_file() && meta.len() > 0,
        "{} is empty or not a file",
        path.display()
    );
    path
}

/// Every file under `root`, recursively.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

pub fn approx(value: &Value, expected: f64, tolerance: f64) -> bool {
    value
        .as_f64()
        .is_some_and(|v| (v - expected).abs() <= tolerance)
}

/// The lowest per-frame PSNR (Y) of `a` against `b`, frame by frame.
pub async fn min_psnr(a: &Path, b: &Path, stats: &Path) -> f64 {
    frame_psnr(a, b, stats)
        .await
        .into_iter()
        .fold(f64::INFINITY, f64::min)
}

/// The PSNR (Y) of each frame of `a` against the same frame of `b` (99 for identical).
pub async fn frame_psnr(a: &Path, b: &Path, stats: &Path) -> Vec<f64> {
    let filter = format!(
        "[0:v][1:v]psnr=stats_file={}",
        stats.to_string_lossy().replace(':', "\\:")
    );
    ffmpeg_make(&[
        "-i",
        &a.to_string_lossy(),
        "-i",
        &b.to_string_lossy(),
        "-lavfi",
        &filter,
        "-f",
        "null",
        "-",
    ])
    .await;
    std::fs::read_to_string(stats)
        .expect("psnr stats")
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|kv| kv.strip_prefix("psnr_y:"))
                .map(|v| {
                    if v == "inf" {
                        99.0
                    } else {
                        v.parse().unwrap_or(0.0)
                    }
                })
        })
        .collect()
}

/// (start, end, text) of every cue of a WebVTT file, as a player reads them: the timing line
/// (`HH:MM:SS.mmm --> HH:MM:SS.mmm`, settings after it ignored) and the lines below it.
pub fn vtt_cues(text: &str) -> Vec<(f64, f64, String)> {
    let time = |t: &str| -> f64 {
        let (hms, ms) = t.trim().split_once('.').unwrap();
        let p: Vec<f64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
        p[0] * 3600.0 + p[1] * 60.0 + p[2] + ms.parse::<f64>().unwrap() / 1000.0
    };
    let mut cues = Vec::new();
    for block in text.split("\n\n") {
        let mut lines = block.lines();
        while let Some(line) = lines.next() {
            if let Some((a, b)) = line.split_once("-->") {
                let end = b.split_whitespace().next().unwrap();
                let body: Vec<&str> = lines.by_ref().collect();
                cues.push((time(a), time(end), body.join("\n")));
                break;
            }
        }
    }
    cues
}
