"""Issue 12 smoke steps (run by smoke.py's "extra" part on the GPU; seconds, no training):
`--vram` is a budget on this GPU with its own speed data and `--fastest` batches under it;
`--card` answers for another card and refuses an unknown one; `lorakit --help` wall time."""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Callable

import smoke as S  # type: ignore[import-not-found]


def _json(p: subprocess.CompletedProcess[str]) -> dict[str, object]:
    try:
        return dict(json.loads(p.stdout))
    except ValueError:
        return {}


def step_vram_on_this_gpu() -> None:
    p = S.lk("i12_vram24", "vram-check", "--preset", "comic-style", "--data", str(S.DATA), *S.sdxl_sets(),
             "--vram", "24GB", "--fastest", "--json")  # fmt: skip
    d = _json(p)
    f = d.get("fastest") or {}
    assert isinstance(f, dict)
    batch = int((f.get("changes") or {}).get("training.batch_size", 1))
    basis = str(d.get("speed_basis", ""))
    ok = p.returncode == 0 and basis.startswith("H200 measurements") and batch >= 4
    ok = ok and float(f.get("estimate_gib") or 99) * 1.1 <= 24
    S.row("i12 vram-check --vram 24GB --fastest (this GPU)", ok, rc=p.returncode, basis=basis[:120],
          batch=batch, estimate_gib=f.get("estimate_gib"), images_per_s=f.get("images_per_s"), speedup=f.get("speedup"))  # fmt: skip


def step_card() -> None:
    p = S.lk("i12_card3090", "vram-check", "--preset", "comic-style", *S.sdxl_sets(), "--card", "RTX 3090",
             "--fastest", "--json")  # fmt: skip
    d = _json(p)
    bad = S.lk("i12_card_unknown", "vram-check", "--preset", "comic-style", "--card", "Voodoo 5")
    ok = p.returncode == 0 and "RTX 3090" in str(d.get("speed_basis")) and bad.returncode == 2
    ok = ok and "RTX 3090" in bad.stderr and S.no_traceback(bad)
    S.row(
        "i12 vram-check --card", ok, rc=p.returncode, basis=str(d.get("speed_basis"))[:120], unknown_rc=bad.returncode
    )


def step_help_time() -> None:
    walls = []
    rc = 0
    for _ in range(7):
        t = time.perf_counter()
        rc |= subprocess.run(["lorakit", "--help"], capture_output=True, env=S.user_env(), check=False).returncode
        walls.append(time.perf_counter() - t)
    S.row(
        "i12 lorakit --help wall time", rc == 0, median_s=round(statistics.median(walls), 3), min_s=round(min(walls), 3)
    )


STEPS: list[tuple[str, Callable[[], None]]] = [
    ("i12 vram-check --vram 24GB --fastest (this GPU)", step_vram_on_this_gpu),
    ("i12 vram-check --card", step_card),
    ("i12 lorakit --help wall time", step_help_time),
]
