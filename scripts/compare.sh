#!/usr/bin/env bash
# make compare: msb and its peers on the same work, side by side in one run
# (internal/compare). Prints the table, writes bin/compare.json and the
# benchmarks' output to bin/compare.log. Flags go to tools/compare:
#   scripts/compare.sh -quick -rounds 1     the fast rows, once
#   scripts/compare.sh -readme README.md    also regenerate the README table
set -euo pipefail
cd "$(dirname "$0")/.."
export MSB_KERNEL=${MSB_KERNEL:-$PWD/bin/vmlinux}
exec go run ./tools/compare "$@"
