//! A real Prometheus server for the metrics tests: its own config, data folder and free
//! loopback port inside a temp folder, killed when dropped (and when the test process dies).
//!
//! Needs the Debian package `prometheus` (`/usr/bin/prometheus`; a row of
//! `scripts/system-deps`). Nothing here uses the package's system service, its
//! `/etc/prometheus` config or `/usr/share/prometheus` assets: the binary is run directly.
//! Timing (Prometheus 2.42, Debian 12, measured on a 2-core machine): `/-/ready` answers
//! about 50 ms after start, but the first scrape only happens about 5-6 s after start whatever
//! the scrape interval: the discovery manager hands even static targets to the scraper on a
//! fixed 5 s tick (no flag changes that in 2.42). Give `wait_for_target_up` at least 15 s.
//!
//! HTTP to Prometheus is plain HTTP/1.0 over `std::net::TcpStream` (loopback only, one short
//! GET per call), so no HTTP client crate or feature is needed. JSON is read with serde_json.
//! Dev-dependencies: serde_json, tempfile, libc (all already in the repo), tokio for the
//! `_async` variants.
//!
//! Every call blocks; from an async test use the `_async` waits (they sleep with tokio).

#![allow(dead_code)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The Prometheus binary; `PROMETHEUS_BIN` overrides it.
pub fn prometheus_bin() -> PathBuf {
    std::env::var_os("PROMETHEUS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus"))
}

/// One element of an instant vector (or the single value of a scalar result).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// The sample whose label `name` equals `value`.
pub fn sample_with<'a>(samples: &'a [Sample], name: &str, value: &str) -> Option<&'a Sample> {
    samples.iter().find(|s| s.label(name) == Some(value))
}

pub struct PrometheusServer {
    child: Child,
    port: u16,
    // Dropped after the child is killed (field order), so the data folder goes last.
    dir: TempDir,
}

