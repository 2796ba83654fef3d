"""A kohya_ss GUI LoRA-tab JSON → the sd-scripts arguments the GUI would launch with.

Driven by the table data/kohya_gui.toml (derived from kohya_ss's lora_gui.py and
common_gui.py; its header names the commit). What the table cannot say as data (several keys
making one argument, the family checkboxes, the warmup percentage) is here, each with the
GUI line it follows."""

from __future__ import annotations

import shlex
from functools import cache
from importlib import resources
from typing import Any

from lorakit.convert import _toml
from lorakit.convert.flags import parse_flags
from lorakit.convert.model import ImportRefused, Row, SdArgs, Source

SDXL_SCRIPT = "sdxl_train_network.py"
SD3_SCRIPT = "sd3_train_network.py"
FLUX_SCRIPT = "flux_train_network.py"
# the GUI's word for a model line (its checkbox) → the sd-scripts script it runs (lora_gui.py)
GUI_SCRIPTS = {"sdxl": SDXL_SCRIPT, "sd3": SD3_SCRIPT, "flux1": FLUX_SCRIPT}
REFUSED_TYPES = {"Flux1", "Flux1 OFT", "HunyuanImage-2.1", "Anima", "Lumina"}
TRAINS = "lorakit trains LoRA / LyCORIS networks for SDXL and SD 3.5 (medium, large) and LoRA for Flux.1 [dev]"
# update_my_data (common_gui.py): the loader's coercions and their fallbacks
_INT0 = (
    "clip_skip",
    "epoch",
    "gradient_accumulation_steps",
    "keep_tokens",
    "lr_warmup",
    "max_data_loader_n_workers",
    "max_train_epochs",
    "save_every_n_epochs",
    "seed",
    "max_train_steps",
    "caption_dropout_every_n_epochs",
)
_FLOAT0 = ("adaptive_noise_scale", "noise_offset", "learning_rate", "text_encoder_lr", "unet_lr")
_FAMILY_BOXES = {
    "hunyuan_image_checkbox": "HunyuanImage-2.1",
    "anima_checkbox": "Anima",
    "lumina_checkbox": "Lumina Image 2.0",
}


@cache
def table() -> dict[str, Any]:
    """The GUI → sd-scripts table (data/kohya_gui.toml)."""
    text = resources.files("lorakit.convert").joinpath("data/kohya_gui.toml").read_text(encoding="utf-8")
    return _toml.loads(text)


def _as_int(v: Any, fallback: int) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return fallback


def _as_float(v: Any, fallback: float) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return fallback


def normalise(data: dict[str, Any]) -> dict[str, Any]:
    """update_my_data (common_gui.py): the same coercions the GUI applies when it loads a file."""
    d = dict(data)
    d.setdefault("optimizer", "AdamW8bit" if d.get("use_8bit_adam") else "AdamW")
    for key in _INT0:
        if d.get(key) is not None:
            d[key] = _as_int(d[key], 0)
    if d.get("lr_scheduler_num_cycles") is not None:
        d["lr_scheduler_num_cycles"] = _as_int(d["lr_scheduler_num_cycles"], 1)
    if d.get("max_token_length") is not None:
        d["max_token_length"] = _as_int(d["max_token_length"], 75)
    for key in _FLOAT0:
        if d.get(key) is not None:
            d[key] = _as_float(d[key], 0.0)
    if d.get("lr_scheduler_power") is not None:
        d["lr_scheduler_power"] = _as_float(d["lr_scheduler_power"], 1.0)
    if d.get("LoRA_type", "Standard") == "LoCon":
        d["LoRA_type"] = "LyCORIS/LoCon"
    if isinstance(d.get("xformers"), bool):
        d["xformers"] = "xformers" if d["xformers"] else "none"
    if d.get("use_wandb") == "True":
        d["log_with"] = "wandb"
    if "lora_network_weights" in d:
        d["network_weights"] = d["lora_network_weights"]
    return d


