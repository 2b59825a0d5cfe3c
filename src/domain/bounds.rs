//! The bounds of every number, instant and text that reaches the billing rules (docs/CLI.md,
//! "Bounds"; docs/API.md, "Bounds"). They are checked once, at the door — the CLI's flags and the
//! API's fields go through the same admin operations — and they are chosen so that no real
//! business reaches them while every amount and every derived date stays far inside what the
//! types hold: licenses × price per license × 36 catch-up cycles fits `i64` cents many times
//! over, and an instant accepted here plus 36 annual cycles plus the longest free trial is still
//! a four-digit year (RFC 3339 can write it, and SQLite's text timestamps sort by it).
//!
//! Pure: each check returns a [`Refusal`] of the field it was given (`licenses`), which the CLI
//! shows as `--licenses` and the API as its `param`.

use chrono::{DateTime, TimeZone, Utc};

use super::model::Ts;
use super::refusal::Refusal;

/// The most licenses (or seats, or minimum licenses) a plan or customer may have.
pub const MAX_LICENSES: i64 = 1_000_000;
/// The highest price per license for one period, in cents ($1,000,000).
pub const MAX_PRICE_PER_LICENSE_CENTS: i64 = 100_000_000;
/// The highest fixed price for one period, in cents ($10,000,000,000).
pub const MAX_FIXED_PRICE_CENTS: i64 = 1_000_000_000_000;
/// The longest free trial, in days (ten years).
pub const MAX_FREE_TRIAL_DAYS: i64 = 3_650;
/// The most characters in a name (customer, token).
pub const MAX_NAME_CHARS: usize = 200;
/// The most characters in any other text field (email, references, Stripe ids).
pub const MAX_TEXT_CHARS: usize = 255;
/// The earliest instant accepted: 2000-01-01T00:00:00Z.
pub const EARLIEST_YEAR: i32 = 2000;
/// Instants are accepted before 2200-01-01T00:00:00Z.
pub const END_YEAR: i32 = 2200;

/// The earliest accepted instant.
pub fn earliest() -> Ts {
    Utc.with_ymd_and_hms(EARLIEST_YEAR, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The first instant no longer accepted.
pub fn end() -> Ts {
    Utc.with_ymd_and_hms(END_YEAR, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `t` when it lies in [2000-01-01, 2200-01-01); otherwise a one-line refusal naming `flag`.
pub fn instant(field: &'static str, t: Ts) -> Result<Ts, Refusal> {
    if t < earliest() || t >= end() {
        return Err(Refusal::of(field, format!("must lie between {EARLIEST_YEAR}-01-01T00:00:00Z and {END_YEAR}-01-01T00:00:00Z (got {})",
            t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        )));
    }
    Ok(t)
}

/// A whole number in `0..=max`.
pub fn number(field: &'static str, v: i64, max: i64) -> Result<i64, Refusal> {
    if v < 0 {
        return Err(Refusal::of(
            field,
            format!("must not be negative (got {v})"),
        ));
    }
    if v > max {
        return Err(Refusal::of(
            field,
            format!("must be at most {max} (got {v})"),
        ));
    }
    Ok(v)
}

/// A license, seat or minimum-license count: `0..=MAX_LICENSES`.
pub fn licenses(field: &'static str, v: i64) -> Result<i32, Refusal> {
    let v = number(field, v, MAX_LICENSES)?;
    i32::try_from(v)
        .map_err(|_| Refusal::of(field, format!("must be at most {MAX_LICENSES} (got {v})")))
}

/// Text as it is stored: leading and trailing white space (Unicode's) removed, then refused
/// when empty, longer than `max` characters, or holding a control character other than tab
/// (NUL, escape, line breaks …: PostgreSQL cannot store NUL, and none belongs in a name).
pub fn text(field: &'static str, v: &str, max: usize) -> Result<String, Refusal> {
    let v = v.trim();
    if v.is_empty() {
        return Err(Refusal::of(field, "must not be empty"));
    }
    if let Some(c) = v.chars().find(|c| c.is_control() && *c != '\t') {
        return Err(Refusal::of(
            field,
            format!(
                "must not contain control characters (found U+{:04X})",
                u32::from(c)
            ),
        ));
    }
    let n = v.chars().count();
    if n > max {
        return Err(Refusal::of(
            field,
            format!("must be at most {max} characters (got {n})"),
        ));
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Ts {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn instants_are_bounded_on_both_sides() {
        assert!(instant("now", at("2000-01-01T00:00:00Z")).is_ok());
        assert!(instant("now", at("2199-12-31T23:59:59Z")).is_ok());
        assert!(instant("now", at("1999-12-31T23:59:59Z")).is_err());
        let e = instant("anchor", at("9999-12-31T23:59:59Z"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("--anchor must lie between"), "{e}");
        assert!(instant("now", DateTime::<Utc>::MAX_UTC).is_err());
        assert!(instant("now", DateTime::<Utc>::MIN_UTC).is_err());
    }

    #[test]
    fn numbers_at_and_beyond_the_integer_limits() {
        for v in [
            -1,
            i64::MIN,
            MAX_LICENSES + 1,
            i64::from(i32::MAX),
            i64::from(i32::MAX) + 1,
            i64::MAX,
        ] {
            assert!(licenses("licenses", v).is_err(), "{v}");
        }
        assert_eq!(licenses("licenses", MAX_LICENSES), Ok(1_000_000));
        assert_eq!(licenses("licenses", 0), Ok(0));
        assert!(number("fixed_price_cents", i64::MAX, MAX_FIXED_PRICE_CENTS).is_err());
    }

    #[test]
    fn the_largest_bill_fits_many_times_in_i64() {
        // 36 catch-up cycles of the largest plan at the highest price, and the largest fixed
        // price for as many periods, stay far below i64::MAX cents.
        let per_cycle = MAX_LICENSES * MAX_PRICE_PER_LICENSE_CENTS;
        assert!(per_cycle.checked_mul(36 * 1000).is_some());
        assert!(MAX_FIXED_PRICE_CENTS.checked_mul(36 * 1000).is_some());
    }

    #[test]
    fn text_is_trimmed_and_control_characters_refused() {
        assert_eq!(text("name", "  Acme \u{2003}", 200), Ok("Acme".into()));
        assert_eq!(text("name", "A\tB", 200), Ok("A\tB".into()));
        for bad in [
            "A\u{0}B",
            "A\u{1b}[31m",
            "line\nbreak",
            "A\u{7f}",
            "A\u{85}B",
        ] {
            let e = text("name", bad, 200)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("control characters"), "{bad:?}: {e}");
        }
        assert!(text("name", " \u{3000} ", 200).is_err());
        assert!(text("name", &"é".repeat(201), 200).is_err());
        assert!(text("name", &"é".repeat(200), 200).is_ok());
    }
}
