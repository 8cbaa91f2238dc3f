//! URL patterns: shell brace expansion (`{001..500}`, `{a,b}`), lazily.

use super::*;

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
    pub(super) segments: Vec<Segment>,
    pub(super) groups: Vec<Group>,
    /// The odometer: the current position in each group.
    pub(super) index: Vec<u128>,
    /// How many strings in all (for a caller that would refuse an absurd
    /// job before it starts; only the tests read it yet).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(super) total: u128,
    pub(super) remaining: u128,
    /// Expected length of one string, to size its buffer.
    pub(super) size_hint: usize,
}

// `is_empty` would always be false: every valid pattern yields at least one
// string, so `len` stands alone.
#[allow(clippy::len_without_is_empty)]
#[cfg(test)]
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
pub(super) enum Segment {
    Lit(String),
    Group(usize),
}

#[derive(Debug, Clone)]
pub(super) enum Group {
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
pub(super) fn parse_group(src: &str, open: usize) -> Result<(Group, usize), TemplateError> {
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
pub(super) fn split_list(inner: &str) -> Vec<String> {
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
pub(super) fn parse_range(inner: &str) -> Result<Group, &'static str> {
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

pub(super) fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

pub(super) fn is_integer(s: &str) -> bool {
    is_digits(s.strip_prefix('-').unwrap_or(s))
}

pub(super) fn has_leading_zero(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    digits.len() > 1 && digits.starts_with('0')
}

// ---------------------------------------------------------------------------
// Part 2: name templates
// ---------------------------------------------------------------------------
