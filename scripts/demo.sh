#!/usr/bin/env bash
# A year of invoicing on the embedded SQLite default, driven through the CLI with --now.
# Usage: scripts/demo.sh [DIR]   (default: a fresh temporary directory)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin="$PWD/target/release/plan-invoicer"
dir="${1:-$(mktemp -d)}"
export DATABASE_URL="sqlite://$dir/demo.db"
export RUST_LOG=warn
pi() { "$bin" "$@"; }
id() { "$bin" --json "$@" | sed -E 's/.*"(id|plan_id)":([0-9]+).*/\2/'; }

T0=2012-01-02T03:04:05Z
pi migrate
acme=$(id --now $T0 customer create --name "Acme (annual, seats grow)")
acme_plan=$(id --now $T0 plan create --customer "$acme" --tier cloud_standard --schedule annual --licenses 6 --automanage-licenses)
mono=$(id --now $T0 customer create --name "Mono (monthly, switches to annual)")
mono_plan=$(id --now $T0 plan create --customer "$mono" --tier cloud_plus --schedule monthly --licenses 10 --automanage-licenses)
trial=$(id --now $T0 customer create --name "Trial (60-day free trial)")
id --now $T0 plan create --customer "$trial" --tier cloud_standard --schedule annual --licenses 15 --automanage-licenses --free-trial-days 60 >/dev/null
down=$(id --now $T0 customer create --name "Down (downgrades at cycle end)")
down_plan=$(id --now $T0 plan create --customer "$down" --tier cloud_standard --schedule monthly --licenses 8)
fixed=$(id --now $T0 customer create --name "Fixed (negotiated 1,700/yr, monthly)")
offer=$(id --now $T0 offer create --customer "$fixed" --tier cloud_standard --fixed-price-cents 170000)
pi --now $T0 offer accept "$offer" --schedule monthly --licenses 20 >/dev/null

# Things that happen during the year, applied on their day before that day's pass.
declare -A events=(
  [2012-03-15]="plan schedule $mono_plan --change switch_to_annual"
  [2012-04-11]="plan seats $acme_plan --count 9"
  [2012-05-20]="plan schedule $down_plan --change downgrade_at_end_of_cycle"
  [2012-10-28]="plan seats $acme_plan --count 12"
)

# A daily 22:00 pass for a year, as the cron would run it.
day=2012-01-02
while [[ "$day" < 2013-01-03 ]]; do
  if [[ -n "${events[$day]:-}" ]]; then
    # shellcheck disable=SC2086
    pi --now "${day}T12:00:00Z" ${events[$day]} >/dev/null
  fi
  pi --now "${day}T22:00:00Z" run-once >/dev/null || true
  day=$(date -u -d "$day + 1 day" +%F)
done
pi invoices list
pi --now 2013-01-02T22:00:00Z status
echo "database: $dir/demo.db"
