//! The job state behind one seam: [`JobStore`], what planning, recording,
//! re-runs and `haul status` ask of it, and [`Store`], its SQLite
//! implementation (one database per output directory, see `sqlite.rs`).
//!
//! Why a trait: a job that many machines share keeps its state in one
//! PostgreSQL database instead. The methods are shaped for that store too:
//! - items are named by a 64-bit id that the store hands out
//!   ([`JobStore::try_insert`]), never by a position in memory;
//! - writes come in batches ([`JobStore::begin`]/[`JobStore::commit`]), one
//!   transaction each, so a network round trip is paid per batch, not per
//!   item;
//! - planning input, whose every insert the planner waits on, may come in
//!   provisional batches ([`JobStore::begin_provisional`]): the store
//!   answers from what it has seen and checks at the commit, and the
//!   caller plans the batch again when an answer was wrong; a store that
//!   answers at once (SQLite, on this machine's disk) has none;
//! - each write is a single-row statement keyed by that id (started,
//!   finished, synced), which a shared database takes without locks held
//!   across items;
//! - reads for a re-run stream ([`JobStore::each_unfinished`],
//!   [`JobStore::each_failed`]) rather than load the job.
//!
//! What stays outside it: opening a store (the SQLite one takes a lock on
//! the output directory and keeps a reserve of disk space; a shared one
//! will claim work in leased batches, which is a worker's concern, not the
//! ledger's), and syncing files ([`sync_files`]).
//!
//! The methods are synchronous: the ledger, their one caller, runs on a
//! thread of its own.

mod postgres;
mod sqlite;

pub use postgres::{Claims, PgLocation, PgStore};
pub use sqlite::{
    release_reserve, sync_files, Finish, Inserted, Row, State, Store, StoreError, Unfinished,
    STATE_DIR,
};

/// One item as `haul status` reads it.
#[derive(Debug, Clone)]
pub struct ItemRecord {
    /// The URL.
    pub url: String,
    /// Where it goes, relative to the output directory.
    pub path: Option<String>,
    /// Its state.
    pub state: State,
    /// Last HTTP status.
    pub http_status: Option<u16>,
    /// Bytes of the finished file.
    pub bytes: u64,
    /// SHA-256 of the finished file.
    pub sha256: Option<String>,
    /// Requests made, all runs.
    pub attempts: u32,
    /// Last error.
    pub error: Option<String>,
    /// Failure group.
    pub reason: Option<String>,
    /// Input it first came from.
    pub input: Option<String>,
    /// Line of that input.
    pub line: Option<u64>,
    /// Its failure will not go away by retrying.
    pub permanent: bool,
    /// A partial of it could be resumed (validators are recorded).
    pub resumable: bool,
    /// 429 and 503 answers it met, all runs.
    pub throttled: u32,
    /// Its row.
    pub id: i64,
    /// A crawled page (its `path` is its folder).
    pub is_page: bool,
}

