"""Captioning throughput of `lorakit dataset caption` (images/s), as a user runs it.

    python scripts/bench_caption.py [--images 200] [--size 1024] [--format png] [--model DIR] [-- EXTRA ARGS]

Writes N photo-like images (seeded) into a temporary folder, then runs the installed CLI
`lorakit dataset caption RAW --out COPY --model MODEL --json` (default model: the synthetic WD14
tagger in tests/fixtures/wd14-synth) and prints the report's images/s (decode + preprocessing +
inference of the captioned images; the --out copy is not counted). With the synthetic model the
network costs nothing, so the figure is the pipeline's ceiling; a real ViT tagger adds its own time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "wd14-synth"


def photo(seed: int, size: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8), "RGB")
    base = np.asarray(small.resize((size, size), Image.Resampling.BICUBIC)).astype(np.int16)
    grain = rng.integers(-10, 11, size=(size, size, 1), dtype=np.int16)
    return Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8), "RGB")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--format", choices=("png", "jpg"), default="png")
    ap.add_argument("--model", default=str(FIXTURE))
    ap.add_argument("--lorakit", default="lorakit", help="the CLI to run (default: lorakit on PATH)")
    ap.add_argument("extra", nargs="*", help="more `dataset caption` options, e.g. --batch-size 16 --device cuda")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw"
        raw.mkdir()
        for i in range(a.images):
            photo(i, a.size).save(raw / f"img{i:04d}.{a.format}", **({"quality": 95} if a.format == "jpg" else {}))
        argv = [a.lorakit, "dataset", "caption", str(raw), "--out", str(Path(tmp) / "out"), "--model", a.model,
                "--trigger", "bench", "--json", *a.extra]  # fmt: skip
        t = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return proc.returncode
        data = json.loads(proc.stdout)
    print(json.dumps({
        "images": a.images, "size": a.size, "format": a.format, "provider": data["provider"],
        "batch_size": data["batch_size"], "images_per_second": data["images_per_second"],
        "command_seconds": round(wall, 2), "extra": a.extra,
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
