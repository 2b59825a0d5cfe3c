//! The change history's pure parts (docs/ARCHITECTURE.md, "Change history"): who made a change
//! and why ([`Author`], bounded and checked at the door), what it moved ([`diff`]), and the
//! chain that makes the history tamper-evident ([`chain_hash`]).

use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};
use serde_json::{Map, Value};

use super::{Plan, Refusal};

/// The longest reason kept, in characters.
pub const MAX_REASON_CHARS: usize = 1000;
/// The longest actor or on-behalf-of name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// The hash before the first row.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who made a change and why: the actor (`cli:<OS user>`, `api:<token>`, `console:<email>`,
/// `system:pass`, `system:overdue`, `stripe:webhook`, `system:sync-payments`), the end user the
/// host application acted for, a free-text reason and the request's idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Author {
    pub actor: String,
    pub on_behalf_of: Option<String>,
    pub reason: Option<String>,
    pub idempotency_key: Option<String>,
}

impl Author {
    /// One of the jobs (`system:pass`, `stripe:webhook`, …).
    pub fn system(actor: &'static str) -> Author {
        Author {
            actor: actor.to_string(),
            on_behalf_of: None,
            reason: None,
            idempotency_key: None,
        }
    }

    /// A person at the command line: `cli:<user>`, with the `--reason` given.
    pub fn cli(user: &str, reason: Option<&str>) -> Result<Author, Refusal> {
        let user = text("user", user, MAX_NAME_CHARS).unwrap_or_else(|_| "unknown".to_string());
        Ok(Author {
            actor: format!("cli:{user}"),
            on_behalf_of: None,
            reason: reason
                .map(|r| text("reason", r, MAX_REASON_CHARS))
                .transpose()?,
            idempotency_key: None,
        })
    }

