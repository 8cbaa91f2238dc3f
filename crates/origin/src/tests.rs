//! End-to-end tests: a real origin on loopback, spoken to with hand-written
//! HTTP/1.1 over a `TcpStream`, so no HTTP client library hides what the
//! server actually sends.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{body_for, expected, Config, Origin};

/// A parsed HTTP/1.1 response. `complete` is false when the connection ended
/// before the announced Content-Length arrived.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    complete: bool,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Send one request on a fresh connection (`Connection: close`) to `host`
/// (`"127.0.0.1"` or `"127.0.0.2"`) and read until the server closes.
async fn request(
    origin: &Origin,
    host: &str,
    method: &str,
    target: &str,
    extra: &[(&str, &str)],
) -> Raw {
    let authority = format!("{host}:{}", origin.port());
    let mut stream = TcpStream::connect(&authority)
        .await
        .expect("connect to origin");
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("send request");

    // An injected reset may end the stream with an error instead of EOF:
    // keep whatever arrived before it.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    parse(&raw, method == "HEAD")
}

fn parse(raw: &[u8], head_only: bool) -> Raw {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response has a header block");
    let head = std::str::from_utf8(&raw[..split]).expect("ASCII headers");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut response = Raw {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
        complete: true,
    };
    if head_only {
        return response;
    }
    if response.header("transfer-encoding") == Some("chunked") {
        response.body = dechunk(&response.body);
    } else if let Some(len) = response.header("content-length") {
        let len: usize = len.parse().expect("numeric content-length");
        response.complete = response.body.len() == len;
    }
    response
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&data[..line_end]).expect("ASCII chunk size");
        let size = usize::from_str_radix(size_text.trim(), 16).expect("hex chunk size");
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

async fn get(origin: &Origin, target: &str) -> Raw {
    request(origin, "127.0.0.1", "GET", target, &[]).await
}

#[tokio::test]
async fn serves_files_and_ranges() {
    let origin = Origin::start(Config::default())
        .await
        .expect("origin starts");

    let full = get(&origin, "/file/a?size=100").await;
    assert_eq!(full.status, 200);
    assert_eq!(full.body, expected("/file/a?size=100"));
    assert_eq!(full.header("content-length"), Some("100"));
    assert_eq!(
        full.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(full.header("accept-ranges"), Some("bytes"));
    assert_eq!(
        full.header("last-modified"),
        Some("Fri, 01 Jan 2021 00:00:00 GMT")
    );
    let etag = full.header("etag").expect("etag").to_owned();

    let part = request(
        &origin,
        "127.0.0.1",
        "GET",
        "/file/a?size=100",
        &[("Range", "bytes=10-19")],
    )
    .await;
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), Some("bytes 10-19/100"));
    assert_eq!(part.body, expected("/file/a?size=100")[10..20]);

    let tail = request(
        &origin,
        "127.0.0.1",
        "GET",
        "/file/a?size=100",
        &[("Range", "bytes=90-")],
    )
    .await;
    assert_eq!((tail.status, &tail.body[..]), (206, &full.body[90..]));

    let past = request(
        &origin,
        "127.0.0.1",
        "GET",
        "/file/a?size=100",
        &[("Range", "bytes=100-")],
    )
    .await;
    assert_eq!(past.status, 416);
    assert_eq!(past.header("content-range"), Some("bytes */100"));

    let same = [("Range", "bytes=50-"), ("If-Range", etag.as_str())];
    let resumed = request(&origin, "127.0.0.1", "GET", "/file/a?size=100", &same).await;
    assert_eq!((resumed.status, &resumed.body[..]), (206, &full.body[50..]));

    let stale = [("Range", "bytes=50-"), ("If-Range", "\"0000000000000000\"")];
    let restarted = request(&origin, "127.0.0.1", "GET", "/file/a?size=100", &stale).await;
    assert_eq!(
        (restarted.status, &restarted.body[..]),
        (200, &full.body[..])
    );

    let head = request(&origin, "127.0.0.1", "HEAD", "/file/a?size=100", &[]).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("100"));
    assert!(head.body.is_empty());

    assert_eq!(origin.requests("/file/a"), 7);
    let stats = origin.stats();
    assert_eq!(stats.requests, 7);
    assert_eq!(stats.faults_injected, 0);
    assert_eq!(stats.responses_by_status[&206], 3);
    assert_eq!(stats.bytes_sent, 100 + 10 + 10 + 50 + 100);
    let log = origin.log();
    assert_eq!(log[1].range.as_deref(), Some("bytes=10-19"));
    assert_eq!(log[1].query.as_deref(), Some("size=100"));
    assert_eq!(log[4].if_range.as_deref(), Some(etag.as_str()));
    assert_eq!(log[6].method, "HEAD");

    tokio::time::timeout(Duration::from_secs(5), origin.stop())
        .await
        .expect("stop completes");
}

