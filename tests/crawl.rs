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
