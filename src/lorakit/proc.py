"""The one way lorakit builds a child process's environment and starts a child in its own
process group (the trainer, a queued ``lorakit train``, the synthetic-model builder).

``child_env``: lorakit's environment, plus for a Python child ``PYTHONIOENCODING=utf-8`` (kept
when the user set one: its output is UTF-8 even under a C/cp1252 locale or into a log file) and
``PYTHONUNBUFFERED=1`` (lines arrive as they are printed); ``python_path`` entries go first on
``PYTHONPATH``; ``extra`` wins over everything. ``popen_group``: a new session on POSIX (a stop
goes to the whole group, and the terminal's Ctrl-C reaches only lorakit, which forwards it),
``CREATE_NEW_PROCESS_GROUP`` on Windows (so ``CTRL_BREAK_EVENT`` can stop it cleanly).

Readers of the environment (``find_trainer(env)``, ``physical_gpus(env)``) keep their ``env``
parameter; this module only builds. Stdlib only.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["child_env", "group_kwargs", "popen_group"]


def child_env(
    extra: Mapping[str, str] | None = None,
    *,
    python: bool = True,
    python_path: Sequence[str] = (),
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    if python:
        env.setdefault("PYTHONIOENCODING", "utf-8")
        env["PYTHONUNBUFFERED"] = "1"
    if python_path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (*python_path, env.get("PYTHONPATH")) if p)
    env.update(extra or {})
    return env


def group_kwargs() -> dict[str, Any]:
    """``Popen`` keywords that start the child in a process group of its own."""
    if os.name == "posix":
        return {"start_new_session": True}
    return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}  # type: ignore[attr-defined,unused-ignore]


def popen_group(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | str | None = None,
    stdout: int | IO[bytes] | None = subprocess.PIPE,
    stderr: int | IO[bytes] | None = subprocess.STDOUT,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` (a list, never a shell string) in its own process group, stdin closed."""
    return subprocess.Popen(
        list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, **group_kwargs()
    )
