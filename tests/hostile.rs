//! Servers that misbehave on purpose (raw sockets, [`crate::util::raw`]):
//! a 206 that ignores `If-Range`, a 206 nobody asked for, names that try to
//! hide what they are, redirects that would carry the user's headers away.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use haul_origin::{expected, Config, Origin};

use crate::util::raw::{response, Raw, Reply, Req};
use crate::util::{assert_exit, haul, read, run, wait_until, Scratch};

const LM1: &str = "Tue, 01 Jan 2030 00:00:00 GMT";
const LM2: &str = "Wed, 02 Jan 2030 00:00:00 GMT";

/// A file's bytes for `version`, distinct for each version.
fn content(version: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + version * 7) % 251) as u8)
        .collect()
}

/// `bytes=N-` from a Range header.
fn range_start(req: &Req) -> Option<usize> {
    req.header("range")?
        .strip_prefix("bytes=")?
        .trim_end_matches('-')
        .parse()
        .ok()
}

/// The server's file as it stands at each phase: (bytes, Last-Modified).
type Versions = Arc<dyn Fn() -> (Vec<u8>, &'static str) + Send + Sync>;

/// A server that sends only `Last-Modified`, cuts the first body short, and
/// answers every Range with a 206 of whatever it has now, If-Range or not.
async fn ignores_if_range(phase: Arc<AtomicUsize>, versions: Versions) -> Raw {
    Raw::start(move |req, _| {
        let (body, lm) = versions();
        let headers = |extra: Vec<(&'static str, String)>| {
            let mut h = vec![("Last-Modified", lm.to_string())];
            h.extend(extra);
            h
        };
        match range_start(req) {
            Some(start) if start < body.len() => Reply::Bytes(response(
                "206 Partial Content",
                &headers(vec![(
                    "Content-Range",
                    format!("bytes {start}-{}/{}", body.len() - 1, body.len()),
                )]),
                &body[start..],
            )),
            _ => {
                let whole = response("200 OK", &headers(vec![]), &body);
                if phase.load(SeqCst) == 0 {
                    // The first run's transfer breaks after 1.2 MB.
                    let cut = whole.len() - body.len() + 1_200_000;
                    Reply::Cut(whole, cut)
                } else {
                    Reply::Bytes(whole)
                }
            }
        }
    })
    .await
}

/// Runs the two phases against `server`: a first run that leaves a 1.2 MB
/// partial, then (after `change`) a second run. Returns the manifest line.
async fn two_runs(s: &Scratch, server: &Raw, phase: &AtomicUsize) -> serde_json::Value {
    let list = s.list("urls.txt", &[server.url("/big.bin")]);
    let o = s.fetch(&list, &["--retries", "0"]).await;
    assert_exit(&o, 1);
    let part = std::fs::metadata(s.out().join("big.bin.part"))
        .unwrap()
        .len();
    assert!(part >= 1_000_000, "partial of {part} bytes");
    phase.store(1, SeqCst);
    let o = s.fetch(&list, &["--retries", "0"]).await;
    assert_exit(&o, 0);
    s.manifest("r.jsonl").remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_206_with_another_last_modified_restarts_from_zero() {
    let phase = Arc::new(AtomicUsize::new(0));
    let p = phase.clone();
    let server = ignores_if_range(
        phase.clone(),
        Arc::new(move || match p.load(SeqCst) {
            0 => (content(1, 2_000_000), LM1),
            _ => (content(2, 2_000_000), LM2),
        }),
    )
    .await;
    let s = Scratch::new();
    let m = two_runs(&s, &server, &phase).await;
    assert_eq!(read(s.out().join("big.bin")), content(2, 2_000_000));
    assert!(
        m["note"]
            .as_str()
            .unwrap()
            .contains("Last-Modified differs"),
        "{m}"
    );
    // The second run asked for the rest, saw the change, and asked again.
    let log = server.log();
    assert!(log[1].header("range").is_some() && log[2].header("range").is_none());
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_206_with_another_total_restarts_from_zero() {
    let phase = Arc::new(AtomicUsize::new(0));
    let p = phase.clone();
    let server = ignores_if_range(
        phase.clone(),
        // Same Last-Modified, but the file grew.
        Arc::new(move || match p.load(SeqCst) {
            0 => (content(1, 2_000_000), LM1),
            _ => (content(2, 2_100_000), LM1),
        }),
    )
    .await;
    let s = Scratch::new();
    let m = two_runs(&s, &server, &phase).await;
    assert_eq!(read(s.out().join("big.bin")), content(2, 2_100_000));
    assert!(m["note"].as_str().unwrap().contains("size differs"), "{m}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_file_is_resumed_not_refetched() {
    let phase = Arc::new(AtomicUsize::new(0));
    let server = ignores_if_range(phase.clone(), Arc::new(|| (content(1, 2_000_000), LM1))).await;
    let s = Scratch::new();
    let m = two_runs(&s, &server, &phase).await;
    assert_eq!(read(s.out().join("big.bin")), content(1, 2_000_000));
    assert!(
        m["note"].as_str().unwrap().starts_with("resumed at byte"),
        "{m}"
    );
    assert_eq!(server.log().len(), 2);
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_206_nobody_asked_for_is_not_saved_as_the_whole_file() {
    let server = Raw::start(|req, _| {
        let (range, body) = if req.target.starts_with("/whole") {
            ("bytes 0-99/100", content(1, 100))
        } else {
            ("bytes 0-9/100", content(1, 10))
        };
        Reply::Bytes(response(
            "206 Partial Content",
            &[("Content-Range", range.to_string())],
            &body,
        ))
    })
    .await;
    let s = Scratch::new();
    let list = s.list(
        "urls.txt",
        &[server.url("/part.bin"), server.url("/whole.bin")],
    );
    let o = s.fetch(&list, &[]).await;
    assert_exit(&o, 1);
    assert_eq!(s.out_files(), vec!["whole.bin"]);
    assert_eq!(read(s.out().join("whole.bin")), content(1, 100));
    let m = s.manifest("r.jsonl");
    let part = m.iter().find(|l| l["path"] == "part.bin").unwrap();
    assert_eq!(part["status"], "failed");
    assert!(
        part["error"]
            .as_str()
            .unwrap()
            .contains("only part of the file (bytes 0-9/100)"),
        "{part}"
    );
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_disposition_dots_fall_back_and_bidi_controls_are_removed() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let urls = [
        origin.url("/cd/dot.bin?filename=."),
        origin.url("/cd/dots.bin?filename=.."),
        // U+202E makes "evil\u{202E}gpj.exe" read as "evilexe.jpg".
        origin.url("/file/evil%E2%80%AEgpj.exe"),
        origin.url("/cd/x.bin?filename_star=report%E2%80%AEfdp.exe"),
    ];
    let list = s.list("urls.txt", &urls);
    let o = s.fetch(&list, &[]).await;
    assert_exit(&o, 0);
    assert_eq!(
        s.out_files(),
        vec!["dot.bin", "dots.bin", "evilgpj.exe", "reportfdp.exe"]
    );
    assert_eq!(read(s.out().join("dots.bin")), expected("/cd/dots.bin"));
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_headers_stay_with_the_host_they_were_given_for() {
    let away = Raw::start(|_, _| Reply::Bytes(response("200 OK", &[], b"away"))).await;
    let target = away.url("/x.bin");
    let home = Raw::start(move |_, _| {
        Reply::Bytes(response("302 Found", &[("Location", target.clone())], b""))
    })
    .await;
    let s = Scratch::new();
    let url = home.url("/x.bin");
    let out = s.out();
    let args = ["-H", "X-Api-Key: secret", "-o", out.to_str().unwrap()];
    let o = run(&[&[url.as_str()][..], &args].concat()).await;
    assert_exit(&o, 0);
    assert_eq!(read(s.out().join("x.bin")), b"away");
    assert_eq!(home.log()[0].header("x-api-key"), Some("secret"));
    assert_eq!(away.log()[0].header("x-api-key"), None);
    // --location-trusted sends them on.
    let out2 = s.path("out2");
    let args = ["-H", "X-Api-Key: secret", "-o", out2.to_str().unwrap()];
    let o = run(&[&[url.as_str(), "--location-trusted"][..], &args].concat()).await;
    assert_exit(&o, 0);
    assert_eq!(away.log()[1].header("x-api-key"), Some("secret"));
    home.stop();
    away.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_small_body_is_resumed_not_fetched_again() {
    let body = content(3, 100_000);
    let b = body.clone();
    let server = Raw::start(move |req, _| {
        let h = vec![("ETag", "\"v1\"".to_string())];
        match range_start(req) {
            Some(start) => Reply::Bytes(response(
                "206 Partial Content",
                &[
                    ("ETag", "\"v1\"".to_string()),
                    (
                        "Content-Range",
                        format!("bytes {start}-{}/{}", b.len() - 1, b.len()),
                    ),
                ],
                &b[start..],
            )),
            None => {
                let whole = response("200 OK", &h, &b);
                let cut = whole.len() - 50_000;
                Reply::Cut(whole, cut)
            }
        }
    })
    .await;
    let s = Scratch::new();
    let list = s.list("urls.txt", &[server.url("/small.bin")]);
    let o = s.fetch(&list, &[]).await;
    assert_exit(&o, 0);
    assert_eq!(read(s.out().join("small.bin")), body);
    let log = server.log();
    assert_eq!(log.len(), 2);
    let start = range_start(&log[1]).expect("the retry asked for the rest");
    assert!(start >= 40_000, "resumed at {start}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_time_and_min_speed_free_a_slot_held_by_a_drip() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    // 1 KiB every 100 ms: 10 KiB/s for 20 s.
    let drip = origin.url("/drip/drip.bin?size=204800&chunk=1024&delay_ms=100");
    let out = s.out();
    let report = s.path("r.jsonl");
    for (flag, value, says) in [
        ("--max-time", "0.5", "longer than --max-time 0.5 s"),
        (
            "--min-speed-time",
            "0.5",
            "slower than --min-speed 51200 B/s",
        ),
    ] {
        let started = Instant::now();
        let mut args = vec![drip.as_str(), "-o", out.to_str().unwrap(), "--retries", "0"];
        args.extend([flag, value]);
        if flag == "--min-speed-time" {
            args.extend(["--min-speed", "50k"]);
        }
        args.extend(["--report", report.to_str().unwrap()]);
        let o = run(&args).await;
        assert_exit(&o, 1);
        assert!(started.elapsed() < Duration::from_secs(10));
        let m = s.manifest("r.jsonl");
        assert!(m[0]["error"].as_str().unwrap().contains(says), "{}", m[0]);
    }
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_costs_about_a_second_of_a_slow_transfer_not_256_kib() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    // 8 KiB every 50 ms (160 KiB/s): under the 256 KiB in-memory limit for
    // more than a second.
    let route = "/drip/slow.bin?size=600000&chunk=8192&delay_ms=50";
    let url = origin.url(route);
    let out = s.out();
    let args = [url.as_str(), "-o", out.to_str().unwrap()];
    let mut child = haul(&args).spawn().unwrap();
    let part = s.out().join("slow.bin.part");
    wait_until("nothing reached the disk", || {
        std::fs::metadata(&part).is_ok_and(|m| m.len() > 0)
    })
    .await;
    // The first write came by time, before 256 KiB had arrived.
    let written = std::fs::metadata(&part).unwrap().len();
    assert!(written < 256 * 1024, "first write at {written} bytes");
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let o = run(&args).await;
    assert_exit(&o, 0);
    assert_eq!(read(s.out().join("slow.bin")), expected(route));
    let resumed = origin.log().into_iter().last().unwrap();
    let start: u64 = resumed
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse().ok())
        .expect("the re-run resumed");
    assert!(start >= written, "resumed at {start}");
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_failures_say_which_and_what_to_do() {
    let (tls, pem) = Raw::start_tls(|_, _| Reply::Bytes(response("200 OK", &[], b"secure"))).await;
    let plain = Raw::start(|_, _| Reply::Bytes(response("200 OK", &[], b"plain"))).await;
    let s = Scratch::new();
    let https_to_http = plain.url("/p.bin").replace("http://", "https://");
    // (A name that does not resolve is not tried here: the lookup could
    // leave the machine. `http::tests` covers how its error is read.)
    let urls = [tls.url("/self-signed.bin"), https_to_http];
    let list = s.list("urls.txt", &urls);
    let o = s.fetch(&list, &["--retries", "0"]).await;
    assert_exit(&o, 1);
    let m = s.manifest("r.jsonl");
    let reason = |name: &str| {
        let l = m
            .iter()
            .find(|l| l["url"].as_str().unwrap().contains(name))
            .unwrap();
        (
            l["reason"].as_str().unwrap().to_string(),
            l["error"].as_str().unwrap().to_string(),
        )
    };
    let (r, e) = reason("self-signed");
    assert_eq!(r, "untrusted certificate", "{e}");
    assert!(
        e.contains("--cacert FILE") && e.contains("--insecure"),
        "{e}"
    );
    let (r, e) = reason("/p.bin");
    assert_eq!(r, "TLS handshake failed", "{e}");
    assert!(e.contains("plain HTTP"), "{e}");
    // Trusting the certificate, or not checking it, gets the file.
    std::fs::write(s.path("ca.pem"), &pem).unwrap();
    let url = tls.url("/self-signed.bin");
    let out = s.path("out2");
    let o = run(&[
        &url,
        "-o",
        out.to_str().unwrap(),
        "--cacert",
        s.path("ca.pem").to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 0);
    assert_eq!(read(out.join("self-signed.bin")), b"secure");
    let out = s.path("out3");
    let o = run(&[&url, "-o", out.to_str().unwrap(), "--insecure"]).await;
    assert_exit(&o, 0);
    assert!(crate::util::stderr(&o).contains("warning: --insecure"));
    // A --cacert that holds no certificate is refused before anything runs.
    let o = run(&[
        &url,
        "-o",
        out.to_str().unwrap(),
        "--cacert",
        list.to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 2);
    assert!(crate::util::stderr(&o).contains("expected PEM certificates"));
    tls.stop();
    plain.stop();
}