#[tokio::test]
async fn second_host_is_distinct() {
    let origin = Origin::start(Config::default())
        .await
        .expect("origin starts");
    assert!(origin.url_host2("/x").starts_with("http://127.0.0.2:"));
    let one = request(
        &origin,
        "127.0.0.2",
        "GET",
        "/file/b?size=10",
        &[("Authorization", "Bearer t")],
    )
    .await;
    assert_eq!(one.body, expected("/file/b?size=10"));
    let log = origin.log();
    assert_eq!(log[0].host, format!("127.0.0.2:{}", origin.port()));
    assert_eq!(log[0].authorization.as_deref(), Some("Bearer t"));
    let stats = origin.stats();
    assert_eq!(
        stats.max_in_flight_per_host[&format!("127.0.0.2:{}", origin.port())],
        1
    );
    origin.stop().await;
}

#[tokio::test]
async fn in_flight_is_counted_until_the_body_ends() {
    let config = Config {
        latency: Duration::from_millis(100),
        ..Config::default()
    };
    let origin = Origin::start(config).await.expect("origin starts");
    let (a, b, c) = tokio::join!(
        get(&origin, "/file/1?size=10"),
        get(&origin, "/file/2?size=10"),
        request(&origin, "127.0.0.2", "GET", "/file/3?size=10", &[]),
    );
    assert!([a.status, b.status, c.status].iter().all(|s| *s == 200));
    let stats = origin.stats();
    assert_eq!((stats.max_in_flight, stats.in_flight), (3, 0));
    assert_eq!(
        stats.max_in_flight_per_host[&format!("127.0.0.1:{}", origin.port())],
        2
    );
    origin.stop().await;
}

#[tokio::test]
async fn injected_resets_cut_the_body_within_budget() {
    let config = Config {
        reset_rate: 1.0,
        max_faults_per_path: 1,
        ..Config::default()
    };
    let origin = Origin::start(config).await.expect("origin starts");
    // Well under the body's 2 s fallback: the socket wrapper did the reset.
    let cut = tokio::time::timeout(Duration::from_secs(1), get(&origin, "/file/r?size=200000"))
        .await
        .expect("reset is prompt");
    assert_eq!(cut.status, 200);
    assert_eq!(cut.header("content-length"), Some("200000"));
    assert!(!cut.complete);
    assert_eq!(cut.body[..], expected("/file/r?size=200000")[..100_000]);

    let whole = get(&origin, "/file/r?size=200000").await;
    assert!(whole.complete);
    assert_eq!(whole.body, expected("/file/r?size=200000"));
    assert_eq!(origin.stats().faults_injected, 1);

    // A resumed request is cut at half of the range it asked for.
    let range = [("Range", "bytes=1000-")];
    let cut = request(&origin, "127.0.0.1", "GET", "/file/r2?size=3000", &range).await;
    assert_eq!(
        (cut.status, cut.header("content-length")),
        (206, Some("2000"))
    );
    assert_eq!(cut.body[..], expected("/file/r2?size=3000")[1000..2000]);
    assert!(!cut.complete);
    origin.stop().await;
}

#[tokio::test]
async fn injected_errors_stop_at_the_budget() {
    let config = Config {
        error_rate: 1.0,
        max_faults_per_path: 2,
        ..Config::default()
    };
    let origin = Origin::start(config).await.expect("origin starts");
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(get(&origin, "/file/e?size=10").await.status);
    }
    assert_eq!(statuses, [500, 500, 200]);
    // Other routes never fault.
    assert_eq!(get(&origin, "/chunked/e?size=10").await.status, 200);
    assert_eq!(origin.stats().faults_injected, 2);
    origin.stop().await;
}

#[tokio::test]
async fn fault_decisions_repeat_with_the_seed() {
    async fn run() -> Vec<u16> {
        let config = Config {
            error_rate: 0.5,
            max_faults_per_path: 100,
            ..Config::default()
        };
        let origin = Origin::start(config).await.expect("origin starts");
        let mut statuses = Vec::new();
        for _ in 0..12 {
            statuses.push(get(&origin, "/file/s?size=1").await.status);
        }
        origin.stop().await;
        statuses
    }
    let first = run().await;
    assert!(first.contains(&500) && first.contains(&200), "{first:?}");
    assert_eq!(first, run().await);
}

