//! Side effects of transcoder: ffmpeg/ffprobe, storage and webhooks, each exposed as a plain
//! async function that tests can call directly, plus [`MediaActivities`], the thin Temporal
//! adapter that registers them as the activities named in `transcoder_workflows::activities`.

pub mod allowlist;
pub mod assemble;
pub mod audio;
pub mod chunks;
pub mod encoder;
pub mod error;
pub mod fetch;
pub mod ffmpeg;
pub mod hls;
pub mod iframes;
pub mod live;
pub mod metrics;
pub mod mezzanine;
pub mod nvenc;
pub mod preview;
pub mod probe;
pub mod process;
pub mod sandbox;
pub mod scratch;
pub mod secrets;
mod span;
pub mod storage;
pub mod storyboard;
pub mod subtitles;
pub mod tasks;
pub mod thumbnail;
pub mod verify;
pub mod vmaf;
pub mod waveform;
pub mod webhook;
pub mod webvtt;

mod adapter;
mod original;

pub use adapter::{MediaActivities, TaskActivities, HEARTBEAT_EVERY};
pub use encoder::EncoderSettings;
pub use error::MediaError;
pub use storage::Storage;
