"""Measured rows are read whatever words the benchmark driver used for the config."""

from __future__ import annotations

from lorakit.gpu.estimate import TrainShape
from lorakit.gpu.measurements import parse_rows, shape_from_config


def test_campaign_row_words() -> None:
    # the config dict scripts/gpu/campaign.py records with each row
    cfg = {
        "family": "sdxl",
        "resolution": 1024,
        "batch": 4,
        "gc": True,
        "rank": 128,
        "alpha": 16,
        "network": "lora",
        "optimizer": "AdamW8bit",
        "lr": 1e-4,
        "precision": "bf16",
        "no_half_vae": True,
        "cache_latents": True,
        "cache_te": True,
        "unet_only": True,
        "fp8_base": False,
        "sdpa": True,
        "steps": 4,
        "workers": 0,
        "images": "img8",
        "repeats": 8,
    }
    assert shape_from_config(cfg) == TrainShape(
        family="sdxl",
        batch_size=4,
        gradient_checkpointing=True,
        dim=128,
        optimizer="adamw8bit",
        no_half_vae=True,
        cache_text_encoder_outputs=True,
        unet_only=True,
    )


def test_nested_spec_words() -> None:
    cfg = {
        "model": {"family": "sd3.5-large"},
        "network": {"kind": "locon", "dim": 8, "conv_dim": 4},
        "optimizer": {"name": "prodigy", "lr": 1.0},
        "training": {"batch_size": 2, "resolution": [768, 512], "fp8_base": True, "blocks_to_swap": 6},
    }
    s = shape_from_config(cfg)
    assert (s.family, s.network_kind, s.dim, s.conv_dim, s.optimizer) == ("sd3.5-large", "locon", 8, 4, "prodigy")
    assert (s.batch_size, s.width, s.height, s.fp8_base, s.blocks_to_swap) == (2, 768, 512, True, 6)


def test_sd_scripts_words() -> None:
    s = shape_from_config(
        {
            "model": "sd3.5-medium",
            "train_batch_size": "2",
            "network_dim": 16,
            "optimizer_type": "PagedAdamW8bit",
            "mixed_precision": "fp16",
            "network_train_unet_only": "true",
            "resolution": "1024,768",
            "sdpa": False,
        }
    )
    assert (s.family, s.batch_size, s.dim, s.optimizer, s.precision, s.unet_only) == (
        "sd3.5-medium",
        2,
        16,
        "paged-adamw8bit",
        "fp16",
        True,
    )
    assert (s.width, s.height, s.attention) == (1024, 768, "none")


def test_rows_file_shapes_and_skips() -> None:
    data = {
        "gpu": "NVIDIA H200",
        "sd_scripts_commit": "48d368fa",
        "date": "2026-11-23",
        "rows": [
            {
                "name": "a",
                "status": "ok",
                "config": {"family": "sdxl", "batch": 2},
                "peak_gib": 30.5,
                "s_per_step": 1.0,
            },
            {"name": "b", "status": "oom", "config": {"family": "sdxl", "batch": 64}, "peak_gib": 139.0},
            {"name": "c", "config": {"batch": 1}, "peak_gib": 10.0},
            {"name": "d", "config": {"family": "sdxl"}, "peak_mib": 20480},
        ],
    }
    rows, skipped = parse_rows(data, "calibration")
    assert [r.id for r in rows] == ["a", "b", "d"]
    assert rows[0].gpu == "NVIDIA H200" and rows[0].sd_scripts_commit == "48d368fa"
    assert rows[0].peak_gib == 30.5 and rows[0].img_per_s == 2.0
    assert rows[1].peak_gib is None  # an OOM row's peak is not a training peak
    assert rows[2].peak_gib == 20.0
    assert skipped == ["c: no model family in the row's config"]


def test_plain_list_of_rows() -> None:
    rows, _ = parse_rows([{"id": "x", "gpu": {"name": "NVIDIA H100"}, "family": "sdxl", "peak_gib": 12}], "throughput")
    assert rows[0].gpu == "NVIDIA H100" and rows[0].shape.family == "sdxl"


def test_rows_under_any_list_key() -> None:
    data = {"gpu": "NVIDIA H200", "bench": [{"name": "x", "config": {"family": "sdxl"}, "s_per_step": 0.9}]}
    rows, _ = parse_rows(data, "throughput")
    assert [r.id for r in rows] == ["x"] and rows[0].s_per_step == 0.9
