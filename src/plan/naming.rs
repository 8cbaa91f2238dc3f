//! Where a download lands: file names from URLs and `Content-Disposition`,
//! sanitizing, containment in the output directory, and collisions.
//!
//! Every destination path is built by [`OutputDir::resolve`]. It takes raw,
//! untrusted components (a URL segment, a header value), sanitizes each one
//! into a single plain file name, and then checks the joined result component
//! by component, so no input can name a path outside the output directory.
//!
//! Collisions: the first item to claim a name keeps it, later ones get the
//! next free name of [`candidates`] (`stem-1.ext`, `stem-2.ext`, …). Claims
//! are recorded in the job's store, in input order, so the outcome is the
//! same on every run of the same input.

use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};

use percent_encoding::percent_decode_str;
use url::Url;

/// Suffix of the file a transfer writes before it is complete.
pub const PART_SUFFIX: &str = ".part";

pub use crate::store::STATE_DIR;

/// What stands for each unsafe character of a name: separators, control
/// characters and what Windows forbids (`a/b:c` → `a_b_c`).
pub const REPLACEMENT: &str = "_";

/// Longest file name we produce, in bytes. Leaves room under the common
/// 255-byte limit for a collision counter and the `.part` suffix.
const MAX_NAME: usize = 200;

/// Why no destination could be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// Sanitizing left nothing usable.
    #[error("no usable file name in {0:?}")]
    Empty(String),
    /// A path escaped the output directory (a bug guard: sanitizing should
    /// already have made this impossible).
    #[error("path {0:?} would leave the output directory")]
    Escapes(String),
    /// `--name` could not be rendered for this item.
    #[error("--name: {0}")]
    Template(#[from] crate::template::RenderError),
}

/// The output directory and the one function that builds paths inside it.
#[derive(Debug, Clone)]
pub struct OutputDir {
    root: PathBuf,
}

/// A destination inside the output directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dest {
    /// Path relative to the output directory, `/`-separated (for reports).
    pub rel: String,
    /// Full path of the final file.
    pub path: PathBuf,
}

impl Dest {
    /// [`Dest::rel`] of the partial file.
    pub fn part_rel(&self) -> String {
        format!("{}{PART_SUFFIX}", self.rel)
    }

    /// The path the transfer writes to before renaming to [`Dest::path`].
    pub fn part_path(&self) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(PART_SUFFIX);
        PathBuf::from(s)
    }
}

impl OutputDir {
    /// An output directory rooted at `root` (not created here).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Builds the destination for raw path components, each sanitized into
    /// one file or directory name. This is the only way a [`Dest`] is made.
    pub fn resolve<S: AsRef<str>>(&self, components: &[S]) -> Result<Dest, NameError> {
        let mut rel = String::new();
        for raw in components {
            let clean = sanitize_component(raw.as_ref())
                .ok_or_else(|| NameError::Empty(raw.as_ref().to_string()))?;
            if !rel.is_empty() {
                rel.push('/');
            }
            rel.push_str(&clean);
        }
        if rel.is_empty() {
            return Err(NameError::Empty(String::new()));
        }
        // The proof: every component of the relative path is a plain name,
        // so joining cannot climb out of the root or replace it.
        let rel_path = Path::new(&rel);
        let contained = rel_path
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        let first_is_ours = rel_path
            .components()
            .next()
            .is_some_and(|c| c.as_os_str() == STATE_DIR);
        if !contained || first_is_ours {
            return Err(NameError::Escapes(rel));
        }
        let path = self.root.join(rel_path);
        Ok(Dest { rel, path })
    }
}

