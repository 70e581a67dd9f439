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
    let sealed = with(Some("sealed:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")).secret_problems();
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
        renditions: None,
        subtitles: None,
        storyboard: None,
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

#[test]
fn a_ladder_and_sidecar_subtitles_are_read_and_checked() {
    let mut payload = serde_json::to_value(valid()).unwrap();
    payload["renditions"] =
        serde_json::json!(["720p", {"height": 540, "bitrateKbps": 1800}, "234p"]);
    payload["subtitles"] = serde_json::json!([
        {"uri": "https://cdn.example/subs/en.srt?sig=abc", "language": "en"},
        {"uri": "s3://bucket/fr.vtt", "language": "fr-CA", "name": "Français (Canada)", "forced": true}
    ]);
    let job = JobInput::from_json(&payload).validate().expect("valid");
    assert_eq!(
        job.renditions.as_deref(),
        Some(
            &[
                Rung {
                    short_side: 720,
                    bitrate_kbps: 2500
                },
                Rung {
                    short_side: 540,
                    bitrate_kbps: 1800
                },
                Rung {
                    short_side: 234,
                    bitrate_kbps: 145
                },
            ][..]
        )
    );
    assert_eq!(job.subtitles.len(), 2);
    assert!(job.subtitles[1].forced);
    assert_eq!(job.subtitles[1].name.as_deref(), Some("Français (Canada)"));

    payload["renditions"] = serde_json::json!(["720p", "999p"]);
    payload["subtitles"] = serde_json::json!([
        {"uri": "file:///etc/passwd", "language": "english"},
        {"language": "en", "name": "a\nb"},
        "en.srt",
        {"uri": "s3://b/k.srt", "language": "en", "offset": 3}
    ]);
    let problems = JobInput::from_json(&payload)
        .validate()
        .expect_err("invalid")
        .problems;
    for expected in [
        "renditions[1] is \"999p\", not one of 2160p, 1440p, 1080p, 720p, 540p, 480p, 432p, 360p, 234p",
        "subtitles[1].uri is required",
        "subtitles[2] must be an object with \"uri\" and \"language\", got a string",
        "subtitles[3] has an unknown field \"offset\" (uri, language, name, forced)",
    ] {
        assert!(
            problems.iter().any(|p| p == expected),
            "{expected:?} not in {problems:?}"
        );
    }

    // Read fine, but wrong: checked by validate.
    payload["renditions"] = serde_json::json!(["720p"]);
    payload["subtitles"] = serde_json::json!([
        {"uri": "file:///etc/passwd", "language": "english"}
    ]);
    let problems = JobInput::from_json(&payload)
        .validate()
        .expect_err("invalid")
        .problems;
    assert_eq!(
        problems,
        [
            "subtitles[0].uri has unsupported scheme \"file\" (use s3://, gs://, http:// or https://)",
            "subtitles[0].language must be a language tag such as \"en\" or \"pt-BR\", got \"english\"",
        ]
    );

    // An audio job has no picture to put them on.
    payload["mediaType"] = serde_json::json!("audio");
    payload["subtitles"] = serde_json::json!([{"uri": "s3://b/k.srt", "language": "en"}]);
    let problems = JobInput::from_json(&payload)
        .validate()
        .expect_err("invalid")
        .problems;
    assert_eq!(
        problems,
        [
            "renditions applies to video jobs; an audio job has its own AAC ladder",
            "subtitles applies to video jobs",
        ]
    );
}

#[test]
fn language_tags() {
    for ok in ["en", "pt-BR", "zh-Hant", "es-419", "yue"] {
        assert!(is_language_tag(ok), "{ok}");
    }
    for bad in ["", "e", "english", "en_US", "en-", "1a", "en-toolongsubtag"] {
        assert!(!is_language_tag(bad), "{bad}");
    }
}
