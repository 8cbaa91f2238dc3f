//! Output to object storage (`-o s3://bucket/prefix/`) against a real
//! S3-compatible server (moto, see `util::s3`).

use haul_origin::{expected, Config, Origin};

use crate::util::s3::S3;
use crate::util::*;

/// `haul -i LIST -o s3://BUCKET/PREFIX --report r.jsonl EXTRA…` with the
/// server's credentials and endpoint in the environment, from the scratch
/// directory (where the job state goes).
fn to_s3(
    s: &Scratch,
    s3: &S3,
    list: &std::path::Path,
    dest: &str,
    extra: &[&str],
) -> tokio::process::Command {
    let report = s.path("r.jsonl");
    let mut args = vec![
        "-i",
        list.to_str().unwrap(),
        "-o",
        dest,
        "--report",
        report.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let mut cmd = haul(&args);
    cmd.current_dir(s.dir.path()).envs(s3.env());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_arrive_whole_under_the_prefix_and_a_rerun_asks_for_nothing() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s3 = S3::start();
    s3.create_bucket("bkt");
    let s = Scratch::new();
    let mut paths: Vec<String> = (0..40).map(|i| format!("/file/small{i}.bin")).collect();
    // Three parts of a multipart upload, the last one short.
    paths.push("/file/large.bin?size=20000000".into());
    // A body without a length, larger than a part.
    paths.push("/chunked/stream.bin?size=9000000".into());
    let urls: Vec<String> = paths.iter().map(|p| origin.url(p)).collect();
    let list = s.list("urls.txt", &urls);

    let o = to_s3(&s, &s3, &list, "s3://bkt/run/2026/", &[])
        .output()
        .await
        .unwrap();
    assert_exit(&o, 0);
    let mut want: Vec<String> = (0..40).map(|i| format!("run/2026/small{i}.bin")).collect();
    want.extend(["run/2026/large.bin".into(), "run/2026/stream.bin".into()]);
    want.sort();
    assert_eq!(
        s3.keys("bkt"),
        want,
        "one object per file, under the prefix, nothing else"
    );
    for p in &paths {
        let name = p.rsplit('/').next().unwrap().split('?').next().unwrap();
        let got = s3.get("bkt", &format!("run/2026/{name}")).unwrap();
        assert!(
            got == expected(p),
            "{name}: the object differs from the body"
        );
    }
    assert!(
        s3.uploads("bkt").is_empty(),
        "no multipart upload left open"
    );
    let manifest = s.manifest("r.jsonl");
    assert_eq!(manifest.len(), 42);
    assert!(manifest.iter().all(|m| m["status"] == "ok"), "{manifest:?}");
    // The job state is local, named for the URL, in the current directory.
    assert!(s.path(".haul-jobs/s3/bkt/run/2026/.haul/state.db").exists());
    // Nothing was written to a local folder named s3:.
    assert!(!s.path("s3:").exists());

    let before = origin.stats().requests;
    let o = to_s3(&s, &s3, &list, "s3://bkt/run/2026/", &[])
        .output()
        .await
        .unwrap();
    assert_exit(&o, 0);
    assert_eq!(origin.stats().requests, before, "a re-run fetched again");
    assert!(stderr(&o).contains("0 done, 42 skipped"), "{}", stderr(&o));

    // An object that disappeared is fetched again; one that was there
    // before the job (another job's key) is left alone.
    let small0 = origin.requests("/file/small0.bin");
    s3.delete("bkt", "run/2026/small0.bin");
    let o = to_s3(&s, &s3, &list, "s3://bkt/run/2026/", &[])
        .output()
        .await
        .unwrap();
    assert_exit(&o, 0);
    assert_eq!(origin.requests("/file/small0.bin"), small0 + 1);
    assert_eq!(
        s3.get("bkt", "run/2026/small0.bin").unwrap(),
        expected("/file/small0.bin")
    );
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_there_before_the_job_is_kept_unless_overwrite() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s3 = S3::start();
    s3.create_bucket("bkt");
    s3.put("bkt", "p/a.bin", b"mine");
    let s = Scratch::new();
    let list = s.list(
        "urls.txt",
        &[origin.url("/file/a.bin"), origin.url("/file/b.bin")],
    );
    let o = to_s3(&s, &s3, &list, "s3://bkt/p", &[])
        .output()
        .await
        .unwrap();
    assert_exit(&o, 0);
    assert_eq!(s3.get("bkt", "p/a.bin").unwrap(), b"mine");
    assert_eq!(origin.requests("/file/a.bin"), 0);
    assert_eq!(s3.get("bkt", "p/b.bin").unwrap(), expected("/file/b.bin"));

    let s = Scratch::new();
    let o = to_s3(&s, &s3, &list, "s3://bkt/p", &["--overwrite"])
        .output()
        .await
        .unwrap();
    assert_exit(&o, 0);
    assert_eq!(s3.get("bkt", "p/a.bin").unwrap(), expected("/file/a.bin"));
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_multipart_upload_is_aborted_and_the_object_completed_by_the_next_run() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s3 = S3::start();
    s3.create_bucket("bkt");
    let s = Scratch::new();
    // 24 MB in 1 MB pieces 50 ms apart: more than a second, three parts.
    let path = "/drip/big.bin?size=24000000&chunk=1000000&delay_ms=50";
    let list = s.list("urls.txt", &[origin.url(path)]);
    let mut child = to_s3(&s, &s3, &list, "s3://bkt/k/", &[]).spawn().unwrap();
    wait_until("a multipart upload to begin", || {
        !s3.uploads("bkt").is_empty()
    })
    .await;
    signal(child.id().unwrap(), "-KILL");
    let _ = child.wait().await;
    assert_eq!(
        s3.uploads("bkt"),
        vec!["k/big.bin".to_string()],
        "the kill left the upload open"
    );
    assert!(
        s3.get("bkt", "k/big.bin").is_none(),
        "no object before it is whole"
    );

    let o = to_s3(&s, &s3, &list, "s3://bkt/k/", &[])
        .output()
        .await
        .unwrap();
    assert_exit(&o, 0);
    assert!(
        stderr(&o).contains("aborted 1 unfinished upload an earlier run left in s3://bkt/k"),
        "{}",
        stderr(&o)
    );
    assert!(s3.get("bkt", "k/big.bin").unwrap() == expected(path));
    assert!(
        s3.uploads("bkt").is_empty(),
        "uploads left: {:?}",
        s3.uploads("bkt")
    );
    origin.stop().await;
}

/// Runs `to_s3` to the end, with `creds` (key, secret) instead of the
/// usual ones when given.
async fn run_s3(
    s: &Scratch,
    s3: &S3,
    list: &std::path::Path,
    dest: &str,
    creds: Option<&(S3, String, String)>,
) -> std::process::Output {
    let mut cmd = to_s3(s, s3, list, dest, &[]);
    if let Some((_, key, secret)) = creds {
        cmd.env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret);
    }
    cmd.output().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_bucket_or_refused_credentials_stop_the_job_before_any_transfer() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let list = s.list("urls.txt", &[origin.url("/file/a.bin")]);
    let refused = |o: &std::process::Output, want: &str| {
        assert_exit(o, 2);
        assert!(stderr(o).contains(want), "{}", stderr(o));
    };

    let s3 = S3::start();
    let o = run_s3(&s, &s3, &list, "s3://no-such-bucket/x/", None).await;
    refused(&o, "-o s3://no-such-bucket/x: the bucket does not exist");
    drop(s3);

    let s3 = S3::start_checking_credentials();
    let o = run_s3(&s, &s3, &list, "s3://bkt/x/", None).await;
    refused(
        &o,
        "-o s3://bkt/x: the store did not accept the credentials",
    );
    drop(s3);

    // A user who may list and read but not write.
    let user = S3::start_with_user("bkt", &["s3:ListBucket", "s3:GetObject"]);
    let o = run_s3(&s, &user.0, &list, "s3://bkt/x/", Some(&user)).await;
    refused(
        &o,
        "the credentials lack a permission haul needs: cannot write under the prefix (s3:PutObject)",
    );
    drop(user);
    assert_eq!(
        origin.stats().requests,
        0,
        "a transfer began before the checks passed"
    );
    // The same user, allowed to write: the job runs.
    let user = S3::start_with_user("bkt", &["s3:ListBucket", "s3:PutObject", "s3:DeleteObject"]);
    let o = run_s3(&s, &user.0, &list, "s3://bkt/x/", Some(&user)).await;
    assert_exit(&o, 0);
    assert_eq!(origin.stats().requests, 1);
    drop(user);

    // An unknown scheme is a usage error, and no folder of that name.
    let o = run(&["-i", list.to_str().unwrap(), "-o", "ftp://host/x"]).await;
    refused(&o, "-o ftp://host/x: not a place haul writes to");
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checksum_mismatch_stores_nothing_and_names_stay_under_the_prefix() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s3 = S3::start();
    s3.create_bucket("bkt");
    let s = Scratch::new();
    let good = ring_sha256(&expected("/file/good.bin"));
    let csv = format!(
        "url,sha256,name\n{},{good},../../../escape.bin\n{},{},big.bin\n",
        origin.url("/file/good.bin"),
        origin.url("/file/bad.bin?size=9000000"),
        "0".repeat(64),
    );
    std::fs::write(s.path("rows.csv"), csv).unwrap();
    let list = s.path("rows.csv");
    let o = to_s3(
        &s,
        &s3,
        &list,
        "s3://bkt/safe/",
        &["--checksum-column", "sha256", "--name", "{col.name}"],
    )
    .output()
    .await
    .unwrap();
    assert_exit(&o, 1);
    let keys = s3.keys("bkt");
    assert!(keys.iter().all(|k| k.starts_with("safe/")), "{keys:?}");
    assert_eq!(keys.len(), 1, "only the good file: {keys:?}");
    assert!(
        s3.uploads("bkt").is_empty(),
        "the rejected body's upload was left open"
    );
    origin.stop().await;
}

