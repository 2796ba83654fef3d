"""Cross-field rules, checked before launch. Each rule is a small named function that
returns problems; ``check_*`` problems are errors, ``hint_*`` problems are warnings.
All are collected, so a user sees every problem of a config at once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from lorakit import families
from lorakit.config.schema import ADAPTIVE_OPTIMIZERS, LYCORIS_KINDS, TrainSpec


@dataclass(frozen=True)
class Problem:
    level: Literal["error", "warning"]
    path: str  # dotted YAML path the problem is about
    message: str
    fix: str = ""

    def render(self, where: str | None = None) -> str:
        head = f"{where}: " if where else ""
        fix = f" Fix: {self.fix}" if self.fix else ""
        return f"{head}`{self.path}`: {self.message}.{fix}"


Rule = Callable[[TrainSpec], list[Problem]]


def _err(path: str, message: str, fix: str = "") -> list[Problem]:
    return [Problem("error", path, message, fix)]


def _warn(path: str, message: str, fix: str = "") -> list[Problem]:
    return [Problem("warning", path, message, fix)]


def check_te_cache_needs_unet_only(s: TrainSpec) -> list[Problem]:
    t = s.training
    if t.cache_text_encoder_outputs and not t.unet_only:
        return _err(
            "training.cache_text_encoder_outputs",
            "cached text-encoder outputs cannot train the text encoders",
            "set training.unet_only: true, or training.cache_text_encoder_outputs: false",
        )
    return []


def check_te_cache_forbids_shuffle(s: TrainSpec) -> list[Problem]:
    t = s.training
    if t.cache_text_encoder_outputs and t.shuffle_caption:
        return _err(
            "training.shuffle_caption",
            "captions are encoded once when text-encoder outputs are cached, so they cannot be shuffled",
            "set training.shuffle_caption: false, or training.cache_text_encoder_outputs: false",
        )
    return []


def check_fp16_vae(s: TrainSpec) -> list[Problem]:
    t = s.training
    if s.family.fp16_vae_nan and t.precision == "fp16" and not t.no_half_vae:
        return _err(
            "training.no_half_vae",
            f"the {s.family.line} VAE overflows in fp16 (black or NaN latents)",
            "set training.no_half_vae: true, or use training.precision: bf16",
        )
    return []


def check_companion_files(s: TrainSpec) -> list[Problem]:
    """The family's required files besides the checkpoint (text encoders, an autoencoder): all or,
    before a checkpoint is set either, none."""
    m, fam = s.model, s.family
    keys = [f.key for f in fam.companions]
    missing = [key for key in keys if getattr(m, key) is None]
    if missing and (m.checkpoint is not None or len(missing) < len(keys)):
        return _err(
            f"model.{missing[0]}",
            f"{fam.companions_problem}; missing: {', '.join('model.' + n for n in missing)}",
            fam.companions_fix,
        )
    return []


def check_family_options(s: TrainSpec) -> list[Problem]:
    """A launch option only other families take (their ``option_flags``) is refused, not dropped."""
    fam, out = s.family, []
    own = {o.key for o in fam.option_flags}
    for key in dict.fromkeys(o.key for f in families.FAMILIES.values() for o in f.option_flags):
        if key in own or key == "training.blocks_to_swap":  # swap: check_blocks_to_swap_family
            continue
        section, name = key.split(".")
        if getattr(getattr(s, section), name) not in (None, False):
            lines = ", ".join(
                dict.fromkeys(f.line for f in families.FAMILIES.values() if key in {o.key for o in f.option_flags})
            )
            out += _err(key, f"a {lines} option: {fam.line} ({fam.name}) does not take it", f"remove it: --set ~{key}")
    return out


def check_resolution_multiple_of_64(s: TrainSpec) -> list[Problem]:
    w, h = s.training.size
    if w % 64 or h % 64:
        return _err(
            "training.resolution",
            f"{w}x{h} is not a multiple of 64",
            f"use {round(w / 64) * 64 or 64}x{round(h / 64) * 64 or 64}",
        )
    return []


def check_epochs_or_steps(s: TrainSpec) -> list[Problem]:
    t = s.training
    if t.epochs is not None and t.max_steps is not None:
        return _err(
            "training.max_steps",
            "both training.epochs and training.max_steps are set; only one can decide the length",
            "remove one, e.g. --set ~training.epochs",
        )
    if t.epochs is None and t.max_steps is None:
        return _err("training.epochs", "neither training.epochs nor training.max_steps is set", "set one")
    return []


def check_full_bf16_precision(s: TrainSpec) -> list[Problem]:
    t = s.training
    if t.full_bf16 and t.precision != "bf16":
        return _err("training.full_bf16", "full_bf16 needs training.precision: bf16", "set precision to bf16")
    return []


def check_blocks_to_swap_family(s: TrainSpec) -> list[Problem]:
    n, fam = s.training.blocks_to_swap, s.family
    if n and fam.swap is None:
        lines = ", ".join(dict.fromkeys(f.line for f in families.with_swap()))
        return _err(
            "training.blocks_to_swap",
            f"block swapping is only available for {lines} in sd-scripts",
            f"remove training.blocks_to_swap; for {fam.line} use gradient_checkpointing or fp8_base",
        )
    if n and fam.swap is not None and n > fam.swap.max_blocks:
        return _err(
            "training.blocks_to_swap",
            f"sd-scripts swaps at most {fam.swap.max_blocks} blocks of {fam.name} (asked: {n})",
            f"set training.blocks_to_swap to {fam.swap.max_blocks} or less",
        )
    if n and fam.swap is not None:
        for key in fam.swap.conflicts:
            if getattr(s.training, key):
                return _err(
                    f"training.{key}",
                    f"sd-scripts cannot combine training.blocks_to_swap with training.{key} for {fam.name}",
                    f"remove one of them (e.g. --set ~training.{key})",
                )
    return []


def check_network_kind_family(s: TrainSpec) -> list[Problem]:
    kind, fam = s.network.kind, s.family
    if kind in LYCORIS_KINDS and kind not in fam.lycoris_kinds:
        usable = ", ".join(sorted(fam.lycoris_kinds)) or "none"
        return _err(
            "network.kind",
            f"LyCORIS {kind} is not known to work with {fam.name} (usable: {usable})",
            "use network.kind: lora",
        )
    return []


def check_bucket_range(s: TrainSpec) -> list[Problem]:
    t = s.training
    if t.enable_bucket and t.min_bucket_reso > t.max_bucket_reso:
        return _err("training.min_bucket_reso", "is larger than training.max_bucket_reso", "swap them")
    return []


def check_sampling_schedule(s: TrainSpec) -> list[Problem]:
    sm = s.sampling
    if sm.prompts and sm.every_n_epochs is None and sm.every_n_steps is None:
        return _err(
            "sampling.every_n_epochs",
            "sample prompts are given but no schedule",
            "set sampling.every_n_epochs (or every_n_steps)",
        )
    return []


def check_adaptive_noise_needs_offset(s: TrainSpec) -> list[Problem]:
    t = s.training
    if t.adaptive_noise_scale is not None and not t.noise_offset:
        return _err(
            "training.adaptive_noise_scale",
            "sd-scripts refuses adaptive_noise_scale without noise_offset",
            "set training.noise_offset (e.g. 0.0357), or remove training.adaptive_noise_scale",
        )
    return []


def check_one_warmup(s: TrainSpec) -> list[Problem]:
    o = s.optimizer
    if o.warmup_steps and o.warmup_ratio is not None:
        return _err("optimizer.warmup_ratio", "set either warmup_steps or warmup_ratio, not both", "remove one")
    return []


def check_warmup_needs_a_warmup_scheduler(s: TrainSpec) -> list[Problem]:
    """sd-scripts 48d368fa (library/train_util.py get_scheduler_fix) raises "<name> does not require
    `num_warmup_steps`" for any non-zero warmup with a custom lr_scheduler_type, `constant` or `adafactor`."""
    o = s.optimizer
    if not o.warmup_steps and o.warmup_ratio is None:
        return []
    key = "optimizer.warmup_steps" if o.warmup_steps else "optimizer.warmup_ratio"
    if o.scheduler_type is not None:
        return _err(
            key,
            f"sd-scripts takes no warmup with a custom scheduler_type ({o.scheduler_type}): it stops at start",
            f"remove {key}, or drop optimizer.scheduler_type and use e.g. scheduler: cosine",
        )
    if o.scheduler in ("constant", "adafactor"):
        better = "constant_with_warmup" if o.scheduler == "constant" else "cosine (or no warmup)"
        return _err(
            key,
            f"sd-scripts takes no warmup with scheduler {o.scheduler}: it stops at start",
            f"remove {key}, or set optimizer.scheduler: {better}",
        )
    return []


