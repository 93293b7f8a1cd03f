#!/usr/bin/env bash
# goimports with the project's grouping (standard library, third party, then
# github.com/ocpv-dr/ocpv-dr in a group of its own), run through `go run` at a
# pinned version. `check` lists the files that need it and fails; `fix`
# rewrites them. When the Go module proxy cannot serve goimports (offline and
# not in the module cache) it says so and does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
GOIMPORTS_VERSION=${GOIMPORTS_VERSION:-v0.47.0}
goimports=("${GO:-go}" run "golang.org/x/tools/cmd/goimports@${GOIMPORTS_VERSION}")
mode=${1:-check}
if ! echo 'package p' | "${goimports[@]}" >/dev/null 2>&1; then
  echo "goimports ${GOIMPORTS_VERSION} not available (Go module proxy unreachable?): skipping the import grouping ${mode}"
  exit 0
fi
mapfile -t files < <(git ls-files -co --exclude-standard '*.go' | while read -r f; do [ -f "$f" ] && echo "$f"; done)
[ ${#files[@]} -eq 0 ] && exit 0
case "$mode" in
  check)
    out=$("${goimports[@]}" -local github.com/ocpv-dr/ocpv-dr -l "${files[@]}")
    if [ -n "$out" ]; then
      echo "goimports needed (make fmt; keep github.com/ocpv-dr/ocpv-dr imports in their own last group):"
      echo "$out"
      exit 1
    fi
    ;;
  fix)
    "${goimports[@]}" -local github.com/ocpv-dr/ocpv-dr -w "${files[@]}"
    ;;
  *)
    echo "usage: $0 check|fix" >&2
    exit 2
    ;;
esac
