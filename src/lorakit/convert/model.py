"""The shared shapes: sd-scripts arguments with where each came from, and the report rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from lorakit.errors import ConfigError

Status = Literal["mapped", "dropped", "unsupported", "unknown"]
# mapped: lorakit key set to the same value; dropped: not passed on, with the reason (GUI-only,
# sd-scripts would ignore it, or its value is sd-scripts' default); unsupported: sd-scripts
# would use it but lorakit has no key for it (an error unless --lenient); unknown: not an
# sd-scripts argument nor a GUI key (an error unless --lenient).
BLOCKING: frozenset[str] = frozenset({"unsupported", "unknown"})


@dataclass(frozen=True)
class Row:
    key: str  # the key as the source file spells it (GUI key, TOML key, --flag)
    value: Any
    status: Status
    target: str = ""  # the lorakit key (mapped), or the reason
    note: str = ""
    dest: str = ""  # the sd-scripts argument it became (empty: none)


@dataclass
class SdArgs:
    """What sd-scripts would receive: argparse dest → value, plus the source key of each."""

    values: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)

    def set(self, dest: str, value: Any, origin: str) -> None:
        self.values[dest] = value
        self.origin[dest] = origin

    def pop(self, dest: str) -> Any:
        self.origin.pop(dest, None)
        return self.values.pop(dest, None)


@dataclass
class Source:
    """A parsed input file: its kind, the family it trains, the sd-scripts arguments, and
    rows already decided while parsing (GUI-only keys, keys sd-scripts ignores)."""

    kind: Literal["kohya-gui", "sd-scripts-toml", "launch-line"]
    family: str
    args: SdArgs
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Imported:
    source: Source
    config: dict[str, Any]  # the full lorakit config (every key written explicitly)
    rows: list[Row]
    notes: list[str] = field(default_factory=list)

    def blocking(self) -> list[Row]:
        return [r for r in self.rows if r.status in BLOCKING]


class ImportRefused(ConfigError):
    """The file is readable but is not something lorakit trains (SD 1.5/2.x, Chroma,
    fine-tune, textual inversion, …). Exit 2."""


def bad_file(path: object, what: str, fix: str) -> ConfigError:
    return ConfigError([f"{path}: {what}"], fix=fix)
