#!/usr/bin/env bash
# The GPU smoke: lorakit from its built wheel, every user command as a user types it, on the GPU.
#
# Here (a machine with PyPI access), from the repository root, at the commit to test:
#   bash scripts/gpu/smoke.sh prepare
#     → .smoke/tree: `git archive HEAD` (the exact committed tree, whatever else the working
#       copy holds), .smoke/ids (commit, HEAD:src tree hash, date); checks that .whl, .whl-lk,
#       .gpuassets and .vendor/sd-scripts are there (scripts/gpu/prepare.sh, README).
# Then one device call (carry [".whl", ".whl-lk", ".gpuassets", ".vendor/sd-scripts", ".smoke"]):
#   bash .smoke/tree/scripts/gpu/smoke.sh run $OUT
#     → installs the trainer's wheels, builds lorakit's wheel from .smoke/tree and installs it
#       (nothing of the repository on PYTHONPATH), runs scripts/gpu/smoke.py, and writes
#       $OUT/smoke-<date>.json (commit, src tree hash, GPU, sd-scripts commit, each step) and
#       $OUT/logs.tar.gz.
# Then here: cp <fetched>/smoke-<date>.json scripts/gpu/results/ && python3 scripts/gpu/smoke_table.py
set -u
MODE=${1:?usage: smoke.sh prepare | run OUTDIR}

if [ "$MODE" = prepare ]; then
  REPO=$(git rev-parse --show-toplevel) && cd "$REPO" || exit 2
  for d in .whl .whl-lk .gpuassets/bnb .vendor/sd-scripts/library; do
    [ -e "$d" ] || { echo "missing $d: run scripts/gpu/prepare.sh / see scripts/gpu/README.md"; exit 2; }
  done
  grep -qxF /.smoke/ .git/info/exclude 2>/dev/null || echo /.smoke/ >>.git/info/exclude
  rm -rf .smoke && mkdir -p .smoke/tree
  # what the device needs of the tree: the package to build (src, pyproject, README), the examples
  # and the smoke scripts; tests/ and docs/ stay here (the 64 MiB a device call carries is shared)
  git archive HEAD -- src pyproject.toml README.md examples configs scripts .gitignore \
    tests/fixtures/wd14-synth tests/fixtures/kohya_gui | tar -x -C .smoke/tree  # + the smoke steps' fixtures
  printf '{"commit": "%s", "src_tree": "%s", "prepared": "%s", "dirty_src": %s}\n' \
    "$(git rev-parse HEAD)" "$(git rev-parse HEAD:src)" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    "$(git diff --quiet HEAD -- src && echo false || echo true)" >.smoke/ids
  cat .smoke/ids
  du -sh .smoke
  exit 0
fi

[ "$MODE" = run ] || { echo "usage: smoke.sh prepare | run OUTDIR"; exit 2; }
OUT=${2:?usage: smoke.sh run OUTDIR}
TREE=$(cd "$(dirname "$0")/../.." && pwd)          # .smoke/tree
ROOT=$(cd "$TREE/../.." && pwd)                     # the device copy's repository root
[ -f "$ROOT/.smoke/ids" ] || { echo "no .smoke/ids: run 'smoke.sh prepare' here first and carry .smoke"; exit 2; }
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
T0=$(date +%s)
note() { echo "[smoke.sh $(( $(date +%s) - T0 ))s] $*"; }
export LK_BASE=${LK_BASE:-/tmp/lks} LK_ROOT="$ROOT" LK_TREE="$TREE"
SITE=/tmp/site LKDEPS=/tmp/lkdeps LKINST=/tmp/lkinst
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 DIFFUSERS_OFFLINE=1
export HF_HUB_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
PY=python3
cd "$ROOT" || exit 2

