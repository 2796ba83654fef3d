"""Model families: one module of data + argv builder each. Adding a family (Flux, SD 1.5)
means one new module here, registered in ``FAMILIES``, and one preset."""

from __future__ import annotations

from lorakit.kohya.families.base import FamilyDef
from lorakit.kohya.families.sd3 import SD35_LARGE, SD35_MEDIUM
from lorakit.kohya.families.sdxl import SDXL

FAMILIES: dict[str, FamilyDef] = {f.name: f for f in (SDXL, SD35_MEDIUM, SD35_LARGE)}


def family(name: str) -> FamilyDef:
    return FAMILIES[name]
