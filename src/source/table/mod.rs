//! Tabular URL lists: CSV, TSV, JSONL and parquet, each optionally
//! gzip-compressed, read as a stream of rows.
//!
//! Dataset builders keep URLs in a column beside captions and ids, sometimes
//! several in one cell (a Python list literal written by pandas). This module
//! turns such a file into [`Record`]s (one per data row, with its line), says
//! which field holds the URLs ([`pick_column`]), splits a cell into its URLs
//! ([`split_urls`]) and writes rows back in the input's format ([`RowWriter`])
//! so a failed list can be fed back with `-i`.
//!
//! Design choices:
//! - **Streaming.** Text formats are read one physical line at a time (a line
//!   longer than 64 MiB is reported, not kept); parquet one row group at a
//!   time. No file is ever read whole.
//! - **One bad row never stops the stream.** It becomes a [`Record`] whose
//!   `row` is an `Err` carrying the reason, at the line where it starts; the
//!   next row is read as usual. Only an I/O error ends a table (with one
//!   `Err` record).
//! - **CSV is framed by physical lines.** The `csv` crate's reader never
//!   reports a stray quote: it silently swallows every following line into
//!   one field, up to the next quote character or the end of the file. So
//!   records are parsed here with `csv-core` (the `csv` crate's own parser)
//!   fed one line at a time: a record that needs more lines than its first
//!   (a quoted field spanning lines) and then has the wrong number of fields,
//!   or swallows a line that is a well-formed row of its own, or is never
//!   closed within 10,000 lines or 4 MiB, is reported as an unbalanced quote
//!   at its first line, and reading resumes at the line after it. Legitimate
//!   multi-line fields (captions with newlines) are kept.
//! - **Headers.** CSV/TSV files have a header row, unless a cell of the first
//!   row is an http(s) URL: then the file has none, columns are named by
//!   their 0-based index, and the first row is data (CC3M-style TSV).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use parquet::basic::Compression;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::reader::{ReaderIter, TreeBuilder};
use parquet::record::Field;
use parquet::schema::types::SchemaDescPtr;
use serde_json::Value;

mod cells;
mod delimited;
mod lines;
mod parquet_rows;
mod write;

use cells::*;
pub use cells::{pick_column, split_urls};
use delimited::*;
use lines::*;
use parquet_rows::*;
pub use write::RowWriter;

/// The longest physical line kept; longer lines are reported as bad rows.
const LINE_CAP: usize = 64 << 20;
/// A quoted CSV field may span at most this many lines...
const RECORD_CAP_LINES: usize = 10_000;
/// ...and this many bytes before it is taken for an unbalanced quote.
const RECORD_CAP_BYTES: usize = 4 << 20;
/// How deep [`pick_column`] looks into nested JSON objects.
const JSON_DEPTH: usize = 8;

/// The layout of a URL list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// One URL a line; blank lines and `#` comments skipped.
    Txt,
    /// Comma-separated values with a header row (or none, when the first
    /// row holds a URL).
    Csv,
    /// Tab-separated values, with a header row or none, as CSV.
    Tsv,
    /// One JSON object a line.
    Jsonl,
    /// Apache Parquet (a file, not stdin: it needs seeking).
    Parquet,
}

impl Format {
    /// The format and whether the file is gzip-compressed, from the file
    /// name: `.txt`, `.list`, `.urls` or no extension (txt), `.csv`, `.tsv`
    /// or `.tab`, `.jsonl` or `.ndjson`, `.parquet` or `.pq`, each optionally
    /// followed by `.gz`. `None` for any other extension.
    pub fn from_path(path: &Path) -> Option<(Format, bool)> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        let (stem, gzip) = match name
            .strip_suffix(".gz")
            .or_else(|| name.strip_suffix(".zst"))
        {
            Some(stem) => (stem, true),
            None => (name.as_str(), false),
        };
        let ext = match stem.rsplit_once('.') {
            // `.urls` alone is a hidden file without an extension.
            Some((base, ext)) if !base.is_empty() => ext,
            _ => "",
        };
        let format = match ext {
            "" | "txt" | "list" | "urls" => Format::Txt,
            "csv" => Format::Csv,
            "tsv" | "tab" => Format::Tsv,
            "jsonl" | "ndjson" => Format::Jsonl,
            "parquet" | "pq" => Format::Parquet,
            _ => return None,
        };
        Some((format, gzip))
    }

    /// The format named by `--format`: `txt`, `csv`, `tsv`, `jsonl` (or
    /// `ndjson`), `parquet`; case-insensitive.
    pub fn parse(name: &str) -> Option<Format> {
        Some(match name.to_ascii_lowercase().as_str() {
            "txt" => Format::Txt,
            "csv" => Format::Csv,
            "tsv" => Format::Tsv,
            "jsonl" | "ndjson" => Format::Jsonl,
            "parquet" => Format::Parquet,
            _ => return None,
        })
    }

    /// The name `--format` accepts for this format.
    pub fn name(self) -> &'static str {
        match self {
            Format::Txt => "txt",
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
        }
    }

    /// The format [`RowWriter`] writes rows of this format in: the same,
    /// except parquet, whose rows are written as JSONL.
    pub fn written_as(self) -> Format {
        match self {
            Format::Parquet => Format::Jsonl,
            other => other,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which field holds the URLs (`--column NAME|INDEX`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColumnSpec {
    /// A 0-based column index.
    Index(usize),
    /// A header name, or for JSONL a key or dotted path (`image.url`).
    Name(String),
}

impl FromStr for ColumnSpec {
    type Err = TableError;

    /// All digits is an index, anything else a name.
    fn from_str(s: &str) -> Result<ColumnSpec, TableError> {
        if s.is_empty() {
            return Err(TableError::ColumnSpec(
                "the column is empty: give a header name, a 0-based index or a dotted JSON path"
                    .into(),
            ));
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(ColumnSpec::Index)
                .map_err(|_| TableError::ColumnSpec(format!("column index {s} is too large")));
        }
        Ok(ColumnSpec::Name(s.to_string()))
    }
}

impl fmt::Display for ColumnSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnSpec::Index(i) => write!(f, "{i}"),
            ColumnSpec::Name(name) => f.write_str(name),
        }
    }
}

