//! ADTS, the AAC framing the chunks write: walking its frames, and the track joined from the
//! chunks' pieces, muxed so that it states exactly the programme's samples.

use super::grid::{programme_samples, seconds, AAC_FRAME};
use crate::error::{MediaError, Result};
use crate::ffmpeg::FfmpegArgs;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Byte ranges of the ADTS frames in `bytes` (one raw data block each, as ffmpeg writes).
pub fn adts_frames(bytes: &[u8]) -> Result<Vec<Range<usize>>> {
    let bad = |at: usize, why: &str| {
        MediaError::Verification(format!("the AAC stream is broken at byte {at}: {why}"))
    };
    let mut frames = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let h = &bytes[at..];
        if h.len() < 7 || h[0] != 0xFF || h[1] & 0xF6 != 0xF0 {
            return Err(bad(at, "no ADTS header"));
        }
        if h[6] & 0x03 != 0 {
            return Err(bad(at, "more than one raw data block in a frame"));
        }
        let len =
            (usize::from(h[3] & 0x03) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        if len < 7 || len > h.len() {
            return Err(bad(at, "frame length out of range"));
        }
        frames.push(at..at + len);
        at += len;
    }
    Ok(frames)
}

/// A programme's sound joined from its chunks' ADTS pieces, ready to mux.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdtsTrack {
    pub path: PathBuf,
    /// AAC packets, the priming frame included.
    pub packets: u64,
    /// The programme's samples.
    pub samples: u64,
}

impl AdtsTrack {
    /// Joins `pieces` (local files, in order) at `dest` for a programme of `duration`
    /// seconds: ADTS frames carry their own headers, so the pieces join byte for byte.
    pub fn join(pieces: &[PathBuf], dest: &Path, duration: f64) -> Result<AdtsTrack> {
        let mut bytes = Vec::new();
        for piece in pieces {
            bytes.extend(std::fs::read(piece).map_err(MediaError::io("reading", piece))?);
        }
        let track = AdtsTrack {
            path: dest.to_path_buf(),
            packets: adts_frames(&bytes)?.len() as u64,
            samples: programme_samples(duration),
        };
        track.last_packet_samples()?;
        std::fs::write(dest, bytes).map_err(MediaError::io("writing", dest))?;
        Ok(track)
    }

    /// Samples of the last packet that belong to the programme: packet `j` holds samples
    /// `[(j-1)·1024, j·1024)`, so the last ends `packets·1024 - samples` past the end.
    fn last_packet_samples(&self) -> Result<u64> {
        let before_last = self.packets.saturating_sub(2) * AAC_FRAME;
        match self.samples.checked_sub(before_last) {
            Some(n) if self.packets >= 2 && (1..=AAC_FRAME).contains(&n) => Ok(n),
            _ => Err(MediaError::Verification(format!(
                "the joined sound has {} AAC packets, not the {} samples of the programme",
                self.packets, self.samples
            ))),
        }
    }

    /// Adds the track as an input. ADTS says nothing of the encoder's priming frame: placed
    /// one frame early, an MP4 muxer trims it with an edit list, as it does for a track
    /// encoded in one run.
    pub fn input(&self, a: &mut FfmpegArgs) {
        a.opt("-itsoffset", format!("-{}", seconds(AAC_FRAME)))
            .opt("-f", "aac")
            .input(&self.path);
    }

    /// Output options for its stream `spec` (e.g. `a:0`): the last packet lasts only to
    /// the programme's end, so the MP4 says exactly how many samples it holds, as a run
    /// that encoded the whole programme says (ADTS gives every packet a whole frame).
    pub fn end_exactly(&self, a: &mut FfmpegArgs, spec: &str) -> Result<()> {
        let last = self.last_packet_samples()?;
        if last < AAC_FRAME {
            a.opt(
                &format!("-bsf:{spec}"),
                format!(
                    "setts=duration=if(eq(N\\,{})\\,DURATION*{last}/{AAC_FRAME}\\,DURATION)",
                    self.packets - 1
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adts_frames_are_walked_and_damage_is_named() {
        let frame = |len: usize| {
            let mut f = vec![0xFF, 0xF1, 0x50, 0x80, 0, 0, 0xFC];
            f[3] |= ((len >> 11) & 0x03) as u8;
            f[4] = ((len >> 3) & 0xFF) as u8;
            f[5] = (((len & 0x07) << 5) | 0x1F) as u8;
            f.resize(len, 0);
            f
        };
        let mut bytes = frame(20);
        bytes.extend(frame(9));
        assert_eq!(adts_frames(&bytes).unwrap(), vec![0..20, 20..29]);
        bytes.push(0);
        let e = adts_frames(&bytes).unwrap_err().to_string();
        assert!(e.contains("byte 29"), "{e}");
    }

    #[test]
    fn a_joined_track_ends_where_the_programme_does() {
        use crate::ffmpeg::args::test_support::{strings, value};
        let track = |packets, samples| AdtsTrack {
            path: PathBuf::from("a.aac"),
            packets,
            samples,
        };
        // 7.99 s: 375 packets of sound and the priming one; the last holds 544 samples.
        let mut a = FfmpegArgs::new();
        track(376, 383_520).end_exactly(&mut a, "a:0").unwrap();
        let args = strings(a);
        assert_eq!(
            value(&args, "-bsf:a:0"),
            Some("setts=duration=if(eq(N\\,375)\\,DURATION*544/1024\\,DURATION)")
        );
        // A whole last packet needs nothing; a count that does not fit is refused.
        let mut a = FfmpegArgs::new();
        track(376, 384_000).end_exactly(&mut a, "a:0").unwrap();
        assert!(!strings(a).contains(&"-bsf:a:0".to_string()));
        assert!(track(370, 384_000).last_packet_samples().is_err());
        assert!(track(380, 384_000).last_packet_samples().is_err());
    }
}
