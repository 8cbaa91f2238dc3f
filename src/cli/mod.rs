//! The `haul` command as a function of its arguments: parse the command
//! line (clap, in `cli/args.rs`), run the job, map the outcome to an exit
//! status. The `haul` binary and the Python package's `haul` command both
//! call `main`; it uses the library only through its public surface.

use std::ffi::OsString;

use clap::Parser;
use tokio::signal::unix::SignalKind;
use tokio_util::sync::CancellationToken;

mod args;

const SUCCESS: u8 = 0;

/// Runs the `haul` command with `args` (the program name first, as in
/// [`std::env::args_os`]) and returns its exit status: 0 every item done or
/// skipped, 1 some failed (or the disk filled), 2 bad usage or unreadable
/// input, 130 interrupted. Ctrl-C and SIGTERM stop the job as the command
/// does: transfers in flight are parked, the reports written. `--help`,
/// `--version` and a usage error print and exit the process, as clap does.
pub fn main(args: impl IntoIterator<Item = OsString>) -> u8 {
    // wget's `-nc` is one option with two letters, which clap would read as
    // `-n -c`.
    let args = args
        .into_iter()
        .map(|a| if a == "-nc" { "--no-clobber".into() } else { a });
    let cli = args::Cli::parse_from(args);
    let result = match cli.command {
        Some(args::Command::Status(args)) => status(args),
        Some(args::Command::Completions { shell }) => {
            use clap::CommandFactory;
            let mut cmd = args::Cli::command();
            clap_complete::generate(shell, &mut cmd, "haul", &mut std::io::stdout());
            Ok(SUCCESS)
        }
        Some(args::Command::Man) => {
            use clap::CommandFactory;
            clap_mangen::Man::new(args::Cli::command())
                .render(&mut std::io::stdout())
                .map(|()| SUCCESS)
                .map_err(anyhow::Error::from)
        }
        Some(args::Command::Crawl(args)) => args
            .into_config()
            .map_err(anyhow::Error::from)
            .and_then(download),
        Some(args::Command::Submit(args)) => submit(*args),
        Some(args::Command::Worker(args)) => {
            let lease = args.lease;
            args.into_config_for(true)
                .map_err(anyhow::Error::from)
                .and_then(|c| {
                    if !(lease.is_finite() && lease >= 1.0) {
                        anyhow::bail!("bad --lease {lease}: expected seconds, 1 or more");
                    }
                    download(c.worker(std::time::Duration::from_secs_f64(lease)))
                })
        }
        None => args::unknown_command(&cli.args)
            .map_or(Ok(()), Err)
            .and_then(|()| cli.args.into_config())
            .map_err(anyhow::Error::from)
            .and_then(download),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("haul: error: {}", chain(&e));
            2
        }
    }
}

/// An error and its causes, each said once: a message that already quotes
/// its cause (`cannot read x: No such file…`) is not followed by it again.
fn chain(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn status(args: args::StatusArgs) -> anyhow::Result<u8> {
    let text = match (&args.state, &args.job) {
        (Some(url), Some(job)) => {
            crate::status::run_shared(url, job, args.json, &args.report, &args.failed)?
        }
        _ => {
            // `haul status s3://bucket/prefix/` reads the local state of
            // that output.
            let dir = match &args.state {
                Some(d) if !d.contains("://") => d.into(),
                _ => crate::config::Config::new(vec![], args.dir.clone()).output,
            };
            crate::status::run(&dir, args.json, &args.report, &args.failed)?
        }
    };
    print!("{text}");
    Ok(SUCCESS)
}

/// `haul submit`: the input planned into the shared job, then what the
/// job holds now.
fn submit(args: args::Args) -> anyhow::Result<u8> {
    let (url, job) = match (&args.state, &args.job) {
        (Some(u), Some(j)) => (u.clone(), j.clone()),
        _ => anyhow::bail!("haul submit needs --state postgres://… (or HAUL_STATE) and --job NAME"),
    };
    let quiet = args.quiet;
    let config = args
        .into_config()?
        .submit_only(true)
        .progress(crate::ProgressMode::None);
    let code = download(config)?;
    if !quiet {
        eprint!(
            "{}",
            crate::status::run_shared(&url, &job, false, &None, &None)?
        );
    }
    Ok(code)
}

/// Runtime threads: one CPU is left to the disk threads, the ledger and,
/// often, the server on the same machine. On 2 cores, 10,000 × 10 KiB from
/// a local nginx took 8% less CPU with one runtime thread than with two, and
/// 8 × 256 MiB was no slower.
fn workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .max(1)
}

/// Waits for Ctrl-C or SIGTERM; says which.
async fn signalled(term: &mut Option<tokio::signal::unix::Signal>) -> &'static str {
    let term = async {
        match term {
            Some(t) => t.recv().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        _ = term => "terminated",
    }
}

fn download(config: crate::Config) -> anyhow::Result<u8> {
    if config.is_insecure() && !config.is_quiet() {
        eprintln!(
            "haul: warning: --insecure: TLS certificates are not checked; anyone on the \
             path can read and change what is downloaded"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("haul-worker")
        .worker_threads(workers())
        .build()?;
    let finished = runtime.block_on(async {
        let stop = CancellationToken::new();
        let on_signal = stop.clone();
        // SIGTERM (systemd, Docker, Kubernetes) is handled like Ctrl-C:
        // transfers in flight are parked, the reports and the summary are
        // written. A second signal quits at once.
        let mut term = tokio::signal::unix::signal(SignalKind::terminate()).ok();
        tokio::spawn(async move {
            let how = signalled(&mut term).await;
            eprintln!("\nhaul: {how}; stopping (Ctrl-C again to quit at once)");
            on_signal.cancel();
            signalled(&mut term).await;
            std::process::exit(130);
        });
        crate::run(config, stop).await
    })?;
    // Transfers parked by Ctrl-C are done with; don't wait on them.
    runtime.shutdown_background();
    Ok(if finished.interrupted {
        130
    } else if finished.tally.failed + finished.tally.bad > 0 || finished.no_space.is_some() {
        1
    } else {
        SUCCESS
    })
}
