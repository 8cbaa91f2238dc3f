//! Request rates: `--rate 10/s` for the whole job, `--rate
//! host=example.com:2/s` for one host, `--wait 1.5` between two requests to
//! any one host (as wget's `--wait`), and a site's robots.txt
//! `Crawl-delay`, learnt as the crawl reads it. GCRA limiters from governor, each
//! smooth (a burst of one), so requests are spaced rather than bunched at
//! the start of each second; the waits are slept on tokio's timer.
//!
//! Workers of a shared job each pace their share: the job's rates divided
//! by the workers alive, which change as workers come and go. A governor
//! quota is fixed when its limiter is built, so the limiters are built
//! again when the count changes, as the next request finds (one atomic
//! load, besides the read lock and reference count that hand the
//! limiters out either way). A rebuilt limiter has forgotten its last
//! request, which lets at most one request per limiter (per host, for
//! `--wait`) go early at each change: a rounding error next to the
//! second or so it takes workers to notice each other. Crawl-delays are
//! not divided: the site states them for one client, each worker learns
//! and keeps them on its own, and dividing them would need a job-wide
//! count of who fetches from that site (left for when it matters).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
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

    /// One of `workers`' share of this rate.
    fn quota(&self, workers: u32) -> Option<Quota> {
        Quota::with_period(self.per.saturating_mul(workers) / self.count)
            .map(|q| q.allow_burst(NonZeroU32::MIN))
    }
}

/// The limiters of one job.
#[derive(Default)]
pub struct Rates {
    /// The job's `--rate`s and `--wait`, undivided.
    rates: Vec<Rate>,
    wait: Option<Duration>,
    /// Whether they limit anything: known without the lock, so that a job
    /// without them pays nothing.
    set: bool,
    /// The workers sharing them (`None`: this process alone).
    workers: Option<Arc<AtomicU64>>,
    paced: RwLock<Arc<Paced>>,
    /// Crawl-delays by `host:port`, as robots.txt files are read.
    delays: Mutex<HashMap<String, DefaultDirectRateLimiter>>,
    has_delays: AtomicBool,
}

/// The limiters for one number of workers.
#[derive(Default)]
struct Paced {
    workers: u64,
    overall: Option<DefaultDirectRateLimiter>,
    hosts: HashMap<String, DefaultDirectRateLimiter>,
    every_host: Option<DefaultKeyedRateLimiter<String>>,
}

impl Paced {
    fn new(rates: &[Rate], wait: Option<Duration>, workers: u64) -> Self {
        let share = u32::try_from(workers.max(1)).unwrap_or(u32::MAX);
        let mut p = Paced {
            workers,
            ..Paced::default()
        };
        for rate in rates {
            let Some(quota) = rate.quota(share) else {
                continue;
            };
            match &rate.host {
                None => p.overall = Some(RateLimiter::direct(quota)),
                Some(h) => {
                    p.hosts.insert(h.clone(), RateLimiter::direct(quota));
                }
            }
        }
        p.every_host = wait
            .filter(|w| !w.is_zero())
            .and_then(|w| Quota::with_period(w.saturating_mul(share)))
            .map(|q| RateLimiter::keyed(q.allow_burst(NonZeroU32::MIN)));
        p
    }

    fn any(&self) -> bool {
        self.overall.is_some() || !self.hosts.is_empty() || self.every_host.is_some()
    }
}

impl Rates {
    /// Limiters for these `--rate`s, and one request per `wait` to each host.
    pub fn new(rates: &[Rate], wait: Option<Duration>) -> Self {
        let paced = Paced::new(rates, wait, 1);
        Rates {
            rates: rates.to_vec(),
            wait,
            set: paced.any(),
            paced: RwLock::new(Arc::new(paced)),
            ..Rates::default()
        }
    }

    /// Shares the rates (not the crawl-delays) among the number of workers
    /// that `workers` holds, read at each request: each paces its share.
    pub fn shared_by(mut self, workers: Arc<AtomicU64>) -> Self {
        self.workers = Some(workers);
        self
    }

