# The README's two commands are `make demo` and `make test`; each installs
# what it needs first (`make setup`, idempotent and quick once done).

CARGO ?= cargo
RELEASE_BIN := target/release

.PHONY: all setup build test lint demo bench rpm rpm-test power-loss clean

all: build

setup:
	bash tools/setup.sh

build: setup
	$(CARGO) build --workspace --release

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Integration tests drive the imss-fixture program, so it is built first.
test: setup lint
	$(CARGO) build --workspace
	bash tools/test.sh

# The power-cut sweep (tools/power-loss.sh, tests/power_loss.rs): the
# upgrade with its whole root on a file system that loses at a power cut
# what was not synced, cut at every fail point of a run, a rollback, the
# transfer and finalize; make test cuts at four of them. Its last line is
# `N points, M clean`; it fails unless all are clean. Needs root and
# /dev/fuse. IMSS_POWER_POINTS=a,b cuts at those points only.
power-loss: setup
	$(CARGO) build --workspace
	bash tools/power-loss.sh

# The two packages, for glibc 2.17 and later (RHEL 7, 8, 9), in
# target/rpm; rpmlint-checked (tools/rpm.sh).
rpm:
	bash tools/setup.sh --zig
	bash tools/rpm.sh --profile release

# The release packages' own test (the glibc their programs need), which
# make test skips: their build for glibc 2.17 takes minutes CI lacks.
# tools/rpm.sh refuses a program above glibc 2.17 as it builds, too.
rpm-test: rpm
	$(CARGO) test --test package_e2e -- --ignored --exact the_programs_the_release_packages_ship_need_at_most_glibc_2_17

# A disposable 7.1 server on a booted host, upgraded by `dnf install` of
# the packages `make rpm` wrote (tools/demo.sh, which runs the
# imss-fixture make rpm built; needs root).
demo: rpm
	bash tools/demo.sh

# Every section by default; `make bench BENCH_ARGS="--only downtime"`
# measures one again and keeps the others (`imss-bench --help`). The
# package section installs the packages `make rpm` writes to target/rpm.
BENCH_ARGS ?=

bench: build rpm
	$(RELEASE_BIN)/imss-bench --out BENCHMARKS.md --packages target/rpm $(BENCH_ARGS)

clean:
	$(CARGO) clean
