//! The programme's grids for its sound in chunks: 48 kHz samples, AAC packets of 1024
//! samples, the meter's 100 ms steps, and for each chunk where its decode runs and which
//! packets and segments it owns (ARCHITECTURE.md, "Audio in chunks").
//!
//! - Everything is counted on the programme's 48 kHz sample grid. A chunk owns the samples
//!   of its time range; chunk boundaries are whole seconds, so they are whole samples.
//! - AAC packets lie on a grid of 1024 samples. Packet 0 of a run is the encoder's priming
//!   frame, and packet `j` decodes to samples `[(j-1)·1024, j·1024)`. A chunk's decode starts
//!   on that grid (and on the source's own sample grid, so resampling lines up, and on the
//!   meter's 100 ms grid), a few seconds before its range, so its packet `m` is the
//!   programme's packet `m + start/1024`, with the encoder, the resampler, the limiter and
//!   the meter settled by then. It keeps only the packets it owns: those of its segments,
//!   whose boundaries are where one run's HLS muxer would cut (the first packet whose time
//!   reaches the boundary). Consecutive chunks share no packet and skip none.

use crate::error::{MediaError, Result};
use std::ops::Range;
use transcoder_workflows::media::ChunkPlan;

/// Every audio output runs at 48 kHz.
pub const SAMPLE_RATE: u64 = 48_000;
/// Samples per AAC-LC packet.
pub const AAC_FRAME: u64 = 1_024;
/// The meter's step: EBU R128's 400 ms and 3 s windows advance by 100 ms.
pub const METER_STEP: u64 = SAMPLE_RATE / 10;
/// At least this much is decoded before a chunk's first sample: the short-term (3 s) window
/// of its first reading, plus room for the encoder, resampler and limiter to settle.
const PREROLL: u64 = 3 * SAMPLE_RATE + 2 * METER_STEP;
/// Decoded after a chunk's last sample, so the encoder's and the limiter's look-ahead see
/// what comes next, as in a single run.
const POSTROLL: u64 = SAMPLE_RATE;

/// Where one chunk's decode runs and what it owns, on the programme's 48 kHz timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioWindow {
    /// First sample decoded.
    pub decode_start: u64,
    /// Samples decoded (to the post-roll's end, or the programme's).
    pub decode_len: u64,
    /// The samples the chunk owns: `[own_start, own_end)`.
    pub own_start: u64,
    pub own_end: u64,
    /// The first AAC packet the chunk owns, on the programme's packet grid.
    pub first_packet: u64,
    /// The packet after its last; `None` for the last chunk (to the end).
    pub end_packet: Option<u64>,
}

impl AudioWindow {
    /// Packet index of the run's own packet 0 on the programme's grid.
    pub(crate) fn packet_offset(&self) -> u64 {
        self.decode_start / AAC_FRAME
    }
}

/// Samples of a programme of `duration` seconds.
pub fn programme_samples(duration: f64) -> u64 {
    (duration.max(0.0) * SAMPLE_RATE as f64).round() as u64
}

/// The first packet of segment `k`: the first whose time (packet 0 at time 0) reaches `k`
/// segments, where a single run's HLS muxer cuts.
pub fn segment_first_packet(k: u64, segment_seconds: u32) -> u64 {
    (k * u64::from(segment_seconds) * SAMPLE_RATE).div_ceil(AAC_FRAME)
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: u64, b: u64) -> u64 {
    a / gcd(a, b) * b
}

/// Decodes start on multiples of this (48 kHz samples): the AAC packet grid, the meter's
/// grid, and the first 48 kHz sample that falls exactly on a source sample.
fn decode_grid(source_rate: u32) -> u64 {
    let source_step = match u64::from(source_rate) {
        0 => 1,
        r => SAMPLE_RATE / gcd(SAMPLE_RATE, r),
    };
    lcm(lcm(AAC_FRAME, METER_STEP), source_step)
}

/// The window of `chunk` in a programme of `duration` seconds whose source runs at
/// `source_rate` Hz.
pub fn window(
    chunk: &ChunkPlan,
    segment_seconds: u32,
    duration: f64,
    source_rate: u32,
) -> AudioWindow {
    let total = programme_samples(duration);
    let own_start = programme_samples(chunk.start_seconds).min(total);
    let own_end = if chunk.last {
        total
    } else {
        programme_samples(chunk.start_seconds + chunk.duration_seconds).min(total)
    };
    let grid = decode_grid(source_rate);
    let decode_start = own_start.saturating_sub(PREROLL) / grid * grid;
    let decode_end = if chunk.last {
        total
    } else {
        (own_end + POSTROLL).min(total)
    };
    let first_segment = u64::from(chunk.first_segment);
    AudioWindow {
        decode_start,
        decode_len: decode_end - decode_start,
        own_start,
        own_end,
        first_packet: segment_first_packet(first_segment, segment_seconds),
        end_packet: (!chunk.last).then(|| {
            segment_first_packet(
                first_segment + u64::from(chunk.max_segments),
                segment_seconds,
            )
        }),
    }
}

