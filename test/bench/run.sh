#!/usr/bin/env bash
# make bench: runs every benchmark family and writes BENCHMARKS.md and
# test/bench/results.json. Loopback only; each benchmark bounds its own count
# and time. BENCH_PKGS="./test/consistency ..." runs only those packages and
# keeps every other family's figures, with their date, from results.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
pkgs=${BENCH_PKGS:-$(go list ./... | grep -v /test/tools/)}
prev=()
if [ -n "${BENCH_PKGS:-}" ]; then
  cp test/bench/results.json "$out/previous.json" 2>/dev/null && prev=(-previous "$out/previous.json")
fi
i=0
for p in $pkgs; do
  # Only packages that define benchmarks.
  dir=$(go list -f '{{.Dir}}' "$p")
  grep -qs '^func Benchmark' "$dir"/*_test.go || continue
  i=$((i+1))
  echo "bench: $p" >&2
  go test -run '^$' -bench . -benchmem -count 1 -timeout 30m "$p" | tee "$out/$i.txt" >&2
done
go run ./test/bench/report -groups test/bench/groups.yaml -md BENCHMARKS.md -json test/bench/results.json "${prev[@]}" "$out"/*.txt
echo "wrote BENCHMARKS.md and test/bench/results.json" >&2
