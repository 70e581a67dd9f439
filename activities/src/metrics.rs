//! The worker's own Prometheus metrics, registered on the Temporal SDK's meter so one
//! `/metrics` endpoint serves them beside the SDK's worker metrics.
//!
//! Names (as scraped; counters get `_total` from the exporter):
//! - `transcoder_jobs_started_total{media_type}`, `…_completed_total`, `…_failed_total`
//! - `transcoder_job_duration_seconds{media_type,outcome}` histogram
//! - `transcoder_step_duration_seconds{step,outcome}` histogram, one per activity execution
//! - `transcoder_realtime_factor{step,encoder}` histogram: media seconds per wall second
//! - `transcoder_encoded_media_seconds{step,encoder}` histogram: video encoded per activity,
//!   by encoder; its `_sum` is the total (a histogram because the SDK's counters are whole
//!   numbers, and Prometheus wants seconds)
//! - `transcoder_bytes_uploaded_total{step}`: bytes written to the object store
//! - `transcoder_webhook_attempts_total{outcome}`: delivered, retrying, rejected
//! - `transcoder_chunk_retries_total`: ladder chunks run again after a failure or lost worker
//! - `transcoder_steps_in_flight{step}` gauge, `transcoder_worker_encoder{encoder}` gauge
//!
//! Label sets that dashboards divide by are created at zero when the worker starts, so a
//! rate or a ratio has a series to work with before the first failure happens.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use temporalio_common::telemetry::metrics::{
    CoreMeter, Counter, Gauge, HistogramF64, MetricAttributes, MetricKeyValue, MetricParameters,
    NewAttributes, NoOpCoreMeter, UpDownCounter,
};

/// The media types a job can have (DESIGN §3.1).
pub const MEDIA_TYPES: [&str; 2] = ["video", "audio"];
/// How a webhook attempt ended.
pub const WEBHOOK_OUTCOMES: [&str; 3] = ["delivered", "retrying", "rejected"];

/// Bucket bounds for our histograms, by metric name.
pub fn histogram_buckets() -> Vec<(&'static str, Vec<f64>)> {
    vec![
        (
            JOB_DURATION,
            vec![
                5., 15., 30., 60., 120., 300., 600., 1200., 1800., 3600., 7200., 14400.,
            ],
        ),
        (
            STEP_DURATION,
            vec![
                0.1, 0.5, 1., 2.5, 5., 10., 30., 60., 120., 300., 600., 1800., 3600.,
            ],
        ),
        (
            REALTIME_FACTOR,
            vec![0.25, 0.5, 1., 2., 4., 8., 16., 32., 64., 128., 256.],
        ),
        // Chunk and piece lengths (6 s segments, 60 s default chunks) up to whole files.
        (
            ENCODED_MEDIA,
            vec![
                1., 6., 12., 30., 60., 120., 300., 600., 1800., 3600., 10800.,
            ],
        ),
    ]
}

const JOB_DURATION: &str = "transcoder_job_duration_seconds";
const STEP_DURATION: &str = "transcoder_step_duration_seconds";
const REALTIME_FACTOR: &str = "transcoder_realtime_factor";
const ENCODED_MEDIA: &str = "transcoder_encoded_media_seconds";

/// How an activity ended, the `outcome` label of `transcoder_step_duration_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    Ok,
    Error,
    /// Cancelled: its job was stopped, or its worker shut down past the grace period.
    Cancelled,
}

impl StepOutcome {
    pub fn label(self) -> &'static str {
        match self {
            StepOutcome::Ok => "ok",
            StepOutcome::Error => "error",
            StepOutcome::Cancelled => "cancelled",
        }
    }
}

/// Cheap to clone; every method is a no-op on [`Metrics::disabled`].
#[derive(Clone)]
pub struct Metrics(Arc<Instruments>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Metrics").field(&self.0.meter).finish()
    }
}

