"""`lorakit doctor`: what lorakit found (sd-scripts, trainer python, packages, CUDA, NVML, disk)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from lorakit.cli._console import console
from lorakit.cli.options import JsonOpt, SdScriptsOpt

HELP = """Check the training environment and say what is missing (exit 3 if a required part is).

Examples:

  lorakit doctor

  lorakit doctor --sd-scripts ~/kohya_ss/sd-scripts --json
"""

COLOUR = {"ok": "green", "warn": "yellow", "missing": "red"}


def register(app: typer.Typer) -> None:
    app.command("doctor", help=HELP)(doctor)


def doctor(
    sd_scripts: Path | None = SdScriptsOpt,
    runs_dir: Path = typer.Option(Path("runs"), "--runs", help="Run folder whose free disk is reported."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds to wait for the trainer python's answer."),
    as_json: bool = JsonOpt,
) -> None:
    from lorakit.errors import EXIT_ENVIRONMENT
    from lorakit.kohya.setup import run_doctor

    report = run_doctor(sd_scripts, runs_dir, timeout)
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        width = max(len(c.name) for c in report.checks)
        for c in report.checks:
            console.print(f"[{COLOUR[c.status]}]{c.status:<7}[/] {c.name:<{width}}  ", end="")
            console.print(c.detail, markup=False)
            if c.fix and c.status != "ok":
                console.print(f"{'':<8}{'':<{width}}  fix: ", end="")
                console.print(c.fix, markup=False)
        console.print("all required parts found" if report.ok else "[red]something required is missing[/]")
    if not report.ok:
        raise typer.Exit(EXIT_ENVIRONMENT)
