//! Name templates: `{field|filter}` rendered from an item's fields.

use super::*;

/// Where a [`Template`] gets its values: the caller's fields for one item.
///
/// The template module does not know which fields exist (`name`, `ext`,
/// `col.NAME`, `meta.FIELD`…); `None` means "no such field for this item".
pub trait Fields {
    /// The value of field `name`, or `None` when there is no such field.
    fn get(&self, name: &str) -> Option<Cow<'_, str>>;

    /// What stands for `/` and `\` in field `name`'s value when that value
    /// is one path component whatever text it holds (a page title: `Cats /
    /// Dogs` names one folder, not two). `None`, the default, leaves the
    /// value as it is, so a field that holds a path (`{path}`) still makes
    /// directories.
    ///
    /// [`Template::render`] replaces after the field's filters, so
    /// `{page.title|replace('/',' - ')}` can still choose its own.
    fn separator_replacement(&self, _name: &str) -> Option<&'static str> {
        None
    }
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

    fn separator_replacement(&self, name: &str) -> Option<&'static str> {
        (**self).separator_replacement(name)
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
    pub(super) parts: Vec<Part>,
    /// Field names in order of first use, without repeats.
    pub(super) fields: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Part {
    Lit(String),
    Field { name: String, filters: Vec<Filter> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Filter {
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
    /// [`crate::plan::naming::OutputDir::resolve`]. A field whose
    /// [`Fields::separator_replacement`] says it is one component has its
    /// `/` and `\` replaced, so only the template's own `/` splits.
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
                    match (value, fields.separator_replacement(name)) {
                        (Some(v), None) => out.push_str(&v),
                        (Some(v), Some(with)) => out.push_str(&v.replace(['/', '\\'], with)),
                        (None, _) => return Err(RenderError::UnknownField(name.clone())),
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
pub(super) fn pad(v: &str, width: usize) -> Option<String> {
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
pub(super) const LATIN_1: [&str; 64] = [
    "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i", //
    "d", "n", "o", "o", "o", "o", "o", "", "o", "u", "u", "u", "u", "y", "th", "ss", //
    "a", "a", "a", "a", "a", "a", "ae", "c", "e", "e", "e", "e", "i", "i", "i", "i", //
    "d", "n", "o", "o", "o", "o", "o", "", "o", "u", "u", "u", "u", "y", "th", "y",
];

/// Base letters for U+0100..=U+017F (Latin Extended-A).
pub(super) const LATIN_EXT_A: [&str; 128] = [
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
pub(super) fn transliterate(c: char) -> Option<&'static str> {
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
pub(super) struct Parser<'a> {
    pub(super) src: &'a str,
    pub(super) pos: usize,
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
pub(super) enum Arg {
    Str(String),
    Int(u64),
}

/// Dot-separated parts of `[A-Za-z0-9_-]`, none empty, the first starting
/// with a letter or `_`.
pub(super) fn valid_field_name(name: &str) -> bool {
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
