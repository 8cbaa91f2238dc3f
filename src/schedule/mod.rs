//! When a transfer may run: the global limit on transfers in flight, each
//! host's window (see [`window`]: it finds the host's capacity, and says
//! when a `Retry-After` pauses the whole host), and the wait before a
//! retry.
//!
//! A transfer takes its host's slot first and the global one second, so a
//! busy host's backlog waits on its own window without holding global slots
//! that other hosts could use. Slots are released while a transfer sleeps
//! before a retry. A host's state is dropped as soon as no transfer holds
//! or awaits it, so a list touching a million hosts does not keep a million
//! windows; unless the window holds what it learnt of an overload (a pause,
//! a ceiling): that state is kept until then. Otherwise a throttled host
//! whose items were all asleep before their retries, or not yet handed
//! out, started over at the opening window each time and drew its opening
//! burst of refusals again. A host that takes 2, with 40 items, was
//! forgotten after each burst (its refused items asleep, the rest not yet
//! handed out) and got 16 at once four times; on the benchmark's
//! `throttled-16` one run in three reached 64 in flight, which only a
//! fresh window's slow start does.
//!
//! The window judges an outcome by the request it was of, numbered when its
//! permit was granted. The outcome is reported after the permit is given
//! back (the slot goes as soon as the body is in, before the disk work), so
//! a given-back permit leaves its number with the host, under the task's
//! id, for the report that follows from the same task.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

pub mod rate;
pub mod robots;
pub mod window;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

pub use window::Signal;
use window::Window;

/// Numbers of given-back permits kept for their reports: far more than the
/// transfers that finish between a permit's return and its report (none,
/// for a refusal; the disk work of a saved file for a success).
const RETURNED_KEPT: usize = 256;

/// One host's window (with what is in flight against it).
#[derive(Debug)]
struct HostState {
    window: Window,
    /// The requests of given-back permits, by task, newest last, until
    /// their outcomes are reported.
    returned: VecDeque<(Option<tokio::task::Id>, u64)>,
}

#[derive(Debug)]
struct Host {
    state: Mutex<HostState>,
    /// Wakes a waiter when a slot frees or the window grows.
    wake: Notify,
}

impl Host {
    fn lock(&self) -> MutexGuard<'_, HostState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The hosts tracked, and those of them kept after their last transfer for
/// what their windows remember, with until when.
#[derive(Debug, Default)]
struct Table {
    map: HashMap<String, Arc<Host>>,
    kept: VecDeque<(String, tokio::time::Instant)>,
}

type Hosts = Arc<Mutex<Table>>;

/// The global limit and every host's window.
pub struct Limits {
    global: Arc<Semaphore>,
    per_host: usize,
    /// A cap on every host's window set from outside (a worker's share of
    /// a job-wide `--per-host`); `usize::MAX` when there is none.
    shared_cap: Arc<std::sync::atomic::AtomicUsize>,
    adaptive: bool,
    hosts: Hosts,
    rates: rate::Rates,
}

/// Permission to run one transfer; released on drop.
#[derive(Debug)]
pub struct Permit {
    global: Option<OwnedSemaphorePermit>,
    host: Option<Arc<Host>>,
    /// The request's number in its host's window.
    seq: Option<u64>,
    key: String,
    hosts: Hosts,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.global.take();
        if let Some(host) = self.host.take() {
            if let Some(seq) = self.seq {
                let mut st = host.lock();
                st.window.back(seq);
                if st.returned.len() == RETURNED_KEPT {
                    st.returned.pop_front();
                }
                st.returned.push_back((tokio::task::try_id(), seq));
            }
            host.wake.notify_one();
            let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
            // Two references left (the map's and this one) means nobody
            // holds or awaits this host.
            if Arc::strong_count(&host) == 2 {
                let now = tokio::time::Instant::now();
                match host.lock().window.remembers_until(now) {
                    Some(until) => hosts.kept.push_back((self.key.clone(), until)),
                    None => {
                        hosts.map.remove(&self.key);
                    }
                }
            }
        }
    }
}

