#!/usr/bin/env bash
# Runs the whole test suite and ends with one line that accounts for every
# test: passed, failed, skipped, and never ran (listed in a test binary
# that crashed before it reported). Every binary runs, whatever an earlier
# one did (--no-fail-fast). Exits non-zero when anything failed, anything
# never ran, or no test ran at all.
#
#   bash tools/test.sh [extra cargo test arguments]
set -uo pipefail

top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$top"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cargo_test=(cargo test --workspace --all-targets --features imss-upgrade/failpoints "$@")

# What each binary holds, before anything runs.
if ! "${cargo_test[@]}" -- --list >"$work/list" 2>&1; then
    cat "$work/list" >&2
    echo "tests: could not list the tests (see above)" >&2
    exit 1
fi

"${cargo_test[@]}" --no-fail-fast 2>&1 | tee "$work/run"
status=${PIPESTATUS[0]}

# Sections start at cargo's "Running <source> (<binary>)" lines.
# shellcheck disable=SC2016
read -r passed failed ignored never crashed < <(awk '
    FNR == 1 { file++ }
    /^ *Running / {
        binary = $NF
        next
    }
    file == 1 && /: (test|bench)$/ { listed[binary]++ }
    file == 2 && /^test result:/ {
        reported[binary] = 1
        for (i = 1; i <= NF; i++) {
            if ($(i) ~ /^passed;?$/) p += $(i - 1)
            if ($(i) ~ /^failed;?$/) f += $(i - 1)
            if ($(i) ~ /^ignored;?$/) g += $(i - 1)
        }
    }
    END {
        for (b in listed) if (!(b in reported)) { n += listed[b]; c++ }
        printf "%d %d %d %d %d\n", p, f, g, n, c
    }' "$work/list" "$work/run")

echo
echo "tests: ${passed} passed, ${failed} failed, ${ignored} skipped, ${never} never ran" \
    "(${crashed} test binaries ended without a result)"
if [ "$crashed" -gt 0 ]; then
    awk '
        FNR == 1 { file++ }
        /^ *Running / { binary = $NF; source = $2; next }
        file == 1 && /: (test|bench)$/ { listed[binary]++; name[binary] = source }
        file == 2 && /^test result:/ { reported[binary] = 1 }
        END { for (b in listed) if (!(b in reported)) printf "  no result from %s %s\n", name[b], b }
    ' "$work/list" "$work/run" >&2
fi
if [ "$passed" -eq 0 ]; then
    echo "no test ran" >&2
    exit 1
fi
if [ "$status" -eq 0 ] && { [ "$failed" -gt 0 ] || [ "$never" -gt 0 ]; }; then
    status=1
fi
exit "$status"
