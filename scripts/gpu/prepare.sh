#!/usr/bin/env bash
# Run once on a machine with PyPI access, from anywhere: fills the git-ignored folders that
# travel to the GPU machine with `carry`:
#   .whl/       wheels of scripts/gpu/wheels.txt (~19 MB)
#   .whl-bnb/   bitsandbytes 0.50.2 wheel (43 MB, for the two-call way)
#   .gpuassets/ bpe_simple_vocab_16e6.txt.gz (from open_clip_torch) and bnb/ (slim bitsandbytes:
#               python files + CUDA 13.x and CPU libraries only, ~9 MB)
# and lists them in .git/info/exclude.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
cd "$REPO"
PLAT="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
 --platform manylinux2014_x86_64 --platform manylinux1_x86_64"
mkdir -p .whl .whl-bnb .whl-lk .gpuassets .git/info
for p in /.whl/ /.whl-bnb/ /.whl-lk/ /.whl-x/ /.gpuassets/ /.comfyui/ /.smoke/; do grep -qxF "$p" .git/info/exclude 2>/dev/null || echo "$p" >>.git/info/exclude; done
python3 -m pip download -q $PLAT -d .whl -r scripts/gpu/wheels.txt
python3 -m pip download -q $PLAT -d .whl-bnb bitsandbytes==0.50.2
python3 -m pip download -q $PLAT -d .whl-lk -r scripts/gpu/wheels-lk.txt  # lorakit's own (+ serve extra)
# the smoke's extra part only (carried in that call alone: the 64 MiB limit): dataset caption's runtime
python3 -m pip download -q $PLAT -d .whl-x onnxruntime==1.20.1
tmp=$(mktemp -d)
python3 -m pip download -q $PLAT -d "$tmp" open_clip_torch==3.3.0
python3 - "$tmp" <<'PY'
import glob, sys, zipfile, os, shutil
tmp = sys.argv[1]
oc = glob.glob(os.path.join(tmp, "open_clip_torch-*.whl"))[0]
with zipfile.ZipFile(oc) as z:
    open(".gpuassets/bpe_simple_vocab_16e6.txt.gz", "wb").write(z.read("open_clip/bpe_simple_vocab_16e6.txt.gz"))
bnb = glob.glob(".whl-bnb/bitsandbytes-*.whl")[0]
shutil.rmtree(".gpuassets/bnb", ignore_errors=True)
keep_libs = ("libbitsandbytes_cpu.so", "libbitsandbytes_cuda130.so", "libbitsandbytes_cuda132.so")
with zipfile.ZipFile(bnb) as z:
    for n in z.namelist():
        base = os.path.basename(n)
        if base.startswith("libbitsandbytes_") and base not in keep_libs:
            continue
        z.extract(n, ".gpuassets/bnb")
print("slim bitsandbytes:", sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(".gpuassets/bnb") for f in fs) // 2**20, "MiB")
PY
rm -rf "$tmp"
du -sh .whl .whl-bnb .gpuassets
