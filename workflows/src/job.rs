//! The job payload media-api sends (DESIGN §3.1) and its validation.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Default time an original is kept after its job succeeded.
pub const DEFAULT_RETENTION_SECONDS: u64 = 24 * 3600;
/// The payload as received. Every field is optional here so that a malformed job still
/// deserializes, reaches validation, and gets a `failed` webhook naming what is wrong.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JobInput {
    pub media_id: Option<String>,
    pub creator_id: Option<String>,
    pub media_type: Option<String>,
    pub input_bucket: Option<String>,
    pub input_key: Option<String>,
    pub output_bucket: Option<String>,
    pub output_prefix: Option<String>,
    pub assets_bucket: Option<String>,
    /// Bucket for the mezzanine; media-api keeps originals and mezzanines in the same
    /// archive bucket, so this defaults to `inputBucket`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_bucket: Option<String>,
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    /// How long to keep the original after success before deleting it (default 24 h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_retention_seconds: Option<u64>,
    /// Segments per ladder chunk (default 10, i.e. 60 s): the most a lost worker costs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segments_per_chunk: Option<u32>,
    /// How long to keep retrying the webhook (default 24 h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_retry_hours: Option<u32>,
    /// Where to download the input from (`s3://`, `gs://`, `http(s)://`) before the job
    /// starts; it is then archived at `inputBucket/inputKey` like an uploaded original.
    /// A URI with a query string (a presigned URL) is sealed like the webhook secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_uri: Option<String>,
    /// What [`JobInput::from_json`] could not take from the payload as sent (a value of the
    /// wrong type, one over its size limit), each naming its field. The value itself is left
    /// out, so a 5 MB string never reaches workflow history; validation reports these first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intake_problems: Vec<String>,
}

/// The largest payload read at all (a job file, a RunPod job's `input`), a memory guard.
/// Below it, a field over its own limit is named and left out, so what reaches Temporal
/// stays far below its 2 MB payload limit.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024 * 1024;
/// The longest value a text field may hold when it has no tighter rule of its own (ids and
/// keys have theirs); longer ones are refused before they reach workflow history.
const MAX_TEXT_FIELD: usize = 8192;

/// What a JSON value is, for messages.
fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

impl JobInput {
    /// Reads a payload as sent, whatever it holds: every field of the right type is taken,
    /// every other one becomes an intake problem naming the field, so that a malformed job
    /// still reaches validation and its failed webhook. Unknown fields are ignored.
    pub fn from_json(payload: &serde_json::Value) -> JobInput {
        let mut problems = Vec::new();
        let Some(fields) = payload.as_object() else {
            return JobInput {
                intake_problems: vec![format!(
                    "the payload must be a JSON object of job fields, got {}",
                    json_kind(payload)
                )],
                ..JobInput::default()
            };
        };
        let mut text = |name: &str| -> Option<String> {
            match fields.get(name)? {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) if s.len() > MAX_TEXT_FIELD => {
                    problems.push(format!(
                        "{name} is {} bytes long, over the limit of {MAX_TEXT_FIELD}",
                        s.len()
                    ));
                    None
                }
                serde_json::Value::String(s) => Some(s.clone()),
                other => {
                    problems.push(format!("{name} must be a string, got {}", json_kind(other)));
                    None
                }
            }
        };
        let mut job = JobInput {
            media_id: text("mediaId"),
            creator_id: text("creatorId"),
            media_type: text("mediaType"),
            input_bucket: text("inputBucket"),
            input_key: text("inputKey"),
            output_bucket: text("outputBucket"),
            output_prefix: text("outputPrefix"),
            assets_bucket: text("assetsBucket"),
            archive_bucket: text("archiveBucket"),
            webhook_url: text("webhookUrl"),
            webhook_secret: text("webhookSecret"),
            input_uri: text("inputUri"),
            ..JobInput::default()
        };
        let mut whole = |name: &str, max: u64| -> Option<u64> {
            let value = fields.get(name)?;
            match value.as_u64() {
                _ if value.is_null() => None,
                Some(n) if n <= max => Some(n),
                _ => {
                    problems.push(format!(
                        "{name} must be a whole number from 0 to {max}, got {}",
                        match value {
                            serde_json::Value::Number(n) => n.to_string(),
                            other => json_kind(other).to_string(),
                        }
                    ));
                    None
                }
            }
        };
        job.original_retention_seconds = whole("originalRetentionSeconds", u64::MAX);
        job.segments_per_chunk = whole("segmentsPerChunk", u64::from(u32::MAX)).map(|n| n as u32);
        job.webhook_retry_hours = whole("webhookRetryHours", u64::from(u32::MAX)).map(|n| n as u32);
        job.intake_problems = problems;
        job
    }

    /// [`JobInput::from_json`] of a payload's text; text that is too large or not JSON at
    /// all is an error (there is no webhook to report it to).
    pub fn from_json_text(text: &str) -> Result<JobInput, String> {
        if text.len() > MAX_PAYLOAD_BYTES {
            return Err(format!(
                "the payload is {} bytes, over the limit of {MAX_PAYLOAD_BYTES}",
                text.len()
            ));
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("the payload is not JSON: {e}"))?;
        Ok(JobInput::from_json(&value))
    }
}

