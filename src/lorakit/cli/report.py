"""`lorakit report RUN`: regenerate a run's report.png / samples.png / report.html from events.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from lorakit.cli._console import console
from lorakit.cli.options import JsonOpt
from lorakit.cli.runs import RunArg, RunsDirOpt

HELP = """Regenerate a run's report (loss curve, samples grid, summary table) from its events.jsonl
and the per-step loss the trainer logged to its logs/ folder (TensorBoard event files).

Examples:

  lorakit report last

  lorakit report runs/comic-style-20261123-203000 --json
"""


def register(app: typer.Typer) -> None:
    app.command("report", help=HELP)(report)


def report(run: str = RunArg, runs_dir: Path = RunsDirOpt, as_json: bool = JsonOpt) -> None:
    from lorakit.report.build import build_report, summary_rows
    from lorakit.run.folder import find_run

    run_dir = find_run(run, runs_dir).absolute()
    files = build_report(run_dir)
    if as_json:
        out = files.summary.as_dict() | {
            "report_html": str(files.html),
            "report_png": str(files.png) if files.png else None,
            "samples_png": str(files.samples) if files.samples else None,
        }
        print(json.dumps(out, indent=2))
        return
    width = max(len(k) for k, _ in summary_rows(files.summary))
    for key, value in summary_rows(files.summary):
        console.print(f"{key:<{width}}  {value}", markup=False)
    if files.summary.loss_note:
        console.print(f"note: {files.summary.loss_note}", markup=False)
    for path in (files.html, files.png, files.samples):
        if path is not None:
            console.print(f"wrote {path}", markup=False)
