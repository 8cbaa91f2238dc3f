//! Request routing: from a request to a status, headers and body.
//!
//! Routing is synchronous and runs when the request arrives, so the request
//! log is in arrival order and every fault decision is made before the
//! configured latency is slept. The content routes (`/file/`, `/flaky/`,
//! `/retry-after/`, `/drip/`, `/cd/`, `/chunked/`) all go through
//! [`content`], so Range, If-Range and validators behave the same on each;
//! they differ only in what happens before (a 503, a 429) or in framing.
//!
//! Fault decisions are a pure function of `(seed, path, n)` where `n` counts
//! requests to that path, rather than draws from one shared generator: a test
//! sees the same faults for the same per-path request sequence however its
//! downloads interleave.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::body::{Generated, Kind, OriginBody};
use crate::conn::ConnState;
use crate::content::{
    content_seed, etag, last_modified, mix, parse_digits, path_key, percent_decode, query_param,
    size_param,
};
use crate::range::{if_range_matches, parse_range, RangeOutcome};
use crate::server::Shared;
use crate::stats::{InFlight, LoggedRequest};

/// `/drip/` defaults when `chunk` or `delay_ms` is missing.
const DRIP_CHUNK: usize = 1024;
const DRIP_DELAY: Duration = Duration::from_millis(100);

const OCTET_STREAM: HeaderValue = HeaderValue::from_static("application/octet-stream");
const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

const HTML_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>haul-origin</title></head>\n\
<body><p>This is an HTML page, not the file you asked for.</p></body></html>\n";

/// A response before it is tied to its request's in-flight guard.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Kind,
}

impl Reply {
    fn empty(status: StatusCode) -> Reply {
        Reply {
            status,
            headers: HeaderMap::new(),
            body: Kind::Empty,
        }
    }

    fn text(status: StatusCode, text: impl Into<Bytes>) -> Reply {
        let mut reply = Reply::empty(status);
        reply.headers.insert(header::CONTENT_TYPE, TEXT_PLAIN);
        reply.body = Kind::Text(Some(text.into()));
        reply
    }

    fn bad_request(why: &str) -> Reply {
        Reply::text(StatusCode::BAD_REQUEST, format!("haul-origin: {why}\n"))
    }

    fn not_found() -> Reply {
        Reply::text(StatusCode::NOT_FOUND, "not found\n")
    }

    fn with(mut self, name: HeaderName, value: HeaderValue) -> Reply {
        self.headers.insert(name, value);
        self
    }

    /// Drop the body of a HEAD response but keep announcing its length.
    fn strip_body(&mut self) {
        let length = match &self.body {
            Kind::Empty => None,
            Kind::Text(text) => text.as_ref().map(|t| t.len() as u64),
            Kind::Generated(g) => g.length_known().then(|| g.remaining()),
        };
        if let Some(length) = length {
            self.headers
                .entry(header::CONTENT_LENGTH)
                .or_insert(HeaderValue::from(length));
        }
        self.body = Kind::Empty;
    }
}

/// Handle one request: count it, route it, log it. Called on arrival.
pub(crate) fn respond(
    shared: &Shared,
    conn: &ConnState,
    req: &Request<Incoming>,
) -> Response<OriginBody> {
    let counters = &shared.counters;
    counters.requests.fetch_add(1, Relaxed);
    let host = host_of(req);
    let in_flight = InFlight::enter(counters, &conn.hosts, host);

    let over = shared
        .config
        .max_in_flight
        .is_some_and(|k| counters.in_flight_now() > k);
    let mut reply = if over {
        let mut r = Reply::text(
            StatusCode::TOO_MANY_REQUESTS,
            "haul-origin: too many requests\n",
        );
        if shared.config.throttle_retry_after > 0 {
            let secs = shared.config.throttle_retry_after.to_string();
            if let Ok(v) = HeaderValue::from_str(&secs) {
                r.headers.insert(header::RETRY_AFTER, v);
            }
        }
        r
    } else {
        route(shared, conn, req)
    };
    if req.method() == Method::HEAD {
        reply.strip_body();
    }
    counters.count_status(reply.status.as_u16());
    if shared.config.log_requests {
        counters.push_log(log_entry(req, host, reply.status));
    }

    if query_param(req.uri().query(), "close") == Some("1") {
        reply
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }

    let mut response = Response::new(OriginBody::new(reply.body, in_flight));
    *response.status_mut() = reply.status;
    *response.headers_mut() = reply.headers;
    response
}

