#!/usr/bin/env bash
# `make demo`: builds a disposable IMSS 7.1 server, starts it, sends it
# mail, shows what was built, and stops it again.
set -euo pipefail

top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
bin="$top/target/release"
demo_root="${IMSS_DEMO_ROOT:-/var/tmp/imss-demo}"

if [ -d "$demo_root" ]; then
    "$bin/imss-fixture" stop --root "$demo_root" >/dev/null 2>&1 || true
    rm -rf "$demo_root"
fi

echo "== Building a disposable IMSS 7.1 server under $demo_root"
"$bin/imss-fixture" build --root "$demo_root" --history-rows 200000 \
    --db-port 15432 --smtp-port 10025 --policy-port 15505 --euq-port 18447
trap '"$bin/imss-fixture" stop --root "$demo_root"' EXIT

echo
echo "== Starting its PostgreSQL 10 and stand-in services"
"$bin/imss-fixture" start --root "$demo_root"

echo
echo "== What is installed, as the upgrade sees it"
"$bin/imss-upgrade" status --root "$demo_root"

echo
echo "== Sending mail for 5 seconds"
"$bin/imss-fixture" traffic --port 10025 --rate 50 --duration 5

echo
echo "== Stopping it (the server stays under $demo_root for a look)"
