//! What a cell holds: the URL column picked from a first row, and the
//! URLs in a cell (a list literal, a JSON array, separated URLs).

use super::*;

/// The field holding URLs, as a name for [`Row::get`]: `spec` if given (an
/// error if the header has no such name, or the index is out of range; for
/// JSON rows a key or dotted path is taken as it is), else the first column
/// whose value in `first` is an http(s) URL or a list of them (see
/// [`split_urls`]); in a JSON row, the first such field depth-first, nested
/// objects as dotted paths (keys in serde_json's order: sorted, as the crate
/// does not enable `preserve_order`).
///
/// `columns` are the table's column names ([`Table::columns`]); when `None`
/// a table row's own are used. An index is returned as the column's name,
/// or as the index itself when the name is not unique.
pub fn pick_column(
    columns: Option<&[String]>,
    first: &Row,
    spec: Option<&ColumnSpec>,
) -> Result<String, TableError> {
    let (columns, values) = match first {
        Row::Json(value) => return pick_json(value, spec),
        Row::Table {
            columns: own,
            values,
        } => (columns.unwrap_or(&own[..]), values),
    };
    let by_index = |index: usize| -> String {
        let name = &columns[index];
        if columns.iter().filter(|c| *c == name).count() == 1 {
            name.clone()
        } else {
            index.to_string()
        }
    };
    match spec {
        Some(ColumnSpec::Index(index)) if *index < columns.len() => Ok(by_index(*index)),
        Some(ColumnSpec::Index(index)) => Err(TableError::ColumnIndex {
            index: *index,
            count: columns.len(),
        }),
        Some(ColumnSpec::Name(name)) => {
            if columns.contains(name) {
                return Ok(name.clone());
            }
            let mut similar = columns
                .iter()
                .enumerate()
                .filter(|(_, c)| c.eq_ignore_ascii_case(name));
            match (similar.next(), similar.next()) {
                (Some((index, _)), None) => Ok(by_index(index)),
                _ => Err(TableError::NoSuchColumn {
                    name: name.clone(),
                    columns: name_list(columns.iter().map(|c| c.as_str())),
                }),
            }
        }
        None => values
            .iter()
            .take(columns.len())
            .enumerate()
            .filter(|(_, v)| looks_like_urls(v))
            .max_by_key(|(i, v)| (file_likeness(v), std::cmp::Reverse(*i)))
            .map(|(i, _)| by_index(i))
            .ok_or_else(|| TableError::NoUrlColumn {
                looked_at: name_list(columns.iter().map(|c| c.as_str())),
            }),
    }
}

pub(super) fn pick_json(value: &Value, spec: Option<&ColumnSpec>) -> Result<String, TableError> {
    if let Some(spec) = spec {
        return Ok(spec.to_string());
    }
    let mut looked_at = Vec::new();
    find_json_urls(value, "", 0, &mut looked_at).ok_or_else(|| TableError::NoUrlColumn {
        looked_at: name_list(looked_at.iter().map(|s| s.as_str())),
    })
}

pub(super) fn find_json_urls(
    value: &Value,
    prefix: &str,
    depth: usize,
    looked_at: &mut Vec<String>,
) -> Option<String> {
    let Value::Object(map) = value else {
        return None;
    };
    for (key, field) in map {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let holds_urls = match field {
            Value::String(s) => looks_like_urls(s),
            Value::Array(items) => {
                !items.is_empty() && items.iter().all(|i| i.as_str().is_some_and(is_http_url))
            }
            Value::Object(_) if depth + 1 < JSON_DEPTH => {
                if let Some(found) = find_json_urls(field, &path, depth + 1, looked_at) {
                    return Some(found);
                }
                continue;
            }
            _ => false,
        };
        if holds_urls {
            return Some(path);
        }
        looked_at.push(path);
    }
    None
}

pub(super) fn name_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    const SHOWN: usize = 20;
    let names: Vec<&str> = names.collect();
    let mut list = names
        .iter()
        .take(SHOWN)
        .map(|n| if n.is_empty() { "\"\"" } else { n })
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        list.push_str(&format!(", … ({} more)", names.len() - SHOWN));
    }
    if list.is_empty() {
        list.push_str("no fields");
    }
    list
}

