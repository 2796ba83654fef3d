"""The supervised part of a real run (``lorakit.training`` plans, retries and reports around it).

:func:`run_supervised`: write the plan's files into the run folder, lock the run's GPUs,
supervise the trainer, diagnose a failure, verify and copy the final LoRA, write the
``finished`` event and ``state.json``; it returns a :class:`RunOutcome`.

The pieces, one module each: ``run/types.py`` (Snapshot, Observer, Child, Options, ChildResult,
RunOutcome), ``run/child.py`` (start/stop the child, the watchdog), ``run/supervisor.py``
(:func:`supervise`: the loop over the child's output), ``run/outcome.py`` (:func:`finish_run`
and the facts it needs), ``run/signals.py`` (:class:`Signals`). The names are re-exported here.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from lorakit.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_TRAINING_FAILED, EnvironmentProblem
from lorakit.run import folder
from lorakit.run.diagnose import Context
from lorakit.run.disk import Need
from lorakit.run.reaper import start_ticks
from lorakit.run.signals import Signals as Signals

if TYPE_CHECKING:
    from lorakit.planning import PlannedRun
from lorakit.run.outcome import add_events as add_events
from lorakit.run.outcome import context_for as context_for
from lorakit.run.outcome import expected_lora as expected_lora
from lorakit.run.outcome import final_lora_path as final_lora_path
from lorakit.run.outcome import finish_run as finish_run
from lorakit.run.outcome import outcome_of as outcome_of
from lorakit.run.supervisor import supervise as supervise
from lorakit.run.types import DISK_FIX as DISK_FIX
from lorakit.run.types import SAMPLE_SUFFIXES as SAMPLE_SUFFIXES
from lorakit.run.types import Child as Child
from lorakit.run.types import ChildResult as ChildResult
from lorakit.run.types import Observer as Observer
from lorakit.run.types import Options as Options
from lorakit.run.types import RunOutcome as RunOutcome
from lorakit.run.types import Snapshot as Snapshot


def write_plan_files(planned: PlannedRun) -> None:
    """spec.yaml, command.txt, dataset.toml (+ sample_prompts.txt), atomically."""
    import yaml

    from lorakit.planning import spec_dump

    files = planned.plan.files() | {folder.SPEC_FILE: yaml.safe_dump(spec_dump(planned.spec), sort_keys=False)}
    folder.write_files(planned.plan.run_dir, files)


def run_supervised(
    planned: PlannedRun,
    *,
    observer: Observer | None = None,
    options: Options | None = None,
    extra_argv: list[str] | None = None,
) -> RunOutcome:
    """The supervised run: files → GPU lock → trainer → diagnosis → LoRA check + copy →
    finished event (the report and the signal handler are ``lorakit.training.run_planned``'s).

    ``planned.plan.run_dir`` must exist (``folder.create_run_dir``). ``extra_argv`` is
    appended to the plan's argv (``lorakit resume`` adds ``--resume=DIR``)."""
    plan, spec = planned.plan, planned.spec
    run_dir = plan.run_dir
    _prepare_folder(planned)
    opts = replace(options) if options is not None else Options()
    if opts.disk is None:
        opts.disk = disk_need(spec)
    _stall_env(opts)
    opts.observer = observer if observer is not None else opts.observer
    if opts.total_steps is None:
        opts.total_steps = plan.steps.total_steps
    opts.batch_size = spec.training.batch_size
    if spec.training.gpus:
        opts.gpu_index = spec.training.gpus[0]
    if opts.context == Context():
        opts.context = context_for(planned)
    if opts.expected_s_per_step is None and opts.gpu_index is not None:
        from lorakit.run.watch import expected_s_per_step

        expected = expected_s_per_step(spec, opts.gpu_index)
        if expected is not None:
            opts.expected_s_per_step = expected[0]
    folder.update_state(
        run_dir,
        status="running",
        lorakit_pid=os.getpid(),
        lorakit_started=start_ticks(os.getpid()),  # tells a reused pid from this process
        cwd=os.getcwd(),
        output_name=spec.output.name,
        folder=str(run_dir),
        preset=planned.loaded.preset,
        total_steps=plan.steps.total_steps,
        save_state=spec.saving.save_state,
        resumed_from=opts.resumed_from,
    )
    argv = list(plan.argv) + list(extra_argv or [])
    child = Child(argv=argv, cwd=plan.cwd, env=dict(plan.env))
    from lorakit.run.lock import GpuBusy, gpu_lock

    # every GPU of the run is locked for its whole life: a second lorakit training on one of
    # them is refused (exit 3) instead of both dying of OOM
    try:
        with gpu_lock(spec.training.gpus, run=str(run_dir)) as lock:
            opts.hold_fds = lock.fds()  # the watchdog holds them too: kill -9 frees no GPU early
            result = supervise(child, run_dir, opts)
            if opts.after_exit is not None:
                add_events(run_dir, result, opts.after_exit(result), opts.observer)
    except GpuBusy:
        folder.update_state(run_dir, status="refused", pid=None)
        raise
    outcome = finish_run(
        run_dir,
        result,
        final_lora=final_lora_path(plan, spec.output.name),
        expected=expected_lora(planned),
        lora_folders=list(spec.output.lora_folders),
        ctx=opts.context,
        observer=opts.observer,
    )
    if opts.observer is not None:
        opts.observer.stop()
    return outcome


def _prepare_folder(planned: PlannedRun) -> None:
    """Free space checked, the plan's files written, the outcome's reserve made. A new run
    folder that cannot take them is removed again (it holds nothing but lorakit's own files),
    and the problem is one message (exit 3), not a traceback."""
    from lorakit.run.disk import check_before, make_reserve

    run_dir = planned.plan.run_dir
    fresh = not any(run_dir.iterdir())
    try:
        check_before(run_dir, disk_need(planned.spec))
        write_plan_files(planned)
    except (EnvironmentProblem, OSError) as exc:
        if fresh:
            for name in [*planned.plan.files(), folder.SPEC_FILE]:
                with contextlib.suppress(OSError):
                    (run_dir / name).unlink()
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only when empty: never anything but our files
        if isinstance(exc, EnvironmentProblem):
            raise
        raise EnvironmentProblem(
            f"cannot write the run's files in {run_dir}: {exc.strerror or exc}", fix=DISK_FIX.replace(" RUN`", "`")
        ) from None
    make_reserve(run_dir)


def disk_need(spec: Any) -> Need:
    from lorakit.run.disk import need

    return need(spec)


def _stall_env(opts: Options) -> None:
    """LORAKIT_STALL_FACTOR / LORAKIT_STALL_FLOOR_S: when a silent trainer counts as stalled."""
    for var, attr in (("LORAKIT_STALL_FACTOR", "stall_factor"), ("LORAKIT_STALL_FLOOR_S", "stall_floor_s")):
        with contextlib.suppress(ValueError):
            if os.environ.get(var):
                setattr(opts, attr, float(os.environ[var]))


EXIT_FOR_STATUS = {"done": EXIT_OK, "failed": EXIT_TRAINING_FAILED, "interrupted": EXIT_INTERRUPTED}
