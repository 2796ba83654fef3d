"""lorakit.training: one real `train` loads the config and scans the dataset once, and the
whole run (report included) happens under one signal handler that is restored afterwards.
In-process (the CLI app called directly), with the fake trainer as the trainer's Python."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lorakit import planning
from lorakit.cli.main import app
from lorakit.events import Finished, read_events
from tests.conftest import EXAMPLE
from tests.run.conftest import FAKE_TRAINER, stand_in_trainer_env

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the fake trainer Python is a shebang script")


def counting(fn: Callable[..., Any], calls: list[str], name: str) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls.append(name)
        return fn(*args, **kwargs)

    return wrapped


@pytest.fixture
def in_process_env(isolated_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = stand_in_trainer_env(isolated_env, tmp_path, FAKE_TRAINER)
    env["FAKE_LORA"] = "1"
    for k in [k for k in os.environ if k.startswith("LORAKIT_")]:
        monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return env


def test_train_plans_once_and_restores_the_signal_handlers(
    in_process_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(planning, "load_spec", counting(planning.load_spec, calls, "load"))
    monkeypatch.setattr(planning, "scan_dataset", counting(planning.scan_dataset, calls, "scan"))
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    args = [
        "train",
        "-p",
        "comic-style",
        "-d",
        str(EXAMPLE),
        "--set",
        f"model.checkpoint={in_process_env['FAKE_CKPT']}",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert sorted(calls) == ["load", "scan"]
    assert {s: signal.getsignal(s) for s in before} == before
    (run,) = [p for p in (tmp_path / "work" / "runs").iterdir() if p.is_dir()]
    assert (run / "report.html").is_file()
    assert isinstance(read_events(run)[-1], Finished)


def test_bench_with_data_plans_once(in_process_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(planning, "load_spec", counting(planning.load_spec, calls, "load"))
    monkeypatch.setattr(planning, "scan_dataset", counting(planning.scan_dataset, calls, "scan"))
    ckpt = in_process_env["FAKE_CKPT"]
    args = [
        "bench",
        "-p",
        "comic-style",
        "-d",
        str(EXAMPLE),
        "--steps",
        "3",
        "--json",
        "--set",
        f"model.checkpoint={ckpt}",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert sorted(calls) == ["load", "scan"]
