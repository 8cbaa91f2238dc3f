//! What the user gets back: the per-item outcome, the JSON Lines manifest,
//! the list of failed URLs, the progress display and the closing summary.
//!
//! Outcomes flow one way, from the transfer tasks over a channel to one
//! recorder thread that owns every output file, so writing the manifest never
//! blocks the async runtime and never needs a lock.

mod progress;
mod reporter;
pub mod status;

pub use progress::{Progress, ProgressMode, TransferBar};
pub use reporter::{
    Console, HostWindow, Level, Reporter, SharedReporter, Silent, Snapshot, Summary,
};

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::source::table::{Format, Row, RowWriter};
use crate::source::Origin;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// How an item ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Downloaded and renamed into place.
    Ok,
    /// Not fetched: the file already existed, or the URL was a duplicate.
    Skipped,
    /// Gave up: a permanent error, retries exhausted, bad input or interrupted.
    Failed,
}

/// What an outcome is of, when it is not a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum OutcomeKind {
    /// A crawled page: read for what it shows, not saved.
    Page,
}

/// The record of one input item: one manifest line.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Outcome {
    /// The URL (or the raw input text when it was not a valid URL).
    pub url: String,
    /// Destination relative to the output directory.
    pub path: Option<String>,
    /// How it ended.
    pub status: Status,
    /// Last HTTP status received.
    pub http_status: Option<u16>,
    /// Bytes written to the file.
    pub bytes: u64,
    /// SHA-256 of the file, hex.
    pub sha256: Option<String>,
    /// Requests made for the item.
    pub attempts: u32,
    /// Time from first request to outcome.
    pub elapsed_ms: u64,
    /// What went wrong, with the detail a user needs.
    pub error: Option<String>,
    /// Input it came from.
    pub input: String,
    /// Line of that input.
    pub line: u64,
    /// Short cause used to group failures in the summary (`HTTP 404`,
    /// `timeout`…), or why an item was skipped (`exists`, `duplicate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Times the host answered 429 or 503 to this item (it then waited, and
    /// its host's window narrowed).
    #[serde(skip_serializing_if = "is_zero")]
    pub throttled: u32,
    /// What happened to a partial file: resumed, or restarted and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// `page` for a crawled page (files have no `kind`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<OutcomeKind>,
    /// For a file found by a crawl: the page it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    /// For a file found by a crawl: that page's title; for a page: its own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_title: Option<String>,
    /// For a page: file URLs and links found on it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<Found>,
    /// The item's metadata document (`--meta-url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Value>,
    /// Input columns copied in (`--keep-columns`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub columns: Option<serde_json::Map<String, serde_json::Value>>,
    /// The table row the item came from, for the failed list.
    #[serde(skip)]
    pub(crate) row: Option<std::sync::Arc<crate::source::RowRef>>,
    /// Job-state row, when the item has one.
    #[serde(skip)]
    pub(crate) id: Option<i64>,
    /// The job state already says this; nothing to write.
    #[serde(skip)]
    pub(crate) recorded: bool,
    /// The failure will not go away by retrying.
    #[serde(skip)]
    pub permanent: bool,
    /// The item's URL came earlier in this run (skipped, `duplicate`).
    #[serde(skip)]
    pub(crate) duplicate: bool,
}

impl Outcome {
    /// A blank outcome for an item read at `origin`.
    pub(crate) fn new(url: String, origin: &Origin, status: Status) -> Self {
        Self {
            url,
            path: None,
            status,
            http_status: None,
            bytes: 0,
            sha256: None,
            attempts: 0,
            elapsed_ms: 0,
            error: None,
            input: origin.input.to_string(),
            line: origin.line,
            reason: None,
            note: None,
            kind: None,
            page: None,
            page_title: None,
            found: None,
            meta: None,
            columns: None,
            row: None,
            id: None,
            recorded: false,
            permanent: false,
            duplicate: false,
            throttled: 0,
        }
    }
}

/// What a crawled page held.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Found {
    /// Files selected.
    pub files: u64,
    /// Links followed (in scope and within the depth).
    pub links: u64,
    /// Links and files left out: out of scope, too deep, or disallowed.
    pub skipped: u64,
}

/// Where the recorder writes.
#[derive(Debug, Clone, Default)]
pub struct ReportFiles {
    /// JSON Lines manifest.
    pub manifest: Option<PathBuf>,
    /// Failed URLs, one per line.
    pub failed: Option<PathBuf>,
}

