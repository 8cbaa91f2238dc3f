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
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postgres::types::ToSql;
use postgres::Client;

use super::{Finish, Inserted, ItemRecord, Row, State, StoreError, Unfinished, WorkerFigures};

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
    /// The URL without a password, for messages.
    pub fn display(&self) -> String {
        match url::Url::parse(&self.url) {
            Ok(mut u) => {
                let _ = u.set_password(None);
                format!("{u} (job {})", self.job)
            }
            Err(_) => format!("PostgreSQL (job {})", self.job),
        }
    }
}

type Call = Box<dyn FnOnce(&mut Client) + Send>;

/// How long a lost connection is tried again before the job gives up.
const RECONNECT_FOR: Duration = Duration::from_secs(120);
/// Between two tries.
const RECONNECT_EVERY: Duration = Duration::from_millis(500);

/// A new session.
///
/// Commits wait for the server's disk (PostgreSQL's default): with
/// `synchronous_commit = off` a worker ran faster, but a crash of
/// PostgreSQL lost outcomes the worker had been told were committed, so it
/// exited 0 with items still pending (the restart test caught it).
fn connect(url: &str) -> Result<Client, postgres::Error> {
    super::pgtls::connect(url)
}

/// Whether `e` says the connection is gone (rather than a statement
/// failing): the server shut down or restarted, or the network broke.
fn is_lost(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    e.is_closed()
        || e.as_db_error().is_some_and(|db| {
            [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .contains(db.code())
        })
        || (e.as_db_error().is_none()
            && std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()))
}

thread_local! {
    /// The connection thread's session: a new number each time it
    /// connects, so that a statement prepared on an earlier session (gone
    /// with the server's restart) is known stale.
    static SESSION: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A statement prepared once per session, on a connection's thread.
#[derive(Default)]
struct Prepared(std::sync::Mutex<Option<(u64, postgres::Statement)>>);

impl Prepared {
    /// The statement `sql`, prepared on this session if it was not yet.
    /// Called on the connection's thread only.
    fn get(&self, c: &mut Client, sql: &str) -> Result<postgres::Statement, postgres::Error> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let session = SESSION.get();
        if let Some((s, st)) = &*slot {
            if *s == session {
                return Ok(st.clone());
            }
        }
        let st = c.prepare(sql)?;
        *slot = Some((session, st.clone()));
        Ok(st)
    }
}

/// A PostgreSQL connection on a thread of its own.
struct Conn {
    tx: Option<mpsc::Sender<Call>>,
    thread: Option<std::thread::JoinHandle<()>>,
    at: String,
    /// A provisional batch's `COPY`, open on the connection's thread.
    copy: std::sync::Mutex<Option<Copy>>,
    /// Outcomes not yet sent: written by one statement before the next
    /// call ([`Conn::flush`]).
    deferred: std::sync::Mutex<Deferred>,
}

/// Outcomes of the open batch not yet sent ([`PgStore`]'s `finish`).
///
/// An `UPDATE` per outcome, each its own round trip (two: the crate
/// prepares a statement given as text first), made a worker's connection
/// thread half of its CPU, spent in the kernel's loopback path: one worker
/// at `-j 64` used 16 s of CPU for 20,000 files (bench/shared.py). They go
/// instead as one statement, before whatever call comes next (a commit,
/// a read, another write), so every statement still sees them.
#[derive(Default)]
struct Deferred {
    rows: Vec<Outcome>,
    ids: HashSet<i64>,
}

/// One item's outcome, as [`PgStore`]'s `finish` writes it.
#[derive(Clone)]
struct Outcome {
    id: i64,
    state: &'static str,
    http_status: Option<i32>,
    bytes: i64,
    sha256: Option<String>,
    attempts: i32,
    error: Option<String>,
    reason: Option<String>,
    permanent: bool,
    throttled: i32,
}

/// Outcomes held back at most: a batch's worth, whatever its size.
const DEFERRED_MOST: usize = 1024;

