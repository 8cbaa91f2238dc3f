//! Extract: one HTML page in, its title, file URLs and next links out.
//!
//! The work is done in three passes over data that is already in memory
//! (pages are small, and the whole body is needed anyway to find a late
//! `<base href>`):
//!
//! 1. **Charset.** Chosen as browsers choose it: a byte-order mark, else the
//!    `charset=` of the Content-Type header, else a `<meta charset>` or
//!    `<meta http-equiv="Content-Type" content="…; charset=…">` found by the
//!    WHATWG *prescan* of the first 1024 bytes, else UTF-8. Labels are
//!    `encoding_rs` (WHATWG Encoding Standard) labels, so `gb2312` means GBK
//!    and `iso-8859-1` means windows-1252, exactly as in a browser. The whole
//!    body is then decoded to UTF-8, malformed bytes becoming U+FFFD, so the
//!    next pass never sees a legacy encoding.
//! 2. **Selection.** `lol_html` streams over the UTF-8 text and runs the
//!    [`Rules`] selectors; it matches on the tags as written (no implied
//!    elements, no tree), which is what makes it several times faster than a
//!    DOM parser and is all a selector such as `.postContent img` needs.
//!    Handlers only copy raw attribute values and the first `<title>`'s text.
//! 3. **Resolution.** `lol_html` hands values over as written, so entities
//!    are decoded here (`htmlize`, the WHATWG tables, with the attribute rule
//!    that leaves `?a=1&copy=2` alone). Values are resolved against the first
//!    `<base href>` (which applies to the whole page, including elements
//!    before it) or the page URL; only `http`/`https` URLs are kept, without
//!    fragments, each once, in document order.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashSet;

use encoding_rs::Encoding;
use lol_html::errors::{RewritingError, SelectorError};
use lol_html::html_content::{Element, TextChunk};
use lol_html::{ElementContentHandlers, HtmlRewriter, Selector, Settings};
use url::{ParseOptions, Url};

/// How many bytes the `<meta>` prescan looks at, as in browsers.
const PRESCAN_LEN: usize = 1024;

/// What to take from each page: which elements hold file URLs, in which
/// attributes, and which links lead to the next pages.
///
/// Build it with [`Rules::new`], which checks the selectors up front so a
/// typo fails before any page is fetched. [`extract`] parses the selectors
/// again on each call (microseconds, next to parsing a page), so the fields
/// stay plain strings that are easy to print and record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// CSS selector for the elements whose attribute holds a file URL, such
    /// as `.postContent img`.
    pub select: String,
    /// The attributes to read, lowercase, in order of preference: each
    /// selected element yields the first that is present and not blank, so
    /// `data-src, src` takes a lazy-loading gallery's real image and still
    /// the `src` of an ordinary one. `srcset` (and any `*-srcset`, such as
    /// `data-srcset`) is read as a srcset and yields its largest candidate.
    pub attrs: Vec<String>,
    /// CSS selector for the links to crawl next (their `href`), such as
    /// `a.next` for pagination or `a` for a whole site.
    pub follow: Option<String>,
}

impl Rules {
    /// Checks and builds the rules.
    ///
    /// # Errors
    ///
    /// `attrs` is one attribute name or several separated by commas, in
    /// order of preference (`data-src,src`).
    ///
    /// # Errors
    ///
    /// [`ExtractError::BadSelector`] naming the selector that does not parse
    /// (or that `lol_html` does not support), [`ExtractError::BadAttr`] naming
    /// a name that cannot be an attribute name, or
    /// [`ExtractError::EmptyAttr`] when the list has an empty element.
    pub fn new(select: &str, attrs: &str, follow: Option<&str>) -> Result<Rules, ExtractError> {
        parse_selector("--select", select)?;
        if let Some(follow) = follow {
            parse_selector("--follow", follow)?;
        }
        let bad = |c: char| c.is_ascii_whitespace() || c.is_control() || "\"'<>/=".contains(c);
        let attrs = attrs
            .split(',')
            .map(|attr| match attr.trim() {
                "" => Err(ExtractError::EmptyAttr(attrs.to_owned())),
                attr if attr.contains(bad) => Err(ExtractError::BadAttr(attr.to_owned())),
                attr => Ok(attr.to_ascii_lowercase()),
            })
            .collect::<Result<_, _>>()?;
        Ok(Rules {
            select: select.to_owned(),
            attrs,
            follow: follow.map(str::to_owned),
        })
    }
}

/// Whether attribute `attr` holds a srcset rather than a single URL.
fn is_srcset(attr: &str) -> bool {
    attr == "srcset" || attr.ends_with("-srcset")
}

/// What one page holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The first `<title>`'s text: entities decoded, whitespace collapsed,
    /// trimmed. `None` when there is no title or it is blank.
    pub title: Option<String>,
    /// Absolute `http`/`https` URLs of the selected attribute, in document
    /// order, each once, without fragments.
    pub files: Vec<Url>,
    /// Absolute `http`/`https` URLs of the `follow` elements' `href`, by the
    /// same rules.
    pub links: Vec<Url>,
    /// The encoding the page was decoded with (its `encoding_rs` name, such
    /// as `UTF-8`, `GBK`, `Big5`, `Shift_JIS`).
    pub charset: &'static str,
    /// Attribute values that are not URLs even relative to the page (such as
    /// `http://[bad`). Values dropped on purpose (`data:` and other schemes,
    /// empty values) are not counted.
    pub skipped: usize,
}

