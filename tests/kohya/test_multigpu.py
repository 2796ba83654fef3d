"""Several GPUs, CPU part: golden accelerate argv for 1, 2 and 4 GPUs, `--gpus` parsing, and
the per-GPU / effective-batch steps math."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lorakit.dataset.plan import StepsMath
from lorakit.errors import ConfigError
from lorakit.kohya.install import Trainer
from lorakit.kohya.manifest import check_argv
from lorakit.kohya.multigpu import gpus_override, multigpu_steps, parse_gpus
from lorakit.planning import PlannedRun, PlanRequest, plan_run
from tests.conftest import EXAMPLE

TRAINER = Trainer(Path("/opt/sd-scripts"), "/opt/venv/bin/python")
RUN_DIR = Path("/runs/comic-20261123-120000")
HEAD = ["/opt/venv/bin/python", "-m", "accelerate.commands.launch"]
TAIL = ["--num_machines=1", "--mixed_precision=fp16", "--dynamo_backend=no", "--num_cpu_threads_per_process=2"]
SCRIPT = "/opt/sd-scripts/sdxl_train_network.py"


def planned(gpus: str | None) -> PlannedRun:
    overrides = ("model.checkpoint=/models/sdxl.safetensors", *gpus_override(parse_gpus(gpus)))
    return plan_run(PlanRequest("comic-style", None, overrides, EXAMPLE, strict_paths=False), TRAINER, RUN_DIR)


def launcher(argv: list[str]) -> list[str]:
    return argv[: argv.index(SCRIPT) + 1]


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [
        (None, [*HEAD, "--num_processes=1", *TAIL, SCRIPT]),
        ("1", [*HEAD, "--num_processes=1", *TAIL, "--gpu_ids=1", SCRIPT]),
        ("0,1", [*HEAD, "--multi_gpu", "--num_processes=2", *TAIL, "--gpu_ids=0,1", SCRIPT]),
        ("0,1,2,3", [*HEAD, "--multi_gpu", "--num_processes=4", *TAIL, "--gpu_ids=0,1,2,3", SCRIPT]),
    ],
)
def test_golden_accelerate_argv(gpus: str | None, expected: list[str]) -> None:
    argv = planned(gpus).plan.argv
    assert launcher(argv) == expected


def test_only_the_launcher_changes_with_the_gpu_count() -> None:
    one = planned(None).plan
    for gpus in ("1", "0,1", "0,1,2,3"):
        many = planned(gpus).plan
        assert many.trainer_argv == one.trainer_argv
        assert check_argv(many.script, many.trainer_argv) == []  # sd-scripts' own flags, unchanged
        assert many.dataset_toml == one.dataset_toml


def test_gpus_all_and_errors() -> None:
    assert parse_gpus("all", lambda: 4) == [0, 1, 2, 3]
    assert parse_gpus(" 2, 0 ") == [2, 0]
    assert parse_gpus(None) is None and parse_gpus("") is None
    with pytest.raises(ConfigError, match="'a' is not a GPU index"):
        parse_gpus("0,a")
    with pytest.raises(ConfigError, match="listed twice"):
        parse_gpus("1,1")
    with pytest.raises(ConfigError, match="no GPU found"):
        parse_gpus("all", lambda: 0)
    with pytest.raises(ConfigError, match="number of GPUs is unknown"):
        parse_gpus("all")
    assert gpus_override([0, 1]) == ["training.gpus=[0,1]"]
    assert gpus_override(None) == []


def test_steps_math_per_gpu_and_effective_batch() -> None:
    # comic sample: 18 images × 10 repeats = 180 per epoch, batch 1, 10 epochs
    single = planned(None).plan.steps
    assert (single.images_x_repeats, single.batch_size, single.epochs, single.total_steps) == (180, 1, 10, 1800)
    two = multigpu_steps(single, 2)
    assert (two.effective_batch, two.steps_per_epoch, two.total_steps) == (2, 90, 900)
    assert two.formula() == "180 images×repeats × 10 epochs ÷ (batch 1 × 2 GPU(s)) = 900 steps; effective batch 2"
    four = multigpu_steps(StepsMath(180, 4, 45, 10, 450), 4)
    assert (four.per_gpu_batch, four.effective_batch, four.steps_per_epoch, four.total_steps) == (4, 16, 12, 120)
    assert multigpu_steps(single, 1).total_steps == single.total_steps
    # max_steps: the step count stays, each step sees N× the images, so N× the epochs
    capped = multigpu_steps(StepsMath(180, 1, 180, 9, 1600, 1600), 2)
    assert (capped.total_steps, capped.steps_per_epoch, capped.epochs) == (1600, 90, 18)
    assert "max_steps 1600 → 18 epoch(s); effective batch 2" in capped.formula()


def test_dry_run_cli_with_gpus(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "lorakit", "train", "--dry-run", "--json", "--preset", "comic-style",
         "--data", str(EXAMPLE), "--set", "training.gpus=[0,1]"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    argv = json.loads(r.stdout)["argv"]
    assert argv[3:5] == ["--multi_gpu", "--num_processes=2"] and "--gpu_ids=0,1" in argv
