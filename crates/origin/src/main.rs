//! `haul-origin`: the test origin as a standalone server, for the benchmark,
//! and `haul-origin verify`, which checks a benchmark's downloads against the
//! bytes the origin serves.
//!
//! Arguments are parsed by hand: a few flags do not justify clap in a crate
//! that CI builds for every test run. The request log is off, since a
//! benchmark run would grow it without bound. Exit codes: 0 after a clean
//! shutdown on SIGINT/SIGTERM (or, for `verify`, when every file matches),
//! 1 if the server cannot start (or some file is missing or differs), 2 on
//! bad usage or an unreadable list.
//!
//! `--timeline FILE` samples the counters every 10 ms from the first request
//! on, so the benchmark can tell what happened when (429s after the first two
//! seconds, the mean in flight, when a host's last item was answered)
//! without a per-request log. Samples are kept in memory and written at
//! shutdown: no file I/O on the runtime while a client is being measured.

use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use haul_origin::{body_for, Config, Origin, Stats};

const USAGE: &str = "\
usage: haul-origin [--port P] [--latency-ms N] [--error-rate F] [--reset-rate F] [--size N]
                   [--max-in-flight K] [--throttle-retry-after S] [--latency-per-in-flight-ms N]
                   [--print-first-request] [--timeline FILE] [--static DIR]
       haul-origin verify [--size N] DIR LIST
  --static: serve DIR's files under /static/ (the Python package's tests).
  --timeline: every 10 ms from the first request on, and once at shutdown, one
  `UNIX_TIME REQUESTS IN_FLIGHT CODE:COUNT...` line (counts since the start),
  written to FILE at shutdown.
  verify: LIST has one `PATH_AND_QUERY<TAB>FILENAME` line per download; each
  DIR/FILENAME must equal the body a fresh origin serves for PATH_AND_QUERY
  (size from ?size=, else --size, default 10240). Prints the counts; exits 1
  if any file is missing or differs.";

/// How often `--print-first-request` looks at the request counter.
const FIRST_REQUEST_POLL: Duration = Duration::from_millis(1);

/// How often `--timeline` samples the counters.
const TIMELINE_TICK: Duration = Duration::from_millis(10);

/// Body size when a path has no `?size=` (the origin's own default).
const DEFAULT_SIZE: usize = 10240;