impl Outcome {
    /// Writes `rows` (distinct items) in one statement.
    fn write(c: &mut Client, rows: &[Outcome]) -> Result<u64, postgres::Error> {
        let ids: Vec<i64> = rows.iter().map(|o| o.id).collect();
        let states: Vec<&str> = rows.iter().map(|o| o.state).collect();
        let statuses: Vec<Option<i32>> = rows.iter().map(|o| o.http_status).collect();
        let bytes: Vec<i64> = rows.iter().map(|o| o.bytes).collect();
        let sha256: Vec<Option<&str>> = rows.iter().map(|o| o.sha256.as_deref()).collect();
        let attempts: Vec<i32> = rows.iter().map(|o| o.attempts).collect();
        let errors: Vec<Option<&str>> = rows.iter().map(|o| o.error.as_deref()).collect();
        let reasons: Vec<Option<&str>> = rows.iter().map(|o| o.reason.as_deref()).collect();
        let permanent: Vec<bool> = rows.iter().map(|o| o.permanent).collect();
        let throttled: Vec<i32> = rows.iter().map(|o| o.throttled).collect();
        c.execute(
            "UPDATE items SET state = u.state, http_status = u.http_status, bytes = u.bytes,
                    sha256 = u.sha256, attempts = items.attempts + u.attempts,
                    error = u.error, reason = u.reason, permanent = u.permanent,
                    updated_at = $1, throttled = items.throttled + u.throttled,
                    lease_owner = NULL, lease_until = NULL
             FROM unnest($2::BIGINT[], $3::TEXT[], $4::INTEGER[], $5::BIGINT[], $6::TEXT[],
                         $7::INTEGER[], $8::TEXT[], $9::TEXT[], $10::BOOLEAN[],
                         $11::INTEGER[])
                  AS u(id, state, http_status, bytes, sha256, attempts, error, reason,
                       permanent, throttled)
             WHERE items.id = u.id",
            &[
                &now(),
                &ids,
                &states,
                &statuses,
                &bytes,
                &sha256,
                &attempts,
                &errors,
                &reasons,
                &permanent,
                &throttled,
            ],
        )
    }
}

/// A `COPY` of new items that the connection's thread writes as they are
/// planned: PostgreSQL inserts one batch's items while the planner names
/// them, rather than after (a million items: 20.3 and 21.1 s, against 29.6
/// and 30.9 s written at each batch's commit, on 2 cores). It holds the
/// connection: any other call gives it up first, and the batch is then
/// written at its commit.
struct Copy {
    rows: mpsc::Sender<CopyRow>,
    done: mpsc::Receiver<Result<bool, postgres::Error>>,
    /// Items not yet handed over: they go [`COPY_CHUNK`] at a time.
    chunk: Vec<NewItem>,
}

/// Items handed to the connection's thread at a time: one at a time, the
/// wake-ups cost more than the overlap saved.
const COPY_CHUNK: usize = 256;

enum CopyRow {
    Items(Vec<NewItem>),
    /// The last: mark these items seen and commit.
    Commit(Vec<i64>),
}

