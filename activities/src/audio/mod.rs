//! A programme's sound: the loudness normalization ([`loudness`]), the sound in chunks
//! ([`chunks`]: the mezzanine's track, the meter, the renditions and the waveform's
//! stretches, as every job makes them), and the sound in one run ([`whole`]: a video of one
//! chunk, and jobs started before the sound was chunked).

pub mod adts;
pub mod chunks;
pub mod grid;
pub mod loudness;
pub mod whole;
