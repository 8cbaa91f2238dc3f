//! One transfer: the request, the response checks, and the body streamed to
//! `NAME.part` and renamed to `NAME` once complete.
//!
//! The whole job shares one [`crate::http::Client`] (keep-alive pools,
//! HTTP/2 when the server offers it over TLS, no decompression, so the bytes
//! on disk are the bytes the server sent and byte offsets stay true for
//! range resume).
//!
//! Disk work never runs on the async runtime. Body chunks are gathered in
//! memory up to [`FLUSH_AT`] and written on a [`crate::disk`] thread while
//! the next chunks arrive. A body that arrives whole within [`FLUSH_AT`]
//! costs one disk job that writes an unnamed `O_TMPFILE` and links it in
//! under its final name; larger ones go through `NAME.part`, kept for resume.
//! The SHA-256 is computed on the disk thread too.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{
    HeaderMap, HeaderValue, CONTENT_DISPOSITION, CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED,
    RANGE, RETRY_AFTER,
};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use crate::beneath::Root;
use crate::http::{Client, Response};
use crate::ledger::{Claimed, Event};
use crate::naming::{self, Dest, NameError};
use crate::plan::{Item, Validators};
use crate::report::{Progress, TransferBar};
use crate::schedule::parse_retry_after;

/// Bytes gathered in memory before they are handed to a disk write.
pub const FLUSH_AT: usize = 256 * 1024;

/// Longest a body that goes to disk anyway keeps what arrived in memory: a
/// crash (or `kill -9`) costs at most about this much of each transfer,
/// which on a slow link is far less than [`FLUSH_AT`].
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Why one attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No connection could be made.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The host name did not resolve.
    #[error("cannot resolve the host name: {detail}")]
    Dns {
        /// What the resolver said.
        detail: String,
        /// The resolver may answer next time (`EAI_AGAIN`), unlike a name
        /// that does not exist.
        transient: bool,
    },
    /// The TLS handshake failed: not a certificate problem (e.g. `https://`
    /// to a port that speaks plain HTTP).
    #[error("TLS handshake failed: {0} (is the port plain HTTP? then the URL wants http://)")]
    Tls(String),
    /// The server's certificate is not trusted.
    #[error(
        "the server's certificate is not trusted: {0}; --cacert FILE trusts a private CA \
         or a self-signed certificate, --insecure skips the check"
    )]
    Certificate(String),
    /// The server went quiet for longer than the timeout.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The connection broke during the exchange.
    #[error("connection broke: {0}")]
    Network(String),
    /// Fewer bytes arrived than `Content-Length` promised.
    #[error("body ended after {got} of {expected} bytes")]
    Truncated {
        /// Bytes received.
        got: u64,
        /// Bytes promised.
        expected: u64,
    },
    /// The server answered with an error status.
    #[error("HTTP {code}{}", canonical(*.code))]
    Status {
        /// The status code.
        code: u16,
        /// How long the server asked us to wait.
        retry_after: Option<Duration>,
    },
    /// A redirect could not be followed.
    #[error("redirect failed: {0}")]
    Redirect(String),
    /// The request could not be made at all.
    #[error("bad request: {0}")]
    Request(String),
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Disk {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// No file name could be made.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The body is not of an accepted type (`--accept`).
    #[error("unexpected content: {0}")]
    Unexpected(String),
    /// The body is larger than `--max-size`.
    #[error("larger than --max-size ({limit} bytes)")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The body is smaller than `--min-size`.
    #[error("smaller than --min-size ({limit} bytes): {size} bytes")]
    TooSmall {
        /// The limit.
        limit: u64,
        /// The body's size.
        size: u64,
    },
    /// The item's metadata document could not be had.
    #[error("metadata {url}: {source}")]
    Meta {
        /// The metadata URL.
        url: String,
        /// Why.
        source: Box<FetchError>,
    },
    /// The file's SHA-256 is not the one its row gave (`--checksum-column`).
    #[error("checksum mismatch: expected sha256 {expected}, got {got}")]
    Checksum {
        /// From the input row.
        expected: String,
        /// Of the body received.
        got: String,
    },
    /// The server sent part of the file to a request for all of it.
    #[error("the server sent only part of the file ({0}) to a request for all of it")]
    PartialAnswer(String),
    /// robots.txt does not allow the request.
    #[error("{0}")]
    Disallowed(String),
    /// The job was interrupted (Ctrl-C) during the transfer.
    #[error("interrupted")]
    Interrupted,
}

fn canonical(code: u16) -> String {
    StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map(|r| format!(" {r}"))
        .unwrap_or_default()
}

impl FetchError {
    /// Whether the disk is full (or the quota spent): not worth another
    /// attempt in this run, nor a permanent failure of the item.
    pub fn is_out_of_space(&self) -> bool {
        match self {
            Self::Disk { source, .. } => is_out_of_space(source),
            _ => false,
        }
    }

