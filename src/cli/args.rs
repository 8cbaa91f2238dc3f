//! The command line: clap's parser and its translation into a job
//! [`Config`]. Option names follow wget and aria2c where they overlap, so
//! their users guess right.

use std::path::PathBuf;
use std::time::Duration;

use crate::{Config, ConfigError, InputSpec, ProgressMode};
use clap::Parser;

/// Fast, resumable bulk downloader.
///
/// Every job is resumable: its state lives in DIR/.haul/state.db, and
/// running the same command again carries on where it stopped.
#[derive(Debug, Parser)]
#[command(
    name = "haul",
    version,
    about,
    max_term_width = 100,
    args_conflicts_with_subcommands = true,
    after_help = EXAMPLES,
)]
pub struct Cli {
    /// A subcommand; without one, haul downloads.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Download options.
    #[command(flatten)]
    pub args: Args,
}

/// Examples shown after `--help`.
const EXAMPLES: &str = "\
Examples:
  haul -i urls.txt -o downloads                     every URL in a list
  haul -i urls.txt -o downloads --failed failed.txt and keep the failures
  haul -i failed.txt -o downloads --failed failed-2.txt   feed them back
  haul 'https://example.org/img/{001..500}.jpg' -o imgs   a numbered range
  haul -i data.csv --column image_url -o imgs --report imgs.jsonl
  haul -i data.parquet --url 'https://h/{col.id}.jpg' --name '{col.label}/{col.id}.jpg'
  haul crawl 'https://example.org/gallery' --follow 'a.next' --depth 20 -o gallery
  haul status downloads                             what a job did, and what is left

Run the same command again to carry on: what is done is skipped, partial
files are resumed.";

/// Examples shown after `haul crawl --help`.
const CRAWL_EXAMPLES: &str = "\
Examples:
  haul crawl 'https://example.org/gallery' -o gallery
  haul crawl 'https://example.org/posts/{1..40}' --select '.post img' --attr srcset -o posts
  haul crawl 'https://example.org/lazy' --attr data-src,src -o lazy
  haul crawl 'https://example.org/' --follow 'a' -o site        every link, 5 links deep
  haul crawl 'https://example.org/' --follow 'a.next' --depth 50 --hosts cdn.example.org -o site";

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show the state of the job in an output directory.
    Status(StatusArgs),
    /// Crawl pages and download the files they show (images by default).
    #[command(after_help = CRAWL_EXAMPLES)]
    Crawl(Box<CrawlArgs>),
    /// Print a shell completion script: bash, zsh, fish, elvish, powershell.
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `haul man > haul.1`.
    Man,
    /// Load URLs into a shared job (--state postgres://… --job NAME), named
    /// and checked, for workers; submitting the same input again adds
    /// nothing.
    #[command(after_help = SHARED_EXAMPLES)]
    Submit(Box<Args>),
    /// Work on a shared job: claim its pending items in leased batches and
    /// download them into -o DIR, until none is left. Start as many as you
    /// like, on any machines.
    #[command(after_help = SHARED_EXAMPLES)]
    Worker(Box<Args>),
}

/// Examples shown after `haul submit --help` and `haul worker --help`.
const SHARED_EXAMPLES: &str = "\
Examples (HAUL_STATE=postgres://haul@db.internal/haul in every shell):
  haul submit --job photos -i urls.txt --name '{col.id}.jpg'    once, anywhere
  haul worker --job photos -o /data/photos -j 128                on each machine
  haul status --job photos                                       the whole job
  haul worker --job photos -o /data/photos --retry-failed        retry every failure";

/// The names of the subcommands, for "did you mean" on a mistyped one.
pub const COMMANDS: [&str; 6] = ["status", "crawl", "completions", "man", "submit", "worker"];

/// `haul crawl`: start pages are the URLs (arguments, -i lists, patterns
/// such as {5000..5050}); every download option applies.
#[derive(Debug, clap::Args)]
pub struct CrawlArgs {
    /// CSS selector of the elements holding file URLs, e.g. '.post img'.
    #[arg(long, value_name = "CSS", default_value = "img")]
    pub select: String,

    /// Attributes holding the URL, comma-separated: each element gives the
    /// first one it has that is not empty, so data-src,src suits
    /// lazy-loading galleries; srcset gives its largest candidate.
    #[arg(long, value_name = "NAMES", default_value = "src")]
    pub attr: String,

