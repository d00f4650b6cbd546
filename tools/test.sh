#!/usr/bin/env bash
# Runs the whole test suite and ends with one line adding up every test
# binary's result, so that a run that executed no test is plain to see.
set -uo pipefail

top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$top"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

cargo test --workspace --all-targets --features imss-upgrade/failpoints "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

read -r passed failed ignored < <(awk '
    /^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i) ~ /^passed;?$/) p += $(i - 1)
            if ($(i) ~ /^failed;?$/) f += $(i - 1)
            if ($(i) ~ /^ignored;?$/) g += $(i - 1)
        }
    }
    END { printf "%d %d %d\n", p, f, g }' "$log")

echo
echo "tests: ${passed} passed, ${failed} failed, ${ignored} skipped"
if [ "$status" -eq 0 ] && [ "$passed" -eq 0 ]; then
    echo "no test ran" >&2
    exit 1
fi
exit "$status"
