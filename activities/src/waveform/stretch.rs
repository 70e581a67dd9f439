//! The waveform in chunks: each chunk summarizes its stretch, and the stretches join.

use super::*;

/// A stretch of a programme's waveform, summarized by the chunk that decoded it: the points
/// of its 100 ms blocks, and the extremes of each picture column it touches (the first and
/// last may be shared with the neighbours). Min and max combine, so the pieces join into
/// exactly what one pass over the whole programme summarizes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WaveformPiece {
    pub points: Vec<Point>,
    /// Index of `columns[0]` among the picture's columns.
    pub first_column: u64,
    pub columns: Vec<Point>,
}

/// Summarizes mono samples starting at programme sample `first_sample` (a multiple of
/// [`SAMPLES_PER_POINT`]) of a programme of `duration` seconds.
pub fn summarize_stretch(samples: &[i16], first_sample: u64, duration: f64) -> WaveformPiece {
    let mut points = PeakSummary::new(SAMPLES_PER_POINT);
    for s in samples {
        points.push(*s);
    }
    let (first_column, columns) = match image_samples_per_column(duration) {
        Some(per_column) => {
            let per_column = u64::from(per_column);
            let first_column = first_sample / per_column;
            let mut columns: Vec<(i16, i16)> = Vec::new();
            for (i, s) in samples.iter().enumerate() {
                let c = ((first_sample + i as u64) / per_column - first_column) as usize;
                if c == columns.len() {
                    columns.push((i16::MAX, i16::MIN));
                }
                let (low, high) = &mut columns[c];
                *low = (*low).min(*s);
                *high = (*high).max(*s);
            }
            let columns = columns
                .into_iter()
                .map(|(low, high)| Point {
                    min: to_8_bits(low),
                    max: to_8_bits(high),
                })
                .collect();
            (first_column, columns)
        }
        None => (0, Vec::new()),
    };
    WaveformPiece {
        points: points.finish(),
        first_column,
        columns,
    }
}

/// Joins pieces (in timeline order) into the JSON's points and the picture's columns.
pub fn join_stretches(pieces: &[WaveformPiece]) -> (Vec<Point>, Vec<Point>) {
    let mut points = Vec::new();
    let mut columns: Vec<Point> = Vec::new();
    let mut next_column = 0u64;
    for piece in pieces {
        points.extend_from_slice(&piece.points);
        for (i, c) in piece.columns.iter().enumerate() {
            let index = piece.first_column + i as u64;
            if index + 1 == next_column {
                if let Some(last) = columns.last_mut() {
                    last.min = last.min.min(c.min);
                    last.max = last.max.max(c.max);
                }
            } else {
                columns.push(*c);
                next_column = index + 1;
            }
        }
    }
    if columns.is_empty() {
        columns = points.clone();
    }
    (points, columns)
}

/// Writes and checks the JSON and the picture of a waveform joined from pieces (the native
/// generator's files, from the same numbers).
pub fn write_joined(pieces: &[WaveformPiece], work: &Path, duration: f64) -> Result<WaveformFiles> {
    let (points, columns) = join_stretches(pieces);
    if points.is_empty() {
        return Err(MediaError::Unreadable(
            "the audio stream decodes to no samples".into(),
        ));
    }
    let json = work.join(JSON_NAME);
    let png = work.join(PNG_NAME);
    write_json(&json, &points)?;
    write_png(&png, &columns)?;
    let length = verify(&json, &png, duration)?;
    Ok(WaveformFiles {
        json,
        png,
        length,
        generator: GENERATOR_NATIVE.to_string(),
    })
}
