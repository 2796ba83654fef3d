"""`lorakit export` then `lorakit import` gives back the same command line, for every shipped
lorakit preset and every imported GUI preset, through both formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from lorakit.config.loader import load_spec
from lorakit.config.presets import preset_names, preset_path
from lorakit.convert.api import import_config, to_yaml
from lorakit.convert.export import gui_config, render_toml, sdscripts_args
from tests.convert.conftest import SDXL_PRESETS, dataset, plan


def _argv(config: Path, tmp_path: Path) -> list[str]:
    return plan(config, dataset(tmp_path), tmp_path / "run").plan.argv


def _write_back(spec_file: Path, fmt: str, tmp_path: Path) -> Path:
    spec = load_spec(None, spec_file).spec
    if fmt == "kohya-gui":
        out = tmp_path / "exported.json"
        out.write_text(json.dumps(gui_config(spec)[0], indent=2))
    else:
        out = tmp_path / "exported.toml"
        out.write_text(render_toml(sdscripts_args(spec)[0], ["test"]))
    result = import_config(out, spec.model.family if spec.family.script == "sd3_train_network.py" else None)
    assert [r for r in result.rows if r.status in ("unsupported", "unknown")] == []
    back = tmp_path / "back.yaml"
    back.write_text(to_yaml(result, out))
    return back


@pytest.mark.parametrize("fmt", ["kohya-gui", "toml"])
@pytest.mark.parametrize("name", preset_names())
def test_lorakit_presets_round_trip(name: str, fmt: str, tmp_path: Path) -> None:
    start = tmp_path / "start.yaml"
    data = yaml.safe_load(preset_path(name).read_text())
    family = load_spec(name).spec.family
    model = {}
    for file in family.model_files:  # the family's files, from the registry (Flux: clip_l, t5xxl, ae)
        path = tmp_path / f"{'model' if file.key == 'checkpoint' else file.key}.safetensors"
        path.write_bytes(b"x")
        model[file.key] = str(path)
    start.write_text(yaml.safe_dump({"extends": name, "model": model}))
    assert _argv(_write_back(start, fmt, tmp_path), tmp_path) == _argv(start, tmp_path), data["description"]


@pytest.mark.parametrize("fmt", ["kohya-gui", "toml"])
@pytest.mark.parametrize("preset", SDXL_PRESETS, ids=lambda p: p.name)
def test_imported_gui_presets_round_trip(preset: Path, fmt: str, tmp_path: Path) -> None:
    first = tmp_path / "first.yaml"
    first.write_text(to_yaml(import_config(preset), preset))
    assert _argv(_write_back(first, fmt, tmp_path), tmp_path) == _argv(first, tmp_path)


def test_export_cli(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = lorakit("export", str(preset_path("comic-style")), "--format", "kohya-gui", "-o", str(tmp_path / "c.json"))
    assert res.code == 0, res.err
    gui = json.loads((tmp_path / "c.json").read_text())
    assert (gui["LoRA_type"], gui["network_dim"], gui["optimizer"], gui["sdxl"]) == ("Standard", 128, "AdamW8bit", True)
    res = lorakit("export", str(preset_path("comic-style")), "--format", "toml")
    assert res.code == 0 and "network_dim = 128" in res.out and 'optimizer_type = "AdamW8bit"' in res.out
    res = lorakit("export", str(preset_path("comic-style")), "--format", "kohya-gui", "-o", str(tmp_path / "c.json"))
    assert res.code == 2 and "exists" in res.err
    res = lorakit("export", str(tmp_path), "--format", "toml")
    assert res.code == 2 and "spec.yaml: no such file" in res.err


def test_export_a_run_folder(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run = tmp_path / "runs" / "mine-20261202-101500"
    run.mkdir(parents=True)
    spec = load_spec("sdxl-8gb").spec
    (run / "spec.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json", by_alias=True)))
    res = lorakit("export", str(run), "--format", "toml", "-o", str(tmp_path / "mine.toml"))
    assert res.code == 0, res.err
    back = import_config(tmp_path / "mine.toml").full
    assert (back["network"]["dim"], back["training"]["resolution"], back["optimizer"]["name"]) == (16, 768, "adafactor")
