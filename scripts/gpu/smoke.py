"""The GPU smoke: every user command, as a user types it, on the lent GPU, from lorakit's wheel.

Run by scripts/gpu/smoke.sh on the GPU machine (see scripts/gpu/README.md); it expects `lorakit`
on PATH (installed from the wheel built from the tree under test), the sd-scripts source and the
trainer's packages. It writes OUT/smoke.json: one row per step with pass/fail and its figures,
plus OUT/logs/*.log (packed by smoke.sh).

Steps (in this order; a step past LK_SMOKE_DEADLINE seconds is recorded as not run):
  doctor · synth-model sdxl (sd3.5-large in the background) · dataset prepare · vram-check
  comic-style / sd35-large (real NVML) · vram-check --fastest --apply, then train --config it
  --dry-run · train comic-style 40 steps (checkpoint + state every 10), SIGINT after step 20
  (exit 130) · resume → exactly 40 steps, checkpoints 10/20/30/40 each written once (hash taken
  when each file appears, compared at the end), report · the LoRA through sd-scripts' own
  network loader · kill -9 of `lorakit train`: no trainer survives, the GPU's memory comes back,
  the run is called lost · bench comic-style · train style-locon, flux-dev (a 2+4-block synthetic
  Flux, smoke_i14.py; its LoRA through networks.lora_flux) and sd35-large a few steps (peak vs
  estimate).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

OUT = Path(sys.argv[1]).resolve()
LOGS = OUT / "logs"
ROOT = Path(os.environ["LK_ROOT"])  # the device copy's repository root (.vendor, .gpuassets)
TREE = Path(os.environ.get("LK_TREE", ROOT))  # the tree under test (its examples/)
SD = ROOT / ".vendor" / "sd-scripts"
BASE = Path(os.environ.get("LK_BASE", "/tmp/lks"))
WORK = BASE / "w"
MODELS = BASE / "m"
T0 = time.time()
DEADLINE = float(os.environ.get("LK_SMOKE_DEADLINE", "540"))
ROWS: list[dict[str, Any]] = []
# LK_SMOKE_PART: "base" (the steps above) or "extra" (synth sdxl + prepare, then the STEPS of every
# scripts/gpu/smoke_i*.py: one file per issue, each `import smoke as S` and using S.lk / S.row)
PART = os.environ.get("LK_SMOKE_PART", "base")
# LK_SMOKE_SKIP="train style-locon,train sd35-large,bench comic-style": base-part steps left out of a
# short call
# (smoke.sh records the list in the result file)
SKIP = set(filter(None, os.environ.get("LK_SMOKE_SKIP", "").split(",")))
if __name__ == "__main__":  # the step files' `import smoke` must get this module, not a second copy
    sys.modules.setdefault("smoke", sys.modules[__name__])

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("LK_SD_SCRIPTS", str(SD))


def note(msg: str) -> None:
    print(f"[smoke {time.time() - T0:5.0f}s] {msg}", flush=True)


def user_env(home: str = "home") -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        LORAKIT_SD_SCRIPTS=str(SD),
        LORAKIT_PYTHON=sys.executable,
        LORAKIT_HOME=str(BASE / home),
        PYTHONUNBUFFERED="1",
        COLUMNS="160",
    )
    return env


def lk(name: str, *args: str, timeout: float = 300, check_ok: bool = False) -> subprocess.CompletedProcess[str]:
    """`lorakit ARGS` as a user types it (shell-quoted in the log), output to logs/NAME.log."""
    argv = ["lorakit", *args]
    t = time.time()
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=user_env(), cwd=WORK, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        proc = subprocess.CompletedProcess(argv, 124, str(exc.stdout or ""), str(exc.stderr or "") + "\nTIMEOUT")
    (LOGS / f"{name}.log").write_text(
        f"$ {shlex.join(argv)}\n# rc={proc.returncode} {time.time() - t:.1f}s\n{proc.stdout}\n--- stderr ---\n{proc.stderr}",
        encoding="utf-8",
    )
    return proc


def no_traceback(proc: subprocess.CompletedProcess[str]) -> bool:
    return "Traceback (most recent call last)" not in proc.stdout + proc.stderr


def row(step: str, ok: bool, **figures: Any) -> dict[str, Any]:
    r = {"step": step, "pass": bool(ok), "t_s": round(time.time() - T0, 1), **figures}
    ROWS.append(r)
    note(f"{'PASS' if ok else 'FAIL'} {step} {json.dumps(figures, default=str)[:300]}")
    save()
    return r


_SAVE = threading.Lock()


def save() -> None:
    with _SAVE:
        (OUT / "smoke.json").write_text(json.dumps({"steps": ROWS}, indent=1, default=str), encoding="utf-8")


def guarded(step: str, fn: Callable[[], None]) -> None:
    if time.time() - T0 > DEADLINE:
        row(step, False, not_run=f"past the {DEADLINE:.0f}s deadline")
        return
    try:
        fn()
    except Exception as exc:  # the driver's own failure: recorded, the next step still runs
        row(step, False, driver_error=f"{type(exc).__name__}: {exc}")


# -- GPU readings (NVML directly: the driver must not trust lorakit's own reader) -------------
def nvml_state() -> dict[str, Any]:
    import pynvml

    pynvml.nvmlInit()
    try:
        h = pynvml.nvmlDeviceGetHandleByIndex(0)
        mem = pynvml.nvmlDeviceGetMemoryInfo(h)
        procs = [int(p.pid) for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)]
        return {"used_gib": round(mem.used / 2**30, 2), "pids": procs}
    finally:
        pynvml.nvmlShutdown()


def tree_gpu(root: int) -> dict[int, int]:
    """{pid: GPU bytes} of the GPU processes in ``root``'s process tree (NVML per process)."""
    import measure

    nv = measure.Nvml(0)
    procs = nv.processes()
    pids = measure.tree_pids(root, measure._ppid_map())
    return {p: v for p, v in procs.items() if p in pids}