/// Sanitizes one path component into a portable file name, or `None` when
/// nothing usable is left. Separators, control characters, characters that
/// Windows forbids, `.`/`..` and names that would pass for our own `.part`
/// files are all neutralized.
pub fn sanitize_component(raw: &str) -> Option<String> {
    let opts = sanitize_filename::Options {
        windows: true,
        truncate: false,
        replacement: REPLACEMENT,
    };
    let unbidi: String;
    let raw = if raw.chars().any(is_bidi_control) {
        // Right-to-left overrides make `evil\u{202E}gpj.exe` show as
        // `evilexe.jpg`: a name must read as what it is.
        unbidi = raw.chars().filter(|c| !is_bidi_control(*c)).collect();
        unbidi.as_str()
    } else {
        raw
    };
    let raw = raw.trim();
    if raw.chars().all(|c| c == '.') {
        return None;
    }
    if is_plain(raw) {
        // Most names need nothing done: skip the crate's regex passes, which
        // would otherwise run for every item of a big job.
        return Some(raw.to_string());
    }
    let mut name = sanitize_filename::sanitize_with_options(raw, opts);
    if name.is_empty() {
        return None;
    }
    if name.ends_with(PART_SUFFIX) {
        // A final name must never look like another file's partial.
        name.push('_');
    }
    if name == STATE_DIR {
        name.insert(0, '_');
    }
    Some(truncate_name(&name, MAX_NAME))
}

/// The Unicode bidirectional formatting characters (embeddings, overrides,
/// isolates and marks), which can make a name display as another.
fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Whether `name` is already a portable file name: short, plain ASCII
/// letters, digits and `._-+~`, no trailing dot, not one of our own names,
/// not a name Windows reserves.
fn is_plain(name: &str) -> bool {
    const RESERVED: [&str; 4] = ["con", "prn", "aux", "nul"];
    let stem = name.split('.').next().unwrap_or("").to_ascii_lowercase();
    let reserved = RESERVED.contains(&stem.as_str())
        || ((stem.starts_with("com") || stem.starts_with("lpt"))
            && stem.len() == 4
            && stem.as_bytes()[3].is_ascii_digit());
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+~".contains(&b))
        && !name.ends_with('.')
        && !name.ends_with(PART_SUFFIX)
        && name != STATE_DIR
        && !reserved
}

/// Cuts a name to at most `max` bytes, keeping its extension.
fn truncate_name(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let (stem, ext) = split_ext(name);
    let ext = if ext.len() < 16 { ext } else { "" };
    let mut end = max.saturating_sub(ext.len());
    while !stem.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{}", &stem[..end], ext)
}

/// Splits `name` into stem and extension (with its dot): `a.tar.gz` gives
/// (`a.tar`, `.gz`); a leading dot is not an extension.
pub fn split_ext(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    }
}

/// The file name a URL asks for: its last path segment, percent-decoded;
/// `index.html` for a bare host or a directory (`/docs/`), as wget does.
pub fn name_from_url(url: &Url) -> String {
    match url.path_segments().and_then(|mut segs| segs.next_back()) {
        Some(seg) if !seg.is_empty() => percent_decode_str(seg).decode_utf8_lossy().into_owned(),
        _ => "index.html".to_string(),
    }
}

/// The file name a `Content-Disposition` header suggests, if any.
/// Any directory part is dropped: only the last component counts.
pub fn name_from_content_disposition(value: &str) -> Option<String> {
    let parsed = content_disposition::parse_content_disposition(value);
    let name = parsed.filename_full()?;
    let last = name.rsplit(['/', '\\']).next().unwrap_or(&name).to_string();
    Some(last).filter(|s| !s.trim().is_empty())
}

