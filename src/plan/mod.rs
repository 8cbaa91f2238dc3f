//! The plan: which input entries become transfers, and where each one goes.
//!
//! Runs on the ledger thread, in input order, between reading a line and
//! handing the item to the scheduler: URL checks, the job-state lookup that
//! decides what a re-run does (skip what is done, resume what is partial,
//! retry what failed transiently), duplicate detection, the destination
//! claim and the check for a file that already exists. Claims happen in
//! input order, so names are the same on every run of the same input.

use url::Url;

pub mod naming;

use crate::beneath::Root;
use crate::report::{Outcome, Status};
use naming::{Dest, ItemFields, NameError, Namer, OutputDir};
use std::sync::Arc;

use crate::source::{Entry, Kind, Origin, PageRef, RowRef};
#[cfg(test)]
use crate::store::Store;
use crate::store::{Inserted, JobStore, Row, State, StoreError};

/// The validators a partial download was started under.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    /// Strong ETag.
    pub etag: Option<String>,
    /// Last-Modified.
    pub last_modified: Option<String>,
    /// The whole file's size as the server announced it, when it did.
    pub total: Option<u64>,
}

impl Validators {
    /// The `If-Range` value: the ETag if strong, else Last-Modified.
    pub fn if_range(&self) -> Option<&str> {
        self.etag
            .as_deref()
            .filter(|e| !e.starts_with("W/"))
            .or(self.last_modified.as_deref())
    }
}

/// An item to fetch.
#[derive(Debug)]
pub struct Item {
    /// Job-state row.
    pub id: i64,
    /// The URL, fragment removed.
    pub url: Url,
    /// Where it was read.
    pub origin: Origin,
    /// 1-based item number, in input order.
    pub n: u64,
    /// Where it goes; `None` until the response arrives when the name
    /// depends on it (`--name` with `{meta.…}`, or `{ext}` of a URL without
    /// one).
    pub dest: Option<Dest>,
    /// Whether `dest` is settled (a re-run keeps the name the item got
    /// before, even if the server named it then).
    pub dest_fixed: bool,
    /// `host:port`, the key of the per-host limit.
    pub host: String,
    /// Bytes already in `dest`'s `.part` file.
    pub part_len: u64,
    /// Validators of that partial.
    pub validators: Option<Validators>,
    /// File or page.
    pub kind: Kind,
    /// The crawled page a file was found on.
    pub page: Option<Arc<PageRef>>,
    /// For a page: the page that linked to it.
    pub parent: Option<i64>,
    /// For a file shown on several pages, placed in this page's folder
    /// too: the item that downloads it.
    pub copy_of: Option<i64>,
    /// Set by the ledger when that item's file is done: where it is, to be
    /// linked or copied here instead of downloaded again.
    pub copy_from: Option<CopyFrom>,
    /// The table row it came from.
    pub row: Option<Arc<RowRef>>,
}

/// A finished file another placement of the same URL can be made from.
#[derive(Debug, Clone)]
pub struct CopyFrom {
    /// Its path in the output directory.
    pub rel: String,
    /// Its size, as recorded.
    pub bytes: u64,
    /// Its SHA-256, when recorded.
    pub sha256: Option<String>,
}

impl Item {
    /// The fields a name template sees before the response: no metadata,
    /// no detected type.
    pub fn fields(&self) -> ItemFields<'_> {
        ItemFields {
            url: &self.url,
            n: self.n,
            row: self.origin.line,
            cols: self.row.as_deref().and_then(RowRef::fields),
            meta: None,
            detected_ext: None,
            page: self.page.as_deref(),
        }
    }
}

/// What the plan decided for one entry.
#[derive(Debug)]
pub enum Planned {
    /// Fetch it.
    Fetch(Item),
    /// Nothing to fetch: the outcome is already known (bad input, duplicate,
    /// done earlier, file exists, failed permanently earlier).
    Settled(Outcome),
}

