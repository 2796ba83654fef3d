"""sd-scripts' flag manifest: every flag its training scripts accept, dumped from the real
parsers of a pinned commit by ``scripts/sdscripts_flags.py``. Used to check generated argv
without the trainer installed (CI has no torch)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

MANIFEST = Path(__file__).resolve().parent / "flags" / "sd-scripts.json"
_CASTS: dict[str, Any] = {"int": int, "float": float}


@cache
def manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(MANIFEST.read_text(encoding="utf-8"))
    return data


def manifest_commit() -> str:
    return str(manifest()["sd_scripts_commit"])


def check_argv(script: str, args: list[str]) -> list[str]:
    """Problems of ``args`` (what follows the script in argv) against ``script``'s flags."""
    flags: dict[str, Any] = manifest()["scripts"][script]
    problems: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if not token.startswith("--"):
            problems.append(f"unexpected positional argument {token!r}")
            continue
        name, eq, inline = token[2:].partition("=")
        spec = flags.get(name)
        if spec is None:
            problems.append(f"--{name}: not a flag of {script} (sd-scripts {manifest_commit()[:8]})")
            continue
        if spec["kind"] == "switch":
            if eq:
                problems.append(f"--{name} is a switch and takes no value (got {inline!r})")
            continue
        values = [inline] if eq else []
        if not eq:
            many = spec["nargs"] in ("*", "+")
            while i < len(args) and not args[i].startswith("--"):
                values.append(args[i])
                i += 1
                if not many:
                    break
        if not values and spec["nargs"] not in ("*", "?"):
            problems.append(f"--{name} needs a value")
        for value in values:
            if spec["choices"] and value not in spec["choices"]:
                problems.append(f"--{name}={value}: not one of {', '.join(spec['choices'])}")
            cast = _CASTS.get(spec["type"] or "")
            if cast is not None:
                try:
                    cast(value)
                except ValueError:
                    problems.append(f"--{name}={value}: not a valid {spec['type']}")
    return problems