    /// Whether another attempt may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect(_) | Self::Timeout(_) | Self::Network(_) | Self::Truncated { .. } => true,
            Self::Dns { transient, .. } => *transient,
            Self::Tls(_) | Self::Certificate(_) => false,
            Self::Status { code, .. } => matches!(code, 408 | 429 | 500..=599),
            Self::Meta { source, .. } => source.is_transient(),
            Self::Redirect(_)
            | Self::Request(_)
            | Self::Disk { .. }
            | Self::Name(_)
            | Self::Unexpected(_)
            | Self::PartialAnswer(_)
            | Self::Disallowed(_)
            | Self::Checksum { .. }
            | Self::TooLarge { .. }
            | Self::TooSmall { .. }
            | Self::Interrupted => false,
        }
    }

    /// The wait the server asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Status { retry_after, .. } => *retry_after,
            Self::Meta { source, .. } => source.retry_after(),
            _ => None,
        }
    }

    /// The HTTP status, if the failure was one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Status { code, .. } => Some(*code),
            Self::Meta { source, .. } => source.http_status(),
            _ => None,
        }
    }

    /// A short cause for grouping failures in the summary.
    pub fn reason(&self) -> String {
        match self {
            Self::Connect(_) => "connection refused or unreachable".into(),
            Self::Dns { .. } => "host name not found".into(),
            Self::Tls(_) => "TLS handshake failed".into(),
            Self::Certificate(_) => "untrusted certificate".into(),
            Self::Timeout(_) => "timeout".into(),
            Self::Network(_) => "connection broke".into(),
            Self::Truncated { .. } => "truncated body".into(),
            Self::Status { code, .. } => format!("HTTP {code}{}", canonical(*code)),
            Self::Redirect(_) => "redirect".into(),
            Self::Request(_) => "bad request".into(),
            Self::Disk { source, .. } if is_out_of_space(source) => "no space left".into(),
            Self::Disk { .. } => "disk".into(),
            Self::Name(_) => "bad name".into(),
            Self::Unexpected(t) => format!("unexpected content: {t}"),
            Self::PartialAnswer(_) => "partial answer".into(),
            Self::TooLarge { .. } => "too large".into(),
            Self::TooSmall { .. } => "too small".into(),
            Self::Meta { source, .. } => format!("metadata: {}", source.reason()),
            Self::Disallowed(_) => "disallowed by robots.txt".into(),
            Self::Checksum { .. } => "checksum mismatch".into(),
            Self::Interrupted => "interrupted".into(),
        }
    }
}

impl From<crate::http::HttpError> for FetchError {
    fn from(e: crate::http::HttpError) -> Self {
        use crate::http::HttpError as H;
        match e {
            H::Connect(s) => Self::Connect(s),
            H::Dns { detail, transient } => Self::Dns { detail, transient },
            H::Tls(s) => Self::Tls(s),
            H::Certificate(s) => Self::Certificate(s),
            H::Timeout(s) => Self::Timeout(s),
            H::Network(s) => Self::Network(s),
            H::Redirect(s) => Self::Redirect(s),
            H::Request(s) => Self::Request(s),
        }
    }
}

impl crate::schedule::Retryable for FetchError {
    fn broke_mid_exchange(&self) -> bool {
        matches!(self, Self::Network(_) | Self::Truncated { .. })
    }

    fn retry_after(&self) -> Option<Duration> {
        FetchError::retry_after(self)
    }
}

/// Whether an I/O error says the file system is full or the quota spent.
pub fn is_out_of_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// What an item carries from one attempt to the next.
#[derive(Debug)]
pub struct Target {
    /// Job-state row.
    pub id: i64,
    /// The URL.
    pub url: url::Url,
    /// 1-based item number.
    pub n: u64,
    /// Input line or row.
    pub row: u64,
    /// Where the file goes; `None` until the response names it. May change
    /// once, to the server's suggested name.
    pub dest: Option<Dest>,
    /// Whether `dest` is settled (no renaming after `Content-Disposition`).
    pub dest_fixed: bool,
    /// Bytes in the `.part` file that a request may resume from.
    pub part_len: u64,
    /// A partial was given up for a restart from zero: if the body then
    /// takes the in-memory path, the old `.part` is removed once it lands.
    pub stale_part: bool,
    /// Validators the partial was fetched under.
    pub validators: Option<Validators>,
    /// The item's metadata document (`--meta-url`).
    pub meta: Option<serde_json::Value>,
    /// What happened to the partial, for the report.
    pub note: Option<String>,
    /// File or page.
    pub kind: crate::source::Kind,
    /// The crawled page a file was found on.
    pub page: Option<Arc<crate::source::PageRef>>,
    /// The table row it came from.
    pub table_row: Option<Arc<crate::source::RowRef>>,
    /// The SHA-256 the file must have (`--checksum-column`), lower-case hex.
    pub expect_sha256: Option<String>,
    /// The transfer's slot in the limits while it is on the network; given
    /// back as soon as the body is in, so the next transfer does not wait
    /// for this one's disk work.
    pub slot: Option<crate::schedule::Permit>,
}

impl Target {
    /// The transfer state of a planned item.
    pub fn new(item: Item) -> Self {
        Self {
            id: item.id,
            n: item.n,
            row: item.origin.line,
            url: item.url,
            dest: item.dest,
            dest_fixed: item.dest_fixed,
            part_len: item.part_len,
            stale_part: false,
            validators: item.validators,
            meta: None,
            note: None,
            kind: item.kind,
            page: item.page,
            table_row: item.row,
            expect_sha256: None,
            slot: None,
        }
    }