impl Limits {
    /// `jobs` transfers in flight overall; each host's window starts small
    /// and finds its capacity up to `per_host`, or stays at `per_host`
    /// when not `adaptive`.
    pub fn new(jobs: usize, per_host: usize, adaptive: bool) -> Self {
        Self {
            global: Arc::new(Semaphore::new(jobs.max(1))),
            per_host: per_host.max(1),
            shared_cap: Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX)),
            adaptive,
            hosts: Arc::default(),
            rates: rate::Rates::default(),
        }
    }

    /// Spaces requests to `key` by a robots.txt `Crawl-delay`.
    pub fn crawl_delay(&self, key: &str, delay: Duration) {
        self.rates.crawl_delay(key, delay);
    }

    /// Caps every host's window at what `cap` holds, read at each acquire:
    /// the share of a job-wide limit a worker may use, which changes as
    /// workers come and go.
    pub fn with_shared_cap(mut self, cap: Arc<std::sync::atomic::AtomicUsize>) -> Self {
        self.shared_cap = cap;
        self
    }

    /// Paces requests by these rates (`--rate`, `--wait`) as well.
    pub fn with_rates(mut self, rates: rate::Rates) -> Self {
        self.rates = rates;
        self
    }

    fn host(&self, key: &str) -> Arc<Host> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        let now = tokio::time::Instant::now();
        while let Some((kept, _)) = hosts.kept.front().filter(|(_, until)| *until <= now) {
            let kept = kept.clone();
            hosts.kept.pop_front();
            // Taken up again since, it is kept while in use (and put back
            // on this list by its last transfer, if it still remembers).
            if hosts
                .map
                .get(&kept)
                .is_some_and(|h| Arc::strong_count(h) == 1)
            {
                hosts.map.remove(&kept);
            }
        }
        hosts
            .map
            .entry(key.to_string())
            .or_insert_with(|| self.new_host())
            .clone()
    }

    fn new_host(&self) -> Arc<Host> {
        Arc::new(Host {
            state: Mutex::new(HostState {
                window: Window::new(self.per_host, self.adaptive),
                returned: VecDeque::new(),
            }),
            wake: Notify::new(),
        })
    }

    /// Waits for a slot in `host`'s window (and its pause, if any) and then
    /// a global slot.
    pub async fn acquire(&self, key: &str) -> Permit {
        let host = self.host(key);
        let mut permit = Permit {
            global: None,
            host: None,
            seq: None,
            key: key.to_string(),
            hosts: self.hosts.clone(),
        };
        let shared_cap = self
            .shared_cap
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(1);
        let allowed = |st: &HostState| st.window.allowed().min(shared_cap);
        loop {
            let held = {
                let mut st = host.lock();
                match st.window.held_until(tokio::time::Instant::now()) {
                    Some(until) => Some(until),
                    None if st.window.in_flight() < allowed(&st) => {
                        permit.seq = Some(st.window.send());
                        if st.window.in_flight() < allowed(&st) {
                            // Room for more: pass the wake on, since several
                            // frees may have left a single stored wake.
                            host.wake.notify_one();
                        }
                        break;
                    }
                    None => None,
                }
            };
            match held {
                // A pause ends on time; an overload's hold as soon as its
                // burst is back, which a report wakes.
                Some(until) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => {}
                        () = host.wake.notified() => {}
                    }
                }
                // A freed slot or a grown window wakes one waiter (a wake
                // with nobody waiting is kept for the next).
                None => host.wake.notified().await,
            }
        }
        permit.host = Some(host);
        if self.rates.any() {
            // Before the global slot: a host waiting on its rate must not
            // hold a slot that another host could use.
            self.rates.pace(key).await;
        }
        // The semaphore is never closed, so acquire cannot fail.
        permit.global = self.global.clone().acquire_owned().await.ok();
        permit
    }

    /// Tells `host`'s window how an attempt went, from the task that held
    /// its permit; `retry_after` is the wait the host asked for, which
    /// pauses the whole host unless the window's cut answers it (see
    /// [`window`]). Returns what it did to the window.
    pub fn report(
        &self,
        key: &str,
        signal: Signal,
        retry_after: Option<Duration>,
    ) -> Option<Moved> {
        let host = {
            let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
            let wait = retry_after.filter(|w| signal == Signal::Overloaded && !w.is_zero());
            match (hosts.map.get(key), wait) {
                (Some(host), _) => host.clone(),
                // Forgotten with the permit just given back (nobody else
                // held or awaited it), before the report: the pause the host
                // asks for is kept all the same, in a new window. Lost,
                // the next item went out at once and was refused too.
                (None, Some(wait)) => {
                    let host = self.new_host();
                    hosts.map.insert(key.to_string(), host.clone());
                    let until = tokio::time::Instant::now() + wait;
                    hosts.kept.push_back((key.to_string(), until));
                    host
                }
                (None, None) => return None,
            }
        };
        let (before, after, paused, open) = {
            let mut st = host.lock();
            let before = st.window.allowed();
            let task = tokio::task::try_id();
            let seq = match st.returned.iter().rposition(|(t, _)| *t == task) {
                Some(i) => st.returned.remove(i).map(|(_, seq)| seq),
                None => None,
            };
            let now = tokio::time::Instant::now();
            st.window.update(signal, seq, retry_after, now);
            let open = st.window.held_until(now).is_none();
            let paused = st.window.paused_until(now).map(|u| u - now);
            (before, st.window.allowed(), paused, open)
        };
        if open {
            // One wake at least: an overload's hold may have just ended.
            for _ in 0..after.saturating_sub(before).max(1) {
                host.wake.notify_one();
            }
        }
        Some(Moved {
            before,
            after,
            paused,
        })
    }

    /// A reader of every host's load.
    pub fn loads(&self) -> Loads {
        Loads(self.hosts.clone())
    }

    /// `host`'s window now, if the host is tracked.
    #[cfg(test)]
    pub fn window(&self, key: &str) -> Option<usize> {
        let hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        hosts.map.get(key).map(|h| h.lock().window.allowed())
    }

    /// Hosts tracked.
    #[cfg(test)]
    pub fn hosts_tracked(&self) -> usize {
        self.hosts.lock().map(|h| h.map.len()).unwrap_or(0)
    }
}