/// Plan-wide settings.
#[derive(Debug, Clone)]
pub struct Planner {
    out: OutputDir,
    root: Arc<Root>,
    namer: Namer,
    overwrite: bool,
    retry_failed: bool,
    /// Pages read before are read again, with their validators (`--refresh`).
    refresh: bool,
    /// Whether the last URL planned was known to the store: a re-run looks
    /// up first, a first run inserts first, and each saves a statement.
    rerun: std::cell::Cell<bool>,
    /// The output directory held nothing but the job state when the job
    /// began: no file there predates the job, so none needs looking for.
    empty_output: bool,
    /// Names no download may take: the job's own inputs and reports.
    protected: std::collections::HashSet<String>,
    /// The object-store output, when files go there instead of `root`.
    objects: Option<Arc<crate::objects::Objects>>,
}

fn failed(text: String, origin: &Origin, reason: &str, error: String) -> Planned {
    let mut o = Outcome::new(text, origin, Status::Failed);
    o.reason = Some(reason.to_string());
    o.error = Some(format!("{origin}: {error}"));
    o.permanent = true;
    Planned::Settled(o)
}

/// Whether the file at `dest` has exactly `bytes` bytes and hashes to
/// `sha256` (when one was recorded: without one, the size must do).
fn file_matches(root: &Root, dest: &Dest, bytes: u64, sha256: Option<&str>) -> bool {
    use std::io::Read;
    let Ok(mut f) = root.open_read(&dest.rel) else {
        return false;
    };
    if f.metadata().map(|m| m.len()).ok() != Some(bytes) {
        return false;
    }
    let Some(want) = sha256 else {
        return true;
    };
    let mut hasher = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(_) => return false,
        }
    }
    crate::check::hex(hasher.finish().as_ref()) == want
}

impl Planner {
    /// A planner writing into the output directory `root`.
    pub fn new(root: Arc<Root>, namer: Namer, overwrite: bool, retry_failed: bool) -> Self {
        Self {
            out: OutputDir::new(root.path()),
            root,
            namer,
            overwrite,
            retry_failed,
            refresh: false,
            rerun: std::cell::Cell::new(false),
            empty_output: false,
            protected: Default::default(),
            objects: None,
        }
    }

    /// Files go to this object store: what is there is what its listing
    /// says (see [`crate::objects`]), and there are no partial files.
    pub fn with_objects(mut self, objects: Arc<crate::objects::Objects>) -> Self {
        self.objects = Some(objects);
        self
    }

    /// Whether a file (or object) of the name `rel` is there.
    pub(crate) fn exists(&self, rel: &str) -> bool {
        match &self.objects {
            Some(o) => o.len(rel).is_some(),
            None => self.root.exists(rel),
        }
    }

    fn file_len(&self, rel: &str) -> Option<u64> {
        match &self.objects {
            Some(o) => o.len(rel),
            None => self.root.file_len(rel, false),
        }
    }

    /// The length of `dest`'s partial file, to resume from.
    fn part_len(&self, dest: &Dest) -> u64 {
        match &self.objects {
            // An interrupted upload is aborted, never resumed.
            Some(_) => 0,
            // A partial reached through a link, or with another name, is
            // not ours to append to: it is replaced from byte zero.
            None => self.root.file_len(&dest.part_rel(), true).unwrap_or(0),
        }
    }

    /// Reads pages read before again, asking the server whether they
    /// changed (`--refresh`).
    pub fn with_refresh(mut self, yes: bool) -> Self {
        self.refresh = yes;
        self
    }

    /// Keeps downloads off these names (relative to the output directory):
    /// an input list or a report that lives there is never overwritten; a
    /// download that wants its name gets the next free one (`urls-1.txt`).
    pub fn with_protected(mut self, names: std::collections::HashSet<String>) -> Self {
        self.protected = names;
        self
    }

    /// Skips the look for a file that predates the job, one `stat` per item
    /// (in a directory of a million entries, not a cheap one): the output
    /// directory had nothing in it but the job state when the job began.
    /// Names claimed by this job are kept apart by the store.
    pub fn with_empty_output(mut self, empty: bool) -> Self {
        self.empty_output = empty;
        self
    }

    /// The output directory.
    pub fn out(&self) -> &OutputDir {
        &self.out
    }