    /// The fields `--name` and `--meta-url` templates see for this item.
    pub fn fields(&self, detected_ext: Option<&'static str>) -> crate::naming::ItemFields<'_> {
        crate::naming::ItemFields {
            url: &self.url,
            n: self.n,
            row: self.row,
            cols: self
                .table_row
                .as_deref()
                .and_then(crate::source::RowRef::fields),
            meta: self.meta.as_ref(),
            detected_ext,
            page: self.page.as_deref(),
        }
    }

    fn restart(&mut self, why: &str) {
        self.stale_part |= self.part_len > 0;
        self.part_len = 0;
        self.validators = None;
        self.note = Some(format!("restarted from zero: {why}"));
    }
}

/// A parsed `Content-Range: bytes START-END/TOTAL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
    /// The whole file's size, when given.
    pub total: Option<u64>,
}

/// Parses `Content-Range: bytes START-END/TOTAL`.
pub fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    if end < start || total.is_some_and(|t| end >= t) {
        return None;
    }
    Some(ContentRange { start, end, total })
}

/// Why a 206 answer to a resume is not the rest of the file we have the
/// start of: `None` when it is. A server that ignores `If-Range` answers
/// 206 whatever changed, so its validators and the total are checked here.
fn resume_mismatch(
    had: Option<&Validators>,
    range: Option<ContentRange>,
    part_len: u64,
    etag: Option<&str>,
    last_modified: Option<&str>,
) -> Option<&'static str> {
    let Some(range) = range else {
        return Some("the server's 206 had no valid Content-Range");
    };
    if range.start != part_len {
        return Some("the server answered a different range");
    }
    // Nothing recorded to compare with: the range is all there is to check.
    let had = had?;
    let differs = |old: Option<&String>, new: Option<&str>| matches!((old, new), (Some(o), Some(n)) if o != n);
    if differs(had.etag.as_ref(), etag) {
        return Some("the file changed on the server (its ETag differs)");
    }
    if differs(had.last_modified.as_ref(), last_modified) {
        return Some("the file changed on the server (its Last-Modified differs)");
    }
    if matches!((had.total, range.total), (Some(o), Some(n)) if o != n) {
        return Some("the file changed on the server (its size differs)");
    }
    None
}

/// A completed transfer.
#[derive(Debug)]
pub struct Fetched {
    /// HTTP status of the response.
    pub http_status: u16,
    /// Bytes in the file (including a resumed prefix).
    pub bytes: u64,
    /// SHA-256, hex, when it was computed.
    pub sha256: Option<String>,
}

/// What one attempt came to.
#[derive(Debug)]
pub enum Attempt {
    /// Saved.
    Saved(Fetched),
    /// The server named a file that already existed before the job.
    Exists(u16),
}

/// Everything a transfer needs, shared by all of them.
pub struct Fetcher {
    /// The job's HTTP client.
    pub client: Client,
    /// The ledger, for name claims and resume validators.
    pub ledger: tokio::sync::mpsc::UnboundedSender<Event>,
    /// Live counters.
    pub progress: Arc<Progress>,
    /// Content checks.
    pub rules: crate::check::Rules,
    /// How files are named.
    pub namer: crate::naming::Namer,
    /// The threads that write files.
    pub disk: crate::disk::Pool,
    /// The output directory, where every file operation happens.
    pub out: Arc<Root>,
    /// Compute each file's SHA-256. It is most of the CPU a small file costs
    /// on machines without SHA extensions, so it is done when something
    /// reads it: a manifest, a checksum column.
    pub hash: bool,
}