/// The values `--name` (and `--url`, `--meta-url`) templates can use for one
/// item: `{name}` `{stem}` `{ext}` `{host}` `{path}` `{n}` `{row}`,
/// `{col.NAME}` (a field of the input row) and `{meta.FIELD}` (a field of the
/// item's metadata document), and for a crawled file its page's
/// `{page.title}` `{page.url}` `{page.host}` `{page.n}`.
///
/// A page field is one folder or file name, whatever the page says: its
/// `/` and `\` become [`REPLACEMENT`] as the template is rendered, so a
/// title such as `Cats / Dogs` names one folder. Only a `/` written in the
/// template makes a directory.
pub struct ItemFields<'a> {
    /// The item's URL.
    pub url: &'a Url,
    /// 1-based item number, in input order.
    pub n: u64,
    /// Input line or row.
    pub row: u64,
    /// The input row's fields, for `{col.NAME}`.
    pub cols: Option<&'a (dyn crate::template::Fields + Sync)>,
    /// The metadata document, for `{meta.FIELD}` (dotted paths).
    pub meta: Option<&'a serde_json::Value>,
    /// Extension of the detected content type, for `{ext}` when the URL has
    /// none.
    pub detected_ext: Option<&'a str>,
    /// The crawled page the file was found on, for `{page.title}`,
    /// `{page.url}`, `{page.host}`, `{page.n}`.
    pub page: Option<&'a crate::source::PageRef>,
}

/// A JSON value as template text: strings as they are, other scalars as
/// JSON, null as missing.
pub fn json_field<'v>(root: &'v serde_json::Value, path: &str) -> Option<Cow<'v, str>> {
    let mut v = root;
    for key in path.split('.') {
        v = match v {
            serde_json::Value::Object(m) => m.get(key)?,
            serde_json::Value::Array(a) => a.get(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(Cow::Borrowed(s)),
        other => Some(Cow::Owned(other.to_string())),
    }
}

impl crate::template::Fields for ItemFields<'_> {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        if let Some(col) = name.strip_prefix("col.") {
            return self.cols?.get(col);
        }
        if let Some(field) = name.strip_prefix("meta.") {
            return json_field(self.meta?, field);
        }
        if let Some(field) = name.strip_prefix("page.") {
            let page = self.page?;
            return match field {
                "title" => page.title.as_deref().map(Cow::Borrowed),
                "url" => Some(Cow::Borrowed(page.url.as_str())),
                "host" => Url::parse(&page.url)
                    .ok()
                    .and_then(|u| u.host_str().map(|h| Cow::Owned(h.to_string()))),
                "n" => Some(Cow::Owned(page.n.to_string())),
                _ => None,
            };
        }
        let file = name_from_url(self.url);
        let (stem, ext) = split_ext(&file);
        Some(match name {
            "name" => Cow::Owned(file.clone()),
            "stem" => Cow::Owned(stem.to_string()),
            "ext" => match ext.strip_prefix('.') {
                Some(e) => Cow::Owned(e.to_string()),
                None => Cow::Owned(self.detected_ext.unwrap_or("").to_string()),
            },
            "host" => Cow::Owned(self.url.host_str().unwrap_or("").to_string()),
            "path" => {
                let path = self.url.path();
                let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                Cow::Owned(
                    percent_decode_str(dir.trim_start_matches('/'))
                        .decode_utf8_lossy()
                        .into_owned(),
                )
            }
            "n" => Cow::Owned(self.n.to_string()),
            "row" => Cow::Owned(self.row.to_string()),
            _ => return None,
        })
    }

    fn separator_replacement(&self, name: &str) -> Option<&'static str> {
        // A page's title and URL are text the site chose, not a path the
        // user asked for; `{col.…}` and `{meta.…}` stay as they are, since
        // the same fields fill `--url` and `--meta-url`, and a user who
        // writes `{col.dir}` may mean the directories it holds.
        name.starts_with("page.").then_some(REPLACEMENT)
    }
}

/// How files are named: the URL's last segment (and the server's
/// `Content-Disposition`), or a `--name` template.
#[derive(Debug, Clone, Default)]
pub struct Namer {
    template: Option<crate::template::Template>,
}

impl Namer {
    /// Names from URLs.
    pub fn from_urls() -> Self {
        Self::default()
    }

    /// Names from a `--name` template.
    pub fn template(t: crate::template::Template) -> Self {
        Self { template: Some(t) }
    }