    /// Plans entry number `n` (1-based, input order), recording new items
    /// in `store`.
    pub fn plan(&self, store: &dyn JobStore, entry: Entry, n: u64) -> Result<Planned, StoreError> {
        let origin = entry.origin;
        let (kind, page, row, parent) = (entry.kind, entry.page, entry.row, entry.parent);
        let claimed = entry.claimed;
        let with_row = |p: Planned| match p {
            Planned::Settled(mut o) => {
                o.row = row.clone();
                Planned::Settled(o)
            }
            other => other,
        };
        let text = match entry.text {
            Ok(t) => t,
            Err(e) => return Ok(with_row(failed(String::new(), &origin, "bad input", e))),
        };
        if text.is_empty() {
            // Only a table row gives an empty entry (blank lines of a list
            // are passed over): a row with an empty URL cell.
            let mut o = Outcome::new(text, &origin, Status::Skipped);
            o.reason = Some("no url".into());
            o.error = Some(format!("{origin}: the row has no URL"));
            return Ok(with_row(Planned::Settled(o)));
        }
        let mut url = match Url::parse(&text) {
            Ok(u) => u,
            Err(e) => {
                let msg = format!("not a URL ({e}): {text:?}; expected http:// or https://");
                return Ok(with_row(failed(text, &origin, "bad url", msg)));
            }
        };
        if !matches!(url.scheme(), "http" | "https") {
            let msg = format!("unsupported scheme {}: in {text:?}", url.scheme());
            return Ok(with_row(failed(text, &origin, "bad url", msg)));
        }
        let Some(host) = url.host_str() else {
            let msg = "URL has no host".to_string();
            return Ok(with_row(failed(text, &origin, "bad url", msg)));
        };
        let host = format!("{host}:{}", url.port_or_known_default().unwrap_or(0));
        url.set_fragment(None);
        let item = Item {
            id: 0,
            url,
            origin,
            n,
            dest: None,
            dest_fixed: false,
            host,
            part_len: 0,
            validators: None,
            kind,
            page,
            parent,
            copy_of: None,
            copy_from: None,
            row,
        };
        if let Some(row) = claimed {
            // A worker's claim: the row came with it, and is this worker's.
            return self.replan(store, *row, item);
        }
        let is_page = matches!(item.kind, Kind::Page { .. });
        let known = if self.rerun.get() {
            store.lookup(item.url.as_str(), is_page)?
        } else {
            None
        };
        let (item, known) = match known {
            Some(row) => (item, Some(row)),
            None => match self.plan_new(store, item)? {
                Ok(planned) => {
                    self.rerun.set(false);
                    return Ok(planned);
                }
                Err(item) => {
                    let row = store.lookup(item.url.as_str(), is_page)?;
                    (item, row)
                }
            },
        };
        self.rerun.set(known.is_some());
        match known {
            // Found on a page other than the one that first showed it: the
            // file goes in this page's folder too.
            Some(row)
                if !is_page
                    && row.page_id.is_some()
                    && item
                        .page
                        .as_ref()
                        .is_some_and(|p| Some(p.id) != row.page_id) =>
            {
                self.plan_placement(store, row.id, item)
            }
            Some(row) if row.seen_run == store.run() => {
                let mut o = Outcome::new(item.url.into(), &item.origin, Status::Skipped);
                o.reason = Some("duplicate".into());
                o.duplicate = true;
                o.id = Some(row.id);
                o.recorded = true;
                Ok(Planned::Settled(o))
            }
            Some(row) => {
                store.mark_seen(row.id)?;
                self.replan(store, row, item)
            }
            // Gone between the insert and the lookup: cannot happen with one
            // writer, but planning it afresh is right anyway.
            None => self.plan_fresh(store, item),
        }
    }

