//! Job state: one SQLite database per output directory
//! (`DIR/.haul/state.db`), one row per item.
//!
//! The store is what makes every job resumable with nothing to configure:
//! running the same command again finds each URL's row and carries on from
//! it. It is also what keeps memory flat: duplicate detection and name
//! claims are index lookups, not in-memory sets.
//!
//! Only one thread ever touches the connection (the job's ledger thread),
//! and it writes in batched transactions, WAL mode, `synchronous=NORMAL`:
//! a commit costs no fsync, and a crash loses at most the last uncommitted
//! batch, which the next run simply redoes. Durability of *files* is handled
//! by the ledger, which marks items done only after a group sync (see
//! [`sync_files`]).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};

/// Directory inside the output directory that haul keeps for itself.
pub const STATE_DIR: &str = ".haul";

/// File name of the database inside [`STATE_DIR`].
pub const DB_NAME: &str = "state.db";

/// A store that could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state directory could not be created.
    #[error("cannot create job state directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// SQLite failed.
    #[error("job state {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The disk holding the job state is full.
    #[error(
        "no space left for the job state {0}: the job stopped; free some space and run \
         the same command again to carry on (what was recorded is kept)"
    )]
    Full(PathBuf),
    /// Another process is working on the same output directory.
    #[error(
        "another haul is working in {dir}{}; wait for it to finish or stop it \
         (two processes on one job would corrupt each other's files)",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Locked {
        /// The output directory.
        dir: PathBuf,
        /// The process holding the lock, as it wrote in the lock file.
        pid: Option<u32>,
    },
    /// The job state was written by a newer haul.
    #[error(
        "job state {path} was written by a newer haul (schema {version}, this one reads \
         up to {SCHEMA_VERSION}); upgrade haul to carry on with this job"
    )]
    Newer {
        /// The database file.
        path: PathBuf,
        /// Its schema version.
        version: i64,
    },
    /// PostgreSQL failed, or could not be reached.
    #[error("job state in {at}: {message}")]
    Postgres {
        /// The server (without its password) and the job.
        at: String,
        /// What PostgreSQL (or its client) said.
        message: String,
    },
    /// The connection to PostgreSQL was lost and could not be made again
    /// within two minutes.
    #[error(
        "job state in {at}: the connection was lost ({message}) and PostgreSQL could not be \
         reached again within two minutes; what was recorded is kept: run the same command \
         again once it is back"
    )]
    PostgresLost {
        /// The server (without its password) and the job.
        at: String,
        /// What the client said.
        message: String,
    },
    /// A worker or `haul status` named a job the database does not hold.
    #[error(
        "no job in {0}: submit one first (haul submit --state URL --job NAME -i LIST), \
         or check the name (haul status --state URL lists the jobs)"
    )]
    NoJob(String),
    /// `haul status` on a directory without job state.
    #[error(
        "no job state in {0} (expected {0}/.haul/state.db): nothing has been downloaded there"
    )]
    Missing(PathBuf),
}

/// An item's state as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Planned or in flight, not finished.
    Pending,
    /// Downloaded and renamed into place, not yet synced to disk: a re-run
    /// checks the file against its recorded size and SHA-256.
    Saved,
    /// Downloaded and synced to disk.
    Ok,
    /// A file was already there before the job.
    Skipped,
    /// Failed; may be retried on the next run if transient.
    Failed,
}

impl State {
    /// The state as the job state and reports spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Saved => "saved",
            State::Ok => "ok",
            State::Skipped => "skipped",
            State::Failed => "failed",
        }
    }

    pub(super) fn parse(s: &str) -> State {
        match s {
            "ok" => State::Ok,
            "saved" => State::Saved,
            "skipped" => State::Skipped,
            "failed" => State::Failed,
            _ => State::Pending,
        }
    }
}

