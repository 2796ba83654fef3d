"""sd-scripts arguments → a lorakit config dict, with one report row per argument.
Over ~400 lines because it is one table-like mapping: a branch per sd-scripts argument family.

The base is what sd-scripts does when an argument is absent, written in lorakit's words
(``SD_DEFAULTS``), so lorakit's own defaults (keep_tokens 1, bf16, sdpa, …) never leak into
an imported run. ``SIMPLE`` maps one argument to one key; the functions below handle the
arguments that need more (network, optimizer, length, precision, attention)."""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

from pydantic import ValidationError

from lorakit import families
from lorakit.config.schema import LYCORIS_KINDS, Scheduler, TrainSpec
from lorakit.convert import _toml
from lorakit.convert.flags import is_dest
from lorakit.convert.model import Imported, Row, Source
from lorakit.kohya.launch import OPTIMIZER_TYPES

# sd-scripts' behaviour with the argument absent (train_util.py / train_network.py parser
# defaults at lorakit's pin), as lorakit keys. Seed: sd-scripts picks a random one; lorakit
# always passes one, so the schema's 42 stays (the report says so).
SD_DEFAULTS: dict[str, Any] = {
    "model": {"family": "sdxl"},
    "network": {"kind": "lora", "dim": 4, "alpha": 1, "args": {}},
    "optimizer": {"name": "adamw", "lr": 2e-6, "args": {}, "scheduler": "constant", "warmup_steps": 0},
    "training": {
        "batch_size": 1,
        "precision": "fp32",
        "full_bf16": False,
        "fp8_base": False,
        "gradient_checkpointing": False,
        "attention": "none",
        "cache_latents": False,
        "cache_latents_to_disk": False,
        "cache_text_encoder_outputs": False,
        "unet_only": False,
        "no_half_vae": False,
        "debiased_estimation": False,
        "flip_aug": False,
        "shuffle_caption": False,
        "keep_tokens": 0,
        "enable_bucket": False,
        "min_bucket_reso": 256,
        "max_bucket_reso": 1024,
        "bucket_reso_steps": 64,
        "dataloader_workers": 8,
    },
    "saving": {"every_n_epochs": None, "precision": "float", "save_state": False},
    "dataset": {"caption_extension": ".caption"},
}

# one argument → one lorakit key (the converter turns the sd-scripts value into lorakit's)
SIMPLE: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "network_dim": ("network.dim", int),
    "network_alpha": ("network.alpha", float),
    "network_dropout": ("network.dropout", float),
    "network_weights": ("network.weights", str),
    "dim_from_weights": ("network.dim_from_weights", bool),
    "learning_rate": ("optimizer.lr", float),
    "unet_lr": ("optimizer.unet_lr", float),
    "lr_scheduler_num_cycles": ("optimizer.cycles", int),
    "max_grad_norm": ("optimizer.max_grad_norm", float),
    "train_batch_size": ("training.batch_size", int),
    "full_bf16": ("training.full_bf16", bool),
    "fp8_base": ("training.fp8_base", bool),
    "gradient_checkpointing": ("training.gradient_checkpointing", bool),
    "cache_latents": ("training.cache_latents", bool),
    "cache_latents_to_disk": ("training.cache_latents_to_disk", bool),
    "cache_text_encoder_outputs": ("training.cache_text_encoder_outputs", bool),
    "network_train_unet_only": ("training.unet_only", bool),
    "no_half_vae": ("training.no_half_vae", bool),
    "min_snr_gamma": ("training.min_snr_gamma", float),
    "noise_offset": ("training.noise_offset", float),
    "debiased_estimation_loss": ("training.debiased_estimation", bool),
    "scale_weight_norms": ("training.scale_weight_norms", float),
    "flip_aug": ("training.flip_aug", bool),
    "shuffle_caption": ("training.shuffle_caption", bool),
    "keep_tokens": ("training.keep_tokens", int),
    "clip_skip": ("training.clip_skip", int),
    "seed": ("training.seed", int),
    "enable_bucket": ("training.enable_bucket", bool),
    "min_bucket_reso": ("training.min_bucket_reso", int),
    "max_bucket_reso": ("training.max_bucket_reso", int),
    "bucket_reso_steps": ("training.bucket_reso_steps", int),
    "blocks_to_swap": ("training.blocks_to_swap", int),
    "bucket_no_upscale": ("training.bucket_no_upscale", bool),
    "adaptive_noise_scale": ("training.adaptive_noise_scale", float),
    "multires_noise_iterations": ("training.multires_noise_iterations", int),
    "multires_noise_discount": ("training.multires_noise_discount", float),
    "min_timestep": ("training.min_timestep", int),
    "max_timestep": ("training.max_timestep", int),
    "caption_dropout_rate": ("training.caption_dropout_rate", float),
    "max_token_length": ("training.max_token_length", int),
    "max_data_loader_n_workers": ("training.dataloader_workers", int),
    "save_precision": ("saving.precision", str),
    "save_every_n_epochs": ("saving.every_n_epochs", int),
    "save_every_n_steps": ("saving.every_n_steps", int),
    "save_last_n_epochs": ("saving.keep_last", int),
    "save_state": ("saving.save_state", bool),
    "sample_every_n_epochs": ("sampling.every_n_epochs", int),
    "sample_every_n_steps": ("sampling.every_n_steps", int),
    "sample_sampler": ("sampling.sampler", str),
    "caption_extension": ("dataset.caption_extension", str),
    "train_data_dir": ("dataset.folder", str),
    "output_name": ("output.name", str),
    "pretrained_model_name_or_path": ("model.checkpoint", str),
    "vae": ("model.vae", str),
    "clip_l": ("model.clip_l", str),
    "clip_g": ("model.clip_g", str),
    "t5xxl": ("model.t5xxl", str),
    "tokenizer_cache_dir": ("model.tokenizer_cache_dir", str),
    "ae": ("model.ae", str),
    "cpu_offload_checkpointing": ("training.cpu_offload_checkpointing", bool),
    "guidance_scale": ("training.guidance_scale", float),
    "timestep_sampling": ("training.timestep_sampling", str),
    "discrete_flow_shift": ("training.discrete_flow_shift", float),
    "model_prediction_type": ("training.model_prediction_type", str),
    "apply_t5_attn_mask": ("training.apply_t5_attn_mask", bool),
}

