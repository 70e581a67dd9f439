//! Which store holds which bucket, read from the environment (DESIGN §3.4).
//!
//! - R2 (`R2_ACCOUNT_ID`, `R2_ACCESS_KEY_ID`, `R2_SECRET_ACCESS_KEY`) serves the buckets in
//!   `R2_MEDIA_BUCKET` and `R2_ASSETS_BUCKET`; endpoint `https://{account}.r2.cloudflarestorage.com`
//!   (or `R2_ENDPOINT_URL`, e.g. an EU-jurisdiction endpoint), region `auto`.
//! - B2 (`B2_KEY_ID`, `B2_APPLICATION_KEY`, `B2_ENDPOINT` or `B2_REGION`) serves `B2_BUCKET_NAME`.
//! - A generic S3-compatible store (`S3_ENDPOINT_URL`, `S3_REGION`, `S3_ADDRESSING_STYLE`,
//!   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) is enabled by an endpoint
//!   or an access key.
//! - `TRANSCODER_BUCKETS=name=backend,…` (backend `local|r2|b2|s3`) overrides any bucket, and
//!   `TRANSCODER_DEFAULT_STORAGE` names the backend of every other bucket (default: `s3` when
//!   the generic store is configured, otherwise the embedded local folder).
//!
//! Nothing here ever formats a secret: [`S3Settings`]'s `Debug` leaves the keys out.

use std::collections::BTreeMap;
use std::fmt;

/// Errors in the storage configuration; each names the variable to fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{backend} storage is partly configured: {missing} is not set")]
    Missing {
        backend: &'static str,
        missing: &'static str,
    },
    #[error("{var}: {problem}")]
    Invalid { var: &'static str, problem: String },
    #[error("bucket {bucket:?} is routed to {backend}, which is not configured ({hint})")]
    Unconfigured {
        bucket: String,
        backend: BackendKind,
        hint: &'static str,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum BackendKind {
    Local,
    R2,
    B2,
    S3,
}

impl BackendKind {
    fn parse(var: &'static str, s: &str) -> Result<Self, ConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "local" => Ok(BackendKind::Local),
            "r2" => Ok(BackendKind::R2),
            "b2" => Ok(BackendKind::B2),
            "s3" => Ok(BackendKind::S3),
            other => Err(ConfigError::Invalid {
                var,
                problem: format!("unknown backend {other:?} (expected local, r2, b2 or s3)"),
            }),
        }
    }

    fn hint(self) -> &'static str {
        match self {
            BackendKind::Local => "always available",
            BackendKind::R2 => "set R2_ACCOUNT_ID, R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY",
            BackendKind::B2 => "set B2_KEY_ID, B2_APPLICATION_KEY and B2_ENDPOINT or B2_REGION",
            BackendKind::S3 => "set S3_ENDPOINT_URL and/or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Local => "local",
            BackendKind::R2 => "r2",
            BackendKind::B2 => "b2",
            BackendKind::S3 => "s3",
        })
    }
}

/// How to reach one S3-compatible store.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub name: BackendKind,
    /// `None`: the AWS default endpoint for the region.
    pub endpoint: Option<String>,
    pub region: String,
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key_id", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// The whole routing table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageConfig {
    pub r2: Option<S3Settings>,
    pub b2: Option<S3Settings>,
    pub s3: Option<S3Settings>,
    /// Buckets with an explicit backend (R2/B2 bucket variables and `TRANSCODER_BUCKETS`).
    pub routes: BTreeMap<String, BackendKind>,
    pub default: Option<BackendKind>,
}

