"""SD 3.5 medium / large: sd3_train_network.py with networks.lora_sd3 and three text encoders."""

from __future__ import annotations

from lorakit.config.schema import TrainSpec
from lorakit.kohya.families.base import FamilyDef, Flags, path_or_placeholder


def _model_flags(spec: TrainSpec) -> Flags:
    m, t = spec.model, spec.training
    flags: Flags = [("pretrained_model_name_or_path", path_or_placeholder(m.checkpoint, "model.checkpoint"))]
    for key in ("clip_l", "clip_g", "t5xxl"):
        flags.append((key, path_or_placeholder(getattr(m, key), f"model.{key}")))
    if m.vae is not None:
        flags.append(("vae", str(m.vae)))
    if t.blocks_to_swap:
        flags.append(("blocks_to_swap", str(t.blocks_to_swap)))
    return flags


SD35_MEDIUM = FamilyDef("sd3.5-medium", "sd3_train_network.py", "networks.lora_sd3", _model_flags)
SD35_LARGE = FamilyDef("sd3.5-large", "sd3_train_network.py", "networks.lora_sd3", _model_flags)
