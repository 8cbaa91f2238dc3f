//! A download job from start to summary, wiring the stages together.
//!
//! ```text
//! input thread:   source::Entries ──(entries)──> ledger thread: plan, store, report
//! runtime:        dispatcher <──(items)── ledger
//!                 one task per item: schedule::Limits -> fetch -> retry
//!                 tasks ──(events: started, claims, outcomes)──> ledger
//! ```
//! Back-pressure holds memory flat however long the input: the input thread
//! blocks when its channel is full, the ledger plans only a little ahead of
//! the dispatcher, and the dispatcher keeps at most a fixed window of item
//! tasks alive (running or waiting for a per-host slot).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::fetch::{self, Attempt, FetchError, Fetcher, Target};
use crate::ledger::{Event, Ledger, LedgerError, Wiring};
use crate::plan::{Item, Planner};
use crate::report::{self, Outcome, Progress, ProgressMode, Recorder, ReportFiles, Status, Tally};
use crate::schedule::{Backoff, Limits, Signal};
use crate::source::{self, InputSpec};
use crate::store::{Store, StoreError};

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
    Client(#[from] crate::http::ClientError),
    /// The job state could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The job state or reports could not be written during the job.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A report would be written over an input, or over the other report.
    #[error(
        "{flag} {} is also {what} {}; haul never writes over its own input: \
         name the {flag} file differently (e.g. {})",
        output.display(), input.display(), suggest.display()
    )]
    Clobber {
        /// `--report` or `--failed`.
        flag: &'static str,
        /// The report's path.
        output: PathBuf,
        /// `the input` or `the other report`, with its flag.
        what: &'static str,
        /// The input's path.
        input: PathBuf,
        /// A free name to suggest.
        suggest: PathBuf,
    },
    /// The settings do not fit together.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The object store `-o` names cannot be used.
    #[error(transparent)]
    Objects(#[from] crate::objects::ObjectsError),
    /// The thread that records outcomes stopped unexpectedly (a bug).
    #[error(
        "the job state's recording thread stopped unexpectedly; what it recorded is kept, \
         and running the same command again carries on (please report this)"
    )]
    LedgerLost,
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
    /// The job stopped because the disk filled: where (the device and its
    /// mount point, as well as they could be found).
    pub no_space: Option<String>,
    /// Wall time.
    pub elapsed: Duration,
}

/// What the transfers of a crawl share.
struct CrawlShared {
    rules: Arc<crate::crawl::Rules>,
    robots: Option<crate::schedule::robots::RobotsCache>,
}

struct Shared {
    crawl: Option<CrawlShared>,
    keep_columns: Vec<String>,
    checksum_column: Option<String>,
    fetcher: Fetcher,
    meta_url: Option<crate::template::Template>,
    limits: Limits,
    backoff: Backoff,
    retries: u32,
    stop: CancellationToken,
    verbose: bool,
    /// Who hears of the job.
    reporter: Arc<dyn report::Reporter>,
    /// Set, with where, by the first transfer that finds the disk full.
    no_space: Arc<std::sync::Mutex<Option<String>>>,
    output: PathBuf,
}

