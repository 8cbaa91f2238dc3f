//! A worker's claims on a shared job's pending items.

use std::time::Duration;

use super::conn::{Conn, Prepared};
use super::{existing_job, row_at, unfinished, PgLocation};
use crate::store::{Row, StoreError, Unfinished};

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
        let name = owner.to_string();
        conn.call(move |c| {
            c.execute(
                "INSERT INTO frontier (job, owner, past) VALUES ($1, $2, 0)
                 ON CONFLICT DO NOTHING",
                &[&job, &name],
            )
            .map(drop)
        })?;
        Ok(Claims {
            conn,
            job,
            owner: owner.to_string(),
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