/// At most this many differing or missing names are printed by `verify`.
const VERIFY_SHOWN: usize = 10;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("verify") {
        args.next();
        return verify_main(args);
    }
    let options = match parse_args(args) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("haul-origin: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(serve(options)),
        Err(e) => {
            eprintln!("haul-origin: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}

/// What the server command line asks for.
#[derive(Debug)]
struct Options {
    config: Config,
    /// Print the wall-clock time of the first request to stderr, so the
    /// benchmark can measure a client's time to first request.
    print_first_request: bool,
    /// Where `--timeline` writes its samples.
    timeline: Option<PathBuf>,
}

async fn serve(options: Options) -> ExitCode {
    // Created before the server starts, so a bad path fails at once.
    let timeline_file = match &options.timeline {
        None => None,
        Some(path) => match std::fs::File::create(path) {
            Ok(file) => Some(file),
            Err(e) => {
                let path = path.display();
                eprintln!("haul-origin: cannot create the timeline file {path}: {e}");
                return ExitCode::from(1);
            }
        },
    };
    let origin = match Origin::start(options.config).await {
        Ok(origin) => origin,
        Err(e) => {
            eprintln!("haul-origin: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    println!("listening {}", origin.url(""));
    // The benchmark waits for this line before it starts timing.
    let _ = std::io::stdout().flush();

    let origin = std::sync::Arc::new(origin);
    let watcher = options.print_first_request.then(|| {
        let origin = std::sync::Arc::clone(&origin);
        // The library has no hook on arrival, so poll its counter: a 1 ms tick
        // costs nothing measurable and bounds the error at 1 ms.
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FIRST_REQUEST_POLL);
            loop {
                tick.tick().await;
                if origin.stats().requests > 0 {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default();
                    eprintln!("haul-origin: first request at {:.6}", now.as_secs_f64());
                    return;
                }
            }
        })
    });

    let (stop_sampling, sampling_stopped) = tokio::sync::watch::channel(false);
    let sampler = timeline_file.map(|file| {
        let origin = std::sync::Arc::clone(&origin);
        tokio::spawn(sample_timeline(origin, sampling_stopped, file))
    });

    shutdown_signal().await;
    if let Some(watcher) = watcher {
        watcher.abort();
        let _ = watcher.await;
    }
    stop_sampling.send_replace(true);
    if let Some(sampler) = sampler {
        if let Ok((mut file, lines)) = sampler.await {
            if let Err(e) = file.write_all(lines.as_bytes()) {
                eprintln!("haul-origin: cannot write the timeline: {e}");
            }
        }
    }
    let stats = origin.stats();
    match std::sync::Arc::try_unwrap(origin) {
        Ok(origin) => origin.stop().await,
        // Unreachable once the watcher is gone; dropping aborts the server anyway.
        Err(origin) => drop(origin),
    }
    let mut statuses: Vec<_> = stats.responses_by_status.into_iter().collect();
    statuses.sort_unstable();
    eprintln!(
        "haul-origin: {} requests, max {} in flight, {} faults injected, {} body bytes sent, statuses {statuses:?}",
        stats.requests, stats.max_in_flight, stats.faults_injected, stats.bytes_sent
    );
    ExitCode::SUCCESS
}

/// `--timeline`: one line per tick once the first request has arrived, and
/// a last one when `stopped` changes; returns the file and the lines.
async fn sample_timeline(
    origin: std::sync::Arc<Origin>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
    file: std::fs::File,
) -> (std::fs::File, String) {
    let mut lines = String::new();
    let mut tick = tokio::time::interval(TIMELINE_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = stopped.changed() => true,
        };
        let stats = origin.stats();
        if stats.requests > 0 || last {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            timeline_line(&mut lines, now.as_secs_f64(), &stats);
        }
        if last {
            return (file, lines);
        }
    }
}

/// `UNIX_TIME REQUESTS IN_FLIGHT CODE:COUNT...`, statuses in code order.
fn timeline_line(out: &mut String, at: f64, stats: &Stats) {
    let mut statuses: Vec<_> = stats.responses_by_status.iter().collect();
    statuses.sort_unstable();
    // Writing to a String cannot fail.
    let _ = write!(out, "{at:.6} {} {}", stats.requests, stats.in_flight);
    for (code, count) in statuses {
        let _ = write!(out, " {code}:{count}");
    }
    out.push('\n');
}

/// `Ok(None)` means `--help`.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        config: Config {
            log_requests: false,
            ..Config::default()
        },
        print_first_request: false,
        timeline: None,
    };
    let config = &mut options.config;
    while let Some(flag) = args.next() {
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--print-first-request" => {
                options.print_first_request = true;
                continue;
            }
            _ => {}
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag} {value:?}: expected {what}");
        match flag.as_str() {
            "--timeline" => options.timeline = Some(PathBuf::from(value)),
            "--static" => config.static_root = Some(PathBuf::from(value)),
            "--port" => config.port = value.parse().map_err(|_| bad("a port number"))?,
            "--latency-ms" => {
                config.latency =
                    Duration::from_millis(value.parse().map_err(|_| bad("milliseconds"))?);
            }
            "--error-rate" => {
                config.error_rate = rate(&value).ok_or_else(|| bad("a number from 0 to 1"))?
            }
            "--reset-rate" => {
                config.reset_rate = rate(&value).ok_or_else(|| bad("a number from 0 to 1"))?
            }
            "--size" => config.default_size = value.parse().map_err(|_| bad("a size in bytes"))?,
            "--max-in-flight" => {
                config.max_in_flight = Some(value.parse().map_err(|_| bad("a count"))?);
            }
            "--throttle-retry-after" => {
                config.throttle_retry_after = value.parse().map_err(|_| bad("seconds"))?;
            }
            "--latency-per-in-flight-ms" => {
                config.latency_per_in_flight =
                    Duration::from_millis(value.parse().map_err(|_| bad("milliseconds"))?);
            }
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(Some(options))
}

