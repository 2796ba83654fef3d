"""The run folder: ``<output.folder>/<name>-<YYYYmmdd-HHMMSS>/``.

It holds ``spec.yaml``, ``command.txt``, ``dataset.toml`` (and ``sample_prompts.txt``),
``train.log`` (raw trainer output), ``events.jsonl`` (typed events), ``state.json`` (the run's
current status, rewritten as it goes) and the LoRA files sd-scripts writes (``--output_dir``
points here). Every file except the two append-only logs is written atomically: temp file in
the same folder, then rename, so a crash never leaves half a ``spec.yaml`` or ``state.json``.
"""

from __future__ import annotations

import errno
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from lorakit.errors import ConfigError
from lorakit.events import EVENTS_FILE
from lorakit.fs import atomic_write, json_text, write_json

SPEC_FILE = "spec.yaml"
COMMAND_FILE = "command.txt"
STATE_FILE = "state.json"
LOG_FILE = "train.log"
STAMP_FORMAT = "%Y%m%d-%H%M%S"
_STAMP_RE = re.compile(r"-(\d{8}-\d{6})(?:-\d+)?$")

# state.json "status" values; the last three are final
STATUSES = ("planned", "running", "done", "failed", "interrupted")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Kept name: ``lorakit.fs.atomic_write`` (durable)."""
    atomic_write(path, data)


def atomic_write_text(path: Path, text: str) -> None:
    """Kept name: ``lorakit.fs.atomic_write`` (durable)."""
    atomic_write(path, text)


def atomic_write_json(path: Path, data: Any) -> None:
    """Kept name: ``lorakit.fs.write_json`` (durable)."""
    write_json(path, data)


def run_dir_path(base: Path, name: str, now: datetime | None = None) -> Path:
    """The folder a new run named ``name`` gets under ``base`` (not created; a taken name
    gets ``-2``, ``-3`` ... so two runs started in the same second never share a folder)."""
    stamp = (now or datetime.now()).strftime(STAMP_FORMAT)
    candidate = base / f"{name}-{stamp}"
    n = 2
    while candidate.exists():
        candidate = base / f"{name}-{stamp}-{n}"
        n += 1
    return candidate


def create_run_dir(path: Path) -> Path:
    """Create the (new, empty) run folder; refuse to reuse an existing one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir()
    return path


def write_files(run_dir: Path, files: dict[str, str]) -> None:
    """Write the run's files (name → text) atomically."""
    for name, text in files.items():
        atomic_write(run_dir / name, text)


@dataclass(frozen=True)
class RunInfo:
    """What ``lorakit runs list`` shows of one run folder."""

    path: Path
    state: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def status(self) -> str:
        return str(self.state.get("status", "unknown"))

    @property
    def started_at(self) -> float | None:
        value = self.state.get("started_at")
        return float(value) if isinstance(value, int | float) else None


