//! The rungs a ladder may be made of, and the one rule for a ladder asked for by a job
//! (`renditions` in the payload) or set for a deployment (`TRANSCODER_LADDER`).
//!
//! A rung is named by the short side of its picture ("720p" is 1280x720 landscape and
//! 720x1280 portrait) and carries the bitrate its segments are capped at. A job may pick
//! rungs from [`NAMED_RUNGS`] by name or give its own short side and bitrate.

use serde::{Deserialize, Serialize};

/// One rung of the configured ladder: the short side of the picture and its bitrate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rung {
    pub short_side: u32,
    pub bitrate_kbps: u32,
}

/// DESIGN §4: 1080p 5000k, 720p 2500k, 480p 1000k, 360p 500k.
pub const DEFAULT_LADDER: [Rung; 4] = [
    Rung {
        short_side: 1080,
        bitrate_kbps: 5000,
    },
    Rung {
        short_side: 720,
        bitrate_kbps: 2500,
    },
    Rung {
        short_side: 480,
        bitrate_kbps: 1000,
    },
    Rung {
        short_side: 360,
        bitrate_kbps: 500,
    },
];

/// The documented rungs: the contract's four (DESIGN §4), the sizes of Apple's recommended
/// ladder for H.264 (416x234, 768x432, 960x540 at its bitrates), and 1440p/2160p for sources
/// that have them (no rung is ever made larger than its source).
pub const NAMED_RUNGS: [(&str, Rung); 9] = [
    ("2160p", rung(2160, 16000)),
    ("1440p", rung(1440, 9000)),
    ("1080p", rung(1080, 5000)),
    ("720p", rung(720, 2500)),
    ("540p", rung(540, 2000)),
    ("480p", rung(480, 1000)),
    ("432p", rung(432, 730)),
    ("360p", rung(360, 500)),
    ("234p", rung(234, 145)),
];

const fn rung(short_side: u32, bitrate_kbps: u32) -> Rung {
    Rung {
        short_side,
        bitrate_kbps,
    }
}

/// The setting that replaces the deployment's default ladder, as [`ladder_from_text`] reads it.
pub const LADDER_VAR: &str = "TRANSCODER_LADDER";

/// The most rungs one job may ask for: each is one more output of every chunk's encoder.
pub const MAX_RUNGS: usize = 8;
/// Short sides a custom rung may have: even (4:2:0 chroma), from a phone thumbnail to 8K.
pub const SHORT_SIDE_RANGE: std::ops::RangeInclusive<u32> = 96..=4320;
/// Bitrates a custom rung may have, in kb/s.
pub const BITRATE_RANGE: std::ops::RangeInclusive<u32> = 50..=100_000;

/// The rung called `name` in [`NAMED_RUNGS`] ("720p"; "720" and "720P" are taken too).
pub fn named(name: &str) -> Option<Rung> {
    let wanted = name.trim().to_ascii_lowercase();
    let wanted = wanted.strip_suffix('p').unwrap_or(&wanted);
    NAMED_RUNGS
        .iter()
        .find(|(n, _)| n.strip_suffix('p') == Some(wanted))
        .map(|(_, r)| *r)
}

