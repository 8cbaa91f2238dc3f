//! Dataset inputs, naming and content checks.

use std::path::PathBuf;

use haul_origin::{expected, Config, Origin};

use crate::util::{assert_exit, read, run, Scratch};

/// The Fluent Python flags dataset shipped in shared/data/flags.
pub fn flags_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/flags")
}

async fn flags_origin() -> Origin {
    Origin::start(Config {
        static_root: Some(flags_dir()),
        ..Config::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_checks_the_bytes_not_the_label() {
    let origin = flags_origin().await;
    let s = Scratch::new();
    let out = s.out();
    let o = run(&[
        &origin.url("/static/cn/cn.gif"),
        &origin.url("/html/photo.jpg"),
        &origin.url("/file/noise.jpg"),
        "-o",
        out.to_str().unwrap(),
        "--accept",
        "image/*",
        "--report",
        s.path("r.jsonl").to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 1);
    assert_eq!(s.out_files(), vec!["cn.gif"]);
    assert_eq!(
        read(out.join("cn.gif")),
        read(flags_dir().join("cn/cn.gif"))
    );
    let m = s.manifest("r.jsonl");
    let error = |name: &str| {
        m.iter()
            .find(|m| m["url"].as_str().unwrap().ends_with(name))
            .unwrap()["error"]
            .clone()
    };
    assert_eq!(error("photo.jpg"), "unexpected content: text/html");
    assert_eq!(
        error("noise.jpg"),
        "unexpected content: application/octet-stream"
    );
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limits_abort_early_whatever_the_server_says() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let out = s.out();
    let o = run(&[
        // No Content-Length: the limit is found while streaming.
        &origin.url("/chunked/unbounded.bin?size=50000000"),
        // A declared length over the limit fails before the body.
        &origin.url("/file/declared.bin?size=3000000"),
        &origin.url("/file/tiny.bin?size=10"),
        &origin.url("/file/fine.bin?size=500000"),
        "-o",
        out.to_str().unwrap(),
        "--max-size",
        "1M",
        "--min-size",
        "1k",
        "--report",
        s.path("r.jsonl").to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 1);
    assert_eq!(s.out_files(), vec!["fine.bin"]);
    assert_eq!(
        read(out.join("fine.bin")),
        expected("/file/fine.bin?size=500000")
    );
    // The unbounded body was cut off near the limit, not read to its end.
    assert!(
        origin.stats().bytes_sent < 20_000_000,
        "{:?}",
        origin.stats()
    );
    let m = s.manifest("r.jsonl");
    let reasons: Vec<&str> = m.iter().filter_map(|m| m["reason"].as_str()).collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "too large").count(),
        2,
        "{m:?}"
    );
    assert_eq!(
        reasons.iter().filter(|r| **r == "too small").count(),
        1,
        "{m:?}"
    );
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_patterns_expand_in_arguments_and_lists() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let list = s.list("urls.txt", &[origin.url("/file/{a,b}{01..03}.bin")]);
    let out = s.out();
    let o = run(&[
        &origin.url("/file/arg{1..3}.bin"),
        "-i",
        list.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 0);
    assert_eq!(
        s.out_files(),
        vec![
            "a01.bin", "a02.bin", "a03.bin", "arg1.bin", "arg2.bin", "arg3.bin", "b01.bin",
            "b02.bin", "b03.bin"
        ]
    );
    origin.stop().await;
}

/// The two-letter codes of the flags dataset.
pub fn flag_codes() -> Vec<String> {
    let mut codes: Vec<String> = std::fs::read_dir(flags_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    codes.sort();
    codes
}

/// `{meta.country}` names a file after its metadata document.
pub fn country(cc: &str) -> String {
    let meta: serde_json::Value =
        serde_json::from_slice(&read(flags_dir().join(cc).join("metadata.json"))).unwrap();
    meta["country"].as_str().unwrap().replace(' ', "_")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_from_metadata_documents() {
    let origin = flags_origin().await;
    let s = Scratch::new();
    let codes = flag_codes();
    assert_eq!(codes.len(), 194);
    let mut urls: Vec<String> = codes
        .iter()
        .map(|cc| origin.url(&format!("/static/{cc}/{cc}.gif")))
        .collect();
    urls.push(origin.url("/static/zz/zz.gif"));
    let list = s.list("urls.txt", &urls);
    let out = s.out();
    let meta = origin.url("/{path}/metadata.json");
    let o = run(&[
        "-i",
        list.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--meta-url",
        &meta,
        "--name",
        r#"{stem|upper}-{meta.country|replace(" ","_")}.{ext}"#,
        "--report",
        s.path("r.jsonl").to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 1);
    for cc in &codes {
        let name = format!("{}-{}.gif", cc.to_uppercase(), country(cc));
        assert_eq!(
            read(out.join(&name)),
            read(flags_dir().join(cc).join(format!("{cc}.gif"))),
            "{name}"
        );
    }
    assert!(out.join("CN-China.gif").is_file());
    assert!(out.join("US-United_States_of_America.gif").is_file());
    assert_eq!(s.out_files().len(), 194);
    let m = s.manifest("r.jsonl");
    let zz = m
        .iter()
        .find(|m| m["url"].as_str().unwrap().contains("/zz/"))
        .unwrap();
    assert_eq!(zz["status"], "failed");
    assert_eq!(zz["reason"], "metadata: HTTP 404 Not Found");
    let cn = m.iter().find(|m| m["path"] == "CN-China.gif").unwrap();
    assert_eq!(cn["meta"]["iso_cc"], "CN");
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_templates_make_directories_and_detect_extensions() {
    let origin = flags_origin().await;
    let s = Scratch::new();
    let out = s.out();
    let o = run(&[
        // A GIF behind a URL without an extension: {ext} is detected.
        &origin.url("/redirect?to=%2Fstatic%2Fbr%2Fbr.gif"),
        &origin.url("/static/fr/fr.gif"),
        "-o",
        out.to_str().unwrap(),
        "--name",
        "{host}/{n}-{stem}.{ext}",
    ])
    .await;
    assert_exit(&o, 0);
    assert_eq!(
        s.out_files(),
        vec!["127.0.0.1/1-redirect.gif", "127.0.0.1/2-fr.gif"]
    );
    // Two URLs whose template names collide both arrive.
    let s2 = Scratch::new();
    let out2 = s2.out();
    let o = run(&[
        &origin.url("/file/a/x.bin"),
        &origin.url("/file/b/x.bin"),
        "-o",
        out2.to_str().unwrap(),
        "--name",
        "../{name}",
    ])
    .await;
    assert_exit(&o, 0);
    assert_eq!(s2.out_files(), vec!["x-1.bin", "x.bin"]);
    assert!(s2.files().iter().all(|f| f.starts_with("out/")));
    origin.stop().await;
}
