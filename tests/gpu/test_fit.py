"""Verdicts, suggestions ranked by throughput cost, the speed fit and the pre-launch check,
with GPU facts given as data (a Budget), so all of it runs on a CPU-only machine."""

from __future__ import annotations

import math

import pytest

from lorakit.errors import ConfigError
from lorakit.gpu.estimate import TrainShape, estimate
from lorakit.gpu.fit import (
    Budget,
    RunFacts,
    check_fit,
    lr_factor,
    parse_vram,
    setting_changes,
    verdict,
)
from lorakit.gpu.guard import precheck
from lorakit.gpu.measurements import Measurement
from lorakit.gpu.throughput import build, gpu_class, load_speed_table

COMIC = TrainShape(
    family="sdxl",
    dim=128,
    precision="fp16",
    no_half_vae=True,
    optimizer="adamw8bit",
    cache_text_encoder_outputs=True,
    unet_only=True,
)
LARGE = TrainShape(family="sd3.5-large", dim=32, cache_text_encoder_outputs=True, unet_only=True)


def test_verdict_thresholds() -> None:
    assert verdict(10.0, 11.0) == "fits"
    assert verdict(10.0, 10.99) == "tight"
    assert verdict(10.0, 9.0) == "tight"
    assert verdict(10.0, 8.99) == "does-not-fit"


@pytest.mark.parametrize(
    ("text", "gib"), [("24GB", 24), ("24 GiB", 24), ("24g", 24), ("12288MiB", 12), ("16", 16), ("7.5GB", 7.5)]
)
def test_parse_vram(text: str, gib: float) -> None:
    assert parse_vram(text) == pytest.approx(gib)