    /// An API client (its token's name) and what its request said in the reason and
    /// on-behalf-of headers (`field` names them in refusals).
    pub fn api(
        token: &str,
        on_behalf_of: Option<(&'static str, &str)>,
        reason: Option<(&'static str, &str)>,
        idempotency_key: Option<String>,
    ) -> Result<Author, Refusal> {
        Ok(Author {
            actor: format!("api:{token}"),
            on_behalf_of: on_behalf_of
                .map(|(field, v)| text(field, v, MAX_NAME_CHARS))
                .transpose()?,
            reason: reason
                .map(|(field, v)| text(field, v, MAX_REASON_CHARS))
                .transpose()?,
            idempotency_key,
        })
    }
}

impl Author {
    /// A staff member at the support console: `console:<email>`, with the reason the console
    /// asked for.
    pub fn console(email: &str, reason: Option<&str>) -> Result<Author, Refusal> {
        Ok(Author {
            actor: format!("console:{}", text("email", email, MAX_NAME_CHARS)?),
            on_behalf_of: None,
            reason: reason
                .map(|r| text("reason", r, MAX_REASON_CHARS))
                .transpose()?,
            idempotency_key: None,
        })
    }
}

/// A free text as the history keeps it: trimmed, 1 to `max` characters, no control characters
/// (a line break or an escape sequence would forge lines in a terminal or a log).
pub fn text(field: &'static str, value: &str, max: usize) -> Result<String, Refusal> {
    let v = value.trim();
    if v.is_empty() {
        return Err(Refusal::of(field, "{field} must not be empty"));
    }
    if v.chars().count() > max {
        return Err(Refusal::of(
            field,
            format!("{{field}} must be at most {max} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(Refusal::of(
            field,
            "{field} must not contain control characters",
        ));
    }
    Ok(v.to_string())
}

/// What a change did, before its author and its place in the chain are added.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The instant the operation acted at (`--now`, or the clock).
    pub at: DateTime<Utc>,
    /// The admin command's name (`plan.seats`, `customer.set_discount`) or the job's step
    /// (`pass.renewal`, `overdue.void`, `payment.status`).
    pub operation: String,
    pub customer_id: Option<i64>,
    pub plan_id: Option<i64>,
    /// A plan the change created (an upgrade, a successor, a schedule switch).
    pub new_plan_id: Option<i64>,
    pub invoice_id: Option<i64>,
    /// Every object touched, by kind (`{"customer": 1, "plan": 2, "offer": 3}`).
    pub objects: Value,
    /// The fields that changed, as they were (`{}` for a creation).
    pub before: Value,
    /// The fields that changed, as they are.
    pub after: Value,
}

impl Change {
    /// A change of no customer, plan or invoice (an API token, a staff account): what it
    /// touched, and the fields before and after.
    pub fn of_objects(
        at: DateTime<Utc>,
        operation: &str,
        objects: Value,
        before: Value,
        after: Value,
    ) -> Change {
        Change {
            at,
            operation: operation.to_string(),
            customer_id: None,
            plan_id: None,
            new_plan_id: None,
            invoice_id: None,
            objects,
            before,
            after,
        }
    }
}

/// The fields of two snapshots that differ: `(before, after)`, each an object holding only those
/// fields, nested objects compared field by field. Before a creation (`before` is `{}`) the whole
/// new object is `after`. Snapshots that are not both objects are kept whole when they differ.
pub fn diff(before: &Value, after: &Value) -> (Value, Value) {
    match (before, after) {
        (Value::Object(b), a) if b.is_empty() => (Value::Object(Map::new()), a.clone()),
        (Value::Object(b), Value::Object(a)) => {
            let (mut was, mut is) = (Map::new(), Map::new());
            for (k, v) in a {
                match b.get(k) {
                    Some(old) if old == v => {}
                    Some(old @ Value::Object(o)) if v.is_object() && !o.is_empty() => {
                        let (w, i) = diff(old, v);
                        was.insert(k.clone(), w);
                        is.insert(k.clone(), i);
                    }
                    old => {
                        was.insert(k.clone(), old.cloned().unwrap_or(Value::Null));
                        is.insert(k.clone(), v.clone());
                    }
                }
            }
            for (k, v) in b {
                if !a.contains_key(k) {
                    was.insert(k.clone(), v.clone());
                    is.insert(k.clone(), Value::Null);
                }
            }
            (Value::Object(was), Value::Object(is))
        }
        (b, a) if b == a => (Value::Object(Map::new()), Value::Object(Map::new())),
        (b, a) => (b.clone(), a.clone()),
    }
}

/// The fields of a plan that the jobs move (its status, tier, dates, invoicing position, credit),
/// named as in the plan's view: what the pass's changes compare.
pub fn plan_fields(p: &Plan) -> Value {
    serde_json::json!({
        "tier": p.tier.name(),
        "status": p.status.name(),
        "billing_schedule": p.billing_schedule.name(),
        "billing_cycle_anchor": p.billing_cycle_anchor,
        "next_invoice_date": p.next_invoice_date,
        "end_date": p.end_date,
        "invoiced_through_ledger_id": p.invoiced_through,
        "price_per_license_cents": p.price_per_license,
        "fixed_price_cents": p.fixed_price,
        "credit_cents": p.credit,
    })
}

/// An instant as the history stores and hashes it: microseconds, so that both backends give back
/// exactly what was hashed.
pub fn history_time(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// The text form of an instant inside the hash: RFC 3339 at microseconds
/// (`2012-01-02T03:04:05.000000Z`), written directly for years 0 to 9999 (chrono's formatter
/// walks a format description at every call: two instants per change, on the seat report's
/// path); chrono's own for the rest, which it signs.
pub fn hash_time(t: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return t.to_rfc3339_opts(SecondsFormat::Micros, true);
    }
    // A leap second's nanoseconds run past 999,999,999; chrono writes them as `60` seconds.
    let (second, nanos) = match t.nanosecond() {
        n if n >= 1_000_000_000 => (t.second() + 1, n - 1_000_000_000),
        n => (t.second(), n),
    };
    // The digits pushed one by one: `format!` with widths walks its arguments at run time.
    let mut out = String::with_capacity(27);
    push_padded(&mut out, year.unsigned_abs(), 4);
    for (sep, n) in [
        ('-', t.month()),
        ('-', t.day()),
        ('T', t.hour()),
        (':', t.minute()),
        (':', second),
    ] {
        out.push(sep);
        push_padded(&mut out, n, 2);
    }
    out.push('.');
    push_padded(&mut out, nanos / 1_000, 6);
    out.push('Z');
    out
}

/// `n`'s last `width` decimal digits, zero-padded.
fn push_padded(out: &mut String, n: u32, width: u32) {
    for place in (0..width).rev() {
        let digit = n / 10_u32.pow(place) % 10;
        out.push(char::from_digit(digit, 10).unwrap_or('0'));
    }
}

/// SHA-256 (hex) over the previous row's hash and a row's fields, each field length-prefixed
/// (absent fields marked apart from empty ones) so that no two rows share an encoding.
pub fn chain_hash(prev_hash: &str, fields: &[Option<&str>]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"plan-invoicer change v1\n");
    ctx.update(prev_hash.as_bytes());
    ctx.update(&encode_fields(fields));
    let mut hex = String::with_capacity(64);
    for b in ctx.finish().as_ref() {
        hex.push(HEX_DIGITS[usize::from(b >> 4)]);
        hex.push(HEX_DIGITS[usize::from(b & 0x0f)]);
    }
    hex
}

/// `n` in decimal, without a `format!` per field.
fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

const HEX_DIGITS: [char; 16] = [
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'a', 'b', 'c', 'd', 'e', 'f',
];

/// The fields as [`chain_hash`] hashes them: `\n<length>:<text>` each, `\n-` for an absent one.
/// PostgreSQL's `change_append` finishes a row's hash from the encoding of the fields after
/// the id, which it is the one to know.
pub fn encode_fields(fields: &[Option<&str>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.iter().flatten().map(|f| f.len() + 8).sum());
    for f in fields {
        match f {
            None => out.extend_from_slice(b"\n-"),
            Some(s) => {
                out.push(b'\n');
                push_decimal(&mut out, s.len());
                out.push(b':');
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Each field is `\n<length>:<text>`, an absent one `\n-`; the hash is lowercase hex.
    #[test]
    fn fields_encode_length_prefixed_and_hash_to_hex() {
        let long = "x".repeat(1234);
        let fields = [
            Some(""),
            None,
            Some("abcdefghi"),
            Some("abcdefghij"),
            Some(&long[..]),
        ];
        let mut expected = b"\n0:\n-\n9:abcdefghi\n10:abcdefghij\n1234:".to_vec();
        expected.extend_from_slice(long.as_bytes());
        assert_eq!(encode_fields(&fields), expected);
        let hash = chain_hash(GENESIS_HASH, &fields);
        assert_eq!(hash.len(), 64);
        assert!(
            hash.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
            "{hash}"
        );
        // The same digest, written byte by byte with `format!`.
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(b"plan-invoicer change v1\n");
        ctx.update(GENESIS_HASH.as_bytes());
        ctx.update(&expected);
        let by_format: String = ctx
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hash, by_format);
    }

    /// The direct writer gives chrono's RFC 3339 at microseconds, digit for digit, at the
    /// edges of its range, at a leap second and below a microsecond; outside it, chrono's.
    #[test]
    fn hash_time_is_chronos_rfc3339_at_microseconds() {
        use chrono::{NaiveDate, TimeZone};
        let at = |y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, nanos: u32| {
            let naive = NaiveDate::from_ymd_opt(y, mo, d)
                .and_then(|d| d.and_hms_nano_opt(h, mi, s, nanos))
                .unwrap_or_else(|| panic!("a valid instant"));
            Utc.from_utc_datetime(&naive)
        };
        for t in [
            at(2012, 1, 2, 3, 4, 5, 0),
            at(2026, 12, 31, 23, 59, 59, 999_999_999),
            at(2016, 12, 31, 23, 59, 59, 1_500_000_000),
            at(0, 1, 1, 0, 0, 0, 1),
            at(9999, 12, 31, 23, 59, 59, 123_456_789),
            at(-1, 6, 15, 12, 0, 0, 0),
            at(10_000, 1, 1, 0, 0, 0, 0),
        ] {
            assert_eq!(
                hash_time(t),
                t.to_rfc3339_opts(SecondsFormat::Micros, true),
                "{t:?}"
            );
        }
    }

    #[test]
    fn diff_keeps_only_moved_fields() {
        let (b, a) = diff(
            &json!({"licenses": 5, "tier": "standard", "end_date": null}),
            &json!({"licenses": 7, "tier": "standard", "end_date": "2013-01-01"}),
        );
        assert_eq!(b, json!({"licenses": 5, "end_date": null}));
        assert_eq!(a, json!({"licenses": 7, "end_date": "2013-01-01"}));
        let (b, a) = diff(&json!({}), &json!({"id": 3}));
        assert_eq!((b, a), (json!({}), json!({"id": 3})));
        let (b, a) = diff(
            &json!({"plans": {"1": {"price": 800, "tier": "s"}, "2": {"price": 8}}}),
            &json!({"plans": {"1": {"price": 600, "tier": "s"}, "2": {"price": 8}}}),
        );
        assert_eq!(b, json!({"plans": {"1": {"price": 800}}}));
        assert_eq!(a, json!({"plans": {"1": {"price": 600}}}));
        let (b, a) = diff(&json!({"x": 1}), &json!({"x": 1}));
        assert_eq!((b, a), (json!({}), json!({})));
        let (b, a) = diff(&json!({"gone": 1}), &json!({}));
        assert_eq!((b, a), (json!({"gone": 1}), json!({"gone": null})));
    }

    #[test]
    fn texts_are_bounded_and_printable() {
        assert_eq!(
            text("reason", "  asked by finance ", 100).ok(),
            Some("asked by finance".into())
        );
        for bad in ["", "   ", "a\nb", "a\u{1b}[31m", "\u{0}"] {
            let r = text("reason", bad, 100);
            assert!(r.is_err(), "{bad:?}");
            assert_eq!(r.err().and_then(|r| r.field()), Some("reason"));
        }
        assert!(text("reason", &"é".repeat(100), 100).is_ok());
        assert!(text("reason", &"é".repeat(101), 100).is_err());
        let a = Author::api(
            "host",
            Some(("on_behalf_of", "ann@example.com")),
            None,
            None,
        );
        assert_eq!(a.ok().map(|a| a.actor), Some("api:host".to_string()));
        assert!(Author::cli("root", Some("x\ry")).is_err());
    }

    #[test]
    fn the_chain_depends_on_every_field_and_the_previous_hash() {
        let h = chain_hash(GENESIS_HASH, &[Some("1"), None, Some("a")]);
        assert_eq!(h.len(), 64);
        assert_eq!(h, chain_hash(GENESIS_HASH, &[Some("1"), None, Some("a")]));
        assert_ne!(
            h,
            chain_hash(GENESIS_HASH, &[Some("1"), Some(""), Some("a")])
        );
        assert_ne!(h, chain_hash(GENESIS_HASH, &[Some("1"), None, Some("b")]));
        assert_ne!(h, chain_hash(&h, &[Some("1"), None, Some("a")]));
        // Fields cannot slide into each other.
        assert_ne!(
            chain_hash(GENESIS_HASH, &[Some("ab"), Some("c")]),
            chain_hash(GENESIS_HASH, &[Some("a"), Some("bc")])
        );
    }
}
