//! A throwaway S3-compatible server for the object-store tests: moto's
//! server (`pip install 'moto[server]'`), started on 127.0.0.1 for one test
//! and killed when the [`S3`] is dropped.
//!
//! The server is found as `$HAUL_MOTO_SERVER`, or `moto_server` on `PATH`;
//! `.ci/run` installs moto 5.2.5 in a virtual environment and sets the
//! variable (5.2.1 refuses the IAM user's signatures in
//! [`S3::start_with_user`]).
//! When it is missing the harness panics naming what to install: a test that
//! needs it never passes without it.
//!
//! moto keeps everything in memory and, by default, accepts any
//! credentials without checking a signature, so the tests read objects
//! back, list keys and list multipart uploads (which `object_store` has no
//! call for) with plain HTTP/1.0 requests. They carry an `Authorization`
//! header with a made-up signature all the same: moto answers a request
//! without one as an anonymous user, whom a private object is refused. [`S3::start_checking_credentials`]
//! starts one that refuses every key, for the credential test.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INSTALL: &str = "install moto's S3 server: `pip install 'moto[server]'` (then moto_server \
    is on PATH, or set HAUL_MOTO_SERVER to it); .ci/run does this on CI";

/// The credentials the tests give haul (moto takes any).
pub const KEY: &str = "haul-test-key";
pub const SECRET: &str = "haul-test-secret";

pub struct S3 {
    child: Child,
    pub port: u16,
}

impl S3 {
    pub fn start() -> S3 {
        Self::spawn(false)
    }

    /// A server that checks signatures against its (empty) set of users:
    /// every request is refused as an unknown access key.
    pub fn start_checking_credentials() -> S3 {
        Self::spawn(true)
    }

    /// A server that checks credentials, with one bucket and one user
    /// allowed only `actions` (`"s3:ListBucket"`…): returns the server and
    /// the user's key and secret. moto lets the first few requests through
    /// without credentials (`INITIAL_NO_AUTH_ACTION_COUNT`); they make the
    /// user, its key, its policy and the bucket.
    pub fn start_with_user(bucket: &str, actions: &[&str]) -> (S3, String, String) {
        let s3 = Self::spawn_with(Some("4"));
        let iam = "/us-east-1/iam/aws4_request";
        let (status, body) = s3.form(iam, "Action=CreateUser&UserName=u&Version=2010-05-08");
        assert_eq!(status, 200, "{body}");
        let (status, body) = s3.form(iam, "Action=CreateAccessKey&UserName=u&Version=2010-05-08");
        assert_eq!(status, 200, "{body}");
        let key = elements(&body, "AccessKeyId").remove(0);
        let secret = elements(&body, "SecretAccessKey").remove(0);
        let actions = actions
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(",");
        let policy = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Action":[{actions}],"Resource":"*"}}]}}"#
        );
        let policy: String = url::form_urlencoded::byte_serialize(policy.as_bytes()).collect();
        let (status, body) = s3.form(
            iam,
            &format!("Action=PutUserPolicy&UserName=u&PolicyName=p&Version=2010-05-08&PolicyDocument={policy}"),
        );
        assert_eq!(status, 200, "{body}");
        s3.create_bucket(bucket);
        (s3, key, secret)
    }

    fn spawn(auth: bool) -> S3 {
        Self::spawn_with(auth.then_some("0"))
    }

    fn spawn_with(unchecked: Option<&str>) -> S3 {
        let bin = std::env::var_os("HAUL_MOTO_SERVER").unwrap_or_else(|| "moto_server".into());
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().unwrap().port()
        };
        let mut cmd = Command::new(&bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(n) = unchecked {
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin:?}: {e}; {INSTALL}"));
        let mut s3 = S3 { child, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = s3.child.try_wait() {
                panic!("{bin:?} exited at start ({status}); {INSTALL}");
            }
            assert!(Instant::now() < deadline, "moto did not start in 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        s3
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `-o s3://BUCKET/PREFIX --endpoint …` and the environment haul needs.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_ALLOW_HTTP", "true".to_string()),
        ]
    }

    pub fn create_bucket(&self, bucket: &str) {
        let (status, body) = self.request("PUT", &format!("/{bucket}"));
        assert_eq!(status, 200, "create bucket {bucket}: {body:?}");
    }

    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) {
        let (status, _) = self.send("PUT", &format!("/{bucket}/{key}"), body);
        assert_eq!(status, 200, "PUT {bucket}/{key}");
    }

    pub fn delete(&self, bucket: &str, key: &str) {
        let (status, _) = self.send("DELETE", &format!("/{bucket}/{key}"), b"");
        assert_eq!(status, 204, "DELETE {bucket}/{key}");
    }

    /// The object's bytes, `None` if there is none of that key.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let (status, body) = self.send("GET", &format!("/{bucket}/{key}"), b"");
        match status {
            200 => Some(body),
            404 => None,
            s => panic!("GET {bucket}/{key}: HTTP {s}"),
        }
    }

    /// Every key in the bucket, sorted (up to 1,000: the tests stay below).
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let (status, body) = self.request("GET", &format!("/{bucket}?list-type=2"));
        assert_eq!(status, 200, "{body}");
        assert!(
            !body.contains("<IsTruncated>true"),
            "more than a page of keys"
        );
        let mut keys = elements(&body, "Key");
        keys.sort();
        keys
    }

    /// The multipart uploads begun and neither completed nor aborted, as
    /// their keys.
    pub fn uploads(&self, bucket: &str) -> Vec<String> {
        let (status, body) = self.request("GET", &format!("/{bucket}?uploads"));
        assert_eq!(status, 200, "{body}");
        elements(&body, "Key")
    }

    /// A form POST to the service of the credential scope `scope` (moto
    /// routes by it).
    fn form(&self, scope: &str, body: &str) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        write!(
            s,
            "POST / HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential={KEY}/20260101{scope}, \
             SignedHeaders=host, Signature=00\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).expect("read moto's answer");
        let text = String::from_utf8_lossy(&all).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("a status code");
        (status, text)
    }

    fn request(&self, method: &str, target: &str) -> (u16, String) {
        let (status, body) = self.send(method, target, b"");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn send(&self, method: &str, target: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        write!(
            s,
            "{method} {target} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential={KEY}/20260101/us-east-1/s3/aws4_request, \
             SignedHeaders=host, Signature=00\r\n\r\n",
            self.port,
            body.len()
        )
        .unwrap();
        s.write_all(body).unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).expect("read moto's answer");
        let split = all
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP answer");
        let head = String::from_utf8_lossy(&all[..split]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("a status code");
        (status, all[split + 4..].to_vec())
    }
}

/// The text of every `<name>…</name>` in `xml`.
fn elements(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    xml.split(&open)
        .skip(1)
        .filter_map(|rest| rest.split_once(&close).map(|(v, _)| v.to_string()))
        .collect()
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
