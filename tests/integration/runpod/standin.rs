//! A stand-in for RunPod's worker API on loopback, following
//! `runpod-worker-protocol.md` to the letter: job-take and job-stop long polls, job-done for
//! results and progress, the ping. Every request is checked (path, query, method, raw
//! `Authorization`, content types, `X-Request-ID`, body shapes); whatever deviates is
//! recorded as a violation, which the tests assert is empty.
//!
//! Like the platform, it re-delivers a job when told its worker is gone (`requeue`), sends
//! job-stops (`stop`), and can answer result posts with 503 (`refuse_results`).

use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The GPU query parameter the platform puts in every template (as seen in production).
pub const GPU: &str = "gpu=NVIDIA+RTX+A4000";
/// How long the stand-in holds a long poll open before answering 204.
const HOLD: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct Posted {
    /// Order of arrival among all job-done posts.
    pub seq: usize,
    pub pod: String,
    pub job: String,
    pub body: Value,
    /// The status code it was answered with.
    pub status: u16,
}

#[derive(Clone, Debug)]
pub struct Ping {
    pub pod: String,
    pub jobs: Vec<String>,
    pub at: Instant,
    /// `unhealthy` for a pod that failed a fitness check, with the check and the reason.
    pub status: Option<String>,
    pub check: Option<String>,
    pub reason: Option<String>,
}

#[derive(Default)]
pub struct State {
    queue: VecDeque<Value>,
    /// Job id → the pod it was last delivered to.
    pub delivered: Vec<(String, String)>,
    /// Final results (accepted and refused) in arrival order.
    pub results: Vec<Posted>,
    pub progress: Vec<Posted>,
    pub pings: Vec<Ping>,
    /// `job_in_progress` of every job-take, per pod.
    pub takes: Vec<(String, String)>,
    stops: HashMap<String, Vec<String>>,
    refuse_results: u32,
    posts: usize,
    pub violations: Vec<String>,
}

pub struct StandIn {
    server: Arc<tiny_http::Server>,
    state: Arc<Mutex<State>>,
    thread: Option<JoinHandle<()>>,
    port: u16,
    pub api_key: String,
}

impl StandIn {
    pub fn start(api_key: &str) -> StandIn {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind stand-in"));
        let port = server.server_addr().to_ip().expect("ip").port();
        let state = Arc::new(Mutex::new(State::default()));
        let thread = {
            let server = Arc::clone(&server);
            let state = Arc::clone(&state);
            let key = api_key.to_string();
            std::thread::spawn(move || {
                while let Ok(request) = server.recv() {
                    // Long polls hold: every request gets its own thread.
                    let state = Arc::clone(&state);
                    let key = key.clone();
                    std::thread::spawn(move || handle(request, &state, &key));
                }
            })
        };
        StandIn {
            server,
            state,
            thread: Some(thread),
            port,
            api_key: api_key.to_string(),
        }
    }

    /// The environment RunPod gives a worker, for pod `pod_id`.
    pub fn env(&self, pod_id: &str) -> Vec<(&'static str, String)> {
        let base = format!("http://127.0.0.1:{}/v2/ep", self.port);
        vec![
            (
                "RUNPOD_WEBHOOK_GET_JOB",
                format!("{base}/job-take/$ID?{GPU}"),
            ),
            (
                "RUNPOD_WEBHOOK_POST_OUTPUT",
                format!("{base}/job-done/$RUNPOD_POD_ID/$ID?{GPU}"),
            ),
            (
                "RUNPOD_WEBHOOK_PING",
                format!("{base}/ping/$RUNPOD_POD_ID?{GPU}"),
            ),
            ("RUNPOD_AI_API_KEY", self.api_key.clone()),
            ("RUNPOD_POD_ID", pod_id.to_string()),
            ("RUNPOD_PING_INTERVAL", "1000".to_string()),
            ("RUNPOD_ENDPOINT_ID", "ep".to_string()),
            // The fitness floors, low enough for any test machine (the fitness test raises
            // one on purpose).
            ("RUNPOD_MIN_MEMORY_GB", "0".to_string()),
            ("RUNPOD_MIN_DISK_PERCENT", "1".to_string()),
        ]
    }

