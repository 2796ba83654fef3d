"""One training, end to end, around the runner: plan once, guard the GPU, run, retry once after
an OOM (``--auto-fit``), write the report.

The runner (``run/runner.py``) only supervises a planned run and records its outcome; this
module is the one place that plans a new run folder, decides a retry, and writes the report.
``lorakit train``, ``lorakit bench`` and ``lorakit resume`` (and the web UI) call it.

Layer: above ``run`` and ``report`` (it may import both); only ``cli`` imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorakit.gpu.fit import FitReport
from lorakit.gpu.guard import precheck
from lorakit.planning import PlannedRun, PlanRequest, plan_resolved, resolve_spec
from lorakit.report.build import write_report_or_warn
from lorakit.run import folder
from lorakit.run.diagnose import Context
from lorakit.run.runner import Observer, Options, RunOutcome, Signals, run_supervised

if TYPE_CHECKING:
    from lorakit.config.loader import LoadedSpec
    from lorakit.config.schema import TrainSpec
    from lorakit.dataset.plan import DatasetPlan
    from lorakit.kohya.install import Trainer
    from lorakit.run.resume import ResumeCheck

# ``auto_fit(planned, outcome)``: called once when a run failed with CUDA OOM; returns the
# request to retry with (e.g. the fitted overrides added), or None to give up. ``lorakit train
# --auto-fit`` passes :func:`auto_fit_for` here.
AutoFit = Callable[[PlannedRun, RunOutcome], "PlanRequest | None"]

__all__ = [
    "AutoFit",
    "Guarded",
    "auto_fit_for",
    "guard",
    "plan_new_run",
    "resume_run",
    "retry_request",
    "run_planned",
    "start_run",
]


# -- plan ---------------------------------------------------------------------------------------
def plan_new_run(
    req: PlanRequest,
    trainer: Trainer,
    *,
    now: Any = None,
    loaded: tuple[LoadedSpec, list[str]] | None = None,
    create: bool = True,
) -> PlannedRun:
    """Plan a real run into a new run folder ``<output.folder>/<name>-<stamp>/`` (created unless
    ``create`` is off). ``loaded``: the spec already resolved from ``req`` (not loaded again).
    Nothing is created when the plan fails (bad config, dataset error)."""
    spec_and_warnings = loaded if loaded is not None else resolve_spec(req)
    spec = spec_and_warnings[0].spec
    run_dir = folder.run_dir_path(Path(spec.output.folder).expanduser(), spec.output.name, now).absolute()
    planned = plan_resolved(spec_and_warnings[0], spec_and_warnings[1], trainer, run_dir)
    if create:
        folder.create_run_dir(run_dir)
    return planned


# -- the GPU side between planning and launch -------------------------------------------------
@dataclass
class Guarded:
    request: PlanRequest  # the request to launch (with the --fastest changes, if any)
    report: FitReport
    notes: list[str] = field(default_factory=list)

    def replans(self, req: PlanRequest) -> bool:
        """Whether the launch needs a new plan (``--fastest`` changed the request)."""
        return self.request != req


def guard(req: PlanRequest, spec: TrainSpec, dataset: DatasetPlan, *, force: bool, fastest: bool) -> Guarded:
    """ComfyUI, then the fit: raises the refusal (ConfigError, exit 2) when the config clearly
    does not fit and ``force`` is off; with ``fastest``, the request gets the fastest fitting
    batch/GC/precision (image visits kept)."""
    from lorakit.gpu.guard import free_comfyui

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


def auto_fit_for(req: PlanRequest) -> AutoFit:
    """``train --auto-fit``: :func:`start_run` calls the returned function after an OOM and
    retries once with the request it returns."""

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


# -- run ----------------------------------------------------------------------------------------
def run_planned(
    planned: PlannedRun,
    *,
    observer: Observer | None = None,
    options: Options | None = None,
    extra_argv: list[str] | None = None,
) -> RunOutcome:
    """The real run: files → GPU lock → trainer → diagnosis → LoRA check + copy → finished
    event → report. ``planned.plan.run_dir`` must exist.

    lorakit's signal handler stays in place from before the trainer starts until the outcome
    (``finished``, ``state.json``, report) is written (:class:`Signals`)."""
    with Signals() as sigs:
        opts = replace(options) if options is not None else Options()
        opts.signals = sigs
        outcome = run_supervised(planned, observer=observer, options=opts, extra_argv=extra_argv)
        write_report_or_warn(outcome.run_dir)
        return outcome


def start_run(
    first: PlanRequest | PlannedRun,
    trainer: Trainer,
    *,
    observer: Observer | None = None,
    options: Options | None = None,
    auto_fit: AutoFit | None = None,
    on_planned: Callable[[PlannedRun], None] | None = None,
) -> RunOutcome:
    """Plan (unless ``first`` is already planned) → new run folder → train → check/copy the
    LoRA → report. The programmatic ``lorakit train``.

    With ``auto_fit``, an OOM failure is retried once, in a new run folder, with the request
    ``auto_fit`` returns. ``on_planned`` is called with each plan before it launches."""
    if isinstance(first, PlannedRun):
        planned = first
        if not planned.plan.run_dir.exists():
            folder.create_run_dir(planned.plan.run_dir)
    else:
        planned = plan_new_run(first, trainer)
    if on_planned is not None:
        on_planned(planned)
    outcome = run_planned(planned, observer=observer, options=options)
    if auto_fit is not None and outcome.diagnosis is not None and outcome.diagnosis.kind == "oom":
        retry = auto_fit(planned, outcome)
        if retry is not None:
            planned = plan_new_run(retry, trainer)
            if on_planned is not None:
                on_planned(planned)
            folder.update_state(planned.plan.run_dir, retry_of=str(outcome.run_dir))
            outcome = run_planned(planned, observer=observer, options=_fresh(options))
    return outcome


def _fresh(options: Options | None) -> Options | None:
    if options is None:
        return None
    return replace(options, total_steps=None, context=Context())


def resume_run(
    run_ref: str | Path,
    trainer: Trainer,
    *,
    runs_dir: Path = Path("runs"),
    observer: Observer | None = None,
) -> tuple[RunOutcome, ResumeCheck]:
    """Relaunch a run from its last saved state, in its own folder (``run.resume.prepare_resume``
    plans it); the outcome and the check of whether the trainer really continued."""
    from lorakit.run.resume import finish_resume, prepare_resume

    planned, opts, extra, check = prepare_resume(run_ref, trainer, runs_dir=runs_dir)
    outcome = run_planned(planned, observer=observer, options=opts, extra_argv=extra)
    finish_resume(planned.plan.run_dir, check)
    return outcome, check