impl PrometheusServer {
    /// Starts Prometheus scraping `targets` (`host:port`, path `/metrics`, job `transcoder`)
    /// every `scrape_interval`, and waits until it answers `/-/ready`.
    pub fn start(targets: &[String], scrape_interval: Duration) -> PrometheusServer {
        let dir = tempfile::Builder::new()
            .prefix("transcoder-prometheus-")
            .tempdir()
            .expect("temp dir for Prometheus");
        let interval = format!("{}ms", scrape_interval.as_millis().max(1));
        let targets_yaml = targets
            .iter()
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let config = format!(
            "global:\n  scrape_interval: {interval}\n  scrape_timeout: {interval}\n  \
             evaluation_interval: {interval}\n\
             scrape_configs:\n  - job_name: transcoder\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: [{targets_yaml}]\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");

        // A free port can be taken by someone else between our probe and Prometheus's bind:
        // try a few times.
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let port = super::free_port();
            let log_path = dir.path().join("prometheus.log");
            let log = std::fs::File::create(&log_path).expect("create prometheus.log");
            let mut cmd = Command::new(prometheus_bin());
            cmd.arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                // Console templates are only read when /consoles is served; point them into
                // the temp folder so nothing under /usr/share or /etc is ever needed.
                .arg(format!(
                    "--web.console.templates={}",
                    dir.path().join("consoles").display()
                ))
                .arg(format!(
                    "--web.console.libraries={}",
                    dir.path().join("console_libraries").display()
                ))
                .arg("--log.level=info")
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup log"))
                .stderr(log);
            // Killed with us even if the test process aborts before Drop runs.
            transcoder_activities::process::die_with_parent(&mut cmd);
            let mut child = cmd.spawn().unwrap_or_else(|e| {
                panic!(
                    "could not run {} ({e}); install the Debian package `prometheus`",
                    prometheus_bin().display()
                )
            });
            match wait_ready(&mut child, port, Duration::from_secs(30)) {
                Ok(()) => return PrometheusServer { child, port, dir },
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_log = read_log_tail(&log_path, 40);
                    if !last_log.contains("address already in use") {
                        panic!(
                            "Prometheus did not become ready: {why}\n--- log tail ---\n{last_log}"
                        );
                    }
                }
            }
        }
        panic!("Prometheus could not bind a free port in 3 tries\n--- log tail ---\n{last_log}");
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The last `lines` lines of Prometheus's own log.
    pub fn log_tail(&self, lines: usize) -> String {
        read_log_tail(&self.dir.path().join("prometheus.log"), lines)
    }

    /// Runs an instant query now. Panics on a PromQL or HTTP error (a bad query is a bug in
    /// the test or the dashboard, never something to wait out).
    pub fn query(&self, promql: &str) -> Vec<Sample> {
        self.try_query(promql)
            .unwrap_or_else(|e| panic!("query {promql:?} failed: {e}"))
    }

    /// `query` that returns the error instead of panicking.
    pub fn try_query(&self, promql: &str) -> Result<Vec<Sample>, String> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let (status, body) = http_get(self.port, &path)?;
        let json: Value = serde_json::from_slice(&body).map_err(|e| {
            format!(
                "HTTP {status}, body is not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        })?;
        if json["status"] != "success" {
            return Err(format!(
                "HTTP {status}: {} {}",
                json["errorType"].as_str().unwrap_or("?"),
                json["error"].as_str().unwrap_or("?")
            ));
        }
        let data = &json["data"];
        match data["resultType"].as_str() {
            Some("vector") => Ok(data["result"]
                .as_array()
                .map(|a| a.iter().map(sample).collect())
                .unwrap_or_default()),
            Some("scalar") => Ok(vec![Sample {
                labels: BTreeMap::new(),
                value: parse_value(&data["result"][1]),
            }]),
            other => Err(format!(
                "expected an instant vector, got resultType {other:?}"
            )),
        }
    }

    /// Polls `query` until `pred` holds or `timeout` passes; returns the last result.
    pub fn wait_for_query(
        &self,
        promql: &str,
        timeout: Duration,
        pred: impl Fn(&[Sample]) -> bool,
    ) -> Vec<Sample> {
        let deadline = Instant::now() + timeout;
        loop {
            let samples = self.query(promql);
            if pred(&samples) || Instant::now() >= deadline {
                return samples;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `wait_for_query` for async tests.
    pub async fn wait_for_query_async(
        &self,
        promql: &str,
        timeout: Duration,
        pred: impl Fn(&[Sample]) -> bool,
    ) -> Vec<Sample> {
        let deadline = Instant::now() + timeout;
        loop {
            let samples = self.query(promql);
            if pred(&samples) || Instant::now() >= deadline {
                return samples;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The scrape targets as Prometheus sees them: (scrapeUrl, health, lastError).
    pub fn targets(&self) -> Vec<(String, String, String)> {
        let (_, body) = http_get(self.port, "/api/v1/targets?state=active")
            .unwrap_or_else(|e| panic!("GET /api/v1/targets: {e}"));
        let json: Value = serde_json::from_slice(&body).expect("targets JSON");
        json["data"]["activeTargets"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|t| {
                        let s = |k: &str| t[k].as_str().unwrap_or_default().to_string();
                        (s("scrapeUrl"), s("health"), s("lastError"))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn all_up(&self) -> bool {
        let targets = self.targets();
        !targets.is_empty() && targets.iter().all(|(_, health, _)| health == "up")
    }

    /// Waits until every configured target has been scraped successfully at least once.
    /// Panics after `timeout` with each target's health and last error.
    pub fn wait_for_target_up(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.all_up() {
            if Instant::now() >= deadline {
                self.panic_targets_down(timeout);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `wait_for_target_up` for async tests.
    pub async fn wait_for_target_up_async(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.all_up() {
            if Instant::now() >= deadline {
                self.panic_targets_down(timeout);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn panic_targets_down(&self, timeout: Duration) -> ! {
        let targets = self.targets();
        let note = if targets.is_empty() {
            " (no active targets yet: Prometheus hands static targets to the scraper about 5 s \
             after start, so allow at least 10 s)"
        } else {
            ""
        };
        panic!(
            "Prometheus targets not up within {timeout:?}{note}: {targets:#?}\n--- log tail ---\n{}",
            self.log_tail(20)
        )
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_ready(child: &mut Child, port: u16, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("prometheus exited with {status}"));
        }
        if let Ok((200, _)) = http_get(port, "/-/ready") {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("no 200 from /-/ready within {timeout:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_log_tail(path: &std::path::Path, lines: usize) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn sample(v: &Value) -> Sample {
    let labels = v["metric"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    Sample {
        labels,
        value: parse_value(&v["value"][1]),
    }
}

/// Prometheus sends values as strings: "3", "0.25", "NaN", "+Inf", "-Inf".
fn parse_value(v: &Value) -> f64 {
    match v.as_str().unwrap_or("NaN") {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        s => s.parse().unwrap_or(f64::NAN),
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One `GET` over HTTP/1.0 to 127.0.0.1:port (the server closes the connection and sends
/// no chunked encoding); returns (status, body).
fn http_get(port: u16, path: &str) -> Result<(u16, Vec<u8>), String> {
    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read: {e}"))?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no HTTP header in {:?}", String::from_utf8_lossy(&raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    Ok((status, raw[split + 4..].to_vec()))
}
