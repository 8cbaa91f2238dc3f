//! How many transfers one host gets at once: a window that finds the host's
//! capacity instead of a number the user must guess.
//!
//! The scheme is TCP's, AIMD with slow start, plus a latency guard, with
//! refusals read as those of a host that limits how many requests it
//! serves at once:
//! - a host starts at [`START`] transfers in flight (or the cap, if lower);
//! - in slow start every clean response adds one (the window doubles per
//!   round trip) until the first sign of trouble or the cap;
//! - after that, every clean response adds `1/window` (one per round trip);
//! - every request is numbered as it goes out ([`Window::send`]), with the
//!   host's transfers in flight then, itself included (its *level*), and
//!   when it came back ([`Window::back`]);
//! - a refusal (429, 503, a timeout, a connection broken before the
//!   answer; job.rs) of a request sent
//!   after the window was last cut starts a new overload; one sent before
//!   the cut is part of the overload that cut answered. Judged by when the
//!   request went out, not by when its answer came: "within a round trip
//!   of the first refusal" split one burst's late refusals into further
//!   overloads, each halving, and took refusals of the window the cut had
//!   set for the old burst's;
//! - an overload cuts the window to what the host was seen to take: the
//!   most requests it was serving at once, from the departure of the first
//!   request it refused (at each departure: the requests in flight, less
//!   those of them it refused). Of an opening burst of 16 of which a host
//!   that takes 4 refused 12, that is 4, whichever 12 it refused (a
//!   burst's requests reach the host in any order, so the refused are not
//!   the last sent). Of a probe sent at 17, refused, and every request
//!   sent in the same round trip refused at 17 too (a host that counts
//!   what it is refusing among what is in flight), it is 16; counting
//!   those refusals against the window said 1. This replaces halving, and
//!   halving again for refusals that came back late: on the benchmark's
//!   `throttled-16` that settled at 8 or below in one run of three, until
//!   the next probe;
//! - until the requests sent before the cut have come back (a round trip
//!   at most: twice the fastest response and [`LATENCY_FLOOR`]), no new
//!   one goes out: their refusals are still to be counted, and the host is
//!   still busy refusing them;
//! - a response much slower than the fastest seen (more than
//!   [`LATENCY_SLACK`] times the minimum plus [`LATENCY_FLOOR`]) means
//!   requests are queueing at the server: the window stops growing and
//!   gives back `1/window`, so it settles near the knee rather than at the
//!   cap;
//! - where an overload found the host's limit is remembered as its
//!   ceiling: growth stops just below it, and goes past it again only after
//!   [`PROBE_AFTER`] (doubled, up to [`MAX_HOLD`], each time the probe
//!   overloads again), so a host that allows K in flight is held at K
//!   rather than pushed to K+1 and refusing every few responses.
//!
//! A `Retry-After` pauses the whole host (new transfers to it wait; those
//! in flight carry on) when the refusals say the host refuses whatever the
//! window: nothing sent since the cut before the overload was served, or
//! the window cannot be cut (at 1, or `--fixed`). Otherwise the host was
//! serving requests while it refused those above what it takes (the
//! opening burst, a probe past the ceiling): the window's own overshoot,
//! which the cut answers; each refused item still waits its own
//! `Retry-After` before its retry, and new requests go out within the cut
//! window as soon as the burst is back. Pausing the host for those cost a
//! whole second of a 5.5 s run on the benchmark's `throttled-4`, for one
//! burst the cut had already answered. A host that starts refusing
//! everything is paused a round trip later than before, after the
//! refusals of the window the cut set, and that window is halved.
//!
//! Why AIMD rather than a latency-gradient controller alone (Vegas,
//! Netflix's Gradient): the signal servers actually send when overloaded is
//! 429/503, and AIMD reacts to it at once and is stable with many clients;
//! the latency guard adds the gradient idea for servers that slow down
//! instead of refusing. The window never goes below 1 or above the cap
//! (`--per-host`).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

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
/// The longest a ceiling holds, however often probes past it failed.
pub const MAX_HOLD: Duration = Duration::from_secs(600);
/// Requests remembered per host, for judging refusals: many windows'
/// worth. A refusal of a request sent longer ago says nothing of the
/// window now.
const KEPT: usize = 1024;

/// What a finished attempt says about its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A response came back without sign of overload, its head after
    /// `latency` (`None`: no measure, e.g. a 404 from a cache).
    Clean(Option<Duration>),
    /// The host is overloaded: 429, 503, a timeout, a broken connection.
    Overloaded,
}

