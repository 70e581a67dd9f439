//! The webhook body media-api receives (DESIGN §3.2).

use crate::job::MediaType;
use serde::{Deserialize, Serialize};

/// Longest error text a failed webhook carries (DESIGN §3.2: at most 2 KB).
pub const MAX_ERROR_BYTES: usize = 2048;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Completed,
    Failed,
}

impl JobStatus {
    /// The status as the webhook body spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookBody {
    pub id: String,
    pub status: JobStatus,
    pub output: WebhookOutput,
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WebhookOutput {
    Completed(Box<CompletedOutput>),
    Failed(FailedOutput),
}

/// Output of a completed job. Every key is present; keys not produced are `null`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CompletedOutput {
    pub media_id: String,
    pub media_type: String,
    pub hls_master_playlist_key: Option<String>,
    pub hls_preview_key: Option<String>,
    pub thumbnail_key: Option<String>,
    pub waveform_key: Option<String>,
    pub waveform_image_key: Option<String>,
    pub mezzanine_key: Option<String>,
    pub duration_seconds: f64,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub ready_variants: Vec<String>,
    pub loudness: Option<Loudness>,
    /// The storyboard's WebVTT (timeline thumbnails: `sprite-NNN.jpg#xywh=…` cues) in the
    /// assets bucket; left out when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storyboard_key: Option<String>,
}

/// Loudness of the delivered audio, each value x100 (LUFS, dBTP, LU).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Loudness {
    pub integrated: i32,
    pub peak: i32,
    pub range: i32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedOutput {
    pub media_id: Option<String>,
    pub media_type: Option<String>,
}

impl WebhookBody {
    pub fn completed(id: String, output: CompletedOutput) -> Self {
        Self {
            id,
            status: JobStatus::Completed,
            output: WebhookOutput::Completed(Box::new(output)),
            error: None,
        }
    }

    /// A failure body. The error is cleaned for a person to read: `secrets` are redacted and
    /// the text is cut to [`MAX_ERROR_BYTES`] on a character boundary.
    pub fn failed(
        id: String,
        media_id: Option<String>,
        media_type: Option<MediaTypeText>,
        error: &str,
        secrets: &[&str],
    ) -> Self {
        Self {
            id,
            status: JobStatus::Failed,
            output: WebhookOutput::Failed(FailedOutput {
                media_id,
                media_type: media_type.map(|m| m.0),
            }),
            error: Some(clean_error(error, secrets)),
        }
    }
}

/// The `mediaType` echoed in a failure: the validated type, or the raw text media-api sent.
pub struct MediaTypeText(pub String);

impl From<MediaType> for MediaTypeText {
    fn from(m: MediaType) -> Self {
        MediaTypeText(m.as_str().to_string())
    }
}

/// Redacts secrets and bounds the length of an error meant for a webhook or a log.
pub fn clean_error(error: &str, secrets: &[&str]) -> String {
    let mut text = error.trim().to_string();
    for secret in secrets.iter().filter(|s| s.len() >= 3) {
        text = text.replace(secret, "[redacted]");
    }
    if text.is_empty() {
        text = "job failed for an unknown reason".to_string();
    }
    if text.len() > MAX_ERROR_BYTES {
        let ellipsis = "…";
        let mut cut = MAX_ERROR_BYTES - ellipsis.len();
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str(ellipsis);
    }
    text
}

/// What happened to a webhook.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookReceipt {
    /// True when the receiver answered 2xx.
    pub delivered: bool,
    /// The receiver's last HTTP status, if it answered at all.
    pub status_code: Option<u16>,
    /// Why it was not sent at all: the worker's policy refused the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_body_has_every_key_with_nulls() {
        let body = WebhookBody::completed(
            "transcode-m1".into(),
            CompletedOutput {
                media_id: "m1".into(),
                media_type: "video".into(),
                hls_master_playlist_key: Some("c/hls/m1/master.m3u8".into()),
                duration_seconds: 10.0,
                ..Default::default()
            },
        );
        let v: serde_json::Value = serde_json::to_value(&body).unwrap();
        assert_eq!(v["status"], "completed");
        assert_eq!(v["error"], serde_json::Value::Null);
        let out = v["output"].as_object().unwrap();
        for key in [
            "mediaId",
            "mediaType",
            "hlsMasterPlaylistKey",
            "hlsPreviewKey",
            "thumbnailKey",
            "waveformKey",
            "waveformImageKey",
            "mezzanineKey",
            "durationSeconds",
            "width",
            "height",
            "readyVariants",
            "loudness",
        ] {
            assert!(out.contains_key(key), "{key} missing");
        }
        assert!(out["waveformKey"].is_null());
        let back: WebhookBody = serde_json::from_value(v).unwrap();
        assert_eq!(back, body);
    }

    #[test]
    fn failed_body_is_small_and_secret_free() {
        let long = format!("ffmpeg said {} with key hunter2", "é".repeat(3000));
        let body = WebhookBody::failed(
            "transcode-m1".into(),
            Some("m1".into()),
            Some(MediaType::Video.into()),
            &long,
            &["hunter2"],
        );
        let err = body.error.as_deref().unwrap();
        assert!(err.len() <= MAX_ERROR_BYTES);
        assert!(!err.contains("hunter2"));
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(v["status"], "failed");
        assert_eq!(
            v["output"],
            serde_json::json!({"mediaId": "m1", "mediaType": "video"})
        );
        assert!(clean_error("x hunter2", &["hunter2"]).contains("[redacted]"));
    }
}
