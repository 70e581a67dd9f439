//! The job receipt: what each step cost in wall time, how fast it went against the media,
//! which encoder ran and how many bytes it wrote. Built in workflow state from workflow
//! time and activity results (both replay-safe), returned in the workflow result and
//! logged once by the `job_event` local activity, so cost per job is visible without
//! reading the history.

use serde::{Deserialize, Serialize};

/// One step of a job (the ladder's chunks are summed into one `ladder` step).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepReceipt {
    pub step: String,
    /// From scheduling the step's first activity to its last result, retries included.
    pub wall_seconds: f64,
    /// Seconds of media the step processed (0 for steps that do not process media).
    pub media_seconds: f64,
    /// `media_seconds / wall_seconds`, when both are known.
    pub realtime_factor: Option<f64>,
    /// `nvenc`, `x264`, `aac`, or none for steps that encode nothing.
    pub encoder: Option<String>,
    pub bytes_out: u64,
    /// Activities the step ran (chunks for the ladder, else 1).
    pub activities: u32,
}

/// The whole job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub media_id: String,
    pub media_type: String,
    /// `completed`, `failed`, or `running` while the job runs (`status` shows it so).
    pub outcome: String,
    /// From the workflow's start to the final webhook.
    pub wall_seconds: f64,
    /// Duration of the input.
    pub media_seconds: f64,
    /// Input duration over the job's wall time.
    pub realtime_factor: Option<f64>,
    pub bytes_out: u64,
    /// Video encoders that produced the ladder (normally one).
    pub encoders: Vec<String>,
    pub steps: Vec<StepReceipt>,
    /// What became of the job's webhook; `None` until it has been tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookDelivery>,
    /// Workflow-clock (start, end) of each entry of `steps`, to fold chunks together.
    #[serde(skip)]
    spans: Vec<(f64, f64)>,
}

/// What became of a job's webhook, in words a person acts on. `run` and `submit --wait` exit
/// with [`WEBHOOK_NOT_DELIVERED_EXIT`] when it did not get through, and `status` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    pub delivered: bool,
    /// `delivered (HTTP 200)`, `not sent: …`, `rejected by the receiver (HTTP 403) …`.
    pub detail: String,
}

/// Exit status of `run` and `submit --wait` when the job ended (either way) but its webhook
/// did not reach the receiver: the media may be ready, yet media-api was never told.
pub const WEBHOOK_NOT_DELIVERED_EXIT: u8 = 3;

impl WebhookDelivery {
    /// From the webhook activity's result, or `None` when it never succeeded (it ran out
    /// of its retry window, `retry_hours`).
    pub fn from_receipt(
        receipt: Option<&crate::webhook::WebhookReceipt>,
        retry_hours: u64,
    ) -> Self {
        let detail = match receipt {
            Some(r) if r.delivered => match r.status_code {
                Some(code) => format!("delivered (HTTP {code})"),
                None => "delivered".to_string(),
            },
            Some(r) => match (&r.refused, r.status_code) {
                (Some(reason), _) => format!("not sent: {reason}"),
                (None, Some(code)) => {
                    format!("rejected by the receiver (HTTP {code}); not retried")
                }
                (None, None) => "not delivered".to_string(),
            },
            None => format!(
                "not delivered: the receiver could not be reached or kept failing for {retry_hours} h"
            ),
        };
        WebhookDelivery {
            delivered: receipt.is_some_and(|r| r.delivered),
            detail,
        }
    }
}

/// Media seconds processed per wall second, when both are known (the receipt's, the
/// metrics' and the spans' realtime factor).
pub fn realtime_factor(media_seconds: f64, wall_seconds: f64) -> Option<f64> {
    (media_seconds > 0.0 && wall_seconds > 0.0).then(|| media_seconds / wall_seconds)
}

