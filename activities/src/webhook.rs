//! Signed webhook delivery (DESIGN §3.2).

use crate::error::{MediaError, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;
use transcoder_workflows::activities::WebhookRequest;
use transcoder_workflows::webhook::WebhookReceipt;

pub const SIGNATURE_HEADER: &str = "X-Runpod-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Runpod-Timestamp";

/// Where webhooks may go and how they are signed, from the worker's environment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookPolicy {
    /// `WEBHOOK_ALLOWED_HOSTS`: host names (`api.example.com`, or `*.example.com` for any
    /// subdomain). `None`: any host (the embedded default); a payload's URL is an SSRF vector,
    /// so production sets it.
    pub allowed_hosts: Option<Vec<String>>,
    /// `WEBHOOK_SIGNATURE_TIMESTAMPS=1`: also send `X-Runpod-Timestamp` and sign
    /// `"<timestamp>.<body>"` (fresh on every attempt) for replay protection.
    pub timestamps: bool,
}

impl WebhookPolicy {
    pub fn from_env() -> Self {
        let allowed_hosts = std::env::var("WEBHOOK_ALLOWED_HOSTS")
            .ok()
            .map(|v| crate::allowlist::parse_rules(&v));
        let timestamps = matches!(
            std::env::var("WEBHOOK_SIGNATURE_TIMESTAMPS")
                .as_deref()
                .map(str::trim),
            Ok("1") | Ok("true") | Ok("yes")
        );
        WebhookPolicy {
            allowed_hosts,
            timestamps,
        }
    }

    /// Whether `url`'s host may receive webhooks.
    pub fn allows(&self, url: &str) -> bool {
        let Some(allowed) = &self.allowed_hosts else {
            return true;
        };
        crate::allowlist::allows(allowed, url)
    }
}

/// An HTTP client for webhooks: no redirects, since a redirect could lead past the allowlist.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// `hex(HMAC-SHA256(secret, body))`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// How an HTTP answer is treated.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// The receiver refused this body for good (4xx other than 408/429): not retried.
    Rejected,
    /// Worth another try later (408, 429, 5xx).
    Retry,
}

pub fn classify(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 => Outcome::Retry,
        // Redirects are not followed (they could lead past the allowlist).
        300..=499 => Outcome::Rejected,
        _ => Outcome::Retry,
    }
}

/// Sends the webhook once. `Ok` for delivered or rejected (both final); `Err` when a later
/// attempt may succeed, so the activity's retry policy backs off and tries again with the
/// same body and signature.
pub async fn deliver(
    client: &reqwest::Client,
    request: &WebhookRequest,
    policy: &WebhookPolicy,
) -> Result<WebhookReceipt> {
    if !policy.allows(&request.url) {
        tracing::warn!(url = %request.url, "webhook host is not in WEBHOOK_ALLOWED_HOSTS; not sending");
        return Ok(WebhookReceipt {
            delivered: false,
            status_code: None,
            refused: Some("its host is not in the worker's WEBHOOK_ALLOWED_HOSTS".to_string()),
        });
    }
    let body = serde_json::to_vec(&request.body)
        .map_err(|e| MediaError::Webhook(format!("cannot encode body: {e}")))?;
    let mut post = client
        .post(&request.url)
        .timeout(Duration::from_secs(30))
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    if policy.timestamps {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut signed = format!("{now}.").into_bytes();
        signed.extend_from_slice(&body);
        post = post
            .header(TIMESTAMP_HEADER, now.to_string())
            .header(SIGNATURE_HEADER, sign(&request.secret, &signed));
    } else {
        post = post.header(SIGNATURE_HEADER, sign(&request.secret, &body));
    }
    let response = post
        .body(body)
        .send()
        .await
        // reqwest errors name the URL, never headers: no secret can leak from here.
        .map_err(|e| MediaError::Webhook(format!("could not reach the receiver: {e}")))?;
    let status = response.status().as_u16();
    match classify(status) {
        Outcome::Delivered => Ok(WebhookReceipt {
            delivered: true,
            status_code: Some(status),
            refused: None,
        }),
        Outcome::Rejected => {
            tracing::warn!(status, url = %request.url, "webhook rejected by the receiver; not retrying");
            Ok(WebhookReceipt {
                delivered: false,
                status_code: Some(status),
                refused: None,
            })
        }
        Outcome::Retry => Err(MediaError::Webhook(format!(
            "receiver answered HTTP {status}; will retry"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn classification() {
        assert_eq!(classify(204), Outcome::Delivered);
        assert_eq!(classify(404), Outcome::Rejected);
        assert_eq!(classify(429), Outcome::Retry);
        assert_eq!(classify(408), Outcome::Retry);
        assert_eq!(classify(503), Outcome::Retry);
        assert_eq!(classify(302), Outcome::Rejected);
    }

    #[test]
    fn allowlist_matches_hosts_and_subdomains_only() {
        let p = WebhookPolicy {
            allowed_hosts: Some(vec!["api.example.com".into(), "*.hooks.example.net".into()]),
            timestamps: false,
        };
        assert!(p.allows("https://api.example.com/h"));
        assert!(p.allows("https://API.example.com./h"));
        assert!(p.allows("https://a.hooks.example.net/h"));
        assert!(!p.allows("https://hooks.example.net/h"));
        assert!(!p.allows("https://api.example.com.evil.io/h"));
        assert!(!p.allows("http://169.254.169.254/latest/meta-data"));
        assert!(!p.allows("http://127.0.0.1:8080/h"));
        assert!(WebhookPolicy::default().allows("http://127.0.0.1:8080/h"));
    }
}