fn thread_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> JobError + '_ {
    move |source| JobError::Output {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `dir` holds nothing but haul's job state, and no report file
/// of this job is to be written inside it (a report could take a name a
/// download wants).
fn holds_only_state(dir: &std::path::Path, reports: &ReportFiles) -> bool {
    let Ok(mut entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let alone = entries.all(|e| e.is_ok_and(|e| e.file_name() == crate::plan::naming::STATE_DIR));
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    // The report's nearest existing ancestor says where it will be.
    let inside = |p: &Option<PathBuf>| {
        p.as_ref().is_some_and(|p| {
            let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
            abs.ancestors()
                .skip(1)
                .find_map(|a| a.canonicalize().ok())
                .is_none_or(|a| a.starts_with(&dir))
        })
    };
    alone && !inside(&reports.manifest) && !inside(&reports.failed)
}

/// Where `path` is, as the OS sees it: its device and inode when it
/// exists, else its directory's canonical path and its name.
fn identity(path: &std::path::Path) -> Option<Result<(u64, u64), PathBuf>> {
    use std::os::unix::fs::MetadataExt;
    if let Ok(m) = std::fs::metadata(path) {
        return Some(Ok((m.dev(), m.ino())));
    }
    let abs = std::path::absolute(path).ok()?;
    let dir = abs.parent()?.canonicalize().ok()?;
    Some(Err(dir.join(abs.file_name()?)))
}

/// Refuses a report that would be written over an input list or over the
/// other report (`-i failed.txt --failed failed.txt` would otherwise lose
/// the list it reads).
fn refuse_clobber(cfg: &Config) -> Result<(), JobError> {
    let inputs: Vec<&PathBuf> = cfg
        .inputs
        .iter()
        .filter_map(|i| match i {
            InputSpec::File(p) => Some(p),
            _ => None,
        })
        .collect();
    let reports = [
        ("--report", &cfg.reports.manifest),
        ("--failed", &cfg.reports.failed),
    ];
    let suggest = |p: &PathBuf| {
        let stem = p.file_stem().unwrap_or_default().to_string_lossy();
        let ext = p.extension().map(|e| format!(".{}", e.to_string_lossy()));
        p.with_file_name(format!("{stem}-2{}", ext.unwrap_or_default()))
    };
    for (i, (flag, out)) in reports.iter().enumerate() {
        let Some(out) = out else { continue };
        let Some(id) = identity(out) else { continue };
        let others = inputs.iter().map(|p| ("the input -i", *p)).chain(
            reports[i + 1..]
                .iter()
                .filter_map(|(f, p)| p.as_ref().map(|p| (*f, p))),
        );
        for (what, other) in others {
            if identity(other).as_ref() == Some(&id) {
                return Err(JobError::Clobber {
                    flag,
                    output: out.clone(),
                    what,
                    input: other.clone(),
                    suggest: suggest(out),
                });
            }
        }
    }
    Ok(())
}

/// The names in the output directory that downloads must not take: the
/// input lists and reports that live there.
fn protected_names(root: &std::path::Path, cfg: &Config) -> std::collections::HashSet<String> {
    let Ok(root) = root.canonicalize() else {
        return Default::default();
    };
    let inputs = cfg.inputs.iter().filter_map(|i| match i {
        InputSpec::File(p) => Some(p),
        _ => None,
    });
    let reports = [&cfg.reports.manifest, &cfg.reports.failed];
    inputs
        .chain(reports.into_iter().flatten())
        .filter_map(|p| {
            let abs = std::path::absolute(p).ok()?;
            let dir = abs.parent()?.canonicalize().ok()?;
            let rel = dir.join(abs.file_name()?);
            let rel = rel.strip_prefix(&root).ok()?;
            Some(
                rel.to_string_lossy()
                    .replace(std::path::MAIN_SEPARATOR, "/"),
            )
        })
        .collect()
}

/// Time between two [`report::Reporter::on_progress`] calls.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Runs a job to the end, or until `stop` is cancelled.
pub async fn run(cfg: Config, user_stop: CancellationToken) -> Result<Finished, JobError> {
    cfg.validate()?;
    refuse_clobber(&cfg)?;
    // Stops the job as the user's stop does, and also when the disk fills.
    let stop = user_stop.child_token();
    let mut inputs = cfg.inputs.clone();
    if cfg.crawl.is_some() {
        // A re-run of a crawl carries on with what the last one found.
        inputs.push(InputSpec::Unfinished {
            dir: cfg.output.clone(),
            retry_failed: cfg.retry_failed,
        });
    }
    let mut source_opts = cfg.source.clone();
    source_opts.glob = cfg.glob;
    let mut entries = source::open_with(inputs, &source_opts)?;
    if cfg.crawl.is_some() {
        entries = entries.with_kind(crate::source::Kind::Page { depth: 0 });
    }
    // A caller's own reporter draws what it likes; the console display is
    // the `haul` command's.
    let progress = Progress::new(if cfg.quiet || cfg.reporter.is_some() {
        ProgressMode::None
    } else {
        cfg.progress
    });
    let reporter: Arc<dyn report::Reporter> = match &cfg.reporter {
        Some(r) => r.0.clone(),
        None => Arc::new(report::Console::new(progress.clone(), cfg.quiet)),
    };
    for note in entries.notes() {
        reporter.on_message(report::Level::Note, note);
    }
    let out = Arc::new(crate::beneath::Root::open(&cfg.output).map_err(thread_error(&cfg.output))?);
    let objects = match &cfg.objects {
        // Checked before anything else is: a wrong bucket or refused
        // credentials end the job here, with one message.
        Some(o) if !cfg.submit_only => {
            let objects = Arc::new(crate::objects::Objects::open(
                &o.url,
                &o.options,
                &cfg.output,
            )?);
            let aborted = objects.prepare().await?;
            if aborted > 0 {
                reporter.on_message(
                    report::Level::Note,
                    &format!(
                        "aborted {aborted} unfinished upload{} an earlier run left in {}",
                        if aborted == 1 { "" } else { "s" },
                        objects.url()
                    ),
                );
            }
            Some(objects)
        }
        _ => None,
    };
    // Submitting names items without looking at any directory: no file
    // there predates the job. An object store's listing is in memory:
    // always looked at.
    let empty_output =
        cfg.submit_only || (objects.is_none() && holds_only_state(&cfg.output, &cfg.reports));
    let worker = match (&cfg.source.state, cfg.worker) {
        (Some(loc), Some(lease)) => Some(crate::worker::Worker::start(
            loc,
            lease,
            cfg.retry_failed,
            (cfg.per_host > 0).then_some(cfg.per_host),
            !cfg.rates.is_empty() || cfg.wait.is_some(),
        )?),
        _ => None,
    };
    let store: Box<dyn crate::store::JobStore> = match &cfg.source.state {
        Some(loc) => Box::new(crate::store::PgStore::open(
            loc,
            worker.as_ref().map(|w| w.owner.as_str()),
        )?),
        None => Box::new(Store::open(&cfg.output)?),
    };
    let recorder = Recorder::create(&cfg.reports, &cfg.keep_columns)?;
    let mut client_cfg = cfg.client.clone();
    client_cfg.pool_per_host = cfg.host_cap();
    let client = crate::http::Client::new(&client_cfg)?;

    let (events_tx, events_rx) = mpsc::unbounded_channel::<Event>();
    let shared_no_space = Arc::new(std::sync::Mutex::new(None));
    let crawl = cfg.crawl.as_ref().map(|c| CrawlShared {
        rules: Arc::new(c.rules.clone()),
        robots: c.robots.then(|| {
            crate::schedule::robots::RobotsCache::new(client.clone(), &cfg.client.user_agent)
        }),
    });
    let shared = Arc::new(Shared {
        crawl,
        keep_columns: cfg.keep_columns.clone(),
        checksum_column: cfg.checksum_column.clone(),
        fetcher: Fetcher {
            client,
            ledger: events_tx,
            progress: progress.clone(),
            rules: cfg.rules.clone(),
            namer: cfg.namer.clone(),
            disk: crate::fetch::disk::Pool::new(crate::fetch::disk::threads())
                .map_err(thread_error(&cfg.output))?,
            hash: cfg.reports.manifest.is_some() || cfg.hash,
            out: out.clone(),
            objects: objects.clone(),
            portable: cfg.portable_files,
        },
        meta_url: cfg.meta_url.clone(),
        limits: {
            // A worker's rates and per-host cap are its share of the job's,
            // following the workers alive as they come and go.
            let rates = crate::schedule::rate::Rates::new(&cfg.rates, cfg.wait);
            let limits = Limits::new(cfg.jobs, cfg.host_cap(), cfg.adaptive);
            match &worker {
                Some(w) => limits
                    .with_rates(rates.shared_by(w.live.clone()))
                    .with_shared_cap(w.cap.clone()),
                None => limits.with_rates(rates),
            }
        },
        backoff: cfg.backoff.clone(),
        retries: cfg.retries,
        stop: stop.clone(),
        verbose: cfg.verbose,
        no_space: shared_no_space.clone(),
        output: cfg.output.clone(),
        reporter: reporter.clone(),
    });

    // Input thread: read lines as they come (or, for a worker, claim items
    // from the shared job as the ledger takes them).
    let (entry_tx, entry_rx) = mpsc::channel(if worker.is_some() { 256 } else { 4096 });
    let input = {
        let stop = stop.clone();
        let claims = worker
            .as_ref()
            .map(|w| (w.claims.clone(), reporter.clone()));
        // A worker holds at most what its dispatcher keeps alive (four
        // times -j, and some), so recording lags never starve it (at twice
        // -j, four workers did a third less), while the rest stays
        // claimable by the other workers, and a worker that dies holds up
        // no more than that.
        let (progress_in, most) = (progress.clone(), cfg.jobs * 4 + 256);
        std::thread::Builder::new()
            .name("haul-input".into())
            .spawn(move || {
                if let Some((claims, reporter)) = claims {
                    let outstanding =
                        |claimed: u64| claimed.saturating_sub(progress_in.finished()) as usize;
                    crate::worker::claim_loop(&claims, &entry_tx, &stop, &*reporter, &|c| {
                        most.saturating_sub(outstanding(c))
                    });
                    return Vec::new();
                }
                let mut entries = entries;
                for entry in entries.by_ref() {
                    if stop.is_cancelled() || entry_tx.blocking_send(entry).is_err() {
                        return Vec::new();
                    }
                }
                entries.empty_inputs().to_vec()
            })
            .map_err(thread_error(&cfg.output))?
    };

    // Ledger thread: plans, records, reports.
    let (item_tx, mut item_rx) = mpsc::channel::<Item>(1024);
    let mut planner = Planner::new(
        out.clone(),
        cfg.namer.clone(),
        cfg.overwrite,
        cfg.retry_failed,
    );
    if let Some(o) = &objects {
        planner = planner.with_objects(o.clone());
    }
    let mut ledger = Ledger::new(
        store,
        planner
            .with_empty_output(empty_output)
            .with_refresh(cfg.crawl.as_ref().is_some_and(|c| c.refresh))
            .with_protected(protected_names(&cfg.output, &cfg)),
        recorder,
        progress.clone(),
        cfg.sync,
        cfg.overwrite,
    );
    ledger.verbose = cfg.verbose;
    // A stored object is durable once the store says so.
    ledger.synced_on_save = cfg.portable_files || objects.is_some();
    ledger.submit_only = cfg.submit_only;
    ledger.no_space = Some((shared_no_space.clone(), cfg.output.clone()));
    ledger.reporter = reporter.clone();
    ledger.crawl = cfg.crawl.as_ref().map(|c| crate::ledger::CrawlPlan {
        scope: crate::crawl::scope::Scope::new(
            [],
            c.hosts.clone(),
            c.include.clone(),
            c.exclude.clone(),
        ),
        max_depth: c.max_depth,
        into: c.into.clone(),
    });
    let wiring = Wiring {
        entries: entry_rx,
        events: events_rx,
        items: item_tx,
        stop: stop.clone(),
    };
    let ledger = std::thread::Builder::new()
        .name("haul-ledger".into())
        .spawn(move || ledger.run(wiring))
        .map_err(thread_error(&cfg.output))?;

    let loads = shared.limits.loads();
    progress.watch_hosts(Box::new(move |n| {
        let (busiest, active) = loads.busiest(n);
        let windows = busiest
            .into_iter()
            .map(|h| report::HostWindow::new(h.key, h.in_flight as u32, h.window as u32, h.paused))
            .collect();
        (windows, active as u64)
    }));
    let ticker_stop = CancellationToken::new();
    let ticker = tokio::spawn(progress.clone().run(ticker_stop.clone()));
    let counters = {
        let (progress, reporter, stop) = (progress.clone(), reporter.clone(), ticker_stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => reporter.on_progress(&progress.snapshot()),
                }
            }
        })
    };

    // Dispatcher: one task per item, at most `window` alive at once, and
    // at most a host's cap (plus a few waiting their turn) per host: items
    // of a host that is slow or throttled wait here, not in slots that
    // other hosts' items could use. Without it, 500 items of one slow host
    // held all 512 slots and the other hosts' items waited behind them.
    let window = cfg.jobs * 4 + 256;
    let alive = Arc::new(Semaphore::new(window));
    let per_host_alive = cfg.host_cap() + HOST_QUEUE;
    let parked_most = window * 4;
    let mut host_alive: std::collections::HashMap<String, usize> = Default::default();
    let mut parked: std::collections::HashMap<String, std::collections::VecDeque<Item>> =
        Default::default();
    let mut parked_n = 0usize;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut input_open = true;
    loop {
        if !input_open && parked_n == 0 {
            break;
        }
        let item = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            Some(host) = done_rx.recv() => {
                let left = host_alive.get_mut(&host).map(|n| {
                    *n -= 1;
                    *n
                });
                let next = parked.get_mut(&host).and_then(|q| q.pop_front());
                if parked.get(&host).is_some_and(|q| q.is_empty()) {
                    parked.remove(&host);
                }
                match next {
                    Some(item) => {
                        parked_n -= 1;
                        item
                    }
                    None => {
                        if left == Some(0) {
                            host_alive.remove(&host);
                        }
                        continue;
                    }
                }
            }
            i = item_rx.recv(), if input_open && parked_n < parked_most => match i {
                Some(i) if cfg.submit_only => {
                    // Recorded and named; left pending for the workers.
                    drop(i);
                    continue;
                }
                Some(i) => {
                    if host_alive.get(&i.host).is_some_and(|&n| n >= per_host_alive) {
                        parked.entry(i.host.clone()).or_default().push_back(i);
                        parked_n += 1;
                        continue;
                    }
                    i
                }
                None => {
                    input_open = false;
                    continue;
                }
            },
        };
        let slot = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            s = alive.clone().acquire_owned() => s,
        };
        *host_alive.entry(item.host.clone()).or_default() += 1;
        let shared = shared.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            let host = item.host.clone();
            // An item stopped before its first request is not over: it
            // stays pending in the store, for the next run, and is neither
            // reported nor counted as failed.
            if let Some(o) = drive(&shared, item).await {
                let _ = shared.fetcher.ledger.send(Event::Done(Box::new(o)));
            }
            drop(slot);
            let _ = done.send(host);
        });
    }
    drop(item_rx);
    // Every task gives its slot back when done; cancellation makes them quick.
    let _ = alive.acquire_many(window as u32).await;
    // The last event sender goes with `shared`: the ledger can finish.
    drop(shared);
    let tally = tokio::task::spawn_blocking(move || ledger.join()).await;
    let empty_inputs = tokio::task::spawn_blocking(move || input.join())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    ticker_stop.cancel();
    let _ = ticker.await;
    let _ = counters.await;
    reporter.on_progress(&progress.snapshot());
    let mut tally = match tally {
        Ok(Ok(t)) => t?,
        // The ledger thread panicked: a bug. The files are safe (nothing is
        // recorded done that was not), but the run did not end well.
        _ => return Err(JobError::LedgerLost),
    };
    tally.received = progress.bytes.load(std::sync::atomic::Ordering::Relaxed);
    if let Some(w) = worker {
        w.finish(&*reporter);
    }
    let interrupted = user_stop.is_cancelled();
    let no_space = shared_no_space.lock().ok().and_then(|mut n| n.take());
    let elapsed = progress.elapsed();
    for name in empty_inputs.iter() {
        let name = if &**name == "-" {
            "standard input"
        } else {
            name
        };
        reporter.on_message(report::Level::Warning, &format!("no URLs found in {name}"));
    }
    reporter.on_finish(&report::Summary {
        tally: tally.clone(),
        interrupted,
        no_space: no_space.clone(),
        elapsed,
    });
    Ok(Finished {
        tally,
        interrupted,
        no_space,
        elapsed,
    })
}

