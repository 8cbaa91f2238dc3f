//! Templates: brace expansion for URLs, and name templates with fields and
//! filters.
//!
//! Two small languages live here. Both are parsed once and then applied many
//! times, and both are pure: no I/O, no async, no knowledge of the job.
//!
//! * [`expand`] turns a URL pattern such as `http://h/img{001..500}{,-thumb}.jpg`
//!   into the URLs it stands for, in the order bash prints them (the last
//!   group varies fastest). The [`Expansion`] it returns is an iterator that
//!   keeps one counter per group, an odometer, and builds each string on
//!   demand, so a range of a billion costs the same memory as a range of
//!   three. Its size is known up front ([`Expansion::len`], a `u128`) so a
//!   caller can refuse an absurd job before it starts.
//! * [`Template`] renders names (and `--url` URLs) from per-item fields:
//!   `{col.cc|upper}-{meta.country|replace(" ","_")}.gif`. The module does
//!   not know which fields exist; the caller answers through [`Fields`].
//!
//! The syntaxes follow what users already know: URL patterns are shell
//! brace expansion (as in bash and curl), so a literal brace is `\{`; name
//! templates are format strings (as in Python and Rust), so it is `{{`.
//!
//! Both parsers are strict. Every unescaped `{` in a URL pattern must start a
//! valid group, so a typo such as `{1..x}` fails at once with its column
//! instead of quietly fetching a URL with braces in it; likewise an unknown
//! filter or a malformed field is a parse error, not a per-item surprise.
//!
//! Rendering does not sanitize. A rendered name is split on `/` and the parts
//! go to [`crate::naming::OutputDir::resolve`], the one place that cleans
//! path components and proves the result stays in the output directory.

use std::borrow::{Borrow, Cow};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hash};
use std::iter::FusedIterator;

/// What a URL group may look like, repeated in error messages.
const GROUP_SYNTAX: &str = "expected {N..M}, {N..M..STEP}, {a..z} or {a,b,c}";

/// What a name-template field may look like, repeated in error messages.
const FIELD_SYNTAX: &str = "expected {field} or {field|filter}; write {{ for a literal brace";

/// The filters a name template knows, for error messages.
const FILTERS: &str = "upper, lower, slug, trim, replace('a','b'), default('x') or pad(N)";

/// Widest `pad(N)`: no file name is longer than 255 bytes anyway, and the
/// cap keeps a typo from allocating gigabytes per item.
const MAX_PAD: u64 = 255;

/// Why a URL pattern or a name template could not be parsed.
///
/// Every variant but [`TemplateError::Empty`] carries the byte `offset` of
/// the problem in the template and the 1-based `column` (in characters) that
/// the message shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    /// A `{` with no closing `}`.
    #[error("unclosed {{ at column {column}: {expected}")]
    Unclosed {
        /// Byte offset of the `{`.
        offset: usize,
        /// Column of the `{`.
        column: usize,
        /// What the brace should have started.
        expected: &'static str,
    },
    /// A `{` inside a URL group.
    #[error(
        "nested {{ at column {column}: groups cannot be nested (write \\{{ for a literal brace)"
    )]
    Nested {
        /// Byte offset of the inner `{`.
        offset: usize,
        /// Column of the inner `{`.
        column: usize,
    },
    /// A URL group that is neither a range nor a list, such as `{abc}`.
    #[error("bad group {text} at column {column}: {syntax} (write \\{{ for a literal brace)", syntax = GROUP_SYNTAX)]
    BadGroup {
        /// Byte offset of the group's `{`.
        offset: usize,
        /// Column of the group's `{`.
        column: usize,
        /// The group as written, braces included.
        text: String,
    },
    /// A URL group with `..` that is not a valid range, such as `{1..x}`.
    #[error("bad range {text} at column {column}: {reason}")]
    BadRange {
        /// Byte offset of the group's `{`.
        offset: usize,
        /// Column of the group's `{`.
        column: usize,
        /// The group as written, braces included.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The groups of a URL pattern multiply to more than `u128::MAX` URLs.
    #[error(
        "too many combinations at column {column}: the pattern would expand to more than {max} URLs",
        max = u128::MAX
    )]
    TooMany {
        /// Byte offset of the group that overflowed the count.
        offset: usize,
        /// Column of that group.
        column: usize,
    },
    /// A lone `}` in a name template.
    #[error("single }} at column {column}: write }}}} for a literal brace")]
    StrayBrace {
        /// Byte offset of the `}`.
        offset: usize,
        /// Its column.
        column: usize,
    },
    /// A syntactically invalid field name, such as `col..x` or `1st`.
    #[error(
        "bad field name {name:?} at column {column}: expected letters, digits, _ or -, \
         in parts joined by dots (like stem or col.NAME), starting with a letter"
    )]
    BadField {
        /// Byte offset of the name.
        offset: usize,
        /// Column of the name.
        column: usize,
        /// The name as written.
        name: String,
    },
    /// A filter the template language does not have.
    #[error("unknown filter {name:?} at column {column}: expected {filters}", filters = FILTERS)]
    UnknownFilter {
        /// Byte offset of the filter name.
        offset: usize,
        /// Column of the filter name.
        column: usize,
        /// The filter as written.
        name: String,
    },
    /// A known filter given the wrong arguments.
    #[error("bad arguments to {filter} at column {column}: expected {expected}")]
    BadFilterArgs {
        /// Byte offset of the filter name.
        offset: usize,
        /// Column of the filter name.
        column: usize,
        /// The filter.
        filter: String,
        /// How it is called.
        expected: &'static str,
    },
    /// Something else out of place inside a field: a stray character, an
    /// unclosed string, an unknown escape.
    #[error("unexpected {found} at column {column}: expected {expected}")]
    Unexpected {
        /// Byte offset of what was found.
        offset: usize,
        /// Its column.
        column: usize,
        /// What was found, quoted, or `end of template`.
        found: String,
        /// What would have been valid there.
        expected: &'static str,
    },
    /// A name template with no text at all.
    #[error("the template is empty")]
    Empty,
}

impl TemplateError {
    /// Byte offset of the problem in the template (0 for [`TemplateError::Empty`]).
    pub fn offset(&self) -> usize {
        match self {
            Self::Unclosed { offset, .. }
            | Self::Nested { offset, .. }
            | Self::BadGroup { offset, .. }
            | Self::BadRange { offset, .. }
            | Self::TooMany { offset, .. }
            | Self::StrayBrace { offset, .. }
            | Self::BadField { offset, .. }
            | Self::UnknownFilter { offset, .. }
            | Self::BadFilterArgs { offset, .. }
            | Self::Unexpected { offset, .. } => *offset,
            Self::Empty => 0,
        }
    }

