//! Provisional batches (see the module documentation of `postgres`): what
//! a batch planned, what the store learned, and how a batch is written.

use std::collections::{HashMap, HashSet, VecDeque};

use postgres::Client;

use super::{now, PgStore};
use crate::store::Row;

/// Failed attempts at a provisional batch before it is planned in an
/// ordinary one. Each attempt learns what its batch collided with, so a
/// list whose names another took up to `-6` needs seven; item by item,
/// each name tried costs a round trip instead.
pub(super) const PROVISIONAL_ATTEMPTS: u32 = 8;

/// Serializes the writing of provisional batches into one job (this,
/// with the job's id in its low bits): two batches that both wanted a path
/// would otherwise each wait for the other's transaction, until PostgreSQL
/// ended one of them after a second (`deadlock_timeout`).
pub(super) const WRITE_LOCK: i64 = 0x6861_756c_5f77_7200; // "haul_wr\0"

/// Items a run writes before it has the items' table analyzed, and again
/// each time it has written four times as many. Until a table has been
/// analyzed once, PostgreSQL plans a look-up of 4,096 URLs (the learning
/// after a collision, in a list submitted again) as a scan of the job: 290
/// ms instead of 40 in a job of a million, while autovacuum had not come by
/// (nor does it for a table that grows quickly enough). Workers' claims and
/// `haul status` gain too.
pub(super) const ANALYZE_AFTER: u64 = 1 << 16;

/// Ids reserved from the items' sequence at a time: about a batch's worth,
/// so that reserving costs a round trip per batch.
pub(super) const RESERVE_IDS: i32 = 4096;

/// An item a provisional batch inserts when it commits.
#[derive(Clone)]
pub(super) struct NewItem {
    pub(super) id: i64,
    pub(super) url: String,
    pub(super) input: String,
    pub(super) line: i64,
    pub(super) path: Option<String>,
    pub(super) page: bool,
    pub(super) depth: i32,
    pub(super) page_id: Option<i64>,
}

/// A provisional batch (see the module documentation): its writes, held
/// until its commit, and what answers its questions meanwhile.
#[derive(Default)]
pub(super) struct Provisional {
    pub(super) open: bool,
    /// The batch asked for a write it does not hold back (a name set, a
    /// file marked done, a placement): it is planned again, item by item.
    pub(super) spoiled: bool,
    /// New items, in planning order.
    pub(super) new: Vec<NewItem>,
    /// Of those, by URL and kind (`true`: a page), and the paths they take.
    pub(super) new_urls: HashMap<(String, bool), usize>,
    pub(super) new_paths: HashSet<String>,
    /// Known items this run's input holds too.
    pub(super) seen: HashSet<i64>,
    /// What a failed attempt learned of the job's items, by URL and kind
    /// (placed nowhere else).
    pub(super) known: HashMap<(String, bool), Row>,
    /// Paths taken, as far as this run knows: written or learned.
    pub(super) taken: Taken,
    /// URLs and paths answered free without a new item taking them: with
    /// the new items', what a failed attempt looks up.
    pub(super) asked_urls: HashSet<String>,
    pub(super) asked_paths: HashSet<String>,
    /// Ids reserved from the items' sequence, lowest first. A failed
    /// attempt gives its ids back, so items keep their planning order.
    pub(super) ids: VecDeque<i64>,
    /// Failed attempts in a row.
    pub(super) failed: u32,
    /// Items this run wrote, and how many it had when it last had the
    /// table analyzed.
    pub(super) wrote: u64,
    pub(super) analyzed: u64,
}

/// Paths known taken in a job, for the rest of a run: not forgotten after
/// each batch, since a name that many URLs of a list want (`image.jpg`)
/// would make every batch after the first collide with the ones before,
/// and learn their names again, one `-N` per attempt. Kept as 128-bit
/// hashes (two SipHash keys): a million cost ~35 MB, against ~70 MB as
/// strings, and two paths that share a hash are as good as impossible.
#[derive(Default)]
pub(super) struct Taken {
    keys: HashSet<u128>,
    hash: (std::hash::RandomState, std::hash::RandomState),
}

impl Taken {
    fn key(&self, path: &str) -> u128 {
        use std::hash::BuildHasher;
        (u128::from(self.hash.0.hash_one(path)) << 64) | u128::from(self.hash.1.hash_one(path))
    }

    pub(super) fn contains(&self, path: &str) -> bool {
        self.keys.contains(&self.key(path))
    }

    pub(super) fn insert(&mut self, path: &str) {
        let key = self.key(path);
        self.keys.insert(key);
    }
}

