//! Physical lines of a text input, capped in length, with their numbers:
//! what the text, JSONL and delimited readers build on.

use super::*;

/// One physical line: its number and bytes, terminator included.
pub(super) struct Line {
    pub(super) number: u64,
    pub(super) bytes: Vec<u8>,
    pub(super) too_long: bool,
}

impl Line {
    /// The text without its terminator, for `Record::raw`.
    pub(super) fn raw(&self) -> String {
        String::from_utf8_lossy(trim_terminator(&self.bytes)).into_owned()
    }
}

pub(super) fn trim_terminator(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    bytes.strip_suffix(b"\r").unwrap_or(bytes)
}

/// Physical lines of a stream, with lines to read again first.
pub(super) struct Lines {
    pub(super) reader: Box<dyn BufRead + Send>,
    pub(super) read: u64,
    pub(super) replay: VecDeque<Line>,
    pub(super) done: bool,
}

impl Lines {
    pub(super) fn new(reader: Box<dyn BufRead + Send>) -> Lines {
        Lines {
            reader,
            read: 0,
            replay: VecDeque::new(),
            done: false,
        }
    }

    /// The next line, or a read error with the number of the line it hit;
    /// `None` at the end. An error ends the stream.
    pub(super) fn next_line(&mut self) -> Option<Result<Line, (u64, io::Error)>> {
        if let Some(line) = self.replay.pop_front() {
            return Some(Ok(line));
        }
        if self.done {
            return None;
        }
        let mut bytes = Vec::new();
        match read_line_capped(&mut *self.reader, &mut bytes, LINE_CAP) {
            Ok((0, _)) => {
                self.done = true;
                None
            }
            Ok((_, too_long)) => {
                self.read += 1;
                if self.read == 1 && bytes.starts_with(b"\xef\xbb\xbf") {
                    bytes.drain(..3);
                }
                Some(Ok(Line {
                    number: self.read,
                    bytes,
                    too_long,
                }))
            }
            Err(e) => {
                self.done = true;
                Some(Err((self.read + 1, e)))
            }
        }
    }

    pub(super) fn end(&mut self) {
        self.done = true;
        self.replay.clear();
    }
}

/// Reads through the next `\n` (kept), storing at most `cap` bytes; returns
/// the bytes consumed and whether the line was cut.
pub(super) fn read_line_capped(
    reader: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    cap: usize,
) -> io::Result<(usize, bool)> {
    let (mut consumed, mut cut) = (0, false);
    loop {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok((consumed, cut));
        }
        let (chunk, end) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = cap.saturating_sub(buf.len());
        if chunk.len() > room {
            cut = true;
            buf.extend_from_slice(&chunk[..room]);
        } else {
            buf.extend_from_slice(chunk);
        }
        let n = chunk.len();
        reader.consume(n);
        consumed += n;
        if end {
            return Ok((consumed, cut));
        }
    }
}

pub(super) fn read_error(line: u64, error: &io::Error) -> Record {
    Record {
        line,
        row: Err(format!("read error: {error}")),
        raw: None,
    }
}

pub(super) fn too_long(line: &Line) -> Record {
    Record {
        line: line.number,
        row: Err(format!("line is longer than {} MiB", LINE_CAP >> 20)),
        raw: None,
    }
}

pub(super) fn next_txt(lines: &mut Lines, columns: &Arc<[String]>) -> Option<Record> {
    loop {
        let line = match lines.next_line()? {
            Ok(line) => line,
            Err((number, e)) => return Some(read_error(number, &e)),
        };
        if line.too_long {
            return Some(too_long(&line));
        }
        let text = match std::str::from_utf8(&line.bytes) {
            Ok(text) => text.trim(),
            Err(_) => {
                return Some(Record {
                    line: line.number,
                    row: Err("line is not valid UTF-8".into()),
                    raw: Some(line.raw()),
                })
            }
        };
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        return Some(Record {
            line: line.number,
            row: Ok(Arc::new(Row::Table {
                columns: columns.clone(),
                values: vec![text.to_string()],
            })),
            raw: Some(line.raw()),
        });
    }
}

pub(super) fn next_jsonl(lines: &mut Lines) -> Option<Record> {
    loop {
        let line = match lines.next_line()? {
            Ok(line) => line,
            Err((number, e)) => return Some(read_error(number, &e)),
        };
        if line.too_long {
            return Some(too_long(&line));
        }
        let row = match std::str::from_utf8(&line.bytes) {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => match serde_json::from_str::<Value>(text) {
                Ok(value @ Value::Object(_)) => Ok(Arc::new(Row::Json(value))),
                Ok(other) => Err(format!(
                    "not a JSON object (found {})",
                    match other {
                        Value::Array(_) => "an array",
                        Value::String(_) => "a string",
                        Value::Number(_) => "a number",
                        Value::Bool(_) => "a boolean",
                        _ => "null",
                    }
                )),
                Err(e) => Err(format!("not valid JSON: {e}")),
            },
            Err(_) => Err("line is not valid UTF-8".into()),
        };
        return Some(Record {
            line: line.number,
            row,
            raw: Some(line.raw()),
        });
    }
}
