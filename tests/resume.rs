//! Resumable jobs: re-runs, kill -9, validated Range resume, `haul status`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use haul_origin::{body_for, expected, Config, Origin};

use crate::util::{assert_exit, haul, read, run, status_report, stderr, Scratch};

/// Starts `haul`, waits until `ready` holds for the output directory, then
/// SIGKILLs it.
async fn kill_when(args: &[&str], s: &Scratch, ready: impl Fn(&Scratch) -> bool) {
    let mut child = haul(args).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready(s) {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("haul ended before it could be killed: {status}");
        }
        assert!(Instant::now() < deadline, "condition never held");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

fn part_len(s: &Scratch, name: &str) -> u64 {
    std::fs::metadata(s.out().join(format!("{name}.part")))
        .map(|m| m.len())
        .unwrap_or(0)
}

fn finals(s: &Scratch) -> Vec<String> {
    s.out_files()
        .into_iter()
        .filter(|f| !f.ends_with(".part"))
        .collect()
}

/// The URLs the job state in `s`'s output records as done.
fn recorded_done(s: &Scratch) -> Vec<String> {
    status_report(s, &[s.out().to_str().unwrap()])
        .into_iter()
        .filter(|v| v["status"] == "ok")
        .map(|v| v["url"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_several_points_then_rerun_ends_byte_exact() {
    let origin = Origin::start(Config {
        latency: Duration::from_millis(20),
        ..Config::default()
    })
    .await
    .unwrap();
    let s = Scratch::new();
    let mut routes: Vec<String> = (0..300)
        .map(|i| format!("/file/s{i}.bin?size={}", 2000 + i * 37))
        .collect();
    routes.extend((0..6).map(|i| format!("/drip/big{i}.bin?size=3000000&chunk=65536&delay_ms=15")));
    let urls: Vec<String> = routes.iter().map(|r| origin.url(r)).collect();
    let list = s.list("urls.txt", &urls);
    let out = s.out();
    let args = [
        "-i",
        list.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-j",
        "8",
    ];
    // Files recorded complete at each kill, with their request counts
    // then. A file renamed into place in the moment before the kill may
    // not be recorded yet: the re-run cannot tell it from a file that was
    // there before, and fetches it again (CI once killed haul in that
    // moment).
    let mut complete_at_kill: HashMap<String, u64> = HashMap::new();
    let path_of = |f: &str| {
        routes
            .iter()
            .map(|r| r.split('?').next().unwrap().to_string())
            .find(|p| p.ends_with(&format!("/{f}")))
            .unwrap()
    };
    for (k, threshold) in [(1, 20usize), (2, 90), (3, 160), (4, 230)] {
        kill_when(&args, &s, |s| {
            finals(s).len() >= threshold && part_len(s, "big0.bin") > 0
        })
        .await;
        let recorded = recorded_done(&s);
        for f in finals(&s) {
            let p = path_of(&f);
            if recorded
                .iter()
                .any(|u| u.split('?').next().unwrap().ends_with(&format!("/{f}")))
            {
                complete_at_kill
                    .entry(p.clone())
                    .or_insert(origin.requests(&p));
            }
        }
        // Files are recorded a group sync (tens of ms) after they land.
        assert!(complete_at_kill.len() >= threshold / 2, "kill {k}");
    }
    let o = run(&args).await;
    assert_exit(&o, 0);
    for r in &routes {
        let name = r.split('?').next().unwrap().rsplit('/').next().unwrap();
        assert_eq!(
            read(s.out().join(name)),
            expected(r),
            "{name} is not byte-exact"
        );
    }
    assert_eq!(
        s.out_files().len(),
        routes.len(),
        "a .part was left: {:?}",
        s.out_files()
    );
    // Nothing that was complete was fetched again.
    for (p, n) in &complete_at_kill {
        assert_eq!(
            origin.requests(p),
            *n,
            "{p} was fetched again after it was complete"
        );
    }
    // Large partials resumed with 206 rather than starting over.
    let resumed = origin
        .log()
        .iter()
        .filter(|r| r.path.starts_with("/drip/big") && r.status == 206)
        .filter(|r| r.range.as_deref().is_some_and(|v| v != "bytes=0-"))
        .count();
    assert!(resumed >= 1, "no partial was resumed with 206");
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_of_a_finished_job_makes_no_request() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let urls: Vec<String> = (0..200)
        .map(|i| origin.url(&format!("/file/f{i}")))
        .collect();
    let list = s.list("urls.txt", &urls);
    let out = s.out();
    let args = ["-i", list.to_str().unwrap(), "-o", out.to_str().unwrap()];
    assert_exit(&run(&args).await, 0);
    let before = origin.stats().requests;
    let report = s.path("again.jsonl");
    let mut again = args.to_vec();
    again.extend(["--report", report.to_str().unwrap()]);
    let o = run(&again).await;
    assert_exit(&o, 0);
    assert_eq!(origin.stats().requests, before);
    let m = s.manifest("again.jsonl");
    assert_eq!(m.len(), 200);
    assert!(m
        .iter()
        .all(|m| m["status"] == "skipped" && m["reason"] == "done"));
    assert!(
        stderr(&o).contains("skipped    200  done"),
        "{}",
        stderr(&o)
    );
    // A file deleted since is fetched again, and only that one.
    std::fs::remove_file(s.out().join("f7")).unwrap();
    assert_exit(&run(&args).await, 0);
    assert_eq!(origin.stats().requests, before + 1);
    assert_eq!(read(s.out().join("f7")), expected("/file/f7"));
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_not_yet_synced_when_a_run_ends_are_checked_by_the_next() {
    // A short job ends before its first group sync: its files stay `saved`
    // and the next run trusts them only after checking size and SHA-256,
    // as after a power cut that took their unwritten tails.
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let urls: Vec<String> = (0..20)
        .map(|i| origin.url(&format!("/file/f{i}")))
        .collect();
    let list = s.list("urls.txt", &urls);
    let out = s.out();
    assert_exit(&s.fetch(&list, &[]).await, 0);
    let before = origin.stats().requests;
    let f3 = out.join("f3");
    std::fs::write(&f3, &read(&f3)[..100]).unwrap();
    let mut same_size = read(out.join("f5"));
    same_size[0] ^= 0xff;
    std::fs::write(out.join("f5"), &same_size).unwrap();
    assert_exit(&s.fetch(&list, &[]).await, 0);
    assert_eq!(origin.stats().requests, before + 2);
    assert_eq!(origin.requests("/file/f3"), 2);
    assert_eq!(origin.requests("/file/f5"), 2);
    assert_eq!(read(&f3), expected("/file/f3"));
    assert_eq!(read(out.join("f5")), expected("/file/f5"));
    origin.stop().await;
}

async fn interrupted_partial(origin: &Origin, s: &Scratch, route: &str, name: &str) -> Vec<String> {
    let args = vec![
        origin.url(route),
        "-o".into(),
        s.out().to_str().unwrap().into(),
        "--report".into(),
        s.path("r.jsonl").to_str().unwrap().into(),
    ];
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    kill_when(&refs, s, |s| part_len(s, name) >= 300_000).await;
    // Let the ledger's batch with the validators be the one that counted:
    // the kill came after the first flush, which follows the response.
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_file_is_fetched_whole_not_appended() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let route = "/drip/changing.bin?size=2000000&chunk=65536&delay_ms=20";
    let args = interrupted_partial(&origin, &s, route, "changing.bin").await;
    origin.bump("/drip/changing.bin");
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&refs).await;
    assert_exit(&o, 0);
    assert_eq!(
        read(s.out().join("changing.bin")),
        body_for("/drip/changing.bin", 1, 2_000_000)
    );
    let last = origin.log().into_iter().last().unwrap();
    assert!(last.if_range.is_some() && last.status == 200, "{last:?}");
    let m = &s.manifest("r.jsonl")[0];
    assert!(
        m["note"]
            .as_str()
            .unwrap()
            .contains("changed on the server"),
        "{m}"
    );
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_partial_resumes_with_206() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let route = "/drip/same.bin?size=2000000&chunk=65536&delay_ms=20";
    let args = interrupted_partial(&origin, &s, route, "same.bin").await;
    let had = part_len(&s, "same.bin");
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&refs).await;
    assert_exit(&o, 0);
    assert_eq!(read(s.out().join("same.bin")), expected(route));
    let last = origin.log().into_iter().last().unwrap();
    assert_eq!(last.status, 206);
    assert_eq!(last.range, Some(format!("bytes={had}-")));
    let m = &s.manifest("r.jsonl")[0];
    assert_eq!(m["note"], format!("resumed at byte {had}"));
    assert_eq!(m["bytes"], 2_000_000);
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_that_ignore_range_or_send_no_validators_still_end_byte_exact() {
    for (config, why) in [
        (
            Config {
                ignore_range: true,
                ..Config::default()
            },
            "changed on the server",
        ),
        (
            Config {
                no_validators: true,
                ..Config::default()
            },
            "no validator",
        ),
    ] {
        let origin = Origin::start(config).await.unwrap();
        let s = Scratch::new();
        let route = "/drip/r.bin?size=2000000&chunk=65536&delay_ms=20";
        let args = interrupted_partial(&origin, &s, route, "r.bin").await;
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&refs).await;
        assert_exit(&o, 0);
        assert_eq!(read(s.out().join("r.bin")), expected(route), "{why}");
        let m = &s.manifest("r.jsonl")[0];
        assert!(m["note"].as_str().unwrap().contains(why), "{m}");
        origin.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_by_kind_and_retry_failed_retries_the_rest() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let urls = vec![
        origin.url("/file/good"),
        origin.url("/flaky/1/transient"),
        origin.url("/status/404/gone"),
    ];
    let list = s.list("urls.txt", &urls);
    let out = s.out();
    let args = [
        "-i",
        list.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--retries",
        "0",
    ];
    assert_exit(&run(&args).await, 1);
    // Same command: the transient failure is retried (and now passes), the
    // 404 is not.
    let o = run(&args).await;
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("HTTP 404"), "{}", stderr(&o));
    assert_eq!(origin.requests("/flaky/1/transient"), 2);
    assert_eq!(origin.requests("/status/404/gone"), 1);
    assert_eq!(origin.requests("/file/good"), 1);
    // --retry-failed alone retries exactly the failed items.
    let o = run(&[
        "-o",
        s.out().to_str().unwrap(),
        "--retry-failed",
        "--retries",
        "0",
    ])
    .await;
    assert_exit(&o, 1);
    assert_eq!(origin.requests("/status/404/gone"), 2);
    assert_eq!(origin.requests("/file/good"), 1);
    assert_eq!(origin.requests("/flaky/1/transient"), 2);
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_the_job_state() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    std::fs::create_dir_all(s.out()).unwrap();
    std::fs::write(s.out().join("there.bin"), b"x").unwrap();
    let urls = vec![
        origin.url("/file/a.bin?size=1000"),
        origin.url("/file/b.bin?size=2000"),
        origin.url("/file/there.bin"),
        origin.url("/status/404/nope.bin"),
    ];
    let list = s.list("urls.txt", &urls);
    assert_exit(
        &run(&[
            "-i",
            list.to_str().unwrap(),
            "-o",
            s.out().to_str().unwrap(),
        ])
        .await,
        1,
    );
    let o = run(&["status", s.out().to_str().unwrap()]).await;
    assert_exit(&o, 0);
    let text = String::from_utf8(o.stdout).unwrap();
    let host = format!("127.0.0.1:{}", origin.port());
    let want = [
        "(4 items, 1 run)".to_string(),
        "done            2  3.0 kB".to_string(),
        "skipped         1".to_string(),
        "failed          1".to_string(),
        format!("1  HTTP 404 Not Found  {host}"),
        "skip            1  failed permanently".to_string(),
    ];
    for w in want {
        assert!(text.contains(&w), "{w:?} not in:\n{text}");
    }
    let report = s.path("status.jsonl");
    let failed = s.path("failed.txt");
    let o = run(&[
        "status",
        s.out().to_str().unwrap(),
        "--json",
        "--report",
        report.to_str().unwrap(),
        "--failed",
        failed.to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 0);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (json["ok"].as_u64(), json["failed"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(s.manifest("status.jsonl").len(), 4);
    assert_eq!(
        std::fs::read_to_string(failed).unwrap(),
        format!("{}\n", origin.url("/status/404/nope.bin"))
    );
    let o = run(&["status", s.path("nowhere").to_str().unwrap()]).await;
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("no job state"), "{}", stderr(&o));
    origin.stop().await;
}

/// Copies `from` into `to`, recursively.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_written_by_the_first_release_is_carried_on() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-v0/out");
    copy_dir(&fixture, &s.out());
    // The fixture's URLs name the port it was made on; point them here.
    let port = origin
        .url("")
        .trim_start_matches("http://127.0.0.1:")
        .to_string();
    let db = rusqlite::Connection::open(s.out().join(".haul/state.db")).unwrap();
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 0, "the fixture is of the first schema");
    db.execute(
        "UPDATE items SET url = replace(url, '127.0.0.1:47123', ?1)",
        [format!("127.0.0.1:{port}")],
    )
    .unwrap();
    drop(db);
    let d = "/drip/d.bin?size=1100000&chunk=32768&delay_ms=40";
    let urls = [
        origin.url("/file/a.bin?size=1000"),
        origin.url("/status/404/c.bin"),
        origin.url(d),
    ];
    let list = s.list("urls.txt", &urls);
    let o = s.fetch(&list, &[]).await;
    // c.bin failed for good in the first run: not retried, still failed.
    assert_exit(&o, 1);
    assert_eq!(
        read(s.out().join("a.bin")),
        expected("/file/a.bin?size=1000")
    );
    assert_eq!(read(s.out().join("d.bin")), expected(d));
    let m = s.manifest("r.jsonl");
    let line = |name: &str| m.iter().find(|l| l["path"] == name).unwrap().clone();
    assert_eq!(line("a.bin")["reason"], "done");
    assert_eq!(line("c.bin")["status"], "failed");
    assert_eq!(line("d.bin")["note"], "resumed at byte 524288");
    assert_eq!(origin.requests("/file/a.bin"), 0);
    assert_eq!(origin.requests("/status/404/c.bin"), 0);
    let db = rusqlite::Connection::open(s.out().join(".haul/state.db")).unwrap();
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 3, "migrated");
    origin.stop().await;
}
