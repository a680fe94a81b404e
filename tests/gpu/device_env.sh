# Sourced by the device scripts: $OUT, the summary, carried wheels and data, and the install.
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
summary="$OUT/summary.txt"
touch "$summary"
note() { printf '%-22s %s\n' "$1" "$2" | tee -a "$summary"; }

if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
[ -d .emodb ] && export EMOHRNET_EMODB="$PWD/.emodb"

# device_install LOG: install the wheel carried in .devbuild/ (built by an earlier run), else
# build one for sm_90 (copied to $OUT so the next run can carry it) and install it.
device_install() {
  local start=$SECONDS wheel
  wheel=$(ls .devbuild/emohrnet_fast-*.whl 2>/dev/null | head -1)
  if [ -z "$wheel" ]; then
    # --no-deps / --no-build-isolation: the device has no network (its torch, pybind11 and
    # scikit-build-core are used); runtime dependencies come from .whl above.
    if ! python3 -m pip wheel --no-build-isolation --no-deps -v -w "$OUT" \
      -Ccmake.define.CMAKE_CUDA_ARCHITECTURES=90 . >"$1" 2>&1; then
      note build "FAILED"
      tail -40 "$1"
      return 1
    fi
    wheel=$(ls "$OUT"/emohrnet_fast-*.whl | head -1)
  fi
  python3 -m pip install -q --no-deps --no-index --force-reinstall "$wheel" >>"$1" 2>&1 || {
    note install "FAILED"
    tail -20 "$1"
    return 1
  }
  note build "$(basename "$wheel") ready in $((SECONDS - start)) s"
  # -P: do not put the source tree first on sys.path (it has no compiled _C).
  python3 -P -c "import emohrnet_fast, json; print(json.dumps(emohrnet_fast.info()))" |
    tee -a "$summary"
}
