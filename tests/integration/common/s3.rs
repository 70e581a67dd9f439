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
