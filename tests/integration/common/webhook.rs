//! The webhook receiver: a real HTTP server on loopback that verifies signatures.

use super::*;

// ---------------------------------------------------------------------------------------
// The webhook receiver.
// ---------------------------------------------------------------------------------------

type HmacSha256 = Hmac<Sha256>;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    pub signature: Option<String>,
    pub timestamp: Option<String>,
    pub content_type: Option<String>,
    /// The signature verified against the secret (answered 200; otherwise 401).
    pub valid: bool,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "webhook body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A real HTTP server on 127.0.0.1:0 that plays media-api's webhook endpoint: it checks
/// `X-Runpod-Signature` (hex HMAC-SHA256 of the raw body, or of `"<ts>.<body>"` when
/// `X-Runpod-Timestamp` is sent) and answers 401 when it does not verify.
pub struct WebhookReceiver {
    server: Arc<tiny_http::Server>,
    received: Arc<Mutex<Vec<Received>>>,
    thread: Option<JoinHandle<()>>,
    port: u16,
    pub secret: String,
}

impl WebhookReceiver {
    pub fn start(secret: &str) -> WebhookReceiver {
        Self::start_failing_first(secret, 0, 500)
    }

    /// A receiver that answers `status` to its first `failures` requests (as a receiver in
    /// the middle of a deploy would), then verifies and accepts as usual.
    pub fn start_failing_first(label: &str, failures: usize, status: u16) -> WebhookReceiver {
        // Long enough for the 16-character minimum, and still unique to the test.
        let secret = &format!("{label}-test-signing-key");
        let server =
            Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("bind webhook receiver"));
        let port = server.server_addr().to_ip().expect("ip listener").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let server = Arc::clone(&server);
            let received = Arc::clone(&received);
            let secret = secret.to_string();
            std::thread::spawn(move || {
                while let Ok(mut request) = server.recv() {
                    let mut body = Vec::new();
                    let _ = request.as_reader().read_to_end(&mut body);
                    let headers: Vec<(String, String)> = request
                        .headers()
                        .iter()
                        .map(|h| {
                            (
                                h.field.as_str().as_str().to_ascii_lowercase(),
                                h.value.as_str().to_string(),
                            )
                        })
                        .collect();
                    let header = |name: &str| {
                        let name = name.to_ascii_lowercase();
                        headers
                            .iter()
                            .find(|(k, _)| *k == name)
                            .map(|(_, v)| v.clone())
                    };
                    let signature = header("X-Runpod-Signature");
                    let timestamp = header("X-Runpod-Timestamp");
                    let content_type = header("Content-Type");
                    let valid = request.method() == &tiny_http::Method::Post
                        && verify(&secret, &body, signature.as_deref(), timestamp.as_deref());
                    received.lock().unwrap().push(Received {
                        method: request.method().to_string(),
                        path: request.url().to_string(),
                        body,
                        signature,
                        timestamp,
                        content_type,
                        valid,
                    });
                    let seen = received.lock().unwrap().len();
                    let response = if seen <= failures {
                        tiny_http::Response::from_string("try again later").with_status_code(status)
                    } else if valid {
                        tiny_http::Response::from_string("ok").with_status_code(200)
                    } else {
                        tiny_http::Response::from_string("bad signature").with_status_code(401)
                    };
                    let _ = request.respond(response);
                }
            })
        };
        WebhookReceiver {
            server,
            received,
            thread: Some(thread),
            port,
            secret: secret.to_string(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/webhooks/transcode", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (or `limit` passed) and returns them all.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> Vec<Received> {
        let start = Instant::now();
        loop {
            let got = self.received();
            if got.len() >= n || start.elapsed() > limit {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Asserts exactly one request arrived, that it was a signed JSON POST that verified, and
    /// returns its body. Waits a little after the first one so a duplicate would be seen.
    pub async fn expect_one_valid(&self) -> Value {
        let got = self.wait_for(1, Duration::from_secs(60)).await;
        assert!(!got.is_empty(), "the webhook receiver got no request");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let got = self.received();
        assert_eq!(
            got.len(),
            1,
            "expected exactly one webhook request, got {}: {:#?}",
            got.len(),
            got.iter()
                .map(|r| (r.valid, String::from_utf8_lossy(&r.body).into_owned()))
                .collect::<Vec<_>>()
        );
        let r = &got[0];
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/webhooks/transcode");
        assert!(
            r.signature.is_some(),
            "webhook has no X-Runpod-Signature header"
        );
        assert!(
            r.valid,
            "webhook signature {:?} (timestamp {:?}) does not verify for body {}",
            r.signature,
            r.timestamp,
            String::from_utf8_lossy(&r.body)
        );
        if let Some(ct) = &r.content_type {
            assert!(
                ct.starts_with("application/json"),
                "webhook Content-Type is {ct:?}"
            );
        }
        r.json()
    }
}

impl Drop for WebhookReceiver {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `hex(HMAC-SHA256(secret, body))`, or over `"<ts>.<body>"` with a fresh timestamp.
pub fn verify(secret: &str, body: &[u8], signature: Option<&str>, timestamp: Option<&str>) -> bool {
    let Some(signature) = signature else {
        return false;
    };
    let Ok(sig) = hex::decode(signature.trim()) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
    if let Some(ts) = timestamp {
        let ts = ts.trim();
        let Ok(seconds) = ts.parse::<u64>() else {
            return false;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        if now.abs_diff(seconds) > 300 {
            return false;
        }
        mac.update(ts.as_bytes());
        mac.update(b".");
    }
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Text that betrays a stack dump or a panic rather than a message for a person.
pub fn looks_like_stack_dump(text: &str) -> bool {
    let lower = text.to_lowercase();
    [
        "panicked at",
        "stack backtrace",
        "rust_backtrace",
        "\n   0: ",
        "at src/",
        ".rs:",
        "goroutine ",
    ]
    .iter()
    .any(|needle| lower.contains(needle))
}
