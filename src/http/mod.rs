//! The job's one HTTP client, for files, pages, metadata and robots.txt.
//!
//! Two engines sit behind it. Plain `http://` goes over HTTP/1.1 through
//! `plain`: hyper's connection API with a keep-alive pool of our own.
//! Everything else (TLS, HTTP/2, proxies from the environment, credentials
//! in the URL) goes through reqwest. Neither decompresses, so the bytes on
//! disk are the bytes the server sent and byte offsets stay true for range
//! resume.
//!
//! Why two: in a profile of 10,000 small files from nginx, reqwest's layers
//! above hyper (the `Url` to `Uri` conversion with IDNA, per-request header
//! merging, the tower redirect and retry services, hyper-util's pool) were
//! 27% of the runtime thread, the thread that bounds how many files a
//! second haul fetches. `plain` keeps hyper for the protocol and replaces
//! only those layers. TLS and HTTP/2 stay with reqwest, where the
//! handshake and the cipher cost far more than they do.
//!
//! Redirects are followed here, for both engines, with reqwest's rules: at
//! most [`MAX_REDIRECTS`], `http` and `https` only, `Referer` set, and the
//! credentials (`Authorization`, `Cookie`…) dropped once the chain leaves
//! the origin it started on. The user's own `-H` headers are dropped there
//! too, as curl does, unless `--location-trusted`: an API key sent to a
//! host the user named must not follow a redirect to one they did not.
//! reqwest's redirect policy cannot drop a header it does not know to be
//! sensitive, so reqwest is asked not to follow redirects at all.

mod error;
mod plain;

pub use error::HttpError;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{
    HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, COOKIE, LOCATION, PROXY_AUTHORIZATION,
    REFERER, WWW_AUTHENTICATE,
};
use reqwest::{redirect, StatusCode};
use url::Url;

/// Redirects followed before giving up.
pub const MAX_REDIRECTS: usize = 10;

/// Error bodies read (and thrown away) so the connection can be reused.
const DRAIN_LIMIT: usize = 64 * 1024;

/// Settings of the shared HTTP client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Idle time allowed between bytes.
    pub read_timeout: Duration,
    /// `User-Agent`.
    pub user_agent: String,
    /// Extra request headers.
    pub headers: HeaderMap,
    /// Idle connections kept per host; match the per-host limit.
    pub pool_per_host: usize,
    /// Fetch plain `http://` through `plain` rather than reqwest. It is
    /// off anyway when the environment names a proxy.
    pub plain_http1: bool,
    /// Send the user's headers on a redirect to another host too.
    pub location_trusted: bool,
    /// More trusted roots, PEM (`--cacert`, `SSL_CERT_FILE`), on top of
    /// the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// Accept any certificate (`--insecure`).
    pub insecure: bool,
}

/// How many certificates a PEM bundle holds; an error when it is not one.
pub fn check_pem(pem: &[u8]) -> Result<usize, String> {
    match reqwest::Certificate::from_pem_bundle(pem) {
        Ok(certs) if certs.is_empty() => Err("no certificate in it".into()),
        Ok(certs) => Ok(certs.len()),
        Err(e) => Err(error_chain(&e)),
    }
}

/// Why the shared client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the HTTP client: {0}")]
pub struct ClientError(String);

/// The job's HTTP client. Clones share the connection pools.
#[derive(Clone)]
pub struct Client {
    web: Arc<Web>,
    plain: Option<Arc<plain::Pool>>,
    /// The user's headers (`-H`), sent with every request.
    headers: Arc<HeaderMap>,
    location_trusted: bool,
}

/// The reqwest client, built when the first request needs it when the
/// plain pool is there: building it reads the system's root certificates
/// (150 files here), which delayed a plain-HTTP job's first request by
/// about 20 ms.
struct Web {
    cfg: ClientConfig,
    client: tokio::sync::OnceCell<reqwest::Client>,
}

impl Web {
    async fn client(&self) -> Result<&reqwest::Client, HttpError> {
        self.client
            .get_or_try_init(|| async {
                let cfg = self.cfg.clone();
                tokio::task::spawn_blocking(move || build_web(&cfg))
                    .await
                    .map_err(|e| ClientError(e.to_string()))?
            })
            .await
            .map_err(|e| HttpError::Request(e.to_string()))
    }
}

