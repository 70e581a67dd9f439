//! A video job's picture in chunks: the mezzanine's pieces with the ladder streaming behind
//! them, or the ladder in chunks from a mezzanine made in one run.

use super::*;

/// Encodes the ladder in chunks (bounded parallelism, fanned out to every worker on the
/// task queue) from the whole mezzanine, while the audio rendition is encoded in one run
/// (a video of one chunk, or a source whose mezzanine is made whole).
#[allow(clippy::too_many_arguments)]
pub(super) async fn encode_ladder(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    job: &Job,
    keys: &JobKeys<'_>,
    config: &PlanConfig,
    probe: &ProbeResult,
    chunks: &[ChunkPlan],
    mezzanine: &ObjectRef,
    plan: &VideoPlan,
    loudness: Option<LoudnessMeasurement>,
) -> Result<(Vec<LadderChunkOutput>, Option<AudioRenditionOutput>), String> {
    let audio = async {
        match probe.audio {
            Some(_) => audio_rendition(ctx, job, keys, config, probe, mezzanine, loudness)
                .await
                .map(Some),
            None => Ok(None),
        }
    };
    let video = async {
        let mut done = in_window(ctx, chunks, config.max_parallel_chunks, |chunk| {
            let chunk = *chunk;
            Box::pin(async move {
                ladder_chunk(ctx, job, keys, config, plan, mezzanine, 0.0, chunk).await
            })
        })
        .await?;
        done.sort_by_key(|c| c.index);
        Ok::<_, String>(done)
    };
    let (video, audio) = futures::join!(video, audio);
    Ok((video?, audio?))
}

/// The chunked path of a video job: each chunk's mezzanine piece, then that chunk's ladder
/// from the piece, in a sliding window over every worker, so the ladder streams behind the
/// mezzanine and no activity does more than a chunk of video; beside them the audio (its
/// mezzanine track, the loudness pass, the audio rendition). Then the pieces and the track
/// are joined into the one mezzanine and removed. Returns the mezzanine, the chunks and
/// the audio rendition.
#[allow(clippy::too_many_arguments)]
pub(super) async fn chunked_mezzanine_and_ladder(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    job: &Job,
    keys: &JobKeys<'_>,
    config: &PlanConfig,
    probe: &ProbeResult,
    plan: &VideoPlan,
    video: MezzanineVideo,
    pieces: &[ChunkPlan],
) -> Result<
    (
        StoredObject,
        Vec<LadderChunkOutput>,
        Option<AudioRenditionOutput>,
    ),
    String,