    /// CSS selector of links to crawl next, e.g. 'a.next' or 'a'.
    #[arg(long, value_name = "CSS")]
    pub follow: Option<String>,

    /// Links followed from a start page, with --follow (default 5, as wget
    /// -r; 0: only the start pages).
    #[arg(long, value_name = "N")]
    pub depth: Option<u32>,

    /// Folder for each page's files: {page.title} {page.url} {page.host}
    /// {page.n}, with filters. Only a / written here makes subfolders: one
    /// in a title is replaced with _.
    #[arg(long, value_name = "TEMPLATE", default_value = "{page.title}")]
    pub into: String,

    /// Only the start pages' hosts (the default).
    #[arg(long, conflicts_with = "hosts")]
    pub same_host: bool,

    /// Also allow these hosts (image CDNs), comma-separated.
    #[arg(long, value_name = "HOSTS", value_delimiter = ',')]
    pub hosts: Vec<String>,

    /// Only URLs matching this regular expression.
    #[arg(long, value_name = "RE")]
    pub include: Option<String>,

    /// No URLs matching this regular expression.
    #[arg(long, value_name = "RE")]
    pub exclude: Option<String>,

    /// Do not fetch or honour robots.txt.
    #[arg(long)]
    pub ignore_robots: bool,

    /// On a re-run, ask again for the pages read before (conditionally:
    /// unchanged pages answer 304) to find files and links added since.
    #[arg(long)]
    pub refresh: bool,

    /// Download options.
    #[command(flatten)]
    pub args: Args,
}

impl CrawlArgs {
    /// The crawl job this command line asks for.
    pub fn into_config(self) -> Result<Config, UsageError> {
        let mut crawl = crate::Crawl::new(&self.select, &self.attr, self.follow.as_deref())?;
        if let Some(depth) = self.depth {
            crawl = crawl.depth(depth);
        }
        let crawl = crawl
            .into_folder(&self.into)?
            .hosts(self.hosts)
            .include(self.include.as_deref())?
            .exclude(self.exclude.as_deref())?
            .robots(!self.ignore_robots)
            .refresh(self.refresh);
        Ok(self.args.into_config()?.crawl(crawl))
    }
}

/// `haul status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The job's output directory.
    #[arg(value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Write the JSON Lines manifest of every item from the job state.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write the URLs of the failed items, one per line.
    #[arg(long, value_name = "FILE")]
    pub failed: Option<PathBuf>,
    /// The job state is in PostgreSQL (postgres://…), not in DIR.
    #[arg(long, value_name = "URL", env = "HAUL_STATE", requires = "job")]
    pub state: Option<String>,
    /// The job's name in the --state database.
    #[arg(long, value_name = "NAME", requires = "state")]
    pub job: Option<String>,
}

