//! Storage keys (DESIGN §3.3). Every key a job writes is derived here, from the job alone,
//! so the same job always writes the same keys and a retry overwrites instead of duplicating.

use crate::job::Job;
use crate::media::ObjectRef;

/// Where an original is staged by `transcoder run`: the archive bucket's `originals/` tree.
pub fn original_key(creator_id: &str, media_id: &str, extension: &str) -> String {
    let ext = extension.trim_start_matches('.').to_ascii_lowercase();
    let ext = if ext.is_empty() {
        "bin".to_string()
    } else {
        ext
    };
    format!("originals/{creator_id}/{media_id}/original.{ext}")
}

/// Default `outputPrefix` media-api uses for a media item's HLS tree.
pub fn default_output_prefix(creator_id: &str, media_id: &str, audio: bool) -> String {
    let tree = if audio { "hls-audio" } else { "hls" };
    format!("{creator_id}/{tree}/{media_id}")
}

/// All keys of one job.
#[derive(Clone, Debug)]
pub struct JobKeys<'a> {
    job: &'a Job,
}

impl<'a> JobKeys<'a> {
    pub fn new(job: &'a Job) -> Self {
        Self { job }
    }

    pub fn input(&self) -> ObjectRef {
        ObjectRef::new(&self.job.input_bucket, &self.job.input_key)
    }

    pub fn mezzanine(&self) -> ObjectRef {
        let Job {
            creator_id,
            media_id,
            ..
        } = self.job;
        ObjectRef::new(
            &self.job.archive_bucket,
            format!("mezzanine/{creator_id}/{media_id}/mezzanine.mp4"),
        )
    }

    /// Piece `index` of a chunked mezzanine, beside the mezzanine (removed once it is joined
    /// and the ladder has read it).
    pub fn mezzanine_piece(&self, index: u32) -> ObjectRef {
        self.beside_pieces(&format!("{index:05}.mp4"))
    }

    /// The audio of a chunked mezzanine, before the join.
    pub fn mezzanine_audio(&self) -> ObjectRef {
        self.beside_pieces("audio.m4a")
    }

    /// Chunk `index` of the mezzanine's sound (ADTS), beside the pieces.
    pub fn mezzanine_audio_piece(&self, index: u32) -> ObjectRef {
        self.beside_pieces(&format!("audio-{index:05}.aac"))
    }

    /// Chunk `index`'s stretch of an audio job's waveform, beside the pieces.
    pub fn waveform_piece(&self, index: u32) -> ObjectRef {
        self.beside_pieces(&format!("waveform-{index:05}.json"))
    }

    /// The loudness meter's readings of chunk `index`, of the source (`what` = `source`) or
    /// of a rendition as delivered, beside the pieces.
    pub fn loudness_meter(&self, what: &str, index: u32) -> ObjectRef {
        self.beside_pieces(&format!("meter-{what}-{index:05}.json"))
    }

    /// A job's scratch object in the `.pieces/` folder beside its mezzanine.
    fn beside_pieces(&self, name: &str) -> ObjectRef {
        let m = self.mezzanine();
        ObjectRef::new(&m.bucket, format!("{}.pieces/{name}", m.key))
    }

    /// The HLS tree: `{outputPrefix}/master.m3u8`, `{outputPrefix}/{variant}/playlist.m3u8`.
    pub fn hls_prefix(&self) -> &str {
        &self.job.output_prefix
    }

    pub fn hls_master(&self) -> String {
        hls_master_key(&self.job.output_prefix)
    }

    pub fn variant_playlist(&self, variant: &str) -> String {
        media_playlist_key(&self.job.output_prefix, variant)
    }

    pub fn preview_playlist(&self) -> String {
        format!("{}/preview/{PREVIEW_PLAYLIST}", self.job.output_prefix)
    }

    pub fn thumbnail(&self) -> ObjectRef {
        self.asset(|creator, media| {
            format!("{creator}/thumbnails/media/{media}/auto-generated.jpg")
        })
    }

