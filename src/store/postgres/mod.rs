//! The job state in PostgreSQL: one database that any number of haul
//! processes on any number of machines share, each job under a name.
//!
//! The schema mirrors the SQLite one (`sqlite.rs`), with a `job` column on
//! every item and two columns for workers: `lease_owner` and `lease_until`.
//! A worker claims a batch of pending items with `FOR UPDATE SKIP LOCKED`
//! and a lease ([`Claims`]); a worker that dies loses nothing, since its
//! leases run out and the items become claimable again. PostgreSQL is the
//! coordinator: there is no other.
//!
//! The client is the `postgres` crate's blocking one, on a thread of its
//! own ([`Conn`]): the store's callers run inside a runtime (the ledger's),
//! where a blocking client may not start its own. Each call is a message
//! to that thread and a reply; rows of a long read come back over a
//! bounded channel, so memory stays flat however large the job.
//!
//! Statements never rely on a failing one leaving the transaction usable
//! (PostgreSQL aborts a transaction on the first error): an insert that
//! may collide is `ON CONFLICT DO NOTHING`, and the collision is looked up
//! after.
//!
//! Input is planned in provisional batches ([`Provisional`]): item by
//! item, a round trip per item held `haul submit` to ~3,000 items/s,
//! whatever the batch size, since the planner waits for each insert's
//! answer (its id, or which key collided) before naming the next item.
//! Instead the store answers from what it knows (the batch's own items,
//! the paths this run wrote or learned, the rows a failed attempt looked
//! up), takes ids from a block reserved from the items' sequence, and at
//! the commit writes the batch with one `COPY`. A row the store did not
//! know of (another writer's, or an earlier run's) makes the copy fail:
//! the batch is rolled back, the store looks up every URL and path the
//! batch asked about, and the ledger plans the batch again with that
//! knowledge; after [`PROVISIONAL_ATTEMPTS`] it plans it item by item, as
//! before. Either way names come out exactly as item by item, and a batch
//! is written whole or not at all: one lost with the connection is
//! written again with the same ids, unless its first id shows it landed.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use postgres::types::ToSql;

use super::{Finish, Inserted, ItemRecord, Row, State, StoreError, Unfinished, WorkerFigures};

mod claims;
mod conn;
mod provisional;
mod tls;

pub use claims::Claims;
use conn::{Conn, Outcome};
use provisional::{
    BatchWrite, NewItem, Provisional, ANALYZE_AFTER, PROVISIONAL_ATTEMPTS, RESERVE_IDS,
};

/// The schema version this build writes (the `haul_schema` table).
pub const PG_SCHEMA_VERSION: i32 = 1;

/// Serializes schema creation across processes that start together.
const SCHEMA_LOCK: i64 = 0x6861_756c_5f73_6368; // "haul_sch"

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS haul_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id BIGSERIAL PRIMARY KEY,
    job BIGINT NOT NULL REFERENCES jobs (id),
    started_at BIGINT NOT NULL,
    version TEXT NOT NULL,
    worker TEXT
);
CREATE TABLE IF NOT EXISTS items (
    id BIGSERIAL PRIMARY KEY,
    job BIGINT NOT NULL REFERENCES jobs (id),
    url TEXT NOT NULL,
    input TEXT,
    line BIGINT,
    path TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    permanent BOOLEAN NOT NULL DEFAULT FALSE,
    http_status INTEGER,
    bytes BIGINT NOT NULL DEFAULT 0,
    sha256 TEXT,
    etag TEXT,
    last_modified TEXT,
    total BIGINT,
    attempts INTEGER NOT NULL DEFAULT 0,
    throttled INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    reason TEXT,
    seen_run BIGINT NOT NULL DEFAULT 0,
    kind TEXT NOT NULL DEFAULT 'file',
    depth INTEGER NOT NULL DEFAULT 0,
    page_id BIGINT,
    title TEXT,
    links BIGINT,
    placed BIGINT NOT NULL DEFAULT 0,
    lease_owner TEXT,
    lease_until TIMESTAMPTZ,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (job, url, kind, placed),
    UNIQUE (job, path)
);
CREATE INDEX IF NOT EXISTS items_pending ON items (job, id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS items_leased ON items (job, lease_owner) WHERE state = 'pending';
-- Where each worker's claims have reached: the highest id it claimed.
CREATE TABLE IF NOT EXISTS frontier (
    job BIGINT NOT NULL REFERENCES jobs (id),
    owner TEXT NOT NULL,
    past BIGINT NOT NULL,
    PRIMARY KEY (job, owner)
);
CREATE TABLE IF NOT EXISTS workers (
    job BIGINT NOT NULL REFERENCES jobs (id),
    owner TEXT NOT NULL,
    heartbeat TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (job, owner)
);
";

const ROW_COLUMNS: &str = "id, state, path, bytes, sha256, etag, last_modified, permanent, error, \
                           reason, http_status, attempts, seen_run, kind = 'page', total, page_id";

const RECORD_COLUMNS: &str = "url, path, state, http_status, bytes, sha256, attempts, error, \
                              reason, input, line, permanent, \
                              etag IS NOT NULL OR last_modified IS NOT NULL, throttled, id, \
                              kind = 'page'";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Where a job's state lives in PostgreSQL: the server's URL and the job's
/// name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgLocation {
    /// `postgres://user@host:port/database`.
    pub url: String,
    /// The job's name.
    pub job: String,
}

