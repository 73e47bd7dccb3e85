#!/usr/bin/env bash
# fuzz.sh runs every Fuzz target in the module for the given time each
# (default 30s), one at a time, and stops at the first finding. Crashers are
# written by go test under the package's testdata/fuzz/, to be committed.
set -euo pipefail
time=${1:-30s}
cd "$(dirname "$0")/.."
git grep -l -E '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' -- '*_test.go' | while read -r file; do
  pkg=./$(dirname "$file")
  grep -oE '^func Fuzz[A-Za-z0-9_]+' "$file" | sed 's/^func //' | while read -r target; do
    echo "fuzz: $pkg $target for $time"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$time" "$pkg"
  done
done