    /// 1-based column, in characters, of the problem.
    pub fn column(&self) -> usize {
        match self {
            Self::Unclosed { column, .. }
            | Self::Nested { column, .. }
            | Self::BadGroup { column, .. }
            | Self::BadRange { column, .. }
            | Self::TooMany { column, .. }
            | Self::StrayBrace { column, .. }
            | Self::BadField { column, .. }
            | Self::UnknownFilter { column, .. }
            | Self::BadFilterArgs { column, .. }
            | Self::Unexpected { column, .. } => *column,
            Self::Empty => 1,
        }
    }
}

/// 1-based character column of byte `offset` in `src`.
fn column(src: &str, offset: usize) -> usize {
    src.get(..offset).map_or(offset, |s| s.chars().count()) + 1
}

// ---------------------------------------------------------------------------
// Part 1: URL brace expansion
// ---------------------------------------------------------------------------

/// Whether `s` needs [`expand`]: it holds a `{` (a group, or an escaped
/// brace) or an escaped `\}`.
///
/// A cheap byte scan for the hot path. When it returns `false`, `expand(s)`
/// would yield exactly `s`, once, so the caller can skip it.
pub fn has_groups(s: &str) -> bool {
    s.contains('{') || s.contains("\\}")
}

/// Expands a URL pattern into the strings it stands for.
///
/// Groups, each of which must be valid:
///
/// * `{N..M}`: the integers from N to M inclusive, counting down when N > M.
///   When either bound is written with a leading zero (`{001..500}`,
///   `{08..10}`), every number is zero-padded to the width of the wider bound.
/// * `{N..M..STEP}`: every STEP-th integer (`{0..100..5}`); STEP is at least 1.
/// * `{a..e}`: single letters, both bounds of the same case; a step is allowed.
/// * `{a,b,c}`: a list; items may be empty (`img{,-thumb}.jpg`) and `\,` is a
///   literal comma inside one.
///
/// Several groups give their cartesian product, the last group varying
/// fastest. `\{` and `\}` are literal braces; any other backslash is kept
/// as is. A `}` that closes no group is literal.
pub fn expand(template: &str) -> Result<Expansion, TemplateError> {
    let bytes = template.as_bytes();
    let mut segments = Vec::new();
    let mut groups = Vec::new();
    let mut lit = String::new();
    let mut lit_start = 0;
    let mut total: u128 = 1;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if matches!(bytes.get(i + 1), Some(b'{' | b'}')) => {
                lit.push_str(&template[lit_start..i]);
                // The brace itself starts the next literal run.
                lit_start = i + 1;
                i += 2;
            }
            b'{' => {
                lit.push_str(&template[lit_start..i]);
                if !lit.is_empty() {
                    segments.push(Segment::Lit(std::mem::take(&mut lit)));
                }
                let (group, end) = parse_group(template, i)?;
                total = total
                    .checked_mul(group.count())
                    .ok_or(TemplateError::TooMany {
                        offset: i,
                        column: column(template, i),
                    })?;
                segments.push(Segment::Group(groups.len()));
                groups.push(group);
                i = end;
                lit_start = i;
            }
            _ => i += 1,
        }
    }
    lit.push_str(&template[lit_start..]);
    if !lit.is_empty() || segments.is_empty() {
        segments.push(Segment::Lit(lit));
    }
    let size_hint = segments
        .iter()
        .map(|s| match s {
            Segment::Lit(l) => l.len(),
            Segment::Group(_) => 8,
        })
        .sum();
    Ok(Expansion {
        index: vec![0; groups.len()],
        segments,
        groups,
        total,
        remaining: total,
        size_hint,
    })
}

/// The strings a URL pattern stands for, built one at a time.
///
/// Made by [`expand`]. Memory use is fixed by the pattern, whatever the count.
#[derive(Debug, Clone)]
pub struct Expansion {
    segments: Vec<Segment>,
    groups: Vec<Group>,
    /// The odometer: the current position in each group.
    index: Vec<u128>,
    total: u128,
    remaining: u128,
    /// Expected length of one string, to size its buffer.
    size_hint: usize,
}

// `is_empty` would always be false: every valid pattern yields at least one
// string, so `len` stands alone.
#[allow(clippy::len_without_is_empty)]
impl Expansion {
    /// How many strings the pattern yields in all, counted from the start
    /// (unchanged as the iterator advances). May exceed `usize`.
    pub fn len(&self) -> u128 {
        self.total
    }

    /// Whether the pattern has no group: it yields one string, the input
    /// with any `\{` and `\}` unescaped.
    pub fn is_literal(&self) -> bool {
        self.groups.is_empty()
    }
}

impl Iterator for Expansion {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        if self.remaining == 0 {
            return None;
        }
        let mut out = String::with_capacity(self.size_hint);
        for seg in &self.segments {
            match seg {
                Segment::Lit(s) => out.push_str(s),
                Segment::Group(g) => self.groups[*g].write(self.index[*g], &mut out),
            }
        }
        self.remaining -= 1;
        for g in (0..self.groups.len()).rev() {
            self.index[g] += 1;
            if self.index[g] < self.groups[g].count() {
                break;
            }
            self.index[g] = 0;
        }
        Some(out)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.remaining);
        (n.unwrap_or(usize::MAX), n.ok())
    }
}

impl FusedIterator for Expansion {}

#[derive(Debug, Clone)]
enum Segment {
    Lit(String),
    Group(usize),
}

#[derive(Debug, Clone)]
enum Group {
    Ints {
        start: i64,
        step: u64,
        down: bool,
        count: u128,
        /// Zero-padded width, sign included; 0 for no padding.
        width: usize,
    },
    Letters {
        start: u8,
        step: u64,
        down: bool,
        count: u128,
    },
    List(Vec<String>),
}

impl Group {
    fn count(&self) -> u128 {
        match self {
            Group::Ints { count, .. } | Group::Letters { count, .. } => *count,
            Group::List(items) => items.len() as u128,
        }
    }

    /// Appends item `i` (below `count()`) to `out`.
    fn write(&self, i: u128, out: &mut String) {
        match self {
            Group::Ints {
                start,
                step,
                down,
                width,
                ..
            } => {
                // i * step never exceeds the span |M - N| < 2^64, so this
                // cannot overflow i128.
                let off = (i * u128::from(*step)) as i128;
                let v = if *down {
                    i128::from(*start) - off
                } else {
                    i128::from(*start) + off
                };
                // Writing to a String cannot fail.
                let _ = write!(out, "{v:0width$}");
            }
            Group::Letters {
                start, step, down, ..
            } => {
                // At most 25 letters from the start, so this fits in a u8.
                let off = (i * u128::from(*step)) as u8;
                let c = if *down { start - off } else { start + off };
                out.push(char::from(c));
            }
            Group::List(items) => out.push_str(&items[i as usize]),
        }
    }
}