#[tokio::test]
async fn special_routes() {
    let origin = Origin::start(Config::default())
        .await
        .expect("origin starts");

    assert_eq!(get(&origin, "/status/403/x").await.status, 403);
    assert_eq!(get(&origin, "/nope").await.status, 404);
    assert_eq!(get(&origin, "/file").await.status, 404);
    assert_eq!(get(&origin, "/file/a?size=ten").await.status, 400);

    let flaky: Vec<u16> = [
        get(&origin, "/flaky/2/f?size=5").await,
        get(&origin, "/flaky/2/f?size=5").await,
        get(&origin, "/flaky/2/f?size=5").await,
    ]
    .iter()
    .map(|r| r.status)
    .collect();
    assert_eq!(flaky, [503, 503, 200]);
    assert_eq!(
        get(&origin, "/flaky/2/f?size=5").await.body,
        expected("/flaky/2/f?size=5")
    );

    let limited = get(&origin, "/retry-after/7/r").await;
    assert_eq!(
        (limited.status, limited.header("retry-after")),
        (429, Some("7"))
    );
    assert_eq!(
        get(&origin, "/retry-after/7/r").await.body,
        expected("/retry-after/7/r")
    );
    let dated = get(&origin, "/retry-after-date/30/r").await;
    let when = httpdate::parse_http_date(dated.header("retry-after").expect("retry-after"))
        .expect("HTTP date");
    assert!(when > std::time::SystemTime::now());

    let cd = get(&origin, "/cd/x?filename=..%2F..%2Fevil%20name.txt&size=3").await;
    assert_eq!(
        cd.header("content-disposition"),
        Some("attachment; filename=\"../../evil name.txt\"")
    );
    assert_eq!(cd.body, expected("/cd/x?size=3"));
    let star = get(&origin, "/cd/y?filename_star=%E2%9C%93.bin").await;
    assert_eq!(
        star.header("content-disposition"),
        Some("attachment; filename*=UTF-8''%E2%9C%93.bin")
    );

    let moved = get(&origin, "/redirect?to=%2Ffile%2Fz%3Fsize%3D4&code=301").await;
    assert_eq!(
        (moved.status, moved.header("location")),
        (301, Some("/file/z?size=4"))
    );
    let looped = get(&origin, "/redirect-loop/4").await;
    assert_eq!(
        (looped.status, looped.header("location")),
        (302, Some("/redirect-loop/5"))
    );

    let html = get(&origin, "/html/page").await;
    assert!(html
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/html")));

    let chunked = get(&origin, "/chunked/c?size=70000").await;
    assert_eq!(chunked.header("content-length"), None);
    assert_eq!(chunked.body, expected("/chunked/c?size=70000"));

    let dripped = get(&origin, "/drip/d?size=50&chunk=16&delay_ms=1").await;
    assert_eq!(dripped.body, expected("/drip/d?size=50"));

    assert_eq!(get(&origin, "/status/999/x").await.status, 400);
    origin.stop().await;
}

#[tokio::test]
async fn bump_changes_content_and_validators() {
    let origin = Origin::start(Config::default())
        .await
        .expect("origin starts");
    let before = get(&origin, "/file/v?size=64").await;
    origin.bump("/file/v");
    let after = get(&origin, "/file/v?size=64").await;
    assert_eq!(after.body, body_for("/file/v", 1, 64));
    assert_ne!(before.body, after.body);
    assert_ne!(before.header("etag"), after.header("etag"));
    assert_eq!(
        after.header("last-modified"),
        Some("Fri, 01 Jan 2021 00:00:01 GMT")
    );
    let old_etag = before.header("etag").expect("etag");
    let resume = [("Range", "bytes=32-"), ("If-Range", old_etag)];
    let restarted = request(&origin, "127.0.0.1", "GET", "/file/v?size=64", &resume).await;
    assert_eq!((restarted.status, restarted.body.len()), (200, 64));
    origin.stop().await;
}

#[tokio::test]
async fn config_switches() {
    let config = Config {
        ignore_range: true,
        no_validators: true,
        default_size: 33,
        ..Config::default()
    };
    let origin = Origin::start(config).await.expect("origin starts");
    let r = request(
        &origin,
        "127.0.0.1",
        "GET",
        "/file/q",
        &[("Range", "bytes=5-")],
    )
    .await;
    assert_eq!((r.status, r.body.len()), (200, 33));
    assert_eq!(r.body, body_for("/file/q", 0, 33));
    assert_eq!(r.header("accept-ranges"), None);
    assert_eq!(r.header("etag"), None);
    assert_eq!(r.header("last-modified"), None);
    origin.stop().await;
}

#[tokio::test]
async fn robots_status_answers_robots_txt_only() {
    let origin = Origin::start(Config {
        robots_status: Some(503),
        ..Config::default()
    })
    .await
    .expect("origin starts");
    let r = get(&origin, "/robots.txt").await;
    assert_eq!(
        (r.status, r.body.as_slice()),
        (503, &b"503 Service Unavailable\n"[..])
    );
    assert_eq!(get(&origin, "/file/a").await.status, 200);
    assert_eq!(origin.requests("/robots.txt"), 1);
    origin.stop().await;
}

#[tokio::test]
async fn dropping_the_origin_closes_it() {
    let origin = Origin::start(Config::default())
        .await
        .expect("origin starts");
    let port = origin.port();
    drop(origin);
    // Aborted tasks release their listeners on their next poll.
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("port {port} still accepts connections after drop");
}