fn build_web(cfg: &ClientConfig) -> Result<reqwest::Client, ClientError> {
    // reqwest is built without a TLS crypto provider of its own; ring is
    // installed process-wide (a second call keeps the first provider).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder();
    if let Some(pem) = &cfg.ca_pem {
        let certs =
            reqwest::Certificate::from_pem_bundle(pem).map_err(|e| ClientError(error_chain(&e)))?;
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .danger_accept_invalid_certs(cfg.insecure)
        .user_agent(cfg.user_agent.clone())
        // Followed by `Client::get`, for both engines alike.
        .redirect(redirect::Policy::none())
        .connect_timeout(cfg.connect_timeout)
        .read_timeout(cfg.read_timeout)
        .pool_max_idle_per_host(cfg.pool_per_host)
        .pool_idle_timeout(plain::IDLE_FOR)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| ClientError(error_chain(&e)))
}

impl Client {
    /// Builds the one client the whole job uses.
    pub fn new(cfg: &ClientConfig) -> Result<Self, ClientError> {
        let plain = (cfg.plain_http1 && !proxy_in_env())
            .then(|| plain::Pool::new(cfg).map(Arc::new))
            .transpose()?;
        // Without the plain pool every request needs reqwest: build it now,
        // so a setup error stops the job before it starts.
        let client = match plain {
            Some(_) => tokio::sync::OnceCell::new(),
            None => tokio::sync::OnceCell::new_with(Some(build_web(cfg)?)),
        };
        Ok(Self {
            web: Arc::new(Web {
                cfg: cfg.clone(),
                client,
            }),
            plain,
            headers: Arc::new(cfg.headers.clone()),
            location_trusted: cfg.location_trusted,
        })
    }

    /// GETs `url` with the user's headers and `extra`, following redirects.
    pub async fn get(
        &self,
        url: &Url,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<Response, HttpError> {
        let mut headers = Cow::Borrowed(&*self.headers);
        if !extra.is_empty() {
            let h = headers.to_mut();
            for (name, value) in extra {
                h.insert(name, value.clone());
            }
        }
        let mut url = Cow::Borrowed(url);
        let mut hops = 0;
        loop {
            let resp = match self.plain.as_ref().filter(|_| plain::serves(&url)) {
                Some(pool) => {
                    Response::Plain(pool.get(&url, &headers).await?, url.clone().into_owned())
                }
                None => Response::Web(
                    self.web
                        .client()
                        .await?
                        .get(url.as_ref().clone())
                        .headers(headers.as_ref().clone())
                        .send()
                        .await
                        .map_err(from_reqwest)?,
                ),
            };
            let Some(next) = redirect_target(&url, resp.status(), resp.headers())? else {
                return Ok(resp);
            };
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(HttpError::Redirect(format!(
                    "more than {MAX_REDIRECTS} redirects"
                )));
            }
            let h = headers.to_mut();
            if !same_origin(&url, &next) {
                for name in [AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, WWW_AUTHENTICATE] {
                    h.remove(name);
                }
                h.remove("cookie2");
                if !self.location_trusted {
                    for name in self.headers.keys() {
                        h.remove(name);
                    }
                }
            }
            match referer(&url, &next) {
                Some(r) => h.insert(REFERER, r),
                None => h.remove(REFERER),
            };
            // Read the little a redirect carries, so its connection is reused.
            resp.drain().await;
            url = Cow::Owned(next);
        }
    }
}

/// Whether the environment names a proxy that reqwest would use for
/// `http://`; then every request goes through reqwest.
fn proxy_in_env() -> bool {
    ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// Where a response redirects to, if it is a redirect reqwest would follow.
fn redirect_target(
    url: &Url,
    status: StatusCode,
    headers: &HeaderMap,
) -> Result<Option<Url>, HttpError> {
    if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
        return Ok(None);
    }
    let Some(location) = headers.get(LOCATION) else {
        return Ok(None);
    };
    let location = std::str::from_utf8(location.as_bytes())
        .map_err(|_| HttpError::Redirect("the Location header is not UTF-8".into()))?;
    let next = url
        .join(location)
        .map_err(|e| HttpError::Redirect(format!("bad Location {location:?}: {e}")))?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(HttpError::Redirect(format!(
            "redirect to unsupported scheme {}:",
            next.scheme()
        )));
    }
    Ok(Some(next))
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// The `Referer` for a redirect from `from` to `to`: `from` without its
/// credentials and fragment, and none from `https` to `http`.
fn referer(from: &Url, to: &Url) -> Option<HeaderValue> {
    if from.scheme() == "https" && to.scheme() == "http" {
        return None;
    }
    let mut r = from.clone();
    let _ = r.set_username("");
    let _ = r.set_password(None);
    r.set_fragment(None);
    HeaderValue::from_str(r.as_str()).ok()
}

