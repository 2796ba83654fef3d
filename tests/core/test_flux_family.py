"""Flux.1 [dev] as a registry family (issue 14): its numbers against the shapes in
docs/research/flux.md (sd-scripts 48d368fa library/flux_models.py, networks/lora_flux.py), the rules
sd-scripts enforces checked before launch, and an older sd-scripts without flux_train_network.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorakit import families
from lorakit.config.rules import check
from lorakit.config.schema import TrainSpec
from lorakit.errors import EnvironmentProblem
from lorakit.families import flux
from lorakit.kohya.install import Trainer
from lorakit.planning import PlanRequest, plan_run
from tests.conftest import make_kohya_dataset

FILES = {"checkpoint": "/m/flux1-dev.safetensors", "clip_l": "/m/clip_l.safetensors",
         "t5xxl": "/m/t5.safetensors", "ae": "/m/ae.safetensors"}  # fmt: skip


def spec(**training: object) -> TrainSpec:
    return TrainSpec.model_validate({"model": {"family": "flux-dev", **FILES}, "training": training})


def errors(s: TrainSpec) -> dict[str, str]:
    return {p.path: p.message for p in check(s) if p.level == "error"}


def test_architecture_numbers_match_the_fact_sheet() -> None:
    fam = families.get("flux-dev")
    assert fam.arch.denoiser_params == 11_901_408_320  # 19 × 339,831,296 + 38 × 141,591,808 + 64,124,992
    assert fam.arch.lora_io == 4_786_176  # LoRA params = rank × this over the 304 default modules
    assert sum(x.count for x in fam.arch.linears) == 19 * 10 + 38 * 3 == 304
    # swap: N//2 double and 2·(N − N//2) single blocks (flux.md §5 table)
    assert round(flux.swapped_params(16) / 1e9, 2) == 4.98
    assert round(flux.swapped_params(35) / 1e9, 2) == 10.87
    assert fam.swap is not None and fam.swap.max_blocks == 35


def test_sd_scripts_limits_are_refused_before_launch() -> None:
    assert "training.blocks_to_swap" in errors(spec(blocks_to_swap=36))
    assert errors(spec(blocks_to_swap=35)) == {}
    both = errors(spec(blocks_to_swap=8, cpu_offload_checkpointing=True))
    assert "training.cpu_offload_checkpointing" in both
    missing = TrainSpec.model_validate({"model": {"family": "flux-dev", **{**FILES, "ae": None}}})
    assert "model.ae" in errors(missing)


def test_flux_options_are_refused_for_other_families() -> None:
    sdxl = TrainSpec.model_validate({"training": {"guidance_scale": 1.0, "timestep_sampling": "shift"}})
    got = errors(sdxl)
    assert "Flux.1 option" in got["training.guidance_scale"] and "training.timestep_sampling" in got
    assert errors(spec(guidance_scale=1.0, timestep_sampling="shift", model_prediction_type="raw")) == {}


def _trainer(tmp_path: Path, *scripts: str) -> Trainer:
    root = tmp_path / "sd-scripts"
    (root / "library").mkdir(parents=True)
    for name in scripts:
        (root / name).write_text("# stand-in\n", encoding="utf-8")
    return Trainer(root, "python")


def test_an_sd_scripts_without_flux_still_trains_sdxl_and_names_what_flux_needs(tmp_path: Path) -> None:
    data = make_kohya_dataset(tmp_path / "data", {"10_lkchar woman": 2})
    old = _trainer(tmp_path, "train_network.py", "sdxl_train_network.py")
    sdxl = PlanRequest(preset="comic-style", data=data, strict_paths=False)
    assert plan_run(sdxl, old, tmp_path / "r1").plan.script == "sdxl_train_network.py"
    req = PlanRequest(preset="flux-dev", overrides=tuple(f"model.{k}={v}" for k, v in FILES.items()), data=data,
                      strict_paths=False)  # fmt: skip
    with pytest.raises(EnvironmentProblem, match=r"flux_train_network\.py") as e:
        plan_run(req, old, tmp_path / "r2")
    assert "48d368fa" in (e.value.fix or "")


def test_one_measured_flux_run_anchors_its_speed_and_its_estimate() -> None:
    """gpu/data/speed_measurements_flux.json: the H200 smoke's `lorakit train --preset flux-dev`
    (1.023 s/step, 16.73 GiB). The speed model carries SDXL's curves by FLOPs and scales them to
    meet that run; the VRAM prior is set to meet its peak within 10 %."""
    from lorakit.gpu.estimate import estimate
    from lorakit.gpu.throughput import load_rows, load_speed_table

    row = next(m for m in load_rows() if m.shape.family == "flux-dev")
    table = load_speed_table()
    assert table.flops_anchor["flux-dev"][1] >= 1
    model, basis = table.model_for("NVIDIA H200", "flux-dev")
    assert "meet 1 H200 run" in basis
    assert model.s_per_step(row.shape) == pytest.approx(row.s_per_step, rel=0.01)
    assert row.peak_gib is not None
    assert estimate(row.shape).peak_gib == pytest.approx(row.peak_gib, rel=0.10)


def test_fastest_swaps_blocks_to_fit_flux_on_a_12gb_card(lorakit) -> None:  # type: ignore[no-untyped-def]
    """The flux-dev preset does not fit a 12 GB card as shipped; --fastest searches block swap too
    (a family with `swap`) and finds what fits, within the budget."""
    r = lorakit("vram-check", "--preset", "flux-dev", "--card", "RTX 3060", "--fastest", "--json")
    assert r.code == 0, r.err
    import json

    out = json.loads(r.out)
    assert out["verdict"] != "fits"
    changes = out["fastest"]["changes"]
    assert changes.get("training.blocks_to_swap", 0) > 0
    assert out["fastest"]["estimate_gib"] <= out["budget"]["gib"]
