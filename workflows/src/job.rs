//! The job payload media-api sends (DESIGN §3.1) and its validation.
//!
//! Why one file of about 550 lines: the payload's fields and the rule for each sit side by
//! side, so a field is never added without its check (the tests are in `job/tests.rs`).

use crate::rungs::{check_ladder, ladder_from_json, Rung};
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
    /// The video ladder this job asks for (`renditions`: names from
    /// [`crate::rungs::NAMED_RUNGS`] or `{"height", "bitrateKbps"}`); the deployment's
    /// ladder when left out. Read and range-checked by [`JobInput::from_json`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renditions: Option<Vec<Rung>>,
    /// Subtitle files to publish beside the source's own text tracks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtitles: Option<Vec<SidecarSubtitle>>,
    /// The storyboard's interval and tile size, where the payload sets them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storyboard: Option<StoryboardRequest>,
    /// What [`JobInput::from_json`] could not take from the payload as sent (a value of the
    /// wrong type, one over its size limit), each naming its field. The value itself is left
    /// out, so a 5 MB string never reaches workflow history; validation reports these first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub intake_problems: Vec<String>,
}

/// A subtitle file a job gives beside its input (`subtitles` in the payload).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarSubtitle {
    /// `s3://`, `gs://` or `http(s)://`, like `inputUri` (sealed when it has a query string).
    pub uri: String,
    /// RFC 5646 tag (`en`, `pt-BR`).
    pub language: String,
    /// What players list; the language's name when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default)]
    pub forced: bool,
}

/// How a job wants its storyboard (timeline thumbnails): `storyboard` in the payload, each
/// part optional, the rest from the deployment's settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoryboardRequest {
    /// Seconds between tiles (1 to 60; default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u32>,
    /// Width of a tile in pixels (even, 64 to 640; default 160); the height keeps the
    /// picture's shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tile_width: Option<u32>,
}

pub const STORYBOARD_INTERVAL_RANGE: std::ops::RangeInclusive<u32> = 1..=60;
pub const STORYBOARD_TILE_WIDTH_RANGE: std::ops::RangeInclusive<u32> = 64..=640;

impl StoryboardRequest {
    /// Every problem with it, each naming its field.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(i) = self.interval_seconds {
            if !STORYBOARD_INTERVAL_RANGE.contains(&i) {
                problems.push(format!(
                    "storyboard.intervalSeconds must be from {} to {}, got {i}",
                    STORYBOARD_INTERVAL_RANGE.start(),
                    STORYBOARD_INTERVAL_RANGE.end()
                ));
            }
        }
        if let Some(w) = self.tile_width {
            if !STORYBOARD_TILE_WIDTH_RANGE.contains(&w) || w % 2 != 0 {
                problems.push(format!(
                    "storyboard.tileWidth must be an even number from {} to {}, got {w}",
                    STORYBOARD_TILE_WIDTH_RANGE.start(),
                    STORYBOARD_TILE_WIDTH_RANGE.end()
                ));
            }
        }
        problems
    }
}

fn storyboard_from_json(value: &serde_json::Value) -> Result<StoryboardRequest, Vec<String>> {
    let Some(fields) = value.as_object() else {
        return Err(vec![format!(
            "storyboard must be an object with intervalSeconds and/or tileWidth, got {}",
            json_kind(value)
        )]);
    };
    let mut problems = Vec::new();
    let mut number = |name: &str| -> Option<u32> {
        match fields.get(name) {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => Some(n),
                None => {
                    problems.push(format!("storyboard.{name} must be a whole number, got {v}"));
                    None
                }
            },
        }
    };
    let request = StoryboardRequest {
        interval_seconds: number("intervalSeconds"),
        tile_width: number("tileWidth"),
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !["intervalSeconds", "tileWidth"].contains(&k.as_str()))
    {
        problems.push(format!(
            "storyboard has an unknown field {:?} (intervalSeconds, tileWidth)",
            truncate(unknown, 32)
        ));
    }
    problems.extend(request.problems());
    if problems.is_empty() {
        Ok(request)
    } else {
        Err(problems)
    }
}

/// The most sidecar subtitle files one job may give.
pub const MAX_SIDECARS: usize = 16;
/// The longest `name` a sidecar may have (players show it in a menu).
const MAX_SIDECAR_NAME: usize = 64;

