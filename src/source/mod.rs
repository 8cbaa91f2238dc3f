//! Where URLs come from: command-line arguments, URL list files and stdin.
//!
//! Inputs are opened up front (so a missing file is a usage error before any
//! transfer starts) and then read lazily, one line at a time, on the input
//! thread: a list of millions of lines is never held in memory, and the first
//! transfer starts as soon as the first line is read.

use crate::store::{JobStore, Store};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

pub mod table;

use crate::source::table::{ColumnSpec, Format, Row, Table};

/// One input the user named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputSpec {
    /// URLs given as command-line arguments.
    Args(Vec<String>),
    /// A URL list file.
    File(PathBuf),
    /// A URL list on standard input (`-i -`).
    Stdin,
    /// The failed items recorded in the job state of an output directory
    /// (`--retry-failed` with no other input).
    Failed(PathBuf),
    /// The unfinished pages and files of a crawl in an output directory (a
    /// re-run carries on with them); with `retry_failed`, permanent failures
    /// too.
    Unfinished {
        /// The output directory.
        dir: PathBuf,
        /// Include permanent failures.
        retry_failed: bool,
    },
}

/// An input that could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file could not be opened.
    #[error("cannot read input {path}: {source}")]
    Open {
        /// The file named by the user.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The job state could not be read for `--retry-failed`.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A table input could not be read.
    #[error("{path}: {message}")]
    Table {
        /// The input.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Where an entry was read: input name and 1-based line (or argument) number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `args`, `-` for stdin, or the file path as given.
    pub input: Arc<str>,
    /// 1-based line number (argument position for `args`).
    pub line: u64,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.input, self.line)
    }
}

/// What an entry's URL is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// A file to save.
    #[default]
    File,
    /// A page to crawl (`haul crawl`), at this many links from a start page.
    Page {
        /// Links followed from a start page to reach it.
        depth: u32,
    },
}

/// The crawled page a file was found on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRef {
    /// The page's job-state row.
    pub id: i64,
    /// Its URL.
    pub url: String,
    /// Its title.
    pub title: Option<String>,
    /// The folder its files go to, relative to the output directory.
    pub folder: String,
    /// Its item number (0 when carried over from an earlier run).
    pub n: u64,
}

/// One item of input: a URL (or why there is none), where it was read, and
/// what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Where it was read.
    pub origin: Origin,
    /// The trimmed text, or why it could not be decoded.
    pub text: Result<String, String>,
    /// File or page.
    pub kind: Kind,
    /// The page it was found on, for files found by a crawl.
    pub page: Option<Arc<PageRef>>,
    /// Found on a crawled page (or carried on from an earlier run) rather
    /// than read from the input: a duplicate of it is not an input row.
    pub discovered: bool,
    /// For a page found by a crawl: the page that linked to it.
    pub parent: Option<i64>,
    /// A worker's claimed item, with its row as the claim returned it (the
    /// claim marked it seen): planned without looking it up.
    pub claimed: Option<Box<crate::store::Row>>,
    /// The table row it came from (CSV, TSV, JSONL, parquet inputs).
    pub row: Option<Arc<RowRef>>,
}

impl Entry {
    /// A file entry.
    pub fn new(origin: Origin, text: Result<String, String>) -> Self {
        Self {
            origin,
            text,
            kind: Kind::File,
            page: None,
            discovered: false,
            parent: None,
            claimed: None,
            row: None,
        }
    }
}

/// A table row, shared by the items expanded from it, with what it takes to
/// write it back to a failed list in its own format.
#[derive(Debug, Clone, PartialEq)]
pub struct RowRef {
    /// The row (`None` for a row that could not be read).
    pub row: Option<Arc<Row>>,
    /// Its original text, when the format has one.
    pub raw: Option<String>,
    /// The input's format.
    pub format: Format,
    /// The input's header row (CSV/TSV).
    pub header: Option<Arc<[String]>>,
}

