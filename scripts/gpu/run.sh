#!/usr/bin/env bash
# lorakit GPU campaign driver. Runs on the GPU machine from the repository root:
#
#   bash scripts/gpu/run.sh OUTDIR STAGE [STAGE ...]
#
# Stages, in the order given:
#   setup        install carried wheels (.whl/*.whl) into $LK_SITE (default /tmp/site), offline;
#                bitsandbytes from .gpuassets/bnb (slim copy) or .whl-bnb/*.whl if carried
#   bnb          only the bitsandbytes part of setup (for a separate first call)
#   env          versions, nvidia-smi, import checks -> OUTDIR/env.json (fails if packages are missing)
#   data         synthetic training images + captions + sample prompts under $LK_BASE/d
#   synth-sdxl   random-weight SDXL checkpoint + tokenizers under $LK_BASE/m/sdxl (skipped if present)
#   synth-sd3m   random-weight SD3.5 medium + clip_l/clip_g/t5xxl under $LK_BASE/m/sd3
#   synth-sd3l   random-weight SD3.5 large (shares the text encoders of synth-sd3m's folder)
#   bg-sd3m / bg-sd3l   the same, in the background (the scheduler waits for it)
#   grid | grid-extra | fixtures | oom | bench | SET+SET...   run job sets (see campaign.py);
#                bench runs one job at a time, the others pack the GPU by expected peak
#   pack         tar the logs into OUTDIR/logs.tar.gz (also done at the end of every call)
#   e2e-setup    install .whl-lk (pydantic, platformdirs, simplejpeg, lycoris-lora) for lorakit itself
#   e2e-checks | e2e-speed   lorakit end to end (scripts/gpu/e2e.py): train/bench as a user runs them
#
# Environment knobs: LK_BASE (/tmp/lk), LK_SITE (/tmp/site), LK_DEADLINE (seconds after which
# no job starts, default 400), LK_HARD (kill time, default 520), LK_BUDGET (GiB, default 128),
# LK_MAXJOBS (6), LK_ONLY (comma list of job names), LK_BENCH_STEPS (14).
# Everything written goes under OUTDIR; OUTDIR/summary.json says what each stage did.

set -u
OUT=${1:?usage: run.sh OUTDIR STAGE...}
shift
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
export LK_BASE=${LK_BASE:-/tmp/lk}
export LK_SITE=${LK_SITE:-/tmp/site}
SD="$REPO/.vendor/sd-scripts"
export LK_SD_SCRIPTS="$SD"
export PYTHONPATH="$LK_SITE:$REPO/src:$SD${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 DIFFUSERS_OFFLINE=1
export HF_HUB_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=false
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
PY=${PYTHON:-python3}
T0=$(date +%s)
STATUS="$OUT/stages.jsonl"

note() { echo "[run.sh $(( $(date +%s) - T0 ))s] $*"; }
record() {  # stage rc seconds [message]
  printf '{"stage": "%s", "rc": %s, "seconds": %s, "msg": "%s"}\n' "$1" "$2" "$3" "${4:-}" >>"$STATUS"
}
summary() {
  $PY - "$OUT" <<'EOF' || true
import json, os, sys, glob
out = sys.argv[1]
st = [json.loads(l) for l in open(os.path.join(out, "stages.jsonl"))] if os.path.exists(os.path.join(out, "stages.jsonl")) else []
rows = [json.loads(l) for l in open(os.path.join(out, "rows.jsonl"))] if os.path.exists(os.path.join(out, "rows.jsonl")) else []
s = {"stages": st, "jobs": [{k: r.get(k) for k in ("name", "status", "peak_gib", "s_per_step", "time_to_first_step_s", "as_expected")} for r in rows]}
try:
    e = json.load(open(os.path.join(out, "env.json")))
    s["env"] = {k: e.get(k) for k in ("gpu", "torch_cuda", "missing", "bitsandbytes_adamw8bit")}
    s["env"]["torch"] = e["packages"].get("torch", {}).get("version")
except Exception:
    pass
json.dump(s, open(os.path.join(out, "summary.json"), "w"), indent=1)
print(json.dumps(s, separators=(",", ":")))
EOF
}
pack() {
  if [ -d "$OUT/logs" ]; then
    tar -C "$OUT" -czf "$OUT/logs.tar.gz" logs && rm -rf "$OUT/logs"
  fi
}
trap 'pack; summary' EXIT

install_bnb() {
  if $PY -c "import bitsandbytes" >/dev/null 2>&1; then note "bitsandbytes already importable"; return 0; fi
  if [ -d .gpuassets/bnb/bitsandbytes ]; then
    mkdir -p "$LK_SITE" && cp -r .gpuassets/bnb/. "$LK_SITE/" && note "bitsandbytes (slim) copied into $LK_SITE"
  elif ls .whl-bnb/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$LK_SITE" .whl-bnb/*.whl \
      && note "bitsandbytes wheel installed into $LK_SITE"
  else
    note "bitsandbytes NOT carried (.gpuassets/bnb or .whl-bnb) and not installed: AdamW8bit jobs will fail"
    return 1
  fi
}