/// Download options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// URLs: files to download (or, for `haul crawl`, the pages to start
    /// from); patterns such as {1..500} and {a,b} are expanded.
    #[arg(value_name = "URL")]
    pub urls: Vec<String>,

    /// URL list, one per line ('-' for stdin); blank lines and '#' comments
    /// are skipped. Repeatable.
    #[arg(short, long = "input", value_name = "FILE")]
    pub inputs: Vec<PathBuf>,

    /// Directory the files go to; created if missing. Also -P
    /// (--directory-prefix, as wget) and -d (--dir, as aria2c).
    #[arg(
        short,
        long,
        value_name = "DIR",
        default_value = ".",
        short_aliases = ['P', 'd'],
        aliases = ["directory-prefix", "dir"]
    )]
    pub output: PathBuf,

    /// Transfers in flight, all hosts together.
    #[arg(short, long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub jobs: u32,

    /// Accepted for curl's -Z: haul always downloads in parallel (-j).
    #[arg(short = 'Z', long, hide = true)]
    pub parallel: bool,

    /// The most transfers in flight to one host (default: -j). Each host
    /// starts at 16 and grows while it answers well, shrinks on 429, 503,
    /// timeouts and slowing answers, and pauses as a whole on Retry-After.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub per_host: Option<u32>,

    /// Keep each host at --per-host (16 if not given) instead of adapting.
    #[arg(long)]
    pub fixed: bool,

    /// Limit the request rate: 10/s (or /m, /h) for the whole job, or
    /// host=example.com:2/s for one host. Repeatable.
    #[arg(long, value_name = "RATE")]
    pub rate: Vec<String>,

    /// Seconds to wait between two requests to any one host (as wget).
    #[arg(short = 'w', long, value_name = "S")]
    pub wait: Option<f64>,

    /// Retries of a transient failure (connect error, reset, timeout,
    /// truncated body, 5xx, 408, 429) per item.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub retries: u32,

    /// Attempts per item in all, as wget's -t (0: no limit); the same as
    /// --retries N-1.
    #[arg(short = 't', long, value_name = "N", conflicts_with = "retries")]
    pub tries: Option<u32>,

    /// Both timeouts at once, in seconds (as wget's -T).
    #[arg(short = 'T', long, value_name = "S")]
    pub timeout: Option<f64>,

    /// Accepted for wget's -c and curl's -C -: resuming is always on.
    #[arg(short = 'c', long = "continue", hide = true)]
    pub continue_: bool,

    /// Accepted for wget's -nc: files that exist are skipped anyway, unless
    /// --overwrite.
    #[arg(long, hide = true, conflicts_with = "overwrite")]
    pub no_clobber: bool,

    /// Longest wait a server's Retry-After may impose, in seconds.
    #[arg(long, value_name = "S", default_value_t = 60.0)]
    pub max_retry_wait: f64,

    /// Seconds allowed to connect.
    #[arg(long, value_name = "S", default_value_t = 10.0)]
    pub connect_timeout: f64,

    /// Seconds allowed between bytes.
    #[arg(long, value_name = "S", default_value_t = 30.0)]
    pub read_timeout: f64,

    /// Give up an attempt that takes longer than this, request to last byte
    /// (seconds). What arrived is kept and the next attempt resumes it.
    #[arg(long, value_name = "S")]
    pub max_time: Option<f64>,

    /// Give up an attempt whose body arrives slower than this on average
    /// over --min-speed-time (bytes per second, or with k, M, G). What
    /// arrived is kept and the next attempt resumes it.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub min_speed: Option<u64>,

    /// The window --min-speed is measured over, in seconds.
    #[arg(long, value_name = "S", default_value_t = 30.0)]
    pub min_speed_time: f64,

    /// Write a JSON Lines manifest, one line per input item.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// Write the URLs that failed, one per line (feed back with -i).
    #[arg(long, value_name = "FILE")]
    pub failed: Option<PathBuf>,

    /// Extra request header, 'Name: value'. Repeatable.
    #[arg(short = 'H', long = "header", value_name = "'K: V'")]
    pub headers: Vec<String>,

    /// Trust the certificates in this PEM file (a private CA, a self-signed
    /// server) as well as the system's. SSL_CERT_FILE is read the same way.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// Do not check TLS certificates at all (anyone on the path can then
    /// read and change what is downloaded).
    #[arg(short = 'k', long)]
    pub insecure: bool,

    /// Send the -H headers on redirects to other hosts too (by default they
    /// go only to the host of the URL given, as credentials do).
    #[arg(long)]
    pub location_trusted: bool,

    /// User-Agent header (also -U, as wget).
    #[arg(short = 'A', long, value_name = "UA", short_alias = 'U')]
    pub user_agent: Option<String>,

    /// Replace files that already exist in the output directory.
    #[arg(long)]
    pub overwrite: bool,

    /// Also retry items that failed permanently (404, 403…) in an earlier
    /// run. With no URLs and no -i: retry exactly the job's failed items.
    #[arg(long)]
    pub retry_failed: bool,

    /// Accept only these types, checked on the first bytes of the body (magic
    /// numbers), not only Content-Type: comma-separated, e.g. 'image/*'.
    #[arg(long, value_name = "TYPES")]
    pub accept: Option<String>,

    /// Fail files larger than this (bytes, or with k, M, G), aborting the
    /// transfer as soon as the limit is passed.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,

    /// Fail files smaller than this (bytes, or with k, M, G).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub min_size: Option<u64>,

    /// Read -i files as this format instead of guessing by extension: txt,
    /// csv, tsv, jsonl or parquet (a .gz suffix is always decompressed).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,

    /// The column holding URLs: a name, a 0-based index, or a dotted path in
    /// JSONL. Default: the first column whose first row holds a URL (a cell
    /// may hold several: a list literal, a JSON array or separated URLs).
    #[arg(long, value_name = "NAME|INDEX")]
    pub column: Option<String>,

    /// Read a CSV/TSV's first line as data, not as the header (columns are
    /// then 0, 1, 2…).
    #[arg(long)]
    pub no_header: bool,

    /// Build each item's URL from its input row instead of reading one, with
    /// the fields and filters of --name, e.g. 'http://h/{col.cc|lower}.gif'.
    #[arg(long, value_name = "TEMPLATE")]
    pub url: Option<String>,

    /// Copy these input columns into the manifest (comma-separated).
    #[arg(long, value_name = "COLS", value_delimiter = ',')]
    pub keep_columns: Vec<String>,

    /// The input column holding each file's SHA-256 (hex): a file that does
    /// not match fails and is not kept.
    #[arg(long, value_name = "COL")]
    pub checksum_column: Option<String>,

    /// Compute every file's SHA-256 for the job state and `haul status
    /// --report` even without --report (which turns it on by itself).
    #[arg(long)]
    pub hash: bool,

    // clap turns a literal `{n}` in help text into a line break; the reset
    // escape between `{` and `n` keeps it (and is dropped from plain output).
    // The help is the field's documentation.
    #[allow(missing_docs)]
    #[arg(
        long,
        value_name = "TEMPLATE",
        help = concat!(
            "Name files by a template: fields {name} {stem} {ext} {host} {path} {",
            "\x1b[0m",
            "n} (the item's number) {row} {col.NAME} {meta.FIELD}, filters {x|upper} ",
            "{x|lower} {x|slug} {x|replace('a','b')} {x|pad(4)}; '/' makes directories, ",
            "e.g. '{col.label}/{stem}.{ext}'"
        )
    )]
    pub name: Option<String>,

    /// Fetch a JSON document for each item from this URL template (same
    /// fields as --name) and expose its fields as {meta.FIELD}.
    #[arg(long, value_name = "TEMPLATE")]
    pub meta_url: Option<String>,

    /// Take braces in URLs literally instead of expanding {1..500} and {a,b}.
    #[arg(long)]
    pub globoff: bool,

    /// Do not sync files to disk before recording them done (faster; a power
    /// cut may then lose files the job state counts as done).
    #[arg(long)]
    pub no_sync: bool,

    /// No progress and no summary.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print each retry and failure as it happens.
    #[arg(short, long)]
    pub verbose: bool,

    /// The portable file path (NAME.part and rename, an fsync per file), as
    /// on platforms without O_TMPFILE and syncfs; for tests.
    #[arg(long, hide = true)]
    pub portable_files: bool,

    /// Progress display: bars on a terminal, plain lines otherwise (auto).
    #[arg(long, value_enum, value_name = "MODE", default_value = "auto")]
    pub progress: ProgressArg,

    /// Keep the job state in PostgreSQL instead of DIR/.haul, so that haul
    /// processes on many machines share the job (see haul submit and haul
    /// worker): postgres://USER@HOST[:PORT]/DATABASE. With -o s3://…, a
    /// local folder may be given instead (default: .haul-jobs/s3/BUCKET/…
    /// in the current directory).
    #[arg(long, value_name = "URL", env = "HAUL_STATE")]
    pub state: Option<String>,

    /// With -o s3://…: the endpoint of an S3-compatible server (MinIO,
    /// Ceph, R2…), e.g. http://127.0.0.1:9000.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,

    /// With -o s3://, gs://, az://: a setting of the store by its
    /// object_store key, e.g. aws_region=eu-west-1 (repeatable); the
    /// environment gives the rest (AWS_*, GOOGLE_*, AZURE_*).
    #[arg(long = "store-option", value_name = "KEY=VALUE")]
    pub store_options: Vec<String>,

    /// The job's name in the --state database (default: the output
    /// directory's absolute path).
    #[arg(long, value_name = "NAME", requires = "state")]
    pub job: Option<String>,

    /// haul worker: seconds a claimed item stays this worker's without a
    /// renewal (renewed every third of it while the worker lives); the
    /// items of a worker that dies go to the others after this.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    pub lease: f64,
}