impl RowRef {
    /// The row's fields, for `{col.NAME}`.
    pub fn fields(&self) -> Option<&(dyn crate::template::Fields + Sync)> {
        self.row
            .as_deref()
            .map(|r| r as &(dyn crate::template::Fields + Sync))
    }
}

impl crate::template::Fields for Row {
    fn get(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        Row::get(self, name)
    }
}

/// How table inputs are read.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// Expand URL patterns (`{1..500}`, `{a,b}`).
    pub glob: bool,
    /// Read every file as this format instead of guessing by extension.
    pub format: Option<Format>,
    /// The field holding URLs (`--column`).
    pub column: Option<ColumnSpec>,
    /// Build each item's URL from its row instead (`--url`).
    pub url: Option<crate::template::Template>,
    /// Read a CSV/TSV's first line as data (`--no-header`).
    pub no_header: bool,
    /// Where the job state is when not in the output directory: the
    /// recorded inputs (failed, unfinished items) are read from there.
    pub state: Option<crate::store::PgLocation>,
}

/// Opens the job state a recorded input reads: the shared one, or the
/// output directory's.
fn recorded_store(
    opts: &SourceOptions,
    dir: &std::path::Path,
) -> Result<Box<dyn JobStore>, crate::store::StoreError> {
    Ok(match &opts.state {
        Some(loc) => Box::new(crate::store::PgStore::open_existing(loc)?),
        None => Box::new(Store::open_existing(dir)?),
    })
}

enum Reader {
    Args(std::vec::IntoIter<String>),
    Lines(Box<dyn BufRead + Send>),
    Recorded(std::vec::IntoIter<Entry>),
    Table(Box<TableReader>),
}

/// A table input: rows become entries, one per URL in the URL field (or
/// one per row with `--url`).
struct TableReader {
    table: Table,
    field: Option<String>,
    url: Option<crate::template::Template>,
    /// A first row read ahead to pick the URL column.
    first: Option<crate::source::table::Record>,
    /// Entries of the current row not handed out yet.
    pending: std::collections::VecDeque<Entry>,
}

/// What haul took a table to be, said before the job starts so that a
/// wrong guess is seen at once: where the header is (a CSV's first line is
/// its header unless a cell of it holds a URL, or `--no-header`), and the
/// URL column it picked when none was named.
fn table_note(table: &Table, picked: Option<&str>) -> Option<String> {
    let mut parts = Vec::new();
    if matches!(table.format(), Format::Csv | Format::Tsv) {
        match table.header() {
            Some(h) => parts.push(format!(
                "line 1 is the header ({}; --no-header if it is data)",
                h.join(", ")
            )),
            None => parts.push("no header (line 1 is data; columns by number)".to_string()),
        }
    }
    if let Some(picked) = picked {
        let what = if table.format() == Format::Jsonl {
            format!("URLs from field {picked:?}")
        } else {
            let index = table
                .columns()
                .and_then(|c| c.iter().position(|c| c == picked))
                .or_else(|| picked.parse().ok());
            match index {
                Some(i) if picked != i.to_string() => format!("URLs from column {picked:?} ({i})"),
                _ => format!("URLs from column {picked}"),
            }
        };
        parts.push(format!("{what}; --column names another"));
    }
    (!parts.is_empty()).then(|| format!("{}: {}", table.name(), parts.join("; ")))
}