impl Fetcher {
    /// Makes one attempt at `target`.
    ///
    /// Cancelling `stop` ends the transfer at the next chunk and leaves the
    /// `.part` file; once the body is complete, the rename is not cancelled,
    /// so a file is either whole under its final name or not there.
    pub async fn attempt(
        &self,
        target: &mut Target,
        stop: &CancellationToken,
    ) -> Result<Attempt, FetchError> {
        // Twice at most: a resume the server turns down restarts at once.
        loop {
            let if_range = match (&target.validators, target.part_len) {
                (Some(v), n) if n > 0 => v.if_range().map(str::to_string),
                _ => None,
            };
            let mut extra = Vec::new();
            if let Some(v) = &if_range {
                let range = HeaderValue::from_str(&format!("bytes={}-", target.part_len));
                // A validator that is no header value is not one to resume on.
                if let (Ok(range), Ok(v)) = (range, HeaderValue::from_str(v)) {
                    extra = vec![(RANGE, range), (IF_RANGE, v)];
                }
            }
            let deadline = self.rules.max_time.map(|t| tokio::time::Instant::now() + t);
            let resp = tokio::select! {
                biased;
                _ = stop.cancelled() => return Err(FetchError::Interrupted),
                () = sleep_until(deadline) => return Err(self.over_time()),
                r = self.client.get(&target.url, &extra) => r?,
            };
            let status = resp.status();
            let headers = resp.headers();
            let etag = header_str(headers, ETAG);
            let last_modified = header_str(headers, LAST_MODIFIED);
            let mut append_from = 0;
            if if_range.is_some() {
                if status == StatusCode::PARTIAL_CONTENT {
                    let range = header_str(headers, CONTENT_RANGE)
                        .as_deref()
                        .and_then(parse_content_range);
                    if let Some(why) = resume_mismatch(
                        target.validators.as_ref(),
                        range,
                        target.part_len,
                        etag.as_deref(),
                        last_modified.as_deref(),
                    ) {
                        resp.drain().await;
                        target.restart(why);
                        continue;
                    }
                    append_from = target.part_len;
                    target.note = Some(format!("resumed at byte {append_from}"));
                } else if status == StatusCode::RANGE_NOT_SATISFIABLE {
                    resp.drain().await;
                    target.restart("the server refused the range (416)");
                    continue;
                } else if status.is_success() {
                    target.restart("the file changed on the server");
                }
            } else if target.part_len > 0 && status.is_success() {
                target.restart("no validator (ETag or Last-Modified) to resume safely");
            }
            if !status.is_success() {
                return Err(status_error(resp).await);
            }
            if status == StatusCode::PARTIAL_CONTENT && append_from == 0 {
                // A part of the file, to a request for all of it: saving it
                // would record a short file as whole, unless the part is all.
                let range = header_str(resp.headers(), CONTENT_RANGE);
                let whole = range
                    .as_deref()
                    .and_then(parse_content_range)
                    .is_some_and(|r| r.start == 0 && r.total == Some(r.end + 1));
                if !whole {
                    resp.drain().await;
                    return Err(FetchError::PartialAnswer(
                        range.unwrap_or_else(|| "no Content-Range".into()),
                    ));
                }
            }
            if !target.dest_fixed && !self.namer.is_template() {
                target.dest_fixed = true;
                if let Some(name) = header_str(resp.headers(), CONTENT_DISPOSITION)
                    .as_deref()
                    .and_then(naming::name_from_content_disposition)
                    // `filename=".."` names nothing: the URL's name stands.
                    .filter(|n| naming::sanitize_component(n).is_some())
                {
                    if let Some(skip) = self.claim(target, vec![name], status).await? {
                        resp.drain().await;
                        return Ok(skip);
                    }
                }
            }
            let length = resp.content_length();
            if let (Some(limit), Some(len)) = (self.rules.max_size, length) {
                if append_from + len > limit {
                    return Err(FetchError::TooLarge { limit });
                }
            }
            if append_from == 0 {
                let v = Validators {
                    etag,
                    last_modified,
                    total: length,
                };
                target.validators = v.if_range().is_some().then_some(v);
                // Only large transfers are worth a store write to resume later.
                if length.is_none_or(|l| l > RESUMABLE) {
                    if let Some(v) = &target.validators {
                        let _ = self.ledger.send(Event::Started {
                            id: target.id,
                            validators: v.clone(),
                        });
                    }
                }
            }
            return self
                .body(target, resp, status, append_from, length, deadline, stop)
                .await;
        }
    }