/// A table that could not be opened, or a column that could not be picked.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The file could not be opened.
    #[error("cannot read input {path}: {source}")]
    Open {
        /// The file named by the user.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// Reading the start of the input failed.
    #[error("cannot read input {name}: {source}")]
    Read {
        /// The input's name.
        name: Arc<str>,
        /// What the OS said.
        source: io::Error,
    },
    /// The input was said to be compressed (`.gz`, `.zst`) but is not.
    #[error(
        "{name} is not gzip- or zstd-compressed (it starts with neither's header); \
         rename it without .gz or .zst"
    )]
    NotGzip {
        /// The input's name.
        name: Arc<str>,
    },
    /// A parquet file that the parquet reader rejects.
    #[error("{name} is not a readable parquet file: {source}")]
    Parquet {
        /// The input's name.
        name: Arc<str>,
        /// What the parquet reader said.
        source: parquet::errors::ParquetError,
    },
    /// A parquet file compressed with a codec this build does not read.
    #[error(
        "{name} is compressed with {codec}, which haul does not read \
         (it reads uncompressed, snappy, gzip, lz4, zstd and brotli parquet); re-save it \
         with zstd or snappy"
    )]
    ParquetCodec {
        /// The input's name.
        name: Arc<str>,
        /// The codec, e.g. `zstd`.
        codec: &'static str,
    },
    /// Parquet from a pipe (stdin): parquet needs seeking.
    #[error("{name}: parquet cannot be read from a stream (it needs seeking); pass the file with -i FILE")]
    ParquetStream {
        /// The input's name.
        name: Arc<str>,
    },
    /// A gzip- or zstd-compressed parquet file.
    #[error("{name}: compressed parquet is not supported (parquet compresses its own pages); decompress it first")]
    ParquetGzip {
        /// The input's name.
        name: Arc<str>,
    },
    /// A CSV/TSV input with no header row (an empty file).
    #[error("{name} is empty: a {format} input needs a header row")]
    NoHeader {
        /// The input's name.
        name: Arc<str>,
        /// csv or tsv.
        format: Format,
    },
    /// The header row could not be read.
    #[error("{name}:{line}: cannot read the header row: {reason}")]
    Header {
        /// The input's name.
        name: Arc<str>,
        /// 1-based line of the header.
        line: u64,
        /// Why.
        reason: String,
    },
    /// A `--column` value that is not a column spec.
    #[error("{0}")]
    ColumnSpec(String),
    /// `--column NAME` names no column of the header.
    #[error("no column named `{name}`; the header has: {columns}")]
    NoSuchColumn {
        /// The name asked for.
        name: String,
        /// The header's names, comma-separated.
        columns: String,
    },
    /// `--column INDEX` past the last column.
    #[error("column index {index} is out of range: the header has {count} columns (indexes 0 to {last})", last = .count.saturating_sub(1))]
    ColumnIndex {
        /// The index asked for.
        index: usize,
        /// How many columns there are.
        count: usize,
    },
    /// No `--column`, and no field of the first row holds an http(s) URL.
    #[error("no column holds an http(s) URL in the first row (looked at: {looked_at}); name the URL column with --column NAME or --column INDEX (0-based)")]
    NoUrlColumn {
        /// The fields looked at, comma-separated.
        looked_at: String,
    },
}

/// One data row of a table, shared (in an `Arc`) by the items expanded from
/// it.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    /// A CSV, TSV, txt or parquet row: one value per column. Parquet values
    /// are stringified: numbers and booleans as text, null as `""`, dates and
    /// timestamps as parquet prints them, lists, maps and groups as compact
    /// JSON.
    Table {
        /// The column names, shared by all rows of the table.
        columns: Arc<[String]>,
        /// The values, as many as `columns`.
        values: Vec<String>,
    },
    /// A JSONL row: always an object.
    Json(Value),
}

impl Row {
    /// The field `name`: a column by name (or, failing that, by decimal
    /// index) for a table row; a key or dotted path (`image.url`, `urls.0`)
    /// for a JSON row, where strings come as they are, numbers and booleans
    /// as text, objects and arrays as compact JSON, and null as `None`.
    pub fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        match self {
            Row::Table { columns, values } => {
                let i = columns
                    .iter()
                    .position(|c| c == name)
                    .or_else(|| name.parse().ok())?;
                values.get(i).map(|v| Cow::Borrowed(v.as_str()))
            }
            Row::Json(value) => json_text(json_path(value, name)?),
        }
    }

    /// The row as a JSON object of field → value (table values as strings),
    /// for copying columns into the manifest.
    pub fn to_json(&self) -> Value {
        match self {
            Row::Table { columns, values } => Value::Object(
                columns
                    .iter()
                    .zip(values)
                    .map(|(c, v)| (c.clone(), Value::String(v.clone())))
                    .collect(),
            ),
            Row::Json(value) => value.clone(),
        }
    }
}

fn json_path<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    // A key may itself hold dots: the whole path as a key wins.
    if let Some(found) = value.as_object().and_then(|o| o.get(path)) {
        return Some(found);
    }
    let mut current = value;
    for segment in path.split('.') {
        current = match current {
            Value::Object(map) => map.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(current)
}

fn json_text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s)),
        other => Some(Cow::Owned(other.to_string())),
    }
}

/// A row read from a table, or why it could not be read.
#[derive(Debug, Clone)]
pub struct Record {
    /// 1-based physical line where the row starts (parquet: 1-based row
    /// number).
    pub line: u64,
    /// The row, or why it is bad (broken quote, wrong field count, not UTF-8,
    /// not a JSON object, read error).
    pub row: Result<Arc<Row>, String>,
    /// The row's original text without its line terminator (txt, CSV, TSV,
    /// JSONL; `None` for parquet and read errors), for the failed list. A
    /// bad CSV row's text is its first line.
    pub raw: Option<String>,
}

/// A table being read: an iterator of [`Record`]s.
pub struct Table {
    name: Arc<str>,
    format: Format,
    columns: Option<Arc<[String]>>,
    header: Option<Arc<[String]>>,
    kind: Kind,
}

enum Kind {
    Txt(Lines),
    Jsonl(Lines),
    Delimited(Box<Delimited>),
    Parquet(Box<ParquetRows>),
}

impl Table {
    /// The input's name (the path as given, or `-`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The format being read.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The names of the columns of [`Row::Table`] rows: the header for
    /// CSV/TSV (`0`, `1`, … when the file has none), the schema's top-level
    /// fields for parquet, `url` for txt; `None` for JSONL.
    pub fn columns(&self) -> Option<Arc<[String]>> {
        self.columns.clone()
    }

    /// The header row as read from a CSV/TSV file, for [`RowWriter::new`]:
    /// `None` for a CSV/TSV file without one and for the other formats.
    pub fn header(&self) -> Option<Arc<[String]>> {
        self.header.clone()
    }
}

impl Iterator for Table {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        match &mut self.kind {
            Kind::Txt(lines) => next_txt(lines, self.columns.as_ref()?),
            Kind::Jsonl(lines) => next_jsonl(lines),
            Kind::Delimited(d) => d.next_record(),
            Kind::Parquet(p) => p.next_record(),
        }
    }
}

/// Opens the file `path` for streaming. A missing or unreadable file, a
/// `.gz` file that is not gzip, a file that is not parquet, or a CSV/TSV
/// file without a header row is an error naming the path.
///
/// Gzip is detected by its magic bytes as well, so `gzip` only makes a plain
/// file an error.
#[cfg(test)]
pub fn open(path: &Path, format: Format, gzip: bool) -> Result<Table, TableError> {
    open_with(path, format, gzip, false)
}