    /// Plans the placement of file `item`, downloaded by item `primary`, in
    /// the folder of the page `item` was found on.
    fn plan_placement(
        &self,
        store: &dyn JobStore,
        primary: i64,
        mut item: Item,
    ) -> Result<Planned, StoreError> {
        let Some(page) = item.page.clone() else {
            return self.plan_fresh(store, item);
        };
        item.copy_of = Some(primary);
        if let Some(row) = store.lookup_placement(item.url.as_str(), page.id)? {
            if row.seen_run == store.run() {
                let mut o = Outcome::new(item.url.into(), &item.origin, Status::Skipped);
                o.reason = Some("duplicate".into());
                o.duplicate = true;
                o.id = Some(row.id);
                o.recorded = true;
                return Ok(Planned::Settled(o));
            }
            store.mark_seen(row.id)?;
            return self.replan(store, row, item);
        }
        if !self.namer.at_plan_time(&item.url) {
            // Named from the response (an URL without an extension): one
            // copy, in the first page's folder.
            let mut o = Outcome::new(item.url.into(), &item.origin, Status::Skipped);
            o.reason = Some("duplicate".into());
            o.duplicate = true;
            return Ok(Planned::Settled(o));
        }
        let parts = match self.namer.components(&item.fields()) {
            Ok(parts) => parts,
            Err(e) => {
                let mut o = Outcome::new(item.url.into(), &item.origin, Status::Failed);
                o.reason = Some("bad name".into());
                o.error = Some(format!("{}:{}: {e}", o.input, o.line));
                o.permanent = true;
                return Ok(Planned::Settled(o));
            }
        };
        let dests = match self.candidate_dests(&parts) {
            Ok(d) => d,
            Err(e) => {
                let mut o = Outcome::new(item.url.into(), &item.origin, Status::Failed);
                o.reason = Some("bad name".into());
                o.error = Some(format!("{}:{}: {e}", o.input, o.line));
                o.permanent = true;
                return Ok(Planned::Settled(o));
            }
        };
        for dest in dests {
            match store.insert_placement(
                item.url.as_str(),
                &item.origin.input,
                item.origin.line,
                &dest.rel,
                page.id,
            )? {
                Inserted::Id(id) => {
                    item.id = id;
                    item.dest = Some(dest);
                    return self.settle_new(item, None);
                }
                Inserted::PathTaken => continue,
                // Planned meanwhile: cannot happen with one writer.
                Inserted::UrlKnown => break,
            }
        }
        let mut o = Outcome::new(item.url.into(), &item.origin, Status::Skipped);
        o.reason = Some("duplicate".into());
        o.duplicate = true;
        Ok(Planned::Settled(o))
    }

    /// Plans an item whose URL the store does not know, inserting its row
    /// with its name; `Err(item)` when the URL turns out to be known.
    fn plan_new(
        &self,
        store: &dyn JobStore,
        mut item: Item,
    ) -> Result<Result<Planned, Item>, StoreError> {
        let depth = match item.kind {
            Kind::Page { depth } => Some(depth),
            Kind::File => None,
        };
        // A file's page is the one that showed it; a page's, the one that
        // linked to it (a re-run with --refresh walks down from there).
        let page_id = item.page.as_ref().map(|p| p.id).or(item.parent);
        let insert = |path: Option<&str>| {
            store.try_insert(
                item.url.as_str(),
                &item.origin.input,
                item.origin.line,
                path,
                depth,
                page_id,
            )
        };
        let parts = (depth.is_none() && self.namer.at_plan_time(&item.url))
            .then(|| self.namer.components(&item.fields()));
        let mut bad_name = None;
        match parts {
            Some(Ok(parts)) => match self.candidate_dests(&parts) {
                Ok(dests) => {
                    for dest in dests {
                        match insert(Some(&dest.rel))? {
                            Inserted::Id(id) => {
                                item.id = id;
                                item.dest = Some(dest);
                                break;
                            }
                            Inserted::PathTaken => continue,
                            Inserted::UrlKnown => return Ok(Err(item)),
                        }
                    }
                }
                Err(e) => bad_name = Some(e),
            },
            Some(Err(e)) => bad_name = Some(e),
            None => {}
        }
        if item.id == 0 {
            match insert(None)? {
                Inserted::Id(id) => item.id = id,
                Inserted::UrlKnown | Inserted::PathTaken => return Ok(Err(item)),
            }
        }
        self.settle_new(item, bad_name).map(Ok)
    }

