"""A run's per-step TensorBoard scalars (``lorakit.kohya.tblog``) on the run's own step count.

Each launch of a run writes its own event file. A resumed launch past the first epoch counts
``S − S mod L`` behind the run (sd-scripts 48d368fa, kohya-ss/sd-scripts#1406); ``lorakit
resume`` records that offset in ``state.json`` (``trainer_step_offsets``, by the launch's
``--output_name``). An event file belongs to the last launch that had started (``started``
event) before the file's first record was written.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from lorakit.events import Started, read_events
from lorakit.kohya.tblog import DEFAULT_TAGS, ScalarLog
from lorakit.run.folder import read_state


def output_name(argv: Sequence[str]) -> str | None:
    """The ``--output_name`` the trainer used (the last one given: argparse keeps the last)."""
    names = [a.split("=", 1)[1] for a in argv if a.startswith("--output_name=")]
    return names[-1] if names else None


def launch_step_offsets(run_dir: Path) -> Callable[[float], int]:
    """``offset(t)``: run step − trainer step for an event file first written at unix time ``t``
    (read from ``events.jsonl`` and ``state.json`` when asked, i.e. once per new file)."""

    def offset(first_write: float) -> int:
        launch = None
        for ev in read_events(run_dir):
            if isinstance(ev, Started) and ev.t <= first_write:
                launch = ev
        offsets = read_state(run_dir).get("trainer_step_offsets")
        if launch is None or not isinstance(offsets, dict):
            return 0
        value = offsets.get(output_name(launch.argv) or "")
        return value if isinstance(value, int) else 0

    return offset


def open_scalars(run_dir: Path, tags: Sequence[str] = DEFAULT_TAGS) -> ScalarLog:
    """The run's scalar log (nothing read yet: call ``poll``), steps in the run's count."""
    return ScalarLog(run_dir, tags, step_offset=launch_step_offsets(run_dir))


def read_run_scalars(run_dir: Path, tags: Sequence[str] = DEFAULT_TAGS) -> ScalarLog:
    log = open_scalars(run_dir, tags)
    log.poll()
    return log