fn ratio(media: f64, wall: f64) -> Option<f64> {
    realtime_factor(media, wall).map(round3)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl Receipt {
    pub fn new(media_id: &str, media_type: &str) -> Self {
        Receipt {
            media_id: media_id.to_string(),
            media_type: media_type.to_string(),
            outcome: "running".to_string(),
            ..Default::default()
        }
    }

    /// Adds a finished step, or folds it into the step of the same name (ladder chunks):
    /// wall time spans from the earliest start to the latest end.
    pub fn add(&mut self, step: StepTiming) {
        let wall = (step.ended_at - step.started_at).max(0.0);
        if let Some(encoder) = step.encoder.as_deref().filter(|e| is_video_encoder(e)) {
            if !self.encoders.iter().any(|e| e == encoder) {
                self.encoders.push(encoder.to_string());
            }
        }
        self.bytes_out += step.bytes_out;
        match self
            .steps
            .iter_mut()
            .zip(self.spans.iter_mut())
            .find(|(s, _)| s.step == step.name)
        {
            Some((existing, span)) => {
                span.0 = span.0.min(step.started_at);
                span.1 = span.1.max(step.ended_at);
                existing.wall_seconds = round3(span.1 - span.0);
                existing.media_seconds = round3(existing.media_seconds + step.media_seconds);
                existing.bytes_out += step.bytes_out;
                existing.activities += 1;
                existing.realtime_factor = ratio(existing.media_seconds, existing.wall_seconds);
                if existing.encoder.is_none() {
                    existing.encoder = step.encoder;
                }
            }
            None => {
                self.spans.push((step.started_at, step.ended_at));
                self.steps.push(StepReceipt {
                    step: step.name,
                    wall_seconds: round3(wall),
                    media_seconds: round3(step.media_seconds),
                    realtime_factor: ratio(step.media_seconds, wall),
                    encoder: step.encoder,
                    bytes_out: step.bytes_out,
                    activities: 1,
                });
            }
        }
    }

    /// Closes the receipt: `completed` or `failed`, with the job's total wall time.
    pub fn finish(&mut self, completed: bool, wall_seconds: f64, media_seconds: f64) {
        self.outcome = if completed { "completed" } else { "failed" }.to_string();
        self.wall_seconds = round3(wall_seconds.max(0.0));
        self.media_seconds = round3(media_seconds.max(0.0));
        self.realtime_factor = ratio(self.media_seconds, self.wall_seconds);
    }
}

fn is_video_encoder(name: &str) -> bool {
    name == "nvenc" || name == "x264"
}

/// A step as the workflow saw it: workflow-clock start and end (seconds since the epoch)
/// and what its result says it did.
#[derive(Clone, Debug, Default)]
pub struct StepTiming {
    pub name: String,
    pub started_at: f64,
    pub ended_at: f64,
    pub media_seconds: f64,
    pub encoder: Option<String>,
    pub bytes_out: u64,
}

impl StepTiming {
    pub fn new(name: &str, started_at: f64, ended_at: f64) -> Self {
        StepTiming {
            name: name.to_string(),
            started_at,
            ended_at,
            ..Default::default()
        }
    }

    pub fn media(mut self, seconds: f64) -> Self {
        self.media_seconds = seconds;
        self
    }

    /// The encoder the step's activity reported running (`None`: none reported).
    pub fn encoder(mut self, encoder: Option<&str>) -> Self {
        self.encoder = encoder.map(|e| encoder_label(e).to_string());
        self
    }

    pub fn bytes(mut self, bytes: u64) -> Self {
        self.bytes_out = bytes;
        self
    }
}

/// `h264_nvenc` → `nvenc`, `libx264` → `x264`, anything else as it is.
pub fn encoder_label(ffmpeg_encoder: &str) -> &str {
    if ffmpeg_encoder.contains("nvenc") {
        "nvenc"
    } else if ffmpeg_encoder.contains("x264") {
        "x264"
    } else {
        ffmpeg_encoder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_fold_into_one_ladder_step() {
        let mut r = Receipt::new("m1", "video");
        r.add(StepTiming::new("probe", 100.0, 100.5));
        r.add(
            StepTiming::new("ladder", 110.0, 130.0)
                .media(60.0)
                .encoder(Some("libx264"))
                .bytes(1000),
        );
        r.add(
            StepTiming::new("ladder", 111.0, 140.0)
                .media(60.0)
                .encoder(Some("libx264"))
                .bytes(500),
        );
        r.finish(true, 50.0, 120.0);
        assert_eq!(r.steps.len(), 2);
        let ladder = &r.steps[1];
        assert_eq!(ladder.wall_seconds, 30.0);
        assert_eq!(ladder.media_seconds, 120.0);
        assert_eq!(ladder.realtime_factor, Some(4.0));
        assert_eq!(ladder.bytes_out, 1500);
        assert_eq!(ladder.activities, 2);
        assert_eq!(ladder.encoder.as_deref(), Some("x264"));
        assert_eq!(r.encoders, vec!["x264".to_string()]);
        assert_eq!(r.bytes_out, 1500);
        assert_eq!(r.outcome, "completed");
        assert_eq!(r.realtime_factor, Some(2.4));
        // The probe did no media work: no factor rather than a made-up one.
        assert_eq!(r.steps[0].realtime_factor, None);
    }
}