/// The `Host` header, or the URI authority (HTTP/2 `:authority`, absolute-form
/// HTTP/1.1 targets), or `""`.
fn host_of(req: &Request<Incoming>) -> &str {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| {
            req.uri()
                .authority()
                .map(hyper::http::uri::Authority::as_str)
        })
        .unwrap_or("")
}

fn log_entry(req: &Request<Incoming>, host: &str, status: StatusCode) -> LoggedRequest {
    let header = |name: HeaderName| {
        req.headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    LoggedRequest {
        method: req.method().as_str().to_owned(),
        host: host.to_owned(),
        path: req.uri().path().to_owned(),
        query: req.uri().query().map(str::to_owned),
        range: header(header::RANGE),
        if_range: header(header::IF_RANGE),
        authorization: header(header::AUTHORIZATION),
        cookie: header(header::COOKIE),
        user_agent: header(header::USER_AGENT),
        referer: header(header::REFERER),
        status: status.as_u16(),
    }
}

/// Everything a route needs to know about the request.
struct Ctx<'a> {
    shared: &'a Shared,
    conn: &'a ConnState,
    req: &'a Request<Incoming>,
    path: &'a str,
    query: Option<&'a str>,
}

fn route(shared: &Shared, conn: &ConnState, req: &Request<Incoming>) -> Reply {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Reply::text(
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are served\n",
        )
        .with(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    }
    let ctx = Ctx {
        shared,
        conn,
        req,
        path: req.uri().path(),
        query: req.uri().query(),
    };
    let path = ctx.path;
    let (first, rest) = segment(path.strip_prefix('/').unwrap_or(path));
    match (first, rest) {
        ("file", Some(_)) => content(&ctx, Options::new().faults()),
        ("status", Some(rest)) => status(rest),
        ("flaky", Some(rest)) => flaky(&ctx, rest),
        ("retry-after", Some(rest)) => retry_after(&ctx, rest, false),
        ("retry-after-date", Some(rest)) => retry_after(&ctx, rest, true),
        ("drip", Some(_)) => drip(&ctx),
        ("cd", Some(_)) => content_disposition(&ctx),
        ("redirect", None) => redirect(&ctx),
        ("redirect-loop", Some(rest)) => redirect_loop(rest),
        ("html", Some(_)) => Reply::text(StatusCode::OK, HTML_PAGE).with(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        ),
        ("chunked", Some(_)) => content(&ctx, Options::new().chunked()),
        ("static", Some(rest)) => static_file(&ctx, rest),
        ("robots.txt", None) => match ctx.shared.config.robots_status {
            Some(code) => status(&code.to_string()),
            None => static_file(&ctx, "robots.txt"),
        },
        _ => Reply::not_found(),
    }
}

/// `/static/<rel>`: a file under [`crate::Config::static_root`], for tests
/// that need real files (images, JSON). Test-only, so the file is read on
/// the spot; `..` and anything but plain names are refused. Each answer
/// has an ETag of the content; `If-None-Match` with it gets a 304.
fn static_file(ctx: &Ctx<'_>, rest: &str) -> Reply {
    let Some(root) = &ctx.shared.config.static_root else {
        return Reply::not_found();
    };
    let Ok(rel) = String::from_utf8(percent_decode(rest)) else {
        return Reply::not_found();
    };
    if rel
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == ".." || part.contains('\\'))
    {
        return Reply::not_found();
    }
    let Ok(bytes) = std::fs::read(root.join(&rel)) else {
        return Reply::not_found();
    };
    let mime = match rel.rsplit('.').next() {
        Some("gif") => "image/gif",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("json") => "application/json",
        // No charset: pages say their own (the crawl tests rely on it).
        Some("html") => "text/html",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    };
    // An ETag from the content, so that a test that rewrites a page sees
    // it change at once (Last-Modified has whole seconds), and a 304 to
    // a conditional request whose ETag still matches.
    let etag = format!(
        "\"s{:016x}\"",
        crate::content::hash_bytes(0x7374_6174_6963, &bytes)
    );
    let unchanged = ctx
        .req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut reply = Reply::empty(if unchanged {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    });
    if let Ok(v) = HeaderValue::from_str(&etag) {
        reply.headers.insert(header::ETAG, v);
    }
    if !unchanged {
        reply
            .headers
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
        reply.body = Kind::Text(Some(Bytes::from(bytes)));
    }
    reply
}

