//! RunPod's queue-based worker protocol: the environment, the URLs built from it, and the
//! request and result bodies. Pure data and string building, no I/O, so every rule of the
//! reference (`runpod-worker-protocol.md` §1–§10) is unit-tested here.

use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::time::Duration;

/// The protocol version we speak, sent in pings as the official SDK does (§9): the platform
/// may use it to decide which features (the job-stop channel, from 1.10.0) a worker has.
pub const PROTOCOL_VERSION: &str = "1.12.0";

/// Default heartbeat period (§9: `RUNPOD_PING_INTERVAL`, 10 000 ms).
const DEFAULT_PING_INTERVAL_MS: u64 = 10_000;
/// Pings never come faster than this: the SDK floor-divides the interval to whole seconds,
/// so below 1000 ms it busy-loops (pitfall 9).
const MIN_PING_INTERVAL_MS: u64 = 1_000;

/// Configuration problems found in the environment.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{name} is not a number of milliseconds: {value:?}")]
    BadNumber { name: &'static str, value: String },
}

/// The worker API as the environment describes it, placeholders already substituted where
/// the SDK substitutes them once (the pod id); the job id goes in per request.
#[derive(Clone)]
pub struct Endpoints {
    /// `RUNPOD_WEBHOOK_GET_JOB` with `$ID` replaced by the pod id.
    job_take: String,
    /// The job-take URL with `/job-take/` → `/job-stop/`; `None` disables the stop channel.
    job_stop: Option<String>,
    /// `RUNPOD_WEBHOOK_POST_OUTPUT` with `$RUNPOD_POD_ID` replaced; `$ID` stays for the job.
    job_done: String,
    /// `RUNPOD_WEBHOOK_PING` with `$RUNPOD_POD_ID` replaced; `None`: no pings (§1).
    ping: Option<String>,
    /// `RUNPOD_AI_API_KEY`, sent raw in `Authorization`. Never logged.
    api_key: String,
    pub pod_id: String,
    pub ping_interval: Duration,
}

// Hand-written so that logging the endpoints never prints the API key.
impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints")
            .field("job_take", &self.job_take)
            .field("job_stop", &self.job_stop)
            .field("job_done", &self.job_done)
            .field("ping", &self.ping)
            .field("api_key", &"<redacted>")
            .field("pod_id", &self.pod_id)
            .field("ping_interval", &self.ping_interval)
            .finish()
    }
}

impl Endpoints {
    /// Reads the variables of §1 through `var` (the process environment in production).
    /// `Ok(None)` when `RUNPOD_WEBHOOK_GET_JOB` is unset: that means local mode (§1).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let nonempty = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let Some(get_job) = nonempty("RUNPOD_WEBHOOK_GET_JOB") else {
            return Ok(None);
        };
        let post_output = nonempty("RUNPOD_WEBHOOK_POST_OUTPUT")
            .ok_or(ConfigError::Missing("RUNPOD_WEBHOOK_POST_OUTPUT"))?;
        let api_key = var("RUNPOD_AI_API_KEY").unwrap_or_default();
        let explicit_pod_id = nonempty("RUNPOD_POD_ID");
        // The SDK falls back to a random id when the platform gives none (§1).
        let pod_id = explicit_pod_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let interval_ms = match nonempty("RUNPOD_PING_INTERVAL") {
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map_err(|_| ConfigError::BadNumber {
                    name: "RUNPOD_PING_INTERVAL",
                    value: v.clone(),
                })?,
            None => DEFAULT_PING_INTERVAL_MS,
        };
        // §1: no key or no pod id from the platform, no pings.
        let ping = match (nonempty("RUNPOD_WEBHOOK_PING"), &explicit_pod_id) {
            (Some(url), Some(_)) if !api_key.is_empty() => {
                Some(url.replace("$RUNPOD_POD_ID", &pod_id))
            }
            _ => None,
        };
        // §2: GET_JOB substitutes `$ID` (not `$RUNPOD_POD_ID`) with the pod id.
        let job_take = get_job.replace("$ID", &pod_id);
        let job_stop = job_take
            .contains("/job-take/")
            .then(|| job_take.replace("/job-take/", "/job-stop/"));
        Ok(Some(Endpoints {
            job_take,
            job_stop,
            job_done: post_output.replace("$RUNPOD_POD_ID", &pod_id),
            ping,
            api_key,
            pod_id,
            ping_interval: Duration::from_millis(interval_ms.max(MIN_PING_INTERVAL_MS)),
        }))
    }

    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// §4: `GET {GET_JOB}&job_in_progress={0|1}`.
    pub fn take_url(&self, job_in_progress: bool) -> String {
        append_query(
            &self.job_take,
            &format!("job_in_progress={}", u8::from(job_in_progress)),
        )
    }

    /// §10: the stop channel's long poll (no extra parameters).
    pub fn stop_url(&self) -> Option<&str> {
        self.job_stop.as_deref()
    }

    /// §6/§8: result and progress posts, `$ID` → the job id (plain replacement, as the SDK
    /// does) and `&isStream=false` (we are not a generator handler).
    pub fn done_url(&self, job_id: &str) -> String {
        append_query(&self.job_done.replace("$ID", job_id), "isStream=false")
    }

    /// §9: `GET {PING}&job_id=<comma-joined, encoded>&runpod_version=…`; `job_id` is left
    /// out when nothing is in flight.
    pub fn ping_url(&self, in_flight: &[String]) -> Option<String> {
        let mut url = self.ping.clone()?;
        if !in_flight.is_empty() {
            let ids: String =
                url::form_urlencoded::byte_serialize(in_flight.join(",").as_bytes()).collect();
            url = append_query(&url, &format!("job_id={ids}"));
        }
        Some(append_query(
            &url,
            &format!("runpod_version={PROTOCOL_VERSION}"),
        ))
    }
}

