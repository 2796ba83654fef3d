"""Issue 14 on the GPU: Flux.1 [dev] LoRA through the family registry, from the installed wheel.

Extra part (`LK_SMOKE_PART=extra LK_SMOKE_ORDER=i14,...`), one device call:
1. `lorakit synth-model flux-dev` at full size (19 double + 38 single blocks, 23.8 GB bf16 + AE,
   CLIP-L, T5-XXL), started in the background when this file is imported, beside the SDXL build.
2. `lorakit vram-check --preset flux-dev` and `flux-dev-16gb` (estimates).
3. `lorakit train --preset flux-dev` a few steps as a user types it: LoRA written, peak (NVML of the
   run's process tree) vs estimate, and the LoRA loaded by sd-scripts' own networks.lora_flux loader
   (every module of the file created; 304 at the preset's defaults).
4. Calibration benches (`lorakit bench`, speed_i12.py's scheduler: runs load side by side, one
   trains at a time), the preset with one change each (step 3 is the preset itself): batch 2/4, GC off, bf16 base, blocks_to_swap 16/28, 512 px → OUT/flux_i14.json.

Base part: `step_small` trains flux-dev 3 steps on a reduced-depth model (2 double + 4 single
blocks; sd-scripts reads the depth from the file) and loads the LoRA: the Flux path at the submitted
src tree without the 34 GB of the full set (the base smoke also builds SD 3.5 large).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import e2e  # type: ignore[import-not-found]
import smoke as S  # type: ignore[import-not-found]

FULL = S.MODELS / "flux"
SMALL = S.MODELS / "flux-small"
_bg: dict[str, subprocess.Popen[str]] = {}
_t0: dict[str, float] = {}


def flux_sets(folder: Any) -> list[str]:
    out: list[str] = []
    for key, name in (
        ("checkpoint", "flux1-dev_synth.safetensors"),
        ("clip_l", "clip_l.safetensors"),
        ("t5xxl", "t5xxl_fp16.safetensors"),
        ("ae", "ae_synth.safetensors"),
    ):
        out += ["--set", f"model.{key}={folder / name}"]
    return [*out, "--set", f"model.tokenizer_cache_dir={folder / 'tokenizers'}"]


def _start_synth(tag: str, folder: Any, *extra: str) -> None:
    if tag in _bg:
        return
    S.LOGS.mkdir(parents=True, exist_ok=True)
    S.WORK.mkdir(parents=True, exist_ok=True)
    log = open(S.LOGS / f"synth_{tag}.log", "w", encoding="utf-8")  # noqa: SIM115
    argv = ["lorakit", "synth-model", "flux-dev", str(folder), "--bpe", str(S.BPE), *extra]
    log.write(f"$ {shlex.join(argv)}\n")
    log.flush()
    _t0[tag] = time.time()
    _bg[tag] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True, env=S.user_env(), cwd=S.WORK)


def _wait_synth(tag: str, step: str, timeout: float) -> bool:
    """Wait for a background build; on failure the step's row says why."""
    p = _bg.get(tag)
    why: dict[str, Any] = {}
    if p is None:
        why = {"driver_error": "the build was not started"}
    else:
        try:
            p.wait(timeout=timeout)
            if p.returncode != 0:
                why = {"rc": p.returncode, "log": f"logs/synth_{tag}.log"}
        except subprocess.TimeoutExpired:
            why = {"skipped": f"synth-model flux-dev not done in {timeout:.0f}s"}
    if why:
        S.row(step, False, **why)
    return not why


def start_small() -> None:
    """Base part: build the reduced-depth set in the background from the smoke's start."""
    _start_synth("small", SMALL, "--blocks", "2,4")


if S.PART == "extra" and "i14" in os.environ.get("LK_SMOKE_ORDER", ""):
    _start_synth("full", FULL)


def _vram(tag: str, preset: str, folder: Any, *extra: str) -> dict[str, Any]:
    p = S.lk(f"i14-vram-{tag}", "vram-check", "--preset", preset, "--data", str(S.DATA), *flux_sets(folder),
             *extra, "--json", timeout=120)  # fmt: skip
    try:
        data: dict[str, Any] = json.loads(p.stdout)
    except ValueError:
        data = {"error": (p.stderr.strip().splitlines() or [f"rc={p.returncode}"])[-1][:300]}
    data["rc"] = p.returncode
    return data


def step_synth_full() -> None:
    if not _wait_synth("full", "i14 synth-model flux-dev (full size)", 400):
        return
    files = {f.name: f.stat().st_size for f in FULL.glob("*.safetensors")} if FULL.is_dir() else {}
    S.row("i14 synth-model flux-dev (full size)", len(files) >= 4,
          rc=_bg["full"].returncode, seconds=round(time.time() - _t0["full"], 1), bytes=files)  # fmt: skip


def step_vram() -> None:
    got = {}
    for preset in ("flux-dev", "flux-dev-16gb"):
        data = _vram(preset, preset, FULL)
        est = S._peak_estimate(data)
        S.ESTIMATES[preset] = est
        got[preset] = {"rc": data["rc"], "estimate_gib": est, "error": data.get("error")}
    S.row("i14 vram-check flux-dev / flux-dev-16gb", all(v["rc"] == 0 and v["estimate_gib"] for v in got.values()),
          **got)  # fmt: skip


