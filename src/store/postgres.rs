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

use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postgres::types::ToSql;
use postgres::{Client, NoTls};

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
    Client::connect(url, NoTls)
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

/// A PostgreSQL connection on a thread of its own.
struct Conn {
    tx: Option<mpsc::Sender<Call>>,
    thread: Option<std::thread::JoinHandle<()>>,
    at: String,
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

impl Drop for Conn {
    fn drop(&mut self) {
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
    log: std::cell::RefCell<Vec<Replay>>,
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
        if !self.in_tx {
            self.log.get_mut().clear();
            self.retry(|| self.conn.call(|c| c.batch_execute("BEGIN")))?;
            self.in_tx = true;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        if self.in_tx {
            self.retry(|| self.conn.call(|c| c.batch_execute("COMMIT")))?;
            self.in_tx = false;
            self.log.get_mut().clear();
        }
        Ok(())
    }

    fn lookup(&self, url: &str, page: bool) -> Result<Option<Row>, StoreError> {
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
        match id {
            Some(id) => Ok(Inserted::Id(id)),
            None => self.collision(url, kind, 0),
        }
    }

    fn mark_seen(&self, id: i64) -> Result<(), StoreError> {
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
        self.exec(
            "UPDATE items SET state = $1, http_status = $2, bytes = $3, sha256 = $4,
                    attempts = attempts + $5, error = $6, reason = $7, permanent = $8,
                    updated_at = $9, throttled = throttled + $11,
                    lease_owner = NULL, lease_until = NULL
             WHERE id = $10",
            params![
                state.as_str(),
                f.http_status.map(i32::from),
                f.bytes as i64,
                f.sha256.clone(),
                f.attempts as i32,
                f.error.clone(),
                f.reason.clone(),
                f.permanent,
                now(),
                id,
                f.throttled as i32
            ],
        )
        .map(drop)
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
pub struct Claims {
    conn: Conn,
    job: i64,
    owner: String,
    lease: Duration,
    /// The highest id claimed so far: the next claim looks past it, not
    /// through the items done before it (their dead row versions would
    /// make every claim slower than the last), and wraps around to the
    /// start only when nothing is left past it.
    cursor: std::sync::atomic::AtomicI64,
}

impl Claims {
    /// Claims for `owner` (a name unique to this worker) on job `loc.job`,
    /// which must exist.
    pub fn open(loc: &PgLocation, owner: &str, lease: Duration) -> Result<Claims, StoreError> {
        let (conn, job) = existing_job(loc)?;
        Ok(Claims {
            conn,
            job,
            owner: owner.to_string(),
            lease,
            cursor: std::sync::atomic::AtomicI64::new(0),
        })
    }

    /// Claims up to `n` pending items not leased by a live worker.
    pub fn claim(&self, n: u32) -> Result<Vec<(Unfinished, Row)>, StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let after = self.cursor.load(Relaxed);
        let mut claimed = self.claim_after(after, n)?;
        if claimed.is_empty() && after > 0 {
            claimed = self.claim_after(0, n)?;
        }
        if let Some(max) = claimed.iter().map(|(_, r)| r.id).max() {
            self.cursor.store(max, Relaxed);
        }
        Ok(claimed)
    }

    /// Claims past row `after`; each item comes with its row, marked seen
    /// by this worker's run (the latest run it registered), so that it is
    /// planned without another round trip.
    fn claim_after(&self, after: i64, n: u32) -> Result<Vec<(Unfinished, Row)>, StoreError> {
        let (job, owner, lease, n) = (
            self.job,
            self.owner.clone(),
            self.lease.as_secs_f64(),
            i64::from(n),
        );
        self.conn.call(move |c| {
            let rows = c.query(
                "WITH picked AS (
                     SELECT id FROM items
                     WHERE job = $1 AND state = 'pending' AND id > $5
                       AND (lease_until IS NULL OR lease_until < now())
                     ORDER BY id LIMIT $4
                     FOR UPDATE SKIP LOCKED
                 )
                 UPDATE items i SET lease_owner = $2,
                        lease_until = now() + make_interval(secs => $3),
                        seen_run = COALESCE(
                            (SELECT max(id) FROM runs WHERE job = $1 AND worker = $2),
                            i.seen_run)
                 FROM picked WHERE i.id = picked.id
                 RETURNING i.url, i.input, i.line, i.kind, i.depth, NULL::BIGINT, NULL::TEXT,
                           NULL::TEXT, NULL::TEXT, i.page_id,
                           i.id, i.state, i.path, i.bytes, i.sha256, i.etag, i.last_modified,
                           i.permanent, i.error, i.reason, i.http_status, i.attempts,
                           i.seen_run, i.kind = 'page', i.total, i.page_id",
                &[&job, &owner, &lease, &n, &after],
            )?;
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
    pub fn renew(&self) -> Result<u64, StoreError> {
        let (job, owner, lease) = (self.job, self.owner.clone(), self.lease.as_secs_f64());
        self.conn.call(move |c| {
            c.execute(
                "UPDATE items SET lease_until = now() + make_interval(secs => $3)
                 WHERE job = $1 AND lease_owner = $2 AND state = 'pending'",
                &[&job, &owner, &lease],
            )
        })
    }

    /// Gives back this worker's pending items at once.
    pub fn release(&self) -> Result<u64, StoreError> {
        let (job, owner) = (self.job, self.owner.clone());
        self.conn.call(move |c| {
            c.execute(
                "UPDATE items SET lease_owner = NULL, lease_until = NULL
                 WHERE job = $1 AND lease_owner = $2 AND state = 'pending'",
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
