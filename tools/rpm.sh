#!/usr/bin/env bash
# Builds the two upgrade packages (README, "The package") with
# cargo-generate-rpm:
#
#   imss-upgrade-helpers  the programs, the package's units, the journal's
#                         message catalog, bind/ and sql/, and the 9.1
#                         payload under /usr/share/imss-upgrade/payload
#   imss-upgrade          no files; its scriptlets upgrade on install and
#                         roll back on erase, with the helpers' programs
#
#   bash tools/rpm.sh [--profile release|dev] [--out DIR] [--release N]
#
# release (`make rpm`): the binaries built with cargo zigbuild for glibc
#          2.17, so the packages install on RHEL 7, 8 and 9.
# dev:     the workspace's debug binaries as `cargo test` built them (with
#          the fail points the failure tests arm); for the tests only.
#
# The packages are written to DIR (default: target/rpm, or target/rpm-dev),
# with the staging tree they were made from in DIR/stage. --release N
# overrides Cargo.toml's package release (a test's "newer release").

set -euo pipefail

top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$top"

profile=release
out=''
release=''
while [ $# -gt 0 ]; do
    case "$1" in
        --profile)
            profile="${2:?--profile needs release or dev}"
            shift 2
            ;;
        --out)
            out="${2:?--out needs a directory}"
            shift 2
            ;;
        --release)
            release="${2:?--release needs a number}"
            shift 2
            ;;
        -h | --help)
            sed -n '2,21s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
            exit 0
            ;;
        *)
            printf 'rpm: unknown argument: %s (see --help)\n' "$1" >&2
            exit 64
            ;;
    esac
done

die() {
    printf 'rpm: ERROR: %s\n' "$*" >&2
    exit 1
}

target_dir="${CARGO_TARGET_DIR:-$top/target}"
pg15_bin="${IMSS_PG15_BIN:-/usr/lib/postgresql/15/bin}"
# The glibc the release binaries may need at most (RHEL 7's).
glibc_floor=2.17

case "$profile" in
    release)
        out="${out:-$top/target/rpm}"
        bin_dir="$target_dir/x86_64-unknown-linux-gnu/release"
        # Zig and cargo-zigbuild live in a virtualenv of make setup's;
        # cargo-zigbuild finds zig as `$CARGO_ZIGBUILD_PYTHON_PATH -m ziglang`.
        zig_venv="$top/.tools/zig-venv/bin"
        [ -x "$zig_venv/cargo-zigbuild" ] || die "cargo-zigbuild is missing: run make setup"
        CARGO_ZIGBUILD_PYTHON_PATH="$zig_venv/python3" "$zig_venv/cargo-zigbuild" zigbuild \
            --release --target "x86_64-unknown-linux-gnu.$glibc_floor" \
            -p imss-upgrade -p imss-fixture --bins ||
            die "cargo zigbuild failed (see above)"
        ;;
    dev)
        out="${out:-$top/target/rpm-dev}"
        bin_dir="$target_dir/debug"
        ;;
    *) die "unknown profile $profile: release or dev" ;;
esac

for program in imss-upgrade imss-rollback imss-fixture; do
    [ -x "$bin_dir/$program" ] ||
        die "$bin_dir/$program is missing: build the workspace first (cargo build --workspace)"
done

# The newest glibc symbol version an ELF program needs (empty: none).
glibc_needed() {
    objdump -T "$1" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1
}

stage="$out/stage"
rm -rf "$stage"
mkdir -p "$stage/bin"
for program in imss-upgrade imss-rollback imss-fixture; do
    cp "$bin_dir/$program" "$stage/bin/$program"
    strip "$stage/bin/$program"
done
if [ "$profile" = release ]; then
    for program in imss-upgrade imss-rollback imss-fixture; do
        needed="$(glibc_needed "$stage/bin/$program")"
        [ "$(printf '%s\n%s\n' "$needed" "$glibc_floor" | sort -V | tail -n 1)" = "$glibc_floor" ] ||
            die "$program needs glibc $needed, more than RHEL 7's $glibc_floor"
    done