    /// Streams the body of an accepted response into place.
    ///
    /// The first bytes are held back (never more than [`crate::check::SNIFF_LEN`])
    /// when they decide something: the `--accept` check, and the name when
    /// it depends on the detected type. Nothing is written before that, so a
    /// rejected body leaves no file at all.
    #[allow(clippy::too_many_arguments)]
    async fn body(
        &self,
        target: &mut Target,
        mut resp: Response,
        status: StatusCode,
        append_from: u64,
        length: Option<u64>,
        deadline: Option<tokio::time::Instant>,
        stop: &CancellationToken,
    ) -> Result<Attempt, FetchError> {
        let content_type = header_str(resp.headers(), reqwest::header::CONTENT_TYPE);
        let hold = append_from == 0 && (!self.rules.accept.is_empty() || target.dest.is_none());
        let mut held: Vec<Bytes> = Vec::new();
        let mut held_len = 0;
        let mut writer: Option<PartWriter> = None;
        let mut bar = None;
        let mut got: u64 = 0;
        let mut speed = self
            .rules
            .min_speed
            .map(|min| SpeedCheck::new(min, self.rules.min_speed_time));
        let failure = loop {
            let chunk = tokio::select! {
                biased;
                _ = stop.cancelled() => break FetchError::Interrupted,
                () = sleep_until(deadline) => break self.over_time(),
                c = resp.chunk() => c,
            };
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => break e.into(),
            };
            let done = chunk.is_none();
            if let Some(chunk) = chunk {
                let n = chunk.len() as u64;
                got += n;
                self.progress
                    .bytes
                    .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                if let Some(bar) = &bar {
                    TransferBar::add(bar, n);
                }
                if let Some(limit) = self.rules.max_size.filter(|&m| append_from + got > m) {
                    break FetchError::TooLarge { limit };
                }
                if let Some(slow) = speed.as_mut().and_then(|s| s.add(n)) {
                    break slow;
                }
                match &mut writer {
                    Some(w) => {
                        if let Err(e) = w.push(chunk).await {
                            break e;
                        }
                        continue;
                    }
                    None => {
                        held_len += chunk.len();
                        held.push(chunk);
                    }
                }
            }
            if writer.is_none() && (done || !hold || held_len >= crate::check::SNIFF_LEN) {
                if hold {
                    let head = concat_head(&held);
                    match self
                        .settle_head(target, &head, content_type.as_deref(), status)
                        .await
                    {
                        Ok(None) => {}
                        Ok(Some(skip)) => return Ok(skip),
                        Err(e) => break e,
                    }
                }
                let Some(dest) = &target.dest else {
                    break FetchError::Name(NameError::Empty(String::new()));
                };
                bar = self
                    .progress
                    .transfer(&dest.rel, length.map(|l| l + append_from));
                let hash = self.hash || target.expect_sha256.is_some();
                let mut w =
                    PartWriter::new(self.out.clone(), dest, append_from, hash, self.disk.clone());
                // A body that will not fit the in-memory path goes to disk
                // anyway: write it by time as well as by size from the start.
                w.eager = append_from > 0 || length.is_none_or(|l| l > FLUSH_AT as u64);
                w.stale_part = target.stale_part;
                let mut pushed = Ok(());
                for c in held.drain(..) {
                    pushed = w.push(c).await;
                    if pushed.is_err() {
                        break;
                    }
                }
                writer = Some(w);
                if let Err(e) = pushed {
                    break e;
                }
            }
            if done {
                if let Some(expected) = length.filter(|&e| got < e) {
                    break FetchError::Truncated {
                        got: append_from + got,
                        expected: append_from + expected,
                    };
                }
                let size = append_from + got;
                if let Some(limit) = self.rules.min_size.filter(|&m| size < m) {
                    break FetchError::TooSmall { limit, size };
                }
                let Some(w) = writer.take() else {
                    break FetchError::Name(NameError::Empty(String::new()));
                };
                drop(target.slot.take());
                let sha256 = w.finish(target.expect_sha256.clone()).await?;
                return Ok(Attempt::Saved(Fetched {
                    http_status: status.as_u16(),
                    bytes: size,
                    sha256,
                }));
            }
        };
        let Some(writer) = writer else {
            // Nothing was written: a resumable prefix stays as it was.
            target.part_len = append_from;
            return Err(failure);
        };
        if failure.is_transient() || matches!(failure, FetchError::Interrupted) {
            // Keep what arrived, so the next attempt (or run) can resume.
            target.part_len = match writer.park().await {
                Ok(()) => append_from + got,
                Err(_) => 0,
            };
        } else {
            // Nothing of a rejected body is kept, not even a partial.
            writer.discard().await;
            target.part_len = 0;
        }
        Err(failure)
    }

    /// The error for an attempt past `--max-time`.
    fn over_time(&self) -> FetchError {
        let t = self.rules.max_time.unwrap_or_default().as_secs_f64();
        FetchError::Timeout(format!("the transfer took longer than --max-time {t} s"))
    }

    /// Checks the first bytes and, when the name depends on them, names the
    /// file. `Some` is an outcome that ends the attempt (the name is taken
    /// by a file that was there before the job).
    async fn settle_head(
        &self,
        target: &mut Target,
        head: &[u8],
        content_type: Option<&str>,
        status: StatusCode,
    ) -> Result<Option<Attempt>, FetchError> {
        self.rules
            .check_head(head, content_type)
            .map_err(FetchError::Unexpected)?;
        if target.dest.is_some() {
            return Ok(None);
        }
        let detected = crate::check::sniff(head)
            .or(content_type)
            .and_then(crate::check::extension_for);
        let parts = self.namer.components(&target.fields(detected))?;
        target.dest_fixed = true;
        self.claim(target, parts, status).await
    }

    /// Fetches the item's metadata document (`--meta-url`).
    pub async fn meta(
        &self,
        url: &url::Url,
        stop: &CancellationToken,
    ) -> Result<serde_json::Value, FetchError> {
        let wrap = |e: FetchError| FetchError::Meta {
            url: url.to_string(),
            source: Box::new(e),
        };
        let doc = self
            .small(url, META_LIMIT, stop)
            .await
            .map_err(|e| match e {
                FetchError::Interrupted => e,
                e => wrap(e),
            })?;
        serde_json::from_slice(&doc.body)
            .map_err(|e| wrap(FetchError::Unexpected(format!("not a JSON document ({e})"))))
    }

    /// Fetches a crawled page into memory.
    pub async fn page(
        &self,
        url: &url::Url,
        stop: &CancellationToken,
    ) -> Result<Small, FetchError> {
        let doc = self.small(url, PAGE_LIMIT, stop).await?;
        let html = doc.content_type.as_deref().is_none_or(|ct| {
            let ct = ct.to_ascii_lowercase();
            ct.starts_with("text/html") || ct.starts_with("application/xhtml")
        });
        if !html {
            let ct = doc.content_type.unwrap_or_default();
            return Err(FetchError::Unexpected(format!("not an HTML page ({ct})")));
        }
        Ok(doc)
    }

    /// GETs a small document into memory (a page, a metadata document).
    async fn small(
        &self,
        url: &url::Url,
        limit: usize,
        stop: &CancellationToken,
    ) -> Result<Small, FetchError> {
        let resp = tokio::select! {
            biased;
            _ = stop.cancelled() => return Err(FetchError::Interrupted),
            r = self.client.get(url, &[]) => r?,
        };
        let status = resp.status();
        if !status.is_success() {
            return Err(status_error(resp).await);
        }
        let final_url = resp.url().clone();
        let content_type = header_str(resp.headers(), reqwest::header::CONTENT_TYPE);
        let expected = resp.content_length();
        let mut resp = resp;
        let mut body = Vec::new();
        loop {
            let chunk = tokio::select! {
                biased;
                _ = stop.cancelled() => return Err(FetchError::Interrupted),
                c = resp.chunk() => c?,
            };
            let Some(chunk) = chunk else { break };
            self.progress
                .bytes
                .fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
            body.extend_from_slice(&chunk);
            if body.len() > limit {
                return Err(FetchError::TooLarge {
                    limit: limit as u64,
                });
            }
        }
        if let Some(expected) = expected.filter(|&e| (body.len() as u64) < e) {
            return Err(FetchError::Truncated {
                got: body.len() as u64,
                expected,
            });
        }
        Ok(Small {
            status: status.as_u16(),
            url: final_url,
            content_type,
            body,
        })
    }

    /// Claims a name (raw components) for the item through the ledger.
    async fn claim(
        &self,
        target: &mut Target,
        components: Vec<String>,
        status: StatusCode,
    ) -> Result<Option<Attempt>, FetchError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let gone = || FetchError::Request("the job is shutting down".into());
        self.ledger
            .send(Event::Claim {
                id: target.id,
                components,
                reply,
            })
            .map_err(|_| gone())?;
        match answer.await.map_err(|_| gone())?? {
            Claimed::Dest(dest) => {
                target.dest = Some(dest);
                Ok(None)
            }
            Claimed::Exists(dest) => {
                target.dest = Some(dest);
                Ok(Some(Attempt::Exists(status.as_u16())))
            }
        }
    }
}