impl StorageConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
    }

    /// Reads variables through `get` (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = StorageConfig::default();
        let need = |backend: &'static str, var: &'static str| {
            get(var).ok_or(ConfigError::Missing {
                backend,
                missing: var,
            })
        };

        if let Some(account) = get("R2_ACCOUNT_ID") {
            let endpoint = get("R2_ENDPOINT_URL")
                .unwrap_or_else(|| format!("https://{account}.r2.cloudflarestorage.com"));
            config.r2 = Some(S3Settings {
                name: BackendKind::R2,
                endpoint: Some(check_url("R2_ENDPOINT_URL", endpoint)?),
                region: "auto".into(),
                path_style: true,
                access_key_id: need("R2", "R2_ACCESS_KEY_ID")?,
                secret_access_key: need("R2", "R2_SECRET_ACCESS_KEY")?,
                session_token: None,
            });
            for var in ["R2_MEDIA_BUCKET", "R2_ASSETS_BUCKET"] {
                if let Some(bucket) = get(var) {
                    config.routes.insert(bucket, BackendKind::R2);
                }
            }
        }

        if let Some(key_id) = get("B2_KEY_ID") {
            let region = get("B2_REGION");
            let endpoint = match (get("B2_ENDPOINT"), &region) {
                (Some(e), _) => e,
                (None, Some(r)) => format!("https://s3.{r}.backblazeb2.com"),
                (None, None) => {
                    return Err(ConfigError::Missing {
                        backend: "B2",
                        missing: "B2_ENDPOINT (or B2_REGION)",
                    })
                }
            };
            let endpoint = check_url("B2_ENDPOINT", endpoint)?;
            // B2's endpoint names its region (s3.us-west-004.backblazeb2.com); SigV4 must
            // sign with that region.
            let region =
                region
                    .or_else(|| b2_region_of(&endpoint))
                    .ok_or(ConfigError::Missing {
                        backend: "B2",
                        missing: "B2_REGION",
                    })?;
            config.b2 = Some(S3Settings {
                name: BackendKind::B2,
                endpoint: Some(endpoint),
                region,
                path_style: true,
                access_key_id: key_id,
                secret_access_key: need("B2", "B2_APPLICATION_KEY")?,
                session_token: None,
            });
            if let Some(bucket) = get("B2_BUCKET_NAME") {
                config.routes.insert(bucket, BackendKind::B2);
            }
        }

        let s3_endpoint = get("S3_ENDPOINT_URL");
        let aws_key = get("AWS_ACCESS_KEY_ID");
        if s3_endpoint.is_some() || aws_key.is_some() {
            let path_style = match get("S3_ADDRESSING_STYLE").as_deref() {
                Some("path") => true,
                Some("virtual") => false,
                // Custom endpoints (MinIO, Ceph, GCS interop…) rarely have wildcard DNS.
                Some("auto") | None => s3_endpoint.is_some(),
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        var: "S3_ADDRESSING_STYLE",
                        problem: format!("{other:?} (expected path, virtual or auto)"),
                    })
                }
            };
            config.s3 = Some(S3Settings {
                name: BackendKind::S3,
                endpoint: s3_endpoint
                    .map(|e| check_url("S3_ENDPOINT_URL", e))
                    .transpose()?,
                region: get("S3_REGION")
                    .or_else(|| get("AWS_REGION"))
                    .or_else(|| get("AWS_DEFAULT_REGION"))
                    .unwrap_or_else(|| "us-east-1".into()),
                path_style,
                access_key_id: aws_key.ok_or(ConfigError::Missing {
                    backend: "S3",
                    missing: "AWS_ACCESS_KEY_ID",
                })?,
                secret_access_key: need("S3", "AWS_SECRET_ACCESS_KEY")?,
                session_token: get("AWS_SESSION_TOKEN"),
            });
        }

        if let Some(list) = get("TRANSCODER_BUCKETS") {
            for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                let (bucket, backend) =
                    entry.split_once('=').ok_or_else(|| ConfigError::Invalid {
                        var: "TRANSCODER_BUCKETS",
                        problem: format!("{entry:?} is not bucket=backend"),
                    })?;
                config.routes.insert(
                    bucket.trim().to_string(),
                    BackendKind::parse("TRANSCODER_BUCKETS", backend)?,
                );
            }
        }
        config.default = match get("TRANSCODER_DEFAULT_STORAGE") {
            Some(d) => Some(BackendKind::parse("TRANSCODER_DEFAULT_STORAGE", &d)?),
            None if config.s3.is_some() => Some(BackendKind::S3),
            None => None,
        };

        for (bucket, backend) in &config.routes {
            config.check_configured(bucket, *backend)?;
        }
        if let Some(d) = config.default {
            config.check_configured("(default)", d)?;
        }
        Ok(config)
    }

    fn check_configured(&self, bucket: &str, backend: BackendKind) -> Result<(), ConfigError> {
        let ok = match backend {
            BackendKind::Local => true,
            BackendKind::R2 => self.r2.is_some(),
            BackendKind::B2 => self.b2.is_some(),
            BackendKind::S3 => self.s3.is_some(),
        };
        if ok {
            Ok(())
        } else {
            Err(ConfigError::Unconfigured {
                bucket: bucket.to_string(),
                backend,
                hint: backend.hint(),
            })
        }
    }
}

