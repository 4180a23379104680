#!/usr/bin/env bash
# Build the chat services (wasm32-wasip2 components) and the web UI.
#
#   images/services/build.sh OUTDIR
#
# Writes OUTDIR/<service>.wasm for session, chat, message, user, truncator and
# gateway, and the web UI's static files to OUTDIR/www, then prints sizes.
# Works from any directory and is idempotent. Honors CARGO_TARGET_DIR (default
# /var/tmp/containerd-shim-wasmtime/services-target) and OPT_LEVEL (overrides
# the release profile's opt-level, "s"; see README.md for "s" vs 3).
# Needs cargo with the wasm32-wasip2 target (added with rustup if missing) and
# node + npm (the UI's dependencies come from the npm registry, pinned by
# web/package-lock.json).
set -euo pipefail

if [ "$#" -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$1"
outdir="$(cd "$1" && pwd)"
# cargo reads .cargo/config.toml (tokio_unstable for wasip2) from the cwd.
cd "$here"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/containerd-shim-wasmtime/services-target}"
services=(session chat message user truncator gateway)
target=wasm32-wasip2

if [ -n "${OPT_LEVEL:-}" ]; then
    export CARGO_PROFILE_RELEASE_OPT_LEVEL="$OPT_LEVEL"
fi
# tokio needs --cfg tokio_unstable on wasm32-wasip2. .cargo/config.toml sets
# it, but an exported RUSTFLAGS replaces config rustflags, so keep it there too.
if [ -n "${RUSTFLAGS:-}" ]; then
    export RUSTFLAGS="$RUSTFLAGS --cfg tokio_unstable"
fi

if [ ! -d "$(rustc --print sysroot)/lib/rustlib/$target" ]; then
    if ! command -v rustup >/dev/null 2>&1; then
        echo "error: Rust target $target is not installed and rustup is missing" >&2
        exit 1
    fi
    rustup target add "$target" >&2
fi
for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "error: $tool is needed to build the web UI" >&2
        exit 1
    fi
done

packages=()
for s in "${services[@]}"; do packages+=(-p "$s"); done
cargo build --quiet --locked --release --target "$target" --manifest-path "$here/Cargo.toml" "${packages[@]}"
for s in "${services[@]}"; do
    cp "$CARGO_TARGET_DIR/$target/release/$s.wasm" "$outdir/$s.wasm"
done

# npm ci only when the installed tree is older than the lockfile: it deletes
# and refetches node_modules every time it runs.
web="$here/web"
if [ ! -f "$web/node_modules/.package-lock.json" ] || [ "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]; then
    (cd "$web" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
(cd "$web" && npm run --silent build -- --outDir "$outdir/www" --emptyOutDir --logLevel error)

echo "services built in $outdir:"
for s in "${services[@]}"; do
    bytes=$(wc -c <"$outdir/$s.wasm")
    printf '  %-14s %9d bytes  %6d KiB\n' "$s.wasm" "$bytes" $(((bytes + 1023) / 1024))
done
www_bytes=$(find "$outdir/www" -type f -exec cat {} + | wc -c)
printf '  %-14s %9d bytes  %6d KiB (%d files)\n' "www/" "$www_bytes" $(((www_bytes + 1023) / 1024)) \
    "$(find "$outdir/www" -type f | wc -l)"
