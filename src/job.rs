//! A download job from start to summary, wiring the stages together.
//!
//! ```text
//! input thread:  source::Entries -> plan::Planner ──(bounded channel)──┐
//! runtime:       dispatcher -> one task per item: limits -> fetch -> retry
//! recorder thread:                          <──(outcomes)── tasks ──────┘
//! ```
//! Back-pressure holds memory flat: the input thread blocks when the channel
//! is full, and the dispatcher keeps at most a fixed window of item tasks
//! alive (running or waiting for a per-host slot).

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::fetch::{self, Attempt, ClientConfig, FetchError, Fetcher, Target};
use crate::naming::{Claims, OutputDir};
use crate::plan::{Item, Planned, Planner};
use crate::report::{self, Outcome, Progress, ProgressMode, Recorder, ReportFiles, Status, Tally};
use crate::schedule::{Backoff, Limits};
use crate::source::{self, InputSpec};

/// Everything a job needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where URLs come from, in order.
    pub inputs: Vec<InputSpec>,
    /// Output directory.
    pub output: PathBuf,
    /// Transfers in flight, all hosts.
    pub jobs: usize,
    /// Transfers in flight to one host.
    pub per_host: usize,
    /// Retries of a transient failure per item.
    pub retries: u32,
    /// Retry timing.
    pub backoff: Backoff,
    /// HTTP client settings.
    pub client: ClientConfig,
    /// Manifest and failed list.
    pub reports: ReportFiles,
    /// Replace files that existed before the job.
    pub overwrite: bool,
    /// Progress display.
    pub progress: ProgressMode,
    /// Print each retry and failure as it happens.
    pub verbose: bool,
    /// Print no summary.
    pub quiet: bool,
}

impl Config {
    /// Defaults for everything but the inputs and output directory.
    pub fn new(inputs: Vec<InputSpec>, output: impl Into<PathBuf>) -> Self {
        Self {
            inputs,
            output: output.into(),
            jobs: 64,
            per_host: 16,
            retries: 5,
            backoff: Backoff::default(),
            client: ClientConfig {
                connect_timeout: Duration::from_secs(10),
                read_timeout: Duration::from_secs(30),
                user_agent: concat!("haul/", env!("CARGO_PKG_VERSION")).to_string(),
                headers: HeaderMap::new(),
                pool_per_host: 16,
            },
            reports: ReportFiles::default(),
            overwrite: false,
            progress: ProgressMode::Auto,
            verbose: false,
            quiet: false,
        }
    }
}

