//! The embedded Temporal server: `temporal server start-dev` as a child process on free
//! loopback ports, with its SQLite state under the state folder so a killed run resumes.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

#[derive(Debug, thiserror::Error)]
pub enum DevServerError {
    #[error("the `temporal` CLI was not found (looked for {looked:?}); run `make demo` or `make test` to install it into .venv, or set TEMPORAL_CLI")]
    CliNotFound { looked: Vec<PathBuf> },
    #[error("could not prepare the state folder {path}: {source}")]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not find a free loopback port: {0}")]
    NoPort(std::io::Error),
    #[error("could not start `{cli}`: {source}")]
    Spawn {
        cli: PathBuf,
        source: std::io::Error,
    },
    #[error("the Temporal dev server exited before it answered ({status}); its log is {log}")]
    Exited {
        status: std::process::ExitStatus,
        log: PathBuf,
    },
    #[error(
        "the Temporal dev server did not answer on {address} within {seconds} s; its log is {log}"
    )]
    Timeout {
        address: String,
        seconds: u64,
        log: PathBuf,
    },
}

/// A running dev server. Dropping it stops the server.
#[derive(Debug)]
pub struct DevServer {
    child: Option<Child>,
    grpc: SocketAddr,
    http: SocketAddr,
    ui: SocketAddr,
    log: PathBuf,
}

impl DevServer {
    /// Finds the `temporal` CLI: `$TEMPORAL_CLI`, then the project venv (`.venv/bin/temporal`
    /// next to the current directory or the executable's ancestors), then `PATH`.
    pub fn find_cli() -> Result<PathBuf, DevServerError> {
        let mut looked = Vec::new();
        if let Some(p) = std::env::var_os("TEMPORAL_CLI") {
            let p = PathBuf::from(p);
            if p.is_file() {
                return Ok(p);
            }
            looked.push(p);
        }
        let mut roots: Vec<PathBuf> = Vec::new();
        if let Ok(cwd) = std::env::current_dir() {
            roots.extend(cwd.ancestors().map(Path::to_path_buf));
        }
        if let Ok(exe) = std::env::current_exe() {
            roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
        }
        for root in roots {
            let candidate = root.join(".venv/bin/temporal");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
        looked.push(PathBuf::from(".venv/bin/temporal"));
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                let candidate = dir.join("temporal");
                if candidate.is_file() {
                    return Ok(candidate);
                }
            }
        }
        looked.push(PathBuf::from("temporal on PATH"));
        Err(DevServerError::CliNotFound { looked })
    }

    /// Starts a dev server whose state lives in `state_dir/temporal.db` and waits until it
    /// serves the `default` namespace.
    ///
    /// The ports are picked free and handed to the CLI, which binds them a moment later (and
    /// picks more for its internal services): another process can take one in between, and
    /// the server then exits. That is retried with fresh ports a few times.
    pub async fn start(state_dir: &Path) -> Result<Self, DevServerError> {
        const ATTEMPTS: usize = 3;
        let mut attempt = 1;
        loop {
            match Self::start_once(state_dir).await {
                Err(DevServerError::Exited { status, log }) if attempt < ATTEMPTS => {
                    tracing::warn!(
                        %status,
                        log = %log.display(),
                        attempt,
                        "the Temporal dev server exited while starting (a port taken in between?); retrying on fresh ports"
                    );
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn start_once(state_dir: &Path) -> Result<Self, DevServerError> {
        let cli = Self::find_cli()?;
        std::fs::create_dir_all(state_dir).map_err(|source| DevServerError::StateDir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let grpc = free_port()?;
        let ui = free_port()?;
        let http = free_port()?;
        let metrics = free_port()?;
        let log = state_dir.join("temporal.log");
        // Appended, not truncated: a retry or a resumed run keeps the earlier attempts' words.
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|source| DevServerError::StateDir {
                path: log.clone(),
                source,
            })?;
        let log_err = log_file
            .try_clone()
            .map_err(|source| DevServerError::StateDir {
                path: log.clone(),
                source,
            })?;

        let mut cmd = Command::new(&cli);
        cmd.args([
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--log-level",
            "warn",
            "--ui-disable-news-fetch",
        ])
        .arg("--port")
        .arg(grpc.port().to_string())
        .arg("--ui-port")
        .arg(ui.port().to_string())
        .arg("--http-port")
        .arg(http.port().to_string())
        .arg("--metrics-port")
        .arg(metrics.port().to_string())
        .arg("--db-filename")
        .arg(state_dir.join("temporal.db"));
        // The jobs' search attributes (`transcoder_workflows::search`), so jobs can be listed
        // by creator, media type, outcome and encoder from the first one.
        for name in transcoder_workflows::search::NAMES {
            cmd.arg("--search-attribute").arg(format!("{name}=Keyword"));
        }
        cmd.stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err)
            .kill_on_drop(true);
        // A `kill -9` of transcoder or a crashed test must not leave a server behind.
        transcoder_activities::process::die_with_parent(cmd.as_std_mut());
        let child = cmd.spawn().map_err(|source| DevServerError::Spawn {
            cli: cli.clone(),
            source,
        })?;
        let mut server = DevServer {
            child: Some(child),
            grpc: SocketAddr::from(([127, 0, 0, 1], grpc.port())),
            http: SocketAddr::from(([127, 0, 0, 1], http.port())),
            ui: SocketAddr::from(([127, 0, 0, 1], ui.port())),
            log,
        };
        server.wait_ready(Duration::from_secs(60)).await?;
        Ok(server)
    }

    /// Ready means: the process is alive and its HTTP API describes the `default` namespace,
    /// which needs the frontend, history and matching services all up. A bare TCP accept on
    /// the gRPC port is not enough (it can even be another process that took the port).
    async fn wait_ready(&mut self, limit: Duration) -> Result<(), DevServerError> {
        let started = Instant::now();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .build()
            .ok();
        let url = format!("http://{}/api/v1/namespaces/default", self.http);
        loop {
            if let Some(status) = self.exit_status() {
                return Err(DevServerError::Exited {
                    status,
                    log: self.log.clone(),
                });
            }
            let answered = match &http {
                Some(client) => matches!(
                    client.get(&url).send().await,
                    Ok(resp) if resp.status().is_success()
                ),
                None => {
                    let addr = self.grpc;
                    tokio::task::spawn_blocking(move || {
                        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
                    })
                    .await
                    .unwrap_or(false)
                }
            };
            // Checked again after the answer: a server that answered and then died binding
            // one of its other ports is not ready.
            if answered {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if let Some(status) = self.exit_status() {
                    return Err(DevServerError::Exited {
                        status,
                        log: self.log.clone(),
                    });
                }
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(DevServerError::Timeout {
                    address: self.address(),
                    seconds: limit.as_secs(),
                    log: self.log.clone(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `Some(status)` once the server process has exited.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The server's own log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// `host:port` of the gRPC frontend, as `TEMPORAL_ADDRESS` would hold it.
    pub fn address(&self) -> String {
        self.grpc.to_string()
    }

    /// The Web UI.
    pub fn ui_url(&self) -> String {
        format!("http://{}", self.ui)
    }

    /// Stops the server and waits for it to exit (SIGTERM first, so SQLite closes cleanly).
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&child);
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
        }
    }
}

fn free_port() -> Result<SocketAddr, DevServerError> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).map_err(DevServerError::NoPort)?;
    listener.local_addr().map_err(DevServerError::NoPort)
}

#[allow(unsafe_code)] // kill(2)
fn terminate(child: &Child) {
    if let Some(pid) = child.id() {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
}
