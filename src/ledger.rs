//! The ledger: the one thread that owns the job state and the report files.
//!
//! Everything that must be recorded passes through here, in order: input
//! entries to plan (and insert), validators of transfers that started, name
//! claims from `Content-Disposition`, and outcomes. The ledger works in
//! batches (one SQLite transaction per batch of whatever has arrived), so
//! the store costs the transfers nothing but a channel send.
//!
//! Downloaded files are marked done in the store only after a group sync
//! ([`store::sync_files`]) of everything written since the last one, at most
//! once a second or every few thousand files: the store never claims a file
//! that a power cut could still take away, and the cost is one `syncfs` per
//! batch rather than an fsync per file.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::plan::naming::{Dest, NameError};
use crate::plan::{CopyFrom, Item, Planned, Planner, Validators};
use crate::report::{Outcome, Progress, Recorder, ReportError, Status, Tally};
use crate::source::Entry;
use crate::store::{self, Finish, JobStore, State, StoreError};

/// Items planned ahead of the dispatcher, at most.
const AHEAD: usize = 256;
/// Entries planned in one provisional batch (see
/// [`JobStore::begin_provisional`]), at most: one insert statement and
/// one commit each.
const PROVISIONAL_BATCH: usize = 4096;
/// Longest a download waits for its group sync. Syncs are by time only:
/// a count-triggered sync every 4096 files forced writeback in the middle of
/// short jobs and cost a quarter of their wall time on 2 cores (10,000 ×
/// 10 KiB: 1.07 s against 0.96 s).
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// Pause after each batch, so the next one is bigger.
const LINGER: Duration = Duration::from_millis(2);

/// What transfers tell the ledger.
#[derive(Debug)]
pub enum Event {
    /// A resumable transfer started under these validators.
    Started {
        /// Item.
        id: i64,
        /// Its validators.
        validators: Validators,
    },
    /// The response named the file (`Content-Disposition`, or a `--name`
    /// that needed it): claim a free path for it.
    Claim {
        /// Item.
        id: i64,
        /// Raw path components (directories, then the file name).
        components: Vec<String>,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Claimed, NameError>>,
    },
    /// A crawled page was read: plan what it holds.
    Discovered(Box<Discovery>),
    /// An item is finished.
    Done(Box<Outcome>),
}

/// What a crawled page held.
#[derive(Debug)]
pub struct Discovery {
    /// The page's row.
    pub id: i64,
    /// The page's URL (after redirects).
    pub url: url::Url,
    /// The page's item number.
    pub n: u64,
    /// Links followed from a start page to reach it.
    pub depth: u32,
    /// Its title.
    pub title: Option<String>,
    /// File URLs selected on it.
    pub files: Vec<url::Url>,
    /// Links to crawl next.
    pub links: Vec<url::Url>,
    /// Where the counts of what was planned go back to the page's task.
    pub reply: oneshot::Sender<crate::report::Found>,
}

/// How a crawl extends itself.
#[derive(Debug, Clone)]
pub struct CrawlPlan {
    /// What may be requested.
    pub scope: crate::crawl::scope::Scope,
    /// Deepest page followed (0: only the start pages).
    pub max_depth: u32,
    /// Folder of each page's files (`--into`).
    pub into: crate::template::Template,
}

/// The answer to a claim.
#[derive(Debug)]
pub enum Claimed {
    /// Write here.
    Dest(Dest),
    /// A file was already there before the job: skip.
    Exists(Dest),
}