/// Split `"a/b/c"` into `("a", Some("b/c"))` and `"a"` into `("a", None)`.
fn segment(s: &str) -> (&str, Option<&str>) {
    match s.split_once('/') {
        Some((first, rest)) => (first, Some(rest)),
        None => (s, None),
    }
}

/// `/status/<code>/...`: that status, with a one-line body where allowed.
fn status(rest: &str) -> Reply {
    let (code, _) = segment(rest);
    let Some(status) = parse_digits(code)
        .and_then(|c| u16::try_from(c).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|s| (200..600).contains(&s.as_u16()))
    else {
        return Reply::bad_request("/status/<code>/ needs a code from 200 to 599");
    };
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Reply::empty(status);
    }
    let reason = status.canonical_reason().unwrap_or("");
    Reply::text(status, format!("{} {reason}\n", status.as_u16()))
}

/// Count a request to this path and return its 1-based number.
fn hit(ctx: &Ctx<'_>) -> u64 {
    ctx.shared.paths.with(path_key(ctx.path), |state| {
        state.hits += 1;
        state.hits
    })
}

/// `/flaky/<k>/...`: 503 for the first k requests to the path, then content.
fn flaky(ctx: &Ctx<'_>, rest: &str) -> Reply {
    let Some(k) = parse_digits(segment(rest).0) else {
        return Reply::bad_request("/flaky/<k>/ needs a number");
    };
    if hit(ctx) <= k {
        return Reply::text(StatusCode::SERVICE_UNAVAILABLE, "flaky: try again\n");
    }
    content(ctx, Options::new())
}

/// `/retry-after[-date]/<secs>/...`: 429 with Retry-After on the first request
/// to the path, content afterwards.
fn retry_after(ctx: &Ctx<'_>, rest: &str, as_date: bool) -> Reply {
    let Some(secs) = parse_digits(segment(rest).0) else {
        return Reply::bad_request("/retry-after/<secs>/ needs a number");
    };
    if hit(ctx) > 1 {
        return content(ctx, Options::new());
    }
    let value = if as_date {
        let when = SystemTime::now() + Duration::from_secs(secs);
        httpdate::fmt_http_date(when)
    } else {
        secs.to_string()
    };
    Reply::text(StatusCode::TOO_MANY_REQUESTS, "slow down\n")
        .with(header::RETRY_AFTER, ascii_value(value))
}

/// `/drip/...?chunk=C&delay_ms=D`: content in C-byte frames, D ms apart.
fn drip(ctx: &Ctx<'_>) -> Reply {
    let chunk = match query_param(ctx.query, "chunk").map(parse_digits) {
        None => DRIP_CHUNK,
        Some(Some(n)) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
        Some(_) => return Reply::bad_request("?chunk= must be a positive number"),
    };
    let delay = match query_param(ctx.query, "delay_ms").map(parse_digits) {
        None => DRIP_DELAY,
        Some(Some(ms)) => Duration::from_millis(ms),
        Some(None) => return Reply::bad_request("?delay_ms= must be a number"),
    };
    content(ctx, Options::new().drip(chunk, delay))
}

