"""Run per-image jobs over all cores (a process pool), reporting progress."""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from lorakit.dataset.images import ImageJob, ImageResult, process_image

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
            results[i] = process_image(job)
            if progress:
                progress(i + 1, total)
        return [r for r in results if r is not None]

    done = 0
    with ProcessPoolExecutor(max_workers=n, mp_context=_context()) as ex:
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
                    results[pending.pop(f)] = f.result()
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
