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

from collections.abc import Callable

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


def multigpu_steps(steps: StepsMath, n_gpus: int) -> StepsMath:
    """The steps math of ``steps`` (a single-GPU plan) trained on ``n_gpus`` GPUs."""
    return StepsMath.compute(
        steps.images_x_repeats, steps.batch_size, steps.epochs, steps.max_steps, n_gpus, steps.reg_samples
    )
