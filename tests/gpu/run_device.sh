#!/usr/bin/env bash
# One full GPU run on the device machine: build, every test (GPU ones included), every GPU
# benchmark, the CUDA sanitizers and an ncu profile of the fused kernel. Logs and a summary go
# to $OUT (at most 8 files come back from the device).
#
# Prepare on the development machine (both folders are git-ignored; name them in `carry`):
#   python3 -m pip download --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl soundfile soxr safetensors tqdm matplotlib
#   rm -f .whl/numpy-*.whl   # keep the device's own numpy (the one its torch was built with)
#   mkdir -p .emodb && cp $(ls ../shared/data/emodb/*.wav | head -40) .emodb/
# then call the device tool: run(command="bash tests/gpu/run_device.sh", carry=[".whl", ".emodb"])
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
summary="$OUT/summary.txt"
: >"$summary"
note() { printf '%-22s %s\n' "$1" "$2" | tee -a "$summary"; }

if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
[ -d .emodb ] && export EMOHRNET_EMODB="$PWD/.emodb"

note device "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
note date "$(date -u +%Y-%m-%dT%H:%MZ)"

start=$SECONDS
# --no-deps: the device has no network; the runtime dependencies come from .whl above.
if python3 -m pip install --no-build-isolation --no-deps -v . >"$OUT/build.log" 2>&1; then
  note build "ok in $((SECONDS - start)) s"
else
  note build "FAILED (build.log)"
  tail -40 "$OUT/build.log"
  exit 1
fi
# -P: do not put the source tree first on sys.path (it has no compiled _C).
python3 -P -c "import emohrnet_fast, json; print(json.dumps(emohrnet_fast.info()))" | tee -a "$summary"

start=$SECONDS
python3 -P -m pytest tests -q -rs -p no:cacheprovider >"$OUT/tests.log" 2>&1
note tests "rc=$? in $((SECONDS - start)) s: $(tail -1 "$OUT/tests.log")"
grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | head -20

start=$SECONDS
python3 -P -m pytest benchmarks -m cuda -q -p no:cacheprovider --bench-table "$OUT/bench-cuda.md" \
  >"$OUT/bench.log" 2>&1
note benchmarks "rc=$? in $((SECONDS - start)) s (bench-cuda.md)"
cat "$OUT/bench-cuda.md" 2>/dev/null

start=$SECONDS
bash tests/gpu/sanitize.sh "$OUT/sanitize" | tee "$OUT/sanitize.txt"
note sanitizers "rc=${PIPESTATUS[0]} in $((SECONDS - start)) s"
cat "$OUT"/sanitize/*.log >"$OUT/sanitize.log" 2>/dev/null
rm -rf "$OUT/sanitize"

ncu --kernel-name regex:log_mel_kernel --launch-skip 1 --launch-count 1 \
  --section SpeedOfLight --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
  --section Occupancy python3 -P tests/gpu/kernel_cases.py --profile >"$OUT/ncu.txt" 2>&1
note ncu "rc=$? (ncu.txt)"
grep -E "Memory Throughput|Compute \(SM\) Throughput|Duration|Achieved Occupancy" "$OUT/ncu.txt"