/// Largest metadata document read.
const META_LIMIT: usize = 4 << 20;
/// Largest page read by a crawl.
const PAGE_LIMIT: usize = 32 << 20;

/// A small document read into memory.
#[derive(Debug)]
pub struct Small {
    /// HTTP status.
    pub status: u16,
    /// Final URL, after redirects.
    pub url: url::Url,
    /// Content-Type.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// The first bytes of a held-back body, for sniffing.
fn concat_head(held: &[Bytes]) -> Vec<u8> {
    let mut head = Vec::with_capacity(crate::check::SNIFF_LEN);
    for c in held {
        let take = (crate::check::SNIFF_LEN - head.len()).min(c.len());
        head.extend_from_slice(&c[..take]);
        if head.len() == crate::check::SNIFF_LEN {
            break;
        }
    }
    head
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// `--min-speed`: the bytes of each window, checked as chunks arrive (a
/// body that stops arriving at all is the read timeout's to catch).
struct SpeedCheck {
    min: u64,
    window: Duration,
    start: tokio::time::Instant,
    bytes: u64,
}

impl SpeedCheck {
    fn new(min: u64, window: Duration) -> Self {
        Self {
            min,
            window,
            start: tokio::time::Instant::now(),
            bytes: 0,
        }
    }

    /// Counts `n` bytes; an error once a whole window came in too slowly.
    fn add(&mut self, n: u64) -> Option<FetchError> {
        self.bytes += n;
        let elapsed = self.start.elapsed();
        if elapsed < self.window {
            return None;
        }
        let rate = self.bytes as f64 / elapsed.as_secs_f64();
        if rate < self.min as f64 {
            return Some(FetchError::Timeout(format!(
                "{rate:.0} B/s over {:.1} s, slower than --min-speed {} B/s",
                elapsed.as_secs_f64(),
                self.min
            )));
        }
        self.start = tokio::time::Instant::now();
        self.bytes = 0;
        None
    }
}

/// Transfers larger than this record their validators in the store as soon
/// as they start, so that a later run can resume them: every body that
/// goes to `.part` rather than the in-memory path.
pub const RESUMABLE: u64 = FLUSH_AT as u64;

fn header_str(headers: &HeaderMap, name: reqwest::header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The error for a response with an error status: its code and the wait
/// its `Retry-After` asks for. The body is drained for the connection's sake.
async fn status_error(resp: Response) -> FetchError {
    let code = resp.status().as_u16();
    let retry_after = header_str(resp.headers(), RETRY_AFTER)
        .and_then(|v| parse_retry_after(&v, SystemTime::now()));
    resp.drain().await;
    FetchError::Status { code, retry_after }
}

/// The file side of a transfer (its `.part`, or the unnamed file of a body
/// held whole), moved to a disk thread for each write. Every operation goes
/// through the output directory's handle, never through a link.
struct PartFile {
    root: Arc<Root>,
    /// The final name, relative to the output directory.
    rel: String,
    /// The partial's relative name.
    part_rel: String,
    /// The partial's full path, for messages.
    part: PathBuf,
    file: Option<std::fs::File>,
    // ring's SHA-256 uses the CPU's vector units; measured about twice as
    // fast as sha2's portable code on CPUs without SHA extensions.
    hasher: Option<ring::digest::Context>,
    /// Bytes of an earlier partial to keep and append to.
    append_from: u64,
}

impl PartFile {
    fn write(&mut self, chunks: &[Bytes]) -> Result<(), FetchError> {
        if self.file.is_none() {
            let f = if self.append_from > 0 {
                self.reopen()
            } else {
                self.root.create(&self.part_rel)
            };
            let f = f.map_err(|source| FetchError::Disk {
                path: self.part.clone(),
                source,
            })?;
            self.file = Some(f);
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        for c in chunks {
            if let Some(h) = &mut self.hasher {
                h.update(c);
            }
        }
        let result = write_all_vectored(file, chunks);
        result.map_err(|source| FetchError::Disk {
            path: self.part.clone(),
            source,
        })
    }
}

/// Whether `O_TMPFILE` works in the output directory: 0 not tried yet,
/// 1 yes, 2 no (the filesystem or the kernel lacks it, or `/proc` is not
/// mounted to name the file with).
static TMPFILE: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

impl PartFile {
    /// Writes a body held whole in memory to an unnamed file (`O_TMPFILE`)
    /// and links it in under `dest` once complete: one directory operation
    /// per file instead of the two of create-`.part`-then-rename, which is
    /// most of what a small file costs the kernel (measured on ext4,
    /// 10,000 × 10 KiB: the rename alone was 13% of haul's CPU). A file
    /// never stands under its final name before it is whole, and an
    /// interrupted write leaves nothing behind at all.
    ///
    /// `None` when `O_TMPFILE` is not available here: the caller then takes
    /// the `.part` route, with nothing written yet.
    #[cfg(target_os = "linux")]
    fn place_whole(
        &mut self,
        chunks: &[Bytes],
        expect: Option<&str>,
    ) -> Option<Result<Option<String>, FetchError>> {
        use std::sync::atomic::Ordering::Relaxed;
        if TMPFILE.load(Relaxed) == 2 {
            return None;
        }
        let disk_error = |path: &std::path::Path, e: io::Error| FetchError::Disk {
            path: path.to_path_buf(),
            source: e,
        };
        let dest = self.root.display(&self.rel);
        let (mut file, dir, name) = match self.root.tmpfile(&self.rel) {
            Ok(f) => f,
            Err(e) if tmpfile_unsupported(&e) => {
                TMPFILE.store(2, Relaxed);
                return None;
            }
            Err(e) => return Some(Err(disk_error(&self.part, e))),
        };
        if let Err(e) = write_all_vectored(&mut file, chunks) {
            return Some(Err(disk_error(&self.part, e)));
        }
        let got = self.hasher.take().map(|mut h| {
            for c in chunks {
                h.update(c);
            }
            hex(h.finish().as_ref())
        });
        if let Some(expected) =
            expect.filter(|e| got.as_ref().is_some_and(|g| !e.eq_ignore_ascii_case(g)))
        {
            // Nothing was ever named: dropping the file frees it.
            return Some(Err(FetchError::Checksum {
                expected: expected.to_string(),
                got: got.unwrap_or_default(),
            }));
        }
        match self.root.link_in(&file, &dir, &name) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                // A file the plan replaces (`--overwrite`, or an earlier run's
                // file that did not check out): linking cannot replace, so
                // link as the partial and rename over it, atomically.
                let part_name = format!("{name}{}", naming::PART_SUFFIX);
                let _ = self.root.remove(&self.part_rel);
                let replaced = self
                    .root
                    .link_in(&file, &dir, &part_name)
                    .and_then(|()| self.root.rename_in(&dir, &part_name, &name));
                if let Err(e) = replaced {
                    let _ = self.root.remove(&self.part_rel);
                    return Some(Err(disk_error(&dest, e)));
                }
            }
            Err(e) if TMPFILE.load(Relaxed) == 0 && tmpfile_unsupported(&e) => {
                TMPFILE.store(2, Relaxed);
                // The hash was taken: the `.part` route computes it again.
                self.hasher = got
                    .is_some()
                    .then(|| ring::digest::Context::new(&ring::digest::SHA256));
                return None;
            }
            Err(e) => return Some(Err(disk_error(&dest, e))),
        }
        TMPFILE.store(1, Relaxed);
        Some(Ok(got))
    }
}

/// Errors that mean "no `O_TMPFILE` here", as opposed to a disk problem.
fn tmpfile_unsupported(e: &io::Error) -> bool {
    matches!(
        rustix::io::Errno::from_io_error(e),
        Some(
            rustix::io::Errno::OPNOTSUPP
                | rustix::io::Errno::ISDIR
                | rustix::io::Errno::INVAL
                | rustix::io::Errno::NOENT
                | rustix::io::Errno::XDEV
                | rustix::io::Errno::PERM
        )
    )
}

/// Writes every chunk with as few `writev` calls as the kernel allows: one
/// system call for a body in several chunks, and no copy to join them.
fn write_all_vectored(file: &mut std::fs::File, chunks: &[Bytes]) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = chunks.iter().map(|c| io::IoSlice::new(c)).collect();
    let mut slices = &mut slices[..];
    // Skip empty chunks up front so an empty write is not taken for EOF.
    while slices.first().is_some_and(|s| s.is_empty()) {
        slices = &mut slices[1..];
    }
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl PartFile {
    /// Opens the partial to append to it, hashing the bytes kept so the
    /// final SHA-256 covers the whole file.
    fn reopen(&mut self) -> io::Result<std::fs::File> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = self.root.open_partial(&self.part_rel)?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut left = self.append_from;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = f.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "partial file is shorter than recorded",
                ));
            }
            if let Some(h) = &mut self.hasher {
                h.update(&buf[..n]);
            }
            left -= n as u64;
        }
        f.set_len(self.append_from)?;
        f.seek(SeekFrom::Start(self.append_from))?;
        Ok(f)
    }
}

