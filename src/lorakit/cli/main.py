"""The `lorakit` command. Sub-command groups live one per module in this package; this
module only wires them together (lazily: a command's module is imported when that command
runs, so `lorakit --help` imports none of them) and turns typed errors into one message +
exit code. Nothing heavy (torch, PIL, matplotlib, numpy) may be imported at module level here
or in any module this one imports: `lorakit --help` must stay instant (docs/cli-speed.md).

Adding a command is one line in ``COMMANDS``: its name, its module and the one-line help
`lorakit --help` lists. The module either has ``register(app)`` (which adds the command(s) to
a Typer app) or a Typer ``app`` (a command group, added under the name).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import typer
import typer.core

from lorakit import __version__
from lorakit.errors import LorakitError
from lorakit.errors import save_crash as _save_crash


@dataclass(frozen=True)
class Entry:
    name: str
    module: str
    help: str  # the line `lorakit --help` shows; tests/core/test_cli_lazy.py keeps it equal to the module's


COMMANDS: tuple[Entry, ...] = (
    Entry("train", "lorakit.cli.train", "Train a LoRA with sd-scripts."),
    Entry(
        "resume",
        "lorakit.cli.resume",
        "Continue a run from its last saved training state (needs saving.save_state=true).",
    ),
    Entry(
        "setup",
        "lorakit.cli.setup",
        "Install kohya-ss sd-scripts (pinned, tested commit) with its own venv, or record an existing one.",
    ),
    Entry(
        "doctor",
        "lorakit.cli.doctor",
        "Check the training environment and say what is missing (exit 3 if a required part is).",
    ),
    Entry("vram-check", "lorakit.cli.vram", "Estimate peak GPU memory of a training config and say whether it fits."),
    Entry(
        "report",
        "lorakit.cli.report",
        "Regenerate a run's report (loss curve, samples grid, summary table) from its events.jsonl and the per-step "
        "loss the trainer logged to its logs/ folder (TensorBoard event files).",
    ),
    Entry(
        "bench", "lorakit.cli.bench", "Measure a preset on this GPU: N steps through the normal `lorakit train` path."
    ),
    Entry(
        "synth-model",
        "lorakit.cli.bench",
        "Write a random-weight base model with the exact key layout sd-scripts loads.",
    ),
    Entry("presets", "lorakit.cli.presets", "List, show and copy the shipped presets."),
    Entry("dataset", "lorakit.cli.dataset", "Inspect and prepare image datasets."),
    Entry("runs", "lorakit.cli.runs", "Runs: list them, show one, follow its log."),
    Entry("queue", "lorakit.cli.queue", "Queue trainings; `queue run` starts each when a GPU's free memory fits it."),
    Entry("import", "lorakit.cli.convert", "Turn a config you already have into a lorakit YAML."),
    Entry(
        "export",
        "lorakit.cli.convert",
        "Write a lorakit config (or a run's spec.yaml) for the kohya_ss GUI or sd-scripts.",
    ),
    Entry(
        "try",
        "lorakit.cli.tryout",
        "Render the run's sample prompts with its LoRA in your running ComfyUI, at LoRA strengths 0 / 0.5 / 1 "
        "(or --strength), one fixed seed, and put the grid (prompts × strengths) into the run folder "
        "(comfyui-try.png, images in comfyui/) and its report.",
    ),
    Entry(
        "serve",
        "lorakit.cli.serve",
        "Start the local web dashboard: runs, live progress and loss, new trainings with the same checks as "
        "`lorakit train`, the queue and the GPUs.",
    ),
)
_BY_NAME = {e.name: e for e in COMMANDS}


def load_command(name: str) -> Any:
    """The real click command of table entry ``name`` (its module imported now)."""
    entry = _BY_NAME[name]
    module = importlib.import_module(entry.module)
    scratch = typer.Typer()

    @scratch.callback()
    def _group() -> None:  # a callback keeps typer from collapsing a one-command app
        pass

    if hasattr(module, "register"):
        module.register(scratch)
    else:
        scratch.add_typer(module.app, name=entry.name)
    group = typer.main.get_command(scratch)
    return group.commands[entry.name]  # type: ignore[attr-defined]


class LazyGroup(typer.core.TyperGroup):
    """Lists ``COMMANDS`` from the table; imports a command's module only to run it (or to show
    that command's own help)."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*(e.name for e in COMMANDS), *(n for n in super().list_commands(ctx) if n not in _BY_NAME)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is not None or cmd_name not in _BY_NAME:
            return cmd
        # listing (`lorakit --help`, completion): a stand-in with the table's help, nothing imported
        return typer.core.TyperCommand(name=cmd_name, help=_BY_NAME[cmd_name].help)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] in _BY_NAME and args[0] not in self.commands:
            self.add_command(load_command(args[0]), args[0])
        try:
            return super().resolve_command(ctx, args)
        except Exception as exc:  # click's UsageError: name the table's close matches
            message = getattr(exc, "message", None)
            if isinstance(message, str) and args and "Did you mean" not in message:
                import difflib

                close = difflib.get_close_matches(args[0], list(_BY_NAME))
                if close:
                    exc.message = f"{message.rstrip('.')}. Did you mean {', '.join(repr(c) for c in close)}?"  # type: ignore[attr-defined]
            raise


app = typer.Typer(
    name="lorakit",
    cls=LazyGroup,
    help="From a folder of images to a trained SDXL / SD 3.5 LoRA, with kohya-ss sd-scripts.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


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
        from rich.markup import escape

        from lorakit.cli._console import err_console

        err_console.print(f"[bold red]error:[/] {escape(exc.render())}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except OSError as exc:
        problem = disk_problem(exc)
        if problem is None:
            raise
        from rich.markup import escape

        from lorakit.cli._console import err_console

        err_console.print(f"[bold red]error:[/] {escape(problem.render())}", highlight=False, soft_wrap=True)
        sys.exit(problem.exit_code)
    except KeyboardInterrupt:
        from lorakit.cli._console import err_console

        err_console.print("[bold red]interrupted[/]", highlight=False)
        sys.exit(130)
    except Exception as exc:  # a bug in lorakit: one message, the traceback kept in a file
        where = _save_crash(exc)
        from rich.markup import escape

        from lorakit.cli._console import err_console

        err_console.print(
            f"[bold red]error:[/] lorakit hit an internal error ({escape(type(exc).__name__)}: {escape(str(exc))}). "
            f"This is a bug in lorakit, not in your files; the details are in {escape(where)} "
            "(attach it to a bug report).",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)


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