/// Parses the group whose `{` is at byte `open`; returns it and the offset
/// just past its `}`.
fn parse_group(src: &str, open: usize) -> Result<(Group, usize), TemplateError> {
    let bytes = src.as_bytes();
    let mut j = open + 1;
    let mut has_comma = false;
    let close = loop {
        match bytes.get(j) {
            None => {
                return Err(TemplateError::Unclosed {
                    offset: open,
                    column: column(src, open),
                    expected: "expected {N..M}, {N..M..STEP}, {a..z} or {a,b,c} closed by } \
                               (write \\{ for a literal brace)",
                })
            }
            Some(b'\\') if matches!(bytes.get(j + 1), Some(b'{' | b'}' | b',')) => j += 2,
            Some(b'{') => {
                return Err(TemplateError::Nested {
                    offset: j,
                    column: column(src, j),
                })
            }
            Some(b'}') => break j,
            Some(b',') => {
                has_comma = true;
                j += 1;
            }
            Some(_) => j += 1,
        }
    };
    let inner = &src[open + 1..close];
    let text = &src[open..=close];
    let group = if has_comma {
        Group::List(split_list(inner))
    } else if inner.contains("..") {
        parse_range(inner).map_err(|reason| TemplateError::BadRange {
            offset: open,
            column: column(src, open),
            text: text.to_string(),
            reason,
        })?
    } else {
        return Err(TemplateError::BadGroup {
            offset: open,
            column: column(src, open),
            text: text.to_string(),
        });
    };
    Ok((group, close + 1))
}

/// Splits a list group's inside on unescaped commas, unescaping each item.
fn split_list(inner: &str) -> Vec<String> {
    let mut items = Vec::new();
    let mut item = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some('{' | '}' | ',')) => {
                item.extend(chars.next());
            }
            ',' => items.push(std::mem::take(&mut item)),
            _ => item.push(c),
        }
    }
    items.push(item);
    items
}

/// Parses the inside of a range group (`1..10`, `001..500..5`, `a..z`), or
/// says what is wrong with it.
fn parse_range(inner: &str) -> Result<Group, &'static str> {
    let parts: Vec<&str> = inner.split("..").collect();
    let (a, b, step) = match parts[..] {
        [a, b] => (a, b, None),
        [a, b, s] => (a, b, Some(s)),
        _ => return Err(GROUP_SYNTAX),
    };
    let step = match step {
        None => 1,
        Some(s) if is_digits(s) => match s.parse::<u64>() {
            Ok(0) | Err(_) => return Err("the step must be a whole number from 1 to 2^64-1"),
            Ok(n) => n,
        },
        Some(_) => return Err("the step must be a whole number from 1 to 2^64-1"),
    };
    if is_integer(a) && is_integer(b) {
        let (Ok(start), Ok(end)) = (a.parse::<i64>(), b.parse::<i64>()) else {
            return Err("numbers must be between -2^63 and 2^63-1");
        };
        let padded = has_leading_zero(a) || has_leading_zero(b);
        let width = if padded { a.len().max(b.len()) } else { 0 };
        let span = (i128::from(end) - i128::from(start)).unsigned_abs();
        Ok(Group::Ints {
            start,
            step,
            down: end < start,
            count: span / u128::from(step) + 1,
            width,
        })
    } else if let ([x @ (b'a'..=b'z' | b'A'..=b'Z')], [y @ (b'a'..=b'z' | b'A'..=b'Z')]) =
        (a.as_bytes(), b.as_bytes())
    {
        let same_case = (x.is_ascii_lowercase() && y.is_ascii_lowercase())
            || (x.is_ascii_uppercase() && y.is_ascii_uppercase());
        if !same_case {
            return Err("letter ranges need two letters of the same case, like {a..z} or {A..Z}");
        }
        let span = u128::from(x.abs_diff(*y));
        Ok(Group::Letters {
            start: *x,
            step,
            down: y < x,
            count: span / u128::from(step) + 1,
        })
    } else {
        Err(GROUP_SYNTAX)
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_integer(s: &str) -> bool {
    is_digits(s.strip_prefix('-').unwrap_or(s))
}

fn has_leading_zero(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    digits.len() > 1 && digits.starts_with('0')
}

// ---------------------------------------------------------------------------
// Part 2: name templates
// ---------------------------------------------------------------------------

/// Where a [`Template`] gets its values: the caller's fields for one item.
///
/// The template module does not know which fields exist (`name`, `ext`,
/// `col.NAME`, `meta.FIELD`…); `None` means "no such field for this item".
pub trait Fields {
    /// The value of field `name`, or `None` when there is no such field.
    fn get(&self, name: &str) -> Option<Cow<'_, str>>;
}

impl<K, V, S> Fields for HashMap<K, V, S>
where
    K: Borrow<str> + Hash + Eq,
    V: AsRef<str>,
    S: BuildHasher,
{
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        HashMap::get(self, name).map(|v| Cow::Borrowed(v.as_ref()))
    }
}

impl<K, V> Fields for BTreeMap<K, V>
where
    K: Borrow<str> + Ord,
    V: AsRef<str>,
{
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        BTreeMap::get(self, name).map(|v| Cow::Borrowed(v.as_ref()))
    }
}

impl<T: Fields + ?Sized> Fields for &T {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        (**self).get(name)
    }
}

/// [`Fields`] from a closure: `FieldsFn(|name| (name == "n").then(|| "7".into()))`.
#[derive(Debug, Clone, Copy)]
pub struct FieldsFn<F>(pub F);

impl<F> Fields for FieldsFn<F>
where
    F: Fn(&str) -> Option<String>,
{
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        (self.0)(name).map(Cow::Owned)
    }
}

/// Why a [`Template`] could not be rendered for one item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The item has no field of this name (and no `default` filter
    /// stood in for it).
    #[error("unknown field {{{0}}}")]
    UnknownField(String),
    /// The template rendered to the empty string.
    #[error("the template rendered an empty result")]
    Empty,
    /// `pad(N)` was applied to a value that is not an integer.
    #[error("pad needs a number, but {{{field}}} is {value:?}")]
    NotANumber {
        /// The field being rendered.
        field: String,
        /// Its value when it reached `pad`.
        value: String,
    },
}

