"""`lorakit bench`: N training steps through the normal `lorakit train` path, measured.

Reports steady-state s/step (warm-up steps excluded), images/s, time to first step and the
peak GPU memory of the run (the runner's NVML readings of the run's GPU, minus what was in
use when it started). The figures come from the run's own events, so a bench measures
exactly what a training would do.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lorakit import rate
from lorakit.events import Event, Finished, Progress, Started
from lorakit.rate import WARMUP_STEPS


@dataclass
class BenchResult:
    preset: str | None
    run_dir: str
    status: str
    steps: int
    batch_size: int
    steady_s_per_step: float | None
    images_per_s: float | None
    time_to_first_step_s: float | None
    wall_s: float | None
    peak_vram_gib: float | None
    gpu: str | None
    overrides: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def steady_s_per_step(events: list[Event], warmup: int = WARMUP_STEPS) -> float | None:
    """Steady seconds per step of the whole run: ``lorakit.rate``'s one definition."""
    return rate.steady_s_per_step((e for e in events if isinstance(e, Progress)), warmup=warmup)


def time_to_first_step(events: list[Event]) -> float | None:
    start = next((e.t for e in events if isinstance(e, Started)), None)
    first = next((e.t for e in events if isinstance(e, Progress) and e.step >= 1), None)
    return None if start is None or first is None else first - start


def summarize(
    events: list[Event],
    *,
    preset: str | None,
    run_dir: Path,
    batch_size: int,
    gpu: str | None,
    overrides: list[str],
    n_gpus: int = 1,
) -> BenchResult:
    """``n_gpus``: the GPUs of the run (each takes a batch per step), counted in images/s."""
    sps = steady_s_per_step(events)
    fin = next((e for e in reversed(events) if isinstance(e, Finished)), None)
    last = max((e.step for e in events if isinstance(e, Progress)), default=0)
    return BenchResult(
        preset=preset,
        run_dir=str(run_dir),
        status=fin.status if fin else "unknown",
        steps=last,
        batch_size=batch_size,
        steady_s_per_step=round(sps, 4) if sps else None,
        images_per_s=round(batch_size * n_gpus / sps, 3) if sps else None,
        time_to_first_step_s=round(v, 1) if (v := time_to_first_step(events)) is not None else None,
        wall_s=round(fin.duration_s, 1) if fin and fin.duration_s is not None else None,
        peak_vram_gib=fin.peak_vram_gib if fin else None,  # the runner's NVML readings
        gpu=gpu,
        overrides=overrides,
    )


def bench_overrides(steps: int) -> list[str]:
    """A bench trains `steps` steps, saves no checkpoint along the way and draws no samples."""
    return [
        f"training.max_steps={steps}",
        "saving.every_n_epochs=null",
        "saving.every_n_steps=null",
        "saving.save_state=false",
        "sampling.prompts=[]",
        "sampling.every_n_epochs=null",
        "sampling.every_n_steps=null",
    ]


def make_noise_dataset(folder: Path, count: int, size: int) -> Path:
    """A small dataset of seeded noise images + captions (for a bench without your data)."""
    import random

    from PIL import Image

    concept = folder / "1_lkbench thing"
    concept.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    for i in range(count):
        img = Image.effect_noise((size, size), 64).convert("RGB")
        img = img.rotate(rng.randint(0, 359))
        img.save(concept / f"noise_{i:02d}.png", compress_level=1)
        (concept / f"noise_{i:02d}.txt").write_text("lkbench, noise, texture\n", encoding="utf-8")
    return folder
