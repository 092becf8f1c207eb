//! A moto S3 server on a free 127.0.0.1 port, started once per test binary.
//!
//! moto runs under a small shell that waits on its stdin: when the test process exits (however
//! it exits), the pipe closes and the shell kills moto, so no server outlives the tests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use object_store::aws::AmazonS3Builder;
use object_store::{ClientOptions, ObjectStore};
use task_media::asset_url::S3Settings;

/// The running server.
#[derive(Debug)]
pub struct Moto {
    pub endpoint: String,
    _child: Mutex<Child>,
}

impl Moto {
    /// Settings that reach this server.
    pub fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            request_timeout: Some(Duration::from_secs(10)),
        }
    }

    /// A client for `bucket`, made fresh for the calling test's runtime.
    pub fn client(&self, bucket: &str) -> impl ObjectStore {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_client_options(ClientOptions::new().with_allow_http(true))
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_virtual_hosted_style_request(false)
            .build()
            .unwrap()
    }

    /// Creates a bucket (moto does not check signatures, so a bare request does).
    pub fn create_bucket(&self, bucket: &str) {
        let address = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(address).unwrap();
        write!(stream, "PUT /{bucket} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "create bucket {bucket}: {response}"
        );
    }
}

fn moto_binary() -> PathBuf {
    std::env::var_os("MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let dir = std::env::var_os("TEST_DEPS_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| super::workspace_root().join("target/test-deps"));
            dir.join("moto/bin/moto_server")
        })
}

/// The server of this test binary, started on first use.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        let binary = moto_binary();
        assert!(
            binary.exists(),
            "moto_server not found at {}: run scripts/install-test-deps.sh",
            binary.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("sh")
            .args([
                "-c",
                "\"$0\" -H 127.0.0.1 -p \"$1\" >/dev/null 2>&1 & pid=$!; read _; kill $pid",
            ])
            .arg(&binary)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let address = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        // Waiting for an external server to listen: poll its port with a deadline.
        while TcpStream::connect(&address).is_err() {
            assert!(Instant::now() < deadline, "moto did not start on {address}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto {
            endpoint: format!("http://{address}"),
            _child: Mutex::new(child),
        }
    })
}
