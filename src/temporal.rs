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
            server.stop().await;
        }
    }
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
    Client::new(connection, client_opts).context("creating the Temporal client")
}
