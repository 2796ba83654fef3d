"""`lorakit train`: plan a run (and with --dry-run, print it and stop)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from lorakit.cli._console import console, err_console
from lorakit.cli.options import ConfigOpt, DataOpt, JsonOpt, PresetOpt, SdScriptsOpt, SetOpt

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
) -> None:
    from lorakit.kohya.install import PLACEHOLDER, find_trainer, require_trainer
    from lorakit.planning import PlanRequest, plan_run, resolve_spec

    req = PlanRequest(preset, config, tuple(overrides), data, strict_paths=not dry_run)
    if dry_run:
        trainer = find_trainer(sd_scripts) or PLACEHOLDER
        run_dir = Path(tempfile.mkdtemp(prefix="lorakit-dryrun-"))
        planned = plan_run(req, trainer, run_dir)
        write_run_files(planned)
        print_plan(planned, as_json=as_json, dry_run=True)
        return
    # real run: the config is checked first (exit 2), then the environment (exit 3)
    resolve_spec(req)
    trainer = require_trainer(sd_scripts)
    from lorakit.cli.runs import launch

    # --auto-fit hook: pass `auto_fit=fn(planned, outcome) -> PlanRequest | None` (see
    # lorakit.run.runner.AutoFit); an OOM run is then retried once with the request fn returns.
    code = launch(req, trainer, quiet=quiet, auto_fit=None)
    if code:
        raise typer.Exit(code)


def write_run_files(planned: PlannedRun) -> None:
    import yaml

    from lorakit.planning import spec_dump

    run_dir = planned.plan.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    files = planned.plan.files() | {"spec.yaml": yaml.safe_dump(spec_dump(planned.spec), sort_keys=False)}
    for name, text in files.items():
        tmp = run_dir / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(run_dir / name)


def plan_json(planned: PlannedRun) -> dict[str, Any]:
    from lorakit.planning import spec_diff, spec_dump

    p, d = planned.plan, planned.dataset
    return {
        "preset": planned.loaded.preset,
        "argv": p.argv,
        "cwd": str(p.cwd),
        "env": p.env,
        "run_dir": str(p.run_dir),
        "dataset_toml": p.dataset_toml,
        "sample_prompts": p.sample_prompts,
        "steps": {
            "images_x_repeats": p.steps.images_x_repeats,
            "batch_size": p.steps.batch_size,
            "batches_per_epoch": p.steps.batches_per_epoch,
            "steps_per_epoch": p.steps.steps_per_epoch,
            "n_gpus": p.steps.n_gpus,
            "effective_batch": p.steps.effective_batch,
            "epochs": p.steps.epochs,
            "total_steps": p.steps.total_steps,
            "formula": p.steps.formula(),
        },
        "dataset": {
            "root": str(d.root),
            "layout": d.layout,
            "concepts": [
                {
                    "folder": str(c.folder),
                    "images": c.images,
                    "captioned": c.captioned,
                    "repeats": c.repeats,
                    "class_tokens": c.class_tokens,
                }
                for c in d.concepts
            ],
        },
        "changes": [{"key": k, "preset": a, "value": b} for k, a, b in spec_diff(planned.loaded)],
        "spec": spec_dump(planned.spec),
        "warnings": planned.warnings,
    }


def print_plan(planned: PlannedRun, *, as_json: bool, dry_run: bool) -> None:
    if as_json:
        print(json.dumps(plan_json(planned), indent=2, ensure_ascii=False))
        return
    from lorakit.planning import spec_diff

    p, d = planned.plan, planned.dataset
    for w in planned.warnings:
        err_console.print(f"[yellow]warning:[/] {w}")
    name = planned.loaded.preset or "(no preset)"
    console.print(f"[bold]Preset[/] {name}: {planned.spec.description}")
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
    s = p.steps
    console.print(f"[bold]Steps[/] {s.formula()}  ({s.steps_per_epoch} steps per epoch)")
    console.print(f"[bold]Dataset TOML[/] ({p.run_dir / 'dataset.toml'})")
    console.print(p.dataset_toml, markup=False)
    console.print("[bold]Command[/]")
    console.print(p.command_text(), markup=False, soft_wrap=True)
    if dry_run:
        console.print(
            f"[dim]Dry run: the run's files (dataset.toml, command.txt, spec.yaml) are in {p.run_dir}; "
            "nothing was launched.[/]"
        )
