//! The test harness: run the binary, read what it left behind.

pub mod pg;
pub mod raw;
pub mod s3;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use tokio::process::Command;

/// A scratch directory with an `out/` inside it for haul to write to.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn out(&self) -> PathBuf {
        self.path("out")
    }

    /// Writes a URL list and returns its path.
    pub fn list(&self, name: &str, urls: &[String]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, urls.join("\n") + "\n").expect("write list");
        path
    }

    /// Every file under the scratch directory, relative, sorted.
    pub fn files(&self) -> Vec<String> {
        let mut found = Vec::new();
        walk(self.dir.path(), self.dir.path(), &mut found);
        found.sort();
        found
    }

    /// Every file under `out/`, relative to it, sorted, without haul's own
    /// `.haul/` job state.
    pub fn out_files(&self) -> Vec<String> {
        let mut found = Vec::new();
        walk(&self.out(), &self.out(), &mut found);
        found.retain(|f| !f.starts_with(".haul/"));
        found.sort();
        found
    }

    /// `haul -i INPUT -o out/ --report r.jsonl EXTRA…`, run to the end: the
    /// command most tests start from.
    pub async fn fetch(&self, input: &Path, extra: &[&str]) -> Output {
        self.command(input, extra).output().await.expect("run haul")
    }

    /// The same command as [`Scratch::fetch`], started and left running.
    pub fn spawn(&self, input: &Path, extra: &[&str]) -> tokio::process::Child {
        self.command(input, extra).spawn().expect("start haul")
    }

    fn command(&self, input: &Path, extra: &[&str]) -> Command {
        let (out, report) = (self.out(), self.path("r.jsonl"));
        let mut args = vec![
            "-i",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        haul(&args)
    }

    /// The manifest written with `--report`, as JSON values.
    pub fn manifest(&self, name: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.path(name))
            .expect("manifest")
            .lines()
            .map(|l| serde_json::from_str(l).expect("manifest line is JSON"))
            .collect()
    }
}

fn walk(root: &Path, dir: &Path, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(root, &p, found);
        } else {
            found.push(p.strip_prefix(root).unwrap().display().to_string());
        }
    }
}

/// The `haul` command, quiet progress, with the given arguments.
pub fn haul(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_haul"));
    if args
        .first()
        .is_some_and(|a| !a.starts_with('-') && !a.contains("://"))
    {
        // A subcommand comes first.
        cmd.args(args);
    } else {
        cmd.args(["--progress", "none"]).args(args);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs `haul` to the end.
pub async fn run(args: &[&str]) -> Output {
    haul(args).output().await.expect("run haul")
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts `haul` exited with `want`, showing its stderr if not.
#[track_caller]
pub fn assert_exit(o: &Output, want: i32) {
    assert_eq!(code(o), want, "exit status; stderr:\n{}", stderr(o));
}

/// Waits (polling, 20 s at most) until `ready` holds; panics saying
/// `what` did not happen otherwise.
pub async fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Sends `signal` (`-INT`, `-TERM`) to the process `pid`.
pub fn signal(pid: u32, signal: &str) {
    let sent = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {signal} {pid}");
}

/// Reads a downloaded file.
/// The records `haul status ARGS --report FILE` writes, one JSON value
/// per item; the report goes in `s`.
pub fn status_report(s: &Scratch, args: &[&str]) -> Vec<serde_json::Value> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let report = s.path(&format!("status-report-{n}.jsonl"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_haul"))
        .arg("status")
        .args(args)
        .arg("--report")
        .arg(&report)
        .output()
        .expect("run haul status");
    assert!(
        out.status.success(),
        "haul status {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    read(&report)
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("a JSON record"))
        .collect()
}

pub fn read(path: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}
