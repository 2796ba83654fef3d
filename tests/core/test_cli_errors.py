"""Bad input through the real CLI: one clear paragraph on stderr, exit 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import EXAMPLE, make_kohya_dataset


@pytest.fixture
def lorakit(lorakit_in_process):  # type: ignore[no-untyped-def]
    """These commands start no child: the CLI runs in this process (tests/conftest.py)."""
    return lorakit_in_process


def assert_clean_error(res, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert res.code == 2, (res.code, res.out, res.err)
    assert "Traceback" not in res.err
    assert res.err.startswith("error: ")
    for needle in needles:
        assert needle in res.err, res.err


def test_unknown_preset(lorakit) -> None:  # type: ignore[no-untyped-def]
    res = lorakit("train", "--preset", "comic-styel", "--data", str(EXAMPLE), "--dry-run")
    assert_clean_error(res, "unknown preset `comic-styel`", "did you mean `comic-style`?")


def test_unknown_key_names_file_and_suggests(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "my.yaml"
    cfg.write_text("extends: comic-style\ntraining:\n  batch_sise: 2\n", encoding="utf-8")
    res = lorakit("train", "--config", str(cfg), "--data", str(EXAMPLE), "--dry-run")
    assert_clean_error(
        res, f"{cfg}: `training.batch_sise` is not a known setting", "did you mean `training.batch_size`?"
    )


def test_wrong_type_from_set(lorakit) -> None:  # type: ignore[no-untyped-def]
    res = lorakit("train", "-p", "comic-style", "-d", str(EXAMPLE), "--set", "network.dim=big", "--dry-run")
    assert_clean_error(res, "--set network.dim=big: `network.dim`", "valid integer", "'big'")


def test_bad_choice_lists_choices(lorakit) -> None:  # type: ignore[no-untyped-def]
    res = lorakit("train", "-p", "comic-style", "-d", str(EXAMPLE), "--set", "optimizer.name=adam", "--dry-run")
    assert_clean_error(res, "`optimizer.name`: must be one of:", "'adamw8bit'")


def test_missing_dataset_folder(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = lorakit("train", "-p", "comic-style", "-d", str(tmp_path / "nope"), "--dry-run")
    assert_clean_error(res, f"dataset folder {tmp_path / 'nope'} does not exist", "Fix:")


def test_empty_dataset(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    res = lorakit("train", "-p", "comic-style", "-d", str(tmp_path / "empty"), "--dry-run")
    assert_clean_error(res, "no images found in", "lorakit dataset prepare")


def test_sd35_without_encoders(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ckpt = tmp_path / "sd35.safetensors"
    ckpt.write_bytes(b"x")
    res = lorakit("train", "-p", "sd35-medium", "-d", str(EXAMPLE), "--set", f"model.checkpoint={ckpt}", "--dry-run")
    assert_clean_error(res, "SD 3.5 needs all three text encoders", "model.clip_l, model.clip_g, model.t5xxl")


@pytest.mark.parametrize(
    "sets,needle",
    [
        (("training.cache_text_encoder_outputs=true", "training.unet_only=false"), "cannot train the text encoders"),
        (("training.shuffle_caption=true",), "cannot be shuffled"),
        (("training.no_half_vae=false",), "SDXL VAE overflows in fp16"),
        (("training.resolution=1000",), "1000x1000 is not a multiple of 64"),
        (("training.blocks_to_swap=4",), "only available for SD 3.5"),
    ],
)
def test_contradictory_flags(lorakit, sets: tuple[str, ...], needle: str) -> None:  # type: ignore[no-untyped-def]
    args = [a for s in sets for a in ("--set", s)]
    res = lorakit("train", "-p", "comic-style", "-d", str(EXAMPLE), *args, "--dry-run")
    assert_clean_error(res, needle, "Fix:")


def test_all_problems_reported_together(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "two.yaml"
    cfg.write_text("extends: comic-style\nnetwork:\n  dimm: 8\noptimizer:\n  lr: -1\n", encoding="utf-8")
    res = lorakit("train", "--config", str(cfg), "-d", str(EXAMPLE), "--dry-run")
    assert_clean_error(res, "`network.dimm`", "`optimizer.lr`")


def test_invalid_yaml_names_line(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("training:\n  batch_size: [1\n", encoding="utf-8")
    res = lorakit("train", "--config", str(cfg), "--dry-run")
    # the line the parser stopped at (the list is never closed: the end of the file, line 3)
    assert_clean_error(res, f"{cfg}: line 3, column 1: not valid YAML")


def test_same_layer_epochs_and_steps_is_an_error(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "len.yaml"
    cfg.write_text("extends: comic-style\ntraining:\n  epochs: 3\n  max_steps: 100\n", encoding="utf-8")
    res = lorakit("train", "--config", str(cfg), "-d", str(EXAMPLE), "--dry-run")
    assert_clean_error(res, "both training.epochs and training.max_steps are set")


def test_real_run_without_trainer_exits_3(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ckpt = tmp_path / "sdxl.safetensors"
    ckpt.write_bytes(b"x")
    data = make_kohya_dataset(tmp_path / "d", {"3_lk thing": 2})
    res = lorakit("train", "-p", "comic-style", "-d", str(data), "--set", f"model.checkpoint={ckpt}")
    assert res.code == 3, res.err
    assert "no sd-scripts install found" in res.err and "lorakit setup" in res.err
    assert "Traceback" not in res.err


def test_real_run_checks_model_file_first(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = lorakit(
        "train", "-p", "comic-style", "-d", str(EXAMPLE), "--set", f"model.checkpoint={tmp_path}/no.safetensors"
    )
    assert_clean_error(res, "`model.checkpoint`: file", "does not exist")
