#!/usr/bin/env bash
# The audit's memory over a book of N sent invoices (SQLite, the emulator with counts only):
#   scripts/bench_audit.sh N   → one JSON line with the audit's time and peak RSS.
set -euo pipefail
n=$1; bin=target/release/plan-invoicer; d=$(mktemp -d); port=$((20000 + RANDOM % 20000))
$bin stripe-emulator --listen 127.0.0.1:$port --counts-only 2>/dev/null & emu=$!
sleep 0.5
scripts/seed_book.sh sqlite://$d/b.db $n $bin 2>/dev/null
export DATABASE_URL=sqlite://$d/b.db STRIPE_API_KEY=sk_test_a STRIPE_API_BASE=http://127.0.0.1:$port/ RUST_LOG=off
export STRIPE_MAX_REQUESTS_PER_SECOND=1000000 STRIPE_MAX_REQUESTS_PER_SECOND_PER_ENDPOINT=1000000 STRIPE_MAX_REQUESTS_IN_FLIGHT=64
$bin --json --now 2025-02-07T00:00:00Z run-once > /dev/null
start=$(date +%s.%N)
/usr/bin/time -f %M -o $d/rss $bin --json audit > $d/audit.json || true
end=$(date +%s.%N)
python3 -c "import json; a=json.load(open('$d/audit.json')); print(json.dumps({'plans': $n, 'customers_checked': a['customers_checked'], 'local_invoices_checked': a['local_invoices_checked'], 'findings': len(a['findings']), 'audit_seconds': round($end-$start,1), 'audit_peak_rss_kib': int(open('$d/rss').read().split()[-1])}))"
kill $emu; rm -rf $d