/// A name (or URL) template, parsed once and rendered per item.
///
/// Syntax: literal text with `{field}` or `{field|filter|filter(args)}`;
/// `{{` and `}}` are literal braces. Spaces are allowed around field names,
/// filters and `|`.
///
/// A field name is one or more parts joined by dots (`stem`, `col.cc`,
/// `meta.country`); a part is ASCII letters, digits, `_` and `-`, and the
/// first part starts with a letter or `_`.
///
/// Filters, applied left to right:
///
/// * `upper`, `lower`: Unicode case mapping.
/// * `trim`: strips surrounding whitespace.
/// * `slug`: see [`slug`].
/// * `replace('from','to')`: replaces every occurrence; `from` is not empty.
/// * `default('x')`: `x` when the value is empty or the field is missing.
///   A missing field passes through the other filters untouched until a
///   `default` fills it; if none does, rendering fails with
///   [`RenderError::UnknownField`].
/// * `pad(N)`: left-pads an integer with zeros to N characters, sign
///   included (`-5` → `-05` for `pad(3)`); N is 1 to 255. A value that is
///   not an integer fails with [`RenderError::NotANumber`].
///
/// String arguments are quoted with `'` or `"`; inside them `\'`, `\"` and
/// `\\` are escapes, and no other backslash is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    /// Field names in order of first use, without repeats.
    fields: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Field { name: String, filters: Vec<Filter> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Filter {
    Upper,
    Lower,
    Slug,
    Trim,
    Replace(String, String),
    Default(String),
    Pad(usize),
}

impl Template {
    /// Parses a template, rejecting bad syntax, bad field names and unknown
    /// filters with the column of the problem.
    pub fn parse(s: &str) -> Result<Template, TemplateError> {
        if s.is_empty() {
            return Err(TemplateError::Empty);
        }
        let mut p = Parser { src: s, pos: 0 };
        let mut parts = Vec::new();
        let mut fields: Vec<String> = Vec::new();
        let mut lit = String::new();
        let mut lit_start = 0;
        while let Some(b) = p.peek() {
            let doubled = p.src.as_bytes().get(p.pos + 1) == Some(&b);
            match b {
                b'{' | b'}' if doubled => {
                    // Keep one brace of the pair.
                    lit.push_str(&s[lit_start..=p.pos]);
                    p.pos += 2;
                    lit_start = p.pos;
                }
                b'}' => {
                    return Err(TemplateError::StrayBrace {
                        offset: p.pos,
                        column: column(s, p.pos),
                    })
                }
                b'{' => {
                    lit.push_str(&s[lit_start..p.pos]);
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    let (name, filters) = p.field()?;
                    if !fields.contains(&name) {
                        fields.push(name.clone());
                    }
                    parts.push(Part::Field { name, filters });
                    lit_start = p.pos;
                }
                _ => p.pos += 1,
            }
        }
        lit.push_str(&s[lit_start..]);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts, fields })
    }

    /// The field names the template uses, in order of first use, each once.
    pub fn fields(&self) -> impl Iterator<Item = &str> + '_ {
        self.fields.iter().map(String::as_str)
    }

    /// Renders the template with one item's fields.
    ///
    /// The result is not sanitized: split it on `/` and pass the parts to
    /// [`crate::naming::OutputDir::resolve`].
    pub fn render(&self, fields: &dyn Fields) -> Result<String, RenderError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Field { name, filters } => {
                    let mut value = fields.get(name);
                    for f in filters {
                        value = f.apply(value, name)?;
                    }
                    match value {
                        Some(v) => out.push_str(&v),
                        None => return Err(RenderError::UnknownField(name.clone())),
                    }
                }
            }
        }
        if out.is_empty() {
            return Err(RenderError::Empty);
        }
        Ok(out)
    }
}

impl std::str::FromStr for Template {
    type Err = TemplateError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Template::parse(s)
    }
}

impl Filter {
    /// Applies the filter; `None` is a missing field, which only `default`
    /// fills.
    fn apply<'a>(
        &'a self,
        value: Option<Cow<'a, str>>,
        field: &str,
    ) -> Result<Option<Cow<'a, str>>, RenderError> {
        let v = match (self, value) {
            (Filter::Default(d), None) => return Ok(Some(Cow::Borrowed(d))),
            (Filter::Default(d), Some(v)) if v.is_empty() => return Ok(Some(Cow::Borrowed(d))),
            (_, None) => return Ok(None),
            (_, Some(v)) => v,
        };
        let out = match self {
            Filter::Upper => Cow::Owned(v.to_uppercase()),
            Filter::Lower => Cow::Owned(v.to_lowercase()),
            Filter::Slug => Cow::Owned(slug(&v)),
            Filter::Trim => match v {
                Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
                Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
            },
            Filter::Replace(from, to) => Cow::Owned(v.replace(from.as_str(), to)),
            Filter::Default(_) => v,
            Filter::Pad(width) => {
                Cow::Owned(pad(&v, *width).ok_or_else(|| RenderError::NotANumber {
                    field: field.to_string(),
                    value: v.to_string(),
                })?)
            }
        };
        Ok(Some(out))
    }
}

/// Left-pads an integer with zeros to `width` characters, sign included;
/// `None` when `v` is not an integer.
fn pad(v: &str, width: usize) -> Option<String> {
    let (sign, digits) = match v.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", v),
    };
    if !is_digits(digits) {
        return None;
    }
    let zeros = width.saturating_sub(v.len());
    Some(format!("{sign}{}{digits}", "0".repeat(zeros)))
}

/// A URL- and file-name-friendly form of `s`: ASCII lowercase letters and
/// digits, with every run of anything else turned into one `-`, and no `-`
/// at either end.
///
/// Transliteration is kept trivial: Latin letters with diacritics (Latin-1
/// and Latin Extended-A, plus Romanian `ș` `ț`) become their base letters
/// (`é` → `e`, `ß` → `ss`, `Œ` → `oe`, `ł` → `l`) and combining accents are
/// dropped. Every other character (CJK, Cyrillic, emoji, punctuation) is
/// dropped too, but counts as a separator so the words around it stay apart.
/// The result can be empty.
pub fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut gap = false;
    let push = |out: &mut String, gap: &mut bool, c: char| {
        if *gap && !out.is_empty() {
            out.push('-');
        }
        *gap = false;
        out.push(c);
    };
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            push(&mut out, &mut gap, c.to_ascii_lowercase());
        } else if ('\u{300}'..='\u{36f}').contains(&c) {
            // Combining accents (decomposed text): drop, and keep the word whole.
        } else if let Some(t) = transliterate(c) {
            for c in t.chars() {
                push(&mut out, &mut gap, c);
            }
        } else {
            gap = true;
        }
    }
    out
}

/// Base letters for U+00C0..=U+00FF; `""` marks `×` and `÷`.
const LATIN_1: [&str; 64] = [
    "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i", //
    "d", "n", "o", "o", "o", "o", "o", "", "o", "u", "u", "u", "u", "y", "th", "ss", //
    "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i", //
    "d", "n", "o", "o", "o", "o", "o", "", "o", "u", "u", "u", "u", "y", "th", "y",
];

/// Base letters for U+0100..=U+017F (Latin Extended-A).
const LATIN_EXT_A: [&str; 128] = [
    "a", "a", "a", "a", "a", "a", "c", "c", "c", "c", "c", "c", "c", "c", "d", "d", //
    "d", "d", "e", "e", "e", "e", "e", "e", "e", "e", "e", "e", "g", "g", "g", "g", //
    "g", "g", "g", "g", "h", "h", "h", "h", "i", "i", "i", "i", "i", "i", "i", "i", //
    "i", "i", "ij", "ij", "j", "j", "k", "k", "k", "l", "l", "l", "l", "l", "l", "l", //
    "l", "l", "l", "n", "n", "n", "n", "n", "n", "n", "n", "n", "o", "o", "o", "o", //
    "o", "o", "oe", "oe", "r", "r", "r", "r", "r", "r", "s", "s", "s", "s", "s", "s", //
    "s", "s", "t", "t", "t", "t", "t", "t", "u", "u", "u", "u", "u", "u", "u", "u", //
    "u", "u", "u", "u", "w", "w", "y", "y", "y", "z", "z", "z", "z", "z", "z", "s",
];

