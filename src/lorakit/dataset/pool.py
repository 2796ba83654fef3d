"""Run per-image jobs over all cores (a process pool), reporting progress."""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.context
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from lorakit.dataset.images import ImageJob, ImageResult, process_image
from lorakit.errors import EnvironmentProblem

Progress = Callable[[int, int], None]


def _context() -> multiprocessing.context.BaseContext | None:
    """fork when this process runs no other thread (fast start, no re-import of ``__main__``);
    otherwise forkserver where there is one, since forking copies other threads' held locks."""
    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        return multiprocessing.get_context("forkserver")
    return None


def _worker_init() -> None:
    """In each worker: exit when the parent goes, even by SIGKILL (no worker left holding the
    caller's pipes). Linux: ``PR_SET_PDEATHSIG`` = SIGKILL; elsewhere a thread watches the
    parent pid."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
                if os.getppid() != parent:  # the parent died before the prctl
                    os._exit(1)
                return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


PR_SET_PDEATHSIG = 1


def executor(workers: int) -> ProcessPoolExecutor:
    """The process pool of dataset preparation: its workers never outlive this process."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=_context(), initializer=_worker_init)


def _checked(fn: Callable[..., ImageResult], *args: object) -> ImageResult:
    """A job's result; a full or read-only output disk is one message (exit 3), not the
    worker's traceback."""
    try:
        return fn(*args)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise EnvironmentProblem(
            f"cannot write{where}: {exc.strerror or exc}",
            fix="free space on the output disk (or make it writable), or choose another --out; "
            "the source folder was not touched",
        ) from None


def cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def run_jobs(
    jobs: Sequence[ImageJob], *, workers: int | None = None, progress: Progress | None = None
) -> list[ImageResult]:
    """Results in job order. One worker (or a handful of jobs) runs in this process."""
    total = len(jobs)
    n = min(workers or cpu_count(), total)
    results: list[ImageResult | None] = [None] * total
    if n <= 1 or total <= 2:
        for i, job in enumerate(jobs):
            results[i] = _checked(process_image, job)
            if progress:
                progress(i + 1, total)
        return [r for r in results if r is not None]

    done = 0
    with executor(n) as ex:
        # keep a bounded number in flight: cancelling on Ctrl-C is then quick
        pending: dict[Future[ImageResult], int] = {}
        it = iter(enumerate(jobs))
        try:
            for i, job in it:
                pending[ex.submit(process_image, job)] = i
                if len(pending) >= n * 4:
                    break
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    results[pending.pop(f)] = _checked(f.result)
                    done += 1
                    if progress:
                        progress(done, total)
                    nxt = next(it, None)
                    if nxt is not None:
                        pending[ex.submit(process_image, nxt[1])] = nxt[0]
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    return [r for r in results if r is not None]
