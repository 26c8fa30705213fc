//! `Range` requests (RFC 9110 §14) for logs and artifacts: one pure parser with checked
//! arithmetic, and the `416` answer with `Content-Range: bytes */LEN`.
//!
//! A single byte range is served as `206`; an end past the last byte is clamped to it, and a
//! suffix range `bytes=-N` is the last N bytes (all of them when N is larger). A range whose first
//! byte is at or past the end, a suffix of zero bytes, or a malformed `bytes` range is `416`.
//! Several ranges, and units other than `bytes`, are ignored (the whole body, `200`), which the
//! RFC allows: Baton does not send `multipart/byteranges`.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::ApiError;

/// What a `Range` header asks of a representation of a known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ranged {
    /// No (usable) range: the whole representation, `200`.
    Full,
    /// Bytes `start..=end` (both within the representation), `206`.
    Part { start: u64, end: u64 },
    /// `416` with `Content-Range: bytes */LEN`.
    Unsatisfiable,
}

impl Ranged {
    /// The `Content-Range` value of a part of a representation of `len` bytes.
    pub fn content_range(start: u64, end: u64, len: u64) -> HeaderValue {
        HeaderValue::from_str(&format!("bytes {start}-{end}/{len}"))
            .expect("digits and ASCII are a valid header value")
    }
}

/// One range-spec as written.
enum Spec {
    /// `first-last` or `first-` (`last` absent).
    Int { first: u64, last: Option<u64> },
    /// `-len`.
    Suffix(u64),
}

/// A run of ASCII digits as a number, saturating at `u64::MAX` (a position that large is past
/// any end, and a last position that large is clamped anyway); `None` if not all digits.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.parse::<u64>().unwrap_or(u64::MAX))
}

fn spec(s: &str) -> Option<Spec> {
    let (a, b) = s.split_once('-')?;
    if a.is_empty() {
        return digits(b).map(Spec::Suffix);
    }
    let first = digits(a)?;
    let last = if b.is_empty() { None } else { Some(digits(b)?) };
    if last.is_some_and(|l| l < first) {
        return None; // invalid per §14.1.1
    }
    Some(Spec::Int { first, last })
}

/// Resolves the `Range` header `value` against a representation of `len` bytes.
pub(crate) fn resolve(value: &str, len: u64) -> Ranged {
    let Some((unit, set)) = value.split_once('=') else {
        return Ranged::Full; // not a ranges-specifier at all: ignore it
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ranged::Full; // a unit we do not know must be ignored (§14.2)
    }
    // `1#range-spec`: empty list elements are allowed and skipped (§5.6.1).
    let specs: Vec<&str> = set
        .split(',')
        .map(|s| s.trim_matches([' ', '\t']))
        .filter(|s| !s.is_empty())
        .collect();
    let Some(parsed) = specs.iter().map(|s| spec(s)).collect::<Option<Vec<Spec>>>() else {
        return Ranged::Unsatisfiable;
    };
    let satisfiable = |s: &Spec| match *s {
        Spec::Int { first, .. } => first < len,
        Spec::Suffix(n) => n > 0,
    };
    match parsed.as_slice() {
        [] => Ranged::Unsatisfiable,
        [one] if !satisfiable(one) => Ranged::Unsatisfiable,
        // A non-zero suffix of an empty representation is "all of it": nothing to cut.
        [Spec::Suffix(_)] if len == 0 => Ranged::Full,
        [Spec::Suffix(n)] => Ranged::Part {
            start: len - (*n).min(len),
            end: len - 1,
        },
        [Spec::Int { first, last }] => Ranged::Part {
            start: *first,
            end: last.map_or(len - 1, |l| l.min(len - 1)),
        },
        many if many.iter().any(satisfiable) => Ranged::Full,
        _ => Ranged::Unsatisfiable,
    }
}

/// The request's `Range` against `len` bytes; `Full` without one (or one that is not text).
pub(crate) fn of_request(headers: &HeaderMap, len: u64) -> Ranged {
    match headers.get(header::RANGE).map(HeaderValue::to_str) {
        None => Ranged::Full,
        Some(Ok(v)) => resolve(v, len),
        Some(Err(_)) => Ranged::Unsatisfiable,
    }
}

