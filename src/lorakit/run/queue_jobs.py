"""Queue jobs in and out: add (checked as `train` would), remove, and the outcome of a finished
job read from its run folder (:func:`diagnose_job`); the GPU facts placement needs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lorakit.errors import EXIT_INTERRUPTED, EXIT_OK, LorakitError
from lorakit.run.placement import GpuFacts
from lorakit.run.reaper import pid_alive

if TYPE_CHECKING:
    from lorakit.config.schema import TrainSpec
    from lorakit.planning import PlanRequest
from lorakit.run.queue_store import FINAL, Job, QueueStore


def estimate_gib(spec: TrainSpec) -> float:
    """Peak VRAM (GiB per GPU) of a spec: lorakit.gpu's estimator (the one memory model)."""
    from lorakit.gpu.estimate import estimate, shape_from_spec

    return round(float(estimate(shape_from_spec(spec)).peak_gib), 2)


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
    """``reaper.pid_alive``: a zombie is not alive, and on Windows the check never kills it
    (``os.kill(pid, 0)`` there terminates the process)."""
    return pid_alive(pid)


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
    from lorakit.events import ErrorEvent, Finished, read_events

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
            diagnosis = errors[-1].text()
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
