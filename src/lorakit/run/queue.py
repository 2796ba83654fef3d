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
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from lorakit.errors import EXIT_INTERRUPTED, EXIT_OK, EnvironmentProblem, LorakitError
from lorakit.run.lock import data_home, held_gpus
from lorakit.run.placement import DEFAULT_MARGIN_GIB, Decision, GpuFacts, JobRequest, RunningJob, place

if TYPE_CHECKING:
    from lorakit.config.schema import TrainSpec
    from lorakit.planning import PlanRequest

QUEUE_DIR = "queue"
QUEUE_FILE = "queue.json"
FINAL = ("done", "failed", "interrupted")
STATUSES = ("queued", "running", *FINAL)
# Rough peaks (GiB) per family when lorakit.gpu.estimate is not available (H200 measurements,
# shared/docs/field-notes.md: SDXL bs1 17.3, SD3.5 medium 17.6, large 41.0 / 18.6 with GC).
FALLBACK_ESTIMATE_GIB = {"sdxl": 18.0, "sd3.5-medium": 18.0, "sd3.5-large": 42.0}
FALLBACK_ESTIMATE_GC_GIB = {"sdxl": 12.0, "sd3.5-medium": 12.0, "sd3.5-large": 20.0}


def queue_dir(home: Path | None = None) -> Path:
    return (home or data_home()) / QUEUE_DIR


@dataclass
class Job:
    id: str
    name: str  # output.name
    estimate_gib: float  # per GPU
    cwd: str  # where the job was added: relative paths (runs/, --set paths) resolve there
    runs_base: str  # absolute output.folder: where its run folder appears
    preset: str | None = None
    config: str | None = None
    overrides: list[str] = field(default_factory=list)
    data: str | None = None
    gpus: list[int] | None = None  # pinned GPUs; None: any one
    sd_scripts: str | None = None
    comfyui_url: str | None = None  # free ComfyUI's VRAM before the job (comfyui.free_before_train)
    comfyui_allow_remote: bool = False
    status: str = "queued"
    added: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    assigned_gpus: list[int] | None = None
    pid: int | None = None
    run_dir: str | None = None
    exit_code: int | None = None
    diagnosis: str | None = None
    log: str | None = None
    waiting: str | None = None  # why it has not started (last placement)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def train_args(self, gpus: Sequence[int] | None = None) -> list[str]:
        """The `lorakit train` arguments of this job (on ``gpus`` when given)."""
        args: list[str] = []
        if self.preset:
            args += ["--preset", self.preset]
        if self.config:
            args += ["--config", self.config]
        if self.data:
            args += ["--data", self.data]
        if self.sd_scripts:
            args += ["--sd-scripts", self.sd_scripts]
        for o in self.overrides:
            args += ["--set", o]
        chosen = list(gpus) if gpus is not None else self.gpus
        if chosen is not None:
            args += ["--set", "training.gpus=[" + ",".join(str(g) for g in chosen) + "]"]
        return args

    def request(self) -> JobRequest:
        return JobRequest(self.id, self.estimate_gib, tuple(self.gpus) if self.gpus is not None else None)


@dataclass
class QueueData:
    jobs: list[Job] = field(default_factory=list)
    next_id: int = 1

    def get(self, job_id: str) -> Job:
        for j in self.jobs:
            if j.id == job_id:
                return j
        raise LorakitError(f"no job {job_id} in the queue", fix="`lorakit queue list` shows the jobs and their ids")

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "next_id": self.next_id, "jobs": [asdict(j) for j in self.jobs]}


