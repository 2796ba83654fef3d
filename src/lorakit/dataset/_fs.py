"""Small file-system helpers for the dataset package: atomic writes and path relations.

Every file lorakit writes goes to a temporary name in the same folder first and is then
renamed over the final name, so an interrupted run never leaves half a file behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def _temp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` (by rename) only when the block ends without error."""
    tmp = _temp_name(path)
    try:
        with open(tmp, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    with atomic_writer(path) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_copy(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` byte for byte (temporary file + rename); never links to ``src``."""
    tmp = _temp_name(dst)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link one of lorakit's own earlier outputs into a new output tree (copy if links fail).

    Only for files lorakit wrote itself: a user's source file is always copied (``atomic_copy``),
    so editing the output can never change the source.
    """
    tmp = _temp_name(dst)
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def is_within(child: Path, parent: Path) -> bool:
    """True when ``child`` is ``parent`` or lies inside it (both resolved)."""
    c, p = child.resolve(), parent.resolve()
    return c == p or p in c.parents