/// The ASCII spelling of a Latin letter with diacritics, if trivial.
fn transliterate(c: char) -> Option<&'static str> {
    let t = match u32::from(c) {
        cp @ 0xc0..=0xff => LATIN_1[(cp - 0xc0) as usize],
        cp @ 0x100..=0x17f => LATIN_EXT_A[(cp - 0x100) as usize],
        0x218 | 0x219 => "s",
        0x21a | 0x21b => "t",
        _ => "",
    };
    Some(t).filter(|t| !t.is_empty())
}

/// A cursor over a name template. Offsets are bytes; every position it
/// stops at is an ASCII byte or the end, so slicing there is safe.
struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.pos += 1;
        }
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> (usize, &'a str) {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.pos += 1;
        }
        (start, &self.src[start..self.pos])
    }

    fn unexpected(&self, expected: &'static str) -> TemplateError {
        let found = match self.src[self.pos..].chars().next() {
            Some(c) => format!("{c:?}"),
            None => "end of template".to_string(),
        };
        TemplateError::Unexpected {
            offset: self.pos,
            column: column(self.src, self.pos),
            found,
            expected,
        }
    }

    /// Parses `{name|filter…}` with the cursor on the `{`; leaves it just
    /// past the `}`.
    fn field(&mut self) -> Result<(String, Vec<Filter>), TemplateError> {
        let open = self.pos;
        self.pos += 1;
        self.skip_ws();
        let (name_at, name) =
            self.take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if name.is_empty() {
            if self.peek().is_none() {
                return Err(self.unclosed(open));
            }
            return Err(self.unexpected(FIELD_SYNTAX));
        }
        if !valid_field_name(name) {
            return Err(TemplateError::BadField {
                offset: name_at,
                column: column(self.src, name_at),
                name: name.to_string(),
            });
        }
        let mut filters = Vec::new();
        loop {
            self.skip_ws();
            match self.peek() {
                None => return Err(self.unclosed(open)),
                Some(b'}') => {
                    self.pos += 1;
                    return Ok((name.to_string(), filters));
                }
                Some(b'|') => {
                    self.pos += 1;
                    self.skip_ws();
                    filters.push(self.filter()?);
                }
                Some(_) => return Err(self.unexpected("| or } after the field name")),
            }
        }
    }

    fn unclosed(&self, open: usize) -> TemplateError {
        TemplateError::Unclosed {
            offset: open,
            column: column(self.src, open),
            expected: FIELD_SYNTAX,
        }
    }

    /// Parses one filter with its arguments, the cursor on its name.
    fn filter(&mut self) -> Result<Filter, TemplateError> {
        let (at, name) = self.take_while(|b| b.is_ascii_alphanumeric() || b == b'_');
        if name.is_empty() {
            return Err(self.unexpected("a filter name after |"));
        }
        self.skip_ws();
        let args = if self.peek() == Some(b'(') {
            self.args()?
        } else {
            Vec::new()
        };
        let bad = |expected: &'static str| TemplateError::BadFilterArgs {
            offset: at,
            column: column(self.src, at),
            filter: name.to_string(),
            expected,
        };
        let filter = match (name, &args[..]) {
            ("upper", []) => Filter::Upper,
            ("lower", []) => Filter::Lower,
            ("slug", []) => Filter::Slug,
            ("trim", []) => Filter::Trim,
            ("upper" | "lower" | "slug" | "trim", _) => return Err(bad("it without arguments")),
            ("replace", [Arg::Str(from), Arg::Str(to)]) if !from.is_empty() => {
                Filter::Replace(from.clone(), to.clone())
            }
            ("replace", _) => {
                return Err(bad(
                    "replace('from','to') with two quoted strings, 'from' not empty",
                ))
            }
            ("default", [Arg::Str(d)]) => Filter::Default(d.clone()),
            ("default", _) => return Err(bad("default('text') with one quoted string")),
            ("pad", [Arg::Int(n)]) if (1..=MAX_PAD).contains(n) => Filter::Pad(*n as usize),
            ("pad", _) => return Err(bad("pad(N) with N a number from 1 to 255")),
            _ => {
                return Err(TemplateError::UnknownFilter {
                    offset: at,
                    column: column(self.src, at),
                    name: name.to_string(),
                })
            }
        };
        Ok(filter)
    }

    /// Parses `(arg, arg…)` with the cursor on the `(`.
    fn args(&mut self) -> Result<Vec<Arg>, TemplateError> {
        self.pos += 1;
        let mut args = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b')') {
            self.pos += 1;
            return Ok(args);
        }
        loop {
            self.skip_ws();
            let arg = match self.peek() {
                Some(q @ (b'\'' | b'"')) => Arg::Str(self.string(q)?),
                Some(b) if b.is_ascii_digit() => {
                    let (_, digits) = self.take_while(|b| b.is_ascii_digit());
                    // Too big for u64 is too big for any filter: make it
                    // fail the filter's own range check.
                    Arg::Int(digits.parse().unwrap_or(u64::MAX))
                }
                _ => return Err(self.unexpected("a quoted string or a number")),
            };
            args.push(arg);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b')') => {
                    self.pos += 1;
                    return Ok(args);
                }
                _ => return Err(self.unexpected(", or ) after an argument")),
            }
        }
    }

    /// Parses a string literal quoted with `quote`, the cursor on it.
    fn string(&mut self, quote: u8) -> Result<String, TemplateError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.src[self.pos..].chars().next() else {
                return Err(self.unexpected("a quote closing the string"));
            };
            match c {
                '\\' => {
                    self.pos += 1;
                    match self.peek() {
                        Some(e @ (b'\'' | b'"' | b'\\')) => {
                            out.push(char::from(e));
                            self.pos += 1;
                        }
                        _ => return Err(self.unexpected("\\', \\\" or \\\\ after a backslash")),
                    }
                }
                c if c == char::from(quote) => {
                    self.pos += 1;
                    return Ok(out);
                }
                c => {
                    out.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
    }
}

/// A filter argument.
enum Arg {
    Str(String),
    Int(u64),
}