fn rate(value: &str) -> Option<f64> {
    value.parse().ok().filter(|r: &f64| (0.0..=1.0).contains(r))
}

/// Wait for SIGINT or SIGTERM (the benchmark stops the server with the latter).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    // Without a SIGTERM handler, Ctrl-C still works.
    let _ = tokio::signal::ctrl_c().await;
}

/// What `verify` found.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    ok: u64,
    differ: u64,
    missing: u64,
    shown: Vec<String>,
}

impl Tally {
    fn total(&self) -> u64 {
        self.ok + self.differ + self.missing
    }

    fn note(&mut self, what: String) {
        if self.shown.len() < VERIFY_SHOWN {
            self.shown.push(what);
        }
    }
}

/// `haul-origin verify [--size N] DIR LIST`.
fn verify_main(args: impl Iterator<Item = String>) -> ExitCode {
    let (size, dir, list) = match parse_verify_args(args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("haul-origin verify: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let file = match std::fs::File::open(&list) {
        Ok(file) => file,
        Err(e) => {
            eprintln!("haul-origin verify: cannot open list {list}: {e}");
            return ExitCode::from(2);
        }
    };
    let tally = match verify(Path::new(&dir), std::io::BufReader::new(file), size) {
        Ok(tally) => tally,
        Err(message) => {
            eprintln!("haul-origin verify: {list}: {message}");
            return ExitCode::from(2);
        }
    };
    for what in &tally.shown {
        eprintln!("haul-origin verify: {what}");
    }
    println!(
        "verified {}/{} differ {} missing {}",
        tally.ok,
        tally.total(),
        tally.differ,
        tally.missing
    );
    if tally.ok == tally.total() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn parse_verify_args(
    mut args: impl Iterator<Item = String>,
) -> Result<(usize, String, String), String> {
    let mut size = DEFAULT_SIZE;
    let mut positional = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--size" {
            let value = args.next().ok_or("--size needs a value")?;
            size = value
                .parse()
                .map_err(|_| format!("--size {value:?}: expected a size in bytes"))?;
        } else {
            positional.push(arg);
        }
    }
    match <[String; 2]>::try_from(positional) {
        Ok([dir, list]) => Ok((size, dir, list)),
        Err(_) => Err("expected DIR and LIST".to_owned()),
    }
}

/// Check every `PATH_AND_QUERY<TAB>FILENAME` line of `list` against `dir`.
/// Blank lines are skipped; a line without a tab is an error (a broken list
/// must not pass as "nothing to check").
fn verify(dir: &Path, list: impl BufRead, default_size: usize) -> Result<Tally, String> {
    let mut tally = Tally::default();
    for (index, line) in list.lines().enumerate() {
        let line = line.map_err(|e| format!("line {}: {e}", index + 1))?;
        if line.is_empty() {
            continue;
        }
        let Some((path_and_query, name)) = line.split_once('\t') else {
            return Err(format!("line {}: no tab in {line:?}", index + 1));
        };
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let size = size_in(query)
            .ok_or_else(|| format!("line {}: bad ?size= in {path_and_query:?}", index + 1))?
            .unwrap_or(default_size);
        match std::fs::read(dir.join(name)) {
            Ok(got) if got == body_for(path, 0, size) => tally.ok += 1,
            Ok(got) => {
                tally.differ += 1;
                tally.note(format!(
                    "{name}: differs from {path_and_query} ({} bytes, expected {size})",
                    got.len()
                ));
            }
            Err(e) => {
                tally.missing += 1;
                tally.note(format!("{name}: {e}"));
            }
        }
    }
    Ok(tally)
}

