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
//! go to [`crate::plan::naming::OutputDir::resolve`], the one place that cleans
//! path components and proves the result stays in the output directory. The
//! one exception is a field that [`Fields`] declares a single component (a
//! page title): its separators are replaced as it is rendered, because after
//! rendering nothing can tell its `/` from one written in the template.

use std::borrow::{Borrow, Cow};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hash};
use std::iter::FusedIterator;

mod name;
mod pattern;

pub use name::{Fields, FieldsFn, RenderError, Template};
pub use pattern::{expand, has_groups, Expansion};

use pattern::*;

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

#[cfg(test)]
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

#[cfg(test)]
mod tests {
    use super::name::{slug, transliterate, valid_field_name};
    use super::*;
    use crate::plan::naming::OutputDir;
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