def gpu_pids() -> dict[int, int]:
    import measure

    return measure.Nvml(0).processes()


def copy_run_logs(run: Path | None, tag: str) -> None:
    """The run's train.log / events.jsonl / state.json into the smoke's logs (they are small)."""
    if run is None:
        return
    for name in ("train.log", "events.jsonl", "state.json", "command.txt"):
        f = run / name
        if f.is_file():
            shutil.copy2(f, LOGS / f"{tag}.{name}")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


# -- models and data -------------------------------------------------------------------------
SDXL_DIR, SD3_DIR = MODELS / "sdxl", MODELS / "sd3"
BPE = ROOT / ".gpuassets" / "bpe_simple_vocab_16e6.txt.gz"
_bg: dict[str, subprocess.Popen[str]] = {}


def sdxl_sets() -> list[str]:
    return [
        "--set", f"model.checkpoint={SDXL_DIR / 'sdxl_synth.safetensors'}",
        "--set", f"model.tokenizer_cache_dir={SDXL_DIR / 'tokenizers'}",
    ]  # fmt: skip


def sd3_sets() -> list[str]:
    out: list[str] = []
    for key, name in (
        ("checkpoint", "sd3.5_large_synth.safetensors"),
        ("clip_l", "clip_l.safetensors"),
        ("clip_g", "clip_g.safetensors"),
        ("t5xxl", "t5xxl_fp16.safetensors"),
        ("tokenizer_cache_dir", "tokenizers"),
    ):
        out += ["--set", f"model.{key}={SD3_DIR / name}"]
    return out


def step_synth() -> None:
    # SD3.5 large (and its encoders) in the background: it is needed last
    if PART == "base" and "train sd35-large" not in SKIP:
        _synth_sd35_background()
    t = time.time()
    p = lk("synth_sdxl", "synth-model", "sdxl", str(SDXL_DIR), "--bpe", str(BPE), timeout=240)
    ok = p.returncode == 0 and (SDXL_DIR / "sdxl_synth.safetensors").is_file()
    row("synth-model sdxl", ok and no_traceback(p), rc=p.returncode, seconds=round(time.time() - t, 1))


def _synth_sd35_background() -> None:
    log = open(LOGS / "synth_sd35_large.log", "w", encoding="utf-8")  # noqa: SIM115
    argv = ["lorakit", "synth-model", "sd3.5-large", str(SD3_DIR), "--bpe", str(BPE)]
    log.write(f"$ {shlex.join(argv)}\n")
    log.flush()
    _bg["sd3l"] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True, env=user_env(), cwd=WORK)