    /// The fields the `--name` template uses (none without one).
    pub fn fields(&self) -> impl Iterator<Item = &str> + '_ {
        self.template.iter().flat_map(|t| t.fields())
    }

    /// Whether a `--name` template is in use (the server's
    /// `Content-Disposition` is then not used).
    pub fn is_template(&self) -> bool {
        self.template.is_some()
    }

    /// Whether the name can be made before the response arrives: not when it
    /// needs metadata, or an extension the URL does not have.
    pub fn at_plan_time(&self, url: &Url) -> bool {
        let Some(t) = &self.template else {
            return true;
        };
        let mut fields = t.fields();
        let no_ext = || !split_ext(&name_from_url(url)).1.starts_with('.');
        !fields.any(|f| f.starts_with("meta.") || (f == "ext" && no_ext()))
    }

    /// The raw path components for an item (inside its page's folder, for a
    /// file found by a crawl); sanitized by [`OutputDir::resolve`].
    pub fn components(&self, fields: &ItemFields<'_>) -> Result<Vec<String>, NameError> {
        let mut parts: Vec<String> = match fields.page {
            Some(page) if !page.folder.is_empty() => {
                page.folder.split('/').map(str::to_string).collect()
            }
            _ => Vec::new(),
        };
        match &self.template {
            None => parts.push(name_from_url(fields.url)),
            Some(t) => parts.extend(split_rendered(&t.render(fields)?)),
        }
        Ok(parts)
    }
}

/// Splits a rendered template into path components. `.` and `..` name no
/// directory of their own: they are dropped rather than failing the item.
pub fn split_rendered(rendered: &str) -> Vec<String> {
    rendered
        .split(['/', '\\'])
        .filter(|p| !p.trim().chars().all(|c| c == '.'))
        .map(str::to_string)
        .collect()
}