impl Conn {
    fn open(loc: &PgLocation) -> Result<Conn, StoreError> {
        let (tx, rx) = mpsc::channel::<Call>();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let url = loc.url.clone();
        let at = loc.display();
        let thread = std::thread::Builder::new()
            .name("haul-pg".into())
            .spawn(move || {
                let mut client = match connect(&url) {
                    Ok(c) => {
                        SESSION.set(SESSION.get() + 1);
                        let _ = ready_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(call) = rx.recv() {
                    if client.is_closed() {
                        // The server restarted, or the network broke: wait
                        // for it to come back, then carry on.
                        let since = std::time::Instant::now();
                        while since.elapsed() < RECONNECT_FOR {
                            match connect(&url) {
                                Ok(c) => {
                                    client = c;
                                    SESSION.set(SESSION.get() + 1);
                                    break;
                                }
                                Err(_) => std::thread::sleep(RECONNECT_EVERY),
                            }
                        }
                    }
                    call(&mut client);
                }
            })
            .map_err(|e| StoreError::Postgres {
                at: at.clone(),
                message: format!("cannot start its thread: {e}"),
            })?;
        let pg_error = |message: String| StoreError::Postgres {
            at: at.clone(),
            message,
        };
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(pg_error(describe(&e))),
            Err(_) => return Err(pg_error("the connection thread stopped".into())),
        }
        Ok(Conn {
            tx: Some(tx),
            thread: Some(thread),
            at,
            copy: Default::default(),
            deferred: Default::default(),
        })
    }

    fn error(&self, e: &postgres::Error) -> StoreError {
        if is_lost(e) {
            return StoreError::PostgresLost {
                at: self.at.clone(),
                message: describe(e),
            };
        }
        StoreError::Postgres {
            at: self.at.clone(),
            message: describe(e),
        }
    }

    /// Runs `f` on the connection and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.end_copy(None);
        self.send_deferred()?;
        self.raw_call(f)
    }

    /// Holds back an outcome for the next call (see [`Deferred`]); gives
    /// it back when what is held back must be written first: the item
    /// already has an outcome there, or enough are.
    fn defer(&self, o: Outcome) -> Option<Outcome> {
        let mut d = self.deferred.lock().unwrap_or_else(|e| e.into_inner());
        if d.rows.len() >= DEFERRED_MOST || d.ids.contains(&o.id) {
            return Some(o);
        }
        d.ids.insert(o.id);
        d.rows.push(o);
        None
    }

    /// Forgets the outcomes held back (a lost connection: the batch's log
    /// writes them again).
    fn drop_deferred(&self) {
        *self.deferred.lock().unwrap_or_else(|e| e.into_inner()) = Deferred::default();
    }

    /// Writes the outcomes held back, if any.
    fn send_deferred(&self) -> Result<(), StoreError> {
        let rows = std::mem::take(&mut *self.deferred.lock().unwrap_or_else(|e| e.into_inner()));
        if rows.rows.is_empty() {
            return Ok(());
        }
        self.raw_call(move |c| Outcome::write(c, &rows.rows).map(drop))
    }

    /// [`Conn::call`] without writing what is held back first.
    fn raw_call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (rtx, rrx) = mpsc::sync_channel(1);
        let gone = || StoreError::Postgres {
            at: self.at.clone(),
            message: "the connection is closed".into(),
        };
        self.tx
            .as_ref()
            .ok_or_else(gone)?
            .send(Box::new(move |c| {
                let _ = rtx.send(f(c));
            }))
            .map_err(|_| gone())?;
        rrx.recv().map_err(|_| gone())?.map_err(|e| self.error(&e))
    }

    /// Runs the query `sql` and hands each row, converted by `convert` on
    /// the connection's thread, to `f` here; at most a few hundred rows
    /// are in flight.
    fn stream<T: Send + 'static>(
        &self,
        sql: &'static str,
        params: Vec<Box<dyn ToSql + Sync + Send>>,
        convert: fn(&postgres::Row) -> T,
        f: &mut dyn FnMut(T) -> bool,
    ) -> Result<(), StoreError> {
        self.end_copy(None);
        self.send_deferred()?;
        let (rtx, rrx) = mpsc::sync_channel::<Result<T, postgres::Error>>(256);
        let gone = || StoreError::Postgres {
            at: self.at.clone(),
            message: "the connection is closed".into(),
        };
        self.tx
            .as_ref()
            .ok_or_else(gone)?
            .send(Box::new(move |c| {
                use postgres::fallible_iterator::FallibleIterator;
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| &**p as &(dyn ToSql + Sync)).collect();
                let mut rows = match c.query_raw(sql, refs) {
                    Ok(rows) => rows,
                    Err(e) => {
                        let _ = rtx.send(Err(e));
                        return;
                    }
                };
                loop {
                    match rows.next() {
                        Ok(Some(row)) => {
                            if rtx.send(Ok(convert(&row))).is_err() {
                                return;
                            }
                        }
                        Ok(None) => return,
                        Err(e) => {
                            let _ = rtx.send(Err(e));
                            return;
                        }
                    }
                }
            }))
            .map_err(|_| gone())?;
        for value in rrx {
            match value {
                // Stopping early drops the receiver: the sender stops too.
                Ok(v) => {
                    if !f(v) {
                        break;
                    }
                }
                Err(e) => return Err(self.error(&e)),
            }
        }
        Ok(())
    }
}