def step_doctor() -> None:
    p = lk("doctor", "doctor", "--json", timeout=120)
    gpu = ""
    try:
        data = json.loads(p.stdout)
        gpu = json.dumps([c.get("detail") for c in data.get("checks", []) if "gpu" in str(c.get("name", "")).lower()])[
            :200
        ]
    except ValueError:
        pass
    row("doctor", p.returncode == 0 and no_traceback(p), rc=p.returncode, gpus=gpu)


DATA = WORK / "raw-prepared"


def step_prepare() -> None:
    raw = WORK / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    # ten images: one epoch of 10 steps at batch 1, so 40 steps are 4 epochs and the resume at
    # step 20 crosses an epoch skip (the path where sd-scripts' own counter falls behind)
    src = sorted((TREE / "examples" / "comic-sample").glob("*.png"))[:10]
    for f in src:
        shutil.copy2(f, raw / f.name)
        cap = f.with_suffix(".txt")
        if cap.is_file():
            shutil.copy2(cap, raw / cap.name)
    before = {f.name: f.read_bytes() for f in raw.iterdir()}
    p = lk("prepare", "dataset", "prepare", str(raw), "--trigger", "lkcomic", "--class", "style", "--repeats", "1")
    untouched = {f.name: f.read_bytes() for f in raw.iterdir()} == before
    images = len([f for f in DATA.rglob("*.png")]) if DATA.is_dir() else 0
    row("dataset prepare", p.returncode == 0 and untouched and images == 10 and no_traceback(p),
        rc=p.returncode, images=images, source_untouched=untouched)  # fmt: skip


