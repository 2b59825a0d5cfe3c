#!/usr/bin/env bash
# The change history at a book's size. Prints JSON lines.
#
#   scripts/bench_changes.sh sqlite|postgres [CUSTOMERS MONTHS]
#
# bench-changes seeds CUSTOMERS customers with a creation and MONTHS monthly pass changes each
# (through the real append, so the chain is real) and times the list query for a thousand
# customers and one verify in-process; then, as a user would run them, `changes list --customer`
# (one process each, 20 customers) and `changes verify` under /usr/bin/time (peak memory).
#
# Environment: BIN (default target/release/plan-invoicer), PG (postgres://postgres@127.0.0.1:5432).
set -euo pipefail
backend=${1:?sqlite or postgres}
customers=${2:-100000}
months=${3:-12}
bin=${BIN:-target/release/plan-invoicer}
pg=${PG:-postgres://postgres@127.0.0.1:5432}
dir=$(mktemp -d)
name="pi_bench_changes_$$"
cleanup() {
  [ "$backend" = postgres ] && psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" 2> /dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
case "$backend" in
  sqlite) url="sqlite://$dir/changes.db" ;;
  postgres)
    psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name"
    url="$pg/$name${PG_PARAMS:-}"
    ;;
  *) echo "backend: sqlite or postgres" >&2; exit 2 ;;
esac

"$bin" --json bench-changes --customers "$customers" --months "$months" --empty-database-url "$url"
echo

export DATABASE_URL=$url
times=()
for i in $(seq 1 20); do
  customer=$(( (i * 7919) % customers + 1 ))
  begin=$(date +%s%N)
  "$bin" --json changes list --customer "$customer" > /dev/null
  end=$(date +%s%N)
  times+=($(( (end - begin) / 1000 )))
done
/usr/bin/time -f '%e %M' -o "$dir/verify.time" "$bin" --json changes verify > "$dir/verify.json"
python3 - "$backend" "$customers" "$months" "$dir/verify.time" "$dir/verify.json" "${times[@]}" <<'PY'
import json, sys
backend, customers, months, tfile, vfile = sys.argv[1:6]
us = sorted(int(t) for t in sys.argv[6:])
secs, kib = open(tfile).read().split()
v = json.load(open(vfile))
print(json.dumps({"backend": backend, "customers": int(customers), "months": int(months),
                  "cli_changes_list_ms": {"p50": us[len(us) // 2] / 1000, "max": us[-1] / 1000},
                  "cli_changes_verify": {"seconds": float(secs), "peak_rss_kib": int(kib),
                                         "rows": v["rows"], "first_break": v["first_break"]}}))
PY
