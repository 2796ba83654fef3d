"""GPU smoke steps of issue 18: a real ComfyUI beside lorakit on the H200.

Needs, carried with the smoke's own folders: ``.comfyui`` (built here by
scripts/gpu/prepare_comfyui.sh: ComfyUI's source, the wheels it needs beyond the GPU image and
the trainer's .whl, stand-ins for av/scipy/torchvision used only when missing, an API-only web
root). Runs after smoke.py's ``synth-model sdxl`` and ``dataset prepare`` steps (S.SDXL_DIR, S.DATA).

  comfyui start   unpack, install its wheels to /tmp/lkcomfy/site, start `main.py --highvram` on
                  127.0.0.1:8199 (not 8188: the other smoke trainings free the default URL) with
                  the synthetic SDXL model linked into models/checkpoints; record /system_stats on
                  CUDA with scripts/record_comfyui.py (OUT/comfyui/)
  comfyui load    one prompt with the synthetic SDXL model (no LoRA): ComfyUI's process then holds
                  the model on the GPU (NVML per process)
  train frees     `lorakit train` comic-style 4 steps with comfyui.url = that ComfyUI and
                  output.lora_folders = its models/loras: the log says what was freed and on which
                  GPU; ComfyUI's process memory (NVML) after the run is back to its CUDA context;
                  the LoRA copy is readable by another user (mode o+r, and `nobody` reads it)
  try grid        `lorakit try RUN` at strengths 0/0.5/1, 4 steps: the grid and 3 images from
                  ComfyUI; its /history answers are saved as fixtures (OUT/comfyui/)
  comfyui stop    the ComfyUI process group ends

Expected on an H200: ~20 s start (overlaps the steps before it when run in the background), ~15 s
load, ~70 s train, ~15 s try: ~2 min of device time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import smoke as S

BASE = Path("/tmp/lkcomfy")
SRC, SITE, STUBS = BASE / "src", BASE / "site", BASE / "stubs"
CARRIED = S.ROOT / ".comfyui"
PORT = 8199
URL = f"http://127.0.0.1:{PORT}"
FIX = S.OUT / "comfyui"
RUNS = S.WORK / "runs-comfyui"
STATE: dict[str, Any] = {}


def _get(path: str, timeout: float = 5) -> Any:
    with urllib.request.urlopen(URL + path, timeout=timeout) as resp:
        return json.loads(resp.read())


def _post(path: str, data: dict[str, Any]) -> Any:
    req = urllib.request.Request(URL + path, data=json.dumps(data).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = resp.read()
    return json.loads(body) if body.strip() else None


def _comfy_env() -> dict[str, str]:
    env = dict(os.environ)
    trainer_site = "/tmp/site"  # smoke.sh's SITE: the trainer's pins (transformers 4.54.1, tokenizers, einops)
    env["PYTHONPATH"] = ":".join(p for p in (str(SITE), trainer_site, str(STUBS)) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _comfy_gib() -> float | None:
    """GPU memory of ComfyUI's process tree (NVML per process)."""
    pid = STATE.get("pid")
    return None if pid is None else round(sum(S.tree_gpu(pid).values()) / 2**30, 2)