def vram_json(name: str, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    p = lk(name, "vram-check", *args, "--json", timeout=120)
    try:
        return p, json.loads(p.stdout)
    except ValueError:
        return p, {}


def _peak_estimate(data: dict[str, Any]) -> float | None:
    for key in ("peak_gib", "estimate_gib", "total_gib"):
        v = data.get(key)
        if isinstance(v, int | float):
            return float(v)
    est = data.get("estimate")
    if isinstance(est, dict):
        for key in ("peak_gib", "total_gib"):
            if isinstance(est.get(key), int | float):
                return float(est[key])
    return None


ESTIMATES: dict[str, float | None] = {}


def step_vram() -> None:
    p, data = vram_json("vram_comic", "--preset", "comic-style", "--data", str(DATA), *sdxl_sets())
    ESTIMATES["comic-style"] = _peak_estimate(data)
    gpu = json.dumps(data.get("gpu") or data.get("budget") or "")[:160]
    row("vram-check comic-style", p.returncode == 0 and bool(data) and no_traceback(p),
        rc=p.returncode, estimate_gib=ESTIMATES["comic-style"], gpu=gpu)  # fmt: skip
    p, data = vram_json("vram_sd35l", "--preset", "sd35-large", "--data", str(DATA), *sd3_sets())
    ESTIMATES["sd35-large"] = _peak_estimate(data)
    row("vram-check sd35-large", p.returncode == 0 and bool(data) and no_traceback(p),
        rc=p.returncode, estimate_gib=ESTIMATES["sd35-large"])  # fmt: skip
    p, data = vram_json("vram_locon", "--preset", "style-locon", "--data", str(DATA), *sdxl_sets())
    ESTIMATES["style-locon"] = _peak_estimate(data)
    applied = WORK / "fastest.yaml"
    p = lk("vram_fastest", "vram-check", "--preset", "comic-style", "--data", str(DATA), *sdxl_sets(),
           "--fastest", "--apply", str(applied), timeout=120)  # fmt: skip
    dry = lk("fastest_dry_run", "train", "--config", str(applied), "--data", str(DATA), "--dry-run", timeout=120)
    fastest = re.findall(r"batch[^\n]{0,60}", p.stdout)[:2]
    row("vram-check --fastest --apply", p.returncode == 0 and applied.is_file() and dry.returncode == 0
        and no_traceback(p) and no_traceback(dry), rc=p.returncode, dry_run_rc=dry.returncode, proposal=fastest)  # fmt: skip


# -- train, SIGINT, resume --------------------------------------------------------------------
class Hashes:
    """Hash each .safetensors of a run folder once it is complete (size stable for 1 s)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.first: dict[str, str] = {}
        self.sizes: dict[str, tuple[int, float]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.wait(0.3):
            self.scan()

    def scan(self) -> None:
        if not self.folder.is_dir():
            return
        for p in self.folder.glob("*.safetensors"):
            if p.name in self.first:
                continue
            try:
                size = p.stat().st_size
            except OSError:
                continue
            seen = self.sizes.get(p.name)
            now = time.time()
            if seen is None or seen[0] != size:
                self.sizes[p.name] = (size, now)
            elif now - seen[1] >= 1.0:
                self.first[p.name] = sha256(p)

    def close(self) -> dict[str, str]:
        self.stop.set()
        self.thread.join()
        return self.first


def sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def events(run: Path) -> list[dict[str, Any]]:
    f = run / "events.jsonl"
    if not f.is_file():
        return []
    out = []
    for line in f.read_text(encoding="utf-8").splitlines():
        with contextlib.suppress(ValueError):
            out.append(json.loads(line))
    return out


def one_run(runs: Path) -> Path | None:
    found = sorted(p for p in runs.glob("*") if p.is_dir()) if runs.is_dir() else []
    return found[-1] if found else None


RUNS1 = WORK / "runs-resume"
# the resume run: TOTAL steps, checkpoint + state every TOTAL/4, SIGINT once step TOTAL/2 + 1 shows
# (LK_SMOKE_RESUME_STEPS=20 for a short call: 2 epochs of 10 steps instead of 4)
TOTAL = int(os.environ.get("LK_SMOKE_RESUME_STEPS", "40"))
EVERY, HALF = TOTAL // 4, TOTAL // 2
STATE: dict[str, Any] = {}


def step_train_interrupt() -> None:
    argv = ["lorakit", "train", "--preset", "comic-style", "--data", str(DATA), *sdxl_sets(),
            "--set", f"training.max_steps={TOTAL}", "--set", f"saving.every_n_steps={EVERY}", "--set", "saving.save_state=true",
            "--set", f"output.folder={RUNS1}", "--quiet"]  # fmt: skip
    log = open(LOGS / "train_interrupt.log", "w", encoding="utf-8")  # noqa: SIM115
    log.write(f"$ {shlex.join(argv)}\n")
    log.flush()
    t = time.time()
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=user_env(), cwd=WORK)
    hashes: Hashes | None = None
    sent = None
    while proc.poll() is None and time.time() - t < 300:
        run = one_run(RUNS1)
        if run is not None and hashes is None:
            hashes = Hashes(run)
        steps = [e.get("step", 0) for e in events(run)] if run else []
        if sent is None and steps and max(steps) >= HALF + 1:
            proc.send_signal(signal.SIGINT)  # Ctrl-C reaches lorakit; it stops the trainer's group
            sent = time.time()
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
    rc = proc.wait()
    run = one_run(RUNS1)
    copy_run_logs(run, "interrupt")
    STATE["run"], STATE["hashes"] = run, hashes
    files = sorted(p.name for p in run.glob("*.safetensors")) if run else []
    ok = rc == 130 and sent is not None and any(f"step{HALF:08d}" in f for f in files)
    row(f"train comic-style, SIGINT after step {HALF}", ok, rc=rc, seconds=round(time.time() - t, 1),
        stop_to_exit_s=None if sent is None else round(time.time() - sent, 1), files=files)  # fmt: skip


def step_resume() -> None:
    run: Path | None = STATE.get("run")
    hashes: Hashes | None = STATE.get("hashes")
    if run is None or hashes is None:
        row("resume", False, skipped="no interrupted run")
        return
    t = time.time()
    p = lk("resume", "resume", str(run), "--quiet", timeout=360)
    time.sleep(1.5)
    first = hashes.close()
    final = {f.name: sha256(f) for f in run.glob("*.safetensors")}
    evs = events(run)
    progress = [e["step"] for e in evs if e.get("type") == "progress"]
    fin = [e for e in evs if e.get("type") == "finished"]
    # a checkpoint every 10 steps and (the preset's) every epoch of 10 steps but the last, then the LoRA
    want = [f"comic-style-step{n:08d}.safetensors" for n in range(EVERY, TOTAL + 1, EVERY)]
    want += [f"comic-style-{e:06d}.safetensors" for e in range(1, TOTAL // 10)] + ["comic-style.safetensors"]
    # a file first seen under the resumed launch's own name is renamed to the run's name when
    # complete: its bytes must then be found under the new name
    changed = sorted(k for k, v in first.items() if k in final and final[k] != v)
    lost = sorted(k for k, v in first.items() if k not in final and v not in final.values())
    renamed = sorted(k for k in first if k not in final)
    warnings = [e.get("code") for e in evs if e.get("type") == "warning"]
    report = sorted(p.name for p in run.glob("report*"))
    copy_run_logs(run, "resumed")
    tb_files = sorted(str(p.relative_to(run)) for p in run.glob("logs/*/*/events.out.tfevents.*"))
    show = lk("runs_show_resumed", "runs", "show", str(run), "--json", timeout=60)
    try:
        shown = json.loads(show.stdout)
    except ValueError:
        shown = {}
    loss = shown.get("loss") if isinstance(shown, dict) else None
    ok = (
        p.returncode == 0
        and no_traceback(p)
        and sorted(final) == sorted(want)
        and not changed
        and not lost
        and max(progress, default=0) == TOTAL
        and bool(fin)
        and fin[-1].get("status") == "done"
        and "resume_restarted" not in warnings
        and bool(report)
        and len(tb_files) == 2
        and bool(loss)
    )
    STATE["lora"] = run / "comic-style.safetensors"
    row(f"resume → {TOTAL} steps, checkpoints once", ok, rc=p.returncode, seconds=round(time.time() - t, 1),
        files=sorted(final), changed_after_first_hash=changed, lost=lost, seen_then_renamed=renamed, last_step=max(progress, default=0),
        resumed_at=next((b for a, b in itertools.pairwise(progress) if b <= a), None),
        finished=fin[-1] if fin else None, warnings=warnings, report=report, tensorboard_files=tb_files,
        runs_show_loss=loss)  # fmt: skip


def step_loader() -> None:
    import e2e

    lora: Path | None = STATE.get("lora")
    if lora is None or not lora.is_file():
        row("LoRA loads with sd-scripts' loader", False, skipped="no LoRA")
        return
    r = e2e.verify_lora("sdxl", "networks.lora", SDXL_DIR / "sdxl_synth.safetensors", lora, LOGS / "loader.log")
    ok = bool(r.pop("ok", False))
    row("LoRA loads with sd-scripts' loader", ok, **r)


# -- kill -9 -----------------------------------------------------------------------------------
def step_kill9() -> None:
    runs = WORK / "runs-kill"
    argv = ["lorakit", "train", "--preset", "comic-style", "--data", str(DATA), *sdxl_sets(),
            "--set", "training.max_steps=2000", "--set", f"output.folder={runs}", "--quiet"]  # fmt: skip
    log = open(LOGS / "train_kill9.log", "w", encoding="utf-8")  # noqa: SIM115
    log.write(f"$ {shlex.join(argv)}\n")
    log.flush()
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=user_env(), cwd=WORK)
    t = time.time()
    mine: dict[int, int] = {}
    while time.time() - t < 180 and proc.poll() is None:
        mine = tree_gpu(proc.pid)
        if sum(mine.values()) > 4 * 2**30:  # the trainer holds its model on the GPU
            break
        time.sleep(0.5)
    run = one_run(runs)
    trainer_pid = None
    if run is not None and (run / "state.json").is_file():
        trainer_pid = json.loads((run / "state.json").read_text()).get("pid")
    held_gib = round(sum(mine.values()) / 2**30, 2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = time.time()
    back = None
    while time.time() - killed_at < 60:
        on_gpu = gpu_pids()
        left = [p for p in mine if alive(p) or p in on_gpu]
        if not left and not (trainer_pid and alive(int(trainer_pid))):
            back = round(time.time() - killed_at, 1)
            break
        time.sleep(0.5)
    time.sleep(1.0)
    copy_run_logs(run, "kill9")
    show = lk("runs_show_killed", "runs", "show", str(run), timeout=60) if run else None
    status_text = (show.stdout if show else "").lower()
    again = lk("resume_killed", "resume", str(run), "--quiet", timeout=60) if run else None
    ok = (
        bool(mine)
        and back is not None
        and "lost" in status_text
        and again is not None
        and again.returncode != 0
        and no_traceback(again)
    )
    row("kill -9 of lorakit train", ok, trainer_gpu_pids=sorted(mine), trainer_pid=trainer_pid,
        trainer_gpu_gib_at_kill=held_gib, trainer_gone_and_gpu_memory_freed_after_s=back,
        runs_show_says_lost="lost" in status_text, resume_rc=None if again is None else again.returncode,
        resume_says=(again.stderr.strip().splitlines() or [""])[-1][:200] if again else None)  # fmt: skip


# -- bench and the other families ----------------------------------------------------------------
def step_bench() -> None:
    p = lk("bench", "bench", "--preset", "comic-style", "--data", str(DATA), *sdxl_sets(), "--steps", "8", "--json",
           timeout=300)  # fmt: skip
    try:
        data = json.loads(p.stdout)
    except ValueError:
        data = {}
    keep = {k: data.get(k) for k in ("steady_s_per_step", "images_per_s", "first_step_s", "peak_vram_gib", "steps")}
    row("bench comic-style", p.returncode == 0 and bool(data) and no_traceback(p), rc=p.returncode, **keep)


def short_train(
    step: str, preset: str, sets: list[str], runs: Path, steps: int, timeout: float, home: str = "home-b"
) -> None:
    """A few steps under a second lorakit home (its own GPU lock: a second user's training on the
    same card, so it runs beside the resume/kill steps); its peak is the NVML memory of its own
    process tree, which other jobs on the card do not change."""
    source = ["--config", preset] if preset.endswith(".yaml") else ["--preset", preset]  # a config file or a preset
    argv = ["lorakit", "train", *source, "--data", str(DATA), *sets,
            "--set", f"training.max_steps={steps}", "--set", f"output.folder={runs}", "--quiet"]  # fmt: skip
    tag = step.replace(" ", "_")
    log = open(LOGS / f"{tag}.log", "w", encoding="utf-8")  # noqa: SIM115
    log.write(f"$ {shlex.join(argv)}\n")
    log.flush()
    t = time.time()
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=user_env(home), cwd=WORK)
    peak = 0
    while proc.poll() is None and time.time() - t < timeout:
        peak = max(peak, sum(tree_gpu(proc.pid).values()))
        time.sleep(0.25)
    if proc.poll() is None:
        proc.kill()
    rc = proc.wait()
    log.close()
    out = (LOGS / f"{tag}.log").read_text(encoding="utf-8", errors="replace")
    run = one_run(runs)
    copy_run_logs(run, tag)
    fin = [e for e in events(run) if e.get("type") == "finished"] if run else []
    est = ESTIMATES.get(preset)
    peak_gib = round(peak / 2**30, 2) if peak else None
    ok = rc == 0 and bool(fin) and fin[-1].get("status") == "done" and "Traceback (most recent" not in out
    row(step, ok, rc=rc, seconds=round(time.time() - t, 1), peak_gib=peak_gib, estimate_gib=est,
        error_pct=None if not (peak_gib and est) else round(100 * (est - peak_gib) / peak_gib, 1),
        lorakit_peak_gib=fin[-1].get("peak_vram_gib") if fin else None,
        lora=None if not fin else fin[-1].get("lora"))  # fmt: skip


def step_locon() -> None:
    short_train("train style-locon", "style-locon", sdxl_sets(), WORK / "runs-locon", 4, 300)


def step_sd35() -> None:
    bg = _bg.get("sd3l")
    if bg is not None:
        try:
            bg.wait(timeout=max(10.0, DEADLINE - (time.time() - T0)))
        except subprocess.TimeoutExpired:
            row("train sd35-large", False, skipped="the SD3.5 large model was not built in time")
            return
        if bg.returncode != 0:
            row("train sd35-large", False, skipped=f"synth-model sd3.5-large exited {bg.returncode}")
            return
    short_train("train sd35-large", "sd35-large", sd3_sets(), WORK / "runs-sd35l", 3, 400)


def extra_steps() -> list[tuple[str, Callable[[], None]]]:
    import importlib

    out: list[tuple[str, Callable[[], None]]] = []
    # most needed first: a step past LK_SMOKE_DEADLINE is recorded as not run
    order = os.environ.get("LK_SMOKE_ORDER", "i18,i16,i19,i12,i13,i15").split(",")
    files = sorted(Path(__file__).resolve().parent.glob("smoke_i*.py"))
    if os.environ.get("LK_SMOKE_ONLY"):  # e.g. "i15,i14": only these issues' step files
        only = os.environ["LK_SMOKE_ONLY"].split(",")
        files = [f for f in files if f.stem[6:] in only]
    files.sort(key=lambda f: order.index(f.stem[6:]) if f.stem[6:] in order else len(order))
    for f in files:
        try:
            out += list(importlib.import_module(f.stem).STEPS)
        except Exception as exc:  # a broken step file is a failed row, not a dead smoke
            err = f"{type(exc).__name__}: {exc}"
            out.append((f.stem, lambda name=f.stem, err=err: row(name, False, driver_error=err)))
    return out


def main_extra() -> int:
    for name, fn in (("synth-model sdxl", step_synth), ("dataset prepare", step_prepare), *extra_steps()):
        note(f"step {name}")
        guarded(name, fn)
    save()
    return 0 if ROWS and all(r["pass"] for r in ROWS) else 1


def main_mini() -> int:
    """LK_SMOKE_PART=mini: what fits ~3 minutes of device time — doctor, dataset prepare, the
    vram-checks with real NVML, and Flux end to end on the 2+4-block model (train + lora_flux
    loader). Not the smoke: no SDXL training, interrupt, resume or kill -9."""
    import smoke_i14

    smoke_i14.start_small()
    for name, fn in (
        ("doctor", step_doctor),
        ("dataset prepare", step_prepare),
        ("vram-check", step_vram),
        ("train flux-dev (2+4 blocks)", smoke_i14.step_small),
    ):
        note(f"step {name}")
        guarded(name, fn)
    save()
    return 0 if ROWS and all(r["pass"] for r in ROWS) else 1


def main() -> int:
    LOGS.mkdir(parents=True, exist_ok=True)
    WORK.mkdir(parents=True, exist_ok=True)
    note(f"lorakit at {shutil.which('lorakit')} (part {PART})")
    if PART == "extra":
        return main_extra()
    if PART == "mini":
        return main_mini()
    import smoke_i14  # Flux (issue 14): a reduced-depth set, built from the start, trained beside

    smoke_i14.start_small()
    for name, fn in (
        ("doctor", step_doctor),
        ("synth-model sdxl", step_synth),
        ("dataset prepare", step_prepare),
        ("vram-check", step_vram),
    ):
        note(f"step {name}")
        guarded(name, fn)
    # a second user's short trainings (own lorakit home, own lock) beside the resume/kill steps;
    # their peaks are per process tree, so the neighbours do not change them
    side_steps = tuple(
        (n, f) for n, f in (("train style-locon", step_locon), ("train sd35-large", step_sd35)) if n not in SKIP
    )
    side = threading.Thread(target=lambda: [guarded(n, f) for n, f in side_steps], daemon=True)
    side.start()
    flux_steps = (  # a third user (own home and lock): Flux on the reduced-depth model (smoke_i14.py)
        ("train flux-dev (2+4 blocks)", smoke_i14.step_small),
        ("train an imported GUI Flux preset (2+4 blocks)", smoke_i14.step_gui_import),
    )
    flux_steps = tuple((n, f) for n, f in flux_steps if n not in SKIP)
    flux = threading.Thread(target=lambda: [guarded(n, f) for n, f in flux_steps], daemon=True)
    flux.start()
    loader: threading.Thread | None = None
    for name, fn in (
        (f"train comic-style, SIGINT after step {HALF}", step_train_interrupt),
        ("resume", step_resume),
    ):
        note(f"step {name}")
        guarded(name, fn)
    loader = threading.Thread(target=guarded, args=("LoRA loads with sd-scripts' loader", step_loader), daemon=True)
    loader.start()  # on the CPU, beside the next steps
    note("step kill -9")
    guarded("kill -9 of lorakit train", step_kill9)
    side.join(timeout=max(1.0, DEADLINE + 30 - (time.time() - T0)))
    flux.join(timeout=max(1.0, DEADLINE + 30 - (time.time() - T0)))
    loader.join(timeout=120)
    if "bench comic-style" not in SKIP:
        note("step bench (alone on the card)")
        guarded("bench comic-style", step_bench)
    for p in _bg.values():
        if p.poll() is None:
            p.kill()
    save()
    return 0 if ROWS and all(r["pass"] for r in ROWS) else 1


if __name__ == "__main__":
    sys.exit(main())