/// Items of one host alive beyond what its cap lets run: enough to keep
/// its window full as transfers end.
const HOST_QUEUE: usize = 16;

/// What one successful step of an item gave.
enum Step {
    /// A file transfer ended.
    File(Attempt),
    /// A page was read.
    Page(fetch::Small),
}

/// Parses a crawled page (off the runtime) and hands what it holds to the
/// ledger; returns the page's title and the counts of what was planned.
async fn read_page(
    sh: &Shared,
    target: &Target,
    doc: fetch::Small,
) -> Result<(Option<String>, crate::report::Found), String> {
    let Some(crawl) = &sh.crawl else {
        return Err("not a crawl".into());
    };
    let rules = crawl.rules.clone();
    let fetch::Small {
        url,
        content_type,
        body,
        ..
    } = doc;
    let page = tokio::task::spawn_blocking(move || {
        crate::crawl::extract(&body, content_type.as_deref(), &url, &rules).map(|p| (p, url))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    let (page, url) = page;
    let depth = match target.kind {
        crate::source::Kind::Page { depth } => depth,
        crate::source::Kind::File => 0,
    };
    let (reply, found) = tokio::sync::oneshot::channel();
    let title = page.title.clone();
    sh.fetcher
        .ledger
        .send(Event::Discovered(Box::new(crate::ledger::Discovery {
            id: target.id,
            url,
            n: target.n,
            depth,
            title: page.title,
            files: page.files,
            links: page.links,
            reply,
        })))
        .map_err(|_| "the job is shutting down".to_string())?;
    let found = found
        .await
        .map_err(|_| "the job is shutting down".to_string())?;
    Ok((title, found))
}

/// Fails an item before any request, for a reason of its own.
fn fail_early(mut out: Outcome, started: Instant, reason: &str, error: String) -> Outcome {
    out.reason = Some(reason.into());
    out.error = Some(error);
    out.permanent = true;
    out.elapsed_ms = started.elapsed().as_millis() as u64;
    out
}

/// Takes what an item's input row says: columns for the manifest
/// (`--keep-columns`) and the expected checksum (`--checksum-column`).
fn from_row(sh: &Shared, target: &mut Target, out: &mut Outcome) -> Result<(), String> {
    let Some(row) = target.table_row.as_ref().and_then(|r| r.row.clone()) else {
        return Ok(());
    };
    if !sh.keep_columns.is_empty() {
        let value = |c: &String| {
            row.get(c)
                .map_or(serde_json::Value::Null, |v| v.into_owned().into())
        };
        out.columns = Some(
            sh.keep_columns
                .iter()
                .map(|c| (c.clone(), value(c)))
                .collect(),
        );
    }
    if let Some(col) = &sh.checksum_column {
        match row.get(col).map(|v| v.trim().to_ascii_lowercase()) {
            Some(sum) if sum.is_empty() => {}
            Some(sum) if sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()) => {
                target.expect_sha256 = Some(sum);
            }
            other => {
                let what = other.unwrap_or_else(|| "nothing".into());
                return Err(format!(
                    "--checksum-column {col}: {what:?} is not a sha256 hex digest"
                ));
            }
        }
    }
    Ok(())
}

/// Takes one item through its attempts: wait for a slot, fetch, and on a
/// transient failure release the slot, back off and go again.
async fn drive(sh: &Shared, item: Item) -> Option<Outcome> {
    let started = Instant::now();
    let mut out = Outcome::new(item.url.to_string(), &item.origin, Status::Failed);
    out.id = Some(item.id);
    let host = item.host.clone();
    if let (Some(from), Some(dest)) = (&item.copy_from, &item.dest) {
        // The same file, shown on another page: placed in this page's
        // folder from the copy already downloaded, without a request.
        let (root, from_rel, to, bytes) = (
            sh.fetcher.out.clone(),
            from.rel.clone(),
            dest.rel.clone(),
            from.bytes,
        );
        let placed = match &sh.fetcher.objects {
            Some(o) => o
                .copy(&from_rel, &to)
                .await
                .map(|()| false)
                .map_err(std::io::Error::other),
            None => sh
                .fetcher
                .disk
                .run(move || root.place(&from_rel, &to, bytes))
                .await
                .map_err(|_| std::io::Error::other("the disk threads are gone"))
                .and_then(|r| r),
        };
        match placed {
            Ok(linked) => {
                out.status = Status::Ok;
                out.path = Some(dest.rel.clone());
                out.bytes = from.bytes;
                out.sha256 = from.sha256.clone();
                out.note = Some(format!(
                    "same file as {} ({})",
                    from.rel,
                    if linked { "hard link" } else { "copy" }
                ));
                out.elapsed_ms = started.elapsed().as_millis() as u64;
                return Some(out);
            }
            // Gone or changed since: downloaded like any file.
            Err(e) if sh.verbose => sh.reporter.on_message(
                report::Level::Note,
                &format!(
                    "{}: cannot place {} from {}: {e}; downloading it",
                    item.url, dest.rel, from.rel
                ),
            ),
            Err(_) => {}
        }
    }
    let mut target = Target::new(item);
    if let Err(e) = from_row(sh, &mut target, &mut out) {
        return Some(fail_early(out, started, "bad input", e));
    }
    out.row = target.table_row.clone();
    let meta_url = match &sh.meta_url {
        None => None,
        Some(t) => {
            let fields = target.fields(None);
            match t
                .render(&fields)
                .map(|u| url::Url::parse(&u).map_err(|e| (u, e)))
            {
                Ok(Ok(u)) => Some(u),
                Ok(Err((u, e))) => {
                    return Some(fail_early(
                        out,
                        started,
                        "bad template",
                        format!("--meta-url: {u:?} is not a URL ({e})"),
                    ))
                }
                Err(e) => {
                    return Some(fail_early(
                        out,
                        started,
                        "bad template",
                        format!("--meta-url: {e}"),
                    ))
                }
            }
        }
    };
    let mut attempts = 0;
    let is_page = matches!(target.kind, crate::source::Kind::Page { .. });
    if is_page {
        out.kind = Some(crate::report::OutcomeKind::Page);
    }
    let result = loop {
        if let Some(robots) = sh.crawl.as_ref().and_then(|c| c.robots.as_ref()) {
            let admitted = tokio::select! {
                biased;
                _ = sh.stop.cancelled() => break Err(FetchError::Interrupted),
                a = robots.admit(&target.url) => a,
            };
            use crate::schedule::robots::Refusal;
            match admitted {
                Err(Refusal::Disallowed(by)) => break Err(FetchError::Disallowed(by)),
                Err(Refusal::Unreachable { robots, error }) => {
                    break Err(FetchError::RobotsUnreachable { robots, error })
                }
                Ok(Some(delay)) => sh.limits.crawl_delay(&host, delay),
                Ok(None) => {}
            }
        }
        let mut permit = Some(tokio::select! {
            biased;
            _ = sh.stop.cancelled() => break Err(FetchError::Interrupted),
            p = sh.limits.acquire(&host) => p,
        });
        attempts += 1;
        // Set by the attempt once a response head arrives.
        target.latency = None;
        let result = match (&meta_url, &target.meta) {
            _ if is_page => sh
                .fetcher
                .page(&target.url, target.validators.as_ref(), &sh.stop)
                .await
                .map(Step::Page),
            (Some(u), None) => match sh.fetcher.meta(u, &sh.stop).await {
                Ok(meta) => {
                    target.meta = Some(meta);
                    // Straight on to the file, without a backoff.
                    attempts -= 1;
                    drop(permit);
                    continue;
                }
                Err(e) => Err(e),
            },
            _ => {
                target.slot = permit.take();
                let result = sh.fetcher.attempt(&mut target, &sh.stop).await;
                target.slot = None;
                result.map(Step::File)
            }
        };
        drop(permit);
        // What the attempt says of the host's load, for its window.
        let signal = match &result {
            Ok(_) => Some((Signal::Clean(target.latency.take()), None)),
            Err(FetchError::Status {
                code: 429 | 503,
                retry_after,
            }) => {
                out.throttled += 1;
                Some((Signal::Overloaded, *retry_after))
            }
            // The server answered, then the body broke off: a fault of the
            // path or of that connection, not a sign of load (a window cut
            // for every random reset fell to 1 and made a faulty host's
            // run 50 times longer).
            Err(FetchError::Network(_) | FetchError::Truncated { .. })
                if target.latency.is_some() =>
            {
                Some((Signal::Clean(target.latency.take()), None))
            }
            Err(
                FetchError::Timeout(_)
                | FetchError::Network(_)
                | FetchError::Truncated { .. }
                | FetchError::Connect(_),
            ) => Some((Signal::Overloaded, None)),
            Err(_) => None,
        };
        if let Some((signal, retry_after)) = signal {
            // A pause of the whole host is held to --max-retry-wait, as each
            // item's wait is.
            let retry_after = retry_after.map(|w| w.min(sh.backoff.max_retry_after));
            let moved = sh.limits.report(&host, signal, retry_after);
            if let (true, Some(m)) = (sh.verbose, moved) {
                let (before, after) = (m.before, m.after);
                if before != after {
                    // Whether the host is paused, not whether it asked to
                    // be: a Retry-After the window's cut answers pauses
                    // nothing.
                    let paused = m
                        .paused
                        .map(|w| format!(", paused {:.1} s", w.as_secs_f64()))
                        .unwrap_or_default();
                    sh.reporter.on_message(
                        report::Level::Note,
                        &format!("{host}: {after} in flight at most (was {before}){paused}"),
                    );
                }
            }
        }
        match result {
            Err(e) if e.is_transient() && attempts <= sh.retries => {
                let wait = sh.backoff.delay_after(attempts, &e);
                if sh.verbose {
                    sh.reporter.on_message(
                        report::Level::Note,
                        &format!(
                            "retry {attempts}/{} in {:.1} s: {}: {e}",
                            sh.retries,
                            wait.as_secs_f64(),
                            target.url
                        ),
                    );
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
    if attempts == 0 && matches!(result, Err(FetchError::Interrupted)) {
        return None;
    }
    out.attempts = attempts;
    out.path = target.dest.as_ref().map(|d| d.rel.clone());
    out.note = target.note.take();
    out.meta = target.meta.take();
    if let Some(page) = &target.page {
        out.page = Some(page.url.clone());
        out.page_title = page.title.clone();
    }
    match result {
        Ok(Step::Page(doc)) if doc.status == 304 => {
            // Unchanged since the last run: what it holds is in the store,
            // and the ledger goes on to the pages it links to.
            out.http_status = Some(doc.status);
            out.status = Status::Skipped;
            out.reason = Some(report::UNCHANGED.into());
        }
        Ok(Step::Page(doc)) => {
            out.http_status = Some(doc.status);
            if doc.etag.is_some() || doc.last_modified.is_some() {
                // For a later --refresh to ask whether it changed.
                let _ = sh.fetcher.ledger.send(Event::Started {
                    id: target.id,
                    validators: crate::plan::Validators {
                        etag: doc.etag.clone(),
                        last_modified: doc.last_modified.clone(),
                        total: None,
                    },
                });
            }
            out.bytes = doc.body.len() as u64;
            match read_page(sh, &target, doc).await {
                Ok((title, found)) => {
                    out.status = Status::Ok;
                    out.page_title = title;
                    out.found = Some(found);
                }
                Err(e) => {
                    out.reason = Some("bad page".into());
                    out.error = Some(e);
                    out.permanent = true;
                }
            }
        }
        Ok(Step::File(Attempt::Saved(f))) => {
            out.status = Status::Ok;
            out.http_status = Some(f.http_status);
            out.bytes = f.bytes;
            out.sha256 = f.sha256;
        }
        Ok(Step::File(Attempt::Exists(code))) => {
            out.status = Status::Skipped;
            out.http_status = Some(code);
            out.reason = Some("exists".into());
        }
        // A followed link to a file: not a page to read, and not a
        // failure (a file wanted by --select is an item of its own).
        Err(e @ FetchError::NotAPage(_)) => {
            out.status = Status::Skipped;
            out.reason = Some(e.reason());
            out.error = Some(e.to_string());
        }
        // Like a link out of scope: not for us to fetch, not a failure.
        Err(FetchError::Disallowed(by)) => {
            out.status = Status::Skipped;
            out.reason = Some("disallowed by robots.txt".into());
            out.error = Some(format!("disallowed by {by}"));
        }
        // Not known to be disallowed, only not fetched: a failure the user
        // must hear of (exit status, failed list), though not a permanent
        // one, so the next run asks for robots.txt again.
        Err(e @ FetchError::RobotsUnreachable { .. }) => {
            out.reason = Some(e.reason());
            out.error = Some(e.to_string());
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
            out.permanent = !e.is_transient()
                && !e.is_output_failure()
                && !matches!(e, FetchError::Interrupted);
            if e.is_out_of_space() {
                // Nothing more will fit: stop starting transfers; what is
                // not done stays for the next run, once there is room.
                if let Ok(mut n) = sh.no_space.lock() {
                    n.get_or_insert_with(|| crate::beneath::device_of(&sh.output));
                }
                crate::store::release_reserve(&sh.output);
                sh.stop.cancel();
            }
            if sh.verbose {
                sh.reporter.on_message(
                    report::Level::Note,
                    &format!("failed: {}: {e}{retried}", target.url),
                );
            }
            if let Some(dest) = target
                .dest
                .as_ref()
                .filter(|_| out.permanent && target.part_len > 0)
            {
                // A partial that will not be resumed is only litter.
                let part = dest.part_rel();
                let root = sh.fetcher.out.clone();
                let _ = sh.fetcher.disk.run(move || root.remove(&part)).await;
            }
        }
    }
    out.elapsed_ms = started.elapsed().as_millis() as u64;
    Some(out)
}
