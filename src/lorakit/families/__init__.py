"""The model families lorakit trains: one registry, one file per family.

Every room asks this package what a family needs (script, LoRA module, model files and their
flags, architecture numbers, block swap, options, synthetic-model layout, message wording);
no code outside it compares a family's name (tests/core/test_family_registry.py).

Adding a family = one file here that builds a ``ModelFamily`` (families/base.py), one line in
``_ALL``, its presets (config/presets/) and its data (docs/architecture.md "Adding a model family").
Stdlib only: synth/ imports it in the trainer's Python.
"""

from __future__ import annotations

from lorakit.families.base import ModelFamily, ModelFile, OptionFlag, Swap, Synth
from lorakit.families.flux import FLUX_DEV
from lorakit.families.sd3 import SD35_LARGE, SD35_MEDIUM
from lorakit.families.sdxl import SDXL

_ALL: tuple[ModelFamily, ...] = (SDXL, SD35_MEDIUM, SD35_LARGE, FLUX_DEV)

FAMILIES: dict[str, ModelFamily] = {f.name: f for f in _ALL}
NAMES: tuple[str, ...] = tuple(FAMILIES)  # registry order: the schema's literal, tables, fitted vectors
DEFAULT: str = NAMES[0]  # `model.family` when a config names none


class UnknownFamily(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown model family {name!r} (known: {', '.join(NAMES)})")
        self.name = name


def get(name: str) -> ModelFamily:
    try:
        return FAMILIES[name]
    except KeyError:
        raise UnknownFamily(name) from None


def names_text(conj: str = "or") -> str:
    """'sdxl, sd3.5-medium or sd3.5-large' (help texts)."""
    return ", ".join(NAMES[:-1]) + f" {conj} {NAMES[-1]}" if len(NAMES) > 1 else NAMES[0]


def model_file_keys() -> tuple[str, ...]:
    """Every `model.<key>` file any family loads, checkpoint first, each once."""
    out: list[str] = []
    for fam in _ALL:
        out += [f.key for f in fam.model_files if f.key not in out]
    return tuple(out)


def with_swap() -> tuple[ModelFamily, ...]:
    return tuple(f for f in _ALL if f.swap is not None)


__all__ = [
    "DEFAULT",
    "FAMILIES",
    "NAMES",
    "ModelFamily",
    "ModelFile",
    "OptionFlag",
    "Swap",
    "Synth",
    "UnknownFamily",
    "get",
    "model_file_keys",
    "names_text",
    "with_swap",
]