struct Instruments {
    meter: Arc<dyn CoreMeter>,
    jobs_started: Counter,
    jobs_completed: Counter,
    jobs_failed: Counter,
    job_duration: HistogramF64,
    step_duration: HistogramF64,
    realtime_factor: HistogramF64,
    encoded: HistogramF64,
    bytes_uploaded: Counter,
    webhook_attempts: Counter,
    chunk_retries: Counter,
    in_flight: UpDownCounter,
    worker_encoder: Gauge,
}

fn params(name: &'static str, description: &'static str) -> MetricParameters {
    MetricParameters {
        name: Cow::Borrowed(name),
        description: Cow::Borrowed(description),
        unit: Cow::Borrowed(""),
    }
}

impl Metrics {
    /// Registers every instrument on `meter`.
    pub fn new(meter: Arc<dyn CoreMeter>) -> Self {
        let m = &meter;
        let instruments = Instruments {
            jobs_started: m.counter(params(
                "transcoder_jobs_started",
                "Jobs whose workflow started, by media type",
            )),
            jobs_completed: m.counter(params(
                "transcoder_jobs_completed",
                "Jobs finished with a ready webhook, by media type",
            )),
            jobs_failed: m.counter(params(
                "transcoder_jobs_failed",
                "Jobs finished with a failed webhook, by media type",
            )),
            job_duration: m.histogram_f64(params(
                JOB_DURATION,
                "Wall time from workflow start to the final webhook",
            )),
            step_duration: m.histogram_f64(params(
                STEP_DURATION,
                "Wall time of one activity execution on this worker",
            )),
            realtime_factor: m.histogram_f64(params(
                REALTIME_FACTOR,
                "Media seconds processed per wall second by one activity execution",
            )),
            encoded: m.histogram_f64(params(
                ENCODED_MEDIA,
                "Seconds of video encoded by one activity execution, by step and encoder",
            )),
            bytes_uploaded: m.counter(params(
                "transcoder_bytes_uploaded",
                "Bytes written to the object store, by step",
            )),
            webhook_attempts: m.counter(params(
                "transcoder_webhook_attempts",
                "Webhook delivery attempts by outcome (delivered, retrying, rejected)",
            )),
            chunk_retries: m.counter(params(
                "transcoder_chunk_retries",
                "Ladder chunk executions after the first (a failure or a lost worker)",
            )),
            in_flight: m.up_down_counter(params(
                "transcoder_steps_in_flight",
                "Activities running on this worker now, by step",
            )),
            worker_encoder: m.gauge(params(
                "transcoder_worker_encoder",
                "1 for the video encoder this worker chose at start",
            )),
            meter,
        };
        let metrics = Metrics(Arc::new(instruments));
        metrics.create_zero_series();
        let build = metrics.0.meter.gauge(params(
            "transcoder_build_info",
            "1, labelled with the version of the transcoder binary",
        ));
        build.record(1, &metrics.attrs(&[("version", env!("CARGO_PKG_VERSION"))]));
        metrics
    }

