#!/usr/bin/env bash
# Build .comfyui/ (git-excluded): what the GPU smoke step scripts/gpu/smoke_i18.py needs to start a
# real ComfyUI on the offline H200 beside lorakit. Run here (PyPI reachable), from the repository root:
#
#   bash scripts/gpu/prepare_comfyui.sh GIT_DIR      # GIT_DIR: a clone or bare mirror of Comfy-Org/ComfyUI
#
# What it writes (sizes measured 2026-12-02 in the README of scripts/gpu/ and the issue-18 report):
#   .comfyui/comfyui-src.tar.gz  ComfyUI at COMMIT (git archive; without tests/), unpacked on the GPU machine
#   .comfyui/wheels/             ComfyUI's needs that neither the GPU image (torch, numpy, safetensors, pillow,
#                                sentencepiece, pyyaml, rich) nor the trainer's .whl/ (transformers, tokenizers,
#                                einops, huggingface-hub) has: torchsde, aiohttp and its deps, psutil, tqdm,
#                                requests (Python 3.12 manylinux wheels, installed with --no-deps --target)
#   .comfyui/stubs/{av,scipy,torchvision}/  stand-ins used only for a package the GPU machine lacks: ComfyUI
#                                imports them at start (video types, two samplers, two model families), the
#                                SDXL/SD3.5 graph lorakit renders never calls them; PyAV (~35 MB) and scipy
#                                (~35 MB) would not fit the 64 MiB a device call carries
#   .comfyui/web/index.html      a one-line page for --front-end-root: the frontend package (comfyui-frontend-
#                                package, ~10 MB) is not needed by an API client
# Not carried (ComfyUI starts without them, logged): alembic/SQLAlchemy (its asset database), the workflow
# templates and embedded docs, kornia and spandrel (three optional nodes), pydantic-settings, torchaudio.
set -eu
GIT_DIR=${1:?usage: prepare_comfyui.sh GIT_DIR (a clone or mirror of Comfy-Org/ComfyUI)}
COMMIT=${COMFYUI_COMMIT:-a125cd84b054a57729b5eecab930ca9408719832}  # 0.3.64, the commit of the fixtures
REPO=$(git rev-parse --show-toplevel) && cd "$REPO"
OUT=.comfyui
rm -rf "$OUT" && mkdir -p "$OUT/wheels" "$OUT/web" "$OUT/stubs"

# 1. the source (blobs missing from a partial mirror are skipped, e.g. an unused tokenizer.json)
tmp=$(mktemp -d)
git --git-dir="$GIT_DIR" ls-tree -r "$COMMIT" | while read -r _mode _type sha path; do
  case "$path" in tests/*|tests-unit/*|.github/*) continue ;; esac
  mkdir -p "$tmp/src/$(dirname "$path")"
  git --git-dir="$GIT_DIR" cat-file blob "$sha" >"$tmp/src/$path" 2>/dev/null || { rm -f "$tmp/src/$path"; echo "skipped (not in the mirror): $path"; }
done
echo "$COMMIT" >"$tmp/src/.lorakit-commit"
tar -C "$tmp/src" -czf "$OUT/comfyui-src.tar.gz" .
rm -rf "$tmp"

# 2. wheels: torchsde without its deps (torch, numpy, scipy: the image's / stubbed), the rest resolved
#    by pip so that aiohttp's pins (multidict, yarl, ...) hold
PLAT=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$OUT/wheels")
python3 -m pip download -q --no-deps "${PLAT[@]}" torchsde==0.2.6 trampoline==0.1.2
python3 -m pip download -q "${PLAT[@]}" "aiohttp>=3.11.8" "yarl>=1.18.0" psutil tqdm requests

# 3. stubs
for mod in av av/container av/subtitles av/subtitles/stream scipy scipy/stats scipy/integrate scipy/ndimage \
           torchvision torchvision/transforms torchvision/models; do
  top=${mod%%/*}
  case "$mod" in av|av/subtitles|scipy|torchvision) f="$OUT/stubs/$mod/__init__.py" ;; *) f="$OUT/stubs/$mod.py" ;; esac
  mkdir -p "$(dirname "$f")"
  cat >"$f" <<PY
"""Stand-in for $top, which this machine lacks (lorakit's GPU smoke, scripts/gpu/prepare_comfyui.sh):
ComfyUI imports it at start; the nodes lorakit's graphs use never call it. Any use raises."""

__version__ = "0.0.0+lorakit-stub"


class _Missing:
    def __init__(self, *args: object, **kwargs: object) -> None:
        raise ImportError("$top is not installed here: the ComfyUI nodes that need it are unavailable")


def __getattr__(name: str) -> type:
    return type(name, (_Missing,), {})
PY
done
echo '<!doctype html><title>ComfyUI (API only)</title>' >"$OUT/web/index.html"

grep -qxF /.comfyui/ .git/info/exclude 2>/dev/null || echo /.comfyui/ >>"$(git rev-parse --git-common-dir)/info/exclude"
du -sh "$OUT" "$OUT"/* && du -sb "$OUT" | awk '{printf "%.1f MiB in all\n", $1/1048576}'