impl PgLocation {
    /// The URL without a password, for messages: neither the one in its
    /// user part nor a `password=` in its query (libpq takes both).
    pub fn display(&self) -> String {
        match url::Url::parse(&self.url) {
            Ok(mut u) => {
                let _ = u.set_password(None);
                if u.query_pairs().any(|(k, _)| k == "password") {
                    let kept: Vec<(String, String)> = u
                        .query_pairs()
                        .filter(|(k, _)| k != "password")
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect();
                    u.set_query(None);
                    if !kept.is_empty() {
                        u.query_pairs_mut().extend_pairs(kept);
                    }
                }
                format!("{u} (job {})", self.job)
            }
            Err(_) => format!("PostgreSQL (job {})", self.job),
        }
    }
}

fn row(r: &postgres::Row) -> Row {
    row_at(r, 0)
}

/// A [`Row`] from the columns of `r` from `at` on, in [`ROW_COLUMNS`]
/// order (a claim returns them after the item's own).
fn row_at(r: &postgres::Row, at: usize) -> Row {
    Row {
        id: r.get(at),
        state: State::parse(r.get::<_, &str>(at + 1)),
        path: r.get(at + 2),
        bytes: r.get::<_, i64>(at + 3) as u64,
        sha256: r.get(at + 4),
        etag: r.get(at + 5),
        last_modified: r.get(at + 6),
        permanent: r.get(at + 7),
        error: r.get(at + 8),
        reason: r.get(at + 9),
        http_status: r.get::<_, Option<i32>>(at + 10).map(|s| s as u16),
        attempts: r.get::<_, i32>(at + 11) as u32,
        seen_run: r.get(at + 12),
        is_page: r.get(at + 13),
        total: r.get::<_, Option<i64>>(at + 14).map(|t| t as u64),
        page_id: r.get(at + 15),
    }
}

fn record(r: &postgres::Row) -> ItemRecord {
    ItemRecord {
        url: r.get(0),
        path: r.get(1),
        state: State::parse(r.get::<_, &str>(2)),
        http_status: r.get::<_, Option<i32>>(3).map(|s| s as u16),
        bytes: r.get::<_, i64>(4) as u64,
        sha256: r.get(5),
        attempts: r.get::<_, i32>(6) as u32,
        error: r.get(7),
        reason: r.get(8),
        input: r.get(9),
        line: r.get::<_, Option<i64>>(10).map(|l| l as u64),
        permanent: r.get(11),
        resumable: r.get(12),
        throttled: r.get::<_, i32>(13) as u32,
        id: r.get(14),
        is_page: r.get(15),
    }
}

/// A write of the open batch, to do again on a new connection if the old
/// one was lost before the batch was committed.
type Replay = Box<dyn Fn(&Conn) -> Result<(), StoreError> + Send>;

/// A job's state in PostgreSQL. See the module documentation.
pub struct PgStore {
    conn: Conn,
    job: i64,
    run: i64,
    in_tx: bool,
    /// The open batch's writes, in order. A lost connection loses the
    /// batch's transaction; it is begun again on the next connection and
    /// these done again, so the ledger, which went on believing them
    /// done, is right. Inserts are replayed with the ids they got.
    log: RefCell<Vec<Replay>>,
    /// Whether input is planned in provisional batches: not by a worker,
    /// whose items come with their rows and insert nothing.
    provisional: bool,
    /// The open provisional batch, what was learned for it, reserved ids.
    prov: RefCell<Provisional>,
}

impl PgStore {
    /// Connects, creates the schema if needed, and opens (creating) the job
    /// `loc.job`; `worker` names this process in the runs table.
    pub fn open(loc: &PgLocation, worker: Option<&str>) -> Result<PgStore, StoreError> {
        let conn = Conn::open(loc)?;
        migrate(&conn)?;
        let name = loc.job.clone();
        let job = conn.call(move |c| {
            c.query_one(
                "INSERT INTO jobs (name, created_at) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                &[&name, &now()],
            )
            .map(|r| r.get::<_, i64>(0))
        })?;
        let provisional = worker.is_none();
        let worker = worker.map(str::to_string);
        let run = conn.call(move |c| {
            c.query_one(
                "INSERT INTO runs (job, started_at, version, worker) VALUES ($1, $2, $3, $4)
                 RETURNING id",
                &[&job, &now(), &env!("CARGO_PKG_VERSION"), &worker],
            )
            .map(|r| r.get::<_, i64>(0))
        })?;
        Ok(PgStore {
            conn,
            job,
            run,
            in_tx: false,
            log: Default::default(),
            provisional,
            prov: Default::default(),
        })
    }