/// Whether a cell holds one or more http(s) URLs and nothing else.
pub(super) fn looks_like_urls(cell: &str) -> bool {
    let urls = split_urls(cell);
    !urls.is_empty() && urls.iter().all(|u| is_http_url(u))
}

/// Whether a URL cell looks like files to download (1: a list of URLs, or
/// one URL with a file's extension) rather than a page that mentions them
/// (0: `/article/123`, `index.html`). A dataset with an article link and a
/// column of image lists means the images; between two file columns, the
/// first.
pub(super) fn file_likeness(cell: &str) -> u8 {
    const PAGES: [&str; 9] = [
        "html", "htm", "xhtml", "shtml", "php", "asp", "aspx", "jsp", "cgi",
    ];
    let urls = split_urls(cell);
    if urls.len() > 1 || cell.trim_start().starts_with('[') {
        return 1;
    }
    let ext = urls
        .first()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| {
            let last = u.path_segments()?.next_back()?.to_string();
            let (stem, ext) = last.rsplit_once('.')?;
            (!stem.is_empty()).then(|| ext.to_ascii_lowercase())
        });
    match ext {
        Some(e) if !PAGES.contains(&e.as_str()) => 1,
        _ => 0,
    }
}

pub(super) fn is_http_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
}

/// The URLs in a cell: a Python list literal (`['http://a/1.jpg',
/// "http://a/2.jpg"]`, either quote style, escapes, `u''`/`r''` prefixes,
/// spaces, trailing comma; `[]` gives none), a JSON array of strings (nulls
/// skipped), or URLs separated by commas and/or whitespace. Items are
/// trimmed; empty ones dropped; an empty cell gives none. A comma splits
/// only where the next URL starts (`scheme://`), so URLs holding commas stay
/// whole. Text that is none of these comes back whole as one item, so that
/// a bad URL is reported by the caller rather than dropped.
pub fn split_urls(cell: &str) -> Vec<String> {
    let cell = cell.trim();
    if cell.is_empty() {
        return Vec::new();
    }
    if let Some(inner) = cell.strip_prefix('[').and_then(|c| c.strip_suffix(']')) {
        let items = serde_json::from_str::<Vec<Option<String>>>(cell)
            .ok()
            .map(|items| items.into_iter().flatten().collect())
            .or_else(|| parse_python_list(cell));
        if let Some(items) = items {
            return items
                .into_iter()
                .map(|item: String| item.trim().to_string())
                .filter(|item| !item.is_empty())
                .collect();
        }
        // Brackets around bare URLs: `[http://a/1, http://a/2]`.
        if let Some(items) = split_separated(inner) {
            return items;
        }
        return vec![cell.to_string()];
    }
    split_separated(cell).unwrap_or_else(|| vec![cell.to_string()])
}

/// Splits on whitespace and on commas that start a new URL (or end the
/// text); `None` unless every piece starts with a scheme.
pub(super) fn split_separated(text: &str) -> Option<Vec<String>> {
    let mut pieces = Vec::new();
    for token in text.split_whitespace() {
        let mut rest = token;
        loop {
            rest = rest.trim_start_matches(',');
            if rest.is_empty() {
                break;
            }
            let cut = rest.match_indices(',').map(|(i, _)| i).find(|&i| {
                let after = &rest[i + 1..];
                let after = after.trim_start_matches(',');
                after.is_empty() || starts_with_scheme(after)
            });
            match cut {
                Some(i) => {
                    pieces.push(rest[..i].to_string());
                    rest = &rest[i + 1..];
                }
                None => {
                    pieces.push(rest.to_string());
                    break;
                }
            }
        }
    }
    pieces
        .iter()
        .all(|p| starts_with_scheme(p))
        .then_some(pieces)
}

