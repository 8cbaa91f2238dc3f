//! Embedding haul: `cargo run --example embed -- URL... -o DIR`.
//!
//! Runs a download job through the library with a reporter of its own,
//! which prints one line per finished item and a total at the end, instead
//! of the `haul` command's progress bars.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use haul::{InputSpec, Level, Outcome, Reporter, Status, Summary};
use tokio_util::sync::CancellationToken;

/// Prints each outcome as it comes.
#[derive(Default)]
struct Lines {
    saved: AtomicU64,
}

impl Reporter for Lines {
    fn on_outcome(&self, o: &Outcome) {
        match o.status {
            Status::Ok => {
                self.saved.fetch_add(o.bytes, Relaxed);
                println!(
                    "saved   {} ({} bytes)",
                    o.path.as_deref().unwrap_or("?"),
                    o.bytes
                );
            }
            Status::Skipped => println!("skipped {}", o.url),
            Status::Failed => println!("failed  {}: {}", o.url, o.error.as_deref().unwrap_or("?")),
        }
    }

    fn on_message(&self, level: Level, text: &str) {
        eprintln!("{level:?}: {text}");
    }

    fn on_finish(&self, s: &Summary) {
        println!(
            "{} done, {} failed, {} bytes saved in {:.2} s",
            s.tally.ok,
            s.tally.failed + s.tally.bad,
            self.saved.load(Relaxed),
            s.elapsed.as_secs_f64()
        );
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let out = match args.iter().position(|a| a == "-o") {
        Some(i) if i + 1 < args.len() => {
            let dir = args.remove(i + 1);
            args.remove(i);
            dir
        }
        _ => "embed-downloads".to_string(),
    };
    if args.is_empty() {
        eprintln!("usage: embed URL... [-o DIR]");
        return ExitCode::from(2);
    }
    let config =
        haul::Config::new(vec![InputSpec::Args(args)], out).with_reporter(Lines::default());
    match haul::run(config, CancellationToken::new()).await {
        Ok(f) if f.tally.failed + f.tally.bad == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("embed: {e}");
            ExitCode::from(2)
        }
    }
}
