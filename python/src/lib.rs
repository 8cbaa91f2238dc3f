//! `haul._haul`: the native half of the Python package. It builds a
//! [`haul::Config`] from the keyword arguments the Python layer passes on,
//! runs the job on a thread of its own with its own runtime, and lets the
//! Python side wait for it in short slices, so that Ctrl-C raises
//! `KeyboardInterrupt` in the caller's thread between two slices (the
//! Python layer then cancels the job, which parks its transfers exactly as
//! the command does). The GIL is released while waiting and never taken by
//! the job: progress and messages are collected here and read by Python.
//!
//! It also runs the `haul` command itself (`cli`), so the wheel's `haul`
//! script is the same program as the binary.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use tokio_util::sync::CancellationToken;

/// Raises the Python exception class `name` of `haul._errors` with
/// `message`.
fn error(py: Python<'_>, name: &str, message: String) -> PyErr {
    match py
        .import("haul._errors")
        .and_then(|m| m.getattr(name))
        .and_then(|class| class.call1((message.clone(),)))
    {
        Ok(value) => PyErr::from_value(value),
        Err(_) => PyRuntimeError::new_err(message),
    }
}

fn config_error(py: Python<'_>, e: impl std::fmt::Display) -> PyErr {
    error(py, "ConfigError", e.to_string())
}

/// The error class a job's failure is raised as.
fn job_error_class(e: &haul::JobError) -> &'static str {
    match e {
        haul::JobError::Source(_) => "InputError",
        haul::JobError::Config(_) | haul::JobError::Clobber { .. } => "ConfigError",
        _ => "HaulError",
    }
}

/// What the job's reporter collects for Python to read.
#[derive(Default)]
struct Heard {
    snapshot: Mutex<haul::Snapshot>,
    messages: Mutex<Vec<(&'static str, String)>>,
}

struct Collect(Arc<Heard>);

impl haul::Reporter for Collect {
    fn on_progress(&self, snapshot: &haul::Snapshot) {
        *self
            .0
            .snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = snapshot.clone();
    }