    /// Opens the job `loc.job` to read it; fails if there is none.
    pub fn open_existing(loc: &PgLocation) -> Result<PgStore, StoreError> {
        let (conn, job) = existing_job(loc)?;
        Ok(PgStore {
            conn,
            job,
            run: 0,
            in_tx: false,
            log: Default::default(),
            provisional: false,
            prov: Default::default(),
        })
    }

    fn kind(page: bool) -> &'static str {
        if page {
            "page"
        } else {
            "file"
        }
    }

    /// After an insert that did nothing: was it the URL or the path?
    fn collision(
        &self,
        url: &str,
        kind: &'static str,
        placed: i64,
    ) -> Result<Inserted, StoreError> {
        let known = self.retry(|| {
            let (job, url) = (self.job, url.to_string());
            self.conn.call(move |c| {
                c.query_opt(
                    "SELECT 1 FROM items WHERE job = $1 AND url = $2 AND kind = $3 AND placed = $4",
                    &[&job, &url, &kind, &placed],
                )
                .map(|r| r.is_some())
            })
        })?;
        Ok(if known {
            Inserted::UrlKnown
        } else {
            Inserted::PathTaken
        })
    }

    /// Runs `f`; when the connection was lost, waits for a new one, does
    /// the open batch's writes again on it and runs `f` again.
    fn retry<T>(&self, f: impl Fn() -> Result<T, StoreError>) -> Result<T, StoreError> {
        let mut tries = 0;
        loop {
            match f() {
                Err(StoreError::PostgresLost { .. }) if tries < 3 => {
                    tries += 1;
                    self.recover()?;
                }
                other => return other,
            }
        }
    }

    /// A new connection (the connection's thread waits for the server),
    /// with the open batch begun again and its writes done again.
    fn recover(&self) -> Result<(), StoreError> {
        // The log has them: sent now, outside the batch, they would be
        // written twice.
        self.conn.drop_deferred();
        self.conn.call(|c| c.batch_execute("SELECT 1"))?;
        if self.in_tx {
            self.conn.call(|c| c.batch_execute("BEGIN"))?;
            for write in self.log.borrow().iter() {
                write(&self.conn)?;
            }
        }
        Ok(())
    }

    /// Notes a write of the open batch, to do again after a lost
    /// connection.
    fn logged(&self, replay: Replay) {
        if self.in_tx {
            self.log.borrow_mut().push(replay);
        }
    }

    fn exec(&self, sql: &'static str, params: Params) -> Result<u64, StoreError> {
        if self.spoil() {
            return Ok(0);
        }
        let params = std::sync::Arc::new(params);
        let run = move |conn: &Conn| {
            let params = params.clone();
            conn.call(move |c| {
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
                c.execute(sql, &refs)
            })
        };
        let n = self.retry(|| run(&self.conn))?;
        self.logged(Box::new(move |conn| run(conn).map(drop)));
        Ok(n)
    }

    fn one_row(&self, sql: String, params: Params) -> Result<Option<Row>, StoreError> {
        let params = std::sync::Arc::new(params);
        self.retry(|| {
            let (sql, params) = (sql.clone(), params.clone());
            self.conn.call(move |c| {
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
                c.query_opt(sql.as_str(), &refs)
                    .map(|r| r.as_ref().map(row))
            })
        })
    }

    /// An insert that may collide (`ON CONFLICT DO NOTHING RETURNING id`):
    /// the new id, or `None`. Replayed, after a lost connection, with the
    /// id it got (`replay_sql` takes it as its last parameter).
    fn insert(
        &self,
        sql: &'static str,
        replay_sql: &'static str,
        params: Params,
    ) -> Result<Option<i64>, StoreError> {
        let params = std::sync::Arc::new(params);
        let id = self.retry(|| {
            let params = params.clone();
            self.conn.call(move |c| {
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
                c.query_opt(sql, &refs)
                    .map(|r| r.map(|r| r.get::<_, i64>(0)))
            })
        })?;
        if let Some(id) = id {
            self.logged(Box::new(move |conn| {
                let params = params.clone();
                conn.call(move |c| {
                    let mut refs: Vec<&(dyn ToSql + Sync)> =
                        params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
                    refs.push(&id);
                    c.execute(replay_sql, &refs).map(drop)
                })
            }));
        }
        Ok(id)
    }

    /// Whether a provisional batch is open.
    fn holding(&self) -> bool {
        self.prov.borrow().open
    }

    /// A write a provisional batch does not hold back: the batch is
    /// planned again, item by item. `true` when one was open.
    fn spoil(&self) -> bool {
        let mut p = self.prov.borrow_mut();
        p.spoiled |= p.open;
        if p.open {
            self.conn.end_copy(None);
        }
        p.open
    }

    /// The next id reserved from the items' sequence.
    fn next_id(&self, p: &mut Provisional) -> Result<i64, StoreError> {
        if p.ids.is_empty() {
            p.ids.extend(self.reserve()?);
        }
        p.ids.pop_front().ok_or_else(|| StoreError::Postgres {
            at: self.conn.at.clone(),
            message: "the items' sequence gave no ids".into(),
        })
    }

    /// A block of ids from the items' sequence, lowest first.
    ///
    /// It is committed with a transaction id of its own, which makes
    /// PostgreSQL flush it to disk: a sequence's advance is otherwise
    /// flushed only with a later commit, and a server that crashed before
    /// one handed the same ids out again after its restart (the restart
    /// test caught the store colliding with its own rows).
    fn reserve(&self) -> Result<Vec<i64>, StoreError> {
        let mut ids = self.retry(|| {
            self.conn.call(|c| {
                let mut tx = c.transaction()?;
                let ids = tx
                    .query(
                        // The sequence looked up once (MATERIALIZED), not
                        // per id, where it cost ten times the ids.
                        "WITH s AS MATERIALIZED (
                             SELECT pg_get_serial_sequence('items', 'id')::REGCLASS AS id
                         )
                         SELECT nextval(s.id) FROM s, generate_series(1, $1)",
                        &[&RESERVE_IDS],
                    )?
                    .iter()
                    .map(|r| r.get::<_, i64>(0))
                    .collect::<Vec<_>>();
                tx.execute("SELECT txid_current()", &[])?;
                tx.commit()?;
                Ok(ids)
            })
        })?;
        ids.sort_unstable();
        Ok(ids)
    }

    /// The row a new item of the open provisional batch will have.
    fn new_row(&self, n: &NewItem) -> Row {
        Row {
            id: n.id,
            state: State::Pending,
            path: n.path.clone(),
            bytes: 0,
            sha256: None,
            etag: None,
            last_modified: None,
            total: None,
            permanent: false,
            error: None,
            reason: None,
            http_status: None,
            attempts: 0,
            seen_run: self.run,
            is_page: n.page,
            page_id: n.page_id,
        }
    }

    /// Writes the provisional batch; `false` when it collided and nothing
    /// was written. A connection lost on the way leaves the batch written
    /// whole or not at all ([`PgStore::landed`] tells which), and a batch
    /// not written is written again, with the same ids.
    fn write_provisional(&self) -> Result<bool, StoreError> {
        let batch = {
            let p = self.prov.borrow();
            if p.new.is_empty() && p.seen.is_empty() {
                return Ok(true);
            }
            std::sync::Arc::new(BatchWrite::new(&p, self.job, self.run))
        };
        let mut tries = 0;
        loop {
            let b = batch.clone();
            match self.conn.call(move |c| b.write(c)) {
                Err(StoreError::PostgresLost { .. }) if tries < 3 => {
                    tries += 1;
                    if self.landed()? {
                        return Ok(true);
                    }
                }
                other => return other,
            }
        }
    }

    /// After the connection was lost under the provisional batch's commit:
    /// whether it was committed, as its first new item's row says (the
    /// ids are this store's alone). A batch with none only marked items
    /// seen, which doing again does no harm.
    fn landed(&self) -> Result<bool, StoreError> {
        let Some(id) = self.prov.borrow().new.first().map(|n| n.id) else {
            return Ok(false);
        };
        self.retry(|| {
            self.conn.call(move |c| {
                c.query_opt("SELECT 1 FROM items WHERE id = $1", &[&id])
                    .map(|r| r.is_some())
            })
        })
    }

    /// After a failed attempt: every row of the job under one of `urls`
    /// or at one of `paths`, for the next attempt to answer from.
    fn learn(&self, urls: Vec<String>, paths: Vec<String>) -> Result<(), StoreError> {
        let (urls, paths) = (std::sync::Arc::new(urls), std::sync::Arc::new(paths));
        let job = self.job;
        let rows = self.retry(|| {
            let (urls, paths) = (urls.clone(), paths.clone());
            self.conn.call(move |c| {
                c.query(learn_sql(), &[&job, &*urls, &*paths]).map(|rows| {
                    rows.iter()
                        .map(|r| (r.get::<_, String>(0), r.get::<_, bool>(1), row_at(r, 2)))
                        .collect::<Vec<_>>()
                })
            })
        })?;
        let mut p = self.prov.borrow_mut();
        for (url, unplaced, row) in rows {
            if let Some(path) = &row.path {
                p.taken.insert(path);
            }
            if unplaced {
                p.known.insert((url, row.is_page), row);
            }
        }
        Ok(())
    }
}