# arguments lorakit sets itself, or that change no training value
OWNED: dict[str, str] = {
    "output_dir": "lorakit owns the run folder (runs/<name>-<time>/)",
    "logging_dir": "lorakit logs to <run>/logs",
    "log_with": "lorakit logs to TensorBoard in the run folder",
    "log_prefix": "logging name only",
    "log_tracker_name": "logging only",
    "log_tracker_config": "logging only",
    "log_config": "logging only",
    "wandb_run_name": "logging only",
    "wandb_api_key": "a secret: never copied",
    "huggingface_token": "a secret: never copied",
    "huggingface_repo_id": "upload after training, not a training value",
    "huggingface_repo_type": "upload after training, not a training value",
    "huggingface_repo_visibility": "upload after training, not a training value",
    "huggingface_path_in_repo": "upload after training, not a training value",
    "save_state_to_huggingface": "upload after training, not a training value",
    "resume_from_huggingface": "upload after training, not a training value",
    "async_upload": "upload after training, not a training value",
    "training_comment": "a note in the LoRA's metadata, not a training value",
    "metadata_author": "LoRA metadata, not a training value",
    "metadata_description": "LoRA metadata, not a training value",
    "metadata_license": "LoRA metadata, not a training value",
    "metadata_tags": "LoRA metadata, not a training value",
    "metadata_title": "LoRA metadata, not a training value",
    "highvram": "memory behaviour of caching only, not a training value",
    "cache_text_encoder_outputs_to_disk": "where the text-encoder cache is kept, not a training value "
    "(lorakit keeps it in memory)",
    "skip_cache_check": "cache validation only",
    "resume": "resume a lorakit run with `lorakit resume RUN`",
    "output_config": "not a training value",
    "config_file": "read above",
    "console_log_level": "logging only",
    "console_log_file": "logging only",
    "console_log_simple": "logging only",
}

