"""Where queued jobs run: a PURE function from jobs × GPU facts to decisions.

Inputs are plain data — each job's VRAM estimate (GiB per GPU: data-parallel training holds
the whole model on every GPU it uses) and the GPUs it wants, the GPUs' memory as NVML
reports it, the queue's running jobs and the GPUs other lorakit runs hold a lock on — so
every decision can be tested on a CPU with GPUs of any size.

Rules, in the order they apply:

- A job that pins GPUs (``--gpus 0,1``) runs on exactly those; an unpinned job takes any
  ``count`` GPUs (1 unless it asked for more) among those the queue may use.
- ``never``: no GPU (or not enough GPUs) the queue may use has the total memory the job
  needs, or a pinned GPU does not exist / is not allowed. Waiting cannot help.
- A GPU is *available* to a job when (a) no other lorakit training is on it — a job this
  queue started, or a run holding the GPU's lock — unless ``share`` is on, and (b) its
  usable memory covers the estimate plus ``margin_gib``. Usable memory is the free memory
  NVML reports, but never more than total minus the estimates of this queue's jobs already
  on it (a job that has just started has not allocated its memory yet).
- Programs that are not lorakit trainings (ComfyUI, a game) only count through the memory
  they hold: they do not block a GPU whose free memory still fits.
- Jobs are looked at in queue order. A later job may start while an earlier one waits
  (backfill), but never on a GPU the earlier waiting job has reserved: a waiting job
  reserves the GPU(s) closest to fitting it, so a stream of small jobs cannot starve a big
  one.
- Among the GPUs that fit, a job takes the ones without another job first, then the
  tightest fit (least usable memory that still fits), then the lowest index — big GPUs stay
  free for big jobs.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

Action = Literal["start", "wait", "never"]
DEFAULT_MARGIN_GIB = 0.5


@dataclass(frozen=True)
class GpuFacts:
    """One GPU as NVML sees it (GiB)."""

    index: int
    total_gib: float
    free_gib: float
    processes: int = 0  # compute processes on it (any program)
    name: str = ""
    nvml_index: int | None = None  # NVML's number (lock files use it); None: same as index


@dataclass(frozen=True)
class JobRequest:
    id: str
    estimate_gib: float  # per GPU
    gpus: tuple[int, ...] | None = None  # pinned GPU ids; None: any `count` GPUs
    count: int = 1

    @property
    def wanted(self) -> int:
        return len(self.gpus) if self.gpus is not None else self.count


@dataclass(frozen=True)
class RunningJob:
    id: str
    gpus: tuple[int, ...]
    estimate_gib: float


@dataclass(frozen=True)
class Decision:
    job_id: str
    action: Action
    gpus: tuple[int, ...] = ()
    reason: str = ""


def _gib(x: float) -> str:
    return f"{x:.1f} GiB"


def place(
    jobs: Sequence[JobRequest],
    gpus: Sequence[GpuFacts],
    *,
    running: Sequence[RunningJob] = (),
    locked: Collection[int] = (),
    allowed: Collection[int] | None = None,
    share: bool = False,
    margin_gib: float = DEFAULT_MARGIN_GIB,
) -> list[Decision]:
    """One decision per job, in the order given."""
    facts = {g.index: g for g in gpus}
    pool = [g.index for g in gpus if allowed is None or g.index in allowed]
    usable: dict[int, float] = {}
    jobs_on: dict[int, list[str]] = {i: [] for i in facts}
    for i, g in facts.items():
        reserved = sum(r.estimate_gib for r in running if i in r.gpus)
        usable[i] = max(0.0, min(g.free_gib, g.total_gib - reserved))
    for r in running:
        for i in r.gpus:
            jobs_on.setdefault(i, []).append(f"job {r.id}")
    for i in locked:
        if i in jobs_on:
            jobs_on[i].append("another lorakit run (lock held)")
    held_for: dict[int, str] = {}  # GPU -> earlier waiting job that reserved it

    out: list[Decision] = []
    for job in jobs:
        need = job.estimate_gib + margin_gib
        never = _never(job, facts, pool, need, allowed)
        if never:
            out.append(Decision(job.id, "never", (), never))
            continue
        candidates = list(job.gpus) if job.gpus is not None else [i for i in pool if facts[i].total_gib >= need]

        def fits(i: int, job_id: str = job.id, need: float = need) -> bool:
            reserved_by_other = i in held_for and held_for[i] != job_id
            return (share or not jobs_on[i]) and usable[i] >= need and not reserved_by_other

        ok = [i for i in candidates if fits(i)]
        if job.gpus is not None:
            chosen = tuple(job.gpus) if len(ok) == len(job.gpus) else None
        else:
            ok.sort(key=lambda i: (bool(jobs_on[i]), usable[i], i))
            chosen = tuple(sorted(ok[: job.count])) if len(ok) >= job.count else None
        if chosen is not None:
            for i in chosen:
                usable[i] -= job.estimate_gib
                jobs_on[i].append(f"job {job.id}")
            out.append(Decision(job.id, "start", chosen, _start_reason(job, chosen, facts, need)))
            continue
        # wait: reserve the GPU(s) closest to fitting, say why each candidate is not usable
        closest = sorted(candidates, key=lambda i: (-usable[i], i))[: job.wanted]
        for i in closest:
            held_for.setdefault(i, job.id)
        out.append(Decision(job.id, "wait", (), _wait_reason(job, candidates, need, usable, jobs_on, held_for, share)))
    return out


def _never(
    job: JobRequest, facts: dict[int, GpuFacts], pool: list[int], need: float, allowed: Collection[int] | None
) -> str | None:
    if job.wanted < 1:
        return "asks for no GPU"
    if job.gpus is not None:
        for i in job.gpus:
            if i not in facts:
                have = ", ".join(str(k) for k in sorted(facts)) or "none"
                return f"GPU {i} does not exist (GPUs: {have})"
            if allowed is not None and i not in allowed:
                return f"GPU {i} is not among the GPUs this queue run may use ({', '.join(map(str, sorted(allowed)))})"
            if facts[i].total_gib < need:
                return (
                    f"needs {_gib(job.estimate_gib)} (+{_gib(need - job.estimate_gib)} margin) per GPU; "
                    f"GPU {i} has {_gib(facts[i].total_gib)} in all"
                )
        return None
    if len(pool) < job.count:
        return f"asks for {job.count} GPUs; this queue run may use {len(pool)}"
    big = [i for i in pool if facts[i].total_gib >= need]
    if len(big) < job.count:
        largest = max((facts[i].total_gib for i in pool), default=0.0)
        return (
            f"needs {_gib(job.estimate_gib)} (+{_gib(need - job.estimate_gib)} margin) per GPU on {job.count} GPU(s); "
            f"the largest GPU this queue run may use has {_gib(largest)}"
        )
    return None


def _start_reason(job: JobRequest, chosen: tuple[int, ...], facts: dict[int, GpuFacts], need: float) -> str:
    where = ", ".join(f"GPU {i} ({facts[i].name or 'GPU'}, {_gib(facts[i].free_gib)} free)" for i in chosen)
    return f"needs {_gib(job.estimate_gib)} per GPU; {where}"


def _wait_reason(
    job: JobRequest,
    candidates: list[int],
    need: float,
    usable: dict[int, float],
    jobs_on: dict[int, list[str]],
    held_for: dict[int, str],
    share: bool,
) -> str:
    parts = []
    for i in candidates:
        if not share and jobs_on[i]:
            parts.append(f"GPU {i} runs {', '.join(jobs_on[i])}")
        elif i in held_for and held_for[i] != job.id:
            parts.append(f"GPU {i} is kept for earlier job {held_for[i]}")
        elif usable[i] < need:
            parts.append(f"GPU {i} has {_gib(usable[i])} usable")
        else:
            parts.append(f"GPU {i} fits but {job.wanted} GPUs are needed at once")
    return f"needs {_gib(job.estimate_gib)} (+{_gib(need - job.estimate_gib)} margin) per GPU; " + "; ".join(parts)
