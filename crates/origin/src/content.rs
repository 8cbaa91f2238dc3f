//! The bytes and validators the origin serves, and the small query-string
//! helpers that pick them.
//!
//! Bodies are never stored. Each one is a pure function of `(path, version)`:
//! byte `i` comes from an 8-byte word `mix(seed + i / 8)`, so any slice of any
//! body can be produced on its own. That keeps Range responses, mid-body
//! resets and multi-gigabyte benchmark files as cheap as small ones, and lets
//! a test rebuild the exact expected bytes with [`body_for`] or [`expected`]
//! without talking to the server.

use std::time::{Duration, UNIX_EPOCH};

/// Body size used when a request has no `?size=` and by [`expected`].
pub(crate) const DEFAULT_SIZE: usize = 10240;

/// Last-Modified of version 0 of every path: 2021-01-01T00:00:00Z.
/// Each [`crate::Origin::bump`] moves it one second later, so the string changes
/// whenever the content does.
const LAST_MODIFIED_BASE: u64 = 1_609_459_200;

/// Domain separators, so the same path hashes differently for different uses.
const CONTENT_SEED: u64 = 0x6861_756c_2d62_6f64; // "haul-bod"
const KEY_SEED: u64 = 0x6861_756c_2d6b_6579; // "haul-key"
const ETAG_SEED: u64 = 0x6861_756c_2d65_7467; // "haul-etg"

/// Weyl increment of splitmix64; spreads consecutive counters across the state.
const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// The splitmix64 finaliser: a cheap, well-mixed 64-bit permutation.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a over `bytes`, started from `seed` and finished with [`mix`]:
/// FNV alone mixes the last bytes poorly, and paths often differ only there.
pub(crate) fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// Key of a path in the per-path state table (64 bits: collisions are not a
/// practical concern, and it keeps the table small for millions of paths).
pub(crate) fn path_key(path: &str) -> u64 {
    hash_bytes(KEY_SEED, path.as_bytes())
}

/// Seed of the byte stream for one version of one path.
pub(crate) fn content_seed(path: &str, version: u32) -> u64 {
    mix(hash_bytes(CONTENT_SEED, path.as_bytes()) ^ u64::from(version).wrapping_mul(GOLDEN))
}

/// Fill `out` with bytes `offset..offset + out.len()` of the stream for `seed`.
pub(crate) fn fill(seed: u64, offset: u64, out: &mut [u8]) {
    let mut pos = offset;
    let mut done = 0;
    while done < out.len() {
        let word = mix(seed.wrapping_add((pos / 8).wrapping_mul(GOLDEN))).to_le_bytes();
        let within = (pos % 8) as usize;
        let n = (8 - within).min(out.len() - done);
        out[done..done + n].copy_from_slice(&word[within..within + n]);
        done += n;
        pos += n as u64;
    }
}

/// The deterministic bytes served for a content path.
///
/// `path` is the request path without its query string, `version` starts at
/// 0 and goes up by one with each [`crate::Origin::bump`] of that path. Different
/// paths (and versions) give different bytes; a shorter body of the same path
/// and version is a prefix of a longer one.
#[must_use]
pub fn body_for(path: &str, version: u32, size: usize) -> Vec<u8> {
    let mut body = vec![0; size];
    fill(content_seed(path, version), 0, &mut body);
    body
}

/// The body a fresh origin serves for `path_and_query`: [`body_for`] with
/// version 0 and the size from `?size=` (10240 when absent).
///
/// The 10240 default matches [`crate::Config::default`]; an origin started with
/// another `default_size` serves a different length for requests without
/// `?size=`.
///
/// # Panics
///
/// If `?size=` is present but not a non-negative integer: this is a test
/// helper, and a typo in a test URL should fail loudly rather than compare
/// against the wrong bytes.
#[must_use]
pub fn expected(path_and_query: &str) -> Vec<u8> {
    let (path, query) = split_path_query(path_and_query);
    let Some(size) = size_param(query, DEFAULT_SIZE) else {
        panic!("expected({path_and_query:?}): ?size= is not a number");
    };
    body_for(path, 0, size)
}

/// Strong ETag of one version of one path at one size: a quoted 16-digit hex hash.
pub(crate) fn etag(path: &str, version: u32, size: u64) -> String {
    let h = mix(hash_bytes(ETAG_SEED, path.as_bytes())
        ^ u64::from(version).wrapping_mul(GOLDEN)
        ^ size.rotate_left(32));
    format!("\"{h:016x}\"")
}

/// Last-Modified of one version, as an IMF-fixdate.
pub(crate) fn last_modified(version: u32) -> String {
    httpdate::fmt_http_date(
        UNIX_EPOCH + Duration::from_secs(LAST_MODIFIED_BASE + u64::from(version)),
    )
}

