"""lorakit.toml_out: every string it writes reads back through tomllib, in both dataset.toml writers."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from lorakit.kohya.install import Trainer
from lorakit.planning import PlanRequest, plan_run
from lorakit.toml_out import toml_table, toml_value
from tests.conftest import make_kohya_dataset

ASCII = "".join(chr(c) for c in range(0x80))
SAMPLES = [ASCII, '"quoted" \\back\\slash\\', "C:\\data\\x", "é ß 漢字 😀 \U0010fffd", "", "\x7f", "a\r\nb\tc"]


@pytest.mark.parametrize("text", SAMPLES)
def test_every_string_round_trips_through_tomllib(text: str) -> None:
    assert tomllib.loads(f"k = {toml_value(text)}")["k"] == text


def test_values_and_tables_round_trip() -> None:
    values = {"a": True, "b": 3, "c": 0.5, "d": [1024, 768], "e": None, "f": "x"}
    parsed = tomllib.loads("\n".join(toml_table(values)))
    assert parsed == {k: v for k, v in values.items() if v is not None}


def test_launch_dataset_toml_with_a_del_in_the_class_tokens_parses(tmp_path: Path) -> None:
    data = make_kohya_dataset(tmp_path / "data", {"10_lk\x7fchar woman": 3})
    trainer = Trainer(Path("/opt/sd-scripts"), "/opt/sd-scripts/venv/bin/python")
    req = PlanRequest(
        preset="comic-style",
        overrides=("model.checkpoint=/models/sdxl_base_1.0.safetensors",),
        data=data,
        strict_paths=False,
    )
    toml = plan_run(req, trainer, Path("/runs/x")).plan.dataset_toml
    subset = tomllib.loads(toml)["datasets"][0]["subsets"][0]
    assert subset["class_tokens"] == "lk\x7fchar woman"
