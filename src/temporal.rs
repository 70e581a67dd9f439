//! Connecting to Temporal: the server in `TEMPORAL_ADDRESS` (with the SDK's standard
//! environment for namespace, TLS and API keys), or an embedded dev server started here.

use crate::devserver::DevServer;
use anyhow::{Context, Result};
use std::path::Path;
use std::str::FromStr;
use temporalio_client::envconfig::LoadClientConfigProfileOptions;
use temporalio_client::{Client, ClientOptions, Connection, Url};

/// A connected client, and the embedded server behind it when there is one.
pub struct Temporal {
    pub client: Client,
    pub server: Option<DevServer>,
}

impl Temporal {
    /// Uses `TEMPORAL_ADDRESS` when set; otherwise starts a dev server with its state in
    /// `state_dir` and says where its Web UI is.
    pub async fn connect_or_embed(state_dir: &Path) -> Result<Self> {
        if std::env::var_os("TEMPORAL_ADDRESS").is_some() {
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

    /// Connects to `TEMPORAL_ADDRESS`; an error if it is not set.
    pub async fn connect_remote() -> Result<Client> {
        if std::env::var_os("TEMPORAL_ADDRESS").is_none() {
            anyhow::bail!("TEMPORAL_ADDRESS is not set: point it at a Temporal server (host:port), or use `transcoder run` for the embedded one");
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

    /// For reading jobs: `TEMPORAL_ADDRESS`, else the embedded server a running
    /// `transcoder run` started on `state_dir`.
    pub async fn connect_existing(state_dir: &Path) -> Result<Client> {
        if std::env::var_os("TEMPORAL_ADDRESS").is_some() {
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
                "no Temporal server to ask: set TEMPORAL_ADDRESS, or run this while `transcoder run` is running with state in {}",
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

/// Connects using the SDK's environment configuration, overriding the address when given.
async fn connect(address: Option<&str>) -> Result<Client> {
    let (mut conn_opts, client_opts) = ClientOptions::load_from_config(
        LoadClientConfigProfileOptions::default(),
    )
    .map_err(|e| {
        anyhow::anyhow!("reading the Temporal client configuration (TEMPORAL_* variables): {e:?}")
    })?;
    if let Some(address) = address {
        conn_opts.target =
            Url::from_str(&format!("http://{address}")).context("embedded server address")?;
    }
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
