"""`lorakit vram-check` through the real CLI in a child process, on this GPU-less machine (--vram)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import EXAMPLE, make_kohya_dataset


@pytest.fixture
def lorakit(lorakit_in_process):  # type: ignore[no-untyped-def]
    """The CLI in this process (tests/conftest.py): it starts no trainer."""
    return lorakit_in_process


def _has_gpu() -> bool:
    from lorakit.errors import EnvironmentProblem
    from lorakit.gpu import nvml

    try:
        nvml.list_gpus(processes=False)
    except EnvironmentProblem:
        return False
    return True


def test_fits_on_24gb(lorakit) -> None:  # type: ignore[no-untyped-def]
    r = lorakit("vram-check", "--preset", "comic-style", "--vram", "24GB")
    assert r.code == 0, r.err
    assert "Budget   --vram 24 GiB" in r.out
    assert "FITS" in r.out
    assert "training" in r.out and "← peak" in r.out
    assert "caching latents (VAE)" in r.out and "caching text-encoder outputs" in r.out


def test_does_not_fit_lists_cheapest_changes(lorakit) -> None:  # type: ignore[no-untyped-def]
    r = lorakit(
        "vram-check", "--preset", "sd35-large", "--set", "training.gradient_checkpointing=false", "--vram", "24GB"
    )
    assert r.code == 0, r.err
    assert "DOES NOT FIT" in r.out
    assert "1. gradient checkpointing on" in r.out
    assert "--set training.gradient_checkpointing=true" in r.out
    assert "model.checkpoint" not in r.err  # model paths do not matter for memory


def test_json_has_breakdown_and_suggestions(lorakit) -> None:  # type: ignore[no-untyped-def]
    r = lorakit("vram-check", "--preset", "sd35-medium", "--set", "training.batch_size=8", "--vram", "12GB", "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["verdict"] == "does-not-fit"
    est = data["estimate"]
    assert set(est["breakdown"]) >= {"weights", "network_optimizer", "activations", "caching_phase"}
    assert [p["name"] for p in est["phases"]] == ["cache_latents", "cache_text_encoders", "training"]
    assert est["peak_phase"] == "training"
    assert data["suggestions"] and all(
        s["estimate_gib"] * 1.1 <= 12 for s in data["suggestions"] if s["verdict"] == "fits"
    )
    assert data["budget"] == {"gib": 12.0, "source": "--vram 12 GiB"}


@pytest.mark.skipif(_has_gpu(), reason="this machine has a GPU")
def test_without_gpu_and_without_vram_is_an_environment_problem(lorakit) -> None:  # type: ignore[no-untyped-def]
    r = lorakit("vram-check", "--preset", "comic-style")
    assert r.code == 3
    assert "no NVIDIA GPU driver answered" in r.err
    assert "--vram 24GB" in r.err
    assert "Traceback" not in r.err


def test_bad_vram_is_bad_input(lorakit) -> None:  # type: ignore[no-untyped-def]
    r = lorakit("vram-check", "--preset", "comic-style", "--vram", "lots")
    assert r.code == 2
    assert "--vram lots" in r.err


def test_bad_config_is_bad_input(lorakit) -> None:  # type: ignore[no-untyped-def]
    r = lorakit("vram-check", "--preset", "comic-style", "--set", "training.batch_sise=2", "--vram", "24GB")
    assert r.code == 2
    assert "batch_size" in r.err


def test_apply_writes_a_layer_that_train_uses(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "fitted.yaml"
    args = ["--preset", "sd35-large", "--set", "training.gradient_checkpointing=false", "--vram", "24GB"]
    r = lorakit("vram-check", *args, "--apply", str(out))
    assert r.code == 0, r.err
    assert f"wrote {out}" in r.out
    layer = yaml.safe_load(out.read_text())
    assert layer["training"]["gradient_checkpointing"] is True
    again = lorakit("vram-check", "--preset", "sd35-large", "--config", str(out), "--vram", "24GB", "--json")
    assert json.loads(again.out)["verdict"] == "fits"
    plan = lorakit(
        "train", "--preset", "sd35-large", "--config", str(out), "--data", str(EXAMPLE), "--dry-run", "--json"
    )
    assert plan.code == 0, plan.err
    assert "--gradient_checkpointing" in json.loads(plan.out)["argv"]


def test_apply_extends_the_users_config(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mine = tmp_path / "cfg" / "mine.yaml"
    mine.parent.mkdir()
    mine.write_text("extends: comic-style\ntraining:\n  batch_size: 8\n")
    out = tmp_path / "fitted.yaml"
    r = lorakit("vram-check", "--config", str(mine), "--vram", "24GB", "--apply", str(out), "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["verdict"] == "does-not-fit" and data["applied"]["written"]
    layer = yaml.safe_load(out.read_text())
    assert layer["extends"] == "cfg/mine.yaml"
    assert json.loads(lorakit("vram-check", "--config", str(out), "--vram", "24GB", "--json").out)["verdict"] == "fits"


def test_apply_when_it_already_fits_writes_nothing(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "fitted.yaml"
    r = lorakit("vram-check", "--preset", "comic-style", "--vram", "80GB", "--apply", str(out))
    assert r.code == 0 and not out.exists()
    assert "nothing to change" in r.out


def test_fastest_with_a_dataset(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "fast.yaml"
    r = lorakit(
        "vram-check",
        "--preset",
        "comic-style",
        "--data",
        str(EXAMPLE),
        "--vram",
        "140GB",
        "--fastest",
        "--apply",
        str(out),
    )
    assert r.code == 0, r.err
    assert "Fastest that fits" in r.out
    assert "image visits" in r.out and "saves" in r.out
    assert "square-root" in r.out
    layer = yaml.safe_load(out.read_text())
    assert layer["training"]["batch_size"] > 1 and layer["optimizer"]["lr"] > 1e-4


def test_fastest_keeps_batch_one_for_multi_concept(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = make_kohya_dataset(tmp_path / "ds", {"10_alice woman": 6, "5_bob man": 12})
    r = lorakit("vram-check", "--preset", "comic-style", "--data", str(data), "--vram", "140GB", "--fastest", "--json")
    assert r.code == 0, r.err
    fastest = json.loads(r.out)["fastest"]
    assert "training.batch_size" not in fastest["changes"]
    assert any("2 concepts" in n for n in fastest["notes"])


def test_help_lists_the_command_and_stays_light() -> None:
    code = (
        "import sys; import lorakit.cli.main as m; "
        "heavy = [n for n in ('pydantic', 'torch', 'lorakit.gpu.estimate', 'lorakit.planning') if n in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    r = subprocess.run(
        [sys.executable, "-c", "from lorakit.cli.main import main; main()", "vram-check", "--help"],
        capture_output=True,
        text=True,
        env={"COLUMNS": "200", "PATH": ""},
    )
    assert r.returncode == 0
    assert "--vram" in r.stdout and "--fastest" in r.stdout and "--apply" in r.stdout
