//! `haul-origin`: a fault-injecting HTTP origin for haul's integration tests
//! (in-process, through [`Origin`]) and its benchmark (the `haul-origin`
//! binary).
//!
//! The origin listens on 127.0.0.1 and 127.0.0.2 with the same port, so
//! tests have two distinct hosts without DNS. Every body it serves is a pure
//! function of the request path (see [`body_for`]), so a test checks a
//! download byte for byte with [`expected`] and the server never stores a
//! file. It counts what it sees ([`Stats`], [`LoggedRequest`]) so tests can
//! assert on concurrency, retries and the headers a client sent.
//!
//! # Routes
//!
//! Query parameters are optional. `size` defaults to [`Config::default_size`];
//! bodies are generated from the path without its query.
//!
//! | route | response |
//! |---|---|
//! | `/file/<any>?size=N` | N deterministic bytes; Range, If-Range, ETag, Last-Modified; injected faults |
//! | `/status/<code>/<any>` | that status (200 to 599) with a one-line text body |
//! | `/flaky/<k>/<any>?size=N` | 503 for the first k requests to the path, then content |
//! | `/retry-after/<secs>/<any>?size=N` | 429 with `Retry-After: <secs>` on the first request, then content |
//! | `/retry-after-date/<secs>/<any>?size=N` | the same with an HTTP date `secs` in the future |
//! | `/drip/<any>?size=N&chunk=C&delay_ms=D` | content in C-byte pieces D ms apart (defaults 1024 and 100) |
//! | `/cd/<any>?filename=<pct>&filename_star=<pct>&size=N` | content plus `Content-Disposition: attachment; filename="<decoded>"` and/or `filename*=UTF-8''<pct>`, sent as given |
//! | `/redirect?to=<pct>&code=C` | redirect (301, 302 default, 303, 307, 308) to the decoded `to` |
//! | `/redirect-loop/<n>` | 302 to `/redirect-loop/<n+1>` |
//! | `/html/<any>` | a small `text/html` page |
//! | `/chunked/<any>?size=N` | content with chunked transfer encoding, no Content-Length |
//! | `/static/<rel>` | the file `<rel>` under [`Config::static_root`], typed by extension; ETag of the content, 304 to a matching `If-None-Match` |
//! | `/robots.txt` | [`Config::robots_status`] if set, else `robots.txt` under [`Config::static_root`], if there is one |
//! | anything else | 404 |
//!
//! Any route given `close=1` in its query answers with `Connection: close`.
//!
//! All "content" responses behave like `/file/` (Range, If-Range,
//! validators, [`Origin::bump`]), and all equal [`expected`] for a fresh
//! origin, but only `/file/` injects faults. Only GET and HEAD are served
//! (others get 405); HEAD answers with the GET headers and no body.
//!
//! # Faults
//!
//! With [`Config::error_rate`] or [`Config::reset_rate`] above zero, each
//! `/file/` request may answer 500, or send its headers (full
//! `Content-Length`) and half its body and then drop the connection. Each
//! decision is a pure function of the seed, the path and how many requests
//! that path has had, and no path gets more than
//! [`Config::max_faults_per_path`] faults, so a client that retries enough
//! always succeeds and a given test sees the same faults on every run.

#![warn(missing_docs)]

mod body;
mod conn;
mod content;
mod paths;
mod range;
mod routes;
mod server;
mod stats;

use std::time::Duration;

pub use content::{body_for, expected};
pub use server::Origin;
pub use stats::{LoggedRequest, Stats};

/// How an [`Origin`] behaves. [`Config::default`] injects no faults and logs
/// every request; set fields with struct update syntax:
///
/// ```
/// # use haul_origin::Config;
/// let config = Config { error_rate: 0.3, ..Config::default() };
/// ```
#[derive(Debug, Clone)]
pub struct Config {
    /// Delay before sending response headers, on every request.
    pub latency: Duration,
    /// Probability (0 to 1) that a `/file/` request answers 500.
    pub error_rate: f64,
    /// Probability (0 to 1) that a `/file/` GET sends its headers, with the
    /// full Content-Length, and about half the body, then drops the connection.
    pub reset_rate: f64,
    /// Most faults (500s and resets together) any one path ever gets, so
    /// retries always succeed eventually. Default 3.
    pub max_faults_per_path: u32,
    /// Seed for fault decisions. Default fixed, so runs are repeatable.
    pub seed: u64,
    /// Answer 200 with the full body even when Range is sent, and do not
    /// send `Accept-Ranges`.
    pub ignore_range: bool,
    /// Send neither ETag nor Last-Modified.
    pub no_validators: bool,
    /// Body size for content requests without `?size=`. Default 10240.
    pub default_size: usize,
    /// Keep the request log behind [`Origin::log`] and [`Origin::requests`].
    /// Default true; the benchmark binary turns it off.
    pub log_requests: bool,
    /// Port to listen on, on both addresses; 0 (the default) picks a free one.
    pub port: u16,
    /// Directory served under `/static/` (None: that route is a 404).
    pub static_root: Option<std::path::PathBuf>,
    /// Requests in flight the origin takes at most: above this it answers
    /// `429 Too Many Requests` with `Retry-After: throttle_retry_after`
    /// seconds, as a rate-limited server does.
    pub max_in_flight: Option<u64>,
    /// The `Retry-After` of those 429s, in seconds (0: none sent).
    pub throttle_retry_after: u64,
    /// Latency added per request already in flight, on top of `latency`: a
    /// server that slows down as load rises.
    pub latency_per_in_flight: Duration,
    /// Answer `/robots.txt` with this status (a one-line body, as
    /// `/status/`) instead of the file: a site whose robots.txt is
    /// unreachable (5xx) or unavailable (4xx), while its other routes work.
    pub robots_status: Option<u16>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            latency: Duration::ZERO,
            error_rate: 0.0,
            reset_rate: 0.0,
            max_faults_per_path: 3,
            seed: 0x5eed_5eed_5eed_5eed,
            ignore_range: false,
            no_validators: false,
            default_size: content::DEFAULT_SIZE,
            log_requests: true,
            port: 0,
            static_root: None,
            max_in_flight: None,
            throttle_retry_after: 1,
            latency_per_in_flight: Duration::ZERO,
            robots_status: None,
        }
    }
}

#[cfg(test)]
mod tests;