/// A connection to the job `loc.job`, which must exist, and its id.
fn existing_job(loc: &PgLocation) -> Result<(Conn, i64), StoreError> {
    let conn = Conn::open(loc)?;
    migrate(&conn)?;
    let name = loc.job.clone();
    let job = conn.call(move |c| {
        c.query_opt("SELECT id FROM jobs WHERE name = $1", &[&name])
            .map(|r| r.map(|r| r.get::<_, i64>(0)))
    })?;
    match job {
        Some(job) => Ok((conn, job)),
        None => Err(StoreError::NoJob(loc.display())),
    }
}

fn migrate(conn: &Conn) -> Result<(), StoreError> {
    let version = conn.call(|c| {
        let mut tx = c.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
        tx.batch_execute(SCHEMA)?;
        let version: Option<i32> = tx
            .query_opt("SELECT version FROM haul_schema", &[])?
            .map(|r| r.get(0));
        if version.is_none() {
            tx.execute(
                "INSERT INTO haul_schema (version) VALUES ($1)",
                &[&PG_SCHEMA_VERSION],
            )?;
        }
        tx.commit()?;
        Ok(version.unwrap_or(PG_SCHEMA_VERSION))
    })?;
    if version > PG_SCHEMA_VERSION {
        return Err(StoreError::Postgres {
            at: conn.at.clone(),
            message: format!(
                "written by a newer haul (schema {version}, this one reads up to \
                 {PG_SCHEMA_VERSION}); upgrade haul to work on this job"
            ),
        });
    }
    Ok(())
}