setup() {
  local marker="$LK_SITE/.lorakit-wheels"
  if ls .whl/*.whl >/dev/null 2>&1; then
    local want; want=$(ls .whl/*.whl | xargs -n1 basename | sort | md5sum | cut -c1-12)
    if [ -f "$marker" ] && [ "$(cat "$marker")" = "$want" ]; then
      note "wheels already installed in $LK_SITE"
    else
      $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$LK_SITE" .whl/*.whl \
        || { note "pip install of .whl failed"; return 1; }
      echo "$want" >"$marker"
      note "installed $(ls .whl/*.whl | wc -l) wheels into $LK_SITE"
    fi
  elif [ -f "$marker" ]; then
    note "no .whl carried; using what $LK_SITE already holds"
  else
    note "no .whl carried and $LK_SITE is empty: carry .whl (see scripts/gpu/README.md)"
    return 1
  fi
  install_bnb || true
}

synth() {  # family folder
  local fam=$1 dir=$2
  if [ -f "$dir/synth.json" ] && grep -q "\"$fam\"" "$dir/synth.json"; then note "$fam model present in $dir"; return 0; fi
  $PY -m lorakit.synth.build "$fam" "$dir" --sd-scripts "$SD" --bpe .gpuassets/bpe_simple_vocab_16e6.txt.gz \
    >"$OUT/synth_$fam.log" 2>&1
  local rc=$?
  tail -c 1500 "$OUT/synth_$fam.log"
  return $rc
}

bg_synth() {  # run synth in the background; the scheduler waits while the flag file exists
  local fam=$1 dir=$2 flag="$LK_BASE/building-$1"
  mkdir -p "$LK_BASE"
  touch "$flag"
  ( synth "$fam" "$dir"; echo "bg $fam rc=$?" >>"$OUT/synth_bg.txt"; rm -f "$flag" ) &
  WAIT_FOR="${WAIT_FOR:+$WAIT_FOR,}$flag"
}

WAIT_FOR=""
for stage in "$@"; do
  s0=$(date +%s)
  note "stage $stage"
  rc=0
  case "$stage" in
    setup) setup; rc=$? ;;
    bnb) install_bnb; rc=$? ;;
    env) $PY scripts/gpu/campaign.py env --out "$OUT" --need-bnb; rc=$? ;;
    data) $PY scripts/gpu/campaign.py data >/dev/null; rc=$? ;;
    synth-sdxl) synth sdxl "$LK_BASE/m/sdxl"; rc=$? ;;
    synth-sd3m) synth sd3.5-medium "$LK_BASE/m/sd3"; rc=$? ;;
    synth-sd3l) synth sd3.5-large "$LK_BASE/m/sd3"; rc=$? ;;
    bg-sd3m) bg_synth sd3.5-medium "$LK_BASE/m/sd3" ;;
    bg-sd3l) bg_synth sd3.5-large "$LK_BASE/m/sd3" ;;
    pack) pack ;;
    e2e-setup)  # lorakit's own needs (pydantic, platformdirs, simplejpeg) + lycoris-lora, from .whl-lk
      $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$LK_SITE" .whl-lk/*.whl
      rc=$? ;;
    e2e-checks) $PY scripts/gpu/e2e.py "$OUT" checks; rc=$? ;;
    e2e-speed) $PY scripts/gpu/e2e.py "$OUT" speed; rc=$? ;;
    e2e-combined) $PY scripts/gpu/e2e.py "$OUT" combined; rc=$? ;;
    *)
      sets=${stage//+/,}
      extra=()
      case ",$sets," in *,bench,*) extra+=(--sequential) ;; esac
      elapsed=$(( $(date +%s) - T0 ))
      $PY scripts/gpu/campaign.py run --out "$OUT" --sets "$sets" \
        --deadline $(( ${LK_DEADLINE:-400} - elapsed )) --hard-deadline $(( ${LK_HARD:-520} - elapsed )) \
        --budget-gib "${LK_BUDGET:-128}" --max-jobs "${LK_MAXJOBS:-6}" --only "${LK_ONLY:-}" \
        --wait-for "$WAIT_FOR" "${extra[@]}"
      rc=$? ;;
  esac
  record "$stage" "$rc" $(( $(date +%s) - s0 ))
  if [ "$rc" != 0 ]; then
    case "$stage" in
      setup|env) note "stage $stage failed (rc=$rc): stopping"; exit "$rc" ;;
      *) note "stage $stage failed (rc=$rc): continuing" ;;
    esac
  fi
done
wait
note "all stages done"
