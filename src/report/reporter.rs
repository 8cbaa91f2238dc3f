//! How a caller hears of a job as it runs: a [`Reporter`] receives every
//! item's outcome, the counters a few times a second, the messages meant
//! for people, and the end. The `haul` command's progress display and
//! closing summary are one implementation ([`Console`]); a program that
//! embeds haul, the Python package or a dashboard are others.
//!
//! Every method has a default that does nothing, so a reporter implements
//! only what it wants. Methods are called from the job's threads (the
//! ledger for outcomes, the runtime for the rest): keep them quick, and
//! hand anything slow to a thread of your own.

use std::sync::Arc;
use std::time::Duration;

use super::{summary, Outcome, Progress, Tally};

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Level {
    /// What haul took the input to be, a retry (with `-v`): for people
    /// watching.
    Note,
    /// Something the user should act on: an empty input, a full disk, a
    /// bad input row.
    Warning,
}

/// The job's counters at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Snapshot {
    /// Items read from the input so far.
    pub seen: u64,
    /// Whether the input has been read to the end (`seen` is final).
    pub input_done: bool,
    /// Items done.
    pub ok: u64,
    /// Items skipped.
    pub skipped: u64,
    /// Items failed.
    pub failed: u64,
    /// Bytes received in this run.
    pub bytes: u64,
    /// Time since the job started.
    pub elapsed: Duration,
    /// The busiest hosts (at most 8), most in flight first.
    pub hosts: Vec<HostWindow>,
    /// Hosts with a transfer in flight or waiting.
    pub hosts_active: u64,
}

/// How much of one host's window is in use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostWindow {
    /// `host:port`.
    pub host: String,
    /// Transfers in flight to it.
    pub in_flight: u32,
    /// Transfers its window allows now: it grows while the host answers
    /// quickly and cleanly, and shrinks on 429, 503, timeouts, resets and
    /// rising latency.
    pub window: u32,
    /// Time left of a pause the host asked for with `Retry-After`.
    pub paused: Option<Duration>,
}

impl HostWindow {
    /// A host's figures.
    pub fn new(host: String, in_flight: u32, window: u32, paused: Option<Duration>) -> Self {
        Self {
            host,
            in_flight,
            window,
            paused,
        }
    }
}

impl std::fmt::Display for HostWindow {
    /// `host:port 12/16`, and `paused 3s` while paused.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.host, self.in_flight, self.window)?;
        if let Some(p) = self.paused {
            write!(f, " paused {}s", p.as_secs_f64().ceil() as u64)?;
        }
        Ok(())
    }
}

/// How a finished job is summed up for a reporter.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Summary {
    /// Totals.
    pub tally: Tally,
    /// Stopped by the caller (Ctrl-C, SIGTERM) before the input was done.
    pub interrupted: bool,
    /// Stopped because the disk filled: where.
    pub no_space: Option<String>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Receives what happens in a job. See the module documentation.
pub trait Reporter: Send + Sync {
    /// One item ended: done, skipped or failed. Called exactly once for
    /// every item that ended, in the order they ended (input rows that are
    /// not URLs included); items an interruption stopped before their
    /// first request are not reported (they stay pending in the job state).
    fn on_outcome(&self, outcome: &Outcome) {
        let _ = outcome;
    }

    /// The counters, a few times a second while the job runs.
    fn on_progress(&self, snapshot: &Snapshot) {
        let _ = snapshot;
    }

    /// A message for people.
    fn on_message(&self, level: Level, text: &str) {
        let _ = (level, text);
    }

    /// The job ended (also when interrupted); not called when it failed to
    /// start or its state could not be written.
    fn on_finish(&self, summary: &Summary) {
        let _ = summary;
    }
}

/// A [`Reporter`] to put in a [`crate::Config`]: shared, and shown as
/// `Reporter` by `Debug`.
#[derive(Clone)]
pub struct SharedReporter(pub Arc<dyn Reporter>);

impl std::fmt::Debug for SharedReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reporter")
    }
}

/// A reporter that hears nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Reporter for Silent {}

/// The `haul` command's reporter: messages on stderr (around the progress
/// bars, which [`Progress`] draws), and the closing summary.
pub struct Console {
    progress: Arc<Progress>,
    quiet: bool,
}

impl Console {
    /// Prints through `progress`'s display; nothing at all when `quiet`.
    pub fn new(progress: Arc<Progress>, quiet: bool) -> Self {
        Self { progress, quiet }
    }
}

impl Reporter for Console {
    fn on_message(&self, level: Level, text: &str) {
        if self.quiet {
            return;
        }
        match level {
            Level::Warning => self.progress.println(&format!("haul: warning: {text}")),
            _ => self.progress.println(&format!("haul: {text}")),
        }
    }

    fn on_finish(&self, s: &Summary) {
        if self.quiet {
            return;
        }
        eprint!("{}", summary(&s.tally, s.elapsed, s.interrupted));
        if let Some(where_) = &s.no_space {
            eprintln!(
                "haul: no space left on {where_}: stopped starting transfers; free some space \
                 and run the same command again to carry on"
            );
        }
    }
}
