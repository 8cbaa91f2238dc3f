//! What haul never does: write over its own input, share a job with another
//! process, die on SIGTERM without its reports, or count a full disk as a
//! permanent failure.

use std::time::Duration;

use haul_origin::{expected, Config, Origin};

use crate::util::{assert_exit, haul, read, run, stderr, wait_until, Scratch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_named_like_an_input_is_refused_and_the_input_kept() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let urls: Vec<String> = (0..50)
        .map(|i| origin.url(&format!("/status/404/f{i}")))
        .collect();
    let list = s.list("failed.txt", &urls);
    let before = read(&list);
    let out = s.out();
    for flag in ["--failed", "--report"] {
        let o = run(&[
            "-i",
            list.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            flag,
            list.to_str().unwrap(),
        ])
        .await;
        assert_exit(&o, 2);
        let err = stderr(&o);
        assert!(err.contains(&format!("{flag} ")), "{err}");
        assert!(err.contains("also the input -i"), "{err}");
        assert!(err.contains("failed-2.txt"), "{err}");
        assert_eq!(read(&list), before, "the input list was changed");
    }
    // The same file under another spelling is refused too.
    let sneaky = s.path("./sub/../failed.txt");
    std::fs::create_dir_all(s.path("sub")).unwrap();
    let o = run(&[
        "-i",
        list.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--failed",
        sneaky.to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 2);
    assert_eq!(read(&list), before);
    // And --report and --failed on one file.
    let o = run(&[
        "-i",
        list.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--failed",
        s.path("x.txt").to_str().unwrap(),
        "--report",
        s.path("x.txt").to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("is also --"), "{}", stderr(&o));
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_replace_their_file_only_when_complete() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let slow = "/drip/slow.bin?size=100000&chunk=10000&delay_ms=100";
    let list = s.list("urls.txt", &[origin.url("/status/404/a"), origin.url(slow)]);
    std::fs::write(s.path("r.jsonl"), "old report\n").unwrap();
    std::fs::write(s.path("failed.txt"), "old list\n").unwrap();
    let (report, failed) = (s.path("r.jsonl"), s.path("failed.txt"));
    let child = s.spawn(&list, &["--failed", failed.to_str().unwrap()]);
    // While the job runs, the old files are whole.
    wait_until("the run never started", || {
        s.out().join(".haul/lock").exists()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(std::fs::read_to_string(&report).unwrap(), "old report\n");
    assert_eq!(std::fs::read_to_string(&failed).unwrap(), "old list\n");
    let o = child.wait_with_output().await.unwrap();
    assert_exit(&o, 1);
    assert_eq!(s.manifest("r.jsonl").len(), 2);
    assert_eq!(
        std::fs::read_to_string(&failed).unwrap(),
        format!("{}\n", origin.url("/status/404/a"))
    );
    // No temporary file is left beside them.
    let mut names: Vec<String> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["failed.txt", "out", "r.jsonl", "urls.txt"]);
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_never_takes_the_name_of_an_input_in_the_output_directory() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    std::fs::create_dir_all(s.out()).unwrap();
    // The list lives in the output directory and names a file like itself.
    let list = s.out().join("urls.txt");
    let route = "/file/urls.txt?size=500";
    std::fs::write(&list, format!("{}\n", origin.url(route))).unwrap();
    let before = read(&list);
    let out = s.out();
    let report = s.out().join("r.jsonl");
    let o = run(&[
        "-i",
        list.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--overwrite",
        "--report",
        report.to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 0);
    assert_eq!(read(&list), before, "the input was overwritten");
    assert_eq!(read(s.out().join("urls-1.txt")), expected(route));
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_one_job_fails_fast_and_status_still_reads() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let slow = "/drip/slow.bin?size=400000&chunk=4000&delay_ms=20";
    let list = s.list("urls.txt", &[origin.url(slow)]);
    let out = s.out();
    let args = ["-i", list.to_str().unwrap(), "-o", out.to_str().unwrap()];
    let first = haul(&args).spawn().unwrap();
    let pid = first.id().unwrap();
    wait_until("the first run never started", || {
        s.out().join(".haul/lock").exists()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let o = run(&args).await;
    assert_exit(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("another haul is working in") && err.contains(&format!("(pid {pid})")),
        "{err}"
    );
    let status = run(&["status", out.to_str().unwrap()]).await;
    assert_exit(&status, 0);
    // The first run was not disturbed.
    let o = first.wait_with_output().await.unwrap();
    assert_exit(&o, 0);
    assert_eq!(read(s.out().join("slow.bin")), expected(slow));
    // And once it is over, the job is free again.
    let o = run(&args).await;
    assert_exit(&o, 0);
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_parks_transfers_and_writes_the_summary_and_manifest() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let mut urls: Vec<String> = (0..10)
        .map(|i| origin.url(&format!("/file/quick{i}")))
        .collect();
    urls.push(origin.url("/drip/slow.bin?size=2000000&chunk=16000&delay_ms=20"));
    let list = s.list("urls.txt", &urls);
    let child = s.spawn(&list, &[]);
    wait_until("the slow transfer never wrote", || {
        s.out().join("slow.bin.part").exists()
    })
    .await;
    crate::util::signal(child.id().unwrap(), "-TERM");
    let o = child.wait_with_output().await.unwrap();
    assert_exit(&o, 130);
    let err = stderr(&o);
    assert!(err.contains("terminated; stopping"), "{err}");
    assert!(err.contains("interrupted: 10 done"), "{err}");
    let m = s.manifest("r.jsonl");
    assert_eq!(m.len(), 11, "one manifest line per item");
    assert!(s.out().join("slow.bin.part").is_file());
    origin.stop().await;
}

/// A small file system of its own for the output directory, unmounted when
/// dropped. Mounting needs root, which CI and the developers' machines have.
struct SmallDisk {
    dir: std::path::PathBuf,
}

impl SmallDisk {
    fn mount(dir: &std::path::Path, size: &str) -> Option<Self> {
        let uid = std::process::Command::new("id").arg("-u").output().unwrap();
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            eprintln!("skipped: mounting a small file system needs root");
            return None;
        }
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount -t tmpfs failed");
        Some(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn resize(&self, size: &str) {
        let ok = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.dir)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_job_and_the_same_command_carries_on() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let Some(disk) = SmallDisk::mount(&s.out(), "3m") else {
        return;
    };
    // Dripped a little, so the job state has recorded each transfer's start
    // before its body fills the disk (the state keeps a reserve for what
    // comes after, not for a write that races the fill).
    let routes: Vec<String> = (0..6)
        .map(|i| format!("/drip/f{i:02}.bin?size=1000000&chunk=65536&delay_ms=5"))
        .collect();
    let urls: Vec<String> = routes.iter().map(|r| origin.url(r)).collect();
    let list = s.list("urls.txt", &urls);
    let args = ["-j", "1", "--per-host", "1"];
    let o = s.fetch(&list, &args).await;
    let err = stderr(&o);
    // The file that did not fit fails, and the job state, which keeps a
    // reserve for this, records it. (Should SQLite itself give up its
    // transaction on the full disk, the run ends there instead, exit 2,
    // saying so; either way nothing is failed for good.)
    match crate::util::code(&o) {
        1 => {
            assert!(err.contains("no space left on tmpfs (mounted at"), "{err}");
            let m = s.manifest("r.jsonl");
            let full = m.iter().filter(|l| l["reason"] == "no space left").count();
            assert!(full <= 1, "{m:?}");
            assert!(m.iter().all(|l| l["reason"] != "disk"), "{m:?}");
        }
        2 => assert!(err.contains("no space left for the job state"), "{err}"),
        other => panic!("exit {other}: {err}"),
    }
    assert!(err.contains("run the same command again"), "{err}");
    let got = s
        .out_files()
        .iter()
        .filter(|f| !f.ends_with(".part"))
        .count();
    assert!(got < 6, "{got}");
    // Free space: the same command finishes the job.
    disk.resize("20m");
    let o = s.fetch(&list, &args).await;
    assert_exit(&o, 0);
    for r in &routes {
        let name = r.trim_start_matches("/drip/").split('?').next().unwrap();
        assert_eq!(read(s.out().join(name)), expected(r), "{name}");
    }
    drop(disk);
    origin.stop().await;
}
