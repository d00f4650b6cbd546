#!/usr/bin/env bash
# `make demo` (after `make setup` and `make rpm`): the
# product as an administrator meets it, on a disposable host. A host with
# systemd as PID 1 is booted (systemd-nspawn over an overlay of /, torn
# down at the end), a 7.1 server with 300000 policy events is built on it
# and started as units, the two packages are served from a dnf repository
# there, and `dnf install -y imss-upgrade` upgrades it to 9.1 while mail
# arrives. Shows the upgrade's progress, what dnf printed, what the mail
# sender saw, `imss-upgrade status` and the journal. Needs root and
# systemd-container (`make setup` installs it).
#
#   bash tools/demo.sh [imss-fixture demo options]   (see `imss-fixture demo --help`)
#
# IMSS_DEMO_PACKAGES  the packages' directory (default target/rpm; for
#                     dev packages: tools/rpm.sh --profile dev writes
#                     target/rpm-dev)
set -euo pipefail

case "${1:-}" in
    -h | --help)
        sed -n '2,17s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
        exit 0
        ;;
esac

top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
# The model's program as make rpm built it (for glibc 2.17, like the
# packages' programs): the demo needs no second build of its own.
fixture="${CARGO_TARGET_DIR:-$top/target}/x86_64-unknown-linux-gnu/release/imss-fixture"
packages="${IMSS_DEMO_PACKAGES:-$top/target/rpm}"

die() {
    printf 'demo: ERROR: %s\n' "$*" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || die "the demo boots a disposable host with systemd-nspawn: run it as root"
[ -x "$fixture" ] || die "$fixture is missing: run make rpm (make demo does)"
compgen -G "$packages/*.rpm" >/dev/null ||
    die "no packages in $packages: run make rpm (make demo does)"

exec "$fixture" demo --packages "$packages" "$@"
