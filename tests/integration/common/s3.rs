//! A real S3-compatible server on loopback for the storage tests: moto in server mode (from
//! PyPI, installed into .venv by `make test`), plus a plain `aws-sdk-s3` client that checks
//! what the transcoder stored the way any S3 consumer would.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "test-access-key";
pub const SECRET_KEY: &str = "test-secret-key-never-logged";

/// A moto server on 127.0.0.1; killed on drop.
pub struct S3Server {
    child: Child,
    pub port: u16,
}

impl S3Server {
    pub fn start(log_dir: &Path) -> S3Server {
        let moto = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
        assert!(
            moto.is_file(),
            "{} is missing: run `make test`, which installs moto[server] into .venv",
            moto.display()
        );
        std::fs::create_dir_all(log_dir).expect("log dir");
        for _ in 0..3 {
            let port = TcpListener::bind(("127.0.0.1", 0))
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            let log = std::fs::File::create(log_dir.join(format!("moto-{port}.log"))).expect("log");
            let mut child = Command::new(&moto)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("start moto_server");
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return S3Server { child, port };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "moto_server did not start; see its logs in {}",
            log_dir.display()
        );
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A plain S3 client for checks (path-style, as for any non-AWS endpoint).
    pub fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(ACCESS_KEY, SECRET_KEY, None, None, "test"))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    pub async fn create_bucket(&self, name: &str) {
        self.client()
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create bucket {name}: {e:?}"));
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every key in `bucket` (all pages).
pub async fn list_keys(client: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = client
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("list {bucket}: {e:?}"));
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        match out.next_continuation_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    keys
}

pub async fn get_bytes(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("get {bucket}/{key}: {e:?}"));
    out.body
        .collect()
        .await
        .unwrap_or_else(|e| panic!("read {bucket}/{key}: {e}"))
        .into_bytes()
        .to_vec()
}

/// `(Content-Type, Cache-Control, size)` of an object.
pub async fn head(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> (String, String, i64) {
    let out = client
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("head {bucket}/{key}: {e:?}"));
    (
        out.content_type().unwrap_or_default().to_string(),
        out.cache_control().unwrap_or_default().to_string(),
        out.content_length().unwrap_or(-1),
    )
}

/// What [`FaultProxy`] does with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward it to the server and relay the answer.
    Pass,
    /// Answer with an S3 error document of this HTTP status and code, as a store does.
    Answer(u16, &'static str),
    /// Close the connection without an answer (a reset, a dropped proxy).
    Drop,
}

/// One request as the proxy saw it: the method, the path with its query, and how many
/// requests came before it.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    pub method: String,
    pub target: String,
    pub index: usize,
}

type Rule = dyn Fn(&SeenRequest) -> Fault + Send + Sync;

/// A loopback HTTP proxy in front of the real S3 server that injects storage failures by
/// rule: each request is passed on or answered with a store's error. One request per
/// connection (`Connection: close` both ways), so the bytes are relayed untouched and the
/// signatures the client computed still hold.
pub struct FaultProxy {
    pub port: u16,
    /// Every request and what was done with it, in order.
    pub seen: std::sync::Arc<std::sync::Mutex<Vec<(SeenRequest, Fault)>>>,
}

impl FaultProxy {
    pub fn start(
        upstream_port: u16,
        rule: impl Fn(&SeenRequest) -> Fault + Send + Sync + 'static,
    ) -> FaultProxy {
        use std::sync::{Arc, Mutex};
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let seen: Arc<Mutex<Vec<(SeenRequest, Fault)>>> = Arc::default();
        let rule: Arc<Rule> = Arc::new(rule);
        let log = seen.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let rule = rule.clone();
                let log = log.clone();
                std::thread::spawn(move || {
                    let _ = proxy_one(client, upstream_port, &*rule, &log);
                });
            }
        });
        FaultProxy { port, seen }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How many requests got `fault`.
    pub fn count(&self, fault: Fault) -> usize {
        self.seen
            .lock()
            .map(|s| s.iter().filter(|(_, f)| *f == fault).count())
            .unwrap_or(0)
    }
}

fn proxy_one(
    mut client: std::net::TcpStream,
    upstream_port: u16,
    rule: &Rule,
    log: &std::sync::Mutex<Vec<(SeenRequest, Fault)>>,
) -> std::io::Result<()> {
    use std::io::{BufRead, BufReader, Read, Write};
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    // The request head, line by line; `Connection` is replaced by `close`.
    let mut request_line = String::new();
    if reader.read_line(&mut request_line)? == 0 {
        return Ok(());
    }
    let mut head = request_line.clone();
    let mut content_length = 0usize;
    let mut chunked = false;
    let mut expect_continue = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
        if lower.starts_with("expect:") && lower.contains("100-continue") {
            expect_continue = true;
        } else if !lower.starts_with("connection:") {
            head.push_str(&line);
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    if expect_continue {
        // The client waits for this before it sends the body; the proxy answers for the server.
        client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    // The body, whole (clients here send a length or chunks).
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line)?;
            body.extend_from_slice(size_line.as_bytes());
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            if size == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut t = String::new();
                    if reader.read_line(&mut t)? == 0 || t == "\r\n" {
                        body.extend_from_slice(t.as_bytes());
                        break;
                    }
                    body.extend_from_slice(t.as_bytes());
                }
                break;
            }
            let mut chunk = vec![0u8; size + 2];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
        }
    } else {
        let mut chunk = vec![0u8; content_length];
        reader.read_exact(&mut chunk)?;
        body = chunk;
    }

    let mut parts = request_line.split_whitespace();
    let request = {
        let mut log = log.lock().expect("proxy log");
        let request = SeenRequest {
            method: parts.next().unwrap_or_default().to_string(),
            target: parts.next().unwrap_or_default().to_string(),
            index: log.len(),
        };
        let fault = rule(&request);
        log.push((request.clone(), fault));
        (request, fault)
    };
    match request.1 {
        Fault::Drop => Ok(()),
        Fault::Answer(status, code) => {
            let doc = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the test proxy</Message><Resource>{}</Resource></Error>",
                request.0.target
            );
            write!(
                client,
                "HTTP/1.1 {status} Injected\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{doc}",
                doc.len()
            )?;
            client.flush()
        }
        Fault::Pass => {
            let mut upstream = std::net::TcpStream::connect(("127.0.0.1", upstream_port))?;
            upstream.write_all(head.as_bytes())?;
            upstream.write_all(&body)?;
            std::io::copy(&mut upstream, &mut client)?;
            client.flush()
        }
    }
}