# arguments whose value here is what sd-scripts does without it
DEFAULTS: dict[str, Any] = {
    "max_token_length": 75,
    "prior_loss_weight": 1.0,
    "loss_type": "l2",
    "huber_c": 0.1,
    "huber_scale": 1.0,
    "huber_schedule": "snr",
    "lr_scheduler_power": 1.0,
    "gradient_accumulation_steps": 1,
    "max_timestep": 1000,
    "min_timestep": 0,
    "save_model_as": "safetensors",
    "lr_scheduler_args": [],
    "caption_dropout_rate": 0,
    "caption_dropout_every_n_epochs": 0,
    "v_parameterization": False,
    "persistent_data_loader_workers": True,
    "lr_scheduler_num_cycles": 1,
}
# per script: sd-scripts' value when the argument is absent (flux_train_network.py: T5 512
# tokens for dev, 256 for schnell; lorakit trains dev)
SCRIPT_DEFAULTS: dict[str, dict[str, Any]] = {
    "flux_train_network.py": {"t5xxl_max_token_length": 512},
}
_INERT_LORAPLUS = (
    "sd-scripts reads LoRA+ ratios only from network_args: as a top-level key it never took effect (kohya_ss #3520)"
)
IGNORED_BY_SDSCRIPTS = {
    "epoch": "the GUI's step maths only (sd-scripts has no such argument)",
    "noise_offset_type": "the GUI's switch between noise_offset and multires noise; sd-scripts ignores it",
    "lowvram": "sd-scripts removed it and ignores it (kohya_ss #3520)",
    "loraplus_lr_ratio": _INERT_LORAPLUS,
    "loraplus_unet_lr_ratio": _INERT_LORAPLUS,
    "loraplus_text_encoder_lr_ratio": _INERT_LORAPLUS,
}
_OPTIMIZERS = {v.lower(): k for k, v in OPTIMIZER_TYPES.items()}
_SCHEDULERS = frozenset(get_args(Scheduler))  # the schema's own list (config/schema.py)
_INT = re.compile(r"[+-]?\d+")


