"""The job queue: a JSON file in lorakit's data folder, and the loop that runs it.

``<data dir>/queue/queue.json`` holds every job (queued, running, done, failed,
interrupted). Every change happens under an exclusive ``flock`` on ``queue.lock`` and is
written atomically (temp file + rename), so ``lorakit queue add`` may run while ``lorakit
queue run`` works, and a crash never leaves half a file. Only one ``queue run`` at a time
(``runner.lock``).

Each job runs as a child ``python -m lorakit train ...`` with the arguments given at add time
plus ``--set training.gpus=[...]`` for the GPUs placement chose
(:func:`lorakit.run.placement.place`); its output goes to ``queue/logs/<id>.log``. When the
child exits, the job's result and diagnosis are read from its run folder's ``events.jsonl``
(error events, finished event), else from lorakit's own ``error:`` line, else the exit code,
and the queue moves on. A restarted ``queue run`` adopts jobs whose child still runs.

This module is the runner; the file is ``run/queue_store.py`` and adding, removing and
diagnosing jobs is ``run/queue_jobs.py`` (their names are re-exported here).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from lorakit.errors import EXIT_INTERRUPTED, EXIT_OK, EnvironmentProblem
from lorakit.proc import child_env, popen_group
from lorakit.run.lock import file_lock, held_gpus, lock_text
from lorakit.run.placement import DEFAULT_MARGIN_GIB, Decision, GpuFacts, JobRequest, RunningJob, place
from lorakit.run.signals import Signals

if TYPE_CHECKING:
    pass
from lorakit.run.queue_jobs import _pid_alive as _pid_alive
from lorakit.run.queue_jobs import add_job as add_job
from lorakit.run.queue_jobs import device_count as device_count
from lorakit.run.queue_jobs import diagnose_job as diagnose_job
from lorakit.run.queue_jobs import estimate_gib as estimate_gib
from lorakit.run.queue_jobs import find_run_dir as find_run_dir
from lorakit.run.queue_jobs import free_comfyui as free_comfyui
from lorakit.run.queue_jobs import gpu_facts_from_file as gpu_facts_from_file
from lorakit.run.queue_jobs import gpu_facts_from_nvml as gpu_facts_from_nvml
from lorakit.run.queue_jobs import remove_jobs as remove_jobs
from lorakit.run.queue_store import FINAL as FINAL
from lorakit.run.queue_store import QUEUE_DIR as QUEUE_DIR
from lorakit.run.queue_store import QUEUE_FILE as QUEUE_FILE
from lorakit.run.queue_store import STATUSES as STATUSES
from lorakit.run.queue_store import Job as Job
from lorakit.run.queue_store import QueueData as QueueData
from lorakit.run.queue_store import QueueStore as QueueStore
from lorakit.run.queue_store import queue_dir as queue_dir


@dataclass
class _Child:
    job_id: str
    gpus: tuple[int, ...]
    estimate_gib: float
    proc: subprocess.Popen[bytes] | None  # None: adopted from an earlier queue run
    pid: int
    log: IO[bytes] | None = None

    def poll(self) -> tuple[bool, int | None]:
        if self.proc is not None:
            rc = self.proc.poll()
            return rc is not None, rc
        return (not _pid_alive(self.pid)), None


@dataclass
class QueueTotals:
    """The jobs a queue run settled, by outcome (not a run's summary: that is report.summary's)."""

    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return 1 if self.failed else EXIT_OK


RunSummary = QueueTotals  # kept name


class QueueRunner:
    """Runs the queue until no job is left queued or running.

    ``allowed=None``: one job at a time, on GPU 0 unless the job pins others (what `queue
    run` does without --gpus). A set of GPU ids: jobs run side by side on those GPUs."""

    def __init__(
        self,
        store: QueueStore,
        *,
        allowed: set[int] | None = None,
        share: bool = False,
        facts: Callable[[], list[GpuFacts]] = gpu_facts_from_nvml,
        echo: Callable[[str], None] = print,
        poll_s: float = 2.0,
        margin_gib: float = DEFAULT_MARGIN_GIB,
        python: str = sys.executable,
        comfyui: Callable[[str, bool], str] = free_comfyui,
        lock_home: Path | None = None,
    ) -> None:
        self.store, self.allowed, self.share, self.facts = store, allowed, share, facts
        self.echo, self.poll_s, self.margin, self.python, self.comfyui = echo, poll_s, margin_gib, python, comfyui
        self.lock_home = lock_home
        self.children: dict[str, _Child] = {}
        self.summary = QueueTotals()
        self._stop = 0
        self._said: dict[str, str] = {}
        self._comfy_done: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------
    def run(self) -> QueueTotals:
        # SIGINT/SIGTERM/SIGHUP (closing the terminal) stop the queue and reach every job once
        with self._runner_lock(), Signals() as sigs:
            sigs.forward = self._forward
            self._adopt()
            while True:
                self._reap()
                if self._stop:
                    if not self.children:
                        break
                elif not self._round() and not self.children:
                    break
                self._sleep()
        return self.summary

    @contextlib.contextmanager
    def _runner_lock(self) -> Iterator[None]:
        path = self.store.dir / "runner.lock"
        with file_lock(path, blocking=False, holder=str(os.getpid())) as held:
            if not held:
                who = lock_text(path) or "another process"
                raise EnvironmentProblem(
                    f"the queue is already being run (by pid {who})",
                    fix="let that `lorakit queue run` work through the queue (it picks up jobs added meanwhile)",
                )
            yield

    def _forward(self, signum: int) -> None:
        self._stop += 1
        if self._stop == 1:
            self.echo(f"stopping: no new jobs; asking {len(self.children)} running job(s) to stop")
        # POSIX: the same signal to each job. Windows: os.kill with SIGINT/SIGTERM would terminate
        # the job without its outcome; CTRL_BREAK_EVENT reaches its process group (popen_group)
        # and lorakit train stops its trainer cleanly
        sig = signum if os.name == "posix" else getattr(signal, "CTRL_BREAK_EVENT", signum)
        for child in self.children.values():
            with contextlib.suppress(OSError):
                os.kill(child.pid, sig)

    def _sleep(self) -> None:
        end = time.monotonic() + self.poll_s
        while time.monotonic() < end:
            if any(c.poll()[0] for c in self.children.values()):
                return
            time.sleep(min(0.1, self.poll_s))

    # -- jobs ------------------------------------------------------------------------
    def _adopt(self) -> None:
        """Jobs marked running by an earlier queue run: keep watching live ones, settle the rest."""
        for job in self.store.load().jobs:
            if job.status != "running":
                continue
            if job.pid and _pid_alive(job.pid):
                gpus = tuple(job.assigned_gpus or job.gpus or [0])
                self.children[job.id] = _Child(job.id, gpus, job.estimate_gib, None, job.pid)
                self.echo(f"job {job.id}: still running (pid {job.pid}) from an earlier queue run; watching it")
            else:
                self._settle(job.id, None)

    def _reap(self) -> None:
        for job_id, child in list(self.children.items()):
            gone, rc = child.poll()
            if gone:
                if child.log:
                    child.log.close()
                del self.children[job_id]
                self._settle(job_id, rc)

    def _settle(self, job_id: str, rc: int | None) -> None:
        q = self.store.load()
        job = q.get(job_id)
        claimed = frozenset(j.run_dir for j in q.jobs if j.run_dir and j.id != job_id)
        status, code, diagnosis, run_dir = diagnose_job(job, rc, claimed)
        self.store.update(
            job_id, status=status, exit_code=code, diagnosis=diagnosis, run_dir=run_dir, finished=time.time(), pid=None
        )
        getattr(self.summary, status).append(job_id)
        tail = f": {diagnosis}" if diagnosis and status != "done" else ""
        where = f" ({run_dir})" if run_dir else ""
        self.echo(f"job {job_id}: {status}{where}{tail}")

    def _round(self) -> bool:
        """One placement round. Returns False when nothing is queued."""
        q = self.store.load()
        pending = [j for j in q.jobs if j.status == "queued"]
        if not pending:
            return False
        if self.allowed is None and self.children:  # one by one: wait for the running job
            return True
        # ComfyUI: free it (once per URL and round) for the jobs this round may start
        considered = pending[:1] if self.allowed is None else pending
        urls: dict[tuple[str, bool], list[str]] = {}
        for job in considered:
            if job.comfyui_url and job.id not in self._comfy_done:
                self._comfy_done.add(job.id)
                urls.setdefault((job.comfyui_url, job.comfyui_allow_remote), []).append(job.id)
        for (url, remote), ids in urls.items():
            self.echo(f"job {', '.join(ids)}: {self.comfyui(url, remote)}")
        facts = self.facts()
        ours = {g for c in self.children.values() for g in c.gpus}
        lock_ids = {(g.nvml_index if g.nvml_index is not None else g.index): g.index for g in facts}
        locked = {lock_ids[n] for n in held_gpus(list(lock_ids), self.lock_home)} - ours
        running = [RunningJob(c.job_id, c.gpus, c.estimate_gib) for c in self.children.values()]
        if self.allowed is None:  # one by one: the first queued job, when nothing runs
            first = pending[0]
            req = JobRequest(first.id, first.estimate_gib, tuple(first.gpus) if first.gpus is not None else (0,))
            decisions = place([req], facts, running=running, locked=locked, share=self.share, margin_gib=self.margin)
        else:
            reqs = [j.request() for j in pending]
            decisions = place(
                reqs, facts, running=running, locked=locked, allowed=self.allowed, share=self.share,
                margin_gib=self.margin,
            )  # fmt: skip
        by_id = {j.id: j for j in pending}
        for d in decisions:
            self._apply(by_id[d.job_id], d)
        return True

    def _apply(self, job: Job, d: Decision) -> None:
        if d.action == "start":
            self._start(job, d.gpus, d.reason)
        elif d.action == "never":
            self.store.update(job.id, status="failed", diagnosis=f"never fits: {d.reason}", finished=time.time())
            self.summary.failed.append(job.id)
            self.echo(f"job {job.id}: failed, never fits: {d.reason}")
        elif self._said.get(job.id) != d.reason:
            self._said[job.id] = d.reason
            self.store.update(job.id, waiting=d.reason)
            self.echo(f"job {job.id}: waiting: {d.reason}")

    def _start(self, job: Job, gpus: tuple[int, ...], reason: str) -> None:
        logs = self.store.dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{job.id}.log"
        argv = [self.python, "-m", "lorakit", "train", *job.train_args(gpus)]
        env = child_env({"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "LORAKIT_QUEUE_JOB": job.id})
        log = log_path.open("ab")
        log.write(f"$ {shlex.join(argv)}\n".encode())
        log.flush()
        try:
            # its own group: Ctrl-C reaches the queue runner, which forwards it once
            proc = popen_group(argv, env=env, cwd=job.cwd, stdout=log)
        except OSError as exc:
            log.close()
            self.store.update(job.id, status="failed", diagnosis=f"could not start: {exc}", finished=time.time())
            self.summary.failed.append(job.id)
            self.echo(f"job {job.id}: failed to start: {exc}")
            return
        self.children[job.id] = _Child(job.id, gpus, job.estimate_gib, proc, proc.pid, log)
        self.store.update(
            job.id, status="running", started=time.time(), assigned_gpus=list(gpus), pid=proc.pid, log=str(log_path),
            waiting=None,
        )  # fmt: skip
        self.echo(f"job {job.id}: started on GPU {','.join(map(str, gpus))} (pid {proc.pid}): {reason}")
