"""What `lorakit train` does between planning and launch, on the GPU side: free a running
ComfyUI, check the VRAM fit (refuse a config that clearly does not fit unless forced),
apply the speed fit (`--fastest`), and build the `--auto-fit` retry after an OOM.

The decisions are the fit module's (pure, tested with GPU facts as data); this module only
strings them together for the train command so the CLI holds no logic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from lorakit.gpu.fit import FitReport, precheck

if TYPE_CHECKING:
    from lorakit.config.schema import TrainSpec
    from lorakit.dataset.plan import DatasetPlan
    from lorakit.planning import PlannedRun, PlanRequest
    from lorakit.run.runner import RunOutcome


@dataclass
class Guarded:
    request: PlanRequest  # the request to launch (with the --fastest changes, if any)
    report: FitReport
    notes: list[str] = field(default_factory=list)


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

    gpus = spec.training.gpus or [gpu_index]  # every GPU of the run: ComfyUI on any of them is freed
    result = comfyui.free(c.url, allow_remote=c.allow_remote, gpu_index=gpus)
    return None if not result.reachable else result.message


def guard(req: PlanRequest, spec: TrainSpec, dataset: DatasetPlan, *, force: bool, fastest: bool) -> Guarded:
    """ComfyUI, then the fit: raises the refusal (ConfigError, exit 2) when the config clearly
    does not fit and ``force`` is off; with ``fastest``, the request gets the fastest fitting
    batch/GC/precision (image visits kept)."""
    gpu_index = (spec.training.gpus or [0])[0]
    notes: list[str] = []
    freed = free_comfyui(spec, gpu_index)
    if freed:
        notes.append(freed)
    report = precheck(spec, dataset, gpu_index, fastest=fastest)
    notes += list(report.notes)
    if fastest and report.fastest is not None:
        plan = report.fastest
        notes.append(
            f"--fastest: {', '.join(plan.option.overrides()) or 'no change'} "
            f"({plan.speedup:.1f}× the images/s; {plan.lr_rule})"
        )
        return Guarded(replace(req, overrides=(*req.overrides, *plan.option.overrides())), report, notes)
    refusal = report.refusal()
    if refusal is not None:
        if not force:
            raise refusal
        notes.append("--force: launching although the estimate says it does not fit")
    return Guarded(req, report, notes)


# an OOM with the config as it was: the generic ladder when the estimate saw no problem
_LADDER: tuple[tuple[str, Callable[[TrainSpec], bool]], ...] = (
    ("training.gradient_checkpointing=true", lambda s: not s.training.gradient_checkpointing),
    (
        "training.cache_text_encoder_outputs=true",
        lambda s: s.training.unet_only and not s.training.cache_text_encoder_outputs,
    ),
    ("optimizer.name=adamw8bit", lambda s: s.optimizer.name == "adamw"),
)


def auto_fit_for(req: PlanRequest) -> Callable[[PlannedRun, RunOutcome], PlanRequest | None]:
    """``train --auto-fit``: the runner calls the returned function after an OOM and retries
    once with the request it returns."""

    def retry(planned: PlannedRun, outcome: RunOutcome) -> PlanRequest | None:
        return retry_request(req, planned)

    return retry


def retry_request(req: PlanRequest, planned: PlannedRun) -> PlanRequest | None:
    """The fit's cheapest suggestion for this GPU, else the first step of a fixed ladder (GC on,
    cached TE outputs, 8-bit AdamW, half the batch). None when nothing is left to try."""
    spec = planned.spec
    report = precheck(spec, planned.dataset, (spec.training.gpus or [0])[0])
    if report.suggestions:
        return replace(req, overrides=(*req.overrides, *report.suggestions[0].overrides()))
    for override, applies in _LADDER:
        if applies(spec):
            return replace(req, overrides=(*req.overrides, override))
    if spec.training.batch_size > 1:
        return replace(req, overrides=(*req.overrides, f"training.batch_size={spec.training.batch_size // 2}"))
    return None
