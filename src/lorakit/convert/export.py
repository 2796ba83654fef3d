"""A lorakit spec → the files users take back to the tools they came from: a kohya_ss GUI
JSON (every key the GUI reads, so the form holds no leftover value) or an sd-scripts
``--config_file`` TOML. Both come from lorakit's own argument builders (kohya/launch.py), so
they say what ``lorakit train`` would run; what the target cannot hold is returned as notes.
``lorakit import`` of either gives back the same command line."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from lorakit.config.schema import TrainSpec
from lorakit.convert.flags import script_flags
from lorakit.convert.gui import gui_key, network_args, table
from lorakit.convert.mapping import literal
from lorakit.convert.read import SCRIPTS
from lorakit.kohya.launch import network_flags, optimizer_flags, saving_flags, training_flags
from lorakit.kohya.model_flags import model_flags

GUI_TYPES = {
    "lora": "Standard",
    "locon": "LyCORIS/LoCon",
    "loha": "LyCORIS/LoHa",
    "lokr": "LyCORIS/LoKr",
    "dylora": "LyCORIS/DyLoRA",
    "glora": "LyCORIS/GLoRA",
    "ia3": "LyCORIS/iA3",
    "diag-oft": "LyCORIS/Diag-OFT",
}
# lorakit network.args key → the GUI key that feeds it (lora_gui.py renames two)
_GUI_ARG_KEYS = {"preset": "LyCORIS_preset", "block_size": "unit", "constraint": "constrain"}
_NOT_EXPORTED = ("output_dir", "logging_dir", "log_with")
_CHECKBOXES = {"sdxl": "sdxl", "sd3": "sd3_checkbox", "flux1": "flux1_checkbox"}  # the GUI's word → its checkbox


def _flag_dict(flags: list[tuple[str, str | None]]) -> dict[str, Any]:
    return {name: True if value is None else literal(value) for name, value in flags}


def sdscripts_args(spec: TrainSpec) -> tuple[dict[str, Any], list[str]]:
    """The training arguments of ``spec`` as sd-scripts ``--config_file`` keys (dataset
    values included as their command-line twins); notes on what is left out."""
    notes: list[str] = []
    net, net_args = network_flags(spec)
    opt, opt_args = optimizer_flags(spec)
    out: dict[str, Any] = {}
    for name, value in model_flags(spec):
        if value is None or not value.startswith("<"):
            out[name] = True if value is None else value
    if spec.model.tokenizer_cache_dir is not None:
        out["tokenizer_cache_dir"] = str(spec.model.tokenizer_cache_dir)
    out |= _flag_dict(net + opt + training_flags(spec) + saving_flags(spec, Path(".")))
    for name in _NOT_EXPORTED:
        out.pop(name, None)
    if net_args:
        out["network_args"] = net_args
    if opt_args:
        out["optimizer_args"] = opt_args
    if spec.optimizer.scheduler_args:
        out["lr_scheduler_args"] = [f"{k}={v}" for k, v in spec.optimizer.scheduler_args.items()]
    if "text_encoder_lr" in out:
        out["text_encoder_lr"] = [out["text_encoder_lr"]]
    t, d = spec.training, spec.dataset
    w, h = t.size
    out |= {
        "resolution": f"{w},{h}",
        "train_batch_size": t.batch_size,
        "enable_bucket": t.enable_bucket,
        "caption_extension": d.caption_extension,
        "shuffle_caption": t.shuffle_caption,
        "keep_tokens": t.keep_tokens,
        "flip_aug": t.flip_aug,
    }
    if t.bucket_no_upscale:
        out["bucket_no_upscale"] = True
    if t.enable_bucket:
        out |= {
            "min_bucket_reso": t.min_bucket_reso,
            "max_bucket_reso": t.max_bucket_reso,
            "bucket_reso_steps": t.bucket_reso_steps,
        }
    if d.folder is not None:
        out["train_data_dir"] = str(d.folder)
        notes.append(
            "train_data_dir: sd-scripts reads N_name sub-folders (N = repeats); lorakit also reads a flat folder"
        )
    else:
        notes.append("no dataset.folder: set train_data_dir (a folder of N_name sub-folders)")
    if d.concepts:
        notes.append(
            "dataset.concepts cannot be written as train_data_dir: lay them out as N_name folders of one parent"
        )
    if d.trigger or d.class_word:
        notes.append("dataset.trigger / class are not written: sd-scripts takes them from the N_name folder names")
    if spec.sampling.prompts:
        notes.append("sampling.prompts are not written: put them in a file and set sample_prompts to its path")
    if t.gpus:
        notes.append("training.gpus is an accelerate setting: pass --gpu_ids to accelerate")
    return {k: out[k] for k in sorted(out)}, notes


def render_toml(values: dict[str, Any], header: list[str]) -> str:
    """The one place export writes TOML (through lorakit.toml_out, the repo's TOML writer)."""
    from lorakit.toml_out import toml_table

    lines = [f"# {line}" for line in header]
    lines += toml_table(values)
    return "\n".join(lines) + "\n"


def _neutral(dest: str, script: str) -> Any:
    spec = script_flags(script).get(dest)
    if spec is None or spec["kind"] == "switch":
        return False
    return 0 if spec["type"] in ("int", "float") else ""


def _key(dest: str, word: str) -> str:
    key = gui_key(dest, word)
    if key is None:
        raise KeyError(f"kohya_gui.toml has no GUI key for {dest} ({word})")
    return key


def gui_config(spec: TrainSpec) -> tuple[dict[str, Any], list[str]]:
    """A kohya_ss GUI LoRA-tab JSON for ``spec`` with every training key the GUI reads (a
    key left out would keep whatever the user's form holds)."""
    fam = spec.family
    tbl = table()
    gui: dict[str, Any] = {}
    for key, entry in tbl["keys"].items():
        if "dest" in entry:
            gui[key] = tbl["gui_defaults"].get(key, _neutral(entry["dest"], fam.script))
        elif entry.get("network_arg"):
            gui[key] = tbl["gui_defaults"].get(key, "")
    gui |= {k: v for k, v in tbl["gui_defaults"].items() if k not in gui}
    for key in (
        "flux1_checkbox",
        "hunyuan_image_checkbox",
        "anima_checkbox",
        "lumina_checkbox",
        "v2",
        "sdxl",
        "sd3_checkbox",
    ):
        gui[key] = False
    notes: list[str] = []
    extra: list[str] = []
    m, n, o, t, s, sm, d = (
        spec.model,
        spec.network,
        spec.optimizer,
        spec.training,
        spec.saving,
        spec.sampling,
        spec.dataset,
    )
    kind = SCRIPTS[fam.script]  # the GUI's word for the model line
    gui[_CHECKBOXES[kind]] = True
    gui["vae"] = str(m.vae or "")
    # the family's model files and options (the registry) under the GUI keys that feed them
    for model_file in fam.model_files:
        gui[_key(model_file.flag, kind)] = str(getattr(m, model_file.key) or "")
    for option in fam.option_flags:
        section, _, leaf = option.key.partition(".")
        value = getattr(getattr(spec, section), leaf)
        if option.switch:
            gui[_key(option.flag, kind)] = bool(value)
        elif value is None or value == 0:  # the GUI drops a 0: sd-scripts' default
            gui[_key(option.flag, kind)] = _neutral(option.flag, fam.script)
            extra += [] if value is None else [f"--{option.flag}={value}"]
        else:
            gui[_key(option.flag, kind)] = value
    gui[_key("cache_text_encoder_outputs", kind)] = t.cache_text_encoder_outputs
    if m.tokenizer_cache_dir is not None:
        extra += ["--tokenizer_cache_dir", str(m.tokenizer_cache_dir)]
    # network: the GUI's keys, and the exact network_args as an override when the GUI's own
    # list for the type differs (additional_parameters come after --config_file and win)
    lora_type = GUI_TYPES[n.kind]
    own_type = next((name for name, e in tbl["lora_types"].items() if e.get("gui_word") == kind), None)
    if n.kind == "lora" and own_type is not None:  # the GUI's LoRA type for this model line (Flux1)
        lora_type = own_type
    elif n.kind == "lora" and n.conv_dim is not None:
        lora_type = "Kohya LoCon"
    gui["LoRA_type"] = lora_type
    gui["network_dim"], gui["network_alpha"] = n.dim, n.alpha
    gui["network_dropout"] = n.dropout or 0
    gui["network_weights"], gui["dim_from_weights"] = str(n.weights or ""), n.dim_from_weights
    if n.conv_dim is not None:
        gui["conv_dim"], gui["conv_alpha"] = n.conv_dim, n.conv_alpha if n.conv_alpha is not None else 1
    for key, value in n.args.items():
        gui_key = _GUI_ARG_KEYS.get(key, key)
        if gui_key in gui or gui_key in tbl["keys"]:
            gui[gui_key] = value
    _, ours = network_flags(spec)
    built = network_args(gui, lora_type)
    theirs = built[1] if built else []
    if {a.split("=", 1)[0]: literal(a.split("=", 1)[1]) for a in theirs} != {
        a.split("=", 1)[0]: literal(a.split("=", 1)[1]) for a in ours
    }:
        extra += ["--network_args", *ours] if ours else []
    # optimizer and learning rates (lora_gui.py: te == 0 with unet != 0 means U-Net only,
    # te != 0 with unet == 0 means text encoders only)
    gui["optimizer"] = dict(optimizer_flags(spec)[0])["optimizer_type"]
    gui["optimizer_args"] = " ".join(optimizer_flags(spec)[1])
    gui["learning_rate"] = o.lr
    te = o.text_encoder_lr or 0.0
    unet = o.unet_lr or 0.0
    if t.unet_only:
        if not (te == 0 and unet != 0):
            extra.append("--network_train_unet_only")
    else:
        if te == 0 and unet != 0:
            te = o.lr
        if te != 0 and unet == 0:
            unet = o.lr
    gui["text_encoder_lr"], gui["unet_lr"] = te, unet
    gui["lr_scheduler"] = o.scheduler
    gui["lr_scheduler_type"] = o.scheduler_type or ""
    gui["lr_scheduler_args"] = " ".join(f"{k}={v}" for k, v in o.scheduler_args.items())
    gui["lr_scheduler_num_cycles"] = o.cycles if o.cycles is not None else ""
    # the GUI's lr_warmup is a percent: it passes percent / 100 as the ratio
    percent = (o.warmup_ratio or 0) * 100
    gui["lr_warmup"], gui["lr_warmup_steps"] = round(percent), o.warmup_steps
    if abs(percent - round(percent)) > 1e-9:  # the GUI loads lr_warmup as a whole percent
        extra.append(f"--lr_warmup_steps={o.warmup_ratio}")
    if o.max_grad_norm == 0:
        extra.append("--max_grad_norm=0")  # the GUI drops a 0
    gui["max_grad_norm"] = o.max_grad_norm or 0
    # length, batch, precision
    gui["max_resolution"] = "{},{}".format(*t.size)
    gui["train_batch_size"] = t.batch_size
    if t.max_steps is not None:
        gui |= {"max_train_steps": t.max_steps, "max_train_epochs": 0, "epoch": 1}
    else:
        gui |= {"max_train_steps": 0, "max_train_epochs": t.epochs, "epoch": t.epochs}
    gui["mixed_precision"] = "no" if t.precision == "fp32" else t.precision
    gui["save_precision"] = s.precision
    gui["xformers"] = t.attention
    for key in (
        "full_bf16",
        "fp8_base",
        "gradient_checkpointing",
        "cache_latents",
        "cache_latents_to_disk",
        "flip_aug",
        "shuffle_caption",
        "keep_tokens",
        "enable_bucket",
        "min_bucket_reso",
        "max_bucket_reso",
        "bucket_reso_steps",
        "seed",
    ):
        gui[key] = getattr(t, key)
    gui["debiased_estimation_loss"] = t.debiased_estimation
    gui["min_snr_gamma"] = t.min_snr_gamma or 0
    # noise: the GUI passes noise_offset/adaptive only with type Original, multires only with Multires
    if t.multires_noise_iterations:
        gui["noise_offset_type"] = "Multires"
        gui["multires_noise_iterations"] = t.multires_noise_iterations
        gui["multires_noise_discount"] = t.multires_noise_discount or 0
        extra += [f"--noise_offset={t.noise_offset}"] if t.noise_offset else []
        extra += [f"--adaptive_noise_scale={t.adaptive_noise_scale}"] if t.adaptive_noise_scale is not None else []
    else:
        gui["noise_offset_type"], gui["noise_offset"] = "Original", t.noise_offset or 0
        gui["adaptive_noise_scale"] = t.adaptive_noise_scale or 0
        if t.adaptive_noise_scale == 0 or t.multires_noise_discount is not None:
            extra += [f"--adaptive_noise_scale={t.adaptive_noise_scale}"] if t.adaptive_noise_scale == 0 else []
            extra += [f"--multires_noise_discount={t.multires_noise_discount}"] if t.multires_noise_discount else []
    gui["min_timestep"] = t.min_timestep or 0
    gui["max_timestep"] = t.max_timestep or 1000
    gui["caption_dropout_rate"] = t.caption_dropout_rate or 0
    gui["max_token_length"] = t.max_token_length or 75
    gui["bucket_no_upscale"] = t.bucket_no_upscale
    gui["scale_weight_norms"] = t.scale_weight_norms or 0
    gui["clip_skip"] = t.clip_skip or 0
    gui["max_data_loader_n_workers"] = t.dataloader_workers
    gui["persistent_data_loader_workers"] = t.dataloader_workers > 0
    # saving and sampling
    gui["save_every_n_epochs"] = s.every_n_epochs or 0
    gui["save_every_n_steps"] = s.every_n_steps or 0
    gui["save_last_n_epochs"] = s.keep_last or 0
    gui["save_state"] = s.save_state
    gui["save_model_as"] = "safetensors"
    w, h = t.size
    gui["sample_prompts"] = "\n".join(f"{p} --w {w} --h {h} --s {sm.steps}" for p in sm.prompts)
    gui["sample_every_n_epochs"] = sm.every_n_epochs or 0
    gui["sample_every_n_steps"] = sm.every_n_steps or 0
    gui["sample_sampler"] = sm.sampler
    gui["caption_extension"] = d.caption_extension
    gui["train_data_dir"] = str(d.folder or "")
    gui["output_name"] = spec.output.name
    gui["output_dir"] = gui["logging_dir"] = ""
    gui["additional_parameters"] = " ".join(extra)  # the GUI removes quotes and splits on spaces
    if d.concepts or d.trigger or d.class_word:
        notes.append(
            "the GUI reads N_name sub-folders of train_data_dir: dataset.trigger/class/concepts are not written"
        )
    if t.gpus:
        notes.append("training.gpus: set the GPU ids in the GUI's accelerate settings")
    if extra:
        notes.append(f"additional_parameters holds what the GUI's fields cannot: {shlex.join(extra)}")
    return {k: gui[k] for k in sorted(gui)}, notes