class QueueStore:
    """The queue file; read with :meth:`load`, change inside :meth:`transaction`."""

    def __init__(self, home: Path | None = None) -> None:
        self.dir = queue_dir(home)
        self.path = self.dir / QUEUE_FILE

    def load(self) -> QueueData:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return QueueData()
        except (OSError, ValueError) as exc:
            raise EnvironmentProblem(
                f"the queue file {self.path} is unreadable ({exc})",
                fix="move it away to start an empty queue (it is JSON: the jobs can be read from it by hand)",
            ) from exc
        fix = "move it away to start an empty queue (it is JSON: the jobs can be read from it by hand)"
        if not isinstance(raw, dict) or not isinstance(raw.get("jobs", []), list):
            what = type(raw).__name__ if not isinstance(raw, dict) else "'jobs' not a list"
            raise EnvironmentProblem(
                f"the queue file {self.path} is not a lorakit queue (a JSON object with a list of jobs; found {what})",
                fix=fix,
            )
        jobs: list[Job] = []
        for i, j in enumerate(raw.get("jobs", [])):
            try:
                if not isinstance(j, dict):
                    raise TypeError(f"a {type(j).__name__}, not an object")
                jobs.append(Job.from_dict(j))
            except (TypeError, ValueError) as exc:
                msg = f"the queue file {self.path}: job #{i + 1} is broken ({exc})"
                raise EnvironmentProblem(msg, fix=fix) from None
        try:
            next_id = int(raw.get("next_id", len(jobs) + 1))
        except (TypeError, ValueError):
            next_id = max((int(j.id) for j in jobs if str(j.id).isdigit()), default=0) + 1
        return QueueData(jobs, next_id)

    def save(self, data: QueueData) -> None:
        from lorakit.run.folder import atomic_write_json

        atomic_write_json(self.path, data.to_json())

    @contextlib.contextmanager
    def transaction(self) -> Iterator[QueueData]:
        """Load under the queue's lock, yield for changes, save (not on an exception)."""
        import fcntl

        self.dir.mkdir(parents=True, exist_ok=True)
        with (self.dir / "queue.lock").open("a+", encoding="utf-8") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                data = self.load()
                yield data
                self.save(data)
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def update(self, job_id: str, **changes: Any) -> Job:
        with self.transaction() as q:
            job = q.get(job_id)
            for k, v in changes.items():
                setattr(job, k, v)
            return job


# ---------------------------------------------------------------------------------------
# add / remove


def estimate_gib(spec: TrainSpec) -> float:
    """Peak VRAM (GiB per GPU) of a spec: lorakit.gpu's estimator, else a per-family figure."""
    try:
        from lorakit.gpu.estimate import estimate, shape_from_spec

        return round(float(estimate(shape_from_spec(spec)).peak_gib), 2)
    except (ImportError, AttributeError):
        table = FALLBACK_ESTIMATE_GC_GIB if spec.training.gradient_checkpointing else FALLBACK_ESTIMATE_GIB
        base = table.get(spec.model.family, 24.0)
        return base * (1 + 0.25 * (spec.training.batch_size - 1))


def add_job(
    store: QueueStore,
    req: PlanRequest,
    *,
    gpus: list[int] | None = None,
    sd_scripts: Path | None = None,
    vram_gib: float | None = None,
    cwd: Path | None = None,
) -> tuple[Job, list[str]]:
    """Validate the job as `train` would (config, model files, dataset), then append it.
    Returns the job and the config's warnings."""
    from lorakit.dataset.plan import scan_dataset
    from lorakit.planning import resolve_spec

    cwd = (cwd or Path.cwd()).absolute()
    loaded, warnings = resolve_spec(req)
    spec = loaded.spec
    scan_dataset(spec.dataset)
    if gpus is None and spec.training.gpus:
        gpus = list(spec.training.gpus)
    runs_base = Path(spec.output.folder).expanduser()
    comfy = spec.comfyui.url if spec.comfyui.free_before_train else None
    with store.transaction() as q:
        job = Job(
            id=str(q.next_id),
            name=spec.output.name,
            estimate_gib=vram_gib if vram_gib is not None else estimate_gib(spec),
            cwd=str(cwd),
            runs_base=str(runs_base if runs_base.is_absolute() else cwd / runs_base),
            preset=req.preset,
            config=str(req.config.expanduser().absolute()) if req.config else None,
            overrides=list(req.overrides),
            data=str(req.data.expanduser().absolute()) if req.data else None,
            gpus=gpus,
            sd_scripts=str(sd_scripts.expanduser().absolute()) if sd_scripts else None,
            comfyui_url=comfy,
            comfyui_allow_remote=spec.comfyui.allow_remote,
        )
        q.next_id += 1
        q.jobs.append(job)
    return job, warnings


