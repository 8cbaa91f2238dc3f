//! `haul status DIR`: what the job state of an output directory says, what a
//! re-run would do, and the manifest and failed list written after the fact.
//!
//! Everything comes from one pass over the store's rows, so the report of a
//! million-item job costs a scan, not a million lookups.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{human_bytes, ReportError};
use crate::store::{ItemRecord, JobStore, State, Store, StoreError};

/// Why `status` could not answer.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A report file could not be written.
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// Failures of one reason on one host.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FailureGroup {
    /// Failure group (`HTTP 404 Not Found`, `timeout`…).
    pub reason: String,
    /// `host:port`.
    pub host: String,
    /// Items.
    pub count: u64,
}

/// One host's items.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct HostFigures {
    /// `host:port`.
    pub host: String,
    /// Items recorded.
    pub items: u64,
    /// Downloaded.
    pub ok: u64,
    /// Failed.
    pub failed: u64,
    /// Not finished.
    pub pending: u64,
    /// Bytes downloaded.
    pub bytes: u64,
    /// 429 and 503 answers, all runs.
    pub throttled: u64,
}

/// Hosts `haul status` lists, most items first; the JSON has this many, the
/// text a few.
const HOSTS_LISTED: usize = 100;
const HOSTS_SHOWN: usize = 10;

/// What running the same command again would do.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Rerun {
    /// Items never finished: fetched again.
    pub fetch: u64,
    /// Of those (and of the retries), partial files that can resume.
    pub resume: u64,
    /// Transient failures: tried again.
    pub retry: u64,
    /// Done and still on disk (not checked here): skipped without a request.
    pub skip_done: u64,
    /// Files that were there before the job: skipped.
    pub skip_existing: u64,
    /// Permanent failures: not retried unless `--retry-failed`.
    pub skip_failed: u64,
}

/// The state of a job.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct JobStatus {
    /// Items recorded.
    pub items: u64,
    /// Downloaded.
    pub ok: u64,
    /// Skipped (file existed).
    pub skipped: u64,
    /// Failed.
    pub failed: u64,
    /// Not finished.
    pub pending: u64,
    /// Bytes downloaded.
    pub bytes: u64,
    /// Runs of the job so far.
    pub runs: u64,
    /// 429 and 503 answers, all items, all runs.
    pub throttled: u64,
    /// Failures by reason and host, most first.
    pub failures: Vec<FailureGroup>,
    /// Hosts with the most items, most first (at most 100).
    pub hosts: Vec<HostFigures>,
    /// Hosts in the job.
    pub hosts_total: u64,
    /// For a shared job, each worker's share.
    pub workers: Vec<crate::store::WorkerFigures>,
    /// What a re-run would do.
    pub rerun: Rerun,
}

type Sink = Option<(PathBuf, BufWriter<fs_err::File>, super::Staged)>;

fn open_sink(path: &Option<PathBuf>) -> Result<Sink, ReportError> {
    path.as_ref()
        .map(|p| super::Staged::create(p).map(|(staged, w)| (p.clone(), w, staged)))
        .transpose()
}

