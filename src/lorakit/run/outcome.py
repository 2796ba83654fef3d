"""After the trainer exited: the outcome (diagnosis, LoRA check and copy, ``finished`` event,
``state.json``), and the facts the outcome needs from the plan (expected LoRA, context)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorakit.errors import EXIT_ENVIRONMENT, EXIT_OK, EXIT_TRAINING_FAILED
from lorakit.events import (
    EVENTS_FILE,
    ErrorEvent,
    Event,
    EventLog,
    Finished,
    WarningEvent,
)
from lorakit.run import folder
from lorakit.run.diagnose import Context, Diagnosis, diagnose
from lorakit.run.disk import release_reserve
from lorakit.run.signals import Signals as Signals

if TYPE_CHECKING:
    from lorakit.kohya.launch import LaunchPlan
    from lorakit.planning import PlannedRun
from lorakit.run.types import DISK_FIX, ChildResult, Observer, RunOutcome


def add_events(run_dir: Path, result: ChildResult, events: list[Event], observer: Observer | None) -> None:
    """Events decided after the trainer exited: into events.jsonl, the result and the view."""
    if not events:
        return
    with EventLog(run_dir / EVENTS_FILE) as log:
        for ev in events:
            ev = replace(ev, t=time.time()) if ev.t == 0.0 else ev
            log.append(ev)
            result.events.append(ev)
            if observer is not None:
                observer.event(ev)


def outcome_of(
    result: ChildResult,
    run_dir: Path,
    *,
    final_lora: Path | None,
    ctx: Context,
) -> tuple[str, int, Diagnosis | None]:
    """(status, exit code, diagnosis) of a trainer process."""
    errors = [e for e in result.events if isinstance(e, ErrorEvent)]
    lora_missing = final_lora is not None and not final_lora.is_file()
    # a stop request the trainer did not act on before it finished is no interruption
    completed = result.returncode == 0 and final_lora is not None and not lora_missing
    diag = diagnose(
        returncode=result.returncode,
        errors=errors,
        exceptions=[x.line for x in result.parser.exceptions],
        tail=list(result.parser.tail),
        interrupted=result.interrupted and not completed,
        lora_missing=lora_missing,
        ctx=ctx,
    )
    if diag is None:
        return "done", EXIT_OK, None
    return diag.status, diag.exit_code, diag


def finish_run(
    run_dir: Path,
    result: ChildResult,
    *,
    final_lora: Path | None,
    expected: Any | None = None,
    lora_folders: list[Path] | None = None,
    ctx: Context | None = None,
    observer: Observer | None = None,
) -> RunOutcome:
    """Diagnose, verify + copy the LoRA on success, write ``finished`` and the final state."""
    from lorakit.run.finish import copy_lora, verify_lora

    ctx = ctx or Context()
    release_reserve(run_dir)  # room for the outcome, even when the trainer filled the disk
    status, code, diag = outcome_of(result, run_dir, final_lora=final_lora, ctx=ctx)
    stopped = _stopped_diagnosis(result)
    if stopped is not None and status != "done":
        status, code, diag = stopped.status, stopped.exit_code, stopped
    copies: list[str] = []
    problems: list[str] = []
    extra: list[Event] = []
    if diag is not None and not any(isinstance(e, ErrorEvent) for e in result.events) and diag.kind != "interrupted":
        extra.append(ErrorEvent(kind=diag.kind, message=diag.message, fix=diag.fix, evidence=diag.evidence))
    lora = final_lora if (final_lora is not None and final_lora.is_file()) else None
    if status == "done" and lora is not None and expected is not None:
        check = verify_lora(lora, expected)
        problems = check.problems
        if problems:
            status, code = "failed", EXIT_TRAINING_FAILED
            msg = f"the final LoRA {lora.name} does not match the spec: " + "; ".join(problems)
            fix = "check the trainer version and the run's command.txt"
            if not check.tensors:  # not a whole safetensors file
                msg = f"the final LoRA {lora.name} is incomplete: " + "; ".join(problems)
                fix = "it was cut short (a full disk, or the trainer killed while saving): free space, then train again"
            diag = Diagnosis("crash", msg, fix, code)
            extra.append(ErrorEvent(kind="crash", message=msg, fix=diag.fix))
    if status == "done" and lora is not None:
        for dest in lora_folders or []:
            try:
                c = copy_lora(lora, Path(dest))
                copies.append(str(c.dest))
                if c.action == "renamed":
                    extra.append(WarningEvent(code="copy_renamed", message=c.describe()))
            except OSError as exc:
                extra.append(
                    WarningEvent(
                        code="copy_failed",
                        message=f"could not copy {lora.name} to {dest}: {exc}",
                        fix="copy it by hand from the run folder",
                    )
                )
    finished = Finished(
        status=status,
        exit_code=code,
        duration_s=round(result.duration_s, 3),
        lora=str(lora) if lora and status == "done" else None,  # never a half-written file
        peak_vram_gib=result.peak_vram_gib,
    )
    unrecorded: list[str] = []
    with EventLog(run_dir / EVENTS_FILE) as log:
        for ev in [*extra, finished]:
            log.append(ev)
            if observer is not None:
                observer.event(ev)
        if not log.flush() and log.problem:
            unrecorded.append(log.problem)
    events = result.events + extra + [finished]
    try:
        folder.update_state(
            run_dir,
            last_resort=True,
            status=status,
            exit_code=code,
            returncode=result.returncode,
            finished_at=finished.t,
            pid=None,
            lora=finished.lora,
            copies=copies,
            diagnosis=None if diag is None else {"kind": diag.kind, "message": diag.message, "fix": diag.fix},
        )
    except OSError as exc:
        unrecorded.append(f"cannot write {folder.STATE_FILE}: {exc.strerror or exc}")
    lora = lora if status == "done" else None
    out = RunOutcome(run_dir, status, code, result.returncode, diag, events, result.duration_s, lora, copies, problems)
    out.unrecorded = unrecorded
    return out


def _stopped_diagnosis(result: ChildResult) -> Diagnosis | None:
    """lorakit stopped the trainer for a full disk or a stall, or the trainer hit a full disk."""
    if result.stopped_for == "disk":
        return Diagnosis("disk_full", result.stop_message or "the disk is full", DISK_FIX, EXIT_ENVIRONMENT)
    if result.stopped_for == "stall":
        msg = result.stop_message or "the trainer stopped printing"
        fix = "`lorakit runs tail RUN` shows where it stopped; `lorakit resume RUN` continues from the last state"
        return Diagnosis("stall", f"lorakit stopped a stalled trainer: {msg}", fix, EXIT_TRAINING_FAILED)
    if result.returncode not in (0, None) and any("No space left on device" in line for line in result.parser.tail):
        return Diagnosis("disk_full", "the trainer ran out of disk space (No space left on device)", DISK_FIX,
                         EXIT_ENVIRONMENT, evidence="No space left on device")  # fmt: skip
    return None


def expected_lora(planned: PlannedRun) -> Any:
    """The Expected (finish.py) for a planned run's spec."""
    from lorakit.config.schema import LYCORIS_KINDS
    from lorakit.run.finish import Expected

    spec = planned.spec
    lycoris = spec.network.kind in LYCORIS_KINDS
    return Expected(
        module="lycoris.kohya" if lycoris else spec.family.lora_module,
        dim=spec.network.dim,
        alpha=spec.network.alpha,
        unet_only=spec.training.unet_only,
        plain_lora=not lycoris and spec.family.lora_rank_check,
    )


def context_for(planned: PlannedRun, trainer_python: str | None = None) -> Context:
    spec = planned.spec
    return Context(
        trainer_python=trainer_python or planned.plan.argv[0],
        sd_scripts=str(planned.plan.cwd),
        precision=spec.training.precision,
        lr=spec.optimizer.lr,
        no_half_vae=spec.training.no_half_vae,
        family=spec.model.family,
        gradient_checkpointing=spec.training.gradient_checkpointing,
        batch_size=spec.training.batch_size,
    )


def final_lora_path(plan: LaunchPlan, output_name: str) -> Path:
    """sd-scripts writes the last LoRA as ``<output_dir>/<output_name>.safetensors``."""
    return plan.run_dir / f"{output_name}.safetensors"