fn ring_sha256(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crawl_names_its_folders_in_the_bucket_and_copies_a_shared_file_inside_it() {
    let site = tempfile::tempdir().unwrap();
    let write = |rel: &str, bytes: &[u8]| std::fs::write(site.path().join(rel), bytes).unwrap();
    write(
        "index.html",
        br#"<html><head><title>Index</title></head><body>
        <a href="p1.html">1</a> <a href="p2.html">2</a></body></html>"#,
    );
    for p in ["p1", "p2"] {
        write(
            &format!("{p}.html"),
            format!(
                r#"<html><head><title>Page {p}</title></head><body>
                <img src="shared.jpg"><img src="{p}.jpg"></body></html>"#
            )
            .as_bytes(),
        );
        write(&format!("{p}.jpg"), p.as_bytes());
    }
    write("shared.jpg", b"the shared image");
    let origin = Origin::start(Config {
        static_root: Some(site.path().to_path_buf()),
        ..Config::default()
    })
    .await
    .unwrap();
    let s3 = S3::start();
    s3.create_bucket("bkt");
    let s = Scratch::new();
    // Through the library, with the store's settings as options.
    let mut config = haul::Config::new(
        vec![haul::InputSpec::Args(
            vec![origin.url("/static/index.html")],
        )],
        "s3://bkt/crawl/",
    )
    .state_dir(s.path("state"))
    .unwrap();
    for (k, v) in [
        ("aws_access_key_id", crate::util::s3::KEY.to_string()),
        ("aws_secret_access_key", crate::util::s3::SECRET.to_string()),
        ("aws_region", "us-east-1".to_string()),
        ("aws_endpoint", s3.endpoint()),
        ("aws_allow_http", "true".to_string()),
    ] {
        config = config.store_option(k, &v).unwrap();
    }
    let config = config
        .crawl(haul::Crawl::new("img", "src", Some("a")).unwrap().depth(2))
        .report(Some(s.path("r.jsonl")))
        .progress(haul::ProgressMode::None)
        .quiet(true);
    let finished = haul::run(config, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(finished.tally.failed, 0, "{:#?}", s.manifest("r.jsonl"));
    assert_eq!(origin.requests("/static/shared.jpg"), 1, "one download");
    assert_eq!(
        s3.keys("bkt"),
        vec![
            "crawl/Page p1/p1.jpg",
            "crawl/Page p1/shared.jpg",
            "crawl/Page p2/p2.jpg",
            "crawl/Page p2/shared.jpg"
        ]
    );
    for p in ["p1", "p2"] {
        assert_eq!(
            s3.get("bkt", &format!("crawl/Page%20{p}/shared.jpg"))
                .unwrap(),
            b"the shared image"
        );
    }
    assert!(
        s.path("state/.haul/state.db").exists(),
        "the state is where it was asked to be"
    );
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_of_a_shared_job_store_into_one_bucket() {
    let mut pg = crate::util::pg::Pg::start();
    let origin = Origin::start(Config::default()).await.unwrap();
    let s3 = S3::start();
    s3.create_bucket("bkt");
    let s = Scratch::new();
    let routes: Vec<String> = (0..200).map(|i| format!("/file/w{i:03}.bin")).collect();
    let urls: Vec<String> = routes.iter().map(|r| origin.url(r)).collect();
    let list = s.list("urls.txt", &urls);
    let shared = |args: &[&str]| {
        let mut cmd = haul(args);
        cmd.current_dir(s.dir.path())
            .envs(s3.env())
            .env("HAUL_STATE", pg.url());
        cmd
    };
    let o = shared(&["submit", "--job", "j", "-i", list.to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert_exit(&o, 0);
    let workers: Vec<_> = (0..2)
        .map(|_| {
            shared(&["worker", "--job", "j", "-o", "s3://bkt/shared/", "-j", "8"])
                .spawn()
                .unwrap()
        })
        .collect();
    for w in workers {
        let o = w.wait_with_output().await.unwrap();
        assert_exit(&o, 0);
    }
    let keys = s3.keys("bkt");
    assert_eq!(keys.len(), 200, "{keys:?}");
    for r in &routes {
        let name = r.trim_start_matches("/file/");
        assert_eq!(
            s3.get("bkt", &format!("shared/{name}")).unwrap(),
            expected(r)
        );
        assert_eq!(origin.requests(r), 1, "{r} fetched twice");
    }
    origin.stop().await;
    pg.stop();
}
