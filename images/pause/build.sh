#!/usr/bin/env bash
# Builds the static pause binary: images/pause/build.sh OUT
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
gcc -static -Os -s -o "$1" "$here/pause.c"
