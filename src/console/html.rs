//! The console's page frame and the small pieces every page uses: money, instants, the licenses
//! chart (SVG written here: no script, no inline style, so the Content-Security-Policy holds).
//! maud escapes every value it interpolates; nothing here builds HTML from strings.

use maud::{html, Markup, DOCTYPE};

use super::session::Viewer;
use crate::admin::staff::Role;
use crate::domain::{LedgerEntry, Ts};

/// A whole page: the header with the navigation and the logout button, then `body`.
pub fn page(title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · plan-invoicer console" }
                link rel="stylesheet" href=(super::CSS_PATH);
            }
            body {
                header {
                    nav aria-label="Main" {
                        a href="/" { strong { "plan-invoicer" } }
                        @if let Some(v) = viewer {
                            a href="/" { "Search" }
                            a href="/attention" { "Attention" }
                            a href="/revenue" { "Revenue" }
                            @if v.staff.role >= Role::Admin {
                                a href="/staff" { "Staff" }
                            }
                            span class="who" { (v.staff.email) " (" (v.staff.role.name()) ")" }
                            form method="post" action="/logout" class="inline" {
                                input type="hidden" name="csrf" value=(v.csrf);
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// `$1,234.56` (negative amounts with a minus sign).
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    let dollars = (abs / 100).to_string();
    let mut grouped = String::new();
    for (i, ch) in dollars.chars().enumerate() {
        if i > 0 && (dollars.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    format!("{sign}${grouped}.{:02}", abs % 100)
}

pub fn money_opt(cents: Option<i64>) -> String {
    cents.map(money).unwrap_or_else(|| "—".to_string())
}

/// An instant as `2026-12-05 14:03 UTC`.
pub fn when(t: Ts) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub fn when_opt(t: Option<Ts>) -> String {
    t.map(when).unwrap_or_else(|| "—".to_string())
}

/// A refusal or a notice above a form.
pub fn notice(kind: &str, text: &str) -> Markup {
    html! { p class=(format!("notice {kind}")) role="alert" { (text) } }
}

/// Licenses over time from a plan's ledger: a step line of the licenses in force (solid) and
/// of the licenses at the next renewal (dashed), with the axes labelled. `None` with fewer than
/// one entry.
pub fn licenses_chart(ledger: &[LedgerEntry], now: Ts) -> Option<Markup> {
    let first = ledger.first()?;
    let (w, h, pad) = (640.0_f64, 180.0_f64, 36.0_f64);
    let t0 = first.event_time.timestamp() as f64;
    let t1 = (now.timestamp() as f64).max(t0 + 86_400.0);
    let top = ledger
        .iter()
        .map(|e| e.licenses.max(e.licenses_at_next_renewal.unwrap_or(0)))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let x = |t: f64| pad + (t - t0) / (t1 - t0) * (w - 2.0 * pad);
    let y = |n: f64| h - pad - n / top * (h - 2.0 * pad);
    let steps = |value: &dyn Fn(&LedgerEntry) -> f64| {
        let mut d = String::new();
        let mut last = None;
        for e in ledger {
            let (px, py) = (x(e.event_time.timestamp() as f64), y(value(e)));
            match last {
                None => d.push_str(&format!("M{px:.1},{py:.1}")),
                Some(ly) => d.push_str(&format!(" L{px:.1},{ly:.1} L{px:.1},{py:.1}")),
            }
            last = Some(py);
        }
        if let Some(ly) = last {
            d.push_str(&format!(" L{:.1},{ly:.1}", x(t1)));
        }
        d
    };
    let licenses = steps(&|e| f64::from(e.licenses));
    let renewal = steps(&|e| f64::from(e.licenses_at_next_renewal.unwrap_or(e.licenses)));
    let label = format!(
        "Licenses from {} to {}: from {} to {}",
        when(first.event_time),
        when(now),
        first.licenses,
        ledger.last().map(|e| e.licenses).unwrap_or(first.licenses)
    );
    Some(html! {
        figure {
            svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {w} {h}")) role="img" aria-label=(label) class="chart" {
                line x1=(pad) y1=(h - pad) x2=(w - pad) y2=(h - pad) stroke="#888" {}
                line x1=(pad) y1=(pad) x2=(pad) y2=(h - pad) stroke="#888" {}
                text x=(pad - 4.0) y=(pad + 4.0) text-anchor="end" font-size="11" { (top) }
                text x=(pad - 4.0) y=(h - pad) text-anchor="end" font-size="11" { "0" }
                text x=(pad) y=(h - 12.0) font-size="11" { (first.event_time.format("%Y-%m-%d")) }
                text x=(w - pad) y=(h - 12.0) text-anchor="end" font-size="11" { (now.format("%Y-%m-%d")) }
                path d=(renewal) fill="none" stroke="#b36200" stroke-width="2" stroke-dasharray="5 4" {}
                path d=(licenses) fill="none" stroke="#1f5fa8" stroke-width="2" {}
            }
            figcaption { "Licenses in force (solid) and at the next renewal (dashed)." }
        }
    })
}

/// A bar chart of amounts per month: billed (left bar) and paid (right bar).
pub fn months_chart(months: &[(String, i64, i64)]) -> Markup {
    // The left margin holds the largest amount's label; `pad` is the other three margins.
    let (w, h, pad, left) = (760.0_f64, 200.0_f64, 30.0_f64, 80.0_f64);
    // Amounts stay integer cents; floats only place the bars.
    let top_cents = months
        .iter()
        .map(|(_, b, p)| (*b).max(*p))
        .max()
        .unwrap_or(0)
        .max(1);
    let top = top_cents as f64;
    let slot = (w - left - pad) / months.len().max(1) as f64;
    let bar = (slot / 2.0 - 2.0).max(1.0);
    let y = |v: i64| h - pad - (v as f64) / top * (h - 2.0 * pad);
    html! {
        figure {
            svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {w} {h}")) role="img"
                aria-label="Billed and paid per month" class="chart" {
                line x1=(left) y1=(h - pad) x2=(w - pad) y2=(h - pad) stroke="#888" {}
                text x=(left - 4.0) y=(pad + 4.0) text-anchor="end" font-size="11" { (money(top_cents)) }
                @for (i, (month, billed, paid)) in months.iter().enumerate() {
                    @let x0 = left + slot * i as f64 + 1.0;
                    rect x=(x0) y=(y(*billed)) width=(bar) height=(h - pad - y(*billed)) fill="#1f5fa8" {}
                    rect x=(x0 + bar + 1.0) y=(y(*paid)) width=(bar) height=(h - pad - y(*paid)) fill="#3c8c3c" {}
                    text x=(x0 + bar) y=(h - pad + 14.0) text-anchor="middle" font-size="10" { (month.get(2..).unwrap_or(month)) }
                }
            }
            figcaption { "Billed (blue) and paid (green) per month." }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_grouped_and_signed() {
        assert_eq!(money(0), "$0.00");
        assert_eq!(money(5), "$0.05");
        assert_eq!(money(123_456_789), "$1,234,567.89");
        assert_eq!(money(-100_050), "-$1,000.50");
        assert_eq!(money(i64::MIN), "-$92,233,720,368,547,758.08");
    }

    #[test]
    fn values_are_escaped() {
        let page = page(
            "<script>alert(1)</script>",
            None,
            html! { p { ("<b>x</b>") } },
        );
        let s = page.into_string();
        assert!(!s.contains("<script>alert"));
        assert!(s.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(s.contains("&lt;b&gt;x&lt;/b&gt;"));
    }
}
