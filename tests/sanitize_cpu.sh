#!/usr/bin/env bash
# The CPU kernels under AddressSanitizer + UndefinedBehaviorSanitizer: builds a sanitized copy
# of the package into a separate folder (the normal install is untouched) and runs the kernel
# tests against it, and the CUDA back-ends' code on the CPU emulation (tests/cuda_emulation/),
# also built sanitized. Any report aborts the run. Needs scikit-build-core, pybind11 and the
# test dependencies in the active environment. Usage: bash tests/sanitize_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
target=${EMOHRNET_ASAN_DIR:-/tmp/emohrnet-asan}
rm -rf "$target"
pip install -q --no-build-isolation --no-deps --target "$target" . \
  -Cbuild-dir=build/asan \
  -Ccmake.define.EMOHRNET_CUDA=OFF \
  -Ccmake.define.EMOHRNET_SANITIZE=address,undefined
asan=$(g++ -print-file-name=libasan.so)
ubsan=$(g++ -print-file-name=libubsan.so)
# Python's own allocations are never freed at exit: leak reports would be noise.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONPATH="$target${PYTHONPATH:+:$PYTHONPATH}"
# An editable install's import hook would shadow PYTHONPATH: make sure the sanitized build runs.
LD_PRELOAD="$asan:$ubsan" python -P -c "import emohrnet_fast._C as c, sys
if '$target' not in c.__file__:
    sys.exit(f'sanitize_cpu.sh: imported {c.__file__}, not the sanitized build in $target '
             '(an editable install shadows it; use a non-editable install)')"
EMOHRNET_EMU_SANITIZE=1 LD_PRELOAD="$asan:$ubsan" python -P -m pytest -q -p no:cacheprovider \
  -m "not slow" tests/test_log_mel.py tests/test_log_mel_bad_input.py tests/test_spec_augment.py \
  tests/test_hr_fuse.py tests/test_bad_input.py tests/test_fuzz.py tests/test_cuda_emulation.py