// Hand-written so a job logged with `{:?}` never prints the webhook secret.
impl fmt::Debug for JobInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobInput")
            .field("media_id", &self.media_id)
            .field("creator_id", &self.creator_id)
            .field("media_type", &self.media_type)
            .field("input_bucket", &self.input_bucket)
            .field("input_key", &self.input_key)
            .field("output_bucket", &self.output_bucket)
            .field("output_prefix", &self.output_prefix)
            .field("assets_bucket", &self.assets_bucket)
            .field("archive_bucket", &self.archive_bucket)
            .field("webhook_url", &self.webhook_url)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("input_uri", &self.input_uri.as_deref().map(redact_uri))
            .finish()
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MediaType {
    Video,
    Audio,
}

impl MediaType {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaType::Video => "video",
            MediaType::Audio => "audio",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "video" => Some(MediaType::Video),
            "audio" => Some(MediaType::Audio),
            _ => None,
        }
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job that passed validation: every field present and safe to use in a storage key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    pub media_id: String,
    pub creator_id: String,
    pub media_type: MediaType,
    pub input_bucket: String,
    pub input_key: String,
    pub output_bucket: String,
    pub output_prefix: String,
    pub assets_bucket: String,
    pub archive_bucket: String,
    pub webhook_url: String,
    pub webhook_secret: String,
    pub original_retention_seconds: u64,
    pub segments_per_chunk: Option<u32>,
    pub webhook_retry_hours: Option<u32>,
    pub input_uri: Option<String>,
}

/// A URI without its query string (where presigned URLs keep their signature).
pub fn redact_uri(uri: &str) -> String {
    match uri.split_once('?') {
        Some((base, _)) => format!("{base}?<redacted>"),
        None => uri.to_string(),
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("media_id", &self.media_id)
            .field("creator_id", &self.creator_id)
            .field("media_type", &self.media_type)
            .field(
                "input",
                &format_args!("{}/{}", self.input_bucket, self.input_key),
            )
            .field(
                "output",
                &format_args!("{}/{}", self.output_bucket, self.output_prefix),
            )
            .field("assets_bucket", &self.assets_bucket)
            .field("archive_bucket", &self.archive_bucket)
            .field("webhook_url", &self.webhook_url)
            .finish_non_exhaustive()
    }
}

/// Why a payload was rejected: one entry per problem, each naming its field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid job: {}", .problems.join("; "))]
pub struct ValidationError {
    pub problems: Vec<String>,
}

