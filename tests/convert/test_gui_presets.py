"""Every SDXL LoRA preset the kohya_ss GUI ships: import → `train --dry-run` plan → the
arguments sd-scripts receives equal the ones the GUI would build from the same JSON, except
values the import report names (dropped with a reason, or not carried over).

The GUI side is kohya_ss's lora_gui.py written as data (src/lorakit/convert/data/kohya_gui.toml,
read by lorakit.convert.gui); the spot checks in test_fact_sheet_values pin values read off the
GUI code by hand (docs/research/kohya-gui-import.md §5)."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from lorakit.convert.api import import_config, to_yaml
from lorakit.convert.gui import read_gui, table
from tests.convert.conftest import SDXL_PRESETS, dataset, effective, plan

# what the import reports as not carried over, per preset (lorakit has no key for these yet)
NOT_CARRIED = {
    "SDXL - 1 image LoRA v1.0.json": ["network_dim", "network_args"],
    "SDXL - LoHA AI_Characters v1.0.json": [],
    "SDXL - LoKR v1.0.json": [],
    "SDXL - LoRA AI_Now ADamW v1.0.json": [],
    "SDXL - LoRA AI_Now prodigy v1.0.json": [],
    "SDXL - LoRA AI_characters standard v1.0.json": [],
    "SDXL - LoRA AI_characters standard v1.1.json": [],
    "SDXL - LoRA adafactor v1.0.json": [],
    "SDXL - LoRA aitrepreneur clothing v1.0.json": ["gradient_accumulation_steps"],
    "SDXL - LoRA by malcolmrey training v1.0.json": [],
    "SDXL - LoRA face dogu_cat v1.0.json": [],
    "SDXL - LoRA finetuning phase 1_v1.1.json": [],
    "SDXL - LoRA finetuning phase 2_v1.1.json": [],
    "SDXL - LoRA kudou-reira dadaptadam v1.0.json": [],
    "SDXL - LoRA kudou-reira dadaptadam v1.1.json": [],
    "SDXL - LoRA kudou-reira prodigy v4.0.json": [],
    "SDXL - edgLoRAXL AI_Now.json": [],
    "SDXL - edgLoRAXL.json": [],
    "locon-dadaptation-sdxl.json": [],
}
# arguments lorakit adds that the GUI leaves to sd-scripts' default or to its own folders
LORAKIT_OWN = {
    "output_dir",
    "output_name",
    "save_model_as",
    "logging_dir",
    "log_with",
    "dataset_config",
    "pretrained_model_name_or_path",
    "seed",
    "persistent_data_loader_workers",
    "caption_extension",
}

# sd-scripts' parser defaults (library/train_util.py at lorakit's pin) lorakit writes out explicitly
SD_DEFAULTS = {"min_bucket_reso": 256.0, "max_bucket_reso": 1024.0, "bucket_reso_steps": 64.0}


def test_the_presets_are_all_here() -> None:
    assert len(SDXL_PRESETS) == 19 and sorted(NOT_CARRIED) == sorted(p.name for p in SDXL_PRESETS)


@pytest.mark.parametrize("preset", SDXL_PRESETS, ids=lambda p: p.name)
def test_every_key_is_known_to_the_table(preset: Path) -> None:
    tbl = table()
    for key in json.loads(preset.read_text()):
        assert key in tbl["keys"] or key.startswith(tuple(tbl["prefixes"])), key


def _norm(dest: str, value: Any) -> Any:
    if dest in ("network_args", "optimizer_args", "lr_scheduler_args"):
        items = value if isinstance(value, list) else [value]
        out = {}
        for item in items:
            k, _, v = str(item).partition("=")
            try:
                out[k] = ast.literal_eval(v)
            except (ValueError, SyntaxError):
                out[k] = v
        return out
    if dest in ("network_weights", "train_data_dir", "pretrained_model_name_or_path", "vae"):
        return str(value).replace("\\", "/").rsplit("/", 1)[-1]  # a path: lorakit makes it absolute
    if dest == "resolution":
        parts = value if isinstance(value, list) else str(value).split(",")
        return tuple(int(p) for p in parts)
    if isinstance(value, bool) or value is True:
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


@pytest.mark.parametrize("preset", SDXL_PRESETS, ids=lambda p: p.name)
def test_import_launches_what_the_gui_launches(preset: Path, tmp_path: Path) -> None:
    result = import_config(preset)
    assert result.problems == []
    blocking = sorted(r.dest or r.target.split(":")[0] for r in result.rows if r.status in ("unsupported", "unknown"))
    assert blocking == sorted(NOT_CARRIED[preset.name])
    assert not [r for r in result.rows if r.status == "unknown"]
    reported = {r.key.split(" ")[0] for r in result.rows}
    assert set(json.loads(preset.read_text())) <= reported  # every key of the file has a row
    out = tmp_path / "imported.yaml"
    out.write_text(to_yaml(result, preset), encoding="utf-8")
    got = effective(plan(out, dataset(tmp_path), tmp_path / "run"))
    gui = read_gui(json.loads(preset.read_text()), preset).args.values
    status = {r.dest: r for r in result.rows if r.dest}
    unet_only = bool(gui.get("network_train_unet_only"))
    for dest, value in gui.items():
        row = status.get(dest)
        assert row is not None, f"{dest} is not in the report"
        if row.status != "mapped":
            continue  # reported: dropped with its reason, or not carried over
        if dest == "epoch":
            assert int(got["max_train_epochs"]) == value
        elif dest == "text_encoder_lr":
            assert ("text_encoder_lr" not in got) if unet_only else [float(x) for x in got[dest]] == value[:1]
        else:
            assert _norm(dest, got.get(dest)) == _norm(dest, value), dest
    extra = {
        d: v
        for d, v in got.items()
        if d not in gui and d not in LORAKIT_OWN and v not in (False, 0) and SD_DEFAULTS.get(d) != _norm(d, v)
    }
    if "epoch" in gui and "max_train_epochs" not in gui:
        extra.pop("max_train_epochs", None)
    assert extra == {}
    # lorakit fills what the GUI left to sd-scripts with sd-scripts' values, not its own defaults
    assert got.get("keep_tokens", 0) == int(gui.get("keep_tokens", 0))
    assert ("sdpa" in got) == ("sdpa" in gui) and ("xformers" in got) == ("xformers" in gui)


def test_fact_sheet_values() -> None:
    """Values read off lora_gui.py by hand for three presets (docs/research/kohya-gui-import.md §5)."""
    from tests.convert.conftest import FIXTURES

    a = import_config(FIXTURES / "SDXL - LoRA aitrepreneur clothing v1.0.json")
    assert a.extends == "sdxl-adafactor"
    t, o, n = a.full["training"], a.full["optimizer"], a.full["network"]
    assert (n["kind"], n["dim"], n["alpha"]) == ("lora", 128, 1)
    assert o["name"] == "adafactor" and o["args"] == {
        "scale_parameter": False,
        "relative_step": False,
        "warmup_init": False,
    }
    assert (o["lr"], o["unet_lr"], o["text_encoder_lr"]) == (0.0009, 0.0009, 0.0009)
    assert (t["unet_only"], t["cache_text_encoder_outputs"], t["epochs"], t["attention"]) == (
        False,
        False,
        15,
        "xformers",
    )
    assert (t["keep_tokens"], t["clip_skip"], t["dataloader_workers"], t["seed"]) == (0, 1, 0, 12345)

    b = import_config(FIXTURES / "SDXL - LoRA kudou-reira prodigy v4.0.json")
    t, o, n = b.full["training"], b.full["optimizer"], b.full["network"]
    assert b.extends is None  # character-prodigy would leak its betas
    assert (n["dim"], n["alpha"], o["name"], o["lr"], o["scheduler"]) == (
        256,
        256,
        "prodigy",
        1.0,
        "cosine_with_restarts",
    )
    assert o["args"] == {
        "decouple": True,
        "weight_decay": 0.45,
        "d_coef": 2,
        "use_bias_correction": True,
        "safeguard_warmup": True,
    }
    assert (t["epochs"], t["batch_size"], t["unet_only"], t["keep_tokens"], t["noise_offset"]) == (
        30,
        6,
        True,
        2,
        0.0357,
    )

    c = import_config(FIXTURES / "SDXL - LoKR v1.0.json")
    t, n = c.full["training"], c.full["network"]
    assert (n["kind"], n["dim"], n["alpha"], n["conv_dim"], n["conv_alpha"]) == ("lokr", 64, 64, 64, 64)
    assert n["args"]["preset"] == "full" and n["args"]["factor"] == -1 and n["args"]["use_cp"] is True
    assert (n["args"]["rank_dropout"], n["args"]["module_dropout"]) == (0.1, 0.1)
    assert t["noise_offset"] is None  # Multires: the GUI does not pass noise_offset
    assert (t["precision"], c.full["saving"]["precision"], t["attention"], t["min_snr_gamma"]) == (
        "bf16",
        "fp16",
        "xformers",
        10,
    )


@pytest.mark.parametrize("preset", SDXL_PRESETS, ids=lambda p: p.name)
def test_extends_form_resolves_to_the_flat_form(preset: Path, tmp_path: Path) -> None:
    from lorakit.config.loader import load_spec

    result = import_config(preset)
    out = tmp_path / "short.yaml"
    out.write_text(to_yaml(result, preset), encoding="utf-8")
    flat = tmp_path / "flat.yaml"
    import yaml

    flat.write_text(yaml.safe_dump(result.full, sort_keys=False), encoding="utf-8")
    short_spec, flat_spec = load_spec(None, out).spec, load_spec(None, flat).spec
    short_spec.output.folder = flat_spec.output.folder  # "runs": cwd-relative by default, YAML-relative when written
    assert short_spec == flat_spec
