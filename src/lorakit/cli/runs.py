"""`lorakit runs list|show|tail`: the run folders under ``runs/`` (or --runs-dir), and the
helper `lorakit train` / `lorakit resume` use to launch a run and report its outcome."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from lorakit.cli._console import console, err_console

if TYPE_CHECKING:
    from lorakit.errors import LorakitError
    from lorakit.run.runner import RunOutcome

HELP = """Runs: list them, show one, follow its log.

Examples:

  lorakit runs list

  lorakit runs show last

  lorakit runs tail comic-style-20261123-203000 -f
"""

app = typer.Typer(help=HELP, no_args_is_help=True)

RunsDirOpt = typer.Option(
    Path("runs"),
    "--runs-dir",
    help="Folder holding the run folders (the config's output.folder).",
    envvar="LORAKIT_RUNS_DIR",
    file_okay=False,
)
RunArg = typer.Argument(..., help="Run folder path, its name (or a unique prefix) under --runs-dir, or 'last'.")


# -- launching (shared by train and resume) -----------------------------------------------------
def outcome_error(outcome: RunOutcome, save_state: bool | None = None) -> LorakitError | None:
    """The typed error for a failed/interrupted outcome (None when done). ``save_state``: whether
    the run saves its training state (False: the fix must not offer `lorakit resume`)."""
    from lorakit.errors import (
        EXIT_BAD_INPUT,
        EXIT_ENVIRONMENT,
        EXIT_INTERRUPTED,
        DatasetError,
        EnvironmentProblem,
        Interrupted,
        TrainingFailed,
    )

    for problem in outcome.unrecorded:  # the outcome stands, but the run folder does not say it
        err_console.print(f"[bold yellow]warning:[/] the outcome below is not recorded in the run folder: {problem}")
    d = outcome.diagnosis
    if outcome.status == "done" or d is None:
        return None
    name = shlex.quote(outcome.run_dir.name)
    where = f" (run folder {outcome.run_dir}; `lorakit runs tail {name}` shows the log)"
    cls: type[LorakitError] = {
        EXIT_INTERRUPTED: Interrupted,
        EXIT_ENVIRONMENT: EnvironmentProblem,
        EXIT_BAD_INPUT: DatasetError,
    }.get(d.exit_code, TrainingFailed)
    fix = d.fix
    if d.kind == "interrupted" and save_state is not None:
        fix = (
            f"continue it with `lorakit resume {name}`, or start again"
            if save_state
            else "start it again with `lorakit train` (this run saved no training state, so it cannot be "
            "resumed; set saving.save_state=true to make a run resumable)"
        )
    err = cls(d.message + where, fix=fix)
    err.exit_code = d.exit_code  # the diagnosis decides (a missing model path is 2, a tokenizer 3)
    return err


def print_outcome(outcome: RunOutcome) -> None:
    if outcome.status != "done":
        return
    console.print(f"[bold green]done[/] in {outcome.duration_s / 60:.1f} min — run folder {outcome.run_dir}")
    if outcome.lora is not None:
        console.print(f"LoRA: {outcome.lora}")
    for dest in outcome.copies:
        console.print(f"copied to {dest}")


def launch(req: Any, trainer: Any, *, quiet: bool, auto_fit: Any = None, stall_timeout: float | None = None) -> int:
    """Plan into a new run folder (``req``: a PlanRequest, or a PlannedRun planned once by the
    caller), train with the live/plain view, report; the exit code.
    A failure raises its typed error (one message + fix at the CLI edge)."""
    from lorakit.run.live import make_view
    from lorakit.run.runner import Options
    from lorakit.training import start_run

    saves_state: list[bool] = []

    def announce(planned: Any) -> None:
        saves_state.append(planned.spec.saving.save_state)
        for w in planned.warnings:
            err_console.print(f"[yellow]warning:[/] {w}")
        if not quiet:
            s = planned.plan.steps
            console.print(f"[bold]Run folder[/] {planned.plan.run_dir}")
            console.print(f"[bold]Steps[/] {s.formula()}")

    view = make_view(quiet=quiet, console=console)
    opts = Options(stall_timeout_s=stall_timeout) if stall_timeout is not None else None
    outcome = start_run(req, trainer, observer=view, options=opts, auto_fit=auto_fit, on_planned=announce)
    err = outcome_error(outcome, saves_state[-1] if saves_state else None)
    if err is not None:
        raise err
    print_outcome(outcome)
    return outcome.exit_code


# -- runs list / show / tail --------------------------------------------------------------------
def _fmt_time(t: Any) -> str:
    if not isinstance(t, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


@app.command("list")
def list_cmd(
    runs_dir: Path = RunsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the runs, oldest first."""
    from lorakit.run.folder import list_runs, run_status

    runs = list_runs(runs_dir)
    if as_json:
        print(
            json.dumps(
                [{**r.state, **_live(r.path, r.state), "name": r.name, "path": str(r.path)} for r in runs], indent=2
            )
        )
        return
    if not runs:
        console.print(f"no runs in {runs_dir}")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for col in ("run", "status", "step", "avg loss", "started", "LoRA"):
        table.add_column(col)
    for r in runs:
        s = {**r.state, **_live(r.path, r.state)}
        step = f"{s.get('step', 0)}/{s.get('total') or s.get('total_steps') or '?'}"
        loss = s.get("avr_loss")
        table.add_row(
            r.name,
            run_status(r.state),
            step,
            f"{loss:.4g}" if isinstance(loss, int | float) else "-",
            _fmt_time(s.get("started_at")),
            Path(s["lora"]).name if s.get("lora") and s.get("status") == "done" else "-",
        )
    console.print(table)


