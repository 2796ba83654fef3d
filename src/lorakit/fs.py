"""The one way lorakit writes a file: a temporary name in the same folder, then a rename.

Every file lorakit writes (run files, dataset outputs, trainer.json, vram-check YAML, bench
JSON, LoRA copies) goes through this module, so the rules are the same everywhere:

- the temporary file gets a random name next to the final one (two writers never collide) and
  is created with ``0o666`` so the process umask applies: the result has the user's usual mode
  (0644 under umask 022), never mkstemp's 0600, so another user (a ComfyUI in a container, a
  service account) can read it;
- a copy is never narrower than its source (``atomic_copy``);
- the parent folder is created; on any exception the temporary file is removed;
- ``str`` data is written as UTF-8 with ``\\n`` exactly as given, on every OS;
- ``durable=True`` (the default) fsyncs the file before the rename and, on POSIX, the folder
  after it; bulk writers (dataset prepare, thousands of files) pass ``durable=False``.

Stdlib only: every package may import it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "atomic_copy",
    "atomic_open",
    "atomic_path",
    "atomic_write",
    "default_mode",
    "json_text",
    "link_or_copy",
    "move_no_replace",
    "strict_json",
    "write_json",
]


def default_mode() -> int:
    """The mode a new file gets from ``open()`` under the current umask (0o644 under 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _temp_for(path: Path, *, keep_suffix: bool = False) -> Path:
    tag = secrets.token_hex(4)
    if keep_suffix and path.suffix:
        return path.with_name(f".{path.stem}.{tag}.partial{path.suffix}")
    return path.with_name(f".{path.name}.{tag}.tmp")


def _create(tmp: Path) -> int:
    return os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0), 0o666)


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(path: Path, *, durable: bool = True) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` (by rename) only when the block ends without error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_for(path)
    fd = _create(tmp)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        _fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes | str, *, durable: bool = True) -> None:
    """Write ``data`` (``str``: UTF-8, newlines as given) to ``path`` atomically."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_open(path, durable=durable) as fh:
        fh.write(raw)


@contextlib.contextmanager
def atomic_path(path: Path, *, keep_suffix: bool = True) -> Iterator[Path]:
    """A temporary path for a writer that takes a file name (``save_file(t, str(tmp))``); it is
    renamed to ``path`` when the block ends without error. ``keep_suffix``: the temporary name
    ends with the final suffix (sd-scripts picks a format from it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_for(path, keep_suffix=keep_suffix)
    os.close(_create(tmp))
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def atomic_copy(src: Path, dst: Path, *, durable: bool = True, clobber: bool = True) -> None:
    """Copy ``src`` to ``dst`` byte for byte (temporary file + rename; never a link to ``src``).

    The copy's mode is the umask's usual mode widened by the source's permission bits, so it is
    never narrower than the source. ``clobber=False``: ``FileExistsError`` when ``dst`` exists
    (checked again just before the rename)."""
    if not clobber and dst.exists():
        raise FileExistsError(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_for(dst)
    fd = _create(tmp)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, 1024 * 1024)
            out.flush()
            if durable:
                os.fsync(out.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, default_mode() | stat.S_IMODE(os.stat(src).st_mode))
        if not clobber and dst.exists():
            raise FileExistsError(dst)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if durable:
        _fsync_dir(dst.parent)


def move_no_replace(src: Path, dst: Path) -> bool:
    """Rename ``src`` to ``dst`` unless ``dst`` exists (hard link, then unlink: never overwrites).
    False when ``dst`` was taken. Where links are not supported, a checked rename."""
    try:
        os.link(src, dst)
    except FileExistsError:
        return False
    except OSError:
        if dst.exists():
            return False
        os.replace(src, dst)
        return True
    src.unlink()
    return True


def strict_json(value: Any) -> Any:
    """NaN/inf (a diverged loss) as strings, so the file stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


def json_text(data: Any) -> str:
    """The JSON text lorakit writes: strict, indent 2, UTF-8 characters kept, ``\\n`` at the end."""
    return json.dumps(strict_json(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(path: Path, data: Any, *, durable: bool = True) -> None:
    atomic_write(path, json_text(data), durable=durable)


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link one of lorakit's own earlier outputs to ``dst`` (a copy where links fail),
    through a temporary name and a rename. Only for files lorakit wrote itself: a user's source
    file is always copied (``atomic_copy``), so editing the output never changes the source."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_for(dst)
    try:
        try:
            os.link(src, tmp)
        except OSError:
            atomic_copy(src, tmp, durable=False)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