def check_dim_from_weights(s: TrainSpec) -> list[Problem]:
    if s.network.dim_from_weights and s.network.weights is None:
        return _err(
            "network.dim_from_weights", "needs network.weights (the LoRA to read the dim from)", "set network.weights"
        )
    return []


def check_timestep_range(s: TrainSpec) -> list[Problem]:
    t = s.training
    if t.min_timestep is not None and t.max_timestep is not None and t.min_timestep >= t.max_timestep:
        return _err("training.min_timestep", "must be below training.max_timestep", "lower min_timestep")
    return []


def hint_adaptive_optimizer(s: TrainSpec) -> list[Problem]:
    o, n = s.optimizer, s.network
    out: list[Problem] = []
    if o.name in ADAPTIVE_OPTIMIZERS:
        for key, value in (("lr", o.lr), ("unet_lr", o.unet_lr), ("text_encoder_lr", o.text_encoder_lr)):
            if value is not None and value != 1.0 and not (key == "text_encoder_lr" and value == 0):
                out += _warn(
                    f"optimizer.{key}",
                    f"{o.name} finds the step size itself and expects an LR of 1 (got {value:g})",
                    f"set optimizer.{key}: 1",
                )
        if n.alpha != 1:
            out += _warn(
                "network.alpha",
                f"{o.name} with alpha {n.alpha:g} scales its steps by alpha/dim; adaptive optimizers want alpha 1",
                "set network.alpha: 1",
            )
    return out