/// `scheme://` at the start of `s` (RFC 3986 scheme syntax).
pub(super) fn starts_with_scheme(s: &str) -> bool {
    let Some((scheme, _)) = s.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Parses a Python list literal of strings (and `None`s, skipped).
pub(super) fn parse_python_list(text: &str) -> Option<Vec<String>> {
    let mut p = PyParser {
        chars: text.chars().peekable(),
    };
    p.expect('[')?;
    let mut items = Vec::new();
    loop {
        p.skip_space();
        match p.chars.peek()? {
            ']' => {
                p.chars.next();
                break;
            }
            'N' => {
                for c in "None".chars() {
                    p.expect(c)?;
                }
            }
            _ => items.push(p.string()?),
        }
        p.skip_space();
        match p.chars.next()? {
            ',' => {}
            ']' => break,
            _ => return None,
        }
    }
    p.skip_space();
    p.chars.next().is_none().then_some(items)
}

pub(super) struct PyParser<'a> {
    pub(super) chars: std::iter::Peekable<std::str::Chars<'a>>,
}

impl PyParser<'_> {
    pub(super) fn expect(&mut self, c: char) -> Option<()> {
        (self.chars.next()? == c).then_some(())
    }

    pub(super) fn skip_space(&mut self) {
        while self.chars.next_if(|c| c.is_whitespace()).is_some() {}
    }

    /// One string literal, adjacent literals concatenated as Python does.
    pub(super) fn string(&mut self) -> Option<String> {
        let mut value = self.one_string()?;
        loop {
            self.skip_space();
            match self.chars.peek() {
                Some('\'' | '"' | 'r' | 'R' | 'u' | 'U' | 'b' | 'B') => {
                    value.push_str(&self.one_string()?)
                }
                _ => return Some(value),
            }
        }
    }

    pub(super) fn one_string(&mut self) -> Option<String> {
        let mut raw = false;
        for _ in 0..2 {
            match self.chars.peek()? {
                'r' | 'R' => raw = true,
                'u' | 'U' | 'b' | 'B' => {}
                _ => break,
            }
            self.chars.next();
        }
        let quote = self.chars.next().filter(|c| matches!(c, '\'' | '"'))?;
        // `''` followed by anything but a third quote is an empty string.
        let triple = self.closes_triple(quote);
        let mut value = String::new();
        loop {
            let c = self.chars.next()?;
            if c == quote {
                if !triple {
                    return Some(value);
                }
                if self.closes_triple(quote) {
                    return Some(value);
                }
                value.push(c);
                continue;
            }
            if c == '\n' && !triple {
                return None;
            }
            if c != '\\' {
                value.push(c);
                continue;
            }
            let e = self.chars.next()?;
            if raw {
                value.push('\\');
                value.push(e);
                continue;
            }
            match e {
                '\n' => {}
                '\\' | '\'' | '"' => value.push(e),
                'a' => value.push('\x07'),
                'b' => value.push('\x08'),
                'f' => value.push('\x0c'),
                'n' => value.push('\n'),
                'r' => value.push('\r'),
                't' => value.push('\t'),
                'v' => value.push('\x0b'),
                'x' => value.push(self.hex(2)?),
                'u' => value.push(self.hex(4)?),
                'U' => value.push(self.hex(8)?),
                '0'..='7' => {
                    let mut n = e.to_digit(8)?;
                    for _ in 0..2 {
                        match self.chars.peek().and_then(|c| c.to_digit(8)) {
                            Some(d) => {
                                n = n * 8 + d;
                                self.chars.next();
                            }
                            None => break,
                        }
                    }
                    value.push(char::from_u32(n)?);
                }
                // `\N{NAME}` would need the Unicode name table.
                'N' => return None,
                other => {
                    value.push('\\');
                    value.push(other);
                }
            }
        }
    }

    /// Whether two more `quote`s come next; if so, consumes them.
    pub(super) fn closes_triple(&mut self, quote: char) -> bool {
        let mut ahead = self.chars.clone();
        let triple = ahead.next() == Some(quote) && ahead.next() == Some(quote);
        if triple {
            self.chars.next();
            self.chars.next();
        }
        triple
    }

    pub(super) fn hex(&mut self, digits: usize) -> Option<char> {
        let mut n = 0u32;
        for _ in 0..digits {
            n = n * 16 + self.chars.next()?.to_digit(16)?;
        }
        char::from_u32(n)
    }
}
