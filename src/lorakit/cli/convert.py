"""`lorakit import` and `lorakit export`: thin shells over lorakit.convert (pure: parse →
report → config); this module only prints, refuses or writes files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from lorakit import families
from lorakit.cli._console import console, err_console

if TYPE_CHECKING:
    from lorakit.convert.api import Result

IMPORT_HELP = """Turn a config you already have into a lorakit YAML.

FILE is a kohya_ss GUI config (.json saved from the LoRA tab), an sd-scripts --config_file
TOML (e.g. the config_lora-*.toml the GUI leaves next to a LoRA), or a text file holding the
`accelerate launch … sdxl_train_network.py …` line. A table shows what happened to every key:
mapped (to which lorakit key), dropped (with the reason), or not carried over (an error
unless --lenient). Flux.1 [dev] configs (flux1_checkbox, flux_train_network.py) import;
SD 1.5/2.x, Chroma, fine-tune and textual-inversion configs are refused.

Examples:

  lorakit import "SDXL - LoRA AI_Now prodigy v1.0.json" -o my.yaml

  lorakit import config_lora-20240101-120000.toml --lenient

  lorakit train --config my.yaml --data ./my-dataset --dry-run
"""

EXPORT_HELP = """Write a lorakit config (or a run's spec.yaml) for the kohya_ss GUI or sd-scripts.

SOURCE is a run folder (runs/<name>-<time>, its spec.yaml is read) or a lorakit YAML.
--format kohya-gui writes a JSON the GUI's LoRA tab opens (every key it reads is written);
--format toml writes an sd-scripts --config_file TOML. `lorakit import` of either gives back
the same command line.

Examples:

  lorakit export runs/my-style-20261202-101500 --format kohya-gui -o my-style.json

  lorakit export my.yaml --format toml
"""

_STYLE = {"mapped": "green", "dropped": "dim", "unsupported": "red", "unknown": "red"}
_WORD = {"mapped": "mapped", "dropped": "dropped", "unsupported": "NOT CARRIED", "unknown": "NOT UNDERSTOOD"}


def register(app: typer.Typer) -> None:
    app.command("import", help=IMPORT_HELP)(import_cmd)
    app.command("export", help=EXPORT_HELP)(export_cmd)


def _short(value: Any, width: int = 48) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def print_report(result: Result) -> None:
    from rich.table import Table

    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("key")
    table.add_column("value")
    table.add_column("status")
    table.add_column("lorakit key / reason")
    order = {"unknown": 0, "unsupported": 1, "mapped": 2, "dropped": 3}
    for row in sorted(result.rows, key=lambda r: (order[r.status], r.key.lower())):
        target = row.target + (f" ({row.note})" if row.note else "")
        style = _STYLE[row.status]
        table.add_row(row.key, _short(row.value), f"[{style}]{_WORD[row.status]}[/]", target, style=None)
    console.print(table)


def import_cmd(
    file: Path = typer.Argument(..., help="GUI .json, sd-scripts .toml, or a script/text file with the launch line."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="The lorakit YAML to write (default: ./<FILE name>.yaml).", dir_okay=False
    ),
    lenient: bool = typer.Option(
        False, "--lenient", help="Write the config even when some values cannot be carried over."
    ),
    family: str | None = typer.Option(
        None,
        "--family",
        help=f"One of {families.names_text()}, for a file that does not say which (SD 3: medium or large).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
    as_json: bool = typer.Option(False, "--json", help="Print the report and the config as JSON."),
) -> None:
    from lorakit.convert.api import import_config, to_yaml
    from lorakit.convert.model import BLOCKING
    from lorakit.errors import ConfigError
    from lorakit.run.folder import atomic_write_text

    if family is not None and family not in families.NAMES:
        raise ConfigError([f"--family {family}: not a family lorakit trains"], fix=f"use {families.names_text()}")
    result = import_config(file, family)
    blocking = [r for r in result.rows if r.status in BLOCKING]
    target = out if out is not None else Path(f"{_stem(file)}.yaml")
    if as_json:
        print(json.dumps(_report_json(result, target), indent=2, ensure_ascii=False, default=str))
    else:
        print_report(result)
        for note in result.imported.notes:
            err_console.print(f"[cyan]note:[/] {note}")
        if result.extends:
            console.print(
                f"extends: {result.extends} (the closest shipped preset; the file holds only the differences)"
            )
    if result.problems and not lenient:
        raise ConfigError(
            result.problems, fix="the imported values break a lorakit rule; run again with --lenient and edit the YAML"
        )
    if blocking and not lenient:
        names = ", ".join(f"{r.key}={_short(r.value, 24)}" for r in blocking)
        raise ConfigError(
            [f"{file}: {len(blocking)} value(s) lorakit cannot carry over: {names}"],
            fix="see the table above; run again with --lenient to write the config without them",
        )
    if target.resolve() == file.resolve():
        raise ConfigError([f"{target}: that is the file being imported"], fix="choose another --out")
    if target.exists() and not force:
        raise ConfigError([f"{target} exists"], fix="choose another --out, or pass --force to replace it")
    atomic_write_text(target, to_yaml(result, file))
    if not as_json:
        console.print(f"wrote {target}")
        console.print(f"next: lorakit train --config {target} --data DATASET --dry-run", markup=False)


def _stem(path: Path) -> str:
    import re

    return re.sub(r"[^\w.]+", "-", path.stem).strip("-.") or "imported"


def _report_json(result: Result, target: Path) -> dict[str, Any]:
    return {
        "source_kind": result.imported.source.kind,
        "family": result.imported.source.family,
        "out": str(target),
        "extends": result.extends,
        "rows": [
            {"key": r.key, "value": r.value, "status": r.status, "target": r.target, "note": r.note}
            for r in result.rows
        ],
        "notes": result.imported.notes,
        "problems": result.problems,
        "config": result.short,
    }


def export_cmd(
    source: Path = typer.Argument(..., help="A run folder (its spec.yaml) or a lorakit YAML."),
    fmt: str = typer.Option(..., "--format", "-f", help="kohya-gui (GUI JSON) or toml (sd-scripts --config_file)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="File to write (default: print it).", dir_okay=False),
    force: bool = typer.Option(False, "--force", help="Replace OUT if it exists."),
) -> None:
    from lorakit.config.loader import load_spec
    from lorakit.convert.export import gui_config, render_toml, sdscripts_args
    from lorakit.errors import ConfigError
    from lorakit.run.folder import atomic_write_text

    if fmt not in ("kohya-gui", "toml"):
        raise ConfigError([f"--format {fmt}: unknown"], fix="use --format kohya-gui or --format toml")
    path = source / "spec.yaml" if source.is_dir() else source
    if not path.is_file():
        raise ConfigError([f"{path}: no such file"], fix="give a run folder (with spec.yaml) or a lorakit YAML")
    spec = load_spec(None, path).spec
    if fmt == "kohya-gui":
        data, notes = gui_config(spec)
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    else:
        args, notes = sdscripts_args(spec)
        text = render_toml(
            args, [f"sd-scripts --config_file for {spec.model.family}, exported by lorakit from {path.name}"]
        )
    for note in notes:
        err_console.print(f"[cyan]note:[/] {note}")
    if out is None:
        print(text, end="")
        return
    if out.exists() and not force:
        raise ConfigError([f"{out} exists"], fix="choose another --out, or pass --force to replace it")
    atomic_write_text(out, text)
    err_console.print(f"wrote {out}")
