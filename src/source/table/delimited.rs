//! CSV and TSV: records framed over lines (a quoted field may span
//! several), the header, and rows of fields.

use super::*;

/// CSV/TSV rows, parsed by `csv-core` one physical line at a time.
pub(super) struct Delimited {
    pub(super) lines: Lines,
    pub(super) builder: csv_core::ReaderBuilder,
    pub(super) parser: csv_core::Reader,
    pub(super) columns: Arc<[String]>,
    /// The header row, if the file has one.
    pub(super) header: Option<Arc<[String]>>,
    /// The header's width, once known.
    pub(super) width: Option<usize>,
    /// A headerless file's first row, read while looking for the header.
    pub(super) pending: Option<Record>,
    pub(super) out: Vec<u8>,
    pub(super) ends: Vec<usize>,
}

/// A record framed from one or more lines.
pub(super) struct Framed {
    pub(super) line: u64,
    pub(super) raw: Option<String>,
    pub(super) fields: Result<Vec<String>, String>,
}

impl Delimited {
    pub(super) fn open(
        name: &Arc<str>,
        format: Format,
        lines: Lines,
        delimiter: u8,
        no_header: bool,
    ) -> Result<Delimited, TableError> {
        let mut builder = csv_core::ReaderBuilder::new();
        // Records end at `\n` only; a `\r` before it is stripped from the
        // last field. This keeps one record per line unless a quote is open.
        builder
            .delimiter(delimiter)
            .terminator(csv_core::Terminator::Any(b'\n'));
        let mut d = Delimited {
            lines,
            parser: builder.build(),
            builder,
            columns: Arc::from(Vec::new()),
            header: None,
            width: None,
            pending: None,
            out: vec![0; 1024],
            ends: vec![0; 32],
        };
        let Some(first) = d.frame() else {
            return Err(TableError::NoHeader {
                name: name.clone(),
                format,
            });
        };
        let fields = first.fields.map_err(|reason| TableError::Header {
            name: name.clone(),
            line: first.line,
            reason,
        })?;
        d.width = Some(fields.len());
        if no_header || fields.iter().any(|f| looks_like_urls(f)) {
            // No header: the first row is data, columns go by index.
            d.columns = (0..fields.len()).map(|i| i.to_string()).collect();
            d.pending = Some(Record {
                line: first.line,
                row: Ok(Arc::new(Row::Table {
                    columns: d.columns.clone(),
                    values: fields,
                })),
                raw: first.raw,
            });
            return Ok(d);
        }
        d.columns = fields.into_iter().map(|f| f.trim().to_string()).collect();
        d.header = Some(d.columns.clone());
        Ok(d)
    }

    pub(super) fn next_record(&mut self) -> Option<Record> {
        if let Some(record) = self.pending.take() {
            return Some(record);
        }
        let framed = self.frame()?;
        let columns = &self.columns;
        Some(Record {
            line: framed.line,
            row: framed.fields.map(|values| {
                Arc::new(Row::Table {
                    columns: columns.clone(),
                    values,
                })
            }),
            raw: framed.raw,
        })
    }

