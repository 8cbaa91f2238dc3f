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

use std::path::{Component, Path, PathBuf};

use percent_encoding::percent_decode_str;
use url::Url;

/// Suffix of the file a transfer writes before it is complete.
pub const PART_SUFFIX: &str = ".part";

/// Directory inside the output directory that haul keeps for itself.
pub const STATE_DIR: &str = ".haul";

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
        replacement: "_",
    };
    let raw = raw.trim();
    if raw.chars().all(|c| c == '.') {
        return None;
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

/// The names tried, in order, for a file called `name` when earlier ones are
/// taken: `name`, then `stem-1.ext`, `stem-2.ext`, …
pub fn candidates(name: &str) -> impl Iterator<Item = String> + '_ {
    let (stem, ext) = split_ext(name);
    (0u64..).map(move |n| {
        if n == 0 {
            name.to_string()
        } else {
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
        let got: Vec<String> = candidates("a.jpg").take(3).collect();
        assert_eq!(got, ["a.jpg", "a-1.jpg", "a-2.jpg"]);
        let got: Vec<String> = candidates("README").take(2).collect();
        assert_eq!(got, ["README", "README-1"]);
        let got: Vec<String> = candidates("a.tar.gz").take(2).collect();
        assert_eq!(got, ["a.tar.gz", "a.tar-1.gz"]);
    }

    #[test]
    fn long_names_keep_their_extension() {
        let long = format!("{}.jpg", "é".repeat(300));
        let name = sanitize_component(&long).unwrap();
        assert!(name.len() <= MAX_NAME);
        assert!(name.ends_with(".jpg"));
    }

    proptest! {
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