def hint_lycoris_package(s: TrainSpec) -> list[Problem]:
    if s.network.kind in LYCORIS_KINDS:
        return _warn(
            "network.kind",
            f"{s.network.kind} is a LyCORIS algorithm: the trainer environment needs the `lycoris-lora` package",
            "pip install lycoris-lora in the sd-scripts environment (lorakit doctor checks it)",
        )
    return []


def hint_text_encoder_lr_unused(s: TrainSpec) -> list[Problem]:
    if s.training.unet_only and s.optimizer.text_encoder_lr:
        return _warn(
            "optimizer.text_encoder_lr",
            "is ignored because training.unet_only is true",
            "remove it, or set training.unet_only: false",
        )
    return []


def hint_conv_dim_ignored(s: TrainSpec) -> list[Problem]:
    fam = s.family
    if not fam.conv_lora and s.network.kind == "lora" and s.network.conv_dim:
        return _warn(
            "network.conv_dim", f"{fam.line}'s {fam.denoiser_label} has no conv layers to adapt; it is ignored"
        )
    return []


RULES: tuple[Rule, ...] = (
    check_te_cache_needs_unet_only,
    check_te_cache_forbids_shuffle,
    check_fp16_vae,
    check_companion_files,
    check_family_options,
    check_resolution_multiple_of_64,
    check_epochs_or_steps,
    check_full_bf16_precision,
    check_blocks_to_swap_family,
    check_network_kind_family,
    check_bucket_range,
    check_sampling_schedule,
    check_adaptive_noise_needs_offset,
    check_timestep_range,
    check_one_warmup,
    check_warmup_needs_a_warmup_scheduler,
    check_dim_from_weights,
    hint_adaptive_optimizer,
    hint_lycoris_package,
    hint_text_encoder_lr_unused,
    hint_conv_dim_ignored,
)


def check(spec: TrainSpec) -> list[Problem]:
    return [p for rule in RULES for p in rule(spec)]
