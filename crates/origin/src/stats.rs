//! What the origin observed: counters, in-flight gauges and the request log.
//!
//! Everything on the per-request path is an atomic: the benchmark pushes
//! millions of requests through here on two cores, and a global lock would
//! serialise them. The two exceptions are the host table (a read lock, only
//! taken when a connection's `Host` changes; see [`HostCache`]) and the
//! request log, which tests want but the benchmark turns off.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// A snapshot of the origin's counters, from [`crate::Origin::stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests received, over both addresses.
    pub requests: u64,
    /// TCP connections accepted, over both addresses.
    pub connections: u64,
    /// Most requests in flight at once. A request is in flight from its
    /// arrival until its response body has been fully sent or dropped.
    pub max_in_flight: u64,
    /// Requests in flight when the snapshot was taken: 0 once a client has
    /// finished or cancelled everything and hyper has dropped the bodies.
    pub in_flight: u64,
    /// Most requests in flight at once per `Host` header value
    /// (`"127.0.0.1:PORT"`, `"127.0.0.2:PORT"`; the `:authority` for HTTP/2).
    pub max_in_flight_per_host: HashMap<String, u64>,
    /// Injected faults (500s and mid-body resets) so far.
    pub faults_injected: u64,
    /// Responses by status code, counted when the status is decided (an
    /// injected reset counts under the 200 or 206 it started as).
    pub responses_by_status: HashMap<u16, u64>,
    /// Response body bytes handed to the connection.
    pub bytes_sent: u64,
}

/// One request as the origin saw it, from [`crate::Origin::log`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// Request method, e.g. `"GET"`.
    pub method: String,
    /// `Host` header (or the HTTP/2 `:authority`), e.g. `"127.0.0.1:41234"`.
    pub host: String,
    /// Request path without the query string.
    pub path: String,
    /// Query string without the `?`, if any.
    pub query: Option<String>,
    /// `Range` header, if sent.
    pub range: Option<String>,
    /// `If-Range` header, if sent.
    pub if_range: Option<String>,
    /// `Authorization` header, if sent (tests check it is not leaked across hosts).
    pub authorization: Option<String>,
    /// `Cookie` header, if sent.
    pub cookie: Option<String>,
    /// `User-Agent` header, if sent.
    pub user_agent: Option<String>,
    /// `Referer` header, if sent.
    pub referer: Option<String>,
    /// Status of the response (200 or 206 for an injected reset).
    pub status: u16,
}

/// Statuses are counted in a flat array indexed by code; codes outside it
/// (which the origin never sends) are dropped.
const STATUS_SLOTS: usize = 600;

/// Current and maximum of a count of concurrent things.
#[derive(Debug, Default)]
pub(crate) struct Gauge {
    current: AtomicU64,
    max: AtomicU64,
}

impl Gauge {
    fn enter(&self) {
        let now = self.current.fetch_add(1, Relaxed) + 1;
        self.max.fetch_max(now, Relaxed);
    }

    fn exit(&self) {
        self.current.fetch_sub(1, Relaxed);
    }

    fn max(&self) -> u64 {
        self.max.load(Relaxed)
    }
}

/// All counters of one origin.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) requests: AtomicU64,
    pub(crate) connections: AtomicU64,
    pub(crate) faults: AtomicU64,
    bytes_sent: AtomicU64,
    in_flight: Gauge,
    by_status: Box<[AtomicU64]>,
    hosts: RwLock<HashMap<String, Arc<Gauge>>>,
    log: Mutex<Vec<LoggedRequest>>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            faults: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            in_flight: Gauge::default(),
            by_status: (0..STATUS_SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hosts: RwLock::default(),
            log: Mutex::default(),
        }
    }
}

impl Counters {
    /// Requests in flight now.
    pub(crate) fn in_flight_now(&self) -> u64 {
        self.in_flight.current.load(Relaxed)
    }