fn names() -> String {
    NAMED_RUNGS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What is wrong with one rung, if anything (`field` names it in the message).
fn check_rung(field: &str, r: &Rung) -> Option<String> {
    if !SHORT_SIDE_RANGE.contains(&r.short_side) || !r.short_side.is_multiple_of(2) {
        Some(format!(
            "{field}.height must be an even number from {} to {}, got {}",
            SHORT_SIDE_RANGE.start(),
            SHORT_SIDE_RANGE.end(),
            r.short_side
        ))
    } else if !BITRATE_RANGE.contains(&r.bitrate_kbps) {
        Some(format!(
            "{field}.bitrateKbps must be from {} to {}, got {}",
            BITRATE_RANGE.start(),
            BITRATE_RANGE.end(),
            r.bitrate_kbps
        ))
    } else {
        None
    }
}

/// Every problem with a ladder as a whole and with each rung: its size, each rung's range,
/// and a short side given twice (two rungs of one size would share a name and a folder).
pub fn check_ladder(field: &str, rungs: &[Rung]) -> Vec<String> {
    let mut problems = Vec::new();
    if rungs.is_empty() || rungs.len() > MAX_RUNGS {
        problems.push(format!(
            "{field} must list from 1 to {MAX_RUNGS} renditions, got {}",
            rungs.len()
        ));
    }
    for (i, r) in rungs.iter().enumerate() {
        let here = format!("{field}[{i}]");
        problems.extend(check_rung(&here, r));
        if let Some(j) = rungs[..i].iter().position(|o| o.short_side == r.short_side) {
            problems.push(format!(
                "{here} repeats height {} of {field}[{j}]",
                r.short_side
            ));
        }
    }
    problems
}

/// One entry of a payload's `renditions`: a name from [`NAMED_RUNGS`], or
/// `{"height": N, "bitrateKbps": B}` where `height` is the picture's short side.
fn rung_from_json(field: &str, value: &serde_json::Value) -> Result<Rung, String> {
    match value {
        serde_json::Value::String(s) => named(s).ok_or_else(|| {
            format!(
                "{field} is {:?}, not one of {}",
                s.chars().take(16).collect::<String>(),
                names()
            )
        }),
        serde_json::Value::Object(o) => {
            let number = |key: &str| -> Result<u32, String> {
                match o.get(key) {
                    None | Some(serde_json::Value::Null) => {
                        Err(format!("{field}.{key} is required"))
                    }
                    Some(v) => v
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| format!("{field}.{key} must be a whole number, got {v}")),
                }
            };
            if let Some(unknown) = o.keys().find(|k| *k != "height" && *k != "bitrateKbps") {
                return Err(format!(
                    "{field} has an unknown field {:?} (a rendition is {{\"height\", \"bitrateKbps\"}})",
                    unknown.chars().take(32).collect::<String>()
                ));
            }
            let (height, bitrate) = (number("height"), number("bitrateKbps"));
            match (height, bitrate) {
                (Ok(short_side), Ok(bitrate_kbps)) => Ok(rung(short_side, bitrate_kbps)),
                (Err(e), Ok(_)) | (Ok(_), Err(e)) => Err(e),
                (Err(a), Err(b)) => Err(format!("{a}; {b}")),
            }
        }
        _ => Err(format!(
            "{field} must be a rendition name ({}) or {{\"height\": N, \"bitrateKbps\": B}}",
            names()
        )),
    }
}

/// A payload's `renditions`, read and checked: the ladder, or every problem, each naming
/// its entry (`renditions[2].bitrateKbps must be …`).
pub fn ladder_from_json(field: &str, value: &serde_json::Value) -> Result<Vec<Rung>, Vec<String>> {
    let serde_json::Value::Array(entries) = value else {
        return Err(vec![format!(
            "{field} must be an array of rendition names or {{\"height\", \"bitrateKbps\"}} objects"
        )]);
    };
    if entries.len() > MAX_RUNGS {
        return Err(vec![format!(
            "{field} must list from 1 to {MAX_RUNGS} renditions, got {}",
            entries.len()
        )]);
    }
    if entries.is_empty() {
        return Err(vec![format!(
            "{field} must list from 1 to {MAX_RUNGS} renditions, got 0"
        )]);
    }
    // Every entry is read and checked, so one answer names every problem.
    let mut problems = Vec::new();
    let mut rungs: Vec<(usize, Rung)> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let here = format!("{field}[{i}]");
        let rung = match rung_from_json(&here, entry) {
            Ok(r) => r,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        problems.extend(check_rung(&here, &rung));
        if let Some((j, _)) = rungs.iter().find(|(_, o)| o.short_side == rung.short_side) {
            problems.push(format!(
                "{here} repeats height {} of {field}[{j}]",
                rung.short_side
            ));
        }
        rungs.push((i, rung));
    }
    if problems.is_empty() {
        Ok(rungs.into_iter().map(|(_, r)| r).collect())
    } else {
        Err(problems)
    }
}