def what_tab(data: dict[str, Any], path: object) -> None:
    """Refuse files from other GUI tabs (DreamBooth, fine-tune, textual inversion)."""
    if "LoRA_type" in data or "network_dim" in data:
        return
    if {"token_string", "num_vectors_per_token", "init_word"} & data.keys():
        kind = "a textual-inversion config (kohya_ss GUI, Textual Inversion tab)"
    elif {"train_dir", "image_folder", "block_lr", "dataset_repeats"} & data.keys():
        kind = "a fine-tune config (kohya_ss GUI, Finetune tab)"
    elif {"learning_rate_te", "learning_rate_te1", "learning_rate_te2"} & data.keys():
        kind = "a DreamBooth / full fine-tune config (kohya_ss GUI, DreamBooth tab)"
    else:
        raise ImportRefused(
            [f"{path}: not a kohya_ss GUI training config (no LoRA_type, network_dim or other GUI key)"],
            fix="import a config saved from the GUI's LoRA tab, an sd-scripts --config_file TOML "
            "or a text file holding the accelerate launch line",
        )
    raise ImportRefused([f"{path}: {kind}; {TRAINS}"], fix="import a config saved from the GUI's LoRA tab")


def family_of(d: dict[str, Any], path: object) -> str:
    """The script the GUI would run (lora_gui.py: sdxl, flux1, sd3, hunyuan, anima, lumina, else SD 1.x/2.x)."""
    lora_type = str(d.get("LoRA_type"))
    if d.get("sdxl"):
        if lora_type in REFUSED_TYPES:
            raise ImportRefused([f"{path}: LoRA_type {lora_type!r} is a network for another model; {TRAINS}"])
        return "sdxl"
    if d.get("flux1_checkbox"):  # lora_gui.py runs flux_train_network.py before the sd3 check
        if str(d.get("model_type") or "").lower() == "chroma":  # --model_type chroma (class_flux1.py)
            raise ImportRefused([f"{path}: a Chroma LoRA config (flux1_checkbox with model_type chroma); {TRAINS}"])
        return "flux1"
    for box, name in _FAMILY_BOXES.items():
        if d.get(box):
            raise ImportRefused([f"{path}: a {name} LoRA config ({box} is on); {TRAINS}"])
    if d.get("sd3_checkbox"):
        return "sd3"
    sd = "SD 2.x" if d.get("v2") else "SD 1.x"
    raise ImportRefused(
        [
            f"{path}: an {sd} LoRA config (the GUI would run train_network.py: sdxl, sd3_checkbox and "
            f"flux1_checkbox are off); {TRAINS}"
        ],
        fix='if it is meant for SDXL, tick SDXL in the GUI (or set "sdxl": true in the file) and import it again',
    )


def _falsy(v: Any) -> bool:
    # lora_gui.py drops `value in ["", False, None]`, which in Python also drops 0 and 0.0
    return v is None or v is False or v == "" or (isinstance(v, int | float) and not isinstance(v, bool) and v == 0)


def _gate(when: str | None, d: dict[str, Any], family: str) -> bool:
    if when is None:
        return True
    if set(when.split("|")) <= GUI_SCRIPTS.keys():
        return family in when.split("|")
    if when == "original_noise":
        return d.get("noise_offset_type") == "Original"
    if when == "multires_noise":
        return d.get("noise_offset_type") == "Multires"
    raise ValueError(f"unknown gate {when!r} in kohya_gui.toml")


def gui_key(dest: str, word: str) -> str | None:
    """The GUI key that becomes ``dest`` when the GUI's family word is ``word`` (export)."""
    for key, entry in table()["keys"].items():
        if entry.get("dest") == dest and _gate(entry.get("when"), {}, word):
            return str(key)
    return None


def _cast(cast: str | None, v: Any) -> Any:
    if cast == "int":
        return _as_int(v, 0)
    if cast == "float":
        return _as_float(v, 0.0)
    if cast == "list":
        return str(v).replace('"', "").split()
    return v


def network_args(d: dict[str, Any], lora_type: str) -> tuple[str, list[str]] | None:
    """(network_module, network_args) as lora_gui.py builds them for ``lora_type``; None if
    the table does not know the type."""
    spec = table()["lora_types"].get(lora_type)
    if spec is None:
        return None
    text = ""
    for item in spec.get("args", []):
        if item.startswith("literal:"):
            text += " " + item.removeprefix("literal:")
            continue
        name, _, gui_key = item.partition("=")
        text += f" {name}={d.get(gui_key or name)}"
    for key in spec.get("nonzero", []):
        if not _falsy(d.get(key)):
            text += f" {key}={d[key]}"
    if d.get("train_lora_ggpo"):
        text += "".join(f" {key}={d[key]}" for key in spec.get("ggpo", []) if not _falsy(d.get(key)))
    for key, arg in spec.get("switches", {}).items():
        if d.get(key):
            text += f" {arg}"
    for key in spec.get("nonzero_after", []):
        if not _falsy(d.get(key)):
            text += f" {key}={d[key]}"
    for key in ("loraplus_lr_ratio", "loraplus_unet_lr_ratio", "loraplus_text_encoder_lr_ratio"):
        if not _falsy(d.get(key)):
            text += f" {key}={d[key]}"
    return str(spec["module"]), text.replace('"', "").split()


