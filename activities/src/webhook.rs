//! Signed webhook delivery (DESIGN §3.2).

use crate::error::{MediaError, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;
use transcoder_workflows::activities::{WebhookReceipt, WebhookRequest};

pub const SIGNATURE_HEADER: &str = "X-Runpod-Signature";

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
        400..=499 => Outcome::Rejected,
        _ => Outcome::Retry,
    }
}

/// Sends the webhook once. `Ok` for delivered or rejected (both final); `Err` when a later
/// attempt may succeed, so the activity's retry policy backs off and tries again with the
/// same body and signature.
pub async fn deliver(client: &reqwest::Client, request: &WebhookRequest) -> Result<WebhookReceipt> {
    let body = serde_json::to_vec(&request.body)
        .map_err(|e| MediaError::Webhook(format!("cannot encode body: {e}")))?;
    let signature = sign(&request.secret, &body);
    let response = client
        .post(&request.url)
        .timeout(Duration::from_secs(30))
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
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
        }),
        Outcome::Rejected => {
            tracing::warn!(status, url = %request.url, "webhook rejected by the receiver; not retrying");
            Ok(WebhookReceipt {
                delivered: false,
                status_code: Some(status),
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
    }
}
