//! `haul crawl` against an in-process site.

use std::path::Path;

use haul_origin::{Config, Origin};

use crate::util::{assert_exit, read, run, Scratch};

const GBK_TITLE: &str = "美女图片 第5000期";

/// Writes the test site: two pages with one title linked by `a.next`, a
/// GBK page, images in and out of the selected container, a `data:` image,
/// a page robots.txt disallows and a link to another host.
fn write_site(root: &Path, port: u16) {
    let w = |rel: &str, bytes: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    w(
        "p1.html",
        format!(
            r#"<!DOCTYPE html><HTML><HEAD><TITLE>Gallery
            One</TITLE></HEAD><BODY>
            <div class="post">
              <img src=a.jpg alt=unquoted>
              <IMG SRC="/static/img/b.jpg">
              <img src="a.jpg">
              <img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">
            </div>
            <img src="outside.jpg">
            <a class="next" href="p2.html">next</a>
            <a class="next" href="http://127.0.0.2:{port}/static/p1.html">elsewhere</a>
            </BODY></HTML>"#
        )
        .as_bytes(),
    );
    w(
        "p2.html",
        br#"<html><head><title>Gallery One</title><base href="/static/sub/"></head>
        <body><div class="post"><img src="c.jpg"></div>
        <a class="next" href="/static/private/p3.html">more</a></body></html>"#,
    );
    w(
        "private/p3.html",
        br#"<html><head><title>Private</title></head><body><div class="post"><img src="/static/img/p.jpg"></div></body></html>"#,
    );
    let page = format!(
        r#"<html><head><meta charset="gbk"><title>{GBK_TITLE}</title></head>
        <body><div class="post"><img src="img/g.jpg"></div></body></html>"#
    );
    let (gbk, _, _) = encoding_rs::GBK.encode(&page);
    w("gbk.html", &gbk);
    for img in [
        "a.jpg",
        "img/b.jpg",
        "sub/c.jpg",
        "img/g.jpg",
        "img/p.jpg",
        "outside.jpg",
    ] {
        w(img, format!("image bytes of {img}").as_bytes());
    }
    w("robots.txt", b"User-agent: *\nDisallow: /static/private/\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_follows_pages_into_titled_folders_within_scope() {
    let site = tempfile::tempdir().unwrap();
    let origin = Origin::start(Config {
        static_root: Some(site.path().to_path_buf()),
        ..Config::default()
    })
    .await
    .unwrap();
    write_site(site.path(), origin.port());
    let s = Scratch::new();
    let out = s.out();
    let args = [
        "crawl",
        &origin.url("/static/p1.html"),
        &origin.url("/static/gbk.html"),
        "-o",
        out.to_str().unwrap(),
        "--select",
        ".post img",
        "--follow",
        "a.next",
        "--depth",
        "2",
        "--progress",
        "none",
        "--report",
        s.path("r.jsonl").to_str().unwrap(),
    ]
    .map(String::from);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&refs).await;
    assert_exit(&o, 0);
    let gbk_a = format!("{GBK_TITLE}/g.jpg");
    let mut want = vec![
        "Gallery One-1/c.jpg".to_string(),
        "Gallery One/a.jpg".to_string(),
        "Gallery One/b.jpg".to_string(),
        gbk_a.clone(),
    ];
    want.sort();
    assert_eq!(s.out_files(), want);
    assert_eq!(
        read(out.join("Gallery One/b.jpg")),
        read(site.path().join("img/b.jpg"))
    );
    let log = origin.log();
    let paths: Vec<&str> = log.iter().map(|r| r.path.as_str()).collect();
    assert!(
        log.iter().all(|r| r.host.starts_with("127.0.0.1:")),
        "{paths:?}"
    );
    for never in [
        "/static/outside.jpg",
        "/static/private/p3.html",
        "/static/img/p.jpg",
    ] {
        assert!(!paths.contains(&never), "{never} was requested: {paths:?}");
    }
    assert_eq!(origin.requests("/static/a.jpg"), 1);
    // Each image is asked for with the page that showed it as Referer.
    let a = log.iter().find(|r| r.path == "/static/a.jpg").unwrap();
    assert_eq!(
        a.referer.as_deref(),
        Some(origin.url("/static/p1.html").as_str())
    );
    let c = log.iter().find(|r| r.path == "/static/sub/c.jpg").unwrap();
    assert_eq!(
        c.referer.as_deref(),
        Some(origin.url("/static/p2.html").as_str())
    );
    assert_eq!(origin.requests("/robots.txt"), 1);
    // The manifest ties files to their pages and lists the pages.
    let m = s.manifest("r.jsonl");
    let c = m
        .iter()
        .find(|m| m["path"] == "Gallery One-1/c.jpg")
        .unwrap();
    assert_eq!(c["page"], origin.url("/static/p2.html"));
    assert_eq!(c["page_title"], "Gallery One");
    let p1 = m
        .iter()
        .find(|m| m["url"] == origin.url("/static/p1.html"))
        .unwrap();
    assert_eq!(p1["kind"], "page");
    assert_eq!(p1["found"]["files"], 2);
    let gbk = m
        .iter()
        .find(|m| m["url"] == origin.url("/static/gbk.html"))
        .unwrap();
    assert_eq!(gbk["page_title"], GBK_TITLE);

    // Running it again continues the job: nothing is fetched again.
    let before = origin.stats().requests;
    let o = run(&refs).await;
    assert_exit(&o, 0);
    let again: Vec<String> = origin.log()[before as usize..]
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert_eq!(origin.stats().requests, before, "{again:?}");
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lazy_and_srcset_attributes_pick_the_real_image() {
    let site = tempfile::tempdir().unwrap();
    let origin = Origin::start(Config {
        static_root: Some(site.path().to_path_buf()),
        ..Config::default()
    })
    .await
    .unwrap();
    std::fs::write(
        site.path().join("lazy.html"),
        br#"<html><head><title>Lazy</title></head><body>
        <img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" data-src="real.jpg"
             srcset="small.jpg 320w, big.jpg 1280w, mid.jpg 640w">
        </body></html>"#,
    )
    .unwrap();
    for img in ["real.jpg", "small.jpg", "mid.jpg", "big.jpg"] {
        std::fs::write(site.path().join(img), img.as_bytes()).unwrap();
    }
    for (attr, want) in [("data-src", "real.jpg"), ("srcset", "big.jpg")] {
        let s = Scratch::new();
        let out = s.out();
        let page = origin.url("/static/lazy.html");
        let o = run(&[
            "crawl",
            &page,
            "-o",
            out.to_str().unwrap(),
            "--attr",
            attr,
            "--ignore-robots",
            "--progress",
            "none",
        ])
        .await;
        assert_exit(&o, 0);
        assert_eq!(s.out_files(), vec![format!("Lazy/{want}")], "--attr {attr}");
    }
    // --ignore-robots: robots.txt was never asked for.
    assert_eq!(origin.requests("/robots.txt"), 0);
    assert_eq!(origin.requests("/static/small.jpg"), 0);
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawl_delay_spaces_every_request_to_the_site() {
    let site = tempfile::tempdir().unwrap();
    let origin = Origin::start(Config {
        static_root: Some(site.path().to_path_buf()),
        // Slow enough that images sent together would overlap.
        latency: std::time::Duration::from_millis(100),
        ..Config::default()
    })
    .await
    .unwrap();
    std::fs::write(
        site.path().join("robots.txt"),
        "User-agent: *\nCrawl-delay: 0.2\n",
    )
    .unwrap();
    let imgs: String = (0..4).map(|i| format!(r#"<img src="i{i}.jpg">"#)).collect();
    std::fs::write(
        site.path().join("g.html"),
        format!("<html><head><title>G</title></head><body>{imgs}</body></html>"),
    )
    .unwrap();
    for i in 0..4 {
        std::fs::write(site.path().join(format!("i{i}.jpg")), b"jpg").unwrap();
    }
    let s = Scratch::new();
    let out = s.out();
    let o = run(&[
        "crawl",
        &origin.url("/static/g.html"),
        "-o",
        out.to_str().unwrap(),
        "--progress",
        "none",
    ])
    .await;
    assert_exit(&o, 0);
    assert_eq!(s.out_files().len(), 4);
    // The page and its four images went one at a time, 0.2 s apart, though
    // the window would have let all four images go at once.
    assert_eq!(origin.stats().max_in_flight, 1);
    origin.stop().await;
}

/// Crawls a page on `origin` (which has no robots.txt: everything is
/// allowed) showing one image there and two on `elsewhere`, a site whose
/// robots.txt cannot be had.
async fn crawl_past_robots_txt_elsewhere(
    origin: &Origin,
    site: &Path,
    elsewhere: &str,
    extra: &[&str],
) -> (Scratch, std::process::Output) {
    std::fs::write(
        site.join("g.html"),
        format!(
            r#"<html><head><title>Gallery</title></head><body>
            <img src="here.jpg"><img src="{elsewhere}/file/x1.jpg">
            <img src="{elsewhere}/file/x2.jpg"></body></html>"#
        ),
    )
    .unwrap();
    std::fs::write(site.join("here.jpg"), b"jpg").unwrap();
    let s = Scratch::new();
    let (out, report, failed) = (s.out(), s.path("r.jsonl"), s.path("failed.txt"));
    let page = origin.url("/static/g.html");
    let mut args = vec![
        "crawl",
        &page,
        "-o",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--failed",
        failed.to_str().unwrap(),
        "--progress",
        "none",
    ];
    args.extend_from_slice(extra);
    let o = run(&args).await;
    (s, o)
}

/// What a robots.txt that cannot be had must come to: the files on its
/// site fail, saying why, without a request; the job fails; the failed
/// list has them; the rest of the crawl goes on.
#[track_caller]
fn assert_unreachable(s: &Scratch, o: &std::process::Output, elsewhere: &str, cause: &str) {
    assert_exit(o, 1);
    assert_eq!(s.out_files(), vec!["Gallery/here.jpg".to_string()]);
    let want: Vec<String> = ["x1", "x2"]
        .map(|x| format!("{elsewhere}/file/{x}.jpg"))
        .to_vec();
    let m = s.manifest("r.jsonl");
    for url in &want {
        let item = m.iter().find(|m| m["url"] == url.as_str()).unwrap();
        assert_eq!(item["status"], "failed", "{item}");
        assert_eq!(item["reason"], "robots.txt unreachable", "{item}");
        assert_eq!(item["attempts"], 0, "no request for the file: {item}");
        let error = item["error"].as_str().unwrap();
        let prefix = format!("robots.txt unreachable: {elsewhere}/robots.txt: {cause}");
        assert!(error.starts_with(&prefix), "{error}");
    }
    assert!(m.iter().all(|m| m["status"] != "skipped"), "{m:?}");
    let mut failed: Vec<String> = std::fs::read_to_string(s.path("failed.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    failed.sort();
    assert_eq!(failed, want);
    assert!(
        crate::util::stderr(o).contains("robots.txt unreachable"),
        "{}",
        crate::util::stderr(o)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_txt_answering_503_is_retried_then_fails_the_site() {
    let site = tempfile::tempdir().unwrap();
    let origin = Origin::start(Config {
        static_root: Some(site.path().to_path_buf()),
        ..Config::default()
    })
    .await
    .unwrap();
    let down = Origin::start(Config {
        robots_status: Some(503),
        ..Config::default()
    })
    .await
    .unwrap();
    let elsewhere = down.url("");
    let (s, o) = crawl_past_robots_txt_elsewhere(&origin, site.path(), &elsewhere, &[]).await;
    assert_unreachable(
        &s,
        &o,
        &elsewhere,
        "HTTP 503 Service Unavailable (after 4 attempts)",
    );
    // Retried like any request, once for the site, and nothing else asked.
    assert_eq!(down.requests("/robots.txt"), 4);
    assert_eq!(down.stats().requests, 4, "{:?}", down.log());
    // The control: no robots.txt (404) allows everything.
    assert_eq!(origin.requests("/robots.txt"), 1);
    assert_eq!(origin.requests("/static/here.jpg"), 1);

    // Not a permanent failure: the next run asks again, without
    // --retry-failed.
    let o = run(&[
        "crawl",
        &origin.url("/static/g.html"),
        "-o",
        s.out().to_str().unwrap(),
        "--progress",
        "none",
    ])
    .await;
    assert_exit(&o, 1);
    assert_eq!(down.requests("/robots.txt"), 8);
    assert_eq!(down.stats().requests, 8, "{:?}", down.log());
    origin.stop().await;
    down.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_txt_on_a_refusing_host_fails_the_site() {
    let site = tempfile::tempdir().unwrap();
    let origin = Origin::start(Config {
        static_root: Some(site.path().to_path_buf()),
        ..Config::default()
    })
    .await
    .unwrap();
    // A port nobody listens on (any longer).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let elsewhere = format!("http://127.0.0.1:{port}");
    let (s, o) = crawl_past_robots_txt_elsewhere(&origin, site.path(), &elsewhere, &[]).await;
    assert_unreachable(&s, &o, &elsewhere, "cannot connect");
    assert_eq!(origin.requests("/static/here.jpg"), 1);
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robots_txt_timing_out_fails_the_site() {
    let site = tempfile::tempdir().unwrap();
    let origin = Origin::start(Config {
        static_root: Some(site.path().to_path_buf()),
        ..Config::default()
    })
    .await
    .unwrap();
    let slow = Origin::start(Config {
        latency: std::time::Duration::from_secs(5),
        ..Config::default()
    })
    .await
    .unwrap();
    let elsewhere = slow.url("");
    let (s, o) =
        crawl_past_robots_txt_elsewhere(&origin, site.path(), &elsewhere, &["--timeout", "0.3"])
            .await;
    assert_unreachable(&s, &o, &elsewhere, "timed out");
    assert!(slow.requests("/robots.txt") > 1, "{:?}", slow.log());
    assert!(
        slow.log().iter().all(|r| r.path == "/robots.txt"),
        "{:?}",
        slow.log()
    );
    origin.stop().await;
    slow.stop().await;
}

/// Starts an origin serving `pages` (path, body) and `files` (path, whose
/// bytes are the path itself) under `/static/`.
async fn site_of_pages(pages: &[(&str, String)], files: &[&str]) -> (tempfile::TempDir, Origin) {
    let site = tempfile::tempdir().unwrap();
    for (rel, body) in pages {
        std::fs::write(site.path().join(rel), body).unwrap();
    }
    for rel in files {
        std::fs::write(site.path().join(rel), rel.as_bytes()).unwrap();
    }
    let origin = Origin::start(Config {
        static_root: Some(site.path().to_path_buf()),
        ..Config::default()
    })
    .await
    .unwrap();
    (site, origin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separators_in_a_title_name_one_folder() {
    let page = r"<html><head><title>Cats / Dogs \ Birds</title></head>
        <body><img src=a.jpg><img src=b.jpg></body></html>";
    let (_site, origin) = site_of_pages(&[("t.html", page.into())], &["a.jpg", "b.jpg"]).await;
    let s = Scratch::new();
    let out = s.out();
    let start = origin.url("/static/t.html");
    let o = run(&[
        "crawl",
        &start,
        "-o",
        out.to_str().unwrap(),
        "--ignore-robots",
    ])
    .await;
    assert_exit(&o, 0);
    assert_eq!(
        s.out_files(),
        ["Cats _ Dogs _ Birds/a.jpg", "Cats _ Dogs _ Birds/b.jpg"]
    );
    // A / written in --into still makes a folder.
    let s = Scratch::new();
    let out = s.out();
    let o = run(&[
        "crawl",
        &start,
        "-o",
        out.to_str().unwrap(),
        "--ignore-robots",
        "--into",
        "pages/{page.title}",
    ])
    .await;
    assert_exit(&o, 0);
    assert_eq!(
        s.out_files(),
        [
            "pages/Cats _ Dogs _ Birds/a.jpg",
            "pages/Cats _ Dogs _ Birds/b.jpg"
        ]
    );
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_alone_goes_five_links_deep_and_depth_alone_is_refused() {
    // c0 → c1 → … → c6, each page with its own image.
    let pages: Vec<(String, String)> = (0..7)
        .map(|i| {
            let next = i + 1;
            (
                format!("c{i}.html"),
                format!(
                    "<html><head><title>Chain {i}</title></head><body>\
                     <img src=i{i}.jpg><a href=c{next}.html>next</a></body></html>"
                ),
            )
        })
        .collect();
    let pages: Vec<(&str, String)> = pages.iter().map(|(p, b)| (p.as_str(), b.clone())).collect();
    let images: Vec<String> = (0..7).map(|i| format!("i{i}.jpg")).collect();
    let images: Vec<&str> = images.iter().map(String::as_str).collect();
    let (_site, origin) = site_of_pages(&pages, &images).await;
    let start = origin.url("/static/c0.html");

    let s = Scratch::new();
    let out = s.out();
    let o = run(&[
        "crawl",
        &start,
        "-o",
        out.to_str().unwrap(),
        "--follow",
        "a",
        "--ignore-robots",
    ])
    .await;
    assert_exit(&o, 0);
    let want: Vec<String> = (0..6).map(|i| format!("Chain {i}/i{i}.jpg")).collect();
    assert_eq!(s.out_files(), want, "the start page and five links deep");
    assert_eq!(origin.requests("/static/c5.html"), 1);
    assert_eq!(origin.requests("/static/c6.html"), 0, "six links deep");

    // --depth without --follow would crawl the start page alone: refused
    // before anything is asked for or written.
    let before = origin.stats().requests;
    let s = Scratch::new();
    let out = s.out();
    let o = run(&["crawl", &start, "-o", out.to_str().unwrap(), "--depth", "2"]).await;
    assert_exit(&o, 2);
    insta::assert_snapshot!(crate::util::stderr(&o).trim(), @"haul: error: --depth 2 does nothing without --follow: add --follow 'a' to follow every link, or a selector such as --follow 'a.next'");
    assert_eq!(origin.stats().requests, before);
    assert!(!out.exists(), "nothing is created");
    // An explicit --depth 0 is the start pages alone, with or without
    // --follow.
    let explicit_zero: [&[&str]; 2] = [&["--depth", "0"], &["--follow", "a", "--depth", "0"]];
    for extra in explicit_zero {
        let s = Scratch::new();
        let out = s.out();
        let mut args = vec![
            "crawl",
            &start,
            "-o",
            out.to_str().unwrap(),
            "--ignore-robots",
        ];
        args.extend_from_slice(extra);
        let o = run(&args).await;
        assert_exit(&o, 0);
        assert_eq!(s.out_files(), ["Chain 0/i0.jpg"], "{extra:?}");
    }
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attr_list_falls_back_per_element() {
    let page = r#"<html><head><title>Lazy list</title></head><body>
        <img data-src="real.jpg" src="placeholder.gif">
        <img src="plain.jpg">
        <img data-src="" src="blank.jpg">
        </body></html>"#;
    let (_site, origin) = site_of_pages(
        &[("lazy.html", page.into())],
        &["real.jpg", "placeholder.gif", "plain.jpg", "blank.jpg"],
    )
    .await;
    let start = origin.url("/static/lazy.html");
    let s = Scratch::new();
    let out = s.out();
    let o = run(&[
        "crawl",
        &start,
        "-o",
        out.to_str().unwrap(),
        "--attr",
        "data-src,src",
        "--ignore-robots",
    ])
    .await;
    assert_exit(&o, 0);
    assert_eq!(
        s.out_files(),
        [
            "Lazy list/blank.jpg",
            "Lazy list/plain.jpg",
            "Lazy list/real.jpg"
        ]
    );
    assert_eq!(origin.requests("/static/placeholder.gif"), 0);

    let s = Scratch::new();
    let out = s.out();
    let o = run(&[
        "crawl",
        &start,
        "-o",
        out.to_str().unwrap(),
        "--attr",
        "data-src,,src",
    ])
    .await;
    assert_exit(&o, 2);
    insta::assert_snapshot!(crate::util::stderr(&o).trim(), @r#"haul: error: invalid --attr "data-src,,src": an empty name in the list; expected names separated by commas, such as data-src,src"#);
    origin.stop().await;
}
