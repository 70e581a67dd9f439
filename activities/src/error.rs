//! Errors of the side-effecting layer, split into permanent ones (bad input: retrying cannot
//! help) and transient ones (a killed process, I/O, network: a retry may succeed).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("input object {0} does not exist")]
    NotFound(String),
    #[error("the input is not a readable media file ({0})")]
    Unreadable(String),
    #[error("the input is not supported: {0}")]
    Unsupported(String),
    /// More of the input's frames failed to decode than the command allows (a broken or
    /// partly overwritten file). Permanent: the same bytes fail the same way.
    #[error("the input is damaged: {0}")]
    Damaged(String),
    #[error("{tool} failed ({status}): {detail}")]
    Tool {
        tool: &'static str,
        status: String,
        detail: String,
    },
    #[error("could not run {tool}: {source}")]
    Spawn {
        tool: &'static str,
        source: std::io::Error,
    },
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("output check failed: {0}")]
    Verification(String),
    #[error("invalid storage key {0:?}")]
    BadKey(String),
    #[error("webhook: {0}")]
    Webhook(String),
    /// A value sealed for workflow history cannot be opened by this worker: a malformed value,
    /// or a key other than the one that sealed it. Permanent: the client refuses foreign sealed
    /// values, so this means the workers' TRANSCODER_SECRETS_KEY differs from the client's.
    #[error("cannot open the sealed {what}: {detail} (the client and every worker need the same TRANSCODER_SECRETS_KEY)")]
    Sealed { what: &'static str, detail: String },
    /// A sealed value reached a worker started without any key. Retryable: another worker
    /// on the queue may have the key.
    #[error("cannot open the sealed {what}: this worker has no TRANSCODER_SECRETS_KEY")]
    NoSecretsKey { what: &'static str },
    /// A storage request failed; `detail` is the store's status and code, never credentials.
    #[error("storage: {operation} {object}: {detail}")]
    Storage {
        operation: &'static str,
        object: String,
        detail: String,
        permanent: bool,
    },
    /// Something a request names cannot be used; `field` says which (`subtitles[0]`,
    /// `parameters.start_sec`), `detail` why, showing any URI without its query string.
    #[error("{field}: {detail}")]
    Field {
        field: String,
        detail: String,
        permanent: bool,
    },
    /// A download of the job's input failed (`uri` is shown without any query string).
    #[error("input {uri}: {detail}")]
    Input {
        uri: String,
        detail: String,
        permanent: bool,
    },
}

impl MediaError {
    /// Permanent failures go straight to the failed webhook instead of being retried.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            MediaError::NotFound(_)
                | MediaError::Unreadable(_)
                | MediaError::Unsupported(_)
                | MediaError::Damaged(_)
                | MediaError::Verification(_)
                | MediaError::BadKey(_)
                | MediaError::Sealed { .. }
                | MediaError::Storage {
                    permanent: true,
                    ..
                }
                | MediaError::Input {
                    permanent: true,
                    ..
                }
                | MediaError::Field {
                    permanent: true,
                    ..
                }
        )
    }

    pub fn io(
        context: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> MediaError {
        let path = path.into();
        move |source| MediaError::Io {
            context,
            path,
            source,
        }
    }
}

pub type Result<T, E = MediaError> = std::result::Result<T, E>;
