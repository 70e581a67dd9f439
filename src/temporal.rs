//! Connecting to Temporal: the server the SDK's environment configuration names (a profile
//! of the Temporal config file, `TEMPORAL_CONFIG_FILE` and `TEMPORAL_PROFILE`, with the
//! `TEMPORAL_*` variables on top: address, namespace, TLS, API key), or, when it names no
//! address, an embedded dev server started here.

use crate::devserver::DevServer;
use anyhow::{Context, Result};
use std::path::Path;
use temporalio_client::envconfig::{ClientConfigProfile, LoadClientConfigProfileOptions};
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions};

/// A connected client, and the embedded server behind it when there is one.
pub struct Temporal {
    pub client: Client,
    pub server: Option<DevServer>,
}

impl Temporal {
    /// Uses the configured server when there is one; otherwise starts a dev server with its
    /// state in `state_dir` and says where its Web UI is.
    pub async fn connect_or_embed(state_dir: &Path) -> Result<Self> {
        if remote_configured()? {
            let client = connect(None).await?;
            return Ok(Temporal {
                client,
                server: None,
            });
        }
        let server = DevServer::start(state_dir)
            .await
            .context("starting the embedded Temporal server")?;
        eprintln!(
            "Temporal dev server on {} (state in {})",
            server.address(),
            state_dir.display()
        );
        eprintln!("Temporal Web UI: {}", server.ui_url());
        // `transcoder status` reads this to find the server while the job runs.
        let _ = std::fs::write(address_file(state_dir), server.address());
        let client = connect(Some(&server.address())).await?;
        Ok(Temporal {
            client,
            server: Some(server),
        })
    }

    /// Connects to the configured server; an error if none is configured.
    pub async fn connect_remote() -> Result<Client> {
        if !remote_configured()? {
            anyhow::bail!("no Temporal server is configured: set TEMPORAL_ADDRESS (host:port), or an address in a Temporal config profile (TEMPORAL_CONFIG_FILE, TEMPORAL_PROFILE, `temporal config set`), or use `transcoder run` for the embedded one");
        }
        connect(None).await
    }

    pub async fn shutdown(self) {
        if let Some(server) = self.server {
            if let Some(dir) = server.log_path().parent() {
                let _ = std::fs::remove_file(address_file(dir));
            }
            server.stop().await;
        }
    }

    /// For reading jobs: the configured server, else the embedded server a running
    /// `transcoder run` started on `state_dir`.
    pub async fn connect_existing(state_dir: &Path) -> Result<Client> {
        if remote_configured()? {
            return connect(None).await;
        }
        match std::fs::read_to_string(address_file(state_dir)) {
            Ok(address) => connect(Some(address.trim())).await.with_context(|| {
                format!(
                    "the embedded server recorded in {} is not answering (has its `transcoder run` ended?)",
                    address_file(state_dir).display()
                )
            }),
            Err(_) => anyhow::bail!(
                "no Temporal server to ask: set TEMPORAL_ADDRESS (or a Temporal config profile), or run this while `transcoder run` is running with state in {}",
                state_dir.display()
            ),
        }
    }
}

/// Where the embedded server's address is kept while it runs.
fn address_file(state_dir: &Path) -> std::path::PathBuf {
    state_dir.join("server.address")
}

/// Connects to the server at `address` (an embedded one), with the rest of the SDK's
/// environment configuration.
pub async fn connect_to(address: &str) -> Result<Client> {
    connect(Some(address)).await
}

/// The Temporal configuration in force, as the SDK reads it: the config file's profile
/// (`TEMPORAL_CONFIG_FILE`, else the default path; `TEMPORAL_PROFILE`, else `default`) with
/// the `TEMPORAL_*` variables applied on top.
fn profile() -> Result<ClientConfigProfile> {
    temporalio_common::envconfig::load_client_config_profile(
        LoadClientConfigProfileOptions::default(),
        None,
    )
    .map_err(|e| {
        anyhow::anyhow!(
            "reading the Temporal client configuration (TEMPORAL_* variables, the config file's profile): {e:?}"
        )
    })
}

/// Whether the configuration names a server (an address from the profile or the
/// environment); without one, `run` and the RunPod worker embed their own.
pub fn remote_configured() -> Result<bool> {
    Ok(profile()?.address.is_some_and(|a| !a.trim().is_empty()))
}

/// The settings of `profile` that only a remote server uses: an embedded server has only the
/// `default` namespace and no TLS or API key.
fn remote_only_settings(profile: &ClientConfigProfile) -> Vec<&'static str> {
    let mut unused = Vec::new();
    if profile.namespace.as_deref().is_some_and(|n| n != "default") {
        unused.push("namespace");
    }
    if profile.api_key.is_some() {
        unused.push("API key");
    }
    if profile.tls.is_some() {
        unused.push("TLS");
    }
    if !profile.grpc_meta.is_empty() {
        unused.push("gRPC metadata");
    }
    unused
}

/// Connects to the configured server, or to an embedded one at `address`. An embedded server
/// has only the `default` namespace and no TLS or API key: a profile's remote-only settings
/// are left out, and the log says which.
async fn connect(address: Option<&str>) -> Result<Client> {
    let configured = profile()?;
    let (profile, namespace) = match address {
        None => {
            let namespace = configured
                .namespace
                .clone()
                .unwrap_or_else(|| "default".to_string());
            (configured, namespace)
        }
        Some(address) => {
            let unused = remote_only_settings(&configured);
            if !unused.is_empty() {
                tracing::info!(
                    ignored = unused.join(", "),
                    "the Temporal configuration's remote-only settings are not used with the embedded server"
                );
            }
            let local = ClientConfigProfile::builder()
                .address(format!("http://{address}"))
                .build();
            (local, "default".to_string())
        }
    };
    let conn_opts = ConnectionOptions::try_from(profile)
        .map_err(|e| anyhow::anyhow!("the Temporal server's address or TLS settings: {e:?}"))?;
    let client_opts = ClientOptions::new(namespace).build();
    let target = conn_opts.target.to_string();
    let connection = Connection::connect(conn_opts)
        .await
        .with_context(|| format!("connecting to Temporal at {target}"))?;
    // With traces on, the client and every worker built from it carry the OpenTelemetry
    // plugin: spans for starts, queries, workflows and activities, and the trace context in
    // Temporal headers.
    let client_opts = match crate::telemetry::temporal_plugin() {
        Some(plugin) => ClientOptions::new(client_opts.namespace.clone())
            .data_converter(client_opts.data_converter.clone())
            .client_interceptors(client_opts.client_interceptors.clone())
            .plugin(plugin)
            .build(),
        None => client_opts,
    };
    Client::new(connection, client_opts).context("creating the Temporal client")
}
