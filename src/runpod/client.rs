//! HTTP to RunPod's worker API: job-take and job-stop long polls, result and progress
//! posts, pings. Headers and bodies are the SDK's (reference §3, §6); the retry rules are
//! the reference's improvements (§17): backoff on 429/5xx, a floor delay on immediate
//! empty answers, result posts retried on network errors and 5xx for minutes.

use super::protocol::{parse_stop, parse_take, progress_body, Endpoints, JobResult, Taken};
use super::RunpodError;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Client-side limit of a long poll (§4, §10): the server holds the request open.
pub const LONG_POLL_TIMEOUT: Duration = Duration::from_secs(90);
/// An empty answer that came back faster than this is not a long poll that ran out: wait
/// the rest before asking again instead of hammering the API (pitfall 8).
pub const EMPTY_ANSWER_FLOOR: Duration = Duration::from_secs(1);
/// After a 429 (§4: the SDK sleeps 5 s).
pub const TOO_MANY_REQUESTS_DELAY: Duration = Duration::from_secs(5);
/// Result posts: attempts and the longest wait between two; about six minutes in all.
const RESULT_ATTEMPTS: u32 = 14;
const RESULT_MAX_DELAY: Duration = Duration::from_secs(30);
/// Progress posts are advisory: one attempt, short.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(10);
const RESULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Exponential backoff from 1 s, doubling, capped.
pub fn backoff(failures: u32, cap: Duration) -> Duration {
    let secs = 1u64 << failures.min(10);
    Duration::from_secs(secs).min(cap)
}

/// What one job-take request came to.
#[derive(Debug)]
pub enum TakeAnswer {
    Taken(Taken),
    /// 429: slow down.
    TooMany,
    /// Another status or a network error: back off.
    Failed(String),
}

#[derive(Clone)]
pub struct RunpodClient {
    http: reqwest::Client,
    pub endpoints: Endpoints,
}