    /// Samples this process's standard metrics (the names Prometheus client libraries use:
    /// `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`,
    /// `process_start_time_seconds`) from /proc every few seconds, for as long as the
    /// runtime lives. ffmpeg's CPU is its own process's, not counted here.
    pub fn start_process_metrics(&self) {
        let m = &self.0.meter;
        let cpu = m.counter(params(
            "process_cpu_seconds",
            "User and system CPU time of the worker process, in whole seconds",
        ));
        let rss = m.gauge(params(
            "process_resident_memory_bytes",
            "Resident memory of the worker process",
        ));
        let fds = m.gauge(params(
            "process_open_fds",
            "Open file descriptors of the worker process",
        ));
        let start = m.gauge(params(
            "process_start_time_seconds",
            "When the worker process started, in seconds since the Unix epoch",
        ));
        let none = self.attrs(&[]);
        // The series exists from the start, at 0 until a whole second of CPU is used.
        cpu.add(0, &none);
        if let Some(t) = process::start_time_seconds() {
            start.record(t, &none);
        }
        tokio::spawn(async move {
            let mut counted = 0u64;
            loop {
                if let Some(seconds) = process::cpu_seconds() {
                    let whole = seconds.floor() as u64;
                    if whole > counted {
                        cpu.add(whole - counted, &none);
                        counted = whole;
                    }
                }
                if let Some(bytes) = process::resident_bytes() {
                    rss.record(bytes, &none);
                }
                if let Some(n) = process::open_fds() {
                    fds.record(n, &none);
                }
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
        });
    }

    /// Records nothing; for tools and tests that run activities without an endpoint.
    pub fn disabled() -> Self {
        Metrics::new(Arc::new(NoOpCoreMeter))
    }

    fn attrs(&self, pairs: &[(&'static str, &str)]) -> MetricAttributes {
        self.0.meter.new_attributes(NewAttributes::from(
            pairs
                .iter()
                .map(|(k, v)| MetricKeyValue::new(*k, v.to_string())),
        ))
    }

    fn create_zero_series(&self) {
        let i = &self.0;
        for media_type in MEDIA_TYPES {
            let a = self.attrs(&[("media_type", media_type)]);
            i.jobs_started.add(0, &a);
            i.jobs_completed.add(0, &a);
            i.jobs_failed.add(0, &a);
        }
        for outcome in WEBHOOK_OUTCOMES {
            i.webhook_attempts
                .add(0, &self.attrs(&[("outcome", outcome)]));
        }
        i.chunk_retries.add(0, &self.attrs(&[]));
    }

    pub fn job_started(&self, media_type: &str) {
        self.0
            .jobs_started
            .add(1, &self.attrs(&[("media_type", media_type)]));
    }

    /// A job reached its final webhook; `completed` is false for a failed job.
    pub fn job_finished(&self, media_type: &str, completed: bool, wall: Duration) {
        let a = self.attrs(&[("media_type", media_type)]);
        if completed {
            self.0.jobs_completed.add(1, &a);
        } else {
            self.0.jobs_failed.add(1, &a);
        }
        let outcome = if completed { "completed" } else { "failed" };
        self.0.job_duration.record(
            wall.as_secs_f64(),
            &self.attrs(&[("media_type", media_type), ("outcome", outcome)]),
        );
    }

    /// Counts `step` as running until the guard is dropped.
    pub fn step_running(&self, step: &str) -> InFlight {
        let attrs = self.attrs(&[("step", step)]);
        self.0.in_flight.add(1, &attrs);
        InFlight {
            metrics: self.clone(),
            attrs,
        }
    }

    /// One activity execution ended after `wall`.
    pub fn step_finished(&self, step: &str, outcome: StepOutcome, wall: Duration) {
        self.0.step_duration.record(
            wall.as_secs_f64(),
            &self.attrs(&[("step", step), ("outcome", outcome.label())]),
        );
    }

    /// `media_seconds` of media were processed by `encoder` in `wall`.
    pub fn media_processed(&self, step: &str, encoder: &str, media_seconds: f64, wall: Duration) {
        if media_seconds <= 0.0 {
            return;
        }
        let a = self.attrs(&[("step", step), ("encoder", encoder)]);
        if let Some(factor) = realtime_factor(media_seconds, wall) {
            self.0.realtime_factor.record(factor, &a);
        }
        if encoder == "nvenc" || encoder == "x264" {
            self.0.encoded.record(media_seconds, &a);
        }
    }

    pub fn uploaded(&self, step: &str, bytes: u64) {
        if bytes > 0 {
            self.0
                .bytes_uploaded
                .add(bytes, &self.attrs(&[("step", step)]));
        }
    }

    /// `outcome` is one of [`WEBHOOK_OUTCOMES`].
    pub fn webhook_attempt(&self, outcome: &str) {
        self.0
            .webhook_attempts
            .add(1, &self.attrs(&[("outcome", outcome)]));
    }

    pub fn chunk_retry(&self) {
        self.0.chunk_retries.add(1, &self.attrs(&[]));
    }

    /// Marks the encoder this worker chose (`nvenc` or `x264`).
    pub fn worker_encoder(&self, encoder: &str) {
        for name in ["nvenc", "x264"] {
            let value = u64::from(name == encoder);
            self.0
                .worker_encoder
                .record(value, &self.attrs(&[("encoder", name)]));
        }
    }
}

/// Media seconds per wall second, when both are meaningful.
pub fn realtime_factor(media_seconds: f64, wall: Duration) -> Option<f64> {
    transcoder_workflows::receipt::realtime_factor(media_seconds, wall.as_secs_f64())
}

/// The short encoder label used in metrics and traces: `nvenc`, `x264`, or the codec name.
pub use transcoder_workflows::receipt::encoder_label;

/// Decrements the in-flight gauge when the activity ends, however it ends.
pub struct InFlight {
    metrics: Metrics,
    attrs: MetricAttributes,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.0.in_flight.add(-1, &self.attrs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_for_encoders() {
        assert_eq!(encoder_label("h264_nvenc"), "nvenc");
        assert_eq!(encoder_label("libx264"), "x264");
        assert_eq!(encoder_label("aac"), "aac");
    }

    #[test]
    fn realtime_factor_needs_both_numbers() {
        assert_eq!(realtime_factor(60.0, Duration::from_secs(30)), Some(2.0));
        assert_eq!(realtime_factor(0.0, Duration::from_secs(30)), None);
        assert_eq!(realtime_factor(10.0, Duration::ZERO), None);
    }

    #[test]
    fn disabled_metrics_accept_everything() {
        let m = Metrics::disabled();
        m.job_started("video");
        m.job_finished("video", true, Duration::from_secs(3));
        let guard = m.step_running("probe");
        m.step_finished("probe", StepOutcome::Ok, Duration::from_millis(40));
        drop(guard);
        m.media_processed("ladder_chunk", "x264", 6.0, Duration::from_secs(2));
        m.uploaded("ladder_chunk", 1000);
        m.webhook_attempt("delivered");
        m.chunk_retry();
        m.worker_encoder("x264");
    }
}

/// This process's facts, read from Linux's /proc.
mod process {
    /// /proc reports process times in USER_HZ ticks, which the kernel's ABI fixes at 100 a
    /// second.
    const USER_HZ: f64 = 100.0;

    /// The fields of /proc/self/stat after the command name (which may hold spaces).
    fn stat_fields() -> Option<Vec<String>> {
        let text = std::fs::read_to_string("/proc/self/stat").ok()?;
        let (_, rest) = text.rsplit_once(')')?;
        Some(rest.split_whitespace().map(str::to_string).collect())
    }

    /// User + system CPU seconds (fields 14 and 15 of stat).
    pub fn cpu_seconds() -> Option<f64> {
        let f = stat_fields()?;
        let user: f64 = f.get(11)?.parse().ok()?;
        let system: f64 = f.get(12)?.parse().ok()?;
        Some((user + system) / USER_HZ)
    }

    pub fn resident_bytes() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(kb * 1024)
    }

    pub fn open_fds() -> Option<u64> {
        Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
    }

    /// Boot time (`btime` of /proc/stat) plus the process's start in ticks after boot
    /// (field 22 of stat).
    pub fn start_time_seconds() -> Option<u64> {
        let boot: u64 = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        let ticks: f64 = stat_fields()?.get(19)?.parse().ok()?;
        Some(boot + (ticks / USER_HZ) as u64)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn this_process_reads_back() {
            assert!(cpu_seconds().is_some_and(|s| s >= 0.0));
            assert!(resident_bytes().is_some_and(|b| b > 1024 * 1024));
            assert!(open_fds().is_some_and(|n| n >= 3));
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let started = start_time_seconds().unwrap();
            assert!(
                started <= now + 1 && started + 3600 > now,
                "{started} vs {now}"
            );
        }
    }
}
