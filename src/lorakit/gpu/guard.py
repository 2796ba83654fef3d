"""The GPU checks before a real launch (the impure side of gpu/): a usable GPU
(``require_gpu``), a running ComfyUI asked to free its VRAM (``free_comfyui``), and the fit's
NVML reading (``precheck``, which feeds the pure ``gpu.fit.check_fit``). The fit guard,
``--fastest`` and the ``--auto-fit`` retry are in ``lorakit.training`` (they plan and run).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lorakit.config.schema import TrainSpec
    from lorakit.dataset.plan import DatasetPlan
    from lorakit.gpu.fit import FitReport


ALLOW_NO_GPU_ENV = "LORAKIT_ALLOW_NO_GPU"


def require_gpu(gpu_index: int) -> None:
    """A real run needs an NVIDIA GPU: without one (no driver, no NVML, no such GPU) raise
    EnvironmentProblem (exit 3) before any trainer starts, instead of launching sd-scripts to
    crash. ``LORAKIT_ALLOW_NO_GPU=1`` skips the check (a stand-in trainer in CI, or CPU trials)."""
    import os

    from lorakit.errors import EnvironmentProblem
    from lorakit.gpu import nvml

    if os.environ.get(ALLOW_NO_GPU_ENV) == "1":
        return
    try:
        nvml.gpu(gpu_index, processes=False)
    except EnvironmentProblem as exc:
        raise EnvironmentProblem(
            f"no usable NVIDIA GPU, and sd-scripts needs one to train: {exc.message}",
            fix="run on a machine with an NVIDIA GPU and driver (`nvidia-smi` must work; `lorakit doctor` checks); "
            "`lorakit train ... --dry-run` plans and prints the command without a GPU",
        ) from None


def free_comfyui(spec: TrainSpec, gpu_index: int) -> str | None:
    """Ask a running ComfyUI to unload its models (config `comfyui`); None when none answers."""
    c = spec.comfyui
    if not c.free_before_train:
        return None
    from lorakit.gpu import comfyui

    result = comfyui.free(c.url, allow_remote=c.allow_remote, gpu_index=gpu_index)
    return None if not result.reachable else result.message


def precheck(
    spec: TrainSpec, dataset_plan: DatasetPlan | None, gpu_index: int = 0, *, fastest: bool = False
) -> FitReport:
    """What ``lorakit train`` runs before launch: the GPU read through NVML (here, the impure
    side), then the pure fit (``gpu.fit.check_fit``). No GPU/driver → a skipped report with a note.

    Usage in the runner::

        report = precheck(spec, dataset_plan, gpu_index)
        if report.blocking and not force:
            raise report.refusal()      # ConfigError → exit 2, with the suggestions
        for note in report.notes: warn(note)

    ``train --fastest``: ``precheck(..., fastest=True).fastest.option.overrides()`` are the
    ``key=value`` overrides to add to the request before planning the run again.
    """
    from lorakit.errors import EnvironmentProblem
    from lorakit.gpu import nvml
    from lorakit.gpu.estimate import shape_from_spec
    from lorakit.gpu.fit import Budget, FitReport, check_fit, run_facts

    try:
        info = nvml.gpu(gpu_index)
    except EnvironmentProblem as exc:
        return FitReport(verdict="skipped", notes=(f"VRAM check skipped: {exc.message}",))
    return check_fit(shape_from_spec(spec), Budget.from_gpu(info), run_facts(spec, dataset_plan), want_fastest=fastest)
