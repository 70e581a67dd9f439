//! The `transcoder` binary's library: wiring between the CLI, Temporal, and the
//! `transcoder-workflows` / `transcoder-activities` crates. Kept thin on purpose.

pub mod devserver;
pub mod doctor;
pub mod jobs;
pub mod list;
pub mod progress;
pub mod receiver;
pub mod runpod;
pub mod runpod_log;
pub mod stage;
pub mod status;
pub mod tasks;
pub mod telemetry;
pub mod temporal;
pub mod worker;
