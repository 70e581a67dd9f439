//! Activity contracts: names and input/output types, no implementations. The
//! `transcoder-activities` crate implements each one with `#[activity(definition = …)]`, which
//! checks at compile time that both sides agree on the types.
// The bodies below are never called: `activity_definitions` reads only the signatures.
#![allow(unused_variables, clippy::unimplemented)]

use crate::media::{
    AssembleInput, AudioChunkInput, AudioChunkOutput, AudioHlsInput, AudioRenditionInput,
    AudioRenditionOutput, CleanupInput, CleanupOutcome, FetchInput, FinishAudioHlsInput,
    FinishAudioInput, FinishWaveformInput, HlsOutput, JoinAudioInput, JoinMezzanineInput,
    LadderChunkInput, LadderChunkOutput, LoudnessInput, LoudnessMeasurement, LoudnessSummaryInput,
    MezzanineAudioInput, MezzanineInput, MezzaninePieceInput, ObjectRef, ProbeInput, ProbeResult,
    StoredObject, SubtitlesInput, SubtitlesOutput, ThumbnailInput, VerifyInput, VerifyReport,
    WaveformInput, WaveformOutput,
};
use crate::receipt::Receipt;
use crate::task::{
    AudioTrim, DownsamplePlan, Downsampling, Encoding, EncodingPlan, Probe, ProcessStep,
    StageObject, StageSource, TaskDelivery, TaskSound, Vmaf,
};
use crate::webhook::{WebhookBody, WebhookReceipt};
use serde::{Deserialize, Serialize};
use std::fmt;
use temporalio_macros::activity_definitions;
use temporalio_sdk::activities::ActivityError;

/// A webhook to deliver. Holds the secret, so its `Debug` is redacted.
#[derive(Clone, Serialize, Deserialize)]
pub struct WebhookRequest {
    pub url: String,
    pub secret: String,
    pub body: WebhookBody,
}

impl fmt::Debug for WebhookRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookRequest")
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("body", &self.body)
            .finish()
    }
}

/// A job started or finished, for the worker's job metrics and the receipt log line. Run as
/// a local activity: recorded once in history, so a replay neither counts nor logs again.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobEvent {
    pub media_id: String,
    /// `video`, `audio`, or `unknown` for a payload that failed validation.
    pub media_type: String,
    /// `None` when the job starts; the closed receipt when it ends.
    pub finished: Option<Receipt>,
}

/// A readable reason from an activity failure: the innermost cause's message, which is the
/// activity's own error text (not the SDK's "activity task failed" wrapper).
pub fn failure_message(err: &temporalio_sdk::ActivityExecutionError) -> String {
    let mut message = String::new();
    let mut next = err.failure();
    while let Some(failure) = next {
        if !failure.message.is_empty() {
            message = failure.message.clone();
        }
        next = failure.cause.as_deref();
    }
    if message.is_empty() {
        err.to_string()
    } else {
        message
    }
}

/// The activities of a transcode job, by name. Workflows call them as
/// `TranscodeActivities::probe`; implementations name the markers in [`defs`].
pub struct TranscodeActivities;

/// Marker types of the activities, for `#[activity(definition = defs::Probe)]`.
pub mod defs {
    pub use super::transcode_activities::*;
}

#[activity_definitions]
impl TranscodeActivities {
    /// Download the job's input URI and store it as the original (skipped when it is
    /// already there with the same size).
    #[activity(name = "fetch_input")]
    pub fn fetch_input(input: FetchInput) -> Result<StoredObject, ActivityError> {
        unimplemented!()
    }

    /// ffprobe the input.
    #[activity(name = "probe")]
    pub fn probe(input: ProbeInput) -> Result<ProbeResult, ActivityError> {
        unimplemented!()
    }

    /// Normalize the input into the archive master every later step reads.
    #[activity(name = "mezzanine")]
    pub fn mezzanine(input: MezzanineInput) -> Result<StoredObject, ActivityError> {
        unimplemented!()
    }

    /// Encode one piece of a chunked mezzanine (the video of one ladder chunk) and store it.
    #[activity(name = "mezzanine_piece")]
    pub fn mezzanine_piece(input: MezzaninePieceInput) -> Result<StoredObject, ActivityError> {
        unimplemented!()
    }

    /// Encode the audio of a chunked mezzanine in one run (jobs started before the sound was
    /// chunked; new ones use `audio_chunk`).
    #[activity(name = "mezzanine_audio")]
    pub fn mezzanine_audio(input: MezzanineAudioInput) -> Result<StoredObject, ActivityError> {
        unimplemented!()
    }

