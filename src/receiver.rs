//! A webhook receiver on loopback for local runs without `--webhook-url`: it verifies the
//! signature exactly as media-api does, so the demo shows a real signed delivery.

use anyhow::{Context, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;
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
    port: u16,
    secret: String,
    received: Arc<Mutex<Vec<Received>>>,
    thread: Option<JoinHandle<()>>,
}

/// Constant-time check of `hex(HMAC-SHA256(secret, body))`.
pub fn verify(secret: &str, body: &[u8], signature_hex: &str) -> bool {
    let Ok(expected) = hex::decode(signature_hex.trim()) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// Port and secret of the local receiver, kept in the state folder so that a job resumed by
/// a later `run` (whose payload names the first run's URL) still reaches a receiver.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    port: u16,
    secret: String,
}

impl LocalReceiver {
    /// Starts on the port saved in `state_dir` (or a free one, then saved) with its secret.
    pub fn start_persistent(state_dir: &Path) -> Result<Self> {
        let file = state_dir.join("local-webhook.json");
        let saved: Option<Saved> = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        if let Some(saved) = saved {
            // The previous receiver may still be letting go of the port: retry briefly.
            for _ in 0..20 {
                if let Ok(receiver) = Self::start_on(saved.port, saved.secret.clone()) {
                    return Ok(receiver);
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        let secret = uuid::Uuid::new_v4().simple().to_string();
        let receiver = Self::start_on(0, secret.clone())?;
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let text = serde_json::to_string(&Saved {
            port: receiver.port,
            secret: receiver.secret.clone(),
        })?;
        write_private(&file, &text).with_context(|| format!("saving {}", file.display()))?;
        Ok(receiver)
    }

    pub fn secret(&self) -> &str {
        &self.secret
    }

    fn start_on(port: u16, secret: String) -> Result<Self> {
        let server = Arc::new(
            tiny_http::Server::http(("127.0.0.1", port))
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context("starting the local webhook receiver")?,
        );
        let port = server
            .server_addr()
            .to_ip()
            .map(|a| a.port())
            .context("local webhook receiver has no port")?;
        let url = format!("http://127.0.0.1:{port}/webhook");
        let received = Arc::new(Mutex::new(Vec::new()));
        let (srv, store, key) = (server.clone(), received.clone(), secret.clone());
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
                let signature_valid = verify(&key, &body, &signature);
                if let Ok(mut list) = store.lock() {
                    list.push(Received {
                        body,
                        signature_valid,
                    });
                }
                let status = if signature_valid { 200 } else { 401 };
                let _ = request.respond(tiny_http::Response::empty(status));
            }
        });
        Ok(LocalReceiver {
            server,
            url,
            port,
            secret,
            received,
            thread: Some(thread),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// Writes a file only the owner can read: it holds a signing secret.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
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

    #[test]
    fn persistent_receiver_reuses_port_and_secret() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalReceiver::start_persistent(dir.path()).unwrap();
        let (url, secret) = (first.url().to_string(), first.secret().to_string());
        drop(first);
        let second = LocalReceiver::start_persistent(dir.path()).unwrap();
        assert_eq!(second.url(), url);
        assert_eq!(second.secret(), secret);
    }
}
