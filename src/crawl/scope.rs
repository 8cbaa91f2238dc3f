//! What a crawl may request: the scope (hosts, include and exclude
//! patterns). Scope is checked when a URL is found, so an out-of-scope link
//! or image is never even planned. (robots.txt, which must be fetched, is
//! the schedule's: `schedule::robots`.)

use std::collections::HashSet;

use regex::Regex;
use url::Url;

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

    /// Why `url` may not be requested, for `-v`; `None` when it may.
    pub fn refusal(&self, url: &Url) -> Option<&'static str> {
        let host_ok = url
            .host_str()
            .is_some_and(|h| self.hosts.contains(&h.to_ascii_lowercase()));
        if !host_ok {
            return Some("another host; --hosts allows it");
        }
        if self
            .include
            .as_ref()
            .is_some_and(|r| !r.is_match(url.as_str()))
        {
            return Some("not matched by --include");
        }
        if self
            .exclude
            .as_ref()
            .is_some_and(|r| r.is_match(url.as_str()))
        {
            return Some("matched by --exclude");
        }
        None
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
        let ok = |u: &str| scope.refusal(&Url::parse(u).unwrap()).is_none();
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
        assert!(narrow
            .refusal(&Url::parse("http://site.test/a.jpg").unwrap())
            .is_none());
        assert!(
            narrow.refusal(&Url::parse("http://site.test/a.png").unwrap())
                == Some("not matched by --include")
        );
    }
}