    /// Reads the next record: from its first non-blank line through as many
    /// lines as an open quote needs.
    pub(super) fn frame(&mut self) -> Option<Framed> {
        let first = loop {
            match self.lines.next_line()? {
                Ok(line) if line.bytes.iter().all(u8::is_ascii_whitespace) => {}
                Ok(line) => break line,
                Err((number, e)) => return Some(self.io_error(number, &e)),
            }
        };
        if first.too_long {
            return Some(Framed {
                line: first.number,
                raw: None,
                fields: Err(format!("line is longer than {} MiB", LINE_CAP >> 20)),
            });
        }
        self.parser.reset();
        let (mut out_len, mut ends_len) = (0, 0);
        let mut held_bytes = first.bytes.len();
        let mut held = vec![first];
        loop {
            let last = held.len() - 1;
            let complete = parse_line(
                &mut self.parser,
                &held[last].bytes,
                &mut self.out,
                &mut out_len,
                &mut self.ends,
                &mut ends_len,
            );
            if complete {
                break;
            }
            // The line ended inside a quoted field: it goes on.
            if held.len() >= RECORD_CAP_LINES || held_bytes >= RECORD_CAP_BYTES {
                let lines = held.len();
                return Some(self.unbalanced(
                    held,
                    format!(
                        "unbalanced quote: a quoted field opened on this line is still open \
                         after {lines} lines ({held_bytes} bytes)"
                    ),
                ));
            }
            match self.lines.next_line() {
                None => {
                    return Some(
                        self.unbalanced(
                            held,
                            "unbalanced quote: a quoted field opened on this line is never closed"
                                .into(),
                        ),
                    )
                }
                Some(Err((number, e))) => return Some(self.io_error(number, &e)),
                Some(Ok(line)) if line.too_long => {
                    // Put back, it is reported on its own.
                    held.push(line);
                    let reason = format!(
                        "unbalanced quote: a quoted field opened on this line runs into \
                         a line longer than {} MiB",
                        LINE_CAP >> 20
                    );
                    return Some(self.unbalanced(held, reason));
                }
                Some(Ok(line)) => {
                    held_bytes += line.bytes.len();
                    held.push(line);
                }
            }
        }
        let count = ends_len;
        if let Some(width) = self.width {
            if count != width && held.len() > 1 {
                let end = held[held.len() - 1].number;
                return Some(self.unbalanced(
                    held,
                    format!(
                        "unbalanced quote: the row runs to line {end} \
                         and has {count} fields, expected {width}"
                    ),
                ));
            }
            if count != width {
                return Some(Framed {
                    line: held[0].number,
                    raw: Some(held[0].raw()),
                    fields: Err(format!("expected {width} fields, found {count}")),
                });
            }
            // A stray quote that swallowed whole rows can still come out
            // with the right width; a swallowed line that is a row of its
            // own gives it away.
            if let Some(inner) = held[..held.len() - 1]
                .iter()
                .skip(1)
                .find(|line| self.single_line_width(&line.bytes) == Some(width))
            {
                let inner = inner.number;
                return Some(self.unbalanced(
                    held,
                    format!(
                        "unbalanced quote: the quoted field opened on this line \
                         swallows line {inner}"
                    ),
                ));
            }
        }
        let mut fields = Vec::with_capacity(count);
        let mut start = 0;
        for &end in &self.ends[..count] {
            match std::str::from_utf8(&self.out[start..end]) {
                Ok(field) => fields.push(field.to_string()),
                Err(_) => {
                    return Some(Framed {
                        line: held[0].number,
                        raw: Some(joined_raw(&held)),
                        fields: Err(if held.len() > 1 {
                            "row is not valid UTF-8".into()
                        } else {
                            "line is not valid UTF-8".into()
                        }),
                    })
                }
            }
            start = end;
        }
        if let Some(last) = fields.last_mut() {
            if last.ends_with('\r') {
                last.pop();
            }
        }
        Some(Framed {
            line: held[0].number,
            raw: Some(joined_raw(&held)),
            fields: Ok(fields),
        })
    }

    /// Reports a record with an unbalanced quote at its first line and puts
    /// the lines after it back to be read again.
    pub(super) fn unbalanced(&mut self, mut held: Vec<Line>, reason: String) -> Framed {
        let rest = held.split_off(1);
        for line in rest.into_iter().rev() {
            self.lines.replay.push_front(line);
        }
        Framed {
            line: held[0].number,
            raw: Some(held[0].raw()),
            fields: Err(reason),
        }
    }

    pub(super) fn io_error(&mut self, line: u64, error: &io::Error) -> Framed {
        self.lines.end();
        Framed {
            line,
            raw: None,
            fields: Err(format!("read error: {error}")),
        }
    }

    /// The number of fields in `bytes` parsed alone, if it is one complete
    /// record.
    pub(super) fn single_line_width(&self, bytes: &[u8]) -> Option<usize> {
        let mut parser = self.builder.build();
        let (mut out, mut ends) = (vec![0; bytes.len() + 1], vec![0; 32]);
        let (mut out_len, mut ends_len) = (0, 0);
        parse_line(
            &mut parser,
            bytes,
            &mut out,
            &mut out_len,
            &mut ends,
            &mut ends_len,
        )
        .then_some(ends_len)
    }
}

pub(super) fn joined_raw(held: &[Line]) -> String {
    let mut bytes = Vec::new();
    for line in held {
        bytes.extend_from_slice(&line.bytes);
    }
    String::from_utf8_lossy(trim_terminator(&bytes)).into_owned()
}

/// Feeds one line to the parser; true if it completed a record, false if
/// the line ends inside a quoted field.
pub(super) fn parse_line(
    parser: &mut csv_core::Reader,
    line: &[u8],
    out: &mut Vec<u8>,
    out_len: &mut usize,
    ends: &mut Vec<usize>,
    ends_len: &mut usize,
) -> bool {
    // The last line of a file may lack its `\n`: feed one, so that "needs
    // more input" always means "inside a quoted field".
    // (Empty input would mean the end of the data to csv-core.)
    let terminator: &[u8] = if line.ends_with(b"\n") { &[] } else { b"\n" };
    for mut input in [line, terminator] {
        if input.is_empty() {
            continue;
        }
        loop {
            let (result, nin, nout, nend) =
                parser.read_record(input, &mut out[*out_len..], &mut ends[*ends_len..]);
            input = &input[nin..];
            *out_len += nout;
            *ends_len += nend;
            match result {
                csv_core::ReadRecordResult::InputEmpty => break,
                csv_core::ReadRecordResult::OutputFull => {
                    let len = out.len().max(64) * 2;
                    out.resize(len, 0);
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    let len = ends.len().max(8) * 2;
                    ends.resize(len, 0);
                }
                csv_core::ReadRecordResult::Record | csv_core::ReadRecordResult::End => {
                    return true
                }
            }
        }
    }
    false
}
