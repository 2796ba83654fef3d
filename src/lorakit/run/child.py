"""The trainer child process: start it in its own process group (``lorakit.proc``), pump its
pipe, stop it (SIGINT to the group, then SIGKILL), and the watchdog that outlives lorakit."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lorakit.proc import child_env, popen_group
from lorakit.run.signals import Signals as Signals

if TYPE_CHECKING:
    pass
from lorakit.run.types import Child


class _Stopper:
    """Signals to the child's process group, from a signal handler or the main loop."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.requests = 0
        self.reason: str | None = None
        self.kill_at: float | None = None

    def _send(self, sig: int) -> None:
        if self.proc.poll() is not None and os.name != "posix":
            return
        try:
            if os.name == "posix":
                os.killpg(self.proc.pid, sig)
            elif sig == signal.SIGINT:
                self.proc.send_signal(signal.CTRL_BREAK_EVENT)  # type: ignore[attr-defined,unused-ignore]
            else:
                self.proc.kill()
        except (ProcessLookupError, PermissionError, OSError):
            pass

    def ask(self, reason: str, grace_s: float | None) -> None:
        """First request: SIGINT to the group; later ones: SIGKILL."""
        self.requests += 1
        if self.requests == 1:
            self.reason = reason
            self._send(signal.SIGINT)
            if grace_s is not None:
                self.kill_at = time.monotonic() + grace_s
        else:
            self.kill()

    def kill(self) -> None:
        self._send(signal.SIGKILL if os.name == "posix" else signal.SIGTERM)
        self.kill_at = None


class _Watchdog:
    """The trainer's watchdog process (``reaper.py``, whose docstring says how it works)."""

    def __init__(self, hold_fds: tuple[int, ...], grace_s: float) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self._w: int | None = None
        if os.name != "posix":
            return
        r, w = os.pipe()  # not inheritable: only the watchdog gets the read end, via stdin
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(Path(__file__).with_name("reaper.py")), f"{grace_s:g}"],
                stdin=r,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=hold_fds,
                start_new_session=True,
            )
            self._w = w
        except OSError:
            os.close(w)
        finally:
            os.close(r)

    def watch(self, pgid: int) -> None:
        if self._w is not None:
            with contextlib.suppress(OSError):
                os.write(self._w, f"{pgid}\n".encode())

    def close(self, wait_s: float = 5.0) -> None:
        """lorakit is done with the trainer: the watchdog stops what is left of its group and exits."""
        if self._w is not None:
            with contextlib.suppress(OSError):
                os.close(self._w)
            self._w = None
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=wait_s)


def _reader(fd: int, q: queue.Queue[bytes | None]) -> None:
    try:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            q.put(chunk)
    finally:
        q.put(None)


def _spawn(child: Child) -> subprocess.Popen[bytes]:
    # the plan's env (PYTHONUNBUFFERED, COLUMNS, CUDA_DEVICE_ORDER) wins; PYTHONIOENCODING kept
    # when the user set one. python=False: nothing but the plan's own keys are forced.
    env = child_env(child.env, python=False)
    env.setdefault("PYTHONIOENCODING", "utf-8")
    return popen_group(child.argv, env=env, cwd=child.cwd)
