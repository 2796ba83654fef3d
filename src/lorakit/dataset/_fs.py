"""Path relations for the dataset package. The writers live in ``lorakit.fs`` (one mechanism);
the names below are kept so existing imports still work."""

from __future__ import annotations

from pathlib import Path

from lorakit.fs import atomic_copy, atomic_open, link_or_copy

__all__ = ["atomic_copy", "atomic_open", "is_within", "link_or_copy"]


def is_within(child: Path, parent: Path) -> bool:
    """True when ``child`` is ``parent`` or lies inside it (both resolved)."""
    c, p = child.resolve(), parent.resolve()
    return c == p or p in c.parents
