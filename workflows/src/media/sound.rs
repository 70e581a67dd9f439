//! The messages of a programme's sound: the loudness normalization, the audio renditions
//! (in one run or in chunks), the audio job's ladder and its waveform.

use super::*;
use serde::{Deserialize, Serialize};

/// Pass-1 `loudnorm` measurement (EBU R128) of a programme's audio.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoudnessMeasurement {
    /// Integrated loudness, LUFS.
    pub integrated: f64,
    /// True peak, dBTP.
    pub true_peak: f64,
    /// Loudness range, LU.
    pub range: f64,
    /// Gating threshold, LUFS.
    pub threshold: f64,
    /// Offset gain loudnorm proposes for the second pass, LU.
    pub target_offset: f64,
}

impl LoudnessMeasurement {
    /// ×100 integers as the webhook reports them.
    pub fn to_webhook(self) -> crate::webhook::Loudness {
        crate::webhook::Loudness {
            integrated: (self.integrated * 100.0).round() as i32,
            peak: (self.true_peak * 100.0).round() as i32,
            range: (self.range * 100.0).round() as i32,
        }
    }
}

/// Input of the loudness (pass 1) activity.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoudnessInput {
    pub source: ObjectRef,
}

/// Input of the waveform activity.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WaveformInput {
    pub source: ObjectRef,
    /// Pass-1 measurement, so the waveform is drawn from the normalized audio.
    pub loudness: Option<LoudnessMeasurement>,
    pub json_dest: ObjectRef,
    pub png_dest: ObjectRef,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WaveformOutput {
    pub json: ObjectRef,
    pub png: ObjectRef,
    /// Number of min/max pairs (10 per second).
    pub length: u64,
}

/// One rendition of an audio-only ladder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AudioRendition {
    pub name: String,
    pub bitrate_kbps: u32,
}

/// Input of the audio rendition of a video job: normalized AAC, encoded once.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AudioRenditionInput {
    pub source: ObjectRef,
    pub bucket: String,
    pub prefix: String,
    /// Folder of the rendition under `prefix` (`audio`).
    pub name: String,
    pub bitrate_kbps: u32,
    pub segment_seconds: u32,
    pub loudness: Option<LoudnessMeasurement>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AudioRenditionOutput {
    pub name: String,
    pub playlist_key: String,
    pub segments: Vec<SegmentInfo>,
    pub delivered_loudness: Option<LoudnessMeasurement>,
    /// The audio encoder that made the segments (`None` in histories from before it was
    /// reported, and when the step only finished what chunks encoded).
    #[serde(default)]
    pub encoder: Option<String>,
}

impl AudioRenditionOutput {
    /// Bytes of every segment of the rendition.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }
}

/// Input of the audio HLS activity.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AudioHlsInput {
    pub source: ObjectRef,
    pub bucket: String,
    pub prefix: String,
    pub renditions: Vec<AudioRendition>,
    pub segment_seconds: u32,
    #[serde(default)]
    pub loudness: Option<LoudnessMeasurement>,
}

/// One chunk of a programme's sound: decoded from the source (with a pre-roll before the
/// chunk and a post-roll after it, so the filters and the encoder are settled at its edges),
/// encoded on the programme's AAC frame grid, and only the frames the chunk owns kept, so
/// consecutive chunks join frame for frame (ARCHITECTURE.md, "Audio in chunks").
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AudioChunkInput {
    pub source: ObjectRef,
    pub chunk: ChunkPlan,
    pub segment_seconds: u32,
    /// The programme's length: the sound is padded or cut to it.
    pub duration_seconds: f64,
    /// The source's sample rate (0 when unknown): decodes start where its sample grid and
    /// the 48 kHz grid meet, so resampling is the same in every chunk.
    pub source_sample_rate: u32,
    /// Where the loudness meter's readings of this chunk are stored.
    pub meter_dest: ObjectRef,
    pub work: AudioChunkWork,
}

/// What an audio chunk makes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AudioChunkWork {
    /// The mezzanine's sound for the chunk (an ADTS piece at `dest`), metering the source:
    /// pass 1 of the loudness normalization.
    Archive { dest: ObjectRef },
    /// HLS segments of each rendition for the chunk, normalized by `loudness`, metering
    /// the first rendition as listeners decode it.
    Renditions {
        bucket: String,
        prefix: String,
        renditions: Vec<AudioRendition>,
        loudness: Option<LoudnessMeasurement>,
        /// Where the chunk's stretch of the waveform (of the normalized sound) is stored,
        /// for audio jobs.
        #[serde(default)]
        waveform_dest: Option<ObjectRef>,
    },
}

/// What an audio chunk made.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AudioChunkOutput {
    pub index: u32,
    /// The mezzanine piece (archive work).
    pub piece: Option<StoredObject>,
    /// Published segments per rendition, in the order asked (rendition work).
    pub renditions: Vec<(String, Vec<SegmentInfo>)>,
    /// The meter's readings.
    pub meter: ObjectRef,
    /// The chunk's stretch of the waveform, when asked.
    #[serde(default)]
    pub waveform: Option<ObjectRef>,
    /// The audio encoder that ran (`None` in histories from before it was reported).
    #[serde(default)]
    pub encoder: Option<String>,
}

impl AudioChunkOutput {
    pub fn bytes(&self) -> u64 {
        let segments: u64 = self
            .renditions
            .iter()
            .flat_map(|(_, s)| s)
            .map(|s| s.bytes)
            .sum();
        segments + self.piece.as_ref().map_or(0, |p| p.size_bytes)
    }
}

/// The loudness of a whole programme from its chunks' meter readings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoudnessSummaryInput {
    /// In timeline order.
    pub meters: Vec<ObjectRef>,
}

/// An audio rendition made in chunks, finished: its playlist written and what listeners
/// get measured from the chunks' meters.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FinishAudioInput {
    pub bucket: String,
    pub prefix: String,
    pub name: String,
    /// Every chunk's segments, in timeline order.
    pub segments: Vec<SegmentInfo>,
    pub meters: Vec<ObjectRef>,
}

/// An audio job's mezzanine from its chunks' ADTS pieces, joined without re-encoding.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinAudioInput {
    /// In timeline order.
    pub pieces: Vec<ObjectRef>,
    pub dest: ObjectRef,
    pub duration_seconds: f64,
}

/// An audio job's HLS ladder made in chunks, finished: each rendition's playlist, the
/// master, and what listeners get (the first rendition) from the chunks' meter readings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FinishAudioHlsInput {
    pub bucket: String,
    pub prefix: String,
    /// Each rendition with every chunk's segments, in timeline order.
    pub renditions: Vec<(String, Vec<SegmentInfo>)>,
    pub meters: Vec<ObjectRef>,
}

/// The waveform JSON and picture joined from the chunks' stretches.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FinishWaveformInput {
    /// In timeline order.
    pub pieces: Vec<ObjectRef>,
    pub duration_seconds: f64,
    pub json_dest: ObjectRef,
    pub png_dest: ObjectRef,
}
