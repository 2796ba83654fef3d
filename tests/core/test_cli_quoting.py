"""Printed commands are safe to paste (issue 11, item 6): every command lorakit prints for the
user is shell-quoted, and ``output.name`` (which names files and run folders) must be a plain
file name."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE
from tests.core.test_cli_errors import assert_clean_error

EVIL = "my data $(touch X)"


@pytest.fixture
def lorakit(lorakit_in_process):  # type: ignore[no-untyped-def]
    """These commands start no child: the CLI runs in this process (tests/conftest.py)."""
    return lorakit_in_process


def _pasted(command: str, cwd: Path) -> list[str]:
    """What a shell makes of a printed command when pasted (the program replaced by printf)."""
    words = shlex.split(command)
    assert words[0] == "lorakit"
    proc = subprocess.run(
        ["bash", "-c", "printf '%s\\n' " + command.removeprefix("lorakit ")],
        cwd=cwd, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert not (cwd / "X").exists(), "pasting the command ran a command substitution"
    return proc.stdout.splitlines()


def test_vram_check_apply_prints_a_quoted_train_command(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    shutil.copytree(EXAMPLE, tmp_path / EVIL)
    res = lorakit("vram-check", "-p", "comic-style", "--vram", "8GB", "--data", EVIL, "--apply", "fit.yaml")
    assert res.code == 0, res.err
    line = next(ln for ln in res.out.splitlines() if "train with:" in ln)
    command = line.split("train with: ", 1)[1]
    assert _pasted(command, tmp_path) == ["train", "--preset", "comic-style", "--config", "fit.yaml", "--data", EVIL]
    # the suggestions' --set arguments are quoted too
    sets = [ln.strip() for ln in res.out.splitlines() if ln.strip().startswith("--set ")]
    assert sets and all(shlex.join(shlex.split(s)) == s for s in sets)


def test_presets_copy_prints_a_quoted_command(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "my configs").mkdir()
    res = lorakit("presets", "copy", "comic-style", "my configs/a;b.yaml")
    assert res.code == 0, res.err
    command = res.out.split("use it with: ", 1)[1].strip()
    assert _pasted(command, tmp_path) == ["train", "--config", "my configs/a;b.yaml"]


@pytest.mark.parametrize("name", ["a$(touch X)", "my lora", "../up", "-rf", ".hidden", "a;b", "x" * 101])
def test_output_name_must_be_a_plain_file_name(lorakit, name: str) -> None:  # type: ignore[no-untyped-def]
    res = lorakit("train", "-p", "comic-style", "-d", str(EXAMPLE), "--set", f"output.name={name}", "--dry-run")
    assert_clean_error(res, "`output.name`: must be a plain file name")


def test_plain_output_names_are_fine(lorakit) -> None:  # type: ignore[no-untyped-def]
    res = lorakit("train", "-p", "comic-style", "-d", str(EXAMPLE), "--set", "output.name=my_style-v2.1", "--dry-run")
    assert res.code == 0, res.err
