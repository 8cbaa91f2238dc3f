//! A job's settings, built up from plain values: what the `haul` command,
//! the Python package or any program that embeds haul gives [`crate::run`].
//!
//! [`Config::new`] takes the inputs and the output directory and sets the
//! command's defaults; each method changes one thing and returns the
//! config, and those that parse text (templates, types, headers, regular
//! expressions) check it at once and say what is wrong in a
//! [`ConfigError`]. Checks that need the whole config (a `{meta.…}` field
//! with nothing to fill it) are made when the job starts.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{HeaderName, HeaderValue};

use std::sync::Arc;

use reqwest::header::HeaderMap;

use crate::http::ClientConfig;
use crate::report::{self, ProgressMode, ReportFiles};
use crate::schedule::Backoff;
use crate::source::InputSpec;

/// An object-store output: its URL and the store's options.
#[derive(Debug, Clone)]
pub(crate) struct ObjectsOutput {
    pub(crate) url: String,
    pub(crate) options: Vec<(String, String)>,
}

/// Everything a job needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where URLs come from, in order.
    pub(crate) inputs: Vec<InputSpec>,
    /// Output directory; for an object-store output, the local folder
    /// of its job state.
    pub(crate) output: PathBuf,
    /// The object-store output (`-o s3://…`), if the output is one.
    pub(crate) objects: Option<ObjectsOutput>,
    /// Transfers in flight, all hosts.
    pub(crate) jobs: usize,
    /// Transfers in flight to one host.
    pub(crate) per_host: usize,
    /// Each host's window adapts to it (otherwise fixed at `per_host`).
    pub(crate) adaptive: bool,
    /// Request rates (`--rate`).
    pub(crate) rates: Vec<crate::schedule::rate::Rate>,
    /// A pause between two requests to one host (`--wait`).
    pub(crate) wait: Option<Duration>,
    /// Retries of a transient failure per item.
    pub(crate) retries: u32,
    /// Retry timing.
    pub(crate) backoff: Backoff,
    /// HTTP client settings.
    pub(crate) client: ClientConfig,
    /// Manifest and failed list.
    pub(crate) reports: ReportFiles,
    /// Replace files that existed before the job.
    pub(crate) overwrite: bool,
    /// Retry items that failed permanently in an earlier run.
    pub(crate) retry_failed: bool,
    /// Group-sync downloaded files before recording them done.
    pub(crate) sync: bool,
    /// Content checks.
    pub(crate) rules: crate::check::Rules,
    /// Expand URL patterns (`{1..500}`, `{a,b}`) in the input.
    pub(crate) glob: bool,
    /// How files are named.
    pub(crate) namer: crate::plan::naming::Namer,
    /// Where each item's metadata document is (`--meta-url`).
    pub(crate) meta_url: Option<crate::template::Template>,
    /// Set for `haul crawl`: the inputs are start pages.
    pub(crate) crawl: Option<Crawl>,
    /// How table inputs are read (`--format`, `--column`, `--url`).
    pub(crate) source: crate::source::SourceOptions,
    /// Input columns copied into the manifest.
    pub(crate) keep_columns: Vec<String>,
    /// Input column holding each file's SHA-256.
    pub(crate) checksum_column: Option<String>,
    /// Compute every file's SHA-256 even without a manifest (`--hash`).
    pub(crate) hash: bool,
    /// Progress display.
    pub(crate) progress: ProgressMode,
    /// Print each retry and failure as it happens.
    pub(crate) verbose: bool,
    /// The portable file path on Linux too: every body through
    /// `NAME.part` then rename, each file and its directory fsynced before
    /// it is recorded done, instead of `O_TMPFILE` and one `syncfs` per
    /// batch. Always on elsewhere; here so that tests keep it working.
    pub(crate) portable_files: bool,
    /// Who hears of the job as it runs; `None`: the `haul` command's own
    /// display on stderr ([`report::Console`]).
    pub(crate) reporter: Option<report::SharedReporter>,
    /// Print no summary.
    pub(crate) quiet: bool,
    /// Set for `haul worker`: the items are claimed from the shared job
    /// state, each under a lease this long.
    pub(crate) worker: Option<Duration>,
    /// Set for `haul submit`: the input's items are recorded in the job
    /// state, named, and left pending for workers.
    pub(crate) submit_only: bool,
}

