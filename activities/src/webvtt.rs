//! WebVTT, as far as this project writes and reads it: cues with their times, settings and
//! text. Subtitle renditions and the storyboard's thumbnail track are both WebVTT.

use std::fmt::Write as _;

/// One cue: when it shows, its WebVTT settings (position), and its text.
#[derive(Clone, Debug, PartialEq)]
pub struct Cue {
    pub start: f64,
    pub end: f64,
    pub settings: String,
    pub text: String,
}

impl Cue {
    /// A cue with no settings: shown where the player puts cues.
    pub fn new(start: f64, end: f64, text: impl Into<String>) -> Self {
        Cue {
            start,
            end,
            settings: String::new(),
            text: text.into(),
        }
    }
}

/// `HH:MM:SS.mmm` or `MM:SS.mmm` in seconds.
pub fn parse_time(text: &str) -> Option<f64> {
    let (clock, millis) = text.trim().split_once('.')?;
    let parts: Vec<f64> = clock
        .split(':')
        .map(|p| p.parse::<f64>().ok())
        .collect::<Option<_>>()?;
    let millis: f64 = millis.parse().ok()?;
    let seconds = match parts.as_slice() {
        [h, m, s] => h * 3600.0 + m * 60.0 + s,
        [m, s] => m * 60.0 + s,
        _ => return None,
    };
    Some(seconds + millis / 1000.0)
}

/// Seconds as WebVTT's `HH:MM:SS.mmm`.
pub fn format_time(seconds: f64) -> String {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

/// The cues of a WebVTT file (as ffmpeg writes one): every block with a timing line; the
/// header, NOTE, STYLE and REGION blocks are left out.
pub fn parse_vtt(text: &str) -> Vec<Cue> {
    let text = text.trim_start_matches('\u{feff}').replace("\r\n", "\n");
    let mut cues = Vec::new();
    for block in text.split("\n\n") {
        let mut lines = block.lines().skip_while(|l| l.trim().is_empty());
        let Some(first) = lines.next() else { continue };
        // An identifier line may come before the timing line.
        let timing = if first.contains("-->") {
            first
        } else {
            match lines.next() {
                Some(l) if l.contains("-->") => l,
                _ => continue,
            }
        };
        let Some((start, rest)) = timing.split_once("-->") else {
            continue;
        };
        let rest = rest.trim();
        let (end, settings) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let (Some(start), Some(end)) = (parse_time(start), parse_time(end)) else {
            continue;
        };
        let text: Vec<&str> = lines.collect();
        if end > start && !text.is_empty() {
            cues.push(Cue {
                start,
                end,
                settings: settings.trim().to_string(),
                text: text.join("\n"),
            });
        }
    }
    cues
}

pub fn write_cue(out: &mut String, cue: &Cue) {
    let _ = write!(
        out,
        "{} --> {}",
        format_time(cue.start),
        format_time(cue.end)
    );
    if !cue.settings.is_empty() {
        out.push(' ');
        out.push_str(&cue.settings);
    }
    out.push('\n');
    out.push_str(&cue.text);
    out.push_str("\n\n");
}

/// A whole track as one WebVTT file.
pub fn whole_vtt(cues: &[Cue]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for cue in cues {
        write_cue(&mut out, cue);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webvtt_is_read_with_identifiers_settings_and_lines() {
        let text = "\u{feff}WEBVTT\r\n\r\nNOTE made by hand\r\n\r\n1\r\n00:00:01.000 --> 00:00:02.500 line:90%\r\nHello\r\nthere\r\n\r\n02:03.250 --> 02:04.000\r\n<i>Bye</i>\r\n";
        assert_eq!(
            parse_vtt(text),
            vec![
                Cue {
                    start: 1.0,
                    end: 2.5,
                    settings: "line:90%".into(),
                    text: "Hello\nthere".into()
                },
                Cue::new(123.25, 124.0, "<i>Bye</i>"),
            ]
        );
        assert_eq!(format_time(3723.4567), "01:02:03.457");
        assert_eq!(parse_vtt(&whole_vtt(&parse_vtt(text))), parse_vtt(text));
    }
}
