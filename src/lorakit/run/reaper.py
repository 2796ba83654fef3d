"""The trainer's watchdog: no trainer outlives a killed lorakit (``kill -9``, the OOM killer).

How it works (POSIX). Before the trainer starts, the runner starts this file as a small
process of its own (``python -I -S reaper.py GRACE``, its own session, so a Ctrl-C or a kill
of lorakit's process group does not reach it) with

- its stdin = the read end of a pipe whose write end only lorakit holds (not inheritable, so
  the trainer never gets a copy);
- the GPU lock descriptors of the run (``pass_fds``): an ``flock`` belongs to the open file,
  so while the watchdog lives the GPU stays locked even if lorakit is gone.

Once the trainer runs, lorakit writes its process group id on the pipe. When lorakit ends —
normally, or killed so hard that no handler runs — the kernel closes the write end and the
watchdog reads EOF. It then sends SIGINT to the trainer's process group (accelerate's
launcher and the training processes), SIGKILL after GRACE seconds if any is still alive,
waits until no process of the group is left (zombies excepted: their memory, GPU memory
included, is already freed) and exits, which releases the GPU lock. After a normal end the
group is already empty and it exits at once (it also stops leftovers a trainer left behind).

The only window it cannot cover is lorakit being killed between the trainer's fork and the
write of its group id, a few microseconds.

This file is also imported (``lorakit.run.reaper``) for the process helpers below, so it uses
the standard library only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

POLL_S = 0.05
GONE_WAIT_S = 60.0  # after SIGKILL: how long to wait for the group's processes to go


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state letter, process group, start time in clock ticks) from /proc; None when the
    process does not exist or there is no /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2 :].split()  # the command name may hold spaces and ')'
    try:
        return rest[0], int(rest[2]), int(rest[19])
    except (IndexError, ValueError):
        return None


def start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot; Linux), to tell it from a reused pid."""
    st = proc_stat(pid)
    return st[2] if st else None


def pid_alive(pid: object, started: object = None) -> bool:
    """Whether ``pid`` is a live process (a zombie is not; with ``started``, a pid reused by
    another process is not either)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass  # EPERM: it exists
    st = proc_stat(pid)
    if st is None:
        return not os.path.isdir("/proc/self")  # no /proc (macOS): kill(0) is all we know
    if st[0] in ("Z", "X"):
        return False
    return not (isinstance(started, int) and st[2] != started)


def group_alive(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except OSError:
        pass
    if not os.path.isdir("/proc/self"):
        return [pgid]  # something is there; no /proc to say what
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_stat(int(name))
            if st is not None and st[1] == pgid and st[0] not in ("Z", "X"):
                out.append(int(name))
    return out


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(pgid, sig)


def reap(pgid: int, grace_s: float) -> None:
    """Stop process group ``pgid``: SIGINT, SIGKILL after ``grace_s``, then wait until it is gone."""
    if not group_alive(pgid):
        return
    _killpg(pgid, signal.SIGINT)
    deadline = time.monotonic() + grace_s
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    if not group_alive(pgid):
        return
    _killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + GONE_WAIT_S
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(POLL_S)


def main(argv: list[str]) -> int:
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(s, signal.SIG_IGN)
    grace = float(argv[1]) if len(argv) > 1 else 10.0
    data = b""
    while True:  # everything lorakit writes, until EOF (lorakit closed it or died)
        try:
            chunk = os.read(0, 4096)
        except InterruptedError:
            continue
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    for line in data.decode("ascii", "replace").split():
        if line.isdigit() and int(line) > 1:
            reap(int(line), grace)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
