#!/usr/bin/env bash
# The CUDA kernels under compute-sanitizer: memcheck, racecheck, initcheck, synccheck.
# Needs a GPU and an installed emohrnet_fast. Usage: bash tests/gpu/sanitize.sh [LOG_DIR]
# Exit status: number of tools that reported errors (0 = clean).
set -uo pipefail
cd "$(dirname "$0")/../.."
log_dir=${1:-${OUT:-/tmp}}
mkdir -p "$log_dir"
failed=0
for tool in memcheck racecheck initcheck synccheck; do
  log="$log_dir/sanitize-$tool.log"
  compute-sanitizer --tool "$tool" --error-exitcode 99 --target-processes all \
    python3 -P tests/gpu/kernel_cases.py >"$log" 2>&1
  rc=$?
  summary=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$log" | tail -1)
  printf '%-10s rc=%-3s %s\n' "$tool" "$rc" "${summary:-(no summary line; see $log)}"
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
done
exit "$failed"
