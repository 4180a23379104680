#!/usr/bin/env bash
# Fuzzes what the shim and the image tool read from outside, with cargo fuzz
# (libFuzzer): each target in fuzz/ runs FUZZ_SECONDS (default 60), starting
# from its seed corpus in fuzz/corpus/<target>, which is replayed first — so
# every seed, and every crash once added there, is a regression test.
#
#   tests/fuzz.sh              all targets
#   tests/fuzz.sh TARGET...    only these
#
# New inputs libFuzzer finds go to a scratch corpus, not into the clone. A
# crash, a panic, a hang over 10 s or a leak past 2 GiB fails the target and
# leaves its input in $FUZZ_ARTIFACTS (printed). cargo-fuzz and the
# instrumented builds are cached outside the clone.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CARGO_FUZZ_VERSION=0.13.1
CACHE=/var/tmp/containerd-shim-wasmtime
TOOLS=$CACHE/tools/cargo-fuzz-$CARGO_FUZZ_VERSION
FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-$CACHE/fuzz-target}
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_ARTIFACTS=${FUZZ_ARTIFACTS:-$(mktemp -d /tmp/shim-fuzz-artifacts.XXXXXX)}

# cargo fuzz needs a nightly compiler (sanitizer coverage flags).
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "==> fuzz: installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
fi
if [ ! -x "$TOOLS/bin/cargo-fuzz" ]; then
    echo "==> fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION into $TOOLS"
    cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION" --root "$TOOLS"
fi
export PATH=$TOOLS/bin:$PATH

cd "$ROOT"
fuzz() { cargo +nightly fuzz "$@"; }
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(fuzz list); fi
echo "==> fuzz: building ${targets[*]} (instrumented, release)"
fuzz build -O --target-dir "$FUZZ_TARGET_DIR"

passed=0 failed=0
for t in "${targets[@]}"; do
    scratch=$(mktemp -d /tmp/shim-fuzz.XXXXXX)
    mkdir -p "$scratch/corpus"
    echo "==> fuzz: $t for ${FUZZ_SECONDS}s (seeds: fuzz/corpus/$t)"
    # The targets make rootfs trees in TMPDIR; libFuzzer exits without
    # running destructors, so the script removes them.
    mkdir -p "$scratch.tmp"
    if TMPDIR="$scratch.tmp" fuzz run -O --target-dir "$FUZZ_TARGET_DIR" "$t" "$scratch/corpus" "fuzz/corpus/$t" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$FUZZ_ARTIFACTS/$t-" 2>"$scratch.log"; then
        grep -E '^stat::(number_of_executed_units|new_units_added)|Done [0-9]+ runs' "$scratch.log" | sed "s/^/   $t: /" || true
        echo "PASS $t"
        passed=$((passed + 1))
    else
        tail -40 "$scratch.log"
        echo "FAIL $t: the input is in $FUZZ_ARTIFACTS (add it to fuzz/corpus/$t and a unit test once fixed)"
        failed=$((failed + 1))
    fi
    rm -rf "$scratch" "$scratch.log" "$scratch.tmp"
done
# Nothing found: no artifacts to keep.
rmdir "$FUZZ_ARTIFACTS" 2>/dev/null || true
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
