#!/usr/bin/env bash
# Every figure of docs/BENCHMARKS.md in one run, one JSON line each, on this machine:
#
#   scripts/bench_all.sh [BEFORE_BINARY] > results.jsonl
#
# BEFORE_BINARY: a release build of an earlier commit, measured the same way (optional).
# PLANS_STRIPE (2000), PLANS_DB (100000) set the sizes; SKIP_STRIPE=1 runs the database side only;
# PLANS_MEMORY=1000000 adds the largest memory point (SQLite; about an hour here). Needs
# PostgreSQL on 127.0.0.1:5432 (user postgres) and pgbench.
set -euo pipefail
cd "$(dirname "$0")/.."
before=${1:-}
export EMULATOR_BIN=${EMULATOR_BIN:-${BIN:-target/release/plan-invoicer}}
plans_stripe=${PLANS_STRIPE:-2000}
plans_db=${PLANS_DB:-100000}
run() { local label=$1; shift; printf '{"run": "%s", "result": %s}\n' "$label" "$("$@" 2>/dev/null | tail -n 1)"; }

# Stripe side: 300 ± 100 ms, 100/s per account and 25/s per endpoint enforced by the emulator.
if [ -z "${SKIP_STRIPE:-}" ]; then
run "stripe: 1 worker, budget = the limits (sqlite)" scripts/bench_stripe.sh sqlite "$plans_stripe" 1 100 25
run "stripe: 4 workers, budget = the limits (postgres)" scripts/bench_stripe.sh postgres "$plans_stripe" 4 100 25
run "stripe: 1 worker, default budget of a live key (sqlite)" scripts/bench_stripe.sh sqlite $((plans_stripe / 2)) 1
if [ -n "$before" ]; then
  BIN=$before run "stripe: before, 1 worker (sqlite)" scripts/bench_stripe.sh sqlite 100 1 100 25
fi
fi

# Database side: no latency, no limits.
export LATENCY_MS=0 JITTER_MS=0 LIMIT=0 ENDPOINT_LIMIT=0
if [ -n "$before" ]; then
  BIN=$before run "db: before, 10k plans (sqlite)" scripts/bench_stripe.sh sqlite 10000 1 1000000 1000000
  BIN=$before run "db: before, 10k plans (postgres)" scripts/bench_stripe.sh postgres 10000 1 1000000 1000000
fi
run "db: after, 10k plans (sqlite)" scripts/bench_stripe.sh sqlite 10000 1 1000000 1000000
run "db: after, 10k plans (postgres)" scripts/bench_stripe.sh postgres 10000 1 1000000 1000000
run "db: after, ${plans_db} plans (sqlite)" scripts/bench_stripe.sh sqlite "$plans_db" 1 1000000 1000000
run "db: after, ${plans_db} plans (postgres)" scripts/bench_stripe.sh postgres "$plans_db" 1 1000000 1000000
if [ -n "${PLANS_MEMORY:-}" ]; then
  run "db: after, ${PLANS_MEMORY} plans (sqlite)" scripts/bench_stripe.sh sqlite "$PLANS_MEMORY" 1 1000000 1000000
fi

# pgbench on the same server at the same concurrency (32 clients), for the commit rate.
pg=${PG:-postgres://postgres@127.0.0.1:5432}
psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS pi_pgbench" -c "CREATE DATABASE pi_pgbench"
pgbench -q -i -s 10 "$pg/pi_pgbench" > /dev/null 2>&1
tps=$(pgbench -c 32 -j 2 -T 30 "$pg/pi_pgbench" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | tail -n 1)
printf '{"run": "pgbench -c 32 -j 2 -T 30 (TPC-B-like)", "result": {"tps": %s}}\n' "${tps:-null}"
psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS pi_pgbench"
