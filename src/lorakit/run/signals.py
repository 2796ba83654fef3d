"""lorakit's one signal handler (SIGINT, SIGTERM and, where it exists, SIGHUP): the runner
holds it for a whole training, the queue runner for a whole queue run. The watchdog
(``reaper.py``) ignores these signals on purpose; its docstring says why.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["Signals"]


class Signals:
    """lorakit's one handler for SIGINT/SIGTERM/SIGHUP during a run.

    Installed before the trainer starts (a handled signal is reset to the default in the child
    at exec, while an *ignored* one stays ignored: lorakit started with `&` from a script has
    SIGINT ignored, and the trainer would shrug off the stop request) and kept until the run's
    final state is written: a second Ctrl-C while lorakit writes the outcome is noted, never a
    KeyboardInterrupt halfway through ``finish_run``. While the trainer runs, each signal goes
    to ``target`` (the supervisor's stop: SIGINT to the group, then SIGKILL); ``forward`` gets
    the signal's number (the queue runner passes it on to its jobs)."""

    def __init__(self) -> None:
        self.count = 0
        self.target: Callable[[], None] | None = None
        self.forward: Callable[[int], None] | None = None
        self.quiet = False  # a view prints the stop itself
        self.finishing = False  # the trainer has exited
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.forward is not None:
            self.forward(signum)
        elif self.target is not None:
            self.target()
        elif not self.quiet:
            msg = "writing the run's outcome, one moment" if self.finishing else "stopping"
            with contextlib.suppress(Exception):
                sys.stderr.write(f"\nlorakit: {msg}\n")

    def install(self) -> Signals:
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return self
        sigs = [signal.SIGINT, signal.SIGTERM]
        if hasattr(signal, "SIGHUP"):
            sigs.append(signal.SIGHUP)
        for s in sigs:
            with contextlib.suppress(ValueError, OSError):
                self._previous[s] = signal.signal(s, self._handler)
        return self

    def restore(self) -> None:
        for s, h in self._previous.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(s, h)
        self._previous = {}

    def __enter__(self) -> Signals:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.restore()