/// A job that could not run at all (as opposed to items that failed).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// An input could not be opened.
    #[error(transparent)]
    Source(#[from] source::SourceError),
    /// A report file could not be written.
    #[error(transparent)]
    Report(#[from] report::ReportError),
    /// The HTTP client could not be built.
    #[error(transparent)]
    Client(#[from] fetch::ClientError),
    /// The output directory could not be created.
    #[error("cannot create output directory {path}: {source}")]
    Output {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// How a job ended.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Totals.
    pub tally: Tally,
    /// Whether it was interrupted before the input was done.
    pub interrupted: bool,
    /// Wall time.
    pub elapsed: Duration,
}

struct Shared {
    fetcher: Fetcher,
    limits: Limits,
    backoff: Backoff,
    retries: u32,
    stop: CancellationToken,
    verbose: bool,
}

/// Runs a job to the end, or until `stop` is cancelled.
pub async fn run(cfg: Config, stop: CancellationToken) -> Result<Finished, JobError> {
    let entries = source::open(cfg.inputs.clone())?;
    fs_err::create_dir_all(&cfg.output).map_err(|source| JobError::Output {
        path: cfg.output.clone(),
        source,
    })?;
    let mut recorder = Recorder::create(&cfg.reports)?;
    let mut client_cfg = cfg.client.clone();
    client_cfg.pool_per_host = cfg.per_host;
    let client = fetch::build_client(&client_cfg)?;

    let progress = Progress::new(if cfg.quiet {
        ProgressMode::None
    } else {
        cfg.progress
    });
    let out = OutputDir::new(cfg.output.clone());
    let claims = Arc::new(Claims::default());
    let shared = Arc::new(Shared {
        fetcher: Fetcher {
            client,
            out: out.clone(),
            claims: claims.clone(),
            overwrite: cfg.overwrite,
            progress: progress.clone(),
        },
        limits: Limits::new(cfg.jobs, cfg.per_host),
        backoff: cfg.backoff.clone(),
        retries: cfg.retries,
        stop: stop.clone(),
        verbose: cfg.verbose,
    });

    // Input thread: read and plan, in input order.
    let (plan_tx, mut plan_rx) = mpsc::channel::<Planned>(1024);
    let input = {
        let progress = progress.clone();
        let stop = stop.clone();
        let mut planner = Planner::new(out, claims, cfg.overwrite);
        std::thread::Builder::new()
            .name("haul-input".into())
            .spawn(move || {
                for entry in entries {
                    if stop.is_cancelled() {
                        return;
                    }
                    let planned = planner.plan(entry);
                    progress.seen.fetch_add(1, Relaxed);
                    if plan_tx.blocking_send(planned).is_err() {
                        return;
                    }
                }
                progress.input_done.store(true, Relaxed);
            })
            .map_err(|source| JobError::Output {
                path: cfg.output.clone(),
                source,
            })?
    };

    // Recorder thread: owns the report files.
    let (out_tx, mut out_rx) = mpsc::channel::<Outcome>(4096);
    let recorder = std::thread::Builder::new()
        .name("haul-record".into())
        .spawn(move || {
            let mut first_error = None;
            while let Some(o) = out_rx.blocking_recv() {
                if let Err(e) = recorder.record(&o) {
                    first_error.get_or_insert(e);
                }
            }
            match first_error {
                Some(e) => Err(e),
                None => recorder.finish(),
            }
        })
        .map_err(|source| JobError::Output {
            path: cfg.output.clone(),
            source,
        })?;

    let ticker_stop = CancellationToken::new();
    let ticker = tokio::spawn(progress.clone().run(ticker_stop.clone()));

    // Dispatcher: one task per item, at most `window` alive at once.
    let window = cfg.jobs * 4 + 256;
    let alive = Arc::new(Semaphore::new(window));
    loop {
        let planned = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            p = plan_rx.recv() => match p { Some(p) => p, None => break },
        };
        match planned {
            Planned::Settled(o) => {
                count(&progress, o.status);
                let _ = out_tx.send(o).await;
            }
            Planned::Fetch(item) => {
                let slot = tokio::select! {
                    biased;
                    _ = stop.cancelled() => break,
                    s = alive.clone().acquire_owned() => s,
                };
                let shared = shared.clone();
                let out_tx = out_tx.clone();
                let progress = progress.clone();
                tokio::spawn(async move {
                    let o = drive(&shared, item).await;
                    count(&progress, o.status);
                    let _ = out_tx.send(o).await;
                    drop(slot);
                });
            }
        }
    }
    drop(plan_rx);
    // Every task gives its slot back when done; cancellation makes them quick.
    let _ = alive.acquire_many(window as u32).await;
    drop(out_tx);
    let tally = tokio::task::spawn_blocking(move || recorder.join())
        .await
        .ok()
        .and_then(|r| r.ok());
    let _ = tokio::task::spawn_blocking(move || input.join()).await;
    ticker_stop.cancel();
    let _ = ticker.await;
    let tally = match tally {
        Some(t) => t?,
        None => Tally::default(),
    };
    let interrupted = stop.is_cancelled();
    let elapsed = progress.elapsed();
    if !cfg.quiet {
        eprint!("{}", report::summary(&tally, elapsed, interrupted));
    }
    Ok(Finished {
        tally,
        interrupted,
        elapsed,
    })
}

fn count(progress: &Progress, status: Status) {
    match status {
        Status::Ok => progress.ok.fetch_add(1, Relaxed),
        Status::Skipped => progress.skipped.fetch_add(1, Relaxed),
        Status::Failed => progress.failed.fetch_add(1, Relaxed),
    };
}

/// Takes one item through its attempts: wait for a slot, fetch, and on a
/// transient failure release the slot, back off and go again.
async fn drive(sh: &Shared, item: Item) -> Outcome {
    let started = Instant::now();
    let mut out = Outcome::new(item.url.to_string(), &item.origin, Status::Failed);
    let mut target = Target {
        url: item.url,
        dest: item.dest,
        named_by_server: false,
    };
    let mut attempts = 0;
    let result = loop {
        let permit = tokio::select! {
            biased;
            _ = sh.stop.cancelled() => break Err(FetchError::Interrupted),
            p = sh.limits.acquire(&item.host) => p,
        };
        attempts += 1;
        let result = sh.fetcher.attempt(&mut target, &sh.stop).await;
        drop(permit);
        match result {
            Err(e) if e.is_transient() && attempts <= sh.retries => {
                let wait = sh.backoff.delay(attempts, e.retry_after());
                if sh.verbose {
                    sh.fetcher.progress.println(&format!(
                        "retry {attempts}/{} in {:.1} s: {}: {e}",
                        sh.retries,
                        wait.as_secs_f64(),
                        target.url
                    ));
                }
                out.http_status = e.http_status();
                tokio::select! {
                    biased;
                    _ = sh.stop.cancelled() => break Err(FetchError::Interrupted),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            other => break other,
        }
    };
    out.attempts = attempts;
    out.path = Some(target.dest.rel.clone());
    match result {
        Ok(Attempt::Saved(f)) => {
            out.status = Status::Ok;
            out.http_status = Some(f.http_status);
            out.bytes = f.bytes;
            out.sha256 = Some(f.sha256);
        }
        Ok(Attempt::Exists(code)) => {
            out.status = Status::Skipped;
            out.http_status = Some(code);
            out.reason = Some("exists".into());
        }
        Err(e) => {
            if let Some(code) = e.http_status() {
                out.http_status = Some(code);
            }
            out.reason = Some(e.reason());
            let retried = if attempts > 1 {
                format!(" (after {attempts} attempts)")
            } else {
                String::new()
            };
            out.error = Some(format!("{e}{retried}"));
            if sh.verbose {
                sh.fetcher
                    .progress
                    .println(&format!("failed: {}: {e}{retried}", target.url));
            }
            if !matches!(e, FetchError::Interrupted) {
                // A partial that will not be resumed is only litter.
                let part = target.dest.part_path();
                let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(part)).await;
            }
        }
    }
    out.elapsed_ms = started.elapsed().as_millis() as u64;
    out
}
