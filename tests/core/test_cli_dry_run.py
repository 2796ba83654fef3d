"""The README's main job: `lorakit train --preset comic-style --data examples/comic-sample --dry-run`."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, tree_bytes


@pytest.fixture
def lorakit(lorakit_in_process):  # type: ignore[no-untyped-def]
    """These commands start no child: the CLI runs in this process (tests/conftest.py)."""
    return lorakit_in_process


def test_dry_run_prints_plan_and_writes_only_temp(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    before = tree_bytes(EXAMPLE)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    res = lorakit("train", "--preset", "comic-style", "--data", str(EXAMPLE), "--dry-run", cwd=cwd)
    assert res.code == 0, res.err
    assert "12 images (12 captioned) × 15 repeats" in res.out
    assert "180 images×repeats × 10 epochs ÷ batch 1 = 1800 steps" in res.out
    assert "dataset.folder: None →" in res.out
    assert "sdxl_train_network.py" in res.out and "--network_dim=128" in res.out
    assert "model.checkpoint" in res.err  # warned: not set, placeholder shown
    assert list(cwd.iterdir()) == []  # nothing written where we stand
    assert tree_bytes(EXAMPLE) == before  # the dataset untouched
    assert list((tmp_path / "tmp").iterdir()) == []  # and nothing left in the temp folder
    assert f"a real run writes dataset.toml, command.txt and spec.yaml into {cwd / 'runs'}" in res.out


def test_failing_dry_run_leaves_nothing(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = lorakit("train", "--preset", "comic-style", "--data", str(tmp_path / "nope"), "--dry-run")
    assert res.code == 2, res.err
    assert list((tmp_path / "tmp").iterdir()) == [] and not (tmp_path / "runs").exists()


def test_json_plan(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ckpt = tmp_path / "base.safetensors"
    ckpt.write_bytes(b"x")
    res = lorakit(
        "train",
        "-p",
        "comic-style",
        "-d",
        str(EXAMPLE),
        "--set",
        f"model.checkpoint={ckpt}",
        "--set",
        "training.batch_size=4",
        "--dry-run",
        "--json",
    )
    assert res.code == 0, res.err
    plan = json.loads(res.out)
    assert plan["steps"]["total_steps"] == 450  # ceil(180 / 4) = 45 steps × 10 epochs
    assert f"--pretrained_model_name_or_path={ckpt}" in plan["argv"]
    assert {"key": "training.batch_size", "preset": 1, "value": 4} in plan["changes"]
    assert plan["spec"]["network"]["dim"] == 128
    assert 'caption_extension = ".txt"' in plan["dataset_toml"]
    assert not Path(plan["run_dir"]).exists()  # a dry run writes nothing
    words = shlex.split(plan["command"].split("&&", 1)[1])
    assert words[len(plan["env"]) :] == plan["argv"]  # shell-quoted, same argv after the env


def test_user_yaml_extends_preset_and_set_overrides(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("network:\n  dim: 64\noutput:\n  name: my-style\n", encoding="utf-8")
    res = lorakit(
        "train",
        "-p",
        "comic-style",
        "-c",
        str(cfg),
        "-d",
        str(EXAMPLE),
        "-s",
        "network.alpha=8",
        "-s",
        "~optimizer.unet_lr",
        "--dry-run",
        "--json",
    )
    assert res.code == 0, res.err
    plan = json.loads(res.out)
    assert "--network_dim=64" in plan["argv"] and "--network_alpha=8" in plan["argv"]
    assert "--output_name=my-style" in plan["argv"]
    assert not any(a.startswith("--unet_lr") for a in plan["argv"])


def test_max_steps_over_preset_epochs(lorakit) -> None:  # type: ignore[no-untyped-def]
    res = lorakit(
        "train", "-p", "comic-style", "-d", str(EXAMPLE), "-s", "training.max_steps=300", "--dry-run", "--json"
    )
    assert res.code == 0, res.err
    plan = json.loads(res.out)
    assert "--max_train_steps=300" in plan["argv"] and not any("max_train_epochs" in a for a in plan["argv"])
    assert any("replaces `training.epochs`" in w for w in plan["warnings"])


def test_presets_list_show_copy(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = lorakit("presets", "list")
    assert res.code == 0
    for name in (
        "comic-style",
        "sdxl-adafactor",
        "character-prodigy",
        "style-locon",
        "sdxl-8gb",
        "sd35-medium",
        "sd35-large",
    ):
        assert name in res.out
    shown = lorakit("presets", "show", "sdxl-8gb")
    assert "optimizer:\n  name: adafactor" in shown.out  # inherited from sdxl-adafactor
    assert "resolution: 768" in shown.out
    dest = tmp_path / "copy.yaml"
    assert lorakit("presets", "copy", "style-locon", str(dest)).code == 0
    assert "kind: locon" in dest.read_text(encoding="utf-8")
    again = lorakit("presets", "copy", "style-locon", str(dest))
    assert again.code == 2 and "already exists" in again.err