def read_gui(data: dict[str, Any], path: object) -> Source:
    """The sd-scripts arguments the GUI builds from ``data``; a value of a type the GUI never
    saves (a list or an object) is reported and left out; anything else unreadable is one
    ConfigError naming the file."""
    from lorakit.errors import ConfigError

    what_tab(data, path)
    odd = {k: v for k, v in data.items() if isinstance(v, list | dict)}
    clean = {k: v for k, v in data.items() if k not in odd}
    try:
        source = _read_gui(clean, path)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(
            [f"{path}: a value has a type the kohya_ss GUI does not save ({exc})"],
            fix="save the config again from the GUI, or correct the value by hand",
        ) from None
    source.rows += [Row(k, v, "unsupported", "a list/object where the GUI saves one value") for k, v in odd.items()]
    return source


def _read_gui(data: dict[str, Any], path: object) -> Source:
    tbl = table()
    d = {**tbl["gui_defaults"], **normalise(data)}
    family = family_of(d, path)
    script = GUI_SCRIPTS[family]
    args = SdArgs()
    rows: list[Row] = []
    notes: list[str] = []
    keys: dict[str, Any] = tbl["keys"]

    def skip(key: str, why: str) -> None:
        if key in data:
            rows.append(Row(key, data[key], "dropped", why))

    # a key the file lacks keeps the GUI form's value (open_configuration): a fresh GUI's default
    from_form = [k for k in tbl["gui_defaults"] if k not in data and "dest" in keys.get(k, {})]
    for key in [*data, *from_form]:
        entry = keys.get(key)
        label = key if key in data else f"{key} (not in the file: the GUI form's default)"
        if entry is None:
            prefix = next((p for p in tbl["prefixes"] if key.startswith(p)), None)
            if prefix is not None:
                skip(key, tbl["prefixes"][prefix])
            else:
                rows.append(Row(key, data[key], "unknown", "not a kohya_ss GUI key (lora_gui.py saves no such key)"))
            continue
        if "gui_only" in entry:
            skip(key, str(entry["gui_only"]))
        elif "dest" in entry:
            if not _gate(entry.get("when"), d, family):
                skip(key, f"not passed by the GUI unless {entry['when'].replace('_', ' ')}")
                continue
            value = _cast(entry.get("cast"), d[key])
            if key == "max_data_loader_n_workers":  # always re-added after the filter (lora_gui.py)
                args.set(entry["dest"], value, label)
            elif _falsy(value) or value == []:
                skip(key, "empty, 0 or false: the GUI does not pass it" + entry.get("note", ""))
            else:
                args.set(entry["dest"], value, label)
    if "use_8bit_adam" in data and "optimizer" not in data:
        args.set("optimizer_type", d["optimizer"], "use_8bit_adam")
    for key in ("sdxl", "sd3_checkbox", "flux1_checkbox", "v2", *_FAMILY_BOXES):
        skip(key, f"family: {family} ({script})")
    for key in ("use_wandb", "lora_network_weights"):
        if key in data:
            rows.append(Row(key, data[key], "dropped", "legacy key, read as its new name"))
            if key == "lora_network_weights" and not _falsy(d["network_weights"]):
                args.set("network_weights", d["network_weights"], key)

    # LoRA_type → network_module + network_args (lora_gui.py), LoRA+ ratios appended
    lora_type = str(d["LoRA_type"])
    built = network_args(d, lora_type)
    if built is None:
        rows.append(Row("LoRA_type", lora_type, "unsupported", "lorakit has no network kind for it"))
    else:
        module, nargs = built
        if module == "networks.lora" and family == "sd3":
            module = "networks.lora_sd3"
        args.set("network_module", module, "LoRA_type")
        if nargs:
            args.set("network_args", nargs, "LoRA_type")
    for key in ("LyCORIS_preset", *(k for k, e in keys.items() if e.get("network_arg"))):
        if key in data and key != "LoRA_type":
            used = built is not None and any(a.split("=", 1)[1] == str(d[key]) for a in built[1] if "=" in a)
            if not used:
                skip(key, f"not used by LoRA_type {lora_type!r}")
            else:
                rows.append(Row(key, data[key], "mapped", "network_args (see its row)", dest="network_args"))
    for key in ("loraplus_lr_ratio", "loraplus_unet_lr_ratio", "loraplus_text_encoder_lr_ratio"):
        if _falsy(d.get(key)):
            skip(key, "0: the GUI does not pass it")

    # learning rates (lora_gui.py: text_encoder_lr list, unet_lr if not 0, train flags)
    te, unet, t5 = (
        _as_float(d.get("text_encoder_lr"), 0.0),
        _as_float(d.get("unet_lr"), 0.0),
        _as_float(d["t5xxl_lr"], 0.0),
    )
    if te > 0:
        args.set("text_encoder_lr", [te, t5 if t5 > 0 else te], "text_encoder_lr")
    else:
        skip("text_encoder_lr", "0: the text encoders are not trained")
    if unet != 0:
        args.set("unet_lr", unet, "unet_lr")
    else:
        skip("unet_lr", "0: learning_rate is used")
    if t5 == 0:
        skip("t5xxl_lr", "0: the GUI does not pass it")
    if te == 0 and unet != 0:
        args.set("network_train_unet_only", True, "text_encoder_lr")
    if te != 0 and unet == 0:
        args.set("network_train_text_encoder_only", True, "unet_lr")

    # warmup: absolute override wins, else percent / 100 as a ratio (common_gui.py resolve_lr_warmup_steps);
    # with a dataset_config and max_train_steps, round(percent × steps / 100) (lora_gui.py)
    pct, override = _as_float(d.get("lr_warmup"), 0.0), _as_float(d.get("lr_warmup_steps"), 0.0)
    steps = _as_int(d.get("max_train_steps"), 0)
    if override > 0:
        args.set("lr_warmup_steps", int(override), "lr_warmup_steps")
        skip("lr_warmup", "lr_warmup_steps overrides it")
    elif pct != 0 and d.get("dataset_config") and steps > 0:
        args.set("lr_warmup_steps", round(pct * steps / 100), "lr_warmup")
    elif pct != 0 and not d.get("dataset_config"):
        args.set("lr_warmup_steps", pct / 100, "lr_warmup")
    else:
        skip("lr_warmup", "0: no warmup")
    if override <= 0:
        skip("lr_warmup_steps", "0: lr_warmup (percent) is used")

    # attention: "xformers" / "sdpa" / "none"
    attention = d.get("xformers")
    if attention in ("xformers", "sdpa"):
        args.set(str(attention), True, "xformers")
    else:
        skip("xformers", f"{attention!r}: neither xformers nor sdpa")

    prompts = [line.strip() for line in str(d.get("sample_prompts") or "").splitlines() if line.strip()]
    if prompts:
        args.set("sample_prompts", prompts, "sample_prompts")
    else:
        skip("sample_prompts", "empty: no samples")

    # additional_parameters: quotes removed, split, appended after --config_file: they win (common_gui.py)
    extra = str(d.get("additional_parameters") or "").replace('"', "").split()
    if extra:
        parsed, problems = parse_flags(script, extra)
        for flag in parsed:
            args.set(flag.dest, flag.value, f"additional_parameters {flag.token}")
        for problem in problems:
            rows.append(Row("additional_parameters", shlex.join(extra), "unknown", problem))
        if not problems:
            rows.append(Row("additional_parameters", shlex.join(extra), "dropped", "read as the flags below"))
    else:
        skip("additional_parameters", "empty")
    if "LoRA_type" in data and built is not None:
        rows.append(Row("LoRA_type", data["LoRA_type"], "dropped", "read as network_module / network_args below"))
    if not d.get("max_train_steps") and "max_train_steps" not in data:
        notes.append(
            "the file has no max_train_steps: a fresh GUI would fill in its default (1600 steps); "
            "the import trains the file's epochs instead"
        )
    return Source("kohya-gui", family, args, rows, notes)
