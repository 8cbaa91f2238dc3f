//! `haul-origin`: the test origin as a standalone server, for the benchmark.
//!
//! Arguments are parsed by hand: six flags do not justify clap in a crate
//! that CI builds for every test run. The request log is off, since a
//! benchmark run would grow it without bound. Exit codes: 0 after a clean
//! shutdown on SIGINT/SIGTERM, 1 if the server cannot start, 2 on bad usage.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use haul_origin::{Config, Origin};

const USAGE: &str =
    "usage: haul-origin [--port P] [--latency-ms N] [--error-rate F] [--reset-rate F] [--size N]";

#[tokio::main]
async fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(Some(config)) => config,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("haul-origin: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let origin = match Origin::start(config).await {
        Ok(origin) => origin,
        Err(e) => {
            eprintln!("haul-origin: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    println!("listening {}", origin.url(""));
    // The benchmark waits for this line on a pipe before it starts timing.
    let _ = std::io::stdout().flush();

    shutdown_signal().await;
    let stats = origin.stats();
    origin.stop().await;
    let mut statuses: Vec<_> = stats.responses_by_status.into_iter().collect();
    statuses.sort_unstable();
    eprintln!(
        "haul-origin: {} requests, max {} in flight, {} faults injected, {} body bytes sent, statuses {statuses:?}",
        stats.requests, stats.max_in_flight, stats.faults_injected, stats.bytes_sent
    );
    ExitCode::SUCCESS
}

/// `Ok(None)` means `--help`.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Config>, String> {
    let mut config = Config {
        log_requests: false,
        ..Config::default()
    };
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag} {value:?}: expected {what}");
        match flag.as_str() {
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
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(Some(config))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Config>, String> {
        parse_args(args.iter().map(|a| (*a).to_owned()))
    }

    #[test]
    fn flags() {
        let config = parse(&[
            "--port",
            "8080",
            "--latency-ms",
            "5",
            "--error-rate",
            "0.1",
            "--size",
            "7",
        ])
        .expect("valid")
        .expect("not help");
        assert_eq!(config.port, 8080);
        assert_eq!(config.latency, Duration::from_millis(5));
        assert_eq!(config.error_rate, 0.1);
        assert_eq!(config.default_size, 7);
        assert!(!config.log_requests);
        assert!(parse(&["--help"]).expect("valid").is_none());
    }

    #[test]
    fn bad_flags() {
        assert!(parse(&["--port"]).is_err());
        assert!(parse(&["--error-rate", "1.5"]).is_err());
        assert!(parse(&["--size", "-1"]).is_err());
        assert!(parse(&["--verbose", "1"]).is_err());
    }
}