/// An item's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Row id, the item's identity for the rest of the job.
    pub id: i64,
    /// Recorded state.
    pub state: State,
    /// Destination relative to the output directory.
    pub path: Option<String>,
    /// Bytes of the finished file.
    pub bytes: u64,
    /// SHA-256 of the finished file.
    pub sha256: Option<String>,
    /// ETag of the transfer in progress or done.
    pub etag: Option<String>,
    /// Last-Modified of the transfer in progress or done.
    pub last_modified: Option<String>,
    /// The size the server announced for the transfer in progress.
    pub total: Option<u64>,
    /// Whether the recorded failure was permanent.
    pub permanent: bool,
    /// Last error.
    pub error: Option<String>,
    /// Failure group.
    pub reason: Option<String>,
    /// Last HTTP status.
    pub http_status: Option<u16>,
    /// Requests made, all runs.
    pub attempts: u32,
    /// Run that last saw this URL in its input.
    pub seen_run: i64,
    /// A crawled page rather than a file.
    pub is_page: bool,
    /// The page a file was found on, or that linked to a page.
    pub page_id: Option<i64>,
}

/// What [`Store::try_insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// A new row.
    Id(i64),
    /// The URL has a row already.
    UrlKnown,
    /// Another item owns the path.
    PathTaken,
}

/// An item a re-run of a crawl carries on with.
#[derive(Debug, Clone)]
pub struct Unfinished {
    /// URL.
    pub url: String,
    /// Input and line it first came from.
    pub input: String,
    /// Line.
    pub line: u64,
    /// `Some(depth)` for a page.
    pub page_depth: Option<u32>,
    /// The page a file was found on: (id, url, title, folder).
    pub page: Option<(i64, String, Option<String>, String)>,
    /// The page that linked to a page, when recorded.
    pub parent: Option<i64>,
}

/// What the ledger writes when an item finishes.
#[derive(Debug, Clone, Default)]
pub struct Finish {
    /// Last HTTP status.
    pub http_status: Option<u16>,
    /// Bytes.
    pub bytes: u64,
    /// SHA-256.
    pub sha256: Option<String>,
    /// Requests made in this run.
    pub attempts: u32,
    /// Error.
    pub error: Option<String>,
    /// Failure group.
    pub reason: Option<String>,
    /// Permanent failure.
    pub permanent: bool,
    /// 429 and 503 answers in this run.
    pub throttled: u32,
}

/// The columns of `items`, shared by the schema and the migration that
/// rebuilds the table. A URL is one item as a page and one as a file: a
/// link followed to an image and the same image shown by an `<img>` are
/// two things to do. A file shown on several pages has one more row for
/// each page after the first, with `placed` set to that page: the file
/// placed in that page's folder too (`placed` is 0 for every other row).
macro_rules! items_columns {
    () => {
        "(
    id INTEGER PRIMARY KEY,
    url TEXT NOT NULL,
    input TEXT,
    line INTEGER,
    path TEXT UNIQUE,
    state TEXT NOT NULL DEFAULT 'pending',
    permanent INTEGER NOT NULL DEFAULT 0,
    http_status INTEGER,
    bytes INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT,
    etag TEXT,
    last_modified TEXT,
    total INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    throttled INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    reason TEXT,
    seen_run INTEGER NOT NULL DEFAULT 0,
    kind TEXT NOT NULL DEFAULT 'file',
    depth INTEGER NOT NULL DEFAULT 0,
    page_id INTEGER,
    title TEXT,
    links INTEGER,
    placed INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (url, kind, placed)
)"
    };
}

const SCHEMA: &str = concat!(
    "CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    started_at INTEGER NOT NULL,
    version TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS items ",
    items_columns!(),
    ";"
);

/// Takes the exclusive lock on the job in `state_dir` and writes our pid
/// in it. The kernel drops an `flock` when its holder exits however it
/// exits, so a killed run never leaves a stale lock.
fn lock(out_dir: &Path, state_dir: &Path) -> Result<std::fs::File, StoreError> {
    use rustix::fs::{FlockOperation, Mode, OFlags};
    use std::io::{Read, Seek, Write};
    let path = state_dir.join(LOCK_NAME);
    let io_error = |source| StoreError::Dir {
        path: path.clone(),
        source,
    };
    let fd = rustix::fs::open(
        &path,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(|e| io_error(e.into()))?;
    let mut file = std::fs::File::from(fd);
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(StoreError::Locked {
                dir: out_dir.to_path_buf(),
                pid: text.trim().parse().ok(),
            });
        }
        Err(e) => return Err(io_error(e.into())),
    }
    file.set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(io_error)?;
    Ok(file)
}