/// [`open`], with `no_header` to read a CSV/TSV's first line as data.
pub fn open_with(
    path: &Path,
    format: Format,
    gzip: bool,
    no_header: bool,
) -> Result<Table, TableError> {
    let name: Arc<str> = path.display().to_string().into();
    let open_error = |source| TableError::Open {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(open_error)?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(open_error(io::Error::other("is a directory")));
    }
    if format == Format::Parquet {
        if gzip {
            return Err(TableError::ParquetGzip { name });
        }
        return ParquetRows::open(name, file);
    }
    open_stream(name, Box::new(file), format, gzip, no_header)
}

/// Opens a stream (stdin) for reading as a table named `name`. Parquet is an
/// error: it needs seeking.
#[cfg(test)]
pub fn open_reader(
    name: &str,
    reader: Box<dyn Read + Send>,
    format: Format,
    gzip: bool,
) -> Result<Table, TableError> {
    open_reader_with(name, reader, format, gzip, false)
}

/// [`open_reader`], with `no_header` to read a CSV/TSV's first line as data.
pub fn open_reader_with(
    name: &str,
    reader: Box<dyn Read + Send>,
    format: Format,
    gzip: bool,
    no_header: bool,
) -> Result<Table, TableError> {
    let name: Arc<str> = name.into();
    if format == Format::Parquet {
        return Err(TableError::ParquetStream { name });
    }
    open_stream(name, reader, format, gzip, no_header)
}

