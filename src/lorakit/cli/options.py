"""Options shared by the commands that take a training config (train, vram-check, bench, queue)."""

from __future__ import annotations

from pathlib import Path

import typer

PresetOpt = typer.Option(None, "--preset", "-p", help="Shipped preset to start from (lorakit presets list).")
ConfigOpt = typer.Option(
    None,
    "--config",
    "-c",
    help="Your YAML; it extends --preset (or names its own `extends:`).",
    dir_okay=False,
)
SetOpt = typer.Option(
    [],
    "--set",
    "-s",
    help="Override a key: --set training.batch_size=2 (repeatable; ~key deletes).",
    metavar="KEY=VALUE",
)
DataOpt = typer.Option(None, "--data", "-d", help="Dataset folder (sets dataset.folder).", file_okay=False)
SdScriptsOpt = typer.Option(
    None,
    "--sd-scripts",
    help="sd-scripts checkout to use (else LORAKIT_SD_SCRIPTS, else `lorakit setup`'s).",
    envvar="LORAKIT_SD_SCRIPTS",
    file_okay=False,
)
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of text.")
GpusOpt = typer.Option(
    None,
    "--gpus",
    help="GPUs to train on, as nvidia-smi numbers them: 0 | 0,1 (one run across both) | all. Sets training.gpus.",
    metavar="IDS",
)


def as_path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)
