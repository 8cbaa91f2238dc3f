//! One transfer: the request, the response checks, and the body streamed to
//! `NAME.part` and renamed to `NAME` once complete.
//!
//! The whole job shares one [`crate::http::Client`] (keep-alive pools,
//! HTTP/2 when the server offers it over TLS, no decompression, so the bytes
//! on disk are the bytes the server sent and byte offsets stay true for
//! range resume).
//!
//! Disk work never runs on the async runtime. Body chunks are gathered in
//! memory up to [`FLUSH_AT`] and written on a [`crate::fetch::disk`] thread while
//! the next chunks arrive. A body that arrives whole within [`FLUSH_AT`]
//! costs one disk job that writes an unnamed `O_TMPFILE` and links it in
//! under its final name; larger ones go through `NAME.part`, kept for resume.
//! The SHA-256 is computed on the disk thread too.

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
use crate::plan::naming::{self, Dest, NameError};
use crate::plan::{Item, Validators};
use crate::report::{Progress, TransferBar};
use crate::schedule::parse_retry_after;

pub mod disk;
mod error;
mod file;
mod object;

pub use error::FetchError;
use file::PartWriter;

/// Bytes gathered in memory before they are handed to a disk write.
pub const FLUSH_AT: usize = 256 * 1024;

/// Longest a body that goes to disk anyway keeps what arrived in memory: a
/// crash (or `kill -9`) costs at most about this much of each transfer,
/// which on a slow link is far less than [`FLUSH_AT`].
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

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
    /// Time from the request to the response head in the last attempt,
    /// for the host's window.
    pub latency: Option<Duration>,
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
            latency: None,
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
    pub fn fields(
        &self,
        detected_ext: Option<&'static str>,
    ) -> crate::plan::naming::ItemFields<'_> {
        crate::plan::naming::ItemFields {
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
    pub namer: crate::plan::naming::Namer,
    /// The threads that write files.
    pub disk: crate::fetch::disk::Pool,
    /// The output directory, where every file operation happens.
    pub out: Arc<Root>,
    /// The object-store output, when files go there instead.
    pub objects: Option<Arc<crate::objects::Objects>>,
    /// The portable file path (see [`crate::job::Config::portable_files`]).
    pub portable: bool,
    /// Compute each file's SHA-256. It is most of the CPU a small file costs
    /// on machines without SHA extensions, so it is done when something
    /// reads it: a manifest, a checksum column.
    pub hash: bool,
}

/// Where a body goes: a `.part` file on disk, or an object store.
enum Writer {
    Disk(PartWriter),
    Object(object::ObjectWriter),
}

impl Writer {
    async fn push(&mut self, chunk: Bytes) -> Result<(), FetchError> {
        match self {
            Self::Disk(w) => w.push(chunk).await,
            Self::Object(w) => w.push(chunk).await,
        }
    }

    async fn finish(self, expect: Option<String>) -> Result<Option<String>, FetchError> {
        match self {
            Self::Disk(w) => w.finish(expect).await,
            Self::Object(w) => w.finish(expect).await,
        }
    }

    /// Keeps what arrived for a resume, where it can be kept: `true` if
    /// it was.
    async fn park(self) -> Result<bool, FetchError> {
        match self {
            Self::Disk(w) => w.park().await.map(|()| true),
            Self::Object(w) => {
                w.discard().await;
                Ok(false)
            }
        }
    }

