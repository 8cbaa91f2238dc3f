//! The plan: which input entries become transfers, and where each one goes.
//!
//! Runs on the input thread, in input order, between reading a line and
//! handing the item to the scheduler: URL checks, duplicate detection, the
//! destination claim and the check for a file that already exists. Doing it
//! there keeps names deterministic (claims happen in input order) and keeps
//! the `stat` of each destination off the async runtime at no extra cost.

use std::collections::HashSet;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use url::Url;

use crate::naming::{self, Claims, Dest, OutputDir};
use crate::report::{Outcome, Status};
use crate::source::{Entry, Origin};

/// An item to fetch.
#[derive(Debug)]
pub struct Item {
    /// The URL, fragment removed.
    pub url: Url,
    /// Where it was read.
    pub origin: Origin,
    /// Where it goes (unless the server names it).
    pub dest: Dest,
    /// `host:port`, the key of the per-host limit.
    pub host: String,
}

/// What the plan decided for one entry.
#[derive(Debug)]
pub enum Planned {
    /// Fetch it.
    Fetch(Item),
    /// Nothing to fetch: the outcome is already known (bad input, duplicate,
    /// file exists).
    Settled(Outcome),
}

/// Decides, entry by entry, what to fetch.
pub struct Planner {
    out: OutputDir,
    claims: Arc<Claims>,
    overwrite: bool,
    // 16-byte digests, not URLs: a million-line list costs ~20 MB here.
    seen: HashSet<[u8; 16]>,
}

fn failed(text: String, origin: &Origin, reason: &str, error: String) -> Planned {
    let mut o = Outcome::new(text, origin, Status::Failed);
    o.reason = Some(reason.to_string());
    o.error = Some(format!("{origin}: {error}"));
    Planned::Settled(o)
}

impl Planner {
    /// A planner writing into `out`, sharing name claims with the transfers.
    pub fn new(out: OutputDir, claims: Arc<Claims>, overwrite: bool) -> Self {
        Self {
            out,
            claims,
            overwrite,
            seen: HashSet::new(),
        }
    }

    /// Plans one entry.
    pub fn plan(&mut self, entry: Entry) -> Planned {
        let origin = entry.origin;
        let text = match entry.text {
            Ok(t) => t,
            Err(e) => return failed(String::new(), &origin, "bad input", e),
        };
        let mut url = match Url::parse(&text) {
            Ok(u) => u,
            Err(e) => {
                let msg = format!("not a URL ({e}): {text:?}; expected http:// or https://");
                return failed(text, &origin, "bad url", msg);
            }
        };
        if !matches!(url.scheme(), "http" | "https") {
            let msg = format!("unsupported scheme {}: in {text:?}", url.scheme());
            return failed(text, &origin, "bad url", msg);
        }
        let Some(host) = url.host_str() else {
            return failed(text, &origin, "bad url", "URL has no host".into());
        };
        let host = format!("{host}:{}", url.port_or_known_default().unwrap_or(0));
        url.set_fragment(None);
        if !self.seen.insert(digest(url.as_str())) {
            let mut o = Outcome::new(url.into(), &origin, Status::Skipped);
            o.reason = Some("duplicate".into());
            return Planned::Settled(o);
        }
        let raw = naming::name_from_url(&url);
        let dest = naming::sanitize_component(&raw)
            .ok_or_else(|| naming::NameError::Empty(raw.clone()))
            .and_then(|name| self.claims.claim(&self.out, &name));
        let dest = match dest {
            Ok(d) => d,
            Err(e) => return failed(url.into(), &origin, "bad name", e.to_string()),
        };
        if !self.overwrite && dest.path.symlink_metadata().is_ok() {
            let mut o = Outcome::new(url.into(), &origin, Status::Skipped);
            o.path = Some(dest.rel);
            o.reason = Some("exists".into());
            return Planned::Settled(o);
        }
        Planned::Fetch(Item {
            url,
            origin,
            dest,
            host,
        })
    }
}

fn digest(s: &str) -> [u8; 16] {
    let full = Sha256::digest(s.as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(line: u64, text: &str) -> Entry {
        Entry {
            origin: Origin {
                input: "list.txt".into(),
                line,
            },
            text: Ok(text.to_string()),
        }
    }

    fn outcome(p: Planned) -> Outcome {
        match p {
            Planned::Settled(o) => o,
            Planned::Fetch(i) => panic!("expected a settled outcome, got {i:?}"),
        }
    }

    #[test]
    fn bad_urls_name_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Planner::new(OutputDir::new(dir.path()), Arc::default(), false);
        let o = outcome(p.plan(entry(7, "not a url")));
        assert_eq!(o.status, Status::Failed);
        assert!(o.error.unwrap().starts_with("list.txt:7: not a URL"));
        let o = outcome(p.plan(entry(8, "ftp://h/x")));
        assert!(o.error.unwrap().contains("unsupported scheme ftp"));
    }

    #[test]
    fn duplicates_and_existing_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old.bin"), b"x").unwrap();
        let mut p = Planner::new(OutputDir::new(dir.path()), Arc::default(), false);
        assert!(matches!(
            p.plan(entry(1, "http://h/a.bin#frag")),
            Planned::Fetch(_)
        ));
        let dup = outcome(p.plan(entry(2, "http://h/a.bin")));
        assert_eq!(
            (dup.status, dup.reason.as_deref()),
            (Status::Skipped, Some("duplicate"))
        );
        let old = outcome(p.plan(entry(3, "http://h/old.bin")));
        assert_eq!(old.reason.as_deref(), Some("exists"));
        match p.plan(entry(4, "http://other/a.bin")) {
            Planned::Fetch(i) => {
                assert_eq!(i.dest.rel, "a-1.bin");
                assert_eq!(i.host, "other:80");
            }
            Planned::Settled(o) => panic!("{o:?}"),
        }
    }
}