def literal(text: str) -> str | int | float | bool:
    """A network_args / optimizer_args value as a YAML scalar: True/False, int, float, or
    the text itself (sd-scripts gives network args to the module as strings and reads
    optimizer args with ast.literal_eval; both render back to an equal value)."""
    if text in ("True", "False"):
        return text == "True"
    if _INT.fullmatch(text):
        return int(text)
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _set(config: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for p in parents:
        node = node.setdefault(p, {})
    node[leaf] = value


def _get(config: dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for p in dotted.split("."):
        if not isinstance(node, dict) or p not in node:
            return None
        node = node[p]
    return node


def _kv_list(values: Any) -> list[tuple[str, str]]:
    items = values if isinstance(values, list) else str(values).split()
    out = []
    for item in items:
        key, eq, value = str(item).partition("=")
        out.append((key.strip(), value.strip() if eq else ""))
    return out


def _resolution(value: Any) -> int | list[int]:
    parts = [int(float(p)) for p in (value if isinstance(value, list) else str(value).split(","))]
    if len(parts) == 1 or parts[0] == parts[1]:
        return parts[0]
    return parts[:2]


class _Mapper:
    def __init__(self, source: Source, family: str, script: str, stem: str, base: Path) -> None:
        self.base = base  # the imported file's folder: relative file names in it are read from there
        self.args = source.args
        self.family = family
        self.script = script
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.config: dict[str, Any] = copy.deepcopy(SD_DEFAULTS)
        self.config["model"]["family"] = family
        self.lora_modules = {f.lora_module for f in families.FAMILIES.values() if f.script == script}
        name = re.sub(r"[^\w.]+", "-", stem).strip("-.") or "lora"
        self.config["output"] = {"name": name[:100]}

    def key(self, dest: str) -> str:
        return self.args.origin.get(dest, dest)

    def row(self, dest: str, status: str, target: str, note: str = "") -> None:
        self.rows.append(Row(self.key(dest), self.args.values.get(dest), status, target, note, dest))  # type: ignore[arg-type]

    def mapped(self, dest: str, dotted: str, value: Any, note: str = "") -> None:
        _set(self.config, dotted, value)
        self.row(dest, "mapped", dotted, note)

    def run(self) -> None:
        v = self.args.values
        done: set[str] = set()

        def take(*dests: str) -> None:
            done.update(dests)

        if "dataset_config" in v:
            take("dataset_config")
        take("sample_prompts")  # self.prompts below
        for section, dests in (
            (self.network, ("network_module", "network_args")),
            (
                self.optimizer,
                ("optimizer_type", "optimizer_args", "learning_rate", "text_encoder_lr", "lr_warmup_steps"),
            ),
            (self.length, ("max_train_epochs", "max_train_steps", "epoch", "resolution")),
            (self.precision, ("mixed_precision",)),
        ):
            try:
                section(v, take)
            except (TypeError, ValueError, AttributeError) as exc:  # a value of the wrong type in the file
                shown = ", ".join(f"{self.key(d)}={v[d]!r}" for d in dests if d in v)
                self.rows.append(Row(shown or dests[0], None, "unsupported", f"cannot read these values ({exc})"))
        for dest, value in v.items():
            if dest in done:
                continue
            inert = _inert(dest, v)
            if inert:
                self.row(dest, "dropped", inert)
            elif dest in (own := SCRIPT_DEFAULTS.get(self.script, {})) and _same(value, own[dest]):
                self.row(dest, "dropped", f"{self.script}'s default for this model: nothing to pass")
            elif dest == "split_mode":
                self.split_mode(v)
            elif dest in DEFAULTS and _same(value, DEFAULTS[dest]):
                self.row(dest, "dropped", "sd-scripts' default: nothing to pass")
            elif dest in SIMPLE and re.fullmatch(r"<[\w.]+>", str(value)):
                self.row(dest, "dropped", f"a dry run's placeholder: set {SIMPLE[dest][0]}")
            elif dest in SIMPLE:
                dotted, conv = SIMPLE[dest]
                try:
                    self.mapped(dest, dotted, conv(value))
                except (TypeError, ValueError):
                    self.row(dest, "unsupported", f"{value!r} is not a valid value for {dotted}")
            elif dest in OWNED:
                self.row(dest, "dropped", OWNED[dest])
            elif dest in IGNORED_BY_SDSCRIPTS:
                self.row(dest, "dropped", IGNORED_BY_SDSCRIPTS[dest])
            elif not is_dest(self.script, dest):
                self.row(dest, "dropped", f"not an argument of {self.script}: sd-scripts ignores it")
            else:
                self.row(dest, "unsupported", "lorakit has no key for it yet")
        if "train_data_dir" not in v:
            self.notes.append("no dataset folder in the file: pass --data DIR to `lorakit train`")
        if "seed" not in v:
            self.notes.append("the source leaves the seed random; lorakit always passes one (training.seed: 42)")
        self.prompts(v)
        if "dataset_config" in v:  # sd-scripts: its values win over the arguments' (subset → dataset → general)
            self.dataset_file(self.base / str(v["dataset_config"]))

    def split_mode(self, v: dict[str, Any]) -> None:
        """flux_train_network.py: split_mode is deprecated; without blocks_to_swap it sets 18."""
        if not v["split_mode"]:
            self.row("split_mode", "dropped", "off (deprecated in sd-scripts: blocks_to_swap replaced it)")
        elif v.get("blocks_to_swap"):
            self.row("split_mode", "dropped", "deprecated in sd-scripts, which ignores it when blocks_to_swap is set")
        else:
            self.mapped(
                "split_mode",
                "training.blocks_to_swap",
                18,
                "deprecated in sd-scripts: without blocks_to_swap it swaps 18 blocks (flux_train_network.py)",
            )

    def network(self, v: dict[str, Any], take: Callable[..., None]) -> None:
        take("network_module", "network_args")
        module = v.get("network_module", "networks.lora")
        args = _kv_list(v.get("network_args", []))
        if module == "lycoris.kohya":
            algo = dict(args).get("algo", "lora")
            kind = {"lora": "locon"}.get(algo, algo)
            if kind not in LYCORIS_KINDS:
                self.row("network_module", "unsupported", f"LyCORIS algo={algo}: lorakit has no network kind for it")
                return
            self.mapped("network_module", "network.kind", kind, f"lycoris.kohya algo={algo}")
        elif module in {"networks.lora", "networks.lora_sd3", *self.lora_modules}:
            if "network_module" in v:
                self.mapped("network_module", "network.kind", "lora")
        else:
            self.row("network_module", "unsupported", f"{module}: lorakit has no network kind for it")
            return
        extra: dict[str, Any] = {}
        for key, value in args:
            if key == "algo":
                continue
            if key in ("conv_dim", "conv_alpha"):
                _set(self.config, f"network.{key}", int(float(value)) if key == "conv_dim" else float(value))
            else:
                extra[key] = literal(value)
        if args:
            self.config["network"]["args"] = extra
            self.mapped("network_args", "network.args", extra, "conv_dim/conv_alpha as network.conv_dim/conv_alpha")

    def optimizer(self, v: dict[str, Any], take: Callable[..., None]) -> None:
        take(
            "optimizer_type",
            "optimizer_args",
            "text_encoder_lr",
            "lr_scheduler",
            "lr_warmup_steps",
            "lr_scheduler_type",
            "lr_scheduler_args",
        )
        name = str(v.get("optimizer_type", "AdamW") or "AdamW")
        ours = _OPTIMIZERS.get(name.lower())
        if ours is None:
            self.row(
                "optimizer_type",
                "unsupported",
                f"optimizer {name}: lorakit knows {', '.join(OPTIMIZER_TYPES.values())}",
            )
        elif "optimizer_type" in v:
            self.mapped("optimizer_type", "optimizer.name", ours)
        if v.get("optimizer_args"):
            opt = {k: literal(x) for k, x in _kv_list(v["optimizer_args"])}
            self.mapped("optimizer_args", "optimizer.args", opt)
        te = v.get("text_encoder_lr")
        if te is not None:
            lrs = [float(x) for x in (te if isinstance(te, list) else [te])]
            note = "not used: the text encoders are not trained" if v.get("network_train_unet_only") else ""
            if len(lrs) > 1 and lrs[1] != lrs[0]:
                self.row(
                    "text_encoder_lr",
                    "unsupported",
                    f"a second text-encoder LR {lrs[1]:g} (T5): lorakit has one text_encoder_lr",
                )
            else:
                self.mapped("text_encoder_lr", "optimizer.text_encoder_lr", lrs[0], note)
        if v.get("lr_scheduler_type"):
            self.mapped("lr_scheduler_type", "optimizer.scheduler_type", str(v["lr_scheduler_type"]))
        if v.get("lr_scheduler_args"):
            sched_args = {k: literal(x) for k, x in _kv_list(v["lr_scheduler_args"])}
            self.mapped("lr_scheduler_args", "optimizer.scheduler_args", sched_args)
        sched = v.get("lr_scheduler")
        if sched is not None:
            if sched in _SCHEDULERS:
                self.mapped("lr_scheduler", "optimizer.scheduler", sched)
            else:
                self.row(
                    "lr_scheduler", "unsupported", f"scheduler {sched}: lorakit knows {', '.join(sorted(_SCHEDULERS))}"
                )
        warm = v.get("lr_warmup_steps")
        if warm is not None:
            w = float(warm)
            steps = v.get("max_train_steps")
            if w >= 1 or w == 0:
                self.mapped("lr_warmup_steps", "optimizer.warmup_steps", int(w))
            elif steps and not v.get("max_train_epochs"):
                # sd-scripts: a ratio < 1 means int(ratio × max_train_steps) (train_util.py)
                self.mapped("lr_warmup_steps", "optimizer.warmup_steps", int(w * int(steps)), f"{w:g} × {steps} steps")
            else:
                self.mapped("lr_warmup_steps", "optimizer.warmup_ratio", w, "a share of all steps")

    def length(self, v: dict[str, Any], take: Callable[..., None]) -> None:
        take("max_train_epochs", "max_train_steps", "epoch", "resolution")
        if "resolution" in v:
            try:
                self.mapped("resolution", "training.resolution", _resolution(v["resolution"]))
            except (TypeError, ValueError):
                self.row("resolution", "unsupported", "not W,H")
        t = self.config["training"]
        if v.get("max_train_epochs"):
            self.mapped("max_train_epochs", "training.epochs", int(v["max_train_epochs"]))
            t["max_steps"] = None
            for dest in ("max_train_steps", "epoch"):
                if dest in v:
                    self.row(dest, "dropped", "max_train_epochs wins (sd-scripts recomputes the steps)")
        elif v.get("max_train_steps"):
            self.mapped("max_train_steps", "training.max_steps", int(v["max_train_steps"]))
            t["epochs"] = None
            if "epoch" in v:
                self.row("epoch", "dropped", "max_train_steps wins (the GUI uses epoch only without it)")
        elif v.get("epoch"):
            t["max_steps"] = None
            self.mapped(
                "epoch",
                "training.epochs",
                int(v["epoch"]),
                "the GUI turns it into max_train_steps from the image count; the same length with batch 1",
            )
        else:
            t["epochs"], t["max_steps"] = None, 1600
            self.notes.append("no length in the file: sd-scripts' default of 1600 steps (training.max_steps: 1600)")

    def precision(self, v: dict[str, Any], take: Callable[..., None]) -> None:
        take("mixed_precision", "sdpa", "xformers", "mem_eff_attn", "persistent_data_loader_workers")
        mp = v.get("mixed_precision")
        if mp is not None:
            ours = {"no": "fp32", "fp16": "fp16", "bf16": "bf16"}.get(str(mp))
            if ours is None:
                self.row("mixed_precision", "unsupported", f"{mp}: lorakit trains in fp16, bf16 or fp32 (no)")
            else:
                self.mapped("mixed_precision", "training.precision", ours)
        if v.get("mem_eff_attn"):
            self.row("mem_eff_attn", "unsupported", "lorakit offers sdpa, xformers or none")
        for dest in ("xformers", "sdpa"):
            if v.get(dest):
                self.mapped(dest, "training.attention", dest)
        if "persistent_data_loader_workers" in v:
            self.row(
                "persistent_data_loader_workers", "dropped", "lorakit keeps workers persistent whenever there are any"
            )

    def dataset_file(self, path: Path) -> None:
        """An sd-scripts --dataset_config (config_util.py): one [[datasets]] of DreamBooth subsets
        becomes dataset.concepts; its dataset/general values become the training keys."""
        try:
            text = path.read_text(encoding="utf-8")
            data = json.loads(text) if path.suffix.lower() == ".json" else _toml.loads(text)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            self.row("dataset_config", "unsupported", f"cannot read {path} ({exc}): set dataset.folder or concepts")
            return
        datasets = data.get("datasets") if isinstance(data, dict) else None
        if not isinstance(datasets, list) or len(datasets) != 1 or not isinstance(datasets[0], dict):
            self.row("dataset_config", "unsupported", "lorakit trains one [[datasets]] (several: multi-resolution)")
            return
        general: dict[str, Any] = data["general"] if isinstance(data.get("general"), dict) else {}
        ds = datasets[0]
        level = {**general, **{k: x for k, x in ds.items() if k != "subsets"}}
        concepts: list[dict[str, Any]] = []
        problems: list[str] = []
        for sub in ds.get("subsets") or []:
            merged = {**level, **sub}
            if "image_dir" not in sub or merged.get("is_reg") or "metadata_file" in merged:
                problems.append("a subset without image_dir, a regularisation or a fine-tune (metadata) subset")
                continue
            concept: dict[str, Any] = {"folder": str(sub["image_dir"]), "repeats": int(merged.get("num_repeats", 1))}
            if merged.get("class_tokens"):
                concept["trigger"] = str(merged["class_tokens"])
            if "flip_aug" in sub:
                concept["flip_aug"] = bool(sub["flip_aug"])
            concepts.append(concept)
        known: dict[str, tuple[str, Callable[[Any], Any]]] = {
            "resolution": ("training.resolution", _resolution),
            "batch_size": ("training.batch_size", int),
            "enable_bucket": ("training.enable_bucket", bool),
            "min_bucket_reso": ("training.min_bucket_reso", int),
            "max_bucket_reso": ("training.max_bucket_reso", int),
            "bucket_reso_steps": ("training.bucket_reso_steps", int),
            "bucket_no_upscale": ("training.bucket_no_upscale", bool),
            "caption_extension": ("dataset.caption_extension", str),
            "shuffle_caption": ("training.shuffle_caption", bool),
            "keep_tokens": ("training.keep_tokens", int),
            "flip_aug": ("training.flip_aug", bool),
            "caption_dropout_rate": ("training.caption_dropout_rate", float),
        }
        per_subset = {"image_dir", "num_repeats", "class_tokens", "flip_aug", "is_reg", "metadata_file"}
        for key, value in level.items():
            if key in known:
                dotted, conv = known[key]
                _set(self.config, dotted, conv(value))
            elif key not in per_subset and not _same(value, DEFAULTS.get(key, object())):
                problems.append(f"{key} = {value!r}")
        for sub in ds.get("subsets") or []:
            problems += [f"{k} = {x!r} (subset)" for k, x in sub.items() if k not in per_subset and k not in known]
        if any(not Path(c["folder"]).is_absolute() for c in concepts):
            self.notes.append(
                f"{path.name} names folders relative to where sd-scripts ran; they are now relative to the "
                "YAML: check dataset.concepts[].folder"
            )
        self.config.setdefault("dataset", {})["concepts"] = concepts
        self.config["dataset"].pop("folder", None)
        self.mapped("dataset_config", "dataset.concepts", concepts, f"read {path.name}")
        for problem in problems:
            self.rows.append(Row(f"dataset_config: {problem}", None, "unsupported", "lorakit has no key for it yet"))

    def prompts(self, v: dict[str, Any]) -> None:
        p = v.get("sample_prompts")
        if p is None:
            return
        if not (v.get("sample_every_n_epochs") or v.get("sample_every_n_steps")):
            self.row("sample_prompts", "dropped", "no effect: sd-scripts samples only every N epochs or steps")
            return
        # lorakit appends its own --w/--h/--s to each prompt; inline options are cut off
        lines = p if isinstance(p, list) else _prompt_file(self.base / str(p))
        if lines is None:
            self.row(
                "sample_prompts", "unsupported", f"prompt file {p} not found: copy its lines into sampling.prompts"
            )
            return
        prompts = [re.split(r"\s--\w", line, maxsplit=1)[0].strip() for line in lines]
        self.mapped("sample_prompts", "sampling.prompts", [x for x in prompts if x], "inline --options dropped")
        if "sample_sampler" not in v:
            _set(self.config, "sampling.sampler", "ddim")  # sd-scripts' default


def _inert(dest: str, v: dict[str, Any]) -> str:
    """Why an argument has no effect with the others given (sd-scripts' train_network.py /
    train_util.py save paths), or ""."""
    steps, state = bool(v.get("save_every_n_steps")), bool(v.get("save_state"))
    if dest == "save_last_n_steps_state" and not (steps and state):
        return "no effect: states are saved by steps only with save_state and save_every_n_steps"
    if dest == "save_last_n_epochs_state" and not state:
        return "no effect: states are saved only with save_state"
    if dest == "save_last_n_steps" and not steps:
        return "no effect: checkpoints are saved by steps only with save_every_n_steps"
    return ""


def _prompt_file(path: Path) -> list[str] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def _same(a: Any, b: Any) -> bool:
    if isinstance(b, bool) or isinstance(a, bool):
        return bool(a) == bool(b)
    if isinstance(b, int | float):
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return False
    return bool(a == b)


def to_lorakit(source: Source, script: str, stem: str, base: Path = Path(".")) -> Imported:
    """The full lorakit config of ``source`` and a row for every argument; the config is
    checked by lorakit's schema (a value it refuses becomes an ``unsupported`` row and the
    key falls back to sd-scripts' behaviour where lorakit has it)."""
    m = _Mapper(source, source.family, script, stem, base)
    m.run()
    rows = [*source.rows, *m.rows]
    config = m.config
    for _ in range(20):  # each pass removes the keys pydantic refuses
        try:
            TrainSpec.model_validate(config)
            break
        except ValidationError as exc:
            for err in exc.errors():
                dotted = ".".join(str(p) for p in err["loc"] if not isinstance(p, int))
                dotted = _field_path(config, dotted)
                value = _get(config, dotted)
                rows = [r for r in rows if not (r.status == "mapped" and r.target == dotted)]
                rows.append(
                    Row(_origin_of(m, dotted), value, "unsupported", f"{dotted}: {err['msg']}", dest=_dest_of(dotted))
                )
                _drop(config, dotted)
    return Imported(source, config, rows, [*source.notes, *m.notes])


def _field_path(config: dict[str, Any], dotted: str) -> str:
    # pydantic adds union member names to locations (e.g. "resolution.tuple[...]"): keep the known prefix
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        if _get(config, ".".join(parts[:n])) is not None:
            return ".".join(parts[:n])
    return dotted


def _origin_of(m: _Mapper, dotted: str) -> str:
    dest = _dest_of(dotted)
    if dest in m.args.origin:
        return m.args.origin[dest] + ("" if dest in SIMPLE else f" ({dotted})")
    for dest, (path, _) in SIMPLE.items():
        if path == dotted and dest in m.args.origin:
            return m.args.origin[dest]
    for r in m.rows:
        if r.target == dotted:
            return r.key
    return dotted


def _dest_of(dotted: str) -> str:
    if dotted.startswith(("network.conv_", "network.args")):
        return "network_args"
    if dotted.startswith("optimizer.args"):
        return "optimizer_args"
    return next((dest for dest, (path, _) in SIMPLE.items() if path == dotted), "")


def _drop(config: dict[str, Any], dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node = config
    for p in parents:
        node = node.get(p, {})
    if leaf in node:
        del node[leaf]
    default = _get(SD_DEFAULTS, dotted)
    if default is not None:
        _set(config, dotted, default)
