#!/usr/bin/env bash
# The EmoDB studies on the device GPU, in parallel (each is launch-bound, so they share the GPU
# well), under one time limit; rerunning with the returned studies carried resumes them.
#   hr_compact_loso   emohrnet_compact, LOSO, 60 epochs, then its fold 0 exported (bundled-model
#                     candidate: speaker 03 never heard)
#   hr_small_loso     emohrnet_small, LOSO, 60 epochs
#   hr_small_random5  emohrnet_small, random 5-fold (speaker-dependent, the papers' other protocol)
# Prepare: .whl as in run_device.sh, the full EmoDB as FLAC (26 MB instead of 46):
#   python3 -c "import glob, os, soundfile as sf; os.makedirs('.emodb_flac', exist_ok=True);
#     [sf.write('.emodb_flac/' + os.path.basename(p)[:-4] + '.flac', *sf.read(p, dtype='int16'))
#      for p in glob.glob('../shared/data/emodb/*.wav')]"
# run(command="bash tests/gpu/studies_device.sh", carry=[".whl", ".emodb_flac", ".devbuild",
#     ".studies"]) -- .devbuild: the wheel run_device.sh returned; .studies: studies.tar from a
# previous call, to resume (optional). Environment: RUN_SECONDS (default 560), EPOCHS (60),
# CV_ARGS (appended to every cv command, e.g. "--folds 0 --precision fp32" for a CPU dry run).
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/gpu/device_env.sh
budget=${RUN_SECONDS:-560}
epochs=${EPOCHS:-60}
logs=$(mktemp -d)
note device "$(nvidia-smi --query-gpu=name --format=csv,noheader)"
device_install "$logs/build.log" || exit 1

# The corpus where a checkout's README commands expect it, so the recorded commands are the
# ones a user runs.
emodb=../shared/data/emodb
mkdir -p "$emodb"
python3 -c "
import glob, os, soundfile as sf
for p in glob.glob('.emodb_flac/*.flac'):
    data, rate = sf.read(p, dtype='int16')
    sf.write('$emodb/' + os.path.basename(p)[:-5] + '.wav', data, rate, subtype='PCM_16')
"
note emodb "$(ls $emodb/*.wav | wc -l) wavs"
mkdir -p studies
[ -f .studies/studies.tar ] && tar -xf .studies/studies.tar

study() {  # name, cv arguments...
  local name=$1 start=$SECONDS
  shift
  timeout -s INT -k 30 $((budget - SECONDS - 60)) emohrnet-fast cv --corpus emodb --root "$emodb" \
    --epochs "$epochs" --precision bf16 --cache-dir studies/cache --out "studies/$name" "$@" ${CV_ARGS:-} \
    >"$logs/$name.log" 2>&1
  note "$name" "rc=$? in $((SECONDS - start)) s"
}
study hr_compact_loso --model emohrnet_compact --protocol loso &
study hr_small_loso --model emohrnet_small --protocol loso &
study hr_small_random5 --model emohrnet_small --protocol random --k 5 &
wait
for name in hr_compact_loso hr_small_loso hr_small_random5; do
  grep -E "^(mean|pooled|calibration)" "studies/$name/summary.md" 2>/dev/null |
    sed "s/^/$name: /" | tee -a "$summary"
done
if [ -f studies/hr_compact_loso/summary.json ]; then
  emohrnet-fast export studies/hr_compact_loso --fold 0 --out "$OUT/export/emohrnet_compact" \
    --name emodb-emohrnet-compact >"$logs/export.log" 2>&1 &&
    tar -czf "$OUT/export.tar.gz" -C "$OUT/export" . && rm -rf "$OUT/export"
  note export "rc=$? $(tail -1 "$logs/export.log")"
fi
# Back: every fold's predictions and reports (enough to resume), fold 0's compact model.
tar -cf "$OUT/studies.tar" --exclude=train_state.pt --exclude=cache \
  --exclude='hr_small_*/fold-*/run/checkpoints' --exclude='hr_compact_loso/fold-0[1-9]/run/checkpoints' \
  studies
tar -czf "$OUT/logs.tar.gz" -C "$logs" .
ls -la "$OUT"
