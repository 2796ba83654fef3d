"""Path relations for the dataset package. The writers live in ``lorakit.fs`` (one mechanism);
the old names below are kept so existing imports still work (bulk dataset outputs: not fsynced)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from lorakit.fs import atomic_copy, atomic_open, atomic_write, link_or_copy

__all__ = [
    "atomic_copy",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_writer",
    "is_within",
    "link_or_copy",
]


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """Kept name: ``lorakit.fs.atomic_open(path, durable=False)``."""
    with atomic_open(path, durable=False) as fh:
        yield fh


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Kept name: ``lorakit.fs.atomic_write(path, data, durable=False)``."""
    atomic_write(path, data, durable=False)


def atomic_write_text(path: Path, text: str) -> None:
    """Kept name: ``lorakit.fs.atomic_write(path, text, durable=False)``."""
    atomic_write(path, text, durable=False)


def is_within(child: Path, parent: Path) -> bool:
    """True when ``child`` is ``parent`` or lies inside it (both resolved)."""
    c, p = child.resolve(), parent.resolve()
    return c == p or p in c.parents
