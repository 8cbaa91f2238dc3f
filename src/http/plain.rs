//! Plain `http://` over HTTP/1.1: hyper's client connection API and a
//! keep-alive pool of our own.
//!
//! Hand-written because reqwest's layers above hyper cost a quarter of the
//! runtime thread on small files (see [`super`]). What stays hyper's: the
//! protocol itself (request writing, response parsing, chunked and
//! length-delimited bodies, keep-alive decisions). What is ours is small:
//!
//! - The pool holds idle connections per `host:port`, newest on top. A
//!   connection goes back only once its response body has been read to the
//!   end; one dropped early is closed by hyper. Taking one waits until hyper
//!   says it is ready, so a connection the server closed is never used, and
//!   connections idle longer than [`IDLE_FOR`] are dropped.
//! - A request hyper gives back unsent (the server closed the reused
//!   connection just then) goes again on another connection, as hyper-util
//!   does. A request that was sent is never repeated here; the job's retry
//!   policy decides.
//! - The read timeout applies to the response head and to each piece of
//!   the body, as reqwest's does.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, HOST, USER_AGENT};
use reqwest::StatusCode;
use tokio::net::TcpStream;
use url::{Position, Url};

use super::HttpError;
use super::{error_chain, ClientConfig, ClientError};

/// How long an idle connection is kept.
pub const IDLE_FOR: Duration = Duration::from_secs(30);

/// Whether `url` is one the pool serves: `http://` without credentials.
pub fn serves(url: &Url) -> bool {
    url.scheme() == "http" && url.username().is_empty() && url.password().is_none()
}

/// How often idle connections of every host are checked for age, so a
/// host that is never asked again does not keep its connections open.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

fn connect_error(e: io::Error) -> HttpError {
    HttpError::Connect(format!("tcp connect error: {e}"))
}

/// When a name resolves to several addresses, the wait before trying the
/// next one alongside (RFC 8305's "connection attempt delay").
const NEXT_ADDRESS_AFTER: Duration = Duration::from_millis(250);

/// Idle connections per `host:port`, and how to make new ones.
pub struct Pool {
    hosts: Mutex<Hosts>,
    max_idle: usize,
    connect_timeout: Duration,
    read_timeout: Duration,
    user_agent: HeaderValue,
}

struct Hosts {
    by_authority: HashMap<Box<str>, Arc<Host>>,
    swept: Instant,
}

/// One origin's idle connections.
struct Host {
    idle: Mutex<Vec<Idle>>,
    max_idle: usize,
}

struct Idle {
    sender: SendRequest<Empty<Bytes>>,
    since: Instant,
}

impl Pool {
    pub fn new(cfg: &ClientConfig) -> Result<Self, ClientError> {
        let user_agent = HeaderValue::from_str(&cfg.user_agent)
            .map_err(|_| ClientError(format!("bad User-Agent {:?}", cfg.user_agent)))?;
        Ok(Self {
            hosts: Mutex::new(Hosts {
                by_authority: HashMap::new(),
                swept: Instant::now(),
            }),
            max_idle: cfg.pool_per_host.max(1),
            connect_timeout: cfg.connect_timeout,
            read_timeout: cfg.read_timeout,
            user_agent,
        })
    }

    /// Sends a GET for `url` with `headers` and waits for the response head.
    pub async fn get(&self, url: &Url, headers: &HeaderMap) -> Result<Response, HttpError> {
        // "host:port" as the URL spells it (no port when it is the default),
        // which is both the pool's key and the Host header.
        let authority = &url[Position::BeforeHost..Position::AfterPort];
        let target = &url[Position::BeforePath..Position::AfterQuery];
        let uri = hyper::Uri::try_from(target)
            .map_err(|e| HttpError::Request(format!("bad request target {target:?}: {e}")))?;
        let host_header = HeaderValue::from_str(authority)
            .map_err(|e| HttpError::Request(format!("bad host {authority:?}: {e}")))?;
        let host = self.host(authority);
        loop {
            let (mut sender, reused) = match host.take().await {
                Some(s) => (s, true),
                None => (self.connect(url).await?, false),
            };
            let mut req = hyper::Request::new(Empty::new());
            *req.uri_mut() = uri.clone();
            let h = req.headers_mut();
            h.clone_from(headers);
            if !h.contains_key(HOST) {
                h.insert(HOST, host_header.clone());
            }
            if !h.contains_key(USER_AGENT) {
                h.insert(USER_AGENT, self.user_agent.clone());
            }
            if !h.contains_key(ACCEPT) {
                h.insert(ACCEPT, HeaderValue::from_static("*/*"));
            }
            let sent = tokio::time::timeout(self.read_timeout, sender.try_send_request(req)).await;
            match sent {
                Err(_) => {
                    return Err(HttpError::Timeout(format!(
                        "no response within {:?}",
                        self.read_timeout
                    )))
                }
                Ok(Ok(resp)) => {
                    let mut resp = Response {
                        inner: resp,
                        conn: Some((sender, host)),
                        read_timeout: self.read_timeout,
                    };
                    resp.release_if_done();
                    return Ok(resp);
                }
                Ok(Err(e)) if reused && e.message().is_some() => continue,
                Ok(Err(e)) => return Err(HttpError::Network(error_chain(e.error()))),
            }
        }
    }

