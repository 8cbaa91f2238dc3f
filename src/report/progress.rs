//! Live progress: counters the transfers bump, and a ticker that draws them.
//!
//! Transfers only touch atomics; all drawing happens on one ticker task a few
//! times a second, so a job of a million small files pays for a few atomic
//! adds per file and nothing more. Only large transfers (a megabyte or more,
//! or of unknown length) are registered for the per-transfer lines, and only
//! when bars are drawn.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::human_bytes;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProgressMode {
    /// Bars on a terminal, plain lines otherwise.
    Auto,
    /// Bars.
    Bar,
    /// A plain line every few seconds.
    Plain,
    /// Nothing.
    None,
}

/// Transfers smaller than this get no line of their own.
const BIG: u64 = 1 << 20;
/// Lines shown for transfers in flight.
const SHOWN: usize = 3;
/// Time between plain progress lines.
const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// A transfer that has received nothing for this long shows as stalled.
const STALLED_AFTER: Duration = Duration::from_secs(5);

/// Hosts named on the progress line; past this, it gives their number.
const HOSTS_NAMED: usize = 3;
/// Hosts a [`super::Snapshot`] carries.
const HOSTS_IN_SNAPSHOT: usize = 8;

/// Reads the busiest hosts' windows (at most the given number) and how
/// many hosts are active: installed by the job, which knows the schedule.
pub type HostSource = Box<dyn Fn(usize) -> (Vec<super::HostWindow>, u64) + Send + Sync>;

struct Transfer {
    name: String,
    total: Option<u64>,
    bytes: AtomicU64,
    /// When bytes last arrived, in milliseconds since the job started.
    last_ms: AtomicU64,
}

/// Counters shared by every transfer, and the display that reads them.
pub struct Progress {
    mode: ProgressMode,
    started: Instant,
    /// Items read from the input so far.
    pub seen: AtomicU64,
    /// Set when the input has been read to the end.
    pub input_done: AtomicBool,
    /// Items downloaded.
    pub ok: AtomicU64,
    /// Items skipped.
    pub skipped: AtomicU64,
    /// Items failed.
    pub failed: AtomicU64,
    /// Body bytes received, all transfers.
    pub bytes: AtomicU64,
    next_id: AtomicU64,
    big: Mutex<HashMap<u64, Arc<Transfer>>>,
    multi: Option<MultiProgress>,
    hosts: std::sync::OnceLock<HostSource>,
}

/// A large transfer's line; removed when dropped.
pub struct TransferBar {
    progress: Arc<Progress>,
    id: u64,
    state: Arc<Transfer>,
}

impl TransferBar {
    /// Adds body bytes to this transfer's line.
    pub fn add(&self, n: u64) {
        self.state.bytes.fetch_add(n, Relaxed);
        let now = self.progress.started.elapsed().as_millis() as u64;
        self.state.last_ms.store(now, Relaxed);
    }
}

impl Drop for TransferBar {
    fn drop(&mut self) {
        if let Ok(mut big) = self.progress.big.lock() {
            big.remove(&self.id);
        }
    }
}