/// A response whose body is still to be read.
pub enum Response {
    /// From reqwest.
    Web(reqwest::Response),
    /// From the plain pool, with the URL it finally came from.
    Plain(plain::Response, Url),
}

impl Response {
    /// The status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Web(r) => r.status(),
            Self::Plain(r, _) => r.status(),
        }
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        match self {
            Self::Web(r) => r.headers(),
            Self::Plain(r, _) => r.headers(),
        }
    }

    /// The body's length, when the response gives it.
    pub fn content_length(&self) -> Option<u64> {
        match self {
            Self::Web(r) => r.content_length(),
            Self::Plain(r, _) => r.content_length(),
        }
    }

    /// The URL the response came from, after redirects.
    pub fn url(&self) -> &Url {
        match self {
            Self::Web(r) => r.url(),
            Self::Plain(_, url) => url,
        }
    }

    /// The next piece of the body; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, HttpError> {
        match self {
            Self::Web(r) => r.chunk().await.map_err(from_reqwest),
            Self::Plain(r, _) => r.chunk().await,
        }
    }

    /// Reads a little of a response that is not wanted, so its connection
    /// can be reused.
    pub async fn drain(mut self) {
        let mut read = 0;
        while read < DRAIN_LIMIT {
            match self.chunk().await {
                Ok(Some(c)) => read += c.len(),
                _ => break,
            }
        }
    }
}

fn from_reqwest(e: reqwest::Error) -> HttpError {
    let (timeout, redirect, connect, builder) = (
        e.is_timeout(),
        e.is_redirect(),
        e.is_connect(),
        e.is_builder(),
    );
    let e = e.without_url();
    let msg = error_chain(&e);
    if timeout {
        HttpError::Timeout(msg)
    } else if redirect {
        HttpError::Redirect(msg)
    } else if connect {
        connect_kind(&e, msg)
    } else if builder {
        HttpError::Request(msg)
    } else {
        HttpError::Network(msg)
    }
}

/// An error and its sources, `: `-separated, repeats dropped.
/// The error for a name that did not resolve; `EAI_AGAIN` ("temporary
/// failure") may resolve next time, a name that does not exist will not.
pub(crate) fn dns_error(detail: &str) -> HttpError {
    HttpError::Dns {
        transient: detail.contains("Temporary failure") || detail.contains("try again"),
        detail: detail.to_string(),
    }
}

