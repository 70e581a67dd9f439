//! Workflow histories read with the `temporal` CLI, processes found and signalled, and
//! polling: what the durability tests look at.

use super::*;

// ---------------------------------------------------------------------------------------
// Helpers for the durability tests (tests/integration/durability.rs): workflow history read with the
// real `temporal` CLI, payloads decoded for searching, processes found through /proc.
// ---------------------------------------------------------------------------------------

impl Background {
    /// What it has written on stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }
}

/// The `temporal` CLI the dev server runs from (`TEMPORAL_CLI`, the project `.venv`, PATH).
pub fn temporal_cli() -> PathBuf {
    DevServer::find_cli().unwrap_or_else(|e| panic!("no temporal CLI: {e}"))
}

/// Runs `temporal ARGS --address ADDRESS --output json` and parses its stdout.
pub async fn temporal_json(address: &str, args: &[&str]) -> Value {
    let mut cmd = Command::new(temporal_cli());
    for var in FOREIGN_ENV {
        cmd.env_remove(var);
    }
    cmd.args(args)
        .args(["--address", address, "--output", "json"])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("temporal {args:?} took over 60 s"))
        .expect("run the temporal CLI");
    assert!(
        out.status.success(),
        "temporal {args:?} --address {address} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    if text.trim().is_empty() {
        return Value::Array(Vec::new());
    }
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("temporal {args:?} printed no JSON ({e}):\n{text}"))
}

/// The event history of the latest run of a workflow (`{"events": [...]}`).
pub async fn workflow_history(address: &str, workflow_id: &str) -> Value {
    temporal_json(address, &["workflow", "show", "--workflow-id", workflow_id]).await
}

/// The event history of one run of a workflow.
pub async fn workflow_run_history(address: &str, workflow_id: &str, run_id: &str) -> Value {
    temporal_json(
        address,
        &[
            "workflow",
            "show",
            "--workflow-id",
            workflow_id,
            "--run-id",
            run_id,
        ],
    )
    .await
}