def step_start() -> None:
    t = time.time()
    if not (CARRIED / "comfyui-src.tar.gz").is_file():
        S.row("comfyui start", False, skipped="no .comfyui/ carried (scripts/gpu/prepare_comfyui.sh)")
        return
    shutil.rmtree(BASE, ignore_errors=True)
    SRC.mkdir(parents=True)
    FIX.mkdir(parents=True, exist_ok=True)
    with tarfile.open(CARRIED / "comfyui-src.tar.gz") as tf:
        tf.extractall(SRC, filter="data")
    wheels = sorted(str(p) for p in (CARRIED / "wheels").glob("*.whl"))
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
         "--target", str(SITE), *wheels], capture_output=True, text=True,
    )  # fmt: skip
    # a stand-in only for what this machine lacks
    env = _comfy_env()
    env["PYTHONPATH"] = f"{SITE}:/tmp/site"
    STUBS.mkdir(parents=True)
    stubbed = []
    for mod in ("av", "scipy", "torchvision"):
        probe = subprocess.run([sys.executable, "-c", f"import {mod}"], env=env, capture_output=True)
        if probe.returncode != 0:
            shutil.copytree(CARRIED / "stubs" / mod, STUBS / mod)
            stubbed.append(mod)
    ckpts = SRC / "models" / "checkpoints"
    ckpts.mkdir(parents=True, exist_ok=True)
    synth = S.SDXL_DIR / "sdxl_synth.safetensors"
    if synth.is_file():
        (ckpts / synth.name).symlink_to(synth)
    (SRC / "models" / "loras").mkdir(parents=True, exist_ok=True)
    log = open(S.LOGS / "comfyui.log", "w", encoding="utf-8")  # noqa: SIM115
    argv = [sys.executable, "main.py", "--listen", "127.0.0.1", "--port", str(PORT), "--highvram",
            "--disable-api-nodes", "--front-end-root", str(CARRIED / "web")]  # fmt: skip
    proc = subprocess.Popen(
        argv, cwd=SRC, env=_comfy_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    STATE.update(pid=proc.pid, proc=proc)
    ready = _wait_ready(120)
    stats: dict[str, Any] = {}
    if ready:
        rec = subprocess.run(
            [sys.executable, str(S.TREE / "scripts" / "record_comfyui.py"), URL, str(FIX), "--comfyui-dir", str(SRC),
             "--tag", "cuda", "--stats-only"], capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        (S.LOGS / "comfyui_record.log").write_text(rec.stdout + rec.stderr, encoding="utf-8")
        stats = (_get("/system_stats").get("devices") or [{}])[0]
    S.row("comfyui start", ready and pip.returncode == 0 and stats.get("type") == "cuda" and synth.is_file(),
          seconds=round(time.time() - t, 1), pip_rc=pip.returncode, stubs=stubbed, device=stats.get("name"),
          index=stats.get("index"), synth_model=synth.is_file(), pip_err=pip.stderr[-300:])  # fmt: skip


def _wait_ready(timeout: float) -> bool:
    proc: subprocess.Popen[bytes] = STATE["proc"]
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        try:
            _get("/system_stats", 2)
            return True
        except OSError:
            time.sleep(0.5)
    return False


def _wait_history(prompt_id: str, timeout: float) -> dict[str, Any]:
    end = time.time() + timeout
    while time.time() < end:
        entry = _get(f"/history/{prompt_id}").get(prompt_id)
        if entry:
            return dict(entry)
        time.sleep(0.3)
    return {}


def step_load() -> None:
    if "pid" not in STATE:
        S.row("comfyui load", False, skipped="ComfyUI not started")
        return
    t = time.time()
    graph = {
        "10": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sdxl_synth.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "lkcomic, style", "clip": ["10", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["10", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "6": {"class_type": "KSampler", "inputs": {"model": ["10", 0], "seed": 1, "steps": 2, "cfg": 6.0,
              "sampler_name": "euler", "scheduler": "normal", "positive": ["2", 0], "negative": ["3", 0],
              "latent_image": ["5", 0], "denoise": 1.0}},
        "7": {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": ["10", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "lorakit/smoke-load"}},
    }  # fmt: skip
    answer = _post("/prompt", {"prompt": graph, "client_id": "lorakit-smoke"})
    entry = _wait_history(answer["prompt_id"], 120)
    status = (entry.get("status") or {}).get("status_str")
    held = _comfy_gib()
    STATE["loaded_gib"] = held
    stats = (_get("/system_stats").get("devices") or [{}])[0]
    (FIX / "system_stats_cuda_loaded.json").write_text(json.dumps(_get("/system_stats"), indent=1), encoding="utf-8")
    S.row("comfyui load", status == "success" and (held or 0) > 2.0, seconds=round(time.time() - t, 1),
          status=status, comfyui_gpu_gib=held, torch_vram_gib=round(stats.get("torch_vram_total", 0) / 2**30, 2))  # fmt: skip


def _readable_by_nobody(path: Path) -> bool | None:
    if os.geteuid() != 0:
        return None
    try:
        p = subprocess.run(["head", "-c", "8", str(path)], user="nobody", capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.returncode == 0


def step_train() -> None:
    if "loaded_gib" not in STATE:
        S.row("train frees comfyui", False, skipped="no model loaded in ComfyUI")
        return
    loras = SRC / "models" / "loras"
    before = _comfy_gib()
    p = S.lk("train_comfyui", "train", "--preset", "comic-style", "--data", str(S.DATA), *S.sdxl_sets(),
             "--set", "training.max_steps=4", "--set", f"output.folder={RUNS}", "--set", "output.name=comic-i18",
             "--set", f"comfyui.url={URL}", "--set", f"output.lora_folders=[{loras}]", timeout=400)  # fmt: skip
    after = _comfy_gib()
    freed = next((ln for ln in (p.stdout + p.stderr).splitlines() if "ComfyUI at" in ln), "")
    lora = loras / "comic-i18.safetensors"
    mode = stat.S_IMODE(lora.stat().st_mode) if lora.is_file() else None
    other = _readable_by_nobody(lora) if lora.is_file() else None
    run = S.one_run(RUNS)
    STATE["run"] = run
    S.copy_run_logs(run, "train_comfyui")
    back = before is not None and after is not None and after < 1.5 and before - after > 1.0
    S.row("train frees comfyui", p.returncode == 0 and back and "unloaded its models" in freed
          and mode is not None and bool(mode & 0o004) and other is not False,
          rc=p.returncode, comfyui_gpu_gib_before=before, comfyui_gpu_gib_after=after, message=freed[:400],
          lora_mode=None if mode is None else oct(mode), nobody_reads=other)  # fmt: skip


def step_try() -> None:
    run = STATE.get("run")
    if run is None:
        S.row("try grid", False, skipped="no run")
        return
    t = time.time()
    p = S.lk("try_comfyui", "try", str(run), "--url", URL, "--steps", "4", "--json", timeout=300)
    try:
        out = json.loads(p.stdout)
    except ValueError:
        out = {}
    grid = Path(out.get("grid", "/nonexistent"))
    if grid.is_file():
        shutil.copy2(grid, S.OUT / "comfyui-try-grid.png")
    for i, pid in enumerate(out.get("prompt_ids", [])[:3]):
        with urllib.request.urlopen(f"{URL}/history/{pid}", timeout=10) as resp:
            (FIX / f"history_sdxl_try_{i}.json").write_bytes(resp.read())
    report = (run / "report.html").read_text(encoding="utf-8") if (run / "report.html").is_file() else ""
    S.row("try grid", p.returncode == 0 and grid.is_file() and len(out.get("images", [])) == 3
          and "comfyui-try.png" in report and S.no_traceback(p),
          rc=p.returncode, seconds=round(time.time() - t, 1), images=len(out.get("images", [])),
          names=out.get("comfyui_names"), comfyui_gpu_gib_after_try=_comfy_gib())  # fmt: skip


def step_stop() -> None:
    proc: subprocess.Popen[bytes] | None = STATE.get("proc")
    if proc is None:
        return
    with_ctx = proc.poll() is None
    if with_ctx:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    S.row("comfyui stop", with_ctx, rc=proc.returncode)


STEPS: list[tuple[str, Callable[[], None]]] = [
    ("comfyui start", step_start),
    ("comfyui load", step_load),
    ("train frees comfyui", step_train),
    ("try grid", step_try),
    ("comfyui stop", step_stop),
]