const MAX_ID_LEN: usize = 128;
const MAX_KEY_LEN: usize = 1024;

/// The shortest `webhookSecret` accepted: an HMAC key shorter than this can be guessed.
pub const MIN_WEBHOOK_SECRET_CHARS: usize = 16;
/// How a value sealed by transcoder begins (`transcoder_activities::secrets` seals with it).
/// Payloads carry secrets in plain text; only our own client seals them.
pub const SEALED_PREFIX: &str = "sealed:";

impl JobInput {
    /// Checks every rule of DESIGN §3.1 and reports all violations at once.
    pub fn validate(&self) -> Result<Job, ValidationError> {
        let mut problems = self.intake_problems.clone();
        let intake = &self.intake_problems;
        let mut required = |name: &str, value: &Option<String>| -> String {
            match value.as_deref().map(str::trim) {
                Some(v) if !v.is_empty() => v.to_string(),
                _ => {
                    // A value that was there but unusable is already named for what it was.
                    let prefix = format!("{name} ");
                    if !intake.iter().any(|p| p.starts_with(&prefix)) {
                        problems.push(format!("{name} is required"));
                    }
                    String::new()
                }
            }
        };
        let media_id = required("mediaId", &self.media_id);
        let creator_id = required("creatorId", &self.creator_id);
        let media_type_raw = required("mediaType", &self.media_type);
        let input_bucket = required("inputBucket", &self.input_bucket);
        let input_key = required("inputKey", &self.input_key);
        let output_bucket = required("outputBucket", &self.output_bucket);
        let output_prefix = required("outputPrefix", &self.output_prefix);
        let assets_bucket = required("assetsBucket", &self.assets_bucket);
        let webhook_url = required("webhookUrl", &self.webhook_url);
        let webhook_secret = required("webhookSecret", &self.webhook_secret);
        let archive_bucket = match self.archive_bucket.as_deref().map(str::trim) {
            Some(b) if !b.is_empty() => b.to_string(),
            _ => input_bucket.clone(),
        };

        let media_type = if media_type_raw.is_empty() {
            None
        } else {
            let parsed = MediaType::parse(&media_type_raw);
            if parsed.is_none() {
                problems.push(format!(
                    "mediaType must be \"video\" or \"audio\", got {:?}",
                    truncate(&media_type_raw, 32)
                ));
            }
            parsed
        };

        let mut creator_ok = false;
        for (name, id) in [("mediaId", &media_id), ("creatorId", &creator_id)] {
            if !id.is_empty() {
                match check_id(id) {
                    Err(why) => problems.push(format!("{name} {why}")),
                    Ok(()) if name == "creatorId" => creator_ok = true,
                    Ok(()) => {}
                }
            }
        }
        for (name, bucket) in [
            ("inputBucket", &input_bucket),
            ("outputBucket", &output_bucket),
            ("assetsBucket", &assets_bucket),
            ("archiveBucket", &archive_bucket),
        ] {
            if !bucket.is_empty() {
                if let Err(why) = check_bucket(bucket) {
                    problems.push(format!("{name} {why}"));
                }
            }
        }
        for (name, key) in [("inputKey", &input_key), ("outputPrefix", &output_prefix)] {
            if key.is_empty() {
                continue;
            }
            if let Err(why) = check_key(key) {
                problems.push(format!("{name} {why}"));
            } else if creator_ok && !contains_creator_segment(key, &creator_id) {
                // Only a valid creatorId (short, plain) is quoted back.
                problems.push(format!(
                    "{name} must contain \"{creator_id}/\" (the creatorId)"
                ));
            }
        }
        if let Some(h) = self.webhook_retry_hours {
            if !(1..=720).contains(&h) {
                problems.push(format!(
                    "webhookRetryHours must be between 1 and 720, got {h}"
                ));
            }
        }
        if let Some(n) = self.segments_per_chunk {
            if !(1..=1000).contains(&n) {
                problems.push(format!(
                    "segmentsPerChunk must be between 1 and 1000, got {n}"
                ));
            }
        }
        if let Some(uri) = &self.input_uri {
            if let Err(why) = check_input_uri(uri) {
                problems.push(format!("inputUri {why}"));
            }
        }
        if !webhook_url.is_empty() && !webhook_url_is_usable(&webhook_url) {
            problems.push("webhookUrl must be an absolute http:// or https:// URL".to_string());
        }

        match (problems.is_empty(), media_type) {
            (true, Some(media_type)) => Ok(Job {
                media_id,
                creator_id,
                media_type,
                input_bucket,
                input_key,
                output_bucket,
                output_prefix: output_prefix.trim_end_matches('/').to_string(),
                assets_bucket,
                archive_bucket,
                webhook_url,
                webhook_secret,
                original_retention_seconds: self
                    .original_retention_seconds
                    .unwrap_or(DEFAULT_RETENTION_SECONDS),
                segments_per_chunk: self.segments_per_chunk,
                webhook_retry_hours: self.webhook_retry_hours,
                input_uri: self.input_uri.clone(),
            }),
            _ => Err(ValidationError { problems }),
        }
    }

