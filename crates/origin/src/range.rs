//! `Range` and `If-Range` handling for content routes.
//!
//! Only the single-range forms a downloader sends are supported:
//! `bytes=N-`, `bytes=N-M` and the suffix form `bytes=-N`. Anything the
//! origin does not understand (multiple ranges, other units, bad syntax)
//! falls back to a full 200 response, which RFC 9110 §14.2 allows, so a
//! client that mis-builds its header sees the full body rather than an
//! error it might retry forever.

/// What a `Range` header asks of a body of known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RangeOutcome {
    /// Serve the whole body with 200.
    Full,
    /// Serve bytes `start..end` (end exclusive) with 206.
    Partial {
        /// First byte offset.
        start: u64,
        /// One past the last byte offset.
        end: u64,
    },
    /// No byte of the range exists: 416 with `Content-Range: bytes */total`.
    Unsatisfiable,
}

/// Interpret a `Range` header value against a body of `total` bytes.
pub(crate) fn parse_range(header: &str, total: u64) -> RangeOutcome {
    let header = header.trim();
    let Some(unit) = header.get(..6) else {
        return RangeOutcome::Full;
    };
    if !unit.eq_ignore_ascii_case("bytes=") {
        return RangeOutcome::Full;
    }
    let spec = header[6..].trim();
    if spec.contains(',') {
        return RangeOutcome::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return RangeOutcome::Full;
    };
    let (first, last) = (first.trim(), last.trim());

    if first.is_empty() {
        // Suffix form: the last N bytes.
        return match digits_saturating(last) {
            None => RangeOutcome::Full,
            Some(0) => RangeOutcome::Unsatisfiable,
            Some(_) if total == 0 => RangeOutcome::Unsatisfiable,
            Some(n) => RangeOutcome::Partial {
                start: total.saturating_sub(n),
                end: total,
            },
        };
    }

    let Some(start) = digits_saturating(first) else {
        return RangeOutcome::Full;
    };
    let end = if last.is_empty() {
        total
    } else {
        match digits_saturating(last) {
            // `last < first` is invalid syntax, not an empty range: ignore it.
            Some(last) if last >= start => last.saturating_add(1).min(total),
            _ => return RangeOutcome::Full,
        }
    };
    if start >= total {
        RangeOutcome::Unsatisfiable
    } else {
        RangeOutcome::Partial { start, end }
    }
}

/// Whether an `If-Range` value still names the current representation, so
/// the range may be honoured. Entity tags compare strongly (a weak tag never
/// matches, as RFC 9110 §13.1.5 requires); dates must equal the
/// `Last-Modified` string exactly. With no validators nothing matches.
pub(crate) fn if_range_matches(
    value: &str,
    etag: Option<&str>,
    last_modified: Option<&str>,
) -> bool {
    let value = value.trim();
    if value.starts_with('"') || value.starts_with("W/") {
        etag.is_some_and(|etag| etag == value)
    } else {
        last_modified.is_some_and(|lm| lm == value)
    }
}

/// ASCII digits to a number, saturating at `u64::MAX`: a huge but
/// well-formed offset is simply past the end of any body.
fn digits_saturating(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse().unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::RangeOutcome::{Full, Partial, Unsatisfiable};
    use super::*;

    #[test]
    fn open_and_closed_ranges() {
        assert_eq!(parse_range("bytes=0-", 100), Partial { start: 0, end: 100 });
        assert_eq!(
            parse_range("bytes=10-", 100),
            Partial {
                start: 10,
                end: 100
            }
        );
        assert_eq!(
            parse_range("bytes=10-19", 100),
            Partial { start: 10, end: 20 }
        );
        assert_eq!(
            parse_range("bytes=99-99", 100),
            Partial {
                start: 99,
                end: 100
            }
        );
        assert_eq!(
            parse_range(" Bytes= 5 - 6 ", 100),
            Partial { start: 5, end: 7 }
        );
    }

    #[test]
    fn end_past_total_is_clamped() {
        assert_eq!(
            parse_range("bytes=90-200", 100),
            Partial {
                start: 90,
                end: 100
            }
        );
        assert_eq!(
            parse_range("bytes=0-99999999999999999999999", 100),
            Partial { start: 0, end: 100 }
        );
    }

    #[test]
    fn suffix_ranges() {
        assert_eq!(
            parse_range("bytes=-10", 100),
            Partial {
                start: 90,
                end: 100
            }
        );
        assert_eq!(
            parse_range("bytes=-500", 100),
            Partial { start: 0, end: 100 }
        );
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-5", 0), Unsatisfiable);
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=100-200", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        assert_eq!(
            parse_range("bytes=99999999999999999999999-", 100),
            Unsatisfiable
        );
    }

    #[test]
    fn malformed_ranges_serve_everything() {
        for header in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=abc-",
            "bytes=+1-",
            "bytes=5-4",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=1",
        ] {
            assert_eq!(parse_range(header, 100), Full, "{header:?}");
        }
    }

    #[test]
    fn if_range() {
        let etag = Some("\"abc\"");
        let lm = Some("Fri, 01 Jan 2021 00:00:00 GMT");
        assert!(if_range_matches("\"abc\"", etag, lm));
        assert!(!if_range_matches("\"abd\"", etag, lm));
        assert!(!if_range_matches("W/\"abc\"", etag, lm));
        assert!(if_range_matches("Fri, 01 Jan 2021 00:00:00 GMT", etag, lm));
        assert!(!if_range_matches("Fri, 01 Jan 2021 00:00:01 GMT", etag, lm));
        assert!(!if_range_matches("\"abc\"", None, None));
        assert!(!if_range_matches(
            "Fri, 01 Jan 2021 00:00:00 GMT",
            None,
            None
        ));
    }
}