/// What a crawl takes from pages, and where it may go (`haul crawl`):
/// built with [`Crawl::new`] and given to [`Config::crawl`].
#[derive(Debug, Clone)]
pub struct Crawl {
    /// What to pick out of each page.
    pub(crate) rules: crate::crawl::Rules,
    /// Deepest page followed (0: only the start pages); `FOLLOW_DEPTH`
    /// when links are followed and no depth was given.
    pub(crate) max_depth: u32,
    /// Folder of each page's files.
    pub(crate) into: crate::template::Template,
    /// Hosts allowed besides the start pages' own.
    pub(crate) hosts: Vec<String>,
    /// URLs must match this.
    pub(crate) include: Option<regex::Regex>,
    /// URLs must not match this.
    pub(crate) exclude: Option<regex::Regex>,
    /// Honour robots.txt.
    pub(crate) robots: bool,
    /// Read the pages of an earlier run again, if they changed.
    pub(crate) refresh: bool,
}

impl Config {
    /// Defaults for everything but the inputs and output directory.
    ///
    /// `output` may be an object-store URL, `s3://bucket/prefix/`
    /// (`gs://`, `az://` too): files go there, and the job state to a local
    /// folder named for it under `.haul-jobs/` (see
    /// [`Config::store_option`]). `file:///path` is the local `/path`.
    pub fn new(inputs: Vec<InputSpec>, output: impl Into<PathBuf>) -> Self {
        let mut output: PathBuf = output.into();
        let mut objects = None;
        if let Some(text) = output.to_str() {
            match crate::objects::scheme_of(text) {
                Some("file") => {
                    if let Some(path) = url::Url::parse(text)
                        .ok()
                        .and_then(|u| u.to_file_path().ok())
                    {
                        output = path;
                    }
                }
                Some(s) if crate::objects::SCHEMES.contains(&s.to_ascii_lowercase().as_str()) => {
                    objects = Some(ObjectsOutput {
                        url: text.to_string(),
                        options: Vec::new(),
                    });
                    output = crate::objects::default_state_dir(text);
                }
                _ => {}
            }
        }
        Self {
            inputs,
            output,
            objects,
            jobs: 64,
            per_host: 0,
            adaptive: true,
            rates: Vec::new(),
            wait: None,
            retries: 5,
            backoff: Backoff::default(),
            client: ClientConfig {
                connect_timeout: Duration::from_secs(10),
                read_timeout: Duration::from_secs(30),
                user_agent: concat!("haul/", env!("CARGO_PKG_VERSION")).to_string(),
                headers: HeaderMap::new(),
                pool_per_host: 16,
                plain_http1: true,
                location_trusted: false,
                ca_pem: None,
                insecure: false,
            },
            reports: ReportFiles::default(),
            overwrite: false,
            retry_failed: false,
            sync: true,
            rules: crate::check::Rules::default(),
            glob: true,
            namer: crate::plan::naming::Namer::from_urls(),
            meta_url: None,
            crawl: None,
            source: crate::source::SourceOptions::default(),
            keep_columns: Vec::new(),
            checksum_column: None,
            hash: false,
            progress: ProgressMode::Auto,
            verbose: false,
            quiet: false,
            worker: None,
            submit_only: false,
            portable_files: cfg!(not(target_os = "linux")),
            reporter: None,
        }
    }

    /// Sends the job's outcomes, counters and messages to `reporter`
    /// instead of the console.
    pub fn with_reporter(mut self, reporter: impl report::Reporter + 'static) -> Self {
        self.reporter = Some(report::SharedReporter(Arc::new(reporter)));
        self
    }
}

