//! What a new user meets first: the spellings of other tools, help, the
//! usual mistakes, and messages that say what to do.

use std::time::Duration;

use haul_origin::{expected, Config, Origin};

use crate::util::{assert_exit, haul, read, run, stderr, wait_until, Scratch};

/// Runs `haul` in `dir`, to see what it leaves in the current directory.
async fn run_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut cmd = haul(args);
    cmd.current_dir(dir);
    cmd.output().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spellings_of_wget_aria2c_and_curl_work() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    for (i, flag) in ["-P", "--directory-prefix", "-d", "--dir"]
        .iter()
        .enumerate()
    {
        let dir = s.path(&format!("d{i}"));
        let url = origin.url(&format!("/file/a{i}"));
        let o = run(&[&url, flag, dir.to_str().unwrap(), "-c", "-nc", "-Z"]).await;
        assert_exit(&o, 0);
        assert_eq!(
            read(dir.join(format!("a{i}"))),
            expected(&format!("/file/a{i}"))
        );
    }
    // -t counts attempts (wget): one attempt meets the 503, two get past it.
    let out = s.path("t");
    let o = run(&[
        &origin.url("/flaky/1/t1"),
        "-P",
        out.to_str().unwrap(),
        "-t",
        "1",
    ])
    .await;
    assert_exit(&o, 1);
    let o = run(&[
        &origin.url("/flaky/1/t2"),
        "-P",
        out.to_str().unwrap(),
        "-t",
        "2",
    ])
    .await;
    assert_exit(&o, 0);
    // -U and -T.
    let o = run(&[
        &origin.url("/file/ua"),
        "-P",
        out.to_str().unwrap(),
        "-U",
        "my-agent/1",
        "-T",
        "5",
    ])
    .await;
    assert_exit(&o, 0);
    let ua = origin
        .log()
        .into_iter()
        .find(|r| r.path == "/file/ua")
        .unwrap();
    assert_eq!(ua.user_agent.as_deref(), Some("my-agent/1"));
    // -nc and --overwrite say opposite things.
    let o = run(&[&origin.url("/file/x"), "-nc", "--overwrite"]).await;
    assert_exit(&o, 2);
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_has_examples_and_every_name_field() {
    let o = run(&["--help"]).await;
    assert_exit(&o, 0);
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(help.contains("Examples:"), "{help}");
    assert!(help.contains("{path} {n} (the item's number)"), "{help}");
    let o = run(&["crawl", "--help"]).await;
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(help.contains("the pages to start from"), "{help}");
    assert!(help.contains("Examples:"), "{help}");
    let o = run(&["completions", "bash"]).await;
    assert_exit(&o, 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("_haul()"));
    let o = run(&["man"]).await;
    assert_exit(&o, 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains(".TH haul 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_command_is_named_and_leaves_nothing_behind() {
    let s = Scratch::new();
    let o = run_in(s.dir.path(), &["stauts", "out"]).await;
    assert_exit(&o, 2);
    insta::assert_snapshot!(stderr(&o).trim(), @r#"haul: error: unknown command "stauts" (did you mean "status"?); URLs start with http:// or https://, and -i FILE reads a list"#);
    std::fs::write(s.path("urls.txt"), "http://127.0.0.1:9/x\n").unwrap();
    let o = run_in(s.dir.path(), &["urls.txt"]).await;
    assert_exit(&o, 2);
    insta::assert_snapshot!(stderr(&o).trim(), @r#"haul: error: "urls.txt" is a file, not a URL: to read URLs from it, use -i urls.txt"#);
    assert_eq!(s.files(), vec!["urls.txt"], "nothing else is created");
    // A URL of no store haul knows as -o used to make a local folder
    // named after its scheme.
    let o = run_in(
        s.dir.path(),
        &["-i", "urls.txt", "-o", "webdav://host/run/"],
    )
    .await;
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("-o webdav://host/run/: not a place haul writes to"),
        "{}",
        stderr(&o)
    );
    assert_eq!(s.files(), vec!["urls.txt"], "no webdav: folder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_said_once_and_say_what_to_do() {
    let s = Scratch::new();
    let o = run(&[
        "-i",
        s.path("missing.txt").to_str().unwrap(),
        "-o",
        s.out().to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    std::fs::write(s.path("afile"), "").unwrap();
    let o = run(&[
        "http://127.0.0.1:9/x",
        "-o",
        s.path("afile").to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("is a file, not a directory"),
        "{}",
        stderr(&o)
    );
    let o = run(&["http://127.0.0.1:9/x", "--name", "{meta.title}.jpg"]).await;
    assert_exit(&o, 2);
    insta::assert_snapshot!(stderr(&o).trim(), @"haul: error: --name uses {meta.title}, but there is no --meta-url to fetch it from");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_are_shown_as_they_come_and_counted_apart() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let mut lines: Vec<String> = (1..=8).map(|i| format!("not-a-url-{i}")).collect();
    lines.push(origin.url("/file/good"));
    let list = s.list("urls.txt", &lines);
    let o = s.fetch(&list, &[]).await;
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert_eq!(err.matches("skipping a bad row: ").count(), 5, "{err}");
    assert!(err.contains("urls.txt:1: not a URL"), "{err}");
    assert!(err.contains("3 more bad input rows not shown"), "{err}");
    assert!(
        err.contains("1 done, 0 skipped, 0 failed, 8 bad input rows"),
        "{err}"
    );
    let s = Scratch::new();
    let list = s.list("urls.txt", &lines);
    let o = s.fetch(&list, &["-v"]).await;
    assert_eq!(stderr(&o).matches("skipping a bad row: ").count(), 8);
    // haul status agrees with the summary on the job's items.
    let status = run(&["status", s.out().to_str().unwrap(), "--json"]).await;
    let st: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        (st["ok"].as_u64(), st["failed"].as_u64()),
        (Some(1), Some(0)),
        "{st}"
    );
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_say_what_was_taken_and_text_lists_take_url_templates() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    // A headerless CSV of codes: its first line would be a header.
    let codes = s.path("codes.csv");
    std::fs::write(&codes, "aa\nbb\ncc\n").unwrap();
    let base = origin.url("/file");
    let url = format!("{base}/{{col.0}}.bin");
    let o = s.fetch(&codes, &["--url", &url]).await;
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("codes.csv: line 1 is the header (aa; --no-header"));
    assert_eq!(s.out_files(), vec!["bb.bin", "cc.bin"]);
    let o = s.fetch(&codes, &["--url", &url, "--no-header"]).await;
    assert_exit(&o, 0);
    assert_eq!(s.out_files(), vec!["aa.bin", "bb.bin", "cc.bin"]);
    // The same codes as a text list: one column, {col.0}.
    let s = Scratch::new();
    let list = s.path("codes.txt");
    std::fs::write(&list, "dd\nee\n").unwrap();
    let o = s.fetch(&list, &["--url", &url]).await;
    assert_exit(&o, 0);
    assert_eq!(s.out_files(), vec!["dd.bin", "ee.bin"]);
    // An article link and a column of image lists: the images, and it says so.
    let s = Scratch::new();
    let csv = s.path("posts.csv");
    let (page, img1, img2) = (
        origin.url("/html/post/1"),
        origin.url("/file/p1.jpg"),
        origin.url("/file/p2.jpg"),
    );
    std::fs::write(
        &csv,
        format!("id,article_url,images\n1,{page},\"['{img1}', '{img2}']\"\n"),
    )
    .unwrap();
    let o = s.fetch(&csv, &[]).await;
    assert_exit(&o, 0);
    assert!(
        stderr(&o).contains(r#"URLs from column "images" (2)"#),
        "{}",
        stderr(&o)
    );
    assert_eq!(s.out_files(), vec!["p1.jpg", "p2.jpg"]);
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_inputs_are_warned_about() {
    let s = Scratch::new();
    std::fs::write(s.path("empty.txt"), "").unwrap();
    std::fs::write(s.path("comments.txt"), "# nothing yet\n\n").unwrap();
    std::fs::write(s.path("header.csv"), "id,url\n").unwrap();
    let (empty, comments, header) = (
        s.path("empty.txt"),
        s.path("comments.txt"),
        s.path("header.csv"),
    );
    let o = run(&[
        "-i",
        empty.to_str().unwrap(),
        "-i",
        comments.to_str().unwrap(),
        "-i",
        header.to_str().unwrap(),
        "-o",
        s.out().to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 0);
    let err = stderr(&o);
    for name in ["empty.txt", "comments.txt", "header.csv"] {
        assert!(
            err.contains(&format!(
                "warning: no URLs found in {}",
                s.path(name).display()
            )),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_job_reports_what_never_started_as_pending() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let urls: Vec<String> = (0..20)
        .map(|i| {
            origin.url(&format!(
                "/drip/s{i}.bin?size=40000&chunk=4000&delay_ms=100"
            ))
        })
        .collect();
    let list = s.list("urls.txt", &urls);
    let failed = s.path("failed.txt");
    let child = s.spawn(&list, &["-j", "2", "--failed", failed.to_str().unwrap()]);
    wait_until("nothing started", || origin.log().len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    let o = child.wait_with_output().await.unwrap();
    assert_exit(&o, 130);
    let started = origin.log().len();
    assert!(started < 20, "{started}");
    // Only what started is reported; the rest is pending for the next run.
    let m = s.manifest("r.jsonl");
    assert_eq!(m.len(), started, "{m:?}");
    let failed_list = std::fs::read_to_string(&failed).unwrap();
    assert!(failed_list.lines().count() <= started, "{failed_list}");
    assert!(
        stderr(&o).contains("what did not start is pending"),
        "{}",
        stderr(&o)
    );
    let o = s.fetch(&list, &[]).await;
    assert_exit(&o, 0);
    assert_eq!(s.out_files().len(), 20);
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failed_list_of_a_table_has_each_row_once() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let (a, b) = (
        origin.url("/status/404/a.jpg"),
        origin.url("/status/404/b.jpg"),
    );
    let csv = s.path("rows.csv");
    std::fs::write(
        &csv,
        format!(
            "id,urls\n1,\"['{a}', '{b}']\"\n2,{}\n",
            origin.url("/file/ok.jpg")
        ),
    )
    .unwrap();
    let failed = s.path("failed.csv");
    let o = s.fetch(&csv, &["--failed", failed.to_str().unwrap()]).await;
    assert_exit(&o, 1);
    let text = std::fs::read_to_string(&failed).unwrap();
    assert_eq!(text.lines().count(), 2, "header and one row:\n{text}");
    assert!(text.starts_with("id,urls\n1,"), "{text}");
    origin.stop().await;
}
