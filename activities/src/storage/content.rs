//! `Content-Type` and `Cache-Control` for what we publish, chosen by file extension.
//!
//! Playlists may be rewritten (a re-run of a failed job, a new ladder) so CDNs keep them only
//! briefly; segments, images and JSON under a media id's prefix never change once written
//! (deterministic keys, same bytes for the same input and config), so they are immutable.

/// Headers sent with an uploaded object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentHeaders {
    pub content_type: &'static str,
    pub cache_control: &'static str,
}

const PLAYLIST_CACHE: &str = "public, max-age=60";
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// Assets that a re-run may legitimately replace (a better thumbnail), so a day, not a year.
const ASSET_CACHE: &str = "public, max-age=86400";
/// Originals and mezzanines live in the archive, are never served to players, and must not
/// be cached by anything in between.
const PRIVATE: &str = "private, no-store";

/// The headers for `key`, by its extension (case-insensitive).
pub fn headers_for(key: &str) -> ContentHeaders {
    let ext = key
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    let (content_type, cache_control) = match ext.as_str() {
        "m3u8" => ("application/vnd.apple.mpegurl", PLAYLIST_CACHE),
        "ts" => ("video/mp2t", IMMUTABLE),
        "m4s" => ("video/iso.segment", IMMUTABLE),
        "aac" => ("audio/aac", IMMUTABLE),
        "jpg" | "jpeg" => ("image/jpeg", ASSET_CACHE),
        "png" => ("image/png", ASSET_CACHE),
        "json" => ("application/json", ASSET_CACHE),
        "mp4" | "m4v" => ("video/mp4", PRIVATE),
        "m4a" => ("audio/mp4", PRIVATE),
        "mov" => ("video/quicktime", PRIVATE),
        "mkv" => ("video/x-matroska", PRIVATE),
        "webm" => ("video/webm", PRIVATE),
        "mp3" => ("audio/mpeg", PRIVATE),
        "wav" => ("audio/wav", PRIVATE),
        "flac" => ("audio/flac", PRIVATE),
        _ => ("application/octet-stream", PRIVATE),
    };
    ContentHeaders {
        content_type,
        cache_control,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn player_facing_types() {
        let p = headers_for("c/hls/m/720p/playlist.m3u8");
        assert_eq!(p.content_type, "application/vnd.apple.mpegurl");
        assert!(p.cache_control.contains("max-age=60"));
        let s = headers_for("c/hls/m/720p/segment_00012.TS");
        assert_eq!(s.content_type, "video/mp2t");
        assert!(s.cache_control.contains("immutable"));
        assert_eq!(
            headers_for("c/thumbnails/media/m/auto-generated.jpg").content_type,
            "image/jpeg"
        );
        assert_eq!(
            headers_for("w/waveform.json").content_type,
            "application/json"
        );
        assert_eq!(headers_for("w/waveform.png").content_type, "image/png");
        let m = headers_for("mezzanine/c/m/mezzanine.mp4");
        assert_eq!(m.content_type, "video/mp4");
        assert_eq!(m.cache_control, "private, no-store");
        assert_eq!(
            headers_for("noext").content_type,
            "application/octet-stream"
        );
    }
}
