#!/usr/bin/env bash
# Runs the whole test suite one test program at a time, each under a time
# limit, and ends with one line that accounts for every test: passed,
# failed, skipped, and never ran (listed in a program that crashed or hit
# its limit before it reported). Every program runs, whatever an earlier
# one did. Names the failed and the skipped tests, and for a program that
# hit its limit the tests still running then. Exits non-zero when anything
# failed, anything never ran, or no test ran at all.
#
#   bash tools/test.sh [cargo test arguments] [-- test program arguments]
#
# IMSS_TEST_PROGRAM_LIMIT: seconds one test program may take (default 900).
set -uo pipefail

top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$top"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

limit="${IMSS_TEST_PROGRAM_LIMIT:-900}"
cargo_args=()
program_args=()
while [ $# -gt 0 ]; do
    if [ "$1" = -- ]; then
        shift
        program_args=("$@")
        break
    fi
    cargo_args+=("$1")
    shift
done

command -v jq >/dev/null || {
    echo "tests: jq is missing: run \`make setup\` (or apt-get install jq)" >&2
    exit 1
}

# Every test program, built, with the package directory it runs in (as
# cargo test runs it); only those asked for when arguments name targets.
targets=(--all-targets)
[ ${#cargo_args[@]} -gt 0 ] && targets=()
if ! cargo test --workspace "${targets[@]}" --features imss-upgrade/failpoints "${cargo_args[@]}" \
    --no-run --message-format=json >"$work/artifacts" 2>"$work/build"; then
    cat "$work/build" >&2
    echo "tests: the test programs did not build (see above)" >&2
    exit 1
fi
jq -r 'select(.reason == "compiler-artifact" and .executable != null and .profile.test)
       | [.target.name, (.target.kind | join(",")), .executable,
          (.manifest_path | sub("/Cargo.toml$"; ""))] | @tsv' "$work/artifacts" |
    sort -u >"$work/programs"

passed=0 failed=0 ignored=0 never=0
failed_names=() ignored_names=() unfinished=() timings=()
while IFS=$'\t' read -r name kind exe dir; do
    label="$name ($kind)"
    out="$work/out"
    listed=$(cd "$dir" && "$exe" --list "${program_args[@]}" 2>/dev/null | grep -c ': test$' || true)
    [ "$listed" -gt 0 ] || continue
    echo
    echo "     Running $label: $listed tests, at most ${limit} s"
    started=$SECONDS
    (cd "$dir" && CARGO_MANIFEST_DIR="$dir" timeout -k 30 "$limit" "$exe" "${program_args[@]}") \
        </dev/null 2>&1 | tee "$out"
    status=${PIPESTATUS[0]}
    timings+=("$((SECONDS - started)) s  $label")

    result=$(grep -E '^test result:' "$out" | tail -n 1)
    if [ -n "$result" ]; then
        p=$(sed -nE 's/.* ([0-9]+) passed.*/\1/p' <<<"$result")
        f=$(sed -nE 's/.* ([0-9]+) failed.*/\1/p' <<<"$result")
        i=$(sed -nE 's/.* ([0-9]+) ignored.*/\1/p' <<<"$result")
        passed=$((passed + p)) failed=$((failed + f)) ignored=$((ignored + i))
    else
        # Whatever finished before it died or hit its limit still counts.
        p=$(grep -cE '^test .* \.\.\. ok$' "$out" || true)
        f=$(grep -cE '^test .* \.\.\. FAILED$' "$out" || true)
        i=$(grep -cE '^test .* \.\.\. ignored' "$out" || true)
        passed=$((passed + p)) failed=$((failed + f)) ignored=$((ignored + i))
        never=$((never + listed - p - f - i))
        if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
            how="hit its limit of ${limit} s"
        else
            how="ended with status $status before it reported"
        fi
        # libtest names a test once it has run for a minute; those that
        # never finished are the ones that hung.
        running=$(sed -nE 's/^test (.*) has been running for over 60 seconds$/\1/p' "$out" |
            while read -r test; do
                grep -qE "^test $test \.\.\. " "$out" || echo "$test"
            done | paste -sd, - | sed 's/,/, /g')
        unfinished+=("$label $how${running:+; still running: $running}")
    fi
    while read -r test; do failed_names+=("$label: $test"); done \
        < <(sed -nE 's/^test (.*) \.\.\. FAILED$/\1/p' "$out")
    while read -r test; do ignored_names+=("$label: $test"); done \
        < <(sed -nE 's/^test (.*) \.\.\. ignored.*$/\1/p' "$out")
done <"$work/programs"

echo
echo "tests: time per program, longest first"
printf '%s\n' "${timings[@]}" | sort -rn | sed 's/^/  /'
if [ ${#failed_names[@]} -gt 0 ]; then
    echo "tests: failed"
    printf '  %s\n' "${failed_names[@]}"
fi
if [ ${#ignored_names[@]} -gt 0 ]; then
    echo "tests: skipped"
    printf '  %s\n' "${ignored_names[@]}"
fi
if [ ${#unfinished[@]} -gt 0 ]; then
    echo "tests: programs without a result"
    printf '  %s\n' "${unfinished[@]}"
fi
echo
echo "tests: ${passed} passed, ${failed} failed, ${ignored} skipped, ${never} never ran" \
    "(${#unfinished[@]} test programs ended without a result)"
if [ "$passed" -eq 0 ]; then
    echo "no test ran" >&2
    exit 1
fi
if [ "$failed" -gt 0 ] || [ "$never" -gt 0 ] || [ ${#unfinished[@]} -gt 0 ]; then
    exit 1
fi
exit 0
