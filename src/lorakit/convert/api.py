"""``import_config``: a file → a validated lorakit config (shortest form: ``extends:`` the
closest shipped preset when that is shorter) and the report; ``to_yaml`` renders it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lorakit import families
from lorakit.config.loader import merge_layers, preset_layers
from lorakit.config.presets import preset_names
from lorakit.config.rules import check
from lorakit.config.schema import TrainSpec
from lorakit.convert.mapping import to_lorakit
from lorakit.convert.model import Imported, Row
from lorakit.convert.read import read_source

KINDS = {"kohya-gui": "kohya_ss GUI config", "sd-scripts-toml": "sd-scripts TOML", "launch-line": "launch command line"}


@dataclass
class Result:
    imported: Imported
    full: dict[str, Any]  # every key explicit
    short: dict[str, Any]  # what the YAML holds (extends: + differences)
    extends: str | None
    problems: list[str]  # lorakit's cross-field rules on the result (errors)

    @property
    def rows(self) -> list[Row]:
        return self.imported.rows


def import_config(path: Path, family: str | None = None) -> Result:
    source = read_source(path, family)
    script = families.get(source.family).script
    imported = to_lorakit(source, script, path.stem, path.parent)
    _cover_every_key(imported)
    config = imported.config
    config["description"] = f"Imported from {path.name} ({KINDS[source.kind]})"
    config["source"] = path.name
    spec = TrainSpec.model_validate(config)
    full = spec_dict(spec)
    problems = [p.render() for p in check(spec) if p.level == "error"]
    extends, short = shorten(full)
    return Result(imported, full, short, extends, problems)


def _cover_every_key(imported: Imported) -> None:
    """A GUI key that fed an argument under another name still gets its own row."""
    seen = {r.key for r in imported.rows}
    for dest, origin in imported.source.args.origin.items():
        if origin not in seen:
            imported.rows.append(Row(origin, imported.source.args.values.get(dest), "dropped", f"read as {dest}"))
            seen.add(origin)


def spec_dict(spec: TrainSpec) -> dict[str, Any]:
    data: dict[str, Any] = spec.model_dump(mode="json", by_alias=True)
    return data


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data:
        out: dict[str, Any] = {}
        for k, v in data.items():
            out |= _flat(v, f"{prefix}{k}.")
        return out
    return {prefix[:-1]: data}


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dotted, value in flat.items():
        *parents, leaf = dotted.split(".")
        node = out
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def _preset_flat(name: str) -> dict[str, Any]:
    merged = merge_layers(preset_layers(name))[0]
    merged.pop("extends", None)
    return _flat(spec_dict(TrainSpec.model_validate(merged)))


def shorten(full: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The shortest YAML that resolves to ``full``: ``extends:`` a preset of the same family
    whose network/optimizer args are all in ``full`` (layers merge args, a YAML layer cannot
    delete an inherited one), if that takes fewer lines than writing every non-default key."""
    want = _flat(full)
    default = _flat(spec_dict(TrainSpec()))
    best_name: str | None = None
    best = {k: v for k, v in want.items() if default.get(k, object()) != v}
    for name in preset_names():
        have = _preset_flat(name)
        if have.get("model.family") != want.get("model.family"):
            continue
        args_ok = all(k in want for k in have if k.startswith(("network.args.", "optimizer.args.")))
        if not args_ok:
            continue
        # an empty args dict in the import cannot remove the preset's args
        if any(
            want.get(f"{sec}.args") == {} and any(k.startswith(f"{sec}.args.") for k in have)
            for sec in ("network", "optimizer")
        ):
            continue
        diff = {k: v for k, v in want.items() if have.get(k, object()) != v}
        if 1 + len(diff) < len(best):
            best_name, best = name, diff
    short = _nest(best)
    return best_name, ({"extends": best_name, **short} if best_name else short)


def to_yaml(result: Result, source: Path) -> str:
    head = [
        f"# lorakit config imported from {source.name} ({KINDS[result.imported.source.kind]}) by `lorakit import`.",
        "# Keys not listed are lorakit's defaults"
        + (f" or come from the preset {result.extends}." if result.extends else "."),
    ]
    body = yaml.safe_dump(result.short, sort_keys=False, allow_unicode=True, default_flow_style=False, width=120)
    return "\n".join(head) + "\n" + body