impl RunpodClient {
    pub fn new(endpoints: Endpoints) -> Result<Self, RunpodError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("transcoder/", env!("CARGO_PKG_VERSION")))
            // Job ids and results are ours to deliver: a redirect would leak the key.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(RunpodError::Http)?;
        Ok(RunpodClient { http, endpoints })
    }

    /// §3: raw `Authorization` (no `Bearer`) and `Content-Type: application/json`, even on
    /// GETs, as the SDK's session sends them.
    fn api_headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(mut key) = HeaderValue::from_str(self.endpoints.api_key()) {
            key.set_sensitive(true);
            h.insert(AUTHORIZATION, key);
        }
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h
    }

    /// One job-take long poll (§4).
    pub async fn take(&self, job_in_progress: bool) -> TakeAnswer {
        let url = self.endpoints.take_url(job_in_progress);
        let response = self
            .http
            .get(&url)
            .headers(self.api_headers())
            .timeout(LONG_POLL_TIMEOUT)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            // The long poll ran out on our side: just ask again (§4).
            Err(e) if e.is_timeout() => return TakeAnswer::Taken(Taken::Nothing),
            Err(e) => return TakeAnswer::Failed(describe(&e)),
        };
        match response.status() {
            // §4: 204 is "no job"; 400 is "expected when FlashBoot is enabled".
            StatusCode::NO_CONTENT | StatusCode::BAD_REQUEST => TakeAnswer::Taken(Taken::Nothing),
            StatusCode::TOO_MANY_REQUESTS => TakeAnswer::TooMany,
            s if s.is_success() => {
                let content_type = response
                    .headers()
                    .get(CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                match response.bytes().await {
                    Ok(body) => TakeAnswer::Taken(parse_take(content_type.as_deref(), &body)),
                    Err(e) => TakeAnswer::Failed(describe(&e)),
                }
            }
            s => TakeAnswer::Failed(format!("job-take answered {s}")),
        }
    }

    /// One job-stop long poll (§10): the ids to stop, `Ok(empty)` for none, `Err(delay)`
    /// for how long to wait before asking again.
    pub async fn stops(&self) -> Result<Vec<String>, Duration> {
        let Some(url) = self.endpoints.stop_url() else {
            return Err(LONG_POLL_TIMEOUT);
        };
        let started = Instant::now();
        let response = self
            .http
            .get(url)
            .headers(self.api_headers())
            .timeout(LONG_POLL_TIMEOUT)
            .send()
            .await;
        let floor = EMPTY_ANSWER_FLOOR.saturating_sub(started.elapsed());
        match response {
            Err(e) if e.is_timeout() => Ok(Vec::new()),
            Err(e) => {
                tracing::debug!(error = %describe(&e), "job-stop poll failed");
                Err(EMPTY_ANSWER_FLOOR)
            }
            Ok(r) if r.status() == StatusCode::TOO_MANY_REQUESTS => Err(TOO_MANY_REQUESTS_DELAY),
            Ok(r) if r.status() == StatusCode::OK => match r.bytes().await {
                Ok(body) => {
                    let ids = parse_stop(&body);
                    if ids.is_empty() {
                        Err(floor)
                    } else {
                        Ok(ids)
                    }
                }
                Err(_) => Err(EMPTY_ANSWER_FLOOR),
            },
            // 204 and anything else: nothing to stop; never ask faster than the floor.
            Ok(_) => Err(floor),
        }
    }

    /// Builds a result or progress post (§6): JSON text under a form content type, the
    /// non-standard `charset` header and `X-Request-ID`, as the SDK sends them.
    fn post_output(
        &self,
        job_id: &str,
        body: &Value,
        timeout: Duration,
    ) -> reqwest::RequestBuilder {
        let mut headers = HeaderMap::new();
        if let Ok(mut key) = HeaderValue::from_str(self.endpoints.api_key()) {
            key.set_sensitive(true);
            headers.insert(AUTHORIZATION, key);
        }
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        headers.insert("charset", HeaderValue::from_static("utf-8"));
        if let Ok(id) = HeaderValue::from_str(job_id) {
            headers.insert("X-Request-ID", id);
        }
        self.http
            .post(self.endpoints.done_url(job_id))
            .headers(headers)
            .timeout(timeout)
            // serde_json writes raw UTF-8, like `json.dumps(ensure_ascii=False)`.
            .body(body.to_string())
    }

    /// Posts a job's final result. Retried with backoff on network errors, 408, 429 and
    /// 5xx for about six minutes (the SDK gives up after two retries and loses the result,
    /// pitfall 3); another 4xx is final. `Ok` once the platform accepted it.
    pub async fn post_result(
        &self,
        job_id: &str,
        result: &JobResult,
        stop_pod: bool,
    ) -> Result<(), RunpodError> {
        let mut body = result.body();
        if body.to_string().len() > super::protocol::MAX_RESULT_BYTES {
            body = JobResult::error("the result is larger than RunPod accepts").body();
        }
        if stop_pod {
            if let Some(m) = body.as_object_mut() {
                m.insert("stopPod".into(), serde_json::Value::Bool(true));
            }
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.post_output(job_id, &body, RESULT_TIMEOUT).send().await;
            let retryable = match &outcome {
                Ok(r) if r.status().is_success() => {
                    tracing::info!(job_id, attempt, "result delivered to RunPod");
                    return Ok(());
                }
                Ok(r) => {
                    let s = r.status();
                    let why = format!("job-done answered {s}");
                    if !(s.is_server_error()
                        || s == StatusCode::TOO_MANY_REQUESTS
                        || s == StatusCode::REQUEST_TIMEOUT)
                    {
                        return Err(RunpodError::Rejected(why));
                    }
                    why
                }
                Err(e) => describe(e),
            };
            if attempt >= RESULT_ATTEMPTS {
                return Err(RunpodError::GaveUp {
                    attempts: attempt,
                    last: retryable,
                });
            }
            let wait = backoff(attempt - 1, RESULT_MAX_DELAY);
            tracing::warn!(job_id, attempt, error = %retryable, retry_in = ?wait, "result post failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// One progress update (§8); failures are logged and forgotten.
    pub async fn post_progress(&self, job_id: &str, progress: &Value) {
        let body = progress_body(progress);
        match self
            .post_output(job_id, &body, PROGRESS_TIMEOUT)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::debug!(job_id, status = %r.status(), "progress update refused"),
            Err(e) => tracing::debug!(job_id, error = %describe(&e), "progress update failed"),
        }
    }

    /// One heartbeat (§9): only `Authorization`, a timeout of twice the interval, a few
    /// tries on 429/5xx/network errors; the answer is ignored.
    /// The one ping of a pod that failed a fitness check (§9): `status=unhealthy`, the
    /// check's name and a reason of at most 256 characters, with a 2 s timeout.
    pub async fn ping_unhealthy(&self, unfit: &super::fitness::Unfit) {
        let Some(url) = self
            .endpoints
            .unhealthy_ping_url(unfit.check, &unfit.reason)
        else {
            return;
        };
        let mut request = self.http.get(url).timeout(Duration::from_secs(2));
        if let Ok(mut key) = HeaderValue::from_str(self.endpoints.api_key()) {
            key.set_sensitive(true);
            request = request.header(AUTHORIZATION, key);
        }
        let sent = request.send().await;
        if let Err(e) = sent {
            tracing::warn!(error = %describe(&e), "the unhealthy ping failed");
        }
    }

    pub async fn ping(&self, in_flight: &[String]) {
        let Some(url) = self.endpoints.ping_url(in_flight) else {
            return;
        };
        let timeout = self.endpoints.ping_interval * 2;
        for attempt in 0..3u32 {
            let mut request = self.http.get(&url).timeout(timeout);
            if let Ok(mut key) = HeaderValue::from_str(self.endpoints.api_key()) {
                key.set_sensitive(true);
                request = request.header(AUTHORIZATION, key);
            }
            match request.send().await {
                Ok(r) if !(r.status().is_server_error() || r.status() == 429) => return,
                Ok(r) => tracing::debug!(status = %r.status(), "ping refused"),
                Err(e) => tracing::debug!(error = %describe(&e), "ping failed"),
            }
            tokio::time::sleep(backoff(attempt, Duration::from_secs(4))).await;
        }
    }
}

/// An error with its causes ("error sending request: connection refused"): reqwest's own
/// text names only the outermost layer.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
