#!/usr/bin/env bash
# Validates the API's OpenAPI document and fuzzes the running API with schemathesis: every
# operation, every check (server errors, status codes, content types, response schemas, …),
# a fixed seed and a bounded number of examples so that CI stays fast and repeatable. Then the
# hostile classes schemathesis rarely reaches (scripts/api_hostile.py: integer limits, far
# dates, control characters, broken encodings, with "no 5xx, the documented shape, the
# connection still usable"), and a client generated from the document
# (scripts/check_generated_client.py, openapi-python-client) parsing every kind of answer.
#
# Usage: BIN=target/debug/plan-invoicer PY=path/to/venv/bin scripts/api_fuzz.sh [EXAMPLES]
# (the venv has schemathesis and openapi-spec-validator).
set -euo pipefail
scripts=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-target/debug/plan-invoicer}
PY=${PY:-target/conformance-venv/bin}
EXAMPLES=${1:-25}
dir=$(mktemp -d)
cleanup() {
  kill "${serve_pid:-}" "${emu_pid:-}" 2> /dev/null || true
  wait 2> /dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export DATABASE_URL="sqlite://$dir/fuzz.db"
export RUST_LOG=warn
"$BIN" migrate > /dev/null
token() { "$BIN" api-token create --name "$1" --scope "$2" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'; }
write=$(token fuzz write)
read=$(token fuzz-reader read)
# A customer with a plan and an offer, so that ids 1 exist and reads find something.
"$BIN" customer create --name "Fuzz Co" > /dev/null
"$BIN" plan create --customer 1 --tier cloud_standard --schedule monthly --licenses 10 --automanage-licenses > /dev/null
"$BIN" offer create --customer 1 --tier cloud_plus --fixed-price-cents 100000 > /dev/null

emu_port=$(port); api_port=$(port); http_port=$(port)
"$BIN" stripe-emulator --listen "127.0.0.1:$emu_port" > "$dir/emulator.log" 2>&1 &
emu_pid=$!
STRIPE_API_KEY=sk_test_fuzz STRIPE_API_BASE="http://127.0.0.1:$emu_port" STRIPE_WEBHOOK_SECRET=whsec_fuzz \
  "$BIN" serve --schedule "0 0 0 1 1 *" --http-addr "127.0.0.1:$http_port" \
  --api-addr "127.0.0.1:$api_port" > "$dir/serve.log" 2>&1 &
serve_pid=$!
# Up to a minute for the API to listen (a debug build on a busy machine can be slow to start);
# if it never does, say why instead of failing later on a missing file.
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$api_port/v1/openapi.json" -o "$dir/openapi.json" && break
  kill -0 "$serve_pid" 2> /dev/null || break
  sleep 0.1
done
if [ ! -s "$dir/openapi.json" ]; then
  echo "the API did not answer on 127.0.0.1:$api_port; serve's log:" >&2
  tail -30 "$dir/serve.log" >&2
  exit 1
fi

"$PY/openapi-spec-validator" "$dir/openapi.json"
status=0
# schemathesis keeps a cache in its working directory: the temporary one, not the checkout.
BIN=$(realpath "$BIN")
PY=$(realpath "$PY")
cd "$dir"
"$PY/st" run "http://127.0.0.1:$api_port/v1/openapi.json" \
  -H "Authorization: Bearer $write" \
  --checks all --exclude-checks positive_data_acceptance --seed 20261204 --max-examples "$EXAMPLES" --generation-deterministic \
  --workers 2 --no-color --request-timeout 30 \
  --suppress-health-check all || status=$?
"$PY/python" "$scripts/api_hostile.py" "http://127.0.0.1:$api_port" "$write" "$dir/openapi.json" || status=$?
"$PY/python" "$scripts/check_generated_client.py" "http://127.0.0.1:$api_port" "$write" "$read" "$dir/openapi.json" "$dir" || status=$?
if grep -q "panicked" "$dir/serve.log"; then
  echo "the server panicked:" >&2
  grep -A3 "panicked" "$dir/serve.log" >&2
  status=1
fi
kill -0 "$serve_pid" 2> /dev/null || { echo "serve died during the fuzzing" >&2; tail -20 "$dir/serve.log" >&2; status=1; }
exit "$status"