    /// Encode one chunk of the programme's sound: a mezzanine piece and the source's meter
    /// readings, or the audio renditions' segments and their meter readings.
    #[activity(name = "audio_chunk")]
    pub fn audio_chunk(input: AudioChunkInput) -> Result<AudioChunkOutput, ActivityError> {
        unimplemented!()
    }

    /// The programme's loudness from its chunks' meter readings (no media work).
    /// `None` when the audio is silent.
    #[activity(name = "loudness_summary")]
    pub fn loudness_summary(
        input: LoudnessSummaryInput,
    ) -> Result<Option<LoudnessMeasurement>, ActivityError> {
        unimplemented!()
    }

    /// Finish an audio rendition made in chunks: write its playlist, and measure what
    /// listeners get from the chunks' meter readings.
    #[activity(name = "finish_audio_rendition")]
    pub fn finish_audio_rendition(
        input: FinishAudioInput,
    ) -> Result<AudioRenditionOutput, ActivityError> {
        unimplemented!()
    }

    /// Finish an audio job's HLS ladder made in chunks: the playlists, the master, and the
    /// delivered loudness from the chunks' meter readings.
    #[activity(name = "finish_audio_hls")]
    pub fn finish_audio_hls(input: FinishAudioHlsInput) -> Result<HlsOutput, ActivityError> {
        unimplemented!()
    }

    /// Join an audio job's waveform stretches into its JSON and picture.
    #[activity(name = "finish_waveform")]
    pub fn finish_waveform(input: FinishWaveformInput) -> Result<WaveformOutput, ActivityError> {
        unimplemented!()
    }

    /// Join an audio job's mezzanine pieces into the one faststart MP4, stream copy only.
    #[activity(name = "join_audio_mezzanine")]
    pub fn join_audio_mezzanine(input: JoinAudioInput) -> Result<StoredObject, ActivityError> {
        unimplemented!()
    }

    /// Join the pieces and the audio into the one faststart mezzanine, stream copy only.
    #[activity(name = "join_mezzanine")]
    pub fn join_mezzanine(input: JoinMezzanineInput) -> Result<StoredObject, ActivityError> {
        unimplemented!()
    }

    /// Remove objects that were only steps on the way (a chunked mezzanine's pieces).
    #[activity(name = "remove_objects")]
    pub fn remove_objects(objects: Vec<ObjectRef>) -> Result<(), ActivityError> {
        unimplemented!()
    }

    /// Pass 1 of loudness normalization in one run (a video of one chunk, and jobs started
    /// before the sound was chunked): measure the programme (audio decode only).
    /// `None` when the audio is silent (nothing to normalize).
    #[activity(name = "loudness")]
    pub fn loudness(input: LoudnessInput) -> Result<Option<LoudnessMeasurement>, ActivityError> {
        unimplemented!()
    }

    /// Waveform JSON and PNG from the normalized audio in one run (audio jobs started before
    /// the sound was chunked).
    #[activity(name = "waveform")]
    pub fn waveform(input: WaveformInput) -> Result<WaveformOutput, ActivityError> {
        unimplemented!()
    }

    /// The verification gate: check everything the success webhook will point at.
    #[activity(name = "verify")]
    pub fn verify(input: VerifyInput) -> Result<VerifyReport, ActivityError> {
        unimplemented!()
    }

    /// Encode one chunk of the video ladder (one decode, every rendition) and publish its
    /// segments.
    #[activity(name = "ladder_chunk")]
    pub fn ladder_chunk(input: LadderChunkInput) -> Result<LadderChunkOutput, ActivityError> {
        unimplemented!()
    }

    /// Encode the normalized audio rendition of a video job in one run (a video of one
    /// chunk, and jobs started before the sound was chunked).
    #[activity(name = "audio_rendition")]
    pub fn audio_rendition(
        input: AudioRenditionInput,
    ) -> Result<AudioRenditionOutput, ActivityError> {
        unimplemented!()
    }

    /// Write the variant playlists from the chunk results, measure, write the master, and
    /// cut the preview.
    #[activity(name = "assemble_hls")]
    pub fn assemble_hls(input: AssembleInput) -> Result<HlsOutput, ActivityError> {
        unimplemented!()
    }

    /// Encode and publish the audio-only HLS ladder in one run (audio jobs started before the
    /// sound was chunked).
    #[activity(name = "audio_hls")]
    pub fn audio_hls(input: AudioHlsInput) -> Result<HlsOutput, ActivityError> {
        unimplemented!()
    }

    /// Extract the source's text subtitles and fetch the job's sidecar files, each to one
    /// WebVTT file the assembly segments.
    #[activity(name = "extract_subtitles")]
    pub fn extract_subtitles(input: SubtitlesInput) -> Result<SubtitlesOutput, ActivityError> {
        unimplemented!()
    }