/// The schema version this build writes, in `PRAGMA user_version`.
/// 0: the first release's. 1: `items.total`, the size the server announced
/// for a transfer in progress, checked against a resumed 206.
/// 2: `items.throttled`, the 429 and 503 answers an item met, all runs.
/// 3: a URL is unique per kind (page or file), not overall, and a file
/// has a row per page that shows it (`items.placed`).
pub const SCHEMA_VERSION: i64 = 3;

/// Brings a store written by an earlier release up to [`SCHEMA_VERSION`],
/// one step at a time; refuses one written by a newer release.
fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let err = |source| StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(err)?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Newer {
            path: path.to_path_buf(),
            version,
        });
    }
    if version < 1 && !has_column(conn, "total").map_err(err)? {
        conn.execute_batch("ALTER TABLE items ADD COLUMN total INTEGER")
            .map_err(err)?;
    }
    if version < 2 && !has_column(conn, "throttled").map_err(err)? {
        conn.execute_batch("ALTER TABLE items ADD COLUMN throttled INTEGER NOT NULL DEFAULT 0")
            .map_err(err)?;
    }
    if version < 3 {
        // SQLite cannot drop a column's UNIQUE: the table is copied into
        // one with the new key, in one transaction.
        let old: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'items'",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        if old.contains("url TEXT NOT NULL UNIQUE") {
            conn.execute_batch(concat!(
                "BEGIN IMMEDIATE;
                 CREATE TABLE items_v3 ",
                items_columns!(),
                ";
                 INSERT INTO items_v3 (id, url, input, line, path, state, permanent,
                        http_status, bytes, sha256, etag, last_modified, total, attempts,
                        throttled, error, reason, seen_run, kind, depth, page_id, title, links,
                        created_at, updated_at)
                 SELECT id, url, input, line, path, state, permanent,
                        http_status, bytes, sha256, etag, last_modified, total, attempts,
                        throttled, error, reason, seen_run, kind, depth, page_id, title, links,
                        created_at, updated_at FROM items;
                 DROP TABLE items;
                 ALTER TABLE items_v3 RENAME TO items;
                 COMMIT;"
            ))
            .map_err(err)?;
        }
    }
    if version < SCHEMA_VERSION {
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .map_err(err)?;
    }
    Ok(())
}

/// Whether `items` has `column` (a fresh store is created with every
/// column, so a step must not add it again).
fn has_column(conn: &Connection, column: &str) -> rusqlite::Result<bool> {
    conn.prepare("SELECT 1 FROM pragma_table_info('items') WHERE name = ?1")?
        .exists([column])
}

/// An insert's new id, or which key it collided on.
fn inserted_or_collision(inserted: Result<i64, StoreError>) -> Result<Inserted, StoreError> {
    match inserted {
        Ok(id) => Ok(Inserted::Id(id)),
        Err(StoreError::Sqlite {
            source: rusqlite::Error::SqliteFailure(e, Some(msg)),
            ..
        }) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
            if msg.contains("items.path") {
                Ok(Inserted::PathTaken)
            } else {
                Ok(Inserted::UrlKnown)
            }
        }
        Err(e) => Err(e),
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// File name of the job's lock inside [`STATE_DIR`].
pub const LOCK_NAME: &str = "lock";

/// File name of the job state's reserve inside [`STATE_DIR`]: space held
/// back so that, when downloads fill the disk, the job state can still
/// record what happened. Released at the first sign of a full disk.
pub const RESERVE_NAME: &str = "reserve";

/// Size of the reserve: room for thousands of outcomes in the WAL.
const RESERVE_BYTES: u64 = 1 << 20;

/// Gives back the job state's reserve in `out_dir`, so the job state can
/// record what happens on a full disk. Harmless when there is none.
pub fn release_reserve(out_dir: &Path) -> bool {
    std::fs::remove_file(out_dir.join(STATE_DIR).join(RESERVE_NAME)).is_ok()
}

/// Sets the reserve aside (again, after a run that used it); on a disk
/// that is already full there is none, and nothing else changes.
fn hold_reserve(state_dir: &Path) {
    let path = state_dir.join(RESERVE_NAME);
    if path
        .symlink_metadata()
        .is_ok_and(|m| m.len() == RESERVE_BYTES)
    {
        return;
    }
    // Written, not only sized: a sparse file would hold no space at all.
    #[cfg(target_os = "linux")]
    let made = std::fs::File::create(&path).and_then(|f| {
        rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, RESERVE_BYTES)
            .map_err(std::io::Error::from)
    });
    #[cfg(not(target_os = "linux"))]
    let made = std::fs::write(&path, vec![0u8; RESERVE_BYTES as usize]);
    if made.is_err() {
        let _ = std::fs::remove_file(&path);
    }
}