fi

# The 9.1 payload, as the model writes it (its services' program is the
# stripped imss-fixture, which copies itself), holding PostgreSQL 15's and
# BIND's programs rather than links to them: the package carries what 9.1
# bundles, as the vendor's does.
"$stage/bin/imss-fixture" payload --self-contained --out "$stage/payload" --pg-bin "$pg15_bin" >/dev/null ||
    die "writing the 9.1 payload failed (see above)"

# One asset line: source, destination, mode, and any extra keys.
asset() {
    printf '  { source = "%s", dest = "%s", mode = "%s"%s },\n' "$1" "$2" "$3" "${4:-}"
}

# Files only: cargo-generate-rpm 0.21 cannot make directory entries, so
# the payload's empty directories (config/, bind/etc/) are not in the
# package; the switch creates them.
payload_dest=/usr/share/imss-upgrade/payload
{
    echo 'assets = ['
    asset "$stage/bin/imss-upgrade" /usr/sbin/imss-upgrade 0755
    asset "$stage/bin/imss-rollback" /usr/sbin/imss-rollback 0755
    for unit in imss-upgrade-run.service imss-upgrade-rollback.service; do
        asset "systemd/$unit" "/usr/lib/systemd/system/$unit" 0644
    done
    asset systemd/imss-upgrade.catalog /usr/lib/systemd/catalog/imss-upgrade.catalog 0644
    asset README.md /usr/share/doc/imss-upgrade/README.md 0644 ', doc = true'
    for file in bind/* sql/*/*; do
        asset "$file" "/usr/share/imss-upgrade/$file" 0644
    done
    (cd "$stage/payload" && find . -type f -printf '%P %m\n' | sort) |
        while read -r file mode; do
            asset "$stage/payload/$file" "$payload_dest/$file" "0$mode"
        done
    echo ']'
} >"$stage/helpers.toml"

version="$(cargo metadata --no-deps --format-version 1 |
    python3 -c 'import json, sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "imss-upgrade"))')"
release="${release:-$(sed -n 's/^release = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)}"
[ -n "$version" ] && [ -n "$release" ] || die "could not read the version and release from Cargo.toml"
cat >"$stage/main.toml" <<EOF
assets = []
release = "$release"
requires = { "imss-upgrade-helpers" = "= $version-$release" }
EOF
echo "release = \"$release\"" >>"$stage/helpers.toml"

# The packages' build time is the last commit's, so that two builds of one
# commit are the same packages.
source_date="$(git log -1 --format=%ct 2>/dev/null || date +%s)"
# gzip: RHEL 7's rpm reads no zstd, and cargo-generate-rpm's xz and zstd
# take ten times as long for a package a fifth smaller.
rm -f "$out"/*.rpm
cargo generate-rpm -p . --variant helpers --metadata-overwrite "$stage/helpers.toml" \
    --payload-compress gzip --source-date "$source_date" -o "$out/" ||
    die "cargo generate-rpm --variant helpers failed (see above)"
# No files: the scriptlets are the package.
cargo generate-rpm -p . --variant main --metadata-overwrite "$stage/main.toml" \
    --arch noarch --payload-compress gzip --source-date "$source_date" -o "$out/" ||
    die "cargo generate-rpm --variant main failed (see above)"

# Every finding rpmlint has is either fixed or explained in the rpmlintrc.
rpmlint --rpmlintrc rpm/imss-upgrade.rpmlintrc "$out"/*.rpm >"$stage/rpmlint.txt" 2>&1 || {
    cat "$stage/rpmlint.txt" >&2
    die "rpmlint found problems in the packages (see above)"
}
grep -q ' 0 errors, 0 warnings' "$stage/rpmlint.txt" || {
    cat "$stage/rpmlint.txt" >&2
    die "rpmlint warned about the packages (see above)"
}
ls -1 "$out"/*.rpm