/// The `416` answer: a JSON error saying what was asked and how long the body is, with
/// `Content-Range: bytes */LEN`.
pub(crate) fn unsatisfiable(headers: &HeaderMap, len: u64, what: &str) -> Response {
    let asked = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut resp = ApiError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        "bad_range",
        format!(
            "Range {asked:?} cannot be served: the {what} is {len} bytes; ask for `bytes=FIRST-`, `bytes=FIRST-LAST` (FIRST below {len}) or `bytes=-N` (N > 0)"
        ),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
        resp.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::{Ranged, resolve};
    use proptest::prelude::*;

    fn part(start: u64, end: u64) -> Ranged {
        Ranged::Part { start, end }
    }

    #[test]
    fn rfc_9110_cases() {
        let len = 10;
        for (v, want) in [
            ("bytes=0-18446744073709551615", part(0, 9)),
            ("bytes=0-99999999999999999999999", part(0, 9)),
            ("bytes=-5", part(5, 9)),
            ("bytes=-10", part(0, 9)),
            ("bytes=-11", part(0, 9)),
            ("bytes=-99999999999999999999999", part(0, 9)),
            ("bytes=3-100", part(3, 9)),
            ("bytes=2-4", part(2, 4)),
            ("bytes=9-", part(9, 9)),
            ("bytes=0-0", part(0, 0)),
            ("Bytes=1-1", part(1, 1)),
            ("bytes= 1-2 ,", part(1, 2)),
            ("bytes=10-", Ranged::Unsatisfiable),
            ("bytes=18446744073709551615-", Ranged::Unsatisfiable),
            ("bytes=99999999999999999999999-", Ranged::Unsatisfiable),
            ("bytes=-0", Ranged::Unsatisfiable),
            ("bytes=5-1", Ranged::Unsatisfiable),
            ("bytes=zz", Ranged::Unsatisfiable),
            ("bytes=", Ranged::Unsatisfiable),
            ("bytes=-", Ranged::Unsatisfiable),
            ("bytes=1-2-3", Ranged::Unsatisfiable),
            ("bytes=+1-2", Ranged::Unsatisfiable),
            ("bytes=0-1,4-5", Ranged::Full),
            ("bytes=0-1,20-30", Ranged::Full),
            ("bytes=20-,30-", Ranged::Unsatisfiable),
            ("bytes=0-1,x", Ranged::Unsatisfiable),
            ("lines=1-2", Ranged::Full),
            ("garbage", Ranged::Full),
        ] {
            assert_eq!(resolve(v, len), want, "{v}");
        }
    }

    #[test]
    fn empty_representation() {
        assert_eq!(resolve("bytes=0-", 0), Ranged::Unsatisfiable);
        assert_eq!(resolve("bytes=0-5", 0), Ranged::Unsatisfiable);
        assert_eq!(resolve("bytes=-5", 0), Ranged::Full);
        assert_eq!(resolve("bytes=-0", 0), Ranged::Unsatisfiable);
    }

    proptest! {
        /// Whatever is asked, a part lies within the representation and never panics.
        #[test]
        fn parts_stay_inside(len in 0u64..=u64::MAX, a in any::<u64>(), b in any::<u64>(), suffix in any::<bool>()) {
            let v = if suffix { format!("bytes=-{a}") } else { format!("bytes={a}-{b}") };
            match resolve(&v, len) {
                Ranged::Part { start, end } => {
                    prop_assert!(start <= end && end < len);
                    if suffix {
                        prop_assert_eq!(end - start + 1, a.min(len));
                    } else {
                        prop_assert_eq!(start, a);
                        prop_assert_eq!(end, b.min(len - 1));
                    }
                }
                Ranged::Unsatisfiable => {
                    let refused = if suffix { a == 0 } else { a >= len || b < a };
                    prop_assert!(refused);
                }
                Ranged::Full => prop_assert!(suffix && len == 0 && a > 0),
            }
        }

        /// An open range from any first byte below the length is the rest of the body.
        #[test]
        fn open_ranges(len in 1u64..=u64::MAX, first in any::<u64>()) {
            let first = first % len;
            prop_assert_eq!(resolve(&format!("bytes={first}-"), len), Ranged::Part { start: first, end: len - 1 });
        }

        /// Arbitrary text never panics.
        #[test]
        fn any_text(v in ".{0,40}", len in any::<u64>()) {
            let _ = resolve(&v, len);
        }
    }
}