/// What [`Limits::report`] did to a host's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    /// Transfers the window allowed before the report.
    pub before: usize,
    /// And after it.
    pub after: usize,
    /// Time left of the whole host's pause, if it is paused: a
    /// `Retry-After` that the window's cut answered pauses nothing.
    pub paused: Option<Duration>,
}

/// One host's load at a moment, for people watching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLoad {
    /// `host:port`.
    pub key: String,
    /// Transfers holding a slot.
    pub in_flight: usize,
    /// Slots the window allows now.
    pub window: usize,
    /// Time left of a `Retry-After` pause.
    pub paused: Option<Duration>,
}

/// Reads every tracked host's load without holding up the transfers (each
/// lock is held for a copy); cheap to clone and independent of [`Limits`].
#[derive(Clone)]
pub struct Loads(Hosts);

impl Loads {
    /// The `n` hosts with most in flight, and how many hosts are tracked
    /// (holding or awaiting a slot).
    pub fn busiest(&self, n: usize) -> (Vec<HostLoad>, usize) {
        let hosts: Vec<(String, Arc<Host>)> = {
            let hosts = self.0.lock().unwrap_or_else(|e| e.into_inner());
            // Not those kept only for what their windows remember.
            hosts
                .map
                .iter()
                .filter(|(_, h)| Arc::strong_count(h) > 1)
                .map(|(k, h)| (k.clone(), h.clone()))
                .collect()
        };
        let now = tokio::time::Instant::now();
        let mut loads: Vec<HostLoad> = hosts
            .iter()
            .map(|(key, host)| {
                let st = host.lock();
                HostLoad {
                    key: key.clone(),
                    in_flight: st.window.in_flight(),
                    window: st.window.allowed(),
                    paused: st.window.paused_until(now).map(|u| u - now),
                }
            })
            .collect();
        let total = loads.len();
        loads.sort_by(|a, b| {
            b.in_flight
                .cmp(&a.in_flight)
                .then_with(|| a.key.cmp(&b.key))
        });
        loads.truncate(n);
        (loads, total)
    }
}

/// Retry timing: exponential backoff with full jitter, or the server's
/// `Retry-After` when it sent one.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// Upper bound of the first retry's wait.
    pub base: Duration,
    /// Upper bound of any computed wait.
    pub cap: Duration,
    /// Upper bound of a wait asked for by `Retry-After`.
    pub max_retry_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            // Short: a 5xx or a reset is usually gone on the next try (the
            // benchmark's faults workload: 250 ms made the job 2.4 times
            // longer than without faults; the doubling still backs off
            // from a server that stays down, and Retry-After overrides).
            base: Duration::from_millis(50),
            cap: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// What the wait before a retry is decided on. Implemented by the fetch
/// stage's error, which the schedule does not need to know.
pub trait Retryable {
    /// The connection broke during the exchange (a reset, a body cut short).
    fn broke_mid_exchange(&self) -> bool;
    /// The wait the server asked for (`Retry-After`).
    fn retry_after(&self) -> Option<Duration>;
}