/// Why a page could not be parsed, or the rules are wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// A CSS selector that does not parse or is not supported.
    #[error("invalid {flag} selector {selector:?}: {}", describe(reason))]
    BadSelector {
        /// Which option it came from: `--select` or `--follow`.
        flag: &'static str,
        /// The selector as given.
        selector: String,
        /// What is wrong with it.
        reason: SelectorError,
    },
    /// An attribute name that cannot occur in HTML.
    #[error("invalid --attr {0:?}: expected an attribute name such as src, srcset or data-src")]
    BadAttr(String),
    /// An attribute list with an empty element, such as `data-src,,src`
    /// (the whole list as given).
    #[error(
        "invalid --attr {0:?}: an empty name in the list; expected names separated by commas, \
         such as data-src,src"
    )]
    EmptyAttr(String),
    /// The HTML parser gave up (it does not, short of running out of memory).
    #[error("cannot parse the page: {0}")]
    Html(#[from] RewritingError),
}

/// `lol_html`'s selector messages, in the lowercase, period-free style of
/// the rest of the message.
fn describe(reason: &SelectorError) -> String {
    let text = reason.to_string();
    let text = text.trim_end_matches('.');
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().chain(chars).collect()
    })
}

fn parse_selector(flag: &'static str, selector: &str) -> Result<Selector, ExtractError> {
    selector
        .parse()
        .map_err(|reason| ExtractError::BadSelector {
            flag,
            selector: selector.to_owned(),
            reason,
        })
}

/// Parses one HTML page.
///
/// `body` is the raw bytes, `content_type` the Content-Type header (its
/// `charset=` is used), `base` the page URL after redirects.
///
/// # Errors
///
/// [`ExtractError::BadSelector`] if `rules` holds a selector that does not
/// parse (only possible when the struct was built by hand, not by
/// [`Rules::new`]). Malformed HTML is not an error: like a browser, the
/// parser makes the best of it.
pub fn extract(
    body: &[u8],
    content_type: Option<&str>,
    base: &Url,
    rules: &Rules,
) -> Result<Page, ExtractError> {
    let select = parse_selector("--select", &rules.select)?;
    let follow = match &rules.follow {
        Some(follow) => Some(parse_selector("--follow", follow)?),
        None => None,
    };
    let (encoding, html) = decode(body, content_type);
    let raw = collect(&html, select, follow, &rules.attrs)?;

    let base = raw
        .base
        .and_then(|href| base.join(trim(&htmlize::unescape_attribute(href))).ok())
        .filter(|url| !url.cannot_be_a_base())
        .unwrap_or_else(|| base.clone());
    // As in a browser, the query of a URL in a legacy-encoded page is
    // percent-encoded in the page's encoding (the path is always UTF-8).
    let encode = query_encoder(encoding);
    let encode: &dyn Fn(&str) -> Cow<'_, [u8]> = &encode;
    let legacy = encoding.output_encoding() != encoding_rs::UTF_8;
    let options = Url::options()
        .base_url(Some(&base))
        .encoding_override(legacy.then_some(encode));
    let mut skipped = 0;
    let files = unique(raw.files.iter().filter_map(|(value, srcset)| {
        let value = htmlize::unescape_attribute(value.as_str());
        let value = if *srcset {
            largest_candidate(&value)?
        } else {
            &value
        };
        resolve(options, value, &mut skipped)
    }));
    let links = unique(raw.links.iter().filter_map(|value| {
        resolve(
            options,
            &htmlize::unescape_attribute(value.as_str()),
            &mut skipped,
        )
    }));
    let title = htmlize::unescape(raw.title)
        .split_ascii_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Page {
        title: (!title.is_empty()).then_some(title),
        files,
        links,
        charset: encoding.name(),
        skipped,
    })
}

