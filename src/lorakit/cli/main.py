"""The `lorakit` command. Sub-command groups live one per module in this package; this
module only wires them together and turns typed errors into one message + exit code.
Nothing heavy (torch, PIL, matplotlib, numpy) may be imported at module level here or in
any module this one imports: `lorakit --help` must stay instant."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.markup import escape

from lorakit import __version__
from lorakit.cli import bench as bench_cmd
from lorakit.cli import convert as convert_cmd
from lorakit.cli import dataset as dataset_cmd
from lorakit.cli import doctor as doctor_cmd
from lorakit.cli import presets as presets_cmd
from lorakit.cli import queue as queue_cmd
from lorakit.cli import report as report_cmd
from lorakit.cli import resume as resume_cmd
from lorakit.cli import runs as runs_cmd
from lorakit.cli import setup as setup_cmd
from lorakit.cli import train as train_cmd
from lorakit.cli import vram as vram_cmd
from lorakit.cli._console import err_console
from lorakit.errors import LorakitError

app = typer.Typer(
    name="lorakit",
    help="From a folder of images to a trained SDXL / SD 3.5 LoRA, with kohya-ss sd-scripts.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(presets_cmd.app, name="presets")
app.add_typer(dataset_cmd.app, name="dataset")
app.add_typer(runs_cmd.app, name="runs")
train_cmd.register(app)
resume_cmd.register(app)
setup_cmd.register(app)
doctor_cmd.register(app)
vram_cmd.register(app)
queue_cmd.register(app)
report_cmd.register(app)
bench_cmd.register(app)
convert_cmd.register(app)


def _version(value: bool) -> None:
    if value:
        print(f"lorakit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """lorakit: presets, dataset preparation, VRAM check and a monitored sd-scripts run."""


def run_guarded(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; a LorakitError becomes one message on stderr and its exit code; anything
    unexpected becomes one message naming a file that holds the traceback (LORAKIT_DEBUG=1:
    the traceback itself)."""
    import os

    if os.environ.get("LORAKIT_DEBUG"):
        return fn()
    try:
        return fn()
    except LorakitError as exc:
        err_console.print(f"[bold red]error:[/] {escape(exc.render())}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except OSError as exc:
        problem = disk_problem(exc)
        if problem is None:
            raise
        err_console.print(f"[bold red]error:[/] {escape(problem.render())}", highlight=False, soft_wrap=True)
        sys.exit(problem.exit_code)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]", highlight=False)
        sys.exit(130)
    except Exception as exc:  # a bug in lorakit: one message, the traceback kept in a file
        where = _save_crash(exc)
        err_console.print(
            f"[bold red]error:[/] lorakit hit an internal error ({escape(type(exc).__name__)}: {escape(str(exc))}). "
            f"This is a bug in lorakit, not in your files; the details are in {escape(where)} "
            "(attach it to a bug report).",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)


def _save_crash(exc: BaseException) -> str:
    """Write the traceback to a file the user can attach; its path (or why there is none)."""
    import os
    import tempfile
    import time
    import traceback

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    argv = " ".join(sys.argv)
    try:
        fd, path = tempfile.mkstemp(prefix=f"lorakit-crash-{time.strftime('%Y%m%d-%H%M%S')}-", suffix=".txt")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"lorakit {__version__}\nargv: {argv}\n\n{text}")
        return path
    except OSError:
        return "(no file could be written; run again with LORAKIT_DEBUG=1 to see it)"


def disk_problem(exc: OSError) -> LorakitError | None:
    """A full, over-quota or read-only disk under any command: one message, exit 3."""
    import errno

    from lorakit.errors import EnvironmentProblem

    if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return None
    where = f" {exc.filename}" if exc.filename else ""
    return EnvironmentProblem(
        f"cannot write{where}: {exc.strerror or exc}",
        fix="free space on that disk (or make it writable) and run the command again; sources are never touched",
    )


def main() -> None:
    run_guarded(app)