def _live(run_dir: Path, state: dict[str, Any]) -> dict[str, Any]:
    """What is newer than state.json (rewritten every few seconds): the status as it is
    (``lost`` when lorakit was killed) and the last progress event's step and loss."""
    from lorakit.events import EVENTS_FILE, Progress, event_from_dict
    from lorakit.run.folder import run_status

    out: dict[str, Any] = {"status": run_status(state)}
    try:
        with (run_dir / EVENTS_FILE).open("rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - 65536))
            tail = fh.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return out
    for line in reversed(tail):
        try:
            ev = event_from_dict(json.loads(line))
        except (ValueError, AttributeError):
            continue
        if isinstance(ev, Progress):
            if ev.step >= int(state.get("step") or 0):
                out.update(step=ev.step, total=ev.total, avr_loss=ev.avr_loss)
            break
    return out


def loss_info(run_dir: Path) -> dict[str, Any]:
    """The trainer's latest per-step loss from the run's TensorBoard logs (`logs/`), smoothed
    too; ``value`` is None (and ``note`` says why) when there is none."""
    from lorakit.kohya.tblog import logs_dir, smoothed
    from lorakit.run.losslog import read_run_scalars

    log = read_run_scalars(run_dir)
    series = log.series()
    last = series[-1] if series else None
    return {
        "step": last.step if last else None,
        "value": last.value if last else None,
        "smoothed": smoothed([p.value for p in series])[-1] if series else None,
        "logs": str(logs_dir(run_dir)) if logs_dir(run_dir).is_dir() else None,
        "note": log.note,
    }


def summarize(run_dir: Path) -> dict[str, Any]:
    """What `runs show` prints: state.json + figures from events.jsonl. ``summary`` is the run's
    :class:`lorakit.report.summary.RunSummary` (the report's own figures); ``s_per_step`` is its
    steady s/step (``lorakit.rate``'s one definition, the figure bench and the report print)."""
    from lorakit.events import (
        Checkpoint,
        DatasetSummary,
        ErrorEvent,
        Finished,
        Progress,
        Sample,
        Started,
        StateSaved,
        WarningEvent,
        read_events,
    )
    from lorakit.report.summary import summarize as run_summary
    from lorakit.run.folder import LOST, lost_message, read_state, run_status

    events = read_events(run_dir)
    state = read_state(run_dir)
    figures = run_summary(events, state=state, run_dir=run_dir)
    progress = [e for e in events if isinstance(e, Progress)]
    dataset = next((e for e in reversed(events) if isinstance(e, DatasetSummary)), None)
    finished = next((e for e in reversed(events) if isinstance(e, Finished)), None)
    return {
        "run": run_dir.name,
        "path": str(run_dir),
        "state": state,
        "status": run_status(state),
        "lost": lost_message(run_dir, state) if run_status(state) == LOST else None,
        "launches": sum(isinstance(e, Started) for e in events),
        "dataset": None if dataset is None else dataset.to_dict(),
        "last_progress": progress[-1].to_dict() if progress else None,
        "s_per_step": figures.s_per_step,
        "checkpoints": [e.path for e in events if isinstance(e, Checkpoint)],
        "states": [e.path for e in events if isinstance(e, StateSaved)],
        "samples": [e.path for e in events if isinstance(e, Sample)],
        "warnings": [
            {"code": e.code, "message": e.message, "fix": e.fix} for e in events if isinstance(e, WarningEvent)
        ],
        "errors": [{"kind": e.kind, "message": e.message, "fix": e.fix} for e in events if isinstance(e, ErrorEvent)],
        "finished": None if finished is None else finished.to_dict(),
        "loss": loss_info(run_dir),
        "summary": figures.as_dict(),
    }


@app.command("show")
def show_cmd(
    run: str = RunArg,
    runs_dir: Path = RunsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show a run: status, dataset figures, progress, checkpoints, warnings, diagnosis."""
    from lorakit.run.folder import find_run
    from lorakit.run.live import fmt_duration

    run_dir = find_run(run, runs_dir)
    info = summarize(run_dir)
    if as_json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return
    st = info["state"]
    console.print(f"[bold]{info['run']}[/]  {info['status']}  ({info['path']})")
    if info["status"] == "running" and isinstance(st.get("stalled_since"), int | float):
        console.print(f"[yellow]stalled:[/] no output from the trainer for {time.time() - st['stalled_since']:.0f} s")
    if info["lost"]:
        fix = (
            shlex.join(["lorakit", "resume", str(info["run"])])
            if st.get("save_state")
            else "start it again with `lorakit train`"
        )
        console.print(f"[red]{info['lost']}[/]\n  fix: {fix}")
    if info["dataset"]:
        d = info["dataset"]
        console.print(
            f"dataset: {d.get('images_x_repeats')} images×repeats, {d.get('batches_per_epoch')} batches/epoch, "
            f"{d.get('epochs')} epochs, {d.get('total_steps')} steps"
        )
    if info["last_progress"]:
        p = info["last_progress"]
        console.print(f"step {p['step']}/{p['total']}  avg loss {p.get('avr_loss')}")
    loss = info["loss"]
    if loss["value"] is not None:
        console.print(f"loss {loss['value']:.4g} at step {loss['step']} (smoothed {loss['smoothed']:.4g})")
    elif loss["note"] and info["last_progress"]:
        console.print(f"note: {loss['note']}", style="dim", markup=False, highlight=False)
    if loss["logs"]:
        console.print(f"TensorBoard: tensorboard --logdir {loss['logs']}", markup=False)
    if info["s_per_step"]:
        console.print(f"steady {info['s_per_step']:.2f} s/step")
    fin = info["finished"]
    if fin:
        took = fmt_duration(fin.get("duration_s"))
        console.print(f"finished: {fin['status']} (exit {fin['exit_code']}) after {took}")
    for key, label in (("checkpoints", "checkpoint"), ("states", "state"), ("samples", "sample")):
        for path in info[key]:
            gone = "" if Path(path).exists() else "  (missing: the trainer announced it but the file is not there)"
            console.print(f"{label}: {path}{gone}")
    if st.get("lora") and st.get("status") == "done":
        console.print(f"LoRA: {st['lora']}")
    for dest in st.get("copies") or []:
        console.print(f"copied to: {dest}")
    for w in info["warnings"]:
        console.print(f"[yellow]warning:[/] {w['message']}" + (f"\n  fix: {w['fix']}" if w["fix"] else ""))
    diag = st.get("diagnosis")
    if diag:
        console.print(f"[red]{diag['kind']}:[/] {diag['message']}" + (f"\n  fix: {diag['fix']}" if diag["fix"] else ""))


def log_lines(data: bytes) -> list[str]:
    """train.log as a terminal would show it: each \\r-overwritten line reduced to its last state."""
    text = data.decode("utf-8", errors="replace")
    out = []
    for line in text.split("\n"):
        parts = [p for p in line.split("\r") if p.strip()]
        if parts:
            out.append(parts[-1].rstrip())
        elif not line.strip():
            out.append("")
    if out and out[-1] == "":
        out.pop()
    return out


@app.command("tail")
def tail_cmd(
    run: str = RunArg,
    runs_dir: Path = RunsDirOpt,
    lines: int = typer.Option(40, "--lines", "-n", help="How many lines to show."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new output until the run ends."),
    events: bool = typer.Option(False, "--events", help="Show events.jsonl instead of train.log."),
) -> None:
    """Show the end of a run's train.log (or its events), optionally following it."""
    from lorakit.run.folder import LOG_FILE, find_run, is_active

    run_dir = find_run(run, runs_dir)
    path = run_dir / ("events.jsonl" if events else LOG_FILE)
    data = path.read_bytes() if path.is_file() else b""
    for line in log_lines(data)[-lines:] if lines > 0 else []:
        print(line)
    if not follow:
        return
    pos = len(data)
    partial = b""
    while True:
        time.sleep(0.5)
        if path.is_file() and path.stat().st_size > pos:
            with path.open("rb") as fh:
                fh.seek(pos)
                chunk = fh.read()
            pos += len(chunk)
            partial += chunk
            cut = partial.rfind(b"\n")
            if cut >= 0:
                for line in log_lines(partial[: cut + 1]):
                    print(line, flush=True)
                partial = partial[cut + 1 :]
        elif not is_active(run_dir):
            for line in log_lines(partial):
                print(line)
            return
