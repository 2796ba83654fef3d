"""Stopping a run from outside its own terminal (``lorakit serve``'s Stop button).

The one stop path is the runner's own Ctrl-C handling (``run/runner.py:Signals``): the first
SIGINT to the lorakit process asks the trainer's group to stop and the outcome is written as
``interrupted``; a second SIGINT kills the trainer group. Stopping from elsewhere therefore
means sending that SIGINT to the lorakit process ``state.json`` names, after checking that the
pid is still that process (``lorakit_started``), never a reused one.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from lorakit.errors import ConfigError
from lorakit.run.folder import LOST, pid_alive, read_state, run_status, trainer_alive


def stop_run(run_dir: Path) -> str:
    """Send Ctrl-C's SIGINT to the lorakit process running ``run_dir``; what was signalled.
    A lost run whose trainer still runs: SIGINT to the trainer's process group (what
    ``folder.lost_message``'s fix says). Otherwise a ConfigError: nothing is running there."""
    state = read_state(run_dir)
    status = run_status(state)
    pid = state.get("lorakit_pid")
    if status == "running" and isinstance(pid, int) and pid_alive(pid, state.get("lorakit_started")):
        os.kill(pid, signal.SIGINT)
        return f"lorakit (pid {pid})"
    trainer = state.get("pid")
    if status == LOST and isinstance(trainer, int) and trainer_alive(state):
        os.killpg(trainer, signal.SIGINT)
        return f"the trainer's process group (pid {trainer})"
    raise ConfigError([f"run {run_dir.name} is not running (status {status})"], fix="nothing to stop")
