"""Issue 13 on the GPU (LK_SMOKE_PART=extra; see smoke.py): one short real training through the
refactored shell (training.py → runner → supervisor/outcome, proc.py environment, fs.py writes).

Checks, on one 12-step comic-style run on the synthetic SDXL (about a minute on an H200):
- it trains to `done` (exit 0, no traceback), the launch environment in command.txt is unchanged
  (PYTHONUNBUFFERED=1, COLUMNS=240, CUDA_DEVICE_ORDER=PCI_BUS_ID);
- the run's files and the LoRA copied into `output.lora_folders` have the umask's mode (group and
  others may read them), not 0600;
- `runs show --json` and `report --json` give the same steady s/step (lorakit.rate), and it is a
  plausible figure (between 0.05 and 30 s/step).
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import smoke as S  # type: ignore[import-not-found]


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def step_one_mechanism() -> None:
    runs = S.WORK / "runs-i13"
    loras = S.WORK / "i13-loras"
    p = S.lk(
        "i13_train", "train", "--preset", "comic-style", "--data", str(S.DATA), *S.sdxl_sets(),
        "--set", "training.max_steps=12", "--set", f"output.folder={runs}",
        "--set", f"output.lora_folders=[{loras}]", "--quiet", timeout=400,
    )  # fmt: skip
    found = sorted(d for d in runs.iterdir() if d.is_dir()) if runs.is_dir() else []
    run = found[-1] if found else None
    if run is None:
        S.row("i13 train + one mechanism", False, rc=p.returncode, why="no run folder")
        return
    command = (run / "command.txt").read_text(encoding="utf-8")
    env_ok = all(k in command for k in ("PYTHONUNBUFFERED=1", "COLUMNS=240", "CUDA_DEVICE_ORDER=PCI_BUS_ID"))
    copies = sorted(loras.glob("*.safetensors")) if loras.is_dir() else []
    modes = {f.name: oct(_mode(f)) for f in [run / "state.json", run / "spec.yaml", *copies]}
    readable = bool(copies) and all(int(m, 8) & 0o044 for m in modes.values())
    show = S.lk("i13_runs_show", "runs", "show", str(run), "--json")
    rep = S.lk("i13_report", "report", str(run), "--json")
    try:
        shown = json.loads(show.stdout).get("s_per_step")
        reported = json.loads(rep.stdout).get("s_per_step")
    except ValueError:
        shown = reported = None
    same = shown is not None and reported is not None and abs(shown - reported) < 1e-9 and 0.05 < shown < 30
    ok = p.returncode == 0 and S.no_traceback(p) and env_ok and readable and same
    S.row(
        "i13 train + one mechanism", ok, rc=p.returncode, env_ok=env_ok, modes=modes,
        runs_show_s_per_step=shown, report_s_per_step=reported,
    )  # fmt: skip


STEPS = [("i13 train + one mechanism", step_one_mechanism)]
