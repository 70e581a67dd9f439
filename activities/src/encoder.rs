//! Encoder settings a worker applies to every job.

/// x264 presets ffmpeg accepts.
const X264_PRESETS: [&str; 10] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncoderSettings {
    /// libx264 preset for the ladder and the mezzanine.
    pub x264_preset: String,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        Self {
            x264_preset: "veryfast".to_string(),
        }
    }
}

impl EncoderSettings {
    /// Reads `TRANSCODER_X264_PRESET`; an unknown preset is an error rather than a surprise
    /// in the middle of a job.
    pub fn from_env() -> Result<Self, String> {
        let mut s = Self::default();
        if let Ok(preset) = std::env::var("TRANSCODER_X264_PRESET") {
            let preset = preset.trim().to_ascii_lowercase();
            if !X264_PRESETS.contains(&preset.as_str()) {
                return Err(format!(
                    "TRANSCODER_X264_PRESET={preset:?} is not an x264 preset (one of {})",
                    X264_PRESETS.join(", ")
                ));
            }
            s.x264_preset = preset;
        }
        Ok(s)
    }

    /// The name recorded per rendition in results and logs.
    pub fn video_encoder_name(&self) -> &'static str {
        "libx264"
    }
}