/// Dot-separated parts of `[A-Za-z0-9_-]`, none empty, the first starting
/// with a letter or `_`.
fn valid_field_name(name: &str) -> bool {
    let starts_well = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    starts_well
        && name.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::OutputDir;
    use proptest::prelude::*;
    use std::path::{Component, Path};

    fn all(t: &str) -> Vec<String> {
        expand(t).unwrap().collect()
    }

    fn err(t: &str) -> String {
        expand(t).unwrap_err().to_string()
    }

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn render(t: &str, pairs: &[(&str, &str)]) -> Result<String, RenderError> {
        Template::parse(t).unwrap().render(&map(pairs))
    }

    fn parse_err(t: &str) -> String {
        Template::parse(t).unwrap_err().to_string()
    }

    #[test]
    fn integer_ranges() {
        assert_eq!(all("{1..3}"), ["1", "2", "3"]);
        assert_eq!(all("{3..1}"), ["3", "2", "1"]);
        assert_eq!(all("{-2..1}"), ["-2", "-1", "0", "1"]);
        assert_eq!(all("{7..7}"), ["7"]);
        assert_eq!(all("{0..10..5}"), ["0", "5", "10"]);
        assert_eq!(all("{10..0..5}"), ["10", "5", "0"]);
        assert_eq!(all("{1..10..4}"), ["1", "5", "9"]);
        assert_eq!(all("{1..3..100}"), ["1"]);
    }

    #[test]
    fn zero_padding_follows_the_bounds() {
        assert_eq!(all("{08..10}"), ["08", "09", "10"]);
        assert_eq!(all("{1..010..3}"), ["001", "004", "007", "010"]);
        assert_eq!(all("{0..2}"), ["0", "1", "2"], "a lone 0 is not padding");
        assert_eq!(all("{-05..01..2}"), ["-05", "-03", "-01", "001"]);
        let e = expand("{001..500}").unwrap();
        assert_eq!(e.len(), 500);
        let v: Vec<_> = e.collect();
        assert_eq!((v[0].as_str(), v[499].as_str()), ("001", "500"));
    }

    #[test]
    fn letters_and_lists() {
        assert_eq!(all("{a..e}"), ["a", "b", "c", "d", "e"]);
        assert_eq!(all("{E..A..2}"), ["E", "C", "A"]);
        assert_eq!(all("{a,b,c}"), ["a", "b", "c"]);
        assert_eq!(all("img{,-thumb}.jpg"), ["img.jpg", "img-thumb.jpg"]);
        assert_eq!(all("{,}"), ["", ""]);
        assert_eq!(all(r"{a\,b,c\}}"), ["a,b", "c}"]);
        assert_eq!(all("{1..2,x}"), ["1..2", "x"], "a comma makes a list");
    }

    #[test]
    fn last_group_varies_fastest() {
        assert_eq!(
            all("http://h/{a,b}/{1..3}.jpg"),
            [
                "http://h/a/1.jpg",
                "http://h/a/2.jpg",
                "http://h/a/3.jpg",
                "http://h/b/1.jpg",
                "http://h/b/2.jpg",
                "http://h/b/3.jpg"
            ]
        );
        assert_eq!(expand("{a,b}{1..3}{x..z}").unwrap().len(), 18);
    }

    #[test]
    fn escapes_and_literals() {
        let e = expand(r"http://h/\{x\}/a\b}").unwrap();
        assert!(e.is_literal());
        assert_eq!(e.len(), 1);
        assert_eq!(e.collect::<Vec<_>>(), [r"http://h/{x}/a\b}"]);
        assert_eq!(all(""), [""]);
        assert_eq!(all("{1..2}"), ["1", "2"]);
        assert!(!expand("{1..2}").unwrap().is_literal());
    }

    #[test]
    fn has_groups_is_cheap_and_sound() {
        assert!(has_groups("http://h/{1..3}"));
        assert!(has_groups(r"a\{b"));
        assert!(has_groups(r"a\}b"));
        assert!(!has_groups("http://h/a}b?x=1"));
        assert!(!has_groups(""));
    }

    #[test]
    fn huge_ranges_are_lazy() {
        let mut e = expand("http://h/{1..1000000000000}/{a,b}").unwrap();
        assert_eq!(e.len(), 2_000_000_000_000);
        assert_eq!(e.next().as_deref(), Some("http://h/1/a"));
        assert_eq!(e.next().as_deref(), Some("http://h/1/b"));
        assert_eq!(e.next().as_deref(), Some("http://h/2/a"));
        assert_eq!(e.size_hint().0, 2_000_000_000_000 - 3);

        let full = format!("{{{}..{}}}", i64::MIN, i64::MAX);
        let mut e = expand(&full).unwrap();
        assert_eq!(e.len(), 1u128 << 64);
        assert_eq!(e.next(), Some(i64::MIN.to_string()));
        let down = format!("{{{}..{}..{}}}", i64::MAX, i64::MIN, u64::MAX);
        assert_eq!(all(&down), [i64::MAX.to_string(), i64::MIN.to_string()]);
    }

    #[test]
    fn iteration_ends_and_stays_ended() {
        let mut e = expand("{1..2}").unwrap();
        assert_eq!(e.by_ref().count(), 2);
        assert_eq!(e.next(), None);
        assert_eq!(e.len(), 2);
    }

    #[test]
    fn expand_errors() {
        insta::assert_snapshot!(err("http://h/a/{1..x}"), @"bad range {1..x} at column 12: expected {N..M}, {N..M..STEP}, {a..z} or {a,b,c}");
        insta::assert_snapshot!(err("http://h/{abc}"), @r"bad group {abc} at column 10: expected {N..M}, {N..M..STEP}, {a..z} or {a,b,c} (write \{ for a literal brace)");
        insta::assert_snapshot!(err("http://h/{1..3"), @r"unclosed { at column 10: expected {N..M}, {N..M..STEP}, {a..z} or {a,b,c} closed by } (write \{ for a literal brace)");
        insta::assert_snapshot!(err("é{1..9..0}"), @"bad range {1..9..0} at column 2: the step must be a whole number from 1 to 2^64-1");
        insta::assert_snapshot!(err("{a,{b,c}}"), @r"nested { at column 4: groups cannot be nested (write \{ for a literal brace)");
        insta::assert_snapshot!(err("{a..Z}"), @"bad range {a..Z} at column 1: letter ranges need two letters of the same case, like {a..z} or {A..Z}");

        for bad in [
            "{}",
            "{1..}",
            "{..2}",
            "{1...3}",
            "{1..2..}",
            "{1..2..-1}",
            "{1..2..x}",
            "{ab..c}",
            "{1..a}",
            "{+1..2}",
            "{1..2..3..4}",
            "{",
            "x{",
            "{1..2}{",
        ] {
            assert!(expand(bad).is_err(), "{bad}");
        }
        let e = expand("{1..99999999999999999999}").unwrap_err();
        assert!(matches!(e, TemplateError::BadRange { .. }), "{e}");
        let e = expand(&format!("{{0..{}}}", u64::MAX)).unwrap_err();
        assert!(matches!(e, TemplateError::BadRange { .. }), "{e}");
    }

    #[test]
    fn counts_that_overflow_are_refused() {
        let full = format!("{{{}..{}}}", i64::MIN, i64::MAX);
        let e = expand(&format!("x{full}{full}")).unwrap_err();
        assert_eq!(e.offset(), 1 + full.len());
        insta::assert_snapshot!(e.to_string(), @"too many combinations at column 45: the pattern would expand to more than 340282366920938463463374607431768211455 URLs");
    }

    #[test]
    fn error_columns_count_characters() {
        let e = expand("ééé{x}").unwrap_err();
        assert_eq!((e.offset(), e.column()), (6, 4));
    }

    // -- name templates --

    #[test]
    fn flags_names() {
        let t = r#"{col.cc|upper}-{meta.country|replace(" ","_")}.gif"#;
        assert_eq!(
            render(t, &[("col.cc", "cn"), ("meta.country", "China")]).unwrap(),
            "CN-China.gif"
        );
        assert_eq!(
            render(t, &[("col.cc", "us"), ("meta.country", "United States")]).unwrap(),
            "US-United_States.gif"
        );
        let t = Template::parse(t).unwrap();
        assert_eq!(t.fields().collect::<Vec<_>>(), ["col.cc", "meta.country"]);
    }

    #[test]
    fn url_templates() {
        let t: Template = "http://h/flags/{col.cc|lower}/{col.cc|lower}.gif"
            .parse()
            .unwrap();
        assert_eq!(t.fields().collect::<Vec<_>>(), ["col.cc"]);
        let f = FieldsFn(|name: &str| (name == "col.cc").then(|| "CN".to_string()));
        assert_eq!(t.render(&f).unwrap(), "http://h/flags/cn/cn.gif");
    }

    #[test]
    fn literals_and_braces() {
        assert_eq!(render("a{{b}}c", &[]).unwrap(), "a{b}c");
        assert_eq!(render("{{{n}}}", &[("n", "1")]).unwrap(), "{1}");
        assert_eq!(render("plain.txt", &[]).unwrap(), "plain.txt");
        assert_eq!(render("{ n | pad(3) }", &[("n", "7")]).unwrap(), "007");
        assert_eq!(render("é{n}ü", &[("n", "ß")]).unwrap(), "éßü");
    }

    #[test]
    fn filters() {
        let f = &[
            ("t", "  Hello World  "),
            ("e", ""),
            ("n", "42"),
            ("neg", "-5"),
            ("q", r#"it's "x""#),
        ];
        assert_eq!(render("{t|trim|upper}", f).unwrap(), "HELLO WORLD");
        assert_eq!(render("{t|lower}", f).unwrap(), "  hello world  ");
        assert_eq!(render("{t|slug}", f).unwrap(), "hello-world");
        assert_eq!(
            render("{t|trim|replace(' ','_')}", f).unwrap(),
            "Hello_World"
        );
        assert_eq!(render("{t|trim|replace('o','')}", f).unwrap(), "Hell Wrld");
        assert_eq!(
            render(r#"{q|replace('\'',"\"")}"#, f).unwrap(),
            r#"it"s "x""#
        );
        assert_eq!(render(r"{q|replace('\\','/')}", f).unwrap(), r#"it's "x""#);
        assert_eq!(
            render("{x|replace('}','{')}", &[("x", "a}")]).unwrap(),
            "a{"
        );
        assert_eq!(render("{n|pad(5)}", f).unwrap(), "00042");
        assert_eq!(render("{n|pad(1)}", f).unwrap(), "42");
        assert_eq!(render("{neg|pad(3)}", f).unwrap(), "-05");
        assert_eq!(render("{e|default('none')}", f).unwrap(), "none");
        assert_eq!(render("{n|default('none')}", f).unwrap(), "42");
        assert_eq!(render("{t|upper()}", f).unwrap(), "  HELLO WORLD  ");
    }

    #[test]
    fn missing_fields() {
        assert_eq!(
            render("{missing|upper|default('x')|upper}", &[]).unwrap(),
            "X"
        );
        assert_eq!(
            render("{missing|upper}", &[]),
            Err(RenderError::UnknownField("missing".into()))
        );
        assert_eq!(render("{e}", &[("e", "")]), Err(RenderError::Empty));
        assert_eq!(
            render("{e|slug}", &[("e", "日本")]),
            Err(RenderError::Empty)
        );
        let e = render("{n|pad(4)}", &[("n", "abc")]).unwrap_err();
        insta::assert_snapshot!(e.to_string(), @r#"pad needs a number, but {n} is "abc""#);
        let e = render("{meta.country}.gif", &[]).unwrap_err();
        insta::assert_snapshot!(e.to_string(), @"unknown field {meta.country}");
    }

    #[test]
    fn slugs() {
        assert_eq!(slug("Hello, World!"), "hello-world");
        assert_eq!(slug("--a--b--"), "a-b");
        assert_eq!(
            slug("Ålborg Straße Œuvre Łódź"),
            "alborg-strasse-oeuvre-lodz"
        );
        assert_eq!(slug("Côte d’Ivoire"), "cote-d-ivoire");
        assert_eq!(slug("cafe\u{301} Ș"), "cafe-s");
        assert_eq!(slug("東京Tokyo大阪Osaka"), "tokyo-osaka");
        assert_eq!(slug("2×3÷4"), "2-3-4");
        assert_eq!(slug("Ünïcödé 😀 text"), "unicode-text");
        assert_eq!(slug("../../etc/passwd"), "etc-passwd");
        assert_eq!(slug(""), "");
    }

    #[test]
    fn transliteration_tables_cover_their_ranges() {
        for cp in 0xc0..=0x17fu32 {
            let c = char::from_u32(cp).unwrap();
            let t = transliterate(c);
            if c == '×' || c == '÷' {
                assert_eq!(t, None);
            } else {
                let t = t.unwrap_or_else(|| panic!("{c}"));
                assert!(t.bytes().all(|b| b.is_ascii_lowercase()), "{c} -> {t}");
            }
        }
        for (c, t) in [
            ('À', "a"),
            ('ç', "c"),
            ('Ð', "d"),
            ('Ø', "o"),
            ('þ', "th"),
            ('ÿ', "y"),
            ('Ĳ', "ij"),
            ('ĸ', "k"),
            ('Ŀ', "l"),
            ('ŉ', "n"),
            ('Ō', "o"),
            ('œ', "oe"),
            ('Ş', "s"),
            ('ŧ', "t"),
            ('Ű', "u"),
            ('Ÿ', "y"),
            ('Ž', "z"),
            ('ſ', "s"),
        ] {
            assert_eq!(transliterate(c), Some(t), "{c}");
        }
    }

    #[test]
    fn template_errors() {
        insta::assert_snapshot!(parse_err("{name|uper}.jpg"), @r#"unknown filter "uper" at column 7: expected upper, lower, slug, trim, replace('a','b'), default('x') or pad(N)"#);
        insta::assert_snapshot!(parse_err("{n|pad(0)}"), @"bad arguments to pad at column 4: expected pad(N) with N a number from 1 to 255");
        insta::assert_snapshot!(parse_err("{x|replace('a')}"), @"bad arguments to replace at column 4: expected replace('from','to') with two quoted strings, 'from' not empty");
        insta::assert_snapshot!(parse_err("a/{col..x}"), @r#"bad field name "col..x" at column 4: expected letters, digits, _ or -, in parts joined by dots (like stem or col.NAME), starting with a letter"#);
        insta::assert_snapshot!(parse_err("{stem}}"), @"single } at column 7: write }} for a literal brace");
        insta::assert_snapshot!(parse_err("x{stem"), @"unclosed { at column 2: expected {field} or {field|filter}; write {{ for a literal brace");
        insta::assert_snapshot!(parse_err("{col.image url}"), @r#"unexpected 'u' at column 12: expected | or } after the field name"#);
        insta::assert_snapshot!(parse_err("{x|replace('a,'b')}"), @r#"unexpected 'b' at column 16: expected , or ) after an argument"#);
        insta::assert_snapshot!(parse_err("{x|default('a)}"), @"unexpected end of template at column 16: expected a quote closing the string");
        insta::assert_snapshot!(parse_err(""), @"the template is empty");

        for bad in [
            "{}",
            "{ }",
            "{1st}",
            "{.a}",
            "{a.}",
            "{a|}",
            "{a|upper(1)}",
            "{a|pad}",
            "{a|pad('3')}",
            "{a|pad(99999999999999999999999)}",
            "{a|default}",
            "{a|default('x','y')}",
            "{a|replace('','x')}",
            r"{a|replace('\n','x')}",
            "{a|trim(}",
            "{a|Upper}",
            "{é}",
            "{a b}",
            "{a|upper lower}",
            "}",
            "{",
            "{a|replace(\"x\",'y'",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn field_names() {
        for good in [
            "name",
            "stem",
            "_x",
            "col.NAME",
            "col.image-url",
            "col.0",
            "page.title",
        ] {
            assert!(valid_field_name(good), "{good}");
        }
        for bad in ["", "1", "-a", ".a", "a.", "a..b", "a.b."] {
            assert!(!valid_field_name(bad), "{bad}");
        }
        let t = Template::parse("{b}{a}{b|upper}{c.d}").unwrap();
        assert_eq!(t.fields().collect::<Vec<_>>(), ["b", "a", "c.d"]);
    }

    #[test]
    fn fields_impls() {
        let mut h: HashMap<&str, &str> = HashMap::new();
        h.insert("a", "1");
        let b: BTreeMap<String, String> = [("a".to_string(), "2".to_string())].into();
        let t = Template::parse("{a}").unwrap();
        assert_eq!(t.render(&h).unwrap(), "1");
        assert_eq!(t.render(&b).unwrap(), "2");
        assert_eq!(t.render(&&b).unwrap(), "2");
    }

    // -- properties --

    /// A piece of a URL pattern and the strings it should stand for,
    /// computed the obvious way.
    fn piece() -> impl Strategy<Value = (String, Vec<String>)> {
        prop_oneof![
            "[a-z/.:]{0,3}".prop_map(|s| (s.clone(), vec![s])),
            (-3i64..12, -3i64..12, 1i64..4, any::<bool>()).prop_map(|(a, b, step, pad)| {
                // Padding only with non-negative bounds keeps the oracle simple.
                let pad = pad && a >= 0 && b >= 0;
                let w = if pad { 2 } else { 0 };
                let text = format!("{{{a:0w$}..{b:0w$}..{step}}}");
                let mut vals = Vec::new();
                let mut v = a;
                while (a <= b && v <= b) || (a > b && v >= b) {
                    vals.push(format!("{v:0w$}"));
                    v += if a <= b { step } else { -step };
                }
                (text, vals)
            }),
            (b'a'..=b'z', b'a'..=b'z').prop_map(|(a, b)| {
                let vals: Vec<String> = if a <= b {
                    (a..=b).map(|c| char::from(c).to_string()).collect()
                } else {
                    (b..=a).rev().map(|c| char::from(c).to_string()).collect()
                };
                (format!("{{{}..{}}}", char::from(a), char::from(b)), vals)
            }),
            proptest::collection::vec("[a-z0-9.]{0,2}", 2..4)
                .prop_map(|items| (format!("{{{}}}", items.join(",")), items)),
        ]
    }

    proptest! {
        #[test]
        fn expansion_matches_the_obvious_product(pieces in proptest::collection::vec(piece(), 0..4)) {
            let template: String = pieces.iter().map(|(t, _)| t.as_str()).collect();
            let mut expected = vec![String::new()];
            for (_, vals) in &pieces {
                expected = expected
                    .iter()
                    .flat_map(|prefix| vals.iter().map(move |v| format!("{prefix}{v}")))
                    .collect();
            }
            let e = expand(&template).unwrap();
            prop_assert_eq!(e.len(), expected.len() as u128);
            prop_assert_eq!(e.size_hint(), (expected.len(), Some(expected.len())));
            let got: Vec<String> = e.collect();
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn expand_never_panics(s in any::<String>()) {
            let _ = expand(&s).map(|e| e.take(3).count());
        }

        #[test]
        fn expand_never_panics_on_brace_soup(s in r"[{}\\,.0-9a-zA-Z-]{0,24}") {
            if let Ok(e) = expand(&s) {
                let n = e.len();
                let counted = e.take(10_001).count() as u128;
                prop_assert_eq!(counted, n.min(10_001));
            }
        }

        #[test]
        fn without_groups_expand_is_identity(s in r"[{}\\a.,]{0,10}") {
            if !has_groups(&s) {
                let e = expand(&s).unwrap();
                prop_assert!(e.is_literal());
                prop_assert_eq!(e.collect::<Vec<_>>(), vec![s]);
            }
        }

        #[test]
        fn parse_and_render_never_panic(t in any::<String>(), soup in r"[{}|()'\\,.a-z0-9 ]{0,24}") {
            let fields = FieldsFn(|name: &str| Some(name.repeat(2)));
            for t in [t, soup] {
                if let Ok(t) = Template::parse(&t) {
                    let _ = t.render(&fields);
                }
            }
        }

        #[test]
        fn rendered_names_stay_inside(
            a in hostile(),
            b in hostile(),
            ext in hostile(),
        ) {
            let t = Template::parse("{col.a}/{col.b|slug}.{ext}").unwrap();
            let f = map(&[("col.a", a.as_str()), ("col.b", b.as_str()), ("ext", ext.as_str())]);
            let out = OutputDir::new("/out");
            if let Ok(name) = t.render(&f) {
                let components: Vec<&str> = name.split('/').collect();
                if let Ok(d) = out.resolve(&components) {
                    prop_assert!(d.path.starts_with("/out"), "{:?}", d);
                    let rel = Path::new(&d.rel);
                    prop_assert!(rel.components().all(|c| matches!(c, Component::Normal(_))), "{:?}", d);
                    prop_assert_eq!(rel.components().count(), components.len());
                }
            }
        }
    }

    /// Field values an attacker would choose, and anything at all.
    fn hostile() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            Just("..".to_string()),
            Just(".".to_string()),
            Just(String::new()),
            Just("/".to_string()),
            Just("\0".to_string()),
            r"[./\\\x00 ]{0,8}",
            r"(\.\./){1,5}[a-z]{0,3}",
            ".{200,400}",
        ]
    }
}
