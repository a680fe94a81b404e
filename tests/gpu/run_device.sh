#!/usr/bin/env bash
# One full GPU check on the device machine: build, the GPU tests, the CUDA sanitizers, an ncu
# profile of the fused front-end and the GPU benchmarks, each stage under a time limit so the
# whole run fits one 10-minute device command. Writes to $OUT (at most 8 files come back):
#   summary.txt  one line per stage, the sanitizer summaries and the ncu figures
#   bench-cuda.md  the benchmark table for BENCHMARKS.md
#   logs.tar.gz  build, test, benchmark, sanitizer and ncu logs
#   emohrnet_fast-*.whl  the wheel built here: carry it (as .devbuild/) to skip the build later
#
# Prepare on the development machine (the folders are git-ignored; name them in `carry`):
#   python3 -m pip download --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl soundfile soxr safetensors tqdm matplotlib
#   rm -f .whl/numpy-*.whl   # keep the device's own numpy (the one its torch was built with)
#   mkdir -p .emodb && cp $(ls ../shared/data/emodb/*.wav | head -40) .emodb/
# then call the device tool: run(command="bash tests/gpu/run_device.sh", carry=[".whl", ".emodb"])
#
# Environment: BENCH_K (pytest -k filter for the benchmarks, default: every CUDA benchmark),
# RUN_SECONDS (the whole run's budget, default 570).
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/gpu/device_env.sh
budget=${RUN_SECONDS:-570}
left() { echo $((budget - SECONDS)); }
logs=$(mktemp -d)

note device "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
note date "$(date -u +%Y-%m-%dT%H:%MZ)"
device_install "$logs/build.log" || exit 1

start=$SECONDS
timeout -s INT -k 20 $(($(left) * 40 / 100)) python3 -P -m pytest tests -m cuda -q -rs -p no:cacheprovider \
  >"$logs/tests.log" 2>&1
note tests-cuda "rc=$? in $((SECONDS - start)) s: $(tail -1 "$logs/tests.log")"
grep -E "^(FAILED|ERROR)" "$logs/tests.log" | head -20
start=$SECONDS
timeout 120 python3 -P -m pytest tests/test_emohrnet.py -k timm -q -p no:cacheprovider \
  >"$logs/tests-timm.log" 2>&1
note tests-timm "rc=$? in $((SECONDS - start)) s: $(tail -1 "$logs/tests-timm.log")"

start=$SECONDS
timeout 150 bash tests/gpu/sanitize.sh "$logs" | tee -a "$summary"
note sanitizers "rc=${PIPESTATUS[0]} in $((SECONDS - start)) s"

timeout 60 ncu --kernel-name regex:log_mel_kernel --launch-skip 1 --launch-count 1 \
  --section SpeedOfLight --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
  --section Occupancy python3 -P tests/gpu/kernel_cases.py --profile >"$logs/ncu.txt" 2>&1
note ncu "rc=$?"
grep -E "Memory Throughput|Compute \(SM\) Throughput|Duration|Achieved Occupancy" "$logs/ncu.txt" |
  tee -a "$summary"

start=$SECONDS
timeout -s INT -k 20 $(($(left) - 30)) python3 -P -m pytest benchmarks -m cuda -k "${BENCH_K:-}" -q \
  -p no:cacheprovider --bench-table "$OUT/bench-cuda.md" >"$logs/bench.log" 2>&1
note benchmarks "rc=$? in $((SECONDS - start)) s: $(tail -1 "$logs/bench.log")"
grep -E "^(FAILED|ERROR)" "$logs/bench.log" | head -20
tar -czf "$OUT/logs.tar.gz" -C "$logs" .