impl Progress {
    /// Counters for a new job; `mode` `Auto` resolves by whether stderr is a
    /// terminal.
    pub fn new(mode: ProgressMode) -> Arc<Self> {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Plain,
            m => m,
        };
        let multi = (mode == ProgressMode::Bar)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(5)));
        Arc::new(Self {
            mode,
            started: Instant::now(),
            seen: AtomicU64::new(0),
            input_done: AtomicBool::new(false),
            ok: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            next_id: AtomicU64::new(0),
            big: Mutex::new(HashMap::new()),
            multi,
            hosts: std::sync::OnceLock::new(),
        })
    }

    /// Time since the job started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Where the per-host windows are read from; the first call wins.
    pub fn watch_hosts(&self, source: HostSource) {
        let _ = self.hosts.set(source);
    }

    fn hosts(&self, n: usize) -> (Vec<super::HostWindow>, u64) {
        self.hosts.get().map(|f| f(n)).unwrap_or_default()
    }

    /// The hosts part of a progress line: each host's transfers in flight
    /// over its window while few are active (a user watching one or two
    /// hosts sees what each allows), else their number.
    fn hosts_line(&self) -> Option<String> {
        let (hosts, active) = self.hosts(HOSTS_NAMED);
        if active == 0 {
            return None;
        }
        if active as usize > HOSTS_NAMED {
            return Some(format!("{active} hosts"));
        }
        let named: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        Some(format!("in flight/window: {}", named.join(", ")))
    }

    /// The counters now, for a [`super::Reporter`].
    pub fn snapshot(&self) -> super::Snapshot {
        let (hosts, hosts_active) = self.hosts(HOSTS_IN_SNAPSHOT);
        super::Snapshot {
            seen: self.seen.load(Relaxed),
            input_done: self.input_done.load(Relaxed),
            ok: self.ok.load(Relaxed),
            skipped: self.skipped.load(Relaxed),
            failed: self.failed.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            elapsed: self.elapsed(),
            hosts,
            hosts_active,
        }
    }

    /// Registers a transfer for its own line when it is big enough to be
    /// worth one and bars are drawn.
    pub fn transfer(self: &Arc<Self>, name: &str, total: Option<u64>) -> Option<TransferBar> {
        if self.mode != ProgressMode::Bar || total.is_some_and(|t| t < BIG) {
            return None;
        }
        let id = self.next_id.fetch_add(1, Relaxed);
        let state = Arc::new(Transfer {
            name: name.to_string(),
            total,
            bytes: AtomicU64::new(0),
            last_ms: AtomicU64::new(self.started.elapsed().as_millis() as u64),
        });
        self.big.lock().ok()?.insert(id, state.clone());
        Some(TransferBar {
            progress: self.clone(),
            id,
            state,
        })
    }

    /// Prints a message without tearing the bars.
    pub fn println(&self, msg: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(msg);
            }
            None => eprintln!("{msg}"),
        }
    }

    /// Items finished so far, however they ended.
    pub fn finished(&self) -> u64 {
        self.ok.load(Relaxed) + self.skipped.load(Relaxed) + self.failed.load(Relaxed)
    }

    /// The time left, from the bytes still to come at the rate so far: the
    /// rest of the large transfers in flight (their sizes are known), and
    /// for the files not finished, the mean size of those that were. `None`
    /// until the input is read and some bytes have come.
    fn eta(&self) -> Option<Duration> {
        let elapsed = self.elapsed().as_secs_f64();
        let received = self.bytes.load(Relaxed) as f64;
        let finished = self.finished();
        if !self.input_done.load(Relaxed) || received == 0.0 || finished == 0 || elapsed < 1.0 {
            return None;
        }
        let (mut rest, mut counted) = (0.0, 0u64);
        if let Ok(big) = self.big.lock() {
            for t in big.values() {
                if let Some(total) = t.total {
                    rest += total.saturating_sub(t.bytes.load(Relaxed)) as f64;
                    counted += 1;
                }
            }
        }
        let left = self.seen.load(Relaxed).saturating_sub(finished + counted);
        rest += left as f64 * received / finished as f64;
        Some(Duration::from_secs_f64(rest / (received / elapsed)))
    }

    fn rate(&self) -> String {
        let secs = self.elapsed().as_secs_f64().max(1e-3);
        format!(
            "{}/s",
            human_bytes((self.bytes.load(Relaxed) as f64 / secs) as u64)
        )
    }

    fn plain_line(&self) -> String {
        let total = if self.input_done.load(Relaxed) {
            self.seen.load(Relaxed).to_string()
        } else {
            format!("{}+", self.seen.load(Relaxed))
        };
        let mut line = format!(
            "haul: {}/{} files, {} failed, {}, {}",
            self.finished(),
            total,
            self.failed.load(Relaxed),
            human_bytes(self.bytes.load(Relaxed)),
            self.rate()
        );
        if let Some(hosts) = self.hosts_line() {
            line.push_str("; ");
            line.push_str(&hosts);
        }
        line
    }

    /// Draws until `stop` is cancelled, then clears the bars.
    pub async fn run(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        match self.mode {
            ProgressMode::Bar => self.run_bars(stop).await,
            ProgressMode::Plain => loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(PLAIN_EVERY) => eprintln!("{}", self.plain_line()),
                }
            },
            ProgressMode::Auto | ProgressMode::None => {}
        }
    }

    async fn run_bars(&self, stop: tokio_util::sync::CancellationToken) {
        let Some(multi) = &self.multi else { return };
        let main = multi.add(ProgressBar::new(0));
        // Fixed parts stay within 80 columns; the bars take what is left.
        main.set_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed:>4} {wide_bar} {pos}/{len} files {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        let line_style = ProgressStyle::with_template(
            "  {prefix:20!} {wide_bar} {decimal_bytes:>9}/{decimal_total_bytes:<9} {msg:>12}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let hosts_bar = multi.add(ProgressBar::new(0));
        hosts_bar.set_style(
            ProgressStyle::with_template("  {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let mut lines: Vec<(u64, ProgressBar)> = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            main.set_length(self.seen.load(Relaxed));
            main.set_position(self.finished());
            let eta = match self.eta() {
                Some(d) => format!("eta {}", indicatif::HumanDuration(d)),
                None => "eta ?".into(),
            };
            main.set_message(format!(
                "{} {} {} failed {eta}",
                human_bytes(self.bytes.load(Relaxed)),
                self.rate(),
                self.failed.load(Relaxed)
            ));
            hosts_bar.set_message(self.hosts_line().unwrap_or_default());
            // The largest transfers in flight get a line each.
            let mut big: Vec<(u64, Arc<Transfer>)> = match self.big.lock() {
                Ok(b) => b.iter().map(|(id, t)| (*id, t.clone())).collect(),
                Err(_) => Vec::new(),
            };
            big.sort_by_key(|(_, t)| std::cmp::Reverse(t.total.unwrap_or(u64::MAX)));
            big.truncate(SHOWN);
            lines.retain(|(id, bar)| {
                let keep = big.iter().any(|(b, _)| b == id);
                if !keep {
                    bar.finish_and_clear();
                    multi.remove(bar);
                }
                keep
            });
            for (id, t) in &big {
                let bar = match lines.iter().find(|(l, _)| l == id) {
                    Some((_, bar)) => bar.clone(),
                    None => {
                        let bar = multi.add(ProgressBar::new(t.total.unwrap_or(0)));
                        bar.set_style(line_style.clone());
                        bar.set_prefix(t.name.clone());
                        lines.push((*id, bar.clone()));
                        bar
                    }
                };
                bar.set_position(t.bytes.load(Relaxed));
                let now = self.started.elapsed().as_millis() as u64;
                let quiet = Duration::from_millis(now.saturating_sub(t.last_ms.load(Relaxed)));
                if quiet >= STALLED_AFTER {
                    bar.set_message(format!("stalled {}s", quiet.as_secs()));
                } else {
                    let secs = bar.elapsed().as_secs_f64().max(0.2);
                    let rate = (bar.position() as f64 / secs) as u64;
                    bar.set_message(format!("{}/s", human_bytes(rate)));
                }
            }
        }
        for (_, bar) in lines {
            bar.finish_and_clear();
        }
        hosts_bar.finish_and_clear();
        main.finish_and_clear();
        let _ = multi.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::HostWindow;

    #[test]
    fn the_progress_line_names_few_hosts_and_counts_many() {
        let p = Progress::new(ProgressMode::None);
        assert!(!p.plain_line().contains("in flight"), "no source, no hosts");
        let active = Arc::new(AtomicU64::new(2));
        let a = active.clone();
        p.watch_hosts(Box::new(move |n| {
            let all = vec![
                HostWindow::new("a.test:80".into(), 3, 4, None),
                HostWindow::new("b.test:80".into(), 0, 8, Some(Duration::from_millis(1500))),
            ];
            (all.into_iter().take(n).collect(), a.load(Relaxed))
        }));
        let line = p.plain_line();
        assert!(
            line.ends_with("; in flight/window: a.test:80 3/4, b.test:80 0/8 paused 2s"),
            "{line}"
        );
        assert_eq!(p.snapshot().hosts.len(), 2);
        active.store(40, Relaxed);
        assert!(p.plain_line().ends_with("; 40 hosts"), "{}", p.plain_line());
        active.store(0, Relaxed);
        assert!(!p.plain_line().contains("host"), "{}", p.plain_line());
    }
}
