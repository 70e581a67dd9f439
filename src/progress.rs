//! `transcoder run`'s progress bars: one per step, moved by ffmpeg's `-progress` output of
//! the activities running in this process (`transcoder_activities::live`) and, for the
//! ladder, by finished chunks (the workflow's `progress` query). Drawn only on a terminal;
//! log lines are printed above the bars (see `telemetry::LogWriter`).

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;
use temporalio_client::{Client, WorkflowQueryOptions};
use tokio::sync::watch;
use transcoder_activities::live;
use transcoder_workflows::workflow::Progress;
use transcoder_workflows::TranscodeWorkflow;

/// The bars on screen, shared with the log writer so log lines do not tear them.
pub fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// The name a step's bar carries: chunks share one `ladder` bar.
fn bar_name(step: &str) -> &str {
    match step {
        "ladder_chunk" => "ladder",
        // A mezzanine made in pieces is still one step to watch.
        "mezzanine_piece" | "mezzanine_audio" | "join_mezzanine" | "join_audio_mezzanine" => {
            "mezzanine"
        }
        // The sound's chunks and what finishes them.
        "audio_chunk" | "loudness_summary" | "finish_audio_rendition" | "finish_audio_hls" => {
            "audio"
        }
        "finish_waveform" => "waveform",
        other => other,
    }
}

/// Fraction of a step done, from the activities running now (and finished chunks).
fn step_fractions(running: &[live::LiveActivity], progress: &Progress) -> BTreeMap<String, f64> {
    let mut steps: BTreeMap<String, f64> = BTreeMap::new();
    let mut chunk_sum = 0.0;
    for a in running {
        if a.step == "ladder_chunk" {
            chunk_sum += a.fraction;
        } else {
            let entry = steps.entry(bar_name(&a.step).to_string()).or_insert(0.0);
            *entry = entry.max(a.fraction);
        }
    }
    if progress.chunks_total > 0
        && (chunk_sum > 0.0 || running.iter().any(|a| a.step == "ladder_chunk"))
    {
        let done = f64::from(progress.chunks_done) + chunk_sum;
        steps.insert(
            "ladder".to_string(),
            (done / f64::from(progress.chunks_total)).min(1.0),
        );
    }
    steps
}

/// Draws bars for `workflow_id` until `stop` flips; a no-op when stderr is not a terminal.
pub fn spawn(
    client: Client,
    workflow_id: String,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return;
        }
        let style = ProgressStyle::with_template("{prefix:>16} [{bar:32}] {percent:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        let handle = client.get_workflow_handle::<TranscodeWorkflow>(&workflow_id);
        let mut shown: BTreeMap<String, ProgressBar> = BTreeMap::new();
        let mut progress = Progress::default();
        let mut tick = 0u32;
        loop {
            // The query costs a round trip; chunk counts change slowly.
            if tick.is_multiple_of(5) {
                if let Ok(Ok(p)) = tokio::time::timeout(
                    Duration::from_secs(2),
                    handle.query(
                        TranscodeWorkflow::progress,
                        (),
                        WorkflowQueryOptions::default(),
                    ),
                )
                .await
                {
                    progress = p;
                }
            }
            tick = tick.wrapping_add(1);
            let running = live::running(&workflow_id);
            let now = step_fractions(&running, &progress);
            for (step, fraction) in &now {
                let bar = shown.entry(step.clone()).or_insert_with(|| {
                    let bar = bars().add(ProgressBar::new(1000));
                    bar.set_style(style.clone());
                    bar.set_prefix(step.clone());
                    bar
                });
                bar.set_position((fraction * 1000.0) as u64);
                if step == "ladder" && progress.chunks_total > 0 {
                    bar.set_message(format!(
                        "chunks {}/{}",
                        progress.chunks_done, progress.chunks_total
                    ));
                }
            }
            // A step no longer running is finished (or failed; the summary says which).
            for (step, bar) in &shown {
                if !now.contains_key(step) && !bar.is_finished() {
                    let ladder_pending = step == "ladder"
                        && progress.chunks_total > 0
                        && progress.chunks_done < progress.chunks_total;
                    if !ladder_pending {
                        bar.set_position(1000);
                        bar.finish_with_message("done");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {},
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
        }
        for bar in shown.values() {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
        let _ = bars().clear();
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(step: &str, fraction: f64) -> live::LiveActivity {
        live::LiveActivity {
            workflow_id: "w".into(),
            step: step.into(),
            activity_id: format!("{step}-{fraction}"),
            attempt: 1,
            fraction,
        }
    }

    #[test]
    fn chunks_fill_one_ladder_bar() {
        let progress = Progress {
            step: "ladder".into(),
            percent: 40,
            chunks_done: 2,
            chunks_total: 4,
            failure: None,
        };
        let running = [
            activity("ladder_chunk", 0.5),
            activity("ladder_chunk", 0.5),
            activity("thumbnail", 0.25),
        ];
        let steps = step_fractions(&running, &progress);
        assert_eq!(steps.get("ladder"), Some(&0.75));
        assert_eq!(steps.get("thumbnail"), Some(&0.25));
        assert_eq!(steps.len(), 2);
    }

    #[test]
    fn the_sound_s_chunks_share_one_bar() {
        let progress = Progress::default();
        let running = [
            activity("audio_chunk", 0.5),
            activity("audio_chunk", 0.25),
            activity("mezzanine_piece", 0.1),
        ];
        let steps = step_fractions(&running, &progress);
        assert_eq!(steps.get("audio"), Some(&0.5));
        assert_eq!(steps.get("mezzanine"), Some(&0.1));
    }
}
