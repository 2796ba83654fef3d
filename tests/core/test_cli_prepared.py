"""`train --data PREPARED` keeps what `dataset prepare` decided (issue 11, item 8): captions it
wrote start "trigger, class", so with shuffled captions both stay in place (keep_tokens = 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE


@pytest.fixture
def lorakit(lorakit_in_process):  # type: ignore[no-untyped-def]
    """These commands start no child: the CLI runs in this process (tests/conftest.py)."""
    return lorakit_in_process


def _toml_subsets(toml: str) -> list[str]:
    return toml.split("[[datasets.subsets]]")[1:]


def test_prepared_trigger_and_class_are_kept_first_when_shuffled(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    raw = tmp_path / "raw"
    shutil.copytree(EXAMPLE, raw)
    out = tmp_path / "prepared"
    res = lorakit("dataset", "prepare", str(raw), "--trigger", "lkcomic", "--class", "style", "--out", str(out))
    assert res.code == 0, res.err
    caption = next(out.rglob("*.txt")).read_text(encoding="utf-8")
    assert caption.startswith("lkcomic, style, ")
    res = lorakit(
        "train", "-p", "sdxl-adafactor", "--data", str(out), "--set", "training.shuffle_caption=true",
        "--set", "training.cache_text_encoder_outputs=false",
        "--dry-run", "--json",
    )  # fmt: skip
    assert res.code == 0, res.err
    toml = json.loads(res.out)["dataset_toml"]
    (subset,) = _toml_subsets(toml)
    assert "keep_tokens = 2" in subset, toml


def test_an_unprepared_kohya_folder_keeps_the_config_value(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "d"
    shutil.copytree(EXAMPLE, data / "5_lk style")
    res = lorakit("train", "-p", "sdxl-adafactor", "--data", str(data), "--dry-run", "--json")
    assert res.code == 0, res.err
    (subset,) = _toml_subsets(json.loads(res.out)["dataset_toml"])
    assert "keep_tokens" not in subset  # the [general] value (training.keep_tokens) applies
