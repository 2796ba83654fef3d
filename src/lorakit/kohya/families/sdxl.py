"""SDXL: sdxl_train_network.py with networks.lora."""

from __future__ import annotations

from lorakit.config.schema import TrainSpec
from lorakit.kohya.families.base import FamilyDef, Flags, path_or_placeholder


def _model_flags(spec: TrainSpec) -> Flags:
    m, t = spec.model, spec.training
    flags: Flags = [("pretrained_model_name_or_path", path_or_placeholder(m.checkpoint, "model.checkpoint"))]
    if m.vae is not None:
        flags.append(("vae", str(m.vae)))
    if t.no_half_vae:
        flags.append(("no_half_vae", None))
    return flags


SDXL = FamilyDef("sdxl", "sdxl_train_network.py", "networks.lora", _model_flags)
