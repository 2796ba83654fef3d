"""The one TOML writer for the sd-scripts dataset config (both ``dataset.toml`` writers use it).

Why not tomli-w: it cannot write the header comment or the indented subsets, and the launch
plan's ``dataset_toml`` is pinned byte for byte by tests/golden/*.json. Each writer keeps its own
*policy* (which keys go in); this module owns the *text*: the string escaping (what TOML's basic
strings require, DEL included; other Unicode kept as is) and ``key = value`` lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["toml_string", "toml_table", "toml_value"]


def toml_string(value: str) -> str:
    """A TOML basic string (escapes what TOML requires; keeps other Unicode as is)."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def toml_value(v: Any) -> str:
    """A TOML value: bool, int, float, a list of those, or (anything else) a string."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return toml_string(str(v))


def toml_table(values: Mapping[str, Any], indent: str = "") -> list[str]:
    """``key = value`` lines; ``None`` values are left out."""
    return [f"{indent}{k} = {toml_value(v)}" for k, v in values.items() if v is not None]
