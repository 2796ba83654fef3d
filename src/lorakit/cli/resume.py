"""`lorakit resume RUN`: continue an interrupted/failed run from its last saved state."""

from __future__ import annotations

from pathlib import Path

import typer

from lorakit.cli._console import console, err_console
from lorakit.cli.options import SdScriptsOpt
from lorakit.cli.runs import RunsDirOpt

HELP = """Continue a run from its last saved training state (needs saving.save_state=true).

The run is relaunched in its own folder with sd-scripts' --resume; lorakit then checks that
the step counter and epoch really continue where they stopped, and warns loudly if not.

Examples:

  lorakit resume last

  lorakit resume runs/comic-style-20261123-203000
"""


def register(app: typer.Typer) -> None:
    app.command("resume", help=HELP)(resume)


def resume(
    run: str = typer.Argument(..., help="Run folder path, its name under --runs-dir, or 'last'."),
    runs_dir: Path = RunsDirOpt,
    sd_scripts: Path | None = SdScriptsOpt,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No live view; print only the outcome."),
) -> None:
    from lorakit.cli.runs import outcome_error, print_outcome
    from lorakit.kohya.install import require_trainer
    from lorakit.run.folder import find_run
    from lorakit.run.live import make_view
    from lorakit.run.resume import last_state
    from lorakit.training import resume_run

    run_dir = find_run(run, runs_dir)
    state = last_state(run_dir)
    trainer = require_trainer(sd_scripts)
    _require_gpu(run_dir)
    if not quiet:
        console.print(f"[bold]Resuming[/] {run_dir} from {state.path.name} (epoch {state.epoch}, step {state.step})")
    outcome, check = resume_run(run_dir, trainer, runs_dir=runs_dir, observer=make_view(quiet=quiet, console=console))
    for problem in check.problems:
        err_console.print(f"[bold red]RESUME DID NOT CONTINUE:[/] {problem}")
    err = outcome_error(outcome)
    if err is not None:
        raise err
    print_outcome(outcome)
    if check.ok is False:
        raise typer.Exit(1)


def _require_gpu(run_dir: Path) -> None:
    """No GPU: exit 3 before a trainer starts (the run's own first GPU, else 0)."""
    import yaml

    from lorakit.gpu.guard import require_gpu
    from lorakit.run.folder import SPEC_FILE

    gpus: object = None
    try:
        spec = yaml.safe_load((run_dir / SPEC_FILE).read_text(encoding="utf-8")) or {}
        gpus = (spec.get("training") or {}).get("gpus")
    except (OSError, yaml.YAMLError, AttributeError):
        pass
    first = gpus[0] if isinstance(gpus, list) and gpus and isinstance(gpus[0], int) else 0
    require_gpu(first)