/// Split `"/a/b?x=1"` into `("/a/b", Some("x=1"))`.
pub(crate) fn split_path_query(path_and_query: &str) -> (&str, Option<&str>) {
    match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    }
}

/// The raw (still percent-encoded) value of the first `name=` in `query`.
/// A bare `name` with no `=` yields `""`.
pub(crate) fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

/// `?size=` as a byte count: `default` when absent, `None` when malformed.
pub(crate) fn size_param(query: Option<&str>, default: usize) -> Option<usize> {
    match query_param(query, "size") {
        None => Some(default),
        Some(raw) => parse_digits(raw).and_then(|n| usize::try_from(n).ok()),
    }
}

/// Parse a non-empty run of ASCII digits. Unlike `str::parse`, this rejects a
/// leading `+` (which HTTP grammars do not allow); it returns `None` on overflow.
pub(crate) fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Decode `%XX` escapes. Malformed escapes are kept literally and `+` stays a
/// plus: query values here are percent-encoded, not form-encoded.
pub(crate) fn percent_decode(s: &str) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_deterministic_and_path_dependent() {
        assert_eq!(body_for("/file/a", 0, 1000), body_for("/file/a", 0, 1000));
        assert_ne!(body_for("/file/a", 0, 64), body_for("/file/b", 0, 64));
        assert_ne!(body_for("/file/a", 0, 64), body_for("/file/a", 1, 64));
        assert_eq!(body_for("/file/a", 0, 0), Vec::<u8>::new());
        // A shorter body is a prefix of a longer one.
        assert_eq!(
            body_for("/file/a", 0, 100)[..],
            body_for("/file/a", 0, 1000)[..100]
        );
    }

    #[test]
    fn fill_is_position_addressable() {
        let full = body_for("/file/x", 3, 257);
        let seed = content_seed("/file/x", 3);
        for start in [0usize, 1, 7, 8, 9, 100, 250] {
            for len in [0usize, 1, 5, 8, 17] {
                let end = (start + len).min(full.len());
                let mut part = vec![0; end - start];
                fill(seed, start as u64, &mut part);
                assert_eq!(part[..], full[start..end], "start {start} len {len}");
            }
        }
    }

    #[test]
    fn bodies_are_not_trivially_repetitive() {
        let body = body_for("/file/a", 0, 4096);
        let mut seen = [false; 256];
        for &b in &body {
            seen[usize::from(b)] = true;
        }
        assert!(seen.iter().filter(|s| **s).count() > 200);
    }

    #[test]
    fn expected_reads_size_from_query() {
        assert_eq!(expected("/file/a?size=100"), body_for("/file/a", 0, 100));
        assert_eq!(expected("/file/a?x=1&size=7"), body_for("/file/a", 0, 7));
        assert_eq!(expected("/file/a").len(), DEFAULT_SIZE);
    }

    #[test]
    #[should_panic(expected = "not a number")]
    fn expected_rejects_bad_size() {
        let _ = expected("/file/a?size=ten");
    }

    #[test]
    fn validators_change_with_version_and_size() {
        let e0 = etag("/file/a", 0, 10);
        assert!(e0.starts_with('"') && e0.ends_with('"') && e0.len() == 18);
        assert_ne!(e0, etag("/file/a", 1, 10));
        assert_ne!(e0, etag("/file/a", 0, 11));
        assert_eq!(last_modified(0), "Fri, 01 Jan 2021 00:00:00 GMT");
        assert_eq!(last_modified(2), "Fri, 01 Jan 2021 00:00:02 GMT");
    }

    #[test]
    fn query_helpers() {
        assert_eq!(query_param(Some("a=1&b=2"), "b"), Some("2"));
        assert_eq!(query_param(Some("a=1&b"), "b"), Some(""));
        assert_eq!(query_param(Some("ab=1"), "a"), None);
        assert_eq!(query_param(None, "a"), None);
        assert_eq!(size_param(None, 5), Some(5));
        assert_eq!(size_param(Some("size=12"), 5), Some(12));
        assert_eq!(size_param(Some("size=+12"), 5), None);
        assert_eq!(size_param(Some("size="), 5), None);
        assert_eq!(percent_decode("a%2Fb%20c+d"), b"a/b c+d");
        assert_eq!(percent_decode("%E2%9C%93"), "\u{2713}".as_bytes());
        assert_eq!(percent_decode("100%"), b"100%");
        assert_eq!(percent_decode("%4"), b"%4");
        assert_eq!(percent_decode("%zz"), b"%zz");
    }
}
