//! A programme's sound: in chunks (the archive round, the loudness summary, the rendition
//! round; ARCHITECTURE.md, "Audio in chunks"), or in one run (a video of one chunk, and
//! jobs started before the sound was chunked).

use super::*;

/// An audio job's HLS ladder and waveform in whole-file activities, as jobs started before
/// audio was chunked made them.
pub(super) async fn audio_job_whole(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    job: &Job,
    keys: &JobKeys<'_>,
    config: &PlanConfig,
    probe: &ProbeResult,
    mezzanine: &StoredObject,
    loudness: Option<LoudnessMeasurement>,
) -> Result<(HlsOutput, WaveformOutput), String> {
    let duration = probe.duration_seconds;
    step(ctx, "audio HLS", 30);
    let hls = timed(
        ctx,
        "audio_hls",
        "audio HLS",
        ctx.execute_activity(
            act::AudioHls,
            AudioHlsInput {
                source: mezzanine.object.clone(),
                bucket: job.output_bucket.clone(),
                prefix: keys.hls_prefix().to_string(),
                renditions: audio_ladder(),
                segment_seconds: config.segment_seconds,
                loudness,
            },
            long_running(probe),
        ),
        |t, hls| {
            t.media(duration)
                .encoder(hls.encoder())
                .bytes(hls.bytes_out)
        },
    )
    .await?;
    step(ctx, "waveform", 80);
    let waveform = timed(
        ctx,
        "waveform",
        "waveform",
        ctx.execute_activity(
            act::Waveform,
            WaveformInput {
                source: mezzanine.object.clone(),
                loudness,
                json_dest: keys.waveform_json(),
                png_dest: keys.waveform_png(),
            },
            long_running(probe),
        ),
        |t, _| t.media(duration),
    )
    .await?;
    Ok((hls, waveform))
}

/// Marks jobs whose sound is made in chunks ([`chunked_audio`]); histories without it made
/// the sound in whole-file activities.
pub(super) const AUDIO_IN_CHUNKS: &str = "audio-in-chunks";

/// A video job's sound, made beside its chunked picture.
#[derive(Default)]
pub(super) struct ProgrammeSound {
    /// The mezzanine's track in one file (jobs from before audio was chunked).
    pub(super) track: Option<ObjectRef>,
    /// The mezzanine's track in chunk pieces, in order.
    pub(super) pieces: Vec<ObjectRef>,
    /// What is removed once the mezzanine is joined.
    pub(super) scratch: Vec<ObjectRef>,
    pub(super) rendition: Option<AudioRenditionOutput>,
}

/// The sound of a video job in chunks, on the ladder's chunk boundaries (ARCHITECTURE.md,
/// "Audio in chunks"): the archive round (mezzanine pieces and the source's loudness), the
/// rendition round, then the rendition's playlist and its delivered loudness. No step does
/// more than a chunk of media work.
pub(super) async fn chunked_audio(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    job: &Job,
    keys: &JobKeys<'_>,
    config: &PlanConfig,
    probe: &ProbeResult,
    chunks: &[ChunkPlan],
) -> Result<ProgrammeSound, String> {
    let rounds = SoundRounds {
        ctx,
        job,
        keys,
        config,
        probe,
        chunks,
    };
    let archive = rounds.archive().await?;
    let name = AUDIO_RENDITION.to_string();
    let rendition = AudioRendition {
        name: name.clone(),
        bitrate_kbps: config.video_audio_bitrate_kbps,
    };
    let t = clock(ctx);
    let made = rounds
        .renditions(vec![rendition], archive.loudness, false)
        .await?;
    let finished = ctx
        .execute_activity(
            act::FinishAudioRendition,
            FinishAudioInput {
                bucket: job.output_bucket.clone(),
                prefix: keys.hls_prefix().to_string(),
                name,
                segments: made.segments.into_iter().flat_map(|(_, s)| s).collect(),
                meters: made.meters.clone(),
            },
            short_step(Duration::from_secs(300)),
        )
        .await
        .map_err(|e| step_failed("audio rendition", &e))?;
    record(
        ctx,
        StepTiming::new("audio_rendition", t, clock(ctx))
            .media(probe.duration_seconds)
            .encoder(made.encoder.as_deref())
            .bytes(finished.bytes()),
    );
    let mut scratch = archive.scratch();
    scratch.extend(made.meters);
    Ok(ProgrammeSound {
        track: None,
        pieces: archive.pieces,
        scratch,
        rendition: Some(finished),
    })
}

