"""GPU smoke steps of issue 19: `dataset caption` (WD14-style ONNX tagger, BLIP) and a training with
regularization images, through the installed wheel (run by smoke.py with LK_SMOKE_PART=extra, after
its `synth-model sdxl` and `dataset prepare` steps).

Needs on the device, beside the usual carry: onnxruntime in `.whl-lk/` (the CPU wheel, 12.7 MiB for
cp312: `onnxruntime==1.20.1`, which runs with numpy alone; see scripts/gpu/README.md). onnxruntime-gpu
(~255 MiB) does not fit the carry limit, so the tagger uses CUDA only if the image already has it;
the row records which provider ran. BLIP uses the image's torch and the carried transformers 4.54.1
(sd-scripts' pin): nothing more to carry. The synthetic WD14 model is the committed fixture
tests/fixtures/wd14-synth (the device has no `onnx` to build it).

Order: the reg training starts first in the background (its ~60-90 s of model loading and latent
caching is most of the time), the captioning steps run meanwhile, the last step waits for it.
Expected device time: ~2 min, the training's startup being most of it.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import smoke as S

WD14 = S.TREE / "tests" / "fixtures" / "wd14-synth"
REG_RAW = S.WORK / "reg-raw"
REG_DATA = S.WORK / "raw-reg-prepared"
RUNS = S.WORK / "runs-reg"
BENCH = S.WORK / "capbench"
_train: dict[str, Any] = {}


def _json(p: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        data = json.loads(p.stdout)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _photos(folder: Path, n: int, size: int, seed: int) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rng = np.random.default_rng(seed + i)
        small = Image.fromarray(rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8), "RGB")
        small.resize((size, size), Image.Resampling.BICUBIC).save(folder / f"img{i:04d}.png", compress_level=1)


def step_reg_start() -> None:
    """prepare --reg (8 class images against the 10 training images), plan, then train in the background."""
    _photos(REG_RAW, 8, 512, 1000)
    p = S.lk("prepare_reg", "dataset", "prepare", str(S.WORK / "raw"), "--trigger", "lkcomic", "--class", "style",
             "--repeats", "1", "--reg", str(REG_RAW), "-o", str(REG_DATA), "--json")  # fmt: skip
    reg = _json(p).get("regularization") or {}
    d = S.lk("plan_reg", "train", "--preset", "comic-style", "--data", str(REG_DATA), *S.sdxl_sets(),
             "--set", "training.max_steps=4", "--dry-run", "--json")  # fmt: skip
    plan = _json(d)
    steps = plan.get("steps") or {}
    _train["plan"] = steps
    _train["reg"] = reg
    ok = (
        p.returncode == 0
        and reg.get("images") == 8
        and d.returncode == 0
        and "is_reg = true" in plan.get("dataset_toml", "")
    )
    S.row("prepare --reg + plan", ok and S.no_traceback(p), rc=p.returncode, reg=reg,
          steps_per_epoch=steps.get("steps_per_epoch"), reg_samples=steps.get("reg_samples"))  # fmt: skip
    argv = ["lorakit", "train", "--preset", "comic-style", "--data", str(REG_DATA), *S.sdxl_sets(),
            "--set", "training.max_steps=4", "--set", f"output.folder={RUNS}", "--quiet"]  # fmt: skip
    log = open(S.LOGS / "train_reg.log", "w", encoding="utf-8")  # noqa: SIM115
    log.write(f"$ {shlex.join(argv)}\n")
    log.flush()
    _train["log"] = log
    _train["t0"] = time.time()
    _train["proc"] = subprocess.Popen(
        argv, stdout=log, stderr=subprocess.STDOUT, env=S.user_env("home-reg"), cwd=S.WORK
    )


def step_caption_wd14() -> None:
    """The 10 prepared comic images (a --out copy), then 256 images of 1024² for images/s."""
    if importlib.util.find_spec("onnxruntime") is None:
        S.row("caption wd14", False, error="onnxruntime not importable: add onnxruntime==1.20.1 to .whl-lk")
        return
    import onnxruntime as ort

    providers = ort.get_available_providers()
    device = "cuda" if "CUDAExecutionProvider" in providers else "cpu"
    before = {f: f.read_bytes() for f in S.DATA.rglob("*") if f.is_file()}
    p = S.lk("caption_wd14", "dataset", "caption", str(S.DATA), "--out", str(S.WORK / "cap-wd14"), "--model", str(WD14),
             "--overwrite", "--device", device, "--json")  # fmt: skip
    data = _json(p)
    untouched = {f: f.read_bytes() for f in S.DATA.rglob("*") if f.is_file()} == before
    caps = sorted((S.WORK / "cap-wd14").glob("*/*.txt"))
    first_ok = all(c.read_text(encoding="utf-8").startswith("lkcomic, style, ") for c in caps)
    S.row("caption wd14", p.returncode == 0 and data.get("written") == 10 and untouched and first_ok
          and S.no_traceback(p), rc=p.returncode, provider=data.get("provider"), available=providers,
          images_per_s=data.get("images_per_second"), source_untouched=untouched)  # fmt: skip
    _photos(BENCH / "raw", 256, 1024, 2000)
    for name, dev in [("cpu", "cpu")] + ([("cuda", "cuda")] if device == "cuda" else []):
        b = S.lk(f"caption_wd14_bench_{name}", "dataset", "caption", str(BENCH / "raw"), "--out",
                 str(BENCH / f"out-{name}"), "--model", str(WD14), "-t", "bench", "--batch-size", "32",
                 "--device", dev, "--json")  # fmt: skip
        bd = _json(b)
        S.row(f"caption wd14 256×1024² ({name})", b.returncode == 0 and bd.get("written") == 256, rc=b.returncode,
              provider=bd.get("provider"), images_per_s=bd.get("images_per_second"), seconds=bd.get("seconds"))  # fmt: skip


def step_caption_blip() -> None:
    """A tiny random BLIP (built here with the image's torch and the carried transformers) on the GPU."""
    model = S.WORK / "blip-tiny"
    t = time.time()
    b = subprocess.run([sys.executable, "-m", "lorakit.synth.blip", str(model)], capture_output=True, text=True,
                       env=S.user_env(), cwd=S.WORK, timeout=180)  # fmt: skip
    (S.LOGS / "synth_blip.log").write_text(b.stdout + "\n--- stderr ---\n" + b.stderr, encoding="utf-8")
    if b.returncode != 0:
        S.row("caption blip", False, error="synth blip failed", rc=b.returncode, tail=b.stderr[-400:])
        return
    p = S.lk("caption_blip", "dataset", "caption", str(S.DATA), "--out", str(S.WORK / "cap-blip"), "--tagger", "blip",
             "--model", str(model), "--overwrite", "--json")  # fmt: skip
    data = _json(p)
    caps = sorted((S.WORK / "cap-blip").glob("*/*.txt"))
    first_ok = bool(caps) and all(c.read_text(encoding="utf-8").startswith("lkcomic, style, ") for c in caps)
    S.row("caption blip", p.returncode == 0 and data.get("written") == 10 and first_ok and S.no_traceback(p),
          rc=p.returncode, provider=data.get("provider"), images_per_s=data.get("images_per_second"),
          seconds=round(time.time() - t, 1))  # fmt: skip


def step_reg_wait() -> None:
    """The reg training: done, and sd-scripts counted what lorakit planned (batches per epoch, reg images)."""
    proc = _train.get("proc")
    if proc is None:
        S.row("train with regularization", False, error="not started")
        return
    try:
        rc = proc.wait(timeout=max(30.0, 330 - (time.time() - _train["t0"])))
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    _train["log"].close()
    run = S.one_run(RUNS)
    S.copy_run_logs(run, "train_reg")
    log = (run / "train.log").read_text(encoding="utf-8", errors="replace") if run else ""
    fin = [e for e in S.events(run) if e.get("type") == "finished"] if run else []

    def grab(pattern: str) -> int | None:
        import re

        m = re.search(pattern, log)
        return int(m.group(1)) if m else None

    batches = grab(r"num batches per epoch / [^:]*: (\d+)")
    reg_logged = grab(r"(\d+) reg images with repeats")
    plan, reg = _train.get("plan") or {}, _train.get("reg") or {}
    want_reg = (reg.get("images") or 0) * (reg.get("repeats") or 0)
    ok = rc == 0 and bool(fin) and fin[-1].get("status") == "done"
    S.row("train with regularization", ok and batches == plan.get("steps_per_epoch") and reg_logged == want_reg,
          rc=rc, seconds=round(time.time() - _train["t0"], 1), sd_batches_per_epoch=batches,
          planned_steps_per_epoch=plan.get("steps_per_epoch"), sd_reg_images_with_repeats=reg_logged,
          planned_reg_images_x_repeats=want_reg)  # fmt: skip


STEPS = [
    ("prepare --reg + train start", step_reg_start),
    ("caption wd14", step_caption_wd14),
    ("caption blip", step_caption_blip),
    ("train with regularization", step_reg_wait),
]