impl Backoff {
    /// The wait before retry number `retry` (1-based) after `error`.
    ///
    /// A connection that broke during the exchange (a reset, a body cut
    /// short) says nothing of the server's load, so the first retry after
    /// one goes at once, on a fresh connection, resuming what arrived. In
    /// the benchmark's faults workload the waits of the files that failed
    /// last set the job's end. Every other failure, and any second retry,
    /// backs off.
    pub fn delay_after(&self, retry: u32, error: &impl Retryable) -> Duration {
        if retry == 1 && error.broke_mid_exchange() {
            return Duration::ZERO;
        }
        self.delay(retry, error.retry_after())
    }

    /// The wait before retry number `retry` (1-based). Full jitter (a uniform
    /// draw below the exponential bound) spreads out clients that failed
    /// together, so they do not return together.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(wait) = retry_after {
            return wait.min(self.max_retry_after);
        }
        let exp = self
            .base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.cap);
        exp.mul_f64(fastrand::f64())
    }
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(90));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn only_a_first_broken_connection_is_retried_at_once() {
        use crate::fetch::FetchError;
        let b = Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
        };
        let broke = FetchError::Network("reset".into());
        let cut = FetchError::Truncated {
            got: 1,
            expected: 2,
        };
        assert_eq!(b.delay_after(1, &broke), Duration::ZERO);
        assert_eq!(b.delay_after(1, &cut), Duration::ZERO);
        let status = FetchError::Status {
            code: 503,
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(b.delay_after(1, &status), Duration::from_secs(7));
        // Past the first retry, and for anything else, the jittered bound
        // applies: some draw of many is above zero.
        let timeout = FetchError::Timeout("slow".into());
        for (retry, e) in [(2, &broke), (1, &timeout)] {
            assert!((0..50).any(|_| b.delay_after(retry, e) > Duration::ZERO));
            assert!((0..50).all(|_| b.delay_after(retry, e) <= Duration::from_secs(2)));
        }
    }

    #[test]
    fn backoff_is_bounded_and_honours_retry_after() {
        let b = Backoff::default();
        for retry in 1..40 {
            let bound = b.base.saturating_mul(1 << (retry - 1).min(20)).min(b.cap);
            assert!(b.delay(retry, None) <= bound);
        }
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(5))),
            Duration::from_secs(5)
        );
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(3600))),
            b.max_retry_after
        );
    }

    /// Waits for a slot for `key` in a task of its own (which keeps the host
    /// tracked meanwhile); returns the permit and when it came.
    fn waiter(
        limits: &Arc<Limits>,
        key: &'static str,
    ) -> tokio::task::JoinHandle<(Permit, tokio::time::Instant)> {
        let limits = limits.clone();
        tokio::spawn(async move {
            let p = limits.acquire(key).await;
            (p, tokio::time::Instant::now())
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_cut_answers_its_own_overshoot_without_a_pause() {
        let limits = Arc::new(Limits::new(64, 64, true));
        let mut burst = Vec::new();
        for _ in 0..window::START as usize {
            burst.push(limits.acquire("h").await);
        }
        let next = waiter(&limits, "h");
        // The host takes 4 of the opening 16 and refuses the rest, each
        // with Retry-After: 5 s (each permit is given back just before its
        // report, as a transfer does).
        let served: Vec<Permit> = burst.drain(..4).collect();
        for refused in burst {
            drop(refused);
            let moved = limits.report("h", Signal::Overloaded, Some(Duration::from_secs(5)));
            assert_eq!(moved.unwrap().paused, None, "not said to be paused");
        }
        assert_eq!(limits.window("h"), Some(4), "cut to what the host took");
        // Nothing new goes out until the burst is back; then at once.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!next.is_finished());
        for p in served {
            drop(p);
            limits.report("h", Signal::Clean(Some(Duration::from_millis(20))), None);
        }
        let back = tokio::time::Instant::now();
        let (_p, at) = next.await.unwrap();
        assert_eq!(at, back, "the host was not paused");
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_host_is_remembered_between_its_transfers() {
        let limits = Limits::new(64, 64, true);
        let mut burst = Vec::new();
        for _ in 0..window::START as usize {
            burst.push(limits.acquire("h").await);
        }
        let served: Vec<Permit> = burst.drain(..4).collect();
        for refused in burst {
            drop(refused);
            limits.report("h", Signal::Overloaded, None);
        }
        for p in served {
            drop(p);
            limits.report("h", Signal::Clean(Some(Duration::from_millis(20))), None);
        }
        // Nothing holds or awaits it (its refused items are asleep before
        // their retries), but what its window learnt is kept.
        let (busiest, tracked) = limits.loads().busiest(5);
        assert_eq!((busiest, tracked), (vec![], 0), "not shown as active");
        let again = limits.acquire("h").await;
        assert_eq!(limits.window("h"), Some(4));
        drop(again);
        // Until its ceiling would have let it probe again.
        tokio::time::sleep(window::PROBE_AFTER).await;
        let _o = limits.acquire("other").await;
        assert_eq!(limits.hosts_tracked(), 1, "forgotten");
        let _fresh = limits.acquire("h").await;
        assert_eq!(limits.window("h"), Some(window::START as usize));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_asked_for_by_the_last_transfer_is_kept() {
        // The host is forgotten as its only permit is given back, before
        // the refusal is reported.
        let limits = Limits::new(64, 64, true);
        let only = limits.acquire("h").await;
        drop(only);
        assert_eq!(limits.hosts_tracked(), 0);
        limits.report("h", Signal::Overloaded, Some(Duration::from_secs(5)));
        let started = tokio::time::Instant::now();
        let _next = limits.acquire("h").await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_pauses_the_host_when_the_window_cannot_answer_it() {
        // A window of 1 cannot be cut.
        let limits = Arc::new(Limits::new(64, 1, true));
        let first = limits.acquire("h").await;
        let next = waiter(&limits, "h");
        tokio::time::sleep(Duration::from_millis(1)).await;
        drop(first);
        let refused = tokio::time::Instant::now();
        let moved = limits.report("h", Signal::Overloaded, Some(Duration::from_secs(5)));
        assert_eq!(moved.unwrap().paused, Some(Duration::from_secs(5)));
        // Another host is not held up by it.
        let other = tokio::time::Instant::now();
        let _o = limits.acquire("other").await;
        assert_eq!(other.elapsed(), Duration::ZERO);
        let (_p, at) = next.await.unwrap();
        assert_eq!(
            at - refused,
            Duration::from_secs(5),
            "the whole host was paused"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_window_is_paused_by_every_retry_after() {
        // It cannot be cut, so only a pause takes the load off.
        let limits = Limits::new(64, 16, false);
        let keep = limits.acquire("h").await;
        let refused = limits.acquire("h").await;
        drop(refused);
        limits.report("h", Signal::Overloaded, Some(Duration::from_secs(3)));
        let started = tokio::time::Instant::now();
        let _next = limits.acquire("h").await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        drop(keep);
    }

    #[tokio::test(start_paused = true)]
    async fn loads_show_the_busiest_hosts_and_their_pauses() {
        // Fixed, so that a Retry-After pauses the host at once.
        let limits = Limits::new(64, 16, false);
        let loads = limits.loads();
        assert_eq!(loads.busiest(3), (vec![], 0));
        let a = [limits.acquire("a").await, limits.acquire("a").await];
        let b = limits.acquire("b").await;
        limits.report("b", Signal::Overloaded, Some(Duration::from_secs(3)));
        let (busiest, active) = loads.busiest(1);
        assert_eq!(active, 2);
        assert_eq!(
            busiest,
            vec![HostLoad {
                key: "a".into(),
                in_flight: 2,
                window: 16,
                paused: None
            }]
        );
        let (both, _) = loads.busiest(5);
        assert_eq!(both[1].key, "b");
        assert_eq!(both[1].window, 16);
        assert_eq!(both[1].paused, Some(Duration::from_secs(3)));
        drop((a, b));
        assert_eq!(loads.busiest(3), (vec![], 0), "finished hosts are gone");
    }

    #[tokio::test(start_paused = true)]
    async fn per_host_limit_holds_and_hosts_are_forgotten() {
        let limits = Arc::new(Limits::new(8, 2, false));
        let a1 = limits.acquire("a").await;
        let _a2 = limits.acquire("a").await;
        let l2 = limits.clone();
        let third = tokio::spawn(async move { l2.acquire("a").await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!third.is_finished(), "third permit for host a granted");
        // Another host is not held up by host a's backlog.
        let b = limits.acquire("b").await;
        drop(b);
        assert_eq!(limits.hosts_tracked(), 1);
        drop(a1);
        let a3 = third.await.unwrap();
        drop(a3);
        drop(_a2);
        assert_eq!(limits.hosts_tracked(), 0);
    }
}