impl Conn {
    fn copy_slot(&self) -> std::sync::MutexGuard<'_, Option<Copy>> {
        // A panic while it was held left nothing half-done in it.
        self.copy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a `COPY` of job `job`'s new items for run `run`, in a
    /// transaction holding the job's write lock; [`Conn::copy_item`] feeds
    /// it, [`Conn::end_copy`] commits or drops it.
    fn begin_copy(&self, job: i64, run: i64) -> Result<(), StoreError> {
        self.end_copy(None);
        let (rows, rx) = mpsc::channel::<CopyRow>();
        let (dtx, done) = mpsc::sync_channel(1);
        let copy = move |c: &mut Client| -> Result<bool, postgres::Error> {
            let mut tx = c.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&(WRITE_LOCK ^ job)])?;
            let mut w = copy_writer(&mut tx)?;
            let now = now();
            loop {
                match rx.recv() {
                    Ok(CopyRow::Items(items)) => {
                        for n in &items {
                            copy_item(&mut w, n, job, run, now)?;
                        }
                    }
                    Ok(CopyRow::Commit(seen)) => {
                        w.finish()?;
                        mark_seen(&mut tx, run, &seen)?;
                        tx.commit()?;
                        return Ok(true);
                    }
                    // Given up: the copy is aborted, the transaction rolled
                    // back, as they are dropped.
                    Err(_) => return Ok(false),
                }
            }
        };
        self.tx
            .as_ref()
            .ok_or_else(|| StoreError::Postgres {
                at: self.at.clone(),
                message: "the connection is closed".into(),
            })?
            .send(Box::new(move |c| {
                let _ = dtx.send(match copy(c) {
                    Err(e) if collided(&e) => Ok(false),
                    other => other,
                });
            }))
            .map_err(|_| StoreError::Postgres {
                at: self.at.clone(),
                message: "the connection is closed".into(),
            })?;
        *self.copy_slot() = Some(Copy {
            rows,
            done,
            chunk: Vec::with_capacity(COPY_CHUNK),
        });
        Ok(())
    }

    /// Hands a new item to the open `COPY`, if any. After a collision the
    /// copy has stopped reading: the commit tells.
    fn copy_item(&self, n: &NewItem) {
        if let Some(copy) = &mut *self.copy_slot() {
            copy.chunk.push(n.clone());
            if copy.chunk.len() >= COPY_CHUNK {
                let chunk = std::mem::replace(&mut copy.chunk, Vec::with_capacity(COPY_CHUNK));
                let _ = copy.rows.send(CopyRow::Items(chunk));
            }
        }
    }

    /// Ends the open `COPY`: commits it, marking `seen` items seen, or
    /// with `None` drops it. `None` when none was open; else whether it
    /// was written (`false`: it collided, or was dropped).
    fn end_copy(&self, seen: Option<Vec<i64>>) -> Option<Result<bool, StoreError>> {
        let copy = self.copy_slot().take()?;
        if let Some(seen) = seen {
            let _ = copy.rows.send(CopyRow::Items(copy.chunk));
            let _ = copy.rows.send(CopyRow::Commit(seen));
        }
        drop(copy.rows);
        Some(match copy.done.recv() {
            Ok(r) => r.map_err(|e| self.error(&e)),
            Err(_) => Err(StoreError::Postgres {
                at: self.at.clone(),
                message: "the connection is closed".into(),
            }),
        })
    }
}