def _train_and_load(
    step: str, folder: Any, runs: Any, steps: int, timeout: float, expect_modules: int | None, *, wait: bool = True
) -> None:
    """Train (S.short_train: peak vs estimate), then load the LoRA with sd-scripts' lora_flux loader
    (on the CPU; with ``wait=False`` in the background while the next step uses the GPU)."""
    S.short_train(step, "flux-dev", flux_sets(folder), runs, steps, timeout, home="home-c")
    r = S.ROWS[-1]
    lora = r.get("lora")
    if not (r["pass"] and lora):
        return

    def load() -> None:
        v = e2e.verify_lora("flux-dev", "networks.lora_flux", folder / "flux1-dev_synth.safetensors",
                            S.Path(lora), S.LOGS / f"loader_{step.replace(' ', '_')}.log")  # fmt: skip
        ok = bool(v.get("ok")) and (expect_modules is None or v.get("file_modules") == expect_modules)
        figures = {k: val for k, val in v.items() if k != "ok"}
        S.row(f"{step}: the LoRA loads with networks.lora_flux", ok, expect_modules=expect_modules, **figures)

    if wait:
        load()
    else:
        _loads.append(threading.Thread(target=load, daemon=True))
        _loads[-1].start()


_loads: list[threading.Thread] = []


def step_train_full() -> None:
    _train_and_load("i14 train flux-dev", FULL, S.WORK / "runs-flux", 6, 400, 304, wait=False)


def step_loaded() -> None:
    for t in _loads:
        t.join(timeout=240)
    if not _loads:
        S.row("i14 LoRA loads with networks.lora_flux", False, skipped="no LoRA from the train step")


CAL: list[tuple[str, list[str]]] = [  # in priority order: a run not started by the deadline is skipped
    ("flux_b4", ["training.batch_size=4"]),
    ("flux_no_gc", ["training.gradient_checkpointing=false"]),
    ("flux_bf16_base", ["training.fp8_base=false"]),
    ("flux_swap16", ["training.blocks_to_swap=16"]),
    ("flux_512", ["training.resolution=512"]),
    ("flux_swap28", ["training.blocks_to_swap=28"]),
    ("flux_b2", ["training.batch_size=2"]),
]


def step_calibrate() -> None:
    """Benches of the flux-dev preset with one change each (speed_i12.py's scheduler)."""
    import speed_i12 as K  # type: ignore[import-not-found]

    K.BASE.mkdir(parents=True, exist_ok=True)
    (K.BASE / "runs").mkdir(exist_ok=True)
    K.PRESET = "flux-dev"
    K.DATA = S.DATA
    K.PROCS = int(os.environ.get("LK14_PROCS", "2"))
    K.DEADLINE = float(os.environ.get("LK14_DEADLINE", str(max(60.0, S.DEADLINE - (time.time() - S.T0) - 60))))
    K.HARD = K.DEADLINE + 90
    K.T0 = time.time()
    K.model_sets = lambda: flux_sets(FULL)
    K.RESULT["family"] = "flux-dev"
    runs = []
    for tag, overrides in CAL:
        est = _vram(f"cal-{tag}", "flux-dev", FULL, *K.as_sets(overrides))
        runs.append(K.Run(tag, "flux", overrides, 10, S._peak_estimate(est), est.get("images_per_s")))
        runs[-1].shape = (est.get("estimate") or {}).get("config")
    K.schedule(runs)
    K.RESULT["seconds"] = round(time.time() - K.T0, 1)
    (S.OUT / "flux_i14.json").write_text(json.dumps(K.RESULT, indent=1, default=str), encoding="utf-8")
    done = [r for r in K.RESULT["runs"] if r.get("rc") == 0]
    S.row("i14 calibration benches", len(done) >= len(CAL) // 2, ran=len(K.RESULT["runs"]), ok=len(done),
          runs={r["tag"]: {"peak_gib": r.get("peak_gib"), "estimate_gib": r.get("estimate_gib"),
                           "s_per_step": (r.get("bench") or {}).get("median_s_per_step"), "rc": r.get("rc")}
                for r in K.RESULT["runs"]})  # fmt: skip


def step_small() -> None:
    """Base part: the Flux path on a reduced-depth model (a few GB), train + lora_flux loader."""
    start_small()
    if not _wait_synth("small", "train flux-dev (2+4 blocks)", 300):
        return
    # 2 double × 10 + 4 single × 3 modules (sd-scripts creates LoRA modules for the blocks the file has)
    _train_and_load("train flux-dev (2+4 blocks)", SMALL, S.WORK / "runs-flux-small", 3, 300, 2 * 10 + 4 * 3)


def step_gui_import() -> None:
    """Base part: the kohya_ss GUI's own Flux preset, imported with `lorakit import`, trains 2 steps
    on the reduced-depth model (sd-scripts accepts what the import passes: issues 14 and 15)."""
    out = S.WORK / "i14-flux-gui.yaml"
    fixture = S.TREE / "tests" / "fixtures" / "kohya_gui" / "flux1D - adamw8bit fp8.json"
    imp = S.lk("i14-import-flux-gui", "import", str(fixture), "-o", str(out), "--force")
    if imp.returncode != 0 or not out.exists():
        S.row("train an imported GUI Flux preset (2+4 blocks)", False, rc=imp.returncode,
              traceback=not S.no_traceback(imp))  # fmt: skip
        return
    sets = [*flux_sets(SMALL), "--set", "training.batch_size=1", "--set", "training.attention=sdpa",
            "--set", "~training.epochs"]  # fmt: skip
    S.short_train("train an imported GUI Flux preset (2+4 blocks)", str(out), sets, S.WORK / "runs-flux-gui", 2, 240,
                  home="home-c")  # fmt: skip


STEPS: list[tuple[str, Callable[[], None]]] = [
    ("i14 synth-model flux-dev (full size)", step_synth_full),
    ("i14 vram-check flux-dev", step_vram),
    ("i14 train flux-dev", step_train_full),
    ("i14 calibration benches", step_calibrate),
    ("i14 LoRA loads with networks.lora_flux", step_loaded),
]
