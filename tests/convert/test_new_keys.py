"""The training keys added so the GUI's presets launch the same values (issue 15): each reaches
sd-scripts as its flag (or dataset TOML key), and the rules sd-scripts enforces are checked first."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lorakit.errors import ConfigError
from tests.convert.conftest import dataset, effective, plan


def _plan(tmp_path: Path, **training: object):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"extends": "sdxl-adafactor", "training": training}))
    return plan(cfg, dataset(tmp_path), tmp_path / "run")


def test_flags_and_dataset_key(tmp_path: Path) -> None:
    got = effective(
        _plan(
            tmp_path,
            noise_offset=0.05,
            adaptive_noise_scale=0.004,
            multires_noise_iterations=6,
            multires_noise_discount=0.3,
            min_timestep=100,
            max_timestep=900,
            caption_dropout_rate=0.05,
            max_token_length=225,
            bucket_no_upscale=True,
        )
    )
    assert got["adaptive_noise_scale"] == "0.004" and got["multires_noise_iterations"] == "6"
    assert (got["min_timestep"], got["max_timestep"], got["max_token_length"]) == ("100", "900", "225")
    assert got["caption_dropout_rate"] == "0.05" and got["bucket_no_upscale"] is True


def test_defaults_add_nothing(tmp_path: Path) -> None:
    p = _plan(tmp_path)
    for flag in ("adaptive_noise", "multires", "timestep", "caption_dropout", "max_token_length", "lr_warmup"):
        assert not any(flag in a for a in p.plan.argv), flag
    assert "bucket_no_upscale" not in p.plan.dataset_toml


def test_warmup_ratio(tmp_path: Path) -> None:
    cfg = tmp_path / "w.yaml"
    warm = {"warmup_ratio": 0.05, "scheduler": "constant_with_warmup"}
    cfg.write_text(yaml.safe_dump({"extends": "sdxl-adafactor", "optimizer": warm}))
    assert "--lr_warmup_steps=0.05" in plan(cfg, dataset(tmp_path), tmp_path / "run").plan.argv
    cfg.write_text(yaml.safe_dump({"extends": "sdxl-adafactor", "optimizer": {**warm, "warmup_steps": 10}}))
    with pytest.raises(ConfigError, match="either warmup_steps or warmup_ratio"):
        plan(cfg, dataset(tmp_path), tmp_path / "run")


@pytest.mark.parametrize(
    ("training", "words"),
    [
        ({"adaptive_noise_scale": 0.01}, "adaptive_noise_scale without noise_offset"),
        ({"min_timestep": 500, "max_timestep": 400}, "must be below training.max_timestep"),
        ({"max_token_length": 75}, "max_token_length"),
    ],
)
def test_rules(training: dict[str, object], words: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=words):
        _plan(tmp_path, **training)


def test_scheduler_class_and_args(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "extends": "sdxl-adafactor",
                "optimizer": {"scheduler_type": "CosineAnnealingLR", "scheduler_args": {"T_max": 30}},
            }
        )
    )
    argv = plan(cfg, dataset(tmp_path), tmp_path / "run").plan.argv
    assert "--lr_scheduler_type=CosineAnnealingLR" in argv
    assert argv[argv.index("--lr_scheduler_args") + 1] == "T_max=30"
    cfg.write_text(yaml.safe_dump({"extends": "sdxl-adafactor", "optimizer": {"scheduler_type": "x; rm -rf /"}}))
    with pytest.raises(ConfigError, match="scheduler_type"):
        plan(cfg, dataset(tmp_path), tmp_path / "run")


def test_start_from_a_lora(tmp_path: Path) -> None:
    lora = tmp_path / "phase1.safetensors"
    lora.write_bytes(b"x")
    cfg = tmp_path / "n.yaml"
    cfg.write_text(
        yaml.safe_dump({"extends": "sdxl-adafactor", "network": {"weights": str(lora), "dim_from_weights": True}})
    )
    argv = plan(cfg, dataset(tmp_path), tmp_path / "run").plan.argv
    assert f"--network_weights={lora}" in argv and "--dim_from_weights" in argv
    cfg.write_text(yaml.safe_dump({"extends": "sdxl-adafactor", "network": {"dim_from_weights": True}}))
    with pytest.raises(ConfigError, match=r"needs network\.weights"):
        plan(cfg, dataset(tmp_path), tmp_path / "run")
    cfg.write_text(
        yaml.safe_dump({"extends": "sdxl-adafactor", "network": {"weights": str(tmp_path / "gone.safetensors")}})
    )
    assert any("gone.safetensors does not exist" in w for w in plan(cfg, dataset(tmp_path), tmp_path / "run").warnings)


def test_custom_scheduler_type_with_warmup_is_refused_before_launch(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "extends": "sdxl-adafactor",
                "optimizer": {
                    "scheduler_type": "CosineAnnealingLR",
                    "scheduler_args": {"T_max": 100},
                    "warmup_ratio": 0.25,
                },
            }
        )
    )
    with pytest.raises(ConfigError, match="warmup"):
        plan(cfg, dataset(tmp_path), tmp_path / "run")


@pytest.mark.parametrize(
    ("optimizer", "fix"),
    [
        ({"scheduler": "constant", "warmup_steps": 10}, "constant_with_warmup"),
        ({"scheduler": "adafactor", "warmup_ratio": 0.1}, "cosine"),
        (
            {"scheduler": "cosine", "scheduler_type": "CosineAnnealingLR", "warmup_steps": 5},
            "drop optimizer.scheduler_type",
        ),
    ],
)
def test_schedulers_sd_scripts_runs_without_warmup_refuse_one(
    tmp_path: Path, optimizer: dict[str, object], fix: str
) -> None:
    """sd-scripts 48d368fa library/train_util.py (get_scheduler_fix, wrap_check_needless_num_warmup_steps)."""
    cfg = tmp_path / "w.yaml"
    cfg.write_text(yaml.safe_dump({"extends": "sdxl-adafactor", "optimizer": optimizer}))
    with pytest.raises(ConfigError, match="warmup") as e:
        plan(cfg, dataset(tmp_path), tmp_path / "run")
    assert fix in str(e.value)
    optimizer = {k: v for k, v in optimizer.items() if not k.startswith("warmup")}
    cfg.write_text(yaml.safe_dump({"extends": "sdxl-adafactor", "optimizer": optimizer}))
    assert not any("lr_warmup" in a for a in plan(cfg, dataset(tmp_path), tmp_path / "run").plan.argv)