type Params = Vec<Box<dyn ToSql + Sync + Send>>;

macro_rules! params {
    ($($p:expr),* $(,)?) => {
        { let v: Params = vec![$(Box::new($p)),*]; v }
    };
}

impl super::JobStore for PgStore {
    fn run(&self) -> i64 {
        self.run
    }

    fn begin(&mut self) -> Result<(), StoreError> {
        if !self.in_tx && !self.prov.get_mut().open {
            self.log.get_mut().clear();
            self.retry(|| self.conn.call(|c| c.batch_execute("BEGIN")))?;
            self.in_tx = true;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        let p = self.prov.get_mut();
        if p.open {
            // Only a planning that failed leaves one open: what it planned
            // was never acted on, so nothing of it is written.
            p.undo();
            self.conn.end_copy(None);
        }
        if self.in_tx {
            self.retry(|| self.conn.call(|c| c.batch_execute("COMMIT")))?;
            self.in_tx = false;
            self.log.get_mut().clear();
        }
        Ok(())
    }

    fn begin_provisional(&mut self) -> Result<bool, StoreError> {
        let p = self.prov.get_mut();
        if p.open {
            return Ok(true);
        }
        if !self.provisional || self.in_tx || p.failed >= PROVISIONAL_ATTEMPTS {
            if p.failed >= PROVISIONAL_ATTEMPTS {
                // The reserve goes too: items planned after this batch
                // would have lower ids than its own.
                p.failed = 0;
                p.known.clear();
                p.ids.clear();
            }
            self.begin()?;
            return Ok(false);
        }
        if p.ids.len() < RESERVE_IDS as usize {
            // Before the batch's copy opens, which holds the connection.
            let ids = self.reserve()?;
            self.prov.get_mut().ids.extend(ids);
        }
        let p = self.prov.get_mut();
        p.open = true;
        p.spoiled = false;
        Ok(true)
    }

    fn commit_provisional(&mut self) -> Result<bool, StoreError> {
        if !self.prov.get_mut().open {
            self.commit()?;
            return Ok(true);
        }
        let spoiled = self.prov.get_mut().spoiled;
        let written = if spoiled {
            false
        } else {
            let mut seen: Vec<i64> = self.prov.get_mut().seen.iter().copied().collect();
            seen.sort_unstable();
            match self.conn.end_copy(Some(seen)) {
                Some(Ok(written)) => written,
                Some(Err(StoreError::PostgresLost { .. })) => {
                    self.landed()? || self.write_provisional()?
                }
                Some(Err(e)) => return Err(e),
                // None open: nothing new, or given up for another call.
                None => self.write_provisional()?,
            }
        };
        if written {
            let p = self.prov.get_mut();
            p.written();
            if p.wrote >= ANALYZE_AFTER.max(p.analyzed * 4) {
                p.analyzed = p.wrote;
                // Only the plans gain from it: an error is not the job's.
                let _ = self.conn.call(|c| c.batch_execute("ANALYZE items"));
            }
            return Ok(true);
        }
        let p = self.prov.get_mut();
        let (urls, paths) = p.undo();
        p.failed = if spoiled {
            PROVISIONAL_ATTEMPTS
        } else {
            p.failed + 1
        };
        if !spoiled {
            self.learn(urls, paths)?;
        }
        Ok(false)
    }

    fn lookup(&self, url: &str, page: bool) -> Result<Option<Row>, StoreError> {
        if self.holding() {
            let mut p = self.prov.borrow_mut();
            let key = (url.to_string(), page);
            if let Some(&i) = p.new_urls.get(&key) {
                return Ok(Some(self.new_row(&p.new[i])));
            }
            if let Some(row) = p.known.get(&key) {
                let mut row = row.clone();
                if p.seen.contains(&row.id) {
                    row.seen_run = self.run;
                }
                return Ok(Some(row));
            }
            p.asked_urls.insert(key.0);
            return Ok(None);
        }
        self.one_row(
            format!(
                "SELECT {ROW_COLUMNS} FROM items
                 WHERE job = $1 AND url = $2 AND kind = $3 AND placed = 0"
            ),
            params![self.job, url.to_string(), Self::kind(page)],
        )
    }

    fn lookup_placement(&self, url: &str, page: i64) -> Result<Option<Row>, StoreError> {
        self.one_row(
            format!(
                "SELECT {ROW_COLUMNS} FROM items
                 WHERE job = $1 AND url = $2 AND kind = 'file' AND placed = $3"
            ),
            params![self.job, url.to_string(), page],
        )
    }

    fn insert_placement(
        &self,
        url: &str,
        input: &str,
        line: u64,
        path: &str,
        page: i64,
    ) -> Result<Inserted, StoreError> {
        if self.spoil() {
            return Ok(Inserted::UrlKnown);
        }
        let p = params![
            self.job,
            url.to_string(),
            input.to_string(),
            line as i64,
            path.to_string(),
            self.run,
            page,
            now()
        ];
        let id = self.insert(
            "INSERT INTO items (job, url, input, line, path, state, seen_run, kind, page_id,
                                placed, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, 'file', $7, $7, $8, $8)
             ON CONFLICT DO NOTHING RETURNING id",
            "INSERT INTO items (job, url, input, line, path, state, seen_run, kind, page_id,
                                placed, created_at, updated_at, id)
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, 'file', $7, $7, $8, $8, $9)
             ON CONFLICT DO NOTHING",
            p,
        )?;
        match id {
            Some(id) => Ok(Inserted::Id(id)),
            None => self.collision(url, "file", page),
        }
    }

    fn file_of(&self, id: i64) -> Result<Option<Row>, StoreError> {
        self.one_row(
            format!("SELECT {ROW_COLUMNS} FROM items WHERE id = $1 AND job = $2"),
            params![id, self.job],
        )
    }

    fn path_taken(&self, path: &str) -> Result<bool, StoreError> {
        if self.holding() {
            let mut p = self.prov.borrow_mut();
            if p.new_paths.contains(path) || p.taken.contains(path) {
                return Ok(true);
            }
            p.asked_paths.insert(path.to_string());
            return Ok(false);
        }
        self.retry(|| {
            let (job, path) = (self.job, path.to_string());
            self.conn.call(move |c| {
                c.query_opt(
                    "SELECT 1 FROM items WHERE job = $1 AND path = $2",
                    &[&job, &path],
                )
                .map(|r| r.is_some())
            })
        })
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
        let kind = if page_depth.is_some() { "page" } else { "file" };
        if self.holding() {
            let mut p = self.prov.borrow_mut();
            let key = (url.to_string(), page_depth.is_some());
            if p.new_urls.contains_key(&key) || p.known.contains_key(&key) {
                return Ok(Inserted::UrlKnown);
            }
            if let Some(path) = path {
                if p.new_paths.contains(path) || p.taken.contains(path) {
                    p.asked_urls.insert(key.0);
                    return Ok(Inserted::PathTaken);
                }
            }
            let id = self.next_id(&mut p)?;
            let item = NewItem {
                id,
                url: url.to_string(),
                input: input.to_string(),
                line: line as i64,
                path: path.map(str::to_string),
                page: page_depth.is_some(),
                depth: page_depth.unwrap_or(0) as i32,
                page_id,
            };
            if p.new.is_empty() {
                self.conn.begin_copy(self.job, self.run)?;
            }
            self.conn.copy_item(&item);
            let at = p.new.len();
            p.new_urls.insert(key, at);
            p.new_paths.extend(path.map(str::to_string));
            p.new.push(item);
            return Ok(Inserted::Id(id));
        }
        let p = params![
            self.job,
            url.to_string(),
            input.to_string(),
            line as i64,
            path.map(str::to_string),
            self.run,
            kind,
            page_depth.unwrap_or(0) as i32,
            page_id,
            now()
        ];
        let id = self.insert(
            "INSERT INTO items (job, url, input, line, path, state, seen_run, kind, depth,
                                page_id, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10, $10)
             ON CONFLICT DO NOTHING RETURNING id",
            "INSERT INTO items (job, url, input, line, path, state, seen_run, kind, depth,
                                page_id, created_at, updated_at, id)
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8, $9, $10, $10, $11)
             ON CONFLICT DO NOTHING",
            p,
        )?;
        let inserted = match id {
            Some(id) => Inserted::Id(id),
            None => self.collision(url, kind, 0)?,
        };
        if let (true, Some(path), Inserted::Id(_) | Inserted::PathTaken) =
            (self.provisional, path, inserted)
        {
            // Between provisional batches, one planned item by item.
            self.prov.borrow_mut().taken.insert(path);
        }
        Ok(inserted)
    }

    fn mark_seen(&self, id: i64) -> Result<(), StoreError> {
        if self.holding() {
            self.prov.borrow_mut().seen.insert(id);
            return Ok(());
        }
        self.exec(
            "UPDATE items SET seen_run = $1 WHERE id = $2",
            params![self.run, id],
        )
        .map(drop)
    }

    fn set_path(&self, id: i64, path: &str) -> Result<(), StoreError> {
        self.exec(
            "UPDATE items SET path = $1 WHERE id = $2",
            params![path.to_string(), id],
        )
        .map(drop)
    }

    fn set_page(
        &self,
        id: i64,
        title: Option<&str>,
        folder: Option<&str>,
        links: u64,
    ) -> Result<(), StoreError> {
        self.exec(
            "UPDATE items SET title = $1, path = COALESCE($2, path), links = $3 WHERE id = $4",
            params![
                title.map(str::to_string),
                folder.map(str::to_string),
                links as i64,
                id
            ],
        )
        .map(drop)
    }

    fn started(
        &self,
        id: i64,
        etag: Option<&str>,
        last_modified: Option<&str>,
        total: Option<u64>,
    ) -> Result<(), StoreError> {
        self.exec(
            "UPDATE items SET etag = $1, last_modified = $2, total = $3, state = 'pending',
                    updated_at = $4
             WHERE id = $5",
            params![
                etag.map(str::to_string),
                last_modified.map(str::to_string),
                total.map(|t| t as i64),
                now(),
                id
            ],
        )
        .map(drop)
    }

    fn finish(&self, id: i64, state: State, f: &Finish) -> Result<(), StoreError> {
        if self.spoil() {
            return Ok(());
        }
        let mut o = Outcome {
            id,
            state: state.as_str(),
            http_status: f.http_status.map(i32::from),
            bytes: f.bytes as i64,
            sha256: f.sha256.clone(),
            attempts: f.attempts as i32,
            error: f.error.clone(),
            reason: f.reason.clone(),
            permanent: f.permanent,
            throttled: f.throttled as i32,
        };
        let one = move |conn: &Conn, o: Outcome| {
            conn.call(move |c| Outcome::write(c, std::slice::from_ref(&o)).map(drop))
        };
        if !self.in_tx {
            return self.retry(|| one(&self.conn, o.clone()));
        }
        let again = o.clone();
        loop {
            match self.conn.defer(o) {
                None => break,
                Some(back) => {
                    o = back;
                    self.retry(|| self.conn.send_deferred())?;
                }
            }
        }
        // Written again, by itself, if the connection is lost before the
        // batch's commit (logged once held back: a connection lost while
        // making room has the log written again without it).
        self.logged(Box::new(move |conn| one(conn, again.clone())));
        Ok(())
    }

    fn mark_synced(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.exec(
            "UPDATE items SET state = 'ok' WHERE id = ANY($1) AND state = 'saved'",
            params![ids.to_vec()],
        )
        .map(drop)
    }

    fn each_failed(
        &self,
        f: &mut dyn FnMut(String, String, u64) -> bool,
    ) -> Result<(), StoreError> {
        self.conn.stream(
            "SELECT url, input, line FROM items WHERE job = $1 AND state = 'failed' ORDER BY id",
            params![self.job],
            |r| {
                (
                    r.get::<_, String>(0),
                    r.get::<_, Option<String>>(1).unwrap_or_default(),
                    r.get::<_, Option<i64>>(2).unwrap_or(0) as u64,
                )
            },
            &mut |(url, input, line)| f(url, input, line),
        )
    }

    fn each_unfinished(
        &self,
        retry_failed: bool,
        f: &mut dyn FnMut(Unfinished),
    ) -> Result<(), StoreError> {
        self.conn.stream(
            "SELECT i.url, i.input, i.line, i.kind, i.depth, p.id, p.url, p.title, p.path,
                    i.page_id
             FROM items i LEFT JOIN items p ON p.id = i.page_id
             WHERE i.job = $1 AND (i.state IN ('pending', 'saved')
                OR (i.state = 'failed' AND (NOT i.permanent OR $2)))
             ORDER BY i.id",
            params![self.job, retry_failed],
            unfinished,
            &mut |u| {
                f(u);
                true
            },
        )
    }

    fn runs(&self) -> Result<u64, StoreError> {
        let job = self.job;
        self.conn
            .call(move |c| {
                c.query_one("SELECT COUNT(*) FROM runs WHERE job = $1", &[&job])
                    .map(|r| r.get::<_, i64>(0))
            })
            .map(|n| n as u64)
    }

    fn each_item(&self, f: &mut dyn FnMut(ItemRecord)) -> Result<(), StoreError> {
        self.conn
            .stream(items_sql(), params![self.job], record, &mut |r| {
                f(r);
                true
            })
    }

    fn unseen(
        &self,
        after: i64,
        limit: u32,
        f: &mut dyn FnMut(ItemRecord),
    ) -> Result<(), StoreError> {
        self.conn.stream(
            unseen_sql(),
            params![self.job, self.run, after, i64::from(limit)],
            record,
            &mut |r| {
                f(r);
                true
            },
        )
    }

    fn per_worker(&self) -> Result<Vec<WorkerFigures>, StoreError> {
        let job = self.job;
        // An item's last run is the one that planned it last: for a
        // worker's item, that worker's run.
        self.conn.call(move |c| {
            let rows = c.query(
                "SELECT r.worker,
                        COUNT(*) FILTER (WHERE i.state IN ('ok', 'saved')),
                        COUNT(*) FILTER (WHERE i.state = 'failed'),
                        COALESCE(SUM(i.bytes) FILTER (WHERE i.state IN ('ok', 'saved')), 0)::BIGINT
                 FROM items i JOIN runs r ON r.id = i.seen_run
                 WHERE i.job = $1 AND r.worker IS NOT NULL
                 GROUP BY r.worker ORDER BY r.worker",
                &[&job],
            )?;
            Ok(rows
                .iter()
                .map(|r| WorkerFigures {
                    worker: r.get(0),
                    ok: r.get::<_, i64>(1) as u64,
                    failed: r.get::<_, i64>(2) as u64,
                    bytes: r.get::<_, i64>(3) as u64,
                })
                .collect())
        })
    }

    fn folder_of(&self, page: i64) -> Result<Option<String>, StoreError> {
        self.retry(|| {
            let job = self.job;
            self.conn.call(move |c| {
                c.query_opt(
                    "SELECT path FROM items WHERE id = $1 AND job = $2 AND kind = 'page'",
                    &[&page, &job],
                )
                .map(|r| r.and_then(|r| r.get::<_, Option<String>>(0)))
            })
        })
    }

    fn each_child_page(&self, page: i64, f: &mut dyn FnMut(Unfinished)) -> Result<(), StoreError> {
        self.conn.stream(
            "SELECT url, input, line, depth FROM items
             WHERE job = $1 AND page_id = $2 AND kind = 'page' ORDER BY id",
            params![self.job, page],
            |r| Unfinished {
                url: r.get(0),
                input: r.get::<_, Option<String>>(1).unwrap_or_default(),
                line: r.get::<_, Option<i64>>(2).unwrap_or(0) as u64,
                page_depth: Some(r.get::<_, i32>(3) as u32),
                page: None,
                parent: None,
            },
            &mut |mut u: Unfinished| {
                u.parent = Some(page);
                f(u);
                true
            },
        )
    }
}