/// `?size=` of a query: `Some(None)` when absent, `None` when not a number.
fn size_in(query: &str) -> Option<Option<usize>> {
    let Some(raw) = query.split('&').find_map(|pair| pair.strip_prefix("size=")) else {
        return Some(None);
    };
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    raw.parse().ok().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Options>, String> {
        parse_args(args.iter().map(|a| (*a).to_owned()))
    }

    #[test]
    fn flags() {
        let options = parse(&[
            "--port",
            "8080",
            "--latency-ms",
            "5",
            "--print-first-request",
            "--error-rate",
            "0.1",
            "--size",
            "7",
        ])
        .expect("valid")
        .expect("not help");
        let config = &options.config;
        assert_eq!(config.port, 8080);
        assert_eq!(config.latency, Duration::from_millis(5));
        assert_eq!(config.error_rate, 0.1);
        assert_eq!(config.default_size, 7);
        assert!(!config.log_requests);
        assert!(options.print_first_request);
        assert!(options.timeline.is_none());
        assert!(parse(&["--help"]).expect("valid").is_none());
        let options = parse(&["--timeline", "t.txt"])
            .expect("valid")
            .expect("not help");
        assert_eq!(options.timeline, Some(PathBuf::from("t.txt")));
        assert!(parse(&["--timeline"]).is_err());
    }

    #[test]
    fn timeline_lines() {
        let mut stats = Stats {
            requests: 7,
            in_flight: 3,
            ..Stats::default()
        };
        stats.responses_by_status.insert(429, 2);
        stats.responses_by_status.insert(200, 4);
        let mut out = String::new();
        timeline_line(&mut out, 1.5, &stats);
        timeline_line(&mut out, 2.0, &Stats::default());
        assert_eq!(out, "1.500000 7 3 200:4 429:2\n2.000000 0 0\n");
    }

    #[test]
    fn bad_flags() {
        assert!(parse(&["--port"]).is_err());
        assert!(parse(&["--error-rate", "1.5"]).is_err());
        assert!(parse(&["--size", "-1"]).is_err());
        assert!(parse(&["--verbose", "1"]).is_err());
    }

    #[test]
    fn verify_args() {
        let parse = |args: &[&str]| parse_verify_args(args.iter().map(|a| (*a).to_owned()));
        assert_eq!(
            parse(&["d", "l"]),
            Ok((DEFAULT_SIZE, "d".to_owned(), "l".to_owned()))
        );
        assert_eq!(
            parse(&["--size", "64", "d", "l"]),
            Ok((64, "d".to_owned(), "l".to_owned()))
        );
        assert!(parse(&["d"]).is_err());
        assert!(parse(&["d", "l", "x"]).is_err());
        assert!(parse(&["--size", "x", "d", "l"]).is_err());
    }

    #[test]
    fn size_from_query() {
        assert_eq!(size_in(""), Some(None));
        assert_eq!(size_in("size=12"), Some(Some(12)));
        assert_eq!(size_in("a=1&size=3"), Some(Some(3)));
        assert_eq!(size_in("size=+3"), None);
        assert_eq!(size_in("size="), None);
    }

    #[test]
    fn verify_counts_ok_differ_and_missing() {
        let dir = std::env::temp_dir().join(format!("haul-origin-verify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("a"), body_for("/file/a", 0, 100)).expect("write");
        std::fs::write(dir.join("b"), body_for("/file/b", 0, DEFAULT_SIZE)).expect("write");
        std::fs::write(dir.join("c"), body_for("/file/c", 0, 99)).expect("write");
        std::fs::write(dir.join("d"), body_for("/file/d", 0, 7)).expect("write");
        let list =
            "/file/a?size=100\ta\n/file/b\tb\n\n/file/c?size=100\tc\n/file/x\tx\n/file/d\td\n";
        let tally = verify(&dir, list.as_bytes(), 7).expect("valid list");
        // b has no ?size=, so the default (7 here) applies and its 10240 bytes differ.
        assert_eq!((tally.ok, tally.differ, tally.missing), (2, 2, 1));
        assert_eq!(tally.shown.len(), 3);
        assert!(verify(&dir, "no tab\n".as_bytes(), 7).is_err());
        assert!(verify(&dir, "/file/a?size=z\ta\n".as_bytes(), 7).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
