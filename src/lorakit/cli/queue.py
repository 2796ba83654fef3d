"""`lorakit queue add|list|remove|run`: trainings that start when a GPU has room."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from lorakit.cli._console import console, err_console
from lorakit.cli.options import ConfigOpt, DataOpt, GpusOpt, JsonOpt, PresetOpt, SdScriptsOpt, SetOpt

app = typer.Typer(
    help="""Queue trainings; `queue run` starts each when a GPU's free memory fits it.

Examples:

  lorakit queue add --preset comic-style --data ./comic --set model.checkpoint=sdxl.safetensors

  lorakit queue add --preset sd35-medium --config me.yaml --gpus 1

  lorakit queue list

  lorakit queue run                 # one job after the other, on GPU 0

  lorakit queue run --gpus all      # jobs side by side, each on a GPU with room for it

  lorakit queue remove 3
""",
    no_args_is_help=True,
)


def register(main: typer.Typer) -> None:
    main.add_typer(app, name="queue")


@app.command("add")
def add(
    preset: str | None = PresetOpt,
    config: Path | None = ConfigOpt,
    overrides: list[str] = SetOpt,
    data: Path | None = DataOpt,
    gpus: str | None = GpusOpt,
    sd_scripts: Path | None = SdScriptsOpt,
    vram: float | None = typer.Option(
        None, "--vram", help="GiB per GPU the job needs (default: lorakit's estimate).", min=0.1
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Check a training like `train` does (config, model files, dataset) and queue it."""
    from lorakit.kohya.multigpu import parse_gpus
    from lorakit.planning import PlanRequest
    from lorakit.run.queue import QueueStore, add_job, device_count

    ids = parse_gpus(gpus, device_count)
    req = PlanRequest(preset, config, tuple(overrides), data, strict_paths=True)
    job, warnings = add_job(QueueStore(), req, gpus=ids, sd_scripts=sd_scripts, vram_gib=vram)
    if as_json:
        print(json.dumps({"id": job.id, "estimate_gib": job.estimate_gib, "gpus": job.gpus, "warnings": warnings}))
        return
    for w in warnings:
        err_console.print(f"[yellow]warning:[/] {w}")
    where = f"GPU {','.join(map(str, job.gpus))}" if job.gpus is not None else "any GPU"
    console.print(
        f"queued job {job.id}: {job.name} ({job.preset or 'config'}), {job.estimate_gib:.1f} GiB per GPU, {where}"
    )


def _age(t: float | None) -> str:
    if t is None:
        return ""
    return time.strftime("%m-%d %H:%M", time.localtime(t))


@app.command("list")
def list_jobs(as_json: bool = JsonOpt) -> None:
    """Every job with its status, GPUs, run folder and, for a failed one, the diagnosis."""
    from dataclasses import asdict

    from lorakit.run.queue import QueueStore

    store = QueueStore()
    q = store.load()
    if as_json:
        print(json.dumps([asdict(j) for j in q.jobs], indent=2))
        return
    if not q.jobs:
        console.print(f"the queue is empty ({store.path})")
        return
    colour = {"queued": "cyan", "running": "green", "done": "dim", "failed": "red", "interrupted": "yellow"}
    for j in q.jobs:
        gpus = j.assigned_gpus if j.assigned_gpus is not None else j.gpus
        where = "GPU " + ",".join(map(str, gpus)) if gpus is not None else "any GPU"
        console.print(
            f"{j.id:>3}  [{colour.get(j.status, 'white')}]{j.status:<11}[/] {j.name:<20} "
            f"{j.preset or '-':<18} {j.estimate_gib:5.1f} GiB  {where:<10} {_age(j.started or j.added)}"
        )
        detail = j.diagnosis if j.status in ("failed", "interrupted") else j.waiting if j.status == "queued" else None
        if j.run_dir:
            console.print(f"       run: {j.run_dir}", markup=False)
        if detail:
            console.print(f"       {detail}", markup=False)


@app.command("remove")
def remove(
    ids: list[str] = typer.Argument(None, help="Job ids (lorakit queue list)."),
    finished: bool = typer.Option(False, "--finished", help="Also remove every done/failed/interrupted job."),
) -> None:
    """Remove queued or finished jobs (a running job must be stopped first)."""
    from lorakit.errors import LorakitError
    from lorakit.run.queue import QueueStore, remove_jobs

    if not ids and not finished:
        raise LorakitError("nothing to remove", fix="give job ids, or --finished")
    gone = remove_jobs(QueueStore(), ids or [], finished=finished)
    console.print(f"removed {len(gone)} job(s): {', '.join(j.id for j in gone) or '-'}")


@app.command("move")
def move(
    job: str = typer.Argument(..., help="Job id (lorakit queue list)."),
    position: int = typer.Argument(..., help="New place in the queue, 1 = first."),
) -> None:
    """Move a job to another place in the queue (waiting jobs start in queue order)."""
    from lorakit.run.queue import QueueStore, move_job

    order = move_job(QueueStore(), job, position)
    console.print(f"queue order: {' '.join(order)}")


@app.command("run")
def run(
    gpus: str | None = typer.Option(
        None,
        "--gpus",
        help="GPUs the queue may use, jobs side by side: all | 0,1. Default: one job at a time (GPU 0 unless a job "
        "names its GPUs).",
        metavar="IDS",
    ),
    share: bool = typer.Option(False, "--share", help="Allow two jobs on one GPU when both fit in its memory."),
    margin: float = typer.Option(0.5, "--margin", help="GiB kept free on a GPU beyond a job's estimate."),
    poll: float = typer.Option(2.0, "--poll", help="Seconds between looks at the GPUs."),
    facts: Path | None = typer.Option(
        None, "--gpu-facts", hidden=True, help="JSON list of GPU facts to use instead of NVML (tests)."
    ),
) -> None:
    """Work through the queue; returns when no job is queued or running (exit 1 if one failed)."""
    from lorakit.kohya.multigpu import parse_gpus
    from lorakit.run.placement import GpuFacts
    from lorakit.run.queue import QueueRunner, QueueStore, gpu_facts_from_file, gpu_facts_from_nvml

    def read_facts() -> list[GpuFacts]:
        return gpu_facts_from_file(facts) if facts is not None else gpu_facts_from_nvml()

    allowed = parse_gpus(gpus, lambda: len(read_facts()))
    runner = QueueRunner(
        QueueStore(),
        allowed=set(allowed) if allowed is not None else None,
        share=share,
        facts=read_facts,
        echo=lambda s: console.print(f"{time.strftime('%H:%M:%S')} {s}", markup=False),
        poll_s=poll,
        margin_gib=margin,
    )
    summary = runner.run()
    console.print(
        f"queue run finished: {len(summary.done)} done, {len(summary.failed)} failed, "
        f"{len(summary.interrupted)} interrupted"
    )
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)
