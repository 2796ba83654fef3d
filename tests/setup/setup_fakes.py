"""Helpers for setup/doctor tests: a fake sd-scripts tree (files named like the real scripts,
committed to a local git repo) and an isolated environment for `lorakit` child processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from lorakit.kohya.install import TRAIN_SCRIPTS

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.invalid",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.invalid",
}


def make_fake_sd_scripts(root: Path, *, git: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in TRAIN_SCRIPTS:
        (root / name).write_text("print('fake sd-scripts')\n", encoding="utf-8")
    (root / "library").mkdir(exist_ok=True)
    (root / "library" / "__init__.py").write_text("", encoding="utf-8")
    (root / "networks").mkdir(exist_ok=True)
    (root / "networks" / "lora.py").write_text("", encoding="utf-8")
    (root / "requirements.txt").write_text("accelerate==1.6.0\n-e .\n", encoding="utf-8")
    if git:
        env = {**os.environ, **GIT_ENV}
        for argv in (["git", "init", "-q"], ["git", "add", "."], ["git", "commit", "-q", "-m", "fake"]):
            subprocess.run(argv, cwd=root, env=env, check=True)
    return root


def git_head(root: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.strip()


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lorakit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {}), "COLUMNS": "200"},
        cwd=cwd,
        timeout=120,
    )