/// The packets of each segment the chunk owns, as `(segment number, programme packets)`,
/// given that the run made `packets` packets.
pub fn segment_packets(
    w: &AudioWindow,
    chunk: &ChunkPlan,
    segment_seconds: u32,
    packets: u64,
) -> Result<Vec<(u32, Range<u64>)>> {
    let own = own_packets(w, chunk, packets)?;
    let offset = w.packet_offset();
    let end = own.end as u64 + offset;
    let mut out = Vec::new();
    let mut k = u64::from(chunk.first_segment);
    loop {
        let from = segment_first_packet(k, segment_seconds).max(w.first_packet);
        if from >= end {
            break;
        }
        let to = segment_first_packet(k + 1, segment_seconds).min(end);
        out.push((k as u32, from..to));
        k += 1;
    }
    Ok(out)
}

/// `samples` at 48 kHz as seconds for an ffmpeg option (microseconds, which it reads).
pub fn seconds(samples: u64) -> String {
    format!("{:.6}", samples as f64 / SAMPLE_RATE as f64)
}

/// The run's own packets as local indices `[first, end)`.
pub(crate) fn own_packets(
    w: &AudioWindow,
    chunk: &ChunkPlan,
    packets: u64,
) -> Result<Range<usize>> {
    let offset = w.packet_offset();
    let end = w.end_packet.unwrap_or(offset + packets);
    if end > offset + packets || w.first_packet < offset || w.first_packet >= end {
        return Err(MediaError::Verification(format!(
            "audio chunk {} made packets {offset}..{}, short of its own {}..{end}",
            chunk.index,
            offset + packets,
            w.first_packet
        )));
    }
    Ok((w.first_packet - offset) as usize..(end - offset) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(index: u32, start: f64, duration: f64, last: bool) -> ChunkPlan {
        ChunkPlan {
            index,
            start_seconds: start,
            duration_seconds: duration,
            first_segment: index * 10,
            max_segments: 10,
            last,
        }
    }

    #[test]
    fn segments_start_where_one_run_cuts_them() {
        // 6 s is 281.25 packets: the cut falls on the first packet at or after it.
        assert_eq!(segment_first_packet(0, 6), 0);
        assert_eq!(segment_first_packet(1, 6), 282);
        assert_eq!(segment_first_packet(4, 6), 1125);
        assert_eq!(segment_first_packet(10, 6), 2813);
    }

    #[test]
    fn windows_start_on_every_grid_before_the_pre_roll() {
        for rate in [0, 48_000, 44_100, 22_050, 32_000, 8_000, 96_000, 11_025] {
            let c = chunk(1, 60.0, 60.0, false);
            let w = window(&c, 6, 300.0, rate);
            assert_eq!(w.decode_start % AAC_FRAME, 0, "{rate}");
            assert_eq!((w.own_start - w.decode_start) % METER_STEP, 0, "{rate}");
            if rate > 0 {
                let source = w.decode_start as u128 * rate as u128;
                assert_eq!(source % 48_000, 0, "{rate}: not on a source sample");
            }
            assert!(w.own_start - w.decode_start >= PREROLL, "{rate}");
            assert_eq!(w.own_start, 60 * 48_000);
            assert_eq!(w.own_end, 120 * 48_000);
            assert_eq!(w.decode_start + w.decode_len, 121 * 48_000);
            assert_eq!(w.first_packet, 2813);
            assert_eq!(w.end_packet, Some(5625));
        }
        let first = window(&chunk(0, 0.0, 60.0, false), 6, 300.0, 44_100);
        assert_eq!((first.decode_start, first.first_packet), (0, 0));
        let last = window(&chunk(4, 240.0, 60.0, true), 6, 299.5, 48_000);
        assert_eq!(last.own_end, programme_samples(299.5));
        assert_eq!(last.decode_start + last.decode_len, last.own_end);
        assert_eq!(last.end_packet, None);
    }

    #[test]
    fn consecutive_chunks_own_every_packet_once() {
        let duration = 130.4;
        let chunks = [
            chunk(0, 0.0, 60.0, false),
            chunk(1, 60.0, 60.0, false),
            chunk(2, 120.0, 10.4, true),
        ];
        let total_packets = programme_samples(duration).div_ceil(AAC_FRAME) + 1;
        let mut next = 0;
        let mut next_segment = 0;
        for c in &chunks {
            let w = window(c, 6, duration, 48_000);
            // What a run of the window makes: its samples plus the priming packet.
            let made = w.decode_len.div_ceil(AAC_FRAME) + 1;
            let segs = segment_packets(&w, c, 6, made).expect("segments");
            for (number, packets) in segs {
                assert_eq!(number, next_segment);
                assert_eq!(packets.start, next, "chunk {} segment {number}", c.index);
                next = packets.end;
                next_segment += 1;
            }
        }
        assert_eq!(next, total_packets);
        assert_eq!(next_segment, 22);
    }

    #[test]
    fn a_short_run_is_refused() {
        let c = chunk(1, 60.0, 60.0, false);
        let w = window(&c, 6, 300.0, 48_000);
        assert!(segment_packets(&w, &c, 6, 100).is_err());
        assert!(own_packets(&w, &c, 100).is_err());
    }
}
