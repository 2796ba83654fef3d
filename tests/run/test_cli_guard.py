"""What `lorakit train` does before and around the launch: the VRAM check (skipped, with a
note, on a machine without a GPU), the GPU lock held by another lorakit run, and --auto-fit
retrying an OOM once with a config that needs less memory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lorakit.run.lock import gpu_lock
from tests.run.conftest import fixture_log
from tests.run.test_cli_run import train_args, trainer_env  # noqa: F401  (fixture)

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the fake trainer Python is a shebang script")


def test_vram_check_skipped_without_gpu_is_said(lorakit, trainer_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    trainer_env["FAKE_LORA"] = "1"
    res = lorakit(*train_args(trainer_env), cwd=tmp_path)
    assert res.code == 0, res.err
    assert "VRAM check skipped" in res.err


def test_second_training_on_a_locked_gpu_is_refused(lorakit, trainer_env, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    monkeypatch.setenv("LORAKIT_HOME", trainer_env["LORAKIT_HOME"])  # the same lock folder as the child
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with gpu_lock(None, run="another-run"):
        res = lorakit(*train_args(trainer_env), cwd=tmp_path)
    assert res.code == 3, res.err
    assert "another-run" in res.err and "Traceback" not in res.err
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    assert json.loads((runs[0] / "state.json").read_text(encoding="utf-8"))["status"] == "refused"
    assert not (runs[0] / "train.log").exists()  # nothing was launched


def test_auto_fit_retries_an_oom_once_with_gradient_checkpointing(lorakit, trainer_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    trainer_env.update(FAKE_REPLAY=str(fixture_log("sdxl_oom.log")), FAKE_EXIT="1")
    res = lorakit(*train_args(trainer_env, "--auto-fit"), cwd=tmp_path)
    assert res.code == 1, res.err  # the stand-in trainer runs out of memory both times
    assert "CUDA" in res.err and "memory" in res.err
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2
    first, second = (json.loads((r / "state.json").read_text(encoding="utf-8")) for r in runs)
    retry = next(r for r in runs if "retry_of" in json.loads((r / "state.json").read_text(encoding="utf-8")))
    assert "--gradient_checkpointing" in (retry / "command.txt").read_text(encoding="utf-8")
    original = next(r for r in runs if r != retry)
    assert "--gradient_checkpointing" not in (original / "command.txt").read_text(encoding="utf-8")
    assert first["status"] == second["status"] == "failed"
