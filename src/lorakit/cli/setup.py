"""`lorakit setup`: install sd-scripts at the tested commit, or record an existing install."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from lorakit.cli._console import console

HELP = """Install kohya-ss sd-scripts (pinned, tested commit) with its own venv, or record an existing one.

Examples:

  lorakit setup --dry-run                      # print the commands, run nothing

  lorakit setup --xformers                     # clone + venv + requirements + xformers

  lorakit setup --sd-scripts ~/kohya_ss/sd-scripts --python ~/kohya_ss/venv/bin/python
"""


def register(app: typer.Typer) -> None:
    app.command("setup", help=HELP)(setup)


def setup(
    target: Path | None = typer.Option(
        None, "--dir", help="Where to clone sd-scripts (default: lorakit's data folder).", file_okay=False
    ),
    sd_scripts: Path | None = typer.Option(
        None, "--sd-scripts", help="Record this existing sd-scripts folder instead of installing.", file_okay=False
    ),
    python: str | None = typer.Option(
        None, "--python", help="With --sd-scripts: that install's python (default: its venv/.venv)."
    ),
    base_python: str = typer.Option(
        sys.executable, "--base-python", help="Interpreter that creates the trainer venv (Python 3.10-3.12)."
    ),
    xformers: bool = typer.Option(False, "--xformers", help="Also install xformers (tied to one torch build)."),
    torch_index_url: str = typer.Option(
        "", "--torch-index-url", help="PyTorch wheel index (default: the CUDA 12.4 index sd-scripts documents)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the commands it would run; change nothing."),
    as_json: bool = typer.Option(False, "--json", help="With --dry-run: print the plan as JSON."),
) -> None:
    from lorakit.kohya import setup as ks

    if sd_scripts is not None:
        record = ks.record_existing(sd_scripts, python)
        if dry_run:
            console.print(f"would record in {ks.record_file()}:", markup=False)
            console.print(json.dumps(record, indent=2), markup=False)
            return
        path = ks.write_record(record)
        console.print(f"recorded sd-scripts {record['sd_scripts']} with python {record['python']} in {path}")
        return
    opts = ks.SetupOptions(
        target=(target or ks.default_install_dir()).expanduser().absolute(),
        base_python=base_python,
        xformers=xformers,
        torch_index_url=torch_index_url or ks.TORCH_INDEX_URL,
    )
    plan = ks.plan_setup(ks.observe_tree(opts.target), opts)
    if dry_run:
        if as_json:
            steps = [{"title": s.title, "argv": list(s.argv), "cwd": str(s.cwd) if s.cwd else None} for s in plan.steps]
            print(json.dumps({"steps": steps, "record": plan.record(), "record_file": str(ks.record_file())}, indent=2))
            return
        for step in plan.steps:
            console.print(f"# {step.title}\n{step.text()}", markup=False)
        console.print(f"# then record {plan.sd_scripts} and {plan.python} in {ks.record_file()}", markup=False)
        return
    path = ks.apply_setup(plan, echo=lambda s: console.print(s, markup=False))
    console.print(f"sd-scripts {plan.commit[:10]} installed in {plan.sd_scripts}; recorded in {path}")
    console.print("next: `lorakit doctor` checks the install")
