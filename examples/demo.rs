//! `cargo run --release --example demo [DIR]`: haul's main job on a fresh
//! clone with nothing prepared.
//!
//! Serves the flags fixture (194 country flags with a metadata document
//! each, `tests/fixtures/flags`) on 127.0.0.1, writes a URL list for it, and
//! runs the same job as
//!
//! ```text
//! haul -i LIST -o DIR --report DIR.jsonl --meta-url '…/{path}/metadata.json' \
//!      --name '{stem|upper}-{meta.country|replace(" ","_")}.{ext}'
//! ```
//!
//! so the files arrive named after their countries (`CN-China.gif`). Run it
//! twice: the second run finds the job done and fetches nothing.

use std::process::ExitCode;

use haul::InputSpec;
use haul_origin::{Config, Origin};
use tokio_util::sync::CancellationToken;

/// The demo server's port, when it is free.
const DEMO_PORT: u16 = 47_811;

fn main() -> ExitCode {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "demo-downloads".into());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(demo(&out))
}

async fn demo(out: &str) -> ExitCode {
    let flags = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flags");
    // A fixed port keeps the URLs the same from run to run, so a second run
    // is a re-run of the same job (any free port if it is taken).
    let config = |port| Config {
        static_root: Some(flags.clone()),
        port,
        ..Config::default()
    };
    let origin = match Origin::start(config(DEMO_PORT)).await {
        Ok(o) => Ok(o),
        Err(_) => Origin::start(config(0)).await,
    };
    let origin = match origin {
        Ok(o) => o,
        Err(e) => {
            eprintln!("demo: cannot serve on 127.0.0.1: {e}");
            return ExitCode::from(2);
        }
    };
    let mut codes: Vec<String> = std::fs::read_dir(&flags)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    codes.sort();
    let list = std::env::temp_dir().join(format!("haul-demo-{}.txt", std::process::id()));
    let urls: String = codes
        .iter()
        .map(|cc| format!("{}\n", origin.url(&format!("/static/{cc}/{cc}.gif"))))
        .collect();
    if let Err(e) = std::fs::write(&list, urls) {
        eprintln!("demo: cannot write {}: {e}", list.display());
        return ExitCode::from(2);
    }
    let report = format!("{out}.jsonl");
    let meta = origin.url("/{path}/metadata.json");
    let args = [
        "haul",
        "-i",
        list.to_str().unwrap_or_default(),
        "-o",
        out,
        "--report",
        &report,
        "--meta-url",
        &meta,
        "--name",
        r#"{stem|upper}-{meta.country|replace(" ","_")}.{ext}"#,
    ];
    eprintln!(
        "demo: {} flags from a local server on {}, named from their metadata:\n  {}\n",
        codes.len(),
        origin.url(""),
        args.join(" ")
    );
    // The same job through the library's builder.
    let config = haul::Config::new(vec![InputSpec::File(list.clone())], out)
        .report(Some(report.clone().into()))
        .meta_url(&meta)
        .and_then(|c| c.name_template(args[10]));
    let result = match config {
        Ok(config) => haul::run(config, CancellationToken::new()).await,
        Err(e) => {
            eprintln!("demo: {e}");
            return ExitCode::from(2);
        }
    };
    let _ = std::fs::remove_file(&list);
    origin.stop().await;
    match result {
        Ok(finished) => {
            eprintln!(
                "\ndemo: the files are in {out}/ (e.g. {out}/CN-China.gif), one manifest line \
                 per flag in {report}.\nRun it again: the job is done, nothing is fetched.\n\
                 Your own list: cargo run --release -- -i urls.txt -o downloads --failed failed.txt"
            );
            if finished.tally.failed > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::from(2)
        }
    }
}
