//! Why one attempt at a transfer failed, and what follows from it: whether
//! another attempt may succeed, the wait a server asked for, and the short
//! reason the summary groups failures by.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::StatusCode;

use crate::plan::naming::NameError;

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
    /// The object could not be stored (`-o s3://…`), after the store
    /// client's own retries.
    #[error("cannot store {0}")]
    Store(#[from] crate::objects::WriteError),
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
    /// The site's robots.txt could not be had (5xx, network error, timeout,
    /// retried already), so nothing on the site is fetched in this run. A
    /// failure, not a skip, so the user hears of it; not permanent either,
    /// so the next run asks again.
    #[error("robots.txt unreachable: {robots}: {error}")]
    RobotsUnreachable {
        /// The robots.txt URL.
        robots: String,
        /// What went wrong fetching it.
        error: String,
    },
    /// A followed link led to something other than an HTML page.
    #[error("not an HTML page ({0})")]
    NotAPage(String),
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

    /// Whether the failure is the output's, not the item's (the disk is
    /// full, the object store refused): the item is tried again next run.
    pub fn is_output_failure(&self) -> bool {
        self.is_out_of_space() || matches!(self, Self::Store(_))
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
            | Self::Store(_)
            | Self::Name(_)
            | Self::Unexpected(_)
            | Self::PartialAnswer(_)
            | Self::Disallowed(_)
            // Its fetch was retried already, and its verdict is kept for
            // the run: another attempt now would get the same answer.
            | Self::RobotsUnreachable { .. }
            | Self::NotAPage(_)
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
            Self::Store(_) => "object store".into(),
            Self::Name(_) => "bad name".into(),
            Self::Unexpected(t) => format!("unexpected content: {t}"),
            Self::PartialAnswer(_) => "partial answer".into(),
            Self::TooLarge { .. } => "too large".into(),
            Self::TooSmall { .. } => "too small".into(),
            Self::Meta { source, .. } => format!("metadata: {}", source.reason()),
            Self::Disallowed(_) => "disallowed by robots.txt".into(),
            Self::RobotsUnreachable { .. } => "robots.txt unreachable".into(),
            Self::NotAPage(_) => "not a page".into(),
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