    async fn discard(self) {
        match self {
            Self::Disk(w) => w.discard().await,
            Self::Object(w) => w.discard().await,
        }
    }
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
            if let Some(page) = &target.page {
                // Image hosts often refuse a file asked for without the page
                // that shows it.
                if let Ok(v) = HeaderValue::from_str(&page.url) {
                    extra.push((reqwest::header::REFERER, v));
                }
            }
            if let Some(v) = &if_range {
                let range = HeaderValue::from_str(&format!("bytes={}-", target.part_len));
                // A validator that is no header value is not one to resume on.
                if let (Ok(range), Ok(v)) = (range, HeaderValue::from_str(v)) {
                    extra.extend([(RANGE, range), (IF_RANGE, v)]);
                }
            }
            let deadline = self.rules.max_time.map(|t| tokio::time::Instant::now() + t);
            let sent = std::time::Instant::now();
            let resp = tokio::select! {
                biased;
                _ = stop.cancelled() => return Err(FetchError::Interrupted),
                () = sleep_until(deadline) => return Err(self.over_time()),
                r = self.client.get(&target.url, &extra) => r?,
            };
            target.latency = Some(sent.elapsed());
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
        let mut writer: Option<Writer> = None;
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
                let mut w = match &self.objects {
                    Some(o) => Writer::Object(object::ObjectWriter::new(o.clone(), dest, hash)),
                    None => {
                        let mut w = PartWriter::new(
                            self.out.clone(),
                            dest,
                            append_from,
                            hash,
                            self.disk.clone(),
                        );
                        // A body that will not fit the in-memory path goes to
                        // disk anyway: write it by time as well as by size
                        // from the start.
                        w.eager = append_from > 0 || length.is_none_or(|l| l > FLUSH_AT as u64);
                        w.stale_part = target.stale_part;
                        w.portable |= self.portable;
                        Writer::Disk(w)
                    }
                };
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
                Ok(true) => append_from + got,
                Ok(false) | Err(_) => 0,
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
    ///
    /// A followed link may lead to anything (an archive, a full-size
    /// image, source code): what is not HTML is [`FetchError::NotAPage`],
    /// told from the Content-Type, or, when the server gives none or only
    /// `application/octet-stream`, from the first bytes. Either way the
    /// rest of the body is not read.
    ///
    /// With the `validators` a page was read under before, the request is
    /// conditional, and an unchanged page is a [`Small`] with status 304
    /// and no body.
    pub async fn page(
        &self,
        url: &url::Url,
        validators: Option<&crate::plan::Validators>,
        stop: &CancellationToken,
    ) -> Result<Small, FetchError> {
        use reqwest::header::{HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH};
        let mut conditional = Vec::new();
        if let Some(v) = validators {
            let value =
                |s: &Option<String>| s.as_deref().and_then(|s| HeaderValue::from_str(s).ok());
            if let Some(etag) = value(&v.etag) {
                conditional.push((IF_NONE_MATCH, etag));
            }
            if let Some(lm) = value(&v.last_modified) {
                conditional.push((IF_MODIFIED_SINCE, lm));
            }
        }
        self.small_checked(url, &conditional, PAGE_LIMIT, stop, page_kind)
            .await
    }

    /// GETs a small document into memory (a page, a metadata document).
    async fn small(
        &self,
        url: &url::Url,
        limit: usize,
        stop: &CancellationToken,
    ) -> Result<Small, FetchError> {
        self.small_checked(url, &[], limit, stop, |_, _, _| Ok(true))
            .await
    }