type Pending = crate::disk::Pending<(PartFile, Result<(), FetchError>)>;

/// Streams a body to `NAME.part`, overlapping disk writes with the network.
struct PartWriter {
    disk: Option<PartFile>,
    pending: Option<Pending>,
    buf: Vec<Bytes>,
    buffered: usize,
    pool: crate::disk::Pool,
    /// Flush by time ([`FLUSH_EVERY`]), not only by size: the body goes
    /// to `.part` anyway. Set once a first flush by size has happened too.
    eager: bool,
    last_flush: std::time::Instant,
    /// An abandoned `.part` of this name may stand: remove it if the body
    /// lands without one (the in-memory path).
    stale_part: bool,
}

fn join_error(part: &std::path::Path, e: crate::disk::Lost) -> FetchError {
    FetchError::Disk {
        path: part.to_path_buf(),
        source: io::Error::other(e),
    }
}

impl PartWriter {
    fn new(
        root: Arc<Root>,
        dest: &Dest,
        append_from: u64,
        hash: bool,
        pool: crate::disk::Pool,
    ) -> Self {
        Self {
            pool,
            disk: Some(PartFile {
                root,
                rel: dest.rel.clone(),
                part_rel: dest.part_rel(),
                part: dest.part_path(),
                file: None,
                hasher: hash.then(|| ring::digest::Context::new(&ring::digest::SHA256)),
                append_from,
            }),
            pending: None,
            buf: Vec::new(),
            buffered: 0,
            eager: false,
            last_flush: std::time::Instant::now(),
            stale_part: false,
        }
    }

