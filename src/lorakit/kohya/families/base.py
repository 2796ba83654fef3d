"""What a model family contributes to the launch: its script, its LoRA module and its
model-file flags."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lorakit.config.schema import TrainSpec

Flags = list[tuple[str, str | None]]  # (flag name without --, value or None for a switch)


@dataclass(frozen=True)
class FamilyDef:
    name: str
    script: str  # sd-scripts training script
    lora_module: str  # network module for plain LoRA
    model_flags: Callable[[TrainSpec], Flags]  # checkpoint, encoders, family-only switches


def path_or_placeholder(value: object, key: str) -> str:
    """A model path, or a visible placeholder in a dry run where it is not set yet."""
    return str(value) if value is not None else f"<{key}>"