    /// Extract and publish the poster JPEG.
    #[activity(name = "thumbnail")]
    pub fn thumbnail(input: ThumbnailInput) -> Result<StoredObject, ActivityError> {
        unimplemented!()
    }

    /// Delete an original after its retention period, if the mezzanine still exists.
    #[activity(name = "delete_original")]
    pub fn delete_original(input: CleanupInput) -> Result<CleanupOutcome, ActivityError> {
        unimplemented!()
    }

    /// POST a signed webhook.
    #[activity(name = "job_event")]
    pub fn job_event(input: JobEvent) -> Result<(), ActivityError> {
        unimplemented!()
    }

    #[activity(name = "webhook")]
    pub fn webhook(input: WebhookRequest) -> Result<WebhookReceipt, ActivityError> {
        unimplemented!()
    }
}

/// The activities of the small media tasks (`task_workflow`), by name. Each returns the
/// task's answer as JSON: the output it wrote and what it measured.
pub struct MediaTaskActivities;

/// Marker types of the task activities, for `#[activity(definition = task_defs::AudioTrim)]`.
pub mod task_defs {
    pub use super::media_task_activities::*;
}

#[activity_definitions]
impl MediaTaskActivities {
    /// `STAGE_OBJECT`: copy one object into a bucket.
    #[activity(name = "task_stage_object")]
    pub fn stage_object(input: StageObject) -> Result<serde_json::Value, ActivityError> {
        unimplemented!()
    }

    /// `AUDIO_TRIM`: a sample-exact span of the sound as WAV.
    #[activity(name = "task_audio_trim")]
    pub fn audio_trim(input: AudioTrim) -> Result<serde_json::Value, ActivityError> {
        unimplemented!()
    }

    /// `DOWNSAMPLING`, before any encode: checks its input and output, and when both are
    /// objects of this worker's stores and the video is long enough, plans it in chunks
    /// (`None`: it runs as one `task_downsample`).
    #[activity(name = "task_downsample_plan")]
    pub fn downsample_plan(input: Downsampling) -> Result<Option<DownsamplePlan>, ActivityError> {
        unimplemented!()
    }

    /// `DOWNSAMPLING`: the video at a smaller height, as MP4.
    #[activity(name = "task_downsample")]
    pub fn downsample(input: Downsampling) -> Result<serde_json::Value, ActivityError> {
        unimplemented!()
    }

    /// `ENCODING`, before any encode: checks its inputs and output, and when subtitles are
    /// burned into a long video read from and written to this worker's stores, plans it in
    /// chunks (`None`: it runs as one `task_encoding`).
    #[activity(name = "task_encoding_plan")]
    pub fn encoding_plan(input: Encoding) -> Result<Option<EncodingPlan>, ActivityError> {
        unimplemented!()
    }

    /// The sound track of a chunked task, stored for its join.
    #[activity(name = "task_sound")]
    pub fn sound(input: TaskSound) -> Result<StoredObject, ActivityError> {
        unimplemented!()
    }

    /// A payload's `http(s)`/`gs://` input copied once into a store for the parts of one
    /// task (`None`: it is a store object already, or the worker has no place for parts).
    #[activity(name = "task_stage_source")]
    pub fn stage_source(input: StageSource) -> Result<Option<ObjectRef>, ActivityError> {
        unimplemented!()
    }

    /// A chunked task's joined output, delivered where the payload asked.
    #[activity(name = "task_deliver")]
    pub fn deliver(input: TaskDelivery) -> Result<serde_json::Value, ActivityError> {
        unimplemented!()
    }

    /// `ENCODING`: the video with the given sound, subtitles burned in when asked, as MP4.
    #[activity(name = "task_encoding")]
    pub fn encoding(input: Encoding) -> Result<serde_json::Value, ActivityError> {
        unimplemented!()
    }

    /// `process` (and each chain of `multi_process`): a caller's ffmpeg argument vector,
    /// checked and run confined.
    #[activity(name = "task_process")]
    pub fn process(input: ProcessStep) -> Result<serde_json::Value, ActivityError> {
        unimplemented!()
    }

    /// `vmaf`: the VMAF score of a distorted video against its reference (libvmaf).
    #[activity(name = "task_vmaf")]
    pub fn vmaf(input: Vmaf) -> Result<serde_json::Value, ActivityError> {
        unimplemented!()
    }

    /// `probe`: ffprobe's JSON and our probe facts.
    #[activity(name = "task_probe")]
    pub fn probe_media(input: Probe) -> Result<serde_json::Value, ActivityError> {
        unimplemented!()
    }
}