impl TableReader {
    fn open(
        mut table: Table,
        opts: &SourceOptions,
        path: &std::path::Path,
        notes: &mut Vec<String>,
    ) -> Result<Self, SourceError> {
        let mut first = None;
        let mut field = None;
        if opts.url.is_some() {
            notes.extend(table_note(&table, None));
        }
        if opts.url.is_none() {
            // The URL column is picked on the first good row.
            let mut skipped = std::collections::VecDeque::new();
            for rec in table.by_ref() {
                match &rec.row {
                    Ok(row) => {
                        let picked = crate::source::table::pick_column(
                            table.columns().as_deref(),
                            row,
                            opts.column.as_ref(),
                        )
                        .map_err(|e| SourceError::Table {
                            path: path.to_path_buf(),
                            message: e.to_string(),
                        })?;
                        if opts.column.is_none() {
                            notes.extend(table_note(&table, Some(&picked)));
                        }
                        field = Some(picked);
                        first = Some(rec);
                        break;
                    }
                    Err(_) => skipped.push_back(rec),
                }
            }
            let mut reader = Self {
                table,
                field,
                url: None,
                first,
                pending: std::collections::VecDeque::new(),
            };
            // Bad rows before the first good one are still reported.
            let mut pending = std::collections::VecDeque::new();
            for rec in skipped {
                reader.expand(rec, &mut pending);
            }
            reader.pending = pending;
            return Ok(reader);
        }
        Ok(Self {
            table,
            field,
            url: opts.url.clone(),
            first,
            pending: std::collections::VecDeque::new(),
        })
    }

    fn next(&mut self) -> Option<Entry> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            let rec = match self.first.take() {
                Some(r) => r,
                None => self.table.next()?,
            };
            let mut pending = std::mem::take(&mut self.pending);
            self.expand(rec, &mut pending);
            self.pending = pending;
        }
    }

    /// Turns one record into its entries.
    fn expand(
        &self,
        rec: crate::source::table::Record,
        out: &mut std::collections::VecDeque<Entry>,
    ) {
        let origin = Origin {
            input: self.table.name().into(),
            line: rec.line,
        };
        let row_ref = |row: Option<Arc<Row>>| {
            Arc::new(RowRef {
                row,
                raw: rec.raw.clone(),
                format: self.table.format(),
                header: self.table.header(),
            })
        };
        let row = match &rec.row {
            Ok(row) => row.clone(),
            Err(e) => {
                let mut entry = Entry::new(origin, Err(e.clone()));
                entry.row = Some(row_ref(None));
                out.push_back(entry);
                return;
            }
        };
        let shared = row_ref(Some(row.clone()));
        let urls: Vec<Result<String, String>> = match (&self.url, &self.field) {
            (Some(t), _) => {
                let fields = crate::template::FieldsFn(|name: &str| match name {
                    "row" => Some(rec.line.to_string()),
                    _ => name
                        .strip_prefix("col.")
                        .and_then(|c| row.get(c))
                        .map(|v| v.into_owned()),
                });
                vec![t.render(&fields).map_err(|e| format!("--url: {e}"))]
            }
            (None, Some(field)) => row
                .get(field)
                .map(|cell| crate::source::table::split_urls(&cell))
                .unwrap_or_default()
                .into_iter()
                .map(Ok)
                .collect(),
            (None, None) => Vec::new(),
        };
        if urls.is_empty() {
            // A row without a URL is still a row of the input: it gets its
            // line in the manifest (skipped, "no url").
            let mut entry = Entry::new(origin, Ok(String::new()));
            entry.row = Some(shared);
            out.push_back(entry);
            return;
        }
        for url in urls {
            let mut entry = Entry::new(origin.clone(), url);
            entry.row = Some(shared.clone());
            out.push_back(entry);
        }
    }
}

/// Whether a plain list is read as a one-column table: `--url` and
/// `--column` speak of columns (the list's is `{col.0}`, or `{col.url}`).
fn as_table(opts: &SourceOptions) -> bool {
    opts.url.is_some() || opts.column.is_some()
}

struct Opened {
    name: Arc<str>,
    reader: Reader,
    line: u64,
    /// Entries it gave, to warn about an input with none.
    given: u64,
}

