"""sd-scripts flag tokens → argparse dests, checked against lorakit's flag manifest
(kohya/flags/sd-scripts.json, dumped from the real parsers). Follows argparse: ``--f=v`` or
``--f v``; switches take no value; ``nargs='*'`` flags take every token up to the next flag;
a repeated flag: the last wins; a unique prefix names its flag (``allow_abbrev``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lorakit.kohya.manifest import manifest

_NUMBER = re.compile(r"-\d|-\.\d")


@dataclass(frozen=True)
class ParsedFlag:
    token: str  # as written (``--lr``)
    dest: str
    value: Any  # True for a switch, a string, or a list of strings (nargs='*')


class FlagError(ValueError):
    pass


def script_flags(script: str) -> dict[str, Any]:
    flags: dict[str, Any] = manifest()["scripts"][script]
    return flags


def is_dest(script: str, name: str) -> bool:
    return name in script_flags(script)


def resolve(script: str, name: str) -> str:
    flags = script_flags(script)
    if name in flags:
        return name
    hits = [f for f in flags if f.startswith(name)]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise FlagError(f"--{name} is ambiguous for {script} (could be --{', --'.join(sorted(hits)[:5])})")
    raise FlagError(f"--{name} is not an argument of {script}")


def parse_flags(script: str, tokens: list[str]) -> tuple[list[ParsedFlag], list[str]]:
    """The flags in ``tokens`` (what follows the script) and the problems found: unknown or
    ambiguous flags, stray values, missing values. Problems do not stop the parse."""
    flags = script_flags(script)
    out: list[ParsedFlag] = []
    problems: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not token.startswith("-") or _NUMBER.match(token):
            problems.append(f"stray value {token!r} (not after a flag that takes it)")
            continue
        name, eq, inline = token.lstrip("-").partition("=")
        try:
            dest = resolve(script, name)
        except FlagError as exc:
            problems.append(str(exc))
            # skip its values so they are not reported as stray too
            while i < len(tokens) and not _is_flag(tokens[i]):
                i += 1
            continue
        spec = flags[dest]
        if spec["kind"] == "switch":
            if eq:
                problems.append(f"--{dest} is a switch and takes no value (got {inline!r})")
            out.append(ParsedFlag(token, dest, True))
            continue
        many = spec["nargs"] in ("*", "+")
        values = [inline] if eq else []
        if not eq:
            while i < len(tokens) and not _is_flag(tokens[i]):
                values.append(tokens[i])
                i += 1
                if not many:
                    break
        if many:
            out.append(ParsedFlag(token, dest, values))
        elif not values:
            problems.append(f"--{dest} needs a value")
        else:
            out.append(ParsedFlag(token, dest, values[0]))
    return out, problems


def _is_flag(token: str) -> bool:
    return token.startswith("-") and not _NUMBER.match(token)
