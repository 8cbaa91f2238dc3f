//! Content checks: is what arrived what was asked for?
//!
//! The classic failure of bulk image downloads is a server answering 200
//! with an HTML page ("hotlink protection", a login wall, a soft 404), saved
//! as `photo.jpg`. `Content-Type` cannot be trusted for this (such pages are
//! often labelled `image/jpeg`), so `--accept` looks at the first bytes of
//! the body: magic numbers (the `infer` crate) plus a small HTML/XML sniff,
//! since those have no magic number. The header is used only when the bytes
//! say nothing.
//!
//! Size limits are enforced while streaming, so `--max-size` aborts as soon
//! as the limit is passed, whatever `Content-Length` said.

use std::fmt;

/// Bytes of the body looked at to tell its type.
pub const SNIFF_LEN: usize = 4096;

/// One `--accept` pattern: `image/*`, `image/png`, `*/*`, or `image/` (a
/// bare prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MimePattern {
    kind: String,
    sub: Option<String>,
}

impl MimePattern {
    /// Parses one pattern.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        let (kind, sub) = match s.split_once('/') {
            Some((k, "*" | "")) => (k.to_string(), None),
            Some((k, sub)) => (k.to_string(), Some(sub.to_string())),
            None => return None,
        };
        if kind.is_empty() {
            return None;
        }
        Some(Self { kind, sub })
    }

    /// Whether `mime` (e.g. `image/png`, parameters allowed) matches.
    pub fn matches(&self, mime: &str) -> bool {
        let essence = mime
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let Some((kind, sub)) = essence.split_once('/') else {
            return false;
        };
        (self.kind == "*" || self.kind == kind) && self.sub.as_deref().is_none_or(|s| s == sub)
    }
}

impl fmt::Display for MimePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.sub.as_deref().unwrap_or("*"))
    }
}

/// The checks a job applies to every body.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// Accepted types; empty accepts anything.
    pub accept: Vec<MimePattern>,
    /// Largest file allowed.
    pub max_size: Option<u64>,
    /// Smallest file allowed.
    pub min_size: Option<u64>,
    /// Longest one attempt at a transfer may take, request to last byte.
    pub max_time: Option<std::time::Duration>,
    /// Slowest average rate (bytes per second) a body may arrive at over
    /// [`Rules::min_speed_time`] before the attempt is given up.
    pub min_speed: Option<u64>,
    /// The window `min_speed` is measured over.
    pub min_speed_time: std::time::Duration,
}

/// The type the first bytes of a body show, if they show one.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    if let Some(t) = ::infer::get(head) {
        return Some(t.mime_type());
    }
    // Markup has no magic number: look past a BOM and whitespace for the
    // first tag.
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = text.iter().position(|b| !b.is_ascii_whitespace())?;
    let lower: Vec<u8> = text[start..]
        .iter()
        .take(64)
        .map(u8::to_ascii_lowercase)
        .collect();
    const HTML: [&[u8]; 8] = [
        b"<!doctype html",
        b"<html",
        b"<head",
        b"<body",
        b"<script",
        b"<title",
        b"<meta",
        b"<!--",
    ];
    if HTML.iter().any(|p| lower.starts_with(p)) {
        return Some("text/html");
    }
    if lower.starts_with(b"<svg") || (lower.starts_with(b"<?xml") && contains(head, b"<svg")) {
        return Some("image/svg+xml");
    }
    if lower.starts_with(b"<?xml") {
        return Some("text/xml");
    }
    if lower.starts_with(b"{") || lower.starts_with(b"[") {
        return Some("application/json");
    }
    None
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The usual extension for a MIME type, without the dot.
pub fn extension_for(mime: &str) -> Option<&'static str> {
    let essence = mime.split(';').next()?.trim();
    Some(match essence {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/avif" => "avif",
        "image/bmp" => "bmp",
        "image/tiff" => "tif",
        "image/svg+xml" => "svg",
        "image/x-icon" | "image/vnd.microsoft.icon" => "ico",
        "image/heic" => "heic",
        "text/html" => "html",
        "text/xml" | "application/xml" => "xml",
        "text/plain" => "txt",
        "text/csv" => "csv",
        "application/json" => "json",
        "application/pdf" => "pdf",
        "application/zip" => "zip",
        "application/gzip" => "gz",
        "video/mp4" => "mp4",
        "video/webm" => "webm",
        "audio/mpeg" => "mp3",
        _ => return None,
    })
}

impl Rules {
    /// Checks the first bytes of a body against `--accept`; the error is the
    /// type found (`text/html`).
    pub fn check_head(&self, head: &[u8], content_type: Option<&str>) -> Result<(), String> {
        if self.accept.is_empty() {
            return Ok(());
        }
        let found = sniff(head)
            .map(str::to_string)
            .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_string()))
            .unwrap_or_else(|| "unknown".to_string());
        if self.accept.iter().any(|p| p.matches(&found)) {
            Ok(())
        } else {
            Err(found)
        }
    }
}

/// Parses a size: bytes, or a number with `k`, `M`, `G` or `T` (powers of
/// 1024; `KB`, `MiB` and the like are read the same way).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let mult: u64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    let v = num * mult as f64;
    (v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v as u64)
}

/// Lower-case hex of `bytes` (digests in the manifest and the store).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\0\x10JFIF\0";

    #[test]
    fn patterns_match_essences() {
        let img = MimePattern::parse("image/*").unwrap();
        assert!(img.matches("image/png"));
        assert!(img.matches("Image/JPEG; q=1"));
        assert!(!img.matches("text/html"));
        let png = MimePattern::parse("image/png").unwrap();
        assert!(!png.matches("image/jpeg"));
        assert!(MimePattern::parse("*/*").unwrap().matches("text/html"));
        assert!(MimePattern::parse("nonsense").is_none());
        assert_eq!(img.to_string(), "image/*");
    }

    #[test]
    fn bytes_beat_the_header() {
        let rules = Rules {
            accept: vec![MimePattern::parse("image/*").unwrap()],
            ..Rules::default()
        };
        assert_eq!(rules.check_head(PNG, Some("text/plain")), Ok(()));
        assert_eq!(rules.check_head(JPEG, None), Ok(()));
        let page = b"\n  <!DOCTYPE html><html><body>hotlink protection</body></html>";
        assert_eq!(
            rules.check_head(page, Some("image/jpeg")),
            Err("text/html".into())
        );
        // Nothing in the bytes: the header decides.
        assert_eq!(rules.check_head(b"\x00\x01", Some("image/x-raw")), Ok(()));
        assert_eq!(rules.check_head(b"\x00\x01", None), Err("unknown".into()));
        assert_eq!(Rules::default().check_head(b"<html>", None), Ok(()));
    }

    #[test]
    fn sniffing_and_extensions() {
        assert_eq!(sniff(PNG), Some("image/png"));
        assert_eq!(sniff(b"<svg xmlns='x'/>"), Some("image/svg+xml"));
        assert_eq!(sniff(b"\xEF\xBB\xBF<html>"), Some("text/html"));
        assert_eq!(extension_for("image/jpeg"), Some("jpg"));
        assert_eq!(extension_for("image/png; x=y"), Some("png"));
        assert_eq!(extension_for("application/x-nothing"), None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("10k"), Some(10 * 1024));
        assert_eq!(parse_size("1.5M"), Some(1_572_864));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("2 MB"), Some(2 << 20));
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("12x"), None);
    }
}
