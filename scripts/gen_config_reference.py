"""Write docs/config-reference.md from the schema's field descriptions (the schema is the
single source; tests/core/test_docs.py fails when the file is stale).

Run: python scripts/gen_config_reference.py
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from lorakit.config.schema import TrainSpec

OUT = Path(__file__).resolve().parent.parent / "docs" / "config-reference.md"


def _type(info: FieldInfo) -> str:
    text = str(info.annotation).replace("typing.", "").replace("pathlib.", "").replace("NoneType", "None")
    text = re.sub(r"Annotated\[(\w+), FieldInfo\(.*?metadata=\[.*?\]\)\]", r"\1", text)  # constraints
    text = re.sub(r"<class '(\w+)'>", r"\1", text)
    text = re.sub(r"Optional\[(.*)\]$", r"\1 | None", text)
    text = re.sub(r"^Union\[(.*)\]$", lambda m: m.group(1).replace(", tuple", " | tuple"), text)
    text = re.sub(r"Literal\[(.*?)\]", lambda m: m.group(1).replace("'", "").replace(", ", " / "), text)
    return text.replace("|", "\\|")


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "(required)"
    if info.default_factory is not None:
        value: Any = info.default_factory()  # type: ignore[call-arg]
        return "" if isinstance(value, BaseModel) else repr(value)
    return repr(info.default) if info.default is not None else "—"


def _optional_model(info: FieldInfo) -> type[BaseModel] | None:
    """The model of an optional nested section (``X | None``), whose keys are listed under it."""
    if get_origin(info.annotation) not in (Union, types.UnionType):
        return None
    found = [a for a in get_args(info.annotation) if isinstance(a, type) and issubclass(a, BaseModel)]
    return found[0] if found else None


def render() -> str:
    lines = [
        "# Configuration reference",
        "",
        "Generated from `src/lorakit/config/schema.py` by `scripts/gen_config_reference.py`.",
        "Every key can be set in a YAML file (`--config`) or with `--set section.key=value`;",
        "unknown keys are errors.",
        "",
    ]
    for name, section in TrainSpec.model_fields.items():
        model = section.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            lines += [f"- `{name}`: {section.description}", ""]
            continue
        lines += [f"## `{name}`", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for key, info in model.model_fields.items():
            shown = info.alias or key
            lines.append(f"| `{name}.{shown}` | {_type(info)} | {_default(info)} | {info.description or ''} |")
            sub = _optional_model(info)
            for k2, i2 in (sub.model_fields if sub is not None else {}).items():
                lines.append(
                    f"| `{name}.{shown}.{i2.alias or k2}` | {_type(i2)} | {_default(i2)} | {i2.description or ''} |"
                )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(render(), encoding="utf-8")
    print(f"wrote {OUT}", file=sys.stderr)
