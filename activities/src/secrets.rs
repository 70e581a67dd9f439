//! Secrets never enter workflow history in plaintext (DESIGN §5): the client seals the
//! webhook secret with AES-256-GCM before starting a workflow, the history holds only the
//! sealed text, and the webhook activity opens it just before signing.
//!
//! The key comes from `TRANSCODER_SECRETS_KEY` (32 bytes as 64 hex characters or base64).
//! Every process that starts jobs or runs the webhook activity needs the same key. The
//! embedded mode, where client and worker are one process, keeps a generated key in its
//! state folder when the variable is unset.

use crate::error::MediaError;
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::fmt;
use std::path::Path;

pub const KEY_ENV: &str = "TRANSCODER_SECRETS_KEY";
const PREFIX: &str = "sealed:v1:";
const KEY_FILE: &str = "secrets.key";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{KEY_ENV} must be 32 bytes as 64 hex characters or base64")]
    BadKey,
    #[error("{KEY_ENV} is not set: without it the webhook secret would be stored in workflow history in plaintext")]
    NoKey,
    #[error("the webhook secret is sealed, but not with this worker's {KEY_ENV}")]
    WrongKey,
    #[error("the sealed webhook secret is malformed")]
    Malformed,
    #[error("cannot read or write the key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
}

/// Opens `text` with the worker's key when it is sealed; plain values pass through. A value
/// the key cannot open will not open on a retry either (permanent); a worker without any
/// key may be alone in that, so that stays retryable.
pub fn open_if_sealed(
    key: Option<&SecretBox>,
    what: &'static str,
    text: &str,
) -> Result<String, MediaError> {
    if !SecretBox::is_sealed(text) {
        return Ok(text.to_string());
    }
    let key = key.ok_or(MediaError::NoSecretsKey { what })?;
    key.open(text).map_err(|e| MediaError::Sealed {
        what,
        detail: e.to_string(),
    })
}

#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBox(<key>)")
    }
}

impl SecretBox {
    pub fn from_key_bytes(bytes: &[u8]) -> Result<Self, SecretError> {
        if bytes.len() != 32 {
            return Err(SecretError::BadKey);
        }
        Ok(SecretBox {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(bytes)),
        })
    }

    pub fn from_key_text(text: &str) -> Result<Self, SecretError> {
        let text = text.trim();
        let bytes = if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            hex::decode(text).map_err(|_| SecretError::BadKey)?
        } else {
            B64.decode(text).map_err(|_| SecretError::BadKey)?
        };
        Self::from_key_bytes(&bytes)
    }

    /// The key in `TRANSCODER_SECRETS_KEY`; `None` when unset.
    pub fn from_env() -> Result<Option<Self>, SecretError> {
        match std::env::var(KEY_ENV) {
            Ok(text) if !text.trim().is_empty() => Self::from_key_text(&text).map(Some),
            _ => Ok(None),
        }
    }

    /// The environment's key, or else the one kept in `state_dir` (created on first use).
    pub fn from_env_or_state(state_dir: &Path) -> Result<Self, SecretError> {
        if let Some(key) = Self::from_env()? {
            return Ok(key);
        }
        let path = state_dir.join(KEY_FILE);
        let io = |source| SecretError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_key_text(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(state_dir).map_err(io)?;
                let key = Aes256Gcm::generate_key(OsRng);
                write_private(&path, &hex::encode(key)).map_err(io)?;
                Self::from_key_bytes(&key)
            }
            Err(e) => Err(io(e)),
        }
    }

    pub fn is_sealed(text: &str) -> bool {
        text.starts_with(PREFIX)
    }

    /// Seals `plain`; text that is already sealed is returned as it is.
    pub fn seal(&self, plain: &str) -> String {
        if Self::is_sealed(plain) {
            return plain.to_string();
        }
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // Encryption with a valid key and a fresh nonce cannot fail for in-memory data.
        let sealed = self
            .cipher
            .encrypt(&nonce, plain.as_bytes())
            .unwrap_or_default();
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!("{PREFIX}{}", B64.encode(blob))
    }

    /// Opens sealed text; plain text (a payload from a client that did not seal) passes through.
    pub fn open(&self, text: &str) -> Result<String, SecretError> {
        let Some(b64) = text.strip_prefix(PREFIX) else {
            return Ok(text.to_string());
        };
        let blob = B64.decode(b64).map_err(|_| SecretError::Malformed)?;
        if blob.len() < 12 + 16 {
            return Err(SecretError::Malformed);
        }
        let (nonce, sealed) = blob.split_at(12);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| SecretError::WrongKey)?;
        String::from_utf8(plain).map_err(|_| SecretError::Malformed)
    }
}

/// Writes a file only the owner can read.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsealing_passes_plain_values_and_says_why_a_sealed_one_cannot_open() {
        let key = SecretBox::from_key_bytes(&[7u8; 32]).unwrap();
        let other = SecretBox::from_key_bytes(&[8u8; 32]).unwrap();
        let sealed = key.seal("s3cret-value");
        assert_eq!(
            open_if_sealed(None, "webhook secret", "plain").unwrap(),
            "plain"
        );
        assert_eq!(
            open_if_sealed(Some(&key), "webhook secret", &sealed).unwrap(),
            "s3cret-value"
        );
        // No key here: another worker may have it.
        let e = open_if_sealed(None, "input URI", &sealed).unwrap_err();
        assert!(!e.is_permanent(), "{e}");
        assert!(e.to_string().contains("input URI"), "{e}");
        // The wrong key will never open it.
        let e = open_if_sealed(Some(&other), "webhook secret", &sealed).unwrap_err();
        assert!(e.is_permanent(), "{e}");
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }

    #[test]
    fn seal_and_open_round_trip_and_hide_the_secret() {
        let b = SecretBox::from_key_bytes(&[7u8; 32]).unwrap();
        let sealed = b.seal("hunter2-webhook-secret");
        assert!(SecretBox::is_sealed(&sealed));
        assert!(!sealed.contains("hunter2"));
        assert_ne!(
            sealed,
            b.seal("hunter2-webhook-secret"),
            "fresh nonce every time"
        );
        assert_eq!(b.open(&sealed).unwrap(), "hunter2-webhook-secret");
        assert_eq!(b.seal(&sealed), sealed, "sealing twice is a no-op");
        assert_eq!(b.open("plain").unwrap(), "plain");
    }

    #[test]
    fn wrong_key_and_tampering_are_refused() {
        let a = SecretBox::from_key_bytes(&[1u8; 32]).unwrap();
        let b = SecretBox::from_key_bytes(&[2u8; 32]).unwrap();
        let sealed = a.seal("s");
        assert!(matches!(b.open(&sealed), Err(SecretError::WrongKey)));
        assert!(matches!(
            a.open("sealed:v1:!!!"),
            Err(SecretError::Malformed)
        ));
        assert!(SecretBox::from_key_text("short").is_err());
        assert!(SecretBox::from_key_text(&"ab".repeat(32)).is_ok());
    }

    #[test]
    fn state_key_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        if std::env::var(KEY_ENV).is_ok() {
            return; // an explicit key wins; nothing to test here
        }
        let a = SecretBox::from_env_or_state(dir.path()).unwrap();
        let b = SecretBox::from_env_or_state(dir.path()).unwrap();
        assert_eq!(b.open(&a.seal("x")).unwrap(), "x");
    }
}
