#!/usr/bin/env bash
# The CUDA kernels under compute-sanitizer: memcheck, racecheck, initcheck and synccheck, the
# four at once (each is its own slow process; the GPU has room), each under a time limit.
# Needs a GPU and an installed emohrnet_fast. Usage: bash tests/gpu/sanitize.sh [LOG_DIR]
# Environment: SANITIZE_SECONDS (per tool, default 200), KERNEL_CASES (default "quick": the
# shorter case list of tests/gpu/kernel_cases.py; "full" for all of it).
# Exit status: number of tools that reported errors or did not finish (0 = clean).
set -uo pipefail
cd "$(dirname "$0")/../.."
log_dir=${1:-${OUT:-/tmp}}
mkdir -p "$log_dir"
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
if [ -z "$sanitizer" ]; then
  echo "compute-sanitizer not found (PATH, /usr/local/cuda*/bin)"
  exit 4
fi
export KERNEL_CASES=${KERNEL_CASES:-quick}
tools=(memcheck racecheck initcheck synccheck)
for tool in "${tools[@]}"; do
  # API errors are not ours to report: torch probes the runtime with calls that may fail, and
  # a failed launch of our kernels raises in Python, which fails the run anyway.
  timeout "${SANITIZE_SECONDS:-200}" "$sanitizer" --tool "$tool" --report-api-errors no --target-processes all \
    python3 -P tests/gpu/kernel_cases.py >"$log_dir/sanitize-$tool.log" 2>&1 &
done
wait
failed=0
for tool in "${tools[@]}"; do
  log="$log_dir/sanitize-$tool.log"
  summary=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$log" | tail -1)
  mismatches=$(grep -E "^[0-9]+ mismatches" "$log" | tail -1)
  # Clean: a zero summary and the cases' own last line saying every result matched. No line
  # at all: killed at the time limit or crashed.
  if ! grep -qE "(ERROR|RACECHECK) SUMMARY: 0 " <<<"$summary" || [ "$mismatches" != "0 mismatches" ]; then
    failed=$((failed + 1))
  fi
  printf '%-10s %s | %s\n' "$tool" "${summary:-(no summary line)}" "${mismatches:-(cases did not finish)}"
done
exit "$failed"
