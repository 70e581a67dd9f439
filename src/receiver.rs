//! A webhook receiver on loopback for local runs without `--webhook-url`: it verifies the
//! signature exactly as media-api does, so the demo shows a real signed delivery.

use anyhow::{Context, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A webhook as received, with the result of checking its signature.
#[derive(Clone, Debug)]
pub struct Received {
    pub body: Vec<u8>,
    pub signature_valid: bool,
}

pub struct LocalReceiver {
    server: Arc<tiny_http::Server>,
    url: String,
    received: Arc<Mutex<Vec<Received>>>,
    thread: Option<JoinHandle<()>>,
}

/// Constant-time check of `hex(HMAC-SHA256(secret, body))`.
pub fn verify(secret: &str, body: &[u8], signature_hex: &str) -> bool {
    let Ok(expected) = hex::decode(signature_hex.trim()) else { return false };
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

impl LocalReceiver {
    pub fn start(secret: String) -> Result<Self> {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").map_err(|e| anyhow::anyhow!("{e}")).context("starting the local webhook receiver")?);
        let port = server.server_addr().to_ip().map(|a| a.port()).context("local webhook receiver has no port")?;
        let url = format!("http://127.0.0.1:{port}/webhook");
        let received = Arc::new(Mutex::new(Vec::new()));
        let (srv, store) = (server.clone(), received.clone());
        let thread = std::thread::spawn(move || {
            for mut request in srv.incoming_requests() {
                let mut body = Vec::new();
                let _ = std::io::Read::read_to_end(request.as_reader(), &mut body);
                let signature = request
                    .headers()
                    .iter()
                    .find(|h| h.field.equiv("X-Runpod-Signature"))
                    .map(|h| h.value.as_str().to_string())
                    .unwrap_or_default();
                let signature_valid = verify(&secret, &body, &signature);
                if let Ok(mut list) = store.lock() {
                    list.push(Received { body, signature_valid });
                }
                let status = if signature_valid { 200 } else { 401 };
                let _ = request.respond(tiny_http::Response::empty(status));
            }
        });
        Ok(LocalReceiver { server, url, received, thread: Some(thread) })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for LocalReceiver {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_signatures() {
        let body = br#"{"a":1}"#;
        let sig = transcoder_activities::webhook::sign("k", body);
        assert!(verify("k", body, &sig));
        assert!(!verify("other", body, &sig));
        assert!(!verify("k", b"{}", &sig));
        assert!(!verify("k", body, "zz"));
    }
}