/// Totals for the closing summary and the exit status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Items downloaded.
    pub ok: u64,
    /// Items skipped.
    pub skipped: u64,
    /// Items failed.
    pub failed: u64,
    /// Input rows that could not become an item (not a URL, unreadable):
    /// failed too, but not items of the job state, so counted apart, as
    /// `haul status` does not see them.
    pub bad: u64,
    /// Bytes written by downloaded items (whole files, resumed ones too).
    pub bytes: u64,
    /// Bytes received over the network in this run (a resumed file counts
    /// only what came now): what the closing rate is of.
    pub received: u64,
    /// Failures by reason.
    pub failures: BTreeMap<String, u64>,
    /// Skips by reason.
    pub skips: BTreeMap<String, u64>,
}

/// A report file that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write {path}: {source}")]
pub struct ReportError {
    /// The report file.
    pub path: PathBuf,
    /// What the OS said.
    pub source: io::Error,
}

/// Owns the manifest and failed-list writers; fed outcomes one at a time.
pub struct Recorder {
    manifest: Option<(PathBuf, Manifest)>,
    failed: Option<(PathBuf, Failed)>,
    /// The files above, renamed into place by [`Recorder::finish`].
    staged: Vec<Staged>,
    /// Rows already in the failed list (input, line).
    failed_rows: std::collections::HashSet<(String, u64)>,
    tally: Tally,
    line: Vec<u8>,
}

/// The manifest's format, by its file's extension.
enum Manifest {
    Jsonl(BufWriter<fs_err::File>),
    Csv(Box<csv::Writer<BufWriter<fs_err::File>>>, Vec<String>),
}

/// The failed list: URLs, or the input's own rows so it can be fed back
/// with `-i` (decided by the first failed item).
enum Failed {
    Undecided(BufWriter<fs_err::File>),
    Urls(BufWriter<fs_err::File>),
    Rows(Box<RowWriter>),
    /// Only while switching from `Undecided`.
    Switching,
}

/// The reason of a page a `--refresh` found unchanged (HTTP 304).
pub const UNCHANGED: &str = "unchanged";

/// The manifest's CSV columns, before any `--keep-columns`.
const CSV_FIELDS: [&str; 14] = [
    "url",
    "path",
    "status",
    "http_status",
    "bytes",
    "sha256",
    "attempts",
    "throttled",
    "elapsed_ms",
    "error",
    "input",
    "line",
    "reason",
    "note",
];

/// A report file being written under a hidden name beside its own, so the
/// file it replaces (which may be this job's own input, fed back) is
/// untouched until the report is complete, and a report is never seen half
/// written. [`Staged::commit`] renames it into place; dropped uncommitted,
/// it is removed.
pub struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

impl Staged {
    /// Creates the hidden file for `dest` (and `dest`'s directory).
    pub fn create(
        dest: &std::path::Path,
    ) -> Result<(Staged, BufWriter<fs_err::File>), ReportError> {
        let err = |source| ReportError {
            path: dest.to_path_buf(),
            source,
        };
        let parent = dest.parent().filter(|p| !p.as_os_str().is_empty());
        if let Some(parent) = parent {
            fs_err::create_dir_all(parent).map_err(err)?;
        }
        let name = dest.file_name().ok_or_else(|| {
            err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a file name",
            ))
        })?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".haul-{}.tmp", std::process::id()));
        let tmp = parent.map_or_else(|| PathBuf::from(&tmp_name), |p| p.join(&tmp_name));
        let file = fs_err::File::create(&tmp).map_err(err)?;
        let staged = Staged {
            tmp,
            dest: dest.to_path_buf(),
            committed: false,
        };
        Ok((staged, BufWriter::with_capacity(1 << 16, file)))
    }

    /// Renames the finished file into place (its writer flushed first).
    pub fn commit(mut self) -> Result<(), ReportError> {
        self.committed = true;
        fs_err::rename(&self.tmp, &self.dest).map_err(|source| ReportError {
            path: self.dest.clone(),
            source,
        })
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

fn create(
    path: &std::path::Path,
    staged: &mut Vec<Staged>,
) -> Result<BufWriter<fs_err::File>, ReportError> {
    let (s, w) = Staged::create(path)?;
    staged.push(s);
    Ok(w)
}

fn is_ext(path: &std::path::Path, ext: &str) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case(ext))
}