    pub fn enqueue(&self, id: &str, input: Value) {
        self.lock()
            .queue
            .push_back(json!({"id": id, "input": input, "webhook": null}));
    }

    /// Delivers the job again, as the platform does when its worker is gone.
    pub fn requeue(&self, id: &str, input: Value) {
        self.lock()
            .queue
            .push_front(json!({"id": id, "input": input}));
    }

    /// Sends a job-stop for `job` to the pod that holds it.
    pub fn stop(&self, job: &str) {
        let mut s = self.lock();
        let pod = s
            .delivered
            .iter()
            .rev()
            .find(|(j, _)| j == job)
            .map(|(_, p)| p.clone())
            .expect("stop a job that was delivered");
        s.stops.entry(pod).or_default().push(job.to_string());
    }

    /// Answers the next `n` result posts with 503.
    pub fn refuse_results(&self, n: u32) {
        self.lock().refuse_results = n;
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Polls `check` on the state every 100 ms until it returns `Some` or `limit` passes.
    pub async fn wait_for<T>(
        &self,
        limit: Duration,
        mut check: impl FnMut(&State) -> Option<T>,
    ) -> Option<T> {
        let start = Instant::now();
        loop {
            if let Some(v) = check(&self.lock()) {
                return Some(v);
            }
            if start.elapsed() > limit {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The pod a job was delivered to last.
    pub fn holder(&self, job: &str) -> Option<String> {
        self.lock()
            .delivered
            .iter()
            .rev()
            .find(|(j, _)| j == job)
            .map(|(_, p)| p.clone())
    }

    pub fn accepted_results(&self, job: &str) -> Vec<Posted> {
        self.lock()
            .results
            .iter()
            .filter(|r| r.job == job && r.status == 200)
            .cloned()
            .collect()
    }

    pub fn assert_no_violations(&self) {
        let v = self.lock().violations.clone();
        assert!(
            v.is_empty(),
            "the worker broke the protocol:\n{}",
            v.join("\n")
        );
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn header(request: &tiny_http::Request, name: &str) -> Option<String> {
    request
        .headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str().to_string())
}

fn respond(request: tiny_http::Request, status: u16, body: Option<Value>) {
    let response = match body {
        Some(b) => tiny_http::Response::from_string(b.to_string())
            .with_status_code(status)
            .with_header(
                tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap(),
            ),
        None => tiny_http::Response::from_string("").with_status_code(status),
    };
    let _ = request.respond(response);
}

/// `(path segments after /v2/ep/, query pairs)`.
fn split_url(url: &str) -> (Vec<String>, Vec<(String, String)>) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let segments = path
        .trim_start_matches("/v2/ep/")
        .split('/')
        .map(str::to_string)
        .collect();
    let pairs = url::form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (segments, pairs)
}

fn handle(mut request: tiny_http::Request, state: &Mutex<State>, key: &str) {
    let lock = || state.lock().unwrap_or_else(|p| p.into_inner());
    let url = request.url().to_string();
    let method = request.method().to_string();
    let mut body = Vec::new();
    let _ = request.as_reader().read_to_end(&mut body);
    let (segments, query) = split_url(&url);
    let q = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut violations = Vec::new();
    if !url.starts_with("/v2/ep/") {
        violations.push(format!("{method} {url}: not under the endpoint's path"));
    }
    // §3: the key raw, no `Bearer`.
    if header(&request, "Authorization").as_deref() != Some(key) {
        violations.push(format!(
            "{method} {url}: Authorization is {:?}, not the raw key",
            header(&request, "Authorization").map(|a| a.replace(key, "<key>"))
        ));
    }
    // Every template's own query parameter survives.
    if q("gpu").as_deref() != Some("NVIDIA RTX A4000") {
        violations.push(format!(
            "{method} {url}: the template's gpu parameter is lost"
        ));
    }
    let kind = segments.first().cloned().unwrap_or_default();
    match (method.as_str(), kind.as_str(), segments.len()) {
        ("GET", "job-take", 2) => {
            let pod = segments[1].clone();
            if header(&request, "Content-Type").as_deref() != Some("application/json") {
                violations.push("job-take without Content-Type: application/json".to_string());
            }
            let in_progress = q("job_in_progress").unwrap_or_default();
            if in_progress != "0" && in_progress != "1" {
                violations.push(format!("job-take with job_in_progress={in_progress:?}"));
            }
            {
                let mut s = lock();
                s.violations.extend(violations);
                s.takes.push((pod.clone(), in_progress));
            }
            let until = Instant::now() + HOLD;
            loop {
                let job = {
                    let mut s = lock();
                    let job = s.queue.pop_front();
                    if let Some(j) = &job {
                        let id = j["id"].as_str().unwrap_or_default().to_string();
                        s.delivered.push((id, pod.clone()));
                    }
                    job
                };
                if let Some(job) = job {
                    return respond(request, 200, Some(job));
                }
                if Instant::now() > until {
                    return respond(request, 204, None);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        ("GET", "job-stop", 2) => {
            let pod = segments[1].clone();
            if q("job_in_progress").is_some() {
                violations.push("job-stop carries job_in_progress".into());
            }
            lock().violations.extend(violations);
            let until = Instant::now() + HOLD;
            loop {
                let stops = lock().stops.remove(&pod).unwrap_or_default();
                if !stops.is_empty() {
                    return respond(request, 200, Some(json!({ "jobsToStop": stops })));
                }
                if Instant::now() > until {
                    return respond(request, 204, None);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        ("POST", "job-done", 3) => {
            let (pod, job) = (segments[1].clone(), segments[2].clone());
            if q("isStream").as_deref() != Some("false") {
                violations.push(format!("job-done for {job} without isStream=false"));
            }
            if header(&request, "Content-Type").as_deref()
                != Some("application/x-www-form-urlencoded")
            {
                violations.push(format!(
                    "job-done for {job} with Content-Type {:?}",
                    header(&request, "Content-Type")
                ));
            }
            if header(&request, "X-Request-ID").as_deref() != Some(job.as_str()) {
                violations.push(format!("job-done for {job} without X-Request-ID: {job}"));
            }
            let value: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    violations.push(format!("job-done for {job}: body is not JSON ({e})"));
                    Value::Null
                }
            };
            let mut s = lock();
            s.posts += 1;
            let seq = s.posts;
            if value["status"] == "IN_PROGRESS" {
                if s.results.iter().any(|r| r.job == job && r.status == 200) {
                    violations.push(format!("a progress update for {job} after its result"));
                }
                s.violations.extend(violations);
                s.progress.push(Posted {
                    seq,
                    pod,
                    job,
                    body: value,
                    status: 200,
                });
                drop(s);
                return respond(request, 200, None);
            }
            if value.get("output").is_none() && value.get("error").is_none() {
                violations.push(format!("result for {job} has neither output nor error"));
            }
            if let Some(e) = value.get("error") {
                if !e.is_string() {
                    violations.push(format!("result for {job}: error is not a string: {e}"));
                }
            }
            if value.get("output").and_then(|o| o.get("output")).is_some() {
                violations.push(format!("result for {job}: output wrapped twice"));
            }
            let status = if s.refuse_results > 0 {
                s.refuse_results -= 1;
                503
            } else {
                200
            };
            s.violations.extend(violations);
            s.results.push(Posted {
                seq,
                pod,
                job,
                body: value,
                status,
            });
            drop(s);
            respond(request, status, None)
        }
        ("GET", "ping", 2) => {
            if q("runpod_version").is_none() {
                violations.push("ping without runpod_version".into());
            }
            let jobs = q("job_id")
                .map(|j| j.split(',').map(str::to_string).collect())
                .unwrap_or_default();
            let mut s = lock();
            s.violations.extend(violations);
            s.pings.push(Ping {
                pod: segments[1].clone(),
                jobs,
                at: Instant::now(),
                status: q("status"),
                check: q("check"),
                reason: q("reason"),
            });
            drop(s);
            respond(request, 200, None)
        }
        _ => {
            violations.push(format!("unexpected request {method} {url}"));
            lock().violations.extend(violations);
            respond(request, 404, None)
        }
    }
}
