"""Flux.1 [dev] through `lorakit import`: the kohya_ss GUI's Flux preset (tests/fixtures/kohya_gui,
README there names its source), an sd-scripts TOML and a flux_train_network.py launch line.

What the GUI would pass is lora_gui.py as data (convert/data/kohya_gui.toml, read by
lorakit.convert.gui); values read off lora_gui.py / class_flux1.py by hand are pinned below
(docs/research/kohya-gui-import.md, Flux paragraph)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lorakit.convert.api import import_config, to_yaml
from lorakit.convert.gui import read_gui
from tests.convert.conftest import FIXTURES, dataset, effective, plan
from tests.convert.test_gui_presets import LORAKIT_OWN, SD_DEFAULTS, _norm

PRESET = FIXTURES / "flux1D - adamw8bit fp8.json"
PATHS = ("ae", "clip_l", "t5xxl")


def _rows(result: Any) -> dict[str, Any]:
    return {r.key: r for r in result.rows}


def test_the_gui_flux_preset_imports_as_flux_dev() -> None:
    result = import_config(PRESET)
    assert result.problems == []
    assert [r for r in result.rows if r.status in ("unsupported", "unknown")] == []
    assert set(json.loads(PRESET.read_text())) <= {r.key.split(" ")[0] for r in result.rows}
    full = result.full
    m, t = full["model"], full["training"]
    assert m["family"] == "flux-dev" and result.extends == "flux-dev"
    assert (m["ae"], m["clip_l"]) == (
        "put the full path to ae.sft here",
        "put the full path to clip_l.safetensors here",
    )
    assert m["t5xxl"].startswith("put the full path to the file here")
    assert (t["guidance_scale"], t["timestep_sampling"], t["discrete_flow_shift"], t["model_prediction_type"]) == (
        1.0,
        "sigmoid",
        3.0,
        "raw",
    )
    assert (t["apply_t5_attn_mask"], t["fp8_base"], t["cache_text_encoder_outputs"], t["unet_only"]) == (
        True,
        True,
        True,
        True,
    )
    assert (t["cpu_offload_checkpointing"], t["blocks_to_swap"]) == (False, None)
    rows = _rows(result)
    assert "deprecated in sd-scripts" in rows["split_mode"].target
    assert rows["t5xxl_max_token_length"].status == "dropped" and "default" in rows["t5xxl_max_token_length"].target
    assert rows["flux1_cache_text_encoder_outputs_to_disk"].status == "dropped"
    assert rows["max_token_length"].status == "dropped"  # the GUI does not pass it for Flux
    assert rows["sample_prompts"].status == "dropped"  # no sample_every_n_*: sd-scripts never samples
    assert "flux-dev" in to_yaml(result, PRESET)


def test_the_dry_run_passes_what_the_gui_passes(tmp_path: Path) -> None:
    result = import_config(PRESET)
    out = tmp_path / "flux.yaml"
    out.write_text(to_yaml(result, PRESET))
    planned = plan(out, dataset(tmp_path), tmp_path / "run")
    assert planned.plan.script == "flux_train_network.py"
    got = effective(planned)
    gui = read_gui(json.loads(PRESET.read_text()), PRESET).args.values
    assert (gui["guidance_scale"], gui["discrete_flow_shift"], gui["timestep_sampling"]) == (1.0, 3.0, "sigmoid")
    assert "max_token_length" not in gui and gui["network_module"] == "networks.lora_flux"
    status = {r.dest: r for r in result.rows if r.dest}
    for dest, value in gui.items():
        row = status.get(dest)
        assert row is not None, f"{dest} is not in the report"
        if row.status != "mapped" or dest in ("sample_sampler", "train_data_dir"):
            continue  # reported; no sampler without prompts; the data folder comes from --data
        if dest in PATHS:
            assert Path(got[dest]).name == value, dest  # a path: lorakit makes it absolute
        else:
            assert _norm(dest, got.get(dest)) == _norm(dest, value), dest
    extra = {
        d: v
        for d, v in got.items()
        if d not in gui and d not in LORAKIT_OWN and v not in (False, 0) and SD_DEFAULTS.get(d) != _norm(d, v)
    }
    assert extra == {}


def _gui(tmp_path: Path, **changes: Any) -> Path:
    path = tmp_path / "flux.json"
    path.write_text(json.dumps(json.loads(PRESET.read_text()) | changes))
    return path


def test_split_mode_is_deprecated_and_reported(tmp_path: Path) -> None:
    # sd-scripts flux_train_network.py: split_mode without blocks_to_swap swaps 18 blocks
    result = import_config(_gui(tmp_path, split_mode=True))
    assert result.full["training"]["blocks_to_swap"] == 18
    assert result.full["network"]["args"] == {"train_blocks": "single"}  # lora_gui.py forces it
    assert "deprecated" in next(r.note for r in result.rows if r.key == "split_mode" and r.status == "mapped")
    # with blocks_to_swap set, sd-scripts ignores split_mode
    result = import_config(_gui(tmp_path, split_mode=True, blocks_to_swap=10))
    assert result.full["training"]["blocks_to_swap"] == 10
    assert "ignores it" in next(r.target for r in result.rows if r.key == "split_mode")


def test_flux_network_args_and_oft(tmp_path: Path) -> None:
    args = read_gui(
        json.loads(PRESET.read_text()) | {"img_attn_dim": 8, "split_qkv": True, "module_dropout": 0.1}, PRESET
    ).args.values["network_args"]
    assert args == ["img_attn_dim=8", "split_qkv=True", "module_dropout=0.1"]
    result = import_config(_gui(tmp_path, LoRA_type="Flux1 OFT"))
    assert [r.key for r in result.rows if r.status == "unsupported"] == ["LoRA_type"]


def test_chroma_is_refused(tmp_path: Path, lorakit) -> None:  # type: ignore[no-untyped-def]
    res = lorakit("import", str(_gui(tmp_path, model_type="chroma")), "-o", str(tmp_path / "x.yaml"))
    assert res.code == 2 and "a Chroma LoRA config" in res.err


def test_flux_toml_and_launch_line(tmp_path: Path) -> None:
    toml = tmp_path / "config_lora-flux.toml"
    toml.write_text(
        'pretrained_model_name_or_path = "flux1-dev.safetensors"\nclip_l = "clip_l.safetensors"\n'
        't5xxl = "t5xxl_fp16.safetensors"\nae = "ae.safetensors"\nnetwork_module = "networks.lora_flux"\n'
        'network_dim = 4\nguidance_scale = 1.0\ntimestep_sampling = "shift"\ndiscrete_flow_shift = 3.1582\n'
        'model_prediction_type = "raw"\nt5xxl_max_token_length = 512\nmax_train_steps = 100\n'
    )
    result = import_config(toml)
    assert result.full["model"]["family"] == "flux-dev" and result.full["model"]["ae"] == "ae.safetensors"
    assert result.full["training"]["discrete_flow_shift"] == 3.1582
    assert [r for r in result.rows if r.status in ("unsupported", "unknown")] == []
    line = tmp_path / "train.sh"
    line.write_text(
        "accelerate launch --mixed_precision bf16 flux_train_network.py \\\n"
        "  --pretrained_model_name_or_path flux1-dev.safetensors --clip_l clip_l.safetensors \\\n"
        "  --t5xxl t5xxl_fp16.safetensors --ae ae.safetensors --network_module networks.lora_flux \\\n"
        "  --network_dim 4 --blocks_to_swap 16 --timestep_sampling flux_shift --apply_t5_attn_mask \\\n"
        "  --max_train_steps 100\n"
    )
    result = import_config(line)
    t = result.full["training"]
    assert result.full["model"]["family"] == "flux-dev"
    assert (t["blocks_to_swap"], t["timestep_sampling"], t["apply_t5_attn_mask"]) == (16, "flux_shift", True)
    assert [r for r in result.rows if r.status in ("unsupported", "unknown")] == []


def test_export_writes_the_gui_flux_form(tmp_path: Path) -> None:
    from lorakit.config.loader import load_spec
    from lorakit.convert.export import gui_config

    spec = load_spec("flux-dev-16gb", None, ("model.ae=/m/ae.safetensors",)).spec
    gui = gui_config(spec)[0]
    assert (gui["flux1_checkbox"], gui["sdxl"], gui["sd3_checkbox"], gui["LoRA_type"]) == (True, False, False, "Flux1")
    assert (gui["ae"], gui["guidance_scale"], gui["timestep_sampling"], gui["discrete_flow_shift"]) == (
        "/m/ae.safetensors",
        1.0,
        "shift",
        3.1582,
    )
    assert (gui["model_prediction_type"], gui["blocks_to_swap"], gui["flux1_cache_text_encoder_outputs"]) == (
        "raw",
        16,
        True,
    )
