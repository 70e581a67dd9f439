//! Subtitles: the source's text tracks and a job's sidecar files, extracted once to WebVTT
//! and segmented beside the video by the assembly.

use super::ObjectRef;
use crate::job::SidecarSubtitle;
use serde::{Deserialize, Serialize};

/// A subtitle stream of the source, as probed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubtitleStream {
    /// The stream's index in the source (ffmpeg's `0:N`).
    pub index: u32,
    /// ffprobe's codec name (`subrip`, `ass`, `mov_text`, `webvtt`, `hdmv_pgs_subtitle`, …).
    pub codec: String,
    /// RFC 5646 tag from the stream's language tag, when it has one.
    pub language: Option<String>,
    pub title: Option<String>,
    /// The track is shown even when the viewer chose no subtitles (foreign dialogue).
    pub forced: bool,
}

/// Subtitle codecs that carry text, which WebVTT can hold. Bitmap subtitles (PGS, DVB,
/// DVD, XSUB) would need OCR and are skipped, with the reason logged.
pub const TEXT_SUBTITLE_CODECS: [&str; 7] =
    ["subrip", "srt", "ass", "ssa", "mov_text", "webvtt", "text"];

impl SubtitleStream {
    pub fn is_text(&self) -> bool {
        TEXT_SUBTITLE_CODECS.contains(&self.codec.as_str())
    }
}

/// Input of the subtitle extraction.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SubtitlesInput {
    pub source: ObjectRef,
    /// Where the source's timeline starts (its streams' earliest start), which is time 0
    /// of the programme: cues are moved onto the programme's clock.
    pub origin_seconds: f64,
    /// The source's subtitle streams, text and bitmap (bitmap ones are reported skipped).
    pub streams: Vec<SubtitleStream>,
    pub sidecars: Vec<SidecarSubtitle>,
    /// The output bucket and prefix; the extracted cues wait under it for the assembly.
    pub bucket: String,
    pub prefix: String,
}

/// One text track, extracted to a whole WebVTT file (`cues`) that the assembly segments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubtitleTrack {
    /// Folder name of the rendition under the output prefix (`subtitles/NAME/`).
    pub name: String,
    pub language: String,
    /// What players list (`NAME`).
    pub label: String,
    pub forced: bool,
    pub cues: ObjectRef,
    pub cue_count: u32,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SubtitlesOutput {
    pub tracks: Vec<SubtitleTrack>,
    /// Streams left out, each with why (bitmap, no cues).
    pub skipped: Vec<String>,
}