/// Encodes a URL query in `encoding` (unmappable characters become `&#N;`,
/// percent-encoded later, as browsers do).
fn query_encoder(encoding: &'static Encoding) -> impl Fn(&str) -> Cow<'_, [u8]> {
    move |text| encoding.encode(text).0
}

/// Raw values copied out of the page by the `lol_html` handlers.
#[derive(Default)]
struct Collected {
    /// Each value with whether it is a srcset.
    files: Vec<(String, bool)>,
    links: Vec<String>,
    base: Option<String>,
    /// How many `<title>` start tags have been seen: text is kept only while
    /// inside the first.
    titles: usize,
    title: String,
}

fn collect(
    html: &str,
    select: Selector,
    follow: Option<Selector>,
    attrs: &[String],
) -> Result<Collected, ExtractError> {
    let state = RefCell::new(Collected::default());
    let mut settings = Settings::new()
        // Strict mode bails out on markup whose parsing depends on the tree
        // (such as `<select><script>`); a crawler wants its best effort.
        .with_strict(false)
        .append_element_content_handler((
            Cow::Owned(select),
            ElementContentHandlers::default().element(|el: &mut Element<'_, '_>| {
                // A blank attribute is what a lazy-loading page leaves before
                // its script runs: the next name in the list is the URL.
                let found = attrs.iter().find_map(|attr| {
                    let value = el.get_attribute(attr)?;
                    (!trim(&value).is_empty()).then(|| (value, is_srcset(attr)))
                });
                if let Some(found) = found {
                    state.borrow_mut().files.push(found);
                }
                Ok(())
            }),
        ))
        .append_element_content_handler((
            Cow::Owned(parse_selector("built-in", "base[href]")?),
            ElementContentHandlers::default().element(|el: &mut Element<'_, '_>| {
                let mut state = state.borrow_mut();
                if state.base.is_none() {
                    state.base = el.get_attribute("href");
                }
                Ok(())
            }),
        ))
        .append_element_content_handler((
            Cow::Owned(parse_selector("built-in", "title")?),
            ElementContentHandlers::default()
                .element(|_: &mut Element<'_, '_>| {
                    state.borrow_mut().titles += 1;
                    Ok(())
                })
                .text(|chunk: &mut TextChunk<'_>| {
                    let mut state = state.borrow_mut();
                    if state.titles == 1 {
                        state.title.push_str(chunk.as_str());
                    }
                    Ok(())
                }),
        ));
    if let Some(follow) = follow {
        settings = settings.append_element_content_handler((
            Cow::Owned(follow),
            ElementContentHandlers::default().element(|el: &mut Element<'_, '_>| {
                if let Some(value) = el.get_attribute("href") {
                    state.borrow_mut().links.push(value);
                }
                Ok(())
            }),
        ));
    }
    let mut rewriter = HtmlRewriter::new(settings, |_: &[u8]| {});
    rewriter.write(html.as_bytes())?;
    rewriter.end()?;
    Ok(state.into_inner())
}

/// Trims HTML's ASCII whitespace (not U+00A0, which a URL may not start
/// with either but which the URL parser then reports).
fn trim(value: &str) -> &str {
    value.trim_matches(|c: char| c.is_ascii_whitespace())
}

/// Resolves one attribute value, or says why not: `None` for values dropped
/// on purpose, and `skipped` counts those that are not URLs at all.
fn resolve(options: ParseOptions<'_>, value: &str, skipped: &mut usize) -> Option<Url> {
    let value = trim(value);
    if value.is_empty() {
        return None;
    }
    match options.parse(value) {
        Ok(mut url) if matches!(url.scheme(), "http" | "https") => {
            url.set_fragment(None);
            Some(url)
        }
        Ok(_) => None,
        Err(_) => {
            *skipped += 1;
            None
        }
    }
}

/// Keeps the first of each URL, in order.
fn unique(urls: impl Iterator<Item = Url>) -> Vec<Url> {
    let mut seen = HashSet::new();
    urls.filter(|url| seen.insert(url.clone())).collect()
}

/// Picks the largest candidate of a srcset: the highest `w` descriptor,
/// else the highest `x` density (a candidate without one counts as `1x`),
/// the first on ties.
///
/// Parsing follows the WHATWG srcset algorithm in its essentials: URLs may
/// contain commas (`/img,w_800/a.jpg 800w`), a URL ending in commas ends
/// its candidate, descriptors run to the next comma outside parentheses.
/// Unknown descriptors are ignored rather than dropping the candidate.
fn largest_candidate(srcset: &str) -> Option<&str> {
    let bytes = srcset.as_bytes();
    let is_space = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_whitespace);
    // Slicing at ASCII delimiters always lands on a char boundary.
    let mut best: Option<(&str, Option<u64>, f64)> = None;
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && (is_space(i) || bytes[i] == b',') {
            i += 1;
        }
        if i == bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && !is_space(i) {
            i += 1;
        }
        let mut url = &srcset[start..i];
        let mut width = None;
        let mut density = 1.0;
        if url.ends_with(',') {
            url = url.trim_end_matches(',');
        } else {
            let mut depth = 0_usize;
            let desc_start = i;
            while i < bytes.len() && !(bytes[i] == b',' && depth == 0) {
                match bytes[i] {
                    b'(' => depth += 1,
                    b')' => depth = depth.saturating_sub(1),
                    _ => {}
                }
                i += 1;
            }
            for token in srcset[desc_start..i].split_ascii_whitespace() {
                if let Some(w) = token.strip_suffix('w').and_then(|w| w.parse().ok()) {
                    width = Some(w);
                } else if let Some(x) = token.strip_suffix('x').and_then(|x| x.parse::<f64>().ok())
                {
                    if x.is_finite() && x >= 0.0 {
                        density = x;
                    }
                }
            }
        }
        if url.is_empty() {
            continue;
        }
        let better = match best {
            None => true,
            Some((_, best_w, best_x)) => match (width, best_w) {
                (Some(w), Some(best_w)) => w > best_w,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => density > best_x,
            },
        };
        if better {
            best = Some((url, width, density));
        }
    }
    best.map(|(url, _, _)| url)
}

/// Picks the encoding (see the module docs) and decodes the whole body.
fn decode<'a>(body: &'a [u8], content_type: Option<&str>) -> (&'static Encoding, Cow<'a, str>) {
    if let Some((encoding, bom)) = Encoding::for_bom(body) {
        let (text, _) = encoding.decode_without_bom_handling(body.get(bom..).unwrap_or_default());
        return (encoding, text);
    }
    let encoding = content_type
        .and_then(charset_param)
        .and_then(|label| Encoding::for_label(label.as_bytes()))
        .or_else(|| prescan(body.get(..PRESCAN_LEN).unwrap_or(body)))
        .unwrap_or(encoding_rs::UTF_8);
    let (text, _) = encoding.decode_without_bom_handling(body);
    (encoding, text)
}

