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

    /// Starts a dev server whose state lives in `state_dir/temporal.db` and waits until its
    /// gRPC port accepts connections.
    pub async fn start(state_dir: &Path) -> Result<Self, DevServerError> {
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
        let log_file = std::fs::File::create(&log).map_err(|source| DevServerError::StateDir {
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
        .arg(state_dir.join("temporal.db"))
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .kill_on_drop(true);
        // A `kill -9` of transcoder or a crashed test must not leave a server behind.
        transcoder_activities::process::die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|source| DevServerError::Spawn {
            cli: cli.clone(),
            source,
        })?;
        let mut server = DevServer {
            child: Some(child),
            grpc: SocketAddr::from(([127, 0, 0, 1], grpc.port())),
            ui: SocketAddr::from(([127, 0, 0, 1], ui.port())),
            log,
        };
        server.wait_ready(Duration::from_secs(60)).await?;
        Ok(server)
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<(), DevServerError> {
        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(DevServerError::Exited {
                        status,
                        log: self.log.clone(),
                    });
                }
            }
            let addr = self.grpc;
            let up = tokio::task::spawn_blocking(move || {
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
            })
            .await
            .unwrap_or(false);
            if up {
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

fn terminate(child: &Child) {
    if let Some(pid) = child.id() {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
}
