#!/usr/bin/env bash
# The HTTP API's benchmark. Prints JSON lines.
#
#   scripts/bench_api.sh updates sqlite|postgres [PLANS REQUESTS]
#       seat updates through the API from 16 keep-alive clients (bench-api): rate, p50, p99;
#       beside it, the rate of the same update through the CLI, one process per update.
#   scripts/bench_api.sh pass [PLANS RATE]
#       PostgreSQL: a pass over PLANS due plans (run-once, the emulator without latency or
#       limits), alone and then with RATE seat updates per second arriving through the API.
#
# Environment: BIN (default target/release/plan-invoicer), PG (postgres://postgres@127.0.0.1:5432),
# CLIENTS (16), CLI_UPDATES (50).
set -euo pipefail
mode=${1:?updates or pass}
bin=${BIN:-target/release/plan-invoicer}
pg=${PG:-postgres://postgres@127.0.0.1:5432}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
  wait 2> /dev/null || true
  for db in "${dbs[@]:-}"; do [ -n "$db" ] && psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2> /dev/null; done
  rm -rf "$dir"
}
dbs=()
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# The plans are anchored 20 days ago: due in about ten days by the wall clock, so `serve` has
# no catch-up pass to run at start; the passes and the updates travel to after the due date.
t0=$(date -u -d "20 days ago" +%Y-%m-%dT%H:%M:%SZ)
due=$(date -u -d "$t0 + 1 month" +%Y-%m-%dT%H:%M:%SZ)
pass_at=$(date -u -d "$due + 1 day" +%Y-%m-%dT%H:%M:%SZ)

# Sets `url` to a new database (not in a subshell: the database must join `dbs`, which the exit
# drops; a `$(new_db …)` left every PostgreSQL database of a run behind).
new_db() { # backend name
  case "$1" in
    sqlite) url="sqlite://$dir/$2.db" ;;
    postgres)
      local name="pi_bench_api_$$_$2"
      psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name"
      dbs+=("$name")
      url="$pg/$name${PG_PARAMS:-}"
      ;;
    *) echo "backend: sqlite or postgres" >&2; exit 2 ;;
  esac
}

emu_port=$(port)
"$bin" stripe-emulator --listen "127.0.0.1:$emu_port" --counts-only > "$dir/emulator.log" 2>&1 &
pids+=($!)
export STRIPE_API_KEY=sk_test_bench STRIPE_API_BASE="http://127.0.0.1:$emu_port" RUST_LOG=warn
export STRIPE_MAX_REQUESTS_PER_SECOND=1000000 STRIPE_MAX_REQUESTS_PER_SECOND_PER_ENDPOINT=1000000

start_api() { # URL -> sets api_port, token
  local url=$1
  token=$(DATABASE_URL=$url "$bin" api-token create --name "bench-$RANDOM" --scope write --json | json '["token"]')
  api_port=$(port)
  DATABASE_URL=$url "$bin" serve --schedule "0 0 0 1 1 *" --http-addr "127.0.0.1:$(port)" \
    --api-addr "127.0.0.1:$api_port" --allow-time-travel > "$dir/serve.log" 2>&1 &
  serve_pid=$!
  pids+=("$serve_pid")
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$api_port/v1/openapi.json" -o /dev/null && return; sleep 0.1; done
  echo "serve did not start" >&2; cat "$dir/serve.log" >&2; exit 1
}

case "$mode" in
  updates)
    backend=${2:?sqlite or postgres}
    plans=${3:-2000}
    requests=${4:-20000}
    new_db "$backend" updates
    T0=$t0 LINES=1 "$here/seed_book.sh" "$url" "$plans" "$bin" 2> /dev/null
    start_api "$url"
    # The CLI: one process (and one connection) per update, as a host without the API would.
    n=${CLI_UPDATES:-50}
    begin=$(date +%s.%N)
    for i in $(seq 1 "$n"); do
      DATABASE_URL=$url "$bin" --now "$(date -u -d "$due + 1 hour + $i seconds" +%Y-%m-%dT%H:%M:%SZ)" \
        plan seats "$i" --count $((10 + i % 5)) > /dev/null
    done
    end=$(date +%s.%N)
    cli_rate=$(python3 -c "print(round($n / ($end - $begin), 1))")
    api=$("$bin" --json bench-api --url "http://127.0.0.1:$api_port" --token "$token" \
      --last-plan "$plans" --clients "${CLIENTS:-16}" --requests "$requests" \
      --start-at "$(date -u -d "$due + 2 hours" +%Y-%m-%dT%H:%M:%SZ)")
    python3 - "$backend" "$plans" "$cli_rate" "$api" <<'PY'
import json, sys
backend, plans, cli, api = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), json.loads(sys.argv[4])
print(json.dumps({"backend": backend, "plans": plans, "clients": 16, "api": api,
                  "cli_updates_per_second": cli,
                  "api_over_cli": round(api["per_second"] / cli, 1)}))
PY
    ;;
  pass)
    plans=${2:-3000}
    rate=${3:-500}
    alone_seconds=10
    for round in alone loaded; do
      new_db postgres "pass_$round"
      T0=$t0 LINES=2 "$here/seed_book.sh" "$url" "$plans" "$bin" 2> /dev/null
      if [ "$round" = loaded ]; then
        start_api "$url"
        # Updates for as long as the pass took alone, and a little more.
        secs=$(python3 -c "import math; print(math.ceil($alone_seconds * 1.3) + 3)")
        "$bin" --json bench-api --url "http://127.0.0.1:$api_port" --token "$token" \
          --last-plan "$plans" --clients "${CLIENTS:-16}" --requests $((rate * secs)) --rate "$rate" \
          --start-at "$pass_at" > "$dir/load.json" 2> "$dir/load.err" &
        load_pid=$!
        sleep 2
      fi
      DATABASE_URL=$url "$bin" --now "$pass_at" --json run-once > "$dir/report.json"
      load='null'
      if [ "$round" = loaded ]; then
        wait "$load_pid" || { cat "$dir/load.err" >&2; exit 1; }
        load=$(cat "$dir/load.json")
        kill "$serve_pid" 2> /dev/null || true
      else
        alone_seconds=$(json '["duration_ms"] / 1000' < "$dir/report.json")
      fi
      python3 - "$round" "$plans" "$rate" "$dir/report.json" "$load" <<'PY'
import json, sys
rnd, plans, rate, load = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[5])
r = json.load(open(sys.argv[4]))
secs = r["duration_ms"] / 1000
print(json.dumps({"pass": rnd, "api_updates_per_second_asked": rate if rnd == "loaded" else 0,
                  "plans": plans, "invoices": r["invoices_sent"], "failures": r["failures_count"],
                  "seconds": round(secs, 2), "invoices_per_second": round(r["invoices_sent"] / secs, 1),
                  "api": load}))
PY
    done
    ;;
  *) echo "mode: updates or pass" >&2; exit 2 ;;
esac