# 1. the trainer's packages (sd-scripts' pins) and lorakit's own needs the GPU image lacks
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl || exit 3
[ -d .gpuassets/bnb/bitsandbytes ] && cp -r .gpuassets/bnb/. "$SITE/"
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$LKDEPS" .whl-lk/*.whl || exit 3
# the extra part's own wheels (onnxruntime for dataset caption), carried only in that call
if [ -d .whl-x ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$LKDEPS" .whl-x/*.whl || exit 3
fi
note "wheels installed"

# 2. lorakit's wheel, built from the tree under test, installed on its own (no repository path)
rm -rf /tmp/lkwheel "$LKINST" && mkdir -p /tmp/lkwheel
(cd "$TREE" && PYTHONPATH="$LKDEPS" $PY -m pip wheel -q --no-deps --no-build-isolation --no-index -w /tmp/lkwheel .) \
  || { note "wheel build failed"; exit 3; }
$PY -m pip install -q --no-index --no-deps --no-compile --target "$LKINST" /tmp/lkwheel/lorakit-*.whl || exit 3
note "installed $(ls /tmp/lkwheel)"
export PATH="$LKINST/bin:$PATH"
# lorakit and the trainer share one PYTHONPATH here: the trainer's pins first, then lorakit
export PYTHONPATH="$SITE:$LKINST:$LKDEPS"
$PY -c "import lorakit, sys; p = lorakit.__file__; sys.exit(0 if p.startswith('$LKINST') else 'lorakit imported from ' + p)" || exit 3

# 3. the tree hash of what was installed, recomputed here (git only; no .git travels)
SRC_HERE=""
if command -v git >/dev/null; then
  tmp=$(mktemp -d) && cp -r "$TREE/src" "$TREE/.gitignore" "$tmp/" \
    && SRC_HERE=$(cd "$tmp" && git init -q && git add -A . && git -c user.name=s -c user.email=s@s commit -qm s \
      && git rev-parse HEAD:src) ; rm -rf "$tmp"
fi

# 4. the steps, from a clean slate: a warm machine keeps /tmp between calls, and a run folder or
#    model left by the previous call would be taken for this call's (seen on 2026-12-02)
rm -rf "$LK_BASE"
timeout --signal=TERM "${LK_SMOKE_TIMEOUT:-580}" $PY "$TREE/scripts/gpu/smoke.py" "$OUT"
rc=$?
note "smoke.py rc=$rc"

# 5. the result file
DATE=$(date -u +%Y-%m-%d)
$PY - "$OUT" "$ROOT/.smoke/ids" "$SRC_HERE" "$DATE" "$rc" <<'EOF'
import json, subprocess, sys, os
out, ids_file, src_here, date, rc = sys.argv[1:6]
ids = json.load(open(ids_file))
steps = json.load(open(os.path.join(out, "smoke.json")))["steps"]
def sh(*a):
    try:
        return subprocess.run(a, capture_output=True, text=True, timeout=30).stdout.strip()
    except Exception as exc:
        return f"({exc})"
sd_commit = "48d368fa"  # the pinned commit the .vendor tree was archived at (scripts/gpu/README.md)
res = {
    "commit": ids["commit"], "src_tree": ids["src_tree"], "src_tree_on_device": src_here or None,
    "src_tree_matches": (src_here == ids["src_tree"]) if src_here else None,
    "date": date, "gpu": sh("nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"),
    "sd_scripts": sd_commit, "torch": sh("python3", "-c", "import torch; print(torch.__version__)"),
    "lorakit_wheel": sorted(os.listdir("/tmp/lkwheel")),
    "passed": all(s["pass"] for s in steps) and bool(steps), "steps": steps,
}
part = os.environ.get("LK_SMOKE_PART", "base")
res["part"] = part
res["skipped_steps"] = [x for x in os.environ.get("LK_SMOKE_SKIP", "").split(",") if x]
path = os.path.join(out, f"smoke-{date}.json" if part == "base" else f"smoke-{date}-{part}.json")
json.dump(res, open(path, "w"), indent=1)
print(json.dumps({k: res[k] for k in ("commit", "src_tree", "src_tree_matches", "gpu", "passed")}))
for s in steps:
    print(("PASS " if s["pass"] else "FAIL ") + s["step"])
EOF
tar -C "$OUT" -czf "$OUT/logs.tar.gz" logs && rm -rf "$OUT/logs"
# recorded answers (smoke_i18.py): one archive, the device returns a limited number of files
[ -d "$OUT/comfyui" ] && tar -C "$OUT" -czf "$OUT/comfyui.tar.gz" comfyui && rm -rf "$OUT/comfyui"
[ -d "$OUT/runs" ] && tar -C "$OUT" -czf "$OUT/runs.tar.gz" runs && rm -rf "$OUT/runs"  # bench results (smoke_i14)
exit $rc
