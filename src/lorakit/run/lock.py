"""One lock file per GPU, so two lorakit trainings never share a GPU by accident.

A run holds ``<data dir>/locks/gpu-<index>.lock`` for every GPU it uses, with
``fcntl.flock`` (exclusive, non-blocking): the kernel releases it when the process exits,
however it exits, so a crash never leaves a stale lock. While held, the file names its
holder (pid, run folder, start time) so a refused run can say who has the GPU.

GPU indices are NVML / ``nvidia-smi`` indices (PCI bus order). When ``CUDA_VISIBLE_DEVICES``
holds a list of numbers, the indices a run uses are mapped through it first
(:func:`physical_gpus`). Launch the trainer with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so CUDA
numbers the GPUs the same way.

Windows has no ``fcntl``: there GPU locks are not taken (documented in docs/queue.md).

This module also holds lorakit's one file-lock primitive, :func:`file_lock` (the queue file and
the queue runner use it): ``fcntl.flock`` on POSIX, ``msvcrt.locking`` of one byte far past the
holder line on Windows (so the line stays readable to a refused process).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from lorakit.errors import EnvironmentProblem
from lorakit.kohya.install import data_home as data_home  # one data folder for all of lorakit

LOCK_DIR = "locks"


def lock_path(gpu: int, home: Path | None = None) -> Path:
    return (home or data_home()) / LOCK_DIR / f"gpu-{gpu}.lock"


def physical_gpus(gpus: Iterable[int] | None, env: dict[str, str] | None = None) -> list[int]:
    """The NVML indices of the GPUs a run uses (``None``: the first visible one).

    ``CUDA_VISIBLE_DEVICES=2,3`` with ``gpus=[1]`` → ``[3]``. UUID / MIG entries cannot be
    mapped without NVML; then the indices are taken as given."""
    env = dict(os.environ) if env is None else env
    wanted = list(gpus) if gpus else [0]
    visible = env.get("CUDA_VISIBLE_DEVICES", "").strip()
    if not visible:
        return wanted
    parts = [p.strip() for p in visible.split(",") if p.strip()]
    if not all(p.isdigit() for p in parts):
        return wanted
    ids = [int(p) for p in parts]
    out = []
    for g in wanted:
        if g >= len(ids):
            raise EnvironmentProblem(
                f"GPU {g} is not visible: CUDA_VISIBLE_DEVICES={visible} shows {len(ids)} GPU(s)",
                fix="choose GPUs among those visible (they are numbered from 0), or unset CUDA_VISIBLE_DEVICES",
            )
        out.append(ids[g])
    return out


@dataclass(frozen=True)
class LockHolder:
    gpu: int
    pid: int | None = None
    run: str | None = None
    since: float | None = None
    host: str | None = None

    def describe(self) -> str:
        who = f"pid {self.pid}" if self.pid else "an unknown process"
        run = f" (run {self.run})" if self.run else ""
        when = f", since {time.strftime('%H:%M:%S', time.localtime(self.since))}" if self.since else ""
        return f"GPU {self.gpu} is in use by lorakit {who}{run}{when}"


class GpuBusy(EnvironmentProblem):
    """Another lorakit run holds the lock of a GPU this run wants."""

    def __init__(self, holders: list[LockHolder]) -> None:
        self.holders = holders
        super().__init__(
            "; ".join(h.describe() for h in holders),
            fix="wait for it to finish, pick other GPUs with --gpus, or add the run to the queue "
            "(`lorakit queue add ...`), which starts it when the GPU is free",
        )


def _parse_holder(gpu: int, text: str) -> LockHolder:
    try:
        data: Any = json.loads(text) if text.strip() else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    pid = data.get("pid")
    since = data.get("since")
    return LockHolder(
        gpu,
        pid if isinstance(pid, int) else None,
        str(data["run"]) if data.get("run") else None,
        float(since) if isinstance(since, int | float) else None,
        str(data["host"]) if data.get("host") else None,
    )


_WIN_LOCK_OFFSET = 2**30  # Windows: the byte locked (past any holder line; may lie beyond EOF)


def lock_fd(fd: int, *, blocking: bool) -> bool:
    """Take the exclusive lock of an open file (False: held elsewhere; ``blocking`` waits)."""
    if os.name == "posix":
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True
    import msvcrt

    pos = os.lseek(fd, 0, os.SEEK_CUR)
    try:
        while True:
            os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
            try:
                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined,unused-ignore]
                return True
            except OSError:
                if not blocking:
                    return False
                time.sleep(0.05)
    finally:
        os.lseek(fd, pos, os.SEEK_SET)


def unlock_fd(fd: int) -> None:
    if os.name == "posix":
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_UN)
        return
    import msvcrt

    pos = os.lseek(fd, 0, os.SEEK_CUR)
    try:
        os.lseek(fd, _WIN_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)  # type: ignore[attr-defined,unused-ignore]
    finally:
        os.lseek(fd, pos, os.SEEK_SET)


@contextlib.contextmanager
def file_lock(path: Path, *, blocking: bool, holder: str | None = None) -> Iterator[bool]:
    """Hold the exclusive lock of ``path`` (created) for the block; yields False when another
    process holds it (never blocks then unless ``blocking``). ``holder``: a line written into the
    file while held (read it with :func:`lock_text`) and cleared when released. The kernel
    drops the lock when the process dies, however it dies: no stale lock after a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as fh:
        if not lock_fd(fh.fileno(), blocking=blocking):
            yield False
            return
        try:
            if holder is not None:
                fh.seek(0)
                fh.truncate()
                fh.write(holder)
                fh.flush()
            yield True
        finally:
            with contextlib.suppress(OSError):
                if holder is not None:
                    fh.seek(0)
                    fh.truncate()
                    fh.flush()
                unlock_fd(fh.fileno())


