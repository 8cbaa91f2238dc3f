//! A connection to PostgreSQL on a thread of its own, and what it holds
//! between calls: a provisional batch's `COPY`, outcomes held back for one
//! statement, statements prepared per session.

use std::collections::HashSet;
use std::sync::mpsc;
use std::time::Duration;

use postgres::types::ToSql;
use postgres::Client;

use super::provisional::{collided, copy_item, copy_writer, mark_seen, NewItem, WRITE_LOCK};
use super::{now, PgLocation};
use crate::store::StoreError;

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
    super::tls::connect(url)
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
pub(super) struct Prepared(std::sync::Mutex<Option<(u64, postgres::Statement)>>);

impl Prepared {
    /// The statement `sql`, prepared on this session if it was not yet.
    /// Called on the connection's thread only.
    pub(super) fn get(
        &self,
        c: &mut Client,
        sql: &str,
    ) -> Result<postgres::Statement, postgres::Error> {
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
pub(super) struct Conn {
    tx: Option<mpsc::Sender<Call>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub(super) at: String,
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
    pub(super) ids: HashSet<i64>,
}

/// One item's outcome, as [`PgStore`]'s `finish` writes it.
#[derive(Clone)]
pub(super) struct Outcome {
    pub(super) id: i64,
    pub(super) state: &'static str,
    pub(super) http_status: Option<i32>,
    pub(super) bytes: i64,
    pub(super) sha256: Option<String>,
    pub(super) attempts: i32,
    pub(super) error: Option<String>,
    pub(super) reason: Option<String>,
    pub(super) permanent: bool,
    pub(super) throttled: i32,
}

/// Outcomes held back at most: a batch's worth, whatever its size.
const DEFERRED_MOST: usize = 1024;

impl Outcome {
    /// Writes `rows` (distinct items) in one statement.
    pub(super) fn write(c: &mut Client, rows: &[Outcome]) -> Result<u64, postgres::Error> {
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
    pub(super) fn open(loc: &PgLocation) -> Result<Conn, StoreError> {
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
    pub(super) fn call<T: Send + 'static>(
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
    pub(super) fn defer(&self, o: Outcome) -> Option<Outcome> {
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
    pub(super) fn drop_deferred(&self) {
        *self.deferred.lock().unwrap_or_else(|e| e.into_inner()) = Deferred::default();
    }

    /// Writes the outcomes held back, if any.
    pub(super) fn send_deferred(&self) -> Result<(), StoreError> {
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
        self.send(Box::new(move |c| {
            let _ = rtx.send(f(c));
        }))?;
        rrx.recv()
            .map_err(|_| self.closed())?
            .map_err(|e| self.error(&e))
    }

    /// Hands `call` to the connection's thread.
    fn send(&self, call: Call) -> Result<(), StoreError> {
        self.tx
            .as_ref()
            .ok_or_else(|| self.closed())?
            .send(call)
            .map_err(|_| self.closed())
    }

    /// The connection's thread is gone.
    fn closed(&self) -> StoreError {
        StoreError::Postgres {
            at: self.at.clone(),
            message: "the connection is closed".into(),
        }
    }

    /// Runs the query `sql` and hands each row, converted by `convert` on
    /// the connection's thread, to `f` here; at most a few hundred rows
    /// are in flight.
    pub(super) fn stream<T: Send + 'static>(
        &self,
        sql: &'static str,
        params: Vec<Box<dyn ToSql + Sync + Send>>,
        convert: fn(&postgres::Row) -> T,
        f: &mut dyn FnMut(T) -> bool,
    ) -> Result<(), StoreError> {
        self.end_copy(None);
        self.send_deferred()?;
        let (rtx, rrx) = mpsc::sync_channel::<Result<T, postgres::Error>>(256);
        self.send(Box::new(move |c| {
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
        }))?;
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
    pub(super) fn begin_copy(&self, job: i64, run: i64) -> Result<(), StoreError> {
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
        self.send(Box::new(move |c| {
            let _ = dtx.send(match copy(c) {
                Err(e) if collided(&e) => Ok(false),
                other => other,
            });
        }))?;
        *self.copy_slot() = Some(Copy {
            rows,
            done,
            chunk: Vec::with_capacity(COPY_CHUNK),
        });
        Ok(())
    }

    /// Hands a new item to the open `COPY`, if any. After a collision the
    /// copy has stopped reading: the commit tells.
    pub(super) fn copy_item(&self, n: &NewItem) {
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
    pub(super) fn end_copy(&self, seen: Option<Vec<i64>>) -> Option<Result<bool, StoreError>> {
        let copy = self.copy_slot().take()?;
        if let Some(seen) = seen {
            let _ = copy.rows.send(CopyRow::Items(copy.chunk));
            let _ = copy.rows.send(CopyRow::Commit(seen));
        }
        drop(copy.rows);
        Some(match copy.done.recv() {
            Ok(r) => r.map_err(|e| self.error(&e)),
            Err(_) => Err(self.closed()),
        })
    }
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
            if let Some(unusable) = super::tls::unusable(e) {
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