fn open_stream(
    name: Arc<str>,
    mut reader: Box<dyn Read + Send>,
    format: Format,
    gzip: bool,
    no_header: bool,
) -> Result<Table, TableError> {
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < magic.len() {
        match reader.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => return Err(TableError::Read { name, source }),
        }
    }
    let is_gzip = magic[..got].starts_with(&[0x1f, 0x8b]);
    let is_zstd = magic[..got] == [0x28, 0xb5, 0x2f, 0xfd];
    if gzip && got > 0 && !is_gzip && !is_zstd {
        return Err(TableError::NotGzip { name });
    }
    let reader: Box<dyn Read + Send> =
        Box::new(io::Cursor::new(magic[..got].to_vec()).chain(reader));
    let reader: Box<dyn Read + Send> = if is_gzip {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else if is_zstd {
        Box::new(
            zstd::stream::read::Decoder::new(reader).map_err(|source| TableError::Read {
                name: name.clone(),
                source,
            })?,
        )
    } else {
        reader
    };
    let mut reader = BufReader::with_capacity(1 << 16, reader);
    // A UTF-8 byte order mark (Excel writes one) is not part of the first
    // column's name.
    if reader
        .fill_buf()
        .is_ok_and(|b| b.starts_with(b"\xEF\xBB\xBF"))
    {
        reader.consume(3);
    }
    let lines = Lines::new(Box::new(reader));
    let (kind, columns, header) = match format {
        Format::Txt => (
            Kind::Txt(lines),
            Some(Arc::from(vec!["url".to_string()])),
            None,
        ),
        Format::Jsonl => (Kind::Jsonl(lines), None, None),
        Format::Csv | Format::Tsv => {
            let delimiter = if format == Format::Csv { b',' } else { b'\t' };
            let d = Delimited::open(&name, format, lines, delimiter, no_header)?;
            let (columns, header) = (Some(d.columns.clone()), d.header.clone());
            (Kind::Delimited(Box::new(d)), columns, header)
        }
        Format::Parquet => return Err(TableError::ParquetStream { name }),
    };
    Ok(Table {
        name,
        format,
        columns,
        header,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;

    fn read_all(table: Table) -> Vec<Record> {
        table.collect()
    }

    fn stream(format: Format, text: &[u8]) -> Table {
        open_reader("-", Box::new(Cursor::new(text.to_vec())), format, false).unwrap()
    }

    /// Line and either the field `column` or the error.
    fn summary(records: &[Record], column: &str) -> Vec<(u64, Result<String, String>)> {
        records
            .iter()
            .map(|r| {
                let value = r.row.as_ref().map(|row| {
                    row.get(column)
                        .map(|v| v.into_owned())
                        .unwrap_or_else(|| "<none>".into())
                });
                (r.line, value.map_err(|e| e.clone()))
            })
            .collect()
    }

    const WEIBO_HEADER: &str =
        "id,bid,user_id,screen_name,text,topics,created_at,source,pics,attitudes";

    /// Shaped like the seed's `weibo.csv`: 10 columns, `pics` (index 8)
    /// holding Python list literals, text with commas and quotes, a
    /// multi-line field, and malformed rows.
    fn weibo_csv() -> Vec<u8> {
        let mut csv = Vec::new();
        let lines: [&[u8]; 14] = [
            WEIBO_HEADER.as_bytes(),
            // 2: three URLs, mixed quote styles; quoted text with commas and "".
            br#"4501,Jx1,1669879400,"Dear ""Lily"", hi","Good morning, world",#topic#,2021-01-01 08:00,iPhone,"['http://wx1.sinaimg.cn/large/a1.jpg', 'http://wx2.sinaimg.cn/large/a2.jpg', ""http://wx3.sinaimg.cn/large/a3.jpg""]",12"#,
            // 3: no pictures.
            b"4502,Jx2,1669879400,Lily,no pics today,,2021-01-02 09:00,Android,[],0",
            // 4: one URL.
            br#"4503,Jx3,1669879401,Bob,"one pic, one line",,2021-01-03 10:00,web,"['http://wx1.sinaimg.cn/large/b1.jpg']",3"#,
            // 5-6: a quoted field spanning two lines (legitimate).
            b"4504,Jx4,1669879402,Carol,\"first line\nsecond, line\",,2021-01-04 11:00,web,\"['http://wx1.sinaimg.cn/large/c1.jpg', 'http://wx1.sinaimg.cn/large/c2.jpg']\",7",
            // 7: a stray quote that closes on the same line: wrong width.
            br#"4505,Jx5,1669879403,Dave,"unclosed text, here,loc,2021,web,"['http://wx1.sinaimg.cn/large/d1.jpg']",1"#,
            // 8: an unbalanced quote that swallows line 9.
            br#"4506,Jx6,1669879404,Eve,"this text never closes,,2021-01-06,web,[],0"#,
            // 9: a good row; its quote ends the swallowed field.
            br#"4507,Jx7,1669879405,Frank,fine,,2021-01-07,web,"['http://wx1.sinaimg.cn/large/e1.jpg', 'http://wx1.sinaimg.cn/large/e2.jpg',]",2"#,
            // 10: missing fields.
            b"4508,Jx8,1669879406,Grace,short row",
            // 11: not UTF-8.
            b"4509,Jx9,1669879407,\xff\xfe,bad bytes,,2021-01-09,web,[],0",
            // 12: blank.
            b"",
            // 13: escapes in the Python literal.
            br#"4510,JxA,1669879408,Heidi,escapes,,2021-01-10,web,"[u'http://wx1.sinaimg.cn/large/it\'s.jpg', ""http://wx1.sinaimg.cn/large/q\""x.jpg""]",0"#,
            // 14: whitespace only.
            b"   ",
            // 15: the last row, without a newline, a JSON list.
            br#"4511,JxB,1669879409,Ivan,last,,2021-01-11,web,"[""http://wx1.sinaimg.cn/large/f1.jpg""]",9"#,
        ];
        for (i, line) in lines.iter().enumerate() {
            csv.extend_from_slice(line);
            if i + 1 < lines.len() {
                csv.push(b'\n');
            }
        }
        csv
    }

    #[test]
    fn weibo_shaped_csv_streams_rows_with_lines_and_bad_rows() {
        let table = stream(Format::Csv, &weibo_csv());
        let columns = table.columns().unwrap();
        assert_eq!(columns.len(), 10);
        assert_eq!(columns[8], "pics");
        assert_eq!(table.header().as_deref(), Some(&columns[..]));
        let records = read_all(table);
        let got = summary(&records, "pics");
        let ok = |s: &str| Ok::<String, String>(s.to_string());
        assert_eq!(got[0], (2, ok("['http://wx1.sinaimg.cn/large/a1.jpg', 'http://wx2.sinaimg.cn/large/a2.jpg', \"http://wx3.sinaimg.cn/large/a3.jpg\"]")));
        assert_eq!(got[1], (3, ok("[]")));
        assert_eq!(got[2], (4, ok("['http://wx1.sinaimg.cn/large/b1.jpg']")));
        assert_eq!(got[3].0, 5);
        assert_eq!(got[4], (7, Err("expected 10 fields, found 6".into())));
        assert_eq!(got[5].0, 8);
        assert!(
            got[5]
                .1
                .as_ref()
                .unwrap_err()
                .starts_with("unbalanced quote"),
            "{:?}",
            got[5]
        );
        assert_eq!(got[6].0, 9);
        assert!(got[6].1.is_ok(), "{:?}", got[6]);
        assert_eq!(got[7], (10, Err("expected 10 fields, found 5".into())));
        assert_eq!(got[8], (11, Err("line is not valid UTF-8".into())));
        assert_eq!(got[9].0, 13);
        assert_eq!(
            got[10],
            (15, ok("[\"http://wx1.sinaimg.cn/large/f1.jpg\"]"))
        );
        assert_eq!(got.len(), 11);

        // Fields with commas, doubled quotes and newlines come out whole.
        let row = records[0].row.as_ref().unwrap();
        assert_eq!(row.get("screen_name").unwrap(), "Dear \"Lily\", hi");
        assert_eq!(row.get("4").unwrap(), "Good morning, world");
        let row = records[3].row.as_ref().unwrap();
        assert_eq!(row.get("text").unwrap(), "first line\nsecond, line");
        assert_eq!(
            records[3].raw.as_deref().unwrap().lines().count(),
            2,
            "the raw text of a multi-line row holds both lines"
        );
        // Bad rows keep their first line as raw text, for the failed list.
        assert!(records[5].raw.as_deref().unwrap().starts_with("4506,"));

        // The URL column is found without --column: the first data row
        // holds a list literal.
        let first = records[0].row.as_ref().unwrap();
        assert_eq!(pick_column(Some(&columns), first, None).unwrap(), "pics");
        assert_eq!(
            pick_column(Some(&columns), first, Some(&ColumnSpec::Index(8))).unwrap(),
            "pics"
        );

        let mut urls: Vec<String> = records
            .iter()
            .filter_map(|r| r.row.as_ref().ok())
            .flat_map(|row| split_urls(&row.get("pics").unwrap()))
            .collect();
        let expected = [
            "a1.jpg", "a2.jpg", "a3.jpg", "b1.jpg", "c1.jpg", "c2.jpg", "e1.jpg", "e2.jpg",
            "it's.jpg", "q\"x.jpg", "f1.jpg",
        ];
        let expected: Vec<String> = expected
            .iter()
            .map(|name| {
                let host = match *name {
                    "a2.jpg" => "wx2",
                    "a3.jpg" => "wx3",
                    _ => "wx1",
                };
                format!("http://{host}.sinaimg.cn/large/{name}")
            })
            .collect();
        assert_eq!(urls, expected);
        urls.sort();
        urls.dedup();
        assert_eq!(urls.len(), expected.len(), "every URL once");
    }

    #[test]
    fn stray_quote_that_swallows_rows_is_reported_and_they_are_read_again() {
        let text = b"id,text,url\n\
            1,\"stray quote,http://a/1\n\
            2,fine,http://a/2\n\
            3,fine,http://a/3\n\
            4,another stray\" here,http://a/4\n\
            5,ok,http://a/5\n";
        let records = read_all(stream(Format::Csv, text));
        let got = summary(&records, "url");
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got[0].0, 2);
        assert!(
            got[0].1.as_ref().unwrap_err().contains("swallows line 3"),
            "{:?}",
            got[0]
        );
        assert_eq!(
            got[1..],
            [
                (3, Ok("http://a/2".to_string())),
                (4, Ok("http://a/3".to_string())),
                (5, Ok("http://a/4".to_string())),
                (6, Ok("http://a/5".to_string())),
            ]
        );
    }

    #[test]
    fn unbalanced_quotes_with_crlf_are_reported_and_reading_resumes() {
        // Line 2's quote pairs with line 4's: one 2-field row, reported.
        let text = b"id,text,url\r\n1,\"stray,http://a/1\r\n2,x,http://a/2\r\n3,\"two\r\nlines\",http://a/3\r\n4,ok,http://a/4";
        let records = read_all(stream(Format::Csv, text));
        let got = summary(&records, "url");
        assert_eq!(got[0].0, 2);
        assert_eq!(
            got[0].1,
            Err("unbalanced quote: the row runs to line 4 and has 2 fields, expected 3".into())
        );
        assert_eq!(records[0].raw.as_deref(), Some("1,\"stray,http://a/1"));
        assert_eq!(got[1], (3, Ok("http://a/2".into())));
        // Line 4 opens a legitimate two-line field.
        assert_eq!(got[2], (4, Ok("http://a/3".into())));
        let row = records[2].row.as_ref().unwrap();
        assert_eq!(row.get("text").unwrap(), "two\r\nlines");
        assert_eq!(got[3], (6, Ok("http://a/4".into())));
        assert_eq!(got.len(), 4);

        // A quote that no later line closes.
        let text = b"id,url\n1,\"http://a/1\n2,http://a/2\n3,http://a/3\n";
        let got = summary(&read_all(stream(Format::Csv, text)), "url");
        assert_eq!(
            got,
            [
                (
                    2,
                    Err(
                        "unbalanced quote: a quoted field opened on this line is never closed"
                            .into()
                    )
                ),
                (3, Ok("http://a/2".into())),
                (4, Ok("http://a/3".into())),
            ]
        );
    }

    #[test]
    fn header_problems_are_errors_naming_the_input() {
        let err = open_reader(
            "list.csv",
            Box::new(Cursor::new(b"\n\n".to_vec())),
            Format::Csv,
            false,
        )
        .err()
        .unwrap();
        assert!(matches!(err, TableError::NoHeader { .. }), "{err}");
        assert!(err.to_string().contains("list.csv"), "{err}");
        let err = open_reader(
            "h.csv",
            Box::new(Cursor::new(b"a,\xff\n".to_vec())),
            Format::Csv,
            false,
        )
        .err()
        .unwrap();
        assert_eq!(
            err.to_string(),
            "h.csv:1: cannot read the header row: line is not valid UTF-8"
        );
    }

    #[test]
    fn tsv_with_a_header_and_without_one() {
        let text = b"\xef\xbb\xbfcaption\tURL\n\"a \"\"quoted\"\" caption\"\thttp://a/1.jpg\nplain, with comma\thttp://a/2.jpg\n";
        let table = stream(Format::Tsv, text);
        assert_eq!(
            table.columns().unwrap()[..],
            ["caption".to_string(), "URL".to_string()]
        );
        let records = read_all(table);
        let first = records[0].row.as_ref().unwrap();
        assert_eq!(first.get("caption").unwrap(), "a \"quoted\" caption");
        assert_eq!(pick_column(None, first, None).unwrap(), "URL");
        assert_eq!(
            pick_column(None, first, Some(&ColumnSpec::Name("url".into()))).unwrap(),
            "URL"
        );
        assert_eq!(
            summary(&records, "URL")[1],
            (3, Ok("http://a/2.jpg".into()))
        );

        // CC3M-style: no header, the first row is data, columns by index.
        let table = stream(Format::Tsv, b"a dog\thttp://a/1.jpg\na cat\thttp://a/2.jpg");
        assert_eq!(
            table.columns().unwrap()[..],
            ["0".to_string(), "1".to_string()]
        );
        assert_eq!(table.header(), None);
        let records = read_all(table);
        assert_eq!(
            summary(&records, "1"),
            [
                (1, Ok("http://a/1.jpg".into())),
                (2, Ok("http://a/2.jpg".into()))
            ]
        );
        let first = records[0].row.as_ref().unwrap();
        assert_eq!(pick_column(None, first, None).unwrap(), "1");
    }

    #[test]
    fn jsonl_rows_dotted_paths_and_bad_lines() {
        let text = br#"{"id": 1, "image": {"url": "http://a/1.jpg", "w": 640}, "caption": "x", "tags": ["a", "b"], "gone": null}

not json
[1, 2]
{"id": 2, "image": {"url": "http://a/2.jpg"}, "urls": ["http://b/1", "http://b/2"]}
"#;
        let table = stream(Format::Jsonl, text);
        assert_eq!(table.columns(), None);
        let records = read_all(table);
        let got = summary(&records, "image.url");
        assert_eq!(got[0], (1, Ok("http://a/1.jpg".into())));
        assert_eq!(got[1].0, 3);
        assert!(
            got[1].1.as_ref().unwrap_err().starts_with("not valid JSON"),
            "{got:?}"
        );
        assert_eq!(
            got[2],
            (4, Err("not a JSON object (found an array)".into()))
        );
        assert_eq!(got[3], (5, Ok("http://a/2.jpg".into())));
        assert_eq!(records[1].raw.as_deref(), Some("not json"));

        let first = records[0].row.as_ref().unwrap();
        assert_eq!(pick_column(None, first, None).unwrap(), "image.url");
        assert_eq!(
            pick_column(None, first, Some(&ColumnSpec::Name("image.url".into()))).unwrap(),
            "image.url"
        );
        assert_eq!(first.get("id").unwrap(), "1");
        assert_eq!(first.get("image.w").unwrap(), "640");
        assert_eq!(first.get("tags").unwrap(), r#"["a","b"]"#);
        assert_eq!(first.get("tags.1").unwrap(), "b");
        assert_eq!(first.get("gone"), None);
        assert_eq!(first.get("missing"), None);
        assert_eq!(first.to_json()["image"]["w"], 640);

        // A list of URLs in a JSON array is found too.
        let second = records[3].row.as_ref().unwrap();
        let row = Row::Json(serde_json::json!({"id": 2, "urls": second.to_json()["urls"]}));
        assert_eq!(pick_column(None, &row, None).unwrap(), "urls");
        assert_eq!(
            split_urls(&row.get("urls").unwrap()),
            ["http://b/1", "http://b/2"]
        );
    }

    #[test]
    fn gzip_csv_by_name_and_by_magic() {
        use flate2::write::GzEncoder;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("list.csv.gz");
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"id,url\n1,http://a/1\n2,http://a/2\n")
            .unwrap();
        let bytes = gz.finish().unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let (format, gzip) = Format::from_path(&path).unwrap();
        assert_eq!((format, gzip), (Format::Csv, true));
        let records = read_all(open(&path, format, gzip).unwrap());
        assert_eq!(
            summary(&records, "url"),
            [(2, Ok("http://a/1".into())), (3, Ok("http://a/2".into()))]
        );
        // Compressed data is recognised whatever the name says.
        let records =
            read_all(open_reader("-", Box::new(Cursor::new(bytes)), Format::Csv, false).unwrap());
        assert_eq!(records.len(), 2);

        let plain = dir.path().join("plain.csv.gz");
        std::fs::write(&plain, "id,url\n").unwrap();
        let err = open(&plain, Format::Csv, true).err().unwrap();
        assert!(matches!(err, TableError::NotGzip { .. }), "{err}");
        assert!(err.to_string().contains("plain.csv.gz"), "{err}");
    }

    #[test]
    fn zstd_jsonl_by_name_and_by_magic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl.zst");
        let bytes = zstd::stream::encode_all(
            &b"{\"url\": \"http://a/1\"}\n{\"url\": \"http://a/2\"}\n"[..],
            3,
        )
        .unwrap();
        std::fs::write(&path, &bytes).unwrap();
        let (format, compressed) = Format::from_path(&path).unwrap();
        assert_eq!((format, compressed), (Format::Jsonl, true));
        let records = read_all(open(&path, format, compressed).unwrap());
        assert_eq!(records.len(), 2);
        let records =
            read_all(open_reader("-", Box::new(Cursor::new(bytes)), Format::Jsonl, false).unwrap());
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn missing_file_and_directory_are_errors_naming_them() {
        let err = open(Path::new("/no/such/list.csv"), Format::Csv, false)
            .err()
            .unwrap();
        assert!(err.to_string().contains("/no/such/list.csv"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let err = open(dir.path(), Format::Jsonl, false).err().unwrap();
        assert!(err.to_string().contains("is a directory"), "{err}");
    }

    #[test]
    fn a_read_error_ends_the_table_with_one_record() {
        struct Failing(Cursor<Vec<u8>>);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                match self.0.read(buf)? {
                    0 => Err(io::Error::other("disk on fire")),
                    n => Ok(n),
                }
            }
        }
        for format in [Format::Csv, Format::Jsonl, Format::Txt] {
            let text = match format {
                Format::Csv => "url\nhttp://a/1\n",
                Format::Jsonl => "{\"url\": \"http://a/1\"}\n",
                _ => "http://a/1\n",
            };
            let reader = Failing(Cursor::new(text.as_bytes().to_vec()));
            let records = read_all(open_reader("-", Box::new(reader), format, false).unwrap());
            assert_eq!(records.len(), 2, "{format}: {records:?}");
            assert!(records[0].row.is_ok());
            assert_eq!(
                records[1].row.as_ref().unwrap_err(),
                "read error: disk on fire"
            );
        }
    }

    #[test]
    fn txt_lines_become_rows_with_a_url_column() {
        let table = stream(Format::Txt, b"# list\nhttp://a/1\n\n  http://a/2  \n\xff\n");
        assert_eq!(table.columns().unwrap()[..], ["url".to_string()]);
        let records = read_all(table);
        assert_eq!(
            summary(&records, "url"),
            [
                (2, Ok("http://a/1".into())),
                (4, Ok("http://a/2".into())),
                (5, Err("line is not valid UTF-8".into())),
            ]
        );
        assert_eq!(records[1].raw.as_deref(), Some("  http://a/2  "));
    }

    /// Writes a parquet file with two row groups: ids, URLs (one null), a
    /// double, a boolean and a list of strings; compressed with snappy,
    /// gzip, zstd and brotli, one codec a column or two.
    fn write_parquet(path: &Path) {
        use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
        use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        use parquet::schema::parser::parse_message_type;
        use parquet::schema::types::ColumnPath;

        let schema = "message rows {
            REQUIRED INT64 id;
            OPTIONAL BINARY url (UTF8);
            OPTIONAL DOUBLE score;
            OPTIONAL BOOLEAN ok;
            OPTIONAL GROUP more (LIST) {
                REPEATED GROUP list {
                    OPTIONAL BINARY element (UTF8);
                }
            }
        }";
        let schema = Arc::new(parse_message_type(schema).unwrap());
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_column_compression(
                ColumnPath::from("url"),
                Compression::GZIP(GzipLevel::default()),
            )
            .set_column_compression(
                ColumnPath::from("score"),
                Compression::ZSTD(ZstdLevel::default()),
            )
            .set_column_compression(
                ColumnPath::from("ok"),
                Compression::BROTLI(BrotliLevel::default()),
            )
            .build();
        let file = std::fs::File::create(path).unwrap();
        let mut writer = SerializedFileWriter::new(file, schema, Arc::new(props)).unwrap();
        // (ids, urls with None for null, scores, oks, lists: None = null list)
        type Group<'a> = (
            &'a [i64],
            &'a [Option<&'a str>],
            &'a [f64],
            &'a [bool],
            &'a [Option<&'a [&'a str]>],
        );
        let groups: [Group; 2] = [
            (
                &[1, 2],
                &[Some("http://a/1.jpg"), None],
                &[0.5, 2.0],
                &[true, false],
                &[Some(&["http://b/1", "http://b/2"]), Some(&[])],
            ),
            (&[3], &[Some("http://a/3.jpg")], &[-1.25], &[true], &[None]),
        ];
        for (ids, urls, scores, oks, lists) in groups {
            let mut rg = writer.next_row_group().unwrap();
            let mut col = rg.next_column().unwrap().unwrap();
            col.typed::<Int64Type>()
                .write_batch(ids, None, None)
                .unwrap();
            col.close().unwrap();

            let mut col = rg.next_column().unwrap().unwrap();
            let values: Vec<ByteArray> =
                urls.iter().flatten().map(|u| ByteArray::from(*u)).collect();
            let defs: Vec<i16> = urls.iter().map(|u| i16::from(u.is_some())).collect();
            col.typed::<ByteArrayType>()
                .write_batch(&values, Some(&defs), None)
                .unwrap();
            col.close().unwrap();

            let mut col = rg.next_column().unwrap().unwrap();
            let defs = vec![1; scores.len()];
            col.typed::<DoubleType>()
                .write_batch(scores, Some(&defs), None)
                .unwrap();
            col.close().unwrap();

            let mut col = rg.next_column().unwrap().unwrap();
            let defs = vec![1; oks.len()];
            col.typed::<BoolType>()
                .write_batch(oks, Some(&defs), None)
                .unwrap();
            col.close().unwrap();

            let mut col = rg.next_column().unwrap().unwrap();
            let (mut values, mut defs, mut reps) = (Vec::new(), Vec::new(), Vec::new());
            for list in lists {
                match list {
                    None => {
                        defs.push(0);
                        reps.push(0);
                    }
                    Some([]) => {
                        defs.push(1);
                        reps.push(0);
                    }
                    Some(items) => {
                        for (i, item) in items.iter().enumerate() {
                            values.push(ByteArray::from(*item));
                            defs.push(3);
                            reps.push(i16::from(i > 0));
                        }
                    }
                }
            }
            col.typed::<ByteArrayType>()
                .write_batch(&values, Some(&defs), Some(&reps))
                .unwrap();
            col.close().unwrap();
            rg.close().unwrap();
        }
        writer.close().unwrap();
    }

    #[test]
    fn parquet_rows_come_one_row_group_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.parquet");
        write_parquet(&path);
        let (format, gzip) = Format::from_path(&path).unwrap();
        assert_eq!((format, gzip), (Format::Parquet, false));
        let table = open(&path, format, gzip).unwrap();
        assert_eq!(
            table.columns().unwrap()[..],
            ["id", "url", "score", "ok", "more"].map(String::from)
        );
        let records = read_all(table);
        let rows: Vec<(u64, Vec<String>)> = records
            .iter()
            .map(|r| match &**r.row.as_ref().unwrap() {
                Row::Table { values, .. } => (r.line, values.clone()),
                Row::Json(_) => panic!("a table row"),
            })
            .collect();
        assert_eq!(
            rows,
            [
                (
                    1,
                    [
                        "1",
                        "http://a/1.jpg",
                        "0.5",
                        "true",
                        r#"["http://b/1","http://b/2"]"#
                    ]
                ),
                (2, ["2", "", "2", "false", "[]"]),
                (3, ["3", "http://a/3.jpg", "-1.25", "true", ""]),
            ]
            .map(|(line, values)| (line, values.map(String::from).to_vec()))
        );
        assert!(records.iter().all(|r| r.raw.is_none()));
        let first = records[0].row.as_ref().unwrap();
        assert_eq!(pick_column(None, first, None).unwrap(), "url");
        assert_eq!(
            split_urls(&first.get("more").unwrap()),
            ["http://b/1", "http://b/2"]
        );

        // Parquet rows are written back as JSONL.
        let out = Arc::new(std::sync::Mutex::new(Vec::new()));
        {
            let mut writer =
                RowWriter::from_writer(Box::new(SharedBuf(out.clone())), Format::Parquet, None)
                    .unwrap();
            writer.write(None, first, "http://a/1.jpg").unwrap();
            writer.finish().unwrap();
        }
        let out = out.lock().unwrap().clone();
        let line: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(line["url"], "http://a/1.jpg");
        assert_eq!(line["id"], "1");
    }

    #[test]
    fn parquet_needs_a_parquet_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fake.parquet");
        std::fs::write(&path, "id,url\n1,http://a/1\n").unwrap();
        let err = open(&path, Format::Parquet, false).err().unwrap();
        assert!(matches!(err, TableError::Parquet { .. }), "{err}");
        assert!(err.to_string().contains("fake.parquet"), "{err}");
        let err = open_reader("-", Box::new(io::empty()), Format::Parquet, false)
            .err()
            .unwrap();
        assert!(matches!(err, TableError::ParquetStream { .. }), "{err}");
        let err = open(&path, Format::Parquet, true).err().unwrap();
        assert!(matches!(err, TableError::ParquetGzip { .. }), "{err}");
    }

    #[test]
    fn parquet_codecs_left_out_are_named() {
        use parquet::basic::{BrotliLevel, GzipLevel, ZstdLevel};
        assert_eq!(unsupported_codec(Compression::SNAPPY), None);
        assert_eq!(
            unsupported_codec(Compression::GZIP(GzipLevel::default())),
            None
        );
        assert_eq!(unsupported_codec(Compression::LZ4_RAW), None);
        assert_eq!(
            unsupported_codec(Compression::ZSTD(ZstdLevel::default())),
            None
        );
        assert_eq!(
            unsupported_codec(Compression::BROTLI(BrotliLevel::default())),
            None
        );
        assert_eq!(unsupported_codec(Compression::LZO), Some("lzo"));
    }

    #[test]
    fn formats_by_name_and_extension() {
        let cases = [
            ("urls.txt", Some((Format::Txt, false))),
            ("urls", Some((Format::Txt, false))),
            ("urls.gz", Some((Format::Txt, true))),
            (".urls", Some((Format::Txt, false))),
            ("a.list", Some((Format::Txt, false))),
            ("weibo.CSV", Some((Format::Csv, false))),
            ("a.tsv.gz", Some((Format::Tsv, true))),
            ("a.tab", Some((Format::Tsv, false))),
            ("a.ndjson", Some((Format::Jsonl, false))),
            ("a.jsonl.gz", Some((Format::Jsonl, true))),
            ("a.pq", Some((Format::Parquet, false))),
            ("dir.v2/a.parquet", Some((Format::Parquet, false))),
            ("a.json", None),
            ("a.xlsx", None),
        ];
        for (name, expected) in cases {
            assert_eq!(Format::from_path(Path::new(name)), expected, "{name}");
        }
        for format in [
            Format::Txt,
            Format::Csv,
            Format::Tsv,
            Format::Jsonl,
            Format::Parquet,
        ] {
            assert_eq!(Format::parse(format.name()), Some(format));
        }
        assert_eq!(Format::parse("NDJSON"), Some(Format::Jsonl));
        assert_eq!(Format::parse("xml"), None);
    }

    #[test]
    fn column_specs_and_pick_errors() {
        assert_eq!("8".parse::<ColumnSpec>().unwrap(), ColumnSpec::Index(8));
        assert_eq!(
            "pics".parse::<ColumnSpec>().unwrap(),
            ColumnSpec::Name("pics".into())
        );
        assert_eq!(
            "image.url".parse::<ColumnSpec>().unwrap(),
            ColumnSpec::Name("image.url".into())
        );
        assert!("".parse::<ColumnSpec>().is_err());
        assert!("99999999999999999999999".parse::<ColumnSpec>().is_err());

        let columns: Arc<[String]> = ["id", "caption", "id"].map(String::from).into();
        let row = Row::Table {
            columns: columns.clone(),
            values: vec!["1".into(), "no url here".into(), "2".into()],
        };
        let err = pick_column(None, &row, None).unwrap_err().to_string();
        assert!(
            err.contains("looked at: id, caption, id") && err.contains("--column"),
            "{err}"
        );
        let err = pick_column(None, &row, Some(&ColumnSpec::Name("pics".into()))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no column named `pics`; the header has: id, caption, id"
        );
        let err = pick_column(None, &row, Some(&ColumnSpec::Index(3))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "column index 3 is out of range: the header has 3 columns (indexes 0 to 2)"
        );
        // A duplicated name is returned as its index, which `get` takes.
        assert_eq!(
            pick_column(None, &row, Some(&ColumnSpec::Index(2))).unwrap(),
            "2"
        );
        assert_eq!(row.get("2").unwrap(), "2");
        assert_eq!(row.get("id").unwrap(), "1");

        let json = Row::Json(serde_json::json!({"id": 1, "meta": {"page": "not a url"}}));
        let err = pick_column(None, &json, None).unwrap_err().to_string();
        assert!(err.contains("looked at: id, meta.page"), "{err}");
        // A JSON path is taken as given: keys can be missing on some rows.
        assert_eq!(
            pick_column(None, &json, Some(&ColumnSpec::Name("x.y".into()))).unwrap(),
            "x.y"
        );
    }

    #[test]
    fn split_urls_cases() {
        let cases: [(&str, &[&str]); 16] = [
            ("", &[]),
            ("   ", &[]),
            ("[]", &[]),
            ("[ ]", &[]),
            ("http://a/1.jpg", &["http://a/1.jpg"]),
            (
                "['http://a/1.jpg', \"http://a/2.jpg\",]",
                &["http://a/1.jpg", "http://a/2.jpg"],
            ),
            ("[\"http://a/1\", null]", &["http://a/1"]),
            ("['http://a/1', None]", &["http://a/1"]),
            (
                "http://a/1.jpg,http://a/2.jpg",
                &["http://a/1.jpg", "http://a/2.jpg"],
            ),
            (
                "http://a/1.jpg, http://a/2.jpg ,",
                &["http://a/1.jpg", "http://a/2.jpg"],
            ),
            (
                "http://a/1.jpg http://a/2.jpg\nhttp://a/3.jpg",
                &["http://a/1.jpg", "http://a/2.jpg", "http://a/3.jpg"],
            ),
            // A comma inside a URL stays.
            ("http://a/x,y.jpg", &["http://a/x,y.jpg"]),
            ("[http://a/1, http://a/2]", &["http://a/1", "http://a/2"]),
            // Not URLs: one item, for the caller to report.
            ("not a url", &["not a url"]),
            ("www.example.com/a.jpg", &["www.example.com/a.jpg"]),
            ("['http://a/1', 'broken", &["['http://a/1', 'broken"]),
        ];
        for (cell, expected) in cases {
            assert_eq!(split_urls(cell), expected, "{cell:?}");
        }
        assert_eq!(
            split_urls(r"['http://a/\x41\u00e9\101', r'http://a/\d', 'http://a/b' 'c']"),
            ["http://a/Aé\u{41}", r"http://a/\d", "http://a/bc"]
        );
    }

    /// Python's `repr` of a string, with the quote chosen for us.
    fn python_literal(s: &str, quote: char) -> String {
        let mut out = String::from(quote);
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c == quote => {
                    out.push('\\');
                    out.push(c);
                }
                c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push(quote);
        out
    }

    fn url_ish() -> impl Strategy<Value = String> {
        "https?://[a-z0-9.-]{1,12}(:[0-9]{2,5})?/[a-zA-Z0-9/_.%?=&'\", \\\\\t\né图-]{0,24}[a-z0-9]"
    }

    proptest! {
        #[test]
        fn python_and_json_lists_split_back_to_their_items(
            urls in proptest::collection::vec(url_ish(), 0..6),
            quotes in proptest::collection::vec(prop_oneof![Just('\''), Just('"')], 6),
            prefix in proptest::collection::vec(prop_oneof![Just(""), Just("u")], 6),
            space in prop_oneof![Just(""), Just(" "), Just("  ")],
            trailing_comma in any::<bool>(),
        ) {
            let items: Vec<String> = urls
                .iter()
                .enumerate()
                .map(|(i, u)| format!("{}{}", prefix[i], python_literal(u, quotes[i])))
                .collect();
            let mut python = format!("[{space}{}", items.join(&format!(",{space}")));
            if trailing_comma && !items.is_empty() {
                python.push(',');
            }
            python.push_str(space);
            python.push(']');
            prop_assert_eq!(split_urls(&python), urls.clone(), "{}", python);

            let json = serde_json::to_string(&urls).unwrap();
            prop_assert_eq!(split_urls(&json), urls, "{}", json);
        }

        #[test]
        fn separated_urls_split_back(
            urls in proptest::collection::vec("https?://[a-z0-9.-]{1,12}/[a-zA-Z0-9/_.%?=&,-]{0,20}[a-z0-9]", 1..6),
            seps in proptest::collection::vec(prop_oneof![Just(","), Just(", "), Just(" "), Just("\t"), Just(" ,\n")], 6),
        ) {
            let mut cell = urls[0].clone();
            for (i, url) in urls.iter().enumerate().skip(1) {
                cell.push_str(seps[i]);
                cell.push_str(url);
            }
            prop_assert_eq!(split_urls(&cell), urls, "{}", cell);
        }

        #[test]
        fn split_urls_never_panics(cell in "\\PC{0,40}") {
            let _ = split_urls(&cell);
        }
    }

    /// A `Write` into a shared Vec, to look at after the writer is gone.
    struct SharedBuf(Arc<std::sync::Mutex<Vec<u8>>>);
    impl Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn csv_rows_written_back_read_the_same() {
        let mut source = csv::Writer::from_writer(Vec::new());
        source.write_record(["id", "caption", "url"]).unwrap();
        source.write_record(["1", "plain", "http://a/1"]).unwrap();
        source
            .write_record(["2", "with \"quotes\", and commas", "http://a/2"])
            .unwrap();
        source
            .write_record(["3", "two\nlines", "http://a/3"])
            .unwrap();
        source.write_record(["4", "", "http://a/4"]).unwrap();
        let source = source.into_inner().unwrap();
        let table = stream(Format::Csv, &source);
        let header = table.header();
        let records = read_all(table);
        assert_eq!(records.len(), 4);

        for use_raw in [true, false] {
            let out = Arc::new(std::sync::Mutex::new(Vec::new()));
            {
                let mut writer = RowWriter::from_writer(
                    Box::new(SharedBuf(out.clone())),
                    Format::Csv,
                    header.clone(),
                )
                .unwrap();
                for record in &records {
                    let row = record.row.as_ref().unwrap();
                    let raw = if use_raw { record.raw.as_deref() } else { None };
                    writer.write(raw, row, &row.get("url").unwrap()).unwrap();
                }
                writer.finish().unwrap();
            }
            let out = out.lock().unwrap().clone();
            assert_eq!(out, source, "raw: {use_raw}");
            let again = read_all(stream(Format::Csv, &out));
            let rows = |records: &[Record]| -> Vec<Row> {
                records
                    .iter()
                    .map(|r| (**r.row.as_ref().unwrap()).clone())
                    .collect()
            };
            assert_eq!(rows(&again), rows(&records));
        }
    }

    #[test]
    fn jsonl_and_tsv_rows_written_back() {
        let text =
            b"{\"id\": 1, \"url\": \"http://a/1\"}\n{\"id\":2,\"url\":\"http://a/2\",\"x\":[1]}\n";
        let records = read_all(stream(Format::Jsonl, text));
        let out = Arc::new(std::sync::Mutex::new(Vec::new()));
        {
            let mut writer =
                RowWriter::from_writer(Box::new(SharedBuf(out.clone())), Format::Jsonl, None)
                    .unwrap();
            for record in &records {
                writer
                    .write(record.raw.as_deref(), record.row.as_ref().unwrap(), "")
                    .unwrap();
            }
            // Without raw text the row is serialized.
            writer
                .write(None, records[0].row.as_ref().unwrap(), "")
                .unwrap();
            writer.finish().unwrap();
        }
        let out = out.lock().unwrap().clone();
        let expected = [&text[..], b"{\"id\":1,\"url\":\"http://a/1\"}\n"].concat();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            String::from_utf8(expected).unwrap()
        );

        let text = b"caption\turl\na\tb, c\thttp://a/1\n";
        let table = stream(Format::Tsv, b"caption\turl\n\"a\tb, c\"\thttp://a/1\n");
        let header = table.header();
        let records = read_all(table);
        let out = Arc::new(std::sync::Mutex::new(Vec::new()));
        {
            let mut writer =
                RowWriter::from_writer(Box::new(SharedBuf(out.clone())), Format::Tsv, header)
                    .unwrap();
            writer
                .write(None, records[0].row.as_ref().unwrap(), "http://a/1")
                .unwrap();
            writer.finish().unwrap();
        }
        let out = out.lock().unwrap().clone();
        assert_ne!(&out[..], &text[..], "a tab in a field is quoted");
        assert_eq!(out, b"caption\turl\n\"a\tb, c\"\thttp://a/1\n");
    }

    #[test]
    fn row_writer_creates_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failed.txt");
        let mut writer = RowWriter::new(&path, Format::Txt, None).unwrap();
        let row = Row::Table {
            columns: Arc::from(vec!["url".to_string()]),
            values: vec!["http://a/1".into()],
        };
        writer
            .write(Some("  http://a/1  "), &row, "http://a/1")
            .unwrap();
        writer.finish().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "http://a/1\n");
        let err = RowWriter::new(&dir.path().join("no/such/dir.csv"), Format::Csv, None)
            .err()
            .unwrap();
        assert!(err.to_string().contains("no/such/dir.csv"), "{err}");
    }

    #[test]
    fn long_lines_are_cut_at_the_cap_and_the_rest_skipped() {
        let mut reader = io::BufReader::with_capacity(3, &b"abcdefgh\nxy\nlast"[..]);
        let mut buf = Vec::new();
        assert_eq!(
            read_line_capped(&mut reader, &mut buf, 4).unwrap(),
            (9, true)
        );
        assert_eq!(buf, b"abcd");
        buf.clear();
        assert_eq!(
            read_line_capped(&mut reader, &mut buf, 4).unwrap(),
            (3, false)
        );
        assert_eq!(buf, b"xy\n");
        buf.clear();
        assert_eq!(
            read_line_capped(&mut reader, &mut buf, 4).unwrap(),
            (4, false)
        );
        assert_eq!(buf, b"last");
        buf.clear();
        assert_eq!(
            read_line_capped(&mut reader, &mut buf, 4).unwrap(),
            (0, false)
        );
    }

    #[test]
    fn tables_move_to_the_input_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<Table>();
        assert_send::<RowWriter>();
        assert_send::<Record>();
    }
}