/// The job state of one output directory.
pub struct Store {
    conn: Connection,
    /// The job's exclusive lock, held for as long as the store is open to
    /// write (`None` when only reading).
    _lock: Option<std::fs::File>,
    /// The reserve was given up to record a statement on a full disk.
    reserve_used: std::cell::Cell<bool>,
    /// The output directory, whose reserve a full disk releases (`None`
    /// when only reading).
    out_dir: Option<PathBuf>,
    path: PathBuf,
    run: i64,
    in_tx: bool,
}

impl Store {
    /// Opens (creating if needed) the store of `out_dir` and starts a new run.
    /// Takes the job's lock first: a second process on the same output
    /// directory fails at once with [`StoreError::Locked`].
    pub fn open(out_dir: &Path) -> Result<Store, StoreError> {
        let dir = out_dir.join(STATE_DIR);
        let dir_error = |source| StoreError::Dir {
            path: dir.clone(),
            source,
        };
        if dir.symlink_metadata().is_ok_and(|m| m.is_symlink()) {
            return Err(dir_error(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "it is a symbolic link, and haul never writes through one (remove it)",
            )));
        }
        fs_err::create_dir_all(&dir).map_err(dir_error)?;
        let lock = lock(out_dir, &dir)?;
        let mut store = Self::connect(dir.join(DB_NAME))?;
        store._lock = Some(lock);
        hold_reserve(&dir);
        store.out_dir = Some(out_dir.to_path_buf());
        let run = store.q(|c| {
            c.execute(
                "INSERT INTO runs (started_at, version) VALUES (?1, ?2)",
                params![now(), env!("CARGO_PKG_VERSION")],
            )?;
            Ok(c.last_insert_rowid())
        })?;
        store.run = run;
        Ok(store)
    }

    /// Opens the store of `out_dir` to read it; fails if there is none.
    pub fn open_existing(out_dir: &Path) -> Result<Store, StoreError> {
        let path = out_dir.join(STATE_DIR).join(DB_NAME);
        if !path.is_file() {
            return Err(StoreError::Missing(out_dir.to_path_buf()));
        }
        Self::connect(path)
    }

    fn connect(path: PathBuf) -> Result<Store, StoreError> {
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(err)?;
        rusqlite::vtab::array::load_module(&conn).map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             PRAGMA busy_timeout=5000;
             PRAGMA cache_size=-16000;
             PRAGMA temp_store=MEMORY;",
        )
        .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        migrate(&conn, &path)?;
        Ok(Store {
            conn,
            _lock: None,
            reserve_used: std::cell::Cell::new(false),
            out_dir: None,
            path,
            run: 0,
            in_tx: false,
        })
    }

    fn q<T>(&self, mut f: impl FnMut(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let in_tx = !self.conn.is_autocommit();
        let mut result = f(&self.conn);
        let full = |r: &rusqlite::Result<T>| {
            r.as_ref()
                .err()
                .and_then(rusqlite::Error::sqlite_error_code)
                == Some(rusqlite::ErrorCode::DiskFull)
        };
        if full(&result)
            && self.conn.is_autocommit() != in_tx
            && self.out_dir.as_deref().is_some_and(release_reserve)
        {
            // The disk filled (downloads took the space): the reserve is
            // there so that the job state can still record what happened.
            // SQLite kept the transaction, so the statement can go again.
            self.reserve_used.set(true);
            result = f(&self.conn);
        }
        result.map_err(|source| {
            if source.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
                StoreError::Full(self.path.clone())
            } else {
                StoreError::Sqlite {
                    path: self.path.clone(),
                    source,
                }
            }
        })
    }

    /// This run's id.
    pub fn run(&self) -> i64 {
        self.run
    }

    /// Starts a batch transaction if none is open.
    pub fn begin(&mut self) -> Result<(), StoreError> {
        if !self.in_tx {
            self.q(|c| c.execute_batch("BEGIN"))?;
            self.in_tx = true;
        }
        Ok(())
    }

    /// Commits the open batch, if any. A failed commit ends the batch too
    /// (rolled back), so the store is never left in a transaction that
    /// SQLite has already given up.
    pub fn commit(&mut self) -> Result<(), StoreError> {
        if self.in_tx {
            self.in_tx = false;
            if let Err(e) = self.q(|c| c.execute_batch("COMMIT")) {
                if !self.conn.is_autocommit() {
                    let _ = self.conn.execute_batch("ROLLBACK");
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// The row of `url` as a page or as a file, if it was ever planned.
    pub fn lookup(&self, url: &str, page: bool) -> Result<Option<Row>, StoreError> {
        self.q(|c| {
            c.prepare_cached(
                "SELECT id, state, path, bytes, sha256, etag, last_modified, permanent,
                        error, reason, http_status, attempts, seen_run, kind = 'page', total,
                        page_id
                 FROM items WHERE url = ?1 AND kind = ?2 AND placed = 0",
            )?
            .query_row(params![url, if page { "page" } else { "file" }], row)
            .optional()
        })
    }

    /// The row placing file `url` in the folder of `page` too, if planned.
    pub fn lookup_placement(&self, url: &str, page: i64) -> Result<Option<Row>, StoreError> {
        self.q(|c| {
            c.prepare_cached(
                "SELECT id, state, path, bytes, sha256, etag, last_modified, permanent,
                        error, reason, http_status, attempts, seen_run, kind = 'page', total,
                        page_id
                 FROM items WHERE url = ?1 AND kind = 'file' AND placed = ?2",
            )?
            .query_row(params![url, page], row)
            .optional()
        })
    }

    /// Records that file `url`, an item already, goes in the folder of
    /// `page` too, at `path`.
    pub fn insert_placement(
        &self,
        url: &str,
        input: &str,
        line: u64,
        path: &str,
        page: i64,
    ) -> Result<Inserted, StoreError> {
        let t = now();
        let inserted = self.q(|c| {
            c.prepare_cached(
                "INSERT INTO items (url, input, line, path, state, seen_run, kind, page_id,
                                    placed, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, 'file', ?6, ?6, ?7, ?7)",
            )?
            .execute(params![url, input, line as i64, path, self.run, page, t])?;
            Ok(c.last_insert_rowid())
        });
        inserted_or_collision(inserted)
    }

    /// The state, path, size and hash of item `id`, for placing its file
    /// in another page's folder.
    pub fn file_of(&self, id: i64) -> Result<Option<Row>, StoreError> {
        self.q(|c| {
            c.prepare_cached(
                "SELECT id, state, path, bytes, sha256, etag, last_modified, permanent,
                        error, reason, http_status, attempts, seen_run, kind = 'page', total,
                        page_id
                 FROM items WHERE id = ?1",
            )?
            .query_row([id], row)
            .optional()
        })
    }

    /// Whether some item already owns `path`.
    pub fn path_taken(&self, path: &str) -> Result<bool, StoreError> {
        self.q(|c| {
            c.prepare_cached("SELECT 1 FROM items WHERE path = ?1")?
                .exists([path])
        })
    }

    /// Records a new item seen in this run; returns its id.
    #[cfg(test)]
    pub fn insert(
        &self,
        url: &str,
        input: &str,
        line: u64,
        path: Option<&str>,
        state: State,
    ) -> Result<i64, StoreError> {
        self.insert_kind(url, input, line, path, state, None, None)
    }

    /// Records a new item: a page (`page_depth`) or a file found on a page
    /// (`page_id`).
    #[allow(clippy::too_many_arguments)]
    pub fn insert_kind(
        &self,
        url: &str,
        input: &str,
        line: u64,
        path: Option<&str>,
        state: State,
        page_depth: Option<u32>,
        page_id: Option<i64>,
    ) -> Result<i64, StoreError> {
        let t = now();
        let kind = if page_depth.is_some() { "page" } else { "file" };
        self.q(|c| {
            c.prepare_cached(
                "INSERT INTO items (url, input, line, path, state, seen_run, kind, depth, page_id,
                                    created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
            )?
            .execute(params![
                url,
                input,
                line as i64,
                path,
                state.as_str(),
                self.run,
                kind,
                page_depth.unwrap_or(0),
                page_id,
                t
            ])?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Records a new item with its name in one statement, if neither its URL
    /// nor its path is known yet: the common case of a first run costs one
    /// statement instead of a lookup, a path check and an insert.
    #[allow(clippy::too_many_arguments)]
    pub fn try_insert(
        &self,
        url: &str,
        input: &str,
        line: u64,
        path: Option<&str>,
        page_depth: Option<u32>,
        page_id: Option<i64>,
    ) -> Result<Inserted, StoreError> {
        inserted_or_collision(self.insert_kind(
            url,
            input,
            line,
            path,
            State::Pending,
            page_depth,
            page_id,
        ))
    }

    /// Records what a crawled page held: its title, its folder and how many
    /// links it gave.
    pub fn set_page(
        &self,
        id: i64,
        title: Option<&str>,
        folder: Option<&str>,
        links: u64,
    ) -> Result<(), StoreError> {
        self.q(|c| {
            c.prepare_cached(
                "UPDATE items SET title = ?1, path = COALESCE(?2, path), links = ?3 WHERE id = ?4",
            )?
            .execute(params![title, folder, links as i64, id])
            .map(drop)
        })
    }

    /// Calls `f` for every item a re-run of a crawl must carry on with:
    /// unfinished pages and files (and permanently failed ones when
    /// `retry_failed`), in id order.
    pub fn each_unfinished(
        &self,
        retry_failed: bool,
        mut f: impl FnMut(Unfinished),
    ) -> Result<(), StoreError> {
        self.q(|c| {
            let mut stmt = c.prepare(
                "SELECT i.url, i.input, i.line, i.kind, i.depth, p.id, p.url, p.title, p.path,
                        i.page_id
                 FROM items i LEFT JOIN items p ON p.id = i.page_id
                 WHERE i.state IN ('pending', 'saved')
                    OR (i.state = 'failed' AND (i.permanent = 0 OR ?1))
                 ORDER BY i.id",
            )?;
            let mut rows = stmt.query([retry_failed])?;
            while let Some(r) = rows.next()? {
                let kind: String = r.get(3)?;
                let page = match r.get::<_, Option<i64>>(5)?.filter(|_| kind == "file") {
                    Some(id) => Some((
                        id,
                        r.get(6)?,
                        r.get(7)?,
                        r.get::<_, Option<String>>(8)?.unwrap_or_default(),
                    )),
                    None => None,
                };
                f(Unfinished {
                    url: r.get(0)?,
                    input: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    line: r.get::<_, Option<i64>>(2)?.unwrap_or(0) as u64,
                    page_depth: (kind == "page").then(|| r.get::<_, u32>(4)).transpose()?,
                    page,
                    parent: if kind == "page" { r.get(9)? } else { None },
                });
            }
            Ok(())
        })
    }

    /// The folder a page's files went to, once it was read.
    pub fn folder_of(&self, page: i64) -> Result<Option<String>, StoreError> {
        self.q(|c| {
            c.prepare_cached("SELECT path FROM items WHERE id = ?1 AND kind = 'page'")?
                .query_row([page], |r| r.get(0))
                .optional()
                .map(Option::flatten)
        })
    }

    /// The pages `page` linked to, as [`Unfinished`] entries (whatever
    /// their state): a page found unchanged goes on to them.
    pub fn each_child_page(
        &self,
        page: i64,
        mut f: impl FnMut(Unfinished),
    ) -> Result<(), StoreError> {
        self.q(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT url, input, line, depth FROM items
                 WHERE page_id = ?1 AND kind = 'page' ORDER BY id",
            )?;
            let mut rows = stmt.query([page])?;
            while let Some(r) = rows.next()? {
                f(Unfinished {
                    url: r.get(0)?,
                    input: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    line: r.get::<_, Option<i64>>(2)?.unwrap_or(0) as u64,
                    page_depth: Some(r.get(3)?),
                    page: None,
                    parent: Some(page),
                });
            }
            Ok(())
        })
    }

    /// Marks an existing item as seen in this run's input.
    pub fn mark_seen(&self, id: i64) -> Result<(), StoreError> {
        self.q(|c| {
            c.prepare_cached("UPDATE items SET seen_run = ?1 WHERE id = ?2")?
                .execute(params![self.run, id])
                .map(drop)
        })
    }

    /// Records the validators of a transfer that has started, so that a later
    /// run can resume its `.part` file.
    pub fn started(
        &self,
        id: i64,
        etag: Option<&str>,
        last_modified: Option<&str>,
        total: Option<u64>,
    ) -> Result<(), StoreError> {
        self.q(|c| {
            c.prepare_cached(
                "UPDATE items SET etag = ?1, last_modified = ?2, total = ?3, state = 'pending',
                        updated_at = ?4
                 WHERE id = ?5",
            )?
            .execute(params![
                etag,
                last_modified,
                total.map(|t| t as i64),
                now(),
                id
            ])
            .map(drop)
        })
    }

    /// Records how an item ended in this run.
    pub fn finish(&self, id: i64, state: State, f: &Finish) -> Result<(), StoreError> {
        self.q(|c| {
            c.prepare_cached(
                "UPDATE items SET state = ?1, http_status = ?2, bytes = ?3, sha256 = ?4,
                        attempts = attempts + ?5, error = ?6, reason = ?7, permanent = ?8,
                        updated_at = ?9, throttled = throttled + ?11
                 WHERE id = ?10",
            )?
            .execute(params![
                state.as_str(),
                f.http_status,
                f.bytes as i64,
                f.sha256,
                f.attempts,
                f.error,
                f.reason,
                f.permanent,
                now(),
                id,
                f.throttled
            ])
            .map(drop)
        })
    }

    /// Marks saved items done once their files are synced.
    pub fn mark_synced(&self, ids: &[i64]) -> Result<(), StoreError> {
        self.q(|c| {
            let mut stmt = c.prepare_cached(
                "UPDATE items SET state = 'ok' WHERE id = ?1 AND state = 'saved'",
            )?;
            for id in ids {
                stmt.execute([id])?;
            }
            Ok(())
        })
    }

    /// Moves an item to a new path (the server named it).
    pub fn set_path(&self, id: i64, path: &str) -> Result<(), StoreError> {
        self.q(|c| {
            c.prepare_cached("UPDATE items SET path = ?1 WHERE id = ?2")?
                .execute(params![path, id])
                .map(drop)
        })
    }

    /// Calls `f` for every failed item (URL, input, line), in id order.
    pub fn each_failed(
        &self,
        mut f: impl FnMut(String, String, u64) -> bool,
    ) -> Result<(), StoreError> {
        self.q(|c| {
            let mut stmt =
                c.prepare("SELECT url, input, line FROM items WHERE state = 'failed' ORDER BY id")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let line: i64 = r.get(2)?;
                if !f(
                    r.get(0)?,
                    r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    line as u64,
                ) {
                    break;
                }
            }
            Ok(())
        })
    }

    /// Whether the disk filled under the job state and its reserve was
    /// given up: the job must stop writing files, or they will take that
    /// space too.
    pub fn reserve_used(&self) -> bool {
        self.reserve_used.get()
    }

    /// Runs so far.
    pub fn runs(&self) -> Result<u64, StoreError> {
        self.q(|c| c.query_row("SELECT COUNT(*) FROM runs", [], |r| r.get::<_, i64>(0)))
            .map(|n| n as u64)
    }

    /// Every item, in the order they were planned, for `haul status`.
    pub fn each_item(&self, mut f: impl FnMut(super::ItemRecord)) -> Result<(), StoreError> {
        self.items_after(false, 0, None, &mut f)
    }

    /// Up to `limit` items this run has not planned, after row `after`.
    pub fn unseen(
        &self,
        after: i64,
        limit: u32,
        mut f: impl FnMut(super::ItemRecord),
    ) -> Result<(), StoreError> {
        self.items_after(true, after, Some(limit), &mut f)
    }

    fn items_after(
        &self,
        unseen_only: bool,
        after: i64,
        limit: Option<u32>,
        f: &mut dyn FnMut(super::ItemRecord),
    ) -> Result<(), StoreError> {
        self.q(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT url, path, state, http_status, bytes, sha256, attempts, error, reason,
                        input, line, permanent, etag IS NOT NULL OR last_modified IS NOT NULL,
                        throttled, id, kind = 'page'
                 FROM items WHERE id > ?3 AND (?1 = 0 OR seen_run != ?2)
                 ORDER BY id LIMIT ?4",
            )?;
            let limit = limit.map_or(-1, i64::from);
            let mut rows = stmt.query(params![unseen_only, self.run, after, limit])?;
            while let Some(r) = rows.next()? {
                f(super::ItemRecord {
                    url: r.get(0)?,
                    path: r.get(1)?,
                    state: State::parse(&r.get::<_, String>(2)?),
                    http_status: r.get(3)?,
                    bytes: r.get::<_, i64>(4)? as u64,
                    sha256: r.get(5)?,
                    attempts: r.get(6)?,
                    error: r.get(7)?,
                    reason: r.get(8)?,
                    input: r.get(9)?,
                    line: r.get::<_, Option<i64>>(10)?.map(|l| l as u64),
                    permanent: r.get(11)?,
                    resumable: r.get(12)?,
                    throttled: r.get(13)?,
                    id: r.get(14)?,
                    is_page: r.get(15)?,
                });
            }
            Ok(())
        })
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if self.in_tx {
            let _ = self.conn.execute_batch("COMMIT");
        }
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        id: r.get(0)?,
        state: State::parse(&r.get::<_, String>(1)?),
        path: r.get(2)?,
        bytes: r.get::<_, i64>(3)? as u64,
        sha256: r.get(4)?,
        etag: r.get(5)?,
        last_modified: r.get(6)?,
        permanent: r.get(7)?,
        error: r.get(8)?,
        reason: r.get(9)?,
        http_status: r.get(10)?,
        attempts: r.get(11)?,
        seen_run: r.get(12)?,
        is_page: r.get(13)?,
        total: r.get::<_, Option<i64>>(14)?.map(|t| t as u64),
        page_id: r.get(15)?,
    })
}