    /// GETs a small document into memory, once `check` accepts its
    /// Content-Type and first bytes. `check` answers `Ok(true)` to accept,
    /// `Ok(false)` to see more bytes, or the error that ends the fetch; at
    /// the end it is told the body is whole, and must decide.
    async fn small_checked(
        &self,
        url: &url::Url,
        extra: &[(reqwest::header::HeaderName, reqwest::header::HeaderValue)],
        limit: usize,
        stop: &CancellationToken,
        check: impl Fn(Option<&str>, &[u8], bool) -> Result<bool, FetchError>,
    ) -> Result<Small, FetchError> {
        let resp = tokio::select! {
            biased;
            _ = stop.cancelled() => return Err(FetchError::Interrupted),
            r = self.client.get(url, extra) => r?,
        };
        let status = resp.status();
        let final_url = resp.url().clone();
        let content_type = header_str(resp.headers(), reqwest::header::CONTENT_TYPE);
        let etag = header_str(resp.headers(), reqwest::header::ETAG);
        let last_modified = header_str(resp.headers(), reqwest::header::LAST_MODIFIED);
        if status == StatusCode::NOT_MODIFIED && !extra.is_empty() {
            return Ok(Small {
                status: status.as_u16(),
                url: final_url,
                content_type,
                etag,
                last_modified,
                body: Vec::new(),
            });
        }
        if !status.is_success() {
            return Err(status_error(resp).await);
        }
        let expected = resp.content_length();
        let mut resp = resp;
        let mut body = Vec::new();
        let mut accepted = check(content_type.as_deref(), &body, false)?;
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
            if !accepted {
                accepted = check(content_type.as_deref(), &body, false)?;
            }
            if body.len() > limit {
                return Err(FetchError::TooLarge {
                    limit: limit as u64,
                });
            }
        }
        if !accepted {
            check(content_type.as_deref(), &body, true)?;
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
            etag,
            last_modified,
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
    /// ETag, for a later conditional request.
    pub etag: Option<String>,
    /// Last-Modified, likewise.
    pub last_modified: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// Bytes looked at to tell a page without a Content-Type (the WHATWG
/// sniffing algorithm reads at most 1445; markup starts well before).
const SNIFF_PAGE: usize = 512;

/// Whether a followed link's answer is an HTML page (see
/// [`Fetcher::page`]): `Ok(false)` while too few bytes have come to tell.
fn page_kind(content_type: Option<&str>, head: &[u8], whole: bool) -> Result<bool, FetchError> {
    let mime = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|m| !m.is_empty() && m != "application/octet-stream");
    let not_a_page = |what: String| Err(FetchError::NotAPage(what));
    match mime {
        Some(m) if m == "text/html" || m == "application/xhtml+xml" => Ok(true),
        Some(m) => not_a_page(m),
        // No type, or "some bytes": look at them, as a browser would.
        None if head.len() < SNIFF_PAGE && !whole => Ok(false),
        None => match crate::check::sniff(head) {
            Some("text/html") => Ok(true),
            Some(other) => not_a_page(format!("{other}, by its first bytes")),
            None => not_a_page("no Content-Type, and its first bytes are not HTML".into()),
        },
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn min_speed_gives_up_only_after_a_whole_slow_window() {
        let window = Duration::from_secs(10);
        let mut slow = SpeedCheck::new(1000, window);
        assert!(slow.add(100).is_none());
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(slow.add(100).is_none(), "the window is not over");
        tokio::time::advance(Duration::from_secs(1)).await;
        let err = slow.add(100).expect("300 B in 10 s is under 1000 B/s");
        assert!(err.is_transient(), "what arrived is kept and resumed");
        // A fast window starts the next one afresh.
        let mut fast = SpeedCheck::new(1000, window);
        tokio::time::advance(window).await;
        assert!(fast.add(20_000).is_none());
        tokio::time::advance(window).await;
        assert!(
            fast.add(10).is_some(),
            "the second window is judged on its own"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_sleeps_until_it_and_none_sleeps_forever() {
        let start = tokio::time::Instant::now();
        sleep_until(Some(start + Duration::from_secs(5))).await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        let forever = tokio::time::timeout(Duration::from_secs(3600), sleep_until(None)).await;
        assert!(forever.is_err());
    }

    #[test]
    fn a_resume_is_accepted_only_for_the_same_file_from_the_byte_asked() {
        let had = Validators {
            etag: Some("\"a\"".into()),
            last_modified: Some("Tue, 01 Jan 2030 00:00:00 GMT".into()),
            total: Some(100),
        };
        let range = |start, end, total| Some(ContentRange { start, end, total });
        let lm = "Tue, 01 Jan 2030 00:00:00 GMT";
        let ok = resume_mismatch(
            Some(&had),
            range(40, 99, Some(100)),
            40,
            Some("\"a\""),
            Some(lm),
        );
        assert_eq!(ok, None);
        let cases = [
            (
                range(0, 99, Some(100)),
                Some("\"a\""),
                Some(lm),
                "different range",
            ),
            (
                range(40, 99, Some(100)),
                Some("\"b\""),
                Some(lm),
                "ETag differs",
            ),
            (
                range(40, 99, Some(100)),
                None,
                Some("Wed, 02 Jan 2030 00:00:00 GMT"),
                "Last-Modified differs",
            ),
            (
                range(40, 119, Some(120)),
                Some("\"a\""),
                Some(lm),
                "size differs",
            ),
            (None, Some("\"a\""), Some(lm), "no valid Content-Range"),
        ];
        for (r, etag, lm, why) in cases {
            let got = resume_mismatch(Some(&had), r, 40, etag, lm).unwrap_or("accepted");
            assert!(got.contains(why), "{why}: {got}");
        }
        assert_eq!(parse_content_range("bytes 0-9/100"), range(0, 9, Some(100)));
        assert_eq!(parse_content_range("bytes 5-4/100"), None);
        assert_eq!(parse_content_range("bytes 0-100/100"), None);
        assert_eq!(parse_content_range("bytes 0-9/*"), range(0, 9, None));
    }
}