/// The `charset` parameter of a Content-Type value, unquoted.
fn charset_param(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches(['"', '\'']))
    })
}

/// HTML's ASCII whitespace, as the prescan defines it.
fn is_space(byte: u8) -> bool {
    matches!(byte, b'\t' | b'\n' | b'\x0C' | b'\r' | b' ')
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn find_ignore_case(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// The WHATWG "prescan a byte stream to determine its encoding" algorithm:
/// finds a `<meta>` charset while skipping comments and the attributes of
/// other tags, so `<img alt="<meta charset=x>">` does not count.
fn prescan(bytes: &[u8]) -> Option<&'static Encoding> {
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let second = rest.get(1).copied();
        if rest.starts_with(b"<!--") {
            // The comment ends at the first `-->`, which may share its
            // dashes with the `<!--` (so `<!-->` is a whole comment).
            i += 2 + find(&rest[2..], b"-->")? + 3;
        } else if rest.len() > 5
            && rest[..5].eq_ignore_ascii_case(b"<meta")
            && (is_space(rest[5]) || rest[5] == b'/')
        {
            i += 5;
            if let Some(encoding) = meta(bytes, &mut i) {
                return Some(encoding);
            }
        } else if rest[0] == b'<'
            && (second.is_some_and(|c| c.is_ascii_alphabetic())
                || (second == Some(b'/') && rest.get(2).is_some_and(u8::is_ascii_alphabetic)))
        {
            while i < bytes.len() && !is_space(bytes[i]) && bytes[i] != b'>' {
                i += 1;
            }
            while attribute(bytes, &mut i).is_some() {}
            i += 1;
        } else if rest[0] == b'<' && matches!(second, Some(b'!' | b'/' | b'?')) {
            i += find(rest, b">")? + 1;
        } else {
            i += 1;
        }
    }
    None
}

/// The prescan's handling of one `<meta` tag, from just after its name.
fn meta(bytes: &[u8], i: &mut usize) -> Option<&'static Encoding> {
    let mut seen: Vec<Vec<u8>> = Vec::new();
    let mut got_pragma = false;
    let mut need_pragma = None;
    let mut charset = None;
    while let Some((name, value)) = attribute(bytes, i) {
        if seen.contains(&name) {
            continue;
        }
        match name.as_slice() {
            b"http-equiv" => got_pragma |= value == b"content-type",
            b"content" if charset.is_none() => {
                if let Some(encoding) = charset_in_content(&value) {
                    charset = Some(encoding);
                    need_pragma = Some(true);
                }
            }
            b"charset" => {
                charset = Encoding::for_label(&value);
                need_pragma = Some(false);
            }
            _ => {}
        }
        seen.push(name);
    }
    if need_pragma? && !got_pragma {
        return None;
    }
    // A document that could be read this far is not UTF-16, whatever it
    // says, and x-user-defined is a label for scripts, not documents.
    let charset = charset?;
    Some(
        if charset == encoding_rs::UTF_16BE || charset == encoding_rs::UTF_16LE {
            encoding_rs::UTF_8
        } else if charset == encoding_rs::X_USER_DEFINED {
            encoding_rs::WINDOWS_1252
        } else {
            charset
        },
    )
}

/// The prescan's "get an attribute": the next attribute's name and value,
/// both lowercased, or `None` at `>` or the end of the input.
fn attribute(bytes: &[u8], i: &mut usize) -> Option<(Vec<u8>, Vec<u8>)> {
    let at = |i: usize| bytes.get(i).copied();
    while at(*i).is_some_and(|c| is_space(c) || c == b'/') {
        *i += 1;
    }
    if at(*i)? == b'>' {
        return None;
    }
    let mut name = Vec::new();
    let mut value = Vec::new();
    loop {
        let c = at(*i)?;
        if c == b'=' && !name.is_empty() {
            *i += 1;
            break;
        }
        if is_space(c) {
            while at(*i).is_some_and(is_space) {
                *i += 1;
            }
            if at(*i) != Some(b'=') {
                return Some((name, value));
            }
            *i += 1;
            break;
        }
        if c == b'/' || c == b'>' {
            return Some((name, value));
        }
        name.push(c.to_ascii_lowercase());
        *i += 1;
    }
    while at(*i).is_some_and(is_space) {
        *i += 1;
    }
    let quote = at(*i)?;
    if quote == b'"' || quote == b'\'' {
        *i += 1;
        loop {
            let c = at(*i)?;
            *i += 1;
            if c == quote {
                return Some((name, value));
            }
            value.push(c.to_ascii_lowercase());
        }
    }
    loop {
        let c = at(*i)?;
        if is_space(c) || c == b'>' {
            return Some((name, value));
        }
        value.push(c.to_ascii_lowercase());
        *i += 1;
    }
}