def read_state(run_dir: Path) -> dict[str, Any]:
    """``state.json`` of a run folder ({} when missing or unreadable)."""
    try:
        data = json.loads((run_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state(run_dir: Path, state: dict[str, Any]) -> None:
    write_json(run_dir / STATE_FILE, state)


def update_state(run_dir: Path, *, last_resort: bool = False, **changes: Any) -> dict[str, Any]:
    """Merge ``changes`` into state.json (atomically). ``last_resort``: the run's final state —
    when the atomic write finds no room for its temp file, state.json is rewritten in place
    (its own blocks are reused; not crash-safe, but the outcome is recorded)."""
    state = read_state(run_dir) | changes
    try:
        write_state(run_dir, state)
    except OSError as exc:
        if not last_resort or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        data = json_text(state).encode("utf-8")
        with (run_dir / STATE_FILE).open("r+b") as fh:
            fh.write(data)
            fh.truncate()
            fh.flush()
            os.fsync(fh.fileno())
    return state


def pid_alive(pid: object, started: object = None) -> bool:
    """Whether ``pid`` is a live process (not a zombie; with ``started``, the start time
    recorded for it, not a reused pid)."""
    from lorakit.run.reaper import pid_alive as alive

    return alive(pid, started)


def is_active(run_dir: Path) -> bool:
    """True while a lorakit process is running this run (status running and its pid alive)."""
    return run_status(read_state(run_dir)) == "running"


def run_status(state: dict[str, Any]) -> str:
    """The status as it is: ``lost`` when state.json says running but the lorakit process that
    ran it is gone (killed with SIGKILL, the OOM killer, a power cut)."""
    status = str(state.get("status", "unknown"))
    pid = state.get("lorakit_pid")
    if status == "running" and pid is not None and not pid_alive(pid, state.get("lorakit_started")):
        return LOST
    return status


LOST = "lost"


def trainer_alive(state: dict[str, Any]) -> bool:
    """Whether the trainer process state.json names is still running."""
    return state.get("pid") is not None and pid_alive(state.get("pid"), state.get("pid_started"))


def lost_message(run_dir: Path, state: dict[str, Any]) -> str:
    """What happened to a lost run, in one sentence."""
    pid = state.get("lorakit_pid")
    step = state.get("step")
    where = f" at step {step}/{state.get('total') or state.get('total_steps') or '?'}" if step else ""
    msg = f"lost: lorakit (pid {pid}) was killed while run {run_dir.name} was running{where}"
    if trainer_alive(state):
        msg += f"; its trainer (pid {state.get('pid')}) is still running"
    return msg


def refuse_if_running(run_dir: Path) -> None:
    """A ConfigError when a process is still working in ``run_dir``: lorakit, or the trainer of
    a lost run (a second trainer in the same folder would overwrite its files)."""
    state = read_state(run_dir)
    status = run_status(state)
    if status == "running":
        raise ConfigError([f"run {run_dir.name} is still running"], fix="wait for it, or stop it with Ctrl-C first")
    if status == LOST and trainer_alive(state):
        pid = state.get("pid")
        raise ConfigError(
            [lost_message(run_dir, state)],
            fix=f"lorakit's watchdog stops it within seconds; if it does not, stop it with `kill -INT -{pid}`, "
            "then run this again",
        )


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / f).is_file() for f in (STATE_FILE, EVENTS_FILE, COMMAND_FILE))


def list_runs(base: Path) -> list[RunInfo]:
    """Run folders directly under ``base``, oldest first (by the timestamp in the name)."""
    if not base.is_dir():
        return []
    runs = [RunInfo(p, read_state(p)) for p in base.iterdir() if is_run_dir(p)]

    def key(r: RunInfo) -> tuple[str, float, str]:
        m = _STAMP_RE.search(r.name)
        return (m.group(1) if m else "", r.started_at or 0.0, r.name)

    return sorted(runs, key=key)


def find_run(ref: str, base: Path) -> Path:
    """A run folder from what the user typed: a path, a folder name under ``base``, a unique
    prefix of one, or ``last`` / ``latest``."""
    direct = Path(ref).expanduser()
    if is_run_dir(direct):
        return direct
    runs = list_runs(base)
    if ref in ("last", "latest"):
        if runs:
            return runs[-1].path
        raise ConfigError([f"no runs in {base}"], fix="start one with `lorakit train`, or pass --runs-dir")
    exact = [r.path for r in runs if r.name == ref]
    if exact:
        return exact[0]
    matches = [r.path for r in runs if r.name.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = ", ".join(p.name for p in matches[-5:])
        raise ConfigError([f"'{ref}' matches {len(matches)} runs in {base}: {names}"], fix="type more of the name")
    raise ConfigError(
        [f"no run '{ref}' (not a run folder, and no run of that name in {base})"],
        fix="`lorakit runs list` shows the runs; pass the folder path or --runs-dir",
    )
