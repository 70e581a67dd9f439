//! A programme's sound: the loudness normalization ([`loudness`]), the sound in chunks
//! ([`chunks`]: the mezzanine's track, the meter, the renditions and the waveform's
//! stretches, as every job makes them), and the sound in one run ([`whole`]: a video of one
//! chunk, and jobs started before the sound was chunked).

pub mod adts;
pub mod chunks;
pub mod grid;
pub mod loudness;
pub mod whole;

/// The audio encoder every sound path uses (ffmpeg's native AAC), named once for the
/// command lines and for what the activities report having run.
pub const AAC_ENCODER: &str = "aac";
