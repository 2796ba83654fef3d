"""The figures of a run, computed from its events alone (never from the raw log).

:func:`summarize` is pure: typed events (``lorakit.events``) plus the extra keys of the raw
event lines (peak VRAM) and the run's ``state.json`` (preset, name) → a :class:`RunSummary`.

- steps: the last progress event's step / total (planned total from ``started`` otherwise);
- time: the ``finished`` event's duration, else the span of the events;
- s/step: the steady-state rate, warm-up excluded: ``lorakit.rate``'s one definition (the
  median of the per-step intervals; the same figure ``runs show`` and ``bench`` print);
- images/s: batch size (``dataset`` event) × GPUs (``--num_processes`` in the ``started``
  argv) ÷ s/step;
- losses: per step from sd-scripts' TensorBoard logs (``loss/current``, full precision; passed
  in as :class:`StepScalars`, read by ``lorakit.kohya.tblog``) when the run has them, else the
  progress bar's 3-digit running mean (``avr_loss`` of the progress events) with a note saying
  so; the final loss (sd-scripts' running mean at the last step, and the smoothed per-step loss)
  and the mean of the per-step losses;
- peak VRAM: any event's ``peak_vram_gib`` — a number, or ``{gpu index: GiB}`` — max per GPU.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorakit import rate
from lorakit.events import (
    Checkpoint,
    DatasetSummary,
    ErrorEvent,
    Event,
    Finished,
    Progress,
    Sample,
    Started,
    StateSaved,
    WarningEvent,
)
from lorakit.rate import WARMUP_STEPS as WARMUP_STEPS

SOURCE_TENSORBOARD = "tensorboard"
SOURCE_PROGRESS = "progress bar"


@dataclass(frozen=True)
class StepScalars:
    """Per-step values read from the run's TensorBoard logs (step → value), and why there are
    none when there are none."""

    loss: Mapping[int, float] = field(default_factory=dict)
    average: Mapping[int, float] = field(default_factory=dict)
    note: str | None = None


@dataclass(frozen=True)
class LossPoint:
    step: int
    loss: float | None
    avr_loss: float | None


@dataclass(frozen=True)
class CheckpointRow:
    path: str
    step: int | None
    epoch: int | None
    kind: str = "lora"  # lora | state


@dataclass(frozen=True)
class RunSummary:
    name: str
    preset: str | None
    status: str  # done | failed | interrupted | running
    exit_code: int | None
    step: int
    total_steps: int | None
    duration_s: float | None
    s_per_step: float | None
    images_per_s: float | None
    batch_size: int | None
    n_gpus: int
    final_loss: float | None
    avg_loss: float | None
    losses: tuple[LossPoint, ...]
    checkpoints: tuple[CheckpointRow, ...]
    samples: tuple[str, ...]
    peak_vram_gib: Mapping[str, float] = field(default_factory=dict)
    lora: str | None = None
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    epochs: int | None = None
    loss_source: str = SOURCE_PROGRESS  # where the per-step curve comes from
    loss_note: str | None = None  # why there is no per-step loss (the fallback said out loud)
    final_smoothed_loss: float | None = None  # the smoothed per-step loss at the last step

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "preset": self.preset,
            "status": self.status,
            "exit_code": self.exit_code,
            "step": self.step,
            "total_steps": self.total_steps,
            "epochs": self.epochs,
            "duration_s": self.duration_s,
            "s_per_step": self.s_per_step,
            "images_per_s": self.images_per_s,
            "batch_size": self.batch_size,
            "n_gpus": self.n_gpus,
            "final_loss": self.final_loss,
            "avg_loss": self.avg_loss,
            "final_smoothed_loss": self.final_smoothed_loss,
            "loss_source": self.loss_source,
            "loss_note": self.loss_note,
            "checkpoints": [
                {"path": c.path, "step": c.step, "epoch": c.epoch, "kind": c.kind} for c in self.checkpoints
            ],
            "samples": list(self.samples),
            "peak_vram_gib": dict(self.peak_vram_gib),
            "lora": self.lora,
            "errors": list(self.errors),
            "warnings": list(self.warnings),
        }


def _num_processes(argv: Sequence[str]) -> int:
    for i, a in enumerate(argv):
        if a.startswith("--num_processes="):
            value = a.split("=", 1)[1]
        elif a == "--num_processes" and i + 1 < len(argv):
            value = argv[i + 1]
        else:
            continue
        if value.isdigit():
            return max(1, int(value))
    return 1


def steady_s_per_step(progress: Sequence[Progress]) -> float | None:
    """Kept name: ``lorakit.rate.steady_s_per_step`` (the whole-run figure)."""
    return rate.steady_s_per_step(progress)


def peak_vram(raw: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    peaks: dict[str, float] = {}
    for line in raw:
        value = line.get("peak_vram_gib")
        items: list[tuple[str, Any]]
        if isinstance(value, int | float):
            items = [("0", value)]
        elif isinstance(value, Mapping):
            items = [(str(k), v) for k, v in value.items()]
        else:
            continue
        for gpu, gib in items:
            if isinstance(gib, int | float):
                peaks[gpu] = max(peaks.get(gpu, 0.0), float(gib))
    return dict(sorted(peaks.items()))


def summarize(
    events: Sequence[Event],
    raw: Sequence[Mapping[str, Any]] = (),
    state: Mapping[str, Any] | None = None,
    run_dir: Path | None = None,
    scalars: StepScalars | None = None,
) -> RunSummary:
    state = state or {}
    started = [e for e in events if isinstance(e, Started)]
    finished = [e for e in events if isinstance(e, Finished)]
    progress = [e for e in events if isinstance(e, Progress)]
    datasets = [e for e in events if isinstance(e, DatasetSummary)]
    last_progress = progress[-1] if progress else None

    n_gpus = _num_processes(started[-1].argv) if started else 1
    batch = next((d.batch_size for d in reversed(datasets) if d.batch_size), None)
    total = (
        last_progress.total
        if last_progress
        else next((d.total_steps for d in reversed(datasets) if d.total_steps), None)
        or (started[-1].total_steps if started else None)
    )
    if finished and finished[-1].duration_s is not None:
        duration: float | None = finished[-1].duration_s
    elif len(events) >= 2:
        duration = max(e.t for e in events) - min(e.t for e in events)
    else:
        duration = None
    sps = steady_s_per_step(progress)
    per_step: dict[int, LossPoint] = {}
    for p in progress:
        if p.loss is not None or p.avr_loss is not None:
            per_step[p.step] = LossPoint(p.step, p.loss, p.avr_loss)
    source, note = SOURCE_PROGRESS, scalars.note if scalars else None
    if scalars is not None and scalars.loss:
        # the trainer's own per-step values replace the progress bar's rounded ones
        source, note = SOURCE_TENSORBOARD, scalars.note
        bar = {step: lp.avr_loss for step, lp in per_step.items()}
        per_step = {
            step: LossPoint(step, loss, scalars.average.get(step, bar.get(step))) for step, loss in scalars.loss.items()
        }
    losses = tuple(sorted(per_step.values(), key=lambda lp: lp.step))
    step_losses = [lp.loss for lp in losses if lp.loss is not None]
    avr = [lp.avr_loss for lp in losses if lp.avr_loss is not None]
    status = finished[-1].status if finished else str(state.get("status") or ("running" if events else "unknown"))
    name = str(state.get("name") or (run_dir.name if run_dir else "run"))
    epochs = next((d.epochs for d in reversed(datasets) if d.epochs), None)
    return RunSummary(
        name=name,
        preset=str(state["preset"]) if state.get("preset") else None,
        status=status,
        exit_code=finished[-1].exit_code if finished else None,
        step=last_progress.step if last_progress else 0,
        total_steps=total,
        duration_s=duration,
        s_per_step=sps,
        images_per_s=(batch * n_gpus / sps) if (batch and sps) else None,
        batch_size=batch,
        n_gpus=n_gpus,
        final_loss=avr[-1] if avr else (step_losses[-1] if step_losses else None),
        avg_loss=statistics.fmean(step_losses) if step_losses else (statistics.fmean(avr) if avr else None),
        losses=losses,
        checkpoints=tuple(
            CheckpointRow(e.path, e.step, e.epoch, "state" if isinstance(e, StateSaved) else "lora")
            for e in events
            if isinstance(e, Checkpoint | StateSaved)
        ),
        samples=tuple(dict.fromkeys(e.path for e in events if isinstance(e, Sample))),
        peak_vram_gib=peak_vram(raw),
        lora=finished[-1].lora if finished else None,
        errors=tuple(e.text() for e in events if isinstance(e, ErrorEvent)),
        warnings=tuple(e.message for e in events if isinstance(e, WarningEvent)),
        epochs=epochs,
        loss_source=source,
        loss_note=note,
        final_smoothed_loss=_last_smoothed(step_losses),
    )


def _last_smoothed(values: Sequence[float]) -> float | None:
    if not values:
        return None
    from lorakit.kohya.tblog import smoothed

    return smoothed(values)[-1]
