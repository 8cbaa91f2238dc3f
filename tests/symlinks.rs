//! Links planted in the output directory: nothing is ever written through
//! one, and nothing outside the output directory changes.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use haul_origin::{expected, Config, Origin};

use crate::util::{assert_exit, read, run, stderr, Scratch};

/// A directory outside `out/` holding one precious file, and what every
/// file in it should still hold when the test ends.
struct Elsewhere {
    dir: PathBuf,
    victim: PathBuf,
}

impl Elsewhere {
    fn new(s: &Scratch) -> Self {
        let dir = s.path("elsewhere");
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::fs::create_dir_all(s.out()).unwrap();
        Self { dir, victim }
    }

    /// `find elsewhere`: only the victim, unchanged.
    #[track_caller]
    fn assert_untouched(&self) {
        let mut found: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        found.sort();
        assert_eq!(found, vec!["victim"], "files appeared outside out/");
        assert_eq!(read(&self.victim), b"precious", "the victim was written");
    }
}

#[track_caller]
fn assert_plain_file(path: &Path, want: &[u8]) {
    let meta = path.symlink_metadata().unwrap();
    assert!(
        meta.file_type().is_file(),
        "{} is not a plain file",
        path.display()
    );
    assert_eq!(read(path), want, "{}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_part_link_is_replaced_not_followed() {
    let origin = Origin::start(Config::default()).await.unwrap();
    for overwrite in [false, true] {
        let s = Scratch::new();
        let away = Elsewhere::new(&s);
        // Bodies over the in-memory limit go through NAME.part.
        let big = "/file/big.bin?size=1000000";
        symlink(&away.victim, s.out().join("big.bin.part")).unwrap();
        let url = origin.url(big);
        let out = s.out();
        let mut args = vec![url.as_str(), "-o", out.to_str().unwrap()];
        if overwrite {
            args.push("--overwrite");
        }
        let o = run(&args).await;
        assert_exit(&o, 0);
        away.assert_untouched();
        assert_plain_file(&s.out().join("big.bin"), &expected(big));
        assert_eq!(s.out_files(), vec!["big.bin"]);
    }
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_part_link_planted_before_a_resume_is_not_appended_to() {
    let origin = Origin::start(Config {
        latency: std::time::Duration::from_millis(50),
        ..Config::default()
    })
    .await
    .unwrap();
    let s = Scratch::new();
    let away = Elsewhere::new(&s);
    // A first run parks a partial (a dripping body, stopped by --max-time).
    let drip = "/drip/slow.bin?size=2000000&chunk=65536&delay_ms=50";
    let url = origin.url(drip);
    let out = s.out();
    let o = run(&[
        &url,
        "-o",
        out.to_str().unwrap(),
        "--max-time",
        "0.5",
        "--retries",
        "0",
    ])
    .await;
    assert_exit(&o, 1);
    let part = s.out().join("slow.bin.part");
    assert!(part.is_file(), "{}", stderr(&o));
    // Someone swaps the partial for a link to a file of theirs.
    std::fs::remove_file(&part).unwrap();
    symlink(&away.victim, &part).unwrap();
    let o = run(&[&url, "-o", out.to_str().unwrap()]).await;
    assert_exit(&o, 0);
    away.assert_untouched();
    assert_plain_file(&s.out().join("slow.bin"), &expected(drip));
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_directory_is_refused_with_a_message() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let away = Elsewhere::new(&s);
    symlink(&away.dir, s.out().join("sub")).unwrap();
    let small = "/file/small.bin?size=100";
    let big = "/file/big.bin?size=1000000";
    let list = s.list("urls.txt", &[origin.url(small), origin.url(big)]);
    let o = s.fetch(&list, &["--name", "sub/{name}"]).await;
    assert_exit(&o, 1);
    away.assert_untouched();
    let m = s.manifest("r.jsonl");
    assert_eq!(m.len(), 2);
    for line in &m {
        assert_eq!(line["status"], "failed", "{line}");
        let error = line["error"].as_str().unwrap();
        assert!(
            error.contains("\"sub\"") && error.contains("symbolic link"),
            "{error}"
        );
    }
    // Once the link is gone, a retry writes where the name said.
    std::fs::remove_file(s.out().join("sub")).unwrap();
    let o = s
        .fetch(&list, &["--name", "sub/{name}", "--retry-failed"])
        .await;
    assert_exit(&o, 0);
    assert_plain_file(&s.out().join("sub/small.bin"), &expected(small));
    assert_plain_file(&s.out().join("sub/big.bin"), &expected(big));
    away.assert_untouched();
    // A link deeper down is refused the same way.
    let s = Scratch::new();
    let away = Elsewhere::new(&s);
    std::fs::create_dir_all(s.out().join("a")).unwrap();
    symlink(&away.dir, s.out().join("a/b")).unwrap();
    let list = s.list("urls.txt", &[origin.url(small), origin.url(big)]);
    let o = s.fetch(&list, &["--name", "a/b/c/{name}"]).await;
    assert_exit(&o, 1);
    away.assert_untouched();
    let m = s.manifest("r.jsonl");
    assert!(
        m.iter()
            .all(|l| l["error"].as_str().unwrap().contains("\"a/b\"")),
        "{m:?}"
    );
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_name_link_is_kept_or_replaced_never_written_through() {
    let origin = Origin::start(Config::default()).await.unwrap();
    for size in [100, 1_000_000] {
        let s = Scratch::new();
        let away = Elsewhere::new(&s);
        let path = format!("/file/x.bin?size={size}");
        let link = s.out().join("x.bin");
        symlink(&away.victim, &link).unwrap();
        let url = origin.url(&path);
        let out = s.out();
        // Without --overwrite the name is taken: skipped.
        let o = run(&[&url, "-o", out.to_str().unwrap()]).await;
        assert_exit(&o, 0);
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        away.assert_untouched();
        // With it, the link itself is replaced.
        let o = run(&[&url, "-o", out.to_str().unwrap(), "--overwrite"]).await;
        assert_exit(&o, 0);
        away.assert_untouched();
        assert_plain_file(&link, &expected(&path));
    }
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_state_directory_is_refused() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let away = Elsewhere::new(&s);
    symlink(&away.dir, s.out().join(".haul")).unwrap();
    let url = origin.url("/file/a.bin");
    let out = s.out();
    let o = run(&[&url, "-o", out.to_str().unwrap()]).await;
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("symbolic link"), "{}", stderr(&o));
    away.assert_untouched();
    origin.stop().await;
}