    fn on_message(&self, level: haul::Level, text: &str) {
        let level = match level {
            haul::Level::Warning => "warning",
            _ => "note",
        };
        self.0
            .messages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((level, text.to_string()));
    }
}

enum Phase {
    Ready(Box<haul::Config>),
    Running,
    Done(Result<haul::Finished, (&'static str, String)>),
    Taken,
}

struct State {
    phase: Mutex<Phase>,
    done: Condvar,
}

impl State {
    fn lock(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One job: built from keyword arguments, started, waited for.
#[pyclass(module = "haul._haul")]
struct Job {
    state: Arc<State>,
    heard: Arc<Heard>,
    stop: CancellationToken,
}

/// Reads an optional keyword argument.
fn opt<'py, T: pyo3::conversion::FromPyObjectOwned<'py>>(
    spec: &Bound<'py, PyDict>,
    key: &str,
) -> PyResult<Option<T>> {
    match spec.get_item(key)? {
        Some(v) if !v.is_none() => v.extract::<T>().map(Some).map_err(|e| {
            let e: PyErr = e.into();
            config_error(spec.py(), format!("{key}: {}", e.value(spec.py())))
        }),
        _ => Ok(None),
    }
}

fn secs(v: f64) -> Duration {
    Duration::from_secs_f64(v.max(0.0))
}

fn build(spec: &Bound<'_, PyDict>) -> PyResult<haul::Config> {
    let py = spec.py();
    let bad = |e: haul::ConfigError| config_error(py, e);
    let mut inputs = Vec::new();
    if let Some(urls) = opt::<Vec<String>>(spec, "urls")? {
        inputs.push(haul::InputSpec::Args(urls));
    }
    if let Some(files) = opt::<Vec<PathBuf>>(spec, "files")? {
        inputs.extend(files.into_iter().map(haul::InputSpec::File));
    }
    let out: PathBuf = opt(spec, "out")?.ok_or_else(|| config_error(py, "out: required"))?;
    let mut c = haul::Config::new(inputs, out).progress(haul::ProgressMode::None);
    if let Some(dir) = opt::<PathBuf>(spec, "state_dir")? {
        c = c.state_dir(dir).map_err(bad)?;
    }
    let mut store_options: Vec<(String, String)> =
        opt::<std::collections::HashMap<String, String>>(spec, "store_options")?
            .unwrap_or_default()
            .into_iter()
            .collect();
    // In a fixed order: a later option may override an earlier one.
    store_options.sort();
    for (k, v) in store_options {
        c = c.store_option(&k, &v).map_err(bad)?;
    }
    if let Some(n) = opt::<usize>(spec, "jobs")? {
        c = c.jobs(n);
    }
    if let Some(n) = opt::<usize>(spec, "per_host")? {
        c = c.per_host(n);
    }
    if let Some(yes) = opt::<bool>(spec, "fixed")? {
        c = c.fixed_per_host(yes);
    }
    for rate in opt::<Vec<String>>(spec, "rate")?.unwrap_or_default() {
        c = c.rate(&rate).map_err(bad)?;
    }
    if let Some(w) = opt::<f64>(spec, "wait")? {
        c = c.wait(Some(secs(w)));
    }
    if let Some(n) = opt::<u32>(spec, "retries")? {
        c = c.retries(n);
    }
    if let Some(w) = opt::<f64>(spec, "max_retry_wait")? {
        c = c.max_retry_wait(secs(w));
    }
    if let Some(t) = opt::<f64>(spec, "timeout")? {
        c = c.read_timeout(secs(t));
    }
    if let Some(t) = opt::<f64>(spec, "connect_timeout")? {
        c = c.connect_timeout(secs(t));
    }
    for h in opt::<Vec<String>>(spec, "headers")?.unwrap_or_default() {
        c = c.header(&h).map_err(bad)?;
    }
    if let Some(ua) = opt::<String>(spec, "user_agent")? {
        c = c.user_agent(ua);
    }
    c = c
        .report(opt(spec, "report")?)
        .failed_list(opt(spec, "failed")?);
    if let Some(yes) = opt::<bool>(spec, "overwrite")? {
        c = c.overwrite(yes);
    }
    if let Some(yes) = opt::<bool>(spec, "retry_failed")? {
        c = c.retry_failed(yes);
    }
    if let Some(yes) = opt::<bool>(spec, "sync")? {
        c = c.sync(yes);
    }
    if let Some(yes) = opt::<bool>(spec, "hash")? {
        c = c.hash(yes);
    }
    if let Some(a) = opt::<String>(spec, "accept")? {
        c = c.accept(&a).map_err(bad)?;
    }
    c = c
        .max_size(opt(spec, "max_size")?)
        .min_size(opt(spec, "min_size")?);
    if let Some(f) = opt::<String>(spec, "format")? {
        c = c.format(&f).map_err(bad)?;
    }
    if let Some(col) = opt::<String>(spec, "column")? {
        c = c.column(&col).map_err(bad)?;
    }
    if let Some(t) = opt::<String>(spec, "url")? {
        c = c.url_template(&t).map_err(bad)?;
    }
    if let Some(t) = opt::<String>(spec, "name")? {
        c = c.name_template(&t).map_err(bad)?;
    }
    if let Some(t) = opt::<String>(spec, "meta_url")? {
        c = c.meta_url(&t).map_err(bad)?;
    }
    if let Some(cols) = opt::<Vec<String>>(spec, "keep_columns")? {
        c = c.keep_columns(cols);
    }
    c = c.checksum_column(opt(spec, "checksum_column")?);
    if let Some(select) = opt::<String>(spec, "select")? {
        let attr = opt::<String>(spec, "attr")?.unwrap_or_else(|| "src".into());
        let follow = opt::<String>(spec, "follow")?;
        let mut crawl = haul::Crawl::new(&select, &attr, follow.as_deref()).map_err(bad)?;
        if let Some(d) = opt::<u32>(spec, "depth")? {
            crawl = crawl.depth(d);
        }
        if let Some(into) = opt::<String>(spec, "into")? {
            crawl = crawl.into_folder(&into).map_err(bad)?;
        }
        crawl = crawl
            .hosts(opt(spec, "hosts")?.unwrap_or_default())
            .include(opt::<String>(spec, "include")?.as_deref())
            .map_err(bad)?
            .exclude(opt::<String>(spec, "exclude")?.as_deref())
            .map_err(bad)?
            .robots(opt(spec, "robots")?.unwrap_or(true))
            .refresh(opt(spec, "refresh")?.unwrap_or(false));
        c = c.crawl(crawl);
    }
    Ok(c)
}

/// Runs `config` to the end on this thread, with a runtime of its own.
fn run(
    config: haul::Config,
    stop: CancellationToken,
) -> Result<haul::Finished, (&'static str, String)> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("haul-worker")
        .worker_threads(
            std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1))
                .max(1),
        )
        .build()
        .map_err(|e| ("HaulError", format!("cannot start the job's runtime: {e}")))?;
    let finished = runtime
        .block_on(haul::run(config, stop))
        .map_err(|e| (job_error_class(&e), error_chain(&e)));
    // Transfers parked by a cancel are done with; don't wait on them.
    runtime.shutdown_background();
    finished
}

/// An error and its causes, each said once.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let c_text = c.to_string();
        if !text.contains(&c_text) {
            text.push_str(": ");
            text.push_str(&c_text);
        }
        cause = c.source();
    }
    text
}

fn tally_dict<'py>(py: Python<'py>, t: &haul::Tally) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("ok", t.ok)?;
    d.set_item("skipped", t.skipped)?;
    d.set_item("failed", t.failed)?;
    d.set_item("bad", t.bad)?;
    d.set_item("bytes", t.bytes)?;
    d.set_item("received", t.received)?;
    d.set_item("failures", t.failures.clone())?;
    d.set_item("skips", t.skips.clone())?;
    Ok(d)
}

