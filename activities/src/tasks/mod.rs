//! The small media tasks RunPod ffmpeg workers take (`transcoder_workflows::task`): each a
//! plain async function the adapter calls, reading its inputs and writing its output
//! through [`TaskIo`], so a payload's URIs never name the worker's own files.

pub mod chain;
pub mod chunking;
pub mod encoding;
pub mod inspect;
pub mod io;
pub mod quality;
pub mod resize;
pub mod sound;
pub mod stage;
pub mod trim;

pub use io::{Delivered, TaskIo};
