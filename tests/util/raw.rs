//! A hostile server: raw bytes on a socket, scripted per request, for the
//! answers no well-behaved origin gives (a 206 nobody asked for, a 206 that
//! ignores If-Range, a body cut short on purpose).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Req {
    /// The request target (path and query).
    pub target: String,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
}

impl Req {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What to send back.
pub enum Reply {
    /// These bytes, then close.
    Bytes(Vec<u8>),
    /// The first `n` bytes of these, then close: a cut-off body.
    Cut(Vec<u8>, usize),
}

/// A response with `Content-Length` and `Connection: close` added.
pub fn response(status: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

type Handler = dyn Fn(&Req, usize) -> Reply + Send + Sync;

/// The server on 127.0.0.1; stopped by [`Raw::stop`] or when dropped.
pub struct Raw {
    port: u16,
    task: JoinHandle<()>,
    log: Arc<Mutex<Vec<Req>>>,
    scheme: &'static str,
}

/// Reads one request from `sock`, answers it as `handler` says, closes.
async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut sock: S,
    log: &Mutex<Vec<Req>>,
    handler: &Handler,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.first() == Some(&0x16) {
            // A TLS handshake on a plain port: answer as a web server does.
            let _ = sock.write_all(&response("400 Bad Request", &[], b"")).await;
            return;
        }
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let target = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("")
        .to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let req = Req { target, headers };
    let n = {
        let mut log = log.lock().unwrap();
        log.push(req.clone());
        log.len() - 1
    };
    let (bytes, upto) = match handler(&req, n) {
        Reply::Bytes(b) => {
            let len = b.len();
            (b, len)
        }
        Reply::Cut(b, n) => (b, n),
    };
    let _ = sock.write_all(&bytes[..upto.min(bytes.len())]).await;
    let _ = sock.flush().await;
    let _ = sock.shutdown().await;
}

impl Raw {
    /// Serves each request with `handler(request, n)`, `n` counting requests
    /// from 0.
    pub async fn start(handler: impl Fn(&Req, usize) -> Reply + Send + Sync + 'static) -> Raw {
        Self::listen(None, handler).await
    }

    /// The same over TLS, with a fresh self-signed certificate for
    /// 127.0.0.1, returned as PEM (to trust with `--cacert`).
    pub async fn start_tls(
        handler: impl Fn(&Req, usize) -> Reply + Send + Sync + 'static,
    ) -> (Raw, String) {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let pem = cert.cert.pem();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let mut raw = Self::listen(Some(acceptor), handler).await;
        raw.scheme = "https";
        (raw, pem)
    }

    async fn listen(
        tls: Option<tokio_rustls::TlsAcceptor>,
        handler: impl Fn(&Req, usize) -> Reply + Send + Sync + 'static,
    ) -> Raw {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let log: Arc<Mutex<Vec<Req>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let task = {
            let log = log.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((sock, _)) = listener.accept().await else {
                        return;
                    };
                    let (log, handler, tls) = (log.clone(), handler.clone(), tls.clone());
                    tokio::spawn(async move {
                        match tls {
                            None => serve(sock, &log, &*handler).await,
                            Some(tls) => {
                                // A client that refuses the certificate ends here.
                                if let Ok(sock) = tls.accept(sock).await {
                                    serve(sock, &log, &*handler).await;
                                }
                            }
                        }
                    });
                }
            })
        };
        Raw {
            port,
            task,
            log,
            scheme: "http",
        }
    }

    pub fn url(&self, target: &str) -> String {
        format!("{}://127.0.0.1:{}{target}", self.scheme, self.port)
    }

    /// The requests seen so far.
    pub fn log(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.task.abort();
    }
}
