//! Many processes, one job: the job state in a real PostgreSQL (a
//! throwaway cluster per test), `haul submit`, `haul worker`, leases.

use std::time::Duration;

use haul_origin::{expected, Config, Origin};

use crate::util::pg::Pg;
use crate::util::{assert_exit, code, haul, read, status_report, stderr, Scratch};

fn routes(n: usize, prefix: &str, size: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("/file/{prefix}{i:04}.bin?size={size}"))
        .collect()
}

fn name(route: &str) -> &str {
    route
        .trim_start_matches("/file/")
        .split('?')
        .next()
        .unwrap()
}

async fn shared(pg: &Pg, args: &[&str]) -> std::process::Output {
    let mut cmd = haul(args);
    cmd.env("HAUL_STATE", pg.url());
    cmd.output().await.expect("run haul")
}

fn status_json(pg: &Pg, job: &str) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_haul"))
        .args(["status", "--job", job, "--json"])
        .env("HAUL_STATE", pg.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_share_a_submitted_job_and_each_file_is_fetched_once() {
    let pg = Pg::start();
    let origin = Origin::start(Config {
        latency: Duration::from_millis(10),
        ..Config::default()
    })
    .await
    .unwrap();
    let s = Scratch::new();
    let routes = routes(600, "w", 1500);
    let urls: Vec<String> = routes.iter().map(|r| origin.url(r)).collect();
    let mut lines = urls.clone();
    lines.push("not a url".into());
    let list = s.list("urls.txt", &lines);
    let list = list.to_str().unwrap();

    let o = shared(&pg, &["submit", "--job", "photos", "-i", list]).await;
    assert_exit(&o, 1); // the bad row
    assert!(stderr(&o).contains("urls.txt:601"), "{}", stderr(&o));
    let again = shared(&pg, &["submit", "--job", "photos", "-i", list]).await;
    assert_eq!(code(&again), 1);
    let st = status_json(&pg, "photos");
    assert_eq!(st["items"], 600, "submitting twice adds nothing: {st}");
    assert_eq!(st["pending"], 600);
    assert_eq!(origin.stats().requests, 0, "submit downloads nothing");

    // Three workers at once, into one directory.
    let out = s.out();
    let out = out.to_str().unwrap();
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let mut cmd = haul(&["worker", "--job", "photos", "-o", out, "-j", "16"]);
            cmd.env("HAUL_STATE", pg.url());
            cmd.spawn().unwrap()
        })
        .collect();
    for w in workers {
        let o = w.wait_with_output().await.unwrap();
        assert_exit(&o, 0);
    }
    for r in &routes {
        assert_eq!(read(s.out().join(name(r))), expected(r), "{r}");
        assert_eq!(
            origin.requests(r.split('?').next().unwrap()),
            1,
            "{r} fetched once"
        );
    }
    let st = status_json(&pg, "photos");
    assert_eq!(
        (st["ok"].clone(), st["pending"].clone()),
        (600.into(), 0.into()),
        "{st}"
    );
    // Per worker: every item done by one of them.
    let workers = st["workers"].as_array().unwrap();
    let by_workers: u64 = workers.iter().map(|w| w["ok"].as_u64().unwrap()).sum();
    assert_eq!(by_workers, 600, "{st}");
    assert!(workers.len() >= 2, "the three workers shared the job: {st}");
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_workers_items_go_to_the_others_when_its_leases_run_out() {
    let pg = Pg::start();
    let origin = Origin::start(Config {
        latency: Duration::from_millis(40),
        ..Config::default()
    })
    .await
    .unwrap();
    let s = Scratch::new();
    let routes = routes(300, "k", 4000);
    let urls: Vec<String> = routes.iter().map(|r| origin.url(r)).collect();
    let list = s.list("urls.txt", &urls);
    let o = shared(&pg, &["submit", "--job", "k", "-i", list.to_str().unwrap()]).await;
    assert_exit(&o, 0);
    let out = s.out();
    let out = out.to_str().unwrap();
    let mut doomed = haul(&["worker", "--job", "k", "-o", out, "-j", "4", "--lease", "2"]);
    doomed.env("HAUL_STATE", pg.url());
    let mut doomed = doomed.spawn().unwrap();
    crate::util::wait_until("the first worker has some files", || {
        std::fs::read_dir(s.out()).map(|d| d.count()).unwrap_or(0) > 5
    })
    .await;
    doomed.start_kill().unwrap();
    let _ = doomed.wait().await;
    let before = status_json(&pg, "k");
    assert!(before["pending"].as_u64().unwrap() > 0, "{before}");
    // What the dead worker held: it may have asked the origin for any of
    // these, and no other file may be fetched twice.
    let held: u64 = pg
        .sql("SELECT count(*) FROM items WHERE state = 'pending' AND lease_owner IS NOT NULL")
        .parse()
        .unwrap();
    assert!(held > 0, "the dead worker held items");

    let o = shared(
        &pg,
        &[
            "worker", "--job", "k", "-o", out, "-j", "32", "--lease", "2",
        ],
    )
    .await;
    assert_exit(&o, 0);
    for r in &routes {
        assert_eq!(read(s.out().join(name(r))), expected(r), "{r}");
    }
    let st = status_json(&pg, "k");
    assert_eq!(
        (st["ok"].clone(), st["pending"].clone()),
        (300.into(), 0.into()),
        "{st}"
    );
    let again = origin.stats().requests - 300;
    assert!(
        again <= held,
        "{again} files fetched twice, the dead worker held {held}"
    );
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_run_can_keep_its_state_in_postgres_and_mistakes_are_explained() {
    let pg = Pg::start();
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let routes = routes(20, "l", 700);
    let urls: Vec<String> = routes.iter().map(|r| origin.url(r)).collect();
    let list = s.list("urls.txt", &urls);
    let (list, out) = (list.to_str().unwrap(), s.out());
    let out = out.to_str().unwrap();
    let o = shared(&pg, &["-i", list, "-o", out, "--job", "local"]).await;
    assert_exit(&o, 0);
    assert!(
        !s.out().join(".haul").exists(),
        "the state is in PostgreSQL"
    );
    let again = shared(&pg, &["-i", list, "-o", out, "--job", "local"]).await;
    assert_exit(&again, 0);
    assert!(
        stderr(&again).contains("0 done, 20 skipped"),
        "{}",
        stderr(&again)
    );
    assert_eq!(status_json(&pg, "local")["ok"], 20);

    let o = shared(&pg, &["worker", "--job", "nope", "-o", out]).await;
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("no job in"), "{}", stderr(&o));
    let o = shared(&pg, &["worker", "--job", "local", "-o", out, "-i", list]).await;
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("not from URLs or lists"),
        "{}",
        stderr(&o)
    );
    let o = crate::util::run(&["worker", "--job", "local", "-o", out]).await;
    assert_exit(&o, 2);
    let o = crate::util::run(&["-i", list, "-o", out, "--state", "mysql://x/y"]).await;
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("expected postgres://"),
        "{}",
        stderr(&o)
    );
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_host_holds_for_the_whole_job_across_workers() {
    let pg = Pg::start();
    let origin = Origin::start(Config {
        latency: Duration::from_millis(50),
        ..Config::default()
    })
    .await
    .unwrap();
    let s = Scratch::new();
    // More items than one worker holds at once (4 × -j + 256 = 272), so
    // that the first worker to start cannot take the job whole.
    let routes = routes(1200, "p", 1000);
    let urls: Vec<String> = routes.iter().map(|r| origin.url(r)).collect();
    let list = s.list("urls.txt", &urls);
    let o = shared(
        &pg,
        &["submit", "--job", "polite", "-i", list.to_str().unwrap()],
    )
    .await;
    assert_exit(&o, 0);
    let out = s.out();
    let out = out.to_str().unwrap();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let mut cmd = haul(&[
                "worker",
                "--job",
                "polite",
                "-o",
                out,
                "--per-host",
                "8",
                "-j",
                "4",
            ]);
            cmd.env("HAUL_STATE", pg.url());
            cmd.spawn().unwrap()
        })
        .collect();
    for w in workers {
        assert_exit(&w.wait_with_output().await.unwrap(), 0);
    }
    for r in &routes {
        assert_eq!(read(s.out().join(name(r))), expected(r), "{r}");
    }
    let max = origin.stats().max_in_flight;
    println!("max in flight from 4 workers with --per-host 8: {max}");
    // Each worker alone would take 8: together, 4 × 8 = 32. And they
    // shared the work: one worker alone has a share of 2.
    assert!(max <= 8, "{max} in flight at once");
    assert!(max > 2, "only one worker worked: {max} in flight at most");
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_carries_on_when_postgres_restarts_under_it() {
    let mut pg = Pg::start();
    let origin = Origin::start(Config {
        latency: Duration::from_millis(20),
        ..Config::default()
    })
    .await
    .unwrap();
    let s = Scratch::new();
    let routes = routes(400, "r", 2000);
    let urls: Vec<String> = routes.iter().map(|r| origin.url(r)).collect();
    let list = s.list("urls.txt", &urls);
    let o = shared(&pg, &["submit", "--job", "r", "-i", list.to_str().unwrap()]).await;
    assert_exit(&o, 0);
    let out = s.out();
    let mut worker = haul(&[
        "worker",
        "--job",
        "r",
        "-o",
        out.to_str().unwrap(),
        "-j",
        "4",
    ]);
    worker.env("HAUL_STATE", pg.url());
    let worker = worker.spawn().unwrap();
    crate::util::wait_until("some files have arrived", || {
        std::fs::read_dir(s.out()).map(|d| d.count()).unwrap_or(0) > 20
    })
    .await;
    // PostgreSQL goes away mid-job, as a crash would take it, and comes
    // back a second later.
    pg.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.start_again();
    let o = worker.wait_with_output().await.unwrap();
    assert_exit(&o, 0);
    for r in &routes {
        assert_eq!(read(s.out().join(name(r))), expected(r), "{r}");
    }
    let st = status_json(&pg, "r");
    assert_eq!(
        (st["ok"].clone(), st["pending"].clone()),
        (400.into(), 0.into()),
        "{st}"
    );
    origin.stop().await;
}

