"""Repeats, epochs and steps: the arithmetic users do by hand. Pure functions.

- steps = ceil(Σ images × repeats ÷ batch) × epochs (the same math as ``plan.DatasetPlan.steps``);
- ~100 visits per image for a character LoRA; visits per image = repeats × epochs;
- multi-concept balancing: the largest concept gets repeats r, every other concept
  round(largest_images × r ÷ its_images), so each concept gives the same visits per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lorakit.dataset.plan import StepsMath
from lorakit.errors import DatasetError

DEFAULT_VISITS = 100
DEFAULT_EPOCHS = 10


def round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def balance_repeats(image_counts: Sequence[int], largest_repeats: int) -> list[int]:
    """Repeats per concept so each concept gets the largest concept's visits per epoch."""
    if not image_counts or max(image_counts) == 0:
        return [largest_repeats for _ in image_counts]
    target = max(image_counts) * largest_repeats
    return [max(1, round_half_up(target / n)) if n else 0 for n in image_counts]


@dataclass(frozen=True)
class Schedule:
    images: tuple[int, ...]  # kept images per concept
    repeats: tuple[int, ...]
    epochs: int
    batch_size: int
    how: str  # one line: where repeats/epochs came from
    reg_samples: int = 0  # regularization samples per epoch, as sd-scripts balances them (plan.reg_samples_per_epoch)

    @property
    def visits_per_epoch(self) -> tuple[int, ...]:
        return tuple(i * r for i, r in zip(self.images, self.repeats, strict=True))

    @property
    def images_x_repeats(self) -> int:
        return sum(self.visits_per_epoch)

    @property
    def steps(self) -> StepsMath:
        """The one steps formula (``dataset.plan.StepsMath``), on one GPU."""
        samples = self.images_x_repeats + self.reg_samples
        return StepsMath.compute(samples, self.batch_size, self.epochs, None, reg_samples=self.reg_samples)

    @property
    def steps_per_epoch(self) -> int:
        return self.steps.steps_per_epoch

    @property
    def total_steps(self) -> int:
        return self.steps.total_steps

    @property
    def visits_per_image(self) -> tuple[int, ...]:
        return tuple(r * self.epochs for r in self.repeats)

    def formula(self) -> str:
        return self.steps.formula()

    def as_dict(self) -> dict[str, object]:
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "images_x_repeats": self.images_x_repeats,
            "reg_samples": self.reg_samples,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            "how": self.how,
        }


def choose_schedule(
    image_counts: Sequence[int],
    *,
    repeats: int | None = None,
    visits: int | None = None,
    epochs: int | None = None,
    batch_size: int = 1,
) -> Schedule:
    """Pick repeats (per concept, balanced) and epochs.

    ``repeats`` fixes the largest concept's repeats; ``visits`` (default 100) is the wanted
    repeats × epochs for the largest concept's images. Epochs default to 10 (fewer when the
    visits are fewer), or to visits ÷ repeats when ``repeats`` is given.
    """
    if repeats is not None and visits is not None:
        raise DatasetError("--repeats and --visits both given", fix="pass one: --repeats N or --visits N")
    for name, v in (("--repeats", repeats), ("--visits", visits), ("--epochs", epochs), ("--batch-size", batch_size)):
        if v is not None and v < 1:
            raise DatasetError(f"{name} must be 1 or more (got {v})", fix=f"pass {name} 1 or more")
    counts = tuple(image_counts)
    if repeats is not None:
        ep = epochs if epochs is not None else max(1, round_half_up(DEFAULT_VISITS / repeats))
        how = f"--repeats {repeats}" + (f", --epochs {epochs}" if epochs else f", epochs for ~{DEFAULT_VISITS} visits")
        r = repeats
    else:
        want = visits if visits is not None else DEFAULT_VISITS
        ep = epochs if epochs is not None else min(DEFAULT_EPOCHS, want)
        r = max(1, round_half_up(want / ep))
        default = "" if visits is not None else " (default)"
        how = f"~{want} visits per image{default} = {r} repeats × {ep} epochs"
    reps = balance_repeats(counts, r) if len(counts) > 1 else [r for _ in counts]
    if len(counts) > 1:
        how += "; concepts balanced to the same visits per epoch"
    return Schedule(counts, tuple(reps), ep, batch_size, how)