    pub fn waveform_json(&self) -> ObjectRef {
        self.asset(|creator, media| format!("{creator}/waveforms/{media}/waveform.json"))
    }

    pub fn waveform_png(&self) -> ObjectRef {
        self.asset(|creator, media| format!("{creator}/thumbnails/media/{media}/waveform.png"))
    }

    /// An object in the assets bucket, its key made from the creator and media ids.
    /// The storyboard's WebVTT; its sprite sheets ([`storyboard_sprite_name`]) sit beside it.
    pub fn storyboard_vtt(&self) -> ObjectRef {
        self.asset(|creator, media| format!("{creator}/storyboards/{media}/storyboard.vtt"))
    }

    /// Where ladder chunks leave storyboard tiles for the assembly.
    pub fn storyboard_tiles(&self) -> String {
        format!("{}/storyboard-tiles", self.hls_prefix())
    }

    fn asset(&self, key: impl Fn(&str, &str) -> String) -> ObjectRef {
        ObjectRef::new(
            &self.job.assets_bucket,
            key(&self.job.creator_id, &self.job.media_id),
        )
    }
}

/// The HLS tree under a job's `outputPrefix` (DESIGN §3.3): the master, and a folder per
/// rendition holding its media playlist and numbered segments.
pub const MASTER_PLAYLIST: &str = "master.m3u8";
/// Name of a rendition's media playlist in its folder.
pub const MEDIA_PLAYLIST: &str = "playlist.m3u8";
/// The preview's own playlist, in its `preview/` folder.
pub const PREVIEW_PLAYLIST: &str = "preview.m3u8";

/// Key of the master playlist of the HLS tree under `prefix`.
pub fn hls_master_key(prefix: &str) -> String {
    format!("{prefix}/{MASTER_PLAYLIST}")
}

/// Key of `file` (a playlist or segment) of `rendition` in the HLS tree under `prefix`.
pub fn hls_file_key(prefix: &str, rendition: &str, file: &str) -> String {
    format!("{prefix}/{rendition}/{file}")
}

/// Key of `rendition`'s media playlist in the HLS tree under `prefix`.
pub fn media_playlist_key(prefix: &str, rendition: &str) -> String {
    hls_file_key(prefix, rendition, MEDIA_PLAYLIST)
}

/// `rendition`'s media playlist as the master refers to it (relative).
pub fn media_playlist_uri(rendition: &str) -> String {
    format!("{rendition}/{MEDIA_PLAYLIST}")
}

/// A rendition's I-frame playlist (trick play, scrubbing): the IDR frames of its segments,
/// addressed by byte range.
pub const IFRAME_PLAYLIST: &str = "iframe.m3u8";

/// `rendition`'s I-frame playlist as the master refers to it (relative).
pub fn iframe_playlist_uri(rendition: &str) -> String {
    format!("{rendition}/{IFRAME_PLAYLIST}")
}

/// Where ladder chunk `chunk` notes the byte ranges of its segments' IDR frames, for the
/// assembly's I-frame playlists (removed once the master is published).
pub fn iframe_index_key(prefix: &str, chunk: u32) -> String {
    format!("{prefix}/iframes-{chunk:05}.json")
}

/// The folder of the subtitle renditions under the HLS tree: `subtitles/NAME/` holds a
/// track's playlist, its WebVTT segments and the whole track (`all.vtt`).
pub const SUBTITLES_FOLDER: &str = "subtitles";
/// A subtitle track as one WebVTT file on the programme's clock, for players that take a
/// single file; the assembly cuts it into the segments.
pub const SUBTITLE_FILE: &str = "all.vtt";

/// The rendition name (folder under the HLS tree) of subtitle track `name`.
pub fn subtitle_rendition(name: &str) -> String {
    format!("{SUBTITLES_FOLDER}/{name}")
}

/// Segment file name of a subtitle rendition: numbered like the video's.
pub fn subtitle_segment_name(number: u32) -> String {
    format!("{number:05}.vtt")
}

