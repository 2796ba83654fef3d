"""`lorakit --help` lists every command from main.COMMANDS without importing their modules, and
the table's help lines are the commands' own."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lorakit.cli import main


def _first_paragraph(text: str) -> str:
    return " ".join(text.strip().split("\n\n")[0].split())


@pytest.mark.parametrize("entry", main.COMMANDS, ids=lambda e: e.name)
def test_table_help_is_the_commands_own(entry: main.Entry) -> None:
    cmd = main.load_command(entry.name)
    assert cmd.name == entry.name
    assert _first_paragraph(cmd.help or "") == " ".join(entry.help.split())


def test_help_lists_every_command_and_imports_none() -> None:
    code = (
        "import sys\nfrom lorakit.cli.main import main, COMMANDS\nsys.argv = ['lorakit', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted({e.module for e in COMMANDS} & set(sys.modules)))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"COLUMNS": "200", "PATH": ""})
    lines = r.stdout.strip().splitlines()
    assert lines[-1] == "[]", r.stdout + r.stderr
    for e in main.COMMANDS:
        assert any(line.strip("│ ").startswith(e.name + " ") for line in lines), e.name


def test_a_command_runs_through_the_lazy_table() -> None:
    code = "import sys\nfrom lorakit.cli.main import main\nsys.argv = ['lorakit', 'presets', 'list']\nmain()"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"COLUMNS": "200", "PATH": ""})
    assert r.returncode == 0 and "comic-style" in r.stdout, r.stderr
    bad = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom lorakit.cli.main import main\nsys.argv = ['lorakit', 'trian']\nmain()",
        ],
        capture_output=True,
        text=True,
        env={"COLUMNS": "200", "PATH": ""},
    )
    assert bad.returncode == 2 and "Did you mean 'train'" in bad.stderr
