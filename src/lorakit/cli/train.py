"""`lorakit train`: plan a run (and with --dry-run, print it and stop)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from lorakit.cli._console import console, err_console
from lorakit.cli.options import ConfigOpt, DataOpt, GpusOpt, JsonOpt, PresetOpt, SdScriptsOpt, SetOpt

if TYPE_CHECKING:  # the planning core (pydantic) is imported when a command runs, not at CLI start
    from lorakit.planning import PlannedRun

HELP = """Train a LoRA with sd-scripts.

Examples:

  lorakit train --preset comic-style --data ./my-dataset --dry-run

  lorakit train --preset sd35-medium --config my.yaml --set training.batch_size=2
"""


def register(app: typer.Typer) -> None:
    app.command("train", help=HELP)(train)


def train(
    preset: str | None = PresetOpt,
    config: Path | None = ConfigOpt,
    overrides: list[str] = SetOpt,
    data: Path | None = DataOpt,
    sd_scripts: Path | None = SdScriptsOpt,
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and the exact command; launch nothing."),
    as_json: bool = JsonOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live view; print only the outcome."),
    gpus: str | None = GpusOpt,
    force: bool = typer.Option(False, "--force", help="Launch even when the VRAM check says it does not fit."),
    fastest: bool = typer.Option(
        False, "--fastest", help="Use the batch/GC/precision with the most images/s that fits (same image visits)."
    ),
    auto_fit: bool = typer.Option(False, "--auto-fit", help="After a CUDA OOM, retry once with a config that fits."),
    stall_timeout: float | None = typer.Option(
        None,
        "--stall-timeout",
        help="Stop the trainer when it prints nothing for this many seconds (default: only warn that it stalled).",
        min=1,
    ),
) -> None:
    from lorakit.kohya.install import PLACEHOLDER, find_trainer, require_trainer
    from lorakit.planning import PlanRequest, plan_resolved, resolve_spec

    if gpus is not None:
        from lorakit.kohya.multigpu import gpus_override, parse_gpus
        from lorakit.run.queue import device_count

        overrides = [*overrides, *gpus_override(parse_gpus(gpus, device_count))]
    req = PlanRequest(preset, config, tuple(overrides), data, strict_paths=not dry_run)
    if dry_run:
        # the plan of the run folder a real run would create now; nothing is written anywhere
        from lorakit.run.folder import run_dir_path

        trainer = find_trainer(sd_scripts) or PLACEHOLDER
        loaded, warnings = resolve_spec(req)
        run_dir = run_dir_path(Path(loaded.spec.output.folder), loaded.spec.output.name).absolute()
        planned = plan_resolved(loaded, warnings, trainer, run_dir)
        print_plan(planned, as_json=as_json, dry_run=True)
        return
    # real run: the config is checked first (exit 2), then the environment (exit 3), then the fit
    # the config is loaded and the dataset scanned once: the plan is handed down to the runner
    from lorakit.gpu.guard import require_gpu
    from lorakit.training import auto_fit_for, guard, plan_new_run

    resolved = resolve_spec(req)
    trainer = require_trainer(sd_scripts, dry_run_hint=True)
    require_gpu((resolved[0].spec.training.gpus or [0])[0])
    planned = plan_new_run(req, trainer, loaded=resolved, create=False)  # the folder is made at launch
    guarded = guard(req, planned.spec, planned.dataset, force=force, fastest=fastest)
    for note in guarded.notes:
        err_console.print(f"[cyan]note:[/] {note}", markup=True)
    from lorakit.cli.runs import launch

    retry = auto_fit_for(guarded.request) if auto_fit else None
    first = plan_new_run(guarded.request, trainer) if guarded.replans(req) else planned  # --fastest: re-plan once
    code = launch(first, trainer, quiet=quiet, auto_fit=retry, stall_timeout=stall_timeout)
    if code:
        raise typer.Exit(code)


def print_plan(planned: PlannedRun, *, as_json: bool, dry_run: bool) -> None:
    if as_json:
        from lorakit.planning import plan_json

        print(json.dumps(plan_json(planned), indent=2, ensure_ascii=False))
        return
    from lorakit.planning import spec_diff

    p, d = planned.plan, planned.dataset
    for w in planned.warnings:
        err_console.print(f"[yellow]warning:[/] {w}")
    name = planned.loaded.preset or "(no preset)"
    from rich.markup import escape

    console.print(f"[bold]Preset[/] {escape(name)}: {escape(planned.spec.description)}")
    diff = spec_diff(planned.loaded)
    if diff:
        console.print("[bold]Changed from the preset[/]")
        for key, before, after in diff:
            console.print(f"  {key}: {before!r} → {after!r}")
    console.print(f"[bold]Dataset[/] {d.root} ({d.layout} layout)")
    for c in d.concepts:
        console.print(
            f"  {c.folder.name}: {c.images} images ({c.captioned} captioned) × {c.repeats} repeats"
            f" — class tokens '{c.class_tokens}'"
        )
    r = d.regularization
    if r is not None:
        used = r.used_images(d.visits_per_epoch)
        console.print(
            f"  regularization {r.folder.name}: {r.images} images × {r.repeats} repeats — class tokens "
            f"'{r.class_tokens}'; {d.reg_samples_per_epoch} reg samples/epoch ({used} images used; sd-scripts "
            "balances them to the train samples)"
        )
    s = p.steps
    console.print(f"[bold]Steps[/] {s.formula()}  ({s.steps_per_epoch} steps per epoch)")
    console.print(f"[bold]Dataset TOML[/] ({p.run_dir / 'dataset.toml'})")
    console.print(p.dataset_toml, markup=False)
    console.print("[bold]Command[/]")
    console.print(p.command_text(), markup=False, soft_wrap=True)
    if dry_run:
        console.print(
            f"Dry run: nothing was written or launched; a real run writes dataset.toml, command.txt and "
            f"spec.yaml into {p.run_dir}",
            markup=False,
            style="dim",
        )