    fn host(&self, authority: &str) -> Arc<Host> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        if hosts.swept.elapsed() > SWEEP_EVERY {
            hosts.swept = Instant::now();
            hosts.by_authority.retain(|_, host| {
                let mut idle = host.idle.lock().unwrap_or_else(|e| e.into_inner());
                idle.retain(|i| !i.sender.is_closed() && i.since.elapsed() <= IDLE_FOR);
                // Kept while a transfer holds it or it has connections.
                !idle.is_empty() || Arc::strong_count(host) > 1
            });
        }
        if let Some(h) = hosts.by_authority.get(authority) {
            return h.clone();
        }
        let h = Arc::new(Host {
            idle: Mutex::default(),
            max_idle: self.max_idle,
        });
        hosts.by_authority.insert(authority.into(), h.clone());
        h
    }

    async fn connect(&self, url: &Url) -> Result<SendRequest<Empty<Bytes>>, HttpError> {
        let port = url.port_or_known_default().unwrap_or(80);
        let connect = async {
            match url.host() {
                Some(url::Host::Ipv4(ip)) => {
                    TcpStream::connect((ip, port)).await.map_err(connect_error)
                }
                Some(url::Host::Ipv6(ip)) => {
                    TcpStream::connect((ip, port)).await.map_err(connect_error)
                }
                Some(url::Host::Domain(name)) => {
                    let addrs: Vec<_> = tokio::net::lookup_host((name, port))
                        .await
                        .map_err(|e| super::dns_error(&e.to_string()))?
                        .collect();
                    connect_any(addrs).await.map_err(connect_error)
                }
                None => Err(HttpError::Request("the URL has no host".into())),
            }
        };
        let stream = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| {
                HttpError::Timeout(format!("no connection within {:?}", self.connect_timeout))
            })??;
        // Small requests and responses: do not wait to fill a segment.
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| HttpError::Network(error_chain(&e)))?;
        // The connection's own task: it ends when the server closes the
        // connection or when the last sender is dropped.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }
}

/// Connects to the first of `addrs` that answers. Addresses are tried in
/// the resolver's order, the next one started alongside whenever
/// [`NEXT_ADDRESS_AFTER`] passes without a connection (or at once when an
/// attempt fails), so an unreachable IPv6 address costs a quarter of a
/// second rather than the whole connect timeout.
async fn connect_any(addrs: Vec<SocketAddr>) -> io::Result<TcpStream> {
    let mut addrs = addrs.into_iter();
    let mut attempts = tokio::task::JoinSet::new();
    let mut last_error = io::Error::other("the name resolved to no address");
    loop {
        if attempts.is_empty() {
            let Some(addr) = addrs.next() else {
                return Err(last_error);
            };
            attempts.spawn(TcpStream::connect(addr));
        }
        tokio::select! {
            Some(done) = attempts.join_next() => match done {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) => last_error = e,
                Err(e) => last_error = io::Error::other(e),
            },
            _ = tokio::time::sleep(NEXT_ADDRESS_AFTER), if addrs.len() > 0 => {
                if let Some(addr) = addrs.next() {
                    attempts.spawn(TcpStream::connect(addr));
                }
            }
        }
    }
}

impl Host {
    /// The newest idle connection that is ready for a request, if any.
    async fn take(&self) -> Option<SendRequest<Empty<Bytes>>> {
        loop {
            let idle = {
                let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
                let top = idle.pop()?;
                if top.since.elapsed() > IDLE_FOR {
                    // The rest are older still.
                    idle.clear();
                    return None;
                }
                top
            };
            let mut sender = idle.sender;
            // Right after a body ends hyper may not have marked the
            // connection ready yet; a closed one answers with an error.
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    fn put(&self, sender: SendRequest<Empty<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }
}

/// A response from the pool. Its connection goes back to the pool when
/// the body has been read to the end.
pub struct Response {
    inner: hyper::Response<Incoming>,
    conn: Option<(SendRequest<Empty<Bytes>>, Arc<Host>)>,
    read_timeout: Duration,
}

impl Response {
    pub fn status(&self) -> StatusCode {
        self.inner.status()
    }

    pub fn headers(&self) -> &HeaderMap {
        self.inner.headers()
    }

    pub fn content_length(&self) -> Option<u64> {
        self.inner.body().size_hint().exact()
    }

    pub async fn chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        loop {
            let frame = tokio::time::timeout(self.read_timeout, self.inner.body_mut().frame())
                .await
                .map_err(|_| HttpError::Timeout(format!("no data for {:?}", self.read_timeout)))?;
            match frame {
                None => {
                    self.release_if_done();
                    return Ok(None);
                }
                Some(Err(e)) => return Err(HttpError::Network(error_chain(&e))),
                Some(Ok(frame)) => {
                    self.release_if_done();
                    // Trailers carry nothing for the file.
                    if let Ok(data) = frame.into_data() {
                        if !data.is_empty() {
                            return Ok(Some(data));
                        }
                    }
                }
            }
        }
    }

    /// Gives the connection back as soon as hyper has seen the whole body,
    /// so the next request need not wait for this one's caller.
    fn release_if_done(&mut self) {
        if self.inner.body().is_end_stream() {
            if let Some((sender, host)) = self.conn.take() {
                host.put(sender);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_name_with_several_addresses_connects_to_one_that_answers() {
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let refused = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let stream = connect_any(vec![refused, live.local_addr().unwrap()])
            .await
            .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), live.local_addr().unwrap());
        let err = connect_any(vec![refused]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    }
}