/// A setting that cannot be used, with what to give instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A template (`--name`, `--url`, `--meta-url`, `--into`) does not parse.
    #[error("{option}: {message}")]
    Template {
        /// The option it was given for.
        option: &'static str,
        /// What is wrong, with the column.
        message: String,
    },
    /// A request header is not `Name: value`.
    #[error("bad header {0:?}: expected 'Name: value'")]
    Header(String),
    /// `--state` is not a PostgreSQL URL.
    #[error(
        "bad --state {0:?}: expected postgres://USER@HOST[:PORT]/DATABASE (the job state \
         is in the output directory unless --state says otherwise)"
    )]
    State(String),
    /// `haul submit` or `haul worker` without `--state`.
    #[error(
        "submit and worker need a shared job state: give --state postgres://… (or set \
         HAUL_STATE) and --job NAME"
    )]
    SharedWithoutState,
    /// `haul worker` with URLs or lists.
    #[error(
        "a worker takes its items from the job state, not from URLs or lists: submit them \
         with haul submit --state … --job … -i LIST"
    )]
    WorkerWithInputs,
    /// `-o` names a URL of no store haul writes to: a local folder named
    /// after its scheme is never what was meant.
    #[error(
        "-o {0}: not a place haul writes to: give a local directory, or s3://, gs://, az:// \
         (to mean a local folder with that name, write ./{0})"
    )]
    OutputUrl(String),
    /// `--store-option` without an object-store output.
    #[error("--store-option {0}: -o is a local directory; store options are for -o s3://… (gs://, az://)")]
    StoreOptionWithoutStore(String),
    /// A local state folder without an object-store output.
    #[error(
        "--state DIR is for an object-store output (-o s3://…); a local output keeps its \
         job state in the output directory"
    )]
    StateDirWithoutStore,
    /// `--accept` names something that is not a type pattern.
    #[error("{0:?} is not a MIME type pattern such as image/* or image/png")]
    Accept(String),
    /// `--format` names no format.
    #[error("{0:?} is not a format: txt, csv, tsv, jsonl or parquet")]
    Format(String),
    /// `--column` is empty or not an index.
    #[error("--column: {0}")]
    Column(String),
    /// `--include`/`--exclude` is not a regular expression.
    #[error("{option}: {message}")]
    Pattern {
        /// The option.
        option: &'static str,
        /// What the regular expression parser said.
        message: String,
    },
    /// A crawl selector or attribute is wrong.
    #[error("{0}")]
    Crawl(String),
    /// The trusted certificates are not PEM certificates.
    #[error("{0} (expected PEM certificates, -----BEGIN CERTIFICATE-----)")]
    Certificates(String),
    /// A `--rate` that is not `N/s`, `N/m`, `N/h` or `host=NAME:N/s`.
    #[error("bad --rate {0:?}: expected e.g. 10/s, 100/m or host=example.com:2/s")]
    Rate(String),
    /// `{meta.…}` in the name template with no `--meta-url` to fill it.
    #[error("--name uses {0}, but there is no --meta-url to fetch it from")]
    MetaWithoutMetaUrl(String),
    /// A crawl depth above 0 with no links to follow: it would do nothing.
    #[error(
        "--depth {0} does nothing without --follow: add --follow 'a' to follow every link, \
         or a selector such as --follow 'a.next'"
    )]
    DepthWithoutFollow(u32),
}

fn template(option: &'static str, text: &str) -> Result<crate::template::Template, ConfigError> {
    crate::template::Template::parse(text).map_err(|e| ConfigError::Template {
        option,
        message: e.to_string(),
    })
}

impl Config {
    /// Transfers in flight, all hosts together (default 64).
    pub fn jobs(mut self, n: usize) -> Self {
        self.jobs = n.max(1);
        self
    }

    /// The most transfers in flight to one host (default: as many as
    /// [`Config::jobs`]). Each host's window starts small and grows to what
    /// the host takes, up to this.
    pub fn per_host(mut self, n: usize) -> Self {
        self.per_host = n.max(1);
        self
    }

    /// Keeps each host's window at [`Config::per_host`] (16 if not set)
    /// instead of adapting it: the behaviour before adaptive windows.
    pub fn fixed_per_host(mut self, yes: bool) -> Self {
        self.adaptive = !yes;
        self
    }

    /// Limits the request rate: `10/s` (or `/m`, `/h`) for the whole job,
    /// `host=example.com:2/s` for one host. Repeatable.
    pub fn rate(mut self, spec: &str) -> Result<Self, ConfigError> {
        let rate = crate::schedule::rate::Rate::parse(spec)
            .ok_or_else(|| ConfigError::Rate(spec.to_string()))?;
        self.rates.push(rate);
        Ok(self)
    }

