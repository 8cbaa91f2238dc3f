//! Robots admission: robots.txt of every site a crawl touches, fetched once
//! each through the job's client and honoured right before each request,
//! pages and files alike, since the rules are only known once the site's
//! robots.txt has been read. A `Crawl-delay` goes to the host's rate
//! limiter, the same one `--rate` and `--wait` use.
//!
//! How the answer is taken follows RFC 9309 §2.3.1:
//!
//! * **2xx**: the body is parsed.
//! * **4xx** (*unavailable*), and a redirect chain that cannot be followed
//!   (§2.3.1.2 allows taking that as unavailable): no rules, everything may
//!   be fetched.
//! * **5xx, a network error, a timeout** (*unreachable*): the RFC has the
//!   crawler assume a full disallow, and so does haul, but it says so: each
//!   request to the site is refused with [`Refusal::Unreachable`], which the
//!   job counts as a failure (not a skip), so the exit status and the failed
//!   list tell the user, and the next run asks again. 408 and 429 are taken
//!   this way too, as the item retry loop takes them: they say "not now",
//!   not "there are no rules".
//!
//! An unreachable robots.txt is first retried like any request (backoff,
//! `Retry-After` honoured), but only [`RETRIES`] times and with short waits:
//! every request to the site waits on this one fetch, and a site that is
//! down should cost the crawl seconds, not the minutes that `--retries` for
//! each of its files would. The outcome is then kept for the rest of the run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use reqwest::header::RETRY_AFTER;
use url::Url;

use crate::crawl::Robots;
use crate::http::HttpError;
use crate::schedule::{parse_retry_after, Backoff};

/// Retries of a robots.txt fetch that failed for a reason that may pass.
const RETRIES: u32 = 3;

/// Waits between those retries: short (at most 0.25, 0.5 and 1 s, with
/// jitter), and a `Retry-After` is honoured up to 10 s.
const BACKOFF: Backoff = Backoff {
    base: Duration::from_millis(250),
    cap: Duration::from_secs(2),
    max_retry_after: Duration::from_secs(10),
};

/// robots.txt of every site a crawl touches, fetched once each.
pub struct RobotsCache {
    client: crate::http::Client,
    agent: String,
    backoff: Backoff,
    sites: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Arc<Verdict>>>>>,
}

/// Why a request was refused before it was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// robots.txt does not allow the request: not ours to fetch.
    #[error("disallowed by {0}")]
    Disallowed(
        /// The robots.txt URL.
        String,
    ),
    /// robots.txt could not be had (5xx, network error, timeout, after
    /// retries), so nothing on the site may be fetched in this run.
    #[error("robots.txt unreachable: {robots}: {error}")]
    Unreachable {
        /// The robots.txt URL.
        robots: String,
        /// What went wrong fetching it, the last time.
        error: String,
    },
}

/// What a site's robots.txt came to, kept for the run.
#[derive(Debug)]
enum Verdict {
    /// The rules to follow (none when robots.txt is unavailable).
    Rules(Robots),
    /// Unreachable: why, with the number of attempts.
    Unreachable(String),
}

/// What one attempt at robots.txt came to.
#[derive(Debug)]
enum Attempt {
    /// The rules: parsed from a 2xx, or none at all (unavailable).
    Rules(Robots),
    /// Unreachable, and it may pass: worth another try after the wait the
    /// server asked for, if it asked.
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
    /// Unreachable, and trying again now would not change it (a name that
    /// does not exist, a TLS or certificate failure).
    Unreachable(String),
}