impl Endpoints {
    /// The ping of a pod that failed fitness check `check` (§9).
    pub fn unhealthy_ping_url(&self, check: &str, reason: &str) -> Option<String> {
        let reason: String = reason.chars().take(256).collect();
        let enc =
            |v: &str| -> String { url::form_urlencoded::byte_serialize(v.as_bytes()).collect() };
        let url = append_query(self.ping.as_ref()?, "status=unhealthy");
        let url = append_query(&url, &format!("check={}", enc(check)));
        let url = append_query(&url, &format!("reason={}", enc(&reason)));
        Some(append_query(
            &url,
            &format!("runpod_version={PROTOCOL_VERSION}"),
        ))
    }
}

/// Appends `param` with `&` as the SDK does (§2), or with `?` when the template has no
/// query yet (the SDK would build a broken URL there).
fn append_query(url: &str, param: &str) -> String {
    if url.contains('?') {
        format!("{url}&{param}")
    } else {
        format!("{url}?{param}")
    }
}

/// One job as job-take delivers it (§5): `id`, `input`, and extras we ignore.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub id: String,
    pub input: Value,
}

/// What a job-take answer held (§4).
#[derive(Debug, PartialEq)]
pub enum Taken {
    /// No job (204, 400, a non-JSON or empty 200).
    Nothing,
    /// One job, or several from a batch answer.
    Jobs(Vec<Job>),
    /// A job object without a usable `id`: nothing can be posted for it.
    Unusable(String),
    /// A job with an id but no `input`: it gets an error result instead of being dropped
    /// silently as the SDK does.
    Invalid { id: String, reason: String },
}

#[derive(Deserialize)]
struct RawJob {
    id: Option<Value>,
    input: Option<Value>,
}