impl Recorder {
    /// Creates the report files now, so an unwritable path fails the job
    /// before any transfer starts. A manifest named `*.csv` is CSV (with
    /// `keep` columns after the standard ones), any other JSON Lines.
    pub fn create(files: &ReportFiles, keep: &[String]) -> Result<Self, ReportError> {
        let mut staged = Vec::new();
        let manifest = match &files.manifest {
            None => None,
            Some(path) => {
                let w = create(path, &mut staged)?;
                let m = if is_ext(path, "csv") {
                    let mut csv = csv::Writer::from_writer(w);
                    let header = CSV_FIELDS
                        .iter()
                        .copied()
                        .chain(keep.iter().map(String::as_str));
                    csv.write_record(header).map_err(|e| ReportError {
                        path: path.clone(),
                        source: io::Error::other(e),
                    })?;
                    Manifest::Csv(Box::new(csv), keep.to_vec())
                } else {
                    Manifest::Jsonl(w)
                };
                Some((path.clone(), m))
            }
        };
        let failed = match &files.failed {
            None => None,
            Some(path) => Some((path.clone(), Failed::Undecided(create(path, &mut staged)?))),
        };
        Ok(Self {
            manifest,
            failed,
            staged,
            failed_rows: Default::default(),
            tally: Tally::default(),
            line: Vec::with_capacity(512),
        })
    }