/// An audio job in chunks: the archive round, the mezzanine joined from its pieces beside
/// the rendition round (every rung of the audio ladder and the waveform's stretches), then
/// the playlists, the master and the waveform from what the chunks made.
pub(super) async fn audio_job_in_chunks(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    job: &Job,
    keys: &JobKeys<'_>,
    config: &PlanConfig,
    probe: &ProbeResult,
    chunks: &[ChunkPlan],
) -> Result<(StoredObject, HlsOutput, WaveformOutput), String> {
    let duration = probe.duration_seconds;
    let rounds = SoundRounds {
        ctx,
        job,
        keys,
        config,
        probe,
        chunks,
    };
    step(ctx, "mezzanine", 5);
    let archive = rounds.archive().await?;
    step(ctx, "audio HLS", 30);
    let t = clock(ctx);
    let mezzanine = async {
        timed(
            ctx,
            "mezzanine_join",
            "mezzanine join",
            ctx.execute_activity(
                act::JoinAudioMezzanine,
                JoinAudioInput {
                    pieces: archive.pieces.clone(),
                    dest: keys.mezzanine(),
                    duration_seconds: duration,
                },
                short_step(Duration::from_secs(1800)),
            ),
            |t, made| t.bytes(made.size_bytes),
        )
        .await
    };
    let made = rounds.renditions(audio_ladder(), archive.loudness, true);
    let (mezzanine, made) = futures::join!(mezzanine, made);
    let (mezzanine, made) = (mezzanine?, made?);
    let hls = ctx.execute_activity(
        act::FinishAudioHls,
        FinishAudioHlsInput {
            bucket: job.output_bucket.clone(),
            prefix: keys.hls_prefix().to_string(),
            renditions: made.segments,
            meters: made.meters.clone(),
        },
        short_step(Duration::from_secs(300)),
    );
    let waveform = ctx.execute_activity(
        act::FinishWaveform,
        FinishWaveformInput {
            pieces: made.waveforms.clone(),
            duration_seconds: duration,
            json_dest: keys.waveform_json(),
            png_dest: keys.waveform_png(),
        },
        short_step(Duration::from_secs(300)),
    );
    let (hls, waveform) = futures::join!(hls, waveform);
    let hls = hls.map_err(|e| step_failed("audio HLS", &e))?;
    record(
        ctx,
        StepTiming::new("audio_hls", t, clock(ctx))
            .media(duration)
            .encoder(hls.encoder())
            .bytes(hls.bytes_out),
    );
    let waveform = waveform.map_err(|e| step_failed("waveform", &e))?;
    let mut scratch = archive.scratch();
    scratch.extend(made.meters);
    scratch.extend(made.waveforms);
    remove_scratch(ctx, scratch).await;
    Ok((mezzanine, hls, waveform))
}

/// The two rounds of chunks a programme's sound goes through.
pub(super) struct SoundRounds<'a, 'k> {
    pub(super) ctx: &'a WorkflowContext<TranscodeWorkflow>,
    pub(super) job: &'a Job,
    pub(super) keys: &'a JobKeys<'k>,
    pub(super) config: &'a PlanConfig,
    pub(super) probe: &'a ProbeResult,
    pub(super) chunks: &'a [ChunkPlan],
}

/// What the archive round made.
pub(super) struct ArchiveRound {
    /// The mezzanine's sound, a piece per chunk, in order.
    pub(super) pieces: Vec<ObjectRef>,
    pub(super) meters: Vec<ObjectRef>,
    /// The source's loudness, `None` for silence.
    pub(super) loudness: Option<LoudnessMeasurement>,
}

impl ArchiveRound {
    pub(super) fn scratch(&self) -> Vec<ObjectRef> {
        self.pieces.iter().chain(&self.meters).cloned().collect()
    }
}

/// What the rendition round made.
pub(super) struct RenditionRound {
    /// Each rendition with every chunk's segments, in order.
    pub(super) segments: Vec<(String, Vec<SegmentInfo>)>,
    /// Meter readings of the first rendition as delivered.
    pub(super) meters: Vec<ObjectRef>,
    /// The waveform's stretches, when asked.
    pub(super) waveforms: Vec<ObjectRef>,
    /// The audio encoder the chunks reported.
    pub(super) encoder: Option<String>,
}

impl SoundRounds<'_, '_> {
    pub(super) fn input(
        &self,
        chunk: &ChunkPlan,
        meter: ObjectRef,
        work: AudioChunkWork,
    ) -> AudioChunkInput {
        AudioChunkInput {
            source: self.keys.input(),
            chunk: *chunk,
            segment_seconds: self.config.segment_seconds,
            duration_seconds: self.probe.duration_seconds,
            source_sample_rate: self.probe.audio.as_ref().map_or(0, |a| a.sample_rate),
            meter_dest: meter,
            work,
        }
    }

    /// Each chunk's mezzanine piece and the source's meter readings, then the programme's
    /// loudness from them (pass 1 of the normalization).
    pub(super) async fn archive(&self) -> Result<ArchiveRound, String> {
        let (ctx, keys) = (self.ctx, self.keys);
        let duration = self.probe.duration_seconds;
        let t = clock(ctx);
        let made = run_windowed(
            self.chunks,
            self.config.max_parallel_chunks,
            |chunk| {
                let work = AudioChunkWork::Archive {
                    dest: keys.mezzanine_audio_piece(chunk.index),
                };
                let meter = keys.loudness_meter("source", chunk.index);
                Box::pin(audio_chunk(
                    ctx,
                    self.input(chunk, meter, work),
                    "mezzanine audio",
                ))
            },
            |_| {},
        )
        .await?;
        let made = in_order(made);
        record(
            ctx,
            StepTiming::new("mezzanine_audio", t, clock(ctx))
                .media(duration)
                .encoder(made.first().and_then(|c| c.encoder.as_deref()))
                .bytes(made.iter().map(AudioChunkOutput::bytes).sum()),
        );
        let t = clock(ctx);
        let meters: Vec<ObjectRef> = made.iter().map(|c| c.meter.clone()).collect();
        let loudness = ctx
            .execute_activity(
                act::LoudnessSummary,
                LoudnessSummaryInput {
                    meters: meters.clone(),
                },
                short_step(Duration::from_secs(300)),
            )
            .await
            .map_err(|e| step_failed("loudness analysis", &e))?;
        record(
            ctx,
            StepTiming::new("loudness", t, clock(ctx)).media(duration),
        );
        Ok(ArchiveRound {
            pieces: made
                .into_iter()
                .filter_map(|c| c.piece.map(|p| p.object))
                .collect(),
            meters,
            loudness,
        })
    }