fn check_url(var: &'static str, value: String) -> Result<String, ConfigError> {
    match url::Url::parse(&value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            Ok(value.trim_end_matches('/').to_string())
        }
        _ => Err(ConfigError::Invalid {
            var,
            problem: format!("{value:?} is not an http(s) URL"),
        }),
    }
}

/// `https://s3.us-west-004.backblazeb2.com` → `us-west-004`.
fn b2_region_of(endpoint: &str) -> Option<String> {
    let host = url::Url::parse(endpoint).ok()?.host_str()?.to_string();
    let rest = host.strip_prefix("s3.")?;
    let region = rest.strip_suffix(".backblazeb2.com")?;
    (!region.is_empty()).then(|| region.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<StorageConfig, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        StorageConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn nothing_set_is_local() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.default, None);
        assert!(c.routes.is_empty());
    }

    #[test]
    fn r2_and_b2_routing() {
        let c = cfg(&[
            ("R2_ACCOUNT_ID", "abc123"),
            ("R2_ACCESS_KEY_ID", "k"),
            ("R2_SECRET_ACCESS_KEY", "s"),
            ("R2_MEDIA_BUCKET", "codex-media-prod"),
            ("R2_ASSETS_BUCKET", "codex-assets-prod"),
            ("B2_KEY_ID", "bk"),
            ("B2_APPLICATION_KEY", "bs"),
            ("B2_ENDPOINT", "https://s3.us-west-004.backblazeb2.com"),
            ("B2_BUCKET_NAME", "codex-archive"),
        ])
        .unwrap();
        let r2 = c.r2.as_ref().unwrap();
        assert_eq!(
            r2.endpoint.as_deref(),
            Some("https://abc123.r2.cloudflarestorage.com")
        );
        assert_eq!(r2.region, "auto");
        assert_eq!(c.b2.as_ref().unwrap().region, "us-west-004");
        assert_eq!(c.routes["codex-media-prod"], BackendKind::R2);
        assert_eq!(c.routes["codex-assets-prod"], BackendKind::R2);
        assert_eq!(c.routes["codex-archive"], BackendKind::B2);
        assert_eq!(c.default, None);
        assert!(!format!("{c:?}").contains("bs"), "no secret in Debug");
    }

    #[test]
    fn errors_name_the_variable() {
        let e = cfg(&[("R2_ACCOUNT_ID", "a"), ("R2_ACCESS_KEY_ID", "k")]).unwrap_err();
        assert!(e.to_string().contains("R2_SECRET_ACCESS_KEY"), "{e}");
        let e = cfg(&[("B2_KEY_ID", "k"), ("B2_APPLICATION_KEY", "s")]).unwrap_err();
        assert!(e.to_string().contains("B2_ENDPOINT"), "{e}");
        let e = cfg(&[("TRANSCODER_BUCKETS", "media=r2")]).unwrap_err();
        assert!(e.to_string().contains("R2_ACCOUNT_ID"), "{e}");
        let e = cfg(&[("TRANSCODER_BUCKETS", "media=ftp")]).unwrap_err();
        assert!(e.to_string().contains("TRANSCODER_BUCKETS"), "{e}");
        let e = cfg(&[("S3_ENDPOINT_URL", "not a url"), ("AWS_ACCESS_KEY_ID", "k")]).unwrap_err();
        assert!(e.to_string().contains("S3_ENDPOINT_URL"), "{e}");
    }

    #[test]
    fn generic_s3_becomes_the_default() {
        let c = cfg(&[
            ("S3_ENDPOINT_URL", "http://127.0.0.1:9000/"),
            ("AWS_ACCESS_KEY_ID", "k"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("TRANSCODER_BUCKETS", "scratch=local"),
        ])
        .unwrap();
        let s3 = c.s3.as_ref().unwrap();
        assert!(s3.path_style);
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(c.default, Some(BackendKind::S3));
        assert_eq!(c.routes["scratch"], BackendKind::Local);
    }
}