    /// Problems with `webhookSecret` as the client received it. They are checked before the
    /// client seals the secret for workflow history, because afterwards the sealed text says
    /// nothing about what it holds: an empty secret sealed is a non-empty string. A missing
    /// secret is left to [`JobInput::validate`].
    pub fn secret_problems(&self) -> Vec<String> {
        let Some(secret) = self.webhook_secret.as_deref() else {
            return Vec::new();
        };
        let chars = secret.chars().count();
        if secret.trim().is_empty() {
            vec!["webhookSecret is empty or blank: webhooks signed with it could be forged by anyone".to_string()]
        } else if secret.starts_with(SEALED_PREFIX) {
            vec!["webhookSecret must be the secret itself, not a sealed value (transcoder seals it; a value sealed elsewhere cannot be opened)".to_string()]
        } else if chars < MIN_WEBHOOK_SECRET_CHARS {
            vec![format!(
                "webhookSecret must be at least {MIN_WEBHOOK_SECRET_CHARS} characters, got {chars}"
            )]
        } else {
            Vec::new()
        }
    }

    /// The webhook target of a job, if one can be used even though the job is invalid:
    /// a rejected job still gets a `failed` webhook when this returns `Some`.
    pub fn usable_webhook(&self) -> Option<(&str, &str)> {
        let url = self.webhook_url.as_deref()?.trim();
        let secret = self.webhook_secret.as_deref()?;
        (webhook_url_is_usable(url) && !secret.is_empty()).then_some((url, secret))
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn check_id(id: &str) -> Result<(), String> {
    if id.len() > MAX_ID_LEN {
        return Err(format!("is longer than {MAX_ID_LEN} characters"));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || id.starts_with('.')
    {
        return Err("may only contain letters, digits, '-', '_' and '.' (not leading)".to_string());
    }
    Ok(())
}

fn check_bucket(bucket: &str) -> Result<(), String> {
    let ok_len = (3..=63).contains(&bucket.len());
    let ok_chars = bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_'));
    let ok_ends = bucket
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && bucket
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if ok_len && ok_chars && ok_ends && !bucket.contains("..") {
        Ok(())
    } else {
        Err(
            "is not a valid bucket name (3-63 lowercase letters, digits, '-', '.', '_')"
                .to_string(),
        )
    }
}

/// Rejects keys that could escape their prefix or confuse a store or a shell.
fn check_key(key: &str) -> Result<(), String> {
    if key.len() > MAX_KEY_LEN {
        return Err(format!("is longer than {MAX_KEY_LEN} bytes"));
    }
    if key.starts_with('/') {
        return Err("must not start with '/'".to_string());
    }
    if key.contains('\\') {
        return Err("must not contain backslashes".to_string());
    }
    if key.chars().any(|c| c.is_control()) {
        return Err("must not contain NUL or control characters".to_string());
    }
    if key.contains('%') {
        // Percent-encoding has no business in a storage key and is how traversal
        // (`%2e%2e%2f`) and NULs (`%00`) get smuggled past naive checks.
        return Err("must not contain percent-encoded characters".to_string());
    }
    if key.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err("must not contain '.' or '..' path segments".to_string());
    }
    if key.contains("//") {
        return Err("must not contain empty path segments".to_string());
    }
    Ok(())
}

fn contains_creator_segment(key: &str, creator_id: &str) -> bool {
    let segments: Vec<&str> = key.trim_end_matches('/').split('/').collect();
    // The creator must be a directory: followed by at least one more segment.
    segments.len() > 1 && segments[..segments.len() - 1].contains(&creator_id)
}

fn webhook_url_is_usable(url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !url.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

/// The shape of an input URI; the worker checks the rest (allowlist, size, access).
fn check_input_uri(uri: &str) -> Result<(), String> {
    // Sealed URIs (see `transcoder_activities::secrets`) are opaque here.
    if uri.starts_with(SEALED_PREFIX) {
        return Ok(());
    }
    if uri.len() > 8192 {
        return Err("is longer than 8192 characters".into());
    }
    if uri.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("contains whitespace or control characters".into());
    }
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err("must be s3://bucket/key, gs://bucket/key or an http(s):// URL".into());
    };
    match scheme {
        "s3" | "gs" => match rest.split_once('/') {
            Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok(()),
            _ => Err(format!("must be {scheme}://bucket/key")),
        },
        "http" | "https" if !rest.is_empty() && !rest.starts_with('/') => Ok(()),
        "http" | "https" => Err("has no host".into()),
        other => Err(format!(
            "has unsupported scheme {other:?} (use s3://, gs://, http:// or https://)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_of_the_wrong_shape_name_each_field() {
        let mut payload = serde_json::to_value(valid()).unwrap();
        payload["mediaId"] = serde_json::json!(123);
        payload["creatorId"] = serde_json::json!(["c"]);
        payload["outputPrefix"] = serde_json::json!("x".repeat(5 * 1024 * 1024));
        payload["segmentsPerChunk"] = serde_json::json!(-3);
        payload["webhookRetryHours"] = serde_json::json!("12");
        payload["somethingElse"] = serde_json::json!({"ignored": true});
        let job = JobInput::from_json(&payload);
        assert_eq!(job.media_id, None);
        assert_eq!(job.output_prefix, None, "the 5 MB value is left out");
        assert_eq!(
            job.webhook_url.as_deref(),
            Some("http://127.0.0.1:9000/hook")
        );
        let problems = job.validate().expect_err("invalid").problems;
        for expected in [
            "mediaId must be a string, got a number",
            "creatorId must be a string, got an array",
            "outputPrefix is 5242880 bytes long, over the limit of 8192",
            "segmentsPerChunk must be a whole number from 0 to 4294967295, got -3",
            "webhookRetryHours must be a whole number from 0 to 4294967295, got a string",
        ] {
            assert!(
                problems.iter().any(|p| p == expected),
                "{expected:?} not in {problems:?}"
            );
        }
        assert!(
            !problems.iter().any(|p| p == "mediaId is required"),
            "named twice: {problems:?}"
        );
        // Bounded everywhere: no problem quotes the oversized value.
        assert!(problems.iter().all(|p| p.len() < 200), "{problems:?}");
        assert!(
            job.usable_webhook().is_some(),
            "the failure can still be reported"
        );
        // A valid payload reads back as the derive would.
        assert_eq!(
            JobInput::from_json(&serde_json::to_value(valid()).unwrap()),
            valid()
        );
        assert!(
            JobInput::from_json(&serde_json::json!("x")).intake_problems[0]
                .contains("must be a JSON object")
        );
        assert!(JobInput::from_json_text(&"x".repeat(MAX_PAYLOAD_BYTES + 1)).is_err());
    }

    /// Every field of the contract, by kind: the fuzz test below breaks them.
    const TEXT_FIELDS: [&str; 12] = [
        "mediaId",
        "creatorId",
        "mediaType",
        "inputBucket",
        "inputKey",
        "outputBucket",
        "outputPrefix",
        "assetsBucket",
        "archiveBucket",
        "webhookUrl",
        "webhookSecret",
        "inputUri",
    ];
    const NUMBER_FIELDS: [&str; 3] = [
        "originalRetentionSeconds",
        "segmentsPerChunk",
        "webhookRetryHours",
    ];

    /// xorshift64: a fixed sequence, so a failure reproduces.
    struct Noise(u64);
    impl Noise {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
        fn text(&mut self) -> String {
            let len = match self.below(4) {
                0 => self.below(4),
                1 => self.below(200),
                2 => MAX_TEXT_FIELD as u64 - 2 + self.below(4),
                _ => self.below(40_000),
            } as usize;
            const PIECES: [&str; 12] = [
                "a", "/", "..", "\\", "\0", "\n", "é", "😀", " ", "%2e", "sealed:", "://",
            ];
            let mut s = String::new();
            while s.len() < len {
                s.push_str(PIECES[self.below(PIECES.len() as u64) as usize]);
            }
            s
        }
        fn value(&mut self, depth: u32) -> serde_json::Value {
            use serde_json::json;
            match self.below(if depth > 2 { 7 } else { 9 }) {
                0 => serde_json::Value::Null,
                1 => json!(self.below(2) == 0),
                2 => json!(self.next() as i64),
                3 => json!(self.below(2000)),
                4 => json!((self.next() % 1000) as f64 / 7.0),
                5 | 6 => json!(self.text()),
                7 => serde_json::Value::Array(
                    (0..self.below(4)).map(|_| self.value(depth + 1)).collect(),
                ),
                _ => {
                    let mut map = serde_json::Map::new();
                    for _ in 0..self.below(4) {
                        map.insert(self.text().chars().take(8).collect(), self.value(depth + 1));
                    }
                    serde_json::Value::Object(map)
                }
            }
        }
    }

    /// Thousands of payloads with fields of the wrong type, the wrong size and hostile
    /// text: nothing panics, each broken field is named by a problem, every problem is short
    /// (it never quotes a long value), and what would reach workflow history stays small.
    #[test]
    fn fuzzed_payloads_are_named_by_field_and_stay_small() {
        let mut noise = Noise(0x2545_f491_4f6c_dd1d);
        let fields: Vec<&str> = TEXT_FIELDS.iter().chain(&NUMBER_FIELDS).copied().collect();
        for round in 0..4000 {
            let mut payload = serde_json::to_value(valid()).unwrap();
            let mut broken = Vec::new();
            for _ in 0..1 + noise.below(3) {
                let field = fields[noise.below(fields.len() as u64) as usize];
                payload[field] = noise.value(0);
                broken.push(field);
            }
            let job = JobInput::from_json(&payload);
            let history = serde_json::to_vec(&job).unwrap().len();
            // Every field at its limit, escaped at worst (6 bytes per control character),
            // stays under half of Temporal's 2 MB payload limit.
            assert!(
                history < 1024 * 1024,
                "round {round}: {history} bytes toward history from {broken:?}"
            );
            let problems = match job.validate() {
                Ok(_) => Vec::new(),
                Err(e) => e.problems,
            };
            for p in &problems {
                assert!(
                    p.len() <= 300,
                    "round {round}: a problem of {} bytes: {:?}…",
                    p.len(),
                    p.chars().take(120).collect::<String>()
                );
                assert!(
                    fields.iter().any(|f| p.starts_with(f)),
                    "round {round}: {p:?} names no field"
                );
            }
            for field in &broken {
                let value = &payload[*field];
                let wrong_kind = if TEXT_FIELDS.contains(field) {
                    !(value.is_null() || value.is_string())
                } else {
                    !(value.is_null() || value.is_u64())
                };
                let oversized = value.as_str().is_some_and(|s| s.len() > MAX_TEXT_FIELD);
                if wrong_kind || oversized {
                    assert!(
                        problems.iter().any(|p| p.starts_with(&format!("{field} "))),
                        "round {round}: {field} = {} not named in {problems:?}",
                        json_kind(value)
                    );
                }
            }
        }
    }

    #[test]
    fn webhook_secret_is_checked_as_received() {
        let with = |secret: Option<&str>| JobInput {
            webhook_secret: secret.map(str::to_string),
            ..JobInput::default()
        };
        assert!(
            with(None).secret_problems().is_empty(),
            "missing is validate()'s"
        );
        assert!(with(Some("a-long-enough-secret"))
            .secret_problems()
            .is_empty());
        for bad in ["", "   ", "\t\n"] {
            let problems = with(Some(bad)).secret_problems();
            assert!(
                problems[0].starts_with("webhookSecret is empty or blank"),
                "{bad:?}: {problems:?}"
            );
        }
        let short = with(Some("s3cret")).secret_problems();
        assert_eq!(
            short,
            ["webhookSecret must be at least 16 characters, got 6"]
        );
        let sealed =
            with(Some("sealed:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")).secret_problems();
        assert!(sealed[0].contains("not a sealed value"), "{sealed:?}");
        // Characters, not bytes: 16 two-byte characters are enough, 15 are not.
        assert!(with(Some(&"é".repeat(16))).secret_problems().is_empty());
        assert_eq!(with(Some(&"é".repeat(15))).secret_problems().len(), 1);
    }

    fn valid() -> JobInput {
        JobInput {
            media_id: Some("0b6c5a9e-1f1e-4c8e-9d1b-2f3a4b5c6d7e".into()),
            creator_id: Some("creator-42".into()),
            media_type: Some("video".into()),
            input_bucket: Some("codex-archive".into()),
            input_key: Some("originals/creator-42/m1/original.mp4".into()),
            output_bucket: Some("codex-media-dev".into()),
            output_prefix: Some("creator-42/hls/m1".into()),
            assets_bucket: Some("codex-assets-dev".into()),
            archive_bucket: None,
            webhook_url: Some("http://127.0.0.1:9000/hook".into()),
            webhook_secret: Some("s3cret".into()),
            original_retention_seconds: None,
            segments_per_chunk: None,
            webhook_retry_hours: None,
            input_uri: None,
            intake_problems: Vec::new(),
        }
    }

    fn problems(input: JobInput) -> Vec<String> {
        input.validate().expect_err("should be rejected").problems
    }

    #[test]
    fn valid_job_passes_and_archive_defaults_to_input_bucket() {
        let job = valid().validate().expect("valid");
        assert_eq!(job.media_type, MediaType::Video);
        assert_eq!(job.archive_bucket, "codex-archive");
    }

    #[test]
    fn each_missing_field_is_named() {
        let p = problems(JobInput::default());
        for field in [
            "mediaId",
            "creatorId",
            "mediaType",
            "inputBucket",
            "inputKey",
            "outputBucket",
            "outputPrefix",
            "assetsBucket",
            "webhookUrl",
            "webhookSecret",
        ] {
            assert!(
                p.iter().any(|m| m == &format!("{field} is required")),
                "{field} not named in {p:?}"
            );
        }
    }

    #[test]
    fn blank_field_counts_as_missing() {
        let mut j = valid();
        j.input_key = Some("   ".into());
        assert_eq!(problems(j), vec!["inputKey is required".to_string()]);
    }

    #[test]
    fn unknown_media_type_is_rejected() {
        let mut j = valid();
        j.media_type = Some("image".into());
        let p = problems(j);
        assert!(
            p[0].contains("mediaType") && p[0].contains("image"),
            "{p:?}"
        );
    }

    #[test]
    fn keys_without_creator_directory_are_rejected() {
        let mut j = valid();
        j.input_key = Some("originals/someone-else/m1/original.mp4".into());
        assert!(problems(j)[0].starts_with("inputKey must contain \"creator-42/\""));

        let mut j = valid();
        j.output_prefix = Some("hls/m1".into());
        assert!(problems(j)[0].starts_with("outputPrefix must contain"));

        // A creator id that is only a file name, or only a substring, does not count.
        let mut j = valid();
        j.input_key = Some("originals/creator-42".into());
        assert!(!problems(j).is_empty());
        let mut j = valid();
        j.input_key = Some("originals/xcreator-42/original.mp4".into());
        assert!(!problems(j).is_empty());
    }

    #[test]
    fn traversal_and_odd_keys_are_rejected() {
        let cases = [
            ("originals/creator-42/../../etc/passwd", "'..'"),
            ("originals/creator-42/./original.mp4", "'.'"),
            ("/originals/creator-42/m1/original.mp4", "start with '/'"),
            ("originals\\creator-42\\m1\\original.mp4", "backslashes"),
            ("originals/creator-42/m1/orig\0inal.mp4", "control"),
            ("originals/creator-42/m1/orig\ninal.mp4", "control"),
            (
                "originals/creator-42/%2e%2e/%2e%2e/secret",
                "percent-encoded",
            ),
            ("originals/creator-42/%2E%2E%2Fsecret", "percent-encoded"),
            ("originals//creator-42/m1/original.mp4", "empty path"),
        ];
        for (key, why) in cases {
            let mut j = valid();
            j.input_key = Some(key.into());
            let p = problems(j);
            assert!(
                p.iter()
                    .any(|m| m.starts_with("inputKey") && m.contains(why)),
                "{key:?}: {p:?}"
            );
        }
    }

    #[test]
    fn ids_and_buckets_are_checked() {
        let mut j = valid();
        j.media_id = Some("../x".into());
        assert!(problems(j)[0].starts_with("mediaId"));
        let mut j = valid();
        j.output_bucket = Some("Bad_Bucket!".into());
        assert!(problems(j)[0].starts_with("outputBucket"));
    }

    #[test]
    fn webhook_url_must_be_http() {
        let mut j = valid();
        j.webhook_url = Some("file:///etc/passwd".into());
        let p = problems(j.clone());
        assert!(p[0].starts_with("webhookUrl"));
        assert!(j.usable_webhook().is_none());
    }

    #[test]
    fn rejected_job_with_usable_webhook_can_still_be_notified() {
        let mut j = valid();
        j.media_type = Some("image".into());
        assert!(j.validate().is_err());
        assert_eq!(
            j.usable_webhook(),
            Some(("http://127.0.0.1:9000/hook", "s3cret"))
        );
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let j = valid();
        assert!(!format!("{j:?}").contains("s3cret"));
        assert!(!format!("{:?}", j.validate().unwrap()).contains("s3cret"));
    }

    #[test]
    fn camel_case_payload_parses() {
        let j: JobInput = serde_json::from_str(
            r#"{"mediaId":"m1","creatorId":"c1","mediaType":"audio","inputBucket":"b-in",
            "inputKey":"originals/c1/m1/original.wav","outputBucket":"b-out",
            "outputPrefix":"c1/hls-audio/m1","assetsBucket":"b-assets",
            "webhookUrl":"https://example.com/h","webhookSecret":"k","extra":1}"#,
        )
        .unwrap();
        assert_eq!(j.validate().unwrap().media_type, MediaType::Audio);
    }
}
