"""`lorakit bench`: N training steps through the normal `lorakit train` path, measured.

Reports steady-state s/step (warm-up steps excluded), images/s, time to first step and the
peak GPU memory of the run (the runner's NVML readings of the run's GPU, minus what was in
use when it started). The figures come from the run's own events, so a bench measures
exactly what a training would do.

Repeated windows: the steps after warm-up are cut into consecutive windows of
``WINDOW_STEPS`` steps; each window's rate comes from ``window_rate`` (the one steady-rate
definition, applied to that window), and the result gives their median and spread, because one
figure from one run drifts (the H200 measured one config at 0.61 and 0.78 s/step in one call).
``compare`` pools the windows of configs run interleaved (A B B A …) in one call.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lorakit import rate
from lorakit.events import Event, Finished, Progress, Started
from lorakit.rate import WARMUP_STEPS

median_and_spread = rate.median_and_spread  # the windows' figure (lorakit.rate)
WINDOW_STEPS = 4  # steps per repeated window


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
    windows_s_per_step: list[float] = field(default_factory=list)  # one rate per window of WINDOW_STEPS steps
    median_s_per_step: float | None = None  # median of the windows
    spread: float | None = None  # (slowest − fastest window) / median

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def steady_s_per_step(events: list[Event], warmup: int = WARMUP_STEPS) -> float | None:
    """Steady seconds per step of the whole run: ``lorakit.rate``'s one definition."""
    return rate.steady_s_per_step((e for e in events if isinstance(e, Progress)), warmup=warmup)


def window_rate(points: list[Progress]) -> float | None:
    """The steady rate of one window of progress points (every interval counts: the warm-up was
    cut off before). The one place a window's rate is computed: ``lorakit.rate``'s definition."""
    return rate.steady_s_per_step(list(points), warmup=0)


def windows(events: list[Event], warmup: int = WARMUP_STEPS, size: int = WINDOW_STEPS) -> list[float]:
    """Rates of consecutive windows of ``size`` steps after the warm-up (neighbouring windows
    share their boundary point, so no interval is lost; a last window shorter than half a
    window is dropped)."""
    points: list[Progress] = []
    for ev in events:
        if isinstance(ev, Progress) and ev.step >= warmup:
            if points and ev.step <= points[-1].step:
                points = []  # the counter restarted: only the last run counts
            points.append(ev)
    out: list[float] = []
    start = 0
    for j in range(1, len(points)):
        if points[j].step - points[start].step >= size or j == len(points) - 1:
            chunk = points[start : j + 1]
            if chunk[-1].step - chunk[0].step >= max(1, size // 2):
                r = window_rate(chunk)
                if r is not None:
                    out.append(r)
            start = j
    return out


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
    rates = windows(events)
    med, spread = median_and_spread(rates)
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
        windows_s_per_step=[round(r, 4) for r in rates],
        median_s_per_step=round(med, 4) if med else None,
        spread=round(spread, 3) if spread is not None else None,
    )


@dataclass
class Compared:
    """One config of ``bench --compare``: its runs and their pooled windows."""

    label: str
    overrides: list[str]
    runs: list[BenchResult] = field(default_factory=list)

    @property
    def windows(self) -> list[float]:
        return [w for r in self.runs for w in r.windows_s_per_step]

    @property
    def batch_size(self) -> int:
        return self.runs[0].batch_size if self.runs else 1

    def to_json(self) -> dict[str, object]:
        med, spread = median_and_spread(self.windows)
        peaks = [r.peak_vram_gib for r in self.runs if r.peak_vram_gib is not None]
        return {
            "label": self.label,
            "overrides": self.overrides,
            "batch_size": self.batch_size,
            "median_s_per_step": round(med, 4) if med else None,
            "images_per_s": round(self.batch_size / med, 3) if med else None,
            "spread": round(spread, 3) if spread is not None else None,
            "windows": len(self.windows),
            "peak_vram_gib": max(peaks) if peaks else None,
            "runs": [asdict(r) for r in self.runs],
        }


def interleaved(labels: list[str], rounds: int) -> list[str]:
    """Run order for ``rounds`` rounds: A B, then B A, … (drift hits every config alike)."""
    out: list[str] = []
    for r in range(rounds):
        out += labels if r % 2 == 0 else list(reversed(labels))
    return out


def compare_summary(configs: list[Compared]) -> dict[str, object]:
    rows = [c.to_json() for c in configs]
    base = rows[0].get("images_per_s") if rows else None
    for row in rows:
        ips = row.get("images_per_s")
        row["ratio"] = round(ips / base, 3) if isinstance(ips, float) and isinstance(base, float) and base else None
    return {"configs": rows}


def compare_spec(text: str) -> list[str]:
    """``--compare`` value → overrides: a YAML file is read as ``key=value`` leaves (dotted), else
    the text is ``key=value`` pairs separated by spaces (shell-quoted where a value has one)."""
    path = Path(text)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        import yaml

        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        out: list[str] = []

        def walk(prefix: str, v: object) -> None:
            if isinstance(v, dict):
                for k, sub in v.items():
                    walk(f"{prefix}{k}.", sub)
            else:
                out.append(f"{prefix[:-1]}={json.dumps(v) if isinstance(v, (list, bool)) or v is None else v}")

        walk("", data)
        return out
    import shlex

    return shlex.split(text)


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