    /// Each chunk's segments of every rendition, normalized by `loudness`, with the
    /// delivered sound's meter readings and, when asked, the waveform's stretches.
    pub(super) async fn renditions(
        &self,
        renditions: Vec<AudioRendition>,
        loudness: Option<LoudnessMeasurement>,
        waveform: bool,
    ) -> Result<RenditionRound, String> {
        let (ctx, job, keys) = (self.ctx, self.job, self.keys);
        let made = run_windowed(
            self.chunks,
            self.config.max_parallel_chunks,
            |chunk| {
                let work = AudioChunkWork::Renditions {
                    bucket: job.output_bucket.clone(),
                    prefix: keys.hls_prefix().to_string(),
                    renditions: renditions.clone(),
                    loudness,
                    waveform_dest: waveform.then(|| keys.waveform_piece(chunk.index)),
                };
                let meter = keys.loudness_meter("delivered", chunk.index);
                Box::pin(audio_chunk(ctx, self.input(chunk, meter, work), "audio"))
            },
            |_| {},
        )
        .await?;
        let made = in_order(made);
        let mut segments: Vec<(String, Vec<SegmentInfo>)> = renditions
            .iter()
            .map(|r| (r.name.clone(), Vec::new()))
            .collect();
        for chunk in &made {
            for ((_, all), (_, these)) in segments.iter_mut().zip(&chunk.renditions) {
                all.extend(these.iter().cloned());
            }
        }
        Ok(RenditionRound {
            encoder: made.first().and_then(|c| c.encoder.clone()),
            segments,
            meters: made.iter().map(|c| c.meter.clone()).collect(),
            waveforms: made.iter().filter_map(|c| c.waveform.clone()).collect(),
        })
    }
}

/// Chunk outputs in timeline order.
pub(super) fn in_order(mut outputs: Vec<AudioChunkOutput>) -> Vec<AudioChunkOutput> {
    outputs.sort_by_key(|c| c.index);
    outputs
}

/// One audio chunk, `what` naming it in errors.
pub(super) async fn audio_chunk(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    input: AudioChunkInput,
    what: &str,
) -> Result<AudioChunkOutput, String> {
    let chunk = input.chunk;
    ctx.execute_activity(act::AudioChunk, input, chunk_options(&chunk))
        .await
        .map_err(|e| step_failed(&format!("{what} chunk {}", chunk.index), &e))
}

/// The audio rendition of a video job, from `source` (the mezzanine or its audio track).
pub(super) async fn audio_rendition(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    job: &Job,
    keys: &JobKeys<'_>,
    config: &PlanConfig,
    probe: &ProbeResult,
    source: &ObjectRef,
    loudness: Option<LoudnessMeasurement>,
) -> Result<AudioRenditionOutput, String> {
    timed(
        ctx,
        "audio_rendition",
        "audio encode",
        ctx.execute_activity(
            act::AudioRendition,
            AudioRenditionInput {
                source: source.clone(),
                bucket: job.output_bucket.clone(),
                prefix: keys.hls_prefix().to_string(),
                name: AUDIO_RENDITION.to_string(),
                bitrate_kbps: config.video_audio_bitrate_kbps,
                segment_seconds: config.segment_seconds,
                loudness,
            },
            long_running(probe),
        ),
        |t, made| {
            t.media(probe.duration_seconds)
                .encoder(made.encoder.as_deref())
                .bytes(made.bytes())
        },
    )
    .await
}

/// Pass 1 of the two-pass loudness normalization: it decodes only the source's audio,
/// downmixed to stereo exactly as the mezzanine is, so it runs beside the mezzanine.
pub(super) async fn loudness_pass(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    keys: &JobKeys<'_>,
    probe: &ProbeResult,
) -> Result<Option<LoudnessMeasurement>, String> {
    if probe.audio.is_none() {
        return Ok(None);
    }
    timed(
        ctx,
        "loudness",
        "loudness analysis",
        ctx.execute_activity(
            act::Loudness,
            LoudnessInput {
                source: keys.input(),
            },
            long_running(probe),
        ),
        |t, _| t.media(probe.duration_seconds),
    )
    .await
}

/// Name of the audio rendition's folder in a video job's HLS tree.
pub const AUDIO_RENDITION: &str = "audio";