    /// Records one outcome.
    pub fn record(&mut self, o: &Outcome) -> Result<(), ReportError> {
        let reason = o.reason.clone().unwrap_or_else(|| "other".to_string());
        match o.status {
            Status::Ok => {
                self.tally.ok += 1;
                self.tally.bytes += o.bytes;
            }
            Status::Skipped => {
                self.tally.skipped += 1;
                *self.tally.skips.entry(reason).or_default() += 1;
            }
            Status::Failed if o.id.is_none() => {
                self.tally.bad += 1;
                *self.tally.failures.entry(reason).or_default() += 1;
            }
            Status::Failed => {
                self.tally.failed += 1;
                *self.tally.failures.entry(reason).or_default() += 1;
            }
        }
        if let Some((path, m)) = &mut self.manifest {
            let err = |e: io::Error| ReportError {
                path: path.clone(),
                source: e,
            };
            match m {
                Manifest::Jsonl(w) => {
                    self.line.clear();
                    // Serializing plain strings and numbers cannot fail.
                    serde_json::to_writer(&mut self.line, o)
                        .map_err(|e| err(io::Error::other(e)))?;
                    self.line.push(b'\n');
                    w.write_all(&self.line).map_err(err)?;
                }
                Manifest::Csv(w, keep) => {
                    let opt = |v: Option<String>| v.unwrap_or_default();
                    let mut rec: Vec<String> = vec![
                        o.url.clone(),
                        opt(o.path.clone()),
                        format!("{:?}", o.status).to_lowercase(),
                        opt(o.http_status.map(|c| c.to_string())),
                        o.bytes.to_string(),
                        opt(o.sha256.clone()),
                        o.attempts.to_string(),
                        o.throttled.to_string(),
                        o.elapsed_ms.to_string(),
                        opt(o.error.clone()),
                        o.input.clone(),
                        o.line.to_string(),
                        opt(o.reason.clone()),
                        opt(o.note.clone()),
                    ];
                    for k in keep.iter() {
                        let v = o.columns.as_ref().and_then(|c| c.get(k));
                        rec.push(match v {
                            Some(serde_json::Value::String(s)) => s.clone(),
                            Some(serde_json::Value::Null) | None => String::new(),
                            Some(other) => other.to_string(),
                        });
                    }
                    w.write_record(&rec).map_err(|e| err(io::Error::other(e)))?;
                }
            }
        }
        if o.status == Status::Failed {
            if let Some((path, f)) = &mut self.failed {
                write_failed(path, f, o, &mut self.failed_rows).map_err(|source| ReportError {
                    path: path.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// Flushes the files, renames them into place and returns the totals.
    pub fn finish(self) -> Result<Tally, ReportError> {
        if let Some((path, m)) = self.manifest {
            let done = match m {
                Manifest::Jsonl(mut w) => w.flush(),
                Manifest::Csv(mut w, _) => w.flush(),
            };
            done.map_err(|source| ReportError {
                path: path.clone(),
                source,
            })?;
        }
        if let Some((path, f)) = self.failed {
            let done = match f {
                Failed::Undecided(mut w) | Failed::Urls(mut w) => w.flush(),
                Failed::Rows(w) => w.finish(),
                Failed::Switching => Ok(()),
            };
            done.map_err(|source| ReportError {
                path: path.clone(),
                source,
            })?;
        }
        for s in self.staged {
            s.commit()?;
        }
        Ok(self.tally)
    }
}

/// Writes one failed item: its input row when it came from a table (and
/// the list is not named `*.txt`), else its URL.
fn write_failed(
    path: &std::path::Path,
    f: &mut Failed,
    o: &Outcome,
    seen: &mut std::collections::HashSet<(String, u64)>,
) -> io::Result<()> {
    if let Failed::Undecided(_) = f {
        let table = o
            .row
            .as_ref()
            .filter(|r| r.format != Format::Txt && !is_ext(path, "txt"));
        let Failed::Undecided(w) = std::mem::replace(f, Failed::Switching) else {
            unreachable!("checked above")
        };
        *f = match table {
            Some(r) => Failed::Rows(Box::new(RowWriter::from_writer(
                Box::new(w),
                r.format,
                r.header.clone(),
            )?)),
            None => Failed::Urls(w),
        };
    }
    match f {
        Failed::Rows(w) => match &o.row {
            // A row with several URLs is written once, however many failed.
            Some(_) if !seen.insert((o.input.clone(), o.line)) => Ok(()),
            Some(r) => {
                let fallback;
                let row = match &r.row {
                    Some(row) => row.as_ref(),
                    None => {
                        fallback = Row::Table {
                            columns: std::sync::Arc::from(Vec::new()),
                            values: Vec::new(),
                        };
                        &fallback
                    }
                };
                w.write(r.raw.as_deref(), row, &o.url)
            }
            None => {
                let row = Row::Table {
                    columns: std::sync::Arc::from(vec!["url".to_string()]),
                    values: vec![o.url.clone()],
                };
                w.write(None, &row, &o.url)
            }
        },
        Failed::Urls(w) | Failed::Undecided(w) => writeln!(w, "{}", o.url),
        Failed::Switching => Ok(()),
    }
}

/// Formats a byte count for people: `1.5 MB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A rate for people: no decimals from 10 up, one below (so 0.4 files/s
/// does not read as 0).
pub fn per_second(v: f64) -> String {
    if v >= 10.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The closing summary, several lines, for stderr.
pub fn summary(t: &Tally, elapsed: Duration, interrupted: bool) -> String {
    let secs = elapsed.as_secs_f64().max(1e-6);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: {} done, {} skipped, {} failed{}; {} in {:.2} s ({} files/s, {})",
        if interrupted {
            "interrupted"
        } else {
            "finished"
        },
        t.ok,
        t.skipped,
        t.failed,
        match t.bad {
            0 => String::new(),
            1 => ", 1 bad input row".into(),
            n => format!(", {n} bad input rows"),
        },
        human_bytes(t.received),
        secs,
        per_second(t.ok as f64 / secs),
        format_args!("{}/s", human_bytes((t.received as f64 / secs) as u64)),
    );
    for (reason, n) in &t.skips {
        let _ = writeln!(s, "  skipped {n:>6}  {reason}");
    }
    for (reason, n) in &t.failures {
        let _ = writeln!(s, "  failed  {n:>6}  {reason}");
    }
    if interrupted {
        let _ = writeln!(
            s,
            "  what did not start is pending: run the same command again to carry on"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_rounds() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1500), "1.5 kB");
        assert_eq!(human_bytes(2_500_000), "2.5 MB");
    }

    #[test]
    fn summary_groups_failures() {
        let mut t = Tally {
            ok: 3,
            skipped: 1,
            failed: 2,
            bytes: 3000,
            received: 3000,
            ..Tally::default()
        };
        t.failures.insert("HTTP 404".into(), 2);
        t.skips.insert("exists".into(), 1);
        insta::assert_snapshot!(summary(&t, Duration::from_secs(2), false), @r"
        finished: 3 done, 1 skipped, 2 failed; 3.0 kB in 2.00 s (1.5 files/s, 1.5 kB/s)
          skipped      1  exists
          failed       2  HTTP 404
        ");
    }
}