    /// Whether any limiter is set (the common case is none: no cost then).
    pub fn any(&self) -> bool {
        self.set || self.has_delays.load(Relaxed)
    }

    /// The limiters for the workers alive now.
    fn paced(&self) -> Arc<Paced> {
        let live = |w: &AtomicU64| w.load(Relaxed).max(1);
        let workers = self.workers.as_deref().map_or(1, live);
        let paced = self.paced.read().unwrap_or_else(|e| e.into_inner()).clone();
        if paced.workers == workers {
            return paced;
        }
        let mut slot = self.paced.write().unwrap_or_else(|e| e.into_inner());
        // Read again under the lock: two requests that saw the count on
        // either side of a change do not rebuild back and forth.
        let workers = self.workers.as_deref().map_or(1, live);
        if slot.workers != workers {
            *slot = Arc::new(Paced::new(&self.rates, self.wait, workers));
        }
        slot.clone()
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
        if self.set {
            // After each wait the limiters are looked up again: a request
            // waiting when the count changes waits on the new ones, not on
            // limiters nobody else uses any more.
            let mut paced = self.paced();
            while let Some(Err(not_yet)) = paced.overall.as_ref().map(|l| l.check()) {
                tokio::time::sleep(not_yet.wait_time_from(clock.now())).await;
                paced = self.paced();
            }
            while let Some(Err(not_yet)) = paced.hosts.get(host).map(|l| l.check()) {
                tokio::time::sleep(not_yet.wait_time_from(clock.now())).await;
                paced = self.paced();
            }
            let key = key.to_string();
            while let Some(Err(not_yet)) = paced.every_host.as_ref().map(|l| l.check_key(&key)) {
                tokio::time::sleep(not_yet.wait_time_from(clock.now())).await;
                paced = self.paced();
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
        let paced = rates.paced();
        let slow = paced.hosts.get("slow.test").unwrap();
        assert!(slow.check().is_ok(), "the first goes at once");
        assert!(slow.check().is_err(), "the second waits its turn");
        let every = paced.every_host.as_ref().unwrap();
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

    /// The period a limiter was built with, from its refusal of a second
    /// request (governor tells the quota it decided by).
    fn period(l: &DefaultDirectRateLimiter) -> Duration {
        let _ = l.check();
        l.check()
            .expect_err("a burst of one")
            .quota()
            .replenish_interval()
    }

    #[test]
    fn the_rates_are_divided_by_the_workers_alive_as_they_change() {
        let workers = Arc::new(AtomicU64::new(2));
        let rates = Rates::new(
            &[
                Rate::parse("20/s").unwrap(),
                Rate::parse("host=h.test:4/s").unwrap(),
            ],
            Some(Duration::from_millis(300)),
        )
        .shared_by(workers.clone());
        let ms = Duration::from_millis;
        let periods = || {
            let p = rates.paced();
            let every = p.every_host.as_ref().unwrap();
            let _ = every.check_key(&"h.test:80".to_string());
            let wait = every.check_key(&"h.test:80".to_string()).unwrap_err();
            (
                period(p.overall.as_ref().unwrap()),
                period(&p.hosts["h.test"]),
                wait.quota().replenish_interval(),
            )
        };
        assert_eq!(periods(), (ms(100), ms(500), ms(600)), "two workers");
        workers.store(1, Relaxed);
        assert_eq!(periods(), (ms(50), ms(250), ms(300)), "one left");
        workers.store(3, Relaxed);
        assert_eq!(periods(), (ms(150), ms(750), ms(900)), "two joined");
        // Not yet counted (or a count of none): the job's own rates.
        workers.store(0, Relaxed);
        assert_eq!(periods(), (ms(50), ms(250), ms(300)));
        let alone = Rates::new(&[Rate::parse("20/s").unwrap()], None);
        assert_eq!(period(alone.paced().overall.as_ref().unwrap()), ms(50));
    }
}