    async fn push(&mut self, chunk: Bytes) -> Result<(), FetchError> {
        self.buffered += chunk.len();
        self.buf.push(chunk);
        if self.buffered >= FLUSH_AT || (self.eager && self.last_flush.elapsed() >= FLUSH_EVERY) {
            self.eager = true;
            self.last_flush = std::time::Instant::now();
            self.flush().await?;
        }
        Ok(())
    }

    /// Takes the disk back from the write in flight, if any.
    async fn settle(&mut self) -> Result<PartFile, FetchError> {
        if let Some(pending) = self.pending.take() {
            let part = self
                .disk
                .as_ref()
                .map(|d| d.part.clone())
                .unwrap_or_default();
            let (disk, result) = pending.await.map_err(|e| join_error(&part, e))?;
            result?;
            return Ok(disk);
        }
        self.disk.take().ok_or_else(|| FetchError::Disk {
            path: PathBuf::new(),
            source: io::Error::other("file writer used after a failed write"),
        })
    }

    async fn flush(&mut self) -> Result<(), FetchError> {
        let mut disk = self.settle().await?;
        let chunks = std::mem::take(&mut self.buf);
        self.buffered = 0;
        self.pending = Some(self.pool.spawn(move || {
            let r = disk.write(&chunks);
            (disk, r)
        }));
        Ok(())
    }

    /// Writes what is buffered to the `.part` file and leaves it there.
    async fn park(mut self) -> Result<(), FetchError> {
        if !self.buf.is_empty() {
            self.flush().await?;
        }
        self.settle().await.map(drop)
    }

    /// Drops what was received and removes the `.part` file.
    async fn discard(mut self) {
        self.buf.clear();
        if let Ok(mut disk) = self.settle().await {
            let created = disk.file.is_some() || disk.append_from > 0;
            drop(disk.file.take());
            if created {
                let _ = self
                    .pool
                    .run(move || disk.root.remove(&disk.part_rel))
                    .await;
            }
        }
    }

    /// Writes what is left, closes the file and renames it into place, unless
    /// its SHA-256 is not the `expect`ed one (then the partial is removed).
    async fn finish(mut self, expect: Option<String>) -> Result<Option<String>, FetchError> {
        let mut disk = self.settle().await?;
        let chunks = std::mem::take(&mut self.buf);
        let part = disk.part.clone();
        let stale_part = self.stale_part;
        self.pool
            .run(move || {
                if disk.file.is_none() && disk.append_from == 0 {
                    // The whole body is in memory: no partial to keep for a
                    // resume, so it need not ever have a name of its own.
                    #[cfg(target_os = "linux")]
                    if let Some(done) = disk.place_whole(&chunks, expect.as_deref()) {
                        if stale_part && done.is_ok() {
                            let _ = disk.root.remove(&disk.part_rel);
                        }
                        return done;
                    }
                }
                if disk.file.is_none() || !chunks.is_empty() {
                    disk.write(&chunks)?;
                }
                drop(disk.file.take());
                let got = disk.hasher.take().map(|h| hex(h.finish().as_ref()));
                if let Some(expected) =
                    expect.filter(|e| got.as_ref().is_some_and(|g| !e.eq_ignore_ascii_case(g)))
                {
                    let _ = disk.root.remove(&disk.part_rel);
                    return Err(FetchError::Checksum {
                        expected,
                        got: got.unwrap_or_default(),
                    });
                }
                disk.root
                    .rename(&disk.part_rel, &disk.rel)
                    .map_err(|source| FetchError::Disk {
                        path: disk.root.display(&disk.rel),
                        source,
                    })?;
                Ok(got)
            })
            .await
            .map_err(|e| join_error(&part, e))?
    }
}

pub use crate::check::hex;
