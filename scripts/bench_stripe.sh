#!/usr/bin/env bash
# The Stripe-side benchmark: a book of due plans invoiced against the external emulator with
# Stripe's latency and rate limits, by one or more worker processes; prints one JSON line with
# the achieved rate of the busiest endpoint against the emulator's limit.
#
#   scripts/bench_stripe.sh sqlite|postgres PLANS WORKERS [GLOBAL_BUDGET ENDPOINT_BUDGET]
#
# Environment: BIN (default target/release/plan-invoicer), EMULATOR_BIN (default BIN), LINES (lines
# per invoice, 2), LATENCY_MS (300), JITTER_MS (100),
# LIMIT (100), ENDPOINT_LIMIT (25), CONCURRENCY (the worker's default), KEY (sk_live_bench),
# PG (postgres://postgres@127.0.0.1:5432). Without the budget arguments the workers use their
# defaults for the key's mode.
set -euo pipefail
backend=${1:?sqlite or postgres}
plans=${2:?plans}
workers=${3:-1}
budget=${4:-}
endpoint_budget=${5:-}
bin=${BIN:-target/release/plan-invoicer}
emulator=${EMULATOR_BIN:-$bin}   # the emulator of this commit, also when BIN is an older build
pg=${PG:-postgres://postgres@127.0.0.1:5432}
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT

port=$((20000 + RANDOM % 20000))
"$emulator" stripe-emulator --listen "127.0.0.1:$port" --counts-only \
  --latency-ms "${LATENCY_MS:-300}" --latency-jitter-ms "${JITTER_MS:-100}" \
  --rate-limit-per-second "${LIMIT:-100}" --endpoint-rate-limit-per-second "${ENDPOINT_LIMIT:-25}" \
  2> "$dir/emulator.log" &
for _ in $(seq 1 50); do curl -sf "http://127.0.0.1:$port/_emulator/counts" > /dev/null && break; sleep 0.1; done

case "$backend" in
  sqlite) url="sqlite://$dir/book.db" ;;
  postgres)
    name="pi_bench_$$"
    psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name"
    url="$pg/$name"
    ;;
  *) echo "backend: sqlite or postgres" >&2; exit 2 ;;
esac
scripts/seed_book.sh "$url" "$plans" "$bin" 2> /dev/null

export DATABASE_URL=$url STRIPE_API_KEY=${KEY:-sk_live_bench} STRIPE_API_BASE="http://127.0.0.1:$port/" RUST_LOG=warn
[ -n "$budget" ] && export STRIPE_MAX_REQUESTS_PER_SECOND=$budget
[ -n "$endpoint_budget" ] && export STRIPE_MAX_REQUESTS_PER_SECOND_PER_ENDPOINT=$endpoint_budget
[ -n "${CONCURRENCY:-}" ] && export PLAN_INVOICER_CONCURRENCY=$CONCURRENCY
# PostgreSQL: the database's committed transactions over the pass (pg_stat_database).
commits() { [ "$backend" = postgres ] && psql -Atq "$url" -c "SELECT pg_stat_force_next_flush(); SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()" | tail -n 1 || echo 0; }
commits_before=$(commits)
start=$(date +%s.%N)
pids=()
for w in $(seq 1 "$workers"); do
  /usr/bin/time -f "%M" -o "$dir/rss.$w" "$bin" --json --now 2025-02-07T00:00:00Z run-once \
    > "$dir/report.$w.json" 2> "$dir/worker.$w.log" &
  pids+=($!)
done
codes=()
for p in "${pids[@]}"; do
  if wait "$p"; then codes+=(0); else codes+=($?); fi
done
end=$(date +%s.%N)
curl -sf "http://127.0.0.1:$port/_emulator/counts" > "$dir/counts.json"
commits_after=$(commits)

python3 - "$dir" "$workers" "$start" "$end" "${ENDPOINT_LIMIT:-25}" "${codes[*]}" "$plans" "$backend" "$commits_before" "$commits_after" "${LINES:-2}" <<'PY'
import json, sys
d, workers, start, end, limit, codes, plans, backend, c0, c1, lines = sys.argv[1:]
workers, limit, plans = int(workers), float(limit), int(plans)
counts = json.load(open(f"{d}/counts.json"))
reports = [json.load(open(f"{d}/report.{w}.json")) for w in range(1, workers + 1)]
rss = [int(open(f"{d}/rss.{w}").read().split()[-1]) for w in range(1, workers + 1)]
busiest, c = max(counts.items(), key=lambda kv: kv[1]["ok"])
window = max((c["last_ok_ms"] - c["first_ok_ms"]) / 1000.0, 1e-9)
rate = (c["ok"] - 1) / window
total = sum(v["ok"] + v["rate_limited"] + v["other"] for v in counts.values())
ok = sum(v["ok"] for v in counts.values())
# One finalize per invoice: its rate over its own window is the invoices' rate.
fin = counts.get("POST /v1/invoices/{invoice}/finalize", {"ok": 0})
fin_window = max(((fin.get("last_ok_ms") or 0) - (fin.get("first_ok_ms") or 0)) / 1000.0, 1e-9)
invoices_rate = (fin["ok"] - 1) / fin_window if fin["ok"] > 1 else 0.0
limited = sum(v["rate_limited"] for v in counts.values())
print(json.dumps({
    "backend": backend,
    "plans": plans,
    "workers": workers,
    "exit_codes": codes.split(),
    # Older builds report every invoice instead of a count.
    "lines_per_invoice": int(lines),
    "invoices": sum(r.get("invoices_sent", len(r.get("invoices", []))) for r in reports),
    "invoices_per_second": round(invoices_rate, 2),
    "ratio_of_invoice_ceiling": round(invoices_rate / limit, 3) if limit else None,
    "requests_per_invoice": round(ok / max(fin["ok"], 1), 2),
    "failed_plans": sum(len(r["failures"]) + len(r["needs_attention"]) for r in reports),
    "wall_seconds": round(float(end) - float(start), 1),
    "plans_per_second": round(plans / (float(end) - float(start)), 1),
    "busiest_endpoint": busiest,
    "busiest_endpoint_rate": round(rate, 2),
    "ratio_of_endpoint_limit": round(rate / limit, 3) if limit else None,
    "requests": total,
    "rate_limited_share": round(limited / max(total, 1), 4),
    "peak_rss_kib": max(rss),
    # PostgreSQL only: transactions committed in the worker's database during the pass.
    "db_commits": int(c1) - int(c0) if backend == "postgres" else None,
    "db_commits_per_second": round((int(c1) - int(c0)) / (float(end) - float(start)), 1) if backend == "postgres" else None,
}))
PY
if [ "$backend" = postgres ]; then psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)"; fi
