//! How many transfers one host gets at once: a window that finds the host's
//! capacity instead of a number the user must guess.
//!
//! The scheme is TCP's, AIMD with slow start, plus a latency guard:
//! - a host starts at [`START`] transfers in flight (or the cap, if lower);
//! - in slow start every clean response adds one (the window doubles per
//!   round trip) until the first sign of trouble or the cap;
//! - after that, every clean response adds `1/window` (one per round trip);
//! - a 429, a 503, a timeout or a broken connection halves the window, at
//!   most once per round trip, and ends slow start; the other refusals of
//!   the same round trip each take one off the window that burst went out
//!   at (16 sent, 12 refused: the host takes 4), so one overload is one
//!   halving, and a host far below the window is found in one round trip;
//! - a response much slower than the fastest seen (more than
//!   [`LATENCY_SLACK`] times the minimum plus [`LATENCY_FLOOR`]) means
//!   requests are queueing at the server: the window stops growing and
//!   gives back `1/window`, so it settles near the knee rather than at the
//!   cap;
//! - the window an overload happened at (or, after a burst of refusals,
//!   one more than what the burst found the host takes) is remembered as
//!   the host's ceiling: growth stops just below it, and goes past it again only after
//!   [`PROBE_AFTER`] (doubled each time the probe overloads again), so a
//!   host that allows K in flight is held at K rather than pushed to K+1
//!   and its 429 every few responses;
//! - a `Retry-After` pauses the whole host until then: new transfers to it
//!   wait; the ones in flight carry on.
//!
//! Why AIMD rather than a latency-gradient controller alone (Vegas,
//! Netflix's Gradient): the signal servers actually send when overloaded is
//! 429/503, and AIMD reacts to it at once and is stable with many clients;
//! the latency guard adds the gradient idea for servers that slow down
//! instead of refusing. The window never goes below 1 or above the cap
//! (`--per-host`).

use std::time::{Duration, Instant};

/// The window a host starts with: the fixed per-host limit haul had before
/// windows adapted, so no host sees more at first than it did then, and a
/// healthy one reaches 64 in two round trips (on the benchmark's 50 ms
/// workload, starting at 4 cost a tenth of the wall time).
pub const START: f64 = 16.0;
/// Latency above this multiple of the host's fastest response counts as
/// queueing.
pub const LATENCY_SLACK: f64 = 2.0;
/// ... plus this much, so a fast host's jitter is not read as queueing.
pub const LATENCY_FLOOR: Duration = Duration::from_millis(20);
/// How long a host's ceiling holds before the window probes past it.
pub const PROBE_AFTER: Duration = Duration::from_secs(10);

/// What a finished attempt says about its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A response came back without sign of overload, its head after
    /// `latency` (`None`: no measure, e.g. a 404 from a cache).
    Clean(Option<Duration>),
    /// The host is overloaded: 429, 503, a timeout, a broken connection.
    Overloaded,
}

/// One host's window.
#[derive(Debug, Clone)]
pub struct Window {
    size: f64,
    cap: f64,
    slow_start: bool,
    fastest: Option<Duration>,
    last_cut: Option<Instant>,
    /// The window an overload happened at, since when, and how long it
    /// holds.
    ceiling: Option<(f64, Instant, Duration)>,
    /// The window the last overloaded burst went out at, and how many of
    /// it were refused.
    burst: f64,
    refused: f64,
    adaptive: bool,
}

impl Window {
    /// A window for a new host, at most `cap`; fixed at `cap` when not
    /// `adaptive` (`--fixed`).
    pub fn new(cap: usize, adaptive: bool) -> Self {
        let cap = cap.max(1) as f64;
        Self {
            size: if adaptive { START.min(cap) } else { cap },
            cap,
            slow_start: true,
            fastest: None,
            last_cut: None,
            ceiling: None,
            burst: 0.0,
            refused: 0.0,
            adaptive,
        }
    }

    /// Transfers allowed in flight now.
    pub fn allowed(&self) -> usize {
        self.size.floor().max(1.0) as usize
    }

