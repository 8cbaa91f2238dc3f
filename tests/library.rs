//! haul as a library: `haul::run` with a reporter of the caller's own,
//! against the test origin.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use haul::{InputSpec, Level, Outcome, Reporter, Snapshot, Status, Summary};
use haul_origin::{expected, Config, Origin};
use tokio_util::sync::CancellationToken;

use crate::util::Scratch;

/// Keeps everything it hears.
#[derive(Default)]
struct Heard {
    outcomes: Mutex<Vec<Outcome>>,
    snapshots: AtomicU64,
    last: Mutex<Option<Snapshot>>,
    messages: Mutex<Vec<(Level, String)>>,
    summary: Mutex<Option<Summary>>,
}

struct Collect(Arc<Heard>);

impl Reporter for Collect {
    fn on_outcome(&self, outcome: &Outcome) {
        self.0.outcomes.lock().unwrap().push(outcome.clone());
    }

    fn on_progress(&self, snapshot: &Snapshot) {
        self.0.snapshots.fetch_add(1, Relaxed);
        *self.0.last.lock().unwrap() = Some(snapshot.clone());
    }

    fn on_message(&self, level: Level, text: &str) {
        self.0
            .messages
            .lock()
            .unwrap()
            .push((level, text.to_string()));
    }

    fn on_finish(&self, summary: &Summary) {
        *self.0.summary.lock().unwrap() = Some(summary.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reports_every_outcome_to_the_callers_reporter() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let mut urls: Vec<String> = (0..20)
        .map(|i| origin.url(&format!("/file/f{i}.bin?size={}", 1000 + i)))
        .collect();
    urls.push(origin.url("/status/404/gone.bin"));
    urls.push("not a url".to_string());
    let list = s.list("urls.txt", &urls);
    let heard = Arc::new(Heard::default());
    let config = haul::Config::new(vec![InputSpec::File(list)], s.out())
        .hash(true)
        .with_reporter(Collect(heard.clone()));
    let finished = haul::run(config, CancellationToken::new()).await.unwrap();

    let outcomes = heard.outcomes.lock().unwrap().clone();
    assert_eq!(outcomes.len(), 22, "one outcome per input line");
    for i in 0..20 {
        let path = format!("/file/f{i}.bin?size={}", 1000 + i);
        let o = outcomes
            .iter()
            .find(|o| o.url.ends_with(&path))
            .unwrap_or_else(|| panic!("{path}: no outcome"));
        assert_eq!(o.status, Status::Ok, "{o:?}");
        assert_eq!(o.path.as_deref(), Some(format!("f{i}.bin").as_str()));
        assert_eq!(o.bytes, 1000 + i as u64);
        let body = expected(&path);
        assert_eq!(
            std::fs::read(s.out().join(format!("f{i}.bin"))).unwrap(),
            body
        );
        assert_eq!(o.sha256.as_ref().map(String::len), Some(64));
    }
    let gone = outcomes
        .iter()
        .find(|o| o.url.ends_with("gone.bin"))
        .unwrap();
    assert_eq!((gone.status, gone.http_status), (Status::Failed, Some(404)));
    let bad = outcomes.iter().find(|o| o.url == "not a url").unwrap();
    assert_eq!(bad.status, Status::Failed);
    assert_eq!(bad.line, 22);

    // Counters, messages and the end.
    assert!(heard.snapshots.load(Relaxed) >= 1);
    let last = heard.last.lock().unwrap().clone().unwrap();
    assert_eq!((last.ok, last.failed, last.seen), (20, 2, 22));
    assert!(last.input_done);
    let messages = heard.messages.lock().unwrap().clone();
    assert!(
        messages
            .iter()
            .any(|(l, m)| *l == Level::Warning && m.contains("urls.txt:22: not a URL")),
        "{messages:?}"
    );
    let summary = heard.summary.lock().unwrap().clone().unwrap();
    assert_eq!(
        (summary.tally.ok, summary.tally.failed, summary.tally.bad),
        (20, 1, 1)
    );
    assert!(!summary.interrupted);
    assert_eq!(finished.tally, summary.tally);
    origin.stop().await;
}

/// Keeps the per-host windows of every snapshot.
#[derive(Default)]
struct Windows(Mutex<Vec<(u64, Vec<haul::HostWindow>)>>);

impl Reporter for Windows {
    fn on_progress(&self, snapshot: &Snapshot) {
        self.0
            .lock()
            .unwrap()
            .push((snapshot.hosts_active, snapshot.hosts.clone()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_show_each_hosts_window_as_it_finds_the_hosts_capacity() {
    // A host that takes 3 in flight: its window starts above that and has
    // to come down to it, which the snapshots show.
    let origin = Origin::start(Config {
        latency: std::time::Duration::from_millis(30),
        max_in_flight: Some(3),
        throttle_retry_after: 0,
        ..Config::default()
    })
    .await
    .unwrap();
    let s = Scratch::new();
    let urls: Vec<String> = (0..60)
        .map(|i| origin.url(&format!("/file/w{i}.bin?size=512")))
        .collect();
    let list = s.list("urls.txt", &urls);
    let windows = Arc::new(Windows::default());
    let config = haul::Config::new(vec![InputSpec::File(list)], s.out())
        .jobs(32)
        .with_reporter(SharedWindows(windows.clone()));
    let finished = haul::run(config, CancellationToken::new()).await.unwrap();
    assert_eq!(finished.tally.ok, 60);
    let seen = windows.0.lock().unwrap().clone();
    let host = format!("127.0.0.1:{}", origin.port());
    let busy: Vec<&haul::HostWindow> = seen
        .iter()
        .filter(|(active, _)| *active == 1)
        .flat_map(|(_, hosts)| hosts.iter())
        .filter(|h| h.in_flight > 0)
        .collect();
    assert!(
        !busy.is_empty(),
        "no snapshot showed the host busy: {seen:?}"
    );
    assert!(busy.iter().all(|h| h.host == host), "{busy:?}");
    assert!(
        busy.iter().any(|h| h.window <= 4),
        "the window never came down to the host's capacity: {busy:?}"
    );
    // Once the job is over, no host is active.
    assert_eq!(seen.last().map(|(a, _)| *a), Some(0), "{seen:?}");
    origin.stop().await;
}

struct SharedWindows(Arc<Windows>);

impl Reporter for SharedWindows {
    fn on_progress(&self, snapshot: &Snapshot) {
        self.0.on_progress(snapshot)
    }
}