    /// Waits this long between two requests to any one host (wget's
    /// `--wait`).
    pub fn wait(mut self, wait: Option<Duration>) -> Self {
        self.wait = wait;
        self
    }

    /// The per-host cap in force.
    pub(crate) fn host_cap(&self) -> usize {
        match (self.per_host, self.adaptive) {
            (0, true) => self.jobs,
            (0, false) => 16,
            (n, _) => n,
        }
    }

    /// Retries of a transient failure per item (default 5).
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// The longest wait a server's `Retry-After` may impose (default 60 s).
    pub fn max_retry_wait(mut self, wait: Duration) -> Self {
        self.backoff.max_retry_after = wait;
        self
    }

    /// Time allowed to connect (default 10 s).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.client.connect_timeout = t;
        self
    }

    /// Idle time allowed between bytes (default 30 s).
    pub fn read_timeout(mut self, t: Duration) -> Self {
        self.client.read_timeout = t;
        self
    }

    /// Gives up an attempt that takes longer than this, request to last
    /// byte; what arrived is kept for the next attempt.
    pub fn max_time(mut self, t: Option<Duration>) -> Self {
        self.rules.max_time = t;
        self
    }

    /// Gives up an attempt whose body arrives slower than `bytes_per_second`
    /// on average over `window`; what arrived is kept.
    pub fn min_speed(mut self, bytes_per_second: Option<u64>, window: Duration) -> Self {
        self.rules.min_speed = bytes_per_second;
        self.rules.min_speed_time = window;
        self
    }

    /// Adds a request header, `Name: value`.
    pub fn header(mut self, raw: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::Header(raw.to_string());
        let (name, value) = raw.split_once(':').ok_or_else(bad)?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
        self.client.headers.append(name, value);
        Ok(self)
    }

    /// The `User-Agent`.
    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.client.user_agent = ua.into();
        self
    }

    /// Sends the added headers on redirects to other hosts too.
    pub fn location_trusted(mut self, yes: bool) -> Self {
        self.client.location_trusted = yes;
        self
    }

    /// Trusts these PEM certificates as well as the system's (a private
    /// CA, a self-signed server).
    pub fn trust_pem(mut self, pem: Vec<u8>) -> Result<Self, ConfigError> {
        crate::http::check_pem(&pem).map_err(ConfigError::Certificates)?;
        self.client.ca_pem = Some(pem);
        Ok(self)
    }

    /// Does not check TLS certificates at all.
    pub fn insecure(mut self, yes: bool) -> Self {
        self.client.insecure = yes;
        self
    }

    /// Whether TLS certificates go unchecked.
    pub fn is_insecure(&self) -> bool {
        self.client.insecure
    }

    /// Writes the manifest here (JSON Lines, or CSV when named `*.csv`).
    pub fn report(mut self, path: Option<PathBuf>) -> Self {
        self.reports.manifest = path;
        self
    }

    /// Writes the failed items here, in a form `-i` reads back.
    pub fn failed_list(mut self, path: Option<PathBuf>) -> Self {
        self.reports.failed = path;
        self
    }

    /// Replaces files that were in the output directory before the job.
    pub fn overwrite(mut self, yes: bool) -> Self {
        self.overwrite = yes;
        self
    }

    /// Also retries items that failed permanently in an earlier run.
    pub fn retry_failed(mut self, yes: bool) -> Self {
        self.retry_failed = yes;
        self
    }

    /// Syncs files before recording them done (default on).
    pub fn sync(mut self, yes: bool) -> Self {
        self.sync = yes;
        self
    }

    /// Expands URL patterns such as `{1..500}` and `{a,b}` (default on).
    pub fn glob(mut self, yes: bool) -> Self {
        self.glob = yes;
        self.source.glob = yes;
        self
    }

    /// Accepts only bodies of these types, checked on their first bytes:
    /// comma-separated patterns such as `image/*,application/pdf`.
    pub fn accept(mut self, types: &str) -> Result<Self, ConfigError> {
        for t in types.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let p = crate::check::MimePattern::parse(t)
                .ok_or_else(|| ConfigError::Accept(t.to_string()))?;
            self.rules.accept.push(p);
        }
        Ok(self)
    }

    /// Fails files larger than this many bytes, as soon as they pass it.
    pub fn max_size(mut self, bytes: Option<u64>) -> Self {
        self.rules.max_size = bytes;
        self
    }

    /// Fails files smaller than this many bytes.
    pub fn min_size(mut self, bytes: Option<u64>) -> Self {
        self.rules.min_size = bytes;
        self
    }

    /// Reads every input file as this format (`txt`, `csv`, `tsv`,
    /// `jsonl`, `parquet`) instead of by its extension.
    pub fn format(mut self, name: &str) -> Result<Self, ConfigError> {
        let f = crate::source::table::Format::parse(name)
            .ok_or_else(|| ConfigError::Format(name.into()))?;
        self.source.format = Some(f);
        Ok(self)
    }

    /// The column holding URLs: a name, a 0-based index, or a dotted path
    /// in JSONL.
    pub fn column(mut self, spec: &str) -> Result<Self, ConfigError> {
        let c = spec
            .parse()
            .map_err(|e: crate::source::table::TableError| ConfigError::Column(e.to_string()))?;
        self.source.column = Some(c);
        Ok(self)
    }

    /// Reads a CSV/TSV's first line as data, not as its header.
    pub fn no_header(mut self, yes: bool) -> Self {
        self.source.no_header = yes;
        self
    }

    /// Builds each item's URL from its input row, e.g.
    /// `https://h/{col.id}.jpg`.
    pub fn url_template(mut self, text: &str) -> Result<Self, ConfigError> {
        self.source.url = Some(template("--url", text)?);
        Ok(self)
    }

    /// Names files by a template, e.g. `{col.label}/{stem}.{ext}`.
    pub fn name_template(mut self, text: &str) -> Result<Self, ConfigError> {
        self.namer = crate::plan::naming::Namer::template(template("--name", text)?);
        Ok(self)
    }

    /// Fetches a JSON document per item from this URL template, for
    /// `{meta.FIELD}`.
    pub fn meta_url(mut self, text: &str) -> Result<Self, ConfigError> {
        self.meta_url = Some(template("--meta-url", text)?);
        Ok(self)
    }

    /// Copies these input columns into the manifest.
    pub fn keep_columns(mut self, columns: Vec<String>) -> Self {
        self.keep_columns = columns;
        self
    }

    /// The input column holding each file's SHA-256.
    pub fn checksum_column(mut self, column: Option<String>) -> Self {
        self.checksum_column = column;
        self
    }

    /// Computes every file's SHA-256 even without a manifest.
    pub fn hash(mut self, yes: bool) -> Self {
        self.hash = yes;
        self
    }

    /// The progress display of the console reporter.
    pub fn progress(mut self, mode: ProgressMode) -> Self {
        self.progress = mode;
        self
    }

    /// Reports each retry and failure as it happens.
    pub fn verbose(mut self, yes: bool) -> Self {
        self.verbose = yes;
        self
    }

    /// No progress, no summary, no messages from the console reporter.
    pub fn quiet(mut self, yes: bool) -> Self {
        self.quiet = yes;
        self
    }

    /// Whether the console reporter is silent.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// The portable file path on Linux too (see the README's Safety).
    pub fn portable_files(mut self, yes: bool) -> Self {
        self.portable_files |= yes;
        self
    }

    /// Crawls: the inputs are start pages, and `crawl` says what to take
    /// from them.
    pub fn crawl(mut self, crawl: Crawl) -> Self {
        self.crawl = Some(crawl);
        self
    }

    /// The checks that need the whole config.
    /// Keeps the job state in PostgreSQL (`postgres://user@host/db`) under
    /// the job name `job` (default: the output directory's absolute path)
    /// instead of in the output directory, so that processes on many
    /// machines can share the job.
    pub fn state(mut self, url: &str, job: Option<&str>) -> Result<Self, ConfigError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError::State(url.to_string()));
        }
        let job = match job {
            Some(j) if !j.trim().is_empty() => j.to_string(),
            Some(_) => return Err(ConfigError::State("an empty --job name".into())),
            None => match &self.objects {
                Some(o) => o.url.clone(),
                None => std::path::absolute(&self.output)
                    .unwrap_or_else(|_| self.output.clone())
                    .display()
                    .to_string(),
            },
        };
        self.source.state = Some(crate::store::PgLocation {
            url: url.to_string(),
            job,
        });
        Ok(self)
    }

    /// Works on the shared job (see [`Config::state`]) as one of its
    /// workers: no inputs; pending items are claimed in batches, each under
    /// a lease of `lease` that is renewed while this process lives, so the
    /// items of a worker that dies go to the others once it runs out.
    pub fn worker(mut self, lease: Duration) -> Self {
        self.worker = Some(lease.max(Duration::from_secs(1)));
        self
    }

    /// Records the input's items in the job state (named, checked, each
    /// once however often submitted) and leaves them for workers.
    pub fn submit_only(mut self, yes: bool) -> Self {
        self.submit_only = yes;
        self
    }

    /// Sets an option of the object store `-o` names, by its
    /// `object_store` configuration key: `aws_endpoint`
    /// (an S3-compatible server), `aws_region`, `aws_allow_http`,
    /// `google_service_account`, `azure_storage_account_name`, …; the
    /// environment gives the rest (`AWS_*`, `GOOGLE_*`, `AZURE_*`).
    pub fn store_option(mut self, key: &str, value: &str) -> Result<Self, ConfigError> {
        let Some(o) = self.objects.as_mut() else {
            return Err(ConfigError::StoreOptionWithoutStore(key.to_string()));
        };
        o.options
            .push((key.to_ascii_lowercase(), value.to_string()));
        Ok(self)
    }

    /// Whether the output is an object store.
    pub fn writes_objects(&self) -> bool {
        self.objects.is_some()
    }

    /// Keeps the job state of an object-store output in the local folder
    /// `dir` instead of `.haul-jobs/…` in the current directory.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Result<Self, ConfigError> {
        if self.objects.is_none() {
            return Err(ConfigError::StateDirWithoutStore);
        }
        self.output = dir.into();
        Ok(self)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(text) = self.output.to_str() {
            if crate::objects::scheme_of(text)
                .is_some_and(|s| s.starts_with(|c: char| c.is_ascii_alphabetic()))
            {
                return Err(ConfigError::OutputUrl(text.to_string()));
            }
        }
        if (self.worker.is_some() || self.submit_only) && self.source.state.is_none() {
            return Err(ConfigError::SharedWithoutState);
        }
        if self.worker.is_some() && !self.inputs.is_empty() {
            return Err(ConfigError::WorkerWithInputs);
        }
        if self.meta_url.is_none() {
            if let Some(field) = self.namer.fields().find(|f| f.starts_with("meta.")) {
                return Err(ConfigError::MetaWithoutMetaUrl(format!("{{{field}}}")));
            }
        }
        if let Some(crawl) = &self.crawl {
            // A depth with nothing to follow used to crawl the start pages
            // alone without a word; the user meant something else.
            if crawl.rules.follow.is_none() && crawl.max_depth > 0 {
                return Err(ConfigError::DepthWithoutFollow(crawl.max_depth));
            }
        }
        Ok(())
    }
}

