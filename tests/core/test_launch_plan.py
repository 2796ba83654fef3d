"""Golden argv for every shipped preset on a fixed dataset, checked against sd-scripts'
flag manifest (dumped from the real parsers of the pinned commit)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lorakit.config.presets import preset_names
from lorakit.kohya.install import Trainer
from lorakit.kohya.launch import LaunchPlan
from lorakit.kohya.manifest import check_argv, manifest_commit
from lorakit.planning import PlanRequest, plan_run
from tests.conftest import make_kohya_dataset

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
TRAINER = Trainer(Path("/opt/sd-scripts"), "/opt/sd-scripts/venv/bin/python")
RUN_DIR = Path("/runs/test-run")
SD3_MODELS = (
    "model.checkpoint=/models/sd3.5.safetensors",
    "model.clip_l=/models/clip_l.safetensors",
    "model.clip_g=/models/clip_g.safetensors",
    "model.t5xxl=/models/t5xxl_fp16.safetensors",
)
SDXL_MODEL = ("model.checkpoint=/models/sdxl_base_1.0.safetensors",)
FLUX_MODELS = (
    "model.checkpoint=/models/flux1-dev.safetensors",
    "model.clip_l=/models/clip_l.safetensors",
    "model.t5xxl=/models/t5xxl_fp16.safetensors",
    "model.ae=/models/ae.safetensors",
)


def plan_for(preset: str, data: Path, *extra: str) -> LaunchPlan:
    models = SD3_MODELS if preset.startswith("sd35") else FLUX_MODELS if preset.startswith("flux") else SDXL_MODEL
    req = PlanRequest(preset=preset, overrides=(*models, *extra), data=data, strict_paths=False)
    return plan_run(req, TRAINER, RUN_DIR).plan


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_kohya_dataset(tmp_path / "data", {"10_lkchar woman": 6, "5_lkstyle style": 12})


@pytest.mark.parametrize("preset", preset_names())
def test_golden_argv(preset: str, dataset: Path) -> None:
    plan = plan_for(preset, dataset)
    got = {
        "argv": plan.argv,
        "dataset_toml": plan.dataset_toml.replace(str(dataset.resolve()), "<DATA>"),
        "total_steps": plan.steps.total_steps,
    }
    golden = GOLDEN / f"{preset}.json"
    if os.environ.get("LORAKIT_UPDATE_GOLDEN") or not golden.exists():
        golden.write_text(json.dumps(got, indent=1) + "\n", encoding="utf-8")
        if not os.environ.get("LORAKIT_UPDATE_GOLDEN"):
            pytest.fail(f"wrote missing golden {golden.name}; review and commit it")
    assert got == json.loads(golden.read_text(encoding="utf-8"))


@pytest.mark.parametrize("preset", preset_names())
def test_preset_argv_matches_manifest(preset: str, dataset: Path) -> None:
    plan = plan_for(preset, dataset)
    assert check_argv(plan.script, plan.trainer_argv) == []


VARIANTS = {
    "fp32": ("training.precision=fp32", "training.no_half_vae=false"),
    "lycoris-loha": ("network.kind=loha", "network.conv_dim=8"),
    "steps+sampling": (
        "training.max_steps=300",
        "sampling.prompts=[a lkchar woman]",
        "sampling.every_n_epochs=1",
        "saving.save_state=true",
        "saving.keep_last=3",
    ),
    "extras": (
        "training.noise_offset=0.05",
        "training.scale_weight_norms=1",
        "training.full_bf16=true",
        "training.precision=bf16",
        "training.fp8_base=true",
        "training.attention=xformers",
        "network.dropout=0.1",
        "optimizer.warmup_steps=50",
        "optimizer.max_grad_norm=1",
        "training.gradient_checkpointing=true",
        "training.clip_skip=2",
    ),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variants_match_manifest(variant: str, dataset: Path) -> None:
    plan = plan_for("comic-style", dataset, *VARIANTS[variant])
    assert check_argv(plan.script, plan.trainer_argv) == []


def test_sd3_block_swap_matches_manifest(dataset: Path) -> None:
    plan = plan_for("sd35-large", dataset, "training.blocks_to_swap=8")
    assert "--blocks_to_swap=8" in plan.argv
    assert check_argv(plan.script, plan.trainer_argv) == []


def test_manifest_catches_bad_argv() -> None:
    problems = check_argv(
        "sdxl_train_network.py",
        ["--network_dimm=4", "--mixed_precision=fp32", "--sdpa=yes", "--network_dim", "--seed=x", "--blocks_to_swap=2"],
    )
    assert problems == [
        f"--network_dimm: not a flag of sdxl_train_network.py (sd-scripts {manifest_commit()[:8]})",
        "--mixed_precision=fp32: not one of no, fp16, bf16",
        "--sdpa is a switch and takes no value (got 'yes')",
        "--network_dim needs a value",
        "--seed=x: not a valid int",
        f"--blocks_to_swap: not a flag of sdxl_train_network.py (sd-scripts {manifest_commit()[:8]})",
    ]


def test_steps_math_and_toml(dataset: Path) -> None:
    plan = plan_for("comic-style", dataset, "training.batch_size=2")
    # 6×10 + 12×5 = 120 visits per epoch; ÷ 2 = 60 steps; × 10 epochs = 600
    assert (plan.steps.images_x_repeats, plan.steps.batches_per_epoch, plan.steps.total_steps) == (120, 60, 600)
    assert 'caption_extension = ".txt"' in plan.dataset_toml
    assert 'class_tokens = "lkchar woman"' in plan.dataset_toml
    assert "num_repeats = 5" in plan.dataset_toml
    assert "batch_size = 2" in plan.dataset_toml
    assert any("batch_size is 2 with 2 concepts" in w for w in plan.warnings)


def test_lycoris_and_sd3_modules(dataset: Path) -> None:
    locon = plan_for("style-locon", dataset)
    i = locon.argv.index("--network_args")
    assert locon.argv[i + 1 : i + 4] == ["algo=locon", "conv_dim=16", "conv_alpha=1"]
    assert "--network_module=lycoris.kohya" in locon.argv
    sd3 = plan_for("sd35-medium", dataset)
    assert sd3.script == "sd3_train_network.py"
    assert "--network_module=networks.lora_sd3" in sd3.argv
    assert "--t5xxl=/models/t5xxl_fp16.safetensors" in sd3.argv
