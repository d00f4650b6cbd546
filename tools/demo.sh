#!/usr/bin/env bash
# `make demo`: builds a disposable IMSS 7.1 server, starts it, and upgrades
# it to 9.1 while mail keeps arriving; shows the preflight report, the step
# lines and the upgrade report, what mail saw, and the log of every step;
# then stops it.
set -euo pipefail

top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
bin="$top/target/release"
demo_dir="${IMSS_DEMO_ROOT:-/var/tmp/imss-demo}"
demo_root="$demo_dir/root"
payload="$demo_dir/payload"
pg15_bin="${IMSS_PG15_BIN:-/usr/lib/postgresql/15/bin}"

if [ -d "$demo_dir" ]; then
    "$bin/imss-fixture" stop --root "$demo_root" >/dev/null 2>&1 || true
    rm -rf "$demo_dir"
fi
mkdir -p "$demo_dir"
chmod 0755 "$demo_dir"

echo "== Building a disposable IMSS 7.1 server under $demo_root"
"$bin/imss-fixture" build --root "$demo_root" --history-rows 300000 \
    --db-port 15432 --smtp-port 10025 --policy-port 15505 --euq-port 18447
trap '"$bin/imss-fixture" stop --root "$demo_root"' EXIT
"$bin/imss-fixture" payload --out "$payload" --pg-bin "$pg15_bin" >/dev/null

echo
echo "== Starting its PostgreSQL 10 and stand-in services"
"$bin/imss-fixture" start --root "$demo_root"
"$bin/imss-upgrade" status --root "$demo_root"

echo
echo "== Upgrading to 9.1 while 20 mails/s arrive: the preflight report, a line"
echo "   per step, then the upgrade report"
"$bin/imss-fixture" traffic --port 10025 --rate 20 --duration 25 >"$demo_dir/traffic.txt" &
traffic=$!
sleep 2
"$bin/imss-upgrade" run --root "$demo_root" --payload "$payload" --target-pg-bin "$pg15_bin"
wait "$traffic"

echo
echo "== What the mail sender saw (the longest gap is the mail downtime)"
cat "$demo_dir/traffic.txt"

echo
echo "== The upgraded server"
"$bin/imss-upgrade" status --root "$demo_root"

echo
echo "== The log of the upgrade ($demo_root/var/log/imss-upgrade/install.log;"
echo "   on a server with systemd: journalctl -t imss-upgrade)"
cat "$demo_root/var/log/imss-upgrade/install.log"

echo
echo "== Stopping it (the server stays under $demo_root for a look;"
echo "   imss-rollback --root $demo_root --payload $payload --target-pg-bin $pg15_bin puts 7.1 back)"
