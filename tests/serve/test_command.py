"""`lorakit serve` as a command: light at CLI start, its help, a port already taken."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def test_cli_start_imports_no_web_stack() -> None:
    code = (
        "import sys; import lorakit.cli.main; "
        "print([n for n in ('starlette', 'uvicorn', 'jinja2', 'lorakit.serve.app') if n in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_help_names_the_options() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "lorakit", "serve", "--help"], capture_output=True, text=True, env={"COLUMNS": "200"}
    )
    assert r.returncode == 0
    for opt in ("--host", "--port", "--runs", "--root", "--token"):
        assert opt in r.stdout


def test_a_taken_port_is_one_message_exit_3(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "lorakit", "serve", "--port", str(port), "--runs", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 3, r.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "Traceback" not in r.stderr