def remove_jobs(store: QueueStore, ids: Sequence[str], *, finished: bool = False) -> list[Job]:
    """Remove jobs by id (and every finished one with ``finished``); running jobs stay."""
    with store.transaction() as q:
        for job_id in ids:
            job = q.get(job_id)
            if job.status == "running":
                raise LorakitError(
                    f"job {job_id} is running (pid {job.pid})",
                    fix="stop it with Ctrl-C in the terminal of `lorakit queue run` (or kill that pid), then remove it",
                )
        gone = [j for j in q.jobs if j.id in ids or (finished and j.status in FINAL)]
        q.jobs = [j for j in q.jobs if j not in gone]
    return gone


def move_job(store: QueueStore, job_id: str, position: int) -> list[str]:
    """Move a job to ``position`` (1 = first) in the queue's order, which is the order the
    runner considers waiting jobs in; the ids in their new order."""
    if position < 1:
        raise LorakitError(f"position {position} is not in the queue", fix="positions start at 1")
    with store.transaction() as q:
        job = q.get(job_id)
        q.jobs.remove(job)
        q.jobs.insert(min(position, len(q.jobs) + 1) - 1, job)
        return [j.id for j in q.jobs]


# ---------------------------------------------------------------------------------------
# GPU facts


def gpu_facts_from_nvml() -> list[GpuFacts]:
    """Every GPU CUDA programs see (``lorakit.gpu.nvml``); EnvironmentProblem without one."""
    from lorakit.gpu.nvml import list_gpus

    return [GpuFacts(g.index, g.total_gib, g.free_gib, len(g.processes), g.name, g.nvml_index) for g in list_gpus()]


def gpu_facts_from_file(path: Path) -> list[GpuFacts]:
    """GPU facts given as data: a JSON list of {index, total_gib, free_gib, processes, name}.
    Read afresh on every placement round (for tests and dry planning on a CPU machine)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return [GpuFacts(**g) for g in raw]
    except (OSError, ValueError, TypeError) as exc:
        raise LorakitError(f"{path}: not a list of GPU facts ({exc})") from exc


def device_count() -> int:
    return len(gpu_facts_from_nvml())


# ---------------------------------------------------------------------------------------
# ComfyUI hook


def free_comfyui(url: str, allow_remote: bool = False) -> str:
    """Ask the ComfyUI at ``url`` to unload its models (``lorakit.gpu.comfyui.free``, which waits
    until the memory is back) before the queue places a job. Returns what happened; never
    raises. ComfyUI loads its models again on its next prompt: nothing to restore after."""
    from lorakit.gpu import comfyui

    try:
        return comfyui.free(url, allow_remote=allow_remote).message
    except LorakitError as exc:  # a remote URL without allow_remote, no way to read memory
        return f"ComfyUI at {url} not asked to unload: {exc.message}"


# ---------------------------------------------------------------------------------------
# outcome of a job


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_run_dir(job: Job, claimed: frozenset[str] = frozenset()) -> Path | None:
    """The run folder the job's `lorakit train` made: a ``<runs_base>/<name>-<stamp>`` folder
    whose ``state.json`` names the job's process (``lorakit_pid``), the newest if several
    (an auto-fit retry makes a second one); else the one created closest to the job's start
    that no other job claims."""
    from lorakit.run.folder import is_run_dir, read_state

    if job.run_dir and Path(job.run_dir).is_dir():
        return Path(job.run_dir)
    base, started = Path(job.runs_base), job.started
    if not base.is_dir() or started is None:
        return None
    found = [
        p
        for p in base.iterdir()
        if p.name.startswith(job.name + "-") and is_run_dir(p) and p.stat().st_mtime >= started - 2
    ]
    mine = [p for p in found if job.pid is not None and read_state(p).get("lorakit_pid") == job.pid]
    if mine:
        return max(mine, key=lambda p: p.name)
    free = [p for p in found if str(p) not in claimed and not read_state(p).get("lorakit_pid")]
    return min(free, key=lambda p: abs(p.stat().st_ctime - started)) if free else None


def _log_error(log: Path) -> str | None:
    """lorakit's own `error: ... / Fix: ...` lines at the end of the job's log."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("error:"):
            return " ".join(line.strip() for line in lines[i:][:6]).removeprefix("error:").strip()
    return None