fn write_line(sink: &mut Sink, line: &str) -> Result<(), ReportError> {
    if let Some((path, w, _)) = sink {
        writeln!(w, "{line}").map_err(|source| ReportError {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| {
            let host = u.host_str()?.to_string();
            Some(format!("{host}:{}", u.port_or_known_default().unwrap_or(0)))
        })
        .unwrap_or_else(|| "?".into())
}

/// Reads the job state of `dir`, writing the manifest and failed list on the
/// way when asked.
pub fn load(
    dir: &Path,
    report: &Option<PathBuf>,
    failed: &Option<PathBuf>,
) -> Result<JobStatus, StatusError> {
    load_from(Box::new(Store::open_existing(dir)?), report, failed)
}

/// [`load`] from an open store.
fn load_from(
    store: Box<dyn JobStore>,
    report: &Option<PathBuf>,
    failed: &Option<PathBuf>,
) -> Result<JobStatus, StatusError> {
    let mut report = open_sink(report)?;
    let mut failed_list = open_sink(failed)?;
    let mut st = JobStatus::default();
    let mut groups: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut hosts: HashMap<String, HostFigures> = HashMap::new();
    let mut sink_error = None;
    st.runs = store.runs()?;
    store.each_item(&mut |r: ItemRecord| {
        st.items += 1;
        st.throttled += u64::from(r.throttled);
        let host_name = host_of(&r.url);
        let host = match hosts.get_mut(&host_name) {
            Some(h) => h,
            None => hosts
                .entry(host_name.clone())
                .or_insert_with(|| HostFigures {
                    host: host_name.clone(),
                    ..HostFigures::default()
                }),
        };
        host.items += 1;
        host.throttled += u64::from(r.throttled);
        match r.state {
            State::Ok | State::Saved => {
                st.ok += 1;
                st.bytes += r.bytes;
                st.rerun.skip_done += 1;
                host.ok += 1;
                host.bytes += r.bytes;
            }
            State::Skipped => {
                st.skipped += 1;
                st.rerun.skip_existing += 1;
            }
            State::Failed => {
                st.failed += 1;
                host.failed += 1;
                let reason = r.reason.clone().unwrap_or_else(|| "failed".into());
                *groups.entry((reason, host_name)).or_default() += 1;
                if r.permanent {
                    st.rerun.skip_failed += 1;
                } else {
                    st.rerun.retry += 1;
                    st.rerun.resume += u64::from(r.resumable);
                }
            }
            State::Pending => {
                st.pending += 1;
                host.pending += 1;
                st.rerun.fetch += 1;
                st.rerun.resume += u64::from(r.resumable);
            }
        }
        if report.is_some() {
            // A saved file is whole and in place: done, as a run reports it.
            let status = match r.state {
                State::Ok | State::Saved => "ok",
                other => other.as_str(),
            };
            let line = serde_json::json!({
                "url": r.url,
                "path": r.path,
                "status": status,
                "http_status": r.http_status,
                "bytes": r.bytes,
                "sha256": r.sha256,
                "attempts": r.attempts,
                "throttled": r.throttled,
                "error": r.error,
                "input": r.input,
                "line": r.line,
            });
            if let Err(e) = write_line(&mut report, &line.to_string()) {
                sink_error.get_or_insert(e);
            }
        }
        if r.state == State::Failed {
            if let Err(e) = write_line(&mut failed_list, &r.url) {
                sink_error.get_or_insert(e);
            }
        }
    })?;
    if let Some(e) = sink_error {
        return Err(e.into());
    }
    for (path, mut w, staged) in [report, failed_list].into_iter().flatten() {
        w.flush().map_err(|source| ReportError {
            path: path.clone(),
            source,
        })?;
        staged.commit()?;
    }
    st.failures = groups
        .into_iter()
        .map(|((reason, host), count)| FailureGroup {
            reason,
            host,
            count,
        })
        .collect();
    st.failures
        .sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    st.hosts_total = hosts.len() as u64;
    st.hosts = hosts.into_values().collect();
    st.hosts
        .sort_by(|a, b| b.items.cmp(&a.items).then_with(|| a.host.cmp(&b.host)));
    st.hosts.truncate(HOSTS_LISTED);
    st.workers = store.per_worker()?;
    Ok(st)
}

/// The text `haul status` prints.
pub fn render(dir: &Path, st: &JobStatus) -> String {
    render_at(&dir.display().to_string(), st)
}

fn render_at(at: &str, st: &JobStatus) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "job in {} ({} items, {} run{})",
        at,
        st.items,
        st.runs,
        if st.runs == 1 { "" } else { "s" }
    );
    let _ = writeln!(s, "  done     {:>8}  {}", st.ok, human_bytes(st.bytes));
    let _ = writeln!(s, "  skipped  {:>8}  (file was already there)", st.skipped);
    let _ = writeln!(s, "  failed   {:>8}", st.failed);
    let _ = writeln!(s, "  pending  {:>8}", st.pending);
    if st.throttled > 0 {
        let _ = writeln!(
            s,
            "  throttled {:>7}  answers of 429 or 503 (the server asked haul to slow down)",
            st.throttled
        );
    }
    if st.hosts_total > 1 || st.throttled > 0 {
        let _ = writeln!(
            s,
            "hosts ({}):\n  {:>8} {:>8} {:>8} {:>8} {:>9}  host",
            st.hosts_total, "items", "done", "failed", "pending", "throttled"
        );
        for h in st.hosts.iter().take(HOSTS_SHOWN) {
            let _ = writeln!(
                s,
                "  {:>8} {:>8} {:>8} {:>8} {:>9}  {}",
                h.items, h.ok, h.failed, h.pending, h.throttled, h.host
            );
        }
        let more = st.hosts_total.saturating_sub(HOSTS_SHOWN as u64);
        if more > 0 {
            let _ = writeln!(s, "  … and {more} more (--json lists {HOSTS_LISTED})");
        }
    }
    if !st.failures.is_empty() {
        let _ = writeln!(s, "failures by reason and host:");
        for g in &st.failures {
            let _ = writeln!(s, "  {:>8}  {}  {}", g.count, g.reason, g.host);
        }
    }
    if !st.workers.is_empty() {
        let _ = writeln!(s, "workers ({}):", st.workers.len());
        for w in &st.workers {
            let _ = writeln!(
                s,
                "  {:>8} done  {:>8} failed  {:>10}  {}",
                w.ok,
                w.failed,
                human_bytes(w.bytes),
                w.worker
            );
        }
    }
    let r = &st.rerun;
    let _ = writeln!(s, "running the same command again would:");
    let _ = writeln!(
        s,
        "  fetch    {:>8}  not finished ({} can resume a partial file)",
        r.fetch + r.retry,
        r.resume
    );
    let _ = writeln!(s, "  skip     {:>8}  done (if still on disk)", r.skip_done);
    let _ = writeln!(
        s,
        "  skip     {:>8}  already there before the job",
        r.skip_existing
    );
    let _ = writeln!(
        s,
        "  skip     {:>8}  failed permanently (--retry-failed retries them)",
        r.skip_failed
    );
    s
}