def lock_text(path: Path) -> str:
    """The holder line of a lock file ("" when none or unreadable)."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def _try_flock(fh: IO[str]) -> bool:
    return lock_fd(fh.fileno(), blocking=False)


class GpuLock:
    """Held locks of one run; release with :meth:`release` or as a context manager."""

    def __init__(self, gpus: list[int], handles: list[IO[str]]) -> None:
        self.gpus = gpus
        self._handles = handles

    @property
    def held(self) -> bool:
        return bool(self._handles)

    def fds(self) -> tuple[int, ...]:
        """The lock files' descriptors. A process that inherits them keeps the GPUs locked
        after this one is gone (an ``flock`` belongs to the open file): the runner's watchdog."""
        return tuple(fh.fileno() for fh in self._handles)

    def release(self) -> None:
        for fh in self._handles:
            with contextlib.suppress(OSError):
                fh.seek(0)
                fh.truncate()
                fh.flush()
                unlock_fd(fh.fileno())
            fh.close()
        self._handles = []

    def __enter__(self) -> GpuLock:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def acquire_gpus(
    gpus: Iterable[int], run: str | None = None, *, home: Path | None = None, pid: int | None = None
) -> GpuLock:
    """Lock every GPU in ``gpus`` (NVML indices) for this process, or raise :class:`GpuBusy`
    naming the holders. All or nothing: on refusal no lock stays held."""
    wanted = sorted(set(gpus))
    if os.name != "posix":
        return GpuLock(wanted, [])
    folder = (home or data_home()) / LOCK_DIR
    folder.mkdir(parents=True, exist_ok=True)
    handles: list[IO[str]] = []
    busy: list[LockHolder] = []
    info = {"pid": pid or os.getpid(), "run": run, "since": time.time(), "host": socket.gethostname()}
    for gpu in wanted:
        fh = (folder / f"gpu-{gpu}.lock").open("a+", encoding="utf-8")
        if _flock_retrying(gpu, fh):
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps({**info, "gpu": gpu}) + "\n")
            fh.flush()
            handles.append(fh)
        else:
            busy.append(_read_holder(gpu, fh))
            fh.close()
    lock = GpuLock(wanted, handles)
    if busy:
        lock.release()
        raise GpuBusy(busy)
    return lock


def _flock_retrying(gpu: int, fh: IO[str]) -> bool:
    """Lock, retrying briefly while the lock's file names no holder: that is a probe by
    :func:`holder` or a holder that has not written its line yet, not a training."""
    for _ in range(10):
        if _try_flock(fh):
            return True
        fh.seek(0)
        if fh.read().strip():
            return False
        time.sleep(0.02)
    return False


def _read_holder(gpu: int, fh: IO[str]) -> LockHolder:
    # the holder writes its line right after locking: give it a moment if the file is empty
    for _ in range(20):
        fh.seek(0)
        text = fh.read()
        if text.strip():
            return _parse_holder(gpu, text)
        time.sleep(0.01)
    return LockHolder(gpu)


def holder(gpu: int, home: Path | None = None) -> LockHolder | None:
    """Who holds GPU ``gpu``'s lock right now (None: nobody). Probes without keeping it."""
    path = lock_path(gpu, home)
    if os.name != "posix" or not path.exists():
        return None
    with path.open("a+", encoding="utf-8") as fh:
        if _try_flock(fh):
            unlock_fd(fh.fileno())
            return None
        return _read_holder(gpu, fh)


def held_gpus(gpus: Iterable[int], home: Path | None = None) -> dict[int, LockHolder]:
    """The GPUs among ``gpus`` whose lock someone holds, with the holder."""
    out = {}
    for g in gpus:
        h = holder(g, home)
        if h is not None:
            out[g] = h
    return out


@contextlib.contextmanager
def gpu_lock(
    gpus: Iterable[int] | None, run: str | None = None, *, env: dict[str, str] | None = None
) -> Iterator[GpuLock]:
    """``with gpu_lock(spec.training.gpus, run=str(run_dir)):`` — what the runner wraps a
    training in: maps the ids through CUDA_VISIBLE_DEVICES, locks them all, releases after."""
    lock = acquire_gpus(physical_gpus(gpus, env), run)
    try:
        yield lock
    finally:
        lock.release()
