//! Crawl fidelity: every file a page shows is saved whatever order its URL
//! was met in, links to files are not failures, and re-runs see the whole
//! job.

use std::path::Path;

use haul::InputSpec;
use haul_origin::{Config, Origin};
use tokio_util::sync::CancellationToken;

use crate::util::{read, Scratch};

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

/// A crawl of `start` with `--select img --follow a`, depth 3, through the
/// library; returns what it did and the manifest.
async fn crawl(s: &Scratch, start: &str) -> (haul::Finished, Vec<serde_json::Value>) {
    let config = haul::Config::new(vec![InputSpec::Args(vec![start.to_string()])], s.out())
        .crawl(haul::Crawl::new("img", "src", Some("a")).unwrap().depth(3))
        .report(Some(s.path("r.jsonl")))
        .progress(haul::ProgressMode::None)
        .quiet(true);
    let finished = haul::run(config, CancellationToken::new()).await.unwrap();
    (finished, s.manifest("r.jsonl"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_first_met_as_a_link_is_still_saved_and_links_to_files_are_not_failures() {
    let site = tempfile::tempdir().unwrap();
    let root = site.path();
    // Page 1 links to the image before page 2 shows it, and to files of
    // every kind an ordinary site links to.
    write(
        root,
        "p1.html",
        br#"<html><head><title>One</title></head><body>
        <a href="img/e.png">full size</a> <a href="p2.html">next</a>
        <a href="notes.txt">notes</a> <a href="code.zip">code</a>
        <a href="big.jpg">photo</a> <a href="blob">no type</a>
        </body></html>"#,
    );
    write(
        root,
        "p2.html",
        br#"<html><head><title>Two</title></head><body><img src="img/e.png"></body></html>"#,
    );
    write(root, "img/e.png", b"\x89PNG\r\n\x1a\n e.png bytes");
    write(root, "notes.txt", b"just text\n");
    // Served as application/octet-stream: told by its first bytes.
    let mut zip = b"PK\x03\x04\x14\x00\x00\x00\x08\x00".to_vec();
    zip.resize(3 << 20, 7);
    write(root, "code.zip", &zip);
    let mut jpg = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00".to_vec();
    jpg.resize(3 << 20, 9);
    write(root, "big.jpg", &jpg);
    write(root, "blob", &[1u8; 4096]);
    let origin = Origin::start(Config {
        static_root: Some(root.to_path_buf()),
        ..Config::default()
    })
    .await
    .unwrap();
    let s = Scratch::new();
    let (finished, m) = crawl(&s, &origin.url("/static/p1.html")).await;

    assert_eq!(
        read(s.out().join("Two/e.png")),
        read(root.join("img/e.png"))
    );
    assert_eq!(finished.tally.failed, 0, "{m:#?}");
    let line = |path: &str| {
        m.iter()
            .find(|l| l["url"].as_str().unwrap().ends_with(path) && l["kind"] == "page")
            .unwrap_or_else(|| panic!("no page line for {path}: {m:#?}"))
            .clone()
    };
    for (path, why) in [
        ("/static/img/e.png", "image/png"),
        ("/static/notes.txt", "text/plain"),
        ("/static/code.zip", "application/zip, by its first bytes"),
        ("/static/big.jpg", "image/jpeg"),
        ("/static/blob", "not HTML"),
    ] {
        let l = line(path);
        assert_eq!(l["status"], "skipped", "{l}");
        assert_eq!(l["reason"], "not a page", "{l}");
        assert!(l["error"].as_str().unwrap().contains(why), "{l}");
    }
    let file = m
        .iter()
        .find(|l| l["path"] == "Two/e.png")
        .expect("the image's own line");
    assert_eq!(file["status"], "ok");
    // The two 3 MB files were told apart by their headers or first bytes,
    // not read to the end.
    assert!(
        finished.tally.received < 1 << 20,
        "{} bytes received",
        finished.tally.received
    );
    assert_eq!(finished.tally.ok, 3, "two pages and the image");
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_finds_new_images_with_conditional_requests_and_reruns_report_the_whole_job() {
    let site = tempfile::tempdir().unwrap();
    let root = site.path();
    let origin = Origin::start(Config {
        static_root: Some(root.to_path_buf()),
        ..Config::default()
    })
    .await
    .unwrap();
    let elsewhere = format!("http://127.0.0.2:{}/static/other.html", origin.port());
    write(
        root,
        "index.html",
        format!(
            r#"<html><head><title>Gallery</title></head><body><img src="a.jpg">
            <a href="second.html">second</a> <a href="{elsewhere}">elsewhere</a></body></html>"#
        )
        .as_bytes(),
    );
    let second = |imgs: &str| {
        format!(
            r#"<html><head><title>Second</title></head><body>{imgs}
            <a href="index.html">home</a></body></html>"#
        )
    };
    write(
        root,
        "second.html",
        second(r#"<img src="b.jpg">"#).as_bytes(),
    );
    for img in ["a.jpg", "b.jpg", "c.jpg"] {
        write(root, img, format!("bytes of {img}").as_bytes());
    }
    let s = Scratch::new();
    let start = origin.url("/static/index.html");
    let out = s.out();
    let crawl = |report: &str, extra: &[&str]| {
        let mut args = vec![
            "crawl".to_string(),
            start.clone(),
            "-o".into(),
            out.to_str().unwrap().into(),
            "--select".into(),
            "img".into(),
            "--follow".into(),
            "a".into(),
            "--progress".into(),
            "none".into(),
            "--report".into(),
            s.path(report).to_str().unwrap().into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };
    let run = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        crate::util::run(&refs).await
    };

    // First run, with -v: the link to another host is named as left out.
    let o = run(crawl("r1.jsonl", &["-v"])).await;
    crate::util::assert_exit(&o, 0);
    let err = crate::util::stderr(&o);
    assert!(
        err.contains(&format!("left out link {elsewhere} (another host")),
        "{err}"
    );
    assert_eq!(s.out_files(), ["Gallery/a.jpg", "Second/b.jpg"]);

    // The gallery grows.
    write(
        root,
        "second.html",
        second(r#"<img src="b.jpg"><img src="c.jpg">"#).as_bytes(),
    );
    let before = origin.log().len();

    // A plain re-run reads no page again, yet reports the whole job.
    let o = run(crawl("r2.jsonl", &[])).await;
    crate::util::assert_exit(&o, 0);
    let asked: Vec<String> = origin.log()[before..]
        .iter()
        .map(|r| r.path.clone())
        .filter(|p| p != "/robots.txt")
        .collect();
    assert!(asked.is_empty(), "a plain re-run asked for {asked:?}");
    let m = s.manifest("r2.jsonl");
    let status_of = |m: &[serde_json::Value], path: &str| {
        m.iter()
            .find(|l| l["url"].as_str().unwrap().ends_with(path))
            .map(|l| {
                (
                    l["status"].as_str().unwrap().to_string(),
                    l["reason"].clone(),
                )
            })
            .unwrap_or_else(|| panic!("no line for {path}: {m:#?}"))
    };
    for path in ["/a.jpg", "/b.jpg", "/index.html", "/second.html"] {
        assert_eq!(
            status_of(&m, path),
            ("skipped".into(), serde_json::json!("done")),
            "{path}"
        );
    }
    assert_eq!(m.len(), 4, "{m:#?}");
    assert!(!s.out().join("Second/c.jpg").exists());

    // --refresh asks for each page with its ETag: the start page is
    // unchanged (304), the second page is read again and its new image
    // fetched; the old images are not asked for again.
    let before = origin.log().len();
    let o = run(crawl("r3.jsonl", &["--refresh"])).await;
    crate::util::assert_exit(&o, 0);
    let log = origin.log();
    let this_run: Vec<(String, u16)> = log[before..]
        .iter()
        .filter(|r| r.path != "/robots.txt")
        .map(|r| (r.path.clone(), r.status))
        .collect();
    let mut sorted = this_run.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [
            ("/static/c.jpg".to_string(), 200),
            ("/static/index.html".to_string(), 304),
            ("/static/second.html".to_string(), 200),
        ],
        "{this_run:?}"
    );
    assert_eq!(read(s.out().join("Second/c.jpg")), b"bytes of c.jpg");
    let m = s.manifest("r3.jsonl");
    assert_eq!(
        status_of(&m, "/index.html"),
        ("skipped".into(), serde_json::json!("unchanged"))
    );
    assert_eq!(status_of(&m, "/c.jpg").0, "ok");
    assert_eq!(
        status_of(&m, "/a.jpg"),
        ("skipped".into(), serde_json::json!("done"))
    );
    assert_eq!(m.len(), 5, "{m:#?}");

    // Nothing changed since: every page answers 304, nothing is fetched.
    let before = origin.log().len();
    let o = run(crawl("r4.jsonl", &["--refresh"])).await;
    crate::util::assert_exit(&o, 0);
    let statuses: Vec<(String, u16)> = origin.log()[before..]
        .iter()
        .filter(|r| r.path != "/robots.txt")
        .map(|r| (r.path.clone(), r.status))
        .collect();
    assert!(statuses.iter().all(|(_, s)| *s == 304), "{statuses:?}");
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_shown_on_three_pages_is_downloaded_once_and_placed_in_each_folder() {
    use std::os::unix::fs::MetadataExt;
    let site = tempfile::tempdir().unwrap();
    let root = site.path();
    write(
        root,
        "index.html",
        br#"<html><head><title>Index</title></head><body>
        <a href="p1.html">1</a> <a href="p2.html">2</a> <a href="p3.html">3</a></body></html>"#,
    );
    for p in ["p1", "p2", "p3"] {
        write(
            root,
            &format!("{p}.html"),
            format!(
                r#"<html><head><title>Page {p}</title></head><body>
                <img src="shared.jpg"><img src="{p}.jpg"><img src="shared.jpg"></body></html>"#
            )
            .as_bytes(),
        );
        write(root, &format!("{p}.jpg"), p.as_bytes());
    }
    write(root, "shared.jpg", b"the shared image");
    let origin = Origin::start(Config {
        static_root: Some(root.to_path_buf()),
        ..Config::default()
    })
    .await
    .unwrap();
    let s = Scratch::new();
    let (finished, m) = crawl(&s, &origin.url("/static/index.html")).await;
    assert_eq!(finished.tally.failed, 0, "{m:#?}");
    assert_eq!(origin.requests("/static/shared.jpg"), 1, "one download");
    let mut want = Vec::new();
    for p in ["p1", "p2", "p3"] {
        want.push(format!("Page {p}/{p}.jpg"));
        want.push(format!("Page {p}/shared.jpg"));
    }
    assert_eq!(s.out_files(), want);
    let inodes: Vec<u64> = ["p1", "p2", "p3"]
        .iter()
        .map(|p| {
            let path = s.out().join(format!("Page {p}/shared.jpg"));
            assert_eq!(read(&path), b"the shared image");
            std::fs::metadata(path).unwrap().ino()
        })
        .collect();
    assert!(
        inodes.windows(2).all(|w| w[0] == w[1]),
        "hard links on one file system: {inodes:?}"
    );
    // Every placement is in the manifest, with the same hash.
    let shared: Vec<&serde_json::Value> = m
        .iter()
        .filter(|l| l["url"].as_str().unwrap().ends_with("/shared.jpg"))
        .collect();
    assert_eq!(shared.len(), 3, "{shared:#?}");
    assert!(shared.iter().all(|l| l["status"] == "ok"), "{shared:#?}");
    let notes = shared
        .iter()
        .filter(|l| {
            l["note"]
                .as_str()
                .is_some_and(|n| n.starts_with("same file as Page p"))
        })
        .count();
    assert_eq!(notes, 2, "{shared:#?}");
    let hashes: std::collections::HashSet<&str> =
        shared.iter().filter_map(|l| l["sha256"].as_str()).collect();
    assert_eq!(hashes.len(), 1, "{shared:#?}");

    // A re-run finds every placement done, and asks for nothing.
    let before = origin.log().len();
    let (again, m) = crawl(&s, &origin.url("/static/index.html")).await;
    assert_eq!((again.tally.ok, again.tally.failed), (0, 0), "{m:#?}");
    assert_eq!(
        origin.log()[before..]
            .iter()
            .filter(|r| r.path != "/robots.txt")
            .count(),
        0
    );
    assert_eq!(
        m.iter()
            .filter(|l| l["url"].as_str().unwrap().ends_with("/shared.jpg"))
            .count(),
        3
    );
    origin.stop().await;
}
