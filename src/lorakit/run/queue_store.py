"""The queue file: ``<data dir>/queue/queue.json`` (every job: queued, running, done, failed,
interrupted), changed only inside :meth:`QueueStore.transaction` (the queue's file lock, then an
atomic write), so ``queue add`` may run while ``queue run`` works."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorakit.errors import EnvironmentProblem, LorakitError
from lorakit.fs import write_json
from lorakit.run.lock import data_home, file_lock
from lorakit.run.placement import JobRequest

if TYPE_CHECKING:
    pass

QUEUE_DIR = "queue"
QUEUE_FILE = "queue.json"
FINAL = ("done", "failed", "interrupted")
STATUSES = ("queued", "running", *FINAL)


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

        write_json(self.path, data.to_json())

    @contextlib.contextmanager
    def transaction(self) -> Iterator[QueueData]:
        """Load under the queue's lock, yield for changes, save (not on an exception)."""
        with file_lock(self.dir / "queue.lock", blocking=True):
            data = self.load()
            yield data
            self.save(data)

    def update(self, job_id: str, **changes: Any) -> Job:
        with self.transaction() as q:
            job = q.get(job_id)
            for k, v in changes.items():
                setattr(job, k, v)
            return job