/// How deep a crawl that follows links goes when no depth is given: wget's
/// `-r` default, deep enough for a gallery's next pages without wandering
/// over a whole site.
const FOLLOW_DEPTH: u32 = 5;

impl Crawl {
    /// Picks file URLs from the elements `select` matches, in the first of
    /// the comma-separated attributes `attrs` each has (`src`, `srcset`,
    /// `data-src,src`…), and follows the links `follow` matches, 5 links
    /// deep unless [`Crawl::depth`] says otherwise.
    pub fn new(select: &str, attrs: &str, follow: Option<&str>) -> Result<Self, ConfigError> {
        let rules = crate::crawl::Rules::new(select, attrs, follow)
            .map_err(|e| ConfigError::Crawl(e.to_string()))?;
        Ok(Self {
            max_depth: if rules.follow.is_some() {
                FOLLOW_DEPTH
            } else {
                0
            },
            rules,
            into: template("--into", "{page.title}")?,
            hosts: Vec::new(),
            include: None,
            exclude: None,
            robots: true,
            refresh: false,
        })
    }

    /// Links followed from a start page (0: only the start pages; 5 when
    /// not given). A depth above 0 needs a `follow` selector: the job
    /// refuses to start with [`ConfigError::DepthWithoutFollow`] otherwise.
    pub fn depth(mut self, depth: u32) -> Self {
        self.max_depth = depth;
        self
    }