/// A command line that parses but makes no sense.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// A setting the library refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A duration that is negative or not finite.
    #[error("bad {0}: {1} (expected seconds, e.g. 2.5)")]
    Seconds(&'static str, f64),
    /// The first argument reads like a mistyped subcommand.
    #[error("unknown command {word:?}{}; URLs start with http:// or https://, and -i FILE reads a list",
        suggestion.map(|s| format!(" (did you mean {s:?}?)")).unwrap_or_default())]
    UnknownCommand {
        /// What was typed.
        word: String,
        /// The nearest subcommand, if one is near.
        suggestion: Option<&'static str>,
    },
    /// `--store-option` without `=`.
    #[error("--store-option {0:?}: expected KEY=VALUE, e.g. aws_region=eu-west-1")]
    StoreOption(String),
    /// The first argument is a file, given where URLs go.
    #[error("{0:?} is a file, not a URL: to read URLs from it, use -i {0}")]
    FileAsUrl(String),
    /// `--cacert` (or `SSL_CERT_FILE`) is not a PEM file of certificates.
    #[error("{from} {}: {why} (expected PEM certificates, -----BEGIN CERTIFICATE-----)", path.display())]
    CaCert {
        /// `--cacert` or `SSL_CERT_FILE`.
        from: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// Nothing to download.
    #[error(
        "no URLs: give them as arguments, or a list with -i FILE (-i - reads stdin); \
         --retry-failed alone retries the failed items of the job in -o DIR"
    )]
    NoInput,
}