/// Interprets a 200 answer of job-take: its content type and body.
pub fn parse_take(content_type: Option<&str>, body: &[u8]) -> Taken {
    let is_json = content_type
        .map(|c| {
            c.trim()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
        .unwrap_or(false);
    if !is_json || body.iter().all(u8::is_ascii_whitespace) {
        return Taken::Nothing;
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Taken::Unusable(format!("job-take answered JSON that does not parse: {e}"))
        }
    };
    let one = |v: Value| -> Result<Job, Taken> {
        let raw: RawJob = serde_json::from_value(v)
            .map_err(|e| Taken::Unusable(format!("a job is not an object: {e}")))?;
        let id = match raw.id {
            Some(Value::String(s)) if !s.is_empty() => s,
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(Taken::Unusable("a job has no id".into())),
        };
        match raw.input {
            Some(input) if !input.is_null() => Ok(Job { id, input }),
            _ => Err(Taken::Invalid {
                id,
                reason: "the job has no input".into(),
            }),
        }
    };
    match value {
        Value::Array(items) => {
            let mut jobs = Vec::new();
            for item in items {
                match one(item) {
                    Ok(job) => jobs.push(job),
                    Err(other) => return other,
                }
            }
            if jobs.is_empty() {
                Taken::Nothing
            } else {
                Taken::Jobs(jobs)
            }
        }
        v @ Value::Object(_) => match one(v) {
            Ok(job) => Taken::Jobs(vec![job]),
            Err(other) => other,
        },
        _ => Taken::Unusable("job-take answered JSON that is not a job".into()),
    }
}

/// §10: the ids in a job-stop answer (`{"jobsToStop": [...]}`).
pub fn parse_stop(body: &[u8]) -> Vec<String> {
    #[derive(Deserialize)]
    struct Stop {
        #[serde(rename = "jobsToStop", default)]
        jobs_to_stop: Vec<Value>,
    }
    serde_json::from_slice::<Stop>(body)
        .map(|s| {
            s.jobs_to_stop
                .into_iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The final result of a job, in the body shape of §6.
#[derive(Clone, Debug, PartialEq)]
pub enum JobResult {
    /// `{"output": value}`: the value itself, never wrapped twice (pitfall 1).
    Output(Value),
    /// `{"output": {...}, "error": "text"}` (`output` left out when empty): `error` is
    /// always a string (pitfall 2), so the platform marks the job FAILED.
    Error {
        error: String,
        output: Option<Value>,
    },
}

impl JobResult {
    pub fn error(text: impl Into<String>) -> Self {
        JobResult::Error {
            error: text.into(),
            output: None,
        }
    }

    pub fn is_error(&self) -> bool {
        matches!(self, JobResult::Error { .. })
    }

    /// The JSON body of the result post.
    pub fn body(&self) -> Value {
        match self {
            JobResult::Output(v) => json!({ "output": v }),
            JobResult::Error { error, output } => {
                let mut m = Map::new();
                if let Some(o) = output.as_ref().filter(|o| !is_empty_object(o)) {
                    m.insert("output".into(), o.clone());
                }
                m.insert("error".into(), Value::String(error.clone()));
                Value::Object(m)
            }
        }
    }
}

fn is_empty_object(v: &Value) -> bool {
    v.as_object().is_some_and(Map::is_empty)
}

/// §8: a progress update's body.
pub fn progress_body(progress: &Value) -> Value {
    json!({ "status": "IN_PROGRESS", "output": progress })
}

/// The platform refuses large results (§14: `/run` 10 MB; a 19 MB one got a 400 and was
/// lost). Ours are keys and numbers, so anything near this is a bug worth an error result.
pub const MAX_RESULT_BYTES: usize = 10 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn endpoints(vars: &[(&str, &str)]) -> Endpoints {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Endpoints::from_vars(|k| map.get(k).cloned())
            .expect("valid")
            .expect("worker mode")
    }

    const BASE: &[(&str, &str)] = &[
        (
            "RUNPOD_WEBHOOK_GET_JOB",
            "https://api.runpod.ai/v2/ep/job-take/$ID?gpu=NVIDIA+RTX+A5000",
        ),
        (
            "RUNPOD_WEBHOOK_POST_OUTPUT",
            "https://api.runpod.ai/v2/ep/job-done/$RUNPOD_POD_ID/$ID?gpu=NVIDIA+RTX+A5000",
        ),
        (
            "RUNPOD_WEBHOOK_PING",
            "https://api.runpod.ai/v2/ep/ping/$RUNPOD_POD_ID?gpu=NVIDIA+RTX+A5000",
        ),
        ("RUNPOD_AI_API_KEY", "key-123"),
        ("RUNPOD_POD_ID", "pod7"),
    ];

    #[test]
    fn debug_never_shows_the_key() {
        assert!(!format!("{:?}", endpoints(BASE)).contains("key-123"));
    }

    #[test]
    fn no_get_job_means_local_mode() {
        assert!(Endpoints::from_vars(|_| None).unwrap().is_none());
    }

    #[test]
    fn urls_follow_the_sdk_substitutions() {
        let e = endpoints(BASE);
        assert_eq!(
            e.take_url(false),
            "https://api.runpod.ai/v2/ep/job-take/pod7?gpu=NVIDIA+RTX+A5000&job_in_progress=0"
        );
        assert_eq!(
            e.take_url(true),
            "https://api.runpod.ai/v2/ep/job-take/pod7?gpu=NVIDIA+RTX+A5000&job_in_progress=1"
        );
        assert_eq!(
            e.stop_url(),
            Some("https://api.runpod.ai/v2/ep/job-stop/pod7?gpu=NVIDIA+RTX+A5000")
        );
        assert_eq!(
            e.done_url("abc-u1"),
            "https://api.runpod.ai/v2/ep/job-done/pod7/abc-u1?gpu=NVIDIA+RTX+A5000&isStream=false"
        );
        assert_eq!(
            e.ping_url(&["c1".into(), "c2".into()]).unwrap(),
            "https://api.runpod.ai/v2/ep/ping/pod7?gpu=NVIDIA+RTX+A5000&job_id=c1%2Cc2&runpod_version=1.12.0"
        );
        assert_eq!(
            e.ping_url(&[]).unwrap(),
            "https://api.runpod.ai/v2/ep/ping/pod7?gpu=NVIDIA+RTX+A5000&runpod_version=1.12.0"
        );
        assert_eq!(e.ping_interval, Duration::from_secs(10));
    }

    #[test]
    fn get_job_does_not_substitute_runpod_pod_id() {
        let mut vars = BASE.to_vec();
        vars[0] = ("RUNPOD_WEBHOOK_GET_JOB", "http://h/job-take/$RUNPOD_POD_ID");
        // `$ID` inside `$RUNPOD_POD_ID` is not a placeholder match: the SDK replaces the
        // substring `$ID` only, which `$RUNPOD_POD_ID` does not contain.
        let e = endpoints(&vars);
        assert_eq!(
            e.take_url(false),
            "http://h/job-take/$RUNPOD_POD_ID?job_in_progress=0"
        );
    }

    #[test]
    fn templates_without_a_query_get_one() {
        let e = endpoints(&[
            ("RUNPOD_WEBHOOK_GET_JOB", "http://h/v2/e/job-take/$ID"),
            ("RUNPOD_WEBHOOK_POST_OUTPUT", "http://h/v2/e/job-done/$ID"),
            ("RUNPOD_POD_ID", "p"),
        ]);
        assert_eq!(
            e.take_url(true),
            "http://h/v2/e/job-take/p?job_in_progress=1"
        );
        assert_eq!(e.done_url("j"), "http://h/v2/e/job-done/j?isStream=false");
        assert!(
            e.ping_url(&[]).is_none(),
            "no ping URL, key or pod id: no pings"
        );
    }

    #[test]
    fn stop_channel_needs_job_take_in_the_url() {
        let e = endpoints(&[
            ("RUNPOD_WEBHOOK_GET_JOB", "http://h/take/$ID"),
            ("RUNPOD_WEBHOOK_POST_OUTPUT", "http://h/done/$ID"),
        ]);
        assert!(e.stop_url().is_none());
    }

    #[test]
    fn no_pings_without_key_or_pod_id_and_a_floor_on_the_interval() {
        let mut vars = BASE.to_vec();
        vars.push(("RUNPOD_PING_INTERVAL", "200"));
        assert_eq!(endpoints(&vars).ping_interval, Duration::from_secs(1));
        vars.retain(|(k, _)| *k != "RUNPOD_AI_API_KEY");
        assert!(endpoints(&vars).ping_url(&[]).is_none());
        let mut vars = BASE.to_vec();
        vars.retain(|(k, _)| *k != "RUNPOD_POD_ID");
        let e = endpoints(&vars);
        assert!(e.ping_url(&[]).is_none());
        assert!(!e.pod_id.is_empty(), "a random pod id stands in");
    }

    #[test]
    fn take_answers() {
        let json = Some("application/json");
        assert_eq!(parse_take(json, b""), Taken::Nothing);
        assert_eq!(
            parse_take(Some("text/plain"), b"{\"id\":\"a\",\"input\":{}}"),
            Taken::Nothing
        );
        assert_eq!(
            parse_take(json, br#"{"id":"a-u1","input":{"x":1},"webhook":"w"}"#),
            Taken::Jobs(vec![Job {
                id: "a-u1".into(),
                input: json!({"x": 1})
            }])
        );
        assert!(matches!(
            parse_take(json, br#"{"id":"a-u1"}"#),
            Taken::Invalid { id, .. } if id == "a-u1"
        ));
        assert!(matches!(
            parse_take(json, br#"{"input":{}}"#),
            Taken::Unusable(_)
        ));
        assert!(matches!(
            parse_take(json, br#"[{"id":"a","input":1},{"id":"b","input":2}]"#),
            Taken::Jobs(j) if j.len() == 2
        ));
    }

    #[test]
    fn stop_answers() {
        assert_eq!(parse_stop(br#"{"jobsToStop":["a","b"]}"#), vec!["a", "b"]);
        assert!(parse_stop(b"").is_empty());
    }

    #[test]
    fn result_shapes() {
        assert_eq!(
            JobResult::Output(json!({"mediaId": "m"})).body(),
            json!({"output": {"mediaId": "m"}})
        );
        assert_eq!(
            JobResult::Error {
                error: "bad".into(),
                output: Some(json!({"mediaId": "m"}))
            }
            .body(),
            json!({"output": {"mediaId": "m"}, "error": "bad"})
        );
        assert_eq!(JobResult::error("bad").body(), json!({"error": "bad"}));
        assert_eq!(
            JobResult::Error {
                error: "bad".into(),
                output: Some(json!({}))
            }
            .body(),
            json!({"error": "bad"})
        );
        assert_eq!(
            progress_body(&json!({"step": "ladder"})),
            json!({"status": "IN_PROGRESS", "output": {"step": "ladder"}})
        );
    }
}