#[pymethods]
impl Job {
    /// A job from the keyword arguments of `haul.download` or
    /// `haul.crawl`; raises `haul.ConfigError` for a bad one.
    #[new]
    fn new(spec: &Bound<'_, PyDict>) -> PyResult<Self> {
        let heard = Arc::new(Heard::default());
        let config = build(spec)?.with_reporter(Collect(heard.clone()));
        Ok(Job {
            state: Arc::new(State {
                phase: Mutex::new(Phase::Ready(Box::new(config))),
                done: Condvar::new(),
            }),
            heard,
            stop: CancellationToken::new(),
        })
    }

    /// Starts the job on a thread of its own.
    fn start(&self) -> PyResult<()> {
        let config = {
            let mut phase = self.state.lock();
            match std::mem::replace(&mut *phase, Phase::Running) {
                Phase::Ready(config) => config,
                other => {
                    *phase = other;
                    return Err(PyRuntimeError::new_err("the job was started already"));
                }
            }
        };
        let (state, stop) = (self.state.clone(), self.stop.clone());
        std::thread::Builder::new()
            .name("haul-job".into())
            .spawn(move || {
                let result = run(*config, stop);
                *state.lock() = Phase::Done(result);
                state.done.notify_all();
            })
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start the job: {e}")))?;
        Ok(())
    }

    /// Waits up to `timeout` seconds (for ever with `None`) for the job to
    /// end, without holding the GIL; says whether it has.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> bool {
        let state = self.state.clone();
        py.detach(move || {
            let phase = state.lock();
            let ended = |p: &mut Phase| !matches!(p, Phase::Running | Phase::Ready(_));
            match timeout {
                None => {
                    drop(
                        state
                            .done
                            .wait_while(phase, |p| !ended(p))
                            .unwrap_or_else(PoisonError::into_inner),
                    );
                    true
                }
                Some(t) => {
                    let (phase, _) = state
                        .done
                        .wait_timeout_while(phase, secs(t), |p| !ended(p))
                        .unwrap_or_else(PoisonError::into_inner);
                    !matches!(*phase, Phase::Running)
                }
            }
        })
    }

    /// Stops the job as Ctrl-C stops the command: no new transfers, the
    /// ones in flight parked, the reports written. `wait` then returns soon.
    fn cancel(&self) {
        self.stop.cancel();
    }

    /// The counters now: `seen`, `input_done`, `ok`, `skipped`, `failed`,
    /// `bytes`, `elapsed` (seconds), and `hosts` (the busiest hosts'
    /// `(host, in_flight, window)`).
    fn progress<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self
            .heard
            .snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let d = PyDict::new(py);
        d.set_item("seen", s.seen)?;
        d.set_item("input_done", s.input_done)?;
        d.set_item("ok", s.ok)?;
        d.set_item("skipped", s.skipped)?;
        d.set_item("failed", s.failed)?;
        d.set_item("bytes", s.bytes)?;
        d.set_item("elapsed", s.elapsed.as_secs_f64())?;
        let hosts = PyList::empty(py);
        for h in &s.hosts {
            hosts.append((h.host.clone(), h.in_flight, h.window))?;
        }
        d.set_item("hosts", hosts)?;
        Ok(d)
    }

    /// Messages since the last call: `(level, text)`, level `"note"` or
    /// `"warning"`.
    fn messages(&self) -> Vec<(&'static str, String)> {
        std::mem::take(
            &mut *self
                .heard
                .messages
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// How the ended job went: `tally`, `interrupted`, `no_space`,
    /// `elapsed`; raises the job's error if it could not run.
    fn result<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let mut phase = self.state.lock();
        let done = match std::mem::replace(&mut *phase, Phase::Taken) {
            Phase::Done(r) => r,
            other => {
                *phase = other;
                return Err(PyRuntimeError::new_err("the job has not ended"));
            }
        };
        drop(phase);
        let finished = done.map_err(|(class, message)| error(py, class, message))?;
        let d = PyDict::new(py);
        d.set_item("tally", tally_dict(py, &finished.tally)?)?;
        d.set_item("interrupted", finished.interrupted)?;
        d.set_item("no_space", finished.no_space)?;
        d.set_item("elapsed", finished.elapsed.as_secs_f64())?;
        Ok(d)
    }
}

/// Runs the `haul` command with `argv` (without the program name) and
/// returns its exit status.
#[pyfunction]
fn cli(py: Python<'_>, argv: Vec<String>) -> u8 {
    py.detach(move || {
        haul::cli::main(std::iter::once("haul".into()).chain(argv.into_iter().map(Into::into)))
    })
}

#[pymodule]
fn _haul(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Job>()?;
    m.add_function(wrap_pyfunction!(cli, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
