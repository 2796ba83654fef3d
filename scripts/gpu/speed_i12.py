"""Issue 12 on the GPU: `--fastest` under each budget vs the comic command, and the H200 ceiling.

Run by scripts/gpu/speed_i12.sh (one device call, ≤ 9 min with the installs); expects `lorakit`
on PATH (installed from the wheel built from this tree), the sd-scripts source (.vendor) and the
trainer's packages. Writes OUT/speed_i12.json (and OUT/logs.tar.gz via the .sh); the docs table
comes from `python3 scripts/gpu/speed_i12_table.py FETCHED/speed_i12.json`.

What it does, in order:
1. `vram-check --preset comic-style --fastest --json` on the empty GPU (the whole card), then with
   `--vram 80/48/24/16/12GB` (a budget on this GPU, its speed data): the chosen changes, their
   estimated peak and expected images/s; `vram-check --json` of each ceiling config for its estimate.
2. `lorakit synth-model sdxl` (random weights) and a dataset of 8 noise images × 8 repeats.
3. `lorakit bench` runs (each its own lorakit home and run folder), in priority order: the comic
   command, each budget's choice (identical choices benched once), the comic command again (the
   ratio uses both: drift between runs), then the ceiling experiments (bs 24/32 with GC and
   full_bf16, fp8 base, dataloader workers 0/8, latents in memory instead of on disk).
   To fit the call, the next runs start (load, cache) while one trains: at most LK12_PROCS
   processes; a run that reaches sd-scripts' "running training" while another is training is
   paused (SIGSTOP of its trainer processes) until that one ends, so only one run trains at a
   time; the warm-up steps (excluded from the rate) absorb the resume. Peaks are the NVML
   memory of each run's own process tree (per process: neighbours do not change it), sampled
   every 0.2 s. A run is not started after LK12_DEADLINE seconds; all stop at LK12_HARD.

Not tried, and why: xformers (no wheel for this machine's torch 2.11 / CUDA 13: field notes),
torch compile (`--torch_compile`: compiling the SDXL U-Net takes minutes, more than this call
has, and lorakit has no key for it), attention `none` (more memory, never faster).

LK12_FAKE=1 rehearses the scheduler on a CPU machine with the stand-in trainer of the tests
(tests/run/children/fake_trainer.py replaying a recorded log; no GPU, no peaks).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(sys.argv[1]).resolve()
LOGS = OUT / "logs"
ROOT = Path(os.environ.get("LK_ROOT", Path(__file__).resolve().parents[2]))
SD = ROOT / ".vendor" / "sd-scripts"
BASE = Path(os.environ.get("LK12_BASE", "/tmp/lk12"))
MODELS, DATA = BASE / "m", BASE / "d"
BPE = ROOT / ".gpuassets" / "bpe_simple_vocab_16e6.txt.gz"
T0 = time.time()
DEADLINE = float(os.environ.get("LK12_DEADLINE", "360"))
HARD = float(os.environ.get("LK12_HARD", "450"))
PROCS = int(os.environ.get("LK12_PROCS", "3"))
FAKE = os.environ.get("LK12_FAKE") == "1"
PRESET = "comic-style"  # flux_i14.py (which reuses this scheduler) sets "flux-dev"
ALLOWANCE_GIB = 10.0  # GPU memory of a run that is loading or paused before its first step
STAGGER_S = 6.0
BUDGETS = (("whole card", None), ("80 GB", "80GB"), ("48 GB", "48GB"), ("24 GB", "24GB"), ("16 GB", "16GB"), ("12 GB", "12GB"))  # fmt: skip

sys.path.insert(0, str(Path(__file__).resolve().parent))
RESULT: dict[str, Any] = {"choices": [], "runs": [], "skipped": [], "notes": []}


def note(msg: str) -> None:
    print(f"[speed_i12 {time.time() - T0:5.0f}s] {msg}", flush=True)


def save() -> None:
    (OUT / "speed_i12.json").write_text(json.dumps(RESULT, indent=1, default=str), encoding="utf-8")


def user_env(home: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(LORAKIT_HOME=str(BASE / "homes" / home), PYTHONUNBUFFERED="1", COLUMNS="160")
    if not FAKE:
        env.update(LORAKIT_SD_SCRIPTS=str(SD), LORAKIT_PYTHON=sys.executable)
    return env


def lk(name: str, *args: str, timeout: float = 180, home: str = "main") -> subprocess.CompletedProcess[str]:
    argv = ["lorakit", *args]
    t = time.time()
    try:
        p = subprocess.run(argv, capture_output=True, text=True, env=user_env(home), cwd=BASE, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        p = subprocess.CompletedProcess(argv, 124, str(exc.stdout or ""), str(exc.stderr or "") + "\nTIMEOUT")
    (LOGS / f"{name}.log").write_text(
        f"$ {shlex.join(argv)}\n# rc={p.returncode} {time.time() - t:.1f}s\n{p.stdout}\n--- stderr ---\n{p.stderr}",
        encoding="utf-8",
    )
    return p


def model_sets() -> list[str]:
    if FAKE:
        return ["--set", f"model.checkpoint={os.environ['FAKE_CKPT']}"]
    d = MODELS / "sdxl"
    return ["--set", f"model.checkpoint={d / 'sdxl_synth.safetensors'}", "--set", f"model.tokenizer_cache_dir={d / 'tokenizers'}"]  # fmt: skip


def as_sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ",".join(str(x) for x in v) + "]"
    return str(v)


# -- 1. choices and estimates --------------------------------------------------------------------
def vram_check(name: str, overrides: list[str], *extra: str) -> dict[str, Any]:
    card = ["--card", "H200"] if FAKE else []
    p = lk(name, "vram-check", "--preset", PRESET, "--data", str(DATA), *model_sets(), *as_sets(overrides),
           *card, *extra, "--json")  # fmt: skip
    try:
        return dict(json.loads(p.stdout))
    except ValueError:
        return {"error": (p.stderr.strip().splitlines() or [f"rc={p.returncode}"])[-1][:300]}


def choices() -> None:
    for label, vram in BUDGETS:
        data = vram_check(f"choice_{label.replace(' ', '_')}", [], "--fastest", *(["--vram", vram] if vram else []))
        f = data.get("fastest") or {}
        est = (data.get("estimate") or {}).get("peak_gib")
        row = {
            "budget": label,
            "budget_gib": (data.get("budget") or {}).get("gib"),
            "budget_source": (data.get("budget") or {}).get("source"),
            "speed_basis": data.get("speed_basis"),
            "comic_estimate_gib": est,
            "comic_expected_images_per_s": data.get("images_per_s"),
            "changes": f.get("changes"),
            "words": f.get("words"),
            "estimate_gib": f.get("estimate_gib"),
            "expected_images_per_s": f.get("images_per_s"),
            "uncertainty": f.get("uncertainty"),
            "notes": f.get("notes"),
            "error": data.get("error"),
        }
        RESULT["choices"].append(row)
        note(f"choice {label}: {row['words']} est {row['estimate_gib']} GiB, {row['expected_images_per_s']} img/s")
    save()


# -- 2. model and data ---------------------------------------------------------------------------------
def synth() -> None:
    if FAKE or (MODELS / "sdxl" / "sdxl_synth.safetensors").is_file():
        return
    t = time.time()
    p = lk("synth_sdxl", "synth-model", "sdxl", str(MODELS / "sdxl"), "--bpe", str(BPE), timeout=300)
    RESULT["synth"] = {"rc": p.returncode, "seconds": round(time.time() - t, 1)}
    note(f"synth-model sdxl rc={p.returncode} in {time.time() - t:.0f}s")


def dataset() -> None:
    folder = DATA / "8_lkbench thing"
    if folder.is_dir() and len(list(folder.glob("*.png"))) >= 8:
        return
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(8):
        Image.effect_noise((1024, 1024), 48 + 4 * i).convert("RGB").save(folder / f"n{i}.png", compress_level=1)
        (folder / f"n{i}.txt").write_text("lkbench, noise, texture\n", encoding="utf-8")


# -- 3. the benches -----------------------------------------------------------------------------------
@dataclass
class Run:
    tag: str
    group: str  # "table" | "ceiling"
    overrides: list[str]
    steps: int
    est_gib: float | None
    expected_ips: float | None = None
    proc: subprocess.Popen[str] | None = None
    state: str = "queued"  # queued | starting | paused | training | done
    t_start: float = 0.0
    t_train: float | None = None
    t_end: float | None = None
    paused_s: float = 0.0
    paused_at: float | None = None
    peak_bytes: int = 0
    neighbours: set[str] = field(default_factory=set)
    log: Path | None = None
    result: dict[str, Any] | None = None
    rc: int | None = None
    shape: dict[str, Any] | None = None  # the config as the estimator sees it (vram-check's estimate.config)

    def runs_dir(self) -> Path:
        return BASE / "runs" / self.tag

    def train_log(self) -> Path | None:
        if self.log is None:
            found = sorted(self.runs_dir().glob("*/train.log"))
            self.log = found[0] if found else None
        return self.log

    def training_started(self) -> bool:
        log = self.train_log()
        if log is None:
            return False
        try:
            return b"running training" in log.read_bytes()
        except OSError:
            return False


def trainer_pids(run: Run) -> list[int]:
    import measure

    assert run.proc is not None
    return sorted(measure.tree_pids(run.proc.pid, measure._ppid_map()) - {run.proc.pid})


def signal_trainer(run: Run, sig: int) -> None:
    for pid in trainer_pids(run):
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def launch(run: Run) -> None:
    out = OUT / "runs"
    out.mkdir(exist_ok=True)
    argv = ["lorakit", "bench", "--preset", PRESET, "--data", str(DATA), *model_sets(),
            *as_sets([*run.overrides, f"output.folder={run.runs_dir()}"]),
            "--steps", str(run.steps), "--quiet", "--json", "--out", str(out / f"{run.tag}.json")]  # fmt: skip
    log = open(LOGS / f"bench_{run.tag}.log", "w", encoding="utf-8")  # noqa: SIM115
    log.write(f"$ {shlex.join(argv)}\n")
    log.flush()
    run.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True, env=user_env(run.tag), cwd=BASE)
    run.state, run.t_start = "starting", time.time()
    note(f"launch {run.tag} (est {run.est_gib} GiB): {' '.join(run.overrides) or 'as shipped'}")


def finish(run: Run) -> None:
    run.state, run.t_end, run.rc = "done", time.time(), run.proc.returncode if run.proc else None
    path = OUT / "runs" / f"{run.tag}.json"
    with contextlib.suppress(OSError, ValueError):
        run.result = json.loads(path.read_text(encoding="utf-8"))
    r = run.result or {}
    note(f"done {run.tag} rc={run.rc}: median {r.get('median_s_per_step')} s/step, spread {r.get('spread')}, "
         f"peak {run.peak_bytes / 2**30:.2f} GiB (tree)")  # fmt: skip
    RESULT["runs"].append(
        {
            "tag": run.tag,
            "group": run.group,
            "overrides": run.overrides,
            "steps": run.steps,
            "rc": run.rc,
            "estimate_gib": run.est_gib,
            "expected_images_per_s": run.expected_ips,
            "peak_gib": round(run.peak_bytes / 2**30, 2) if run.peak_bytes else None,
            "bench": r,
            "paused_s": round(run.paused_s, 1),
            "start_s": round(run.t_start - T0, 1),
            "train_s": None if run.t_train is None else round(run.t_train - T0, 1),
            "end_s": round(run.t_end - T0, 1),
            "neighbours_while_training": sorted(run.neighbours),
            "shape": run.shape,
        }
    )
    save()


def schedule(queue: list[Run]) -> None:
    import measure

    nv = None if FAKE else measure.Nvml(0)
    total_gib = (nv.device_total() or 0) / 2**30 if nv is not None else 140.0
    alive: list[Run] = []
    last_launch = 0.0
    while queue or alive:
        now = time.time() - T0
        if now > HARD:
            for r in alive:
                signal_trainer(r, signal.SIGCONT)
                if r.proc is not None:
                    r.proc.send_signal(signal.SIGINT)
            for r in alive:
                if r.proc is not None:
                    try:
                        r.proc.wait(timeout=20)
                    except subprocess.TimeoutExpired:
                        r.proc.kill()
                finish(r)
                RESULT["runs"][-1]["stopped"] = f"past the {HARD:.0f}s hard limit"
            for r in queue:
                RESULT["skipped"].append({"tag": r.tag, "why": f"not started: past the {DEADLINE:.0f}s deadline"})
            break
        # memory per process tree (NVML)
        if nv is not None and alive:
            procs, ppids = nv.processes(), measure._ppid_map()
            for r in alive:
                if r.proc is not None:
                    tree = measure.tree_pids(r.proc.pid, ppids)
                    r.peak_bytes = max(r.peak_bytes, sum(v for p, v in procs.items() if p in tree))
        # finished runs
        for r in list(alive):
            if r.proc is not None and r.proc.poll() is not None:
                if r.state == "paused":
                    signal_trainer(r, signal.SIGCONT)
                alive.remove(r)
                finish(r)
        training = [r for r in alive if r.state == "training"]
        # runs reaching their first step: train now, or wait (paused) while another trains
        for r in alive:
            if r.state == "starting" and r.training_started():
                if training:
                    signal_trainer(r, signal.SIGSTOP)
                    r.state, r.paused_at = "paused", time.time()
                    note(f"pause {r.tag} (waits for {training[0].tag})")
                else:
                    r.state, r.t_train = "training", time.time()
                    training = [r]
        if not training:
            waiting = sorted((r for r in alive if r.state == "paused"), key=lambda r: r.paused_at or 0)
            if waiting:
                r = waiting[0]
                signal_trainer(r, signal.SIGCONT)
                r.paused_s += time.time() - (r.paused_at or time.time())
                r.state, r.t_train = "training", time.time()
                training = [r]
                note(f"resume {r.tag}")
        for r in training:
            r.neighbours |= {o.tag for o in alive if o is not r}
        # launch the next run when memory and the process count allow
        if queue and now <= DEADLINE and len(alive) < PROCS and time.time() - last_launch >= STAGGER_S:
            nxt = queue[0]
            used = sum((r.est_gib or 20) if r.state == "training" else ALLOWANCE_GIB for r in alive)
            biggest = max([(r.est_gib or 20) for r in [*alive, nxt]], default=0)
            others = ALLOWANCE_GIB * len(alive)
            # now, and when the biggest of them trains while the others load or wait
            fits = used + ALLOWANCE_GIB <= total_gib - 3 and biggest + others <= total_gib - 3
            if fits:
                launch(queue.pop(0))
                alive.append(nxt)
                last_launch = time.time()
        elif queue and now > DEADLINE and not alive:
            for r in queue:
                RESULT["skipped"].append({"tag": r.tag, "why": f"not started: past the {DEADLINE:.0f}s deadline"})
            queue.clear()
        time.sleep(0.2)


def plan() -> list[Run]:
    """The bench queue in priority order (the 'done when' table first, then the ceiling)."""
    runs: list[Run] = []
    comic = next((c for c in RESULT["choices"] if c.get("comic_estimate_gib")), {})
    runs.append(
        Run("comic_1", "table", [], 14, comic.get("comic_estimate_gib"), comic.get("comic_expected_images_per_s"))
    )
    seen: dict[str, str] = {}
    for c in RESULT["choices"]:
        if not c.get("changes"):
            c["bench_tag"] = "comic_1" if c.get("changes") == {} else None
            continue
        overrides = [f"{k}={scalar(v)}" for k, v in c["changes"].items()]
        key = " ".join(sorted(overrides))
        if key in seen:
            c["bench_tag"] = seen[key]
            continue
        tag = "fastest_" + c["budget"].replace(" ", "_")
        seen[key] = c["bench_tag"] = tag
        slow = (c.get("expected_images_per_s") or 10) < 6 or int(c["changes"].get("training.batch_size", 1)) >= 16
        runs.append(
            Run(tag, "table", overrides, 12 if slow else 14, c.get("estimate_gib"), c.get("expected_images_per_s"))
        )
    runs.append(
        Run("comic_2", "table", [], 14, comic.get("comic_estimate_gib"), comic.get("comic_expected_images_per_s"))
    )
    whole = next((c for c in RESULT["choices"] if c["budget"] == "whole card"), {})
    best = [f"{k}={scalar(v)}" for k, v in (whole.get("changes") or {}).items()]
    bf16 = ["training.precision=bf16", "training.full_bf16=true", "training.gradient_checkpointing=true"]
    ceiling = [
        ("gc_b24_fullbf16", [*bf16, "training.batch_size=24"]),
        ("gc_b32_fullbf16", [*bf16, "training.batch_size=32"]),
        ("gc_b32_fullbf16_fp8", [*bf16, "training.batch_size=32", "training.fp8_base=true"]),
        ("best_fp8", [*best, "training.fp8_base=true"]),
        ("best_workers0", [*best, "training.dataloader_workers=0"]),
        ("best_workers8", [*best, "training.dataloader_workers=8"]),
        ("best_latents_in_memory", [*best, "training.cache_latents_to_disk=false"]),
        ("gc_b48_fullbf16_fp8", [*bf16, "training.batch_size=48", "training.fp8_base=true"]),
    ]
    for tag, overrides in ceiling:
        data = vram_check(f"estimate_{tag}", overrides)
        est = (data.get("estimate") or {}).get("peak_gib")
        ips = data.get("images_per_s")
        if est is not None and est > 130:
            RESULT["skipped"].append({"tag": tag, "why": f"estimate {est} GiB: does not fit the card"})
            continue
        run = Run(tag, "ceiling", overrides, 12, est, ips)
        run.shape = (data.get("estimate") or {}).get("config")
        runs.append(run)
    # LK12_ONLY=tag,tag,...: a follow-up call benches just those (e.g. the ceiling runs a deadline
    # cut, and the whole-card choice after the model was refit on the first call's rows)
    only = [t for t in os.environ.get("LK12_ONLY", "").split(",") if t]
    if only:
        for r in runs:
            if r.tag not in only:
                RESULT["skipped"].append({"tag": r.tag, "why": "not in LK12_ONLY"})
        runs = [r for r in runs if r.tag in only]
    from concurrent.futures import ThreadPoolExecutor

    def shape_of(r: Run) -> None:
        if r.shape is None:
            r.shape = (vram_check(f"shape_{r.tag}", r.overrides).get("estimate") or {}).get("config")

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(shape_of, runs))
    RESULT["plan"] = [
        {"tag": r.tag, "group": r.group, "overrides": r.overrides, "estimate_gib": r.est_gib} for r in runs
    ]
    save()
    return runs


def env_report() -> None:
    def sh(*a: str) -> str:
        try:
            return subprocess.run(a, capture_output=True, text=True, timeout=30).stdout.strip()
        except Exception as exc:
            return f"({exc})"

    RESULT["env"] = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "gpu": sh("nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"),
        "torch": sh(sys.executable, "-c", "import torch; print(torch.__version__)"),
        "lorakit": sh("lorakit", "--version"),
        "sd_scripts": "48d368fa",
        "procs": PROCS,
        "deadline_s": DEADLINE,
        "fake": FAKE,
    }
    RESULT["skipped"] += [
        {
            "tag": "xformers",
            "why": "no xformers wheel for this machine's torch 2.11 / CUDA 13 (field notes): SDPA only",
        },
        {"tag": "torch_compile", "why": "compiling the SDXL U-Net takes minutes (more than this call); no lorakit key"},
        {"tag": "attention_none", "why": "stores the tokens² attention matrices: more memory, never faster"},
    ]


def main() -> int:
    LOGS.mkdir(parents=True, exist_ok=True)
    (BASE / "runs").mkdir(parents=True, exist_ok=True)
    dataset()
    env_report()
    choices()  # on the empty GPU: the whole card is its free memory now
    bg = threading.Thread(target=synth)
    bg.start()
    queue = plan()  # estimates of the ceiling configs (CPU) while the model is built
    bg.join()
    note(f"queue: {[r.tag for r in queue]}")
    schedule(queue)
    RESULT["seconds"] = round(time.time() - T0, 1)
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
