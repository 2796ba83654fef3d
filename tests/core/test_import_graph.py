"""The rooms of src/lorakit and what each may import (docs/architecture.md "Layers").

Every import between lorakit's rooms (module level, inside functions and under TYPE_CHECKING)
must point to the left in ``LAYERS``: a room imports only rooms of a lower layer (or itself).
So no two rooms import each other, and there is no cycle between subpackages.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "lorakit"

NEUTRAL = {"errors", "fs", "fmt", "proc", "events", "rate", "toml_out"}
LAYERS: list[set[str]] = [
    NEUTRAL,
    {"families"},  # the model-family registry: stdlib + neutral; config, synth and every room above ask it
    {"config", "synth"},
    {"dataset"},
    {"caption"},
    {"gpu"},
    {"kohya"},
    {"planning", "convert"},
    {"run"},
    {"report", "bench", "tryout"},
    {"training"},
    {"serve"},
    {"cli", "__main__"},
]


def layer_of(room: str) -> int:
    for i, rooms in enumerate(LAYERS):
        if room in rooms:
            return i
    raise AssertionError(f"room {room!r} has no layer: add it to LAYERS and docs/architecture.md")


def room_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "lorakit" or len(parts) < 2:
        return None
    return parts[1]


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = module_name(path).split(".")
    if path.name != "__init__.py":
        pkg = pkg[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def edges() -> set[tuple[str, str, str]]:
    found = set()
    for path in SRC.rglob("*.py"):
        src_room = room_of(module_name(path)) or ""
        if not src_room:
            continue
        for mod in imports(path):
            dst = room_of(mod)
            if dst is None or dst == src_room or (not (SRC / dst).exists() and not (SRC / f"{dst}.py").exists()):
                continue
            found.add((src_room, dst, str(path.relative_to(SRC))))
    return found


def test_every_room_imports_only_lower_layers() -> None:
    bad = sorted(
        f"{where}: {a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
        for a, b, where in edges()
        if layer_of(b) > layer_of(a)
    )
    assert not bad, "\n".join(bad)


def test_no_two_rooms_import_each_other() -> None:
    pairs = {(a, b) for a, b, _ in edges()}
    assert not sorted((a, b) for a, b in pairs if (b, a) in pairs and a < b)


def test_the_graph_is_seen() -> None:  # the walker finds real edges (so the tests above can fail)
    pairs = {(a, b) for a, b, _ in edges()}
    assert ("cli", "planning") in pairs and ("kohya", "events") in pairs
