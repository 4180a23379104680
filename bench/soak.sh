#!/usr/bin/env bash
# Soak: 1000 create/start/kill/delete cycles of mixed containers (p1
# modules, p2 commands, wasi:http servers on their own shims; Wasm and
# Linux containers in one long-lived pod), ten at a time, on each
# containerd the project tests; then checks that no process, mount, task
# dir, cgroup, network namespace, FIFO, fd or cache temp file is left and
# the pod's shim has not grown, and prints the figures.
#
#   bash bench/soak.sh                 # 1000 cycles per containerd
#   SOAK_CYCLES=5000 bash bench/soak.sh
#   E2E_CONTAINERD=1.6 bash bench/soak.sh
#
# It is tests/tests/soak.rs (100 cycles in every test run) with a larger
# count, run through tests/run.sh's e2e passes (private containerd,
# registry, images). Needs root.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
report=$(mktemp /tmp/soak-report.XXXXXX)
trap 'rm -f "$report"' EXIT
rc=0
SOAK_CYCLES=${SOAK_CYCLES:-1000} SOAK_REPORT=$report bash "$ROOT/tests/run.sh" soak_mixed_cycles || rc=$?
echo
echo "==> soak figures"
cat "$report"
exit "$rc"