/// A ladder written as text, for a setting: names and `HEIGHT:KBPS` pairs separated by
/// commas (`1080p,720p,540:1800,234p`).
pub fn ladder_from_text(field: &str, text: &str) -> Result<Vec<Rung>, String> {
    let entries: Vec<serde_json::Value> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once(':') {
            Some((h, b)) => match (h.trim().parse::<u64>(), b.trim().parse::<u64>()) {
                (Ok(h), Ok(b)) => serde_json::json!({"height": h, "bitrateKbps": b}),
                _ => serde_json::Value::String(s.to_string()),
            },
            None => serde_json::Value::String(s.to_string()),
        })
        .collect();
    ladder_from_json(field, &serde_json::Value::Array(entries)).map_err(|p| p.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_custom_rungs_are_read() {
        let ladder = ladder_from_json(
            "renditions",
            &json!(["1080p", "720", {"height": 540, "bitrateKbps": 1800}, "234P"]),
        )
        .expect("valid");
        assert_eq!(
            ladder,
            vec![
                rung(1080, 5000),
                rung(720, 2500),
                rung(540, 1800),
                rung(234, 145)
            ]
        );
        assert_eq!(
            ladder_from_text("TRANSCODER_LADDER", "1080p, 720p,540:1800 ,234p").expect("valid"),
            ladder
        );
    }

    #[test]
    fn every_problem_names_its_entry() {
        let err = |v: serde_json::Value| ladder_from_json("renditions", &v).unwrap_err();
        assert_eq!(
            err(json!(["720p", "4k"])),
            ["renditions[1] is \"4k\", not one of 2160p, 1440p, 1080p, 720p, 540p, 480p, 432p, 360p, 234p"]
        );
        assert_eq!(
            err(json!([{"height": 541, "bitrateKbps": 10}])),
            ["renditions[0].height must be an even number from 96 to 4320, got 541",]
        );
        assert_eq!(
            err(json!([{"height": 540, "bitrateKbps": 10}])),
            ["renditions[0].bitrateKbps must be from 50 to 100000, got 10"]
        );
        assert_eq!(
            err(json!([{"height": 540}])),
            ["renditions[0].bitrateKbps is required"]
        );
        assert_eq!(
            err(json!([{"height": "540", "bitrateKbps": -1}])),
            ["renditions[0].height must be a whole number, got \"540\"; renditions[0].bitrateKbps must be a whole number, got -1"]
        );
        assert_eq!(
            err(json!([{"height": 540, "bitrateKbps": 900, "codec": "hevc"}])),
            ["renditions[0] has an unknown field \"codec\" (a rendition is {\"height\", \"bitrateKbps\"})"]
        );
        assert_eq!(
            err(json!(["720p", {"height": 720, "bitrateKbps": 3000}])),
            ["renditions[1] repeats height 720 of renditions[0]"]
        );
        assert_eq!(
            err(json!([])),
            ["renditions must list from 1 to 8 renditions, got 0"]
        );
        assert_eq!(err(json!(vec!["234p"; 9])).len(), 1);
        assert_eq!(
            err(json!("720p")),
            ["renditions must be an array of rendition names or {\"height\", \"bitrateKbps\"} objects"]
        );
        assert_eq!(
            ladder_from_text("TRANSCODER_LADDER", "720p,abc:5").unwrap_err(),
            "TRANSCODER_LADDER[1] is \"abc:5\", not one of 2160p, 1440p, 1080p, 720p, 540p, 480p, 432p, 360p, 234p"
        );
    }

    #[test]
    fn the_contract_ladder_is_named() {
        let contract: Vec<Rung> = ["1080p", "720p", "480p", "360p"]
            .iter()
            .filter_map(|n| named(n))
            .collect();
        assert_eq!(contract, DEFAULT_LADDER.to_vec());
        assert!(check_ladder("x", &contract).is_empty());
    }
}
