//! Request rates: `--rate 10/s` for the whole job, `--rate
//! host=example.com:2/s` for one host, `--wait 1.5` between two requests to
//! any one host (as wget's `--wait`), and a site's robots.txt
//! `Crawl-delay`, learnt as the crawl reads it. GCRA limiters from governor, each
//! smooth (a burst of one), so requests are spaced rather than bunched at
//! the start of each second; the waits are slept on tokio's timer.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// One `--rate`: a number of requests per period, for every host or one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rate {
    /// The host it is for (`None`: the whole job).
    pub host: Option<String>,
    /// Requests allowed per `per`.
    pub count: u32,
    /// The period.
    pub per: Duration,
}

impl Rate {
    /// Parses `N/s`, `N/m`, `N/h`, or `host=NAME:N/s`.
    pub fn parse(text: &str) -> Option<Rate> {
        let (host, rate) = match text.strip_prefix("host=") {
            Some(rest) => {
                let (host, rate) = rest.rsplit_once(':')?;
                (Some(host.trim().to_ascii_lowercase()), rate)
            }
            None => (None, text),
        };
        let (count, unit) = rate.trim().split_once('/')?;
        let count: u32 = count.trim().parse().ok().filter(|n| *n > 0)?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return None,
        };
        if host.as_deref().is_some_and(str::is_empty) {
            return None;
        }
        Some(Rate { host, count, per })
    }

    fn quota(&self) -> Option<Quota> {
        Quota::with_period(self.per / self.count).map(|q| q.allow_burst(NonZeroU32::MIN))
    }
}

/// The limiters of one job.
#[derive(Default)]
pub struct Rates {
    overall: Option<DefaultDirectRateLimiter>,
    hosts: HashMap<String, DefaultDirectRateLimiter>,
    every_host: Option<DefaultKeyedRateLimiter<String>>,
    /// Crawl-delays by `host:port`, as robots.txt files are read.
    delays: Mutex<HashMap<String, DefaultDirectRateLimiter>>,
    has_delays: AtomicBool,
}

impl Rates {
    /// Limiters for these `--rate`s, and one request per `wait` to each host.
    pub fn new(rates: &[Rate], wait: Option<Duration>) -> Self {
        let mut r = Rates::default();
        for rate in rates {
            let Some(quota) = rate.quota() else { continue };
            match &rate.host {
                None => r.overall = Some(RateLimiter::direct(quota)),
                Some(h) => {
                    r.hosts.insert(h.clone(), RateLimiter::direct(quota));
                }
            }
        }
        r.every_host = wait
            .filter(|w| !w.is_zero())
            .and_then(Quota::with_period)
            .map(|q| RateLimiter::keyed(q.allow_burst(NonZeroU32::MIN)));
        r
    }

    /// Whether any limiter is set (the common case is none: no cost then).
    pub fn any(&self) -> bool {
        self.overall.is_some()
            || !self.hosts.is_empty()
            || self.every_host.is_some()
            || self.has_delays.load(Relaxed)
    }

    /// Spaces requests to `key` (`host:port`) by `delay` from now on (a
    /// robots.txt `Crawl-delay`); the first delay learnt for a site holds.
    pub fn crawl_delay(&self, key: &str, delay: Duration) {
        let Some(quota) = Quota::with_period(delay) else {
            return;
        };
        let mut delays = self.delays.lock().unwrap_or_else(|e| e.into_inner());
        delays
            .entry(key.to_string())
            .or_insert_with(|| RateLimiter::direct(quota.allow_burst(NonZeroU32::MIN)));
        self.has_delays.store(true, Relaxed);
    }

    /// Waits until a request to `key` (`host:port`) fits every rate.
    pub async fn pace(&self, key: &str) {
        let host = key.rsplit_once(':').map_or(key, |(h, _)| h);
        let clock = DefaultClock::default();
        if let Some(l) = &self.overall {
            while let Err(not_yet) = l.check() {
                tokio::time::sleep(not_yet.wait_time_from(clock.now())).await;
            }
        }
        if let Some(l) = self.hosts.get(host) {
            while let Err(not_yet) = l.check() {
                tokio::time::sleep(not_yet.wait_time_from(clock.now())).await;
            }
        }
        if let Some(l) = &self.every_host {
            let key = key.to_string();
            while let Err(not_yet) = l.check_key(&key) {
                tokio::time::sleep(not_yet.wait_time_from(clock.now())).await;
            }
        }
        if self.has_delays.load(Relaxed) {
            loop {
                let wait = {
                    let delays = self.delays.lock().unwrap_or_else(|e| e.into_inner());
                    match delays.get(key).map(|l| l.check()) {
                        Some(Err(not_yet)) => not_yet.wait_time_from(clock.now()),
                        _ => break,
                    }
                };
                tokio::time::sleep(wait).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_or_say_no() {
        let r = Rate::parse("10/s").unwrap();
        assert_eq!((r.host, r.count, r.per), (None, 10, Duration::from_secs(1)));
        let r = Rate::parse("host=Example.COM:2/m").unwrap();
        assert_eq!(r.host.as_deref(), Some("example.com"));
        assert_eq!((r.count, r.per), (2, Duration::from_secs(60)));
        for bad in [
            "",
            "10",
            "0/s",
            "x/s",
            "10/fortnight",
            "host=:1/s",
            "host=h",
        ] {
            assert!(Rate::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_rate_spaces_requests_and_keys_them_by_host() {
        let rates = Rates::new(
            &[Rate::parse("host=slow.test:1/s").unwrap()],
            Some(Duration::from_secs(5)),
        );
        assert!(rates.any());
        let slow = rates.hosts.get("slow.test").unwrap();
        assert!(slow.check().is_ok(), "the first goes at once");
        assert!(slow.check().is_err(), "the second waits its turn");
        let every = rates.every_host.as_ref().unwrap();
        assert!(every.check_key(&"a:80".to_string()).is_ok());
        assert!(
            every.check_key(&"a:80".to_string()).is_err(),
            "--wait per host"
        );
        assert!(
            every.check_key(&"b:80".to_string()).is_ok(),
            "another host is free"
        );
        assert!(!Rates::new(&[], None).any());
    }
}