/// The names tried, in order, for a file called `name` when earlier ones are
/// taken: `name`, then `stem-1.ext`, `stem-2.ext`, …
pub fn candidates(name: String) -> impl Iterator<Item = String> {
    (0u64..).map(move |n| {
        if n == 0 {
            name.clone()
        } else {
            let (stem, ext) = split_ext(&name);
            format!("{stem}-{n}{ext}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn names_from_urls() {
        assert_eq!(name_from_url(&url("http://h/a/b/c.jpg?x=1")), "c.jpg");
        assert_eq!(name_from_url(&url("http://h/")), "index.html");
        assert_eq!(name_from_url(&url("http://h")), "index.html");
        assert_eq!(name_from_url(&url("http://h/docs/")), "index.html");
        assert_eq!(name_from_url(&url("http://h/a%20b.txt")), "a b.txt");
        assert_eq!(name_from_url(&url("http://h/%2e%2e%2fx")), "../x");
    }

    #[test]
    fn traversal_is_neutralized() {
        let out = OutputDir::new("/out");
        for raw in [
            "../x",
            "..",
            ".",
            "/etc/passwd",
            "a/../../b",
            "..\\..\\c",
            "%2e%2e",
        ] {
            let d = out.resolve(&[raw]);
            if let Ok(d) = d {
                assert!(d.path.starts_with("/out"), "{raw} -> {d:?}");
                assert!(!d.rel.contains('/'), "{raw} -> {d:?}");
            }
        }
        assert_eq!(out.resolve(&["../x"]).unwrap().rel, ".._x");
        assert!(out.resolve(&[".."]).is_err());
        assert_eq!(out.resolve(&[".haul"]).unwrap().rel, "_.haul");
    }

    #[test]
    fn part_names_are_never_final_names() {
        let out = OutputDir::new("/out");
        assert_eq!(out.resolve(&["x.part"]).unwrap().rel, "x.part_");
        let d = out.resolve(&["x"]).unwrap();
        assert_eq!(d.part_path(), Path::new("/out/x.part"));
    }

    #[test]
    fn content_disposition_names() {
        assert_eq!(
            name_from_content_disposition(r#"attachment; filename="../../escape.txt""#).as_deref(),
            Some("escape.txt")
        );
        assert_eq!(
            name_from_content_disposition("attachment; filename*=UTF-8''na%C3%AFve.txt").as_deref(),
            Some("naïve.txt")
        );
        assert_eq!(name_from_content_disposition("inline"), None);
    }

    #[test]
    fn collision_candidates_count_up_before_the_extension() {
        let got: Vec<String> = candidates("a.jpg".into()).take(3).collect();
        assert_eq!(got, ["a.jpg", "a-1.jpg", "a-2.jpg"]);
        let got: Vec<String> = candidates("README".into()).take(2).collect();
        assert_eq!(got, ["README", "README-1"]);
        let got: Vec<String> = candidates("a.tar.gz".into()).take(2).collect();
        assert_eq!(got, ["a.tar.gz", "a.tar-1.gz"]);
    }

    #[test]
    fn long_names_keep_their_extension() {
        let long = format!("{}.jpg", "é".repeat(300));
        let name = sanitize_component(&long).unwrap();
        assert!(name.len() <= MAX_NAME);
        assert!(name.ends_with(".jpg"));
    }

    #[test]
    fn item_fields_for_templates() {
        use crate::template::{Fields, Template};
        let u = url("http://img.test/a/b%20c/photo.JPG?x=1");
        let meta = serde_json::json!({"country": "United States", "n": {"k": 3}});
        let cols = std::collections::HashMap::from([("cc", "us")]);
        let f = ItemFields {
            url: &u,
            n: 7,
            row: 12,
            cols: Some(&cols),
            meta: Some(&meta),
            detected_ext: Some("png"),
            page: None,
        };
        let get = |k: &str| f.get(k).map(|v| v.into_owned());
        assert_eq!(get("name").as_deref(), Some("photo.JPG"));
        assert_eq!(get("stem").as_deref(), Some("photo"));
        assert_eq!(get("ext").as_deref(), Some("JPG"));
        assert_eq!(get("host").as_deref(), Some("img.test"));
        assert_eq!(get("path").as_deref(), Some("a/b c"));
        assert_eq!(get("col.cc").as_deref(), Some("us"));
        assert_eq!(get("meta.n.k").as_deref(), Some("3"));
        assert_eq!(get("col.missing"), None);
        let t = Template::parse(r#"{col.cc|upper}-{meta.country|replace(" ","_")}.{ext|lower}"#)
            .unwrap();
        let namer = Namer::template(t);
        assert_eq!(namer.components(&f).unwrap(), ["US-United_States.jpg"]);
        assert!(!namer.at_plan_time(&u), "needs metadata");
        let noext = url("http://img.test/blob");
        let f = ItemFields {
            url: &noext,
            detected_ext: Some("png"),
            cols: None,
            meta: None,
            n: 1,
            row: 1,
            page: None,
        };
        let namer = Namer::template(Template::parse("{host}/{stem}.{ext}").unwrap());
        assert_eq!(namer.components(&f).unwrap(), ["img.test", "blob.png"]);
        assert!(!namer.at_plan_time(&noext), "needs the detected type");
        assert!(namer.at_plan_time(&u));
    }

    fn page(title: &str) -> crate::source::PageRef {
        crate::source::PageRef {
            id: 1,
            url: "http://h/a/b.html".into(),
            title: Some(title.into()),
            folder: String::new(),
            n: 3,
        }
    }

    fn into_parts(template: &str, page: &crate::source::PageRef) -> Vec<String> {
        let u = url("http://h/x/y.jpg");
        let f = ItemFields {
            url: &u,
            n: 1,
            row: 0,
            cols: None,
            meta: None,
            detected_ext: None,
            page: Some(page),
        };
        let t = crate::template::Template::parse(template).unwrap();
        split_rendered(&t.render(&f).unwrap())
    }

    #[test]
    fn a_page_title_is_one_folder_whatever_it_holds() {
        let p = page(r"Cats / Dogs \ Birds");
        let parts = into_parts("{page.title}", &p);
        assert_eq!(parts, [r"Cats _ Dogs _ Birds"]);
        let out = OutputDir::new("/out");
        assert_eq!(out.resolve(&parts).unwrap().rel, "Cats _ Dogs _ Birds");
        // Only the template's own / makes a directory.
        assert_eq!(
            into_parts("{page.host}/{page.title}/{page.n}", &p),
            ["h", "Cats _ Dogs _ Birds", "3"]
        );
        assert_eq!(
            into_parts("{page.url}", &p),
            ["http:__h_a_b.html"],
            "the page URL is one name too"
        );
        // Filters see the title as the page wrote it.
        assert_eq!(
            into_parts("{page.title|replace(' / ','-')}", &p),
            [r"Cats-Dogs _ Birds"]
        );
        // Titles that are nothing but separators and dots stay one name
        // that resolve can use, never a climb out of the folder.
        for (title, want) in [("../..", ".._.."), ("/", "_"), (r"..\x", ".._x")] {
            let parts = into_parts("{page.title}", &page(title));
            assert_eq!(parts, [want], "{title}");
            let d = out.resolve(&parts).unwrap();
            assert!(!d.rel.contains('/'), "{title} -> {d:?}");
        }
    }

    #[test]
    fn other_fields_keep_their_separators() {
        use crate::template::{Fields, Template};
        let p = page("A/B");
        let u = url("http://h/dir/sub/y.jpg");
        let cols = std::collections::HashMap::from([("dir", "x/y")]);
        let f = ItemFields {
            url: &u,
            n: 1,
            row: 0,
            cols: Some(&cols),
            meta: None,
            detected_ext: None,
            page: Some(&p),
        };
        assert_eq!(f.separator_replacement("page.title"), Some(REPLACEMENT));
        assert_eq!(f.separator_replacement("path"), None);
        let t = Template::parse("{path}/{col.dir}/{page.title}/{name}").unwrap();
        assert_eq!(
            split_rendered(&t.render(&f).unwrap()),
            ["dir", "sub", "x", "y", "A_B", "y.jpg"]
        );
        // The raw value is still there for other uses of the fields.
        assert_eq!(f.get("page.title").as_deref(), Some("A/B"));
    }

    proptest! {
        #[test]
        fn a_page_title_never_splits(title in any::<String>()) {
            let p = page(&title);
            let parts = into_parts("t/{page.title|default('x')}", &p);
            prop_assert!(parts.len() <= 2, "{:?}", parts);
            prop_assert_eq!(&parts[0], "t");
        }

        #[test]
        fn the_fast_path_agrees_with_the_crate(name in "[a-zA-Z0-9._+~-]{1,40}") {
            if is_plain(&name) {
                let opts = sanitize_filename::Options { windows: true, truncate: false, replacement: "_" };
                prop_assert_eq!(sanitize_filename::sanitize_with_options(&name, opts), name);
            }
        }

        #[test]
        fn nothing_escapes(parts in proptest::collection::vec(any::<String>(), 1..4)) {
            let out = OutputDir::new("/out/dir");
            if let Ok(d) = out.resolve(&parts) {
                prop_assert!(d.path.starts_with("/out/dir"));
                let rel = Path::new(&d.rel);
                prop_assert!(rel.components().all(|c| matches!(c, Component::Normal(_))));
                prop_assert_eq!(rel.components().count(), parts.len());
                prop_assert!(!d.rel.ends_with(PART_SUFFIX));
            }
        }

        #[test]
        fn url_names_stay_inside(path in "[a-zA-Z0-9%./_-]{0,40}") {
            if let Ok(u) = Url::parse(&format!("http://h/{path}")) {
                let out = OutputDir::new("/o");
                if let Ok(d) = out.resolve(&[name_from_url(&u)]) {
                    prop_assert!(d.path.starts_with("/o"));
                    prop_assert_eq!(d.path.parent(), Some(Path::new("/o")));
                }
            }
        }
    }
}