> {
    step(ctx, "ladder", LADDER_START);
    let duration = probe.duration_seconds;
    let audio = async {
        if probe.audio.is_none() {
            return Ok(ProgrammeSound::default());
        }
        if ctx.patched(AUDIO_IN_CHUNKS) {
            return chunked_audio(ctx, job, keys, config, probe, pieces).await;
        }
        // Jobs started before audio was chunked replay this path unchanged.
        let t = clock(ctx);
        let track = async {
            ctx.execute_activity(
                act::MezzanineAudio,
                MezzanineAudioInput {
                    source: keys.input(),
                    dest: keys.mezzanine_audio(),
                    duration_seconds: duration,
                },
                long_running(probe),
            )
            .await
            .inspect(|made| {
                record(
                    ctx,
                    StepTiming::new("mezzanine_audio", t, clock(ctx))
                        .media(duration)
                        .encoder(made.encoder.as_deref())
                        .bytes(made.size_bytes),
                )
            })
            .map_err(|e| step_failed("mezzanine audio", &e))
        };
        let (track, loudness) = futures::join!(track, loudness_pass(ctx, keys, probe));
        let (track, loudness) = (track?, loudness?);
        let rendition =
            audio_rendition(ctx, job, keys, config, probe, &track.object, loudness).await?;
        Ok::<_, String>(ProgrammeSound {
            track: Some(track.object.clone()),
            scratch: vec![track.object],
            rendition: Some(rendition),
            ..Default::default()
        })
    };
    let ladder = async {
        let mut done = in_window(ctx, pieces, config.max_parallel_chunks, |chunk| {
            let chunk = *chunk;
            let video = video.clone();
            Box::pin(async move {
                let t = clock(ctx);
                let piece = ctx
                    .execute_activity(
                        act::MezzaninePiece,
                        MezzaninePieceInput {
                            source: keys.input(),
                            dest: keys.mezzanine_piece(chunk.index),
                            video,
                            chunk,
                            duration_seconds: duration,
                        },
                        chunk_options(&chunk),
                    )
                    .await
                    .map_err(|e| step_failed(&format!("mezzanine piece {}", chunk.index), &e))?;
                record(
                    ctx,
                    StepTiming::new("mezzanine", t, clock(ctx))
                        .media(chunk.duration_seconds)
                        .encoder(piece.encoder.as_deref())
                        .bytes(piece.size_bytes),
                );
                let made = ladder_chunk(
                    ctx,
                    job,
                    keys,
                    config,
                    plan,
                    &piece.object,
                    chunk.start_seconds,
                    chunk,
                )
                .await?;
                Ok((made, piece.object))
            })
        })
        .await?;
        done.sort_by_key(|(c, _)| c.index);
        Ok::<_, String>(done)
    };
    let (ladder, audio) = futures::join!(ladder, audio);
    let (chunks, piece_objects): (Vec<_>, Vec<_>) = ladder?.into_iter().unzip();
    let sound = audio?;

    let t = clock(ctx);
    let frames = pieces
        .last()
        .map(|c| c.frame_range(video.frame_rate).1)
        .unwrap_or_default();
    let mezzanine = ctx
        .execute_activity(
            act::JoinMezzanine,
            JoinMezzanineInput {
                pieces: piece_objects.clone(),
                audio: sound.track,
                audio_pieces: sound.pieces,
                dest: keys.mezzanine(),
                video: video.clone(),
                frames,
                duration_seconds: duration,
                audio_language: None,
            },
            long_running(probe),
        )
        .await
        .map_err(|e| step_failed("mezzanine join", &e))?;
    record(
        ctx,
        StepTiming::new("mezzanine_join", t, clock(ctx)).bytes(mezzanine.size_bytes),
    );
    // The pieces were steps on the way; the joined mezzanine is the archive.
    let mut leftovers = piece_objects;
    leftovers.extend(sound.scratch);
    remove_scratch(ctx, leftovers).await;
    Ok((mezzanine, chunks, sound.rendition))
}

/// One ladder chunk, read from `source`, which starts `source_offset` seconds into the
/// programme (the whole mezzanine, or the chunk's own piece).
#[allow(clippy::too_many_arguments)]
pub(super) async fn ladder_chunk(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    job: &Job,
    keys: &JobKeys<'_>,
    config: &PlanConfig,
    plan: &VideoPlan,
    source: &ObjectRef,
    source_offset: f64,
    chunk: ChunkPlan,
) -> Result<LadderChunkOutput, String> {
    timed(
        ctx,
        "ladder",
        &format!("ladder chunk {}", chunk.index),
        ctx.execute_activity(
            act::LadderChunk,
            LadderChunkInput {
                source: source.clone(),
                bucket: job.output_bucket.clone(),
                prefix: keys.hls_prefix().to_string(),
                renditions: plan.renditions.clone(),
                frame_rate: plan.frame_rate,
                gop_seconds: config.gop_seconds,
                segment_seconds: config.segment_seconds,
                chunk,
                source_offset_seconds: source_offset,
                storyboard: storyboard_plan(keys, plan),
            },
            chunk_options(&chunk),
        ),
        |t, made| {
            t.media(chunk.duration_seconds)
                .encoder(Some(&made.encoder))
                .bytes(made.bytes())
        },
    )
    .await
}

/// Where a video job's storyboard tiles wait and its WebVTT goes, at the plan's size.
fn storyboard_plan(keys: &JobKeys<'_>, plan: &VideoPlan) -> Option<StoryboardPlan> {
    plan.storyboard.map(|size| StoryboardPlan {
        interval_seconds: size.interval_seconds,
        tile_width: size.width,
        tile_height: size.height,
        tiles_prefix: keys.storyboard_tiles(),
        vtt: keys.storyboard_vtt(),
    })
}