    /// The folder of each page's files, e.g. `{page.title}`.
    pub fn into_folder(mut self, text: &str) -> Result<Self, ConfigError> {
        self.into = template("--into", text)?;
        Ok(self)
    }

    /// Hosts allowed besides the start pages' own.
    pub fn hosts(mut self, hosts: Vec<String>) -> Self {
        self.hosts = hosts;
        self
    }

    /// Only URLs matching this regular expression.
    pub fn include(mut self, re: Option<&str>) -> Result<Self, ConfigError> {
        self.include = re.map(|r| pattern("--include", r)).transpose()?;
        Ok(self)
    }

    /// No URLs matching this regular expression.
    pub fn exclude(mut self, re: Option<&str>) -> Result<Self, ConfigError> {
        self.exclude = re.map(|r| pattern("--exclude", r)).transpose()?;
        Ok(self)
    }

    /// Fetches and honours robots.txt (default on).
    pub fn robots(mut self, yes: bool) -> Self {
        self.robots = yes;
        self
    }

    /// On a re-run, asks again for every page read before, conditionally
    /// (`If-None-Match`, `If-Modified-Since`): a changed page is read for
    /// new files and links; an unchanged one (304) costs a request, and the
    /// pages it links to are asked in turn. Files already done are not
    /// fetched again. Without it, a re-run only carries on with what the
    /// last one left unfinished.
    pub fn refresh(mut self, yes: bool) -> Self {
        self.refresh = yes;
        self
    }
}