/// What the job asks of its state. See the module documentation.
pub trait JobStore: Send {
    /// This run's id.
    fn run(&self) -> i64;
    /// Starts a batch, if none is open.
    fn begin(&mut self) -> Result<(), StoreError>;
    /// Commits the open batch, if any.
    fn commit(&mut self) -> Result<(), StoreError>;
    /// Starts a provisional batch, if the store keeps them: its writes
    /// wait for [`JobStore::commit_provisional`], and its questions (is
    /// this URL known, is this path taken) are answered from what the
    /// store has seen, taking free what it has not. `false`: an ordinary
    /// batch was begun instead, whose answers are final.
    ///
    /// Only planning goes in one: nothing planned may be acted on before
    /// the commit says the answers held.
    fn begin_provisional(&mut self) -> Result<bool, StoreError> {
        self.begin()?;
        Ok(false)
    }
    /// Commits the provisional batch: `true` when its answers held.
    /// `false` when one did not (a URL or a path it took free had a row,
    /// another process's or one it had not seen): nothing of the batch is
    /// recorded, the store has learned what it missed, and the batch must
    /// be planned again from [`JobStore::begin_provisional`]. An ordinary
    /// batch is committed as by [`JobStore::commit`].
    fn commit_provisional(&mut self) -> Result<bool, StoreError> {
        self.commit()?;
        Ok(true)
    }
    /// The item of `url` as a page or as a file, if it was ever planned.
    fn lookup(&self, url: &str, page: bool) -> Result<Option<Row>, StoreError>;
    /// The row placing file `url` in the folder of `page` too.
    fn lookup_placement(&self, url: &str, page: i64) -> Result<Option<Row>, StoreError>;
    /// Records that file `url` goes in the folder of `page` too, at `path`.
    fn insert_placement(
        &self,
        url: &str,
        input: &str,
        line: u64,
        path: &str,
        page: i64,
    ) -> Result<Inserted, StoreError>;
    /// Item `id`'s row.
    fn file_of(&self, id: i64) -> Result<Option<Row>, StoreError>;
    /// Whether some item already owns `path`.
    fn path_taken(&self, path: &str) -> Result<bool, StoreError>;
    /// Records a new item, unless its URL or its path is taken.
    fn try_insert(
        &self,
        url: &str,
        input: &str,
        line: u64,
        path: Option<&str>,
        page_depth: Option<u32>,
        page_id: Option<i64>,
    ) -> Result<Inserted, StoreError>;
    /// Notes that this run's input holds the item too.
    fn mark_seen(&self, id: i64) -> Result<(), StoreError>;
    /// Sets the item's path (a name from the response).
    fn set_path(&self, id: i64, path: &str) -> Result<(), StoreError>;
    /// Records what a crawled page held.
    fn set_page(
        &self,
        id: i64,
        title: Option<&str>,
        folder: Option<&str>,
        links: u64,
    ) -> Result<(), StoreError>;
    /// Records the validators (and size) a resumable transfer started under.
    fn started(
        &self,
        id: i64,
        etag: Option<&str>,
        last_modified: Option<&str>,
        total: Option<u64>,
    ) -> Result<(), StoreError>;
    /// Records how an item ended.
    fn finish(&self, id: i64, state: State, f: &Finish) -> Result<(), StoreError>;
    /// Marks saved items done once their files are synced.
    fn mark_synced(&self, ids: &[i64]) -> Result<(), StoreError>;
    /// The failed items, in planning order, until `f` says stop.
    fn each_failed(&self, f: &mut dyn FnMut(String, String, u64) -> bool)
        -> Result<(), StoreError>;
    /// The items a re-run of a crawl carries on with.
    fn each_unfinished(
        &self,
        retry_failed: bool,
        f: &mut dyn FnMut(Unfinished),
    ) -> Result<(), StoreError>;
    /// Runs so far.
    fn runs(&self) -> Result<u64, StoreError>;
    /// Every item, in planning order.
    fn each_item(&self, f: &mut dyn FnMut(ItemRecord)) -> Result<(), StoreError>;
    /// Up to `limit` items this run has not planned, after row `after`, in
    /// planning order.
    fn unseen(
        &self,
        after: i64,
        limit: u32,
        f: &mut dyn FnMut(ItemRecord),
    ) -> Result<(), StoreError>;
    /// The folder a page's files went to, once it was read.
    fn folder_of(&self, page: i64) -> Result<Option<String>, StoreError>;
    /// The pages `page` linked to.
    fn each_child_page(&self, page: i64, f: &mut dyn FnMut(Unfinished)) -> Result<(), StoreError>;
    /// Whether the disk filled under the store (the job must stop writing
    /// files); a store on another machine's disk never says so.
    fn disk_full(&self) -> bool {
        false
    }
    /// For a shared job: each worker's items, by the name it registered
    /// (`host-pid-…`): done, failed, bytes. Empty for a local job.
    fn per_worker(&self) -> Result<Vec<WorkerFigures>, StoreError> {
        Ok(Vec::new())
    }
}

/// One worker's share of a shared job, for `haul status`.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq, Eq)]
pub struct WorkerFigures {
    /// The worker's name: its host, pid and a random part.
    pub worker: String,
    /// Items it downloaded.
    pub ok: u64,
    /// Items that failed in its hands.
    pub failed: u64,
    /// Bytes it downloaded.
    pub bytes: u64,
}