/// Tells apart the reasons reqwest gives one error kind for: a name that
/// did not resolve, a certificate that is not trusted, a TLS handshake that
/// failed otherwise, and a connection refused or unreachable.
fn connect_kind(e: &reqwest::Error, msg: String) -> HttpError {
    let mut src: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = src {
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return match tls {
                rustls::Error::InvalidCertificate(c) => HttpError::Certificate(format!("{c:?}")),
                other => HttpError::Tls(other.to_string()),
            };
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return match tls {
                    rustls::Error::InvalidCertificate(c) => {
                        HttpError::Certificate(format!("{c:?}"))
                    }
                    other => HttpError::Tls(other.to_string()),
                };
            }
        }
        src = s.source();
    }
    // The chain above holds rustls's error where reqwest keeps it; where a
    // layer has flattened it into text, its text is all there is.
    if msg.contains("invalid peer certificate") {
        return HttpError::Certificate(msg);
    }
    if msg.contains("received corrupt message") || msg.contains("InvalidContentType") {
        return HttpError::Tls(msg);
    }
    if msg.contains("dns error") || msg.contains("failed to lookup address") {
        return dns_error(&msg);
    }
    HttpError::Connect(msg)
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        src = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use haul_origin::{expected, Config, Origin};

    use super::*;

    fn config(plain_http1: bool, read_timeout: Duration) -> ClientConfig {
        ClientConfig {
            connect_timeout: Duration::from_secs(5),
            read_timeout,
            user_agent: "haul-test".into(),
            headers: HeaderMap::new(),
            pool_per_host: 4,
            plain_http1,
            location_trusted: false,
            ca_pem: None,
            insecure: false,
        }
    }

    fn client(plain_http1: bool, read_timeout: Duration) -> Client {
        Client::new(&config(plain_http1, read_timeout)).unwrap()
    }

    fn engines() -> [(&'static str, Client); 2] {
        let t = Duration::from_secs(5);
        [("plain", client(true, t)), ("reqwest", client(false, t))]
    }

    async fn body(mut resp: Response) -> Result<Vec<u8>, HttpError> {
        let mut out = Vec::new();
        while let Some(c) = resp.chunk().await? {
            out.extend_from_slice(&c);
        }
        Ok(out)
    }

    fn url(origin: &Origin, path: &str) -> Url {
        Url::parse(&origin.url(path)).unwrap()
    }

    #[tokio::test]
    async fn both_engines_answer_alike_through_a_redirect() {
        let origin = Origin::start(Config::default()).await.unwrap();
        for (name, c) in engines() {
            let resp = c
                .get(
                    &url(&origin, "/redirect?to=%2Ffile%2Fa.bin%3Fsize%3D5000"),
                    &[],
                )
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{name}");
            assert_eq!(resp.url().path(), "/file/a.bin", "{name}");
            assert_eq!(resp.content_length(), Some(5000), "{name}");
            assert_eq!(body(resp).await.unwrap(), expected("/file/a.bin?size=5000"));
        }
        // A name, resolved (localhost may come first as ::1, where nothing
        // listens).
        let by_name =
            Url::parse(&format!("http://localhost:{}/file/n.bin", origin.port())).unwrap();
        let resp = client(true, Duration::from_secs(5))
            .get(&by_name, &[])
            .await
            .unwrap();
        assert_eq!(body(resp).await.unwrap(), expected("/file/n.bin"));
        // Credentials in the URL: the plain client hands this one to reqwest
        // (built on this first use), which sends them as Basic auth.
        let mut with_user = url(&origin, "/file/u.bin");
        with_user.set_username("user").unwrap();
        with_user.set_password(Some("pass")).unwrap();
        let resp = client(true, Duration::from_secs(5))
            .get(&with_user, &[])
            .await
            .unwrap();
        assert!(matches!(resp, Response::Web(_)));
        assert_eq!(body(resp).await.unwrap(), expected("/file/u.bin"));
        let log = origin.log();
        assert_eq!(
            log.last().unwrap().authorization.as_deref(),
            Some("Basic dXNlcjpwYXNz")
        );
        let agents: Vec<_> = log.iter().map(|r| r.user_agent.as_deref()).collect();
        assert_eq!(agents, vec![Some("haul-test"); 6]);
        origin.stop().await;
    }

    #[tokio::test]
    async fn both_engines_send_extra_headers_and_stop_redirect_loops() {
        let origin = Origin::start(Config::default()).await.unwrap();
        for (name, c) in engines() {
            let range = [(
                reqwest::header::RANGE,
                HeaderValue::from_static("bytes=100-"),
            )];
            let resp = c.get(&url(&origin, "/file/r.bin"), &range).await.unwrap();
            assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{name}");
            assert_eq!(body(resp).await.unwrap(), expected("/file/r.bin")[100..]);
            let err = match c.get(&url(&origin, "/redirect-loop/0"), &[]).await {
                Err(e) => e,
                Ok(r) => panic!("{name}: {}", r.status()),
            };
            assert!(matches!(err, HttpError::Redirect(_)), "{name}: {err}");
            assert!(err.to_string().contains("more than 10 redirects"), "{err}");
        }
        let hops = origin.requests("/redirect-loop/0")
            + (1..=10)
                .map(|n| origin.requests(&format!("/redirect-loop/{n}")))
                .sum::<u64>();
        assert_eq!(hops, 22);
        origin.stop().await;
    }

    #[test]
    fn a_name_that_does_not_exist_is_not_retried_a_resolver_hiccup_is() {
        let gone = dns_error("failed to lookup address information: Name or service not known");
        assert!(
            matches!(
                gone,
                HttpError::Dns {
                    transient: false,
                    ..
                }
            ),
            "{gone}"
        );
        let gone = crate::fetch::FetchError::from(gone);
        assert_eq!(gone.reason(), "host name not found");
        assert!(!gone.is_transient());
        let busy =
            dns_error("failed to lookup address information: Temporary failure in name resolution");
        assert!(
            matches!(
                busy,
                HttpError::Dns {
                    transient: true,
                    ..
                }
            ),
            "{busy}"
        );
    }

    #[tokio::test]
    async fn both_engines_keep_credentials_at_home() {
        let origin = Origin::start(Config::default()).await.unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer s"));
        headers.insert(COOKIE, HeaderValue::from_static("k=v"));
        let away = origin.url_host2("/file/away.bin");
        let hop = format!(
            "/redirect?to={}",
            away.replace(':', "%3A").replace('/', "%2F")
        );
        for plain_http1 in [true, false] {
            let c = Client::new(&ClientConfig {
                headers: headers.clone(),
                ..config(plain_http1, Duration::from_secs(5))
            })
            .unwrap();
            let resp = c.get(&url(&origin, &hop), &[]).await.unwrap();
            assert_eq!(resp.url().as_str(), away);
            assert_eq!(body(resp).await.unwrap(), expected("/file/away.bin"));
        }
        let log = origin.log();
        for r in &log {
            let home = r.path == "/redirect";
            assert_eq!(r.authorization.is_some(), home, "{r:?}");
            assert_eq!(r.cookie.is_some(), home, "{r:?}");
        }
        assert_eq!(log.len(), 4);
        origin.stop().await;
    }

    #[tokio::test]
    async fn both_engines_time_out_on_a_stalled_body() {
        let origin = Origin::start(Config::default()).await.unwrap();
        for plain in [true, false] {
            let c = client(plain, Duration::from_millis(200));
            let resp = c
                .get(
                    &url(&origin, "/drip/s.bin?size=3000&chunk=1000&delay_ms=1000"),
                    &[],
                )
                .await
                .unwrap();
            let err = body(resp).await.unwrap_err();
            assert!(matches!(err, HttpError::Timeout(_)), "plain={plain}: {err}");
        }
        origin.stop().await;
    }

    #[tokio::test]
    async fn the_plain_pool_keeps_connections_alive_until_the_server_closes_them() {
        let origin = Origin::start(Config::default()).await.unwrap();
        let c = client(true, Duration::from_secs(5));
        for i in 0..20 {
            let path = format!("/file/k{i}.bin?size=2000");
            let resp = c.get(&url(&origin, &path), &[]).await.unwrap();
            assert_eq!(body(resp).await.unwrap(), expected(&path));
        }
        assert_eq!(origin.stats().connections, 1);
        // Each answer closes its connection: none is reused, none fails.
        for i in 0..5 {
            let path = format!("/file/c{i}.bin?size=2000&close=1");
            let resp = c.get(&url(&origin, &path), &[]).await.unwrap();
            assert_eq!(body(resp).await.unwrap(), expected(&path));
        }
        // (The first of them went on the kept connection.)
        assert_eq!(origin.stats().connections, 5);
        // A body left unread closes its connection too.
        let resp = c.get(&url(&origin, "/file/left.bin"), &[]).await.unwrap();
        drop(resp);
        let resp = c.get(&url(&origin, "/file/next.bin"), &[]).await.unwrap();
        assert_eq!(body(resp).await.unwrap(), expected("/file/next.bin"));
        assert_eq!(origin.stats().connections, 7);
        origin.stop().await;
    }

    #[tokio::test]
    async fn the_plain_pool_reuses_concurrent_connections_up_to_its_idle_limit() {
        let origin = Origin::start(Config {
            latency: Duration::from_millis(50),
            ..Config::default()
        })
        .await
        .unwrap();
        let c = client(true, Duration::from_secs(5));
        for (tag, connections) in [("a", 8), ("b", 12)] {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..8 {
                let (c, u) = (c.clone(), url(&origin, &format!("/file/{tag}{i}.bin")));
                set.spawn(async move {
                    let resp = c.get(&u, &[]).await.unwrap();
                    assert_eq!(body(resp).await.unwrap(), expected(u.path()));
                });
            }
            while let Some(done) = set.join_next().await {
                done.unwrap();
            }
            // Eight at once need eight connections; four stay idle (the
            // limit), so the second round makes four more.
            assert_eq!(origin.stats().connections, connections, "round {tag}");
        }
        origin.stop().await;
    }

    #[tokio::test]
    async fn both_engines_report_a_refused_connection() {
        // A port nothing listens on: bind one, note it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let u = Url::parse(&format!("http://127.0.0.1:{port}/x")).unwrap();
        for (name, c) in engines() {
            let err = match c.get(&u, &[]).await {
                Err(e) => e,
                Ok(r) => panic!("{name}: {}", r.status()),
            };
            assert!(matches!(err, HttpError::Connect(_)), "{name}: {err}");
        }
    }
}