impl Provisional {
    /// Ends the attempt, written: its paths are remembered, the rows it
    /// learned forgotten.
    pub(super) fn written(&mut self) {
        self.open = false;
        self.wrote += self.new.len() as u64;
        for n in self.new.drain(..) {
            if let Some(path) = &n.path {
                self.taken.insert(path);
            }
        }
        self.new_urls.clear();
        self.new_paths.clear();
        self.seen.clear();
        self.asked_urls.clear();
        self.asked_paths.clear();
        self.known.clear();
        self.failed = 0;
    }

    /// Ends the attempt: its ids back to the front of the reserve, its
    /// keys (every one it asked about) returned for a look-up.
    pub(super) fn undo(&mut self) -> (Vec<String>, Vec<String>) {
        self.open = false;
        let mut urls: Vec<String> = self.asked_urls.drain().collect();
        let mut paths: Vec<String> = self.asked_paths.drain().collect();
        for n in self.new.drain(..).rev() {
            self.ids.push_front(n.id);
            urls.push(n.url);
            paths.extend(n.path);
        }
        self.new_urls.clear();
        self.new_paths.clear();
        self.seen.clear();
        (urls, paths)
    }
}

/// A provisional batch's writes, for the connection's thread.
pub(super) struct BatchWrite {
    job: i64,
    run: i64,
    pub(super) new: Vec<NewItem>,
    pub(super) seen: Vec<i64>,
}

/// Whether `e` says that a batch collided with rows of another writer's,
/// committed or not (where each waited for the other, PostgreSQL ends one
/// of them): the batch is rolled back, to be planned again.
pub(super) fn collided(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    e.code()
        .is_some_and(|c| [SqlState::UNIQUE_VIOLATION, SqlState::T_R_DEADLOCK_DETECTED].contains(c))
}

impl BatchWrite {
    pub(super) fn new(p: &Provisional, job: i64, run: i64) -> BatchWrite {
        let mut seen: Vec<i64> = p.seen.iter().copied().collect();
        seen.sort_unstable();
        BatchWrite {
            job,
            run,
            new: p.new.clone(),
            seen,
        }
    }

    /// Writes it in one transaction; `false`, with nothing written, when
    /// it collided.
    pub(super) fn write(&self, c: &mut Client) -> Result<bool, postgres::Error> {
        match self.try_write(c) {
            // The transaction was rolled back as it was dropped.
            Err(e) if collided(&e) => Ok(false),
            other => other.map(|()| true),
        }
    }

    /// The new items go in by `COPY`: against one `INSERT … SELECT FROM
    /// unnest(…) ON CONFLICT DO NOTHING`, it took the same time to write
    /// (PostgreSQL's time is the items' five indexes), and it stops at the
    /// first collision, where the insert went through the whole batch: a
    /// list submitted again collides on every item.
    fn try_write(&self, c: &mut Client) -> Result<(), postgres::Error> {
        let mut tx = c.transaction()?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&(WRITE_LOCK ^ self.job)],
        )?;
        if !self.new.is_empty() {
            let mut w = copy_writer(&mut tx)?;
            let now = now();
            for n in &self.new {
                copy_item(&mut w, n, self.job, self.run, now)?;
            }
            w.finish()?;
        }
        mark_seen(&mut tx, self.run, &self.seen)?;
        tx.commit()
    }
}

/// The `COPY` of new items into `tx`.
pub(super) fn copy_writer<'a>(
    tx: &'a mut postgres::Transaction<'_>,
) -> Result<postgres::binary_copy::BinaryCopyInWriter<'a>, postgres::Error> {
    use postgres::types::Type;
    let sink = tx.copy_in(
        "COPY items (id, job, url, input, line, path, state, seen_run, kind, depth,
                     page_id, created_at, updated_at) FROM STDIN BINARY",
    )?;
    Ok(postgres::binary_copy::BinaryCopyInWriter::new(
        sink,
        &[
            Type::INT8,
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::TEXT,
            Type::INT4,
            Type::INT8,
            Type::INT8,
            Type::INT8,
        ],
    ))
}

pub(super) fn copy_item(
    w: &mut postgres::binary_copy::BinaryCopyInWriter<'_>,
    n: &NewItem,
    job: i64,
    run: i64,
    now: i64,
) -> Result<(), postgres::Error> {
    w.write(&[
        &n.id,
        &job,
        &n.url,
        &n.input,
        &n.line,
        &n.path,
        &"pending",
        &run,
        &PgStore::kind(n.page),
        &n.depth,
        &n.page_id,
        &now,
        &now,
    ])
}

pub(super) fn mark_seen(
    tx: &mut postgres::Transaction<'_>,
    run: i64,
    seen: &[i64],
) -> Result<(), postgres::Error> {
    if !seen.is_empty() {
        tx.execute(
            "UPDATE items SET seen_run = $1 WHERE id = ANY($2)",
            &[&run, &seen],
        )?;
    }
    Ok(())
}