impl JobStore for Store {
    fn run(&self) -> i64 {
        Store::run(self)
    }
    fn begin(&mut self) -> Result<(), StoreError> {
        Store::begin(self)
    }
    fn commit(&mut self) -> Result<(), StoreError> {
        Store::commit(self)
    }
    fn lookup(&self, url: &str, page: bool) -> Result<Option<Row>, StoreError> {
        Store::lookup(self, url, page)
    }
    fn path_taken(&self, path: &str) -> Result<bool, StoreError> {
        Store::path_taken(self, path)
    }
    fn lookup_placement(&self, url: &str, page: i64) -> Result<Option<Row>, StoreError> {
        Store::lookup_placement(self, url, page)
    }
    fn insert_placement(
        &self,
        url: &str,
        input: &str,
        line: u64,
        path: &str,
        page: i64,
    ) -> Result<Inserted, StoreError> {
        Store::insert_placement(self, url, input, line, path, page)
    }
    fn file_of(&self, id: i64) -> Result<Option<Row>, StoreError> {
        Store::file_of(self, id)
    }
    fn try_insert(
        &self,
        url: &str,
        input: &str,
        line: u64,
        path: Option<&str>,
        page_depth: Option<u32>,
        page_id: Option<i64>,
    ) -> Result<Inserted, StoreError> {
        Store::try_insert(self, url, input, line, path, page_depth, page_id)
    }
    fn mark_seen(&self, id: i64) -> Result<(), StoreError> {
        Store::mark_seen(self, id)
    }
    fn set_path(&self, id: i64, path: &str) -> Result<(), StoreError> {
        Store::set_path(self, id, path)
    }
    fn set_page(
        &self,
        id: i64,
        title: Option<&str>,
        folder: Option<&str>,
        links: u64,
    ) -> Result<(), StoreError> {
        Store::set_page(self, id, title, folder, links)
    }
    fn started(
        &self,
        id: i64,
        etag: Option<&str>,
        last_modified: Option<&str>,
        total: Option<u64>,
    ) -> Result<(), StoreError> {
        Store::started(self, id, etag, last_modified, total)
    }
    fn finish(&self, id: i64, state: State, f: &Finish) -> Result<(), StoreError> {
        Store::finish(self, id, state, f)
    }
    fn mark_synced(&self, ids: &[i64]) -> Result<(), StoreError> {
        Store::mark_synced(self, ids)
    }
    fn each_failed(
        &self,
        f: &mut dyn FnMut(String, String, u64) -> bool,
    ) -> Result<(), StoreError> {
        Store::each_failed(self, f)
    }
    fn each_unfinished(
        &self,
        retry_failed: bool,
        f: &mut dyn FnMut(Unfinished),
    ) -> Result<(), StoreError> {
        Store::each_unfinished(self, retry_failed, f)
    }
    fn runs(&self) -> Result<u64, StoreError> {
        Store::runs(self)
    }
    fn each_item(&self, f: &mut dyn FnMut(ItemRecord)) -> Result<(), StoreError> {
        Store::each_item(self, f)
    }
    fn each_child_page(&self, page: i64, f: &mut dyn FnMut(Unfinished)) -> Result<(), StoreError> {
        Store::each_child_page(self, page, f)
    }
    fn folder_of(&self, page: i64) -> Result<Option<String>, StoreError> {
        Store::folder_of(self, page)
    }
    fn unseen(
        &self,
        after: i64,
        limit: u32,
        f: &mut dyn FnMut(ItemRecord),
    ) -> Result<(), StoreError> {
        Store::unseen(self, after, limit, f)
    }
    fn disk_full(&self) -> bool {
        self.reserve_used()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An item's life through the seam, as the ledger drives it.
    fn life(store: &mut dyn JobStore) {
        store.begin().unwrap();
        let Inserted::Id(a) = store
            .try_insert("http://h/a", "in", 1, Some("a"), None, None)
            .unwrap()
        else {
            panic!("a is new");
        };
        let Inserted::Id(b) = store
            .try_insert("http://h/b", "in", 2, Some("b"), None, None)
            .unwrap()
        else {
            panic!("b is new");
        };
        assert!(matches!(
            store
                .try_insert("http://h/a", "in", 3, None, None, None)
                .unwrap(),
            Inserted::UrlKnown
        ));
        assert!(store.path_taken("a").unwrap());
        store.started(a, Some("\"e\""), None, Some(10)).unwrap();
        let saved = Finish {
            bytes: 10,
            http_status: Some(200),
            attempts: 1,
            ..Finish::default()
        };
        store.finish(a, State::Saved, &saved).unwrap();
        let failed = Finish {
            reason: Some("HTTP 404 Not Found".into()),
            permanent: true,
            ..Finish::default()
        };
        store.finish(b, State::Failed, &failed).unwrap();
        store.mark_synced(&[a]).unwrap();
        store.commit().unwrap();

        let row = store.lookup("http://h/a", false).unwrap().unwrap();
        assert_eq!((row.state, row.bytes, row.total), (State::Ok, 10, Some(10)));
        let mut failed_urls = Vec::new();
        store
            .each_failed(&mut |url, _, line| {
                failed_urls.push((url, line));
                true
            })
            .unwrap();
        assert_eq!(failed_urls, [("http://h/b".to_string(), 2)]);
        let mut states = Vec::new();
        store
            .each_item(&mut |r| states.push((r.url, r.state)))
            .unwrap();
        assert_eq!(
            states,
            [
                ("http://h/a".to_string(), State::Ok),
                ("http://h/b".to_string(), State::Failed)
            ]
        );
        assert_eq!(store.runs().unwrap(), 1);
    }

    #[test]
    fn the_sqlite_store_through_the_seam() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        life(&mut store);
    }
}
