"""The physical model: parameter counts, phases, and how each setting moves the estimate."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lorakit import families
from lorakit.gpu.estimate import GIB, TrainShape, estimate, network_params

SDXL = families.get("sdxl").arch
SD35_MEDIUM = families.get("sd3.5-medium").arch
SD35_LARGE = families.get("sd3.5-large").arch

SDXL_1024 = TrainShape(family="sdxl", dim=128, cache_text_encoder_outputs=True, unet_only=True)


def test_parameter_counts_match_the_checkpoints_built_on_the_gpu_machine() -> None:
    # shared/docs/gpu-runs.md: SD 3.5 medium 2.24 B and large 8.06 B MMDiT parameters, + pos_embed buffer
    assert SD35_MEDIUM.denoiser_params - 384**2 * 1536 == pytest.approx(2.24e9, rel=0.01)
    assert SD35_LARGE.denoiser_params - 192**2 * 2432 == pytest.approx(8.06e9, rel=0.01)
    assert SDXL.denoiser_params == pytest.approx(2.57e9, rel=0.01)


def test_sdxl_lora_size_matches_known_files() -> None:
    # an SDXL U-Net LoRA of rank 32 is the familiar ~170 MB fp16 file (85 M parameters)
    params = network_params(TrainShape(dim=32, unet_only=True), SDXL)
    assert params * 2 / 1e6 == pytest.approx(170, rel=0.02)


def test_phases_and_peak() -> None:
    e = estimate(SDXL_1024)
    assert [p.name for p in e.phases] == ["cache_latents", "cache_text_encoders", "training"]
    assert e.peak.name == "training"
    assert e.peak_gib == pytest.approx(sum(p.gib for p in e.training.parts))
    b = e.breakdown()
    assert set(b) == {"weights", "network_optimizer", "activations", "overhead", "training_phase", "caching_phase"}
    assert b["weights"] == pytest.approx(SDXL.denoiser_params * 2 / GIB, abs=0.01)


def test_t5_caching_phase_sets_the_peak_for_a_small_sd35_medium_step() -> None:
    s = TrainShape(
        family="sd3.5-medium",
        dim=32,
        batch_size=4,
        gradient_checkpointing=True,
        cache_text_encoder_outputs=True,
        unet_only=True,
    )
    e = estimate(s)
    assert e.peak.name == "cache_text_encoders"
    t5 = next(p for p in e.peak.parts if p.key == "text_encoders")
    assert t5.gib > 8.8  # T5-XXL alone is 8.9 GiB in 16-bit
    assert any("T5-XXL" in n for n in e.notes)


def test_uncached_text_encoders_stay_on_the_gpu_for_sd35() -> None:
    cached = estimate(TrainShape(family="sd3.5-medium", cache_text_encoder_outputs=True, unet_only=True))
    uncached = estimate(TrainShape(family="sd3.5-medium", cache_text_encoder_outputs=False, unet_only=True))
    assert "cache_text_encoders" not in [p.name for p in uncached.phases]
    assert uncached.training.gib - cached.training.gib > 10  # T5 + both CLIPs


def test_each_memory_saver_lowers_the_training_phase() -> None:
    base = TrainShape(
        family="sdxl", dim=128, batch_size=4, optimizer="adamw", cache_text_encoder_outputs=True, unet_only=True
    )
    t0 = estimate(base).training.gib
    assert estimate(base.with_(gradient_checkpointing=True)).training.gib < t0
    assert estimate(base.with_(batch_size=2)).training.gib < t0
    assert estimate(base.with_(optimizer="adamw8bit")).training.gib < t0
    assert estimate(base.with_(full_bf16=True)).training.gib < t0
    assert estimate(base.with_(width=768, height=768)).training.gib < t0
    assert estimate(base.with_(dim=16)).training.gib < t0
    gc = base.with_(gradient_checkpointing=True)
    assert estimate(gc.with_(fp8_base=True)).training.gib < estimate(gc).training.gib


def test_activations_scale_with_batch_and_pixels() -> None:
    def act(s: TrainShape) -> float:
        return next(p.gib for p in estimate(s).training.parts if p.key == "denoiser_act")

    assert act(SDXL_1024.with_(batch_size=4)) == pytest.approx(4 * act(SDXL_1024))
    assert act(SDXL_1024.with_(width=512, height=512)) == pytest.approx(act(SDXL_1024) / 4)
    assert act(SDXL_1024.with_(precision="fp32")) == pytest.approx(2 * act(SDXL_1024))


def test_block_swap_only_for_sd35() -> None:
    large = TrainShape(
        family="sd3.5-large", gradient_checkpointing=True, cache_text_encoder_outputs=True, unet_only=True
    )
    w0 = estimate(large).training.parts[0].gib
    w8 = estimate(large.with_(blocks_to_swap=8)).training.parts[0].gib
    assert w0 - w8 == pytest.approx(8 * SD35_LARGE.block_params * 2 / GIB, rel=1e-6)
    capped = estimate(large.with_(blocks_to_swap=99)).training.parts[0]
    assert "36 of 38 blocks" in capped.label  # sd-scripts: at most depth - 2
    sdxl = estimate(SDXL_1024.with_(blocks_to_swap=4))
    assert any("blocks_to_swap is ignored" in n for n in sdxl.notes)


def test_optimizer_states() -> None:
    def states(opt: str) -> float:
        return next(
            p.gib for p in estimate(SDXL_1024.with_(optimizer=opt)).training.parts if p.key == "optimizer_states"
        )

    params = network_params(SDXL_1024, SDXL)
    assert states("adamw") == pytest.approx(params * 8 / GIB)
    assert states("adamw8bit") == pytest.approx(params * 2 / GIB)
    assert states("prodigy") == pytest.approx(params * 16 / GIB)
    assert states("sgd") == 0
    assert states("adafactor") < states("adamw8bit")


def test_gradients_replace_activations_when_larger() -> None:
    # tiny activations (512², GC) and a huge network: the end of backward sets the step's peak
    s = TrainShape(
        dim=512, width=256, height=256, gradient_checkpointing=True, cache_text_encoder_outputs=True, unet_only=True
    )
    keys = [p.key for p in estimate(s).training.parts]
    assert "gradients" in keys and "denoiser_act" not in keys


def test_gpu_package_does_not_import_torch() -> None:
    code = (
        "import sys, lorakit.gpu.estimate, lorakit.gpu.fit, lorakit.gpu.nvml, lorakit.gpu.comfyui, "
        "lorakit.gpu.calibrate, lorakit.gpu.throughput; "
        "from lorakit.gpu.estimate import estimate, TrainShape; estimate(TrainShape()); "
        "assert 'torch' not in sys.modules; assert 'pynvml' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