/// A payload's `subtitles`: each entry an object with `uri`, `language`, and optionally
/// `name` and `forced`; every problem names its entry.
fn sidecars_from_json(value: &serde_json::Value) -> Result<Vec<SidecarSubtitle>, Vec<String>> {
    let Some(entries) = value.as_array() else {
        return Err(vec![format!(
            "subtitles must be an array of {{\"uri\", \"language\"}} objects, got {}",
            json_kind(value)
        )]);
    };
    if entries.len() > MAX_SIDECARS {
        return Err(vec![format!(
            "subtitles may list at most {MAX_SIDECARS} files, got {}",
            entries.len()
        )]);
    }
    let mut problems = Vec::new();
    let mut sidecars = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let here = format!("subtitles[{i}]");
        let Some(fields) = entry.as_object() else {
            problems.push(format!(
                "{here} must be an object with \"uri\" and \"language\", got {}",
                json_kind(entry)
            ));
            continue;
        };
        let mut text = |name: &str, required: bool| -> Option<String> {
            match fields.get(name) {
                None | Some(serde_json::Value::Null) if required => {
                    problems.push(format!("{here}.{name} is required"));
                    None
                }
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) if s.len() > MAX_TEXT_FIELD => {
                    problems.push(format!("{here}.{name} is over {MAX_TEXT_FIELD} bytes"));
                    None
                }
                Some(serde_json::Value::String(s)) => Some(s.trim().to_string()),
                Some(other) => {
                    problems.push(format!(
                        "{here}.{name} must be a string, got {}",
                        json_kind(other)
                    ));
                    None
                }
            }
        };
        let (uri, language, name) = (
            text("uri", true),
            text("language", true),
            text("name", false),
        );
        if let Some(unknown) = fields
            .keys()
            .find(|k| !["uri", "language", "name", "forced"].contains(&k.as_str()))
        {
            problems.push(format!(
                "{here} has an unknown field {:?} (uri, language, name, forced)",
                truncate(unknown, 32)
            ));
        }
        let forced = match fields.get("forced") {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(other) => {
                problems.push(format!(
                    "{here}.forced must be true or false, got {}",
                    json_kind(other)
                ));
                false
            }
        };
        if let (Some(uri), Some(language)) = (uri, language) {
            sidecars.push(SidecarSubtitle {
                uri,
                language,
                name,
                forced,
            });
        }
    }
    if problems.is_empty() {
        Ok(sidecars)
    } else {
        Err(problems)
    }
}

/// What is wrong with sidecar `i`, each problem naming its field.
fn sidecar_problems(i: usize, s: &SidecarSubtitle) -> Vec<String> {
    let here = format!("subtitles[{i}]");
    let mut problems = Vec::new();
    if let Err(why) = check_input_uri(&s.uri) {
        problems.push(format!("{here}.uri {why}"));
    }
    if !is_language_tag(&s.language) {
        problems.push(format!(
            "{here}.language must be a language tag such as \"en\" or \"pt-BR\", got {:?}",
            truncate(&s.language, 32)
        ));
    }
    if let Some(name) = &s.name {
        if name.is_empty()
            || name.chars().count() > MAX_SIDECAR_NAME
            || name.chars().any(char::is_control)
        {
            problems.push(format!(
                "{here}.name must be 1 to {MAX_SIDECAR_NAME} characters on one line"
            ));
        }
    }
    problems
}

/// An RFC 5646 tag as far as HLS needs: a 2-3 letter language, then subtags of letters and
/// digits (`en`, `pt-BR`, `zh-Hant`, `es-419`).
pub fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let primary = parts.next().unwrap_or_default();
    (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
        && tag.len() <= 35
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
        match fields.get("renditions") {
            None | Some(serde_json::Value::Null) => {}
            Some(value) => match ladder_from_json("renditions", value) {
                Ok(ladder) => job.renditions = Some(ladder),
                Err(why) => problems.extend(why),
            },
        }
        match fields.get("storyboard") {
            None | Some(serde_json::Value::Null) => {}
            Some(value) => match storyboard_from_json(value) {
                Ok(request) => job.storyboard = Some(request),
                Err(why) => problems.extend(why),
            },
        }
        match fields.get("subtitles") {
            None | Some(serde_json::Value::Null) => {}
            Some(value) => match sidecars_from_json(value) {
                Ok(sidecars) => job.subtitles = Some(sidecars),
                Err(why) => problems.extend(why),
            },
        }
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
    /// The ladder this job asked for; `None` takes the deployment's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renditions: Option<Vec<Rung>>,
    /// Sidecar subtitle files (URIs sealed like `inputUri` when they carry a query string).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subtitles: Vec<SidecarSubtitle>,
    /// The storyboard's interval and tile size as asked; the plan's defaults fill the rest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storyboard: Option<StoryboardRequest>,
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
        if let Some(ladder) = &self.renditions {
            // Read by from_json already; checked again for a job that reached us otherwise.
            problems.extend(check_ladder("renditions", ladder));
            if media_type == Some(MediaType::Audio) {
                problems.push(
                    "renditions applies to video jobs; an audio job has its own AAC ladder"
                        .to_string(),
                );
            }
        }
        if let Some(request) = &self.storyboard {
            problems.extend(request.problems());
        }
        for (i, sidecar) in self.subtitles.iter().flatten().enumerate() {
            problems.extend(sidecar_problems(i, sidecar));
        }
        if media_type == Some(MediaType::Audio)
            && self.subtitles.as_ref().is_some_and(|s| !s.is_empty())
        {
            problems.push("subtitles applies to video jobs".to_string());
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
                renditions: self.renditions.clone(),
                subtitles: self.subtitles.clone().unwrap_or_default(),
                storyboard: self.storyboard,
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
mod tests;
