#!/usr/bin/env bash
# Seeds a book of N due plans for benchmarks, with SQL rather than one CLI call per plan.
#
#   [LINES=L] scripts/seed_book.sh DATABASE_URL N [BINARY]
#
# One template customer and plan are made through the CLI (Cloud Standard, monthly, 10 licenses,
# automatic license management, and L-1 seat increases from day ten on: 12 seats, then 13, …):
# the invoice due a month later has a renewal line and L-1 prorated addition lines (L = 2 by
# default; L = 1 is the renewal alone). The template is then copied N-1 times with
# INSERT … SELECT over a recursive counter (the same SQL on PostgreSQL and SQLite). Every plan
# is due at 2025-02-06T09:00:00Z; run passes with --now 2025-02-07T00:00:00Z. T0=RFC3339 moves
# the anchor (every plan is then due a month after it; the seat increases come 10 days after it).
set -euo pipefail
url=${1:?DATABASE_URL}
n=${2:?number of plans}
bin=${3:-target/release/plan-invoicer}
t0=${T0:-2025-01-06T09:00:00Z}

export DATABASE_URL=$url
"$bin" migrate > /dev/null
"$bin" --now "$t0" customer create --name bench-1 > /dev/null
"$bin" --now "$t0" plan create --customer 1 --tier cloud_standard --schedule monthly \
  --licenses 10 --automanage-licenses > /dev/null
lines=${LINES:-2}
for k in $(seq 1 $((lines - 1))); do
  "$bin" --now "$(date -u -d "$t0 + $((9 + k)) days" +%Y-%m-%dT%H:%M:%SZ)" \
    plan seats 1 --count $((11 + k)) > /dev/null
done

sql=$(cat <<SQL
WITH RECURSIVE s(k) AS (SELECT 2 UNION ALL SELECT k + 1 FROM s WHERE k < $n)
INSERT INTO customer (name, kind, sponsorship_pending, monthly_discounted_price,
    annual_discounted_price, exempt_from_license_number_check, flat_discount,
    flat_discounted_months, created_at)
SELECT 'bench-' || k, t.kind, t.sponsorship_pending, t.monthly_discounted_price,
    t.annual_discounted_price, t.exempt_from_license_number_check, t.flat_discount,
    t.flat_discounted_months, t.created_at
FROM s, customer t WHERE t.id = 1;

INSERT INTO customer_plan (customer_id, tier, status, billing_schedule, fixed_price,
    price_per_license, discount, automanage_licenses, charge_automatically,
    billing_cycle_anchor, next_invoice_date, end_date, invoicing_status,
    stale_audit_log_data_email_sent, reminder_to_review_plan_email_sent, error_count,
    created_at)
SELECT c.id, p.tier, p.status, p.billing_schedule, p.fixed_price, p.price_per_license,
    p.discount, p.automanage_licenses, p.charge_automatically, p.billing_cycle_anchor,
    p.next_invoice_date, p.end_date, p.invoicing_status, p.stale_audit_log_data_email_sent,
    p.reminder_to_review_plan_email_sent, 0, p.created_at
FROM customer c, customer_plan p WHERE p.id = 1 AND c.id <> 1 ORDER BY c.id;

INSERT INTO license_ledger (plan_id, is_renewal, event_time, licenses, licenses_at_next_renewal)
SELECT np.id, l.is_renewal, l.event_time, l.licenses, l.licenses_at_next_renewal
FROM customer_plan np, license_ledger l WHERE l.plan_id = 1 AND np.id <> 1 ORDER BY np.id, l.id;

UPDATE customer_plan SET invoiced_through_id = (
    SELECT min(l.id) FROM license_ledger l WHERE l.plan_id = customer_plan.id AND l.is_renewal
) WHERE id <> 1;
SQL
)

case "$url" in
  postgres://*|postgresql://*) psql -q -v ON_ERROR_STOP=1 "$url" -c "BEGIN; $sql COMMIT; ANALYZE;" ;;
  sqlite://*) sqlite3 "${url#sqlite://}" "BEGIN; $sql COMMIT; ANALYZE;" ;;
  *) echo "unknown database URL $url" >&2; exit 2 ;;
esac
echo "seeded $n due plans in $url" >&2
