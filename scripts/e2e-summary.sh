#!/usr/bin/env bash
# e2e-summary.sh passes `go test -v` output through and ends with one
# "N passed, N failed, N skipped" line; it exits non-zero when go test failed
# or any test failed, so a pipeline keeps the failure.
set -uo pipefail
pass=0 fail=0 skip=0 rc=0
while IFS= read -r line; do
  printf '%s\n' "$line"
  case "$line" in
    "--- PASS:"*) pass=$((pass + 1)) ;;
    "--- FAIL:"*) fail=$((fail + 1)) ;;
    "--- SKIP:"*) skip=$((skip + 1)) ;;
    FAIL*|"panic:"*) rc=1 ;;
  esac
done
echo "e2e: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ] && [ "$rc" -eq 0 ]
