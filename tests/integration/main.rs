//! Every integration test in one binary. Each test links the whole workspace (aws-sdk-s3,
//! the Temporal SDK, OpenTelemetry); twelve separate test binaries cost twelve links and
//! several gigabytes of disk on CI, one costs one. Run a group with a filter, e.g.
//! `cargo test --test integration runpod::`.

// A panic is how a test fails, in its helpers too (the workspace denies unwrap elsewhere).
#![allow(clippy::unwrap_used)]

mod common;

mod apple_rules;
mod audio_joins;
mod av_sync;
mod chunk_resume;
mod doctor;
mod durability;
mod end_to_end;
mod fixtures;
mod hard_inputs;
mod mezzanine_pieces;
mod nix_flake;
mod object_storage;
mod observability;
mod playback;
mod replay;
mod runpod;
mod search;
mod subtitles;
mod tasks;
mod temporal_profiles;
mod transient_storage;
mod webhook_policy;