/// `/cd/...?filename=<pct>&filename_star=<pct>`: content plus a
/// Content-Disposition built from the parameters as given. The decoded
/// `filename` is sent raw, path separators and all: clients must sanitize.
fn content_disposition(ctx: &Ctx<'_>) -> Reply {
    let mut value = b"attachment".to_vec();
    if let Some(raw) = query_param(ctx.query, "filename") {
        value.extend_from_slice(b"; filename=\"");
        value.extend_from_slice(&percent_decode(raw));
        value.push(b'"');
    }
    if let Some(raw) = query_param(ctx.query, "filename_star") {
        value.extend_from_slice(b"; filename*=UTF-8''");
        value.extend_from_slice(raw.as_bytes());
    }
    match HeaderValue::from_bytes(&value) {
        Ok(value) => content(ctx, Options::new().disposition(value)),
        Err(_) => Reply::bad_request("the filename contains bytes that cannot go in a header"),
    }
}

/// `/redirect?to=<pct>&code=<3xx>`: a redirect to the decoded `to`.
fn redirect(ctx: &Ctx<'_>) -> Reply {
    let Some(to) = query_param(ctx.query, "to") else {
        return Reply::bad_request("/redirect needs ?to=<percent-encoded URL or path>");
    };
    let code = match query_param(ctx.query, "code").map(parse_digits) {
        None | Some(Some(302)) => StatusCode::FOUND,
        Some(Some(301)) => StatusCode::MOVED_PERMANENTLY,
        Some(Some(303)) => StatusCode::SEE_OTHER,
        Some(Some(307)) => StatusCode::TEMPORARY_REDIRECT,
        Some(Some(308)) => StatusCode::PERMANENT_REDIRECT,
        Some(_) => return Reply::bad_request("?code= must be 301, 302, 303, 307 or 308"),
    };
    match HeaderValue::from_bytes(&percent_decode(to)) {
        Ok(location) => Reply::empty(code).with(header::LOCATION, location),
        Err(_) => Reply::bad_request("?to= contains bytes that cannot go in a header"),
    }
}

/// `/redirect-loop/<n>`: 302 to `/redirect-loop/<n+1>`, forever.
fn redirect_loop(rest: &str) -> Reply {
    let Some(n) = parse_digits(segment(rest).0) else {
        return Reply::not_found();
    };
    let next = format!("/redirect-loop/{}", n.saturating_add(1));
    Reply::empty(StatusCode::FOUND).with(header::LOCATION, ascii_value(next))
}

/// How a content route differs from plain `/file/`.
#[derive(Default)]
struct Options {
    faults: bool,
    chunked: bool,
    drip: Option<(usize, Duration)>,
    disposition: Option<HeaderValue>,
}

impl Options {
    fn new() -> Options {
        Options::default()
    }

    fn faults(mut self) -> Options {
        self.faults = true;
        self
    }

    fn chunked(mut self) -> Options {
        self.chunked = true;
        self
    }

    fn drip(mut self, chunk: usize, delay: Duration) -> Options {
        self.drip = Some((chunk, delay));
        self
    }

    fn disposition(mut self, value: HeaderValue) -> Options {
        self.disposition = Some(value);
        self
    }
}

/// An injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Error500,
    Reset,
}