/// The ledger failed; the job cannot go on recording.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A report file failed.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The group sync failed: the files written since the last one may not
    /// be on disk.
    #[error("cannot sync downloaded files to disk in {path}: {source}")]
    Sync {
        /// The output directory.
        path: std::path::PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// The ledger's state.
pub struct Ledger {
    /// Job state.
    pub store: Box<dyn JobStore>,
    /// Planning rules.
    pub planner: Planner,
    /// Report files.
    pub recorder: Recorder,
    /// Live counters.
    pub progress: Arc<Progress>,
    /// Group-sync files before marking them done.
    pub sync: bool,
    /// Replace files that existed before the job.
    pub overwrite: bool,
    unsynced: Vec<i64>,
    last_sync: Instant,
    /// Set for `haul crawl`.
    pub crawl: Option<CrawlPlan>,
    /// Pages planned whose outcome has not arrived: they may still find
    /// more work, so the job is not over.
    pages_open: u64,
    /// Pages found unchanged (`--refresh`) whose linked pages are still to
    /// be planned.
    walk: VecDeque<i64>,
    /// Items queued or in flight in this run, by row.
    open: std::collections::HashSet<i64>,
    /// Placements of a file waiting for the item that downloads it.
    waiting: std::collections::HashMap<i64, Vec<Item>>,
    /// How far the planning of the items this run did not reach has got
    /// (the last row planned), and whether it is over.
    rest: (i64, bool),
    /// Print every bad input row as it is read (`-v`), not only the first
    /// `BAD_SHOWN`.
    pub verbose: bool,
    /// Files are durable once saved (the portable path syncs each one):
    /// record them done at once, with no group sync.
    pub synced_on_save: bool,
    /// Planned items are recorded and left for workers (`haul submit`):
    /// none is fetched in this run, so none is kept open (a million items
    /// held ~32 MB in the open set, for nothing).
    pub submit_only: bool,
    /// Set, with where, when the disk fills under the job state; shared
    /// with the transfers, which set it when it fills under a file.
    pub no_space: Option<(Arc<std::sync::Mutex<Option<String>>>, std::path::PathBuf)>,
    /// Who hears of every outcome and message.
    pub reporter: Arc<dyn crate::report::Reporter>,
    /// Bad input rows seen, and how many were printed.
    bad: (u64, u64),
}

/// Counts an outcome, writes it to the reports and tells the reporter.
fn announce(
    recorder: &mut Recorder,
    progress: &Progress,
    reporter: &dyn crate::report::Reporter,
    o: &Outcome,
) -> Result<(), crate::report::ReportError> {
    match o.status {
        Status::Ok => progress.ok.fetch_add(1, Relaxed),
        Status::Skipped => progress.skipped.fetch_add(1, Relaxed),
        Status::Failed => progress.failed.fetch_add(1, Relaxed),
    };
    recorder.record(o)?;
    reporter.on_outcome(o);
    Ok(())
}

/// Items of earlier runs planned at a time once this run's crawl is over.
const REST_BATCH: u32 = 512;

/// Bad input rows printed without `-v`; the rest are counted.
const BAD_SHOWN: u64 = 5;

/// The channels the ledger works between.
pub struct Wiring {
    /// Entries from the input thread.
    pub entries: mpsc::Receiver<Entry>,
    /// Events from transfers.
    pub events: mpsc::UnboundedReceiver<Event>,
    /// Planned items to the dispatcher.
    pub items: mpsc::Sender<Item>,
    /// Ctrl-C.
    pub stop: CancellationToken,
}

impl Ledger {
    /// A ledger over an open store.
    pub fn new(
        store: Box<dyn JobStore>,
        planner: Planner,
        recorder: Recorder,
        progress: Arc<Progress>,
        sync: bool,
        overwrite: bool,
    ) -> Self {
        Self {
            store,
            planner,
            recorder,
            progress,
            sync,
            overwrite,
            unsynced: Vec::new(),
            last_sync: Instant::now(),
            crawl: None,
            pages_open: 0,
            walk: VecDeque::new(),
            rest: (0, false),
            open: Default::default(),
            waiting: Default::default(),
            verbose: false,
            synced_on_save: false,
            submit_only: false,
            no_space: None,
            reporter: Arc::new(crate::report::Silent),
            bad: (0, 0),
        }
    }

    /// Runs on the current (dedicated) thread until the input is planned and
    /// every transfer has reported; returns the totals.
    pub fn run(mut self, wiring: Wiring) -> Result<Tally, LedgerError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|source| LedgerError::Sync {
                path: self.planner.out().root().to_path_buf(),
                source,
            })?;
        let stop = wiring.stop.clone();
        let result = rt.block_on(self.work(wiring));
        if result.is_err() {
            // Nothing more can be recorded: stop the transfers too.
            stop.cancel();
        }
        // Whatever happened, what was recorded so far is kept.
        // No closing sync: files saved since the last one stay `saved`, and
        // the next run trusts each only once it has checked it against its
        // recorded size (and SHA-256). Waiting here for the last second's
        // writeback made short jobs a third slower (10,000 × 10 KiB on
        // ext4: 1.42 s against 1.07 s), for a check that costs the next run
        // one `stat` per file.
        // The job's own failure first: a commit after it may fail for the
        // same cause, and would hide it.
        let (seen, shown) = self.bad;
        if seen > shown {
            self.reporter.on_message(
                crate::report::Level::Warning,
                &format!(
                    "{} more bad input rows not shown (-v shows each; --report lists them)",
                    seen - shown
                ),
            );
        }
        let committed = self.store.commit();
        result?;
        committed?;
        Ok(self.recorder.finish()?)
    }

    async fn work(&mut self, wiring: Wiring) -> Result<(), LedgerError> {
        let Wiring {
            mut entries,
            mut events,
            items,
            stop,
        } = wiring;
        let mut items = Some(items);
        let mut ahead: VecDeque<Item> = VecDeque::new();
        let mut input_open = true;
        loop {
            if stop.is_cancelled() && input_open {
                // Items planned but not started stay pending in the store.
                input_open = false;
                ahead.clear();
            }
            while ahead.len() < AHEAD && !stop.is_cancelled() {
                let Some(page) = self.walk.pop_front() else {
                    break;
                };
                self.walk_from(page, &mut ahead)?;
            }
            let found_all = !input_open
                && self.pages_open == 0
                && self.walk.is_empty()
                && self.waiting.is_empty();
            if found_all && ahead.is_empty() && self.crawl.is_some() && !self.rest.1 {
                if stop.is_cancelled() {
                    self.rest.1 = true;
                } else {
                    self.plan_the_rest(&mut ahead)?;
                    self.store.commit()?;
                    continue;
                }
            }
            if !input_open
                && ahead.is_empty()
                && ((self.pages_open == 0 && self.walk.is_empty() && self.waiting.is_empty())
                    || stop.is_cancelled())
            {
                // Lets the dispatcher see the end of the work.
                items = None;
            }
            let ready = items.clone().filter(|_| !ahead.is_empty());
            let sync_due = !self.unsynced.is_empty();
            tokio::select! {
                biased;
                ev = events.recv() => match ev {
                    Some(ev) => {
                        self.handle(ev, &mut ahead)?;
                        while let Ok(ev) = events.try_recv() {
                            self.handle(ev, &mut ahead)?;
                        }
                    }
                    // Every transfer has reported and the dispatcher is done.
                    None => break,
                },
                permit = async { ready.as_ref()?.reserve().await.ok() }, if ready.is_some() => {
                    match (permit, ahead.pop_front()) {
                        (Some(permit), Some(item)) => {
                            permit.send(item);
                            // And as many more as the channel takes now.
                            if let Some(tx) = &ready {
                                while let Some(item) = ahead.pop_front() {
                                    if let Err(e) = tx.try_send(item) {
                                        ahead.push_front(e.into_inner());
                                        break;
                                    }
                                }
                            }
                        }
                        // The dispatcher is gone (interrupted).
                        _ => {
                            input_open = false;
                            ahead.clear();
                        }
                    }
                }
                entry = entries.recv(), if input_open && ahead.len() < AHEAD => match entry {
                    // A store that answers in batches (PostgreSQL) gets the
                    // input a batch at a time; otherwise `begin_provisional`
                    // began an ordinary batch, for the next arm. A crawl's
                    // start pages set its scope as they are planned, and
                    // are few.
                    Some(entry) if self.crawl.is_none() && self.store.begin_provisional()? => {
                        let mut batch = vec![entry];
                        while batch.len() < PROVISIONAL_BATCH {
                            match entries.try_recv() {
                                Ok(entry) => batch.push(entry),
                                Err(_) => break,
                            }
                        }
                        self.plan_provisionally(batch, &mut ahead)?;
                    }
                    Some(entry) => {
                        self.plan(entry, &mut ahead)?;
                        while ahead.len() < AHEAD {
                            match entries.try_recv() {
                                Ok(entry) => {
                                    self.plan(entry, &mut ahead)?;
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    None => {
                        input_open = false;
                        self.progress.input_done.store(true, Relaxed);
                    }
                },
                _ = stop.cancelled(), if input_open => {}
                _ = tokio::time::sleep(SYNC_EVERY), if sync_due => {}
            }
            if self.last_sync.elapsed() >= SYNC_EVERY {
                self.sync_now()?;
            }
            self.store.commit()?;
            if self.store.disk_full() && !stop.is_cancelled() {
                // The job state took its reserve: downloads must not take
                // that too. Stop as a full disk under a file does.
                if let Some((no_space, out)) = &self.no_space {
                    if let Ok(mut n) = no_space.lock() {
                        n.get_or_insert_with(|| crate::beneath::device_of(out));
                    }
                }
                stop.cancel();
            }
            if ahead.len() >= AHEAD / 2 || !input_open {
                // Let events gather: one wake-up and one transaction for many,
                // instead of a context switch per finished file. The
                // dispatcher has a full channel of planned items meanwhile.
                tokio::time::sleep(LINGER).await;
            }
        }
        Ok(())
    }

    /// Plans one entry; `false` when it was a duplicate found by a crawl
    /// (not an input item: not counted, not reported).
    fn plan(&mut self, entry: Entry, ahead: &mut VecDeque<Item>) -> Result<bool, LedgerError> {
        self.store.begin()?;
        let discovered = entry.discovered;
        if let (Some(crawl), crate::source::Kind::Page { depth: 0 }, Ok(text)) =
            (&mut self.crawl, entry.kind, &entry.text)
        {
            // Start pages set the crawl's scope.
            if let Some(host) = url::Url::parse(text)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
            {
                crawl.scope.add_host(&host);
            }
        }
        let n = self.progress.seen.load(Relaxed) + 1;
        let planned = self.planner.plan(&*self.store, entry, n)?;
        self.take(planned, discovered, ahead)
    }

    /// Plans `entries` in a provisional batch of the store, begun, and
    /// again while the store finds its answers were wrong (in an ordinary
    /// batch once it stops trusting them); nothing planned is counted,
    /// reported or queued before the batch is committed.
    fn plan_provisionally(
        &mut self,
        entries: Vec<Entry>,
        ahead: &mut VecDeque<Item>,
    ) -> Result<(), LedgerError> {
        loop {
            let mut planned = Vec::with_capacity(entries.len());
            let mut n = self.progress.seen.load(Relaxed);
            for entry in &entries {
                let discovered = entry.discovered;
                let p = self.planner.plan(&*self.store, entry.clone(), n + 1)?;
                if !(discovered && matches!(&p, Planned::Settled(o) if o.duplicate)) {
                    n += 1;
                }
                planned.push((p, discovered));
            }
            if self.store.commit_provisional()? {
                // What the outcomes write (a bad name's failure) goes in
                // an ordinary batch.
                self.store.begin()?;
                for (p, discovered) in planned {
                    self.take(p, discovered, ahead)?;
                }
                return Ok(());
            }
            if !self.store.begin_provisional()? {
                for entry in entries {
                    self.plan(entry, ahead)?;
                }
                return Ok(());
            }
        }
    }

    /// Acts on what the plan decided for an entry; `false` as [`Self::plan`].
    fn take(
        &mut self,
        planned: Planned,
        discovered: bool,
        ahead: &mut VecDeque<Item>,
    ) -> Result<bool, LedgerError> {
        match planned {
            Planned::Settled(o) if discovered && o.duplicate => return Ok(false),
            Planned::Fetch(item) => {
                if matches!(item.kind, crate::source::Kind::Page { .. }) {
                    self.pages_open += 1;
                }
                self.dispatch(item, ahead)?;
            }
            Planned::Settled(o) => self.record(o)?,
        }
        self.progress.seen.fetch_add(1, Relaxed);
        Ok(true)
    }

    fn handle(&mut self, ev: Event, ahead: &mut VecDeque<Item>) -> Result<(), LedgerError> {
        self.store.begin()?;
        match ev {
            Event::Started { id, validators } => {
                self.store.started(
                    id,
                    validators.etag.as_deref(),
                    validators.last_modified.as_deref(),
                    validators.total,
                )?;
            }
            Event::Claim {
                id,
                components,
                reply,
            } => {
                let answer = match self.planner.claim(&*self.store, &components)? {
                    Ok(dest) => {
                        self.store.set_path(id, &dest.rel)?;
                        if !self.overwrite && self.planner.exists(&dest.rel) {
                            Ok(Claimed::Exists(dest))
                        } else {
                            Ok(Claimed::Dest(dest))
                        }
                    }
                    Err(e) => Err(e),
                };
                let _ = reply.send(answer);
            }
            Event::Discovered(d) => self.discovered(*d, ahead)?,
            Event::Done(o) => {
                self.release(&o, ahead);
                if o.kind == Some(crate::report::OutcomeKind::Page) {
                    self.pages_open = self.pages_open.saturating_sub(1);
                    if o.reason.as_deref() == Some(crate::report::UNCHANGED) {
                        self.walk.extend(o.id);
                    }
                }
                self.record(*o)?;
            }
        }
        Ok(())
    }

    /// Queues a planned item. A file placed in another page's folder waits
    /// for the item that downloads it, if that one is under way in this
    /// run, to be linked or copied from its file once done.
    fn dispatch(&mut self, mut item: Item, ahead: &mut VecDeque<Item>) -> Result<(), LedgerError> {
        if let Some(primary) = item.copy_of {
            if self.open.contains(&primary) {
                self.waiting.entry(primary).or_default().push(item);
                return Ok(());
            }
            item.copy_from = self.store.file_of(primary)?.and_then(|r| {
                matches!(r.state, State::Ok | State::Saved)
                    .then(|| {
                        r.path.map(|rel| CopyFrom {
                            rel,
                            bytes: r.bytes,
                            sha256: r.sha256,
                        })
                    })
                    .flatten()
            });
        }
        if !self.submit_only {
            self.open.insert(item.id);
        }
        ahead.push_back(item);
        Ok(())
    }

    /// Lets the placements waiting on item `id` go, from its file if it
    /// was saved (else each downloads its own).
    fn release(&mut self, o: &Outcome, ahead: &mut VecDeque<Item>) {
        let Some(id) = o.id else { return };
        self.open.remove(&id);
        let Some(waiting) = self.waiting.remove(&id) else {
            return;
        };
        let from = (o.status == Status::Ok)
            .then(|| o.path.clone())
            .flatten()
            .map(|rel| CopyFrom {
                rel,
                bytes: o.bytes,
                sha256: o.sha256.clone(),
            });
        for mut item in waiting {
            item.copy_from = from.clone();
            self.open.insert(item.id);
            ahead.push_back(item);
        }
    }

    /// Plans the files and links a crawled page held: the page's folder is
    /// claimed first (two pages with one title get distinct folders), then
    /// its files go in it, and links within the depth become pages.
    fn discovered(&mut self, d: Discovery, ahead: &mut VecDeque<Item>) -> Result<(), LedgerError> {
        use crate::source::{Kind, Origin, PageRef};
        let Some(crawl) = self.crawl.clone() else {
            let _ = d.reply.send(crate::report::Found::default());
            return Ok(());
        };
        let mut found = crate::report::Found::default();
        let total = (d.files.len() + d.links.len()) as u64;
        let follow = d.depth < crawl.max_depth;
        let mut left_out = Vec::new();
        let mut keep = |u: &url::Url, link: bool| {
            let why = if link && !follow {
                Some("beyond --depth")
            } else {
                crawl.scope.refusal(u)
            };
            if let (Some(why), true) = (why, self.verbose) {
                left_out.push(format!(
                    "left out {} {u} ({why}), found on {}",
                    if link { "link" } else { "file" },
                    d.url
                ));
            }
            why.is_none()
        };
        let files: Vec<url::Url> = d.files.into_iter().filter(|u| keep(u, false)).collect();
        let links: Vec<url::Url> = d.links.into_iter().filter(|u| keep(u, true)).collect();
        for note in left_out {
            self.reporter.on_message(crate::report::Level::Note, &note);
        }
        let title = d.title.clone().or_else(|| {
            // No title: the page's path names its folder.
            let path = d.url.path().trim_matches('/').replace('/', "_");
            Some(if path.is_empty() {
                d.url.host_str().unwrap_or("page").to_string()
            } else {
                path
            })
        });
        let mut page = PageRef {
            id: d.id,
            url: d.url.to_string(),
            title: title.clone(),
            folder: String::new(),
            n: d.n,
        };
        self.store.begin()?;
        if let Some(folder) = self.store.folder_of(d.id)? {
            // Read before (--refresh): its files stay in its folder.
            page.folder = folder;
        } else if !files.is_empty() {
            let fields = crate::plan::naming::ItemFields {
                url: &d.url,
                n: d.n,
                row: 0,
                cols: None,
                meta: None,
                detected_ext: None,
                page: Some(&page),
            };
            let parts = crawl
                .into
                .render(&fields)
                .map(|r| crate::plan::naming::split_rendered(&r))
                .unwrap_or_default();
            let parts = if parts.is_empty() {
                vec![title.clone().unwrap_or_else(|| "page".into())]
            } else {
                parts
            };
            self.store.begin()?;
            if let Ok(folder) = self.planner.claim(&*self.store, &parts)? {
                page.folder = folder.rel;
            }
        }
        self.store.begin()?;
        self.store.set_page(
            d.id,
            d.title.as_deref(),
            (!page.folder.is_empty()).then_some(page.folder.as_str()),
            links.len() as u64,
        )?;
        let page = Arc::new(page);
        let origin = |i: usize| Origin {
            input: page.url.as_str().into(),
            line: i as u64 + 1,
        };
        for (i, url) in files.into_iter().enumerate() {
            let mut entry = Entry::new(origin(i), Ok(url.into()));
            entry.page = Some(page.clone());
            entry.discovered = true;
            if self.plan(entry, ahead)? {
                found.files += 1;
            }
        }
        for (i, url) in links.into_iter().enumerate() {
            let mut entry = Entry::new(origin(i), Ok(url.into()));
            entry.kind = Kind::Page { depth: d.depth + 1 };
            entry.discovered = true;
            entry.parent = Some(d.id);
            if self.plan(entry, ahead)? {
                found.links += 1;
            }
        }
        found.skipped = total - found.files - found.links;
        let _ = d.reply.send(found);
        Ok(())
    }

    /// Plans the pages an unchanged page links to, as its links would
    /// have been planned had it been read (each is asked in turn whether
    /// it changed).
    fn walk_from(&mut self, page: i64, ahead: &mut VecDeque<Item>) -> Result<(), LedgerError> {
        let mut entries = Vec::new();
        self.store
            .each_child_page(page, &mut |u: store::Unfinished| {
                let origin = crate::source::Origin {
                    input: u.input.into(),
                    line: u.line,
                };
                let mut entry = Entry::new(origin, Ok(u.url));
                entry.kind = crate::source::Kind::Page {
                    depth: u.page_depth.unwrap_or(0),
                };
                entry.discovered = true;
                entry.parent = u.parent;
                entries.push(entry);
            })?;
        for entry in entries {
            self.plan(entry, ahead)?;
        }
        Ok(())
    }

    /// Plans the next batch of the items this run did not reach: files of
    /// pages read in an earlier run (each checked on disk, and fetched
    /// again if gone), and reports the pages. A re-run's report and summary
    /// thus describe the whole job, not only what the run touched.
    fn plan_the_rest(&mut self, ahead: &mut VecDeque<Item>) -> Result<(), LedgerError> {
        let mut batch = Vec::new();
        self.store
            .unseen(self.rest.0, REST_BATCH, &mut |r| batch.push(r))?;
        match batch.last() {
            Some(r) => self.rest.0 = r.id,
            None => self.rest.1 = true,
        }
        for r in batch {
            let origin = crate::source::Origin {
                input: r.input.clone().unwrap_or_default().into(),
                line: r.line.unwrap_or(0),
            };
            if !r.is_page {
                let mut entry = Entry::new(origin, Ok(r.url));
                entry.discovered = true;
                self.plan(entry, ahead)?;
                continue;
            }
            if r.state == State::Pending {
                // Carried on by the unfinished input, not here.
                continue;
            }
            let status = match r.state {
                State::Failed => Status::Failed,
                _ => Status::Skipped,
            };
            let mut o = Outcome::new(r.url, &origin, status);
            o.id = Some(r.id);
            o.recorded = true;
            o.path = r.path;
            o.http_status = r.http_status;
            o.permanent = r.permanent;
            o.kind = Some(crate::report::OutcomeKind::Page);
            if r.state == State::Ok {
                o.reason = Some("done".into());
            } else {
                o.reason = r.reason;
                o.error = r.error;
            }
            self.record(o)?;
        }
        Ok(())
    }

    /// Says what is wrong with a row that could not become a request (not
    /// a URL, a bad name, a bad `--url`), naming its input and line.
    fn bad_row(&mut self, o: &Outcome) {
        self.bad.0 += 1;
        if !(self.verbose || self.bad.1 < BAD_SHOWN) {
            return;
        }
        self.bad.1 += 1;
        let error = o.error.as_deref().unwrap_or("bad input");
        self.reporter.on_message(
            crate::report::Level::Warning,
            &format!("skipping a bad row: {error}"),
        );
    }

    fn record(&mut self, o: Outcome) -> Result<(), LedgerError> {
        // A row that never became an item of the job (not a URL, not
        // readable) has no job-state row.
        if o.status == Status::Failed && o.id.is_none() {
            self.bad_row(&o);
        }
        announce(
            &mut self.recorder,
            &self.progress,
            self.reporter.as_ref(),
            &o,
        )?;
        let Some(id) = o.id.filter(|_| !o.recorded) else {
            return Ok(());
        };
        let state = match o.status {
            Status::Ok => State::Ok,
            // Read before and unchanged: still read.
            Status::Skipped if o.reason.as_deref() == Some(crate::report::UNCHANGED) => State::Ok,
            Status::Skipped => State::Skipped,
            Status::Failed => State::Failed,
        };
        let finish = Finish {
            http_status: o.http_status,
            bytes: o.bytes,
            sha256: o.sha256,
            attempts: o.attempts,
            error: o.error,
            reason: o.reason,
            permanent: o.permanent,
            throttled: o.throttled,
        };
        // A parsed page has no file to sync: what it held is in the store.
        if state == State::Ok
            && self.sync
            && !self.synced_on_save
            && o.kind != Some(crate::report::OutcomeKind::Page)
        {
            // Recorded now with its size and hash, marked done after the
            // next group sync.
            self.store.finish(id, State::Saved, &finish)?;
            self.unsynced.push(id);
        } else {
            self.store.finish(id, state, &finish)?;
        }
        Ok(())
    }

    /// Syncs the files downloaded since the last sync, then marks them done.
    fn sync_now(&mut self) -> Result<(), LedgerError> {
        self.last_sync = Instant::now();
        if self.unsynced.is_empty() {
            return Ok(());
        }
        let root = self.planner.out().root();
        store::sync_files(root).map_err(|source| LedgerError::Sync {
            path: root.to_path_buf(),
            source,
        })?;
        self.store.begin()?;
        self.store
            .mark_synced(&std::mem::take(&mut self.unsynced))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{ProgressMode, ReportFiles};
    use crate::source::Origin;

    fn entry(line: u64, url: &str) -> Entry {
        let origin = Origin {
            input: "list".into(),
            line,
        };
        Entry::new(origin, Ok(url.to_string()))
    }

    /// The ledger on a temporary store: entries in, planned items out,
    /// outcomes recorded in batches, totals back.
    #[test]
    fn entries_are_planned_and_outcomes_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let root = Arc::new(crate::beneath::Root::open(dir.path()).unwrap());
        let store = crate::store::Store::open(dir.path()).unwrap();
        let planner = Planner::new(root, crate::plan::naming::Namer::from_urls(), false, false);
        let recorder = Recorder::create(&ReportFiles::default(), &[]).unwrap();
        let progress = Progress::new(ProgressMode::None);
        let ledger = Ledger::new(Box::new(store), planner, recorder, progress, true, false);

        let (entry_tx, entries) = mpsc::channel(16);
        let (event_tx, events) = mpsc::unbounded_channel();
        let (items, mut item_rx) = mpsc::channel(16);
        let stop = CancellationToken::new();
        let wiring = Wiring {
            entries,
            events,
            items,
            stop,
        };
        let thread = std::thread::spawn(move || ledger.run(wiring));
        for (i, url) in ["http://h/a.bin", "http://h/b.bin", "http://h/a.bin", "nope"]
            .iter()
            .enumerate()
        {
            entry_tx.blocking_send(entry(i as u64 + 1, url)).unwrap();
        }
        drop(entry_tx);
        // Two items to fetch; the duplicate and the bad line are settled by
        // the plan.
        let mut planned = Vec::new();
        while let Some(item) = item_rx.blocking_recv() {
            planned.push(item);
        }
        let names: Vec<&str> = planned
            .iter()
            .map(|i| i.dest.as_ref().unwrap().rel.as_str())
            .collect();
        assert_eq!(names, ["a.bin", "b.bin"]);
        for item in planned {
            let mut o = Outcome::new(item.url.to_string(), &item.origin, Status::Ok);
            o.id = Some(item.id);
            o.bytes = 5;
            event_tx.send(Event::Done(Box::new(o))).unwrap();
        }
        drop(event_tx);
        let tally = thread.join().unwrap().unwrap();
        assert_eq!((tally.ok, tally.skipped, tally.bad), (2, 1, 1));
        // Recorded: saved (done once a group sync has covered it, which a
        // run this short may not have waited for).
        let store = crate::store::Store::open_existing(dir.path()).unwrap();
        let row = store.lookup("http://h/b.bin", false).unwrap().unwrap();
        assert!(
            matches!(row.state, State::Saved | State::Ok),
            "{:?}",
            row.state
        );
        assert_eq!(row.bytes, 5);
        assert!(
            store.lookup("nope", false).unwrap().is_none(),
            "a bad line is no item"
        );
    }
}
