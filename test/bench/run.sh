#!/usr/bin/env bash
# make bench: runs every benchmark family and writes BENCHMARKS.md and
# test/bench/results.json. Loopback only; each benchmark bounds its own count
# and time.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
pkgs=$(go list ./... | grep -v /test/tools/)
i=0
for p in $pkgs; do
  # Only packages that define benchmarks.
  dir=$(go list -f '{{.Dir}}' "$p")
  grep -qs '^func Benchmark' "$dir"/*_test.go || continue
  i=$((i+1))
  echo "bench: $p" >&2
  go test -run '^$' -bench . -benchmem -count 1 -timeout 30m "$p" | tee "$out/$i.txt" >&2
done
go run ./test/bench/report -groups test/bench/groups.yaml -md BENCHMARKS.md -json test/bench/results.json "$out"/*.txt
echo "wrote BENCHMARKS.md and test/bench/results.json" >&2