@pytest.mark.parametrize("text", ["lots", "24TB", "0GB", "-3"])
def test_parse_vram_rejects(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_vram(text)


def test_fits_has_no_suggestions() -> None:
    r = check_fit(COMIC, Budget.from_vram(24))
    assert r.verdict == "fits" and r.suggestions == () and not r.blocking
    assert r.refusal() is None


def test_sd35_large_without_gc_on_24gb() -> None:
    r = check_fit(LARGE, Budget.from_vram(24))
    assert r.verdict == "does-not-fit" and r.blocking
    first = r.suggestions[0]
    assert first.changes == {"training.gradient_checkpointing": True}
    assert first.estimate_gib * 1.1 <= 24
    assert first.estimate_gib == pytest.approx(estimate(LARGE.with_(gradient_checkpointing=True)).peak_gib)


def test_suggestions_are_ranked_by_throughput_cost_and_all_fit() -> None:
    shape = COMIC.with_(batch_size=8, optimizer="adamw", precision="bf16")
    r = check_fit(shape, Budget.from_vram(24), RunFacts(optimizer="adamw", lr=1e-4))
    assert len(r.suggestions) >= 2
    same = [s for s in r.suggestions if not s.changes_result]
    costs = [s.throughput_cost for s in same]
    assert costs == sorted(costs)
    for s in r.suggestions:
        assert s.verdict == "fits" and s.estimate_gib * 1.1 <= 24
        assert s.words and s.changes
    # minimal sets: no suggestion's changes contain another's
    sets = [set(s.changes.items()) for s in r.suggestions]
    for i, a in enumerate(sets):
        for j, b in enumerate(sets):
            assert i == j or not a < b


def test_lower_batch_keeps_visits_and_scales_lr() -> None:
    shape = COMIC.with_(batch_size=8)
    facts = RunFacts(optimizer="adamw8bit", lr=1e-4, unet_lr=2e-4, max_steps=1000, warmup_steps=100)
    changes = setting_changes(shape, shape.with_(batch_size=2), facts)
    assert changes["training.batch_size"] == 2
    assert changes["optimizer.lr"] == pytest.approx(1e-4 * math.sqrt(2 / 8), rel=1e-2)
    assert changes["optimizer.unet_lr"] == pytest.approx(2e-4 * 0.5, rel=1e-2)
    assert changes["training.max_steps"] == 4000  # same image visits
    assert changes["optimizer.warmup_steps"] == 400


def test_lr_rules() -> None:
    assert lr_factor("adamw", 1, 4) == 2.0
    assert lr_factor("adafactor", 1, 16) == 4.0
    assert lr_factor("sgd", 2, 8) == 4.0
    assert lr_factor("prodigy", 1, 16) == 1.0
    assert lr_factor("dadaptadam", 8, 1) == 1.0
    changes = setting_changes(COMIC, COMIC.with_(batch_size=4), RunFacts(optimizer="prodigy", lr=1.0))
    assert "optimizer.lr" not in changes


def test_nothing_fits_says_so() -> None:
    r = check_fit(LARGE, Budget.from_vram(4))
    assert r.suggestions == ()
    assert any("needs a GPU with more memory" in n for n in r.notes)


def test_refusal_lists_the_suggestions() -> None:
    err = check_fit(LARGE, Budget.from_vram(24)).refusal()
    assert isinstance(err, ConfigError) and err.exit_code == 2
    assert "gradient_checkpointing=true" in err.render()
    assert "--force" in (err.fix or "")


def test_fastest_on_a_big_gpu_keeps_visits() -> None:
    facts = RunFacts(optimizer="adamw8bit", lr=1e-4, epochs=10, visits_per_epoch=24 * 15, concepts=1)
    r = check_fit(COMIC, Budget.from_vram(139.8, "NVIDIA H200"), facts, want_fastest=True)
    f = r.fastest
    assert f is not None
    assert f.option.shape.batch_size > 1 and f.option.verdict == "fits"
    assert f.speedup > 3
    assert f.visits == 24 * 15 * 10
    assert f.steps_before == 3600
    assert f.steps_after == math.ceil(360 / f.option.shape.batch_size) * 10
    assert f.seconds_after is not None and f.seconds_before is not None and f.seconds_after < f.seconds_before
    b = f.option.shape.batch_size
    assert f.option.changes["optimizer.lr"] == pytest.approx(1e-4 * math.sqrt(b), rel=1e-2)
    assert "square-root" in f.lr_rule


def test_fastest_refuses_batch_above_one_for_multi_concept() -> None:
    facts = RunFacts(optimizer="adamw8bit", epochs=10, visits_per_epoch=300, concepts=3)
    f = check_fit(COMIC, Budget.from_vram(139.8, "NVIDIA H200"), facts, want_fastest=True).fastest
    assert f is not None and f.option.shape.batch_size == 1
    assert any("3 concepts" in n for n in f.notes)


def test_fastest_without_lr_change_for_adaptive_optimizers() -> None:
    facts = RunFacts(optimizer="prodigy", lr=1.0, epochs=10, visits_per_epoch=300, concepts=1)
    shape = COMIC.with_(optimizer="prodigy")
    f = check_fit(shape, Budget.from_vram(139.8, "NVIDIA H200"), facts, want_fastest=True).fastest
    assert f is not None and f.option.shape.batch_size > 1
    assert "optimizer.lr" not in f.option.changes
    assert "adaptive" in f.lr_rule


def test_fastest_on_a_small_card_fits_it() -> None:
    f = check_fit(COMIC, Budget.from_vram(16), RunFacts(), want_fastest=True).fastest
    assert f is not None and f.option.estimate_gib * 1.1 <= 16
    assert f.seconds_before is not None  # per 1000 image visits without a dataset
    assert any("no dataset" in n for n in f.notes)


def test_speed_model_fallback_for_unknown_gpus() -> None:
    table = load_speed_table()
    model, basis = table.model_for("NVIDIA H200", "sdxl")
    assert model.gpu_class == "H200" and basis.startswith("H200 measurements")
    model, basis = table.model_for("NVIDIA GeForce RTX 4070 Ti", "sdxl", 12)
    assert model.gpu_class == "RTX 3090" and "closest in memory size" in basis
    model, basis = table.model_for("Some Future GPU 200GB", "sdxl", 200)
    assert model.gpu_class == "H200" and "no measurements for Some Future GPU 200GB" in basis
    assert gpu_class("NVIDIA H100 80GB HBM3") == "H100"


def test_speed_model_fits_the_data() -> None:
    rows = [
        Measurement(
            f"r{b}{gc}",
            "throughput",
            TrainShape(batch_size=b, gradient_checkpointing=gc),
            "NVIDIA H200",
            s_per_step=0.5 + b * 1.048576 * (0.06 if gc else 0.04),
        )
        for b in (1, 4, 8)
        for gc in (False, True)
    ]
    m = build(rows).models[("H200", "sdxl")]
    assert (m.c0, m.u, m.v) == pytest.approx((0.5, 0.04, 0.06), rel=1e-6)
    assert m.max_batch == 8 and m.batch_limit == 16


def test_precheck_without_a_gpu_is_skipped_with_a_note() -> None:
    from lorakit.config.schema import TrainSpec
    from lorakit.errors import EnvironmentProblem
    from lorakit.gpu import nvml

    try:
        nvml.list_gpus(processes=False)
        pytest.skip("this machine has a GPU")
    except EnvironmentProblem:
        pass
    report = precheck(TrainSpec(), None, 0)
    assert report.skipped and not report.blocking and report.refusal() is None
    assert report.notes[0].startswith("VRAM check skipped:")


def test_option_overrides_feed_a_plan_request() -> None:
    from lorakit.planning import PlanRequest, resolve_spec

    facts = RunFacts(optimizer="adamw8bit", lr=1e-4, epochs=10, visits_per_epoch=360, concepts=1)
    f = check_fit(COMIC, Budget.from_vram(139.8, "NVIDIA H200"), facts, want_fastest=True).fastest
    assert f is not None
    loaded, _ = resolve_spec(PlanRequest("comic-style", overrides=tuple(f.option.overrides()), strict_paths=False))
    assert loaded.spec.training.batch_size == f.option.shape.batch_size
    assert loaded.spec.training.gradient_checkpointing == f.option.shape.gradient_checkpointing
