#!/usr/bin/env bash
# Runs the fault suite and writes FAULTS.md: one row per fault with the
# events acknowledged before it, found after recovery, and lost.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
FAULTS_OUT=$rows go test -count=1 -timeout 20m ./test/faults/ >&2
{
  echo "# Fault suite"
  echo
  echo "Written by \`make faults\` on $(date -u +%Y-%m-%d) from \`test/faults\` (the real receiver binary)."
  echo "Target: 0 lost everywhere. \"Lost\" counts acknowledged events missing after recovery that no"
  echo "message reported; damage that destroys records on disk must be reported, and the note says how."
  echo
  echo "| fault | events acknowledged | events found after recovery | lost | note |"
  echo "|---|---:|---:|---:|---|"
  jq -r '"| \(.fault) | \(.acknowledged) | \(.found) | \(.lost) | \(.note // "" | gsub("\\|"; "\\\\|")) |"' "$rows"
} > "$ROOT/FAULTS.md"
echo "wrote $ROOT/FAULTS.md" >&2