/// All inputs, read in the order given, as one stream of entries.
pub struct Entries {
    inputs: std::vec::IntoIter<Opened>,
    current: Option<Opened>,
    buf: Vec<u8>,
    glob: bool,
    /// What entries read from the inputs are (pages for a crawl).
    kind: Kind,
    /// A URL pattern being expanded, one URL per call.
    expanding: Option<(crate::template::Expansion, Origin)>,
    /// Inputs that ended without giving an entry.
    empty: Vec<Arc<str>>,
    /// What was taken from each table input's first rows, for the user.
    notes: Vec<String>,
}

/// Opens every input now, so that a bad path fails before the job starts.
/// With `glob`, URL patterns (`{1..500}`, `{a,b}`) in arguments and lines
/// are expanded, lazily.
#[cfg(test)]
pub fn open(specs: Vec<InputSpec>, glob: bool) -> Result<Entries, SourceError> {
    open_with(
        specs,
        &SourceOptions {
            glob,
            ..SourceOptions::default()
        },
    )
}

fn table_error(
    path: &std::path::Path,
) -> impl Fn(crate::source::table::TableError) -> SourceError + '_ {
    move |e| SourceError::Table {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// [`open`] with table options: inputs whose format (by extension, or
/// `opts.format`) is CSV, TSV, JSONL or parquet, or that are gzipped, are
/// read as tables.
pub fn open_with(specs: Vec<InputSpec>, opts: &SourceOptions) -> Result<Entries, SourceError> {
    let glob = opts.glob;
    let mut opened = Vec::with_capacity(specs.len());
    let mut notes = Vec::new();
    for spec in specs {
        let (name, reader): (Arc<str>, Reader) = match spec {
            InputSpec::Args(urls) => ("args".into(), Reader::Args(urls.into_iter())),
            InputSpec::Stdin => match opts
                .format
                .filter(|f| *f != Format::Txt || as_table(opts))
                .or_else(|| as_table(opts).then_some(Format::Txt))
            {
                None => (
                    "-".into(),
                    Reader::Lines(Box::new(BufReader::with_capacity(1 << 16, io::stdin()))),
                ),
                Some(format) => {
                    let path = PathBuf::from("-");
                    let table = crate::source::table::open_reader_with(
                        "-",
                        Box::new(io::stdin()),
                        format,
                        false,
                        opts.no_header,
                    )
                    .map_err(table_error(&path))?;
                    let reader = TableReader::open(table, opts, &path, &mut notes)?;
                    ("-".into(), Reader::Table(Box::new(reader)))
                }
            },
            InputSpec::Failed(dir) => {
                let store = recorded_store(opts, &dir)?;
                let mut failed = Vec::new();
                store.each_failed(&mut |url: String, input: String, line: u64| {
                    let origin = Origin {
                        input: input.into(),
                        line,
                    };
                    failed.push(Entry::new(origin, Ok(url)));
                    true
                })?;
                ("failed".into(), Reader::Recorded(failed.into_iter()))
            }
            InputSpec::Unfinished { dir, retry_failed } => {
                let mut items = Vec::new();
                // A first crawl has no job state yet: nothing to carry on.
                if let Ok(store) = recorded_store(opts, &dir) {
                    store.each_unfinished(retry_failed, &mut |u: crate::store::Unfinished| {
                        let origin = Origin {
                            input: u.input.into(),
                            line: u.line,
                        };
                        let mut entry = Entry::new(origin, Ok(u.url));
                        // Also reached again by the crawl: one report each.
                        entry.discovered = true;
                        entry.parent = u.parent;
                        if let Some(depth) = u.page_depth {
                            entry.kind = Kind::Page { depth };
                        }
                        entry.page = u.page.map(|(id, url, title, folder)| {
                            Arc::new(PageRef {
                                id,
                                url,
                                title,
                                folder,
                                n: 0,
                            })
                        });
                        items.push(entry);
                    })?;
                }
                ("unfinished".into(), Reader::Recorded(items.into_iter()))
            }
            InputSpec::File(path)
                if {
                    let (format, gzip) = Format::from_path(&path).unwrap_or((Format::Txt, false));
                    opts.format.unwrap_or(format) != Format::Txt || gzip || as_table(opts)
                } =>
            {
                let (format, gzip) = Format::from_path(&path).unwrap_or((Format::Txt, false));
                let format = opts.format.unwrap_or(format);
                let table = crate::source::table::open_with(&path, format, gzip, opts.no_header)
                    .map_err(table_error(&path))?;
                let reader = TableReader::open(table, opts, &path, &mut notes)?;
                (
                    path.display().to_string().into(),
                    Reader::Table(Box::new(reader)),
                )
            }
            InputSpec::File(path) => {
                let file = std::fs::File::open(&path).map_err(|source| SourceError::Open {
                    path: path.clone(),
                    source,
                })?;
                if file.metadata().is_ok_and(|m| m.is_dir()) {
                    return Err(SourceError::Open {
                        path,
                        source: io::Error::other("is a directory"),
                    });
                }
                let boxed: Box<dyn Read + Send> = Box::new(file);
                (
                    path.display().to_string().into(),
                    Reader::Lines(Box::new(BufReader::with_capacity(1 << 16, boxed))),
                )
            }
        };
        opened.push(Opened {
            name,
            reader,
            line: 0,
            given: 0,
        });
    }
    Ok(Entries {
        inputs: opened.into_iter(),
        current: None,
        buf: Vec::with_capacity(512),
        glob,
        kind: Kind::File,
        expanding: None,
        empty: Vec::new(),
        notes,
    })
}

impl Iterator for Entries {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        let kind = self.kind;
        let mut entry = self.next_any()?;
        if !entry.discovered && entry.page.is_none() && entry.kind == Kind::File {
            entry.kind = kind;
        }
        Some(entry)
    }
}