/// One request, as far as the window knows it.
#[derive(Debug, Clone, Copy)]
struct Record {
    /// The host's transfers in flight when it went out, itself included.
    level: usize,
    /// The host's count of requests sent when it came back (`None`: in
    /// flight): those numbered up to it went out while it was in flight.
    back: Option<u64>,
    refused: bool,
}

/// The refusals of one overload, and what the window does about them.
#[derive(Debug, Clone)]
struct Overload {
    /// It is made of refusals of requests numbered above `from` (the cut
    /// before it) and up to `to` (sent before its own cut).
    from: u64,
    to: u64,
    /// The first of them that went out.
    first_refused: u64,
    /// Requests sent before the cut that have not come back: no new one
    /// goes out until they have, or until `drain_until`.
    out: usize,
    drain_until: Instant,
    /// Decided once they are back: whether the host refuses whatever the
    /// window, and is paused as a whole on `Retry-After`.
    host_wide: Option<bool>,
    /// The most the window may be after this overload.
    most: f64,
    /// The latest end of the waits its refusals asked for.
    retry_until: Option<Instant>,
}

/// One host's window.
#[derive(Debug, Clone)]
pub struct Window {
    size: f64,
    cap: f64,
    slow_start: bool,
    fastest: Option<Duration>,
    /// The window an overload happened at, since when, and how long it
    /// holds.
    ceiling: Option<(f64, Instant, Duration)>,
    in_flight: usize,
    /// Requests sent so far; the last [`KEPT`] of them.
    sent: u64,
    records: VecDeque<Record>,
    /// The last overload.
    overload: Option<Overload>,
    /// Asked by `Retry-After`: no new transfer to the host before then.
    paused_until: Option<Instant>,
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
            ceiling: None,
            in_flight: 0,
            sent: 0,
            records: VecDeque::new(),
            overload: None,
            paused_until: None,
            adaptive,
        }
    }

    /// Transfers allowed in flight now.
    pub fn allowed(&self) -> usize {
        self.size.floor().max(1.0) as usize
    }

    /// Transfers in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Until when no new transfer may go out, whatever the window: a
    /// `Retry-After` pause, or an overload's burst still coming back.
    pub fn held_until(&mut self, now: Instant) -> Option<Instant> {
        if self
            .overload
            .as_ref()
            .is_some_and(|o| o.host_wide.is_none() && now >= o.drain_until)
        {
            self.settle();
        }
        let draining = self
            .overload
            .as_ref()
            .filter(|o| o.host_wide.is_none())
            .map(|o| o.drain_until);
        let paused = self.paused_until(now);
        draining.max(paused)
    }

    /// Until when the window holds something learnt of the host's limits:
    /// a pause, or a ceiling it does not probe past yet.
    pub fn remembers_until(&self, now: Instant) -> Option<Instant> {
        let ceiling = self.ceiling.map(|(_, since, hold)| since + hold);
        self.paused_until.max(ceiling).filter(|&u| u > now)
    }

    /// Until when a `Retry-After` pauses the whole host.
    pub fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.paused_until.filter(|&u| u > now)
    }

    /// A request goes out now; returns its number.
    pub fn send(&mut self) -> u64 {
        self.in_flight += 1;
        self.sent += 1;
        if self.records.len() == KEPT {
            self.records.pop_front();
        }
        self.records.push_back(Record {
            level: self.in_flight,
            back: None,
            refused: false,
        });
        self.sent
    }

    /// Request `seq` came back (its outcome is reported after).
    pub fn back(&mut self, seq: u64) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let sent = self.sent;
        if let Some(r) = self.record(seq) {
            r.back = Some(sent);
        }
        if let Some(o) = self.overload.as_mut() {
            if o.host_wide.is_none() && seq <= o.to {
                o.out = o.out.saturating_sub(1);
            }
        }
    }

    fn first(&self) -> u64 {
        self.sent + 1 - self.records.len() as u64
    }

    fn record(&mut self, seq: u64) -> Option<&mut Record> {
        let i = seq.checked_sub(self.first())?;
        self.records.get_mut(usize::try_from(i).ok()?)
    }

    /// Takes in what the attempt that sent request `seq` said (`None`: a
    /// request the caller cannot place); `retry_after` is the wait the
    /// host asked for, `now` when the attempt ended.
    pub fn update(
        &mut self,
        signal: Signal,
        seq: Option<u64>,
        retry_after: Option<Duration>,
        now: Instant,
    ) {
        let retry_until = retry_after.filter(|w| !w.is_zero()).map(|w| now + w);
        match signal {
            Signal::Overloaded if !self.adaptive => {
                // Nothing here can be cut: only a pause takes load off
                // the host.
                self.pause(retry_until);
            }
            Signal::Overloaded => match seq {
                Some(seq) => {
                    if let Some(r) = self.record(seq) {
                        r.refused = true;
                        self.refused(seq, retry_until, now);
                    }
                }
                None => {
                    // Nobody knows when it went out: take it at its worst.
                    self.slow_start = false;
                    self.size = (self.size / 2.0).max(1.0);
                    self.pause(retry_until);
                }
            },
            Signal::Clean(_) if !self.adaptive => {}
            Signal::Clean(latency) => self.clean(latency, now),
        }
        if self
            .overload
            .as_ref()
            .is_some_and(|o| o.host_wide.is_none() && (o.out == 0 || now >= o.drain_until))
        {
            self.settle();
        }
    }

    fn pause(&mut self, until: Option<Instant>) {
        if until.is_some() {
            self.paused_until = self.paused_until.max(until);
        }
    }

    fn refused(&mut self, seq: u64, retry_until: Option<Instant>, now: Instant) {
        if let Some(o) = self.overload.as_mut().filter(|o| seq <= o.to) {
            if seq <= o.from {
                // Sent before the cut before last: two cuts have answered
                // it since.
                return;
            }
            o.first_refused = o.first_refused.min(seq);
            o.retry_until = o.retry_until.max(retry_until);
            if o.host_wide == Some(true) {
                self.pause(retry_until);
            }
            self.cut();
            return;
        }
        // A new overload: of a request sent after the last cut. The same
        // ceiling again means the probe past it failed: wait longer before
        // the next one.
        let hold = match self.ceiling {
            Some((c, _, hold)) if self.size.floor() >= c.floor() => {
                // Bounded: doubled without end (a host that resets
                // connections at random fails every probe), it overflowed
                // and panicked the transfer that reported.
                hold.saturating_mul(2).min(MAX_HOLD)
            }
            _ => PROBE_AFTER,
        };
        let round_trip = self
            .fastest
            .map_or(Duration::from_millis(100), |f| f * 2 + LATENCY_FLOOR);
        self.overload = Some(Overload {
            from: self.overload.as_ref().map_or(0, |o| o.to),
            to: self.sent,
            first_refused: seq,
            out: self.in_flight,
            drain_until: now + round_trip,
            host_wide: None,
            most: self.size,
            retry_until,
        });
        self.slow_start = false;
        self.ceiling = Some((self.size, now, hold));
        self.cut();
    }

    /// Sets the window, and the ceiling, to what the last overload says
    /// the host takes.
    fn cut(&mut self) {
        let Some(o) = &self.overload else { return };
        if o.host_wide == Some(true) {
            // Nothing was served: the refusals say nothing of a window.
            self.size = self.size.min(o.most);
            return;
        }
        let fits = self.fits(o) as f64;
        self.size = o.most.min(fits);
        if let Some((_, since, hold)) = self.ceiling {
            self.ceiling = Some((fits + 1.0, since, hold));
        }
    }

    /// What the host takes, by the last overload: the most requests it was
    /// serving at once from the departure of the first one it refused to
    /// the cut. At each departure, that is the requests in flight less
    /// those of them refused.
    fn fits(&self, o: &Overload) -> usize {
        let first = self.first();
        let lo = o.first_refused.max(first);
        let hi = o.to.min(self.sent);
        if lo > hi {
            return 1;
        }
        let n = usize::try_from(hi - lo).unwrap_or(0) + 1;
        // Each refusal was in flight over a run of departures: count them
        // by the runs' ends.
        let mut starts = vec![0usize; n + 1];
        let mut ends = vec![0usize; n + 1];
        for (seq, r) in (first..).zip(&self.records) {
            if !r.refused || seq > hi {
                continue;
            }
            let (from, to) = (seq.max(lo), r.back.unwrap_or(hi).min(hi));
            if from <= to {
                starts[(from - lo) as usize] += 1;
                ends[(to - lo) as usize + 1] += 1;
            }
        }
        let mut refused = 0;
        let mut most = 1;
        for (i, r) in self
            .records
            .iter()
            .skip((lo - first) as usize)
            .take(n)
            .enumerate()
        {
            refused = refused + starts[i] - ends[i];
            most = most.max(r.level.saturating_sub(refused));
        }
        most
    }

    /// The overload's burst is back, or as much of it as a round trip
    /// brings: if nothing sent since the cut before it was served, the host
    /// refuses whatever the window, and the cut is no answer. Then the
    /// window halves as well, and the host is paused as a whole.
    fn settle(&mut self) {
        let first = self.first();
        let Some(o) = self.overload.as_mut() else {
            return;
        };
        let served = (first..)
            .zip(&self.records)
            .any(|(seq, r)| seq > o.from && seq <= o.to && r.back.is_some() && !r.refused);
        let host_wide = !served || o.most < 2.0;
        o.host_wide = Some(host_wide);
        if host_wide {
            let before = o.most;
            o.most = (before / 2.0).max(1.0);
            self.size = o.most;
            // Growth stops short of the window it was refused at (as
            // AIMD's ceiling), not of what these refusals say fits: none.
            if let Some((_, since, hold)) = self.ceiling {
                self.ceiling = Some((before, since, hold));
            }
            let until = o.retry_until;
            self.pause(until);
        }
    }

    fn clean(&mut self, latency: Option<Duration>, now: Instant) {
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

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const SECOND: Duration = Duration::from_secs(1);

    /// `n` requests sent at once.
    fn burst(w: &mut Window, n: usize) -> Vec<u64> {
        (0..n).map(|_| w.send()).collect()
    }

    /// A refusal of `seq` with Retry-After: 1 s, at `now`.
    fn refuse(w: &mut Window, seq: u64, now: Instant) {
        w.back(seq);
        w.update(Signal::Overloaded, Some(seq), Some(SECOND), now);
    }

    /// A response to `seq` after `latency`, at `now`.
    fn serve(w: &mut Window, seq: u64, latency: Duration, now: Instant) {
        w.back(seq);
        w.update(Signal::Clean(Some(latency)), Some(seq), None, now);
    }

    /// Serves requests one at a time at `at`, until the window is `n`.
    fn grow_to(w: &mut Window, n: usize, at: Instant) {
        for _ in 0..1000 {
            if w.allowed() >= n {
                break;
            }
            let s = w.send();
            serve(w, s, 20 * MS, at);
        }
    }

    /// A host that takes 4: of the opening 16 it serves those that reach
    /// it first, not the first four sent, and refuses the rest.
    fn found_four(w: &mut Window, t: Instant) {
        let sent = burst(w, 16);
        let served = [0, 3, 7, 10];
        for (i, &s) in sent.iter().enumerate() {
            if !served.contains(&i) {
                refuse(w, s, t + 20 * MS);
            }
        }
        for &i in &served {
            serve(w, sent[i], 20 * MS, t + 21 * MS);
        }
        assert_eq!(w.allowed(), 4);
        assert_eq!(w.held_until(t + 21 * MS), None);
    }

    #[test]
    fn a_healthy_host_doubles_to_the_cap() {
        let mut w = Window::new(64, true);
        let t = Instant::now();
        assert_eq!(w.allowed(), 16);
        // One round trip's worth of clean responses doubles the window.
        for s in burst(&mut w, 16) {
            serve(&mut w, s, 50 * MS, t);
        }
        assert_eq!(w.allowed(), 32);
        grow_to(&mut w, 100, t);
        assert_eq!(w.allowed(), 64, "capped at --per-host");
    }

    #[test]
    fn one_burst_of_refusals_finds_the_hosts_limit_whatever_their_order() {
        // The host takes 4. Of the opening 16 it refused 12, not the last
        // 12 sent but those that reached it last, and the refusals came
        // back over 300 ms (a busy client): one overload, and the window
        // is what the host takes. (Counted within 2 x the fastest + 20 ms
        // of the first, the late refusals were further overloads, each
        // halving: the window ended at 1.)
        let mut w = Window::new(64, true);
        let t = Instant::now();
        let first = w.send();
        serve(&mut w, first, 20 * MS, t);
        let sent = burst(&mut w, 17);
        let served = [0, 3, 7, 10];
        let mut n = 0;
        for (i, &s) in sent.iter().enumerate() {
            if !served.contains(&i) {
                refuse(&mut w, s, t + 20 * MS + 25 * MS * n);
                n += 1;
            }
        }
        for &i in &served {
            serve(&mut w, sent[i], 20 * MS, t + 320 * MS);
        }
        assert_eq!(w.allowed(), 4);
        assert_eq!(w.held_until(t + 320 * MS), None, "the host was not paused");
        // It stays there: the fifth is where the host refused.
        grow_to(&mut w, 5, t + 400 * MS);
        assert_eq!(w.allowed(), 4, "held at the limit found");
    }

    #[test]
    fn the_requests_served_at_once_are_what_the_host_takes() {
        // The host takes 2, and served the 1st and the 16th of the opening
        // burst (the two that reached it first). The 1st came back before
        // any refusal, and a request went out at 16 in its place (refused),
        // then one more at 17 as slow start grew (refused): the levels
        // refused are 2 to 17, yet two were served at once. (Counting the
        // refusals against the window, the window went to 1.)
        let mut w = Window::new(64, true);
        let t = Instant::now();
        let sent = burst(&mut w, 16);
        w.back(sent[0]);
        let refill = w.send();
        w.update(Signal::Clean(Some(20 * MS)), Some(sent[0]), None, t);
        let grown = w.send();
        for &s in sent[1..15].iter().chain([&grown, &refill]) {
            refuse(&mut w, s, t + 20 * MS);
        }
        serve(&mut w, sent[15], 20 * MS, t + 21 * MS);
        assert_eq!(w.allowed(), 2);
        assert_eq!(w.held_until(t + 21 * MS), None, "the host was not paused");
    }

    #[test]
    fn a_probe_refused_for_a_whole_round_trip_settles_one_below() {
        // The host takes 16 and counts the requests it is refusing among
        // those in flight: once 17 are out, every request sent in the
        // next round trip finds 16 ahead of it and is refused too. The
        // refusals are one overload, and 16 were served at once. (Counted
        // as refusals of a window of 17, they said 1 fits.)
        let mut w = Window::new(64, true);
        let t = Instant::now();
        for s in burst(&mut w, 16) {
            serve(&mut w, s, 20 * MS, t);
        }
        // Slow start overshoots to 40 first: 16 fit.
        let mut steady = burst(&mut w, 16);
        for s in burst(&mut w, 24) {
            refuse(&mut w, s, t + 40 * MS);
        }
        assert_eq!(w.allowed(), 16);
        assert_eq!(w.held_until(t + 40 * MS), Some(t + 40 * MS + 60 * MS));
        // Steady at 16 for ten seconds: each response makes room for one.
        let late = t + PROBE_AFTER + 100 * MS;
        for _ in 0..2000 {
            let s = steady.remove(0);
            serve(&mut w, s, 20 * MS, late);
            if w.allowed() > 16 {
                break;
            }
            assert_eq!(w.held_until(late), None);
            steady.push(w.send());
        }
        assert_eq!(w.allowed(), 17, "past the hold it probes");
        steady.push(w.send());
        steady.push(w.send());
        let probe = *steady.last().unwrap();
        // The 16 ahead of it are served; each one's successor is refused.
        let mut refills = Vec::new();
        for s in steady.drain(..16) {
            serve(&mut w, s, 20 * MS, late + 10 * MS);
            refills.push(w.send());
        }
        refuse(&mut w, probe, late + 20 * MS);
        for s in refills {
            refuse(&mut w, s, late + 30 * MS);
        }
        assert_eq!(w.allowed(), 16, "one below the probe, not 1");
        assert_eq!(
            w.held_until(late + 30 * MS),
            None,
            "the host was not paused"
        );
        // The same ceiling again: the next probe waits twice as long.
        grow_to(&mut w, 17, late + PROBE_AFTER + 100 * MS);
        assert_eq!(w.allowed(), 16, "the second hold is longer");
        grow_to(&mut w, 17, late + 2 * PROBE_AFTER + 100 * MS);
        assert_eq!(w.allowed(), 17, "then it probes again");
    }

    #[test]
    fn a_host_that_refuses_whatever_the_window_is_paused_as_a_whole() {
        // The window that cut set (4) is refused in full, 5 ms after the
        // burst before it: a new overload (counted by arrival it was part
        // of the first), and the host refuses whatever the window. The
        // window halves, and the Retry-After holds back the whole host.
        let mut w = Window::new(64, true);
        let t = Instant::now();
        found_four(&mut w, t);
        let sent = burst(&mut w, 4);
        refuse(&mut w, sent[0], t + 26 * MS);
        assert_eq!(
            w.held_until(t + 26 * MS),
            Some(t + 26 * MS + 60 * MS),
            "held until the rest are back"
        );
        for &s in &sent[1..] {
            refuse(&mut w, s, t + 27 * MS);
        }
        assert_eq!(w.allowed(), 2);
        assert_eq!(w.held_until(t + 27 * MS), Some(t + 27 * MS + SECOND));
    }

    #[test]
    fn a_hold_ends_a_round_trip_after_the_cut_at_most() {
        // One request of the burst never comes back: new ones wait for it
        // a round trip (2 x the fastest + 20 ms) at most.
        let mut w = Window::new(64, true);
        let t = Instant::now();
        let first = w.send();
        serve(&mut w, first, 10 * MS, t);
        let sent = burst(&mut w, 8);
        for &s in &sent[1..7] {
            refuse(&mut w, s, t + 20 * MS);
        }
        serve(&mut w, sent[0], 10 * MS, t + 20 * MS);
        let until = t + 20 * MS + 40 * MS;
        assert_eq!(w.held_until(t + 30 * MS), Some(until));
        assert_eq!(w.held_until(until), None);
        assert_eq!(w.allowed(), 2);
    }

    #[test]
    fn what_cannot_be_cut_is_paused() {
        let t = Instant::now();
        // A window of 1.
        let mut w = Window::new(1, true);
        let s = w.send();
        refuse(&mut w, s, t);
        assert_eq!(w.held_until(t), Some(t + SECOND));
        // A fixed window.
        let mut w = Window::new(16, false);
        let s = w.send();
        refuse(&mut w, s, t);
        assert_eq!(w.held_until(t), Some(t + SECOND));
        assert_eq!(w.allowed(), 16);
        // A refusal nobody can place.
        let mut w = Window::new(64, true);
        w.update(Signal::Overloaded, None, Some(SECOND), t);
        assert_eq!(w.held_until(t), Some(t + SECOND));
        assert_eq!(w.allowed(), 8);
    }

    #[test]
    fn refusals_sent_before_the_last_two_cuts_change_nothing() {
        let mut w = Window::new(64, true);
        let t = Instant::now();
        let old = burst(&mut w, 16);
        for &s in &old[4..15] {
            refuse(&mut w, s, t);
        }
        for &s in &old[..4] {
            serve(&mut w, s, 20 * MS, t);
        }
        let s = w.send();
        serve(&mut w, s, 20 * MS, t);
        let s = w.send();
        refuse(&mut w, s, t + 30 * MS);
        let now = w.allowed();
        refuse(&mut w, old[15], t + 40 * MS);
        assert_eq!(w.allowed(), now);
        assert_eq!(w.held_until(t + 40 * MS), None);
    }

    #[test]
    fn probes_that_keep_failing_wait_ten_minutes_at_most() {
        // Doubled at each failed probe, the hold overflowed after some
        // sixty, and the report panicked.
        let mut w = Window::new(64, true);
        let mut now = Instant::now();
        found_four(&mut w, now);
        for _ in 0..80 {
            let until = w.remembers_until(now).unwrap();
            assert!(until - now <= MAX_HOLD);
            now = until;
            grow_to(&mut w, 5, now);
            assert_eq!(w.allowed(), 5, "past the hold it probes");
            let probe = burst(&mut w, 5);
            refuse(&mut w, probe[4], now);
            for &s in &probe[..4] {
                serve(&mut w, s, 20 * MS, now);
            }
            assert_eq!(w.allowed(), 4);
        }
    }

    #[test]
    fn rising_latency_stops_the_growth() {
        let mut w = Window::new(64, true);
        let t = Instant::now();
        let s = w.send();
        serve(&mut w, s, 20 * MS, t);
        let before = w.allowed();
        // Three times the fastest, past the slack: queueing.
        for _ in 0..50 {
            let s = w.send();
            serve(&mut w, s, 90 * MS, t);
        }
        let low = w.allowed();
        assert!(low < before, "{low} >= {before}");
        // Back to fast: growth resumes, one per round trip.
        for _ in 0..50 {
            let s = w.send();
            serve(&mut w, s, 21 * MS, t);
        }
        assert!(w.allowed() > low);
    }
}
