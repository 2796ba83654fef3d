"""Relative and ``~`` paths (issue 11, item 3): every path key becomes absolute before it
reaches sd-scripts (which runs in its own folder, with no shell to expand ``~``): relative to
the YAML file for keys set in a file, to the current folder for ``--set`` / ``--data``."""

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


def _plan(res) -> dict:  # type: ignore[no-untyped-def]
    assert res.code == 0, res.err
    return json.loads(res.out)


def test_paths_in_a_yaml_are_relative_to_the_file(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proj = tmp_path / "proj"
    (proj / "models").mkdir(parents=True)
    (proj / "models" / "sdxl.safetensors").write_bytes(b"x")
    shutil.copytree(EXAMPLE, proj / "data")
    cfg = proj / "my.yaml"
    cfg.write_text(
        "extends: comic-style\n"
        "model:\n  checkpoint: models/sdxl.safetensors\n  tokenizer_cache_dir: tok\n"
        "dataset:\n  folder: data\n"
        "output:\n  folder: out\n  lora_folders: [loras, ~/ComfyUI/models/loras]\n",
        encoding="utf-8",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    plan = _plan(lorakit("train", "--config", "../proj/my.yaml", "--dry-run", "--json", cwd=elsewhere))
    home = Path(tmp_path / "home")
    assert f"--pretrained_model_name_or_path={proj / 'models' / 'sdxl.safetensors'}" in plan["argv"]
    assert f"--tokenizer_cache_dir={proj / 'tok'}" in plan["argv"]
    spec = plan["spec"]
    assert spec["dataset"]["folder"] == str(proj / "data")
    assert spec["output"]["folder"] == str(proj / "out")
    assert spec["output"]["lora_folders"] == [str(proj / "loras"), str(home / "ComfyUI" / "models" / "loras")]
    assert f'image_dir = "{proj / "data"}' in plan["dataset_toml"]
    assert not any("does not exist" in w for w in plan["warnings"])  # the checkpoint was found next to the YAML


def test_set_and_data_are_relative_to_the_current_folder(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "m.safetensors").write_bytes(b"x")
    shutil.copytree(EXAMPLE, cwd / "data")
    res = lorakit(
        "train", "-p", "comic-style", "--data", "data", "--set", "model.checkpoint=m.safetensors",
        "--set", "model.vae=~/vae.safetensors", "--dry-run", "--json", cwd=cwd,
    )  # fmt: skip
    plan = _plan(res)
    assert f"--pretrained_model_name_or_path={cwd / 'm.safetensors'}" in plan["argv"]
    assert f"--vae={tmp_path / 'home' / 'vae.safetensors'}" in plan["argv"]  # ~ expanded, not passed literally
    assert plan["spec"]["dataset"]["folder"] == str(cwd / "data")
    assert plan["spec"]["output"]["folder"] == str(cwd / "runs")  # the default, made absolute too
    assert not any(a.startswith("~") or "=~" in a for a in plan["argv"])


def test_concept_folders_in_a_yaml_are_relative_to_the_file(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLE, proj / "alice")
    cfg = proj / "c.yaml"
    cfg.write_text(
        "extends: comic-style\ndataset:\n  concepts:\n    - folder: alice\n      trigger: lkalice\n",
        encoding="utf-8",
    )
    plan = _plan(lorakit("train", "--config", str(cfg), "--dry-run", "--json", cwd=tmp_path))
    assert plan["spec"]["dataset"]["concepts"][0]["folder"] == str(proj / "alice")


def test_dry_run_command_shows_absolute_paths(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "m.safetensors").write_bytes(b"x")
    res = lorakit("train", "-p", "comic-style", "-d", str(EXAMPLE), "--set", "model.checkpoint=m.safetensors",
                  "--dry-run")  # fmt: skip
    assert res.code == 0, res.err
    assert f"--pretrained_model_name_or_path={tmp_path / 'm.safetensors'}" in res.out
