"""A run folder as `runs show` / `runs tail` / `runs list` and lorakit serve present it: state.json,
figures from events.jsonl (the report's RunSummary), the per-step loss. Moved from cli/runs.py so
the CLI and the web server import it from a core room (issue 13/16)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lorakit.events import Event
    from lorakit.kohya.tblog import ScalarLog


def live_status(run_dir: Path, state: dict[str, Any]) -> dict[str, Any]:
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


def loss_info(run_dir: Path, log: ScalarLog | None = None) -> dict[str, Any]:
    """The trainer's latest per-step loss from the run's TensorBoard logs (`logs/`), smoothed
    too; ``value`` is None (and ``note`` says why) when there is none. ``log``: the run's
    scalar log already read (lorakit serve keeps one per run and polls it)."""
    from lorakit.kohya.tblog import logs_dir, smoothed
    from lorakit.run.losslog import read_run_scalars

    if log is None:
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


def summarize(run_dir: Path, events: list[Event] | None = None, scalars: ScalarLog | None = None) -> dict[str, Any]:
    """What `runs show` prints: state.json + figures from events.jsonl. ``summary`` is the run's
    :class:`lorakit.report.summary.RunSummary` (the report's own figures); ``s_per_step`` is its
    steady s/step (``lorakit.rate``'s one definition, the figure bench and the report print).
    ``events`` / ``scalars``: the run's events and scalar log already read (lorakit serve reads
    both incrementally; a 20,000-step run's events.jsonl takes ~1 s to parse)."""
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

    if events is None:
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
        "loss": loss_info(run_dir, scalars),
        "summary": figures.as_dict(),
    }


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