fn parse_size(s: &str) -> Result<u64, String> {
    crate::parse_size(s).ok_or_else(|| format!("{s:?} is not a size such as 500k, 10M or 2G"))
}

fn seconds(name: &'static str, v: f64) -> Result<Duration, UsageError> {
    Duration::try_from_secs_f64(v).map_err(|_| UsageError::Seconds(name, v))
}

/// The error for a first argument that is neither a URL nor anything that
/// could become one: a word (a mistyped `haul stauts`) or an existing file
/// (`haul urls.txt` for `haul -i urls.txt`). Checked before anything is
/// created, so a typo leaves no job state behind.
pub fn unknown_command(args: &Args) -> Option<UsageError> {
    let first = args.urls.first()?;
    if first.contains("://") {
        return None;
    }
    if std::path::Path::new(first).is_file() {
        return Some(UsageError::FileAsUrl(first.clone()));
    }
    let is_word = !first.is_empty()
        && first
            .chars()
            .all(|c| c.is_ascii_alphabetic() || c == '-' || c == '_');
    if !is_word {
        return None;
    }
    let suggestion = COMMANDS
        .iter()
        .map(|c| (strsim::damerau_levenshtein(first, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c);
    Some(UsageError::UnknownCommand {
        word: first.clone(),
        suggestion,
    })
}

impl Args {
    /// The local folder of the job state: the output directory, or for an
    /// object-store output, `--state DIR` or its default folder.
    fn state_dir(&self) -> PathBuf {
        match crate::config::Config::new(vec![], self.output.clone()).writes_objects() {
            true => match &self.state {
                Some(dir) if !dir.contains("://") => PathBuf::from(dir),
                _ => crate::objects::default_state_dir(&self.output.to_string_lossy()),
            },
            false => self.output.clone(),
        }
    }

    /// The job this command line asks for.
    pub fn into_config(self) -> Result<Config, UsageError> {
        self.into_config_for(false)
    }

    /// The job of `haul worker` (no inputs: it claims them), or of a
    /// download.
    pub fn into_config_for(self, worker: bool) -> Result<Config, UsageError> {
        let state_dir = self.state_dir();
        let mut inputs = Vec::new();
        if !self.urls.is_empty() {
            inputs.push(InputSpec::Args(self.urls));
        }
        for path in self.inputs {
            inputs.push(if path.as_os_str() == "-" {
                InputSpec::Stdin
            } else {
                InputSpec::File(path)
            });
        }
        if inputs.is_empty() && !worker {
            if !self.retry_failed {
                return Err(UsageError::NoInput);
            }
            inputs.push(InputSpec::Failed(state_dir));
        }
        let retries = match self.tries {
            Some(0) => u32::MAX,
            Some(n) => n - 1,
            None => self.retries,
        };
        let (mut connect, mut read) = (
            seconds("--connect-timeout", self.connect_timeout)?,
            seconds("--read-timeout", self.read_timeout)?,
        );
        if let Some(t) = self.timeout {
            connect = seconds("--timeout", t)?;
            read = connect;
        }
        let mut cfg = Config::new(inputs, self.output)
            .jobs(self.jobs as usize)
            .fixed_per_host(self.fixed)
            .retries(retries)
            .max_retry_wait(seconds("--max-retry-wait", self.max_retry_wait)?)
            .connect_timeout(connect)
            .read_timeout(read)
            .max_time(
                self.max_time
                    .map(|s| seconds("--max-time", s))
                    .transpose()?,
            )
            .min_speed(
                self.min_speed,
                seconds("--min-speed-time", self.min_speed_time)?,
            )
            .location_trusted(self.location_trusted)
            .insecure(self.insecure)
            .report(self.report)
            .failed_list(self.failed)
            .overwrite(self.overwrite)
            .retry_failed(self.retry_failed)
            .sync(!self.no_sync)
            .glob(!self.globoff)
            .max_size(self.max_size)
            .min_size(self.min_size)
            .no_header(self.no_header)
            .keep_columns(self.keep_columns)
            .checksum_column(self.checksum_column)
            .hash(self.hash)
            .quiet(self.quiet)
            .verbose(self.verbose)
            .progress(self.progress.into())
            .portable_files(self.portable_files);
        if let Some(n) = self.per_host {
            cfg = cfg.per_host(n as usize);
        }
        match &self.state {
            Some(dir) if cfg.writes_objects() && !dir.contains("://") => {
                cfg = cfg.state_dir(dir)?;
            }
            Some(url) => cfg = cfg.state(url, self.job.as_deref())?,
            None => {}
        }
        if let Some(endpoint) = &self.endpoint {
            cfg = cfg.store_option("aws_endpoint", endpoint)?;
            if endpoint.starts_with("http://") {
                cfg = cfg.store_option("aws_allow_http", "true")?;
            }
        }
        for raw in &self.store_options {
            let Some((k, v)) = raw.split_once('=') else {
                return Err(UsageError::StoreOption(raw.clone()));
            };
            cfg = cfg.store_option(k.trim(), v.trim())?;
        }
        for r in &self.rate {
            cfg = cfg.rate(r)?;
        }
        if let Some(w) = self.wait {
            cfg = cfg.wait(Some(seconds("--wait", w)?));
        }
        for raw in &self.headers {
            cfg = cfg.header(raw)?;
        }
        if let Some(ua) = self.user_agent {
            cfg = cfg.user_agent(ua);
        }
        let cacert = self.cacert.clone().map(|p| ("--cacert", p)).or_else(|| {
            std::env::var_os("SSL_CERT_FILE")
                .filter(|v| !v.is_empty())
                .map(|v| ("SSL_CERT_FILE", PathBuf::from(v)))
        });
        if let Some((from, path)) = cacert {
            let ca_error = |why: String| UsageError::CaCert {
                from,
                path: path.clone(),
                why,
            };
            let pem = fs_err::read(&path).map_err(|e| ca_error(e.to_string()))?;
            cfg = cfg.trust_pem(pem).map_err(|e| match e {
                ConfigError::Certificates(why) => ca_error(why),
                other => other.into(),
            })?;
        }
        if let Some(types) = &self.accept {
            cfg = cfg.accept(types)?;
        }
        if let Some(f) = &self.format {
            cfg = cfg.format(f)?;
        }
        if let Some(c) = &self.column {
            cfg = cfg.column(c)?;
        }
        if let Some(t) = &self.url {
            cfg = cfg.url_template(t)?;
        }
        if let Some(t) = &self.name {
            cfg = cfg.name_template(t)?;
        }
        if let Some(t) = &self.meta_url {
            cfg = cfg.meta_url(t)?;
        }
        Ok(cfg)
    }
}

/// `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressArg {
    /// Bars on a terminal, plain lines otherwise.
    Auto,
    /// Bars.
    Bar,
    /// A plain line every few seconds.
    Plain,
    /// Nothing.
    None,
}

impl From<ProgressArg> for ProgressMode {
    fn from(p: ProgressArg) -> Self {
        match p {
            ProgressArg::Auto => ProgressMode::Auto,
            ProgressArg::Bar => ProgressMode::Bar,
            ProgressArg::Plain => ProgressMode::Plain,
            ProgressArg::None => ProgressMode::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn headers_parse() {
        let cfg = || Config::new(vec![], ".");
        assert!(cfg().header("X-Token:  abc ").is_ok());
        assert!(cfg().header("no colon").is_err());
        assert!(cfg().header("bad name: x").is_err());
    }

    #[test]
    fn negative_seconds_are_refused() {
        assert!(seconds("--read-timeout", -1.0).is_err());
        assert_eq!(seconds("x", 2.5).unwrap(), Duration::from_millis(2500));
    }
}
