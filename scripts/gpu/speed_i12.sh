#!/usr/bin/env bash
# Issue 12 on the GPU, one device call (≤ 9 min with the installs): `--fastest` under each budget
# vs the comic command, and the H200 ceiling experiments. See speed_i12.py for what runs.
#
# Here first (as for the smoke, scripts/gpu/README.md): .whl/ and .gpuassets/ (prepare.sh), .whl-lk/
# (lorakit's needs + hatchling), .vendor/sd-scripts at 48d368fa. Then one device call,
#   carry [".whl", ".whl-lk", ".gpuassets", ".vendor/sd-scripts"]:
#   bash scripts/gpu/speed_i12.sh $OUT
# → $OUT/speed_i12.json, $OUT/runs/*.json (lorakit bench results), $OUT/logs.tar.gz.
# Then here: python3 scripts/gpu/speed_i12_table.py FETCHED/speed_i12.json --write docs/speed-model.md
set -u
OUT=${1:?usage: speed_i12.sh OUTDIR}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
T0=$(date +%s)
note() { echo "[speed_i12.sh $(( $(date +%s) - T0 ))s] $*"; }
SITE=/tmp/site LKDEPS=/tmp/lkdeps LKINST=/tmp/lkinst12
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 DIFFUSERS_OFFLINE=1
export HF_HUB_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export LK_ROOT="$ROOT"
PY=python3
cd "$ROOT" || exit 2
for d in .whl .whl-lk .gpuassets/bnb .vendor/sd-scripts/library; do
  [ -e "$d" ] || { echo "missing $d: carry it (scripts/gpu/README.md)"; exit 2; }
done

# 1. the trainer's packages and lorakit's needs (skipped when a warm machine has them)
if [ ! -f "$SITE/.lk12" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl || exit 3
  [ -d .gpuassets/bnb/bitsandbytes ] && cp -r .gpuassets/bnb/. "$SITE/"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$LKDEPS" .whl-lk/*.whl || exit 3
  touch "$SITE/.lk12"
fi
note "wheels installed"

# 2. lorakit's wheel from this tree, installed on its own
rm -rf /tmp/lkwheel12 "$LKINST" && mkdir -p /tmp/lkwheel12
PYTHONPATH="$LKDEPS" $PY -m pip wheel -q --no-deps --no-build-isolation --no-index -w /tmp/lkwheel12 . \
  || { note "wheel build failed"; exit 3; }
$PY -m pip install -q --no-index --no-deps --no-compile --target "$LKINST" /tmp/lkwheel12/lorakit-*.whl || exit 3
export PATH="$LKINST/bin:$PATH" PYTHONPATH="$SITE:$LKINST:$LKDEPS"
note "installed $(ls /tmp/lkwheel12)"

# 3. the measurements (their own deadline inside; this is the backstop)
timeout --signal=TERM "${LK12_TIMEOUT:-470}" $PY "$ROOT/scripts/gpu/speed_i12.py" "$OUT"
rc=$?
note "speed_i12.py rc=$rc"
tar -C "$OUT" -czf "$OUT/logs.tar.gz" logs && rm -rf "$OUT/logs"
# runs/*.json are small: one folder, fewer than 8 files come back otherwise → pack them too
tar -C "$OUT" -czf "$OUT/runs.tar.gz" runs && rm -rf "$OUT/runs"
ls -la "$OUT"
exit $rc
