"""Shipped presets: YAML files in ``configs/presets`` (packaged as ``lorakit/presets``).

The list of presets is data that ``presets list|show|copy`` and ``--preset`` all read.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from lorakit import families
from lorakit.errors import ConfigError

_PACKAGED = Path(__file__).resolve().parent.parent / "presets"  # inside the wheel
_SOURCE_TREE = Path(__file__).resolve().parents[3] / "configs" / "presets"  # a checkout / editable install


def presets_dir() -> Path:
    for candidate in (_PACKAGED, _SOURCE_TREE):
        if candidate.is_dir():
            return candidate
    raise ConfigError(
        ["the shipped presets folder is missing from this installation"],
        fix="reinstall lorakit (pip install --force-reinstall lorakit)",
    )


def preset_names() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


def preset_path(name: str) -> Path:
    path = presets_dir() / f"{name}.yaml"
    if not path.is_file():
        names = preset_names()
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        hint = f"did you mean `{close[0]}`? " if close else ""
        raise ConfigError(
            [f"unknown preset `{name}`: {hint}known presets: {', '.join(names)}"],
            fix="lorakit presets list shows them with their descriptions",
        )
    return path


@dataclass(frozen=True)
class PresetInfo:
    name: str
    description: str
    source: str
    extends: str | None
    family: str | None


def preset_info(name: str) -> PresetInfo:
    """Header facts of one preset (its own file; family resolved through ``extends``)."""
    import yaml

    data = yaml.safe_load(preset_path(name).read_text(encoding="utf-8")) or {}
    parent = data.get("extends")
    family = (data.get("model") or {}).get("family")
    if family is None and isinstance(parent, str):
        family = preset_info(parent).family
    return PresetInfo(
        name=name,
        description=str(data.get("description", "")),
        source=str(data.get("source", "")),
        extends=parent if isinstance(parent, str) else None,
        family=family or families.DEFAULT,
    )