/// The job's items in planning order, as `haul status --report` lists them:
/// URL and path.
fn items(pg: &Pg, job: &str, s: &Scratch) -> Vec<(String, String)> {
    status_report(s, &["--state", &pg.url(), "--job", job])
        .into_iter()
        .map(|v| {
            (
                v["url"].as_str().unwrap().to_string(),
                v["path"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// What planning item by item makes of `lists`, submitted one after the
/// other into one job: each URL new to the job, in input order, gets the
/// first free of `n.bin`, `n-1.bin`, `n-2.bin`…
fn named_one_by_one(lists: &[&[String]]) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    let mut taken = std::collections::HashSet::new();
    let mut items = Vec::new();
    for url in lists.iter().flat_map(|l| l.iter()) {
        if !seen.insert(url.clone()) {
            continue;
        }
        let name = url.rsplit('/').next().unwrap();
        let (stem, ext) = name.rsplit_once('.').unwrap();
        let path = (0..)
            .map(|k| match k {
                0 => name.to_string(),
                k => format!("{stem}-{k}.{ext}"),
            })
            .find(|p| !taken.contains(p))
            .unwrap();
        taken.insert(path.clone());
        items.push((url.clone(), path));
    }
    items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submitted_names_collide_across_batches_as_item_by_item() {
    let pg = Pg::start();
    let s = Scratch::new();
    // More lines than a batch (4096) holds: every name is wanted six times,
    // a few URLs come back thousands of lines later, and a second list
    // wants the names the first took: six deep (its batch is planned again
    // with what the store learned, one name deeper each time), and for
    // `deep.bin` ten deep (too many times: then item by item).
    let url = |dir: &str, i: usize| format!("http://127.0.0.1:9/{dir}{i}/n{}.bin", i % 1500);
    let deep = |dir: &str, i: usize| format!("http://127.0.0.1:9/{dir}{i}/deep.bin");
    let mut first: Vec<String> = (0..9000)
        .map(|i| {
            if i >= 4500 && i % 1000 == 0 {
                url("d", i - 4500)
            } else {
                url("d", i)
            }
        })
        .collect();
    first.extend((0..10).map(|i| deep("d", i)));
    let mut second: Vec<String> = (0..200).map(|i| url("e", i)).collect();
    second.extend([url("d", 7), url("d", 8999)]);
    second.push(deep("e", 0));
    let (a, b) = (s.list("a.txt", &first), s.list("b.txt", &second));
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());

    let o = shared(&pg, &["submit", "--job", "names", "-i", a, "-q"]).await;
    assert_exit(&o, 0);
    let want = named_one_by_one(&[&first]);
    assert_eq!(items(&pg, "names", &s), want);
    let again = shared(&pg, &["submit", "--job", "names", "-i", a, "-q"]).await;
    assert_exit(&again, 0);
    assert_eq!(
        items(&pg, "names", &s),
        want,
        "submitting twice adds nothing"
    );
    let o = shared(&pg, &["submit", "--job", "names", "-i", b, "-q"]).await;
    assert_exit(&o, 0);
    assert_eq!(
        items(&pg, "names", &s),
        named_one_by_one(&[&first, &second])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_submits_at_once_get_distinct_names_and_a_restart_loses_nothing() {
    let mut pg = Pg::start();
    let s = Scratch::new();
    // Two lists that want the same names, into one job at the same time:
    // each one's batches collide with the other's.
    let lists: Vec<Vec<String>> = ["x", "y"]
        .iter()
        .map(|dir| {
            (0..12000)
                .map(|i| format!("http://127.0.0.1:9/{dir}{i}/n{}.bin", i % 3000))
                .collect()
        })
        .collect();
    let paths: Vec<_> = lists
        .iter()
        .enumerate()
        .map(|(i, l)| s.list(&format!("{i}.txt"), l))
        .collect();
    let submit = |list: &std::path::Path| {
        let mut cmd = haul(&[
            "submit",
            "--job",
            "both",
            "-q",
            "-i",
            list.to_str().unwrap(),
        ]);
        cmd.env("HAUL_STATE", pg.url());
        cmd.spawn().unwrap()
    };
    let submits: Vec<_> = paths.iter().map(|p| submit(p)).collect();
    for c in submits {
        assert_exit(&c.wait_with_output().await.unwrap(), 0);
    }
    let mut got = items(&pg, "both", &s);
    check_distinct(&got, &lists);

    // PostgreSQL dies under a submit and comes back: the batch it lost is
    // written again, whole, once. Its names collide across its own batches.
    let more: Vec<String> = (0..60000)
        .map(|i| format!("http://127.0.0.1:9/z{i}/m{}.bin", i % 3000))
        .collect();
    let list = s.list("more.txt", &more);
    let mut child = submit(&list);
    crate::util::wait_until("the submit has written a batch", || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_haul"))
            .args(["status", "--job", "both", "--json"])
            .env("HAUL_STATE", pg.url())
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .is_ok_and(|st| st["items"].as_u64().unwrap_or(0) > 24000)
    })
    .await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the submit was still running when PostgreSQL died"
    );
    pg.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.start_again();
    assert_exit(&child.wait_with_output().await.unwrap(), 0);
    got = items(&pg, "both", &s);
    let after: Vec<_> = got.split_off(24000);
    check_distinct(&got, &lists);
    assert_eq!(after, named_one_by_one(&[&more]));
}

/// Each URL of `lists` is an item once, named after its own name, no two
/// items share a path, and the names of each stem are `n.bin`, `n-1.bin`…
/// with none left out: whichever of two submits got a name first, each
/// took the first free one.
fn check_distinct(items: &[(String, String)], lists: &[Vec<String>]) {
    let urls: std::collections::HashSet<&str> = items.iter().map(|(u, _)| u.as_str()).collect();
    let want: std::collections::HashSet<&str> =
        lists.iter().flatten().map(String::as_str).collect();
    assert_eq!(urls.len(), items.len(), "a URL is one item");
    assert_eq!(urls, want);
    let paths: std::collections::HashSet<&str> = items.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(paths.len(), items.len(), "a path is one item's");
    let mut by_stem: std::collections::HashMap<&str, Vec<u64>> = Default::default();
    for (url, path) in items {
        let stem = url.rsplit('/').next().unwrap().trim_end_matches(".bin");
        let n = match path.trim_end_matches(".bin").strip_prefix(stem) {
            Some("") => 0,
            Some(n) => n.trim_start_matches('-').parse().unwrap(),
            None => panic!("{url} named {path}"),
        };
        by_stem.entry(stem).or_default().push(n);
    }
    for (stem, mut ns) in by_stem {
        ns.sort_unstable();
        assert_eq!(ns, (0..ns.len() as u64).collect::<Vec<_>>(), "{stem}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_wide_rate_holds_when_a_worker_joins_later() {
    let pg = Pg::start();
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    // Far more than the test lets them fetch: both stay busy throughout.
    let routes = routes(1200, "t", 500);
    let urls: Vec<String> = routes.iter().map(|r| origin.url(r)).collect();
    let list = s.list("urls.txt", &urls);
    let o = shared(&pg, &["submit", "--job", "t", "-i", list.to_str().unwrap()]).await;
    assert_exit(&o, 0);
    let out = s.out();
    let worker = || {
        let args = ["worker", "--job", "t", "-o", out.to_str().unwrap()];
        let mut cmd = haul(&[&args[..], &["-j", "4", "--rate", "40/s"]].concat());
        cmd.env("HAUL_STATE", pg.url());
        cmd.spawn().unwrap()
    };
    let mut first = worker();
    crate::util::wait_until("the first worker fetches alone", || {
        origin.stats().requests >= 20
    })
    .await;
    let mut second = worker();
    crate::util::wait_until("both workers have fetched", || {
        let st = status_json(&pg, "t");
        let workers = st["workers"].as_array().unwrap();
        workers.len() == 2 && workers.iter().all(|w| w["ok"].as_u64() > Some(0))
    })
    .await;
    let (start, before) = (std::time::Instant::now(), origin.stats().requests);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (secs, fetched) = (
        start.elapsed().as_secs_f64(),
        origin.stats().requests - before,
    );
    for w in [&mut first, &mut second] {
        w.start_kill().unwrap();
        let _ = w.wait().await;
    }
    println!("{fetched} requests in {secs:.2} s from two workers at --rate 40/s");
    // 40/s between them, and a few more at the window's edges (a request
    // paced before it may reach the origin in it). The first worker kept
    // to its share when it started (40/s, alone) would make it 60/s: 180
    // in the 3 s.
    assert!(
        fetched as f64 <= 40.0 * secs + 16.0,
        "{fetched} requests in {secs:.2} s"
    );
    origin.stop().await;
}

/// Each item's record, by the URL's path: state, HTTP status, bytes,
/// digest, attempts and error.
fn records(s: &Scratch, args: &[&str]) -> std::collections::BTreeMap<String, String> {
    status_report(s, args)
        .into_iter()
        .map(|v| {
            let url = v["url"].as_str().unwrap();
            let path = url.splitn(4, '/').nth(3).unwrap().to_string();
            let fields = [
                "status",
                "http_status",
                "bytes",
                "sha256",
                "attempts",
                "error",
            ];
            (path, fields.map(|f| v[f].to_string()).join(" "))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_in_postgres_are_recorded_as_in_sqlite() {
    // The same list, each run against a fresh origin (its flaky paths
    // fail anew): files, 404s, paths that fail twice then answer, and
    // paths that always fail. PostgreSQL holds a batch's outcomes back and
    // writes them in one statement; the records must be SQLite's, attempts
    // counted once each.
    let pg = Pg::start();
    let s = Scratch::new();
    let mut paths: Vec<String> = routes(60, "o", 300)
        .into_iter()
        .map(|r| r.trim_start_matches('/').to_string())
        .collect();
    paths.extend((0..10).map(|i| format!("status/404/gone{i}")));
    paths.extend((0..10).map(|i| format!("flaky/2/back{i}")));
    paths.extend((0..5).map(|i| format!("status/500/down{i}")));
    let mut reports = Vec::new();
    for (run, state) in [("sqlite", None), ("postgres", Some(pg.url()))] {
        let origin = Origin::start(Config::default()).await.unwrap();
        let urls: Vec<String> = paths.iter().map(|p| origin.url(&format!("/{p}"))).collect();
        let list = s.list(&format!("{run}.txt"), &urls);
        let out = s.path(run);
        let mut args = vec![
            "-i",
            list.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--retries",
            "2",
        ];
        if let Some(u) = &state {
            args.extend(["--state", u.as_str(), "--job", run]);
        }
        let o = crate::util::run(&args).await;
        assert_exit(&o, 1);
        let status: Vec<&str> = match &state {
            Some(u) => vec!["--state", u, "--job", run],
            None => vec![out.to_str().unwrap()],
        };
        reports.push(records(&s, &status));
        origin.stop().await;
    }
    assert_eq!(reports[0].len(), paths.len());
    let flaky = reports[1]
        .iter()
        .filter(|(p, r)| p.starts_with("flaky") && r.starts_with("\"ok\" 200"))
        .count();
    assert_eq!(flaky, 10, "{:?}", reports[1]);
    assert_eq!(reports[0], reports[1]);
}
