//! One byte range of a `Range` header (RFC 9110 §14.1.2), for downloads that
//! resume or seek (video). Several ranges are answered with the whole file
//! (§14.2 allows ignoring the header).

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    /// No range (or one ignored): the whole file, `200`.
    Whole,
    /// Bytes `start..=end`, `206`.
    Part { start: u64, end: u64 },
    /// No byte of it is in the file: `416`.
    Unsatisfiable,
}

/// The range a header asks of a file of `len` bytes.
pub fn parse(header: Option<&str>, len: u64) -> Range {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return Range::Whole };
    let (first, last) = (first.trim(), last.trim());
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match (digits(first), digits(last)) {
        // A suffix: the last N bytes.
        (false, true) if first.is_empty() => {
            let Ok(n) = last.parse::<u64>() else { return Range::Whole };
            if n == 0 || len == 0 {
                return Range::Unsatisfiable;
            }
            Range::Part { start: len.saturating_sub(n), end: len - 1 }
        }
        (true, _) if last.is_empty() || digits(last) => {
            let Ok(start) = first.parse::<u64>() else { return Range::Whole };
            let end = if last.is_empty() { u64::MAX } else { last.parse::<u64>().unwrap_or(u64::MAX) };
            if end < start {
                return Range::Whole;
            }
            if start >= len {
                return Range::Unsatisfiable;
            }
            Range::Part { start, end: end.min(len - 1) }
        }
        _ => Range::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_of_a_ten_byte_file() {
        assert_eq!(parse(None, 10), Range::Whole);
        assert_eq!(parse(Some("bytes=0-3"), 10), Range::Part { start: 0, end: 3 });
        assert_eq!(parse(Some("bytes=4-"), 10), Range::Part { start: 4, end: 9 });
        assert_eq!(parse(Some("bytes=4-100"), 10), Range::Part { start: 4, end: 9 });
        assert_eq!(parse(Some("bytes=-3"), 10), Range::Part { start: 7, end: 9 });
        assert_eq!(parse(Some("bytes=-30"), 10), Range::Part { start: 0, end: 9 });
        assert_eq!(parse(Some("bytes=10-"), 10), Range::Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 10), Range::Unsatisfiable);
        assert_eq!(parse(Some("bytes=5-2"), 10), Range::Whole);
        assert_eq!(parse(Some("bytes=0-1,4-5"), 10), Range::Whole);
        assert_eq!(parse(Some("items=0-1"), 10), Range::Whole);
        assert_eq!(parse(Some("bytes=x-1"), 10), Range::Whole);
    }
}
