#!/usr/bin/env bash
# The support console at a book's size. Prints JSON lines.
#
#   scripts/bench_console.sh sqlite|postgres [PLANS REQUESTS]
#
# Seeds PLANS customers with a plan each (scripts/seed_book.sh, two ledger entries per plan),
# starts `serve --console-addr`, logs a staff member in, then times REQUESTS requests of each kind
# one after another over one keep-alive connection: a search by name (`bench-<k>`: a contains
# match over every customer), a search by plan id, and a customer's page (its plan, the next
# invoice through plan preview's code, the chart, invoices, changes, events).
#
# Environment: BIN (default target/release/plan-invoicer), PG (postgres://postgres@127.0.0.1:5432).
set -euo pipefail
backend=${1:?sqlite or postgres}
plans=${2:-100000}
requests=${3:-300}
bin=${BIN:-target/release/plan-invoicer}
pg=${PG:-postgres://postgres@127.0.0.1:5432}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
name="pi_bench_console_$$"
cleanup() {
  kill "${serve_pid:-}" 2> /dev/null || true
  wait 2> /dev/null || true
  [ "$backend" = postgres ] && psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $name WITH (FORCE)" 2> /dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
case "$backend" in
  sqlite) url="sqlite://$dir/console.db" ;;
  postgres)
    psql -q "$pg/postgres" -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name"
    url="$pg/$name${PG_PARAMS:-}"
    ;;
  *) echo "backend: sqlite or postgres" >&2; exit 2 ;;
esac
export DATABASE_URL=$url RUST_LOG=warn STRIPE_API_KEY=sk_test_bench
t0=$(date -u -d "20 days ago" +%Y-%m-%dT%H:%M:%SZ)
T0=$t0 LINES=2 "$here/seed_book.sh" "$url" "$plans" "$bin" 2> /dev/null
echo "correct horse battery staple" | "$bin" console-user create --email bench@staff.test --role viewer --password-stdin > /dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
hport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --schedule "0 0 0 1 1 *" --http-addr "127.0.0.1:$hport" --console-addr "127.0.0.1:$port" > "$dir/serve.log" 2>&1 &
serve_pid=$!
python3 - "$backend" "$plans" "$requests" "$port" <<'PY'
import http.client, json, random, re, statistics, sys, time
backend, plans, n, port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for _ in range(200):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60); c.connect(); break
    except OSError:
        time.sleep(0.05)
host = f"127.0.0.1:{port}"
def get(path, cookie=""):
    c.request("GET", path, headers={"Host": host, "Cookie": cookie})
    r = c.getresponse(); body = r.read(); return r, body
r, body = get("/login")
token = re.search(rb'name="csrf" value="([0-9a-f]+)"', body).group(1).decode()
login_cookie = r.getheader("set-cookie").split(";")[0]
form = f"csrf={token}&email=bench%40staff.test&password=correct+horse+battery+staple&next=%2F"
c.request("POST", "/login", body=form, headers={"Host": host, "Origin": f"http://{host}", "Cookie": login_cookie,
          "Content-Type": "application/x-www-form-urlencoded"})
r = c.getresponse(); r.read()
session = [h.split(";")[0] for k, h in r.getheaders() if k.lower() == "set-cookie" and h.startswith("pi_session=")][0]
random.seed(20261205)
def timed(make_path):
    times = []
    for _ in range(n):
        path = make_path()
        start = time.perf_counter()
        r, body = get(path, session)
        times.append((time.perf_counter() - start) * 1000)
        assert r.status == 200, (path, r.status, body[:200])
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2), "p99_ms": round(times[int(len(times) * 0.99) - 1], 2),
            "max_ms": round(times[-1], 2)}
out = {"backend": backend, "plans": plans, "requests_each": n,
       "search_by_name": timed(lambda: f"/?q=bench-{random.randint(1, plans)}"),
       "search_by_id": timed(lambda: f"/?q={random.randint(1, plans)}"),
       "customer_page": timed(lambda: f"/customers/{random.randint(1, plans)}")}
print(json.dumps(out))
PY