fn pattern(option: &'static str, re: &str) -> Result<regex::Regex, ConfigError> {
    regex::Regex::new(re).map_err(|e| ConfigError::Pattern {
        option,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(crawl: Crawl) -> Config {
        Config::new(vec![InputSpec::Args(vec![])], "out").crawl(crawl)
    }

    #[test]
    fn follow_without_depth_goes_five_deep() {
        let crawl = Crawl::new("img", "src", Some("a")).unwrap();
        assert_eq!(crawl.max_depth, FOLLOW_DEPTH);
        assert_eq!(crawl.max_depth, 5);
        assert!(job(crawl).validate().is_ok());
        let crawl = Crawl::new("img", "src", Some("a")).unwrap().depth(0);
        assert_eq!(crawl.max_depth, 0, "an explicit 0 is only the start pages");
        let crawl = Crawl::new("img", "src", None).unwrap();
        assert_eq!(crawl.max_depth, 0);
        assert!(job(crawl.clone().depth(0)).validate().is_ok());
        assert!(job(crawl).validate().is_ok());
    }

    #[test]
    fn depth_without_follow_is_refused() {
        let crawl = Crawl::new("img", "src", None).unwrap().depth(2);
        let err = job(crawl).validate().unwrap_err();
        assert!(matches!(err, ConfigError::DepthWithoutFollow(2)), "{err}");
        assert_eq!(
            err.to_string(),
            "--depth 2 does nothing without --follow: add --follow 'a' to follow every link, \
             or a selector such as --follow 'a.next'"
        );
    }

    #[test]
    fn an_output_url_is_a_bucket_a_local_path_or_refused() {
        let c = Config::new(vec![], "s3://bkt/run/");
        assert!(c.writes_objects());
        assert_eq!(c.output, PathBuf::from(".haul-jobs/s3/bkt/run"));
        let c = c.state_dir("/var/state").unwrap();
        assert_eq!(c.output, PathBuf::from("/var/state"));
        assert!(c.store_option("aws_region", "eu-west-1").is_ok());

        let c = Config::new(vec![], "file:///srv/out%20dir");
        assert!(!c.writes_objects());
        assert_eq!(c.output, PathBuf::from("/srv/out dir"));
        assert!(matches!(
            c.clone().store_option("aws_region", "x"),
            Err(ConfigError::StoreOptionWithoutStore(_))
        ));
        assert!(matches!(
            c.state_dir("s"),
            Err(ConfigError::StateDirWithoutStore)
        ));

        let c = Config::new(vec![], "webdav://host/x");
        assert!(matches!(c.validate(), Err(ConfigError::OutputUrl(_))));
        // A local name with a colon is a local name.
        assert!(Config::new(vec![], "./s3://x").validate().is_ok());
    }
}
