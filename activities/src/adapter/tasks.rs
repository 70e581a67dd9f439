//! The Temporal face of the small media tasks (`crate::tasks`): the same shape as the
//! transcode's adapters, on the same worker settings, scratch folders and error mapping.

use super::observe::StepFacts;
use super::MediaActivities;
use crate::tasks::{
    chain, chunking, encoding, inspect, quality, resize, sound, stage, trim, TaskIo,
};
use serde_json::Value;
use std::sync::Arc;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use transcoder_workflows::activities::task_defs as defs;
use transcoder_workflows::media::{ObjectRef, StoredObject};
use transcoder_workflows::task::{
    AudioTrim, DownsamplePlan, Downsampling, Encoding, EncodingPlan, Probe, ProcessStep,
    StageObject, StageSource, TaskDelivery, TaskSound, Vmaf as VmafTask,
};

/// The task activities of a worker: its transcode activities' settings, shared.
pub struct TaskActivities {
    media: MediaActivities,
}

impl MediaActivities {
    /// The task activities on this worker's settings.
    pub fn tasks(&self) -> TaskActivities {
        TaskActivities {
            media: self.clone(),
        }
    }
}

impl TaskActivities {
    fn io(&self) -> TaskIo<'_> {
        TaskIo {
            storage: &self.media.storage,
            fetch: &self.media.fetch_policy,
            secrets: self.media.secrets.as_ref(),
            http: &self.media.http,
        }
    }
}

#[activities]
impl TaskActivities {
    #[activity(definition = defs::StageObject)]
    pub async fn stage_object(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: StageObject,
    ) -> Result<Value, ActivityError> {
        self.media
            .observed(&ctx, async |step| {
                let answer = stage::stage_object(&self.io(), &input, step.dir()).await?;
                Ok((answer, StepFacts::default()))
            })
            .await
    }

    #[activity(definition = defs::AudioTrim)]
    pub async fn audio_trim(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: AudioTrim,
    ) -> Result<Value, ActivityError> {
        self.media
            .observed(&ctx, async |step| {
                let progress = step.progress.scaled(0.0, 1.0);
                let answer = trim::audio_trim(&self.io(), &input, step.dir(), &progress).await?;
                Ok((answer, StepFacts::media(input.duration_seconds)))
            })
            .await
    }

    #[activity(definition = defs::DownsamplePlan)]
    pub async fn downsample_plan(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: Downsampling,
    ) -> Result<Option<DownsamplePlan>, ActivityError> {
        self.media
            .observed(&ctx, async |step| {
                let plan = resize::plan(&self.io(), &input, step.dir()).await?;
                Ok((plan, StepFacts::default()))
            })
            .await
    }

    #[activity(definition = defs::Downsample)]
    pub async fn downsample(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: Downsampling,
    ) -> Result<Value, ActivityError> {
        self.media
            .observed(&ctx, async |step| {
                let progress = step.progress.scaled(0.0, 1.0);
                let answer = resize::downsample(
                    &self.io(),
                    &input,
                    &self.media.encoder,
                    step.dir(),
                    &progress,
                )
                .await?;
                let seconds = answer["duration_sec"].as_f64().unwrap_or(0.0);
                let facts = StepFacts::media(seconds)
                    .encoder(Some(self.media.encoder.video_encoder_name()));
                Ok((answer, facts))
            })
            .await
    }

    #[activity(definition = defs::EncodingPlan)]
    pub async fn encoding_plan(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: Encoding,
    ) -> Result<Option<EncodingPlan>, ActivityError> {
        self.media
            .observed(&ctx, async |step| {
                let plan = encoding::plan(&self.io(), &input, step.dir()).await?;
                Ok((plan, StepFacts::default()))
            })
            .await
    }

    #[activity(definition = defs::Sound)]
    pub async fn sound(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: TaskSound,
    ) -> Result<StoredObject, ActivityError> {
        self.media
            .observed(&ctx, async |step| {
                let progress = step.progress.scaled(0.0, 1.0);
                let stored = sound::make_track(&self.io(), &input, step.dir(), &progress).await?;
                let facts = StepFacts::media(input.length_seconds)
                    .with_bytes(stored.size_bytes)
                    .encoder(stored.encoder.as_deref());
                Ok((stored, facts))
            })
            .await
    }

    #[activity(definition = defs::StageSource)]
    pub async fn stage_source(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: StageSource,
    ) -> Result<Option<ObjectRef>, ActivityError> {
        self.media
            .observed(&ctx, async |step| {
                let copy = chunking::stage_source(&self.io(), &input, step.dir()).await?;
                Ok((copy, StepFacts::default()))
            })
            .await
    }

    #[activity(definition = defs::Deliver)]
    pub async fn deliver(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: TaskDelivery,
    ) -> Result<Value, ActivityError> {
        self.media
            .observed(&ctx, async |step| {
                let answer = chunking::deliver(&self.io(), &input, step.dir()).await?;
                let bytes = answer["size_bytes"].as_u64().unwrap_or(0);
                Ok((answer, StepFacts::default().with_bytes(bytes)))
            })
            .await
    }

    #[activity(definition = defs::Encoding)]
    pub async fn encoding(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: Encoding,
    ) -> Result<Value, ActivityError> {
        self.media
            .observed(&ctx, async |step| {
                let progress = step.progress.scaled(0.0, 1.0);
                let answer = encoding::encoding(
                    &self.io(),
                    &input,
                    &self.media.encoder,
                    step.dir(),
                    &progress,
                )
                .await?;
                let seconds = answer["duration_sec"].as_f64().unwrap_or(0.0);
                Ok((answer, StepFacts::media(seconds)))
            })
            .await
    }

    #[activity(definition = defs::Process)]
    pub async fn process(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: ProcessStep,
    ) -> Result<Value, ActivityError> {
        self.media
            .observed(&ctx, async |step| {
                let progress = step.progress.scaled(0.0, 1.0);
                let answer = chain::run_chain(
                    &self.io(),
                    self.media.sandbox_launcher.as_deref(),
                    &input.field,
                    &input.process,
                    step.dir(),
                    &progress,
                )
                .await?;
                Ok((answer, StepFacts::default()))
            })
            .await
    }

    #[activity(definition = defs::Vmaf)]
    pub async fn vmaf(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: VmafTask,
    ) -> Result<Value, ActivityError> {
        self.media
            .observed(&ctx, async |step| {
                let progress = step.progress.scaled(0.0, 1.0);
                let answer = quality::vmaf(&self.io(), &input, step.dir(), &progress).await?;
                Ok((answer, StepFacts::default()))
            })
            .await
    }

    #[activity(definition = defs::ProbeMedia)]
    pub async fn probe_media(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: Probe,
    ) -> Result<Value, ActivityError> {
        self.media
            .observed(&ctx, async |step| {
                let answer = inspect::probe_media(&self.io(), &input, step.dir()).await?;
                Ok((answer, StepFacts::default()))
            })
            .await
    }
}