fn unfinished(r: &postgres::Row) -> Unfinished {
    let kind: &str = r.get(3);
    let page = r
        .get::<_, Option<i64>>(5)
        .filter(|_| kind == "file")
        .map(|id| {
            (
                id,
                r.get::<_, String>(6),
                r.get::<_, Option<String>>(7),
                r.get::<_, Option<String>>(8).unwrap_or_default(),
            )
        });
    Unfinished {
        url: r.get(0),
        input: r.get::<_, Option<String>>(1).unwrap_or_default(),
        line: r.get::<_, Option<i64>>(2).unwrap_or(0) as u64,
        page_depth: (kind == "page").then(|| r.get::<_, i32>(4) as u32),
        page,
        parent: if kind == "page" { r.get(9) } else { None },
    }
}

// `Conn::stream` takes a `&'static str`: the column lists are spelled out
// once above and joined here, once per process.
fn items_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| format!("SELECT {RECORD_COLUMNS} FROM items WHERE job = $1 ORDER BY id"))
}

fn learn_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        // Two index scans: as one with OR, PostgreSQL read the whole table.
        format!(
            "SELECT url, placed = 0, {ROW_COLUMNS} FROM items
             WHERE job = $1 AND url = ANY($2) AND placed = 0
             UNION ALL
             SELECT url, placed = 0, {ROW_COLUMNS} FROM items
             WHERE job = $1 AND path = ANY($3)"
        )
    })
}

fn unseen_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "SELECT {RECORD_COLUMNS} FROM items
             WHERE job = $1 AND seen_run != $2 AND id > $3 ORDER BY id LIMIT $4"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::PgLocation;

    #[test]
    fn a_location_is_shown_without_its_passwords() {
        let at = |url: &str| {
            PgLocation {
                url: url.to_string(),
                job: "j".to_string(),
            }
            .display()
        };
        assert_eq!(
            at("postgres://haul:secret@db:5432/jobs?sslmode=require"),
            "postgres://haul@db:5432/jobs?sslmode=require (job j)"
        );
        assert_eq!(
            at("postgres://haul@db/jobs?password=secret&sslmode=require"),
            "postgres://haul@db/jobs?sslmode=require (job j)"
        );
        assert_eq!(
            at("postgres://haul@db/jobs?password=secret"),
            "postgres://haul@db/jobs (job j)"
        );
        let both = at("postgres://u:pw1@db/x?password=pw2&application_name=haul");
        assert!(!both.contains("pw"), "{both}");
    }
}
