"""Training across several GPUs of one machine (accelerate's data-parallel launch).

``--gpus 0,1`` / ``all`` becomes ``training.gpus``; :func:`lorakit.kohya.launch.accelerate_args`
then emits ``--multi_gpu --num_processes N --gpu_ids ...``. Every GPU runs one process with
the whole model and its own batch of ``training.batch_size`` images, so:

- VRAM is needed per GPU (the single-GPU estimate, on each of them);
- the effective batch is ``batch_size × N``;
- sd-scripts divides the batches of an epoch between the processes: steps per epoch are
  ``ceil(batches / N)`` (train_network.py: ``len(train_dataloader) / num_processes``), so with
  ``max_train_epochs`` the step count is ``images × repeats × epochs ÷ (batch × N)``; with
  ``max_train_steps`` the step count stays and each step sees N× the images, so the run
  covers N× the epochs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from lorakit.dataset.plan import StepsMath
from lorakit.errors import ConfigError


def parse_gpus(text: str | None, device_count: Callable[[], int] | None = None) -> list[int] | None:
    """``"0,1"`` → [0, 1]; ``"all"`` → every GPU (``device_count()`` asked only then);
    ``None``/``""`` → None (the first GPU, sd-scripts' default)."""
    if text is None or not text.strip():
        return None
    value = text.strip().lower()
    if value == "all":
        if device_count is None:
            raise ConfigError(["--gpus all: the number of GPUs is unknown here"], fix="list the GPU ids: --gpus 0,1")
        n = device_count()
        if n < 1:
            raise ConfigError(["--gpus all: no GPU found"], fix="check `lorakit doctor`, or list the GPU ids")
        return list(range(n))
    ids: list[int] = []
    for part in value.split(","):
        part = part.strip()
        if not part.isdigit():
            raise ConfigError(
                [f"--gpus {text}: '{part}' is not a GPU index"],
                fix="give GPU indices as nvidia-smi numbers them, comma-separated (--gpus 0,1), or --gpus all",
            )
        if int(part) in ids:
            raise ConfigError([f"--gpus {text}: GPU {part} is listed twice"])
        ids.append(int(part))
    return ids


def gpus_override(gpus: list[int] | None) -> list[str]:
    """The ``--set`` override that puts ``gpus`` into the spec (empty when None)."""
    if gpus is None:
        return []
    return ["training.gpus=[" + ",".join(str(g) for g in gpus) + "]"]


@dataclass(frozen=True)
class MultiGpuSteps:
    n_gpus: int
    per_gpu_batch: int
    effective_batch: int
    images_x_repeats: int  # per epoch, all concepts
    batches_per_epoch: int  # single-GPU batches of one epoch
    steps_per_epoch: int  # optimizer steps per epoch, each GPU doing one batch per step
    epochs: int
    total_steps: int
    max_steps: int | None = None

    @property
    def images_per_step(self) -> int:
        return self.effective_batch

    def formula(self) -> str:
        n = self.n_gpus
        if self.max_steps is not None:
            return (
                f"{self.images_x_repeats} images×repeats ÷ (batch {self.per_gpu_batch} × {n} GPU(s)) = "
                f"{self.steps_per_epoch} steps/epoch; max_steps {self.max_steps} → {self.epochs} epoch(s); "
                f"effective batch {self.effective_batch}"
            )
        return (
            f"{self.images_x_repeats} images×repeats × {self.epochs} epochs ÷ (batch {self.per_gpu_batch} × {n} "
            f"GPU(s)) = {self.total_steps} steps; effective batch {self.effective_batch}"
        )


def multigpu_steps(steps: StepsMath, n_gpus: int) -> MultiGpuSteps:
    """The steps math of ``steps`` (the single-GPU plan) trained on ``n_gpus`` GPUs."""
    n = max(1, n_gpus)
    per_epoch = math.ceil(steps.batches_per_epoch / n)
    if steps.max_steps is not None:
        epochs = math.ceil(steps.max_steps / per_epoch)
        total = steps.max_steps
    else:
        epochs = steps.epochs
        total = per_epoch * epochs
    return MultiGpuSteps(
        n_gpus=n,
        per_gpu_batch=steps.batch_size,
        effective_batch=steps.batch_size * n,
        images_x_repeats=steps.images_x_repeats,
        batches_per_epoch=steps.batches_per_epoch,
        steps_per_epoch=per_epoch,
        epochs=epochs,
        total_steps=total,
        max_steps=steps.max_steps,
    )
