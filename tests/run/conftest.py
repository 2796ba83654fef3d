"""Helpers for the runner tests: recorded sd-scripts logs and the fake trainer child."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lorakit.run.runner import Child
from tests.conftest import stand_in_sd_scripts

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures" / "sdscripts"
FAKE_TRAINER = HERE / "children" / "fake_trainer.py"


def fixture_log(name: str) -> Path:
    """A recorded sd-scripts log; the test is skipped while it has not been recorded."""
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"recorded log tests/fixtures/sdscripts/{name} not captured yet")
    return path


def trainer_flags(run_dir: Path, name: str = "lora", dim: int = 4, alpha: float = 1.0) -> list[str]:
    return [
        f"--output_dir={run_dir}",
        f"--output_name={name}",
        "--network_module=networks.lora",
        f"--network_dim={dim}",
        f"--network_alpha={alpha:g}",
        "--network_train_unet_only",
    ]


def fake_child(run_dir: Path, *, name: str = "lora", dim: int = 4, alpha: float = 1.0, **env: str) -> Child:
    """The fake trainer as the child, steered by FAKE_* variables (see children/fake_trainer.py)."""
    argv = [sys.executable, str(FAKE_TRAINER), *trainer_flags(run_dir, name, dim, alpha)]
    return Child(argv=argv, cwd=run_dir, env={f"FAKE_{k.upper()}": v for k, v in env.items()})


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    d = tmp_path / "runs" / "lora-20261123-120000"
    d.mkdir(parents=True)
    return d


def stand_in_trainer_env(env: dict[str, str], tmp_path: Path, script: Path) -> dict[str, str]:
    """An sd-scripts-shaped folder and a 'python' that runs ``script`` (a stand-in trainer that
    reads the argv exactly as lorakit builds it), set in ``env`` as LORAKIT_SD_SCRIPTS /
    LORAKIT_PYTHON; FAKE_CKPT names a placeholder base model file."""
    sd = stand_in_sd_scripts(tmp_path / "sd-scripts")
    py = tmp_path / "bin" / "python"
    py.parent.mkdir()
    py.write_text(
        f"#!{sys.executable}\nimport runpy, sys\nsys.argv[0] = {str(script)!r}\n"
        f"runpy.run_path({str(script)!r}, run_name='__main__')\n",
        encoding="utf-8",
    )
    py.chmod(0o755)
    ckpt = tmp_path / "models" / "base.safetensors"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"not a real model")
    env.update(LORAKIT_SD_SCRIPTS=str(sd), LORAKIT_PYTHON=str(py), FAKE_CKPT=str(ckpt))
    return env
