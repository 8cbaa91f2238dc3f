//! A worker of a shared job (`haul worker`): its claims on the job's
//! pending items, the thread that keeps its leases alive and counts the
//! workers (for its share of job-wide limits), and the input loop that
//! claims items as the ledger takes them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::report;
use crate::source::Entry;
use crate::store::StoreError;

/// A worker's hold on the shared job: its claims, and the thread that
/// keeps its leases alive.
pub(crate) struct Worker {
    pub(crate) owner: String,
    pub(crate) claims: Arc<crate::store::Claims>,
    /// This worker's share of a job-wide `--per-host`, as workers come
    /// and go.
    pub(crate) cap: Arc<std::sync::atomic::AtomicUsize>,
    /// Workers alive, this one included, as the heartbeats count them:
    /// the job's `--rate` and `--wait` are shared among them.
    pub(crate) live: Arc<std::sync::atomic::AtomicU64>,
    renewer: Option<(std::thread::JoinHandle<()>, std::sync::mpsc::Sender<()>)>,
}

/// Items claimed at a time, and the room a worker waits for before it
/// claims: a statement's cost (planning it, its commit) is shared by a
/// claim's items. At 16, claims averaged 13 items, and the claiming
/// backends' CPU was 92 µs per item claimed (4 workers at `-j 64`,
/// bench/shared.py). A worker holds at least 256 more than this, so it is
/// never short of work while it waits for room.
pub(crate) const CLAIM_BATCH: u32 = 64;

/// How often a worker says it is alive and counts the others.
const HEARTBEAT: Duration = Duration::from_secs(1);

impl Worker {
    pub(crate) fn start(
        loc: &crate::store::PgLocation,
        lease: Duration,
        retry_failed: bool,
        per_host: Option<usize>,
        rated: bool,
    ) -> Result<Worker, StoreError> {
        use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
        let owner = format!(
            "{}-{}-{:08x}",
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "worker".into()),
            std::process::id(),
            fastrand::u32(..)
        );
        let claims = Arc::new(crate::store::Claims::open(loc, &owner, lease)?);
        // As a re-run does: transient failures are tried again, and
        // permanent ones too with --retry-failed.
        claims.requeue_failed(retry_failed)?;
        let cap = Arc::new(AtomicUsize::new(usize::MAX));
        let share = move |live: u64| per_host.map_or(usize::MAX, |n| (n / live as usize).max(1));
        let mut live = claims.heartbeat()?;
        if per_host.is_some() || rated {
            // Workers started together see each other before any request:
            // the job-wide limits hold from the first one.
            std::thread::sleep(HEARTBEAT + HEARTBEAT / 2);
            live = claims.heartbeat()?;
        }
        cap.store(share(live), Relaxed);
        let live = Arc::new(AtomicU64::new(live));
        let renewing = crate::store::Claims::open(loc, &owner, lease)?;
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let (worker_cap, worker_live) = (cap.clone(), live.clone());
        let renewer = std::thread::Builder::new()
            .name("haul-lease".into())
            .spawn(move || {
                // Leases are renewed every third of their length: two
                // renewals may fail before the items go to other workers.
                let mut renewed = Instant::now();
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stop_rx.recv_timeout(HEARTBEAT.min(lease / 3))
                {
                    if let Ok(live) = renewing.heartbeat() {
                        worker_cap.store(share(live), Relaxed);
                        worker_live.store(live, Relaxed);
                    }
                    if renewed.elapsed() >= lease / 3 {
                        let _ = renewing.renew();
                        renewed = Instant::now();
                    }
                }
            })
            .map_err(|e| StoreError::Postgres {
                at: loc.display(),
                message: format!("cannot start the thread that renews leases: {e}"),
            })?;
        Ok(Worker {
            owner,
            claims,
            cap,
            live,
            renewer: Some((renewer, stop_tx)),
        })
    }

    /// Stops renewing and gives back what this worker claimed and did not
    /// finish (interrupted, or stopped by a full disk), for the others.
    pub(crate) fn finish(mut self, reporter: &dyn report::Reporter) {
        if let Some((thread, stop)) = self.renewer.take() {
            drop(stop);
            let _ = thread.join();
        }
        let _ = self.claims.leave();
        if let Err(e) = self.claims.release() {
            reporter.on_message(
                report::Level::Warning,
                &format!("could not give back this worker's unfinished items ({e}); they go to other workers when their leases run out"),
            );
        }
    }
}

/// A worker's input: claims batches of pending items until none is left
/// that this or another worker could take.
pub(crate) fn claim_loop(
    claims: &crate::store::Claims,
    to_ledger: &mpsc::Sender<Entry>,
    stop: &CancellationToken,
    reporter: &dyn report::Reporter,
    room: &dyn Fn(u64) -> usize,
) {
    let mut idle_said = false;
    let mut claimed = 0u64;
    while !stop.is_cancelled() {
        let n = room(claimed).min(CLAIM_BATCH as usize) as u32;
        if n < CLAIM_BATCH {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let batch = match claims.claim(n) {
            Ok(b) => b,
            Err(e) => {
                reporter.on_message(
                    report::Level::Warning,
                    &format!("cannot claim items: {e}; trying again in a few seconds"),
                );
                std::thread::sleep(Duration::from_secs(3));
                continue;
            }
        };
        if batch.is_empty() {
            match claims.others_pending() {
                Ok(true) => {
                    if !idle_said {
                        reporter.on_message(
                            report::Level::Note,
                            "nothing left to claim; waiting for other workers' items \
                             (taken over if their leases run out)",
                        );
                        idle_said = true;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
                Ok(false) => {}
                // PostgreSQL is away: ask again once it is back.
                Err(_) => {
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            }
            // Items this worker leased that never reached it: a claim whose
            // answer was lost with the connection. Once everything it did
            // receive is done, it gives them back and claims them again.
            match claims.own_pending() {
                Ok(0) => return,
                Ok(_) if room(claimed) == room(0) => {
                    let _ = claims.release();
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
            continue;
        }
        idle_said = false;
        claimed += batch.len() as u64;
        for (u, row) in batch {
            let origin = crate::source::Origin {
                input: u.input.into(),
                line: u.line,
            };
            let mut entry = Entry::new(origin, Ok(u.url));
            entry.discovered = true;
            entry.parent = u.parent;
            entry.claimed = Some(Box::new(row));
            if let Some(depth) = u.page_depth {
                entry.kind = crate::source::Kind::Page { depth };
            }
            if to_ledger.blocking_send(entry).is_err() {
                return;
            }
        }
    }
}