/// The `COPY` of new items into `tx`.
fn copy_writer<'a>(
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

fn copy_item(
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

fn mark_seen(
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

impl Drop for Conn {
    fn drop(&mut self) {
        self.copy_slot().take();
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A PostgreSQL error as a person can read it: the server's message with
/// its detail, or the client's.
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_string(),
        },
        None => {
            if let Some(unusable) = super::pgtls::unusable(e) {
                return unusable;
            }
            let text = e.to_string();
            match std::error::Error::source(e) {
                Some(s) if !text.contains(&s.to_string()) => format!("{text}: {s}"),
                _ => text,
            }
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

/// Failed attempts at a provisional batch before it is planned in an
/// ordinary one. Each attempt learns what its batch collided with, so a
/// list whose names another took up to `-6` needs seven; item by item,
/// each name tried costs a round trip instead.
const PROVISIONAL_ATTEMPTS: u32 = 8;

/// Serializes the writing of provisional batches into one job (this,
/// with the job's id in its low bits): two batches that both wanted a path
/// would otherwise each wait for the other's transaction, until PostgreSQL
/// ended one of them after a second (`deadlock_timeout`).
const WRITE_LOCK: i64 = 0x6861_756c_5f77_7200; // "haul_wr\0"

/// Items a run writes before it has the items' table analyzed, and again
/// each time it has written four times as many. Until a table has been
/// analyzed once, PostgreSQL plans a look-up of 4,096 URLs (the learning
/// after a collision, in a list submitted again) as a scan of the job: 290
/// ms instead of 40 in a job of a million, while autovacuum had not come by
/// (nor does it for a table that grows quickly enough). Workers' claims and
/// `haul status` gain too.
const ANALYZE_AFTER: u64 = 1 << 16;

/// Ids reserved from the items' sequence at a time: about a batch's worth,
/// so that reserving costs a round trip per batch.
const RESERVE_IDS: i32 = 4096;

/// An item a provisional batch inserts when it commits.
#[derive(Clone)]
struct NewItem {
    id: i64,
    url: String,
    input: String,
    line: i64,
    path: Option<String>,
    page: bool,
    depth: i32,
    page_id: Option<i64>,
}

/// A provisional batch (see the module documentation): its writes, held
/// until its commit, and what answers its questions meanwhile.
#[derive(Default)]
struct Provisional {
    open: bool,
    /// The batch asked for a write it does not hold back (a name set, a
    /// file marked done, a placement): it is planned again, item by item.
    spoiled: bool,
    /// New items, in planning order.
    new: Vec<NewItem>,
    /// Of those, by URL and kind (`true`: a page), and the paths they take.
    new_urls: HashMap<(String, bool), usize>,
    new_paths: HashSet<String>,
    /// Known items this run's input holds too.
    seen: HashSet<i64>,
    /// What a failed attempt learned of the job's items, by URL and kind
    /// (placed nowhere else).
    known: HashMap<(String, bool), Row>,
    /// Paths taken, as far as this run knows: written or learned.
    taken: Taken,
    /// URLs and paths answered free without a new item taking them: with
    /// the new items', what a failed attempt looks up.
    asked_urls: HashSet<String>,
    asked_paths: HashSet<String>,
    /// Ids reserved from the items' sequence, lowest first. A failed
    /// attempt gives its ids back, so items keep their planning order.
    ids: VecDeque<i64>,
    /// Failed attempts in a row.
    failed: u32,
    /// Items this run wrote, and how many it had when it last had the
    /// table analyzed.
    wrote: u64,
    analyzed: u64,
}

/// Paths known taken in a job, for the rest of a run: not forgotten after
/// each batch, since a name that many URLs of a list want (`image.jpg`)
/// would make every batch after the first collide with the ones before,
/// and learn their names again, one `-N` per attempt. Kept as 128-bit
/// hashes (two SipHash keys): a million cost ~35 MB, against ~70 MB as
/// strings, and two paths that share a hash are as good as impossible.
#[derive(Default)]
struct Taken {
    keys: HashSet<u128>,
    hash: (std::hash::RandomState, std::hash::RandomState),
}

impl Taken {
    fn key(&self, path: &str) -> u128 {
        use std::hash::BuildHasher;
        (u128::from(self.hash.0.hash_one(path)) << 64) | u128::from(self.hash.1.hash_one(path))
    }

    fn contains(&self, path: &str) -> bool {
        self.keys.contains(&self.key(path))
    }

    fn insert(&mut self, path: &str) {
        let key = self.key(path);
        self.keys.insert(key);
    }
}

impl Provisional {
    /// Ends the attempt, written: its paths are remembered, the rows it
    /// learned forgotten.
    fn written(&mut self) {
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
    fn undo(&mut self) -> (Vec<String>, Vec<String>) {
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
struct BatchWrite {
    job: i64,
    run: i64,
    new: Vec<NewItem>,
    seen: Vec<i64>,
}

/// Whether `e` says that a batch collided with rows of another writer's,
/// committed or not (where each waited for the other, PostgreSQL ends one
/// of them): the batch is rolled back, to be planned again.
fn collided(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    e.code()
        .is_some_and(|c| [SqlState::UNIQUE_VIOLATION, SqlState::T_R_DEADLOCK_DETECTED].contains(c))
}

impl BatchWrite {
    fn new(p: &Provisional, job: i64, run: i64) -> BatchWrite {
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
    fn write(&self, c: &mut Client) -> Result<bool, postgres::Error> {
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

/// A claim of up to `$4` pending items of job `$1` for worker `$2`,
/// leased for `$3` seconds: past the job's frontier, which it moves on
/// (`front`), or from the first item.
fn claim_sql(front: bool) -> &'static str {
    static SQL: [std::sync::OnceLock<String>; 2] =
        [std::sync::OnceLock::new(), std::sync::OnceLock::new()];
    SQL[usize::from(front)].get_or_init(|| {
        let (with, past, then) = if front {
            (
                // The job's frontier is the furthest any worker's claims
                // have reached; each worker moves its own row on, so claims
                // do not wait on each other (one row for the job, updated
                // by every claim, held each claim behind the others'
                // commits: 492 µs of the server's time per item claimed,
                // against 223 before). Claims that read one frontier at
                // once pass over each other's rows (SKIP LOCKED): a
                // claim's worth.
                //
                // A claim's commit does not wait for the disk
                // (`synchronous_commit` off, for its transaction): a claim
                // that a crash of PostgreSQL loses is a lease lost, which
                // leases allow for (the item is claimed again). Outcomes
                // are written as before, waiting for the disk.
                "f AS (
                     SELECT (SELECT max(past) FROM frontier WHERE job = $1) AS past,
                            set_config('synchronous_commit', 'off', true)
                 ),",
                "(SELECT past FROM f)",
                ", moved AS (
                     UPDATE frontier SET past = GREATEST(frontier.past, m.past)
                     FROM (SELECT max(id) AS past FROM claimed) m
                     WHERE frontier.job = $1 AND frontier.owner = $2
                       AND m.past IS NOT NULL
                 )",
            )
        } else {
            ("", "0", "")
        };
        format!(
            "WITH {with}
             picked AS (
                 SELECT id FROM items
                 WHERE job = $1 AND state = 'pending' AND id > {past}
                   AND (lease_until IS NULL OR lease_until < now())
                 ORDER BY id LIMIT $4
                 FOR UPDATE OF items SKIP LOCKED
             ),
             claimed AS (
                 UPDATE items i SET lease_owner = $2,
                        lease_until = now() + make_interval(secs => $3),
                        seen_run = COALESCE(
                            (SELECT max(id) FROM runs WHERE job = $1 AND worker = $2),
                            i.seen_run)
                 FROM picked WHERE i.id = picked.id
                 RETURNING i.url, i.input, i.line, i.kind, i.depth, NULL::BIGINT AS a,
                           NULL::TEXT AS b, NULL::TEXT AS c, NULL::TEXT AS d, i.page_id,
                           i.id, i.state, i.path, i.bytes, i.sha256, i.etag,
                           i.last_modified, i.permanent, i.error, i.reason,
                           i.http_status, i.attempts, i.seen_run, i.kind = 'page' AS page,
                           i.total, i.page_id AS parent
             ){then}
             SELECT * FROM claimed"
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

/// A worker's claims on a job's pending items: batches taken with `FOR
/// UPDATE SKIP LOCKED`, each under a lease that a thread of its own keeps
/// renewing while the worker lives, and gives back when it stops.
///
/// Claims start from the job's frontier (the `frontier` table: the highest
/// id each worker has claimed), which each claim moves on. A claim from just
/// past this worker's own last id, as before, read past every item the
/// other workers held since, and the row versions their claims left: about
/// 170 rows per item claimed with 4 workers at `-j 64`, 142 µs of the
/// server's time per item (bench/README.md). Items behind the frontier (a
/// dead worker's, once its leases run out; given back; failures queued
/// again) are claimed once nothing is left past it.
pub struct Claims {
    conn: Conn,
    job: i64,
    owner: String,
    lease: Duration,
    /// The two claim statements, prepared once per session rather than
    /// with each claim (the claiming backends' CPU per item claimed: 58
    /// µs before, 52 after, 4 workers at `-j 16`, bench/shared.py).
    prepared: std::sync::Arc<[Prepared; 2]>,
}

impl Claims {
    /// Claims for `owner` (a name unique to this worker) on job `loc.job`,
    /// which must exist.
    pub fn open(loc: &PgLocation, owner: &str, lease: Duration) -> Result<Claims, StoreError> {
        let (conn, job) = existing_job(loc)?;
        let owner = owner.to_string();
        let o = owner.clone();
        conn.call(move |c| {
            c.execute(
                "INSERT INTO frontier (job, owner, past) VALUES ($1, $2, 0)
                 ON CONFLICT DO NOTHING",
                &[&job, &owner],
            )
            .map(drop)
        })?;
        Ok(Claims {
            conn,
            job,
            owner: o,
            lease,
            prepared: Default::default(),
        })
    }

    /// Claims up to `n` pending items not leased by a live worker; each
    /// comes with its row, marked seen by this worker's run (the latest run
    /// it registered), so that it is planned without another round trip.
    pub fn claim(&self, n: u32) -> Result<Vec<(Unfinished, Row)>, StoreError> {
        let (job, owner, lease, n) = (
            self.job,
            self.owner.clone(),
            self.lease.as_secs_f64(),
            i64::from(n),
        );
        let prepared = self.prepared.clone();
        self.conn.call(move |c| {
            let front = prepared[1].get(c, claim_sql(true))?;
            let mut rows = c.query(&front, &[&job, &owner, &lease, &n])?;
            if rows.is_empty() {
                let start = prepared[0].get(c, claim_sql(false))?;
                rows = c.query(&start, &[&job, &owner, &lease, &n])?;
            }
            Ok(rows
                .iter()
                .map(|r| (unfinished(r), row_at(r, 10)))
                .collect())
        })
    }

    /// Whether pending items remain that other workers hold leases on (the
    /// job is not over: they may die and their items come back).
    pub fn others_pending(&self) -> Result<bool, StoreError> {
        let (job, owner) = (self.job, self.owner.clone());
        self.conn.call(move |c| {
            c.query_opt(
                "SELECT 1 FROM items WHERE job = $1 AND state = 'pending'
                   AND lease_owner IS DISTINCT FROM $2 LIMIT 1",
                &[&job, &owner],
            )
            .map(|r| r.is_some())
        })
    }

    /// How many pending items this worker holds leases on.
    pub fn own_pending(&self) -> Result<u64, StoreError> {
        let (job, owner) = (self.job, self.owner.clone());
        self.conn.call(move |c| {
            c.query_one(
                "SELECT COUNT(*) FROM items WHERE job = $1 AND state = 'pending'
                   AND lease_owner = $2",
                &[&job, &owner],
            )
            .map(|r| r.get::<_, i64>(0) as u64)
        })
    }

    /// Extends the leases of this worker's pending items.
    ///
    /// Items locked meanwhile are passed over (`SKIP LOCKED`): the ones
    /// this worker's ledger is recording, in a transaction that waited on
    /// this statement's locks while it waited on the ledger's, until
    /// PostgreSQL ended the ledger's as a deadlock (4 workers on a job of a
    /// million, in bench/shared.py). Such an item is being finished, or is
    /// renewed next time.
    pub fn renew(&self) -> Result<u64, StoreError> {
        let (job, owner, lease) = (self.job, self.owner.clone(), self.lease.as_secs_f64());
        self.conn.call(move |c| {
            c.execute(
                "UPDATE items SET lease_until = now() + make_interval(secs => $3)
                 WHERE id IN (
                     SELECT id FROM items WHERE job = $1 AND lease_owner = $2 AND state = 'pending'
                     FOR UPDATE SKIP LOCKED
                 )",
                &[&job, &owner, &lease],
            )
        })
    }

    /// Gives back this worker's pending items at once (those not locked,
    /// as [`Claims::renew`]: the rest go back when their leases run out).
    pub fn release(&self) -> Result<u64, StoreError> {
        let (job, owner) = (self.job, self.owner.clone());
        self.conn.call(move |c| {
            c.execute(
                "UPDATE items SET lease_owner = NULL, lease_until = NULL
                 WHERE id IN (
                     SELECT id FROM items WHERE job = $1 AND lease_owner = $2 AND state = 'pending'
                     FOR UPDATE SKIP LOCKED
                 )",
                &[&job, &owner],
            )
        })
    }

    /// Says this worker is alive, and returns how many of the job's
    /// workers are (a heartbeat within a lease).
    pub fn heartbeat(&self) -> Result<u64, StoreError> {
        let (job, owner, lease) = (self.job, self.owner.clone(), self.lease.as_secs_f64());
        self.conn.call(move |c| {
            c.execute(
                "INSERT INTO workers (job, owner, heartbeat) VALUES ($1, $2, now())
                 ON CONFLICT (job, owner) DO UPDATE SET heartbeat = now()",
                &[&job, &owner],
            )?;
            c.query_one(
                "SELECT COUNT(*) FROM workers
                 WHERE job = $1 AND heartbeat > now() - make_interval(secs => $2)",
                &[&job, &lease],
            )
            .map(|r| r.get::<_, i64>(0).max(1) as u64)
        })
    }

    /// Says this worker is gone.
    pub fn leave(&self) -> Result<(), StoreError> {
        let (job, owner) = (self.job, self.owner.clone());
        self.conn.call(move |c| {
            c.execute(
                "DELETE FROM workers WHERE job = $1 AND owner = $2",
                &[&job, &owner],
            )
            .map(drop)
        })
    }

    /// Makes the job's failed items pending again, as a re-run retries
    /// them: the transient ones, and the permanent ones too with `all`.
    pub fn requeue_failed(&self, all: bool) -> Result<u64, StoreError> {
        let job = self.job;
        self.conn.call(move |c| {
            c.execute(
                "UPDATE items SET state = 'pending', lease_owner = NULL, lease_until = NULL
                 WHERE job = $1 AND state = 'failed' AND (NOT permanent OR $2)",
                &[&job, &all],
            )
        })
    }
}
