#!/usr/bin/env bash
# The power-cut sweep (what `make power-loss` runs): the upgrade on the
# lossy file system, the power cut at every fail point of a run, of a
# rollback, of the transfer and of finalize (tests/power_loss.rs), one line
# per point. The last line is `N points, M clean`; exits non-zero unless
# every point was clean.
#
# IMSS_POWER_POINTS=a,b,c cuts at those points only.
set -uo pipefail

top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$top"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

IMSS_TEST_PROGRAM_LIMIT="${IMSS_TEST_PROGRAM_LIMIT:-7200}" \
    bash tools/test.sh --test power_loss -- \
    power_cuts_at_every_durable_boundary --ignored --nocapture 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

summary="$(grep -E '^[0-9]+ points, [0-9]+ clean$' "$log" | tail -n 1)"
if [ -z "$summary" ]; then
    echo "power-loss: the sweep ended before its summary (see above)" >&2
    exit 1
fi
echo "$summary"
points="${summary%% points*}"
clean="${summary#*, }"
clean="${clean%% clean}"
[ "$status" -eq 0 ] && [ "$points" = "$clean" ]