/// Makes every file written so far durable, in one call for the whole
/// batch: `syncfs` on the output directory's file system. One call per batch
/// instead of an fsync per file (what aria2c does) is what keeps crash
/// safety cheap for many small files.
#[cfg(target_os = "linux")]
pub fn sync_files(dir: &Path) -> std::io::Result<()> {
    let d = std::fs::File::open(dir)?;
    rustix::fs::syncfs(&d)?;
    Ok(())
}

/// Where there is no `syncfs`, files are synced one by one as they are put
/// in place (the portable path), so there is nothing left to do here.
#[cfg(not(target_os = "linux"))]
pub fn sync_files(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_reopening_and_runs_count_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        assert_eq!(s.run(), 1);
        s.begin().unwrap();
        let id = s
            .insert("http://h/a", "list", 3, Some("a"), State::Pending)
            .unwrap();
        s.started(id, Some("\"e1\""), None, None).unwrap();
        s.commit().unwrap();
        assert!(s.path_taken("a").unwrap());
        assert!(!s.path_taken("b").unwrap());
        drop(s);

        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.run(), 2);
        let r = s.lookup("http://h/a", false).unwrap().unwrap();
        assert_eq!(
            (r.state, r.etag.as_deref(), r.seen_run),
            (State::Pending, Some("\"e1\""), 1)
        );
        s.finish(
            r.id,
            State::Failed,
            &Finish {
                attempts: 2,
                error: Some("HTTP 404".into()),
                permanent: true,
                ..Finish::default()
            },
        )
        .unwrap();
        let r = s.lookup("http://h/a", false).unwrap().unwrap();
        assert_eq!((r.state, r.permanent, r.attempts), (State::Failed, true, 2));
        let mut failed = Vec::new();
        s.each_failed(|u, i, l| {
            failed.push((u, i, l));
            true
        })
        .unwrap();
        assert_eq!(
            failed,
            vec![("http://h/a".to_string(), "list".to_string(), 3)]
        );
    }

    #[test]
    fn status_of_a_directory_without_state_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let err = Store::open_existing(dir.path()).err().unwrap();
        assert!(err.to_string().contains("no job state"), "{err}");
    }
}
