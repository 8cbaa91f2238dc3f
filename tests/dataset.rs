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