    /// The destinations to try for raw `components`, in order: the name,
    /// then `-1`, `-2`… (endless).
    fn candidate_dests<'a>(
        &'a self,
        components: &'a [String],
    ) -> Result<impl Iterator<Item = Dest> + 'a, NameError> {
        let Some((raw, dirs)) = components.split_last() else {
            return Err(NameError::Empty(String::new()));
        };
        let name = naming::sanitize_component(raw).ok_or_else(|| NameError::Empty(raw.clone()))?;
        let resolve = move |c: &str| {
            let mut parts: Vec<&str> = dirs.iter().map(String::as_str).collect();
            parts.push(c);
            self.out.resolve(&parts)
        };
        // A name that cannot be resolved fails the item.
        resolve(&name)?;
        Ok(naming::candidates(name)
            .filter_map(move |c| resolve(&c).ok())
            .filter(|d| !self.protected.contains(&d.rel)))
    }

    /// Names an item recorded before without a name (its name is made from
    /// the response, or could not be made), and decides whether to fetch it.
    fn plan_fresh(&self, store: &dyn JobStore, mut item: Item) -> Result<Planned, StoreError> {
        let mut bad_name = None;
        // Pages are read, not saved: nothing to name.
        let is_page = matches!(item.kind, Kind::Page { .. });
        if !is_page && self.namer.at_plan_time(&item.url) {
            let dest = match self.namer.components(&item.fields()) {
                Ok(parts) => self.claim(store, &parts)?,
                Err(e) => Err(e),
            };
            match dest {
                Ok(dest) => {
                    store.set_path(item.id, &dest.rel)?;
                    item.dest = Some(dest);
                }
                Err(e) => bad_name = Some(e),
            }
        }
        self.settle_new(item, bad_name)
    }

    /// What becomes of a freshly named item: a bad name fails it, a file
    /// that was there before skips it, anything else is fetched.
    fn settle_new(&self, item: Item, bad_name: Option<NameError>) -> Result<Planned, StoreError> {
        let settled = |item: Item, status: Status, reason: &str| {
            let mut o = Outcome::new(item.url.into(), &item.origin, status);
            o.id = Some(item.id);
            o.path = item.dest.map(|d| d.rel);
            o.reason = Some(reason.to_string());
            o.row = item.row;
            o
        };
        if let Some(e) = bad_name {
            let mut o = settled(item, Status::Failed, "bad name");
            o.error = Some(format!("{}:{}: {e}", o.input, o.line));
            o.permanent = true;
            return Ok(Planned::Settled(o));
        }
        if !self.overwrite
            && !self.empty_output
            && item.dest.as_ref().is_some_and(|d| self.exists(&d.rel))
        {
            return Ok(Planned::Settled(settled(item, Status::Skipped, "exists")));
        }
        Ok(Planned::Fetch(item))
    }

    /// Claims the first free path for raw `components` (directories, then
    /// the file name): the name gets `-1`, `-2`… until the path is free.
    pub fn claim(
        &self,
        store: &dyn JobStore,
        components: &[String],
    ) -> Result<Result<Dest, NameError>, StoreError> {
        let Some((raw, dirs)) = components.split_last() else {
            return Ok(Err(NameError::Empty(String::new())));
        };
        let Some(name) = naming::sanitize_component(raw) else {
            return Ok(Err(NameError::Empty(raw.to_string())));
        };
        for candidate in naming::candidates(name) {
            let mut parts: Vec<&str> = dirs.iter().map(String::as_str).collect();
            parts.push(&candidate);
            let dest = match self.out.resolve(&parts) {
                Ok(d) => d,
                Err(e) => return Ok(Err(e)),
            };
            if !self.protected.contains(&dest.rel) && !store.path_taken(&dest.rel)? {
                return Ok(Ok(dest));
            }
        }
        unreachable!("candidates never end")
    }

    /// What a re-run does with an item recorded by an earlier run.
    fn replan(&self, store: &dyn JobStore, row: Row, item: Item) -> Result<Planned, StoreError> {
        let item = Item { id: row.id, ..item };
        if row.is_page {
            // A page parsed before is not fetched again; its files and links
            // are in the store and carried on with on their own.
            // A link that led to a file is not fetched again either.
            let reason = match (row.state, row.reason.as_deref()) {
                (State::Ok, _) if !self.refresh => Some("done"),
                (State::Skipped, Some(r @ "not a page")) => Some(r),
                _ => None,
            };
            if let Some(reason) = reason {
                let mut o = Outcome::new(item.url.to_string(), &item.origin, Status::Skipped);
                o.id = Some(row.id);
                o.recorded = true;
                o.reason = Some(reason.into());
                o.error = row.error.clone();
                o.kind = Some(crate::report::OutcomeKind::Page);
                return Ok(Planned::Settled(o));
            }
            // Read again: only if it changed, when it was read before.
            let validators = Validators {
                etag: row.etag,
                last_modified: row.last_modified,
                total: None,
            };
            let item = Item {
                validators: (row.state == State::Ok
                    && (validators.etag.is_some() || validators.last_modified.is_some()))
                .then_some(validators),
                ..item
            };
            return Ok(Planned::Fetch(item));
        }
        let dest = row.path.as_deref().map(|p| {
            let parts: Vec<&str> = p.split('/').collect();
            self.out.resolve(&parts)
        });
        let dest = match dest {
            Some(Ok(d)) => d,
            // Never named (or the name is no longer usable): name it afresh.
            _ => return self.plan_fresh(store, item),
        };
        let settled = |status: Status, reason: &str| {
            let mut o = Outcome::new(item.url.to_string(), &item.origin, status);
            o.id = Some(row.id);
            o.recorded = true;
            o.path = Some(dest.rel.clone());
            o.reason = Some(reason.to_string());
            o.row = item.row.clone();
            o
        };
        let done = match row.state {
            // Synced: the size is enough to tell the file is still there.
            State::Ok => self.file_len(&dest.rel) == Some(row.bytes),
            // Saved but not synced when the last run ended: trust the file
            // only if it is exactly what was recorded.
            State::Saved => {
                // An object is whole once stored: its size is enough.
                let ok = match &self.objects {
                    Some(o) => o.len(&dest.rel) == Some(row.bytes),
                    None => file_matches(&self.root, &dest, row.bytes, row.sha256.as_deref()),
                };
                if ok {
                    store.mark_synced(&[row.id])?;
                }
                ok
            }
            _ => false,
        };
        if done {
            let mut o = settled(Status::Skipped, "done");
            o.bytes = row.bytes;
            o.sha256 = row.sha256;
            o.http_status = row.http_status;
            return Ok(Planned::Settled(o));
        }
        match row.state {
            State::Skipped if self.exists(&dest.rel) && !self.overwrite => {
                return Ok(Planned::Settled(settled(Status::Skipped, "exists")));
            }
            State::Failed if row.permanent && !self.retry_failed => {
                let mut o = settled(Status::Failed, row.reason.as_deref().unwrap_or("failed"));
                o.http_status = row.http_status;
                o.error = Some(format!(
                    "{}; not retried (failed permanently in an earlier run; --retry-failed retries it)",
                    row.error.as_deref().unwrap_or("failed")
                ));
                o.permanent = true;
                return Ok(Planned::Settled(o));
            }
            _ => {}
        }
        // Pending, transiently failed, or done but the file is gone: fetch,
        // resuming a partial when the validators allow.
        let resumable = matches!(row.state, State::Pending | State::Failed);
        let part_len = if resumable { self.part_len(&dest) } else { 0 };
        let validators = Validators {
            etag: row.etag,
            last_modified: row.last_modified,
            total: row.total,
        };
        let validators = (validators.if_range().is_some()).then_some(validators);
        Ok(Planned::Fetch(Item {
            dest: Some(dest),
            dest_fixed: true,
            part_len,
            validators,
            ..item
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(line: u64, text: &str) -> Entry {
        Entry::new(
            Origin {
                input: "list.txt".into(),
                line,
            },
            Ok(text.to_string()),
        )
    }

    fn outcome(p: Planned) -> Outcome {
        match p {
            Planned::Settled(o) => o,
            Planned::Fetch(i) => panic!("expected a settled outcome, got {i:?}"),
        }
    }

    #[test]
    fn bad_urls_name_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let p = Planner::new(
            Arc::new(Root::open(dir.path()).unwrap()),
            Namer::from_urls(),
            false,
            false,
        );
        let o = outcome(p.plan(&store, entry(7, "not a url"), 7).unwrap());
        assert_eq!(o.status, Status::Failed);
        assert!(o.error.unwrap().starts_with("list.txt:7: not a URL"));
        let o = outcome(p.plan(&store, entry(8, "ftp://h/x"), 8).unwrap());
        assert!(o.error.unwrap().contains("unsupported scheme ftp"));
    }

    #[test]
    fn duplicates_existing_files_and_collisions() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("old.bin"), b"x").unwrap();
        let store = Store::open(dir.path()).unwrap();
        let p = Planner::new(
            Arc::new(Root::open(dir.path()).unwrap()),
            Namer::from_urls(),
            false,
            false,
        );
        assert!(matches!(
            p.plan(&store, entry(1, "http://h/a.bin#frag"), 1).unwrap(),
            Planned::Fetch(_)
        ));
        let dup = outcome(p.plan(&store, entry(2, "http://h/a.bin"), 2).unwrap());
        assert_eq!(
            (dup.status, dup.reason.as_deref()),
            (Status::Skipped, Some("duplicate"))
        );
        let old = outcome(p.plan(&store, entry(3, "http://h/old.bin"), 3).unwrap());
        assert_eq!(old.reason.as_deref(), Some("exists"));
        match p.plan(&store, entry(4, "http://other/a.bin"), 4).unwrap() {
            Planned::Fetch(i) => {
                assert_eq!(i.dest.unwrap().rel, "a-1.bin");
                assert_eq!(i.host, "other:80");
            }
            Planned::Settled(o) => panic!("{o:?}"),
        }
    }

    #[test]
    fn a_rerun_skips_what_is_done_and_resumes_what_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let p = Planner::new(
            Arc::new(Root::open(dir.path()).unwrap()),
            Namer::from_urls(),
            false,
            false,
        );
        let store = Store::open(dir.path()).unwrap();
        let Planned::Fetch(done) = p.plan(&store, entry(1, "http://h/done.bin"), 1).unwrap() else {
            panic!()
        };
        let Planned::Fetch(part) = p.plan(&store, entry(2, "http://h/part.bin"), 2).unwrap() else {
            panic!()
        };
        let Planned::Fetch(gone) = p.plan(&store, entry(3, "http://h/gone.bin"), 3).unwrap() else {
            panic!()
        };
        std::fs::write(&done.dest.as_ref().unwrap().path, b"12345").unwrap();
        let fin = crate::store::Finish {
            bytes: 5,
            ..Default::default()
        };
        store.finish(done.id, State::Ok, &fin).unwrap();
        store.finish(gone.id, State::Ok, &fin).unwrap();
        std::fs::write(part.dest.as_ref().unwrap().part_path(), b"123").unwrap();
        store.started(part.id, Some("\"v1\""), None, None).unwrap();
        store
            .finish(
                p.plan(&store, entry(4, "http://h/404"), 4)
                    .map(|pl| match pl {
                        Planned::Fetch(i) => i.id,
                        Planned::Settled(_) => panic!(),
                    })
                    .unwrap(),
                State::Failed,
                &crate::store::Finish {
                    permanent: true,
                    error: Some("HTTP 404 Not Found".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        let o = outcome(p.plan(&store, entry(1, "http://h/done.bin"), 1).unwrap());
        assert_eq!(
            (o.status, o.reason.as_deref()),
            (Status::Skipped, Some("done"))
        );
        match p.plan(&store, entry(2, "http://h/part.bin"), 2).unwrap() {
            Planned::Fetch(i) => {
                assert_eq!(i.part_len, 3);
                assert_eq!(i.validators.unwrap().if_range(), Some("\"v1\""));
            }
            Planned::Settled(o) => panic!("{o:?}"),
        }
        match p.plan(&store, entry(3, "http://h/gone.bin"), 3).unwrap() {
            Planned::Fetch(i) => {
                assert_eq!((i.dest.unwrap().rel.as_str(), i.part_len), ("gone.bin", 0))
            }
            Planned::Settled(o) => panic!("{o:?}"),
        }
        let o = outcome(p.plan(&store, entry(4, "http://h/404"), 4).unwrap());
        assert_eq!(o.status, Status::Failed);
        assert!(o.error.unwrap().contains("--retry-failed"));
        let again = Planner::new(
            Arc::new(Root::open(dir.path()).unwrap()),
            Namer::from_urls(),
            false,
            true,
        );
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert!(matches!(
            again.plan(&store, entry(4, "http://h/404"), 4).unwrap(),
            Planned::Fetch(_)
        ));
    }

    #[test]
    fn weak_etags_are_not_used_for_if_range() {
        let v = Validators {
            etag: Some("W/\"x\"".into()),
            last_modified: Some("Tue, 01 Jan 2030 00:00:00 GMT".into()),
            total: None,
        };
        assert_eq!(v.if_range(), Some("Tue, 01 Jan 2030 00:00:00 GMT"));
        let v = Validators {
            etag: Some("W/\"x\"".into()),
            last_modified: None,
            total: None,
        };
        assert_eq!(v.if_range(), None);
    }
}
