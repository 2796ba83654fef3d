"""Every preset's argv parsed by sd-scripts' REAL parser (its setup_parser()).

Needs an sd-scripts checkout and a Python with its requirements:
  LORAKIT_TEST_SD_SCRIPTS=/path/to/sd-scripts LORAKIT_TEST_TRAINER_PYTHON=/path/to/python pytest
Skipped when they are not set (CI has no torch)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lorakit.config.presets import preset_names
from tests.conftest import REPO, make_kohya_dataset
from tests.core.test_launch_plan import VARIANTS, plan_for

SD_SCRIPTS = os.environ.get("LORAKIT_TEST_SD_SCRIPTS")
PYTHON = os.environ.get("LORAKIT_TEST_TRAINER_PYTHON")
pytestmark = pytest.mark.skipif(
    not (SD_SCRIPTS and PYTHON), reason="set LORAKIT_TEST_SD_SCRIPTS and LORAKIT_TEST_TRAINER_PYTHON"
)


def real_parse(script: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    assert SD_SCRIPTS and PYTHON
    return subprocess.run(
        [PYTHON, str(REPO / "scripts" / "sdscripts_flags.py"), "check", SD_SCRIPTS, script, "--", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_kohya_dataset(tmp_path_factory.mktemp("d") / "data", {"10_lkchar woman": 2})


@pytest.mark.parametrize(
    "preset,extra",
    [(p, ()) for p in preset_names()] + [("comic-style", v) for _, v in sorted(VARIANTS.items())],
)
def test_real_parser_accepts(preset: str, extra: tuple[str, ...], dataset: Path) -> None:
    plan = plan_for(preset, dataset, *extra)
    proc = real_parse(plan.script, plan.trainer_argv)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("ok")


def test_real_parser_rejects_bad_choice() -> None:
    proc = real_parse("sdxl_train_network.py", ["--mixed_precision=fp32"])
    assert proc.returncode == 2
    assert "invalid choice" in proc.stdout