    pub(crate) fn count_status(&self, status: u16) {
        if let Some(slot) = self.by_status.get(usize::from(status)) {
            slot.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn count_sent(&self, bytes: usize) {
        self.bytes_sent.fetch_add(bytes as u64, Relaxed);
    }

    /// The shared gauge for one host, created on first use.
    fn host_gauge(&self, host: &str) -> Arc<Gauge> {
        // Poisoning cannot leave a map of counters inconsistent; carry on.
        if let Some(gauge) = self
            .hosts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(host)
        {
            return Arc::clone(gauge);
        }
        let mut hosts = self.hosts.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(hosts.entry(host.to_owned()).or_default())
    }

    pub(crate) fn push_log(&self, entry: LoggedRequest) {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entry);
    }

    pub(crate) fn log(&self) -> Vec<LoggedRequest> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn requests_to(&self, path: &str) -> u64 {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.iter().filter(|entry| entry.path == path).count() as u64
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let hosts = self.hosts.read().unwrap_or_else(PoisonError::into_inner);
        Stats {
            requests: self.requests.load(Relaxed),
            connections: self.connections.load(Relaxed),
            max_in_flight: self.in_flight.max(),
            in_flight: self.in_flight.current.load(Relaxed),
            max_in_flight_per_host: hosts
                .iter()
                .map(|(host, g)| (host.clone(), g.max()))
                .collect(),
            faults_injected: self.faults.load(Relaxed),
            responses_by_status: self
                .by_status
                .iter()
                .enumerate()
                .filter_map(|(code, n)| {
                    let n = n.load(Relaxed);
                    (n > 0).then_some((code as u16, n))
                })
                .collect(),
            bytes_sent: self.bytes_sent.load(Relaxed),
        }
    }
}

/// Per-connection memo of the last `Host` seen and its gauge. Clients send
/// the same `Host` on every request of a keep-alive connection, so the shared
/// host table is consulted about once per connection instead of per request.
/// The mutex is per connection and therefore uncontended (HTTP/2 streams of
/// one connection are the only sharers).
#[derive(Debug, Default)]
pub(crate) struct HostCache(Mutex<Option<(String, Arc<Gauge>)>>);

impl HostCache {
    fn gauge(&self, counters: &Counters, host: &str) -> Arc<Gauge> {
        let mut cached = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match &*cached {
            Some((name, gauge)) if name == host => Arc::clone(gauge),
            _ => {
                let gauge = counters.host_gauge(host);
                *cached = Some((host.to_owned(), Arc::clone(&gauge)));
                gauge
            }
        }
    }
}

/// Marks one request as in flight for as long as it lives. It is created on
/// arrival and moved into the response body, so it drops when hyper has sent
/// the whole body or given up on it (client gone, injected reset, shutdown).
#[derive(Debug)]
pub(crate) struct InFlight {
    counters: Arc<Counters>,
    host: Arc<Gauge>,
}

impl InFlight {
    pub(crate) fn enter(counters: &Arc<Counters>, cache: &HostCache, host: &str) -> InFlight {
        let host = cache.gauge(counters, host);
        counters.in_flight.enter();
        host.enter();
        InFlight {
            counters: Arc::clone(counters),
            host,
        }
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.counters.in_flight.exit();
        self.host.exit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_tracks_maximum_overall_and_per_host() {
        let counters = Arc::new(Counters::default());
        let cache = HostCache::default();
        let a1 = InFlight::enter(&counters, &cache, "a:1");
        let a2 = InFlight::enter(&counters, &cache, "a:1");
        let b1 = InFlight::enter(&counters, &cache, "b:1");
        drop((a1, a2));
        let a3 = InFlight::enter(&counters, &cache, "a:1");
        drop((a3, b1));
        let stats = counters.snapshot();
        assert_eq!(stats.max_in_flight, 3);
        assert_eq!(stats.max_in_flight_per_host["a:1"], 2);
        assert_eq!(stats.max_in_flight_per_host["b:1"], 1);
        assert_eq!(counters.in_flight.current.load(Relaxed), 0);
    }

    #[test]
    fn statuses_are_counted() {
        let counters = Counters::default();
        counters.count_status(200);
        counters.count_status(200);
        counters.count_status(404);
        counters.count_status(999);
        let stats = counters.snapshot();
        assert_eq!(stats.responses_by_status.len(), 2);
        assert_eq!(stats.responses_by_status[&200], 2);
        assert_eq!(stats.responses_by_status[&404], 1);
    }
}
