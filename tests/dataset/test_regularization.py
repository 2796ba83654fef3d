"""Regularization images: sd-scripts' balancing, the is_reg subset, prepare --reg, the steps math
of train --dry-run and vram-check's run facts."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from lorakit.config.schema import DatasetSection, TrainSpec
from lorakit.dataset.plan import (
    StepsMath,
    balanced_reg_repeats,
    reg_images_used,
    reg_samples_per_epoch,
    scan_dataset,
)
from lorakit.errors import DatasetError
from tests.conftest import make_kohya_dataset
from tests.dataset.conftest import photo, snapshot

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")


def sd_scripts_loop(train: int, reg_images: int, reg_repeats: int) -> tuple[int, int]:
    """The registration loop of sd-scripts 48d368fa (library/train_util.py 2160-2182), written out
    step by step as the oracle: (reg samples per epoch, reg images registered)."""
    repeats = [reg_repeats] * reg_images
    registered = 0
    n = 0
    first = True
    if reg_images * reg_repeats == 0:
        return 0, 0
    while n < train:
        for i in range(reg_images):
            if first:
                registered += 1
                n += repeats[i]
            else:
                repeats[i] += 1
                n += 1
            if n >= train:
                break
        first = False
    return sum(repeats[:registered]), registered


@pytest.mark.parametrize("train", [0, 1, 7, 24, 100, 250])
@pytest.mark.parametrize("images", [1, 3, 25, 40])
@pytest.mark.parametrize("repeats", [1, 2, 5, 30])
def test_balancing_matches_sd_scripts_loop(train: int, images: int, repeats: int) -> None:
    samples, used = sd_scripts_loop(train, images, repeats)
    assert reg_samples_per_epoch(train, images, repeats) == samples
    assert reg_images_used(train, images, repeats) == (used if train else 0)


def test_balanced_repeats_use_every_reg_image() -> None:
    assert balanced_reg_repeats(240, 25) == 9
    assert reg_images_used(240, 25, 9) == 25
    assert balanced_reg_repeats(24, 25) == 1  # more reg images than train samples: one is left out
    assert reg_images_used(24, 25, 1) == 24
    assert StepsMath.compute(48, 1, 10, None, reg_samples=24).formula() == (
        "(24 train + 24 reg) images×repeats × 10 epochs ÷ batch 1 = 480 steps"
    )


def reg_folder(root: Path, n: int) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        photo(100 + i, 96, 80).save(root / f"r{i:02d}.png")
    return root


def test_config_regularization_plan_toml_and_fit_facts(tmp_path: Path) -> None:
    from lorakit.gpu.fit import run_facts
    from lorakit.kohya.dataset_toml import dataset_toml

    data = make_kohya_dataset(tmp_path / "data", {"10_ohwx woman": 3})
    reg = reg_folder(tmp_path / "reg", 4)
    cfg = DatasetSection.model_validate({"folder": data, "class": "woman", "regularization": {"folder": reg}})
    plan = scan_dataset(cfg)
    assert plan.regularization is not None
    assert (plan.regularization.images, plan.regularization.repeats) == (4, 7)  # 30 // 4
    assert plan.reg_samples_per_epoch == 30 and plan.samples_per_epoch == 60
    steps = plan.steps(batch_size=2, epochs=5, max_steps=None)
    assert (steps.steps_per_epoch, steps.total_steps, steps.reg_samples) == (30, 150, 30)
    spec = TrainSpec.model_validate({"dataset": cfg.model_dump(by_alias=True)})
    toml = tomllib.loads(dataset_toml(spec, plan))
    subsets = toml["datasets"][0]["subsets"]
    assert [s.get("is_reg", False) for s in subsets] == [False, True]
    assert subsets[1] == {"image_dir": str(reg.resolve()), "is_reg": True, "num_repeats": 7, "class_tokens": "woman"}
    assert run_facts(spec, plan).visits_per_epoch == 60  # vram-check's steps count the reg samples

    cfg2 = DatasetSection.model_validate(
        {"folder": data, "regularization": {"folder": reg, "repeats": 20, "class": "person"}}
    )
    plan2 = scan_dataset(cfg2)
    assert plan2.regularization is not None and plan2.regularization.class_tokens == "person"
    assert plan2.reg_samples_per_epoch == 40  # 2 images × 20 reach the 30 train samples
    assert any("uses only 2 of 4 reg images" in w for w in plan2.warnings)


def test_config_regularization_errors(tmp_path: Path) -> None:
    data = make_kohya_dataset(tmp_path / "data", {"10_ohwx woman": 3})
    with pytest.raises(DatasetError, match=r"dataset.regularization.folder: .* is not a folder"):
        scan_dataset(DatasetSection.model_validate({"folder": data, "regularization": {"folder": tmp_path / "x"}}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no images in"):
        scan_dataset(DatasetSection.model_validate({"folder": data, "regularization": {"folder": tmp_path / "empty"}}))


def test_prepare_reg_then_train_dry_run(lorakit: Any, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for i in range(4):
        photo(i, 120, 100).save(raw / f"img{i}.png")
    reg = reg_folder(tmp_path / "regsrc", 6)
    photo(100, 96, 80).save(reg / "dup.png")  # exact duplicate of r00.png: dropped like a training image
    photo(200, 96, 80).convert("RGBA").save(reg / "x.webp")  # converted to PNG
    (reg / "r01.txt").write_text("woman, red dress", encoding="utf-8")
    before_raw, before_reg = snapshot(raw), snapshot(reg)
    out = tmp_path / "prep"
    r = lorakit("dataset", "prepare", str(raw), "-t", "ohwx", "--class", "woman", "--repeats", "5",
                "--epochs", "2", "--reg", str(reg), "--resolution", "64", "-o", str(out), "--json")  # fmt: skip
    assert r.code == 0, r.err
    m = json.loads(r.out)
    assert m["regularization"] == {
        "source_folder": str(reg.resolve()), "folder": "reg/2_woman", "class": "woman", "images": 7,
        "repeats": 2, "samples_per_epoch": 20, "images_used": 7,
    }  # fmt: skip
    assert m["schedule"]["reg_samples"] == 20 and m["schedule"]["total_steps"] == (20 + 20) * 2
    files = sorted(p.name for p in (out / "reg" / "2_woman").iterdir())
    assert "x.png" in files and ("dup.png" in files) != ("r00.png" in files)  # one of the exact pair dropped
    assert len([f for f in files if f.endswith(".png")]) == 7
    assert (out / "reg" / "2_woman" / "r01.txt").read_text(encoding="utf-8") == "woman, red dress\n"
    toml = tomllib.loads((out / "dataset.toml").read_text(encoding="utf-8"))
    reg_sub = toml["datasets"][0]["subsets"][1]
    assert reg_sub["is_reg"] is True and reg_sub["num_repeats"] == 2 and reg_sub["class_tokens"] == "woman"
    assert snapshot(raw) == before_raw and snapshot(reg) == before_reg

    r = lorakit("train", "--preset", "comic-style", "--data", str(out), "--dry-run", "--json",
                "--set", "training.epochs=2")  # fmt: skip
    assert r.code == 0, r.err
    plan = json.loads(r.out)
    assert plan["steps"]["reg_samples"] == 20 and plan["steps"]["total_steps"] == 80
    assert plan["dataset"]["regularization"]["images"] == 7
    assert not any("ignored by sd-scripts" in w for w in plan["warnings"])  # reg/ is not a stray folder
    assert "is_reg = true" in plan["dataset_toml"]


def test_prepare_reg_needs_a_class_and_its_own_folder(lorakit: Any, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    photo(1, 64, 64).save(raw / "a.png")
    reg = reg_folder(tmp_path / "reg", 2)
    r = lorakit("dataset", "prepare", str(raw), "-t", "ohwx", "--reg", str(reg), "-o", str(tmp_path / "o"))
    assert r.code == 2 and "--reg needs a class word" in r.err
    r = lorakit(
        "dataset", "prepare", str(raw), "-t", "ohwx", "--class", "w", "--reg", str(raw), "-o", str(tmp_path / "o")
    )
    assert r.code == 2 and "overlap" in r.err