/// Serve the deterministic content of `ctx.path`, honouring Range and
/// If-Range, and inject faults if `opts.faults` and the config asks for them.
fn content(ctx: &Ctx<'_>, opts: Options) -> Reply {
    let shared = ctx.shared;
    let config = &shared.config;
    let Some(size) = size_param(ctx.query, config.default_size) else {
        return Reply::bad_request("?size= must be a number of bytes");
    };
    let total = size as u64;
    let key = path_key(ctx.path);
    let faulty = opts.faults && (config.error_rate > 0.0 || config.reset_rate > 0.0);

    // Lock the path's state only when something needs it.
    let (version, drawn) = if faulty {
        shared.paths.with(key, |state| {
            state.hits += 1;
            (state.version, draw_fault(config, key, state.hits))
        })
    } else if shared.any_bumped.load(Relaxed) {
        (shared.paths.get(key).version, None)
    } else {
        (0, None)
    };

    if drawn == Some(Fault::Error500) && take_fault(shared, key) {
        return Reply::text(StatusCode::INTERNAL_SERVER_ERROR, "injected fault\n");
    }

    let validators =
        (!config.no_validators).then(|| (etag(ctx.path, version, total), last_modified(version)));
    let (etag_value, lm_value) = match &validators {
        Some((e, l)) => (Some(e.as_str()), Some(l.as_str())),
        None => (None, None),
    };
    let outcome = if config.ignore_range {
        RangeOutcome::Full
    } else {
        let headers = ctx.req.headers();
        match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
            None => RangeOutcome::Full,
            Some(range) => {
                let if_range = headers
                    .get(header::IF_RANGE)
                    .map(|v| v.to_str().unwrap_or(""));
                if if_range.is_some_and(|v| !if_range_matches(v, etag_value, lm_value)) {
                    RangeOutcome::Full
                } else {
                    parse_range(range, total)
                }
            }
        }
    };

    let mut reply = Reply::empty(StatusCode::OK);
    let headers = &mut reply.headers;
    if let Some((etag, lm)) = validators {
        headers.insert(header::ETAG, ascii_value(etag));
        headers.insert(header::LAST_MODIFIED, ascii_value(lm));
    }
    if !config.ignore_range {
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    let (start, end) = match outcome {
        RangeOutcome::Unsatisfiable => {
            reply.status = StatusCode::RANGE_NOT_SATISFIABLE;
            headers.insert(
                header::CONTENT_RANGE,
                ascii_value(format!("bytes */{total}")),
            );
            return reply;
        }
        RangeOutcome::Partial { start, end } => {
            reply.status = StatusCode::PARTIAL_CONTENT;
            let value = format!("bytes {start}-{}/{total}", end - 1);
            headers.insert(header::CONTENT_RANGE, ascii_value(value));
            (start, end)
        }
        RangeOutcome::Full => (0, total),
    };
    headers.insert(header::CONTENT_TYPE, OCTET_STREAM);
    if let Some(disposition) = opts.disposition {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }

    let mut body = Generated::new(content_seed(ctx.path, version), start, end);
    if opts.chunked {
        body = body.without_length();
    } else {
        // Set explicitly rather than left to hyper: a reset body must still
        // announce the full length it will not deliver.
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    }
    if let Some((chunk, delay)) = opts.drip {
        body = body.drip(chunk, delay);
    }
    // A reset needs a body to cut, and a HEAD response has none.
    let can_reset = end > start && ctx.req.method() != Method::HEAD;
    if drawn == Some(Fault::Reset) && can_reset && take_fault(shared, key) {
        body = body.reset_at(start + (end - start) / 2, ctx.conn.reset.clone());
    }
    reply.body = Kind::Generated(body);
    reply
}

/// Which fault, if any, the `hit`-th request to a path draws. Uniform in
/// [0, 1): below `error_rate` is a 500, the next `reset_rate` a reset.
fn draw_fault(config: &crate::Config, key: u64, hit: u64) -> Option<Fault> {
    let bits = mix(mix(config.seed ^ key).wrapping_add(hit));
    let x = (bits >> 11) as f64 / (1u64 << 53) as f64;
    if x < config.error_rate {
        Some(Fault::Error500)
    } else if x < config.error_rate + config.reset_rate {
        Some(Fault::Reset)
    } else {
        None
    }
}

/// Spend one of the path's fault budget; false once it is used up, so retries
/// always get through in the end.
fn take_fault(shared: &Shared, key: u64) -> bool {
    let max = shared.config.max_faults_per_path;
    let allowed = shared.paths.with(key, |state| {
        let allowed = state.faults < max;
        state.faults += u32::from(allowed);
        allowed
    });
    if allowed {
        shared.counters.faults.fetch_add(1, Relaxed);
    }
    allowed
}

/// A header value from a string this module formatted itself (digits, hex,
/// HTTP dates, paths): always visible ASCII, so conversion cannot fail.
fn ascii_value(s: String) -> HeaderValue {
    HeaderValue::try_from(s).expect("formatted header values are visible ASCII")
}