/// The rest of a video job once its mezzanine exists: the ladder (already made beside the
/// pieces, or now in chunks from the mezzanine) with the poster frame beside it, then the
/// assembly of playlists, master and preview. Fills the webhook's output and what the gate
/// checks.
#[allow(clippy::too_many_arguments)]
pub(super) async fn video_outputs(
    ctx: &WorkflowContext<TranscodeWorkflow>,
    job: &Job,
    keys: &JobKeys<'_>,
    config: &PlanConfig,
    probe: &ProbeResult,
    chunks: &[ChunkPlan],
    plan: &VideoPlan,
    mezzanine: &StoredObject,
    loudness: Option<LoudnessMeasurement>,
    ladder_done: Option<(Vec<LadderChunkOutput>, Option<AudioRenditionOutput>)>,
    output: &mut CompletedOutput,
    verify: &mut VerifyInput,
) -> Result<HlsOutput, String> {
    let ladder = async {
        match ladder_done {
            Some(done) => Ok(done),
            None => {
                step(ctx, "ladder", LADDER_START);
                encode_ladder(
                    ctx,
                    job,
                    keys,
                    config,
                    probe,
                    chunks,
                    &mezzanine.object,
                    plan,
                    loudness,
                )
                .await
            }
        }
    };
    let thumbnail = timed(
        ctx,
        "thumbnail",
        "thumbnail",
        ctx.execute_activity(
            act::Thumbnail,
            ThumbnailInput {
                source: mezzanine.object.clone(),
                dest: keys.thumbnail(),
                at_seconds: plan.thumbnail_at_seconds,
                width: THUMBNAIL_SIZE.0,
                height: THUMBNAIL_SIZE.1,
            },
            short_step(Duration::from_secs(300)),
        ),
        |t, made| t.bytes(made.size_bytes),
    );
    // Subtitles, when the source has any or the job gives some, beside the ladder. A job
    // recorded before subtitles existed has neither in its history, so it replays as it ran.
    let subtitles = async {
        if probe.subtitles.is_empty() && job.subtitles.is_empty() {
            return Ok(SubtitlesOutput::default());
        }
        timed(
            ctx,
            "subtitles",
            "subtitles",
            ctx.execute_activity(
                act::ExtractSubtitles,
                SubtitlesInput {
                    source: keys.input(),
                    origin_seconds: probe.timeline_origin,
                    streams: probe.subtitles.clone(),
                    sidecars: job.subtitles.clone(),
                    bucket: job.output_bucket.clone(),
                    prefix: keys.hls_prefix().to_string(),
                },
                // It reads the whole source once (a film's worth of bytes).
                long_running(probe),
            ),
            |t, _| t,
        )
        .await
    };
    // The poster frame does not wait for the ladder.
    let (ladder, thumb, subtitles) = futures::join!(ladder, thumbnail, subtitles);
    let (chunks, audio) = ladder?;
    let thumb = thumb?;
    let subtitles = subtitles?;
    step(ctx, "assemble", 90);
    let hls = timed(
        ctx,
        "assemble_hls",
        "HLS assembly",
        ctx.execute_activity(
            act::AssembleHls,
            AssembleInput {
                bucket: job.output_bucket.clone(),
                prefix: keys.hls_prefix().to_string(),
                renditions: plan.renditions.clone(),
                frame_rate: plan.frame_rate,
                chunks,
                audio,
                preview: plan.preview_from.as_ref().map(|from| PreviewPlan {
                    from_rendition: from.clone(),
                    seconds: plan.preview_seconds,
                    playlist_key: keys.preview_playlist(),
                }),
                audio_source: probe.audio.clone(),
                subtitles: subtitles.tracks,
                storyboard: storyboard_plan(keys, plan),
                duration_seconds: probe.duration_seconds,
            },
            long_running(probe),
        ),
        |t, hls| t.bytes(hls.bytes_out),
    )
    .await?;
    output.thumbnail_key = Some(thumb.object.key.clone());
    output.storyboard_key = hls.storyboard_key.clone();
    verify.storyboard_key = hls.storyboard_key.clone();
    output.width = Some(plan.display_width);
    output.height = Some(plan.display_height);
    if let Some(preview_key) = &hls.preview_key {
        output.hls_preview_key = Some(preview_key.clone());
        verify.preview_key = Some(preview_key.clone());
        verify.preview_seconds = plan.preview_seconds;
    }
    verify.thumbnail_key = Some(thumb.object.key);
    verify.video_renditions = plan
        .renditions
        .iter()
        .map(|r| (r.name.clone(), r.width, r.height))
        .collect();
    Ok(hls)
}