    /// Takes in what an attempt said; `now` is when it ended.
    pub fn update(&mut self, signal: Signal, now: Instant) {
        if !self.adaptive {
            return;
        }
        match signal {
            Signal::Overloaded => {
                // Once per round trip: the responses of one overload come
                // back together, within about a round trip of the first
                // (twice the fastest, and some, for jitter: counted against
                // the fastest alone, a refusal of the same burst that came
                // a little late was a second overload, and halved the
                // window below what the host takes).
                let rtt = self
                    .fastest
                    .map_or(Duration::from_millis(100), |f| f * 2 + LATENCY_FLOOR);
                if self.last_cut.is_some_and(|t| now.duration_since(t) < rtt) {
                    // More of the same burst: each refusal says one fewer
                    // fits than the window the burst went out at.
                    self.refused += 1.0;
                    let fits = (self.burst - self.refused).max(1.0);
                    self.size = self.size.min(fits);
                    // And where the host overloads is just above what fit,
                    // not at the burst's window: growth stops at the limit
                    // found, instead of probing one past it at once (a 429
                    // and, with Retry-After, a pause of the whole host).
                    if let Some((c, since, hold)) = self.ceiling {
                        self.ceiling = Some((c.min(fits.floor() + 1.0), since, hold));
                    }
                    return;
                }
                self.last_cut = Some(now);
                self.burst = self.size;
                self.refused = 1.0;
                self.slow_start = false;
                // The same ceiling again: the probe past it failed, so wait
                // longer before the next one.
                let hold = match self.ceiling {
                    Some((c, _, hold)) if self.size.floor() >= c.floor() => hold * 2,
                    _ => PROBE_AFTER,
                };
                self.ceiling = Some((self.size.floor(), now, hold));
                self.size = (self.size / 2.0).max(1.0);
            }
            Signal::Clean(latency) => {
                if let Some(l) = latency {
                    let fastest = self.fastest.map_or(l, |f| f.min(l));
                    self.fastest = Some(fastest);
                    let limit = fastest.mul_f64(LATENCY_SLACK) + LATENCY_FLOOR;
                    if l > limit {
                        // Queueing at the server: stop growing, ease off.
                        self.slow_start = false;
                        self.size = (self.size - 1.0 / self.size).max(1.0);
                        return;
                    }
                }
                let step = if self.slow_start {
                    1.0
                } else {
                    1.0 / self.size
                };
                let mut limit = self.cap;
                if let Some((ceiling, since, hold)) = self.ceiling {
                    if now.duration_since(since) < hold {
                        limit = limit.min((ceiling - 1.0).max(1.0) + 0.999);
                    }
                }
                self.size = (self.size + step).min(limit).max(self.size.min(limit));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_healthy_host_doubles_to_the_cap() {
        let mut w = Window::new(64, true);
        let t = Instant::now();
        assert_eq!(w.allowed(), 16);
        // One round trip's worth of clean responses doubles the window.
        for _ in 0..16 {
            w.update(Signal::Clean(Some(50 * MS)), t);
        }
        assert_eq!(w.allowed(), 32);
        for _ in 0..100 {
            w.update(Signal::Clean(Some(50 * MS)), t);
        }
        assert_eq!(w.allowed(), 64, "capped at --per-host");
    }

    #[test]
    fn overload_halves_once_per_round_trip_then_grows_by_one() {
        let mut w = Window::new(64, true);
        let t = Instant::now();
        for _ in 0..16 {
            w.update(Signal::Clean(Some(50 * MS)), t);
        }
        assert_eq!(w.allowed(), 32);
        w.update(Signal::Overloaded, t);
        assert_eq!(w.allowed(), 16);
        // The rest of the same burst is the same signal, a little late
        // included (within twice the fastest response, and some).
        w.update(Signal::Overloaded, t + 10 * MS);
        w.update(Signal::Overloaded, t + 110 * MS);
        assert_eq!(w.allowed(), 16);
        // A round trip later it counts again.
        w.update(Signal::Overloaded, t + 130 * MS);
        assert_eq!(w.allowed(), 8);
        // Congestion avoidance: about a window's worth of clean responses
        // adds one.
        for _ in 0..9 {
            w.update(Signal::Clean(Some(50 * MS)), t + 100 * MS);
        }
        assert_eq!(w.allowed(), 9);
        for _ in 0..20 {
            w.update(Signal::Overloaded, t + 1000 * MS * 20);
        }
        assert!(w.allowed() >= 1);
    }

    #[test]
    fn a_host_that_takes_k_is_held_at_k_and_probed_rarely() {
        let mut w = Window::new(64, true);
        let t = Instant::now();
        let grow_to = |w: &mut Window, n: usize, at: Instant| {
            for _ in 0..1000 {
                if w.allowed() >= n {
                    break;
                }
                w.update(Signal::Clean(Some(MS)), at);
            }
        };
        // The host allows 4: of the first 16 in flight, the fifth on are
        // refused (one signal per round trip), then again at 8.
        w.update(Signal::Overloaded, t);
        assert_eq!(w.allowed(), 8);
        w.update(Signal::Overloaded, t + 150 * MS);
        assert_eq!(w.allowed(), 4);
        // It grows again, and the fifth is refused: that is the ceiling.
        grow_to(&mut w, 5, t + 300 * MS);
        w.update(Signal::Overloaded, t + 400 * MS);
        assert_eq!(w.allowed(), 2);
        for _ in 0..100 {
            w.update(Signal::Clean(Some(MS)), t + 500 * MS);
        }
        assert_eq!(w.allowed(), 4, "held just below where it overloaded");
        // Past the hold it probes: the fifth goes out, and is refused; the
        // next hold is twice as long.
        let late = t + 400 * MS + PROBE_AFTER + MS;
        grow_to(&mut w, 5, late);
        assert_eq!(w.allowed(), 5, "past the hold it probes");
        w.update(Signal::Overloaded, late);
        for _ in 0..100 {
            w.update(Signal::Clean(Some(MS)), late + PROBE_AFTER + MS);
        }
        assert_eq!(w.allowed(), 4, "the second hold is longer");
        grow_to(&mut w, 5, late + 2 * PROBE_AFTER + MS);
        assert_eq!(w.allowed(), 5, "then it probes again");
    }

    #[test]
    fn one_burst_of_refusals_finds_the_hosts_limit() {
        let mut w = Window::new(64, true);
        let t = Instant::now();
        w.update(Signal::Clean(Some(20 * MS)), t);
        assert_eq!(w.allowed(), 17);
        // 17 went out; the host takes 4: 13 refusals in one round trip.
        for i in 0..13 {
            w.update(Signal::Overloaded, t + i * MS);
        }
        assert_eq!(w.allowed(), 4);
        // It stays there: the fifth is where the host refused.
        for _ in 0..100 {
            w.update(Signal::Clean(Some(20 * MS)), t + 100 * MS);
        }
        assert_eq!(
            w.allowed(),
            4,
            "held at the limit found, not probing past it"
        );
    }

    #[test]
    fn refusals_of_one_burst_spread_over_a_round_trip_are_one_overload() {
        // The host takes 16; slow start sent 32 before the first 429 came
        // back, and the 16 refusals arrive over 35 ms (the fastest answer
        // is 20 ms). They are one overload: the window is held at 16.
        let mut w = Window::new(64, true);
        let t = Instant::now();
        for _ in 0..16 {
            w.update(Signal::Clean(Some(20 * MS)), t);
        }
        assert_eq!(w.allowed(), 32);
        for i in 0..16 {
            w.update(Signal::Overloaded, t + 10 * MS + i * 2 * MS);
        }
        assert_eq!(w.allowed(), 16);
        for _ in 0..200 {
            w.update(Signal::Clean(Some(20 * MS)), t + 100 * MS);
        }
        assert_eq!(w.allowed(), 16, "held at what the host takes");
    }

    #[test]
    fn rising_latency_stops_the_growth() {
        let mut w = Window::new(64, true);
        let t = Instant::now();
        w.update(Signal::Clean(Some(20 * MS)), t);
        let before = w.allowed();
        // Three times the fastest, past the slack: queueing.
        for _ in 0..50 {
            w.update(Signal::Clean(Some(90 * MS)), t);
        }
        let low = w.allowed();
        assert!(low < before, "{low} >= {before}");
        // Back to fast: growth resumes, one per round trip.
        for _ in 0..50 {
            w.update(Signal::Clean(Some(21 * MS)), t);
        }
        assert!(w.allowed() > low);
    }

    #[test]
    fn a_fixed_window_never_moves() {
        let mut w = Window::new(16, false);
        let t = Instant::now();
        w.update(Signal::Overloaded, t);
        w.update(Signal::Clean(Some(10 * MS)), t);
        assert_eq!(w.allowed(), 16);
    }
}
