"""`lorakit presets list|show|copy`."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import typer

from lorakit.cli._console import console
from lorakit.config import presets as store
from lorakit.errors import ConfigError

app = typer.Typer(help="List, show and copy the shipped presets.", no_args_is_help=True)


@app.command("list")
def list_presets() -> None:
    """List the shipped presets."""
    from rich.table import Table

    table = Table("preset", "family", "extends", "description", box=None, show_edge=False)
    for name in store.preset_names():
        info = store.preset_info(name)
        table.add_row(name, info.family or "", info.extends or "", info.description)
    console.print(table)


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Preset name."),
    resolved: bool = typer.Option(
        True, "--resolved/--raw", help="Show every key after inheritance (default) or the file as written."
    ),
) -> None:
    """Show a preset (fully resolved, with every default)."""
    if not resolved:
        console.print(store.preset_path(name).read_text(encoding="utf-8"), markup=False)
        return
    import yaml

    from lorakit.config.loader import load_spec
    from lorakit.planning import spec_dump

    spec = load_spec(name).spec
    console.print(yaml.safe_dump(spec_dump(spec), sort_keys=False, allow_unicode=True), markup=False)


@app.command("copy")
def copy(
    name: str = typer.Argument(..., help="Preset name."),
    dest: Path = typer.Argument(..., help="File to write (an `extends:` line keeps pointing at the shipped parent)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Copy a preset's file to edit it; use it with --config FILE."""
    src = store.preset_path(name)
    if dest.is_dir():
        raise ConfigError(
            [f"{dest} is a folder; presets copy writes one file"],
            fix=f"give a file path, e.g. {shlex.quote(str(dest / (name + '.yaml')))}",
        )
    if dest.exists() and not force:
        raise ConfigError([f"{dest} already exists"], fix="choose another name or pass --force")
    if dest.parent and not dest.parent.exists():
        raise ConfigError([f"{dest.parent} does not exist"], fix="create the folder first")
    try:
        shutil.copyfile(src, dest)
    except OSError as exc:
        raise ConfigError(
            [f"cannot write {dest}: {exc.strerror or exc}"], fix="choose a path in a folder you can write to"
        ) from None
    use = shlex.join(["lorakit", "train", "--config", str(dest)])
    console.print(f"wrote {dest} (from preset {name}); use it with: {use}", markup=False)