/// Segment file name inside a variant folder: numeric and zero-padded, so names are
/// deterministic and sort in playback order.
pub const SEGMENT_PATTERN: &str = "%05d.ts";

/// The name [`SEGMENT_PATTERN`] gives segment `number`.
pub fn segment_file_name(number: u32) -> String {
    format!("{number:05}.ts")
}

/// Storyboard tile `index` under `tiles_prefix`.
pub fn storyboard_tile_key(tiles_prefix: &str, index: u64) -> String {
    format!("{tiles_prefix}/{index:06}.jpg")
}

/// Sprite sheet `index` of a storyboard, beside its WebVTT (which names it relatively).
pub fn storyboard_sprite_name(index: usize) -> String {
    format!("sprite-{index:03}.jpg")
}

/// Only originals may ever be deleted by clean-up.
pub fn may_delete(key: &str) -> bool {
    key.starts_with("originals/")
        && !key
            .split('/')
            .any(|s| s == ".." || s == "." || s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobInput;

    fn job() -> Job {
        JobInput {
            media_id: Some("m1".into()),
            creator_id: Some("c1".into()),
            media_type: Some("video".into()),
            input_bucket: Some("codex-archive".into()),
            input_key: Some("originals/c1/m1/original.mov".into()),
            output_bucket: Some("codex-media-dev".into()),
            output_prefix: Some("c1/hls/m1/".into()),
            assets_bucket: Some("codex-assets-dev".into()),
            archive_bucket: None,
            webhook_url: Some("http://127.0.0.1/h".into()),
            webhook_secret: Some("k".into()),
            original_retention_seconds: None,
            segments_per_chunk: None,
            webhook_retry_hours: None,
            input_uri: None,
            renditions: None,
            subtitles: None,
            storyboard: None,
            intake_problems: Vec::new(),
        }
        .validate()
        .unwrap()
    }

    #[test]
    fn layout_matches_design() {
        let job = job();
        let k = JobKeys::new(&job);
        assert_eq!(
            k.mezzanine(),
            ObjectRef::new("codex-archive", "mezzanine/c1/m1/mezzanine.mp4")
        );
        assert_eq!(k.hls_master(), "c1/hls/m1/master.m3u8");
        assert_eq!(k.variant_playlist("720p"), "c1/hls/m1/720p/playlist.m3u8");
        assert_eq!(k.preview_playlist(), "c1/hls/m1/preview/preview.m3u8");
        assert_eq!(
            k.thumbnail(),
            ObjectRef::new(
                "codex-assets-dev",
                "c1/thumbnails/media/m1/auto-generated.jpg"
            )
        );
        assert_eq!(k.waveform_json().key, "c1/waveforms/m1/waveform.json");
        assert_eq!(k.waveform_png().key, "c1/thumbnails/media/m1/waveform.png");
        assert_eq!(
            original_key("c1", "m1", ".MOV"),
            "originals/c1/m1/original.mov"
        );
        assert_eq!(original_key("c1", "m1", ""), "originals/c1/m1/original.bin");
        assert_eq!(default_output_prefix("c1", "m1", true), "c1/hls-audio/m1");
        assert_eq!(default_output_prefix("c1", "m1", false), "c1/hls/m1");
    }

    #[test]
    fn keys_are_deterministic() {
        let a = job();
        let b = job();
        assert_eq!(JobKeys::new(&a).hls_master(), JobKeys::new(&b).hls_master());
        assert_eq!(JobKeys::new(&a).mezzanine(), JobKeys::new(&b).mezzanine());
    }

    #[test]
    fn only_originals_may_be_deleted() {
        assert!(may_delete("originals/c1/m1/original.mp4"));
        assert!(!may_delete("mezzanine/c1/m1/mezzanine.mp4"));
        assert!(!may_delete("originals/../mezzanine/c1/m1/mezzanine.mp4"));
        assert!(!may_delete("c1/hls/m1/master.m3u8"));
        assert!(!may_delete("originals//x"));
    }
}