impl Entries {
    fn next_any(&mut self) -> Option<Entry> {
        if let Some((expansion, origin)) = &mut self.expanding {
            match expansion.next() {
                Some(url) => return Some(Entry::new(origin.clone(), Ok(url))),
                None => self.expanding = None,
            }
        }
        let entry = self.next_line()?;
        match &entry.text {
            Ok(text) if self.glob && crate::template::has_groups(text) => {
                match crate::template::expand(text) {
                    Ok(expansion) => {
                        self.expanding = Some((expansion, entry.origin));
                        self.next_any()
                    }
                    Err(e) => Some(Entry::new(
                        entry.origin,
                        Err(format!(
                            "bad URL pattern {text:?}: {e} (--globoff takes braces literally)"
                        )),
                    )),
                }
            }
            _ => Some(entry),
        }
    }
}

impl Entries {
    /// Entries read from the inputs are of `kind` (job-state entries keep
    /// their own).
    pub fn with_kind(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }

    /// How the table inputs were read (header, URL column), one line each.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The inputs that had no URL in them (an empty file, comments only, a
    /// header only), once read to the end.
    pub fn empty_inputs(&self) -> &[Arc<str>] {
        &self.empty
    }

    fn next_line(&mut self) -> Option<Entry> {
        let Self {
            inputs,
            current,
            buf,
            empty,
            ..
        } = self;
        loop {
            let input = match current {
                Some(input) => input,
                None => {
                    *current = Some(inputs.next()?);
                    continue;
                }
            };
            let mut broken = false;
            let read = match &mut input.reader {
                Reader::Recorded(items) => match items.next() {
                    Some(entry) => {
                        input.given += 1;
                        return Some(entry);
                    }
                    None => None,
                },
                Reader::Table(table) => match table.next() {
                    Some(entry) => {
                        input.given += 1;
                        return Some(entry);
                    }
                    None => None,
                },
                Reader::Args(args) => args.next().map(Ok),
                Reader::Lines(lines) => {
                    buf.clear();
                    match lines.read_until(b'\n', buf) {
                        Ok(0) => None,
                        Ok(_) => Some(
                            match std::str::from_utf8(
                                // Editors on Windows start a UTF-8 file with a BOM.
                                buf.strip_prefix(b"\xEF\xBB\xBF".as_slice())
                                    .filter(|_| input.line == 0)
                                    .unwrap_or(buf),
                            ) {
                                Ok(s) => Ok(s.trim().to_string()),
                                Err(_) => Err("line is not valid UTF-8".to_string()),
                            },
                        ),
                        // A read error ends that input; the entry that
                        // reports it names the file and line.
                        Err(e) => {
                            broken = true;
                            Some(Err(format!("read error: {e}")))
                        }
                    }
                }
            };
            input.line += 1;
            let origin = Origin {
                input: input.name.clone(),
                line: input.line,
            };
            match read {
                None => {
                    let reads_a_list = !matches!(input.reader, Reader::Recorded(_));
                    if input.given == 0 && reads_a_list {
                        empty.push(input.name.clone());
                    }
                    *current = None;
                }
                Some(Ok(text)) if text.is_empty() || text.starts_with('#') => {}
                Some(Err(e)) if broken => {
                    *current = None;
                    return Some(Entry::new(origin, Err(e)));
                }
                Some(text) => {
                    input.given += 1;
                    return Some(Entry::new(origin, text));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_args_then_files_skipping_blanks_and_comments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("urls.txt");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(b"# list\r\nhttp://a/1\r\n\n   \nhttp://a/2\n\xff\xfe\nhttp://a/3")
            .unwrap();
        drop(f);
        let entries: Vec<Entry> = open(
            vec![
                InputSpec::Args(vec!["http://x/0".into()]),
                InputSpec::File(path.clone()),
            ],
            true,
        )
        .unwrap()
        .collect();
        let got: Vec<(String, u64, Result<String, String>)> = entries
            .into_iter()
            .map(|e| (e.origin.input.to_string(), e.origin.line, e.text))
            .collect();
        let file = path.display().to_string();
        assert_eq!(
            got,
            vec![
                ("args".into(), 1, Ok("http://x/0".into())),
                (file.clone(), 2, Ok("http://a/1".into())),
                (file.clone(), 5, Ok("http://a/2".into())),
                (file.clone(), 6, Err("line is not valid UTF-8".into())),
                (file, 7, Ok("http://a/3".into())),
            ]
        );
    }

    #[test]
    fn url_patterns_expand_lazily_and_bad_ones_name_their_line() {
        let args = vec!["http://h/{1..3}.jpg".into(), "http://h/{x".into()];
        let got: Vec<(u64, Result<String, String>)> =
            open(vec![InputSpec::Args(args.clone())], true)
                .unwrap()
                .map(|e| (e.origin.line, e.text))
                .collect();
        assert_eq!(
            got[..3],
            [
                (1, Ok("http://h/1.jpg".into())),
                (1, Ok("http://h/2.jpg".into())),
                (1, Ok("http://h/3.jpg".into())),
            ]
        );
        assert_eq!(got[3].0, 2);
        assert!(
            got[3].1.as_ref().unwrap_err().contains("--globoff"),
            "{got:?}"
        );
        let literal: Vec<Entry> = open(vec![InputSpec::Args(args)], false).unwrap().collect();
        assert_eq!(literal[1].text, Ok("http://h/{x".into()));
        // A billion URLs cost nothing until they are read.
        let mut big = open(
            vec![InputSpec::Args(vec!["http://h/{1..1000000000}".into()])],
            true,
        )
        .unwrap();
        assert_eq!(big.nth(999).unwrap().text, Ok("http://h/1000".into()));
    }

    #[test]
    fn missing_file_is_an_error_naming_it() {
        let err = open(vec![InputSpec::File("/no/such/list.txt".into())], true)
            .err()
            .unwrap();
        assert!(err.to_string().contains("/no/such/list.txt"), "{err}");
    }
}
