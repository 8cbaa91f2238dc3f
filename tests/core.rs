//! The core download engine, end to end.

use std::time::{Duration, Instant};

use haul_origin::{expected, Config, Origin};

use crate::util::{assert_exit, haul, read, run, stderr, Scratch};

fn paths(n: usize, f: impl Fn(usize) -> String) -> Vec<String> {
    (0..n).map(f).collect()
}

/// An origin that answers 10% of `/file/` requests with 500 and cuts 5%
/// short, each path at most three times.
async fn faulty_origin() -> Origin {
    Origin::start(Config {
        error_rate: 0.10,
        reset_rate: 0.05,
        ..Config::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_do_not_lose_or_corrupt_files() {
    let origin = faulty_origin().await;
    let s = Scratch::new();
    let pq = paths(500, |i| {
        format!("/file/f{i}.bin?size={}", 1 + (i * 7919) % 65536)
    });
    let urls: Vec<String> = pq.iter().map(|p| origin.url(p)).collect();
    let list = s.list("urls.txt", &urls);
    let o = run(&[
        "-i",
        list.to_str().unwrap(),
        "-o",
        s.out().to_str().unwrap(),
        "--report",
        s.path("report.jsonl").to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 0);
    let stats = origin.stats();
    assert!(stats.faults_injected > 50, "faults injected: {stats:?}");
    for (i, p) in pq.iter().enumerate() {
        assert_eq!(
            read(s.out().join(format!("f{i}.bin"))),
            expected(p),
            "file {i} is not byte-exact"
        );
    }
    assert_eq!(
        s.out_files().len(),
        500,
        "stray files: no .part may be left"
    );
    let manifest = s.manifest("report.jsonl");
    assert_eq!(manifest.len(), 500);
    assert!(manifest.iter().all(|m| m["status"] == "ok"));
    let retried = manifest.iter().filter(|m| m["attempts"] != 1).count();
    assert!(retried > 50, "only {retried} items needed a retry");
    // The summary reports the outcome.
    assert!(
        stderr(&o).contains("500 done, 0 skipped, 0 failed"),
        "{}",
        stderr(&o)
    );
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_fail_at_once_and_the_rest_arrive() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let mut urls = paths(20, |i| origin.url(&format!("/file/ok{i}")));
    let bad = [
        "/status/404/missing",
        "/status/403/forbidden",
        "/status/410/gone",
    ];
    urls.extend(bad.iter().map(|p| origin.url(p)));
    let list = s.list("urls.txt", &urls);
    let o = s
        .fetch(&list, &["--failed", s.path("failed.txt").to_str().unwrap()])
        .await;
    assert_exit(&o, 1);
    for i in 0..20 {
        assert_eq!(
            read(s.out().join(format!("ok{i}"))),
            expected(&format!("/file/ok{i}"))
        );
    }
    for p in bad {
        assert_eq!(origin.requests(p), 1, "{p} was retried");
    }
    let mut failed: Vec<String> = std::fs::read_to_string(s.path("failed.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    failed.sort();
    let mut want: Vec<String> = bad.iter().map(|p| origin.url(p)).collect();
    want.sort();
    assert_eq!(failed, want);
    let manifest = s.manifest("r.jsonl");
    for m in manifest.iter().filter(|m| m["status"] == "failed") {
        let code = m["http_status"].as_u64().unwrap();
        assert!([404, 403, 410].contains(&code), "{m}");
        assert!(m["error"]
            .as_str()
            .unwrap()
            .starts_with(&format!("HTTP {code}")));
        assert_eq!(m["attempts"], 1);
    }
    assert!(
        stderr(&o).contains("failed       1  HTTP 404 Not Found"),
        "{}",
        stderr(&o)
    );
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_host_limit_is_never_exceeded() {
    let origin = Origin::start(Config {
        latency: Duration::from_millis(30),
        ..Config::default()
    })
    .await
    .unwrap();
    let s = Scratch::new();
    let mut urls = paths(60, |i| origin.url(&format!("/file/a{i}")));
    urls.extend(paths(60, |i| origin.url_host2(&format!("/file/b{i}"))));
    let list = s.list("urls.txt", &urls);
    let o = run(&[
        "-i",
        list.to_str().unwrap(),
        "-o",
        s.out().to_str().unwrap(),
        "--per-host",
        "4",
        "-j",
        "64",
    ])
    .await;
    assert_exit(&o, 0);
    let stats = origin.stats();
    let host1 = format!("127.0.0.1:{}", origin.port());
    let host2 = format!("127.0.0.2:{}", origin.port());
    assert_eq!(
        stats.max_in_flight_per_host.get(&host1),
        Some(&4),
        "{stats:?}"
    );
    assert_eq!(
        stats.max_in_flight_per_host.get(&host2),
        Some(&4),
        "{stats:?}"
    );
    // Both hosts ran at once: the per-host limit does not serialize hosts.
    assert!(stats.max_in_flight > 4, "{stats:?}");
    assert_eq!(s.out_files().len(), 120);
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_limit_is_never_exceeded() {
    let origin = Origin::start(Config {
        latency: Duration::from_millis(30),
        ..Config::default()
    })
    .await
    .unwrap();
    let s = Scratch::new();
    let mut urls = paths(40, |i| origin.url(&format!("/file/a{i}")));
    urls.extend(paths(40, |i| origin.url_host2(&format!("/file/b{i}"))));
    let list = s.list("urls.txt", &urls);
    let o = run(&[
        "-i",
        list.to_str().unwrap(),
        "-o",
        s.out().to_str().unwrap(),
        "-j",
        "6",
    ])
    .await;
    assert_exit(&o, 0);
    assert_eq!(origin.stats().max_in_flight, 6);
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_in_seconds_and_dates() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    for (route, name) in [
        ("/retry-after/2/ra.bin", "ra.bin"),
        ("/retry-after-date/3/rd.bin", "rd.bin"),
    ] {
        let started = Instant::now();
        let o = run(&[&origin.url(route), "-o", s.out().to_str().unwrap()]).await;
        let took = started.elapsed();
        assert_exit(&o, 0);
        assert_eq!(origin.requests(route), 2);
        assert_eq!(read(s.out().join(name)), expected(route));
        // An HTTP date has one-second resolution, so allow a second less.
        assert!(
            took >= Duration::from_millis(1900),
            "{route}: waited only {took:?}"
        );
    }
    // --max-retry-wait caps what the server may ask for.
    let started = Instant::now();
    let route = "/retry-after/600/capped.bin";
    let o = run(&[
        &origin.url(route),
        "-o",
        s.out().to_str().unwrap(),
        "--max-retry-wait",
        "0.2",
    ])
    .await;
    assert_exit(&o, 0);
    assert!(started.elapsed() < Duration::from_secs(60));
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_written_outside_the_output_directory() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let cd = "/cd/x?filename=..%2F..%2Fescape.txt";
    let star = "/cd/y?filename_star=..%2F..%2Fstar.txt";
    let o = run(&[
        &origin.url(cd),
        &origin.url(star),
        &origin.url("/file/%2e%2e%2fup.txt"),
        &origin.url("/file/..%2F..%2F..%2Fdeep.txt"),
        "-o",
        s.out().to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 0);
    let files = s.files();
    assert!(files.iter().all(|f| f.starts_with("out/")), "{files:?}");
    assert_eq!(
        s.out_files(),
        vec![".._.._.._deep.txt", ".._up.txt", "escape.txt", "star.txt"],
    );
    assert_eq!(read(s.out().join("escape.txt")), expected(cd));
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_names_get_distinct_deterministic_names() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let routes = [
        "/file/a/x.bin?size=100",
        "/file/b/x.bin?size=200",
        "/file/c/x.bin?size=300",
    ];
    let urls: Vec<String> = routes.iter().map(|r| origin.url(r)).collect();
    let list = s.list("urls.txt", &urls);
    let o = s.fetch(&list, &[]).await;
    assert_exit(&o, 0);
    // Names follow input order, whatever order the transfers finish in.
    assert_eq!(read(s.out().join("x.bin")), expected(routes[0]));
    assert_eq!(read(s.out().join("x-1.bin")), expected(routes[1]));
    assert_eq!(read(s.out().join("x-2.bin")), expected(routes[2]));
    let manifest = s.manifest("r.jsonl");
    for (route, name) in routes.iter().zip(["x.bin", "x-1.bin", "x-2.bin"]) {
        let m = manifest
            .iter()
            .find(|m| m["url"] == origin.url(route))
            .unwrap();
        assert_eq!(m["path"], name);
    }
    origin.stop().await;
}

/// Replaces what changes between runs (port, timings, temp paths).
fn normalize(manifest: &[serde_json::Value], port: u16, list: &str) -> String {
    let mut lines: Vec<String> = manifest
        .iter()
        .map(|m| {
            let mut m = m.clone();
            m["elapsed_ms"] = serde_json::json!("<ms>");
            serde_json::to_string(&m)
                .unwrap()
                .replace(&port.to_string(), "PORT")
                .replace(list, "LIST")
        })
        .collect();
    lines.sort_by_key(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        (
            v["input"].as_str().unwrap().to_string(),
            v["line"].as_u64().unwrap(),
        )
    });
    lines.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_has_one_line_per_input_item() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    std::fs::create_dir_all(s.out()).unwrap();
    std::fs::write(s.out().join("old.bin"), b"kept").unwrap();
    let lines = [
        "# a comment, not an item".to_string(),
        origin.url("/file/one.bin?size=10"),
        String::new(),
        origin.url("/file/one.bin?size=10"),
        "not a url".to_string(),
        "ftp://127.0.0.1/file.bin".to_string(),
        origin.url("/status/404/missing.bin"),
        origin.url("/file/old.bin"),
        origin.url("/chunked/two.bin?size=20"),
    ];
    let list = s.list("urls.txt", &lines);
    let o = s.fetch(&list, &[]).await;
    assert_exit(&o, 1);
    let manifest = s.manifest("r.jsonl");
    assert_eq!(manifest.len(), 7);
    assert_eq!(read(s.out().join("old.bin")), b"kept");
    assert_eq!(
        origin.requests("/file/one.bin"),
        1,
        "duplicate fetched twice"
    );
    assert_eq!(origin.requests("/file/old.bin"), 0, "existing file fetched");
    insta::assert_snapshot!(normalize(&manifest, origin.port(), list.to_str().unwrap()));
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_leaves_no_incomplete_file_under_a_final_name() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    // Small files finish at once; slow ones are cut off mid-body.
    let mut routes = paths(30, |i| format!("/file/quick{i}.bin?size=5000"));
    routes.extend(paths(20, |i| {
        format!("/drip/slow{i}.bin?size=400000&chunk=8000&delay_ms=40")
    }));
    let urls: Vec<String> = routes.iter().map(|r| origin.url(r)).collect();
    let list = s.list("urls.txt", &urls);
    let child = haul(&[
        "-i",
        list.to_str().unwrap(),
        "-o",
        s.out().to_str().unwrap(),
        "--report",
        s.path("r.jsonl").to_str().unwrap(),
    ])
    .spawn()
    .unwrap();
    // Wait until the quick files are in and the slow ones are mid-body.
    let deadline = Instant::now() + Duration::from_secs(20);
    while s
        .out_files()
        .iter()
        .filter(|f| f.starts_with("quick") && !f.ends_with(".part"))
        .count()
        < 30
    {
        assert!(Instant::now() < deadline, "quick files did not arrive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().await.unwrap();
    assert_exit(&o, 130);
    assert!(stderr(&o).contains("interrupted:"), "{}", stderr(&o));
    let files = s.out_files();
    // The slow transfers were cut off: each left a non-empty .part and
    // nothing under its final name.
    let parts: Vec<&String> = files.iter().filter(|f| f.ends_with(".part")).collect();
    assert!(!parts.is_empty(), "{files:?}");
    for p in &parts {
        assert!(p.starts_with("slow"), "{files:?}");
        let len = std::fs::metadata(s.out().join(p)).unwrap().len();
        assert!(len > 0 && len < 400_000, "{p}: {len} bytes");
    }
    for f in files.iter().filter(|f| !f.ends_with(".part")) {
        let route = routes
            .iter()
            .find(|r| r.split('?').next().unwrap().ends_with(&format!("/{f}")))
            .unwrap();
        assert_eq!(read(s.out().join(f)), expected(route), "{f} is incomplete");
    }
    // Interrupted transfers are reported, not forgotten.
    let manifest = s.manifest("r.jsonl");
    assert!(manifest.iter().any(|m| m["error"] == "interrupted"));
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_and_credentials_stay_home() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let same = format!("/redirect?to={}", "%2Ffile%2Fsame.bin");
    let target = origin.url_host2("/file/cross.bin");
    let cross = format!(
        "/redirect?to={}",
        target.replace(':', "%3A").replace('/', "%2F")
    );
    let o = run(&[
        &origin.url(&same),
        &origin.url(&cross),
        &origin.url("/redirect-loop/0"),
        "-o",
        s.out().to_str().unwrap(),
        "-H",
        "Authorization: Bearer secret",
        "-H",
        "Cookie: session=1",
        "--report",
        s.path("r.jsonl").to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 1);
    // Named after the URL asked for, content from where it led.
    assert_eq!(read(s.out().join("redirect")), expected("/file/same.bin"));
    let log = origin.log();
    let same_hop = log.iter().find(|r| r.path == "/file/same.bin").unwrap();
    assert_eq!(same_hop.authorization.as_deref(), Some("Bearer secret"));
    let cross_hop = log.iter().find(|r| r.path == "/file/cross.bin").unwrap();
    assert_eq!(cross_hop.authorization, None);
    assert_eq!(cross_hop.cookie, None);
    assert!(log
        .iter()
        .filter(|r| r.path == "/redirect")
        .all(|r| r.authorization.as_deref() == Some("Bearer secret")));
    // A loop ends after 10 redirects.
    let hops = log
        .iter()
        .filter(|r| r.path.starts_with("/redirect-loop/"))
        .count();
    assert_eq!(hops, 11);
    let manifest = s.manifest("r.jsonl");
    let looped = manifest
        .iter()
        .find(|m| m["url"].as_str().unwrap().contains("redirect-loop"))
        .unwrap();
    assert_eq!(looped["status"], "failed");
    assert!(looped["error"]
        .as_str()
        .unwrap()
        .contains("more than 10 redirects"));
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_times_out_and_is_retried() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let route = "/drip/stall.bin?size=4000&chunk=1000&delay_ms=1500";
    let o = run(&[
        &origin.url(route),
        "-o",
        s.out().to_str().unwrap(),
        "--read-timeout",
        "0.3",
        "--retries",
        "2",
        "--report",
        s.path("r.jsonl").to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 1);
    assert_eq!(origin.requests("/drip/stall.bin"), 3);
    let m = &s.manifest("r.jsonl")[0];
    assert!(m["error"].as_str().unwrap().starts_with("timed out"), "{m}");
    // What arrived is kept as a partial for a later run, never as the file.
    assert_eq!(s.out_files(), vec!["stall.bin.part"]);
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_statuses_are_retried_until_they_pass() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let o = run(&[
        &origin.url("/flaky/3/f.bin"),
        &origin.url("/flaky/9/never.bin"),
        "-o",
        s.out().to_str().unwrap(),
        "--retries",
        "4",
    ])
    .await;
    assert_exit(&o, 1);
    assert_eq!(origin.requests("/flaky/3/f.bin"), 4);
    assert_eq!(origin.requests("/flaky/9/never.bin"), 5);
    assert_eq!(read(s.out().join("f.bin")), expected("/flaky/3/f.bin"));
    assert!(
        stderr(&o).contains("HTTP 503 Service Unavailable"),
        "{}",
        stderr(&o)
    );
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_files_are_skipped_unless_overwrite() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    std::fs::create_dir_all(s.out()).unwrap();
    std::fs::write(s.out().join("a.bin"), b"old").unwrap();
    let url = origin.url("/file/a.bin");
    let o = run(&[&url, "-o", s.out().to_str().unwrap()]).await;
    assert_exit(&o, 0);
    assert_eq!(read(s.out().join("a.bin")), b"old");
    assert_eq!(origin.requests("/file/a.bin"), 0);
    let o = run(&[&url, "-o", s.out().to_str().unwrap(), "--overwrite"]).await;
    assert_exit(&o, 0);
    assert_eq!(read(s.out().join("a.bin")), expected("/file/a.bin"));
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_inside_the_output_directory_is_not_overwritten() {
    // A report of the job written in the output directory keeps its name
    // from the downloads.
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let out = s.out();
    // In a directory that does not exist yet.
    let report = out.join("file").join("r.jsonl");
    let urls = [origin.url("/file/a.bin"), origin.url("/file/r.jsonl")];
    let list = s.list("urls.txt", &urls);
    let o = run(&[
        "-i",
        list.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--name",
        "{path}/{name}",
        "--report",
        report.to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 0);
    // The download that wanted the report's name takes the next free one.
    assert_eq!(
        s.out_files(),
        vec!["file/a.bin", "file/r-1.jsonl", "file/r.jsonl"]
    );
    assert_eq!(read(out.join("file/a.bin")), expected("/file/a.bin"));
    assert_eq!(read(out.join("file/r-1.jsonl")), expected("/file/r.jsonl"));
    let lines = std::fs::read_to_string(&report).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");
    assert!(lines.contains("\"path\":\"file/r-1.jsonl\""), "{lines}");
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_is_streamed_from_stdin() {
    use tokio::io::AsyncWriteExt;
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let mut child = haul(&["-i", "-", "-o", s.out().to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{}\n", origin.url("/file/first")).as_bytes())
        .await
        .unwrap();
    stdin.flush().await.unwrap();
    // The first transfer starts while the input is still open.
    let deadline = Instant::now() + Duration::from_secs(20);
    while origin.requests("/file/first") == 0 {
        assert!(
            Instant::now() < deadline,
            "first URL not fetched before input ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stdin
        .write_all(format!("{}\n", origin.url("/file/second")).as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let o = child.wait_with_output().await.unwrap();
    assert_exit(&o, 0);
    assert_eq!(s.out_files(), vec!["first", "second"]);
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_usage_and_unreadable_input_exit_2() {
    let s = Scratch::new();
    let o = run(&["-i", s.path("missing.txt").to_str().unwrap()]).await;
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("missing.txt"), "{}", stderr(&o));
    let o = run(&[]).await;
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("no URLs"), "{}", stderr(&o));
    let o = run(&["--jobs", "0", "http://127.0.0.1:9/"]).await;
    assert_exit(&o, 2);
    let o = run(&["-H", "nonsense", "http://127.0.0.1:9/"]).await;
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("bad header"), "{}", stderr(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_agent_and_headers_are_sent() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let o = run(&[&origin.url("/file/ua"), "-o", s.out().to_str().unwrap()]).await;
    assert_exit(&o, 0);
    let o = run(&[
        &origin.url("/file/ua2"),
        "-o",
        s.out().to_str().unwrap(),
        "-A",
        "custom/1",
    ])
    .await;
    assert_exit(&o, 0);
    let log = origin.log();
    let ua = |p: &str| log.iter().find(|r| r.path == p).unwrap().user_agent.clone();
    assert_eq!(
        ua("/file/ua"),
        Some(format!("haul/{}", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(ua("/file/ua2").as_deref(), Some("custom/1"));
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portable_file_path_saves_every_file_whole_and_durable() {
    // NAME.part, fsync, rename, fsync the directory: what platforms without
    // O_TMPFILE and syncfs run, kept working here by a hidden switch.
    let origin = faulty_origin().await;
    let s = Scratch::new();
    let pq = paths(120, |i| {
        format!("/file/p{i}.bin?size={}", 1 + (i * 7919) % 400_000)
    });
    let urls: Vec<String> = pq.iter().map(|p| origin.url(p)).collect();
    let list = s.list("urls.txt", &urls);
    let o = s.fetch(&list, &["--portable-files"]).await;
    assert_exit(&o, 0);
    for (i, p) in pq.iter().enumerate() {
        assert_eq!(
            read(s.out().join(format!("p{i}.bin"))),
            expected(p),
            "file {i}"
        );
    }
    assert_eq!(s.out_files().len(), 120, "no .part is left");
    // Each file was synced as it was saved: all are done, none waits for
    // a check on the next run.
    let db = rusqlite::Connection::open(s.out().join(".haul/state.db")).unwrap();
    let synced: i64 = db
        .query_row("SELECT COUNT(*) FROM items WHERE state = 'ok'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(synced, 120);
    drop(db);
    let o = s.fetch(&list, &["--portable-files"]).await;
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("0 done, 120 skipped"), "{}", stderr(&o));
    origin.stop().await;
}