def diagnose_job(
    job: Job, returncode: int | None, claimed: frozenset[str] = frozenset()
) -> tuple[str, int | None, str | None, str | None]:
    """(status, exit code, diagnosis, run folder) of a job whose child has exited."""
    from lorakit.run.events import ErrorEvent, Finished, read_events

    run_dir = find_run_dir(job, claimed)
    code = returncode
    diagnosis: str | None = None
    if run_dir is not None:
        from lorakit.run.folder import LOST, lost_message, read_state, run_status

        state = read_state(run_dir)
        if run_status(state) == LOST:  # lorakit train was killed (kill -9, OOM killer): no outcome written
            return "failed", code, lost_message(run_dir, state), str(run_dir)
        events = read_events(run_dir)
        finished = [e for e in events if isinstance(e, Finished)]
        errors = [e for e in events if isinstance(e, ErrorEvent)]
        if finished and code is None:
            code = finished[-1].exit_code
        if errors:
            e = errors[-1]
            diagnosis = f"{e.kind}: {e.message}" + (f" Fix: {e.fix}" if e.fix else "")
    if diagnosis is None and job.log and code not in (None, EXIT_OK):
        diagnosis = _log_error(Path(job.log))
    if code is None:
        status = "interrupted"
        diagnosis = diagnosis or "the queue runner stopped while the job ran; its result is unknown"
    elif code == EXIT_OK:
        status = "done"
    elif code == EXIT_INTERRUPTED or code < 0:
        status = "interrupted"
    else:
        status = "failed"
    if status != "done" and diagnosis is None:
        diagnosis = f"lorakit train exited with code {code}" + (f"; see {job.log}" if job.log else "")
    return status, code, diagnosis, str(run_dir) if run_dir else None


# ---------------------------------------------------------------------------------------
# the runner


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
class RunSummary:
    done: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    interrupted: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        return 1 if self.failed else EXIT_OK


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
        self.summary = RunSummary()
        self._stop = 0
        self._said: dict[str, str] = {}
        self._comfy_done: set[str] = set()

    # -- lifecycle -------------------------------------------------------------------
    def run(self) -> RunSummary:
        with self._runner_lock():
            restore = self._install_signals()
            try:
                self._adopt()
                while True:
                    self._reap()
                    if self._stop:
                        if not self.children:
                            break
                    elif not self._round() and not self.children:
                        break
                    self._sleep()
            finally:
                if restore:
                    restore()
        return self.summary

    @contextlib.contextmanager
    def _runner_lock(self) -> Iterator[None]:
        import fcntl

        self.store.dir.mkdir(parents=True, exist_ok=True)
        with (self.store.dir / "runner.lock").open("a+", encoding="utf-8") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                who = fh.read().strip() or "another process"
                raise EnvironmentProblem(
                    f"the queue is already being run (by pid {who})",
                    fix="let that `lorakit queue run` work through the queue (it picks up jobs added meanwhile)",
                ) from None
            fh.seek(0)
            fh.truncate()
            fh.write(str(os.getpid()))
            fh.flush()
            try:
                yield
            finally:
                fh.seek(0)
                fh.truncate()
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _install_signals(self) -> Callable[[], None] | None:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum: int, frame: FrameType | None) -> None:
            self._stop += 1
            if self._stop == 1:
                self.echo(f"stopping: no new jobs; asking {len(self.children)} running job(s) to stop")
            for child in self.children.values():
                with contextlib.suppress(OSError):
                    os.kill(child.pid, signum)

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for s, h in old.items():
                signal.signal(s, h)

        return restore

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
        env = dict(os.environ)
        env.update({"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "LORAKIT_QUEUE_JOB": job.id, "PYTHONUNBUFFERED": "1"})
        log = log_path.open("ab")
        log.write(f"$ {shlex.join(argv)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                argv, cwd=job.cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches the queue runner, which forwards it once
            )  # fmt: skip
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