fn site(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// Most of robots.txt read; RFC 9309 §2.5 asks parsers to read at least
/// 500 KiB, and rules past the limit are ignored.
const ROBOTS_LIMIT: usize = 512 * 1024;

async fn read_robots(mut resp: crate::http::Response) -> Result<String, HttpError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        body.extend_from_slice(&chunk);
        if body.len() >= ROBOTS_LIMIT {
            body.truncate(ROBOTS_LIMIT);
            break;
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// How a failed request for robots.txt is taken.
fn from_http(e: &HttpError) -> Attempt {
    match e {
        // RFC 9309 §2.3.1.2: past the redirects a crawler follows, it may
        // take robots.txt as unavailable; a Location that cannot be
        // followed is no better.
        HttpError::Redirect(_) => Attempt::Rules(Robots::allow_all()),
        HttpError::Connect(_)
        | HttpError::Timeout(_)
        | HttpError::Network(_)
        | HttpError::Dns {
            transient: true, ..
        } => Attempt::Retry {
            error: e.to_string(),
            retry_after: None,
        },
        HttpError::Dns { .. }
        | HttpError::Tls(_)
        | HttpError::Certificate(_)
        | HttpError::Request(_) => Attempt::Unreachable(e.to_string()),
    }
}

/// How a status other than 2xx is taken; `retry_after` is the response's
/// `Retry-After` header.
fn from_status(status: reqwest::StatusCode, retry_after: Option<&str>) -> Attempt {
    let code = status.as_u16();
    if status.is_server_error() || matches!(code, 408 | 429) {
        let reason = status
            .canonical_reason()
            .map(|r| format!(" {r}"))
            .unwrap_or_default();
        return Attempt::Retry {
            error: format!("HTTP {code}{reason}"),
            retry_after: retry_after.and_then(|v| parse_retry_after(v, SystemTime::now())),
        };
    }
    // 4xx, and a 1xx or 3xx the client did not follow.
    Attempt::Rules(Robots::allow_all())
}

impl RobotsCache {
    /// A cache that fetches with `client` and matches groups for `agent`.
    pub fn new(client: crate::http::Client, agent: &str) -> Self {
        Self {
            client,
            agent: agent.to_string(),
            backoff: BACKOFF,
            sites: Mutex::default(),
        }
    }

    /// One request for robots.txt, redirects followed by the client.
    async fn attempt(&self, url: &Url) -> Attempt {
        let resp = match self.client.get(url, &[]).await {
            Ok(resp) => resp,
            Err(e) => return from_http(&e),
        };
        let status = resp.status();
        if status.is_success() {
            return match read_robots(resp).await {
                Ok(body) => Attempt::Rules(Robots::parse(&body, &self.agent)),
                Err(e) => from_http(&e),
            };
        }
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Read the little an error carries, so its connection is reused.
        resp.drain().await;
        from_status(status, retry_after.as_deref())
    }

    /// robots.txt at `url`, retried while it is unreachable for a reason
    /// that may pass.
    async fn fetch(&self, url: &Url) -> Verdict {
        let mut attempts = 0;
        let error = loop {
            attempts += 1;
            match self.attempt(url).await {
                Attempt::Rules(robots) => return Verdict::Rules(robots),
                Attempt::Retry { retry_after, .. } if attempts <= RETRIES => {
                    tokio::time::sleep(self.backoff.delay(attempts, retry_after)).await;
                }
                Attempt::Retry { error, .. } | Attempt::Unreachable(error) => break error,
            }
        };
        Verdict::Unreachable(if attempts > 1 {
            format!("{error} (after {attempts} attempts)")
        } else {
            error
        })
    }

    /// The verdict on `key`'s robots.txt, fetched by the first caller;
    /// concurrent callers wait on that one fetch.
    async fn verdict(&self, key: &str) -> Arc<Verdict> {
        let cell = {
            let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
            sites.entry(key.to_owned()).or_default().clone()
        };
        cell.get_or_init(|| async {
            Arc::new(match Url::parse(&format!("{key}/robots.txt")) {
                Ok(url) => self.fetch(&url).await,
                Err(e) => Verdict::Unreachable(format!("not a URL: {e}")),
            })
        })
        .await
        .clone()
    }

    /// Checks `url` against its site's robots.txt; says the site's
    /// `Crawl-delay`, if it sets one, for the host's rate limiter
    /// (`schedule::rate`), which spaces the requests.
    pub async fn admit(&self, url: &Url) -> Result<Option<Duration>, Refusal> {
        let key = site(url);
        let verdict = self.verdict(&key).await;
        let robots = match &*verdict {
            Verdict::Rules(robots) => robots,
            Verdict::Unreachable(error) => {
                return Err(Refusal::Unreachable {
                    robots: format!("{key}/robots.txt"),
                    error: error.clone(),
                })
            }
        };
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        if !robots.allowed(&path) {
            return Err(Refusal::Disallowed(format!("{key}/robots.txt")));
        }
        Ok(robots.crawl_delay().filter(|d| !d.is_zero()))
    }
}

#[cfg(test)]
mod tests {
    use haul_origin::{Config, Origin};
    use reqwest::StatusCode;

    use super::*;

    /// A cache on a fresh client, with waits too short to notice.
    fn cache(read_timeout: Duration) -> RobotsCache {
        let client = crate::http::Client::new(&crate::http::ClientConfig {
            connect_timeout: Duration::from_secs(5),
            read_timeout,
            user_agent: "haul/0.1".into(),
            headers: reqwest::header::HeaderMap::new(),
            pool_per_host: 4,
            plain_http1: true,
            location_trusted: false,
            ca_pem: None,
            insecure: false,
        })
        .unwrap();
        let mut cache = RobotsCache::new(client, "haul/0.1");
        cache.backoff.base = Duration::from_millis(1);
        cache.backoff.cap = Duration::from_millis(1);
        cache
    }

    fn url(origin: &Origin, path: &str) -> Url {
        Url::parse(&origin.url(path)).unwrap()
    }

    #[test]
    fn statuses_and_errors_are_classified_as_rfc_9309_says() {
        let allows = |a: &Attempt| matches!(a, Attempt::Rules(r) if r == &Robots::allow_all());
        for code in [400, 401, 403, 404, 410, 451, 300, 304] {
            let a = from_status(StatusCode::from_u16(code).unwrap(), None);
            assert!(allows(&a), "{code}: {a:?}");
        }
        for code in [500, 502, 503, 504, 599, 408, 429] {
            let a = from_status(StatusCode::from_u16(code).unwrap(), None);
            assert!(
                matches!(&a, Attempt::Retry { error, retry_after: None } if error.starts_with(&format!("HTTP {code}"))),
                "{code}: {a:?}"
            );
        }
        let a = from_status(StatusCode::SERVICE_UNAVAILABLE, Some("7"));
        assert!(
            matches!(&a, Attempt::Retry { error, retry_after: Some(w) }
                if error == "HTTP 503 Service Unavailable" && *w == Duration::from_secs(7)),
            "{a:?}"
        );

        assert!(allows(&from_http(&HttpError::Redirect(
            "more than 10 redirects".into()
        ))));
        for e in [
            HttpError::Connect("refused".into()),
            HttpError::Timeout("no data".into()),
            HttpError::Network("reset".into()),
            HttpError::Dns {
                detail: "try again".into(),
                transient: true,
            },
        ] {
            assert!(matches!(from_http(&e), Attempt::Retry { .. }), "{e}");
        }
        for e in [
            HttpError::Dns {
                detail: "no such host".into(),
                transient: false,
            },
            HttpError::Tls("bad".into()),
            HttpError::Certificate("self-signed".into()),
            HttpError::Request("bad".into()),
        ] {
            assert!(
                matches!(from_http(&e), Attempt::Unreachable(m) if m == e.to_string()),
                "{e}"
            );
        }
    }

    #[tokio::test]
    async fn rules_missing_file_and_retry_after() {
        let site = tempfile::tempdir().unwrap();
        std::fs::write(
            site.path().join("robots.txt"),
            "User-agent: *\nDisallow: /no\nCrawl-delay: 2\n",
        )
        .unwrap();
        let origin = Origin::start(Config {
            static_root: Some(site.path().to_path_buf()),
            ..Config::default()
        })
        .await
        .unwrap();
        let robots = cache(Duration::from_secs(5));
        let robots_url = origin.url("/robots.txt");
        assert_eq!(
            robots.admit(&url(&origin, "/no/x.jpg")).await,
            Err(Refusal::Disallowed(robots_url))
        );
        assert_eq!(
            robots.admit(&url(&origin, "/yes.jpg")).await,
            Ok(Some(Duration::from_secs(2)))
        );
        assert_eq!(origin.requests("/robots.txt"), 1, "fetched once a site");

        // No robots.txt (404): everything may be fetched.
        let bare = Origin::start(Config::default()).await.unwrap();
        assert_eq!(robots.admit(&url(&bare, "/anything")).await, Ok(None));

        // A 429 with Retry-After: retried after the wait asked for.
        let busy = Origin::start(Config {
            max_in_flight: Some(0),
            throttle_retry_after: 3,
            ..Config::default()
        })
        .await
        .unwrap();
        let a = robots.attempt(&url(&busy, "/robots.txt")).await;
        assert!(
            matches!(a, Attempt::Retry { retry_after: Some(w), .. } if w == Duration::from_secs(3)),
            "{a:?}"
        );
        for o in [origin, bare, busy] {
            o.stop().await;
        }
    }

    #[tokio::test]
    async fn unreachable_robots_txt_is_retried_then_refuses_the_site_once() {
        let origin = Origin::start(Config {
            robots_status: Some(503),
            ..Config::default()
        })
        .await
        .unwrap();
        let robots = Arc::new(cache(Duration::from_secs(5)));
        // Callers that come together wait on one fetch.
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let robots = robots.clone();
                let u = url(&origin, &format!("/file/{i}"));
                tokio::spawn(async move { robots.admit(&u).await })
            })
            .collect();
        for t in tasks {
            match t.await.unwrap() {
                Err(Refusal::Unreachable { robots, error }) => {
                    assert!(robots.ends_with("/robots.txt"), "{robots}");
                    assert_eq!(error, "HTTP 503 Service Unavailable (after 4 attempts)");
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(origin.requests("/robots.txt"), u64::from(RETRIES) + 1);
        assert!(robots.admit(&url(&origin, "/file/x")).await.is_err());
        assert_eq!(
            origin.requests("/robots.txt"),
            u64::from(RETRIES) + 1,
            "the verdict is kept for the run"
        );

        // Nobody listening: refused, retried, then unreachable too.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let dead = Url::parse(&format!("http://127.0.0.1:{port}/a.jpg")).unwrap();
        let refusal = robots.admit(&dead).await.unwrap_err();
        assert!(
            refusal.to_string().starts_with(&format!(
                "robots.txt unreachable: http://127.0.0.1:{port}/robots.txt: cannot connect"
            )),
            "{refusal}"
        );

        // A server that never answers: a timeout.
        let slow = Origin::start(Config {
            latency: Duration::from_secs(5),
            ..Config::default()
        })
        .await
        .unwrap();
        let quick = cache(Duration::from_millis(100));
        let refusal = quick.admit(&url(&slow, "/a.jpg")).await.unwrap_err();
        assert!(
            matches!(&refusal, Refusal::Unreachable { error, .. } if error.starts_with("timed out")),
            "{refusal}"
        );
        for o in [origin, slow] {
            o.stop().await;
        }
    }
}
