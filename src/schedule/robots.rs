//! Robots admission: robots.txt of every site a crawl touches, fetched once
//! each through the job's client and honoured right before each request,
//! pages and files alike, since the rules are only known once the site's
//! robots.txt has been read. A `Crawl-delay` goes to the host's rate
//! limiter, the same one `--rate` and `--wait` use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use url::Url;

use crate::crawl::Robots;

/// robots.txt of every site a crawl touches, fetched once each.
pub struct RobotsCache {
    client: crate::http::Client,
    agent: String,
    sites: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Arc<Robots>>>>>,
}

/// A request robots.txt does not allow.
#[derive(Debug, Clone, thiserror::Error)]
#[error("disallowed by {0}")]
pub struct Disallowed(pub String);

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

async fn read_robots(mut resp: crate::http::Response) -> Option<String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.ok()? {
        body.extend_from_slice(&chunk);
        if body.len() >= ROBOTS_LIMIT {
            body.truncate(ROBOTS_LIMIT);
            break;
        }
    }
    Some(String::from_utf8_lossy(&body).into_owned())
}

impl RobotsCache {
    /// A cache that fetches with `client` and matches groups for `agent`.
    pub fn new(client: crate::http::Client, agent: &str) -> Self {
        Self {
            client,
            agent: agent.to_string(),
            sites: Mutex::default(),
        }
    }

    async fn rules(&self, url: &Url) -> Arc<Robots> {
        let key = site(url);
        let cell = {
            let mut sites = self.sites.lock().unwrap_or_else(|e| e.into_inner());
            sites.entry(key.clone()).or_default().clone()
        };
        cell.get_or_init(|| async {
            let resp = match Url::parse(&format!("{key}/robots.txt")) {
                Ok(robots_url) => self.client.get(&robots_url, &[]).await.ok(),
                Err(_) => None,
            };
            // RFC 9309 §2.3.1: a 4xx means no rules; a 5xx or an unreachable
            // site means "assume everything is disallowed".
            let robots = match resp {
                Some(r) if r.status().is_success() => match read_robots(r).await {
                    Some(body) => Robots::parse(&body, &self.agent),
                    None => Robots::disallow_all(),
                },
                Some(r) if r.status().is_client_error() => Robots::allow_all(),
                _ => Robots::disallow_all(),
            };
            Arc::new(robots)
        })
        .await
        .clone()
    }

    /// Checks `url` against its site's robots.txt; says the site's
    /// `Crawl-delay`, if it sets one, for the host's rate limiter
    /// (`schedule::rate`), which spaces the requests.
    pub async fn admit(&self, url: &Url) -> Result<Option<Duration>, Disallowed> {
        let robots = self.rules(url).await;
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        if !robots.allowed(&path) {
            return Err(Disallowed(format!("{}/robots.txt", site(url))));
        }
        Ok(robots.crawl_delay().filter(|d| !d.is_zero()))
    }
}
