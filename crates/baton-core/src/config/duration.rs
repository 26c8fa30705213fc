//! Duration strings.
//!
//! Two spellings are accepted, and one parser handles both:
//!
//! * py4CI style: one number and one unit, `{n}s|m|h|d|w` (`180s`, `1h`, `2d`, `1w`);
//! * Go style, as prunner's `start_delay`: a sequence of numbers with units, the numbers possibly
//!   fractional (`15s`, `1m30s`, `500ms`, `1.5h`, `250us`, `10ns`).
//!
//! A bare integer (`"30"`, or a YAML integer in the config) means seconds; `"0"` is zero.
//!
//! Each config key accepts a set of units ([`SECONDS_UP`] for py4CI's keys, [`MILLIS_UP`] for
//! `start_delay` and `kill_grace`), and its error message lists exactly those.

use std::time::Duration;

/// Every unit the parser knows, smallest first.
pub const ALL_UNITS: &[&str] = &["ns", "us", "ms", "s", "m", "h", "d", "w"];
/// Seconds and up: py4CI's `{n}s|m|h|d|w` (`period`, `debounce`, `timeout`, …).
pub const SECONDS_UP: &[&str] = &["s", "m", "h", "d", "w"];
/// Milliseconds and up (`start_delay`, `kill_grace`).
pub const MILLIS_UP: &[&str] = &["ms", "s", "m", "h", "d", "w"];

/// `["ms", "s", "h"]` → `"ms, s or h"`.
fn unit_list(units: &[&str]) -> String {
    match units.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// The message for a value that is not a duration in `units`:
/// `invalid duration "5x": expected a positive number followed by s, m, h, d or w`.
#[must_use]
pub fn invalid_duration(s: &str, units: &[&str]) -> String {
    format!(
        "invalid duration {s:?}: expected a positive number followed by {}",
        unit_list(units)
    )
}

/// Parses a duration in any unit the parser knows (see the [module docs](self)).
///
/// # Errors
/// As [`parse_duration_in`] with [`ALL_UNITS`].
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    parse_duration_in(s, ALL_UNITS)
}

/// Parses a duration whose units are all in `units` (`µs`/`μs` count as `us`).
///
/// # Errors
/// Returns a message of the form
/// `invalid duration "5x": expected a positive number followed by s, m, h, d or w` (listing
/// `units`) when `s` is not such a duration, and a similar message when it overflows.
pub fn parse_duration_in(s: &str, units: &[&str]) -> Result<Duration, String> {
    let invalid = || invalid_duration(s, units);
    let text = s.trim();
    if text.is_empty() {
        return Err(invalid());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| overflow(s));
    }
    let mut total_nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(invalid)?;
        let (num, tail) = rest.split_at(num_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let canonical = match unit {
            "µs" | "μs" => "us",
            u => u,
        };
        if !units.contains(&canonical) {
            return Err(invalid());
        }
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            "d" => 86_400 * 1_000_000_000,
            "w" => 604_800 * 1_000_000_000,
            _ => return Err(invalid()),
        };
        let nanos = scaled(num, unit_nanos).ok_or_else(invalid)?;
        total_nanos = total_nanos.checked_add(nanos).ok_or_else(|| overflow(s))?;
        rest = tail;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| overflow(s))?;
    // The remainder is < 1e9, so it fits.
    let sub = u32::try_from(total_nanos % 1_000_000_000).map_err(|_| overflow(s))?;
    Ok(Duration::new(secs, sub))
}

fn overflow(s: &str) -> String {
    format!("invalid duration {s:?}: too large")
}

/// `num` (digits with at most one `.`, at least one digit) times `unit_nanos`, truncated to
/// whole nanoseconds.
fn scaled(num: &str, unit_nanos: u128) -> Option<u128> {
    let (int, frac) = match num.split_once('.') {
        Some((i, f)) => (i, f),
        None => (num, ""),
    };
    if int.is_empty() && frac.is_empty() || frac.contains('.') {
        return None;
    }
    let int_val: u128 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut nanos = int_val.checked_mul(unit_nanos)?;
    let mut scale = unit_nanos;
    for digit in frac.bytes() {
        scale /= 10;
        if scale == 0 {
            break;
        }
        nanos = nanos.checked_add(u128::from(digit - b'0') * scale)?;
    }
    Some(nanos)
}

/// Formats a duration so that [`parse_duration`] reads it back exactly: the largest unit that
/// divides it (`2d`, `90s`, `1500ms`, `0s`).
#[must_use]
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    const UNITS: [(&str, u128); 8] = [
        ("w", 604_800 * 1_000_000_000),
        ("d", 86_400 * 1_000_000_000),
        ("h", 3_600 * 1_000_000_000),
        ("m", 60 * 1_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ];
    for (unit, size) in UNITS {
        if nanos.is_multiple_of(size) {
            return format!("{}{unit}", nanos / size);
        }
    }
    format!("{nanos}ns")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn py4ci_units() {
        assert_eq!(parse_duration("180s"), Ok(Duration::from_secs(180)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(2 * 86_400)));
        assert_eq!(parse_duration("1w"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn go_style() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2h45m"), Ok(Duration::from_secs(9900)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
    }

    #[test]
    fn rejects_garbage() {
        let msg = "invalid duration \"5x\": expected a positive number followed by ns, us, ms, s, m, h, d or w";
        assert_eq!(parse_duration("5x"), Err(msg.to_owned()));
        for bad in [
            "", " ", "s", "h1", "-1s", "1.2.3s", ".s", "1 h", "1hh", "1m30",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_duration("99999999999999999999w").is_err());
        assert!(parse_duration("99999999999999999999").is_err());
    }

    #[test]
    fn each_key_lists_its_own_units() {
        assert_eq!(
            parse_duration_in("-1s", MILLIS_UP),
            Err("invalid duration \"-1s\": expected a positive number followed by ms, s, m, h, d or w".to_owned())
        );
        assert_eq!(
            parse_duration_in("500ms", MILLIS_UP),
            Ok(Duration::from_millis(500))
        );
        // A unit the key does not take is refused, and the message says which it takes.
        assert_eq!(
            parse_duration_in("500ms", SECONDS_UP),
            Err("invalid duration \"500ms\": expected a positive number followed by s, m, h, d or w".to_owned())
        );
        assert!(parse_duration_in("10us", MILLIS_UP).is_err());
        assert_eq!(
            parse_duration_in("1m30s", SECONDS_UP),
            Ok(Duration::from_secs(90))
        );
        assert_eq!(
            parse_duration_in("2µs", ALL_UNITS),
            Ok(Duration::from_micros(2))
        );
    }

    proptest! {
        #[test]
        fn single_unit_parses(n in 0u64..1_000_000, unit in prop::sample::select(vec![
            ("s", 1u64), ("m", 60), ("h", 3600), ("d", 86_400), ("w", 604_800)
        ])) {
            prop_assert_eq!(
                parse_duration(&format!("{n}{}", unit.0)),
                Ok(Duration::from_secs(n * unit.1))
            );
        }

        #[test]
        fn format_parse_roundtrip(secs in 0u64..100_000_000, nanos in 0u32..1_000_000_000) {
            let d = Duration::new(secs, nanos);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn never_panics(s in "\\PC{0,12}") {
            let _ = parse_duration(&s);
        }
    }
}
