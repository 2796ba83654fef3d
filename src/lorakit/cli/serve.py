"""`lorakit serve`: the local web dashboard (needs the serve extra)."""

from __future__ import annotations

from pathlib import Path

import typer

HELP = """Start the local web dashboard: runs, live progress and loss, new trainings with the same
checks as `lorakit train`, the queue and the GPUs.

It listens on 127.0.0.1 only, unless --host says otherwise; then every request needs a token
(--token, or one generated and printed once). Needs `pip install 'lorakit[serve]'`.

Examples:

  lorakit serve

  lorakit serve --port 8000 --root ~/datasets --root ~/models
"""


def register(app: typer.Typer) -> None:
    app.command("serve", help=HELP)(serve)


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (non-loopback needs a token)."),
    port: int = typer.Option(7870, "--port", help="Port (0: any free one; the URL printed says which)."),
    runs_dir: Path = typer.Option(
        Path("runs"), "--runs", "--runs-dir", help="Folder holding the run folders.", envvar="LORAKIT_RUNS_DIR"
    ),
    roots: list[Path] = typer.Option(
        [], "--root", help="A folder the browser may name (datasets, configs, models); repeatable. Default: here."
    ),
    token: str | None = typer.Option(
        None, "--token", help="The token a non-loopback bind requires (default: a new one, printed once)."
    ),
) -> None:
    from lorakit.serve import require_extra

    require_extra()
    from lorakit.serve.server import run_server

    run_server(host=host, port=port, runs=runs_dir, roots=roots, token=token)
