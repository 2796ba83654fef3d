"""The queue's job log records the `lorakit train` command shell-quoted (issue 11, item 6):
a dataset folder with spaces and ``$( )`` pastes back as the same arguments."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

from tests.queue.test_queue_cli import Q


def test_job_log_command_is_quoted(tmp_path: Path) -> None:
    q = Q(tmp_path)
    evil = tmp_path / "my data $(touch X)"
    shutil.copytree(q.data, evil)
    q.fake.plan({"quoted": {"sleep": 0.1}})
    r = q.cli(
        "queue", "add", "--preset", "comic-style", "--data", str(evil), "--vram", "12",
        "--set", f"model.checkpoint={q.fake.checkpoint}", "--set", "output.name=quoted",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    run = subprocess.run(q.run_args(), cwd=q.work, env=q.env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    log = Path(q.jobs()["quoted"]["log"]).read_text(encoding="utf-8")
    line = next(ln for ln in log.splitlines() if ln.startswith("$ "))
    words = shlex.split(line[2:])
    assert words[words.index("--data") + 1] == str(evil)