/// Runs `haul status` on `dir`: text, or JSON with `json`; writes the
/// manifest and the failed list when asked.
pub fn run(
    dir: &Path,
    json: bool,
    report: &Option<PathBuf>,
    failed: &Option<PathBuf>,
) -> Result<String, StatusError> {
    let st = load(dir, report, failed)?;
    Ok(text(&dir.display().to_string(), &st, json))
}

/// [`run`] for a job whose state is in PostgreSQL (`postgres://…`),
/// under the name `job`: the whole job, whichever workers did its items.
pub fn run_shared(
    url: &str,
    job: &str,
    json: bool,
    report: &Option<PathBuf>,
    failed: &Option<PathBuf>,
) -> Result<String, StatusError> {
    let loc = crate::store::PgLocation {
        url: url.to_string(),
        job: job.to_string(),
    };
    let store = crate::store::PgStore::open_existing(&loc)?;
    let st = load_from(Box::new(store), report, failed)?;
    Ok(text(&loc.display(), &st, json))
}

fn text(at: &str, st: &JobStatus, json: bool) -> String {
    if json {
        // Serializing plain numbers and strings cannot fail.
        serde_json::to_string_pretty(st).unwrap_or_default() + "\n"
    } else {
        render_at(at, st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Finish, State};

    #[test]
    fn status_of_a_mixed_job() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let add = |url: &str, path: &str, state: State, f: Finish| {
            let id = store
                .insert(url, "urls.txt", 1, Some(path), State::Pending)
                .unwrap();
            if state != State::Pending {
                store.finish(id, state, &f).unwrap();
            }
            id
        };
        let ok = |bytes| Finish {
            bytes,
            attempts: 1,
            ..Finish::default()
        };
        add("http://a.test/1", "1", State::Ok, ok(1500));
        add("http://a.test/2", "2", State::Ok, ok(2500));
        add("http://a.test/3", "3", State::Skipped, Finish::default());
        let fail = |reason: &str, permanent| Finish {
            attempts: 6,
            reason: Some(reason.into()),
            error: Some(reason.into()),
            permanent,
            ..Finish::default()
        };
        add(
            "http://a.test/4",
            "4",
            State::Failed,
            fail("HTTP 404 Not Found", true),
        );
        add(
            "http://b.test:8080/5",
            "5",
            State::Failed,
            fail("HTTP 404 Not Found", true),
        );
        add(
            "http://b.test:8080/6",
            "6",
            State::Failed,
            Finish {
                throttled: 2,
                ..fail("timeout", false)
            },
        );
        let p = add("http://a.test/7", "7", State::Pending, Finish::default());
        store.started(p, Some("\"e\""), None, None).unwrap();
        add("http://a.test/8", "8", State::Pending, Finish::default());
        drop(store);

        let report = dir.path().join("r.jsonl");
        let failed = dir.path().join("failed.txt");
        let st = load(dir.path(), &Some(report.clone()), &Some(failed.clone())).unwrap();
        insta::assert_snapshot!(render(Path::new("out"), &st), @r"
        job in out (8 items, 1 run)
          done            2  4.0 kB
          skipped         1  (file was already there)
          failed          3
          pending         2
          throttled       2  answers of 429 or 503 (the server asked haul to slow down)
        hosts (2):
             items     done   failed  pending throttled  host
                 6        2        1        2         0  a.test:80
                 2        0        2        0         2  b.test:8080
        failures by reason and host:
                 1  HTTP 404 Not Found  a.test:80
                 1  HTTP 404 Not Found  b.test:8080
                 1  timeout  b.test:8080
        running the same command again would:
          fetch           3  not finished (1 can resume a partial file)
          skip            2  done (if still on disk)
          skip            1  already there before the job
          skip            2  failed permanently (--retry-failed retries them)
        ");
        assert_eq!(std::fs::read_to_string(report).unwrap().lines().count(), 8);
        assert_eq!(
            std::fs::read_to_string(failed).unwrap(),
            "http://a.test/4\nhttp://b.test:8080/5\nhttp://b.test:8080/6\n"
        );
    }
}
