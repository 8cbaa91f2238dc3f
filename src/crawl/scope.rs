//! What a crawl may request: the scope (hosts, include and exclude patterns)
//! and robots.txt, fetched once per site and honoured (disallow and
//! crawl-delay).
//!
//! Scope is checked when a URL is found, so an out-of-scope link or image is
//! never even planned. Robots rules are checked right before each request,
//! pages and files alike, because they are only known once the site's
//! robots.txt has been read.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regex::Regex;
use url::Url;

use super::Robots;

/// Which URLs a crawl may request.
#[derive(Debug, Clone)]
pub struct Scope {
    hosts: HashSet<String>,
    include: Option<Regex>,
    exclude: Option<Regex>,
}

impl Scope {
    /// The start pages' hosts plus `hosts`, narrowed by `include` (a URL must
    /// match) and `exclude` (a URL must not match).
    pub fn new(
        start: impl IntoIterator<Item = String>,
        hosts: impl IntoIterator<Item = String>,
        include: Option<Regex>,
        exclude: Option<Regex>,
    ) -> Self {
        Self {
            hosts: start
                .into_iter()
                .chain(hosts)
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            include,
            exclude,
        }
    }

    /// Adds a start page's host.
    pub fn add_host(&mut self, host: &str) {
        self.hosts.insert(host.to_ascii_lowercase());
    }

    /// Whether `url` may be requested.
    pub fn allows(&self, url: &Url) -> bool {
        let host_ok = url
            .host_str()
            .is_some_and(|h| self.hosts.contains(&h.to_ascii_lowercase()));
        host_ok
            && self
                .include
                .as_ref()
                .is_none_or(|r| r.is_match(url.as_str()))
            && !self
                .exclude
                .as_ref()
                .is_some_and(|r| r.is_match(url.as_str()))
    }
}

/// robots.txt of every site a crawl touches, fetched once each.
pub struct RobotsCache {
    client: crate::http::Client,
    agent: String,
    sites: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Arc<Robots>>>>>,
    next_slot: Mutex<HashMap<String, Instant>>,
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
            next_slot: Mutex::default(),
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

    /// Checks `url` against its site's robots.txt and waits out the site's
    /// crawl-delay, if it sets one.
    pub async fn admit(&self, url: &Url) -> Result<(), Disallowed> {
        let robots = self.rules(url).await;
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        if !robots.allowed(&path) {
            return Err(Disallowed(format!("{}/robots.txt", site(url))));
        }
        if let Some(delay) = robots.crawl_delay().filter(|d| !d.is_zero()) {
            let wait = {
                let mut slots = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                let slot = slots.entry(site(url)).or_insert(now);
                let start = (*slot).max(now);
                *slot = start + delay;
                start - now
            };
            if wait > Duration::ZERO {
                tokio::time::sleep(wait).await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_is_hosts_then_patterns() {
        let scope = Scope::new(
            ["site.test".to_string()],
            ["cdn.test".to_string()],
            None,
            Some(Regex::new(r"/private/").unwrap()),
        );
        let ok = |u: &str| scope.allows(&Url::parse(u).unwrap());
        assert!(ok("http://site.test/a"));
        assert!(ok("http://CDN.test/img.jpg"));
        assert!(!ok("http://other.test/a"));
        assert!(!ok("http://site.test/private/x"));
        let narrow = Scope::new(
            ["site.test".to_string()],
            [],
            Some(Regex::new(r"\.jpg$").unwrap()),
            None,
        );
        assert!(narrow.allows(&Url::parse("http://site.test/a.jpg").unwrap()));
        assert!(!narrow.allows(&Url::parse("http://site.test/a.png").unwrap()));
    }
}