/// The WHATWG "extract a character encoding from a meta element", for the
/// `content` of `<meta http-equiv="Content-Type">`.
fn charset_in_content(content: &[u8]) -> Option<&'static Encoding> {
    let mut pos = 0;
    loop {
        pos += find_ignore_case(content.get(pos..)?, b"charset")? + b"charset".len();
        while content.get(pos).copied().is_some_and(is_space) {
            pos += 1;
        }
        if content.get(pos) != Some(&b'=') {
            continue;
        }
        pos += 1;
        while content.get(pos).copied().is_some_and(is_space) {
            pos += 1;
        }
        let rest = content.get(pos..)?;
        let first = *rest.first()?;
        let label = if first == b'"' || first == b'\'' {
            let len = rest[1..].iter().position(|&c| c == first)?;
            &rest[1..=len]
        } else {
            let len = rest
                .iter()
                .position(|&c| is_space(c) || c == b';')
                .unwrap_or(rest.len());
            &rest[..len]
        };
        return Encoding::for_label(label);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn urls(list: &[Url]) -> Vec<&str> {
        list.iter().map(Url::as_str).collect()
    }

    fn run(html: &[u8], select: &str, attr: &str, follow: Option<&str>) -> Page {
        let rules = Rules::new(select, attr, follow).unwrap();
        extract(
            html,
            Some("text/html"),
            &url("http://example.com/gallery/5000.html"),
            &rules,
        )
        .unwrap()
    }

    /// Encodes `text` in `encoding`, failing if anything is unmappable.
    fn encode(encoding: &'static Encoding, text: &str) -> Vec<u8> {
        let (bytes, used, unmappable) = encoding.encode(text);
        assert_eq!(used, encoding);
        assert!(!unmappable, "{text} is not all {}", encoding.name());
        bytes.into_owned()
    }

    const GALLERY: &str = r#"<!DOCTYPE html>
<HTML><HEAD>
<TITLE>  Gallery &amp; more
   &#x2014; page&nbsp;2 </TITLE>
</HEAD><BODY>
<IMG SRC="outside.jpg">
<DIV CLASS="post" id=main>
  <IMG SRC="a.jpg">
  <img src=b.jpg alt=unquoted>
  <img src="
     https://cdn.example.com/c.jpg  ">
  <img src="/abs/d.jpg?x=1&amp;y=2#frag">
  <img src='/q?id=1&copy=2'>
  <img src="a.jpg">
  <img src="A.JPG">
  <img src="data:image/png;base64,iVBORw0KGgo=">
  <img data-src="lazy.jpg" src="placeholder.gif">
  <img src="http://[bad/e.jpg">
  <img src="javascript:void(0)">
  <img src="">
  <img>
  <p><span><img src=nested.jpg></span></p>
</DIV>
<base href="/static/">
<base href="/ignored/">
<img src="after.jpg">
<A class="next" HREF="?page=2">next</A>
<a href="other.html#top">other</a>
<a href="mailto:x@example.com">mail</a>
<a class="next" href="?page=2">next again</a>
<title>second title</title>
</BODY></HTML>"#;

    #[test]
    fn selects_resolves_and_dedups() {
        let page = run(GALLERY.as_bytes(), ".post img", "src", Some("a.next"));
        assert_eq!(
            page.title.as_deref(),
            Some("Gallery & more \u{2014} page\u{a0}2")
        );
        assert_eq!(page.charset, "UTF-8");
        assert_eq!(
            urls(&page.files),
            [
                "http://example.com/static/a.jpg",
                "http://example.com/static/b.jpg",
                "https://cdn.example.com/c.jpg",
                "http://example.com/abs/d.jpg?x=1&y=2",
                "http://example.com/q?id=1&copy=2",
                "http://example.com/static/A.JPG",
                "http://example.com/static/placeholder.gif",
                "http://example.com/static/nested.jpg",
            ]
        );
        assert_eq!(page.skipped, 1, "only http://[bad is not a URL");
        assert_eq!(urls(&page.links), ["http://example.com/static/?page=2"]);
    }

    #[test]
    fn lazy_attribute_and_all_links() {
        let page = run(GALLERY.as_bytes(), ".post img", "data-src", Some("a"));
        assert_eq!(urls(&page.files), ["http://example.com/static/lazy.jpg"]);
        assert_eq!(
            urls(&page.links),
            [
                "http://example.com/static/?page=2",
                "http://example.com/static/other.html"
            ]
        );
        let page = run(GALLERY.as_bytes(), "img", "src", None);
        assert_eq!(page.files.len(), 10, "outside.jpg and after.jpg too");
        assert!(page.links.is_empty());
    }

    #[test]
    fn base_resolves_against_the_page_and_falls_back() {
        let html = r#"<base href="../up/"><img src="x.jpg">"#;
        assert_eq!(
            urls(&run(html.as_bytes(), "img", "src", None).files),
            ["http://example.com/up/x.jpg"]
        );
        for base in [
            r#"<base href="http://[bad/">"#,
            "<base href=\"data:,x\">",
            "<base>",
        ] {
            let html = format!(r#"{base}<img src="x.jpg">"#);
            assert_eq!(
                urls(&run(html.as_bytes(), "img", "src", None).files),
                ["http://example.com/gallery/x.jpg"],
                "{base}"
            );
        }
    }

    const LAZY: &str = r#"<div class=post>
<img data-src="real.jpg" src="placeholder.gif">
<img src="plain.jpg">
<img data-src="" src="blank-lazy.jpg">
<img data-src="  " src="spaces-lazy.jpg">
<img data-srcset="s.jpg 320w, l.jpg 1280w" data-src="lazy-one.jpg" src="p.gif">
<img data-src="&#x20;" src="entity.jpg">
<img alt="nothing at all">
</div>"#;

    #[test]
    fn attr_list_takes_the_first_present_attribute() {
        let page = run(LAZY.as_bytes(), ".post img", "data-src,src", None);
        assert_eq!(
            urls(&page.files),
            [
                "http://example.com/gallery/real.jpg",
                "http://example.com/gallery/plain.jpg",
                "http://example.com/gallery/blank-lazy.jpg",
                "http://example.com/gallery/spaces-lazy.jpg",
                "http://example.com/gallery/lazy-one.jpg",
            ],
            "an entity-encoded blank is present, then dropped as no URL"
        );
        // Order is preference, not document order of the attributes, and
        // spaces around the names do not matter.
        let page = run(LAZY.as_bytes(), ".post img", " SRC , data-src ", None);
        assert_eq!(page.files.len(), 6);
        assert_eq!(
            page.files[0].as_str(),
            "http://example.com/gallery/placeholder.gif"
        );
    }

    #[test]
    fn attr_list_keeps_the_srcset_rule_for_srcset_names() {
        let page = run(
            LAZY.as_bytes(),
            ".post img",
            "data-srcset,data-src,src",
            None,
        );
        assert_eq!(
            urls(&page.files)[4],
            "http://example.com/gallery/l.jpg",
            "largest candidate of data-srcset"
        );
        assert_eq!(urls(&page.files)[0], "http://example.com/gallery/real.jpg");
        // A srcset after a plain name is still read as a srcset.
        let html = r#"<img srcset="a.jpg 1x, b.jpg 2x"><img data-src="c.jpg" srcset="d.jpg">"#;
        let page = run(html.as_bytes(), "img", "data-src,srcset", None);
        assert_eq!(
            urls(&page.files),
            [
                "http://example.com/gallery/b.jpg",
                "http://example.com/gallery/c.jpg"
            ]
        );
    }

    #[test]
    fn attr_list_checks_every_name() {
        let rules = Rules::new("img", "Data-Src, src,srcset", None).unwrap();
        assert_eq!(rules.attrs, ["data-src", "src", "srcset"]);
        for list in ["data-src,,src", "src,", ",src", " , ", ""] {
            let err = Rules::new("img", list, None).unwrap_err();
            assert!(
                matches!(&err, ExtractError::EmptyAttr(l) if l == list),
                "{list:?}: {err}"
            );
        }
        assert_eq!(
            Rules::new("img", "data-src,,src", None)
                .unwrap_err()
                .to_string(),
            "invalid --attr \"data-src,,src\": an empty name in the list; expected names \
             separated by commas, such as data-src,src"
        );
        let err = Rules::new("img", "data-src,s<rc", None).unwrap_err();
        assert!(
            matches!(&err, ExtractError::BadAttr(a) if a == "s<rc"),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "invalid --attr \"s<rc\": expected an attribute name such as src, srcset or data-src"
        );
        assert!(Rules::new("img", "data src,src", None).is_err());
    }

    const SRCSET: &str = r#"<div class=post>
<img srcset="small.jpg 480w, large.jpg 1080w,medium.jpg 800w">
<img srcset="one.jpg, two.jpg 2x, three.jpg 1.5x">
<img srcset="  https://cdn.example.com/img,w_100/p.jpg 100w,
               https://cdn.example.com/img,w_900/p.jpg 900w  ">
<img srcset="only.jpg">
<img srcset="first.jpg 2x, second.jpg 2x">
<img srcset="wide.jpg 10w, dense.jpg 3x">
<img srcset="a.jpg 1x (x, y), b.jpg 2x">
<img srcset="data:image/gif;base64,R0lGOD 1x">
<img src="no-srcset.jpg">
<source data-srcset="lazy-small.jpg 1x, lazy-big.jpg 2x">
</div>"#;

    #[test]
    fn srcset_picks_the_largest_candidate() {
        let page = run(SRCSET.as_bytes(), ".post img", "srcset", None);
        assert_eq!(
            urls(&page.files),
            [
                "http://example.com/gallery/large.jpg",
                "http://example.com/gallery/two.jpg",
                "https://cdn.example.com/img,w_900/p.jpg",
                "http://example.com/gallery/only.jpg",
                "http://example.com/gallery/first.jpg",
                "http://example.com/gallery/wide.jpg",
                "http://example.com/gallery/b.jpg",
            ]
        );
        let page = run(SRCSET.as_bytes(), ".post source", "data-srcset", None);
        assert_eq!(
            urls(&page.files),
            ["http://example.com/gallery/lazy-big.jpg"]
        );
    }

    #[test]
    fn srcset_edge_cases() {
        assert_eq!(largest_candidate(""), None);
        assert_eq!(largest_candidate(" , ,"), None);
        assert_eq!(largest_candidate("a.jpg,,, b.jpg 2x"), Some("b.jpg"));
        assert_eq!(largest_candidate("a.jpg 1x,b.jpg 0.5x"), Some("a.jpg"));
        assert_eq!(largest_candidate("a.jpg NaNx, b.jpg"), Some("a.jpg"));
        assert_eq!(largest_candidate("图.jpg 2x, b.jpg"), Some("图.jpg"));
    }

    const GBK_PAGE: &str =
        "<html><head><meta charset=\"gbk\"><title>美女图片 第5000期</title></head>\
        <body><div class=\"postContent\"><img src=\"/uploads/美女.jpg?名=1\"></div></body></html>";

    #[test]
    fn gbk_from_meta_charset() {
        let bytes = encode(encoding_rs::GBK, GBK_PAGE);
        assert!(
            std::str::from_utf8(&bytes).is_err(),
            "the test page must not be UTF-8"
        );
        let page = run(&bytes, ".postContent img", "src", None);
        assert_eq!(page.title.as_deref(), Some("美女图片 第5000期"));
        assert_eq!(page.charset, "GBK");
        // The path is UTF-8 and the query GBK, as a browser would send them.
        assert_eq!(encode(encoding_rs::GBK, "名"), [0xC3, 0xFB]);
        assert_eq!(
            urls(&page.files),
            ["http://example.com/uploads/%E7%BE%8E%E5%A5%B3.jpg?%C3%FB=1"]
        );
    }

    #[test]
    fn gbk_from_content_type_only() {
        let html = GBK_PAGE.replace("<meta charset=\"gbk\">", "");
        let bytes = encode(encoding_rs::GBK, &html);
        let rules = Rules::new(".postContent img", "src", None).unwrap();
        let base = url("http://www.meizitu.com/a/5000.html");
        for content_type in [
            "text/html; charset=GBK",
            "text/html;charset=\"gb2312\"",
            "text/html; Charset = gbk ;",
        ] {
            let page = extract(&bytes, Some(content_type), &base, &rules).unwrap();
            assert_eq!(
                page.title.as_deref(),
                Some("美女图片 第5000期"),
                "{content_type}"
            );
            assert_eq!(page.charset, "GBK");
        }
        // Without any declaration the page is UTF-8 with replacement
        // characters, and still yields its images.
        let page = extract(&bytes, Some("text/html"), &base, &rules).unwrap();
        assert_eq!(page.charset, "UTF-8");
        assert!(page.title.unwrap().contains('\u{fffd}'));
        assert_eq!(page.files.len(), 1);
    }

    #[test]
    fn gb2312_from_http_equiv() {
        let html = GBK_PAGE.replace(
            "<meta charset=\"gbk\">",
            "<!-- <meta charset=utf-8> --><META HTTP-EQUIV=\"Content-Type\" CONTENT=\"text/html; charset=gb2312\">",
        );
        let page = run(&encode(encoding_rs::GBK, &html), "img", "src", None);
        assert_eq!(page.charset, "GBK");
        assert_eq!(page.title.as_deref(), Some("美女图片 第5000期"));
    }

    #[test]
    fn big5_shift_jis_and_euc_kr() {
        let cases: [(&'static Encoding, &str, &str); 3] = [
            (encoding_rs::BIG5, "big5", "臺灣風景 第一頁"),
            (encoding_rs::SHIFT_JIS, "shift_jis", "日本語のページ"),
            (encoding_rs::EUC_KR, "euc-kr", "한국어 페이지"),
        ];
        for (encoding, label, title) in cases {
            let html =
                format!("<meta charset='{label}'><title>{title}</title><img src=\"{title}.jpg\">");
            let page = run(&encode(encoding, &html), "img", "src", None);
            assert_eq!(page.charset, encoding.name());
            assert_eq!(page.title.as_deref(), Some(title));
            let expected = Url::parse("http://example.com/gallery/")
                .unwrap()
                .join(&format!("{title}.jpg"))
                .unwrap();
            assert_eq!(page.files, [expected]);
        }
    }

    #[test]
    fn bom_wins_over_everything() {
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend_from_slice("<meta charset=gbk><title>Ünïcödé ✓</title>".as_bytes());
        let rules = Rules::new("img", "src", None).unwrap();
        let page = extract(
            &bytes,
            Some("text/html; charset=big5"),
            &url("http://e.com/"),
            &rules,
        )
        .unwrap();
        assert_eq!(page.charset, "UTF-8");
        assert_eq!(page.title.as_deref(), Some("Ünïcödé ✓"));

        let mut bytes = vec![0xFF, 0xFE];
        for unit in "<title>utf-16 ✓</title>".encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        let page = extract(&bytes, None, &url("http://e.com/"), &rules).unwrap();
        assert_eq!(page.charset, "UTF-16LE");
        assert_eq!(page.title.as_deref(), Some("utf-16 ✓"));
    }

    #[test]
    fn prescan_follows_the_whatwg_algorithm() {
        let name = |html: &str| prescan(html.as_bytes()).map(Encoding::name);
        assert_eq!(name("<meta charset=gbk>"), Some("GBK"));
        assert_eq!(name("<meta\tcharset = ' Big5 '>"), Some("Big5"));
        assert_eq!(name("<meta/charset=\"shift_jis\"/>"), Some("Shift_JIS"));
        assert_eq!(
            name("<meta content='text/html; charset=gb2312' http-equiv=content-type>"),
            Some("GBK")
        );
        assert_eq!(
            name("<meta http-equiv=Content-Type content=\"text/html;charset='euc-kr'\">"),
            Some("EUC-KR")
        );
        assert_eq!(
            name("<meta content='text/html; charset=gbk'>"),
            None,
            "no http-equiv"
        );
        assert_eq!(name("<meta charset=utf-16le>"), Some("UTF-8"));
        assert_eq!(name("<meta charset=x-user-defined>"), Some("windows-1252"));
        assert_eq!(
            name("<meta charset=nonsense><meta charset=gbk>"),
            Some("GBK")
        );
        assert_eq!(
            name("<!--<meta charset=gbk>--><meta charset=big5>"),
            Some("Big5")
        );
        assert_eq!(name("<!--><meta charset=big5>"), Some("Big5"));
        assert_eq!(
            name("<img alt='<meta charset=gbk>'><meta charset=big5>"),
            Some("Big5")
        );
        assert_eq!(name("<metal charset=gbk>"), None);
        assert_eq!(name("<meta charset=gbk"), None, "unterminated");
        assert_eq!(name("<!-- <meta charset=gbk>"), None);
        let late = format!("{}<meta charset=gbk>", " ".repeat(PRESCAN_LEN));
        assert_eq!(
            decode(late.as_bytes(), None).0.name(),
            "UTF-8",
            "past 1024 bytes"
        );
        assert_eq!(charset_in_content(b"charset"), None);
        assert_eq!(charset_in_content(b"charsetx; charset=\"gbk"), None);
        assert_eq!(
            charset_in_content(b"a charset b; charset = gbk;x").map(Encoding::name),
            Some("GBK")
        );
    }

    #[test]
    fn bad_rules_name_the_problem() {
        let err = Rules::new("div[", "src", None).unwrap_err();
        assert!(
            matches!(&err, ExtractError::BadSelector { flag: "--select", selector, .. } if selector == "div[")
        );
        assert_eq!(
            err.to_string(),
            "invalid --select selector \"div[\": unexpected end of selector"
        );

        let err = Rules::new("img", "src", Some("a:hover")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid --follow selector \"a:hover\": unsupported pseudo-class or pseudo-element in selector"
        );
        assert!(Rules::new("", "src", None).is_err());
        assert!(Rules::new("img", "", None).is_err());
        assert!(Rules::new("img", "data src", None).is_err());

        let rules = Rules::new(" .post  img ", " Data-Src ", Some("a.next, a[rel=next]")).unwrap();
        assert_eq!(rules.attrs, ["data-src"]);

        // A hand-built Rules is checked by extract itself.
        let rules = Rules {
            select: ">>".into(),
            attrs: vec!["src".into()],
            follow: None,
        };
        assert!(matches!(
            extract(b"", None, &url("http://e.com/"), &rules),
            Err(ExtractError::BadSelector { .. })
        ));
    }

    #[test]
    fn no_title_and_empty_pages() {
        let page = run(b"", "img", "src", Some("a"));
        assert_eq!(
            page,
            Page {
                title: None,
                files: vec![],
                links: vec![],
                charset: "UTF-8",
                skipped: 0
            }
        );
        assert_eq!(
            run(b"<title> \n\t </title>", "img", "src", None).title,
            None
        );
        assert_eq!(
            run(b"<title>a &lt;b&gt;</title>", "img", "src", None)
                .title
                .as_deref(),
            Some("a <b>")
        );
        assert_eq!(
            run(b"<title>unterminated", "img", "src", None)
                .title
                .as_deref(),
            Some("unterminated")
        );
    }

    #[test]
    fn errors_are_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<ExtractError>();
        check::<Rules>();
        check::<Page>();
    }

    /// Markup fragments that drive the parser, the prescan and the srcset
    /// parser into their corners.
    fn fragment() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..16),
            prop::sample::select(vec![
                "<",
                ">",
                "\"",
                "'",
                "=",
                "/",
                " ",
                "<!--",
                "-->",
                "<meta",
                " charset=",
                "gbk",
                "utf-16",
                "<meta http-equiv=content-type content='charset=",
                "<base href=",
                "<img src=",
                "<img srcset=\"",
                " 2x, ",
                " 100w",
                "(",
                ")",
                ",",
                "<title>",
                "</title>",
                "&amp;",
                "&#x",
                "&",
                "<a class=next href=",
                "<div class=post>",
                "<script>",
                "<svg>",
                "<select>",
                "<template>",
                "http://[",
                "data:",
                "\u{feff}",
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
        ]
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(
            body in proptest::collection::vec(any::<u8>(), 0..2048),
            content_type in proptest::option::of("[ -~]{0,40}"),
        ) {
            let rules = Rules::new(".post img", "srcset", Some("a")).unwrap();
            let _ = extract(&body, content_type.as_deref(), &url("http://e.com/a/b"), &rules);
        }

        #[test]
        fn never_panics_on_markup_soup(
            parts in proptest::collection::vec(fragment(), 0..64),
            attr in prop::sample::select(vec!["src", "srcset", "href"]),
        ) {
            let body = parts.concat();
            let rules = Rules::new("img, .post img, a", attr, Some("a.next")).unwrap();
            let page = extract(&body, None, &url("https://e.com/"), &rules).unwrap();
            for found in page.files.iter().chain(&page.links) {
                prop_assert!(matches!(found.scheme(), "http" | "https"));
                prop_assert_eq!(found.fragment(), None);
            }
        }
    }
}