/// Workflow executions matching a visibility query (every run, newest first); an empty
/// query lists all of them.
pub async fn list_workflows(address: &str, query: &str) -> Vec<Value> {
    let mut args = vec!["workflow", "list"];
    if !query.is_empty() {
        args.extend(["--query", query]);
    }
    match temporal_json(address, &args).await {
        Value::Array(list) => list,
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// `(workflowId, runId, status)` of a listed execution; status like `COMPLETED`, `FAILED`.
pub fn execution_summary(listed: &Value) -> (String, String, String) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let status = text(&listed["status"]);
    let status = status
        .strip_prefix("WORKFLOW_EXECUTION_STATUS_")
        .unwrap_or(&status)
        .to_ascii_uppercase();
    (
        text(&listed["execution"]["workflowId"]),
        text(&listed["execution"]["runId"]),
        status,
    )
}

/// The events of a history as printed by `temporal workflow show --output json`.
pub fn history_events(history: &Value) -> Vec<Value> {
    history["events"].as_array().cloned().unwrap_or_default()
}

/// An event's type, normalized: `EVENT_TYPE_ACTIVITY_TASK_STARTED` and
/// `ActivityTaskStarted` both become `activitytaskstarted`.
pub fn event_kind(event: &Value) -> String {
    let t = event["eventType"].as_str().unwrap_or_default();
    let t = t.strip_prefix("EVENT_TYPE_").unwrap_or(t);
    t.chars()
        .filter(|c| *c != '_')
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The `...EventAttributes` object of an event.
pub fn event_attributes(event: &Value) -> Value {
    event
        .as_object()
        .and_then(|o| {
            o.iter()
                .find(|(k, _)| k.ends_with("EventAttributes"))
                .map(|(_, v)| v.clone())
        })
        .unwrap_or(Value::Null)
}

/// A number the CLI may print as a JSON number or as a string (int64 in proto JSON).
pub fn json_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// One activity execution read from a history.
#[derive(Clone, Debug)]
pub struct ActivityRecord {
    pub scheduled_event_id: u64,
    pub activity_type: String,
    /// The attempt of its (last) started event, when it started.
    pub started_attempt: Option<u64>,
    /// `completed`, `failed`, `timedout`, `canceled`, or `open`.
    pub outcome: String,
}

/// The mezzanine was made once: one whole-file run, at its first attempt; or, made in pieces,
/// one piece per chunk and one join, with at most `in_flight` pieces and ladder chunks
/// together run again (those a lost worker had in flight). Returns how many were redone.
pub fn assert_mezzanine_made_once(
    activities: &[ActivityRecord],
    chunks: usize,
    in_flight: usize,
) -> usize {
    let of = |kind: &str| -> Vec<&ActivityRecord> {
        activities
            .iter()
            .filter(|a| a.activity_type == kind)
            .collect()
    };
    let redone = |records: &[&ActivityRecord]| {
        records
            .iter()
            .filter(|a| a.started_attempt.unwrap_or(1) > 1)
            .count()
    };
    let whole = of("mezzanine");
    let pieces = of("mezzanine_piece");
    let ladder = of("ladder_chunk");
    assert_eq!(
        ladder.len(),
        chunks,
        "one ladder chunk per chunk: {ladder:?}"
    );
    if pieces.is_empty() {
        assert!(
            whole.len() == 1 && whole[0].started_attempt == Some(1),
            "the mezzanine was made again: {whole:?}"
        );
        let n = redone(&ladder);
        assert!(
            n <= in_flight,
            "more than the chunks in flight ran again: {ladder:?}"
        );
        n
    } else {
        assert!(
            whole.is_empty(),
            "both a whole mezzanine and pieces: {whole:?}"
        );
        assert_eq!(pieces.len(), chunks, "one piece per chunk: {pieces:?}");
        assert_eq!(of("join_mezzanine").len(), 1, "one join");
        let n = redone(&pieces) + redone(&ladder);
        assert!(
            n <= in_flight,
            "more than the chunks in flight ran again: pieces {pieces:?}, ladder {ladder:?}"
        );
        n
    }
}

/// Every activity scheduled in a history, with its last attempt and how it closed.
pub fn history_activities(history: &Value) -> Vec<ActivityRecord> {
    let mut records: Vec<ActivityRecord> = Vec::new();
    for e in history_events(history) {
        let kind = event_kind(&e);
        let attrs = event_attributes(&e);
        let id = json_u64(&e["eventId"]).unwrap_or(0);
        if kind == "activitytaskscheduled" {
            records.push(ActivityRecord {
                scheduled_event_id: id,
                activity_type: attrs["activityType"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                started_attempt: None,
                outcome: "open".into(),
            });
            continue;
        }
        let Some(scheduled) = json_u64(&attrs["scheduledEventId"]) else {
            continue;
        };
        let Some(r) = records
            .iter_mut()
            .find(|r| r.scheduled_event_id == scheduled)
        else {
            continue;
        };
        match kind.as_str() {
            "activitytaskstarted" => {
                r.started_attempt = Some(json_u64(&attrs["attempt"]).unwrap_or(1))
            }
            "activitytaskcompleted" => r.outcome = "completed".into(),
            "activitytaskfailed" => r.outcome = "failed".into(),
            "activitytasktimedout" => r.outcome = "timedout".into(),
            "activitytaskcanceled" => r.outcome = "canceled".into(),
            _ => {}
        }
    }
    records
}

/// The decoded JSON value of the first payload in `payloads` (`{"payloads": [{data}]}`).
pub fn first_payload_json(payloads: &Value) -> Option<Value> {
    let data = payloads["payloads"][0]["data"].as_str()?;
    let bytes = base64_decode(data)?;
    serde_json::from_slice(&bytes).ok()
}

/// The result of a history's `WorkflowExecutionCompleted` event, decoded; `None` while the
/// workflow has not completed.
pub fn workflow_result(history: &Value) -> Option<Value> {
    history_events(history)
        .iter()
        .find(|e| event_kind(e) == "workflowexecutioncompleted")
        .and_then(|e| first_payload_json(&event_attributes(e)["result"]))
}

/// Decodes standard or URL-safe base64 (padding optional); `None` if `s` is not base64.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        })
    }
    let body = s.trim_end_matches('=');
    if body.len() % 4 == 1 || s.len() - body.len() > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in body.as_bytes() {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// Everything readable in a JSON document: its text, plus the base64-decoded form of every
/// string that is base64 (Temporal's JSON prints payload bytes that way), recursively, so a
/// plaintext search of the result sees what the payloads really hold.
pub fn searchable_text(v: &Value) -> String {
    fn collect(v: &Value, out: &mut String, depth: usize) {
        match v {
            Value::String(s) if depth < 4 && s.len() >= 4 => {
                if let Some(bytes) = base64_decode(s) {
                    let decoded = String::from_utf8_lossy(&bytes).into_owned();
                    out.push('\n');
                    out.push_str(&decoded);
                    if let Ok(inner) = serde_json::from_slice::<Value>(&bytes) {
                        collect(&inner, out, depth + 1);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| collect(x, out, depth)),
            Value::Object(o) => o.values().for_each(|x| collect(x, out, depth)),
            _ => {}
        }
    }
    let mut out = v.to_string();
    collect(v, &mut out, 0);
    out
}

/// Processes whose command line contains every one of `needles` (each in some argument):
/// `(pid, argv)`. Never this test process itself.
pub fn find_processes(needles: &[&str]) -> Vec<(u32, Vec<String>)> {
    let me = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let argv: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if argv.is_empty() {
            continue;
        }
        if needles.iter().all(|n| argv.iter().any(|a| a.contains(n))) {
            found.push((pid, argv));
        }
    }
    found
}

/// ffmpeg processes (argv[0] named `ffmpeg`) whose arguments contain every one of `needles`.
pub fn find_ffmpeg(needles: &[&str]) -> Vec<(u32, Vec<String>)> {
    find_processes(needles)
        .into_iter()
        .filter(|(_, argv)| {
            Path::new(&argv[0])
                .file_name()
                .is_some_and(|n| n == "ffmpeg")
        })
        .collect()
}

/// Sends `signal` to `pid`; `false` if it no longer exists.
#[allow(unsafe_code)] // kill(2)
pub fn send_signal(pid: u32, signal: libc::c_int) -> bool {
    // SAFETY: kill(2) with a pid this test found and chose to signal.
    unsafe { libc::kill(pid as libc::pid_t, signal) == 0 }
}

/// Polls `check` every 200 ms until it returns `Some` or `limit` passes.
pub async fn poll_until<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts `transcoder server --state-dir DIR` in the background and returns it with the
/// gRPC address it printed.
pub async fn spawn_state_server(h: &Harness, state_dir: &Path) -> (Background, String) {
    let mut server = h.spawn(&["server", "--state-dir", state_dir.to_str().expect("utf-8")]);
    let found = poll_until(Duration::from_secs(90), || {
        server.stderr().lines().find_map(|l| {
            l.split_once("Temporal dev server on ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .map(str::to_string)
        })
    })
    .await;
    match found {
        Some(address) => (server, address),
        None => {
            let status = server.try_status();
            panic!(
                "`transcoder server` printed no address (exit status {status:?})\n{}",
                server.dump()
            )
        }
    }
}

/// The attempt of every `activity` activity (`ladder_chunk`, `mezzanine_piece`,
/// `task_downsample`) in a workflow's history (`temporal workflow show --output json`), in
/// the order they started.
pub fn activity_attempts(history: &Value, activity: &str) -> Vec<u64> {
    let events = history["events"].as_array().cloned().unwrap_or_default();
    // Scheduled event id -> activity type, then the attempt of each started event.
    let mut types = std::collections::HashMap::new();
    let mut attempts = Vec::new();
    for e in &events {
        let id = e["eventId"]
            .as_str()
            .map(str::to_string)
            .or_else(|| e["eventId"].as_i64().map(|i| i.to_string()));
        if let Some(attrs) = e.get("activityTaskScheduledEventAttributes") {
            types.insert(
                id.unwrap_or_default(),
                attrs["activityType"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        if let Some(attrs) = e.get("activityTaskStartedEventAttributes") {
            let scheduled = attrs["scheduledEventId"]
                .as_str()
                .map(str::to_string)
                .or_else(|| attrs["scheduledEventId"].as_i64().map(|i| i.to_string()))
                .unwrap_or_default();
            if types.get(&scheduled).map(String::as_str) == Some(activity) {
                attempts.push(attrs["attempt"].as_u64().unwrap_or(1));
            }
        }
    }
    attempts
}
